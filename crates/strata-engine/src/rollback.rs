//! `rollback`: a stored generation's desired state replayed through the same plan and
//! commit as an apply, without the site; the result is a new generation. A file rendered
//! from a secret that changed since is kept at its current content unless asked.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use strata_core::UserDb;
use strata_fs::{Meter, Root};
use strata_state::{State, StateError};
use strata_types::{Action, Entry, Generation, GenerationKind, Report, TargetPath};

use crate::commit::{Clock, Header, ToCommit};
use crate::managed::Managed;
use crate::outcome::new_contents;
use crate::{EngineError, Outcome, RollbackError};

/// Replays generation `to` (default: the one before the current) through the same commit,
/// without the site; the result is a new generation, its time told by `clock`. When a
/// secret the node read changed since `to`, the files rendered from secrets stay at their
/// current content (shown as kept), unless `with_old_secrets`.
pub fn rollback(
    root: &Path,
    to: Option<u64>,
    with_old_secrets: bool,
    clock: Clock,
) -> Result<Outcome, EngineError> {
    let root = Root::open(root)?;
    let state = State::open_for_commit(&root)?;
    let target = target(&state, to)?;
    let old = state.generation(target).map_err(|e| match e {
        StateError::Pruned { .. } => RollbackError::Pruned(e).into(),
        e => EngineError::from(e),
    })?;
    root.use_stamps(state.stamps());
    let mut steps = Vec::new();
    let users = UserDb::load(&root)?;
    let empty = HashMap::new();
    let meter = Meter::start();
    let current = state.current()?;
    let managed = Managed::of(current.as_ref());
    let changed = changed_secrets(&old, current.as_ref());
    let (entries, kept, secrets) = match (changed.is_empty() || with_old_secrets, &current) {
        (false, Some(now)) => keep_current(&old, now, &changed),
        _ => (old.entries.clone(), Vec::new(), old.secrets.clone()),
    };
    let mut plan = managed.plan(&root, entries, &(&empty, &state.store()))?;
    if !kept.is_empty() {
        let note = format!(
            "secret {} changed since generation {target}: kept at its current content \
             (--with-old-secrets restores the old one)",
            changed.join(", ")
        );
        for c in (plan.changes.iter_mut()).filter(|c| kept.contains(&c.path)) {
            if c.action == Action::Unchanged {
                c.action = Action::Keep;
            }
            c.note = Some(note.clone());
        }
    }
    steps.push(meter.finish("plan"));
    let header = Header {
        kind: GenerationKind::Rollback,
        replayed: Some(target),
        node: old.node.clone(),
        environment: old.environment.clone(),
        site: old.site.clone(),
        revision: old.revision.clone(),
        dirty: old.dirty,
        modules: old.modules.clone(),
        // The site's retention as the last apply recorded it: a rollback has no site.
        keep_generations: current.as_ref().and_then(|g| g.keep_generations),
        secrets,
        clock,
        prune: false,
    };
    let recorded = ToCommit {
        state: &state,
        entries: std::mem::take(&mut plan.entries),
        originals: std::mem::take(&mut plan.originals),
        changes: &plan.changes,
        current: current.as_ref(),
        header,
        contents: strata_state::Prefetching::plain(&empty),
        calls: Vec::new(),
        programs: &[],
    }
    .commit(&mut steps)?;
    let contents = new_contents(&plan, Default::default(), &state.store());
    Ok(Outcome {
        node: old.node,
        environment: old.environment,
        plan,
        users,
        generation: recorded.generation,
        report: Report {
            steps,
            ..Report::default()
        },
        runs: Vec::new(),
        calls: Vec::new(),
        activations: Vec::new(),
        pruned: None,
        contents,
        hooks: Vec::new(),
        would_run_hooks: Vec::new(),
    })
}

/// The secrets both generations read whose value differs, by name.
fn changed_secrets(old: &Generation, current: Option<&Generation>) -> Vec<String> {
    let Some(now) = current else {
        return Vec::new();
    };
    (old.secrets.iter())
        .filter(|(name, v)| now.secrets.get(*name).is_some_and(|n| n != *v))
        .map(|(name, _)| name.clone())
        .collect()
}

/// What to roll back to when `changed` secrets changed since `old`: its entries, but those
/// rendered from a secret, which stay as the current generation has them (or go
/// unmanaged when it has none there); the paths kept; the secrets' versions then.
fn keep_current(
    old: &Generation,
    now: &Generation,
    changed: &[String],
) -> (Vec<Entry>, Vec<TargetPath>, BTreeMap<String, String>) {
    let current: HashMap<&TargetPath, &Entry> = now.entries.iter().map(|e| (&e.path, e)).collect();
    let mut kept = Vec::new();
    let entries = (old.entries.iter())
        .filter_map(|e| {
            if !e.sensitive {
                return Some(e.clone());
            }
            kept.push(e.path.clone());
            current.get(&e.path).map(|c| (*c).clone())
        })
        .collect();
    let mut secrets = old.secrets.clone();
    for name in changed {
        if let Some(v) = now.secrets.get(name) {
            secrets.insert(name.clone(), v.clone());
        }
    }
    (entries, kept, secrets)
}

/// The generation to roll back to: `to`, else the one before the current.
fn target(state: &State<'_>, to: Option<u64>) -> Result<u64, EngineError> {
    let current = state.current_number()?.ok_or(RollbackError::NoGeneration)?;
    if let Some(n) = to {
        return Ok(n);
    }
    match state.numbers()?.into_iter().rfind(|n| *n < current) {
        Some(n) => Ok(n),
        None if state.was_pruned(current - 1)? => Err(RollbackError::OldestKept { current }.into()),
        None => Err(RollbackError::First { current }.into()),
    }
}
