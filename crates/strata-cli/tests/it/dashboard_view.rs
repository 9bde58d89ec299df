//! The dashboard's node and run pages with what reports now carry: per-step timings
//! charted as inline SVG (and two runs compared), facts, generations and drift; the
//! fleet sorted by a whitelisted column; all in JSON and HTML, and in headless Chromium.

use std::path::Path;

use crate::dashboard::{get, hostile_node, relay, seeded};
use crate::serve::output;

fn json(s: &crate::serve::Served, token: &str, path: &str) -> serde_json::Value {
    let (code, _, body) = get(s, path, Some(token));
    assert_eq!(code, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// The step names of a run, each once, in order: one bar each in its chart.
fn distinct(run: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for s in run["steps"].as_array().unwrap() {
        let n = s["name"].as_str().unwrap().to_string();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

#[test]
fn agents_report_their_steps_and_a_nodes_page_charts_and_compares_them() {
    let (s, token) = seeded();
    let node = json(&s, &token, "/api/nodes/n1");
    let runs = node["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 2, "{node}");
    let (new, old) = (&runs[0], &runs[1]);
    // The engine's steps, as `strata report` shows them, with their time and memory.
    let names = distinct(new);
    for step in ["load", "compile"] {
        assert!(names.iter().any(|n| n == step), "{step}: {names:?}");
    }
    assert!(new["steps"][0]["wall_us"].as_u64().is_some(), "{new}");
    assert!(new["steps"][0]["max_rss"].as_u64().unwrap() > 0, "{new}");
    // Generations with their revisions, newest first; no drift.
    let gens = node["generations"].as_array().unwrap();
    assert_eq!(gens.len(), 2, "{node}");
    assert_eq!(gens[0]["revision"], new["revision"]);
    assert_eq!(gens[1]["revision"], old["revision"]);
    assert_ne!(new["revision"], old["revision"]);
    assert_eq!(gens[0]["run"], new["id"]);
    assert_eq!(node["drift"]["runs"], 0);
    assert!(
        node["facts"].is_array() && node["hardware"].is_null(),
        "{node}"
    );

    // Side by side: both runs in the JSON, one bar per step of each in the chart.
    let (a, b) = (old["id"].as_i64().unwrap(), new["id"].as_i64().unwrap());
    let both = json(&s, &token, &format!("/api/nodes/n1?compare={a},{b}"));
    assert_eq!(both["compare"][0]["id"], a);
    assert_eq!(both["compare"][1]["id"], b);
    let (code, _, page) = get(&s, &format!("/nodes/n1?compare={a},{b}"), Some(&token));
    assert_eq!(code, 200);
    let bars = distinct(old).len() + distinct(new).len();
    assert_eq!(page.matches("<rect class=\"bar\"").count(), bars, "{page}");
    assert_eq!(
        page.matches(&format!("data-run=\"{a}\"")).count(),
        distinct(old).len()
    );
    // Without ?compare: the last run's chart, and a link to compare each other run.
    let (_, _, page) = get(&s, "/nodes/n1", Some(&token));
    assert_eq!(
        page.matches("<rect class=\"bar\"").count(),
        names.len(),
        "{page}"
    );
    assert!(
        page.contains(&format!("href=\"/nodes/n1?compare={b},{a}\"")),
        "{page}"
    );
    for section in [
        "facts",
        "hardware",
        "drift",
        "timings",
        "changes",
        "generations",
    ] {
        assert!(
            page.contains(&format!("<section id=\"{section}\">")),
            "{section}"
        );
    }
    // A run's page: its chart and its steps' figures.
    let (_, _, run) = get(&s, &format!("/runs/{b}"), Some(&token));
    assert_eq!(
        run.matches("<rect class=\"bar\"").count(),
        names.len(),
        "{run}"
    );
    assert_eq!(
        run.matches("<tr class=\"step\"").count(),
        new["steps"].as_array().unwrap().len()
    );

    // Bad comparisons: not two ids, or a run of another node.
    let other = json(&s, &token, "/api/nodes/n2")["runs"][0]["id"]
        .as_i64()
        .unwrap();
    for bad in ["1", "1,2,3", "a,b", "1,"] {
        let (code, _, body) = get(&s, &format!("/nodes/n1?compare={bad}"), Some(&token));
        assert_eq!(code, 400, "{bad}: {body}");
    }
    let (code, _, _) = get(
        &s,
        &format!("/api/nodes/n1?compare={a},{other}"),
        Some(&token),
    );
    assert_eq!(code, 404);
    // A report without steps (as agents sent before they carried them) still shows.
    hostile_node(&s.env.site());
    let api = json(&s, &token, "/api/nodes?sort=status&order=desc&limit=1");
    let id = api["nodes"][0]["last"]["id"].as_i64().unwrap();
    let (code, _, run) = get(&s, &format!("/runs/{id}"), Some(&token));
    assert_eq!(code, 200);
    assert!(run.contains("carries no step timings"), "{run}");
}

#[test]
fn agents_cannot_post_steps_past_the_limits() {
    let (s, _) = seeded();
    let c = s.client_of(&s.env.path().join("n1"));
    let report = |steps: serde_json::Value| {
        let body = serde_json::json!({
            "time": 1, "environment": "test", "version": 1, "revision": "r",
            "generation": null, "result": "failed", "changes": 0, "paths": [],
            "error": null, "steps": steps
        });
        c.send(
            "POST",
            "/v1/nodes/n1/reports",
            body.to_string().as_bytes(),
            true,
            &[],
            1 << 20,
        )
        .unwrap()
        .status
    };
    let step = |name: &str| serde_json::json!({"name": name, "wall_us": 1, "max_rss": 1});
    let many: Vec<_> = (0..65).map(|_| step("x")).collect();
    assert_eq!(report(serde_json::json!(many)), 400);
    assert_eq!(report(serde_json::json!([step(&"x".repeat(65))])), 400);
    assert_eq!(report(serde_json::json!([step("a\u{1b}[2J")])), 400);
    assert_eq!(
        report(serde_json::json!([{"name": "x", "wall_us": -1, "max_rss": 0}])),
        400
    );
    assert_eq!(report(serde_json::json!([step("load")])), 201);
}

#[test]
fn the_fleet_sorts_by_a_whitelisted_column_both_ways_and_pages_in_that_order() {
    let (s, token) = seeded();
    hostile_node(&s.env.site());
    let names = |path: &str| -> Vec<String> {
        let v = json(&s, &token, path);
        v["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["name"].as_str().unwrap().to_string())
            .collect()
    };
    let hostile = "<script>alert(1)</script>".to_string();
    let (n1, n2) = ("n1".to_string(), "n2".to_string());
    assert_eq!(
        names("/api/nodes"),
        [hostile.clone(), n1.clone(), n2.clone()]
    );
    assert_eq!(
        names("/api/nodes?sort=name&order=desc"),
        [n2.clone(), n1.clone(), hostile.clone()]
    );
    // Status: `changed` before `failed"><script>`; ties by name, the same way (a
    // descending order is the ascending one reversed).
    assert_eq!(
        names("/api/nodes?sort=status"),
        [n1.clone(), n2.clone(), hostile.clone()]
    );
    assert_eq!(
        names("/api/nodes?sort=status&order=desc"),
        [hostile.clone(), n2.clone(), n1.clone()]
    );
    // The last report: newest first, ties by name descending.
    let v = json(&s, &token, "/api/nodes?sort=last&order=desc");
    let keys: Vec<(u64, String)> = v["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| {
            (
                n["last"]["time"].as_u64().unwrap(),
                n["name"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let mut sorted = keys.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(keys, sorted);
    // Paged one by one, the pages keep the order.
    let mut paged = Vec::new();
    for page in 1..=3 {
        paged.extend(names(&format!(
            "/api/nodes?sort=status&order=desc&limit=1&page={page}"
        )));
    }
    assert_eq!(paged, [hostile, n2, n1]);
    let v = json(&s, &token, "/api/nodes?sort=environment&order=desc");
    assert_eq!(
        (v["sort"].as_str(), v["order"].as_str()),
        (Some("environment"), Some("desc"))
    );
    // Only the listed columns, only asc or desc.
    for bad in [
        "sort=key_id",
        "sort=name%3Bdrop%20table",
        "sort=",
        "order=up",
        "sort=NAME",
    ] {
        let (code, _, body) = get(&s, &format!("/api/nodes?{bad}"), Some(&token));
        assert_eq!(code, 400, "{bad}: {body}");
        assert_eq!(get(&s, &format!("/?{bad}"), Some(&token)).0, 400, "{bad}");
    }
    // The page's headers link to the other order of the column sorted by.
    let (_, _, page) = get(&s, "/?sort=status", Some(&token));
    assert!(
        page.contains("aria-sort=\"ascending\" data-sort=\"status\""),
        "{page}"
    );
    assert!(page.contains("sort=status&amp;order=desc"), "{page}");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs Debian's chromium: scripts/test installs it (feature host-tests)"
)]
fn in_headless_chromium_the_chart_has_a_bar_per_step_and_the_fleet_sorts() {
    let (s, token) = seeded();
    let node = json(&s, &token, "/api/nodes/n1");
    let runs = node["runs"].as_array().unwrap();
    let (a, b) = (
        runs[1]["id"].as_i64().unwrap(),
        runs[0]["id"].as_i64().unwrap(),
    );
    let bars = distinct(&runs[0]).len() + distinct(&runs[1]).len();
    let proxy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let front = format!("http://{}/", proxy.local_addr().unwrap());
    let back = s.url.trim_start_matches("http://").to_string();
    std::thread::spawn(move || {
        for conn in proxy.incoming().flatten() {
            let (back, token) = (back.clone(), token.clone());
            std::thread::spawn(move || relay(conn, &back, &token));
        }
    });
    let tmp = s.env.path();
    let chromium = |extra: &str, path: &str| {
        output(
            std::process::Command::new("chromium")
                .args(["--headless", "--no-sandbox", "--disable-gpu"])
                .arg(format!(
                    "--user-data-dir={}",
                    tmp.join("chromium").display()
                ))
                .arg("--window-size=1000,1400")
                .arg(extra)
                .arg(format!("{front}{path}")),
        )
    };
    let compare = format!("nodes/n1?compare={a},{b}");
    let (code, dom, err) = chromium("--dump-dom", &compare);
    assert_eq!(code, 0, "{err}");
    assert_eq!(dom.matches("<rect class=\"bar\"").count(), bars, "{dom}");
    for section in [
        "facts",
        "hardware",
        "drift",
        "timings",
        "changes",
        "generations",
    ] {
        assert!(
            dom.contains(&format!("<section id=\"{section}\">")),
            "{section}: {dom}"
        );
    }
    assert_eq!(dom.matches("<tr class=\"generation\"").count(), 2, "{dom}");
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let shot = dir.join("dashboard-node-compare.png");
    let (code, _, err) = chromium(&format!("--screenshot={}", shot.display()), &compare);
    assert_eq!(code, 0, "{err}");
    assert!(std::fs::read(&shot).unwrap().starts_with(b"\x89PNG"));
    eprintln!("screenshot: {}", shot.display());

    let (code, dom, err) = chromium("--dump-dom", "?sort=last&order=desc");
    assert_eq!(code, 0, "{err}");
    let n1 = dom.find("data-node=\"n1\"").unwrap();
    let n2 = dom.find("data-node=\"n2\"").unwrap();
    assert!(n1 < n2, "n1 reported last: {dom}");
    assert!(
        dom.contains("aria-sort=\"descending\" data-sort=\"last\""),
        "{dom}"
    );
    let shot = dir.join("dashboard-fleet-sorted.png");
    let (code, _, err) = chromium(
        &format!("--screenshot={}", shot.display()),
        "?sort=last&order=desc",
    );
    assert_eq!(code, 0, "{err}");
    eprintln!("screenshot: {}", shot.display());
}
