//! `strata agent`: pull the node's environment from where `publish` put it (storage, or
//! a server the node enrolled with), verify it, apply it, again every interval; when
//! nothing newer can be verified, the last verified snapshot is applied again, so
//! enforcement never stops ("stale since T"). Where it pulls from is a [`Source`]; what
//! is verified and how is the same for every source.

use std::path::Path;
use std::time::Duration;

use clap::{Args, Subcommand};
use strata_snapshot::{BlobStore, KeyPair, Role, Trust, Verified, VerifiedAssignment};
use strata_transport::wire::NodeEvent;

use crate::cli::{RootArg, S3Arg, absolute, parse_set};
use crate::command_error::{CommandError, CommandErrorKind, CommandResult};
use crate::node::{self, Done, NodeRun, Refusal};
use crate::printer::{Printer, clean_lines};
use crate::source::{Enrollment, ServerSource, Source, StorageSource};

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
///
/// `strata agent install` writes and enables the systemd units that run it.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct AgentArgs {
    #[command(subcommand)]
    pub action: Option<AgentCommand>,
    /// Where `publish` writes: s3://BUCKET/PREFIX (credentials from AWS_*) or
    /// file:///DIR.
    #[arg(long, value_name = "URL", required_unless_present_any = ["server", "watch"])]
    pub from: Option<String>,
    #[command(flatten)]
    pub s3: S3Arg,
    /// The server this node enrolled with (`strata enroll`): its identity, the root it
    /// pins and the server's CA come from the enrollment.
    #[arg(long, value_name = "URL", conflicts_with_all = ["from", "root_key"])]
    pub server: Option<String>,
    /// The fingerprint of the site's root key (`strata keys fingerprint`), checked on
    /// first contact; afterwards the node trusts the root it pinned and its rotations.
    #[arg(long, value_name = "FINGERPRINT", required_unless_present_any = ["server", "watch"])]
    pub root_key: Option<String>,
    /// Watch the current generation's managed paths (inotify) and report drift as it
    /// happens, instead of polling.
    #[arg(long, conflicts_with_all = ["from", "server", "once", "noop"])]
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

#[derive(Debug, Subcommand)]
pub enum AgentCommand {
    Install(Box<crate::commands::agent_install::InstallArgs>),
}

/// How one poll ended, beside the node's result.
enum Poll {
    /// A newly verified snapshot was applied.
    Fresh(Done, String, Option<Applied>),
    /// Only the last verified one could be applied again, for this reason.
    Stale(Done, String, Option<Applied>),
}

/// Which snapshot a run applied, for its report.
struct Applied {
    environment: String,
    version: u64,
    revision: String,
    /// The node had applied this version before: what changed was drift.
    again: bool,
    /// The node's roles (names, without their versions) and groups in that snapshot.
    labels: (Vec<String>, Vec<String>),
}

/// Where the agent pulls from, the node's name and the root fingerprint to pin.
type Opened = (Box<dyn Source>, String, Option<String>);

fn open_source(args: &AgentArgs, root: &Path) -> anyhow::Result<Opened> {
    let host = || {
        rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned()
    };
    let Some(server) = &args.server else {
        let url = args.from.clone().unwrap_or_default();
        let store = strata_bucket::open(&url, &args.s3.settings())?;
        let node = args.node.clone().unwrap_or_else(host);
        // A node that enrolled reads its assignment from the bucket by its key.
        let key = root.join("var/lib/strata/keys/node.key");
        let node_key = match strata_fs::exists(&key) {
            true => Some(KeyPair::load(&key, Role::Node)?.id()),
            false => None,
        };
        return Ok((
            Box::new(StorageSource {
                url,
                store,
                node_key,
            }),
            node,
            args.root_key.clone(),
        ));
    };
    let keys = root.join("var/lib/strata/keys");
    let (e, key) = Enrollment::load(&keys)?;
    if args.node.as_ref().is_some_and(|n| *n != e.node) {
        return Err(anyhow::anyhow!(
            "this node enrolled as {}, not {}",
            e.node,
            args.node.as_deref().unwrap_or_default()
        ));
    }
    let key_id = key.id();
    let client = e.client(server, key)?;
    let source = ServerSource {
        client,
        node: e.node.clone(),
        key_id,
        cache: root.join("var/lib/strata/agent"),
    };
    Ok((Box::new(source), e.node, e.root_key))
}

pub fn run(args: &AgentArgs, printer: &Printer) -> CommandResult {
    if let Some(AgentCommand::Install(install)) = &args.action {
        return crate::commands::agent_install::run(install, printer);
    }
    let root = absolute(&args.root.root)?;
    if args.watch {
        let watch = crate::watch::Watch {
            root: &root,
            correct: args.correct,
            for_: args.for_,
        };
        return crate::watch::run(&watch, printer);
    }
    let (source, node, root_key) = open_source(args, &root)?;
    // The splay is fixed per node: its name's hash, spread over the splay.
    let splay = args.splay.as_secs() * u64::from(blake3::hash(node.as_bytes()).as_bytes()[0]) / 255;
    loop {
        let result = poll_once(
            args,
            (&root, &node, root_key.as_deref()),
            source.as_ref(),
            printer,
        );
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
    (root, node, root_key): (&Path, &str, Option<&str>),
    source: &dyn Source,
    printer: &Printer,
) -> CommandResult {
    let run = NodeRun {
        root,
        node,
        noop: args.noop,
        sets: &args.sets,
    };
    let (done, note, stale, applied) = match poll(args, &run, root_key, source) {
        Poll::Fresh(done, note, applied) => (done, note, false, applied),
        Poll::Stale(done, note, applied) => (done, note, true, applied),
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
    // An unchanged run is reported on a machine's first boot after netboot provisioning
    // (the server learns that the installed system runs: docs/provision.md), and when
    // it applied a version new to the node (the server learns the node is current).
    let first = root.join(FIRST_BOOT);
    let report = run_report(&event, applied.as_ref(), stale.then_some(&note)).or_else(|| {
        let why = if strata_fs::exists(&first) {
            "first boot of the installed system"
        } else if applied.as_ref().is_some_and(|a| !a.again) && !stale && !args.noop {
            "a new version, nothing to change"
        } else {
            return None;
        };
        unchanged_report(&event, applied.as_ref(), why)
    });
    if let Some(report) = report {
        match source.report(&report) {
            Ok(()) => {
                if strata_fs::exists(&first) {
                    strata_fs::remove_file(&first)?;
                }
            }
            Err(Refusal(e)) => {
                printer.note(&format!("agent: the report was not posted: {}", e.message));
            }
        }
    }
    match result {
        Ok(()) if stale => Err(CommandError::stale()),
        Err(e) if stale && e.kind == CommandErrorKind::ChangesPending => Err(CommandError::stale()),
        other => other,
    }
}

/// Written by netboot provisioning into the installed root: the agent's first run
/// there posts its report even when it changed nothing, then removes it.
pub(crate) const FIRST_BOOT: &str = "var/lib/strata/agent/first-boot";

/// The report of a run that changed something, failed, or could only re-apply stale
/// metadata (FLEET.md, "Runs and reports"): paths and kinds, never contents.
fn run_report(
    event: &NodeEvent,
    applied: Option<&Applied>,
    stale: Option<&String>,
) -> Option<strata_server::inventory::RunReport> {
    let NodeEvent::Result { result, error, .. } = event else {
        return None;
    };
    if result == "unchanged" && error.is_none() && stale.is_none() {
        return None;
    }
    report(event, applied, stale.cloned())
}

/// The report of an unchanged run, with why it is posted.
fn unchanged_report(
    event: &NodeEvent,
    applied: Option<&Applied>,
    why: &str,
) -> Option<strata_server::inventory::RunReport> {
    report(event, applied, Some(why.into()))
}

/// The report of a run, with its note.
fn report(
    event: &NodeEvent,
    applied: Option<&Applied>,
    note: Option<String>,
) -> Option<strata_server::inventory::RunReport> {
    let NodeEvent::Result {
        result,
        changes,
        paths,
        generation,
        error,
        steps,
        ..
    } = event
    else {
        return None;
    };
    Some(strata_server::inventory::RunReport {
        id: 0,
        node: String::new(),
        time: strata_snapshot::now(),
        environment: applied.map(|a| a.environment.clone()).unwrap_or_default(),
        version: applied.map_or(0, |a| a.version),
        revision: applied.map(|a| a.revision.clone()).unwrap_or_default(),
        generation: *generation,
        result: result.clone(),
        changes: *changes,
        paths: paths.clone(),
        truncated: 0,
        drift: result == "changed" && applied.is_some_and(|a| a.again),
        error: error.as_ref().map(|e| e.message.clone()),
        note,
        steps: steps.clone(),
        roles: applied.map(|a| a.labels.0.clone()).unwrap_or_default(),
        groups: applied.map(|a| a.labels.1.clone()).unwrap_or_default(),
    })
}

/// One poll: fetch, verify, apply; or apply the last verified snapshot again.
fn poll(args: &AgentArgs, run: &NodeRun<'_>, root_key: Option<&str>, source: &dyn Source) -> Poll {
    let state = run.root.join("var/lib/strata");
    let trust = Trust::open(&state);
    let blobs = BlobStore::open(&state);
    let mut env = args.env.clone();
    let mut followed = false;
    loop {
        match fetch(run.node, root_key, &trust, &blobs, source, env.as_deref()) {
            Ok((verified, assignment, unchanged)) => {
                // The node's file may put it in another environment: follow it, once.
                let site = snapshot_site(&blobs, &verified);
                let wanted = site.as_ref().and_then(|s| node_environment(s, run.node));
                if let Some(w) = wanted.filter(|w| *w != verified.manifest.environment && !followed)
                {
                    env = Some(w);
                    followed = true;
                    continue;
                }
                let m = &verified.manifest;
                let note = format!(
                    "agent: {} version {} (revision {}) from {}{}",
                    m.environment,
                    m.version,
                    m.revision,
                    source.describe(),
                    if unchanged { " (not modified)" } else { "" }
                );
                let applied = Applied {
                    environment: m.environment.clone(),
                    version: m.version,
                    revision: m.revision.clone(),
                    again: trust
                        .floor(&m.environment)
                        .ok()
                        .flatten()
                        .is_some_and(|f| f.version == m.version),
                    labels: node_labels(site.as_ref(), assignment.as_ref(), run.node),
                };
                // Pulling from storage brings no assignment: a node that only the site's
                // hardware profiles describe is refused by the engine (it must enroll).
                let done = node::apply_verified(
                    run,
                    &trust,
                    &blobs,
                    (&verified, assignment.as_ref()),
                    !args.noop,
                    &mut |_| {},
                )
                .unwrap_or_else(node::refused);
                return Poll::Fresh(done, note, Some(applied));
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
            let assignment = trust
                .last_assignment(&last, run.node)
                .map_err(Refusal::from);
            let applied = Applied {
                environment: m.environment.clone(),
                version: m.version,
                revision: m.revision.clone(),
                again: true,
                labels: node_labels(
                    snapshot_site(blobs, &last).as_ref(),
                    assignment.as_ref().ok().and_then(Option::as_ref),
                    run.node,
                ),
            };
            let done = assignment
                .and_then(|a| {
                    node::apply_verified(run, trust, blobs, (&last, a.as_ref()), false, &mut |_| {})
                })
                .unwrap_or_else(node::refused);
            Poll::Stale(done, note, Some(applied))
        }
        Ok(None) => Poll::Fresh(
            node::refused(Refusal(strata_transport::ErrorInfo::new("refused", why))),
            "agent: nothing was ever verified on this node; nothing applied".into(),
            None,
        ),
        Err(e) => Poll::Fresh(
            node::refused(Refusal(strata_transport::ErrorInfo::new(
                "refused",
                format!("{why}; and the last snapshot: {e}"),
            ))),
            "agent: nothing applied".into(),
            None,
        ),
    }
}

/// The node's roles (names, each once: its own, its groups', and the role its signed
/// assignment's classification gives) and groups in the snapshot, for its report; none
/// when the site cannot say (the run's own result tells why).
pub(crate) fn node_labels(
    site: Option<&strata_core::Site>,
    assignment: Option<&VerifiedAssignment>,
    node: &str,
) -> (Vec<String>, Vec<String>) {
    let info = (|| {
        let name = strata_types::NodeName::parse(node).ok()?;
        site?.membership(&name).ok()
    })();
    let Some(mut info) = info else {
        return (Vec::new(), Vec::new());
    };
    let hardware = assignment.and_then(|a| a.assignment.classification.role.as_deref());
    if let Some(role) = hardware {
        let name = role.split_once('@').map_or(role, |(n, _)| n).to_string();
        if !info.roles.contains(&name) {
            info.roles.push(name);
        }
    }
    (info.roles, info.groups)
}

/// The site of a verified snapshot, laid out once for what the agent reads of it.
pub(crate) fn snapshot_site(blobs: &BlobStore, v: &Verified) -> Option<strata_core::Site> {
    let site = blobs.materialize(&v.manifest).ok()?;
    strata_core::Site::open(&site.dir).ok()
}

/// The environment the node's own file in the snapshot names, if it names one.
fn node_environment(site: &strata_core::Site, node: &str) -> Option<String> {
    Some(site.node_reach(node).ok()?.environment)
}

/// Fetches and verifies the current snapshot of `env` (a server decides which: the
/// node's), the node's assignment if the source gives one, and the blobs the node
/// lacks; and whether the source said nothing changed.
pub(crate) fn fetch(
    node: &str,
    root_key: Option<&str>,
    trust: &Trust,
    blobs: &BlobStore,
    source: &dyn Source,
    env: Option<&str>,
) -> Result<(Verified, Option<VerifiedAssignment>, bool), Refusal> {
    let now = strata_snapshot::now();
    let last = trust.last_applied().ok().flatten();
    let env = env
        .map(str::to_string)
        .or_else(|| last.as_ref().map(|l| l.manifest.environment.clone()))
        .unwrap_or_else(|| "production".to_string());
    let head = source.head(&env)?;
    let env = head.environment.clone().unwrap_or(env);
    let roots = head.roots;
    if trust.pinned()?.is_none() {
        // First contact: the root must be the one the operator named (none: the node
        // was enrolled with --insecure-tofu).
        let (first, _) =
            strata_snapshot::RootSet(roots.0.iter().take(1).cloned().collect()).verify(None)?;
        if let Some(want) = root_key.filter(|k| first.fingerprint() != *k) {
            return Err(Refusal::new(format!(
                "the published root's fingerprint is {}, not the {want} given by --root-key",
                first.fingerprint(),
            )));
        }
    }
    let ts_bytes = head
        .timestamp
        .ok_or_else(|| Refusal::new(format!("nothing is published for environment {env:?}")))?;
    let ts = trust.verify_timestamp(&roots, &ts_bytes, now)?;
    if ts.environment != env {
        return Err(Refusal::new(format!(
            "the timestamp of {env:?} is for {:?}",
            ts.environment
        )));
    }
    // The manifest the node applied last, when the timestamp still names it: nothing
    // to fetch (an unchanged poll is one small request).
    let manifest = match last.filter(|l| strata_types::Hash::of(l.bytes()) == ts.manifest) {
        Some(l) => l.bytes().to_vec(),
        None => source.manifest(&env, ts.version)?.ok_or_else(|| {
            Refusal::new(format!(
                "version {} of {env:?} is missing; retry later",
                ts.version
            ))
        })?,
    };
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
    let assignment = match &head.assignment {
        Some(bytes) => Some(trust.verify_assignment(
            &verified,
            bytes,
            node,
            source.node_key().as_ref(),
            now,
        )?),
        None => None,
    };
    for (hash, size) in blobs.missing(&verified.manifest) {
        let key = hash.to_string();
        let bytes = source
            .blob(&key, size)?
            .ok_or_else(|| Refusal::new(format!("blob {key} is missing; retry later")))?;
        blobs.receive(&hash, size, &mut bytes.as_slice())?;
    }
    Ok((verified, assignment, head.unchanged))
}
