//! The journaled commit (see the crate documentation for its phases): the ops, the
//! commit as a value, and the driver that takes it from staging through the commit point
//! to the new generation. The journal and recovery, staging, applying and flushing are
//! each in their own file.

mod apply;
mod flush;
mod journal;
mod stage;

use std::cell::{Cell, OnceCell, RefCell};
use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use strata_fs::{Flusher, Root, Stamps};
use strata_meter::Meter;
use strata_types::{
    Activation, ContentSource, Generation, Hash, Meta, Report, Snapshot, Step, TargetPath,
    apply_order,
};

pub(crate) use journal::Journal;
use stage::Needed;

use crate::activate::Scheduled;
use crate::state::state_path;
use crate::{Prefetching, State, StateError, Store, crashpoint};

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
    /// Its contents (before and after) are rendered from a secret, or were: the store
    /// keeps them sealed to the node's key, never in clear.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sealed: bool,
}

/// How far a commit got, and so what is undone when it fails or is dropped unfinished
/// (see [`Commit::settle`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Store objects and state directories may be written, nothing else: they go.
    Preparing,
    /// The journal is written, the commit point not reached: every op is undone.
    Journaled,
    /// Past the commit point, not yet published: the commit is marked undone (so that
    /// no later command finishes it), then undone.
    Committed,
    /// Nothing is left to do in this process: published (should this process stop, the
    /// journal finishes the commit), undone, or being recovered from its journal.
    Done,
}

/// A commit in progress, which undoes itself unless it is finished (see [`Phase`]); see
/// the crate documentation for its phases.
#[derive(Debug)]
pub(crate) struct Commit<'s, 'r> {
    state: &'s State<'r>,
    journal: Journal,
    phase: Cell<Phase>,
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

/// strata's own directories, outermost first.
fn state_dirs() -> Vec<TargetPath> {
    let dir = state_path("");
    let mut out: Vec<TargetPath> = dir.ancestors().collect();
    out.reverse();
    out.push(dir);
    out
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
        contents: &Prefetching<'_>,
        commands: Vec<Scheduled>,
    ) -> Result<Committed, StateError> {
        let meter = Meter::start();
        generation.number = self.next_number()?;
        generation.commands = commands.iter().map(|c| c.call.clone()).collect();
        order(&mut ops);
        let mut commit = Commit::begin(self, ops, generation.number, commands);
        let needed = commit.needed(&generation).map_err(|e| commit.fail(e))?;
        commit.plan_store(&needed);
        let mut steps = Vec::new();
        let order: Vec<Hash> = needed.wanted.iter().map(|(h, _)| *h).collect();
        // From here on, what is to be written is read (and rendered) on another core, in
        // the order it is staged: the journal's writing gives that core a head start.
        let ran = contents.ahead(&order, || {
            commit.write_journal()?;
            crashpoint!("commit-after-journal");
            commit.run(&generation, (contents, needed), meter, &mut steps)
        });
        ran.map_err(|e| commit.fail(e))?;
        let activations = commit.activate(generation.number, &mut steps)?;
        commit.finish()?;
        Ok(Committed {
            generation,
            steps,
            activations,
            stamps: commit.fresh.take(),
        })
    }
}

impl<'s, 'r> Commit<'s, 'r> {
    /// A commit of `ops` as generation `number`, before anything is written.
    fn begin(
        state: &'s State<'r>,
        ops: Vec<Op>,
        number: u64,
        commands: Vec<Scheduled>,
    ) -> Commit<'s, 'r> {
        let created: Vec<TargetPath> = state_dirs()
            .into_iter()
            .filter(|d| !state.root.is_dir_followed(d))
            .collect();
        let journal = Journal {
            generation: number,
            ops,
            added: Vec::new(),
            created,
            pack: None,
            commands,
        };
        Commit::new(state, journal, Phase::Preparing)
    }

    /// The commit `journal` records, having got as far as `phase`.
    fn new(state: &'s State<'r>, journal: Journal, phase: Phase) -> Commit<'s, 'r> {
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
            phase: Cell::new(phase),
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

    /// Names what the store gains, for an undo to remove: loose objects one by one, a
    /// pack whole.
    fn plan_store(&mut self, needed: &Needed) {
        if !Store::packs(needed.plain()) {
            self.journal.added = (needed.read.iter().map(|(h, _)| *h))
                .chain(needed.wanted.iter().map(|(h, _)| *h))
                .collect();
        } else {
            // Sealed objects are loose, whatever their number.
            self.journal.added = needed.sealed.iter().copied().collect();
        }
        self.journal.pack = Some(format!("g{}", self.journal.generation));
    }

    /// Prepare (the generation file and the staged files, then the store's objects and one
    /// sync), commit point, apply, publish. `meter` has measured the journal.
    fn run(
        &self,
        generation: &Generation,
        (contents, needed): (&dyn ContentSource, Needed),
        meter: Meter,
        steps: &mut Vec<Step>,
    ) -> Result<(), StateError> {
        let meter = self.prepare(generation, (contents, needed), meter, steps)?;
        crashpoint!("commit-after-store");
        self.sync_all()?;
        steps.push(meter.finish("store"));
        let meter = Meter::start();
        crashpoint!("commit-before-point");
        self.mark_committed()?;
        crashpoint!("commit-after-point");
        self.apply_all()?;
        crashpoint!("commit-after-apply");
        self.publish()?;
        // Published: should this process stop now, the journal finishes the commit.
        self.phase.set(Phase::Done);
        steps.push(meter.finish("commit"));
        Ok(())
    }

    /// Runs the commands deferred to after the commit point. How they went is recorded
    /// before the journal goes (the caller saves the full report later); a failure to
    /// record it does not undo the commit.
    fn activate(&self, number: u64, steps: &mut Vec<Step>) -> Result<Vec<Activation>, StateError> {
        let meter = Meter::start();
        let activations = crate::activate::run_pending(self.root(), &self.journal.commands)?;
        if !activations.is_empty() {
            steps.push(meter.finish("activate"));
            let report = Report {
                steps: steps.clone(),
                activations: activations.clone(),
                ..Report::default()
            };
            let _ = self.state.save_report(number, &report);
        }
        Ok(activations)
    }

    /// Ends a commit that failed with `first`, undoing what it did so far (see
    /// [`Commit::settle`]). The error to report: `first`, or both it and the undo's when
    /// undoing failed too (the journal then stays for the next command).
    fn fail(&self, first: StateError) -> StateError {
        match self.settle() {
            Ok(()) => first,
            Err(undo) => StateError::UndoFailed {
                first: Box::new(first),
                undo: Box::new(undo),
            },
        }
    }

    /// Undoes what the commit did so far, as far as its [`Phase`] says, once.
    fn settle(&self) -> Result<(), StateError> {
        match self.phase.replace(Phase::Done) {
            Phase::Preparing => {
                self.forget_state();
                Ok(())
            }
            Phase::Journaled => self.undo(),
            Phase::Committed => {
                let _ = self.root().write_atomic(&state_path("undo"), b"");
                self.undo()
            }
            Phase::Done => Ok(()),
        }
    }
}

/// The in-process guard: a commit dropped unfinished (a panic, a `?` that skipped
/// [`Commit::fail`]) is undone as a failed one is. What survives `kill -9` is the journal.
impl Drop for Commit<'_, '_> {
    fn drop(&mut self) {
        let _ = self.settle();
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
            sealed: false,
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
