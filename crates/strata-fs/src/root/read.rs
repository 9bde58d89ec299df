//! Reading the target: what stands at a path (a file hashed, or known from its stamp),
//! a file's content, a directory's entries, where links lead. Nothing read is written
//! back, not even an access time.

use std::cell::Ref;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{Dir, FileType, Mode, OFlags, Stat, fstat, readlinkat};
use rustix::io::Errno;
use strata_types::{Hash, Snapshot, StatKey, TargetPath};

use super::Root;
use crate::stamp::{Stamp, Stamps, key_of};
use crate::walk::{WalkError, os};
use crate::{FsError, Result};

/// The type of a directory entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DirEntryKind {
    /// A regular file.
    File,
    /// A directory.
    Dir,
    /// A symbolic link.
    Link,
    /// Anything else.
    Other,
}

impl DirEntryKind {
    fn of(t: FileType) -> DirEntryKind {
        match t {
            FileType::RegularFile => DirEntryKind::File,
            FileType::Directory => DirEntryKind::Dir,
            FileType::Symlink => DirEntryKind::Link,
            _ => DirEntryKind::Other,
        }
    }
}

/// The content a file is expected to have: its hash, and its bytes when asked for.
pub type Expected<'a> = (&'a Hash, &'a dyn Fn() -> Option<std::borrow::Cow<'a, [u8]>>);

/// Reads a whole file whose size is probably `size`, with as few calls as possible: one
/// read into a buffer one byte larger returns the file and proves its end.
pub(crate) fn read_sized(fd: impl AsFd, size: usize) -> std::io::Result<Vec<u8>> {
    let mut buf = vec![0u8; size + 1];
    let mut len = 0;
    loop {
        let want = buf.len() - len;
        let n = match rustix::io::read(&fd, &mut buf[len..]) {
            Ok(n) => n,
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        };
        len += n;
        // A short read of a regular file is its end.
        if n == 0 || n < want {
            break;
        }
        if len == buf.len() {
            // It grew since it was measured.
            buf.resize(buf.len() * 2, 0);
        }
    }
    buf.truncate(len);
    Ok(buf)
}

/// Opens `name` in `dir` for reading, never following a link there, without updating its
/// access time where that is allowed (see [`Root::open_read`]).
fn open_read_in(dir: impl AsFd, name: &str) -> std::result::Result<OwnedFd, Errno> {
    let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
    let name = os(name);
    match rustix::fs::openat(&dir, &*name, flags | OFlags::NOATIME, Mode::empty()) {
        Err(Errno::PERM) => rustix::fs::openat(&dir, &*name, flags, Mode::empty()),
        other => other,
    }
}

impl Root {
    /// Trusts `stamps` from now on: a file whose metadata matches its stamp is not read.
    pub fn use_stamps(&self, stamps: Stamps) {
        *self.stamps.borrow_mut() = stamps;
    }

    /// The stamps in use.
    pub fn stamps(&self) -> Ref<'_, Stamps> {
        self.stamps.borrow()
    }

    /// The current time as the file system holding `dir` records it (the times of a new,
    /// anonymous file there); `None` where such files cannot be made.
    pub fn fs_now(&self, dir: &TargetPath) -> Result<Option<(i64, u32)>> {
        match self.open_raw(dir, OFlags::TMPFILE | OFlags::RDWR) {
            Ok(fd) => {
                let st = fstat(&fd).map_err(|e| self.err("stat", dir, e))?;
                Ok(Some(key_of(&st).ctime))
            }
            Err(WalkError::Sys(Errno::OPNOTSUPP | Errno::ISDIR | Errno::INVAL)) => Ok(None),
            Err(e) => Err(self.walk_err("create a temporary file in", dir, e)),
        }
    }

    /// The metadata of what stands at `p` (not followed), when it is a regular file.
    pub fn stat_key(&self, p: &TargetPath) -> Result<Option<StatKey>> {
        let Some(parent) = p.parent() else {
            return Ok(None);
        };
        Ok(self
            .stat_in(&parent, p)?
            .map(|(_, st)| st)
            .filter(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile)
            .map(|st| key_of(&st)))
    }

    /// Reads the regular file `p` and stamps it with the hash of what was read, when its
    /// metadata did not change during the reading and its ctime is older than `now` (from
    /// [`Root::fs_now`], taken before). `None` otherwise, or when it is not a regular file.
    pub fn stamp(&self, p: &TargetPath, now: (i64, u32)) -> Result<Option<Stamp>> {
        let Some(parent) = p.parent() else {
            return Ok(None);
        };
        let opened = self
            .dir(&parent)
            .and_then(|dir| Ok(open_read_in(&*dir, p.file_name())?));
        let fd = match opened {
            Ok(fd) => fd,
            Err(WalkError::Sys(Errno::NOENT | Errno::NOTDIR | Errno::LOOP)) => return Ok(None),
            Err(e) => return Err(self.walk_err("open", p, e)),
        };
        let before = fstat(&fd).map_err(|e| self.err("stat", p, e))?;
        if FileType::from_raw_mode(before.st_mode) != FileType::RegularFile {
            return Ok(None);
        }
        let buf = read_sized(&fd, before.st_size as usize)
            .map_err(|e| FsError::new("read", self.host_path(p), e))?;
        let after = fstat(&fd).map_err(|e| self.err("stat", p, e))?;
        let key = key_of(&after);
        Ok((key_of(&before) == key && key.ctime < now).then(|| Stamp {
            key,
            hash: Hash::of(&buf),
        }))
    }

    /// What stands at `p`, without following a link there. Files are hashed.
    pub fn inspect(&self, p: &TargetPath) -> Result<Snapshot> {
        Ok(self.inspect_inner(p, false, None)?.0)
    }

    /// What stands at `p`, and a file's content. When the content is the `expected` one
    /// (a hash, and a way to get its bytes, called only if the file has to be read), the
    /// content is not returned, and a file read is compared rather than hashed.
    pub fn inspect_with_content(
        &self,
        p: &TargetPath,
        expected: Option<Expected<'_>>,
    ) -> Result<(Snapshot, Option<Vec<u8>>)> {
        self.inspect_inner(p, true, expected)
    }

    /// [`Root::inspect`] and [`Root::inspect_with_content`]: a file's content is kept
    /// when `keep` says so and it is not the one `expected`.
    fn inspect_inner(
        &self,
        p: &TargetPath,
        keep: bool,
        expected: Option<Expected<'_>>,
    ) -> Result<(Snapshot, Option<Vec<u8>>)> {
        let Some(parent) = p.parent() else {
            let st = fstat(&*self.fd).map_err(|e| self.err("stat", p, e))?;
            return Ok((
                Snapshot::Dir {
                    mode: st.st_mode & 0o7777,
                    uid: st.st_uid,
                    gid: st.st_gid,
                    xattrs: Default::default(),
                },
                None,
            ));
        };
        let Some((dir, st)) = self.stat_in(&parent, p)? else {
            return Ok((Snapshot::Absent, None));
        };
        let dirfd = &*dir;
        let name = p.file_name();
        let (uid, gid, mode) = (st.st_uid, st.st_gid, st.st_mode & 0o7777);
        let snap = match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => {
                return self.inspect_file(p, (dirfd, &st), keep, expected);
            }
            FileType::Directory => Snapshot::Dir {
                mode,
                uid,
                gid,
                xattrs: Default::default(),
            },
            FileType::Fifo => Snapshot::Fifo { mode, uid, gid },
            FileType::Symlink => {
                let target = readlinkat(dirfd, &*os(name), Vec::new())
                    .map_err(|e| self.err("read link", p, e))?;
                Snapshot::Link {
                    target: target.to_string_lossy().into_owned(),
                    uid,
                    gid,
                }
            }
            other => Snapshot::Other {
                kind: format!("{other:?}").to_lowercase(),
            },
        };
        Ok((snap, None))
    }

    /// [`Root::inspect_inner`] of a regular file, whose `lstat` through its directory
    /// `dirfd` gave `st`.
    fn inspect_file(
        &self,
        p: &TargetPath,
        (dirfd, st): (&OwnedFd, &Stat),
        keep: bool,
        expected: Option<Expected<'_>>,
    ) -> Result<(Snapshot, Option<Vec<u8>>)> {
        let (uid, gid, mode) = (st.st_uid, st.st_gid, st.st_mode & 0o7777);
        // Unchanged since strata read it: its hash is known. It is read anyway when its
        // content is asked for, or differs from what is expected (for a diff).
        if let Some(stamp) = self.stamps.borrow().get(p).filter(|s| s.key == key_of(st)) {
            let known = match expected {
                Some((hash, _)) => *hash == stamp.hash,
                None => !keep,
            };
            if known {
                let snap = Snapshot::File {
                    hash: stamp.hash,
                    size: stamp.key.size,
                    mode,
                    uid,
                    gid,
                    xattrs: Default::default(),
                };
                return Ok((snap, None));
            }
        }
        let fd = open_read_in(dirfd, p.file_name()).map_err(|e| self.err("open", p, e))?;
        let buf = read_sized(fd, st.st_size as usize)
            .map_err(|e| FsError::new("read", self.host_path(p), e))?;
        let want = expected.and_then(|(hash, bytes)| Some((hash, bytes()?)));
        let (hash, keep) = match want {
            // Equal to what is expected: no need to hash it, nor to keep it.
            Some((hash, bytes)) if *bytes == *buf.as_slice() => (*hash, false),
            _ => (Hash::of(&buf), keep),
        };
        let snap = Snapshot::File {
            hash,
            size: buf.len() as u64,
            mode,
            uid,
            gid,
            xattrs: Default::default(),
        };
        Ok((snap, keep.then_some(buf)))
    }

    /// Whether anything (a dangling link included) stands at `p`; nothing is read.
    pub fn exists(&self, p: &TargetPath) -> bool {
        match p.parent() {
            Some(parent) => matches!(self.stat_in(&parent, p), Ok(Some(_))),
            None => true,
        }
    }

    /// Reads `len` bytes at `offset` of a file.
    pub fn read_at(&self, p: &TargetPath, offset: u64, len: usize) -> Result<Vec<u8>> {
        let fd = self
            .open_raw(p, OFlags::RDONLY | OFlags::NOFOLLOW)
            .map_err(|e| self.walk_err("open", p, e))?;
        let mut buf = vec![0u8; len];
        let mut done = 0;
        while done < len {
            let n = rustix::io::pread(&fd, &mut buf[done..], offset + done as u64)
                .map_err(|e| self.err("read", p, e))?;
            if n == 0 {
                return Err(self.err("read", p, Errno::IO));
            }
            done += n;
        }
        Ok(buf)
    }

    /// Where `p` leads once every link on the way (the last one too) is followed inside
    /// the root; `None` when nothing is there.
    pub fn resolve(&self, p: &TargetPath) -> Result<Option<TargetPath>> {
        match self.chase(p) {
            Ok((stack, name)) => {
                let dir = &stack.last().expect("a walk ends in a directory").path;
                Ok(match name {
                    Some(name) => dir.join(&name).ok(),
                    None => Some(dir.clone()),
                })
            }
            Err(WalkError::Sys(Errno::NOENT | Errno::NOTDIR | Errno::LOOP)) => Ok(None),
            Err(e) => Err(self.walk_err("resolve", p, e)),
        }
    }

    /// Whether `p` is a directory once links inside the root are followed.
    pub fn is_dir_followed(&self, p: &TargetPath) -> bool {
        matches!(self.chase(p), Ok((_, None)))
    }

    /// The owner and group of the directory `p` leads to once links inside the root are
    /// followed; `None` when it is no directory. A path that crosses owners is an error.
    pub fn dir_owner(&self, p: &TargetPath) -> Result<Option<(u32, u32)>> {
        match self.chase(p) {
            Ok((stack, None)) => {
                let top = stack.last().expect("a walk ends in a directory");
                Ok(Some((top.uid, top.gid)))
            }
            Ok((_, Some(_))) => Ok(None),
            Err(WalkError::Sys(Errno::NOENT | Errno::NOTDIR | Errno::LOOP)) => Ok(None),
            Err(e) => Err(self.walk_err("open directory", p, e)),
        }
    }

    /// A regular file opened to read, as a stream (a large file is never held whole);
    /// `None` when nothing is there. A link at `p` is not followed (an error).
    pub fn open_file(&self, p: &TargetPath) -> Result<Option<std::fs::File>> {
        match self.open_read(p, OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC) {
            Ok(fd) => Ok(Some(std::fs::File::from(fd))),
            Err(WalkError::Sys(Errno::NOENT | Errno::NOTDIR)) => Ok(None),
            Err(e) => Err(self.walk_err("open", p, e)),
        }
    }

    /// A file's content; `None` when nothing is there.
    pub fn read(&self, p: &TargetPath) -> Result<Option<Vec<u8>>> {
        let file = match self.open_read(p, OFlags::NOFOLLOW | OFlags::NONBLOCK) {
            Ok(fd) => fd,
            Err(e) if e.is_absent() => return Ok(None),
            Err(e) => return Err(self.walk_err("open", p, e)),
        };
        let mut buf = Vec::new();
        std::fs::File::from(file)
            .read_to_end(&mut buf)
            .map_err(|e| FsError::new("read", self.host_path(p), e))?;
        Ok(Some(buf))
    }

    /// The entries of a directory, sorted by name; an absent directory has none.
    pub fn list(&self, p: &TargetPath) -> Result<Vec<(String, DirEntryKind)>> {
        let fd = match self.open_raw(p, OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW) {
            Ok(fd) => fd,
            Err(e) if e.is_absent() => return Ok(Vec::new()),
            Err(e) => return Err(self.walk_err("list", p, e)),
        };
        let mut out = Vec::new();
        for entry in Dir::new(fd).map_err(|e| self.err("list", p, e))? {
            let entry = entry.map_err(|e| self.err("list", p, e))?;
            // A name that is not UTF-8 in the form a path keeps it (see TargetPath).
            let name = TargetPath::name_from_bytes(entry.file_name().to_bytes()).into_owned();
            if name == "." || name == ".." {
                continue;
            }
            out.push((name, DirEntryKind::of(entry.file_type())));
        }
        out.sort();
        Ok(out)
    }

    /// The type of what stands at `p` (not followed), without reading it; `None` when
    /// nothing is there.
    pub fn inspect_kind(&self, p: &TargetPath) -> Result<Option<DirEntryKind>> {
        let Some(parent) = p.parent() else {
            return Ok(Some(DirEntryKind::Dir));
        };
        Ok(self
            .stat_in(&parent, p)?
            .map(|(_, st)| DirEntryKind::of(FileType::from_raw_mode(st.st_mode))))
    }
}

/// How [`strata_types::UserDb::load`] reads the target's `/etc/passwd` and `/etc/group`.
impl strata_types::ReadTarget for Root {
    type Error = FsError;

    fn read_target(&self, path: &TargetPath) -> Result<Option<Vec<u8>>> {
        self.read(path)
    }
}
