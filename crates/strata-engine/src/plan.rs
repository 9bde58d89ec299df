//! The second stage: the compiled catalog planned against the target. The preparation
//! that `plan`, `shell` and `apply` share ([`prepare`]) compiles, opens the root and its
//! state, resolves the downloads, and plans directly, or through the sandbox (`scripts`)
//! when the catalog has scripts or executable templates.

use strata_core::{Catalog, HookEvent, Site, UserDb};
use strata_fs::{Meter, Root};
use strata_state::State;
use strata_types::{Generation, Plan, Step};

use crate::downloads::{self, Downloads};
use crate::managed::Managed;
use crate::request::Purpose;
use crate::scripts::{self, SandboxRun};
use crate::{EngineError, Outcome, Request, compile};

/// Computes what an apply would do. Writes nothing (unless an interrupted commit on the
/// root must be finished first).
pub fn plan(req: &Request) -> Result<Outcome, EngineError> {
    let mut root = None;
    let mut outcome = Outcome::new(prepare(req, Purpose::Plan, &mut root)?, None);
    // Listed, never run: those of an apply that would commit something.
    if outcome.has_changes() {
        for event in [HookEvent::PreApply, HookEvent::PostApply] {
            let hooks = strata_core::hooks(&req.site, event)?;
            outcome
                .would_run_hooks
                .extend(hooks.into_iter().map(|h| h.name));
        }
    }
    Ok(outcome)
}

/// Opens an interactive shell in the plan's sandbox (after the modules ran), and reports
/// what the session changed on top of the plan. Commits nothing.
pub fn shell(req: &Request) -> Result<Outcome, EngineError> {
    let mut root = None;
    Ok(Outcome::new(prepare(req, Purpose::Shell, &mut root)?, None))
}

/// A catalog compiled and planned against the target, with what it was made from: what a
/// plan shows, and what an apply commits.
pub(crate) struct Prepared<'r> {
    pub site: Site,
    pub catalog: Catalog,
    /// The version of each secret the compile read.
    pub secrets: compile::Versions,
    /// The node's state, open for reading, or for committing when the purpose is an apply.
    pub state: State<'r>,
    pub planned: Planned,
    /// Every stage's metrics so far.
    pub steps: Vec<Step>,
}

/// Compiles the request's node and plans it against the target, for `purpose`. The root
/// is opened into `root`, which the caller holds: the state borrows it.
pub(crate) fn prepare<'r>(
    req: &Request,
    purpose: Purpose,
    root: &'r mut Option<Root>,
) -> Result<Prepared<'r>, EngineError> {
    let mut steps = Vec::new();
    let (site, catalog, secrets) = compile::compile(req, purpose.allocate(), &mut steps)?;
    let root: &'r Root = root.insert(Root::open(&req.root)?);
    let state = match purpose {
        Purpose::Apply => State::open_for_commit(root)?,
        Purpose::Plan | Purpose::Shell => State::open_for_read(root)?,
    };
    if !req.checksum {
        root.use_stamps(state.stamps());
    }
    let users = UserDb::load(root)?;
    let planning = Planning {
        req,
        purpose,
        site: &site,
        catalog: &catalog,
        root,
        state: &state,
        users: &users,
    };
    let planned = planning.plan(&mut steps)?;
    Ok(Prepared {
        site,
        catalog,
        secrets,
        state,
        planned,
        steps,
    })
}

/// What planning a compiled catalog needs.
struct Planning<'a> {
    req: &'a Request,
    purpose: Purpose,
    site: &'a Site,
    catalog: &'a Catalog,
    root: &'a Root,
    state: &'a State<'a>,
    users: &'a UserDb,
}

/// A plan and what came with it.
pub(crate) struct Planned {
    pub plan: Plan,
    /// The generation it was planned against.
    pub current: Option<Generation>,
    /// The sandbox run, when there was one.
    pub run: Option<SandboxRun>,
    /// The downloads' contents.
    pub downloads: Downloads,
    /// The target's users and groups once the plan is applied (to show owners by name).
    pub users: UserDb,
}

impl Planning<'_> {
    /// Plans directly, or through the sandbox when the catalog has scripts or executable
    /// templates (or a shell is wanted).
    fn plan(&self, steps: &mut Vec<Step>) -> Result<Planned, EngineError> {
        let sandboxed = self.purpose == Purpose::Shell || scripts::needed(self.catalog);
        // A plan fetches downloads only when scripts may need them in the sandbox.
        let fetch = self.purpose == Purpose::Apply || sandboxed;
        let cache = &self.req.cache;
        let dl = downloads::resolve(self.catalog, self.root, self.users, cache, fetch)?;
        // The plan's step includes reading the last generation.
        let meter = Meter::start();
        let current = self.state.current()?;
        let managed = Managed::of(current.as_ref());
        let (mut plan, run) = match sandboxed {
            false => (self.direct(&dl, &managed, meter, steps)?, None),
            true => {
                let (plan, run) = self.sandboxed(&dl, &managed, meter, steps)?;
                (plan, Some(run))
            }
        };
        for c in &mut plan.changes {
            if let Some(url) = dl.pending.get(&c.path) {
                c.note = Some(format!(
                    "fetched from {url} and checked against its sha256 at apply"
                ));
            }
        }
        let users = match &run {
            Some(r) => r.users(self.root)?,
            None => self.users.clone(),
        };
        Ok(Planned {
            plan,
            current,
            run,
            downloads: dl,
            users,
        })
    }

    /// Plans the catalog's entries and downloads, and what its purges remove of what the
    /// last generation manages.
    fn direct(
        &self,
        dl: &Downloads,
        managed: &Managed<'_>,
        meter: Meter,
        steps: &mut Vec<Step>,
    ) -> Result<Plan, EngineError> {
        let mut entries = self.catalog.entries(self.users)?;
        entries.extend(dl.entries.iter().cloned());
        let purged = self
            .catalog
            .purged(self.root, managed.entries, &Default::default())?;
        entries.extend(purged);
        let store = self.state.store();
        let contents = ((self.catalog, &dl.contents), &store);
        let plan = managed.plan(self.root, entries, &contents)?;
        steps.push(meter.finish("plan"));
        Ok(plan)
    }

    /// Plans through the sandbox, after checking that what the programs called may run.
    fn sandboxed(
        &self,
        dl: &Downloads,
        managed: &Managed<'_>,
        meter: Meter,
        steps: &mut Vec<Step>,
    ) -> Result<(Plan, SandboxRun), EngineError> {
        let helper = self.req.helper.as_deref().ok_or(EngineError::NoHelper)?;
        let sandbox = scripts::Sandbox {
            req: self.req,
            purpose: self.purpose,
            helper,
            catalog: self.catalog,
            settings: &self.site.sandbox,
            root: self.root,
            state: self.state,
            users: self.users,
            downloads: dl,
            managed,
        };
        let (plan, run) = sandbox.plan(meter, steps)?;
        // Before anything is committed: only intercepted commands ever run.
        crate::intercept::check(&run.observed.calls, &self.site.sandbox.intercept)?;
        Ok((plan, run))
    }
}
