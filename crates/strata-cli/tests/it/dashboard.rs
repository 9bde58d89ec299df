//! `strata serve`'s dashboard and `/api/`, on a loopback port seeded with runs from real
//! agents: only an operator's bearer token opens them (not a node's signature), the JSON
//! shapes, strings from nodes escaped in HTML, and the fleet page in headless Chromium.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::Duration;

use strata_server::inventory::{self, EnrollRequest};
use strata_test::TestEnv;

use crate::serve::{Served, output, served_with};

/// A server with n1 and n2 enrolled, each with a run from its agent (n1 a second one,
/// of a second revision), and an operator's token.
pub(crate) fn seeded() -> (Served, String) {
    seeded_with(&[])
}

/// [`seeded`], with more arguments for `strata serve`.
pub(crate) fn seeded_with(extra: &[&str]) -> (Served, String) {
    seeded_site(|_| {}, extra)
}

/// [`seeded_with`], with more site files written before the server starts.
pub(crate) fn seeded_site(setup: impl FnOnce(&TestEnv), extra: &[&str]) -> (Served, String) {
    let s = served_with(setup, extra);
    s.publish();
    for n in ["n1", "n2"] {
        let root = s.node_root(n);
        let token = s.token(&["--node", n]);
        assert_eq!(s.enroll(&root, n, Some(&token)).0, 0);
        let (code, out, err) = s.agent(&root);
        assert_eq!(code, 0, "{out}{err}");
    }
    s.env.write(
        "modules/m/templates/etc/motd.j2",
        "{{ node.name }} in {{ node.environment }}: v2\n",
    );
    s.publish();
    // Reports are timed to the second: n1's last one comes a second after n2's, so that
    // sorting by the last report has no tie to break.
    std::thread::sleep(Duration::from_millis(1100));
    let (code, out, err) = s.agent(&s.node_root("n1"));
    assert_eq!(code, 0, "{out}{err}");
    let (code, token, err) = s.site_cmd(&["operators", "add", "alice"]);
    assert_eq!(code, 0, "{err}");
    let token = token.trim().to_string();
    assert!(token.starts_with("strataop1."), "{token}");
    (s, token)
}

/// A GET over a plain socket: the status line's code, the headers and the body.
pub(crate) fn get(s: &Served, path: &str, token: Option<&str>) -> (u16, String, String) {
    let host = s.url.trim_start_matches("http://");
    let mut raw = TcpStream::connect(host).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
    let req = format!("GET {path} HTTP/1.1\r\nhost: {host}\r\n{auth}connection: close\r\n\r\n");
    raw.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let code = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    (code, head.to_ascii_lowercase(), body.to_string())
}

#[test]
fn operators_need_a_bearer_token_and_node_keys_open_nothing() {
    let (s, token) = seeded();
    for path in [
        "/",
        "/api/nodes",
        "/api/nodes/n1",
        "/nodes/n1",
        "/api/runs/1",
        "/runs/1",
    ] {
        let (code, head, _) = get(&s, path, None);
        assert_eq!(code, 401, "{path}");
        assert!(head.contains("www-authenticate: bearer"), "{head}");
        assert_eq!(get(&s, path, Some("strataop1.00")).0, 401, "{path}");
        let (code, head, _) = get(&s, path, Some(&token));
        assert_eq!(code, 200, "{path}");
        assert!(head.contains("referrer-policy: no-referrer"), "{head}");
        // A node's own signature, valid for its routes, opens none of these.
        let c = s.client_of(&s.env.path().join("n1"));
        let a = c.send("GET", path, b"", false, &[], 1 << 20).unwrap();
        assert_eq!(a.status, 401, "{path}");
    }
    // Adding alice again replaces her token: the old one stops working.
    let (_, again, _) = s.site_cmd(&["operators", "add", "alice"]);
    assert_eq!(get(&s, "/api/nodes", Some(&token)).0, 401);
    assert_eq!(get(&s, "/api/nodes", Some(again.trim())).0, 200);
    let (code, _, err) = s.site_cmd(&["operators", "add", "a b"]);
    assert_ne!(code, 0);
    assert!(err.contains("operator name"), "{err}");
}

/// A GET with a cookie, over a plain socket.
fn get_cookie(s: &Served, path: &str, cookie: &str) -> u16 {
    let host = s.url.trim_start_matches("http://");
    let mut raw = TcpStream::connect(host).unwrap();
    let req = format!(
        "GET {path} HTTP/1.1\r\nhost: {host}\r\ncookie: {cookie}\r\nconnection: close\r\n\r\n"
    );
    raw.write_all(req.as_bytes()).unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    answer.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0)
}

#[test]
fn a_browser_signs_in_once_with_a_code_and_reads_with_its_cookie() {
    let (s, _) = seeded();
    let (code, _, err) = s.site_cmd(&["operators", "login", "bob"]);
    assert_ne!(code, 0);
    assert!(err.contains("no operator \"bob\""), "{err}");
    let (code, link, err) = s.site_cmd(&["operators", "login", "alice"]);
    assert_eq!(code, 0, "{err}");
    let link = link.trim();
    assert!(link.starts_with("/?token="), "{link}");

    let (status, head, _) = get(&s, link, None);
    assert_eq!(status, 303, "{head}");
    assert!(head.contains("\r\nlocation: /\r\n"), "{head}");
    let set = head
        .lines()
        .find_map(|l| l.strip_prefix("set-cookie: "))
        .unwrap();
    assert!(set.starts_with("__host-strata-session="), "{set}");
    for attr in ["; path=/", "; httponly", "; samesite=strict"] {
        assert!(set.contains(attr), "{set}");
    }
    assert!(!set.contains("secure"), "plain HTTP on loopback: {set}");
    // Single use.
    assert_eq!(get(&s, link, None).0, 401);
    // The header was lowercased above; the cookie's value is hex.
    let value = set.split(';').next().unwrap().split_once('=').unwrap().1;
    let cookie = format!("__Host-strata-session={value}");
    assert_eq!(get_cookie(&s, "/", &cookie), 200);
    assert_eq!(get_cookie(&s, "/api/nodes", &cookie), 200);
    assert_eq!(get_cookie(&s, "/", "__Host-strata-session=00"), 401);
    assert_eq!(get_cookie(&s, "/", &format!("other={value}")), 401);
}

#[test]
fn the_json_twins_page_filter_and_show_runs() {
    let (s, token) = seeded();
    let json = |path: &str| -> serde_json::Value {
        let (code, _, body) = get(&s, path, Some(&token));
        assert_eq!(code, 200, "{path}: {body}");
        serde_json::from_str(&body).unwrap()
    };
    let all = json("/api/nodes");
    assert_eq!(all["total"], 2);
    assert_eq!(all["counts"]["changed"], 2);
    assert_eq!(all["nodes"][0]["name"], "n1");
    assert_eq!(all["nodes"][0]["environment"], "test");
    assert_eq!(all["nodes"][0]["status"], "changed");
    assert!(all["nodes"][0]["last"]["revision"].is_string());
    let page2 = json("/api/nodes?limit=1&page=2");
    assert_eq!(page2["nodes"].as_array().unwrap().len(), 1);
    assert_eq!(page2["nodes"][0]["name"], "n2");
    assert_eq!(page2["total"], 2);
    assert_eq!(json("/api/nodes?limit=100000")["limit"], 500);
    assert_eq!(json("/api/nodes?environment=prod")["total"], 0);
    assert_eq!(json("/api/nodes?status=failed")["total"], 0);
    assert_eq!(json("/api/nodes?status=changed")["total"], 2);

    let node = json("/api/nodes/n2");
    assert_eq!(node["node"]["name"], "n2");
    let id = node["runs"][0]["id"].as_i64().unwrap();
    let run = json(&format!("/api/runs/{id}"));
    assert_eq!(run["node"], "n2");
    let paths = run["paths"].as_array().unwrap();
    assert!(paths.iter().any(|p| p["path"] == "/etc/motd"), "{run}");
    assert_eq!(get(&s, "/api/nodes/nope", Some(&token)).0, 404);
    assert_eq!(get(&s, "/api/runs/999", Some(&token)).0, 404);
}

/// Enrolls (straight into the inventory, past the name check a real enrollment makes) a
/// node whose name and report carry markup.
pub(crate) fn hostile_node(site: &Path) -> String {
    let name = "<script>alert(1)</script>".to_string();
    let mut inv = inventory::open(&site.join(".strata/state.db").display().to_string()).unwrap();
    let req = EnrollRequest {
        name: name.clone(),
        key_id: "k".repeat(16),
        public: "00".repeat(32),
        age: None,
        facts: serde_json::json!([["system", "hostname", "name", "<i>h</i>"]]).to_string(),
        token: None,
        environment: "<b>env</b>".into(),
    };
    let now = strata_snapshot::now();
    inv.enroll(&req, now, &mut |_, _, _| Ok(None)).unwrap();
    let classified = serde_json::json!({
        "machine": "<u>m</u>", "profile": "<u>p</u>", "role": null, "vars": {},
        "pools": {"ips": {"ip": "<u>10.0.0.9</u>"}}
    });
    inv.accept(&name, now, &mut |_, _, _| Ok(Some(classified.to_string())))
        .unwrap()
        .unwrap();
    let report: inventory::RunReport = serde_json::from_value(serde_json::json!({
        "node": name, "time": now, "environment": "<b>env</b>", "version": 1,
        "revision": "<img src=x>", "generation": null, "result": "failed\"><script>",
        "changes": 1, "error": "<script>boom</script>",
        "paths": [{"path": "/etc/<s>secret</s>", "kind": "modify", "sensitive": true}]
    }))
    .unwrap();
    inv.add_report(&report).unwrap();
    name
}

#[test]
fn strings_from_nodes_are_escaped_in_pages() {
    let (s, token) = seeded();
    hostile_node(&s.env.site());
    let (code, head, fleet) = get(&s, "/", Some(&token));
    assert_eq!(code, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        fleet.contains("&lt;script&gt;alert(1)&lt;/script&gt;"),
        "{fleet}"
    );
    assert!(!fleet.contains("<script"), "{fleet}");
    assert!(!fleet.contains("<b>") && !fleet.contains("<img"), "{fleet}");
    let (_, _, node) = get(
        &s,
        "/nodes/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
        Some(&token),
    );
    assert!(node.contains("&lt;script&gt;alert(1)"), "{node}");
    assert!(
        !node.contains("<script") && !node.contains("<img"),
        "{node}"
    );
    // Its facts, hardware and last changes, escaped; a sensitive file said to be one.
    for escaped in [
        "&lt;i&gt;h&lt;/i&gt;",
        "&lt;u&gt;p&lt;/u&gt;",
        "&lt;u&gt;10.0.0.9",
    ] {
        assert!(node.contains(escaped), "{escaped}: {node}");
    }
    assert!(!node.contains("<i>") && !node.contains("<u>") && !node.contains("<s>"));
    assert!(node.contains("(sensitive: content not shown)"), "{node}");
    let api: serde_json::Value = serde_json::from_str(
        &get(
            &s,
            "/api/nodes?status=failed%22%3E%3Cscript%3E",
            Some(&token),
        )
        .2,
    )
    .unwrap();
    let id = api["nodes"][0]["last"]["id"].as_i64().unwrap();
    let (_, _, run) = get(&s, &format!("/runs/{id}"), Some(&token));
    assert!(run.contains("&lt;script&gt;boom"), "{run}");
    assert!(!run.contains("<script") && !run.contains("<img"), "{run}");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs Debian's chromium: scripts/test installs it (feature host-tests)"
)]
fn the_fleet_page_in_headless_chromium_shows_each_node_and_its_status() {
    let (s, token) = seeded();
    // Chromium cannot send a header from the command line: a loopback proxy adds the
    // operator's token to each request, as a reverse proxy in front of serve would.
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
                .arg("--window-size=1200,600")
                .arg(extra)
                .arg(format!("{front}{path}")),
        )
    };
    let (code, dom, err) = chromium("--dump-dom", "");
    assert_eq!(code, 0, "{err}");
    for n in ["n1", "n2"] {
        assert!(
            dom.contains(&format!("data-node=\"{n}\" data-status=\"changed\"")),
            "{dom}"
        );
    }
    assert_eq!(dom.matches("<tr class=\"node\"").count(), 2, "{dom}");
    assert!(dom.contains("changed</a>: <strong>2</strong>"), "{dom}");
    // Cargo's temporary directory for integration tests outlives the test, for a
    // reviewer to look at.
    let shot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("dashboard-fleet.png");
    let (code, _, err) = chromium(&format!("--screenshot={}", shot.display()), "");
    assert_eq!(code, 0, "{err}");
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG"), "{}", shot.display());
    eprintln!("screenshot: {}", shot.display());

    // A node's page lists its run, linked to the run's page.
    let (code, dom, err) = chromium("--dump-dom", "nodes/n1");
    assert_eq!(code, 0, "{err}");
    assert_eq!(dom.matches("<tr class=\"run\"").count(), 2, "{dom}");
    let run = dom.split("href=\"/runs/").nth(1).unwrap();
    let id = &run[..run.find('"').unwrap()];
    let (code, dom, err) = chromium("--dump-dom", &format!("runs/{id}"));
    assert_eq!(code, 0, "{err}");
    assert!(dom.contains("<code>/etc/motd</code>"), "{dom}");
}

/// Relays one request to `back` with the operator's token added, and the answer back.
pub(crate) fn relay(mut conn: TcpStream, back: &str, token: &str) {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap_or(0) == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let Some(line) = head.lines().next() else {
        return;
    };
    let req = format!(
        "{line}\r\nhost: {back}\r\nauthorization: Bearer {token}\r\nconnection: close\r\n\r\n"
    );
    let Ok(mut up) = TcpStream::connect(back) else {
        return;
    };
    let _ = up.write_all(req.as_bytes());
    let _ = std::io::copy(&mut up, &mut conn);
}
