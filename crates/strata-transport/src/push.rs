//! Many nodes at once: each node's steps (connect, ship strata if needed, send the
//! snapshot, run its apply or plan, read its events) on a pool of `forks` threads, each
//! node's outcome its own: one node's failure never stops another unless `--serial` or
//! `--max-failures` says so.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

use crate::ship::{self, Shipment};
use crate::ssh::{Connection, Endpoint, ReachError, SshOptions, quote};
use crate::wire::{self, ErrorInfo, NodeEvent, PathChange};

/// One node to push to.
#[derive(Debug, Clone)]
pub struct NodeJob {
    /// How to reach it.
    pub endpoint: Endpoint,
    /// Its environment: which manifest it gets.
    pub environment: String,
}

/// A whole push.
#[derive(Debug)]
pub struct PushJob {
    /// The nodes, in order.
    pub nodes: Vec<NodeJob>,
    /// Nodes in flight at once.
    pub forks: usize,
    /// One at a time, stopping at the first failure.
    pub serial: bool,
    /// Start no new node after this many failures.
    pub max_failures: Option<usize>,
    /// Plan instead of apply.
    pub noop: bool,
    /// `--set` pairs, passed to each node's apply.
    pub sets: Vec<(String, String)>,
    /// How ssh connects.
    pub ssh: SshOptions,
    /// The strata shipped to nodes that lack it.
    pub shipment: Shipment,
    /// Ship it even to a node that has a newer strata.
    pub allow_downgrade: bool,
    /// The site's root chain, `root/1.json`….
    pub roots: Vec<Vec<u8>>,
    /// The signed manifest of each environment.
    pub manifests: HashMap<String, Vec<u8>>,
    /// Where each blob's content is, by hash.
    pub blobs: HashMap<String, PathBuf>,
    /// When the site classifies hardware: what makes each node's signed assignment.
    pub assign: Option<Box<dyn Assign>>,
}

/// What decides a node's signed assignment from its facts (FLEET.md: "gather facts if
/// the site classifies hardware"): the CLI's, with the site's profiles and the operator's
/// allocation database.
pub trait Assign: Sync + std::fmt::Debug {
    /// The signed assignment of `node`, whose facts (`strata facts --tuples`, as JSON)
    /// are `facts`; none when the node needs none. An error fails that node only.
    fn assign(&self, node: &NodeJob, facts: &[u8]) -> Result<Option<Vec<u8>>, String>;
}

/// The most a node's facts may be: they are read before anything checks them.
const MAX_FACTS: usize = 16 << 20;

/// How one node ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Nothing to change.
    Unchanged,
    /// Changed and committed.
    Changed,
    /// `--noop`: something would change.
    WouldChange,
    /// The node's apply failed (nothing changed there), or it refused the snapshot.
    Failed,
    /// No connection.
    Unreachable,
    /// Another strata held the node's lock.
    Busy,
    /// The connection dropped mid-apply: the node finishes or undoes on its own.
    Lost,
    /// Never started (`--serial`, `--max-failures`).
    Skipped,
}

impl Outcome {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Outcome::Unchanged => "unchanged",
            Outcome::Changed => "changed",
            Outcome::WouldChange => "would_change",
            Outcome::Failed => "failed",
            Outcome::Unreachable => "unreachable",
            Outcome::Busy => "busy",
            Outcome::Lost => "lost",
            Outcome::Skipped => "skipped",
        }
    }

    /// Whether it counts as a failure (for exit codes, `--serial`, `--max-failures`).
    pub fn is_failure(self) -> bool {
        matches!(
            self,
            Outcome::Failed | Outcome::Unreachable | Outcome::Busy | Outcome::Lost
        )
    }
}

/// One node's report.
#[derive(Debug, Clone)]
pub struct NodeReport {
    /// The node.
    pub node: String,
    /// How it ended.
    pub result: Outcome,
    /// Paths changed (or that would).
    pub paths: Vec<PathChange>,
    /// The generation recorded.
    pub generation: Option<u64>,
    /// Wall time.
    pub seconds: f64,
    /// Why it failed; or, on a committed node, which commands failed after the commit.
    pub error: Option<ErrorInfo>,
    /// What the node printed of its plan or apply.
    pub text: String,
    /// Whether strata was shipped to it.
    pub shipped: bool,
    /// What each top-level step of its run cost, as the node measured it.
    pub steps: Vec<crate::wire::StepTime>,
    /// The node's age public key, as it reported it.
    pub age: Option<String>,
}

/// What the CLI hears while a push runs.
#[derive(Debug)]
pub enum Progress<'a> {
    /// A node's step began.
    Step(&'a str, &'a str),
    /// A node finished.
    Done(&'a NodeReport),
}

/// Runs the push; returns one report per node, in the job's order.
pub fn run(job: &PushJob, on: &(dyn Fn(Progress<'_>) + Sync)) -> Vec<NodeReport> {
    let forks = if job.serial { 1 } else { job.forks.max(1) };
    let next = AtomicUsize::new(0);
    let failures = AtomicUsize::new(0);
    let stop = AtomicBool::new(false);
    let reports: Mutex<Vec<Option<NodeReport>>> = Mutex::new(vec![None; job.nodes.len()]);
    std::thread::scope(|s| {
        for _ in 0..forks.min(job.nodes.len()) {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(node) = job.nodes.get(i) else { break };
                    let report = if stop.load(Ordering::SeqCst) {
                        skipped(node)
                    } else {
                        push_node(job, node, on)
                    };
                    if report.result.is_failure() {
                        let n = failures.fetch_add(1, Ordering::SeqCst) + 1;
                        if job.serial || job.max_failures.is_some_and(|k| n >= k) {
                            stop.store(true, Ordering::SeqCst);
                        }
                    }
                    on(Progress::Done(&report));
                    reports.lock().expect("no panics hold it")[i] = Some(report);
                }
            });
        }
    });
    reports
        .into_inner()
        .expect("no panics hold it")
        .into_iter()
        .map(|r| r.expect("every node reported"))
        .collect()
}

fn skipped(node: &NodeJob) -> NodeReport {
    NodeReport {
        node: node.endpoint.name.clone(),
        result: Outcome::Skipped,
        paths: Vec::new(),
        generation: None,
        seconds: 0.0,
        error: None,
        text: String::new(),
        shipped: false,
        steps: Vec::new(),
        age: None,
    }
}

/// One node, start to end; never panics on what the node or the network does.
fn push_node(job: &PushJob, node: &NodeJob, on: &(dyn Fn(Progress<'_>) + Sync)) -> NodeReport {
    let start = Instant::now();
    let name = node.endpoint.name.as_str();
    let mut report = skipped(node);
    let step = |s: &str| on(Progress::Step(name, s));
    let result = steps(job, node, &step, &mut report);
    if let Err((outcome, error)) = result {
        report.result = outcome;
        report.error = Some(error);
    }
    report.seconds = start.elapsed().as_secs_f64();
    report
}

type Failure = (Outcome, ErrorInfo);

fn reach(e: &ReachError) -> Failure {
    let outcome = match e {
        ReachError::Lost(_) => Outcome::Lost,
        _ => Outcome::Unreachable,
    };
    (outcome, ErrorInfo::new(e.kind(), e.to_string()))
}

fn steps(
    job: &PushJob,
    node: &NodeJob,
    step: &dyn Fn(&str),
    report: &mut NodeReport,
) -> Result<(), Failure> {
    step("connecting");
    let conn = Connection::open(&node.endpoint, &job.ssh).map_err(|e| reach(&e))?;
    let probe = conn
        .run(&ship::probe_script(&job.shipment), b"")
        .map_err(|e| reach(&e))?;
    let text = String::from_utf8_lossy(&probe.stdout);
    let mut lines = text.lines();
    let (arch, libc, have, newest) = (
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
        lines.next().unwrap_or_default(),
    );
    if !probe.status.success() || have.is_empty() {
        let why = String::from_utf8_lossy(&probe.stderr).trim().to_string();
        return Err((
            Outcome::Failed,
            ErrorInfo::new("platform", format!("the node cannot run sh: {why}")),
        ));
    }
    if let Some(why) = job.shipment.unfit(arch, libc) {
        return Err((Outcome::Failed, ErrorInfo::new("platform", why)));
    }
    if have != "have" {
        if let Some(why) = ship::downgrade(newest).filter(|_| !job.allow_downgrade) {
            return Err((Outcome::Failed, ErrorInfo::new("downgrade", why)));
        }
        step("shipping strata");
        ship_strata(job, &conn)?;
        report.shipped = true;
    }
    let assignment = match &job.assign {
        Some(a) => {
            step("classifying");
            assignment(job, node, &conn, a.as_ref())?
        }
        None => None,
    };
    step("sending");
    let result = session(job, node, &conn, assignment.as_deref(), step, report);
    conn.close();
    result
}

/// The node's facts, read with its strata, and the assignment made of them.
fn assignment(
    job: &PushJob,
    node: &NodeJob,
    conn: &Connection,
    assign: &dyn Assign,
) -> Result<Option<Vec<u8>>, Failure> {
    let cmd = format!("{} facts --tuples", job.shipment.remote_path());
    // Read no more than the limit: a node could send without end.
    let out = conn
        .run_limited(&cmd, b"", MAX_FACTS)
        .map_err(|e| reach(&e))?;
    let failed = |why: String| (Outcome::Failed, ErrorInfo::new("classify", why));
    if out.stdout.len() > MAX_FACTS {
        return Err(failed(format!(
            "the node's facts are over the limit of {MAX_FACTS} bytes"
        )));
    }
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(failed(format!("reading the node's facts failed: {why}")));
    }
    assign.assign(node, &out.stdout).map_err(failed)
}

fn ship_strata(job: &PushJob, conn: &Connection) -> Result<(), Failure> {
    let out = conn
        .run_file(&ship::install_script(&job.shipment), &job.shipment.gz)
        .map_err(|e| reach(&e))?;
    if !out.status.success() {
        let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err((
            Outcome::Failed,
            ErrorInfo::new(
                "ship",
                format!("installing strata on the node failed: {why}"),
            ),
        ));
    }
    Ok(())
}

/// The remote command line of the node's side of the session.
fn receive_command(job: &PushJob, node: &NodeJob) -> String {
    let mut cmd = format!(
        "{} receive --node {}",
        job.shipment.remote_path(),
        quote(&node.endpoint.name)
    );
    if job.noop {
        cmd.push_str(" --noop");
    }
    for (k, v) in &job.sets {
        cmd.push_str(" --set ");
        cmd.push_str(&quote(&format!("{k}={v}")));
    }
    cmd
}

fn session(
    job: &PushJob,
    node: &NodeJob,
    conn: &Connection,
    assignment: Option<&[u8]>,
    step: &dyn Fn(&str),
    report: &mut NodeReport,
) -> Result<(), Failure> {
    let mut s = conn
        .spawn(&receive_command(job, node))
        .map_err(|e| reach(&e))?;
    let mut stdin = s.stdin.take().expect("piped");
    let mut events = BufReader::new(s.stdout.take().expect("piped"));
    let manifest = &job.manifests[&node.environment];
    let sent = (|| {
        for r in &job.roots {
            wire::write_frame(&mut stdin, "root", "", r)?;
        }
        wire::write_frame(&mut stdin, "manifest", "", manifest)?;
        if let Some(a) = assignment {
            wire::write_frame(&mut stdin, "assignment", "", a)?;
        }
        wire::write_frame(&mut stdin, "end", "", b"")?;
        stdin.flush()
    })();
    let mut last: Option<NodeEvent> = None;
    let mut line = String::new();
    if sent.is_ok() {
        loop {
            line.clear();
            match events.read_line(&mut line) {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
            let Ok(event) = serde_json::from_str::<NodeEvent>(&line) else {
                continue;
            };
            match &event {
                NodeEvent::Need { blobs } => {
                    if send_blobs(job, blobs, &mut stdin, step).is_err() {
                        break;
                    }
                }
                NodeEvent::Key { age } => report.age = Some(age.clone()),
                NodeEvent::Stage { stage } => step(stage),
                NodeEvent::Result { .. } => last = Some(event),
            }
        }
    }
    drop(stdin);
    let mut stderr = String::new();
    if let Some(mut e) = s.child.stderr.take() {
        let _ = e.read_to_string(&mut stderr);
    }
    let status = s.child.wait().map_err(|e| reach(&ReachError::Spawn(e)))?;
    match last {
        Some(NodeEvent::Result {
            result,
            paths,
            generation,
            text,
            error,
            steps,
            ..
        }) => {
            report.result = match result.as_str() {
                "changed" => Outcome::Changed,
                "unchanged" => Outcome::Unchanged,
                "would_change" => Outcome::WouldChange,
                "busy" => Outcome::Busy,
                _ => Outcome::Failed,
            };
            report.paths = paths;
            report.generation = generation;
            report.text = text;
            report.error = error;
            report.steps = steps;
            Ok(())
        }
        _ if status.code() == Some(255) => Err(reach(&conn.lost(stderr.as_bytes()))),
        _ => Err((
            Outcome::Failed,
            ErrorInfo::new(
                "node",
                format!(
                    "the node's strata ended ({status}) without a result{}",
                    if stderr.trim().is_empty() {
                        String::new()
                    } else {
                        format!(": {}", stderr.trim())
                    }
                ),
            ),
        )),
    }
}

fn send_blobs(
    job: &PushJob,
    hashes: &[String],
    stdin: &mut impl Write,
    step: &dyn Fn(&str),
) -> std::io::Result<()> {
    if !hashes.is_empty() {
        step(&format!("sending {} files", hashes.len()));
    }
    for h in hashes {
        let path = job.blobs.get(h).ok_or_else(|| {
            std::io::Error::other(format!(
                "the node asked for {h}, which is not in the snapshot"
            ))
        })?;
        let content = strata_fs::read(path).map_err(std::io::Error::other)?;
        // What is sent is what was hashed: a file edited since is sent as it was hashed
        // or the node refuses it; never a mix.
        wire::write_frame(stdin, "blob", h, &content)?;
    }
    wire::write_frame(stdin, "end", "", b"")?;
    stdin.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_values_reach_the_node_quoted() {
        let job = PushJob {
            nodes: Vec::new(),
            forks: 1,
            serial: false,
            max_failures: None,
            noop: true,
            sets: vec![("motd".into(), "it's $(reboot)".into())],
            ssh: SshOptions {
                config: None,
                control_dir: PathBuf::new(),
                connect_timeout: std::time::Duration::from_secs(1),
            },
            shipment: Shipment {
                hash: "abc".into(),
                size: 0,
                gz: PathBuf::new(),
                gz_size: 0,
                arch: "x86_64".into(),
                glibc: None,
            },
            allow_downgrade: false,
            roots: Vec::new(),
            manifests: HashMap::new(),
            blobs: HashMap::new(),
            assign: None,
        };
        let node = NodeJob {
            endpoint: Endpoint {
                name: "web1".into(),
                host: None,
                port: None,
                user: None,
                sudo: false,
            },
            environment: "production".into(),
        };
        assert_eq!(
            receive_command(&job, &node),
            r"/var/lib/strata/bin/strata-abc receive --node web1 --noop --set 'motd=it'\''s $(reboot)'"
        );
    }
}
