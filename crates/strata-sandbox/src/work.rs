//! The scratch directory of a sandbox run: 0700, private files only, locked while its
//! run lives, and removed by the next run when a killed run left it behind.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::{SandboxError, cgroup, io_err};

/// The name every run directory starts with, in the temporary directory.
const PREFIX: &str = "strata-sandbox.";

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

    /// As [`WorkDir::create`], in `parent`.
    pub fn create_in(parent: &Path) -> Result<WorkDir, SandboxError> {
        remove_dead(parent);
        for attempt in 0u32.. {
            let name = format!(
                "{PREFIX}{}.{:08x}",
                std::process::id(),
                rand(attempt) as u32
            );
            let path = parent.join(&name);
            match std::fs::DirBuilder::new().mode(0o700).create(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 100 => {
                    continue;
                }
                Err(e) => return Err(io_err("create", &path)(e)),
            }
            // The mode is exact whatever the umask; the directory is ours alone.
            std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o700))
                .map_err(io_err("chmod", &path))?;
            let lock = File::open(&path).map_err(io_err("open", &path))?;
            // SAFETY: flock on a descriptor we hold.
            if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                return Err(io_err("lock", &path)(std::io::Error::last_os_error()));
            }
            return Ok(WorkDir { path, _lock: lock });
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
/// directory, not a link) whose lock nobody holds.
fn remove_dead(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else {
        return;
    };
    // SAFETY: geteuid has no memory effects.
    let me = unsafe { libc::geteuid() };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with(PREFIX) {
            continue;
        }
        let path = entry.path();
        let Ok(md) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if !md.is_dir() || md.uid() != me {
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

/// Writes a file only its owner can read (0600 from its creation, never wider).
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f = create_private(path)?;
    f.write_all(bytes)
}

/// Creates (or truncates) a file only its owner can read.
pub fn create_private(path: &Path) -> std::io::Result<File> {
    File::options()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}
