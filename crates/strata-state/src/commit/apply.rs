//! Applying: bringing each path to its state after the commit point, and again in a redo
//! or an undo (idempotent, from what is staged or else from the store), and publishing
//! the new generation.

use strata_types::{Snapshot, TargetPath};

use super::{Commit, Op, meta, parent, staged_top, temp_name};
use crate::state::state_path;
use crate::{StateError, Store, crashpoint, failpoint};

impl Commit<'_, '_> {
    /// After the commit point: puts each new tree staged whole in place with one rename,
    /// and brings every other path to its new state.
    pub(super) fn apply_all(&self) -> Result<(), StateError> {
        let (total, store) = (self.journal.ops.len(), self.state.store());
        let whole = self.whole.borrow();
        for (i, op) in self.journal.ops.iter().enumerate() {
            if i == total / 2 {
                crashpoint!("commit-mid-apply");
            }
            if whole.contains(&op.path) && op.before.is_absent() {
                // The whole new tree in one rename. Its failing is an error, not a reason
                // to fall back: what lies below it is staged nowhere else.
                let dir = parent(&op.path);
                self.root()
                    .rename_in(&dir, &temp_name(&op.path), op.path.file_name())?;
            } else if staged_top(&op.path, &whole).is_none() && !self.below_replaced(&op.path) {
                // (A type change swaps its staged tree or file in: see `swap`.)
                self.ensure(op, &op.after, &store)?;
            }
        }
        Ok(())
    }

    /// Brings `op.path` to `want`, using the staged file when there is one and the store
    /// otherwise. Doing it twice is the same as doing it once.
    pub(super) fn ensure(
        &self,
        op: &Op,
        want: &Snapshot,
        store: &Store<'_>,
    ) -> Result<(), StateError> {
        let root = self.root();
        let path = &op.path;
        if let Some(top) = self.shadowed(path)? {
            // Below a type change whose path is not a directory (yet, or any more):
            // nothing stands here of its own, and what the path leads to is not this op's.
            return match want {
                Snapshot::Absent => Ok(()),
                _ => Err(StateError::Fs(strata_fs::FsError::new(
                    "write",
                    root.host_path(path),
                    std::io::Error::other(format!("{top} is not a directory")),
                ))),
            };
        }
        if self.typed.contains(path) {
            return self.swap(op, want, store);
        }
        let dir = parent(path);
        let temp = dir.join(&temp_name(path)).expect("a plain name");
        if want == &op.after {
            // The staged file, if it is there (it is not once a redo renamed it).
            match root.rename_in(&dir, &temp_name(path), path.file_name()) {
                Err(e) if e.is_not_found() => {}
                other => return Ok(other?),
            }
        }
        // A staged file, or a new directory's staged tree (see `stage`).
        root.remove_tree(&temp)?;
        let mut have = root.inspect(path)?;
        root.fill_xattrs(path, want.xattrs(), &mut have)?;
        if want.satisfied_by(&have) {
            return Ok(());
        }
        match want {
            Snapshot::Absent => match have {
                Snapshot::Dir { .. } => match root.remove_dir(path) {
                    // It holds strata's own state: forget_state takes care of it.
                    Err(_) if state_path("").starts_with(path) => {}
                    other => other?,
                },
                _ => root.remove(path)?,
            },
            Snapshot::File { .. } | Snapshot::Link { .. } | Snapshot::Fifo { .. } => {
                self.write_temp(path, (&dir, &temp_name(path)), want, store, store)?;
                root.rename_in(&dir, &temp_name(path), path.file_name())?;
            }
            Snapshot::Dir { .. } => {
                if have.is_absent() {
                    root.mkdir(path, meta(want))?;
                } else {
                    root.set_meta(path, meta(want))?;
                }
                root.set_xattrs(path, want.xattrs())?;
            }
            Snapshot::Other { .. } => {}
        }
        Ok(())
    }

    /// Brings the path of a type change to `want` (its state before or after the commit)
    /// by swapping it with what stands under its temporary name beside it: the staged file,
    /// link or tree; or, in an undo, the original that the swap put there; or else a copy
    /// made from the store. `RENAME_EXCHANGE` swaps the two in one step, whatever their
    /// types, so a program looking at the path sees the whole old tree or the new entry,
    /// never a tree half removed nor nothing (`/lib` in a usrmerge). What the swap put
    /// aside is removed after it, deepest first. Doing it twice is the same as doing it
    /// once: once the path is as wanted, only what lies aside is removed.
    pub(super) fn swap(
        &self,
        op: &Op,
        want: &Snapshot,
        store: &Store<'_>,
    ) -> Result<(), StateError> {
        let root = self.root();
        let path = &op.path;
        let dir = parent(path);
        let name = temp_name(path);
        let temp = dir.join(&name).expect("a plain name");
        let mut have = root.inspect(path)?;
        root.fill_xattrs(path, want.xattrs(), &mut have)?;
        if !want.satisfied_by(&have) {
            let mut aside = root.inspect(&temp)?;
            root.fill_xattrs(&temp, want.xattrs(), &mut aside)?;
            // A directory aside is the one wanted: the staged tree, or the original one
            // (what it held is restored by the ops below it, from the store).
            let usable = match (want, &aside) {
                (Snapshot::Dir { .. }, Snapshot::Dir { .. }) => true,
                _ => want.satisfied_by(&aside),
            };
            if !usable {
                root.remove_tree(&temp)?;
                match want {
                    Snapshot::Dir { .. } => {
                        root.mkdir(&temp, meta(want))?;
                        root.set_xattrs(&temp, want.xattrs())?;
                    }
                    _ => {
                        self.write_temp(path, (&dir, &name), want, store, store)?;
                    }
                }
            }
            if have.is_absent() {
                root.rename_in(&dir, &name, path.file_name())?;
            } else {
                root.exchange_in(&dir, &name, path.file_name())?;
            }
            crashpoint!("commit-after-exchange");
        }
        self.remove_aside(&temp)
    }

    /// Removes what a type change put aside under `temp` (or staged there and no longer
    /// needs): a replaced directory's entries first, then the rest.
    pub(super) fn remove_aside(&self, temp: &TargetPath) -> Result<(), StateError> {
        let root = self.root();
        if root.inspect_kind(temp)? == Some(strata_fs::DirEntryKind::Dir) {
            for (i, (name, _)) in root.list(temp)?.into_iter().enumerate() {
                root.remove_tree(&temp.join(&name).expect("a listed name"))?;
                if i == 0 {
                    crashpoint!("commit-mid-replace");
                    failpoint!("commit-mid-replace-fails", root.host_path(temp));
                }
            }
        }
        Ok(root.remove_tree(temp)?)
    }

    /// Whether `path` lies below a directory a type change replaces: it goes with that
    /// directory (see [`Commit::swap`]), not on its own.
    pub(super) fn below_replaced(&self, path: &TargetPath) -> bool {
        !self.replaced.is_empty() && path.ancestor_strs().any(|a| self.replaced.contains(a))
    }

    /// The path of a type change above `path` that is not a directory now, if any: then
    /// nothing stands at `path` of its own, and looking there would follow a link
    /// (`/lib/x` below `/lib -> usr/lib` is `/usr/lib/x`).
    pub(super) fn shadowed(&self, path: &TargetPath) -> Result<Option<&TargetPath>, StateError> {
        if self.typed.is_empty() {
            return Ok(None);
        }
        for a in path.ancestor_strs() {
            if let Some(top) = self.typed.get(a)
                && self.root().inspect_kind(top)? != Some(strata_fs::DirEntryKind::Dir)
            {
                return Ok(Some(top));
            }
        }
        Ok(None)
    }

    /// Makes the new generation current.
    pub(super) fn publish(&self) -> Result<(), StateError> {
        let root = self.root();
        let state_dir = state_path("");
        self.sync_all()?;
        if root.inspect(&state_path("current.new"))?.is_absent() {
            root.replace_symlink(
                &state_path("current"),
                &format!("generations/{}.json", self.journal.generation),
            )?;
        } else {
            root.rename_in(&state_dir, "current.new", "current")?;
            root.fsync(&state_dir)?;
        }
        crashpoint!("commit-after-publish");
        Ok(())
    }
}
