//! The site's hooks around an apply (docs/drift.md): `pre-apply` after the plan and
//! before the commit (a failure aborts the apply, nothing committed), `post-apply` after
//! a commit, `on-failure` after a failed apply, `on-drift` when drift was found. Each
//! runs on the node, outside the sandbox and not chrooted, in lexical order, with the
//! run's summary as JSON on its standard input and `STRATA_*` variables, for at most the
//! site's `[hooks] timeout`. A plan only lists the hooks an apply would run.

use std::path::Path;
use std::time::Duration;

use strata_core::{Hook, HookEvent, HookSettings};
use strata_types::{Activation, CommandStatus, Deferred, Plan};

use crate::EngineError;

/// Where hooks run, and for which node.
#[derive(Debug, Clone)]
pub struct HookContext<'a> {
    /// The site whose hooks run.
    pub site: &'a Path,
    /// The node's root (`STRATA_ROOT`).
    pub root: &'a Path,
    /// The node.
    pub node: &'a str,
    /// Its environment.
    pub environment: &'a str,
    /// Each hook's time limit.
    pub timeout: Duration,
}

impl HookContext<'_> {
    /// The hooks of `event`.
    pub fn hooks(&self, event: HookEvent) -> Result<Vec<Hook>, EngineError> {
        Ok(strata_core::hooks(self.site, event)?)
    }

    /// Runs every hook of `event` with the summary on its standard input (the context's
    /// fields are added to it), stopping at the first that fails when `stop` is set. The
    /// summary is made only when there is a hook to read it (it lists every change).
    pub fn run(
        &self,
        event: HookEvent,
        summary: impl FnOnce() -> serde_json::Value,
        stop: bool,
    ) -> Result<Vec<Activation>, EngineError> {
        let hooks = self.hooks(event)?;
        if hooks.is_empty() {
            return Ok(Vec::new());
        }
        let mut summary = summary();
        summary["event"] = event.as_str().into();
        summary["node"] = self.node.into();
        summary["environment"] = self.environment.into();
        summary["root"] = self.root.display().to_string().into();
        summary["site"] = self.site.display().to_string().into();
        let input = serde_json::to_vec_pretty(&summary).unwrap_or_default();
        let env = [
            ("STRATA_HOOK", event.as_str().to_string()),
            ("STRATA_ROOT", self.root.display().to_string()),
            ("STRATA_SITE", self.site.display().to_string()),
            ("STRATA_NODE", self.node.to_string()),
            ("STRATA_ENVIRONMENT", self.environment.to_string()),
        ]
        .map(|(k, v)| (k.to_string(), v));
        let mut out = Vec::with_capacity(hooks.len());
        for h in hooks {
            let call = Deferred {
                module: "hooks".into(),
                program: h.name.clone(),
                argv: vec![h.path.display().to_string()],
            };
            let ran = strata_state::run_hook(call, &h.path, &env, &input, self.timeout);
            let failed = ran.status != CommandStatus::Ok;
            out.push(ran);
            if failed && stop {
                break;
            }
        }
        Ok(out)
    }
}

/// A site's hook settings: its `[hooks]`, or the defaults when it cannot be read.
pub(crate) fn timeout_of(settings: Option<&HookSettings>) -> Duration {
    settings.map_or(HookSettings::DEFAULT_TIMEOUT, HookSettings::timeout)
}

/// The changes of a plan as hooks see them: path, action, sensitive; never contents.
pub(crate) fn changes_json(plan: &Plan) -> serde_json::Value {
    (plan.changes.iter())
        .filter(|c| c.action.changes_target())
        .map(|c| {
            serde_json::json!({
                "path": c.path.to_string(),
                "kind": c.action.as_str(),
                "module": c.module,
                "sensitive": c.sensitive,
            })
        })
        .collect::<Vec<_>>()
        .into()
}

/// The first hook of `ran` that did not succeed, as the error that aborts an apply.
pub(crate) fn failure(ran: &[Activation]) -> Option<EngineError> {
    let bad = ran.iter().find(|a| a.status != CommandStatus::Ok)?;
    let how = match (&bad.error, bad.exit) {
        (Some(e), _) => e.clone(),
        (None, Some(code)) => format!("exited with status {code}"),
        (None, None) => format!("killed by signal {}", bad.signal.unwrap_or(0)),
    };
    Some(EngineError::Hook {
        hook: bad.command.program.clone(),
        how,
        output: bad.output.clone(),
    })
}

/// A hook directory that could not be listed, as a hook that could not start.
pub(crate) fn unlisted(event: HookEvent, e: &EngineError) -> Activation {
    Activation {
        command: Deferred {
            module: "hooks".into(),
            program: format!("hooks/{}.d", event.as_str()),
            argv: Vec::new(),
        },
        error: Some(format!("could not list: {e}")),
        ..Activation::default()
    }
}
