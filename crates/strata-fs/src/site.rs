//! Plain reads of the user's own directories (the site), and a few process-wide reads.

use std::path::{Path, PathBuf};

use crate::{FsError, Result};

/// Reads a whole file.
pub fn read(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| FsError::new("read", path, e))
}

/// Reads a whole file, with its metadata when it did not change during the reading (see
/// [`crate::stamp`]) and its permission bits. The file is
/// opened relative to a handle on its directory: each thread keeps the last few, so that
/// the files of a directory (a module's `files/` and `templates/` trees are read side by
/// side) cost one path walk in all.
pub fn read_with_key(path: &Path) -> Result<(Vec<u8>, Option<crate::StatKey>, u32)> {
    let fd = open_site(path)?;
    let st = rustix::fs::fstat(&fd).map_err(|e| FsError::new("stat", path, e))?;
    let bytes = crate::root::read_sized(&fd, st.st_size as usize)
        .map_err(|e| FsError::new("read", path, e))?;
    let after = rustix::fs::fstat(&fd).map_err(|e| FsError::new("stat", path, e))?;
    let key = crate::stamp::key_of(&after);
    let stable = (crate::stamp::key_of(&st) == key).then_some(key);
    Ok((bytes, stable, st.st_mode & 0o7777))
}

/// Reads a site file whose size is probably `size` (known from an earlier compile), with
/// three calls: open, one read, close. For content checked against a known hash.
pub fn read_sized_file(path: &Path, size: usize) -> Result<Vec<u8>> {
    let fd = open_site(path)?;
    crate::root::read_sized(&fd, size).map_err(|e| FsError::new("read", path, e))
}

/// Opens a site file through a handle on its directory (see [`read_with_key`]).
fn open_site(path: &Path) -> Result<std::os::fd::OwnedFd> {
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
    DIRS.with_borrow_mut(|dirs| {
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
    .map_err(|e| FsError::new("open", path, e))
}

/// A site file's metadata (see [`crate::stamp`]) and permission bits.
pub fn stat_key(path: &Path) -> Result<(crate::StatKey, u32)> {
    let st = rustix::fs::stat(path).map_err(|e| FsError::new("stat", path, e))?;
    Ok((crate::stamp::key_of(&st), st.st_mode & 0o7777))
}

/// The current time as the file system holding `dir` records it (the times of a new,
/// anonymous file there); `None` where such a file cannot be made (no write access).
pub fn fs_now(dir: &Path) -> Option<(i64, u32)> {
    use rustix::fs::{Mode, OFlags};
    let fd = rustix::fs::open(
        dir,
        OFlags::TMPFILE | OFlags::RDWR | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .ok()?;
    let st = rustix::fs::fstat(&fd).ok()?;
    Some(crate::stamp::key_of(&st).ctime)
}

/// Reads a whole UTF-8 file.
pub fn read_to_string(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(|e| FsError::new("read", path, e))
}

/// The commit a git checkout at `site` is at, read from its `.git` without git: `HEAD`,
/// through its ref file or `packed-refs`. None when it is no checkout (or HEAD is empty).
pub fn git_head(site: &Path) -> Option<String> {
    let git = site.join(".git");
    let head = read_to_string(&git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return (!head.is_empty()).then(|| head.to_string());
    };
    if let Ok(rev) = read_to_string(&git.join(reference)) {
        return Some(rev.trim().to_string());
    }
    let packed = read_to_string(&git.join("packed-refs")).ok()?;
    packed
        .lines()
        .find_map(|l| l.strip_suffix(reference).map(|rev| rev.trim().to_string()))
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
/// Directories themselves are not listed, and links are not followed.
pub fn walk_files(dir: &Path) -> Result<Vec<SiteFile>> {
    let mut out = Vec::new();
    match walk(dir, "", &mut out) {
        Err(e) if e.source.kind() == std::io::ErrorKind::NotFound && !exists(dir) => Ok(out),
        other => other.map(|()| out),
    }
}

/// Lists `dir` (whose path relative to the walk's start is `rel`) into `out`, sorted by
/// name, descending into directories as they come.
fn walk(dir: &Path, rel: &str, out: &mut Vec<SiteFile>) -> Result<()> {
    let err = |e| FsError::new("walk", dir, e);
    let mut entries = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(err)? {
        let entry = entry.map_err(err)?;
        // From the directory entry itself: no stat, unless the file system does not say.
        let ft = entry.file_type().map_err(err)?;
        entries.push((entry.file_name(), ft));
    }
    entries.sort_unstable_by(|a, b| a.0.cmp(&b.0));
    for (name, ft) in entries {
        let r = join_rel(rel, &name.to_string_lossy());
        // One allocation of the right size (`Path::join` copies, then grows).
        let mut path = PathBuf::with_capacity(dir.as_os_str().len() + 1 + name.len());
        path.push(dir);
        path.push(&name);
        if ft.is_dir() {
            walk(&path, &r, out)?;
        } else {
            out.push(SiteFile {
                rel: r,
                path,
                is_link: ft.is_symlink(),
            });
        }
    }
    Ok(())
}

/// `rel/name` (`name` when `rel` is empty), built without the formatting machinery: a
/// site walk makes one for each of thousands of files.
pub fn join_rel(rel: &str, name: &str) -> String {
    let mut r = String::with_capacity(rel.len() + 1 + name.len());
    if !rel.is_empty() {
        r.push_str(rel);
        r.push('/');
    }
    r.push_str(name);
    r
}

/// Creates a scratch file of strata's (contents laid into a sandbox, programs it writes),
/// private: 0600, its missing directories 0700 (see [`crate::write_private`]).
pub fn write_new(path: &Path, content: &[u8]) -> Result<()> {
    crate::write_private(path, content)
}

/// Creates a file of the user's own site that must not exist yet (scaffolding), with its
/// missing directories: 0644 and 0755, as an editor would make them (less the umask),
/// given at creation.
pub fn write_site_file(path: &Path, content: &[u8]) -> Result<()> {
    write_site_file_as(path, content, false)
}

/// [`write_site_file`], executable (0755) when `executable` (a script, a hook).
pub fn write_site_file_as(path: &Path, content: &[u8], executable: bool) -> Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(parent) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(parent)
            .map_err(|e| FsError::new("create directory", parent, e))?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(if executable { 0o755 } else { 0o644 })
        .open(path)
        .map_err(|e| FsError::new("create", path, e))?;
    std::io::Write::write_all(&mut file, content).map_err(|e| FsError::new("write", path, e))
}

/// Replaces a file of the user's own site whole or not at all (0644: written beside it,
/// then renamed over it).
pub fn replace_site_file(path: &Path, content: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("strata-tmp{}", std::process::id()));
    write_site_file(&tmp, content)?;
    std::fs::rename(&tmp, path).map_err(|e| FsError::new("rename", path, e))
}

/// Writes one of strata's own files (its cache) whole or not at all: private (0600, in a
/// 0700 directory), to a temporary name beside it, then renamed.
pub fn write_atomic(path: &Path, content: &[u8]) -> Result<()> {
    if let Some(parent) = path.parent() {
        crate::private_dir(parent)?;
    }
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    crate::write_private(&tmp, content)?;
    std::fs::rename(&tmp, path).map_err(|e| FsError::new("rename", path, e))
}

/// Where a symlink in the site points, as written.
pub fn read_link(path: &Path) -> Result<String> {
    std::fs::read_link(path)
        .map(|t| t.to_string_lossy().into_owned())
        .map_err(|e| FsError::new("read link", path, e))
}

/// Where `path` leads once every link on the way is followed (`realpath`).
pub fn canonical(path: &Path) -> Result<PathBuf> {
    std::fs::canonicalize(path).map_err(|e| FsError::new("resolve", path, e))
}

/// Whether `path` itself is a symlink (not followed).
pub fn is_link(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink())
}

/// Creates a directory and its parents (for strata's own files outside any target).
pub fn create_dir_all(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|e| FsError::new("create directory", dir, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_walk_gives_every_file_with_its_relative_and_full_path_in_order() {
        let t = tempfile::tempdir().unwrap();
        for f in ["b/z", "b/c/d", "a", "b.txt"] {
            write_site_file(&t.path().join(f), b"x").unwrap();
        }
        std::os::unix::fs::symlink("a", t.path().join("l")).unwrap();
        let found: Vec<(String, PathBuf, bool)> = walk_files(t.path())
            .unwrap()
            .into_iter()
            .map(|f| (f.rel, f.path, f.is_link))
            .collect();
        let want: Vec<(String, PathBuf, bool)> = [
            ("a", false),
            ("b/c/d", false),
            ("b/z", false),
            ("b.txt", false),
            ("l", true),
        ]
        .map(|(rel, link)| (rel.to_string(), t.path().join(rel), link))
        .into();
        assert_eq!(found, want);
        assert!(walk_files(&t.path().join("missing")).unwrap().is_empty());
    }
}
