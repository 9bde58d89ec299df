//! The journal and recovery: what a commit records before it changes anything, and how
//! the next command that finds it finishes the commit (its marker present) or undoes it.

use strata_fs::Root;
use strata_types::{Hash, TargetPath};

use super::{Commit, Op, Phase, Recovered};
use crate::activate::Scheduled;
use crate::state::state_path;
use crate::{State, StateError, crashpoint};

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Journal {
    pub(super) generation: u64,
    pub(super) ops: Vec<Op>,
    /// Loose store objects this commit adds (an undo removes them, and its pack).
    #[serde(default)]
    pub(super) added: Vec<Hash>,
    /// State directories this commit creates (an undo removes them when empty).
    #[serde(default)]
    pub(super) created: Vec<TargetPath>,
    /// The pack this commit writes, if it writes one.
    #[serde(default)]
    pub(super) pack: Option<String>,
    /// Commands to run on the target once the commit is published.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(super) commands: Vec<Scheduled>,
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

impl<'r> State<'r> {
    /// Finishes or undoes an interrupted commit. Idempotent, and safe to interrupt.
    /// Returns what finishing one did.
    pub(crate) fn recover(&self) -> Result<Option<Recovered>, StateError> {
        let Some(journal) = Journal::read(self.root)? else {
            return Ok(None);
        };
        // Whatever happens here, the journal stays until the recovery is finished.
        let commit = Commit::new(self, journal, Phase::Done);
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

impl Commit<'_, '_> {
    /// Writes the journal (durably, whole or not at all) once the markers an earlier
    /// commit left are gone: from here on, a commit stopped anywhere is undone or finished
    /// by the next command.
    pub(super) fn write_journal(&self) -> Result<(), StateError> {
        let root = self.root();
        crate::state::private_dirs(root, &state_path(""))?;
        for marker in ["commit", "undo"] {
            root.remove(&state_path(marker))?;
        }
        root.write_atomic_with(&state_path("journal"), |w| {
            serde_json::to_writer(w, &self.journal).map_err(std::io::Error::other)
        })?;
        self.phase.set(Phase::Journaled);
        Ok(())
    }

    /// The commit point: the `commit` marker, made durable. The stamps taken while
    /// staging are kept where their ctime is older than the file system's "now", read
    /// first: any write from here on gets a ctime of at least that.
    pub(super) fn mark_committed(&self) -> Result<(), StateError> {
        let now = self.root().fs_now(&state_path(""))?;
        self.fresh
            .borrow_mut()
            .retain(|_, s| now.is_some_and(|now| s.key.ctime < now));
        self.root().write_atomic(&state_path("commit"), b"")?;
        self.phase.set(Phase::Committed);
        Ok(())
    }

    /// Removes the store objects and state directories this commit added.
    pub(super) fn forget_state(&self) {
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

    /// Ends a commit or its undo: the journal goes, then the markers.
    pub(super) fn finish(&self) -> Result<(), StateError> {
        let root = self.root();
        root.remove(&state_path("journal"))?;
        root.fsync(&state_path(""))?;
        for marker in ["commit", "undo", "activations"] {
            root.remove(&state_path(marker))?;
        }
        Ok(())
    }

    /// Puts every path back as it was and forgets the new generation.
    pub(super) fn undo(&self) -> Result<(), StateError> {
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
