//! What the last generation manages, where every plan starts from: its entries, the
//! originals it recorded and its modules' digests, and the plan of desired entries
//! against them. Below the stages: `plan`, `scripts` and `rollback` all plan through it.

use std::collections::BTreeMap;

use strata_fs::Root;
use strata_types::{ContentSource, Entry, Generation, Plan, Snapshot, TargetPath};

use crate::EngineError;

/// What the last generation manages: where every plan starts from (nothing before the
/// first generation).
pub(crate) struct Managed<'g> {
    /// Its entries.
    pub entries: &'g [Entry],
    /// The originals it recorded.
    pub originals: &'g BTreeMap<TargetPath, Snapshot>,
    /// The digest of each module it applied.
    pub modules: &'g BTreeMap<String, String>,
}

impl Managed<'_> {
    /// What `current` manages (nothing when there is no generation yet).
    pub(crate) fn of(current: Option<&Generation>) -> Managed<'_> {
        static NONE: BTreeMap<TargetPath, Snapshot> = BTreeMap::new();
        static NO_MODULES: BTreeMap<String, String> = BTreeMap::new();
        match current {
            Some(g) => Managed {
                entries: &g.entries,
                originals: &g.originals,
                modules: &g.modules,
            },
            None => Managed {
                entries: &[],
                originals: &NONE,
                modules: &NO_MODULES,
            },
        }
    }

    /// Plans `entries` against what is managed, reading contents from `contents`.
    pub(crate) fn plan(
        &self,
        root: &Root,
        entries: Vec<Entry>,
        contents: &dyn ContentSource,
    ) -> Result<Plan, EngineError> {
        let plan = strata_core::plan(root, entries, self.entries, self.originals, contents)?;
        Ok(plan)
    }
}
