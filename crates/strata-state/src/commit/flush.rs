//! Flushing: one `syncfs` handle per file system the commit writes to, opened before the
//! staging (so each sees every write-back error), and early write-backs of a large
//! staging so that the flush before the commit point waits for little.

use std::collections::{BTreeMap, BTreeSet};

use strata_fs::Flusher;
use strata_types::TargetPath;

use super::{Commit, parent};
use crate::StateError;
use crate::state::state_path;

/// Flushes the file systems each time it is told to, until the sender goes.
pub(super) fn flush_on_tick(
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

impl Commit<'_, '_> {
    /// Flushes every file system the commit writes to.
    pub(super) fn sync_all(&self) -> Result<(), StateError> {
        for f in self.flushers()? {
            f.flush()?;
        }
        Ok(())
    }

    /// A flusher for each file system the commit writes to, opened at the first call:
    /// before the staging, so that each sees every write-back error of the commit.
    pub(super) fn flushers(&self) -> Result<&[Flusher], StateError> {
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
}
