//! A target root where every path resolves as if chrooted, and never from what one user
//! owns to what another owns (see [`crate::walk`]).

use std::cell::{Ref, RefCell};
use std::io::{IoSlice, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{
    AtFlags, Dir, FileType, Mode, OFlags, Stat, fchmod, fchown, fstat, mkdirat, readlinkat,
    renameat, statat, symlinkat, syncfs, unlinkat,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use strata_types::{Hash, Snapshot, TargetPath, Xattrs, hex};

use crate::stamp::{Stamp, Stamps, StatKey};
use crate::walk::{self, Node, WalkError, os};
use crate::{FsError, Result, UserDb};

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

/// A directory of the target as a path names it, and how the walk reached it: the
/// directories from the root down to it, links resolved.
#[derive(Debug)]
struct Walked {
    path: TargetPath,
    stack: Vec<Node>,
    /// A link was followed to reach it or a directory above it.
    linked: bool,
}

/// A target root, opened once. Paths given to it are as the node sees them.
#[derive(Debug)]
pub struct Root {
    fd: Rc<OwnedFd>,
    path: PathBuf,
    /// The directory last looked or written in and each one above it, from the root
    /// down, for its siblings and cousins (paths come in order, so siblings come one after
    /// another). A directory is forgotten when it, or one above it, is created, removed
    /// or replaced through this root; one reached through a link, at any change.
    walked: RefCell<Vec<Walked>>,
    /// The directory last found missing (or not a directory), and why.
    missing: RefCell<Option<(TargetPath, Errno)>>,
    /// Files whose content is known from their metadata (see [`crate::stamp`]).
    stamps: RefCell<Stamps>,
    /// Who strata runs as (the owner of what it creates, before any chown).
    me: (u32, u32),
    /// The FAT-like file systems mounted inside the root, read once when first asked.
    fat: std::cell::OnceCell<Vec<(TargetPath, crate::fatfs::FixedMeta)>>,
}

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
    /// Opens the directory that acts as `/`.
    pub fn open(path: &Path) -> Result<Root> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| FsError::new("open root", path, e))?;
        let st = fstat(&fd).map_err(|e| FsError::new("open root", path, e))?;
        let fd = Rc::new(fd);
        let top = Node {
            fd: fd.clone(),
            uid: st.st_uid,
            gid: st.st_gid,
            path: TargetPath::root(),
        };
        Ok(Root {
            fd,
            path: path.to_path_buf(),
            walked: RefCell::new(vec![Walked {
                path: TargetPath::root(),
                stack: vec![top],
                linked: false,
            }]),
            missing: RefCell::new(None),
            stamps: RefCell::new(Stamps::new()),
            me: (
                rustix::process::geteuid().as_raw(),
                rustix::process::getegid().as_raw(),
            ),
            fat: std::cell::OnceCell::new(),
        })
    }

    /// The owner, group and mode a FAT-like file system (vfat on `/boot/efi`) gives every
    /// entry at `p`, when `p` lies on one; such a file system keeps nothing else.
    pub fn fixed_meta(&self, p: &TargetPath) -> Option<crate::fatfs::FixedMeta> {
        let mounts = self.fat.get_or_init(|| {
            let root = std::fs::canonicalize(&self.path).unwrap_or_else(|_| self.path.clone());
            let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
            crate::fatfs::below(&root, &info)
        });
        crate::fatfs::for_path(mounts, p).copied()
    }

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
                Ok(Some(StatKey::of(&st).ctime))
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
            .map(|st| StatKey::of(&st)))
    }

    /// Walks to the directory `d` (see [`crate::walk`]), from the deepest directory above
    /// it already walked to: afterwards the last entry of `walked` is `d`.
    fn walk_to(&self, d: &TargetPath) -> std::result::Result<(), WalkError> {
        if let Some((p, e)) = self.missing.borrow().as_ref()
            && p == d
        {
            return Err(WalkError::Sys(*e));
        }
        let mut walked = self.walked.borrow_mut();
        if walked.last().is_some_and(|w| &w.path == d) {
            return Ok(());
        }
        let s = d.as_str();
        // Where each of `d`'s ancestors (and `d`) ends.
        let ends: Vec<usize> = if s == "/" {
            Vec::new()
        } else {
            s.match_indices('/')
                .skip(1)
                .map(|(i, _)| i)
                .chain([s.len()])
                .collect()
        };
        let mut known = 0;
        while known < ends.len()
            && known + 1 < walked.len()
            && walked[known + 1].path.as_str() == &s[..ends[known]]
        {
            known += 1;
        }
        walked.truncate(known + 1);
        let mut links = 0;
        for (i, &end) in ends.iter().enumerate().skip(known) {
            let start = if i == 0 { 1 } else { ends[i - 1] + 1 };
            let above = walked.last().expect("the root is always walked");
            let mut stack = above.stack.clone();
            let before = links;
            let reached = match walk::step(&mut stack, &s[start..end], true, &mut links) {
                Ok(None) => Ok(()),
                Ok(Some(_)) => Err(WalkError::Sys(Errno::NOTDIR)),
                Err(e) => Err(e),
            };
            if let Err(e) = reached {
                if let WalkError::Sys(errno @ (Errno::NOENT | Errno::NOTDIR)) = e {
                    *self.missing.borrow_mut() = Some((d.clone(), errno));
                }
                return Err(e);
            }
            let linked = above.linked || links > before;
            walked.push(Walked {
                path: TargetPath::parse(&s[..end]).expect("a prefix of a valid path"),
                stack,
                linked,
            });
        }
        Ok(())
    }

    /// An `O_PATH` handle on the directory `dir` (links followed inside the root, never
    /// from one owner to another), kept for the next calls below it.
    fn dir(&self, dir: &TargetPath) -> std::result::Result<Rc<OwnedFd>, WalkError> {
        self.walk_to(dir)?;
        let walked = self.walked.borrow();
        let top = walked.last().and_then(|w| w.stack.last());
        Ok(top.expect("a walk ends in a directory").fd.clone())
    }

    /// Where `p` leads once every link on the way, the last one too, is followed: the
    /// directories from the root down to where it is, and its name in the last of them
    /// (`None` when it is that directory).
    fn chase(&self, p: &TargetPath) -> std::result::Result<(Vec<Node>, Option<String>), WalkError> {
        let parent = p.parent().unwrap_or_else(TargetPath::root);
        self.walk_to(&parent)?;
        let mut stack = self.walked.borrow().last().expect("walked").stack.clone();
        if p.parent().is_none() {
            return Ok((stack, None));
        }
        let name = walk::step(&mut stack, p.file_name(), true, &mut 0)?;
        Ok((stack, name))
    }

    /// [`Root::dir`], with the error naming the directory.
    fn dir_or_err(&self, dir: &TargetPath) -> Result<Rc<OwnedFd>> {
        self.dir(dir)
            .map_err(|e| self.walk_err("open directory", dir, e))
    }

    /// Forgets the directory handles kept for `name` in `dir` and everything below it:
    /// that entry is about to be replaced or removed. Those reached through a link are
    /// forgotten too, since the change may lie on their way.
    fn forget_dir(&self, dir: &TargetPath, name: &str) {
        *self.missing.borrow_mut() = None;
        let above = if dir.as_str() == "/" {
            ""
        } else {
            dir.as_str()
        };
        let stale = |w: &Walked| {
            w.linked
                || w.path
                    .as_str()
                    .strip_prefix(above)
                    .and_then(|r| r.strip_prefix('/'))
                    .and_then(|r| r.strip_prefix(name))
                    .is_some_and(|r| r.is_empty() || r.starts_with('/'))
        };
        let mut walked = self.walked.borrow_mut();
        if let Some(i) = walked.iter().skip(1).position(stale) {
            walked.truncate(i + 1);
        }
    }

    /// Forgets the directory handles, after another program may have changed the
    /// target's directories.
    pub fn forget_dirs(&self) {
        *self.missing.borrow_mut() = None;
        self.walked.borrow_mut().truncate(1);
    }

    /// [`Root::forget_dir`] for the entry `p`.
    fn forget_entry(&self, p: &TargetPath) {
        match p.parent() {
            Some(dir) => self.forget_dir(&dir, p.file_name()),
            None => self.forget_dirs(),
        }
    }

    /// `lstat` of `p` through a handle on its directory `parent`, which is kept for its
    /// siblings (usually looked at one after another). The last component is looked at
    /// alone, never followed. `None` when nothing is there.
    fn stat_in(&self, parent: &TargetPath, p: &TargetPath) -> Result<Option<(Rc<OwnedFd>, Stat)>> {
        let dir = match self.dir(parent) {
            Ok(fd) => fd,
            Err(e) if e.is_absent() => return Ok(None),
            Err(e) => return Err(self.walk_err("open directory", parent, e)),
        };
        match statat(&*dir, &*os(p.file_name()), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some((dir, st))),
            Err(Errno::NOENT | Errno::NOTDIR) => Ok(None),
            Err(e) => Err(self.err("inspect", p, e)),
        }
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
        let key = StatKey::of(&after);
        Ok(
            (StatKey::of(&before) == key && key.ctime < now).then(|| Stamp {
                key,
                hash: Hash::of(&buf),
            }),
        )
    }

    /// The host directory acting as `/`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a target path lies on the host, for messages (a byte of a name that is not
    /// UTF-8 shows as `\\xNN`).
    pub fn host_path(&self, p: &TargetPath) -> PathBuf {
        if p.as_str() == "/" {
            self.path.clone()
        } else {
            self.path.join(&p.shown()[1..])
        }
    }

    fn err(&self, op: &'static str, p: &TargetPath, e: Errno) -> FsError {
        FsError::new(op, self.host_path(p), e)
    }

    /// The error of a walk to `p`: a refused step names both ends and their owners.
    fn walk_err(&self, op: &'static str, p: &TargetPath, e: WalkError) -> FsError {
        match e {
            WalkError::Sys(e) => self.err(op, p, e),
            WalkError::Unsafe(t) => {
                let users = UserDb::load(self).unwrap_or_else(|_| UserDb::parse(None, None));
                FsError::new(
                    op,
                    self.host_path(p),
                    std::io::Error::other(t.describe(&users)),
                )
            }
        }
    }

    /// Opens `p`, walking to it as [`crate::walk`] says. With `O_NOFOLLOW` a link at `p`
    /// is not followed; otherwise every link is.
    fn open_raw(&self, p: &TargetPath, flags: OFlags) -> std::result::Result<OwnedFd, WalkError> {
        let flags = flags | OFlags::CLOEXEC;
        if flags.contains(OFlags::NOFOLLOW)
            && let Some(parent) = p.parent()
        {
            let dir = self.dir(&parent)?;
            return Ok(rustix::fs::openat(
                &*dir,
                &*os(p.file_name()),
                flags,
                Mode::empty(),
            )?);
        }
        let (stack, name) = self.chase(p)?;
        let top = &stack.last().expect("a walk ends in a directory").fd;
        Ok(match name {
            Some(name) => {
                rustix::fs::openat(&**top, &*os(&name), flags | OFlags::NOFOLLOW, Mode::empty())
            }
            None => rustix::fs::openat(&**top, ".", flags, Mode::empty()),
        }?)
    }

    /// Opens a file for reading without updating its access time: reading a target (a
    /// plan) must write nothing, not even inode times. Falls back to a plain open where
    /// `O_NOATIME` is not allowed (a file another user owns, without CAP_FOWNER).
    fn open_read(&self, p: &TargetPath, flags: OFlags) -> std::result::Result<OwnedFd, WalkError> {
        match self.open_raw(p, flags | OFlags::RDONLY | OFlags::NOATIME) {
            Err(WalkError::Sys(Errno::PERM)) => self.open_raw(p, flags | OFlags::RDONLY),
            other => other,
        }
    }

    /// The directory holding `p` (following links inside the root) as an `O_PATH`
    /// handle for `*at` calls on the last component.
    fn parent(&self, p: &TargetPath) -> Result<Rc<OwnedFd>> {
        self.dir_or_err(&p.parent().unwrap_or_else(TargetPath::root))
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
                // Unchanged since strata read it: its hash is known. It is read anyway when
                // its content is asked for, or differs from what is expected (for a diff).
                if let Some(stamp) = self
                    .stamps
                    .borrow()
                    .get(p)
                    .filter(|s| s.key == StatKey::of(&st))
                {
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
                let fd = open_read_in(dirfd, name).map_err(|e| self.err("open", p, e))?;
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
                return Ok((snap, keep.then_some(buf)));
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

    /// Creates a directory with exactly this mode and owner.
    pub fn mkdir(&self, p: &TargetPath, mode: u32, uid: u32, gid: u32) -> Result<()> {
        let parent = self.parent(p)?;
        self.forget_entry(p);
        mkdirat(&*parent, &*os(p.file_name()), Mode::from_raw_mode(0o700))
            .map_err(|e| self.err("create directory", p, e))?;
        let fd = rustix::fs::openat(
            &*parent,
            &*os(p.file_name()),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err("open directory", p, e))?;
        self.set_fd_meta(&fd, &|| p.clone(), (mode, uid, gid))
            .map(drop)
    }

    /// Creates every missing directory of `p` (mode 0755, owned by root), for strata's own
    /// state.
    pub fn create_dirs(&self, p: &TargetPath) -> Result<()> {
        let mut todo: Vec<TargetPath> = std::iter::once(p.clone()).chain(p.ancestors()).collect();
        todo.reverse();
        for dir in todo {
            if !self.is_dir_followed(&dir) {
                match self.mkdir(&dir, 0o755, 0, 0) {
                    Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {}
                    other => other?,
                }
            }
        }
        Ok(())
    }

    /// Creates every missing directory of `p` (owned by root) for strata's own private
    /// state below `base`: `base` and what is below it 0700, what is above it (`/var`,
    /// `/var/lib`) 0755. `base` is made 0700 when it stands open to others (made by an
    /// older strata): nobody but root may look inside.
    pub fn create_private_dirs(&self, p: &TargetPath, base: &TargetPath) -> Result<()> {
        let mut todo: Vec<TargetPath> = std::iter::once(p.clone()).chain(p.ancestors()).collect();
        todo.reverse();
        for dir in todo {
            let private = dir == *base || dir.as_str().starts_with(&format!("{}/", base.as_str()));
            if !self.is_dir_followed(&dir) {
                let mode = if private { 0o700 } else { 0o755 };
                match self.mkdir(&dir, mode, 0, 0) {
                    Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {}
                    other => other?,
                }
            } else if dir == *base
                && let Snapshot::Dir { mode, uid, gid, .. } = self.inspect(&dir)?
                && mode & 0o077 != 0
            {
                self.set_meta(&dir, Some(mode & !0o077), uid, gid)?;
            }
        }
        Ok(())
    }

    /// Gives `fd` this mode and owner, changing only what differs (each change dirties
    /// the inode), and returns its metadata then. `p` makes the path for an error
    /// message, only when there is one.
    fn set_fd_meta(
        &self,
        fd: impl AsFd,
        p: &dyn Fn() -> TargetPath,
        (mode, uid, gid): (u32, u32, u32),
    ) -> Result<Stat> {
        let st = fstat(&fd).map_err(|e| self.err("stat", &p(), e))?;
        let owned = (st.st_uid, st.st_gid) == (uid, gid);
        if owned && st.st_mode & 0o7777 == mode {
            return Ok(st);
        }
        // chown first: it clears set-id bits that the chmod then sets.
        if !owned {
            fchown(&fd, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)))
                .map_err(|e| self.err("change owner of", &p(), e))?;
        }
        fchmod(&fd, Mode::from_raw_mode(mode)).map_err(|e| self.err("change mode of", &p(), e))?;
        fstat(&fd).map_err(|e| self.err("stat", &p(), e))
    }

    /// Writes a new file `name` in directory `dir` (which must exist), with this mode and
    /// owner (what stands at `name` is unlinked first, never written through). Returns
    /// the new file's metadata.
    pub fn write_file_in(
        &self,
        dir: &TargetPath,
        name: &str,
        content: &[u8],
        meta: (u32, u32, u32),
    ) -> Result<StatKey> {
        self.write_parts_in(dir, name, &[content], meta)
    }

    /// Like [`Root::write_file_in`], with the content given in parts (written in order,
    /// straight from them: a pack of thousands of objects is not copied again).
    pub fn write_parts_in(
        &self,
        dir: &TargetPath,
        name: &str,
        parts: &[&[u8]],
        meta: (u32, u32, u32),
    ) -> Result<StatKey> {
        self.create_with_in(dir, name, meta, |file| {
            for chunk in parts.chunks(512) {
                let mut bufs: Vec<IoSlice<'_>> = chunk
                    .iter()
                    .filter(|b| !b.is_empty())
                    .map(|b| IoSlice::new(b))
                    .collect();
                let mut bufs = &mut bufs[..];
                while !bufs.is_empty() {
                    match rustix::io::writev(file, bufs) {
                        Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
                        Ok(n) => IoSlice::advance_slices(&mut bufs, n),
                        Err(Errno::INTR) => {}
                        Err(e) => return Err(e.into()),
                    }
                }
            }
            Ok(())
        })
    }

    /// Like [`Root::write_file_in`], with the content written by `fill` through a buffer
    /// (a large document is never held whole in memory).
    pub fn write_with_in(
        &self,
        dir: &TargetPath,
        name: &str,
        meta: (u32, u32, u32),
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<StatKey> {
        self.create_with_in(dir, name, meta, |mut file| {
            let mut w = std::io::BufWriter::with_capacity(1 << 16, &mut file);
            fill(&mut w).and_then(|()| w.flush())
        })
    }

    /// Creates `name` in `dir` (unlinking what stood there), lets `fill` write the file
    /// itself (another thread may write it while this one goes on), and gives it its mode
    /// and owner; on any failure the partial file is removed (a full disk, for one). Until
    /// it is written, nobody but its creator may write it, and set-id bits come last.
    pub fn create_with_in(
        &self,
        dir: &TargetPath,
        name: &str,
        (mode, uid, gid): (u32, u32, u32),
        fill: impl FnOnce(&std::fs::File) -> std::io::Result<()>,
    ) -> Result<StatKey> {
        TargetPath::check_name(name)
            .map_err(|e| FsError::new("write", self.path.join(name), std::io::Error::other(e)))?;
        // The full path is only for messages: made when one is needed.
        let path = || {
            dir.join(name)
                .expect("one plain component below a valid path")
        };
        let dirfd = self.dir_or_err(dir)?;
        self.forget_dir(dir, name);
        // The final mode at once when strata owns the file (no chmod to pay for), less
        // any write permission for others; owned by someone else, private until chown.
        let first = if (uid, gid) == self.me {
            mode & 0o755
        } else {
            0o600
        };
        let create = || {
            rustix::fs::openat(
                &*dirfd,
                &*os(name),
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(first),
            )
        };
        let fd = match create() {
            Err(Errno::EXIST) => {
                unlinkat(&*dirfd, &*os(name), AtFlags::empty())
                    .map_err(|e| self.err("remove", &path(), e))?;
                create()
            }
            other => other,
        }
        .map_err(|e| self.err("create", &path(), e))?;
        let file = std::fs::File::from(fd);
        let written = fill(&file)
            .map_err(|e| FsError::new("write", self.host_path(&path()), e))
            .and_then(|()| self.set_fd_meta(&file, &path, (mode, uid, gid)));
        match written {
            Ok(st) => Ok(StatKey::of(&st)),
            Err(e) => {
                let _ = unlinkat(&*dirfd, &*os(name), AtFlags::empty());
                Err(e)
            }
        }
    }

    /// Opens `dir` and frees `name` in it (unlinking what stands there, never following
    /// it); then `make` creates the new entry, which is opened (never followed) with
    /// `flags` and checked to be of the `kind` made: its owner and mode are set through
    /// that handle, never through its path again.
    fn replace_in(
        &self,
        (dir, name): (&TargetPath, &str),
        (what, kind, flags): (&'static str, FileType, OFlags),
        make: impl FnOnce(&OwnedFd, &std::ffi::OsStr) -> std::result::Result<(), Errno>,
    ) -> Result<(OwnedFd, TargetPath)> {
        let path = dir
            .join(name)
            .map_err(|e| FsError::new(what, self.path.join(name), std::io::Error::other(e)))?;
        let dirfd = self.dir_or_err(dir)?;
        self.forget_dir(dir, name);
        let name = os(name);
        match unlinkat(&*dirfd, &*name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(self.err("remove", &path, e)),
        }
        make(&dirfd, &name).map_err(|e| self.err(what, &path, e))?;
        let fd = rustix::fs::openat(
            &*dirfd,
            &*name,
            flags | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err("open", &path, e))?;
        let st = fstat(&fd).map_err(|e| self.err("stat", &path, e))?;
        if FileType::from_raw_mode(st.st_mode) != kind {
            // Replaced between its making and its opening: by someone else.
            return Err(self.err(what, &path, Errno::EXIST));
        }
        Ok((fd, path))
    }

    /// Gives the link that `fd` (opened `O_PATH | O_NOFOLLOW`) is this owner.
    fn chown_link(&self, fd: &OwnedFd, p: &TargetPath, (uid, gid): (u32, u32)) -> Result<()> {
        let st = fstat(fd).map_err(|e| self.err("stat", p, e))?;
        if (st.st_uid, st.st_gid) == (uid, gid) {
            return Ok(());
        }
        rustix::fs::chownat(
            fd,
            "",
            Some(Uid::from_raw(uid)),
            Some(Gid::from_raw(gid)),
            AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| self.err("change owner of", p, e))
    }

    /// Creates a symlink `name` in `dir` pointing at `target`, replacing one already there.
    pub fn symlink_in(
        &self,
        dir: &TargetPath,
        name: &str,
        target: &str,
        uid: u32,
        gid: u32,
    ) -> Result<()> {
        let (fd, path) = self.replace_in(
            (dir, name),
            ("create link", FileType::Symlink, OFlags::PATH),
            |d, name| symlinkat(target, d, name),
        )?;
        self.chown_link(&fd, &path, (uid, gid))
    }

    /// Creates a FIFO `name` in `dir` with this mode and owner, replacing what is there
    /// (never following a link).
    pub fn fifo_in(
        &self,
        dir: &TargetPath,
        name: &str,
        (mode, uid, gid): (u32, u32, u32),
    ) -> Result<()> {
        // Opened for reading without waiting for a writer, so that its owner and mode are
        // set through the handle.
        let (fd, path) = self.replace_in(
            (dir, name),
            (
                "make fifo",
                FileType::Fifo,
                OFlags::RDONLY | OFlags::NONBLOCK,
            ),
            |d, name| rustix::fs::mkfifoat(d, name, Mode::from_raw_mode(0o600)),
        )?;
        self.set_fd_meta(&fd, &|| path.clone(), (mode, uid, gid))
            .map(drop)
    }

    /// Renames `from` to `to`, both in directory `dir` (atomic; replaces what `to` was,
    /// a link included, without following it).
    pub fn rename_in(&self, dir: &TargetPath, from: &str, to: &str) -> Result<()> {
        let dirfd = self.dir_or_err(dir)?;
        self.forget_dir(dir, from);
        self.forget_dir(dir, to);
        let path = dir.join(to).unwrap_or_else(|_| dir.clone());
        renameat(&*dirfd, &*os(from), &*dirfd, &*os(to))
            .map_err(|e| self.err("rename into", &path, e))
    }

    /// Swaps `a` and `b`, both in directory `dir`, in one step (`RENAME_EXCHANGE`): each
    /// name holds what the other held, whatever their types; a program looking at either
    /// sees the old entry or the new one, never nothing. Both must exist.
    pub fn exchange_in(&self, dir: &TargetPath, a: &str, b: &str) -> Result<()> {
        let dirfd = self.dir_or_err(dir)?;
        self.forget_dir(dir, a);
        self.forget_dir(dir, b);
        let path = dir.join(b).unwrap_or_else(|_| dir.clone());
        rustix::fs::renameat_with(&*dirfd, a, &*dirfd, b, rustix::fs::RenameFlags::EXCHANGE)
            .map_err(|e| self.err("exchange", &path, e))
    }

    /// Sets mode (files and directories) and owner of what stands at `p`, never following
    /// a link there: through a handle on it, never through its path.
    pub fn set_meta(&self, p: &TargetPath, mode: Option<u32>, uid: u32, gid: u32) -> Result<()> {
        match mode {
            Some(mode) => {
                let fd = self
                    .open_read(p, OFlags::NOFOLLOW | OFlags::NONBLOCK)
                    .map_err(|e| self.walk_err("open", p, e))?;
                self.set_fd_meta(&fd, &|| p.clone(), (mode, uid, gid))
                    .map(drop)
            }
            None => {
                let fd = self
                    .open_raw(p, OFlags::PATH | OFlags::NOFOLLOW)
                    .map_err(|e| self.walk_err("open", p, e))?;
                self.chown_link(&fd, p, (uid, gid))
            }
        }
    }

    /// The extended attributes of a file or directory: the `names` given (`None` for those
    /// it lacks), or every one it has. overlayfs's own and SELinux labels are never
    /// managed, so never listed.
    pub fn xattrs(&self, p: &TargetPath, names: Option<&[&String]>) -> Result<Xattrs> {
        let fd = self
            .open_read(p, OFlags::NOFOLLOW | OFlags::NONBLOCK)
            .map_err(|e| self.walk_err("open", p, e))?;
        let mut out = Xattrs::new();
        let listed: Vec<String>;
        let names: Vec<&str> = match names {
            Some(n) => n.iter().map(|s| s.as_str()).collect(),
            None => {
                let size = match rustix::fs::flistxattr_query(&fd) {
                    Ok(n) => n,
                    Err(Errno::NOTSUP) => 0,
                    Err(e) => return Err(self.err("list attributes of", p, e)),
                };
                let mut buf = vec![0u8; size];
                let n = rustix::fs::flistxattr(&fd, &mut buf[..])
                    .map_err(|e| self.err("list attributes of", p, e))?;
                listed = buf[..n]
                    .split(|b| *b == 0)
                    .filter(|n| !n.is_empty())
                    .map(|n| String::from_utf8_lossy(n).into_owned())
                    .filter(|n| managed_xattr(n))
                    .collect();
                listed.iter().map(String::as_str).collect()
            }
        };
        for name in names {
            let value = match rustix::fs::fgetxattr_query(&fd, name) {
                Ok(size) => {
                    let mut buf = vec![0u8; size];
                    let n = rustix::fs::fgetxattr(&fd, name, &mut buf[..])
                        .map_err(|e| self.err("read attribute of", p, e))?;
                    Some(hex(&buf[..n]))
                }
                Err(Errno::NODATA | Errno::NOTSUP) => None,
                Err(e) => return Err(self.err("read attribute of", p, e)),
            };
            out.insert(name.to_string(), value);
        }
        Ok(out)
    }

    /// Reads into `have` (what stands at `p`) the values of the attributes `want` manages,
    /// so the two compare.
    pub fn fill_xattrs(&self, p: &TargetPath, want: &Xattrs, have: &mut Snapshot) -> Result<()> {
        if want.is_empty() {
            return Ok(());
        }
        if let Some(x) = have.xattrs_mut() {
            let names: Vec<&String> = want.keys().collect();
            *x = self.xattrs(p, Some(&names))?;
        }
        Ok(())
    }

    /// Sets each attribute to its value, and removes those whose value is `None`.
    pub fn set_xattrs(&self, p: &TargetPath, xattrs: &Xattrs) -> Result<()> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let fd = self
            .open_read(p, OFlags::NOFOLLOW | OFlags::NONBLOCK)
            .map_err(|e| self.walk_err("open", p, e))?;
        for (name, value) in xattrs {
            let done = match value {
                Some(v) => rustix::fs::fsetxattr(
                    &fd,
                    name.as_str(),
                    &unhex(v),
                    rustix::fs::XattrFlags::empty(),
                ),
                None => match rustix::fs::fremovexattr(&fd, name.as_str()) {
                    Err(Errno::NODATA) => Ok(()),
                    other => other,
                },
            };
            done.map_err(|e| self.err("set attribute of", p, e))?;
        }
        Ok(())
    }

    /// Removes a file or link; nothing there is fine.
    pub fn remove(&self, p: &TargetPath) -> Result<()> {
        let parent = match self.parent(p) {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        self.forget_entry(p);
        match unlinkat(&*parent, &*os(p.file_name()), AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err("remove", p, e)),
        }
    }

    /// Removes an empty directory; nothing there is fine.
    pub fn remove_dir(&self, p: &TargetPath) -> Result<()> {
        let parent = match self.parent(p) {
            Err(e) if e.is_not_found() => return Ok(()),
            other => other?,
        };
        self.forget_entry(p);
        match unlinkat(&*parent, &*os(p.file_name()), AtFlags::REMOVEDIR) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(self.err("remove directory", p, e)),
        }
    }

    /// Removes what stands at `p`, a directory with everything below it (links are
    /// removed, never followed); nothing there is fine.
    pub fn remove_tree(&self, p: &TargetPath) -> Result<()> {
        match self.inspect_kind(p)? {
            None => Ok(()),
            Some(DirEntryKind::Dir) => {
                for (name, kind) in self.list(p)? {
                    let child = p.join(&name).map_err(|e| {
                        FsError::new("remove", self.host_path(p), std::io::Error::other(e))
                    })?;
                    match kind {
                        DirEntryKind::Dir => self.remove_tree(&child)?,
                        _ => self.remove(&child)?,
                    }
                }
                self.remove_dir(p)
            }
            Some(_) => self.remove(p),
        }
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
        self.write_with_in(&dir, &tmp, (mode, 0, 0), fill)?;
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
        self.write_with_in(&dir, &tmp, (0o600, 0, 0), fill)?;
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

    /// The device id of the file system holding `p`.
    pub fn device(&self, p: &TargetPath) -> Result<u64> {
        let fd = self
            .open_raw(p, OFlags::PATH)
            .map_err(|e| self.walk_err("open", p, e))?;
        Ok(fstat(&fd).map_err(|e| self.err("stat", p, e))?.st_dev)
    }

    /// Takes the root's commit lock (see [`crate::Lock`]).
    pub fn lock(&self) -> std::result::Result<crate::Lock, crate::LockError> {
        let fd = rustix::fs::openat(
            &*self.fd,
            ".",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| self.err("open", &TargetPath::root(), e))?;
        crate::Lock::exclusive(fd, &self.path)
    }
}

/// Whether strata manages an extended attribute: all but overlayfs's own
/// (`trusted.overlay.*`) and SELinux labels (the policy's).
pub fn managed_xattr(name: &str) -> bool {
    !name.starts_with("trusted.overlay.") && name != "security.selinux"
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TargetPath {
        TargetPath::parse(s).unwrap()
    }

    /// The cached handle on a directory never outlives the directory's path: what is
    /// written after the path was replaced lands in what stands there now.
    #[test]
    fn a_replaced_directory_is_not_written_through_its_old_handle() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("old")).unwrap();
        std::os::unix::fs::symlink("old", t.path().join("d")).unwrap();
        let root = Root::open(t.path()).unwrap();
        // Through the link: the handle on /d is the old directory.
        root.write_file_in(&p("/d"), "a", b"1", (0o644, 0, 0))
            .unwrap();
        assert!(t.path().join("old/a").is_file());
        // The link goes and a real directory takes its place.
        root.remove(&p("/d")).unwrap();
        root.mkdir(&p("/d"), 0o755, 0, 0).unwrap();
        root.write_file_in(&p("/d"), "b", b"2", (0o644, 0, 0))
            .unwrap();
        assert!(t.path().join("d/b").is_file());
        assert!(!t.path().join("old/b").exists());
        // Likewise when an ancestor of the cached directory is renamed over.
        std::fs::create_dir_all(t.path().join("x/y")).unwrap();
        root.write_file_in(&p("/x/y"), "c", b"3", (0o644, 0, 0))
            .unwrap();
        root.symlink_in(&p("/"), "x2", "old", 0, 0).unwrap();
        std::fs::rename(t.path().join("x"), t.path().join("gone")).unwrap();
        root.rename_in(&p("/"), "x2", "x").unwrap();
        assert!(!root.exists(&p("/x/y/c")));
        assert!(root.exists(&p("/x/a")));
    }

    /// What is written is exactly the content given, in any number of parts (none,
    /// empty ones, more than one `writev` takes), with exactly the mode asked for (set-id
    /// bits and write bits for others included), and the metadata returned is the file's.
    #[test]
    fn a_written_file_has_its_content_and_mode_and_the_metadata_returned() {
        use std::os::unix::fs::MetadataExt;
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        let (uid, gid) = root.me;
        let many: Vec<Vec<u8>> = (0..1500)
            .map(|i| format!("part {i}\n").into_bytes())
            .collect();
        let mut parts: Vec<&[u8]> = many.iter().map(|b| &b[..]).collect();
        parts.insert(7, b"");
        let cases: [(&str, &[&[u8]], u32); 4] = [
            ("empty", &[], 0o644),
            ("blank", &[b"", b""], 0o600),
            ("many", &parts, 0o4755),
            ("shared", &[b"a", b"b"], 0o666),
        ];
        for (name, parts, mode) in cases {
            let key = root
                .write_parts_in(&p("/"), name, parts, (mode, uid, gid))
                .unwrap();
            let path = t.path().join(name);
            assert_eq!(std::fs::read(&path).unwrap(), parts.concat(), "{name}");
            let md = std::fs::metadata(&path).unwrap();
            assert_eq!(md.mode() & 0o7777, mode, "{name}");
            assert_eq!(Some(key), root.stat_key(&p(&format!("/{name}"))).unwrap());
        }
    }

    /// A file is written in its directory under a name that is one path component:
    /// anything else is refused, and nothing is written anywhere.
    #[test]
    fn a_name_that_is_not_one_component_is_refused() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("d/e")).unwrap();
        let root = Root::open(t.path()).unwrap();
        for name in ["", ".", "..", "e/f", "../f", "a\0b"] {
            let err = root
                .write_file_in(&p("/d"), name, b"x", (0o644, 0, 0))
                .unwrap_err();
            assert_eq!(err.op, "write", "{name:?}");
        }
        let names = |d: &str| -> Vec<String> {
            let mut v: Vec<String> = std::fs::read_dir(t.path().join(d))
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            v.sort();
            v
        };
        assert_eq!(names(""), ["d"]);
        assert_eq!(names("d"), ["e"]);
        assert!(names("d/e").is_empty());
    }

    /// An exchange swaps a directory tree and a link whole, and what is then looked at
    /// through either name is what stands there now, not a handle kept from before.
    #[test]
    fn an_exchange_swaps_a_tree_and_a_link_and_forgets_old_handles() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(t.path().join("lib/sub")).unwrap();
        std::fs::write(t.path().join("lib/sub/f"), "old").unwrap();
        std::fs::create_dir_all(t.path().join("usr/lib/sub")).unwrap();
        std::fs::write(t.path().join("usr/lib/sub/f"), "new").unwrap();
        std::os::unix::fs::symlink("usr/lib", t.path().join(".lib.new")).unwrap();
        let root = Root::open(t.path()).unwrap();
        assert_eq!(root.read(&p("/lib/sub/f")).unwrap().unwrap(), b"old");
        root.exchange_in(&p("/"), ".lib.new", "lib").unwrap();
        assert!(matches!(
            root.inspect(&p("/lib")).unwrap(),
            Snapshot::Link { .. }
        ));
        assert_eq!(root.read(&p("/lib/sub/f")).unwrap().unwrap(), b"new");
        assert_eq!(root.read(&p("/.lib.new/sub/f")).unwrap().unwrap(), b"old");
        assert_eq!(
            root.inspect_kind(&p("/.lib.new")).unwrap(),
            Some(DirEntryKind::Dir)
        );
        // Both names must exist: nothing is swapped with nothing.
        let err = root.exchange_in(&p("/"), "missing", "lib").unwrap_err();
        assert_eq!(err.op, "exchange");
        assert!(matches!(
            root.inspect(&p("/lib")).unwrap(),
            Snapshot::Link { .. }
        ));
    }

    /// These tests chown: they need root (scripts/test runs as root with `host-tests`).
    fn assert_root() {
        assert!(
            rustix::process::geteuid().is_root(),
            "this test chowns: run it as root"
        );
    }

    fn lchown(path: &std::path::Path, id: u32) {
        std::os::unix::fs::lchown(path, Some(id), Some(id)).unwrap();
    }

    /// A tree with root's `/root/.ssh/authorized_keys` and alice's (uid 1000) home.
    fn alice_and_root() -> tempfile::TempDir {
        use std::os::unix::fs::PermissionsExt;
        let t = tempfile::tempdir().unwrap();
        let at = |rel: &str| t.path().join(rel);
        std::fs::create_dir_all(at("root/.ssh")).unwrap();
        std::fs::create_dir_all(at("home/alice")).unwrap();
        std::fs::create_dir_all(at("etc")).unwrap();
        std::fs::write(
            at("etc/passwd"),
            "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        )
        .unwrap();
        std::fs::write(at("root/.ssh/authorized_keys"), "root key\n").unwrap();
        std::fs::set_permissions(
            at("root/.ssh/authorized_keys"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
        lchown(&at("home/alice"), 1000);
        t
    }

    /// Root's `authorized_keys` as it was made: content, owner and mode.
    fn roots_key_is_untouched(t: &tempfile::TempDir) {
        use std::os::unix::fs::MetadataExt;
        let f = t.path().join("root/.ssh/authorized_keys");
        assert_eq!(std::fs::read_to_string(&f).unwrap(), "root key\n");
        let md = std::fs::symlink_metadata(&f).unwrap();
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o600));
        let names: Vec<_> = std::fs::read_dir(t.path().join("root/.ssh"))
            .unwrap()
            .collect();
        assert_eq!(names.len(), 1, "nothing was added beside it");
    }

    /// Issue 17, item 1: alice, who owns /home/alice, replaced `.ssh` with a link to
    /// root's. Reading, listing, writing and setting metadata through it are refused,
    /// naming both ends and their owners, and root's file is left as it was.
    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "chowns: needs root, as scripts/test runs (feature host-tests)"
    )]
    fn a_users_link_into_roots_files_is_refused_for_reading_and_writing() {
        assert_root();
        for (target, want) in [
            (
                "/root/.ssh",
                "unsafe path transition from /home/alice/.ssh (a link to /root/.ssh, owned by \
                 alice, uid 1000) to / (owned by root, uid 0)",
            ),
            (
                "../../root/.ssh",
                "unsafe path transition from /home/alice (owned by alice, uid 1000) to /home \
                 (owned by root, uid 0), following the link /home/alice/.ssh -> ../../root/.ssh",
            ),
        ] {
            let t = alice_and_root();
            let link = t.path().join("home/alice/.ssh");
            std::os::unix::fs::symlink(target, &link).unwrap();
            lchown(&link, 1000);
            let root = Root::open(t.path()).unwrap();
            let ssh = p("/home/alice/.ssh");
            let keys = p("/home/alice/.ssh/authorized_keys");
            let errors = [
                root.inspect(&keys).map(drop),
                root.read(&keys).map(drop),
                root.xattrs(&keys, None).map(drop),
                root.write_file_in(&ssh, "authorized_keys", b"alice key\n", (0o600, 1000, 1000))
                    .map(drop),
                root.set_meta(&keys, Some(0o600), 1000, 1000),
                root.symlink_in(&ssh, "authorized_keys", "x", 1000, 1000),
                root.remove(&keys),
                root.resolve(&keys).map(drop),
            ];
            for (i, e) in errors.into_iter().enumerate() {
                let e = e.expect_err(&format!("call {i} through {target}"));
                let msg = e.source.to_string();
                assert!(msg.starts_with(want), "call {i} through {target}: {msg}");
                assert!(
                    e.path.starts_with(t.path().join("home/alice/.ssh")),
                    "{}",
                    e.path.display()
                );
            }
            assert!(!root.is_dir_followed(&ssh));
            assert!(root.dir_owner(&ssh).is_err());
            // The link itself is alice's to have: it is seen, not followed.
            assert!(matches!(
                root.inspect(&ssh).unwrap(),
                Snapshot::Link { uid: 1000, .. }
            ));
            roots_key_is_untouched(&t);
        }
    }

    /// What CHASE_SAFE lets through: links that root owns in root's directories (Debian's
    /// `/bin -> usr/bin`, absolute or relative), and a user's relative link to what the
    /// same user owns. What it does not: a user's absolute link (it leads back to the
    /// root, which root owns), and a directory root owns inside a user's directory.
    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "chowns: needs root, as scripts/test runs (feature host-tests)"
    )]
    fn links_are_followed_only_within_one_owner_or_out_of_roots_hands() {
        assert_root();
        let t = alice_and_root();
        let at = |rel: &str| t.path().join(rel);
        std::fs::create_dir_all(at("usr/bin")).unwrap();
        std::os::unix::fs::symlink("usr/bin", at("bin")).unwrap();
        std::os::unix::fs::symlink("/usr/bin", at("sbin")).unwrap();
        std::fs::create_dir_all(at("home/alice/dotfiles/ssh")).unwrap();
        lchown(&at("home/alice/dotfiles"), 1000);
        lchown(&at("home/alice/dotfiles/ssh"), 1000);
        std::os::unix::fs::symlink("dotfiles/ssh", at("home/alice/.ssh")).unwrap();
        lchown(&at("home/alice/.ssh"), 1000);
        std::os::unix::fs::symlink("/home/alice/dotfiles", at("home/alice/abs")).unwrap();
        lchown(&at("home/alice/abs"), 1000);
        std::fs::create_dir_all(at("home/alice/rootdir")).unwrap();
        let root = Root::open(t.path()).unwrap();
        for dir in ["/bin", "/sbin"] {
            root.write_file_in(&p(dir), "hello", b"hi\n", (0o755, 0, 0))
                .unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(at("usr/bin/hello")).unwrap(),
            "hi\n"
        );
        assert_eq!(
            root.resolve(&p("/bin/hello")).unwrap(),
            Some(p("/usr/bin/hello"))
        );
        assert_eq!(root.dir_owner(&p("/bin")).unwrap(), Some((0, 0)));
        root.write_file_in(
            &p("/home/alice/.ssh"),
            "authorized_keys",
            b"alice key\n",
            (0o600, 1000, 1000),
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(at("home/alice/dotfiles/ssh/authorized_keys")).unwrap(),
            "alice key\n"
        );
        assert_eq!(
            root.dir_owner(&p("/home/alice/.ssh")).unwrap(),
            Some((1000, 1000))
        );
        for refused in ["/home/alice/abs/ssh/x", "/home/alice/rootdir/x"] {
            let e = root.inspect(&p(refused)).unwrap_err();
            assert!(
                e.source
                    .to_string()
                    .starts_with("unsafe path transition from "),
                "{e}"
            );
        }
        roots_key_is_untouched(&t);
    }

    /// Owners and modes of links and FIFOs are set through a handle on what strata made,
    /// never through a path that could lead elsewhere: what a link points to keeps its own.
    #[test]
    #[cfg_attr(
        not(feature = "host-tests"),
        ignore = "chowns: needs root, as scripts/test runs (feature host-tests)"
    )]
    fn links_and_fifos_get_their_owner_and_mode_through_a_handle() {
        use std::os::unix::fs::MetadataExt;
        assert_root();
        let t = alice_and_root();
        let root = Root::open(t.path()).unwrap();
        root.symlink_in(&p("/"), "l", "/root/.ssh/authorized_keys", 1000, 1000)
            .unwrap();
        root.set_meta(&p("/l"), None, 1000, 0).unwrap();
        root.fifo_in(&p("/"), "f", (0o640, 1000, 1000)).unwrap();
        let link = std::fs::symlink_metadata(t.path().join("l")).unwrap();
        assert_eq!((link.uid(), link.gid()), (1000, 0));
        let fifo = std::fs::symlink_metadata(t.path().join("f")).unwrap();
        assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
        assert_eq!(
            (fifo.uid(), fifo.gid(), fifo.mode() & 0o7777),
            (1000, 1000, 0o640)
        );
        roots_key_is_untouched(&t);
    }

    /// A name that is not UTF-8 is listed in the form a path keeps it, and can be
    /// inspected, written and removed under that name.
    #[test]
    fn a_name_that_is_not_utf8_is_listed_and_can_be_removed() {
        use std::os::unix::ffi::OsStrExt;
        let t = tempfile::tempdir().unwrap();
        let raw = std::ffi::OsStr::from_bytes(b"bad\xffname");
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d").join(raw), "x").unwrap();
        let root = Root::open(t.path()).unwrap();
        let listed = root.list(&p("/d")).unwrap();
        assert_eq!(listed, [("bad\0ffname".to_string(), DirEntryKind::File)]);
        let child = p("/d").join(&listed[0].0).unwrap();
        assert!(matches!(
            root.inspect(&child).unwrap(),
            Snapshot::File { size: 1, .. }
        ));
        root.write_file_in(&p("/d"), "new\0fe", b"y", (0o644, 0, 0))
            .unwrap();
        assert_eq!(
            std::fs::read(
                t.path()
                    .join("d")
                    .join(std::ffi::OsStr::from_bytes(b"new\xfe"))
            )
            .unwrap(),
            b"y"
        );
        root.remove(&child).unwrap();
        root.remove(&p("/d/new\0fe")).unwrap();
        assert_eq!(std::fs::read_dir(t.path().join("d")).unwrap().count(), 0);
    }

    /// A directory found missing is looked for again once it has been created.
    #[test]
    fn a_directory_created_after_being_found_missing_is_seen() {
        let t = tempfile::tempdir().unwrap();
        let root = Root::open(t.path()).unwrap();
        assert!(root.inspect(&p("/d/f")).unwrap().is_absent());
        root.mkdir(&p("/d"), 0o755, 0, 0).unwrap();
        root.write_file_in(&p("/d"), "f", b"x", (0o644, 0, 0))
            .unwrap();
        assert!(!root.inspect(&p("/d/f")).unwrap().is_absent());
        // Made by another program (a deferred command, a script in the sandbox): seen
        // once the root is told that others ran.
        assert!(!root.exists(&p("/e/g")));
        std::fs::create_dir(t.path().join("e")).unwrap();
        std::fs::write(t.path().join("e/g"), "y").unwrap();
        root.forget_dirs();
        assert!(root.exists(&p("/e/g")));
    }
}
