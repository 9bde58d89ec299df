//! strata's own files outside any target (its cache, scratch files): created private from
//! the start (files 0600, directories 0700, the mode given to `open` and `mkdir` rather
//! than 0666 less the umask), and large ones read through a read-only mapping rather than
//! copied into memory.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::{FsError, Result};

/// Creates a directory and its missing parents, each 0700; the directory itself is made
/// 0700 when it already exists with more (strata's own directory: only its owner reads it).
pub fn private_dir(dir: &Path) -> Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| FsError::new("create directory", dir, e))?;
    let md = std::fs::metadata(dir).map_err(|e| FsError::new("stat", dir, e))?;
    if md.permissions().mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| FsError::new("change mode of", dir, e))?;
    }
    Ok(())
}

/// Creates a new file, 0600, that must not exist yet (nor be a link), to write.
pub fn create_private(path: &Path) -> Result<File> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| FsError::new("create", path, e))
}

/// Writes a new private file (0600) whole, its missing directories 0700; what stood at
/// `path` is replaced, never written through. For strata's scratch files.
pub fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|e| FsError::new("create directory", parent, e))?;
    }
    remove_file(path)?;
    let mut file = create_private(path)?;
    file.write_all(content)
        .map_err(|e| FsError::new("write", path, e))
}

/// Removes a file; nothing there is fine.
pub fn remove_file(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(FsError::new("remove", path, e)),
        _ => Ok(()),
    }
}

/// Renames a file (atomically replacing what `to` names).
pub fn rename(from: &Path, to: &Path) -> Result<()> {
    std::fs::rename(from, to).map_err(|e| FsError::new("rename", to, e))
}

/// A file's content, mapped read-only: its pages come from the page cache as they are
/// read, so a file of gigabytes costs no heap. Only for strata's own files, which nobody
/// else writes (a file cut short while mapped would fault its reader).
pub struct Mapped {
    ptr: *mut libc::c_void,
    len: usize,
}

// SAFETY: the mapping is read-only and private to this value; `&[u8]` views of it are
// shared like any slice.
unsafe impl Send for Mapped {}
// SAFETY: as above: nothing writes through the mapping.
unsafe impl Sync for Mapped {}

impl std::fmt::Debug for Mapped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Mapped({} bytes)", self.len)
    }
}

impl Mapped {
    /// Maps the whole of the file at `path` (not following a link).
    pub fn open(path: &Path) -> Result<Mapped> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| FsError::new("open", path, e))?;
        let len = file
            .metadata()
            .map_err(|e| FsError::new("stat", path, e))?
            .len();
        let len = usize::try_from(len)
            .map_err(|_| FsError::new("map", path, std::io::Error::other("too large")))?;
        if len == 0 {
            return Ok(Mapped {
                ptr: std::ptr::null_mut(),
                len: 0,
            });
        }
        use std::os::fd::AsRawFd;
        // SAFETY: a new read-only private mapping of an open file; the kernel picks the
        // address. The descriptor may close afterwards: the mapping keeps the file.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_PRIVATE,
                file.as_raw_fd(),
                0,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(FsError::new("map", path, std::io::Error::last_os_error()));
        }
        Ok(Mapped { ptr, len })
    }
}

impl std::ops::Deref for Mapped {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        if self.len == 0 {
            return &[];
        }
        // SAFETY: `ptr` is a live read-only mapping of `len` bytes until `drop`.
        unsafe { std::slice::from_raw_parts(self.ptr.cast::<u8>(), self.len) }
    }
}

impl Drop for Mapped {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: unmaps exactly the mapping made in `open`, once.
            unsafe {
                libc::munmap(self.ptr, self.len);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn private_files_and_directories_are_made_so() {
        let t = tempfile::tempdir().unwrap();
        let file = t.path().join("a/b/f");
        write_private(&file, b"secret").unwrap();
        private_dir(&t.path().join("c/d")).unwrap();
        assert_eq!(mode(&file), 0o600);
        assert_eq!(mode(&t.path().join("a")), 0o700);
        assert_eq!(mode(&t.path().join("a/b")), 0o700);
        assert_eq!(mode(&t.path().join("c/d")), 0o700);
        // An existing directory open to others is closed; a file standing there is
        // replaced, and a link is never written through.
        std::fs::set_permissions(t.path().join("c/d"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        private_dir(&t.path().join("c/d")).unwrap();
        assert_eq!(mode(&t.path().join("c/d")), 0o700);
        let elsewhere = t.path().join("elsewhere");
        std::fs::write(&elsewhere, "untouched").unwrap();
        std::os::unix::fs::symlink(&elsewhere, t.path().join("link")).unwrap();
        write_private(&t.path().join("link"), b"new").unwrap();
        assert_eq!(std::fs::read(&elsewhere).unwrap(), b"untouched");
        assert_eq!(std::fs::read(t.path().join("link")).unwrap(), b"new");
        assert!(
            create_private(&file).is_err(),
            "an existing file is not reused"
        );
    }

    #[test]
    fn a_mapped_file_reads_as_its_content() {
        let t = tempfile::tempdir().unwrap();
        let (full, empty) = (t.path().join("full"), t.path().join("empty"));
        let content: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        std::fs::write(&full, &content).unwrap();
        std::fs::write(&empty, b"").unwrap();
        assert_eq!(&Mapped::open(&full).unwrap()[..], &content[..]);
        assert!(Mapped::open(&empty).unwrap().is_empty());
        assert!(Mapped::open(&t.path().join("missing")).is_err());
    }
}
