//! `drift`: what no longer stands as the current generation recorded it (hand edits),
//! found by planning the generation's own entries against the target through `managed`,
//! exactly as a rollback to the current generation would, and writing nothing.

use std::collections::HashMap;
use std::path::Path;

use serde::Serialize;
use strata_core::{HookEvent, PlanError, UserDb};
use strata_fs::Root;
use strata_state::State;
use strata_types::{Action, Activation, Change, ContentSource, Snapshot, TargetPath};

use crate::managed::Managed;
use crate::{EngineError, HookContext};

/// How a managed path differs from what the current generation recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DriftKind {
    /// A file's content, or a link's target, changed.
    Content,
    /// Only its mode, owner, group or managed extended attributes changed.
    Metadata,
    /// It is gone.
    Missing,
    /// Something stands where the generation has nothing (a path a script removed).
    Added,
    /// Another type of entry stands there (a directory where a file was).
    Type,
}

impl DriftKind {
    /// The word shown to users.
    pub fn as_str(self) -> &'static str {
        match self {
            DriftKind::Content => "content",
            DriftKind::Metadata => "metadata",
            DriftKind::Missing => "missing",
            DriftKind::Added => "added",
            DriftKind::Type => "type",
        }
    }

    pub(crate) fn of(recorded: &Snapshot, found: &Snapshot) -> DriftKind {
        match (recorded, found) {
            (_, Snapshot::Absent) => DriftKind::Missing,
            (Snapshot::Absent, _) => DriftKind::Added,
            (Snapshot::File { hash: a, .. }, Snapshot::File { hash: b, .. }) if a != b => {
                DriftKind::Content
            }
            (Snapshot::Link { target: a, .. }, Snapshot::Link { target: b, .. }) if a != b => {
                DriftKind::Content
            }
            (a, b) if std::mem::discriminant(a) != std::mem::discriminant(b) => DriftKind::Type,
            _ => DriftKind::Metadata,
        }
    }
}

/// One managed path that drifted.
#[derive(Clone, Debug, Serialize)]
pub struct Drifted {
    /// The path on the node.
    pub path: TargetPath,
    /// How it differs.
    pub kind: DriftKind,
    /// The module that manages it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// What the generation recorded (callers show no hash of a sensitive one).
    pub recorded: Snapshot,
    /// What stands there now.
    pub found: Snapshot,
    /// Its content is secret: no diff and no hash are shown.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// A unified diff from the recorded content to the one found, for text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// What `drift` found on a root.
#[derive(Debug, Serialize)]
pub struct Drift {
    /// The current generation, when there is one.
    pub generation: Option<u64>,
    /// The node it was applied to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
    /// Its environment.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub environment: Option<String>,
    /// The site it was applied from (whose `on-drift` hooks run).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub site: Option<String>,
    /// The site revision it was applied from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// How many paths it manages.
    pub managed: usize,
    /// Every managed path that differs, in path order.
    pub paths: Vec<Drifted>,
    /// Every path the generation manages (what a watch watches).
    #[serde(skip)]
    pub all: Vec<TargetPath>,
    /// The target's users and groups, to show owners by name.
    #[serde(skip)]
    pub users: UserDb,
}

/// Compares every path the current generation of `root` manages with the target, and
/// says which differ and how. Reads only: the root's lock is not taken, nothing is written
/// (a commit an earlier process left interrupted is reported by the caller's recovery).
pub fn drift(root: &Path) -> Result<Drift, EngineError> {
    let root = Root::open(root)?;
    let state = State::open_for_read(&root)?;
    root.use_stamps(state.stamps());
    let users = UserDb::load(&root)?;
    let Some(current) = state.current()? else {
        return Ok(Drift {
            generation: None,
            node: None,
            environment: None,
            site: None,
            revision: None,
            managed: 0,
            paths: Vec::new(),
            all: Vec::new(),
            users,
        });
    };
    let store = state.store();
    let empty = HashMap::new();
    let managed = Managed::of(Some(&current));
    // A path an apply could not put back (a directory where a file was) stops a plan:
    // it is drift of its own, and the rest is planned without it.
    let mut entries = current.entries.clone();
    let mut blocked = Vec::new();
    let plan = loop {
        match managed.plan(&root, entries.clone(), &(&empty, &store)) {
            Err(EngineError::Plan(PlanError::Conflict { path, .. }))
                if entries.iter().any(|e| e.path == path) =>
            {
                let e = entries.remove(entries.iter().position(|e| e.path == path).unwrap_or(0));
                let before = root.inspect(&path)?;
                let private =
                    |s: &Snapshot| matches!(s, Snapshot::File { mode, .. } if mode & 0o004 == 0);
                let sensitive = e.sensitive || private(&before) || private(&e.state);
                blocked.push(Change {
                    before,
                    after: e.state,
                    path,
                    action: Action::Modify,
                    module: e.module,
                    sensitive,
                    diff: None,
                    note: None,
                });
            }
            other => break other?,
        }
    };
    let stopped: Vec<TargetPath> = blocked.iter().map(|b| b.path.clone()).collect();
    let mut paths = (plan.changes.into_iter())
        .filter(|c| c.action.changes_target() && !stopped.contains(&c.path))
        .chain(blocked)
        .map(|c| drifted(&root, &store, c))
        .collect::<Result<Vec<_>, EngineError>>()?;
    paths.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(Drift {
        generation: Some(current.number),
        node: Some(current.node),
        environment: Some(current.environment),
        site: current.site,
        revision: current.revision,
        managed: current.entries.len(),
        all: current.entries.iter().map(|e| e.path.clone()).collect(),
        paths,
        users,
    })
}

/// A planned change read the other way round: the plan's "after" is what was recorded,
/// its "before" what stands there now.
fn drifted(root: &Root, store: &dyn ContentSource, c: Change) -> Result<Drifted, EngineError> {
    let (recorded, found) = (c.after, c.before);
    let kind = DriftKind::of(&recorded, &found);
    let diff = match (kind, c.sensitive, recorded.hash()) {
        (DriftKind::Content, false, Some(h)) if matches!(found, Snapshot::File { .. }) => {
            let old = store.content(&h);
            let new = root.read(&c.path)?;
            match (old, new) {
                (Some(old), Some(new)) => strata_core::diff_text(&c.path, &old, &new),
                _ => None,
            }
        }
        _ => None,
    };
    Ok(Drifted {
        path: c.path,
        kind,
        module: c.module,
        recorded,
        found,
        sensitive: c.sensitive,
        diff,
    })
}

/// Runs the `on-drift` hooks of the site the current generation was applied from, with
/// `summary` (what was found, as the caller shows it) on their standard input; how each
/// went. None without a generation or a recorded site.
pub fn on_drift(root: &Path, drift: &Drift, summary: serde_json::Value) -> Vec<Activation> {
    let (Some(site), Some(node)) = (&drift.site, &drift.node) else {
        return Vec::new();
    };
    let site = Path::new(site);
    let settings = strata_core::Site::open(site).ok();
    let hooks = HookContext {
        site,
        root,
        node,
        environment: drift.environment.as_deref().unwrap_or_default(),
        timeout: crate::hooks::timeout_of(settings.as_ref().map(|s| &s.hooks)),
    };
    hooks
        .run(HookEvent::OnDrift, move || summary, false)
        .unwrap_or_else(|e| vec![crate::hooks::unlisted(HookEvent::OnDrift, &e)])
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_types::Hash;

    fn file(content: &[u8], mode: u32) -> Snapshot {
        Snapshot::File {
            hash: Hash::of(content),
            size: content.len() as u64,
            mode,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        }
    }

    #[test]
    fn each_way_a_path_differs_has_its_kind() {
        let dir = Snapshot::Dir {
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        };
        let a = file(b"a", 0o644);
        for (recorded, found, kind) in [
            (&a, &file(b"b", 0o644), DriftKind::Content),
            (&a, &file(b"a", 0o600), DriftKind::Metadata),
            (&a, &Snapshot::Absent, DriftKind::Missing),
            (&Snapshot::Absent, &a, DriftKind::Added),
            (&a, &dir, DriftKind::Type),
        ] {
            assert_eq!(
                DriftKind::of(recorded, found),
                kind,
                "{recorded:?} {found:?}"
            );
        }
    }
}
