//! Writing the target: files, directories, links and FIFOs made with their owner and
//! mode set through a handle on what was made (never through a path that could lead
//! elsewhere), renames and exchanges, removals.

use std::io::{IoSlice, Write};
use std::os::fd::{AsFd, OwnedFd};

use rustix::fs::{
    AtFlags, FileType, Mode, OFlags, Stat, fchmod, fchown, fstat, mkdirat, renameat, symlinkat,
    unlinkat,
};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use strata_types::{Meta, Snapshot, StatKey, TargetPath};

use super::{DirEntryKind, Root};
use crate::stamp::key_of;
use crate::walk::os;
use crate::{FsError, Result};

impl Root {
    /// Creates a directory with exactly this mode and owner.
    pub fn mkdir(&self, p: &TargetPath, meta: Meta) -> Result<()> {
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
        self.set_fd_meta(&fd, &|| p.clone(), meta).map(drop)
    }

    /// Creates every missing directory of `p` (mode 0755, owned by root), for strata's own
    /// state.
    pub fn create_dirs(&self, p: &TargetPath) -> Result<()> {
        let mut todo: Vec<TargetPath> = std::iter::once(p.clone()).chain(p.ancestors()).collect();
        todo.reverse();
        for dir in todo {
            if !self.is_dir_followed(&dir) {
                match self.mkdir(&dir, Meta::root(0o755)) {
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
                match self.mkdir(&dir, Meta::root(mode)) {
                    Err(e) if e.source.kind() == std::io::ErrorKind::AlreadyExists => {}
                    other => other?,
                }
            } else if dir == *base
                && let Snapshot::Dir { mode, uid, gid, .. } = self.inspect(&dir)?
                && mode & 0o077 != 0
            {
                let mode = mode & !0o077;
                self.set_meta(&dir, Meta { mode, uid, gid })?;
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
        Meta { mode, uid, gid }: Meta,
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
        meta: Meta,
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
        meta: Meta,
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
        meta: Meta,
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
        meta: Meta,
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
        let first = if (meta.uid, meta.gid) == self.me {
            meta.mode & 0o755
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
            .and_then(|()| self.set_fd_meta(&file, &path, meta));
        match written {
            Ok(st) => Ok(key_of(&st)),
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
    pub fn fifo_in(&self, dir: &TargetPath, name: &str, meta: Meta) -> Result<()> {
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
        self.set_fd_meta(&fd, &|| path.clone(), meta).map(drop)
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

    /// Sets the mode and owner of the file, directory or FIFO at `p`, never following a
    /// link there: through a handle on it, never through its path.
    pub fn set_meta(&self, p: &TargetPath, meta: Meta) -> Result<()> {
        let fd = self
            .open_read(p, OFlags::NOFOLLOW | OFlags::NONBLOCK)
            .map_err(|e| self.walk_err("open", p, e))?;
        self.set_fd_meta(&fd, &|| p.clone(), meta).map(drop)
    }

    /// Sets the owner of the link at `p` (not of what it points to): through a handle on
    /// the link itself.
    pub fn set_link_owner(&self, p: &TargetPath, uid: u32, gid: u32) -> Result<()> {
        let fd = self
            .open_raw(p, OFlags::PATH | OFlags::NOFOLLOW)
            .map_err(|e| self.walk_err("open", p, e))?;
        self.chown_link(&fd, p, (uid, gid))
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
}
