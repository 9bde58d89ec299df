//! One writer per root: an `flock` that the kernel drops when its holder dies, so a
//! crash never leaves a stale lock behind.

use std::io::{Read, Seek, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{FlockOperation, flock};

use crate::FsError;

/// Why a lock could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    /// Another process holds it.
    #[error("{} is locked by another strata process ({holder})", .path.display())]
    Held {
        /// The lock file.
        path: PathBuf,
        /// What the holder wrote about itself.
        holder: String,
    },
    /// The lock file could not be opened.
    #[error(transparent)]
    Fs(#[from] FsError),
}

/// A held lock; dropping it releases it.
#[derive(Debug)]
pub struct Lock {
    _file: std::fs::File,
}

impl Lock {
    /// Takes the exclusive lock at `path` without waiting, and writes `who` into the file
    /// for whoever finds it held.
    pub fn exclusive(fd: OwnedFd, path: &Path, who: &str) -> Result<Lock, LockError> {
        let mut file = std::fs::File::from(fd);
        if let Err(e) = flock(&file, FlockOperation::NonBlockingLockExclusive) {
            if e == rustix::io::Errno::WOULDBLOCK {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim().to_string();
                let holder = if holder.is_empty() { "unknown holder".to_string() } else { holder };
                return Err(LockError::Held { path: path.to_path_buf(), holder });
            }
            return Err(FsError::new("lock", path, e).into());
        }
        let write = |f: &mut std::fs::File| -> std::io::Result<()> {
            f.set_len(0)?;
            f.rewind()?;
            f.write_all(who.as_bytes())
        };
        write(&mut file).map_err(|e| FsError::new("write", path, e))?;
        Ok(Lock { _file: file })
    }
}
