//! A verified snapshot applied on this node, as `strata apply --site` would apply the
//! site: the floor raised first, the site rebuilt from the blob store, the engine's
//! plan or apply, its outcome as one [`NodeEvent::Result`]. Shared by `receive` (push)
//! and `agent` (pull).

use std::path::Path;
use std::time::{Duration, Instant};

use strata_engine::{Classify, EngineError, Outcome, Request};
use strata_snapshot::{Assignment, BlobStore, Trust, Verified, VerifiedAssignment};
use strata_transport::wire::{ErrorInfo, NodeEvent, PathChange, StepTime};
use strata_types::Action;

use crate::command_error::{CommandError, CommandResult};
use crate::deferred::{self, Recovery};
use crate::printer::Printer;
use crate::show;

/// How long a node's lock is waited for before the node reports `busy` (FLEET.md).
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// A failure to report: its kind and message.
pub struct Refusal(pub ErrorInfo);

impl Refusal {
    /// A refusal that says `why`.
    pub fn new(why: impl Into<String>) -> Refusal {
        Refusal(ErrorInfo::new("refused", why.into()))
    }
}

/// An error and its causes, each once: "cannot create directory X: No space left on
/// device".
impl<E: std::error::Error> From<E> for Refusal {
    fn from(e: E) -> Refusal {
        let mut text = e.to_string();
        let mut cause = e.source();
        while let Some(c) = cause {
            let t = c.to_string();
            if !text.ends_with(&t) {
                text.push_str(": ");
                text.push_str(&t);
            }
            cause = c.source();
        }
        Refusal::new(text)
    }
}

/// The result to report, and the command's own.
pub type Done = (NodeEvent, CommandResult);

/// The result of a refusal.
pub fn refused(Refusal(error): Refusal) -> Done {
    let busy = error.kind == "busy";
    let event = NodeEvent::Result {
        result: if busy { "busy" } else { "failed" }.into(),
        changes: 0,
        paths: Vec::new(),
        generation: None,
        text: String::new(),
        error: Some(error.clone()),
        steps: Vec::new(),
    };
    (
        event,
        Err(CommandError::from(anyhow::anyhow!(error.message))),
    )
}

/// What to apply, where.
#[derive(Debug)]
pub struct NodeRun<'a> {
    /// The node's root.
    pub root: &'a Path,
    /// The node's name.
    pub node: &'a str,
    /// Plan instead of applying.
    pub noop: bool,
    /// `--set` pairs.
    pub sets: &'a [(String, String)],
}

/// Applies (or plans) a verified snapshot whose blobs are all in `store`, with the
/// node's verified assignment if it got one; with `record`, first pins its root and
/// raises the environment's floor (and the assignment's), durably.
pub fn apply_verified(
    run: &NodeRun<'_>,
    trust: &Trust,
    store: &BlobStore,
    (verified, assignment): (&Verified, Option<&VerifiedAssignment>),
    record: bool,
    stage: &mut (dyn FnMut(&str) + Send),
) -> Result<Done, Refusal> {
    let root = run.root;
    if record {
        trust.record(verified, assignment)?;
    }
    stage("syncing the site");
    let site = store.materialize(&verified.manifest)?;
    let req = Request {
        site: site.dir,
        node: run.node.to_string(),
        root: root.to_path_buf(),
        sets: run.sets.to_vec(),
        facts: None,
        local: true,
        db: None,
        helper: std::env::current_exe().ok(),
        checksum: false,
        cache: crate::cli::cache_dir(),
        terminal: None,
        classify: Classify::Assigned(assignment.map(|a| classification(&a.assignment))),
    };
    let quiet = Printer {
        color: false,
        color_err: false,
        verbose: false,
    };
    let recovery = Recovery::open(&quiet, root)
        .map_err(|e| Refusal(ErrorInfo::new("recover", format!("{:#}", e.error))))?;
    let done = if run.noop {
        stage("planning");
        let outcome = with_lock(|| strata_engine::plan(&req))?;
        let mut text = Vec::new();
        show::plan_text(&quiet, &outcome, "plan", &mut text)?;
        let pending = outcome.has_changes();
        let result = if pending { "would_change" } else { "unchanged" };
        let event = result_event(&outcome, result, &text, None);
        let code = if pending {
            Err(CommandError::changes_pending())
        } else {
            Ok(())
        };
        (event, code)
    } else {
        stage("applying");
        let mut text = Vec::new();
        let mut after_failure = Vec::new();
        let outcome = with_lock(|| {
            text.clear();
            strata_engine::apply_showing(&req, |pending| {
                stage("committing");
                show::changes_text(&quiet, pending, &mut text)
            })
            .map(|(o, _)| o)
            .inspect_err(|e| {
                if lock_held(e).is_none() {
                    after_failure = strata_engine::on_failure(&req, e);
                }
            })
        })
        .map_err(|mut r| {
            let mut hooks = String::new();
            for h in &after_failure {
                show::hook_text(&quiet, h, &mut hooks);
            }
            if !hooks.is_empty() {
                r.0.message.push('\n');
                r.0.message.push_str(hooks.trim_end());
            }
            r
        })?;
        show::tail_text(&quiet, &outcome, "apply", &mut text)?;
        let failed = deferred::failures(outcome.generation, &outcome.activations, "")
            .or_else(|| show::hook_failures(outcome.generation, &outcome.hooks));
        let result = if outcome.generation.is_some() {
            "changed"
        } else {
            "unchanged"
        };
        let error = failed.clone().map(|m| ErrorInfo::new("commands", m));
        let event = result_event(&outcome, result, &text, error);
        if let Err(e) = store.prune(&verified.manifest) {
            stage(&format!("note: {e}"));
        }
        (
            event,
            failed.map_or(Ok(()), |t| Err(CommandError::commands_failed(t))),
        )
    };
    let (event, result) = done;
    Ok((event, recovery.end(result)))
}

/// The classification an assignment carries, as the engine takes it.
fn classification(a: &Assignment) -> strata_hardware::Classification {
    let c = &a.classification;
    strata_hardware::Classification {
        machine: c.machine.clone(),
        profile: c.profile.clone(),
        role: c.role.clone(),
        vars: c.vars.clone(),
        pools: c.pools.clone(),
    }
}

fn result_event(o: &Outcome, result: &str, text: &[u8], error: Option<ErrorInfo>) -> NodeEvent {
    let paths: Vec<PathChange> = o
        .plan
        .changes
        .iter()
        .filter(|c| c.action != Action::Unchanged)
        .map(|c| PathChange {
            path: c.path.to_string(),
            kind: c.action.as_str().to_string(),
            sensitive: c.sensitive,
        })
        .collect();
    NodeEvent::Result {
        result: result.into(),
        changes: paths.len(),
        paths,
        generation: o.generation,
        text: String::from_utf8_lossy(text).into_owned(),
        error,
        steps: StepTime::of(&o.report.steps),
    }
}

/// Runs `f`, waiting up to a minute while another strata holds the node's lock.
fn with_lock(mut f: impl FnMut() -> Result<Outcome, EngineError>) -> Result<Outcome, Refusal> {
    let start = Instant::now();
    loop {
        match f() {
            Ok(o) => return Ok(o),
            Err(e) => {
                if let Some(held) = lock_held(&e) {
                    if start.elapsed() < LOCK_WAIT {
                        std::thread::sleep(Duration::from_millis(500));
                        continue;
                    }
                    return Err(Refusal(ErrorInfo::new("busy", held)));
                }
                let kind = if matches!(e, EngineError::Site(_)) {
                    "site"
                } else {
                    "apply"
                };
                return Err(Refusal(ErrorInfo::new(kind, error_text(&e))));
            }
        }
    }
}

/// The lock error in `e`'s causes, found by type.
pub(crate) fn lock_held(e: &EngineError) -> Option<String> {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(c) = cause {
        if let Some(l) = c.downcast_ref::<strata_fs::LockError>() {
            return Some(l.to_string());
        }
        cause = c.source();
    }
    None
}

/// An engine error as one text: each site error on its line, else the cause chain.
fn error_text(e: &EngineError) -> String {
    if let EngineError::Site(errors) = e {
        return errors
            .0
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("\n");
    }
    let mut parts = vec![e.to_string()];
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        let t = c.to_string();
        if !parts.last().is_some_and(|l| l.ends_with(&t)) {
            parts.push(t);
        }
        cause = c.source();
    }
    parts.join(": ")
}
