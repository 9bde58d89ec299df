//! Making writes to the target durable: whole-file replacement under a temporary name,
//! `fsync` of a file or directory, `syncfs` of a whole file system.

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use rustix::fs::{OFlags, syncfs};
use strata_types::{Meta, TargetPath};

use super::Root;
use crate::{FsError, Result};

/// Flushes one file system (see [`Root::flusher`]).
#[derive(Debug)]
pub struct Flusher {
    fd: OwnedFd,
    path: PathBuf,
}

impl Flusher {
    /// `syncfs`: everything written to the file system so far is durable.
    pub fn flush(&self) -> Result<()> {
        syncfs(&self.fd).map_err(|e| FsError::new("sync file system of", self.path.clone(), e))
    }
}

impl Root {
    /// Replaces `p` with `content` atomically and durably: a temporary file, fsync,
    /// rename, fsync of the directory. For strata's own state files: 0600, owned by root.
    pub fn write_atomic(&self, p: &TargetPath, content: &[u8]) -> Result<()> {
        self.write_atomic_with(p, |w| w.write_all(content))
    }

    /// Replaces `p` with what `fill` writes, whole (written under a temporary name and
    /// renamed: a reader sees the old file or the new one) but not made durable: for
    /// caches and conveniences that a crash may cost. Owned by root, with this mode.
    pub fn replace_with(
        &self,
        p: &TargetPath,
        mode: u32,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let dir = p.parent().unwrap_or_else(TargetPath::root);
        let tmp = format!(".{}.tmp", p.file_name());
        self.write_with_in(&dir, &tmp, Meta::root(mode), fill)?;
        self.rename_in(&dir, &tmp, p.file_name())
    }

    /// Like [`Root::write_atomic`], with the content written by `fill`.
    pub fn write_atomic_with(
        &self,
        p: &TargetPath,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let dir = p.parent().unwrap_or_else(TargetPath::root);
        let tmp = format!(".{}.tmp", p.file_name());
        self.write_with_in(&dir, &tmp, Meta::root(0o600), fill)?;
        let tmp_path = dir.join(&tmp).expect("a plain file name");
        self.fsync(&tmp_path)?;
        self.rename_in(&dir, &tmp, p.file_name())?;
        self.fsync(&dir)
    }

    /// Points the symlink `p` at `target`, atomically and durably.
    pub fn replace_symlink(&self, p: &TargetPath, target: &str) -> Result<()> {
        let dir = p.parent().unwrap_or_else(TargetPath::root);
        let tmp = format!(".{}.tmp", p.file_name());
        self.symlink_in(&dir, &tmp, target, 0, 0)?;
        self.rename_in(&dir, &tmp, p.file_name())?;
        self.fsync(&dir)
    }

    /// Flushes one file or directory to stable storage.
    pub fn fsync(&self, p: &TargetPath) -> Result<()> {
        let fd = self
            .open_raw(p, OFlags::RDONLY | OFlags::NOFOLLOW)
            .map_err(|e| self.walk_err("open", p, e))?;
        rustix::fs::fsync(&fd).map_err(|e| self.err("fsync", p, e))
    }

    /// A handle that flushes the file system holding the directory `p`, from any thread.
    /// A write-back error is reported to a handle opened before it happened: open it before
    /// the writes it is to make durable.
    pub fn flusher(&self, p: &TargetPath) -> Result<Flusher> {
        let fd = self
            .open_raw(p, OFlags::RDONLY | OFlags::DIRECTORY)
            .map_err(|e| self.walk_err("open", p, e))?;
        Ok(Flusher {
            fd,
            path: self.host_path(p),
        })
    }
}
