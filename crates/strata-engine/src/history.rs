//! What the stages recorded on a root, read and pruned: an interrupted commit finished,
//! the generations, their reports, and the gc.

use std::collections::BTreeMap;
use std::path::Path;

use strata_fs::Root;
use strata_state::{DEFAULT_KEEP, History, Pruned, Recovered, State, Sweep};
use strata_types::{ContentSource, Entry, Report, Snapshot, TargetPath};

use crate::{DriftKind, Drifted, EngineError};

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

/// What changed from one generation of a root to another (`strata diff`).
#[derive(Debug, serde::Serialize)]
pub struct GenerationDiff {
    /// The generation compared from.
    pub from: GenerationSide,
    /// The generation compared to.
    pub to: GenerationSide,
    /// Every path whose recorded state differs, in path order: `recorded` is the first
    /// generation's, `found` the second's (`missing`: the second no longer manages it,
    /// `added`: only the second does).
    pub paths: Vec<Drifted>,
    /// The target's users and groups, to show owners by name.
    #[serde(skip)]
    pub users: strata_core::UserDb,
}

/// One side of a [`GenerationDiff`].
#[derive(Debug, serde::Serialize)]
pub struct GenerationSide {
    /// Its number.
    pub number: u64,
    /// When it was recorded.
    pub time: String,
    /// The site revision it was applied from.
    pub revision: Option<String>,
    /// The site's checkout had changes not committed.
    pub dirty: bool,
}

/// Compares the entries generations `from` and `to` of `root` record, with diffs of
/// text contents from the store (none for sensitive files: rendered from a secret, or not
/// readable by others on either side).
pub fn diff(root: &Path, from: u64, to: u64) -> Result<GenerationDiff, EngineError> {
    let root = Root::open(root)?;
    let state = State::open_for_read(&root)?;
    let (a, b) = (state.generation(from)?, state.generation(to)?);
    let store = state.store();
    let side = |g: &strata_types::Generation| GenerationSide {
        number: g.number,
        time: g.time.clone(),
        revision: g.revision.clone(),
        dirty: g.dirty,
    };
    let mut by_path: BTreeMap<&TargetPath, (Option<&Entry>, Option<&Entry>)> = BTreeMap::new();
    for e in &a.entries {
        by_path.entry(&e.path).or_default().0 = Some(e);
    }
    for e in &b.entries {
        by_path.entry(&e.path).or_default().1 = Some(e);
    }
    let mut paths = Vec::new();
    for (path, (x, y)) in by_path {
        let state_of = |e: Option<&Entry>| e.map_or(Snapshot::Absent, |e| e.state.clone());
        let (before, after) = (state_of(x), state_of(y));
        if before == after {
            continue;
        }
        let private = |s: &Snapshot| matches!(s, Snapshot::File { mode, .. } if mode & 0o004 == 0);
        let sensitive = x.is_some_and(|e| e.sensitive)
            || y.is_some_and(|e| e.sensitive)
            || private(&before)
            || private(&after);
        let kind = DriftKind::of(&before, &after);
        let diff = match (sensitive, before.hash(), after.hash()) {
            (false, Some(h1), Some(h2)) if h1 != h2 => {
                match (store.content(&h1), store.content(&h2)) {
                    (Some(o), Some(n)) => strata_core::diff_text(path, &o, &n),
                    _ => None,
                }
            }
            (false, None, Some(h)) if matches!(before, Snapshot::Absent) => store
                .content(&h)
                .and_then(|n| strata_core::diff_text(path, &[], &n)),
            _ => None,
        };
        paths.push(Drifted {
            path: path.clone(),
            kind,
            module: y.or(x).and_then(|e| e.module.clone()),
            recorded: before,
            found: after,
            sensitive,
            diff,
        });
    }
    Ok(GenerationDiff {
        from: side(&a),
        to: side(&b),
        paths,
        users: strata_core::UserDb::load(&root)?,
    })
}
