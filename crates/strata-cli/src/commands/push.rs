//! `strata push`: the site to many nodes over SSH (FLEET.md, "Push over SSH"). This file
//! builds the snapshot and the job, and draws progress and the summary; the nodes are
//! reached by strata-transport, and each applies with its own strata (`receive`).

use std::collections::HashMap;
use std::io::IsTerminal;
use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use strata_transport::{Endpoint, NodeJob, NodeReport, Outcome, Progress, PushJob, SshOptions};

use strata_hardware::{Allocate, Hardware};
use strata_snapshot::{KeyPair, UnixTime};

use crate::assign::Assigner;
use crate::cli::{SiteArg, parse_set};
use crate::command_error::{CommandError, CommandResult};
use crate::commands::keys::{KeysDir, signing_key};
use crate::printer::{Printer, Style, clean, clean_lines};

/// Configure nodes and groups over SSH, in parallel, each all or nothing.
///
/// Each node gets the site as a signed snapshot, compiles its own catalog with its own
/// facts and applies it as `strata apply` would (or plans, with --noop); nodes that lack
/// this strata get it copied first. Exit status: 0 every node succeeded; 1 any node
/// failed, was unreachable, busy or lost; 3 every node committed but a command run after
/// a commit failed somewhere; with --noop 0 nothing would change, 2 something would.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Nodes and groups (a group is its members, in order; nested groups too).
    #[arg(required = true, value_name = "TARGET")]
    pub targets: Vec<String>,
    #[command(flatten)]
    pub site: SiteArg,
    /// Show what each node would change; change nothing.
    #[arg(long)]
    pub noop: bool,
    /// Nodes pushed at once [default: [fleet] forks, else 10].
    #[arg(long, value_name = "N")]
    pub forks: Option<usize>,
    /// One node at a time, stopping at the first failure (a rolling update).
    #[arg(long)]
    pub serial: bool,
    /// Start no new node after K failures.
    #[arg(long, value_name = "K")]
    pub max_failures: Option<usize>,
    /// Set a parameter on every node, above every layer of the site (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// Install this strata on nodes that have a newer one (otherwise those nodes fail,
    /// saying which version they have).
    #[arg(long)]
    pub allow_downgrade: bool,
    /// Print JSON Lines: one object per node as it finishes, then a summary (docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Read this ssh configuration instead of ~/.ssh/config (`ssh -F`).
    #[arg(long, value_name = "FILE", env = "STRATA_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// The signing key [default: signing.key in the key directory].
    #[arg(long, value_name = "FILE", env = "STRATA_SIGNING_KEY")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeysDir,
}

pub fn run(args: &PushArgs, printer: &Printer) -> CommandResult {
    let site_dir = crate::cli::absolute(&args.site.site)?;
    let site = strata_core::Site::open(&site_dir)?;
    let names = site.resolve_targets(&args.targets)?;
    // A node that joined a secret's group could not decrypt it: refused before connecting.
    let stale = strata_engine::stale_secrets(&site);
    if !stale.is_empty() {
        return Err(strata_core::SiteErrors(stale).into());
    }
    let mut nodes = Vec::new();
    for name in &names {
        let reach = site.node_reach(name)?;
        nodes.push(NodeJob {
            endpoint: Endpoint {
                name: name.clone(),
                host: reach.ssh.host,
                port: reach.ssh.port,
                user: reach.ssh.user,
                sudo: reach.ssh.sudo,
            },
            environment: reach.environment,
        });
    }
    let (key, roots) = signing_key(&site_dir, &site.name, args.key.as_deref(), &args.keys)?;
    let files = crate::revision::site_files(&site_dir)?;
    let now = strata_snapshot::now();
    let version = push_version(&site_dir, now)?;
    let lifetime = site.fleet.expires.unwrap_or(DEFAULT_EXPIRES).as_secs();
    let mut manifests = HashMap::new();
    for n in &nodes {
        manifests.entry(n.environment.clone()).or_insert_with(|| {
            files.manifest(&site.name, &n.environment, version, now, lifetime, &key)
        });
    }
    let assign = assigner(&site, args.noop, key, (now, version), lifetime)?;
    let exe = std::env::current_exe()?;
    let shipment = strata_transport::ship::prepare(&exe, &cache_dir()?)
        .context("preparing the strata to ship")?;
    let control = tempfile::Builder::new()
        .prefix("strata-ssh.")
        .tempdir_in("/tmp")
        .context("a directory for ssh's control sockets")?;
    let job = PushJob {
        forks: args.forks.or(site.fleet.forks).unwrap_or(10),
        serial: args.serial,
        max_failures: args.max_failures,
        noop: args.noop,
        sets: args.sets.clone(),
        ssh: SshOptions {
            config: args.ssh_config.clone(),
            control_dir: control.path().to_path_buf(),
            connect_timeout: Duration::from_secs(10),
        },
        shipment,
        allow_downgrade: args.allow_downgrade,
        roots: roots.0,
        manifests,
        blobs: files.paths,
        nodes,
        assign,
    };
    let reports = if args.json {
        let out = Mutex::new(());
        strata_transport::run(&job, &|p| {
            if let Progress::Done(r) = p {
                let _guard = out.lock();
                let _ = json_line(printer, &node_json(r));
            }
        })
    } else {
        run_live(&job, printer)
    };
    crate::commands::nodes_keys::record_pushed(&site_dir, &reports, printer);
    if args.json {
        json_line(
            printer,
            &serde_json::json!({"type": "summary", "summary": counts(&reports)}),
        )?;
    } else {
        summary_text(printer, &reports, args.noop)?;
    }
    exit(&reports, args.noop)
}

/// What classifies the nodes and signs their assignments, when the site has hardware
/// profiles: the operator's database (`[fleet] db`, default `SITE/.strata/state.db`)
/// allocates, once per machine; `--noop` allocates nothing.
fn assigner(
    site: &strata_core::Site,
    noop: bool,
    key: KeyPair,
    (now, version): (UnixTime, u64),
    lifetime: u64,
) -> Result<Option<Box<dyn strata_transport::Assign>>, CommandError> {
    let hardware = Hardware::load(&site.dir).map_err(|errs| {
        strata_core::SiteErrors(errs.into_iter().map(strata_core::SiteError::new).collect())
    })?;
    if hardware.profiles.is_empty() {
        return Ok(None);
    }
    let default = site.dir.join(".strata/state.db");
    Ok(Some(Box::new(Assigner {
        site: site.name.clone(),
        hardware,
        db: site
            .fleet
            .db
            .clone()
            .unwrap_or_else(|| default.display().to_string()),
        allocate: if noop {
            Allocate::DryRun
        } else {
            Allocate::Commit
        },
        key,
        now,
        lifetime,
        // Every manifest of this push has this version.
        min_snapshot_version: version,
        one: Mutex::new(()),
    })))
}

/// The version of this push's manifests: the time, unless a push from this site already
/// used it (or a later one: a clock set back), then the next. A node refuses a version it
/// trusts with other content, so two pushes in one second of a changed site must not
/// share one. Kept in `SITE/.strata/push-version`.
fn push_version(site: &std::path::Path, now: UnixTime) -> anyhow::Result<u64> {
    let file = site.join(".strata/push-version");
    let last: u64 = match strata_fs::read_to_string(&file) {
        Ok(text) => text.trim().parse().unwrap_or(0),
        Err(_) => 0,
    };
    let version = now.max(last + 1);
    strata_fs::create_dir_all(&site.join(".strata"))?;
    strata_fs::replace_site_file(&file, format!("{version}\n").as_bytes())?;
    Ok(version)
}

/// How long a manifest is trusted unless `[fleet] expires` says otherwise.
pub const DEFAULT_EXPIRES: Duration = Duration::from_secs(30 * 86400);

/// One JSON Lines record.
fn json_line(p: &Printer, v: &serde_json::Value) -> std::io::Result<()> {
    p.out(&format!("{v}\n"))
}

/// The operator's cache: `$XDG_CACHE_HOME/strata`, else `~/.cache/strata`.
fn cache_dir() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        Some(x) => PathBuf::from(x),
        None => PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".cache"),
    };
    Ok(base.join("strata"))
}

/// Runs the push with one live line per node in flight on a terminal (indicatif), or a
/// line per node as it finishes otherwise.
fn run_live(job: &PushJob, printer: &Printer) -> Vec<NodeReport> {
    let live = std::io::stdout().is_terminal();
    let multi = indicatif::MultiProgress::with_draw_target(if live {
        indicatif::ProgressDrawTarget::stdout()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    });
    let width = job
        .nodes
        .iter()
        .map(|n| n.endpoint.name.len())
        .max()
        .unwrap_or(0);
    let bars: Mutex<HashMap<String, indicatif::ProgressBar>> = Mutex::new(HashMap::new());
    let style = indicatif::ProgressStyle::with_template("{spinner} {prefix} {msg} {elapsed}")
        .expect("a valid template");
    strata_transport::run(job, &|p| match p {
        Progress::Step(node, step) => {
            let mut bars = bars.lock().expect("no panics hold it");
            let bar = bars.entry(node.to_string()).or_insert_with(|| {
                let b = multi.add(indicatif::ProgressBar::new_spinner());
                b.set_style(style.clone());
                b.set_prefix(format!("{node:width$}"));
                b.enable_steady_tick(Duration::from_millis(100));
                b
            });
            bar.set_message(clean(step).into_owned());
        }
        Progress::Done(r) => {
            if let Some(b) = bars.lock().expect("no panics hold it").remove(&r.node) {
                b.finish_and_clear();
                multi.remove(&b);
            }
            let line = node_line(printer, r, width);
            if live {
                let _ = multi.println(line);
            } else {
                let _ = printer.out(&format!("{line}\n"));
            }
        }
    })
}

fn result_style(o: Outcome) -> Style {
    match o {
        Outcome::Unchanged | Outcome::Skipped => Style::Dim,
        Outcome::Changed | Outcome::WouldChange => Style::Yellow,
        _ => Style::Red,
    }
}

/// `web1  changed  3 paths  generation 4  1.2 s`, or the error.
fn node_line(p: &Printer, r: &NodeReport, width: usize) -> String {
    let mut line = format!(
        "{:width$}  {}",
        r.node,
        p.paint(result_style(r.result), r.result.name())
    );
    if !r.paths.is_empty() {
        line.push_str(&format!("  {} paths", r.paths.len()));
    }
    if let Some(g) = r.generation {
        line.push_str(&format!("  generation {g}"));
    }
    line.push_str(&format!("  {:.1} s", r.seconds));
    if let Some(e) = &r.error {
        line.push_str(&format!("  {}: {}", e.kind, clean(&e.message)));
    }
    line
}

/// The nodes' plans or changes, then the table.
fn summary_text(p: &Printer, reports: &[NodeReport], noop: bool) -> std::io::Result<()> {
    let mut out = String::new();
    for r in reports {
        let show = if noop {
            !r.text.is_empty()
        } else {
            r.result == Outcome::Changed
        };
        if show {
            out.push_str(&p.paint(Style::Bold, &format!("== {}\n", r.node)));
            out.push_str(&clean_lines(&r.text));
            if !r.text.ends_with('\n') {
                out.push('\n');
            }
        }
    }
    let width = reports
        .iter()
        .map(|r| r.node.len())
        .max()
        .unwrap_or(0)
        .max(4);
    out.push_str(&p.paint(
        Style::Bold,
        &format!(
            "{:width$}  {:12}  {:>5}  {:>10}  {:>6}\n",
            "NODE", "RESULT", "PATHS", "GENERATION", "TIME"
        ),
    ));
    for r in reports {
        let result = format!("{:12}", r.result.name());
        out.push_str(&format!(
            "{:width$}  {}  {:>5}  {:>10}  {:>5.1}s",
            r.node,
            p.paint(result_style(r.result), &result),
            r.paths.len(),
            r.generation.map_or("-".to_string(), |g| g.to_string()),
            r.seconds
        ));
        if let Some(e) = &r.error {
            out.push_str(&format!("  {}", clean(&e.message.replace('\n', "; "))));
        }
        out.push('\n');
    }
    let c = counts(reports);
    let parts: Vec<String> = c.iter().map(|(k, v)| format!("{v} {k}")).collect();
    out.push_str(&format!("{} nodes: {}\n", reports.len(), parts.join(", ")));
    p.out(&out)
}

/// How many nodes ended each way.
fn counts(reports: &[NodeReport]) -> serde_json::Map<String, serde_json::Value> {
    let mut c = serde_json::Map::new();
    for r in reports {
        let n = c
            .get(r.result.name())
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        c.insert(r.result.name().to_string(), (n + 1).into());
    }
    c
}

/// One node's JSON line (FLEET.md): `{type, node, result, changes, paths, generation,
/// seconds, error}`, and the node's `steps` (`{name, wall_us, max_rss}`).
fn node_json(r: &NodeReport) -> serde_json::Value {
    serde_json::json!({
        "type": "node",
        "node": r.node,
        "result": r.result.name(),
        "changes": r.paths.len(),
        "paths": r.paths,
        "generation": r.generation,
        "seconds": (r.seconds * 1000.0).round() / 1000.0,
        "error": r.error,
        "shipped": r.shipped,
        "steps": r.steps,
    })
}

fn exit(reports: &[NodeReport], noop: bool) -> CommandResult {
    let failed = reports.iter().filter(|r| r.result.is_failure()).count();
    if failed > 0 {
        return Err(CommandError::from(anyhow::anyhow!(
            "{failed} of {} nodes failed",
            reports.len()
        )));
    }
    if noop {
        if reports.iter().any(|r| r.result == Outcome::WouldChange) {
            return Err(CommandError::changes_pending());
        }
        return Ok(());
    }
    let commands: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            r.error
                .as_ref()
                .filter(|e| e.kind == "commands")
                .map(|e| format!("{}: {}", r.node, e.message))
        })
        .collect();
    if commands.is_empty() {
        Ok(())
    } else {
        Err(CommandError::commands_failed(commands.join("\n")))
    }
}
