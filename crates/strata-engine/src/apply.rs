//! `apply`: the pipeline walked down once: prepared (compiled and planned, [`prepare`]),
//! committed ([`ToCommit::commit`]) while the caller shows what is being committed, and
//! returned as an [`Outcome`].

use strata_core::{Catalog, HookEvent, Site};
use strata_types::{Activation, GenerationKind, ProgramRun, Step};

use crate::commit::{Clock, Header, Recorded, ToCommit, scheduled};
use crate::hooks::{self, HookContext};
use crate::outcome::Pending;
use crate::plan::prepare;
use crate::request::Purpose;
use crate::{EngineError, Outcome, Request};

/// Plans and commits, all or nothing, and records a generation. Nothing is written when
/// nothing changes. Intercepted commands the scripts called run on the target after the
/// commit, in call order.
pub fn apply(req: &Request) -> Result<Outcome, EngineError> {
    apply_showing(req, |_| ()).map(|(o, ())| o)
}

/// [`apply`], calling `show` on another thread with what is about to be committed, while
/// it commits (a plan of thousands of new files is shown on one core while the other
/// writes them); returns what `show` returned beside the outcome.
pub fn apply_showing<R: Send>(
    req: &Request,
    show: impl FnOnce(&Pending<'_>) -> R + Send,
) -> Result<(Outcome, R), EngineError> {
    apply_showing_by(req, Clock::System, show)
}

/// [`apply_showing`], with the generation's time told by `clock` (which the CLI's tests
/// fix) rather than by the system's.
pub fn apply_showing_by<R: Send>(
    req: &Request,
    clock: Clock,
    show: impl FnOnce(&Pending<'_>) -> R + Send,
) -> Result<(Outcome, R), EngineError> {
    let mut root = None;
    let mut prepared = prepare(req, Purpose::Apply, &mut root)?;
    let p = &mut prepared;
    let mut header = header(&p.site, &p.catalog, clock);
    header.secrets = std::mem::take(&mut p.secrets);
    let hooks = HookContext {
        site: &req.site,
        root: &req.root,
        node: &p.catalog.node.name,
        environment: &p.catalog.node.environment,
        timeout: p.site.hooks.timeout(),
    };
    let revision = header.revision.clone();
    let mut ran = Vec::new();
    // Hooks run around a commit: an apply with nothing to do runs none.
    let committing = p.planned.plan.has_changes()
        || p.planned
            .run
            .as_ref()
            .is_some_and(|r| !r.observed.calls.is_empty());
    if committing {
        let summary = || {
            serde_json::json!({
                "result": "pending",
                "revision": revision,
                "changes": hooks::changes_json(&p.planned.plan),
            })
        };
        ran = hooks.run(HookEvent::PreApply, summary, true)?;
        if let Some(e) = hooks::failure(&ran) {
            return Err(e);
        }
    }
    let no_runs: &[ProgramRun] = &[];
    let (calls, runs) = match &p.planned.run {
        Some(r) => (
            scheduled(&p.catalog, &r.observed.calls),
            &r.observed.runs[..],
        ),
        None => (Vec::new(), no_runs),
    };
    let out = p.planned.run.as_ref().map(|r| r.contents());
    let contents = ((&p.catalog, &p.planned.downloads.contents), out);
    let plan = &mut p.planned.plan;
    let to_commit = ToCommit {
        state: &p.state,
        entries: std::mem::take(&mut plan.entries),
        originals: std::mem::take(&mut plan.originals),
        changes: &plan.changes,
        current: p.planned.current.as_ref(),
        header,
        // The catalog keeps what it reads and renders: loaded ahead of the commit.
        contents: strata_state::Prefetching::new(&contents, &p.catalog),
        calls,
        programs: runs,
    };
    let pending = Pending {
        changes: &plan.changes,
        users: &p.planned.users,
        runs,
        contents: &contents,
    };
    let (recorded, shown) = commit_showing(to_commit, pending, show, &mut p.steps)?;
    if let Some(n) = recorded.generation {
        let summary = || {
            serde_json::json!({
                "result": "applied",
                "generation": n,
                "revision": revision,
                "changes": hooks::changes_json(plan),
                "commands": recorded.activations.iter().map(|a| serde_json::json!({
                    "argv": a.command.argv, "status": a.status, "exit": a.exit,
                })).collect::<Vec<_>>(),
            })
        };
        // The commit stands whatever its post-apply hooks do: their failures are reported.
        match hooks.run(HookEvent::PostApply, summary, false) {
            Ok(post) => ran.extend(post),
            Err(e) => ran.push(hooks::unlisted(HookEvent::PostApply, &e)),
        }
    }
    let mut outcome = Outcome::new(prepared, Some(recorded));
    outcome.hooks = ran;
    Ok((outcome, shown))
}

/// Runs the site's `on-failure` hooks after an apply of `req` failed with `error`, and
/// says how each went (their failures are the caller's to report: the apply failed
/// anyway). The site's `[hooks] timeout` applies when its settings can be read.
pub fn on_failure(req: &Request, error: &EngineError) -> Vec<Activation> {
    let site = strata_core::Site::open(&req.site).ok();
    let hooks = HookContext {
        site: &req.site,
        root: &req.root,
        node: &req.node,
        environment: "",
        timeout: hooks::timeout_of(site.as_ref().map(|s| &s.hooks)),
    };
    let summary = serde_json::json!({
        "result": "failed",
        "revision": site.as_ref().map(hooks_revision),
        "error": error.to_string(),
    });
    hooks
        .run(HookEvent::OnFailure, move || summary, false)
        .unwrap_or_else(|e| vec![hooks::unlisted(HookEvent::OnFailure, &e)])
}

/// The site's revision as hooks are told it.
fn hooks_revision(site: &Site) -> String {
    strata_core::Revision::of(&site.dir).to_snapshot()
}

/// Commits on this thread while `show` is given `pending` on another.
fn commit_showing<R: Send>(
    to_commit: ToCommit<'_>,
    pending: Pending<'_>,
    show: impl FnOnce(&Pending<'_>) -> R + Send,
    steps: &mut Vec<Step>,
) -> Result<(Recorded, R), EngineError> {
    std::thread::scope(|s| {
        let shown = s.spawn(move || {
            strata_fs::background_thread();
            show(&pending)
        });
        let committed = to_commit.commit(steps);
        let shown = shown
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        committed.map(|c| (c, shown))
    })
}

/// What an apply's generation records of the site and the catalog, its time told by
/// `clock`.
fn header(site: &Site, catalog: &Catalog, clock: Clock) -> Header {
    let revision = strata_core::Revision::of(&site.dir);
    Header {
        kind: GenerationKind::Apply,
        replayed: None,
        node: catalog.node.name.clone(),
        environment: catalog.node.environment.clone(),
        site: Some(site.dir.display().to_string()),
        revision: Some(revision.id),
        dirty: revision.dirty,
        modules: (catalog.runs.iter())
            .map(|r| (r.id.clone(), r.digest.clone()))
            .collect(),
        keep_generations: site.state.keep_generations.map(|k| k.0),
        secrets: Default::default(),
        clock,
        prune: true,
    }
}
