//! The pull section (issues 20 and 23): one release `strata serve` on loopback over an
//! inventory of N seeded nodes (SQLite, then PostgreSQL when `STRATA_TEST_PG` names a
//! server), driven by correctly signed requests: an enrollment storm of real
//! enrollments, the dashboard's fleet page, polls at the fleet's steady rate with the
//! reports 5% of them post, bursts of 20 times that, and rising rates until the 99th
//! percentile passes 50 ms. Every phase has a fixed length: the section stops by itself.

mod load;
pub mod seed;

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use load::Figures;

/// What the pull section is asked for.
pub struct PullArgs {
    /// Nodes in the inventory.
    pub nodes: usize,
    /// Nodes of the enrollment storm.
    pub storm: usize,
    /// Seconds of the steady phase.
    pub seconds: f64,
    /// `sqlite`, `postgres`.
    pub stores: Vec<String>,
    /// Only the dashboard's figures: no storm, no polls (PULL.md is not written).
    pub dashboard_only: bool,
}

/// Polls a second of N nodes polling every 30 minutes.
fn steady_rate(nodes: usize) -> f64 {
    #[allow(clippy::cast_precision_loss)]
    let n = nodes as f64;
    n / 1800.0
}

/// Senders of the polls (each request on its own connection).
const SENDERS: usize = 128;

/// The 99th percentile the capacity is read at (ms).
const P99_GOAL: f64 = 50.0;

fn ms(v: f64) -> String {
    if v.is_nan() {
        "—".into()
    } else if v >= 100.0 {
        format!("{v:.0} ms")
    } else {
        format!("{v:.1} ms")
    }
}

/// `strata serve` on a free loopback port: the child and its URL.
fn serve(strata: &Path, site: &Path, online: &Path, db: &str, log: &Path) -> (Child, String) {
    // The request log, one line a request, as an operator's serve writes it.
    #[allow(clippy::disallowed_types)]
    let stderr = std::fs::File::create(log).expect("the request log");
    let mut child = Command::new(strata)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--per-address-rate",
            "0",
            "--site",
        ])
        .arg(site)
        .arg("--key")
        .arg(online)
        .arg("--db")
        .arg(db)
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("strata serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("serve's first line");
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http"))
        .unwrap_or_else(|| panic!("serve did not start: {line}"))
        .to_string();
    (child, url)
}

fn phase_row(md: &mut String, name: &str, f: &Figures, rss: (f64, f64)) {
    let _ = writeln!(
        md,
        "| {name} | {:.0}/s × {:.0} s | {:.0}/s | {} ({} 304), {} reports | {} | {} | {} | {} | {} ({} 429) | {:.0} / {:.0} MiB |",
        f.rate,
        f.seconds,
        f.achieved,
        f.polls,
        f.not_modified,
        f.reports,
        ms(f.p50),
        ms(f.p99),
        ms(f.max),
        ms(f.report_p99),
        f.errors,
        f.overloaded,
        rss.0,
        rss.1
    );
}

/// One store's run: its markdown, and (steady p99, burst p99, capacity, peak RSS).
#[allow(clippy::too_many_lines)]
fn store_run(
    strata: &Path,
    work: &Path,
    store: &str,
    pa: &PullArgs,
) -> (String, (f64, f64, f64, f64)) {
    let dir = work.join(format!("pull-{store}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let (site, keys, online) = seed::site(strata, &dir);
    let began = std::time::Instant::now();
    let nodes = Arc::new(seed::nodes("node", pa.nodes));
    let storm = seed::nodes("new", pa.storm);
    let tokens: Vec<String> = (0..pa.storm)
        .map(|_| strata_server::httpsig::nonce())
        .collect();
    let operator = strata_server::httpsig::nonce();
    let keys_made = began.elapsed().as_secs_f64();
    let now = strata_snapshot::now();
    let began = std::time::Instant::now();
    let db = if store == "postgres" {
        let base = std::env::var("STRATA_TEST_PG").expect("STRATA_TEST_PG");
        let url = seed::pg_database(&base, "strata_bench_pull");
        seed::pg(&url, &nodes, &tokens, &operator, now);
        url
    } else {
        let db = dir.join("state.db");
        seed::sqlite(&db, &nodes, &tokens, &operator, now);
        db.display().to_string()
    };
    let seeded = began.elapsed().as_secs_f64();
    let (mut child, url) = serve(strata, &site, &online, &db, &dir.join("serve.log"));
    let pid = child.id();
    let publish = Command::new(strata)
        .args(["publish", "--to", &url, "--site"])
        .arg(&site)
        .arg("--keys")
        .arg(&keys)
        .output()
        .expect("strata publish");
    assert!(
        publish.status.success(),
        "strata publish: {}",
        String::from_utf8_lossy(&publish.stderr)
    );
    let mut md = String::new();
    let _ = writeln!(
        md,
        "\n### {store}\n\n{} nodes seeded in {seeded:.1} s (their {} keys made in {keys_made:.1} s); \
         serve's RSS after start: {:.0} MiB.\n",
        pa.nodes,
        pa.nodes + pa.storm,
        load::rss(pid).0
    );
    // The dashboard over the whole inventory, before any load.
    let _ = writeln!(
        md,
        "Dashboard (an operator's bearer token; 20 GETs each, one after the other):\n\n\
         | page | median | p99 | answer |\n|---|---|---|---|"
    );
    let mut dash_worst: f64 = 0.0;
    // The cursors of the 1000th page of 100 (the row before it), as the previous page's
    // `next` link carries them: by name, and by the last report, newest first (every
    // seeded report has the same time: ties by name, descending).
    let mut names: Vec<&str> = nodes.iter().map(|n| n.name.as_str()).collect();
    names.sort_unstable();
    let before = names[(999 * 100).min(names.len()) - 1];
    let by_name = strata_server::dashboard::cursor(
        strata_server::inventory::Sort::Name,
        &strata_server::inventory::Key::Text(before.into()),
        before,
    );
    let newest = names[names.len() - (999 * 100).min(names.len())];
    let by_last = strata_server::dashboard::cursor(
        strata_server::inventory::Sort::Last,
        &strata_server::inventory::Key::Int(i64::try_from(now - 60).unwrap_or(0)),
        newest,
    );
    for path in [
        "/".to_string(),
        "/api/nodes".into(),
        "/?page=1000".into(),
        format!("/?page=1000&after={by_name}"),
        format!("/api/nodes?sort=last&order=desc&page=1000&after={by_last}"),
        "/?status=failed".into(),
        "/api/nodes?status=failed&page=20".into(),
        "/?role=db".into(),
        "/api/nodes?group=g42&environment=test".into(),
        "/?revision=behind".into(),
        "/?sort=status&order=desc".into(),
    ] {
        let path = path.as_str();
        match load::dashboard(&url, path, &operator, 20) {
            Ok((t, size)) => {
                let (p50, p99) = load::p50_p99(&t);
                dash_worst = dash_worst.max(p50);
                let _ = writeln!(
                    md,
                    "| `{path}` | {} | {} | {} KiB |",
                    ms(p50),
                    ms(p99),
                    size / 1024
                );
            }
            Err(e) => {
                let _ = writeln!(md, "| `{path}` | failed: {e} | | |");
                dash_worst = f64::INFINITY;
            }
        }
    }
    if pa.dashboard_only {
        let _ = child.kill();
        let _ = child.wait();
        return (md, (f64::NAN, f64::NAN, 0.0, 0.0));
    }
    // The enrollment storm: real enrollments, each with its own token.
    let s = load::enroll_storm(&url, &storm, &tokens, 32);
    #[allow(clippy::cast_precision_loss)]
    let _ = writeln!(
        md,
        "\nEnrollment storm: {} enrollments (each signed with its new key, with its own token, \
         32 at a time) in {:.1} s, {:.0}/s; latency median {}, p99 {}; {} errors{}.\n",
        s.enrolled + s.errors,
        s.seconds,
        (s.enrolled + s.errors) as f64 / s.seconds,
        ms(s.p50),
        ms(s.p99),
        s.errors,
        s.first_error
            .map(|e| format!(" (first: {e})"))
            .unwrap_or_default()
    );
    let _ = writeln!(
        md,
        "Polls (each signed with its node's key, `If-None-Match` the ETag last seen, its own \
         connection; every 20th followed by a signed report), open loop from {SENDERS} \
         senders; latency from when each request was due:\n\n\
         | phase | polls asked | requests sent (polls and reports) | requests | p50 | p99 | max | report p99 | errors | serve RSS (now / peak) |\n\
         |---|---|---|---|---|---|---|---|---|---|"
    );
    let steady = steady_rate(pa.nodes);
    let mut errors = Vec::new();
    let f = load::polls(&url, &nodes, steady, pa.seconds, SENDERS);
    phase_row(&mut md, "steady", &f, load::rss(pid));
    errors.extend(f.first_error.clone());
    let steady_p99 = f.p99;
    let f = load::polls(&url, &nodes, steady * 20.0, 10.0, SENDERS);
    phase_row(&mut md, "burst (20×)", &f, load::rss(pid));
    errors.extend(f.first_error.clone());
    let burst_p99 = f.p99;
    // Rising rates, 10 s each, until p99 passes the goal twice.
    let mut capacity = 0.0;
    let mut over = 0;
    let mut top = 0.0;
    for rate in [
        250.0, 500.0, 1000.0, 1500.0, 2000.0, 2500.0, 3000.0, 3500.0, 4000.0, 5000.0, 6000.0,
        8000.0,
    ] {
        let f = load::polls(&url, &nodes, rate, 10.0, SENDERS);
        phase_row(&mut md, "rising", &f, load::rss(pid));
        top = rate;
        errors.extend(f.first_error.clone());
        if f.p99 <= P99_GOAL && f.errors == 0 && over == 0 {
            capacity = rate;
        } else {
            over += 1;
            if over == 2 {
                break;
            }
        }
    }
    let peak = load::rss(pid).1;
    let _ = child.kill();
    let _ = child.wait();
    let _ = writeln!(
        md,
        "\nCapacity: p99 stays under {P99_GOAL:.0} ms up to {capacity:.0} polls/s{}: {:.0} nodes \
         polling every 30 minutes. Peak RSS of serve: {peak:.0} MiB.",
        if over == 0 && capacity >= top {
            " (the highest rate tried: at least that)"
        } else {
            ""
        },
        capacity * 1800.0
    );
    if let Some(e) = errors.first() {
        let _ = writeln!(md, "\nFirst error: `{e}`");
    }
    let _ = writeln!(
        md,
        "\nDashboard's slowest median above: {}.",
        ms(dash_worst)
    );
    (md, (steady_p99, burst_p99, capacity, peak))
}

/// The section: its markdown (PULL.md).
pub fn section(strata: &Path, work: &Path, pa: &PullArgs, command: &str) -> String {
    let mut md = format!(
        "# strata pull: one `serve` and a large fleet\n\n\
         Written by `bench/run --sections pull` (issues 20 and 23). Command: `{command}`.\n\
         Machine: {}; shared with other jobs (their compilers reniced to 19 while this ran).\n\n\
         One release `strata serve` on 127.0.0.1 (plain HTTP: loopback; TLS left out), its \
         inventory seeded with {} accepted nodes, each with its ed25519 key and a last report \
         (3% failed, 7% changed, 2% of those with drift); an environment published with \
         `strata publish`. `--per-address-rate 0`: the load comes from one address, standing \
         for {} nodes. The load generator (bench/src/pull/) runs on the same two cores as \
         the server.\n",
        crate::machine(work),
        pa.nodes,
        pa.nodes
    );
    let mut summary = Vec::new();
    for store in &pa.stores {
        if store == "postgres" && std::env::var_os("STRATA_TEST_PG").is_none() {
            let _ = writeln!(
                md,
                "\n### postgres\n\nNot run: no STRATA_TEST_PG (bench/run starts one as root)."
            );
            continue;
        }
        eprintln!("pull: {store}");
        let (m, figures) = store_run(strata, work, store, pa);
        // Shown at once: a later store's failure does not lose it.
        eprintln!("{m}");
        md.push_str(&m);
        summary.push((store.clone(), figures));
    }
    let _ = writeln!(
        md,
        "\n## Beside the anchors\n\n\
         Nodes one server takes, each polling every 30 minutes: strata's capacity above × 1,800 \
         s; the others' as their vendors publish them (their servers also compile catalogs \
         (Puppet) or render states (Salt) for each run, which strata's nodes do themselves).\n\n\
         | anchor | its nodes per server | strata serve | strata ÷ anchor |\n|---|---|---|---|"
    );
    for (store, (_, _, cap, _)) in &summary {
        let nodes = cap * 1800.0;
        for (anchor, n) in [
            ("Puppet primary (2,000–4,000 nodes)", 4000.0),
            ("Salt master (about 15,000 minions)", 15000.0),
            ("CFEngine hub (5,000 hosts)", 5000.0),
        ] {
            let _ = writeln!(
                md,
                "| {anchor} | {n:.0} | {nodes:.0} ({store}) | {:.0}× |",
                nodes / n
            );
        }
    }
    let _ = writeln!(md, "\n## Targets (issue 20)\n");
    for (store, (steady, burst, cap, peak)) in &summary {
        let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
        let _ = writeln!(
            md,
            "- {store}: p99 at the steady rate {} (goal 50 ms: {}); in the bursts {} (goal 250 ms: {}); \
             serve's peak RSS {peak:.0} MiB (goal 300 MiB: {}); capacity {cap:.0} polls/s.",
            ms(*steady),
            verdict(*steady < 50.0),
            ms(*burst),
            verdict(*burst < 250.0),
            verdict(*peak < 300.0)
        );
    }
    md
}
