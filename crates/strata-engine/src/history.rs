//! What the stages recorded on a root, read and pruned: an interrupted commit finished,
//! the generations, their reports, and the gc.

use std::path::Path;

use strata_fs::Root;
use strata_state::{DEFAULT_KEEP, History, Pruned, Recovered, State, Sweep};
use strata_types::Report;

use crate::EngineError;

/// Finishes a commit an earlier process left interrupted on `root`, if there is one, and
/// says what finishing it did (when it was past its commit point): every entry point does
/// this when it opens the root, this shows it.
pub fn recover(root: &Path) -> Result<Option<Recovered>, EngineError> {
    let root = Root::open(root)?;
    Ok(State::open_for_read(&root)?.recovered().cloned())
}

/// Every generation recorded on a root, the size of its store and what was pruned.
pub fn generations(root: &Path) -> Result<History, EngineError> {
    let root = Root::open(root)?;
    Ok(State::open_for_read(&root)?.history()?)
}

/// Prunes the generations of a root beyond the newest `keep` (default: the retention
/// the current generation recorded from its site, else [`DEFAULT_KEEP`]), and every store
/// object only they used, or that interrupted commits and gcs left.
pub fn gc(root: &Path, keep: Option<u64>) -> Result<Pruned, EngineError> {
    let root = Root::open(root)?;
    let state = State::open_for_commit(&root)?;
    let keep = match keep {
        Some(k) => k,
        None => (state.current()?)
            .and_then(|g| g.keep_generations)
            .unwrap_or(DEFAULT_KEEP),
    };
    Ok(state.gc(keep, Sweep::Always)?)
}

/// The report of generation `n` (default: the current one).
pub fn report(root: &Path, n: Option<u64>) -> Result<(u64, Report), EngineError> {
    let root = Root::open(root)?;
    let state = State::open_for_read(&root)?;
    let n = match n {
        Some(n) => n,
        None => state.current_number()?.ok_or(EngineError::NoGeneration)?,
    };
    Ok((n, state.report(n)?))
}
