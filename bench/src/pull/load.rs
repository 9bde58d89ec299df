//! The load: correctly signed requests of many nodes against one `strata serve`, sent
//! open-loop (request i is due at start + i / rate, whoever sends it), so a slow server
//! shows as latency, never as a slower generator: each latency runs from the moment
//! the request was due, not from when a free sender got to it.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use strata_server::httpsig::{self, Target};
use strata_snapshot::KeyPair;

/// One simulated node: its name and key.
pub struct Node {
    pub name: String,
    pub key: KeyPair,
}

/// What one phase measured.
#[derive(Debug, Clone, Default)]
pub struct Figures {
    /// Requests asked for a second.
    pub rate: f64,
    /// Seconds it ran.
    pub seconds: f64,
    /// Polls sent, and of those answered 304 and 200.
    pub polls: usize,
    pub not_modified: usize,
    /// Reports posted.
    pub reports: usize,
    /// Answers that were neither 2xx nor 304 (429 counted apart), and failed requests.
    pub errors: usize,
    pub overloaded: usize,
    /// The first error seen, for the report.
    pub first_error: Option<String>,
    /// Poll latency, from due to answered: median, 99th percentile, max (ms).
    pub p50: f64,
    pub p99: f64,
    pub max: f64,
    /// Report latency, p99 (ms).
    pub report_p99: f64,
    /// Requests answered a second.
    pub achieved: f64,
}

/// A sender's HTTP agent: no connection kept between requests (every poll of a real
/// fleet comes from another node, on its own connection).
fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_idle_connections(0)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

/// A signed request: its status and `ETag`, or why it failed.
fn send(
    agent: &ureq::Agent,
    (base, authority): (&str, &str),
    key: &KeyPair,
    (method, path, body): (&str, &str, &[u8]),
    etag: Option<&str>,
) -> Result<(u16, Option<String>), String> {
    let t = Target {
        method,
        authority,
        path,
        body,
    };
    let nonce = (method == "POST").then(httpsig::nonce);
    let h = httpsig::sign(key, &t, strata_snapshot::now(), nonce);
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("{base}{path}"))
        .header("content-digest", &h.content_digest)
        .header("signature-input", &h.signature_input)
        .header("signature", &h.signature);
    if let Some(e) = etag {
        req = req.header("if-none-match", e);
    }
    if method == "POST" {
        req = req.header("content-type", "application/json");
    }
    let req = req.body(body.to_vec()).map_err(|e| e.to_string())?;
    let mut resp = agent.run(req).map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let etag = resp
        .headers()
        .get("etag")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let text = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_string()
        .unwrap_or_default();
    if !(200..300).contains(&status) && status != 304 {
        return Err(format!(
            "{status}: {}",
            text.chars().take(200).collect::<String>()
        ));
    }
    Ok((status, etag))
}

/// A report as an agent posts it after a run that changed something.
fn report_body(n: u64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "time": strata_snapshot::now(),
        "environment": "test",
        "version": 1,
        "revision": "0123456789abcdef0123456789abcdef01234567",
        "generation": n,
        "result": "changed",
        "changes": 2,
        "paths": [
            {"path": "/etc/motd", "kind": "modify", "sensitive": false},
            {"path": "/etc/issue", "kind": "modify", "sensitive": false},
        ],
        "truncated": 0,
        "drift": false,
        "error": null,
    }))
    .expect("a report serializes")
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Drives `rate` polls a second of random nodes for `seconds`, with `senders` threads;
/// every `report_every`-th poll (20: 5%) is followed by that node's report.
pub fn polls(
    url: &str,
    nodes: &Arc<Vec<Node>>,
    rate: f64,
    seconds: f64,
    senders: usize,
) -> Figures {
    let report_every = 20u64;
    let authority = url.trim_start_matches("http://").to_string();
    let base = url.to_string();
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let total = (rate * seconds).round() as u64;
    let next = Arc::new(AtomicU64::new(0));
    let etag: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
    let start = Instant::now() + Duration::from_millis(50);
    let lat = Arc::new(Mutex::new((Vec::new(), Vec::new())));
    let counts = Arc::new([(); 6].map(|()| AtomicUsize::new(0)));
    let first_error = Arc::new(Mutex::new(None));
    let threads: Vec<_> = (0..senders)
        .map(|_| {
            let (next, etag, lat, counts, first_error, nodes) = (
                next.clone(),
                etag.clone(),
                lat.clone(),
                counts.clone(),
                first_error.clone(),
                nodes.clone(),
            );
            let (base, authority) = (base.clone(), authority.clone());
            std::thread::spawn(move || {
                let agent = agent();
                let (mut polls, mut reports) = (Vec::new(), Vec::new());
                let mut seed = 0x9e37_79b9_7f4a_7c15u64 ^ (std::ptr::from_ref(&agent) as u64);
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= total {
                        break;
                    }
                    #[allow(clippy::cast_precision_loss)]
                    let due = start + Duration::from_secs_f64(i as f64 / rate);
                    if let Some(wait) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(wait);
                    }
                    // xorshift: which node polls.
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    #[allow(clippy::cast_possible_truncation)]
                    let node = &nodes[(seed % nodes.len() as u64) as usize];
                    let path = format!("/v1/nodes/{}/poll", node.name);
                    let tag = etag.lock().unwrap().clone();
                    let got = send(
                        &agent,
                        (&base, &authority),
                        &node.key,
                        ("GET", &path, b""),
                        tag.as_deref(),
                    );
                    polls.push(due.elapsed().as_secs_f64() * 1000.0);
                    counts[0].fetch_add(1, Ordering::Relaxed);
                    match got {
                        Ok((304, _)) => {
                            counts[1].fetch_add(1, Ordering::Relaxed);
                        }
                        Ok((_, Some(t))) => *etag.lock().unwrap() = Some(t),
                        Ok(_) => {}
                        Err(e) => {
                            let slot = if e.starts_with("429") { 4 } else { 3 };
                            counts[slot].fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                            continue;
                        }
                    }
                    if i % report_every == report_every - 1 {
                        let began = Instant::now();
                        let path = format!("/v1/nodes/{}/reports", node.name);
                        let got = send(
                            &agent,
                            (&base, &authority),
                            &node.key,
                            ("POST", &path, &report_body(i)),
                            None,
                        );
                        reports.push(began.elapsed().as_secs_f64() * 1000.0);
                        counts[2].fetch_add(1, Ordering::Relaxed);
                        if let Err(e) = got {
                            let slot = if e.starts_with("429") { 4 } else { 3 };
                            counts[slot].fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
                let mut l = lat.lock().unwrap();
                l.0.extend(polls);
                l.1.extend(reports);
            })
        })
        .collect();
    for t in threads {
        t.join().expect("a sender");
    }
    let elapsed = start.elapsed().as_secs_f64();
    let (mut polls, mut reports) = std::mem::take(&mut *lat.lock().unwrap());
    polls.sort_by(f64::total_cmp);
    reports.sort_by(f64::total_cmp);
    let c = |i: usize| counts[i].load(Ordering::Relaxed);
    #[allow(clippy::cast_precision_loss)]
    Figures {
        rate,
        seconds,
        polls: c(0),
        not_modified: c(1),
        reports: c(2),
        errors: c(3),
        overloaded: c(4),
        first_error: first_error.lock().unwrap().clone(),
        p50: percentile(&polls, 0.5),
        p99: percentile(&polls, 0.99),
        max: polls.last().copied().unwrap_or(f64::NAN),
        report_p99: percentile(&reports, 0.99),
        achieved: (c(0) + c(2)) as f64 / elapsed,
    }
}

/// What the enrollment storm measured.
#[derive(Debug, Clone, Default)]
pub struct Storm {
    pub enrolled: usize,
    pub errors: usize,
    pub first_error: Option<String>,
    pub seconds: f64,
    pub p50: f64,
    pub p99: f64,
}

/// Enrolls every node of `nodes` with its token (`tokens[i]`), `senders` at a time, as
/// fast as the server answers (closed loop: the storm of a fleet installed at once).
pub fn enroll_storm(url: &str, nodes: &[Node], tokens: &[String], senders: usize) -> Storm {
    let authority = url.trim_start_matches("http://");
    let next = AtomicUsize::new(0);
    let lat = Mutex::new(Vec::new());
    let errors = AtomicUsize::new(0);
    let first_error = Mutex::new(None);
    let facts = crate::pull::seed::facts();
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..senders {
            s.spawn(|| {
                let agent = agent();
                let mut mine = Vec::new();
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(node) = nodes.get(i) else { break };
                    let body = serde_json::to_vec(&serde_json::json!({
                        "node": node.name,
                        "public": strata_types::hex(node.key.public().as_bytes()),
                        "age": null,
                        "facts": facts,
                        "token": tokens[i],
                    }))
                    .expect("an enrollment serializes");
                    let began = Instant::now();
                    let got = send(
                        &agent,
                        (url, authority),
                        &node.key,
                        ("POST", "/v1/enroll", &body),
                        None,
                    );
                    mine.push(began.elapsed().as_secs_f64() * 1000.0);
                    match got {
                        Ok((200, _)) => {}
                        Ok((s, _)) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error
                                .lock()
                                .unwrap()
                                .get_or_insert(format!("{s}: not accepted"));
                        }
                        Err(e) => {
                            errors.fetch_add(1, Ordering::Relaxed);
                            first_error.lock().unwrap().get_or_insert(e);
                        }
                    }
                }
                lat.lock().unwrap().extend(mine);
            });
        }
    });
    let seconds = start.elapsed().as_secs_f64();
    let mut lat = lat.into_inner().unwrap();
    lat.sort_by(f64::total_cmp);
    let errors = errors.into_inner();
    Storm {
        enrolled: lat.len() - errors,
        errors,
        first_error: first_error.into_inner().unwrap(),
        seconds,
        p50: percentile(&lat, 0.5),
        p99: percentile(&lat, 0.99),
    }
}

/// Times `runs` GETs of `path` with an operator's bearer token: sorted latencies (ms),
/// and the size of the last answer; a non-200 answer is an error.
pub fn dashboard(
    url: &str,
    path: &str,
    token: &str,
    runs: usize,
) -> Result<(Vec<f64>, usize), String> {
    let agent = agent();
    let mut times = Vec::new();
    let mut size = 0;
    for _ in 0..runs {
        let began = Instant::now();
        let mut resp = agent
            .get(format!("{url}{path}"))
            .header("authorization", format!("Bearer {token}"))
            .call()
            .map_err(|e| e.to_string())?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_to_vec()
            .map_err(|e| e.to_string())?;
        times.push(began.elapsed().as_secs_f64() * 1000.0);
        if resp.status() != 200 {
            return Err(format!("{path}: {}", resp.status()));
        }
        size = body.len();
    }
    times.sort_by(f64::total_cmp);
    Ok((times, size))
}

/// A median and a 99th percentile of sorted times.
pub fn p50_p99(sorted: &[f64]) -> (f64, f64) {
    (percentile(sorted, 0.5), percentile(sorted, 0.99))
}

/// The resident set of a process now and at its peak (MiB), from /proc.
pub fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
            .map_or(f64::NAN, |kb| kb / 1024.0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}
