//! Commands deferred until after a commit (the intercepted calls of scripts). They are
//! part of the commit's journal; before each one starts, its number is recorded (and
//! flushed) in `activations`, so a commit interrupted after its commit point runs each
//! command exactly once: the ones that had not started run on recovery, the one that was
//! running when the process died is reported, never run a second time.

use std::collections::BTreeSet;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};

use strata_fs::Root;
use strata_types::{Activation, Deferred};

use crate::StateError;
use crate::state::state_path;

/// Runs the commands not started yet, in order, and says how each went.
pub(crate) fn run_pending(
    root: &Root,
    commands: &[Deferred],
) -> Result<Vec<Activation>, StateError> {
    let progress = state_path("activations");
    let mut started: BTreeSet<usize> = root
        .read(&progress)?
        .map(|b| {
            String::from_utf8_lossy(&b)
                .lines()
                .filter_map(|l| l.trim().parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        if started.contains(&i) {
            out.push(Activation {
                command: command.clone(),
                exit: None,
                output: String::new(),
                error: Some(
                    "was running when strata was interrupted; not run a second time".into(),
                ),
            });
            continue;
        }
        started.insert(i);
        let list: String = started.iter().map(|n| format!("{n}\n")).collect();
        root.write_atomic(&progress, list.as_bytes())?;
        crate::crashpoint!("activate-after-mark");
        out.push(run(root.path(), command));
        // The command may have changed the target's directories behind the root's back.
        root.forget_dirs();
    }
    Ok(out)
}

/// Runs one command on the target: chrooted into it unless it is this machine's `/`.
fn run(root: &Path, command: &Deferred) -> Activation {
    let mut result = Activation {
        command: command.clone(),
        ..Activation::default()
    };
    let Some((program, args)) = command.argv.split_first() else {
        result.error = Some("empty command".into());
        return result;
    };
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null());
    let chroot = std::fs::canonicalize(root).map_or(true, |p| p != Path::new("/"));
    if chroot {
        // Made before the fork: the child of a possibly multi-threaded process may not
        // allocate.
        let Ok(root) = std::ffi::CString::new(root.as_os_str().as_encoded_bytes()) else {
            result.error = Some("the root path holds a NUL byte".into());
            return result;
        };
        // SAFETY: chroot and chdir are async-signal-safe; both strings exist already.
        unsafe {
            cmd.pre_exec(move || {
                if libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    match cmd.output() {
        Ok(o) => {
            result.exit = o.status.code();
            let mut text = String::from_utf8_lossy(&o.stdout).into_owned();
            text.push_str(&String::from_utf8_lossy(&o.stderr));
            result.output = text;
            if o.status.code().is_none() {
                result.error = Some(format!("{}", o.status));
            }
        }
        Err(e) => result.error = Some(format!("could not start: {e}")),
    }
    result
}
