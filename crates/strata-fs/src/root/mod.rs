//! A target root where every path resolves as if chrooted, and never from what one user
//! owns to what another owns (see [`crate::walk`]): the handle on the root, the
//! directories walked so far (kept for their siblings), and the errors that name a path.
//! What is done at a path is in the submodules: reading, writing, extended attributes,
//! and making writes durable.

mod durable;
mod read;
mod write;
mod xattr;

#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::rc::Rc;

use rustix::fs::{AtFlags, Mode, OFlags, Stat, fstat, statat};
use rustix::io::Errno;
use strata_types::TargetPath;

pub use durable::Flusher;
pub(crate) use read::read_sized;
pub use read::{DirEntryKind, Expected};
pub use xattr::managed_xattr;

use crate::stamp::Stamps;
use crate::walk::{self, Node, WalkError, os};
use crate::{FsError, Result, UserDb};

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
