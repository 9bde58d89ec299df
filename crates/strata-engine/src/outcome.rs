//! The last stage: what a plan, apply or rollback found and did, as the caller gets it
//! ([`Outcome`]), and what it changes, to show ([`Pending`]).

use std::borrow::Cow;
use std::collections::HashMap;

use strata_core::{Lazy, UserDb};
use strata_state::{Pruned, StateError};
use strata_types::{
    Action, Activation, Change, ContentSource, Deferred, Hash, Plan, ProgramRun, Report,
};

use crate::commit::Recorded;
use crate::plan::Prepared;

/// What a plan, apply or rollback found and did.
#[derive(Debug)]
pub struct Outcome {
    /// The node.
    pub node: String,
    /// Its environment.
    pub environment: String,
    /// What changes (for an apply: what changed).
    pub plan: Plan,
    /// The target's users and groups, to show owners by name.
    pub users: UserDb,
    /// The generation recorded; none when there was nothing to do (or for a plan).
    pub generation: Option<u64>,
    /// Per-step metrics.
    pub report: Report,
    /// Programs that ran in the sandbox, with their output.
    pub runs: Vec<ProgramRun>,
    /// Intercepted calls: in a plan, what would run; in an apply, what ran after the commit.
    pub calls: Vec<Deferred>,
    /// In an apply: how each intercepted call went on the target.
    pub activations: Vec<Activation>,
    /// In an apply: what the site's retention (`[state] keep_generations`) pruned once the
    /// apply was done, or why it failed (the apply stands either way).
    pub pruned: Option<Result<Pruned, StateError>>,
    /// The content of every file the plan creates (and more), for showing its diff:
    /// plans leave those diffs out so as not to hold each new file twice
    /// ([`Outcome::diff`]). A content too large for a diff is not kept.
    pub contents: HashMap<Hash, Vec<u8>>,
    /// In an apply: the site's hooks that ran (`pre-apply`, then `post-apply`), and how
    /// each went.
    pub hooks: Vec<Activation>,
    /// In a plan: the hooks an apply would run (`hooks/pre-apply.d/10-check`…); none
    /// runs.
    pub would_run_hooks: Vec<String>,
}

impl Outcome {
    /// What a prepared plan found, and what committing it did when it was committed.
    pub(crate) fn new(prepared: Prepared<'_>, recorded: Option<Recorded>) -> Outcome {
        let Prepared {
            mut catalog,
            planned,
            steps,
            ..
        } = prepared;
        let out = planned.run.as_ref().map(|r| r.contents());
        let held = (
            std::mem::take(&mut catalog.contents),
            std::mem::take(&mut catalog.lazy),
        );
        let contents = new_contents(&planned.plan, held, &(&planned.downloads.contents, out));
        let (runs, calls) = (planned.run)
            .map(|r| (r.observed.runs, r.observed.calls))
            .unwrap_or_default();
        let recorded = recorded.unwrap_or_default();
        Outcome {
            node: catalog.node.name,
            environment: catalog.node.environment,
            plan: planned.plan,
            users: planned.users,
            generation: recorded.generation,
            report: Report {
                steps,
                ..Report::default()
            },
            runs,
            calls,
            activations: recorded.activations,
            pruned: recorded.pruned,
            contents,
            hooks: Vec::new(),
            would_run_hooks: Vec::new(),
        }
    }

    /// Whether an apply would do anything: change a path or run a command.
    pub fn has_changes(&self) -> bool {
        self.plan.has_changes() || !self.calls.is_empty()
    }

    /// The unified diff of a change: the plan's, or for a new text file, its content.
    pub fn diff<'a>(&self, c: &'a Change) -> Option<Cow<'a, str>> {
        self.pending().diff(c)
    }

    /// What it changes, to show.
    pub fn pending(&self) -> Pending<'_> {
        Pending {
            changes: &self.plan.changes,
            users: &self.users,
            runs: &self.runs,
            contents: &self.contents,
        }
    }
}

/// What an apply is about to commit, to show while it commits (see
/// [`apply_showing`](crate::apply_showing)), or what an outcome changes
/// ([`Outcome::pending`]).
pub struct Pending<'a> {
    /// Every managed or released path, in path order.
    pub changes: &'a [Change],
    /// The target's users and groups, to show owners by name.
    pub users: &'a UserDb,
    /// Programs that ran in the sandbox, with their output.
    pub runs: &'a [ProgramRun],
    pub(crate) contents: &'a (dyn ContentSource + Sync),
}

impl std::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("changes", &self.changes.len())
            .finish_non_exhaustive()
    }
}

impl Pending<'_> {
    /// The unified diff of a change: the plan's, or for a new text file, its content.
    pub fn diff<'c>(&self, c: &'c Change) -> Option<Cow<'c, str>> {
        if let Some(d) = &c.diff {
            return Some(Cow::Borrowed(d));
        }
        if c.action != Action::Create || c.sensitive {
            return None;
        }
        let new = self.contents.content(&c.after.hash()?)?;
        strata_core::diff_text(&c.path, &[], &new).map(Cow::Owned)
    }
}

/// The contents the catalog holds (read, or loaded since), and from `more` those of the
/// other files `plan` creates (see [`Outcome::diff`]). Nothing is copied that can be moved.
pub(crate) fn new_contents(
    plan: &Plan,
    (mut held, lazy): (HashMap<Hash, Vec<u8>>, Lazy),
    more: &dyn ContentSource,
) -> HashMap<Hash, Vec<u8>> {
    for c in &plan.changes {
        if c.action != Action::Create || c.sensitive {
            continue;
        }
        let Some(h) = c.after.hash() else { continue };
        if held.contains_key(&h) || lazy.content(&h).is_some() {
            continue;
        }
        // Only to show a diff: what is too large for one is not copied (a download may be
        // gigabytes, mapped from the cache).
        if let Some(bytes) = more
            .content(&h)
            .filter(|b| b.len() <= strata_core::DIFF_LIMIT)
        {
            held.insert(h, bytes.into_owned());
        }
    }
    held.extend(lazy.into_loaded());
    held
}
