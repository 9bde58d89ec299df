//! `rollback`: a stored generation's desired state replayed through the same plan and
//! commit as an apply, without the site; the result is a new generation.

use std::collections::HashMap;
use std::path::Path;

use strata_core::UserDb;
use strata_fs::{Meter, Root};
use strata_state::{State, StateError};
use strata_types::{GenerationKind, Report};

use crate::commit::{Clock, Header, ToCommit};
use crate::managed::Managed;
use crate::outcome::new_contents;
use crate::{EngineError, Outcome, RollbackError};

/// Replays generation `to` (default: the one before the current) through the same commit,
/// without the site; the result is a new generation, its time told by `clock`.
pub fn rollback(root: &Path, to: Option<u64>, clock: Clock) -> Result<Outcome, EngineError> {
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
    let mut plan = managed.plan(&root, old.entries.clone(), &(&empty, &state.store()))?;
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
