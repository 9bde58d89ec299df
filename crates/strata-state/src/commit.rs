//! The journaled commit and its recovery.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::{BTreeMap, BTreeSet, HashSet};

use serde::{Deserialize, Serialize};
use strata_fs::Meter;
use strata_fs::{Flusher, Root, Stamp, Stamps, StatKey};
use strata_types::{
    Activation, ContentSource, Generation, Hash, Meta, Report, Snapshot, Step, TargetPath,
    apply_order,
};

use crate::activate::Scheduled;
use crate::state::state_path;
use crate::{State, StateError, Store, crashpoint, failpoint};

/// One path's change: the state before and after. The journal holds a list of these, so
/// either state can be reached again from the journal and the store alone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Op {
    /// The path.
    pub path: TargetPath,
    /// What stands there before the commit.
    pub before: Snapshot,
    /// What stands there after it.
    pub after: Snapshot,
}

#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Journal {
    generation: u64,
    ops: Vec<Op>,
    /// Loose store objects this commit adds (an undo removes them, and its pack).
    #[serde(default)]
    added: Vec<Hash>,
    /// State directories this commit creates (an undo removes them when empty).
    #[serde(default)]
    created: Vec<TargetPath>,
    /// The pack this commit writes, if it writes one.
    #[serde(default)]
    pack: Option<String>,
    /// Commands to run on the target once the commit is published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    commands: Vec<Scheduled>,
}

impl Journal {
    pub fn exists(root: &Root) -> Result<bool, StateError> {
        Ok(!root.inspect(&state_path("journal"))?.is_absent())
    }

    /// Every store object an undo or a redo of this commit may read.
    pub(crate) fn hashes(&self) -> impl Iterator<Item = Hash> + '_ {
        (self.ops.iter())
            .flat_map(|op| [op.before.hash(), op.after.hash()])
            .flatten()
            .chain(self.added.iter().copied())
    }

    /// The pack this commit writes, if it writes one.
    pub(crate) fn pack(&self) -> Option<&str> {
        self.pack.as_deref()
    }

    pub(crate) fn read(root: &Root) -> Result<Option<Journal>, StateError> {
        let path = state_path("journal");
        let Some(bytes) = root.read(&path)? else {
            return Ok(None);
        };
        match serde_json::from_slice(&bytes) {
            Ok(j) => Ok(Some(j)),
            // The journal is written whole and renamed into place; a damaged one was never
            // the real journal.
            Err(e) => Err(StateError::Corrupt {
                path: root.host_path(&path).display().to_string(),
                message: e.to_string(),
            }),
        }
    }
}

/// A commit in progress; see the crate documentation for its phases.
#[derive(Debug)]
pub(crate) struct Commit<'s, 'r> {
    state: &'s State<'r>,
    journal: Journal,
    /// New directories staged whole in this process: made under their temporary name,
    /// with everything below them inside under final names (see [`Commit::stage`]).
    whole: RefCell<HashSet<TargetPath>>,
    /// Stamps of the files written inside those trees, taken as they were written (see
    /// [`Committed::stamps`]).
    fresh: RefCell<Stamps>,
    /// A flusher for each file system the commit writes to, opened once (see
    /// [`Commit::flushers`]).
    flushers: OnceCell<Vec<Flusher>>,
    /// The last directory [`Commit::staged_at`] gave, by the directory it stands for:
    /// siblings are staged one after another.
    last_staged: RefCell<Option<(String, TargetPath)>>,
    /// The paths of the ops that are type changes (a directory replaced by a file, link
    /// or FIFO, or the reverse; see [`Commit::swap`]), and of those the directories
    /// replaced. Empty in almost every commit.
    typed: HashSet<TargetPath>,
    replaced: HashSet<TargetPath>,
}

/// What a commit did.
#[derive(Debug)]
pub struct Committed {
    /// The generation it recorded.
    pub generation: Generation,
    /// The metrics of its phases (stage, store, commit, activate).
    pub steps: Vec<Step>,
    /// How each deferred command went.
    pub activations: Vec<Activation>,
    /// Stamps of files strata wrote itself in a new directory tree, from the metadata
    /// the file had once written (no read back): until the tree was renamed into place
    /// after the commit point, no other program knew its staged name, and each ctime is
    /// older than the file system's "now" read before that rename, so any later write
    /// changes it (see docs/state.md).
    pub stamps: Stamps,
}

/// What finishing an interrupted commit did (see [`State::recovered`]).
#[derive(Debug, Clone)]
pub struct Recovered {
    /// The generation whose commit was finished.
    pub generation: u64,
    /// How each of its deferred commands went: run now, or run (or interrupted) before.
    pub activations: Vec<Activation>,
}

fn temp_name(path: &TargetPath) -> String {
    format!(".{}.strata-new", path.file_name())
}

/// The new directory staged whole (see [`Commit::stage`]) that `path` lies below, if any.
fn staged_top(path: &TargetPath, whole: &HashSet<TargetPath>) -> Option<TargetPath> {
    if whole.is_empty() {
        return None;
    }
    let top = path.ancestor_strs().find(|a| whole.contains(*a))?;
    whole.get(top).cloned()
}

fn parent(path: &TargetPath) -> TargetPath {
    path.parent().unwrap_or_else(TargetPath::root)
}

/// The mode, owner and group of a file, directory or FIFO that an op makes.
fn meta(state: &Snapshot) -> Meta {
    state.meta().expect("a file, directory or FIFO")
}

impl<'r> State<'r> {
    /// Commits `ops` and records `generation` (its number is assigned here), all or
    /// nothing, then runs `commands` on the target. On error the target is as it was,
    /// unless undoing also failed (then the error says so and the next command finishes
    /// the recovery).
    /// Returns the generation, the metrics of the commit's phases, how each command went
    /// and the stamps taken while staging.
    pub fn commit(
        &self,
        mut ops: Vec<Op>,
        mut generation: Generation,
        contents: &dyn ContentSource,
        commands: Vec<Scheduled>,
    ) -> Result<Committed, StateError> {
        let mut steps = Vec::new();
        let meter = Meter::start();
        generation.number = self.next_number()?;
        generation.commands = commands.iter().map(|c| c.call.clone()).collect();
        order(&mut ops);
        let created: Vec<TargetPath> = state_dirs()
            .into_iter()
            .filter(|d| !self.root.is_dir_followed(d))
            .collect();
        let mut commit = Commit::new(
            self,
            Journal {
                generation: generation.number,
                ops,
                added: Vec::new(),
                created,
                pack: None,
                commands,
            },
        );
        let needed = match commit.needed(&generation) {
            Ok(n) => n,
            Err(e) => return Err(commit.abandon(e)),
        };
        // Loose objects are listed for an undo to remove; a pack goes whole.
        if !Store::packs(needed.read.len() + needed.wanted.len()) {
            commit.journal.added = (needed.read.iter().map(|(h, _)| *h))
                .chain(needed.wanted.iter().map(|(h, _)| *h))
                .collect();
        }
        commit.journal.pack = Some(format!("g{}", generation.number));
        let write_journal = || -> Result<(), StateError> {
            crate::state::private_dirs(self.root, &state_path(""))?;
            for marker in ["commit", "undo"] {
                self.root.remove(&state_path(marker))?;
            }
            self.root.write_atomic_with(&state_path("journal"), |w| {
                serde_json::to_writer(w, &commit.journal).map_err(std::io::Error::other)
            })?;
            Ok(())
        };
        let order: Vec<Hash> = needed.wanted.iter().map(|(h, _)| *h).collect();
        let mut past_point = false;
        let mut parts = Some((needed, meter));
        let mut ran = None;
        // From here on, what is to be written is read (and rendered) on another core, in
        // the order it is staged: the journal's writing gives that core a head start.
        contents.ahead(&order, &mut || {
            let (needed, meter) = parts.take().expect("run once");
            ran = Some(write_journal().map(|()| {
                crashpoint!("commit-after-journal");
                commit.run(
                    &generation,
                    (contents, needed),
                    meter,
                    &mut past_point,
                    &mut steps,
                )
            }));
        });
        let ran = match ran.expect("ahead runs what it is given") {
            Ok(ran) => ran,
            Err(e) => return Err(commit.abandon(e)),
        };
        match ran {
            Ok(()) => {
                let meter = Meter::start();
                let activations =
                    crate::activate::run_pending(self.root, &commit.journal.commands)?;
                if !activations.is_empty() {
                    steps.push(meter.finish("activate"));
                    // Recorded before the journal goes (the caller saves the full report
                    // later); a failure to record it does not undo the commit.
                    let report = Report {
                        steps: steps.clone(),
                        activations: activations.clone(),
                        ..Report::default()
                    };
                    let _ = self.save_report(generation.number, &report);
                }
                commit.finish()?;
                Ok(Committed {
                    generation,
                    steps,
                    activations,
                    stamps: commit.fresh.take(),
                })
            }
            Err(first) => {
                if past_point {
                    let _ = self.root.write_atomic(&state_path("undo"), b"");
                }
                match commit.undo() {
                    Ok(()) => Err(first),
                    Err(undo) => Err(StateError::UndoFailed {
                        first: Box::new(first),
                        undo: Box::new(undo),
                    }),
                }
            }
        }
    }

    /// Finishes or undoes an interrupted commit. Idempotent, and safe to interrupt.
    /// Returns what finishing one did.
    pub(crate) fn recover(&self) -> Result<Option<Recovered>, StateError> {
        let Some(journal) = Journal::read(self.root)? else {
            return Ok(None);
        };
        let commit = Commit::new(self, journal);
        let committed = !self.root.inspect(&state_path("commit"))?.is_absent();
        let undoing = !self.root.inspect(&state_path("undo"))?.is_absent();
        if committed && !undoing {
            let store = self.store();
            for op in &commit.journal.ops {
                crashpoint!("recover-redo");
                // What lies below a replaced directory goes with it (see `swap`).
                if !commit.below_replaced(&op.path) {
                    commit.ensure(op, &op.after, &store)?;
                }
            }
            commit.publish()?;
            let activations = crate::activate::run_pending(self.root, &commit.journal.commands)?;
            let n = commit.journal.generation;
            if !activations.is_empty() {
                let mut report = self.report(n).unwrap_or_default();
                report.activations = activations.clone();
                let _ = self.save_report(n, &report);
            }
            commit.finish()?;
            Ok(Some(Recovered {
                generation: n,
                activations,
            }))
        } else {
            commit.undo().map(|()| None)
        }
    }
}

/// strata's own directories, outermost first.
fn state_dirs() -> Vec<TargetPath> {
    let dir = state_path("");
    let mut out: Vec<TargetPath> = dir.ancestors().collect();
    out.reverse();
    out.push(dir);
    out
}

/// A store object: its hash and its bytes.
type Object<'c> = (Hash, Cow<'c, [u8]>);

/// Below this many ops, a commit flushes only once staged (see [`Commit::run`]).
const EARLY_FLUSH_MIN: usize = 512;

/// The objects a commit adds to the store.
struct Needed {
    /// Contents the commit replaces, read from the target (and checked) before the journal.
    read: Vec<(Hash, Vec<u8>)>,
    /// The rest, in the order they are staged, with a path where the target holds the
    /// content if no source does.
    wanted: Vec<(Hash, TargetPath)>,
}

/// Writes the generation file (on a helper thread, at a lower priority).
fn write_generation(file: &std::fs::File, generation: &Generation) -> std::io::Result<()> {
    strata_fs::background_thread();
    let mut w = std::io::BufWriter::with_capacity(1 << 16, file);
    serde_json::to_writer(&mut w, generation).map_err(std::io::Error::other)?;
    std::io::Write::flush(&mut w)
}

/// Flushes the file systems each time it is told to, until the sender goes.
fn flush_on_tick(
    ticks: &std::sync::mpsc::Receiver<()>,
    flushers: &[Flusher],
) -> Result<(), StateError> {
    while ticks.recv().is_ok() {
        while ticks.try_recv().is_ok() {}
        for f in flushers {
            f.flush()?;
        }
    }
    Ok(())
}

/// Creations and changes in path order (parents first), then removals deepest first; a
/// directory that becomes something else after what it held (see [`apply_order`]).
fn order(ops: &mut [Op]) {
    ops.sort_by(|a, b| {
        apply_order(
            (&a.path, &a.before, &a.after),
            (&b.path, &b.before, &b.after),
        )
    });
}

impl<'s, 'r> Commit<'s, 'r> {
    fn new(state: &'s State<'r>, journal: Journal) -> Commit<'s, 'r> {
        let typed: HashSet<TargetPath> = (journal.ops.iter())
            .filter(|op| op.before.dir_type_change(&op.after))
            .map(|op| op.path.clone())
            .collect();
        let replaced = (journal.ops.iter())
            .filter(|op| typed.contains(&op.path) && op.before.is_dir())
            .map(|op| op.path.clone())
            .collect();
        Commit {
            state,
            // Most ops of a large commit are files written in new trees: stamped as
            // written, into a map sized once.
            fresh: RefCell::new(Stamps::with_capacity(journal.ops.len())),
            journal,
            whole: RefCell::default(),
            flushers: OnceCell::new(),
            last_staged: RefCell::default(),
            typed,
            replaced,
        }
    }
}

impl Commit<'_, '_> {
    fn root(&self) -> &Root {
        self.state.root
    }

    /// What the store must gain so that an undo, a redo or a later rollback works offline:
    /// the content each op replaces or writes, and every file the new generation manages
    /// or may restore. Checks that what the plan saw is still on the target.
    fn needed(&self, generation: &Generation) -> Result<Needed, StateError> {
        let store = self.state.store();
        let mut seen = HashSet::new();
        let mut read = Vec::new();
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
            out.push((hash, path.clone()));
        }
        Ok(Needed { read, wanted: out })
    }

    /// The needed objects' bytes: from `contents`, else (a file strata starts to manage
    /// unchanged) from the target.
    fn objects<'c>(
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

    /// Cleans up after a commit that failed before its journal was written.
    fn abandon(&self, e: StateError) -> StateError {
        self.forget_state();
        e
    }

    /// Removes the store objects and state directories this commit added.
    fn forget_state(&self) {
        let root = self.root();
        let store = self.state.store();
        for hash in &self.journal.added {
            let _ = store.remove(hash);
        }
        if let Some(pack) = &self.journal.pack {
            let _ = store.remove_pack(pack);
        }
        for dir in self.journal.created.iter().rev() {
            for sub in ["store", "generations", "reports"] {
                if dir == &state_path("") {
                    if let Ok(entries) = root.list(&state_path(sub)) {
                        for (name, _) in entries {
                            let _ = root
                                .remove_dir(&state_path(sub).join(&name).expect("a plain name"));
                        }
                    }
                    let _ = root.remove_dir(&state_path(sub));
                }
            }
            let _ = root.remove_dir(dir);
        }
    }

    /// Stages every op while another thread writes the generation file; at each quarter
    /// of a large commit, `tick` has the flusher of [`Commit::run`] write back what is
    /// staged so far (so that the flush before the commit point, the one that proves it
    /// durable, waits for little).
    fn stage_all(
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

    /// Prepare (the generation file and the staged files, then the store's objects and one
    /// sync), commit point, apply, publish. `meter` has measured the journal.
    fn run(
        &self,
        generation: &Generation,
        (contents, needed): (&dyn ContentSource, Needed),
        meter: Meter,
        past_point: &mut bool,
        steps: &mut Vec<Step>,
    ) -> Result<(), StateError> {
        let (n, total, store) = (
            self.journal.generation,
            self.journal.ops.len(),
            self.state.store(),
        );
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
                let objects = self.objects(needed, contents)?;
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
        crashpoint!("commit-after-store");
        self.sync_all()?;
        steps.push(meter.finish("store"));
        let meter = Meter::start();
        crashpoint!("commit-before-point");
        // Any write from here on gets a ctime of at least `now`.
        let now = self.root().fs_now(&state_path(""))?;
        self.fresh
            .borrow_mut()
            .retain(|_, s| now.is_some_and(|now| s.key.ctime < now));
        self.root().write_atomic(&state_path("commit"), b"")?;
        *past_point = true;
        crashpoint!("commit-after-point");
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
        drop(whole);
        crashpoint!("commit-after-apply");
        self.publish()?;
        steps.push(meter.finish("commit"));
        Ok(())
    }

    /// Where `path`, below the new directory `top` staged whole, is staged: its directory
    /// inside `top`'s temporary name, and its own name.
    fn staged_at<'p>(&self, top: &TargetPath, path: &'p TargetPath) -> (TargetPath, &'p str) {
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
    fn stage(
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
    fn write_temp(
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

    /// Brings `op.path` to `want`, using the staged file when there is one and the store
    /// otherwise. Doing it twice is the same as doing it once.
    fn ensure(&self, op: &Op, want: &Snapshot, store: &Store<'_>) -> Result<(), StateError> {
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
    fn swap(&self, op: &Op, want: &Snapshot, store: &Store<'_>) -> Result<(), StateError> {
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
    fn remove_aside(&self, temp: &TargetPath) -> Result<(), StateError> {
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
    fn below_replaced(&self, path: &TargetPath) -> bool {
        !self.replaced.is_empty() && path.ancestor_strs().any(|a| self.replaced.contains(a))
    }

    /// The path of a type change above `path` that is not a directory now, if any: then
    /// nothing stands at `path` of its own, and looking there would follow a link
    /// (`/lib/x` below `/lib -> usr/lib` is `/usr/lib/x`).
    fn shadowed(&self, path: &TargetPath) -> Result<Option<&TargetPath>, StateError> {
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

    /// Flushes every file system the commit writes to.
    fn sync_all(&self) -> Result<(), StateError> {
        for f in self.flushers()? {
            f.flush()?;
        }
        Ok(())
    }

    /// A flusher for each file system the commit writes to, opened at the first call:
    /// before the staging, so that each sees every write-back error of the commit.
    fn flushers(&self) -> Result<&[Flusher], StateError> {
        if let Some(f) = self.flushers.get() {
            return Ok(f);
        }
        let mut dirs: BTreeSet<TargetPath> =
            self.journal.ops.iter().map(|op| parent(&op.path)).collect();
        dirs.insert(state_path(""));
        let mut devices: BTreeMap<u64, TargetPath> = BTreeMap::new();
        for dir in dirs {
            if let Ok(dev) = self.root().device(&dir) {
                devices.entry(dev).or_insert(dir);
            }
        }
        let opened = (devices.values())
            .map(|dir| self.root().flusher(dir))
            .collect::<Result<_, _>>()?;
        Ok(self.flushers.get_or_init(|| opened))
    }

    /// Makes the new generation current.
    fn publish(&self) -> Result<(), StateError> {
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

    /// Ends a commit or its undo: the journal goes, then the markers.
    fn finish(&self) -> Result<(), StateError> {
        let root = self.root();
        root.remove(&state_path("journal"))?;
        root.fsync(&state_path(""))?;
        for marker in ["commit", "undo", "activations"] {
            root.remove(&state_path(marker))?;
        }
        Ok(())
    }

    /// Puts every path back as it was and forgets the new generation.
    fn undo(&self) -> Result<(), StateError> {
        let store = self.state.store();
        for op in self.journal.ops.iter().rev() {
            crashpoint!("recover-undo");
            self.ensure(op, &op.before, &store)?;
        }
        let root = self.root();
        root.remove(&state_path("current.new"))?;
        let n = self.journal.generation;
        let current = self.state.current_number()?;
        if current != Some(n) {
            root.remove(&state_path(&format!("generations/{n}.json")))?;
        }
        self.sync_all()?;
        self.finish()?;
        self.forget_state();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn op(path: &str, after: Snapshot) -> Op {
        Op {
            path: TargetPath::parse(path).unwrap(),
            before: Snapshot::Absent,
            after,
        }
    }

    #[test]
    fn creations_go_parents_first_and_removals_children_first() {
        let dir = Snapshot::Dir {
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        };
        let mut ops = vec![
            op("/a/b", Snapshot::Absent),
            op("/x/y", dir.clone()),
            op("/a", Snapshot::Absent),
            op("/x", dir),
            op("/a/b/c", Snapshot::Absent),
        ];
        order(&mut ops);
        let paths: Vec<&str> = ops.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(paths, ["/x", "/x/y", "/a/b/c", "/a/b", "/a"]);
    }

    /// A directory replaced by a link goes after what it held (removed with it), a file
    /// replaced by a directory before what it will hold (staged inside it).
    #[test]
    fn a_replaced_directory_goes_after_its_tree_and_a_new_one_before() {
        let dir = Snapshot::Dir {
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        };
        let link = Snapshot::Link {
            target: "usr/lib".into(),
            uid: 0,
            gid: 0,
        };
        let file = Snapshot::File {
            hash: Hash::of(b"x"),
            size: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        };
        let retyped = |path: &str, before: &Snapshot, after: &Snapshot| Op {
            before: before.clone(),
            ..op(path, after.clone())
        };
        let gone = |path: &str, before: &Snapshot| retyped(path, before, &Snapshot::Absent);
        let mut ops = vec![
            retyped("/lib", &dir, &link),
            gone("/lib/a", &file),
            op("/usr/lib/a", file.clone()),
            gone("/lib/sub/b", &file),
            gone("/lib/sub", &dir),
            retyped("/srv/data", &file, &dir),
            op("/srv/data/a", file.clone()),
        ];
        order(&mut ops);
        let paths: Vec<&str> = ops.iter().map(|o| o.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "/srv/data",
                "/srv/data/a",
                "/usr/lib/a",
                "/lib/sub/b",
                "/lib/a",
                "/lib/sub",
                "/lib"
            ]
        );
    }
}
