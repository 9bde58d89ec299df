//! Plans (what an apply would change) and generations (what an apply recorded).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Deferred, Entry, Report, Snapshot, TargetPath};

/// What happens to one path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Nothing stands there; strata creates it.
    Create,
    /// Something stands there and differs; strata changes it.
    Modify,
    /// Strata created it and the site no longer declares it; strata removes it.
    Remove,
    /// It existed before strata changed it and is no longer declared; strata puts the
    /// original back.
    Restore,
    /// No longer declared, but strata leaves it in place (an add-only file edited since,
    /// a directory that still has content); strata stops managing it.
    Keep,
    /// Already as desired.
    Unchanged,
}

impl Action {
    /// The verb as shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Create => "create",
            Action::Modify => "modify",
            Action::Remove => "remove",
            Action::Restore => "restore",
            Action::Keep => "keep",
            Action::Unchanged => "unchanged",
        }
    }

    /// Whether the target changes.
    pub fn changes_target(self) -> bool {
        matches!(
            self,
            Action::Create | Action::Modify | Action::Remove | Action::Restore
        )
    }
}

/// One path in a plan.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    /// The path on the node.
    pub path: TargetPath,
    /// What happens.
    pub action: Action,
    /// What stands there now.
    pub before: Snapshot,
    /// What will stand there.
    pub after: Snapshot,
    /// The declaring module, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// Content is secret: no diff, no content shown.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// A unified diff for text content, when the content changes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    /// Why the action is what it is, when not obvious (e.g. why a path is kept).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// The order in which changes are carried out: creations and changes in path order
/// (parents first), then removals deepest first (children before their directory). A
/// directory that becomes a file or link goes with the removals, after what it held;
/// a file or link that becomes a directory goes with the creations, before what it will
/// hold.
pub fn apply_order(
    (pa, ba, aa): (&TargetPath, &Snapshot, &Snapshot),
    (pb, bb, ab): (&TargetPath, &Snapshot, &Snapshot),
) -> std::cmp::Ordering {
    let clears = |before: &Snapshot, after: &Snapshot| {
        after.is_absent() || (before.is_dir() && before.dir_type_change(after))
    };
    let (ra, rb) = (clears(ba, aa), clears(bb, ab));
    ra.cmp(&rb).then_with(|| {
        if ra {
            pb.depth().cmp(&pa.depth()).then(pa.cmp(pb))
        } else {
            pa.cmp(pb)
        }
    })
}

/// How many paths each action touches.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Summary {
    /// Paths created.
    pub create: usize,
    /// Paths modified.
    pub modify: usize,
    /// Paths removed.
    pub remove: usize,
    /// Paths restored to their original.
    pub restore: usize,
    /// Paths released but left in place.
    pub keep: usize,
    /// Paths already as desired.
    pub unchanged: usize,
}

/// Everything an apply would do on one node, plus the ownership the next generation
/// records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Plan {
    /// Every managed or released path, in path order.
    pub changes: Vec<Change>,
    /// The state strata will manage after the apply.
    #[serde(skip)]
    pub entries: Vec<Entry>,
    /// For each managed path, how it was before strata first touched it.
    #[serde(skip)]
    pub originals: BTreeMap<TargetPath, Snapshot>,
}

impl Plan {
    /// Counts the changes by action.
    pub fn summary(&self) -> Summary {
        let mut s = Summary::default();
        for c in &self.changes {
            *match c.action {
                Action::Create => &mut s.create,
                Action::Modify => &mut s.modify,
                Action::Remove => &mut s.remove,
                Action::Restore => &mut s.restore,
                Action::Keep => &mut s.keep,
                Action::Unchanged => &mut s.unchanged,
            } += 1;
        }
        s
    }

    /// Whether an apply would change the target.
    pub fn has_changes(&self) -> bool {
        self.changes.iter().any(|c| c.action.changes_target())
    }
}

/// How a generation came to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GenerationKind {
    /// `strata apply` from a site.
    Apply,
    /// `strata rollback` to an earlier generation.
    Rollback,
}

/// What one commit recorded on a node: the desired state, who owns what, and how long
/// each step took.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Generation {
    /// 1, 2, 3… on this root.
    pub number: u64,
    /// When it was recorded, RFC 3339 in UTC.
    pub time: String,
    /// Apply or rollback.
    pub kind: GenerationKind,
    /// The generation a rollback replayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    /// The node's name.
    pub node: String,
    /// The node's environment.
    pub environment: String,
    /// The site directory the catalog came from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The site's revision: its git commit, a snapshot's revision (`blake3:…`), or
    /// `none` when it is not a git checkout (absent in generations of older stratas).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The site's checkout had changes not committed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dirty: bool,
    /// What strata manages, in path order.
    pub entries: Vec<Entry>,
    /// For each managed path, how it was before strata first touched it.
    pub originals: BTreeMap<TargetPath, Snapshot>,
    /// Each applied module's digest of what its sandbox steps depend on (its packages,
    /// users… and scripts): when it changes, what the steps did before is undone first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub modules: BTreeMap<String, String>,
    /// The commands its commit ran on the target after the commit point (intercepted
    /// calls of scripts, restarts), in order; how each went is in its report.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<Deferred>,
    /// How many generations the site asked to keep (`[state] keep_generations`) when this
    /// one was recorded; `strata gc` without `--keep` goes by the current generation's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_generations: Option<u64>,
    /// The version of each secret the compile read (a hash of its value keyed by the
    /// node's own key, never a plain hash of it), so that `rollback` sees which changed.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub secrets: BTreeMap<String, String>,
    /// Per-step metrics of the run that made it.
    pub report: Report,
}
