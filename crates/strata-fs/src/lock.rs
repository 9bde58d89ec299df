//! One writer per root: an `flock` on the root directory itself, which the kernel drops
//! when its holder dies. No lock file is created, so a failed first apply leaves nothing
//! behind, and a crash never leaves a stale lock. Who holds it is read from
//! `/proc/locks`.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock, fstat, major, minor};

use crate::FsError;

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{} is locked by another strata process ({holder})", .path.display())]
    Held {
        /// The locked root.
        path: PathBuf,
        /// The holder's pid and command line, as far as the kernel tells.
        holder: String,
    },
    /// The lock could not be taken.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct Lock {
    _fd: OwnedFd,
}

impl Lock {
    /// Takes the exclusive lock on the directory `fd` (opened for reading) without waiting.
    pub fn exclusive(fd: OwnedFd, path: &Path) -> Result<Lock, LockError> {
        match flock(&fd, FlockOperation::NonBlockingLockExclusive) {
            Ok(()) => Ok(Lock { _fd: fd }),
            Err(e) if e == rustix::io::Errno::WOULDBLOCK => {
                let holder = holder(&fd).unwrap_or_else(|| "holder unknown".to_string());
                Err(LockError::Held {
                    path: path.to_path_buf(),
                    holder,
                })
            }
            Err(e) => Err(FsError::new("lock", path, e).into()),
        }
    }
}

/// `pid N: command line` of the process holding an flock on the same inode.
fn holder(fd: &OwnedFd) -> Option<String> {
    let st = fstat(fd).ok()?;
    let id = format!(
        "{:02x}:{:02x}:{}",
        major(st.st_dev),
        minor(st.st_dev),
        st.st_ino
    );
    let locks = std::fs::read_to_string("/proc/locks").ok()?;
    let pid = locks.lines().find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.get(1) == Some(&"FLOCK") && f.get(5) == Some(&id.as_str())).then(|| f[4].to_string())
    })?;
    let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    let cmd: Vec<String> = cmd
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    Some(if cmd.is_empty() {
        format!("pid {pid}")
    } else {
        format!("pid {pid}: {}", cmd.join(" "))
    })
}
