//! `strata agent`: pull the node's environment from where `publish` put it, verify it,
//! apply it, again every interval; when nothing newer can be verified, the last verified
//! snapshot is applied again, so enforcement never stops ("stale since T").

use std::path::Path;
use std::time::Duration;

use clap::Args;
use strata_bucket::{self as storage, Storage, blob_key, manifest_key, timestamp_key};
use strata_snapshot::{BlobStore, MAX_MANIFEST, MAX_METADATA, RootSet, Trust, Verified};
use strata_transport::wire::NodeEvent;

use crate::cli::{RootArg, S3Arg, absolute, parse_set};
use crate::command_error::{CommandError, CommandErrorKind, CommandResult};
use crate::node::{self, Done, NodeRun, Refusal};
use crate::printer::{Printer, clean_lines};

/// Pull and apply this node's configuration from published snapshots; or watch its
/// managed paths for drift.
///
/// With --once: one poll, then exit with apply's codes (plan's with --noop), or 4 when
/// only the last verified snapshot could be applied again (the reason is printed).
///
/// With --watch: report drift (hand edits of managed paths) within a second of the
/// edit, run the site's on-drift hooks, and with --correct apply again to put the
/// managed state back. With --for: stop after that long, exit 0 without drift left, 2
/// with.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// Where `publish` writes: s3://BUCKET/PREFIX (credentials from AWS_*) or
    /// file:///DIR.
    #[arg(long, value_name = "URL", required_unless_present = "watch")]
    pub from: Option<String>,
    #[command(flatten)]
    pub s3: S3Arg,
    /// The fingerprint of the site's root key (`strata keys fingerprint`), checked on
    /// first contact; afterwards the node trusts the root it pinned and its rotations.
    #[arg(long, value_name = "FINGERPRINT", required_unless_present = "watch")]
    pub root_key: Option<String>,
    /// Watch the current generation's managed paths (inotify) and report drift as it
    /// happens, instead of polling.
    #[arg(long, conflicts_with_all = ["from", "once", "noop"])]
    pub watch: bool,
    /// With --watch: put drifted paths back with an ordinary apply of the site the
    /// current generation came from.
    #[arg(long, requires = "watch")]
    pub correct: bool,
    /// With --watch: stop after this long (`90s`, `10m`) [default: never].
    #[arg(long = "for", value_name = "DURATION", requires = "watch", value_parser = humantime::parse_duration)]
    pub for_: Option<Duration>,
    /// This node's name [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The environment to start from [default: the last applied one, else production];
    /// the node's file in the snapshot may name another, which is then followed.
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    #[command(flatten)]
    pub root: RootArg,
    /// One poll, then exit.
    #[arg(long)]
    pub once: bool,
    /// Plan instead of applying.
    #[arg(long)]
    pub noop: bool,
    /// Time between polls.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// At most this much more, fixed per node, so a fleet does not poll at once.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub splay: Duration,
    /// Set a parameter (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
}

/// How one poll ended, beside the node's result.
enum Poll {
    /// A newly verified snapshot was applied.
    Fresh(Done, String),
    /// Only the last verified one could be applied again, for this reason.
    Stale(Done, String),
}

pub fn run(args: &AgentArgs, printer: &Printer) -> CommandResult {
    let root = absolute(&args.root.root)?;
    if args.watch {
        let watch = crate::watch::Watch {
            root: &root,
            correct: args.correct,
            for_: args.for_,
        };
        return crate::watch::run(&watch, printer);
    }
    let (Some(from), Some(_)) = (&args.from, &args.root_key) else {
        unreachable!("clap requires --from and --root-key without --watch");
    };
    let node = match &args.node {
        Some(n) => n.clone(),
        None => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    };
    let store = storage::open(from, &args.s3.settings())?;
    // The splay is fixed per node: its name's hash, spread over the splay.
    let splay = args.splay.as_secs() * u64::from(blake3::hash(node.as_bytes()).as_bytes()[0]) / 255;
    loop {
        let result = poll_once(args, &root, &node, store.as_ref(), printer);
        if args.once {
            return result;
        }
        if let Err(e) = &result {
            e.report(printer);
        }
        std::thread::sleep(args.interval + Duration::from_secs(splay));
    }
}

fn poll_once(
    args: &AgentArgs,
    root: &Path,
    node: &str,
    store: &dyn Storage,
    printer: &Printer,
) -> CommandResult {
    let run = NodeRun {
        root,
        node,
        noop: args.noop,
        sets: &args.sets,
    };
    let (done, note, stale) = match poll(args, &run, store) {
        Poll::Fresh(done, note) => (done, note, false),
        Poll::Stale(done, note) => (done, note, true),
    };
    let (event, result) = done;
    if let NodeEvent::Result { text, error, .. } = &event {
        let mut out = clean_lines(text).into_owned();
        if let Some(e) = error.as_ref().filter(|e| e.kind != "commands") {
            out.push_str(&format!("error: {}\n", e.message));
        }
        printer.out(&out)?;
    }
    printer.note(&note);
    match result {
        Ok(()) if stale => Err(CommandError::stale()),
        Err(e) if stale && e.kind == CommandErrorKind::ChangesPending => Err(CommandError::stale()),
        other => other,
    }
}

/// One poll: fetch, verify, apply; or apply the last verified snapshot again.
fn poll(args: &AgentArgs, run: &NodeRun<'_>, store: &dyn Storage) -> Poll {
    let state = run.root.join("var/lib/strata");
    let trust = Trust::open(&state);
    let blobs = BlobStore::open(&state);
    let mut env = args.env.clone();
    let mut followed = false;
    loop {
        match fetch(args, &trust, &blobs, store, env.as_deref()) {
            Ok(verified) => {
                // The node's file may put it in another environment: follow it, once.
                let wanted = node_environment(&blobs, &verified, run.node);
                if let Some(w) = wanted.filter(|w| *w != verified.manifest.environment && !followed)
                {
                    env = Some(w);
                    followed = true;
                    continue;
                }
                let m = &verified.manifest;
                let note = format!(
                    "agent: {} version {} (revision {}) from {}",
                    m.environment,
                    m.version,
                    m.revision,
                    args.from.as_deref().unwrap_or_default()
                );
                // Pulling from storage brings no assignment: a node that only the site's
                // hardware profiles describe is refused by the engine (it must enroll).
                let done = node::apply_verified(
                    run,
                    &trust,
                    &blobs,
                    (&verified, None),
                    !args.noop,
                    &mut |_| {},
                )
                .unwrap_or_else(node::refused);
                return Poll::Fresh(done, note);
            }
            Err(Refusal(why)) => return stale(run, &trust, &blobs, &why.message),
        }
    }
}

/// Applies the last verified snapshot again, saying why nothing newer was applied.
fn stale(run: &NodeRun<'_>, trust: &Trust, blobs: &BlobStore, why: &str) -> Poll {
    match trust.last_applied() {
        Ok(Some(last)) => {
            let m = &last.manifest;
            let note = format!(
                "agent: stale since {}: re-applied {} version {}; nothing newer could be verified: {why}",
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + Duration::from_secs(m.created)
                ),
                m.environment,
                m.version
            );
            let done = trust
                .last_assignment(&last, run.node)
                .map_err(Refusal::from)
                .and_then(|a| {
                    node::apply_verified(run, trust, blobs, (&last, a.as_ref()), false, &mut |_| {})
                })
                .unwrap_or_else(node::refused);
            Poll::Stale(done, note)
        }
        Ok(None) => Poll::Fresh(
            node::refused(Refusal(strata_transport::ErrorInfo::new("refused", why))),
            "agent: nothing was ever verified on this node; nothing applied".into(),
        ),
        Err(e) => Poll::Fresh(
            node::refused(Refusal(strata_transport::ErrorInfo::new(
                "refused",
                format!("{why}; and the last snapshot: {e}"),
            ))),
            "agent: nothing applied".into(),
        ),
    }
}

/// The environment the node's own file in the snapshot names, if it names one.
fn node_environment(blobs: &BlobStore, v: &Verified, node: &str) -> Option<String> {
    let site = blobs.materialize(&v.manifest).ok()?;
    let site = strata_core::Site::open(&site.dir).ok()?;
    Some(site.node_reach(node).ok()?.environment)
}

/// Fetches and verifies the current snapshot of `env` and the blobs the node lacks.
fn fetch(
    args: &AgentArgs,
    trust: &Trust,
    blobs: &BlobStore,
    store: &dyn Storage,
    env: Option<&str>,
) -> Result<Verified, Refusal> {
    let now = strata_snapshot::now();
    let mut chain = Vec::new();
    while let Some(r) = store.get(
        &format!("root/{}.json", chain.len() + 1),
        MAX_METADATA as u64,
    )? {
        chain.push(r);
    }
    let roots = RootSet(chain);
    if trust.pinned()?.is_none() {
        // First contact: the root must be the one the operator named.
        let (first, _) = RootSet(roots.0.iter().take(1).cloned().collect()).verify(None)?;
        let want = args.root_key.as_deref().unwrap_or_default();
        if first.fingerprint() != want {
            return Err(Refusal::new(format!(
                "the published root's fingerprint is {}, not the {} given by --root-key",
                first.fingerprint(),
                want
            )));
        }
    }
    let last = trust.last_applied().ok().flatten();
    let env = env
        .map(str::to_string)
        .or_else(|| last.map(|l| l.manifest.environment))
        .unwrap_or_else(|| "production".to_string());
    let ts_bytes = store
        .get(&timestamp_key(&env), MAX_METADATA as u64)?
        .ok_or_else(|| Refusal::new(format!("nothing is published for environment {env:?}")))?;
    let ts = trust.verify_timestamp(&roots, &ts_bytes, now)?;
    if ts.environment != env {
        return Err(Refusal::new(format!(
            "the timestamp of {env:?} is for {:?}",
            ts.environment
        )));
    }
    let manifest = store
        .get(&manifest_key(&env, ts.version), MAX_MANIFEST as u64)?
        .ok_or_else(|| {
            Refusal::new(format!(
                "version {} of {env:?} is missing; retry later",
                ts.version
            ))
        })?;
    if strata_types::Hash::of(&manifest) != ts.manifest {
        return Err(Refusal::new(format!(
            "version {} of {env:?} is not the manifest its timestamp names",
            ts.version
        )));
    }
    let verified = trust.verify(&roots, &manifest, now)?;
    if verified.manifest.environment != env || verified.manifest.version != ts.version {
        return Err(Refusal::new(
            "the manifest is not the one its timestamp names",
        ));
    }
    for (hash, size) in blobs.missing(&verified.manifest) {
        let key = blob_key(&hash.to_string());
        let bytes = store
            .get(&key, size)?
            .ok_or_else(|| Refusal::new(format!("{key} is missing; retry later")))?;
        blobs.receive(&hash, size, &mut bytes.as_slice())?;
    }
    Ok(verified)
}
