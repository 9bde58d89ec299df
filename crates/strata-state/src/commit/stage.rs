//! Staging: everything a commit writes before its commit point, where nothing the node
//! uses changes: the store's new objects, the generation file, and each new file, link
//! or directory under a temporary name (a new tree whole, under its top's).

use std::borrow::Cow;
use std::collections::HashSet;

use strata_fs::Stamp;
use strata_meter::Meter;
use strata_types::{ContentSource, Generation, Hash, Meta, Snapshot, StatKey, Step, TargetPath};

use super::flush::flush_on_tick;
use super::{Commit, Op, meta, parent, staged_top, temp_name};
use crate::state::state_path;
use crate::{StateError, Store, crashpoint};

/// A store object: its hash and its bytes.
pub(super) type Object<'c> = (Hash, Cow<'c, [u8]>);

/// Below this many ops, a commit flushes only once staged (see [`Commit::run`]).
const EARLY_FLUSH_MIN: usize = 512;

/// The objects a commit adds to the store.
pub(super) struct Needed {
    /// Contents the commit replaces, read from the target (and checked) before the journal.
    pub(super) read: Vec<(Hash, Vec<u8>)>,
    /// The rest, in the order they are staged, with a path where the target holds the
    /// content if no source does.
    pub(super) wanted: Vec<(Hash, TargetPath)>,
    /// Those of them to seal (see [`Op::sealed`]): almost always none.
    pub(super) sealed: HashSet<Hash>,
}

impl Needed {
    /// How many objects are stored in clear.
    pub(super) fn plain(&self) -> usize {
        self.read.len() + self.wanted.len() - self.sealed.len()
    }
}

/// Writes the generation file (on a helper thread, at a lower priority).
fn write_generation(file: impl std::io::Write, generation: &Generation) -> std::io::Result<()> {
    strata_meter::background_thread();
    let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
    serde_json::to_writer(&mut w, generation).map_err(std::io::Error::other)?;
    std::io::Write::flush(&mut w)
}

impl Commit<'_, '_> {
    /// What the store must gain so that an undo, a redo or a later rollback works offline:
    /// the content each op replaces or writes, and every file the new generation manages
    /// or may restore. Checks that what the plan saw is still on the target, and that
    /// the node's key is there when a content is to be sealed.
    pub(super) fn needed(&self, generation: &Generation) -> Result<Needed, StateError> {
        let store = self.state.store();
        let mut seen = HashSet::new();
        let mut read = Vec::new();
        let sensitive: HashSet<&TargetPath> = (self.journal.ops.iter())
            .filter(|op| op.sealed)
            .map(|op| &op.path)
            .chain(
                (generation.entries.iter())
                    .filter(|e| e.sensitive)
                    .map(|e| &e.path),
            )
            .collect();
        let mut sealed = HashSet::new();
        let mut seal = |path: &TargetPath, hash: Hash| {
            if !sensitive.is_empty() && sensitive.contains(path) {
                sealed.insert(hash);
            }
        };
        for op in &self.journal.ops {
            if let Some(hash) = op.before.hash()
                && !seen.contains(&hash)
                && !store.contains(&hash)?
            {
                let bytes = self.root().read(&op.path)?.unwrap_or_default();
                if Hash::of(&bytes) != hash {
                    return Err(StateError::Changed {
                        path: op.path.clone(),
                    });
                }
                seen.insert(hash);
                seal(&op.path, hash);
                read.push((hash, bytes));
            }
        }
        // What is written first, in the order it is staged.
        let wanted = (self.journal.ops.iter())
            .map(|op| (&op.path, op.after.hash()))
            .chain(generation.entries.iter().map(|e| (&e.path, e.state.hash())))
            .chain(generation.originals.iter().map(|(p, s)| (p, s.hash())));
        let mut out = Vec::with_capacity(self.journal.ops.len());
        for (path, hash) in wanted {
            let Some(hash) = hash else { continue };
            if seen.contains(&hash) || store.contains(&hash)? {
                continue;
            }
            seen.insert(hash);
            seal(path, hash);
            out.push((hash, path.clone()));
        }
        if !sealed.is_empty() {
            store.can_seal()?;
        }
        Ok(Needed {
            read,
            wanted: out,
            sealed,
        })
    }

    /// The needed objects' bytes: from `contents`, else (a file strata starts to manage
    /// unchanged) from the target.
    pub(super) fn objects<'c>(
        &self,
        needed: Needed,
        contents: &'c dyn ContentSource,
    ) -> Result<Vec<Object<'c>>, StateError> {
        let mut out: Vec<Object<'c>> = Vec::with_capacity(needed.read.len() + needed.wanted.len());
        out.extend(needed.read.into_iter().map(|(h, b)| (h, Cow::Owned(b))));
        for (hash, path) in needed.wanted {
            let bytes = match contents.content(&hash) {
                Some(b) => b,
                None => {
                    let bytes = self.root().read(&path)?.unwrap_or_default();
                    if Hash::of(&bytes) != hash {
                        return Err(StateError::MissingContent { hash, path });
                    }
                    Cow::Owned(bytes)
                }
            };
            out.push((hash, bytes));
        }
        Ok(out)
    }

    /// Stages every op while another thread writes the generation file; at each quarter
    /// of a large commit, `tick` has the flusher of [`Commit::run`] write back what is
    /// staged so far (so that the flush before the commit point, the one that proves it
    /// durable, waits for little).
    pub(super) fn stage_all(
        &self,
        generation: &Generation,
        contents: &dyn ContentSource,
        tick: &std::sync::mpsc::Sender<()>,
    ) -> Result<(), StateError> {
        let total = self.journal.ops.len();
        let every = if total < EARLY_FLUSH_MIN {
            usize::MAX
        } else {
            total / 4
        };
        let gens = state_path("generations");
        crate::state::private_dirs(self.root(), &gens)?;
        let name = format!("{}.json", self.journal.generation);
        let store = self.state.store();
        let mut staged = Ok(());
        let written = self
            .root()
            .create_with_in(&gens, &name, Meta::root(0o600), |file| {
                std::thread::scope(|s| {
                    let json = s.spawn(move || write_generation(file, generation));
                    staged = self.journal.ops.iter().enumerate().try_for_each(|(i, op)| {
                        if i == total / 2 {
                            crashpoint!("commit-mid-stage");
                        }
                        if i > 0 && i % every == 0 {
                            let _ = tick.send(());
                        }
                        self.stage(op, contents, &store)
                    });
                    json.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
                })
            });
        staged?;
        written?;
        Ok(())
    }

    /// Stages everything while the flusher writes back early, then writes the `current.new`
    /// link and the store's new objects. Returns the meter of the store's writing, which
    /// ends with the sync the caller makes.
    pub(super) fn prepare(
        &self,
        generation: &Generation,
        (contents, mut needed): (&dyn ContentSource, Needed),
        meter: Meter,
        steps: &mut Vec<Step>,
    ) -> Result<Meter, StateError> {
        let n = self.journal.generation;
        let flushers = self.flushers()?;
        // The last early write-back still runs while the store is written.
        let (prepared, early) = std::thread::scope(|s| {
            let (tick, ticks) = std::sync::mpsc::channel::<()>();
            let flusher = s.spawn(move || flush_on_tick(&ticks, flushers));
            let prepared = (|| {
                self.stage_all(generation, contents, &tick)?;
                drop(tick);
                self.root().symlink_in(
                    &state_path(""),
                    "current.new",
                    &format!("generations/{n}.json"),
                    0,
                    0,
                )?;
                steps.push(meter.finish("stage"));
                let meter = Meter::start();
                let sealed = std::mem::take(&mut needed.sealed);
                let mut objects = self.objects(needed, contents)?;
                let store = self.state.store();
                if !sealed.is_empty() {
                    for (hash, bytes) in &objects {
                        if sealed.contains(hash) {
                            store.put_sealed(hash, bytes)?;
                        }
                    }
                    objects.retain(|(hash, _)| !sealed.contains(hash));
                }
                store.put_all(&objects, self.journal.pack.as_deref().expect("named"))?;
                Ok::<_, StateError>(meter)
            })();
            let early = flusher
                .join()
                .unwrap_or_else(|p| std::panic::resume_unwind(p));
            (prepared, early)
        });
        let meter = prepared?;
        // An early flush's write-back error is not reported again to the same handle.
        early?;
        Ok(meter)
    }

    /// Where `path`, below the new directory `top` staged whole, is staged: its directory
    /// inside `top`'s temporary name, and its own name.
    pub(super) fn staged_at<'p>(
        &self,
        top: &TargetPath,
        path: &'p TargetPath,
    ) -> (TargetPath, &'p str) {
        let name = path.file_name();
        let above = path.parent_str().expect("below a staged top");
        let mut last = self.last_staged.borrow_mut();
        if let Some((dir, staged)) = &*last
            && dir == above
        {
            return (staged.clone(), name);
        }
        let below = &path.as_str()[top.as_str().len() + 1..];
        let inside = match below.rsplit_once('/') {
            Some((dirs, _)) => format!("{}/{dirs}", temp_name(top)),
            None => temp_name(top),
        };
        let dir = parent(top).join(&inside).expect("a path below the root");
        *last = Some((above.to_string(), dir.clone()));
        (dir, name)
    }

    /// Writes what an op needs before the commit point, where nothing the node uses
    /// changes: a new directory whose parent is not new is made under its temporary name
    /// (`.<name>.strata-new`), and what lies below it is made inside under final names, so
    /// one rename after the commit point puts the whole tree in place; so is a directory
    /// that takes the place of a file or link (one exchange puts it in place, see
    /// [`Commit::swap`]); other new files and links go under temporary names beside their
    /// targets, and other new directories are made in place.
    pub(super) fn stage(
        &self,
        op: &Op,
        contents: &dyn ContentSource,
        store: &Store<'_>,
    ) -> Result<(), StateError> {
        let top = staged_top(&op.path, &self.whole.borrow());
        let typed = self.typed.contains(&op.path);
        if typed {
            // What an earlier, undone commit may have left.
            let temp = parent(&op.path).join(&temp_name(&op.path)).expect("a name");
            self.root().remove_tree(&temp)?;
        }
        match &op.after {
            Snapshot::Dir { .. } if typed => {
                // A directory in place of a file or link: staged whole, as a new one.
                let temp = parent(&op.path).join(&temp_name(&op.path)).expect("a name");
                self.root().mkdir(&temp, meta(&op.after))?;
                self.root().set_xattrs(&temp, op.after.xattrs())?;
                self.whole.borrow_mut().insert(op.path.clone());
            }
            Snapshot::File { .. } | Snapshot::Link { .. } | Snapshot::Fifo { .. } => {
                let (dir, name) = match &top {
                    Some(top) => {
                        let (dir, name) = self.staged_at(top, &op.path);
                        (dir, Cow::Borrowed(name))
                    }
                    None => (parent(&op.path), Cow::Owned(temp_name(&op.path))),
                };
                let key = self.write_temp(&op.path, (&dir, &name), &op.after, contents, store)?;
                if let (Some(key), Some(hash), Some(_)) = (key, op.after.hash(), top) {
                    self.fresh
                        .borrow_mut()
                        .insert(op.path.clone(), Stamp { key, hash });
                }
            }
            Snapshot::Dir { .. } if op.before.is_absent() && top.is_some() => {
                let (dir, name) = self.staged_at(top.as_ref().expect("below a top"), &op.path);
                let at = dir.join(name).expect("a plain name");
                self.root().mkdir(&at, meta(&op.after))?;
                self.root().set_xattrs(&at, op.after.xattrs())?;
            }
            Snapshot::Dir { .. } if op.before.is_absent() && !self.root().exists(&op.path) => {
                let dir = parent(&op.path);
                let temp = dir.join(&temp_name(&op.path)).expect("a plain name");
                // What an earlier, undone commit may have left.
                self.root().remove_tree(&temp)?;
                self.root().mkdir(&temp, meta(&op.after))?;
                self.root().set_xattrs(&temp, op.after.xattrs())?;
                self.whole.borrow_mut().insert(op.path.clone());
            }
            Snapshot::Dir { .. } if op.before.is_absent() => {
                // strata's own state directory may have just created it.
                match self.root().mkdir(&op.path, meta(&op.after)) {
                    Err(e)
                        if e.source.kind() == std::io::ErrorKind::AlreadyExists
                            && self.root().is_dir_followed(&op.path) =>
                    {
                        self.root().set_meta(&op.path, meta(&op.after))?;
                    }
                    other => other?,
                }
                self.root().set_xattrs(&op.path, op.after.xattrs())?;
            }
            _ => {}
        }
        Ok(())
    }

    /// Writes the file or link `path` as `name` in `dir` (where it is staged), with its
    /// final mode and owner; a file's content comes from `contents`, else from the store.
    /// Returns a file's metadata once written, when it has no extended attributes to set.
    pub(super) fn write_temp(
        &self,
        path: &TargetPath,
        (dir, temp): (&TargetPath, &str),
        state: &Snapshot,
        contents: &dyn ContentSource,
        store: &Store<'_>,
    ) -> Result<Option<StatKey>, StateError> {
        match state {
            Snapshot::File { hash, .. } => {
                let bytes = match contents.content(hash) {
                    Some(b) => b,
                    None => Cow::Owned(store.get(hash)?.ok_or(StateError::MissingContent {
                        hash: *hash,
                        path: path.clone(),
                    })?),
                };
                let key = self.root().write_file_in(dir, temp, &bytes, meta(state))?;
                if state.xattrs().is_empty() {
                    return Ok(Some(key));
                }
                // After the owner and mode: the kernel drops file capabilities on chown.
                let temp = dir.join(temp).expect("a plain name");
                self.root().set_xattrs(&temp, state.xattrs())?;
            }
            Snapshot::Link { target, uid, gid } => {
                self.root().symlink_in(dir, temp, target, *uid, *gid)?;
            }
            Snapshot::Fifo { .. } => {
                self.root().fifo_in(dir, temp, meta(state))?;
            }
            _ => {}
        }
        Ok(None)
    }
}
