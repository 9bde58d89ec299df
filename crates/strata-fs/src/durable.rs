//! strata's own files that must survive a crash or must be read with their mode: trust
//! anchors, version floors and key files (under `<root>/var/lib/strata/` or the
//! operator's config directory), written to a temporary name, fsynced, renamed, and the
//! directory fsynced.

use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{FsError, Result};

/// Replaces `path` with `content`, durably: once this returns, a crash leaves the new
/// content; before, the old. The file is private (0600), its missing directories 0700.
pub fn write_durable(path: &Path, content: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::private_dir(dir)?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    crate::remove_file(&tmp)?;
    let mut file = crate::create_private(&tmp)?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|e| FsError::new("write", &tmp, e))?;
    crate::rename(&tmp, path)?;
    sync_dir(dir)
}

/// Flushes a directory's entries (a rename in it) to disk.
pub fn sync_dir(dir: &Path) -> Result<()> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| FsError::new("sync", dir, e))
}

/// Opens a file for reading, not following a link: for contents streamed rather than
/// held (a hash, a child's stdin).
pub fn open_read(path: &Path) -> Result<std::fs::File> {
    std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| FsError::new("open", path, e))
}

/// The blake3 of a file's content, read in chunks (never whole in memory).
pub fn hash_file(path: &Path) -> Result<strata_types::Hash> {
    let mut file = open_read(path)?;
    let mut hasher = blake3::Hasher::new();
    std::io::copy(&mut file, &mut hasher).map_err(|e| FsError::new("read", path, e))?;
    Ok(strata_types::Hash::from_bytes(
        *hasher.finalize().as_bytes(),
    ))
}

/// Reads a file no larger than `limit` bytes, not following a link, with its permission
/// bits: for key files, whose mode says whether others could have read them.
pub fn read_with_mode(path: &Path, limit: u64) -> Result<(Vec<u8>, u32)> {
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| FsError::new("open", path, e))?;
    let md = file.metadata().map_err(|e| FsError::new("stat", path, e))?;
    if md.len() > limit {
        let too_big = std::io::Error::other(format!("larger than {limit} bytes"));
        return Err(FsError::new("read", path, too_big));
    }
    let mut out = Vec::with_capacity(md.len() as usize);
    file.take(limit.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(|e| FsError::new("read", path, e))?;
    Ok((out, md.mode() & 0o7777))
}

/// Sets a file's permission bits.
pub fn set_mode(path: &Path, mode: u32) -> Result<()> {
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(|e| FsError::new("change mode of", path, e))
}

/// Removes a directory of strata's own and everything in it; nothing there is fine.
pub fn remove_dir_all(dir: &Path) -> Result<()> {
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FsError::new("remove", dir, e)),
        _ => Ok(()),
    }
}

/// Creates `path` with `content` only if nothing is there, durably and atomically
/// (written aside, fsynced, then hard-linked into place: a reader sees all of it or
/// nothing, and a second writer of the same name loses). `false` when it existed.
pub fn create_durable(path: &Path, content: &[u8]) -> Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    crate::private_dir(dir)?;
    let tmp = path.with_extension(format!("new{}", std::process::id()));
    crate::remove_file(&tmp)?;
    let mut file = crate::create_private(&tmp)?;
    file.write_all(content)
        .and_then(|()| file.sync_all())
        .map_err(|e| FsError::new("write", &tmp, e))?;
    let linked = std::fs::hard_link(&tmp, path);
    crate::remove_file(&tmp)?;
    match linked {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(FsError::new("create", path, e)),
    }
}
