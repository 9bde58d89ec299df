//! The journaled commit (see the crate documentation for its phases): the ops, the
//! commit as a value, and the driver that takes it from staging through the commit point
//! to the new generation. The journal and recovery, staging, applying and flushing are
//! each in their own file.

mod apply;
mod flush;
mod journal;
mod stage;

use std::cell::{OnceCell, RefCell};
use std::collections::HashSet;

use serde::{Deserialize, Serialize};
use strata_fs::{Flusher, Meter, Root, Stamps};
use strata_types::{
    Activation, ContentSource, Generation, Hash, Meta, Report, Snapshot, Step, TargetPath,
    apply_order,
};

use flush::flush_on_tick;
pub(crate) use journal::Journal;
use stage::Needed;

use crate::activate::Scheduled;
use crate::state::state_path;
use crate::{State, StateError, Store, crashpoint};

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
