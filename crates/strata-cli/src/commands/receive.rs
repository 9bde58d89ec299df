//! `strata receive` (hidden): the node's side of `strata push`. It reads the site's root
//! chain and a signed manifest from stdin, verifies them before parsing them, asks for
//! the blobs it lacks, rebuilds the site from its blob store and runs the ordinary
//! apply (or plan with `--noop`), telling the operator what happens as JSON lines.
//!
//! Once it has every blob, it no longer needs the operator: a dropped connection or a
//! Ctrl-C there leaves it running to the end (SIGHUP and SIGPIPE ignored, output that
//! cannot be written dropped), and its commit is all-or-nothing as a local apply's is.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;
use std::time::{Duration, Instant};

use clap::Args;
use strata_engine::{EngineError, Outcome, Request};
use strata_snapshot::{BlobStore, MAX_MANIFEST, MAX_METADATA, RootSet, Trust};
use strata_transport::wire::{self, ErrorInfo, NodeEvent, PathChange};
use strata_types::{Action, Hash};

use crate::cli::{RootArg, absolute, parse_set};
use crate::deferred::{self, Recovery};
use crate::error::{CliError, CliResult};
use crate::printer::Printer;
use crate::show;

/// The node's side of `strata push` (run by push over SSH; not for people).
#[derive(Debug, Args)]
pub struct ReceiveArgs {
    /// The node's name.
    #[arg(long)]
    pub node: String,
    #[command(flatten)]
    pub root: RootArg,
    /// Plan instead of applying.
    #[arg(long)]
    pub noop: bool,
    /// `--set` pairs from the operator.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
}

/// How long a node's lock is waited for before the node reports `busy` (FLEET.md).
const LOCK_WAIT: Duration = Duration::from_secs(60);

/// Events to the operator; once a write fails (the operator went away), the rest are
/// dropped and the work goes on.
struct Events {
    gone: bool,
}

impl Events {
    fn send(&mut self, e: &NodeEvent) {
        if !self.gone && wire::write_event(&mut std::io::stdout().lock(), e).is_err() {
            self.gone = true;
        }
    }
}

/// A failure to report: its kind and message.
struct Refusal(ErrorInfo);

impl<E: std::fmt::Display> From<E> for Refusal {
    fn from(e: E) -> Refusal {
        Refusal(ErrorInfo::new("refused", e.to_string()))
    }
}

pub fn run(args: &ReceiveArgs, _printer: &Printer) -> CliResult {
    // SAFETY: setting a signal's disposition to "ignore" at the start of a
    // single-threaded command; no handler runs.
    unsafe {
        libc::signal(libc::SIGHUP, libc::SIG_IGN);
        libc::signal(libc::SIGPIPE, libc::SIG_IGN);
    }
    let root = absolute(&args.root.root)?;
    let mut events = Events { gone: false };
    let mut input = std::io::BufReader::new(std::io::stdin().lock());
    let outcome = receive(args, &root, &mut input, &mut events);
    let (event, result) = match outcome {
        Ok(done) => done,
        Err(Refusal(error)) => {
            let busy = error.kind == "busy";
            let event = NodeEvent::Result {
                result: if busy { "busy" } else { "failed" }.into(),
                changes: 0,
                paths: Vec::new(),
                generation: None,
                text: String::new(),
                error: Some(error.clone()),
            };
            (event, Err(CliError::Failed(anyhow::anyhow!(error.message))))
        }
    };
    events.send(&event);
    result
}

type Done = (NodeEvent, CliResult);

fn receive(
    args: &ReceiveArgs,
    root: &Path,
    input: &mut impl BufRead,
    events: &mut Events,
) -> Result<Done, Refusal> {
    let now = strata_snapshot::now();
    let state = root.join("var/lib/strata");
    let (roots, manifest) = read_metadata(input)?;
    let trust = Trust::open(&state);
    let verified = trust.verify(&roots, &manifest, now)?;
    let store = BlobStore::open(&state);
    let missing = store.missing(&verified.manifest);
    events.send(&NodeEvent::Need {
        blobs: missing.iter().map(|(h, _)| h.to_string()).collect(),
    });
    read_blobs(input, &store, &missing)?;
    // From here on the operator is not needed.
    if !args.noop {
        trust.record(&verified)?;
    }
    events.send(&NodeEvent::Stage {
        stage: "syncing the site".into(),
    });
    let site = store.materialize(&verified.manifest)?;
    let req = Request {
        site: site.dir,
        node: args.node.clone(),
        root: root.to_path_buf(),
        sets: args.sets.clone(),
        facts: None,
        local: true,
        db: None,
        helper: std::env::current_exe().ok(),
        checksum: false,
    };
    let quiet = Printer {
        color: false,
        color_err: false,
        verbose: false,
    };
    let recovery = Recovery::open(&quiet, root).map_err(|e| match e {
        CliError::Failed(e) => Refusal(ErrorInfo::new("recover", format!("{e:#}"))),
        _ => Refusal(ErrorInfo::new(
            "recover",
            "finishing an interrupted commit failed",
        )),
    })?;
    let done = if args.noop {
        events.send(&NodeEvent::Stage {
            stage: "planning".into(),
        });
        let outcome = with_lock(|| strata_engine::plan(&req))?;
        let mut text = Vec::new();
        show::plan_text(&quiet, &outcome, "plan", &mut text)?;
        let pending = outcome.has_changes();
        let result = if pending { "would_change" } else { "unchanged" };
        let event = result_event(&outcome, result, &text, None);
        let code = if pending {
            Err(CliError::ChangesPending)
        } else {
            Ok(())
        };
        (event, code)
    } else {
        events.send(&NodeEvent::Stage {
            stage: "applying".into(),
        });
        let mut text = Vec::new();
        let outcome = with_lock(|| {
            text.clear();
            strata_engine::apply_showing(&req, |pending| {
                events.send(&NodeEvent::Stage {
                    stage: "committing".into(),
                });
                show::changes_text(&quiet, pending, &mut text)
            })
            .map(|(o, _)| o)
        })?;
        show::tail_text(&quiet, &outcome, "apply", &mut text)?;
        let failed = deferred::failures(outcome.generation, &outcome.activations, "");
        let result = if outcome.generation.is_some() {
            "changed"
        } else {
            "unchanged"
        };
        let error = failed.clone().map(|m| ErrorInfo::new("commands", m));
        let event = result_event(&outcome, result, &text, error);
        if let Err(e) = store.prune(&verified.manifest) {
            events.send(&NodeEvent::Stage {
                stage: format!("note: {e}"),
            });
        }
        (
            event,
            failed.map_or(Ok(()), |t| Err(CliError::CommandsFailed(t))),
        )
    };
    let (event, result) = done;
    Ok((event, recovery.end(result)))
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
fn lock_held(e: &EngineError) -> Option<String> {
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

/// Reads `root` frames, one `manifest`, then `end`, each within its limit.
fn read_metadata(input: &mut impl BufRead) -> Result<(RootSet, Vec<u8>), Refusal> {
    let mut roots = Vec::new();
    let mut manifest = None;
    loop {
        let frame =
            wire::read_frame(input)?.ok_or_else(|| Refusal::from("the push ended early"))?;
        let limit = match frame.tag.as_str() {
            "end" if manifest.is_some() => return Ok((RootSet(roots), manifest.expect("checked"))),
            "root" if manifest.is_none() && roots.len() < 1000 => MAX_METADATA,
            "manifest" if manifest.is_none() => MAX_MANIFEST,
            other => return Err(Refusal::from(format!("unexpected {other:?} in a push"))),
        };
        if frame.len > limit as u64 {
            return Err(Refusal::from(format!(
                "the push's {} is {} bytes, over the limit of {limit}",
                frame.tag, frame.len
            )));
        }
        let mut body = Vec::with_capacity(frame.len as usize);
        input.take(frame.len).read_to_end(&mut body)?;
        if body.len() as u64 != frame.len {
            return Err(Refusal::from("the push ended early"));
        }
        if frame.tag == "root" {
            roots.push(body);
        } else {
            manifest = Some(body);
        }
    }
}

/// Reads the blobs asked for, each checked against its hash and the manifest's size,
/// until `end`; a blob not asked for, or one missing at the end, is refused.
fn read_blobs(
    input: &mut impl BufRead,
    store: &BlobStore,
    missing: &[(Hash, u64)],
) -> Result<(), Refusal> {
    let mut wanted: HashMap<String, (Hash, u64)> = missing
        .iter()
        .map(|(h, s)| (h.to_string(), (*h, *s)))
        .collect();
    loop {
        let frame =
            wire::read_frame(input)?.ok_or_else(|| Refusal::from("the push ended early"))?;
        match frame.tag.as_str() {
            "end" => break,
            "blob" => {
                let (hash, size) = wanted.remove(&frame.arg).ok_or_else(|| {
                    Refusal::from(format!("blob {:?} was not asked for", frame.arg))
                })?;
                if frame.len != size {
                    return Err(Refusal::from(format!(
                        "blob {hash} is {} bytes; the manifest says {size}",
                        frame.len
                    )));
                }
                store.receive(&hash, size, input)?;
            }
            other => return Err(Refusal::from(format!("unexpected {other:?} in a push"))),
        }
    }
    if let Some(h) = wanted.keys().next() {
        return Err(Refusal::from(format!("blob {h} was never sent")));
    }
    Ok(())
}
