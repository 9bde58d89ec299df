//! Plain reads of the user's own directories (the site), and a few process-wide reads.

use std::path::{Path, PathBuf};

use crate::{FsError, Result};

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| FsError::new("read", path, e))
}

/// Reads a whole file and its permission bits, with one open and one fstat. The file is
/// opened relative to a handle on its directory: each thread keeps the last few, so that
/// the files of a directory (a module's `files/` and `templates/` trees are read side by
/// side) cost one path walk in all.
pub fn read_with_mode(path: &Path) -> Result<(Vec<u8>, u32)> {
    use rustix::fs::{Mode, OFlags};
    const KEPT: usize = 8;
    thread_local! {
        static DIRS: std::cell::RefCell<Vec<(PathBuf, std::os::fd::OwnedFd)>> =
            const { std::cell::RefCell::new(Vec::new()) };
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(FsError::new(
            "open",
            path,
            std::io::Error::from(std::io::ErrorKind::InvalidInput),
        ));
    };
    let fd = DIRS
        .with_borrow_mut(|dirs| {
            let i = match dirs.iter().position(|(d, _)| d == dir) {
                Some(i) => i,
                None => {
                    let fd = rustix::fs::open(
                        dir,
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    if dirs.len() == KEPT {
                        dirs.remove(0);
                    }
                    dirs.push((dir.to_path_buf(), fd));
                    dirs.len() - 1
                }
            };
            rustix::fs::openat(
                &dirs[i].1,
                name,
                OFlags::RDONLY | OFlags::CLOEXEC,
                Mode::empty(),
            )
        })
        .map_err(|e| FsError::new("open", path, e))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| FsError::new("stat", path, e))?;
    let bytes = crate::root::read_sized(fd, st.st_size as usize)
        .map_err(|e| FsError::new("read", path, e))?;
    Ok((bytes, st.st_mode & 0o7777))
}

/// Reads a whole UTF-8 file.
pub fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| FsError::new("read", path, e))
}

/// Whether anything exists at `path` (a dangling link counts).
pub fn exists(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok()
}

/// Whether `path` is a directory (following links).
pub fn is_dir(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.is_dir())
}

/// The names in a directory, sorted; an absent directory has none.
pub fn list_dir(dir: &Path) -> Result<Vec<String>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(FsError::new("list", dir, e)),
    };
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| FsError::new("list", dir, e))?;
        names.push(entry.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

/// A file found below a directory.
#[derive(Debug, Clone)]
pub struct SiteFile {
    /// Its path relative to the walked directory, with `/` separators.
    pub rel: String,
    /// Its full path.
    pub path: PathBuf,
    /// Whether it is a symlink (site symlinks become managed links).
    pub is_link: bool,
}

/// Every file and symlink below `dir`, in path order; an absent directory has none.
/// Directories themselves are not listed.
pub fn walk_files(dir: &Path) -> Result<Vec<SiteFile>> {
    if !exists(dir) {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir).sort_by_file_name() {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(dir).to_path_buf();
            FsError::new("walk", path, e)
        })?;
        let ft = entry.file_type();
        if ft.is_dir() {
            continue;
        }
        let rel = entry.path().strip_prefix(dir).unwrap_or(entry.path());
        out.push(SiteFile {
            rel: rel.to_string_lossy().into_owned(),
            path: entry.path().to_path_buf(),
            is_link: ft.is_symlink(),
        });
    }
    Ok(out)
}

/// Creates a file that must not exist yet, with its parent directories (for scaffolding
/// and test fixtures, never for targets).
pub fn write_new(path: &Path, content: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| FsError::new("create directory", parent, e))?;
    }
    std::fs::write(path, content).map_err(|e| FsError::new("write", path, e))
}

/// Writes a file whole or not at all: to a temporary name beside it, then renamed.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    write_new(&tmp, content)?;
    std::fs::rename(&tmp, path).map_err(|e| FsError::new("rename", path, e))
}

/// Bytes this process has read and written so far (`/proc/self/io`: `rchar`, `wchar`),
/// or zeros when the kernel does not say.
pub fn self_io() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/self/io") else {
        return (0, 0);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("rchar:"), field("wchar:"))
}

/// Where a symlink in the site points, as written.
pub fn read_link(path: &Path) -> Result<String> {
    std::fs::read_link(path)
        .map(|t| t.to_string_lossy().into_owned())
        .map_err(|e| FsError::new("read link", path, e))
}

/// Creates a directory and its parents (for strata's own files outside any target).
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| FsError::new("create directory", dir, e))
}
