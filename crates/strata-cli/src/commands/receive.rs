//! `strata receive` (hidden): the node's side of `strata push`. It reads the site's root
//! chain, a signed manifest and the node's signed assignment (when the site classifies
//! hardware) from stdin, verifies them before parsing them, asks for
//! the blobs it lacks, rebuilds the site from its blob store and runs the ordinary
//! apply (or plan with `--noop`), telling the operator what happens as JSON lines.
//!
//! Once it has every blob, it no longer needs the operator: a dropped connection or a
//! Ctrl-C there leaves it running to the end (SIGHUP and SIGPIPE ignored, output that
//! cannot be written dropped), and its commit is all-or-nothing as a local apply's is.

use std::collections::HashMap;
use std::io::{BufRead, Read};
use std::path::Path;

use clap::Args;
use strata_snapshot::{BlobStore, MAX_MANIFEST, MAX_METADATA, RootSet, Trust};
use strata_transport::wire::{self, NodeEvent};
use strata_types::Hash;

use crate::cli::{RootArg, absolute, parse_set};
use crate::command_error::CommandResult;
use crate::node::{self, Done, NodeRun, Refusal};
use crate::printer::Printer;

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

pub fn run(args: &ReceiveArgs, _printer: &Printer) -> CommandResult {
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
    let (event, result) = outcome.unwrap_or_else(node::refused);
    events.send(&event);
    result
}

fn receive(
    args: &ReceiveArgs,
    root: &Path,
    input: &mut impl BufRead,
    events: &mut Events,
) -> Result<Done, Refusal> {
    let now = strata_snapshot::now();
    let state = root.join("var/lib/strata");
    let (roots, manifest, assignment) = read_metadata(input)?;
    let trust = Trust::open(&state);
    let verified = trust.verify(&roots, &manifest, now)?;
    // A pushed node has no key of its own: SSH identified it by its host key.
    let assignment = assignment
        .map(|a| trust.verify_assignment(&verified, &a, &args.node, None, now))
        .transpose()?;
    // FLEET.md: a node's age key pair is made at its first push (an apply; a plan changes
    // nothing); its public key goes back for the node file. Without one, a compile that
    // reads a secret says so.
    let age = match args.noop {
        false => strata_secrets::NodeKey::ensure(root).ok().map(|k| k.public),
        true => strata_secrets::load_identity(&strata_secrets::node_key_path(root))
            .ok()
            .map(|i| i.to_public().to_string()),
    };
    if let Some(age) = age {
        events.send(&NodeEvent::Key { age });
    }
    let store = BlobStore::open(&state);
    let missing = store.missing(&verified.manifest);
    events.send(&NodeEvent::Need {
        blobs: missing.iter().map(|(h, _)| h.to_string()).collect(),
    });
    read_blobs(input, &store, &missing)?;
    // From here on the operator is not needed.
    let run = NodeRun {
        root,
        node: &args.node,
        noop: args.noop,
        sets: &args.sets,
    };
    let snapshot = (&verified, assignment.as_ref());
    node::apply_verified(&run, &trust, &store, snapshot, !args.noop, &mut |stage| {
        events.send(&NodeEvent::Stage {
            stage: stage.to_string(),
        });
    })
}

/// The root chain, the signed manifest and the signed assignment (if any), unverified.
type Metadata = (RootSet, Vec<u8>, Option<Vec<u8>>);

/// Reads `root` frames, one `manifest`, at most one `assignment`, then `end`, each within
/// its limit.
fn read_metadata(input: &mut impl BufRead) -> Result<Metadata, Refusal> {
    let mut roots = Vec::new();
    let mut manifest = None;
    let mut assignment = None;
    loop {
        let frame = wire::read_frame(input)?.ok_or_else(|| Refusal::new("the push ended early"))?;
        let limit = match frame.tag.as_str() {
            "end" if manifest.is_some() => {
                return Ok((RootSet(roots), manifest.expect("checked"), assignment));
            }
            "root" if manifest.is_none() && roots.len() < 1000 => MAX_METADATA,
            "manifest" if manifest.is_none() => MAX_MANIFEST,
            "assignment" if manifest.is_some() && assignment.is_none() => MAX_METADATA,
            other => return Err(Refusal::new(format!("unexpected {other:?} in a push"))),
        };
        if frame.len > limit as u64 {
            return Err(Refusal::new(format!(
                "the push's {} is {} bytes, over the limit of {limit}",
                frame.tag, frame.len
            )));
        }
        let mut body = Vec::with_capacity(frame.len as usize);
        input.take(frame.len).read_to_end(&mut body)?;
        if body.len() as u64 != frame.len {
            return Err(Refusal::new("the push ended early"));
        }
        match frame.tag.as_str() {
            "root" => roots.push(body),
            "manifest" => manifest = Some(body),
            _ => assignment = Some(body),
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
        let frame = wire::read_frame(input)?.ok_or_else(|| Refusal::new("the push ended early"))?;
        match frame.tag.as_str() {
            "end" => break,
            "blob" => {
                let (hash, size) = wanted.remove(&frame.arg).ok_or_else(|| {
                    Refusal::new(format!("blob {:?} was not asked for", frame.arg))
                })?;
                if frame.len != size {
                    return Err(Refusal::new(format!(
                        "blob {hash} is {} bytes; the manifest says {size}",
                        frame.len
                    )));
                }
                store.receive(&hash, size, input)?;
            }
            other => return Err(Refusal::new(format!("unexpected {other:?} in a push"))),
        }
    }
    if let Some(h) = wanted.keys().next() {
        return Err(Refusal::new(format!("blob {h} was never sent")));
    }
    Ok(())
}
