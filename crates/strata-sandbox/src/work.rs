//! The scratch directory of a sandbox run: 0700, private files only, locked while its
//! run lives, and removed by the next run when a killed run left it behind.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::{SandboxError, cgroup, io_err};

/// The name every run directory starts with, in the temporary directory.
const PREFIX: &str = "strata-sandbox.";

/// The name a run directory has until its run holds its lock: the sweep of dead runs'
/// directories does not take it for one (see [`remove_dead`]).
const NEW_PREFIX: &str = "strata-sandbox-new.";

/// How old a directory still under [`NEW_PREFIX`] must be before the sweep removes it: its
/// run died between making it and locking it.
const NEW_LEFT_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// A run's scratch directory; removed when dropped.
#[derive(Debug)]
pub struct WorkDir {
    path: PathBuf,
    /// Holds an exclusive `flock` on the directory while the run lives.
    _lock: File,
}

impl WorkDir {
    /// Makes a new run directory in the temporary directory (inside the sandbox, `/tmp`
    /// is a fresh tmpfs, so scripts never see it), after removing those of dead runs.
    pub fn create() -> Result<WorkDir, SandboxError> {
        Self::create_in(&std::env::temp_dir())
    }

    /// As [`WorkDir::create`], in `parent`. The directory is made and locked under a
    /// name the sweep of dead runs leaves alone, and only then renamed to its run name:
    /// made under that name, another run's sweep could find it unlocked and remove it.
    pub fn create_in(parent: &Path) -> Result<WorkDir, SandboxError> {
        remove_dead(parent);
        for attempt in 0u32.. {
            let name = format!("{}.{:08x}", std::process::id(), rand(attempt) as u32);
            let new = parent.join(format!("{NEW_PREFIX}{name}"));
            let path = parent.join(format!("{PREFIX}{name}"));
            let retry =
                |e: &std::io::Error| e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100;
            match std::fs::DirBuilder::new().mode(0o700).create(&new) {
                Ok(()) => {}
                Err(e) if retry(&e) => continue,
                Err(e) => return Err(io_err("create", &new)(e)),
            }
            // The mode is exact whatever the umask; the directory is ours alone.
            std::fs::set_permissions(&new, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io_err("chmod", &new))?;
            let lock = File::open(&new).map_err(io_err("open", &new))?;
            // SAFETY: flock on a descriptor we hold.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                return Err(io_err("lock", &new)(std::io::Error::last_os_error()));
            }
            // The lock is the directory's, whatever its name.
            let renamed = rustix::fs::renameat_with(
                rustix::fs::CWD,
                &new,
                rustix::fs::CWD,
                &path,
                rustix::fs::RenameFlags::NOREPLACE,
            )
            .map_err(std::io::Error::from);
            match renamed {
                Ok(()) => return Ok(WorkDir { path, _lock: lock }),
                Err(e) => {
                    let _ = std::fs::remove_dir(&new);
                    if !retry(&e) {
                        return Err(io_err("rename", &path)(e));
                    }
                }
            }
        }
        unreachable!("the loop returns")
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The run's name (also its cgroup's).
    pub fn name(&self) -> String {
        self.path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
        cgroup::remove_stale(&self.name());
    }
}

fn rand(attempt: u32) -> u64 {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let h = blake3::hash(&[t.to_le_bytes(), u64::from(attempt).to_le_bytes()].concat());
    u64::from_le_bytes(h.as_bytes()[..8].try_into().expect("8 bytes"))
}

/// Removes the run directories (and cgroups) whose run is gone: ours (same owner, a
/// directory, not a link) whose lock nobody holds. One still under its new name is being
/// made and locked by a live run, unless it has been there for a while.
fn remove_dead(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid has no memory effects.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let new = name.starts_with(NEW_PREFIX);
        if !name.starts_with(PREFIX) && !new {
            continue;
        }
        let path = entry.path();
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !md.is_dir() || md.uid() != me {
            continue;
        }
        let age = std::time::SystemTime::now()
            .duration_since(md.modified().unwrap_or(std::time::UNIX_EPOCH))
            .unwrap_or_default();
        if new && age < NEW_LEFT_AFTER {
            continue;
        }
        let Ok(dir) = File::open(&path) else { continue };
        // SAFETY: flock on a descriptor we hold.
        if unsafe { libc::flock(dir.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            let _ = std::fs::remove_dir_all(&path);
            cgroup::remove_stale(&name);
        }
    }
}
