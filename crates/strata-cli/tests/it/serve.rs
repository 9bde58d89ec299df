//! `strata serve` on a loopback port with a scratch site, nodes as directories
//! (`--root`): enrollment, agents polling and applying, reports; and the attacks of
//! FLEET.md's "What works means" that reach the server: reused, expired and foreign
//! tokens, a second key for a name, a revoked node, one node asking for another's,
//! replayed, aged, garbage and oversized requests, a blob swapped on the server.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use strata_server::client::Client;
use strata_snapshot::{KeyPair, Role};
use strata_test::TestEnv;

use crate::env;

/// A site, its keys, and a server serving it.
pub(crate) struct Served {
    pub(crate) env: TestEnv,
    pub(crate) keys: PathBuf,
    online: PathBuf,
    server: Child,
    pub(crate) url: String,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

/// The output of a command: exit code, stdout, stderr.
pub(crate) type Out = (i32, String, String);

pub(crate) fn output(cmd: &mut Command) -> Out {
    let out = cmd.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A site with nodes n1 and n2 in environment `test`, its keys (the online key apart),
/// and `strata serve` on a free loopback port.
pub(crate) fn served(extra: &[&str]) -> Served {
    served_with(|_| {}, extra)
}

/// [`served`], with more site files written before the server starts.
pub(crate) fn served_with(setup: impl FnOnce(&TestEnv), extra: &[&str]) -> Served {
    let env = env();
    env.write("strata.toml", "[site]\nname = \"s\"\n");
    for n in ["n1", "n2"] {
        env.write(
            &format!("nodes/{n}.toml"),
            "environment = \"test\"\nmodules = [\"m\"]\n",
        );
    }
    env.write(
        "modules/m/templates/etc/motd.j2",
        "{{ node.name }} in {{ node.environment }}: v1\n",
    );
    let keys = env.path().join("keys");
    let online = env.path().join("server/online.key");
    setup(&env);
    let (code, _, err) = output(
        env.cmd(&["keys", "init", "--site"])
            .arg(env.site())
            .arg("--keys")
            .arg(&keys)
            .arg("--online-out")
            .arg(&online),
    );
    assert_eq!(code, 0, "{err}");
    let (server, url) = start(&env, &online, extra);
    Served {
        env,
        keys,
        online,
        server,
        url,
    }
}

/// Starts `strata serve` and waits for the address it prints.
fn start(env: &TestEnv, online: &Path, extra: &[&str]) -> (Child, String) {
    // Its request log, one line per request, goes to a file (a pipe nobody reads would
    // fill up and stop the server).
    let log = env.path().join("serve.log");
    let stderr = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log)
        .unwrap();
    let mut server = env
        .cmd(&["serve", "--listen", "127.0.0.1:0", "--site"])
        .arg(env.site())
        .arg("--key")
        .arg(online)
        .args(extra)
        .env("XDG_CONFIG_HOME", env.path().join("xdg"))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .rsplit(' ')
        .next()
        .filter(|u| u.starts_with("http"))
        .unwrap_or_else(|| {
            let _ = server.wait();
            let err = std::fs::read_to_string(&log).unwrap_or_default();
            panic!("serve did not start: {line}{err}")
        })
        .to_string();
    (server, url)
}

impl Served {
    pub(crate) fn publish(&self) {
        let (code, out, err) = output(
            self.env
                .cmd(&["publish", "--to", &self.url, "--site"])
                .arg(self.env.site())
                .arg("--keys")
                .arg(&self.keys),
        );
        assert_eq!(code, 0, "{out}{err}");
    }

    /// A token from `nodes token ARGS`, in a file.
    pub(crate) fn token(&self, args: &[&str]) -> PathBuf {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let file = self.env.path().join(format!(
            "token{}",
            N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
        ));
        let (code, out, err) = output(
            self.env
                .cmd(&["nodes", "token", "--site"])
                .arg(self.env.site())
                .arg("--out")
                .arg(&file)
                .args(args),
        );
        assert_eq!(code, 0, "{out}{err}");
        file
    }

    /// A node's root directory.
    pub(crate) fn node_root(&self, dir: &str) -> PathBuf {
        let p = self.env.path().join(dir);
        std::fs::create_dir_all(&p).unwrap();
        p
    }

    pub(crate) fn enroll(&self, root: &Path, node: &str, token: Option<&Path>) -> Out {
        self.enroll_with(root, node, token, &[])
    }

    pub(crate) fn enroll_with(
        &self,
        root: &Path,
        node: &str,
        token: Option<&Path>,
        extra: &[&str],
    ) -> Out {
        let mut cmd = self
            .env
            .cmd(&["enroll", "--server", &self.url, "--node", node]);
        cmd.arg("--root").arg(root).args(extra);
        if let Some(t) = token {
            cmd.arg("--token-file").arg(t);
        }
        output(&mut cmd)
    }

    pub(crate) fn agent(&self, root: &Path) -> Out {
        output(
            self.env
                .cmd(&["agent", "--once", "--server", &self.url, "--root"])
                .arg(root),
        )
    }

    pub(crate) fn site_cmd(&self, args: &[&str]) -> Out {
        output(self.env.cmd(args).arg("--site").arg(self.env.site()))
    }

    /// A client signing with the key a node enrolled with.
    pub(crate) fn client_of(&self, root: &Path) -> Client {
        let key = KeyPair::load(&root.join("var/lib/strata/keys/node.key"), Role::Node).unwrap();
        Client::new(&self.url, key, None).unwrap()
    }

    pub(crate) fn authority(&self) -> String {
        self.url.trim_start_matches("http://").to_string()
    }
}

pub(crate) fn motd(root: &Path) -> Option<String> {
    std::fs::read_to_string(root.join("etc/motd")).ok()
}

#[test]
fn a_node_enrolls_with_a_token_applies_rests_and_reports() {
    let s = served(&[]);
    s.publish();
    let n1 = s.node_root("n1");
    let token = s.token(&["--node", "n1"]);
    let (code, out, err) = s.enroll(&n1, "n1", Some(&token));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("accepted, environment test"), "{out}");
    let key = n1.join("var/lib/strata/keys/node.key");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&key).unwrap().permissions())
            & 0o777,
        0o600
    );
    // Its age key too, recorded by the server for secrets.
    let age = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["keys", "node", "--root"])
        .arg(&n1)
        .output()
        .unwrap();
    let age = String::from_utf8(age.stdout).unwrap().trim().to_string();
    assert!(age.starts_with("age1"), "{age}");
    let (_, json, _) = s.site_cmd(&["nodes", "--json"]);
    let nodes: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(nodes[0]["age"], age, "{json}");

    let (code, out, err) = s.agent(&n1);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(motd(&n1).unwrap(), "n1 in test: v1\n");
    // The second poll: the server answers "not modified", nothing is fetched, nothing
    // changes, nothing is reported.
    let (code, out, err) = s.agent(&n1);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("(not modified)"), "{err}");
    assert!(out.contains("Nothing to do for n1"), "{out}");

    // Drift is corrected and reported as such.
    std::fs::write(n1.join("etc/motd"), "drifted\n").unwrap();
    let (code, _, err) = s.agent(&n1);
    assert_eq!(code, 0, "{err}");
    assert_eq!(motd(&n1).unwrap(), "n1 in test: v1\n");

    // A new release reaches the node.
    s.env
        .write("modules/m/templates/etc/motd.j2", "{{ node.name }}: v2\n");
    s.publish();
    let (code, out, err) = s.agent(&n1);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(motd(&n1).unwrap(), "n1: v2\n");

    let (code, out, err) = s.site_cmd(&["runs", "n1"]);
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().filter(|l| l.contains(" n1 ")).collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(lines[0].contains("n1 changed test version"), "{out}");
    assert!(lines[1].contains("1 changes, drift"), "{out}");
    assert!(out.contains("modify   /etc/motd"), "{out}");
    assert!(
        !out.contains("drifted"),
        "contents never reach a report: {out}"
    );
    let (_, json, _) = s.site_cmd(&["runs", "--json"]);
    let runs: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 3);
    assert_eq!(runs[1]["drift"], true);
    assert_eq!(runs[2]["paths"][0]["path"], "/etc/motd");

    let (_, out, _) = s.site_cmd(&["nodes"]);
    assert!(out.contains("n1") && out.contains("accepted"), "{out}");
    let (_, json, _) = s.site_cmd(&["nodes", "--json"]);
    let nodes: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(nodes[0]["name"], "n1");
    assert_eq!(nodes[0]["environment"], "test");

    // What pull applied is what a local apply of the same site writes, byte for byte
    // (the TestEnv's own root).
    let (code, _, err) = output(&mut s.env.cmd(&["apply", "--node", "n1"]));
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        std::fs::read(s.env.root().join("etc/motd")).unwrap(),
        std::fs::read(n1.join("etc/motd")).unwrap()
    );
}

#[test]
fn tokens_are_single_use_expire_and_a_name_keeps_its_first_key() {
    let s = served(&[]);
    s.publish();
    let token = s.token(&[]);
    let n1 = s.node_root("n1");
    assert_eq!(s.enroll(&n1, "n1", Some(&token)).0, 0);

    // Reused.
    let n2 = s.node_root("n2");
    let (code, out, err) = s.enroll(&n2, "n2", Some(&token));
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("the token was already used"), "{err}");
    // Expired.
    let short = s.token(&["--ttl", "1s"]);
    std::thread::sleep(Duration::from_millis(2100));
    let (code, _, err) = s.enroll(&n2, "n2", Some(&short));
    assert_eq!(code, 1);
    assert!(err.contains("the token expired"), "{err}");
    // Bound to another name.
    let bound = s.token(&["--node", "n1"]);
    let (code, _, err) = s.enroll(&n2, "n2", Some(&bound));
    assert_eq!(code, 1);
    assert!(err.contains("the token is for node \"n1\""), "{err}");
    // A second key for a known name: refused, with a valid token too.
    let thief = s.node_root("thief");
    let fresh = s.token(&[]);
    let (code, _, err) = s.enroll(&thief, "n1", Some(&fresh));
    assert_eq!(code, 1);
    assert!(err.contains("bound to another key"), "{err}");
    assert!(s.agent(&thief).0 != 0);
    assert!(motd(&thief).is_none());
    // None of those consumed `fresh`, nor recorded anything.
    let (_, out, _) = s.site_cmd(&["nodes"]);
    assert_eq!(out.lines().count(), 2, "{out}");

    // Without a token: pending (exit 2) until accepted; nothing is served meanwhile.
    let (_, fingerprint, _) = s.site_cmd(&["keys", "fingerprint"]);
    let (code, out, _) = s.enroll_with(&n2, "n2", None, &["--root-key", fingerprint.trim()]);
    assert_eq!(code, 2, "{out}");
    assert!(out.contains("strata nodes accept n2"), "{out}");
    let (code, _, err) = s.agent(&n2);
    assert_eq!(code, 1);
    assert!(err.contains("waits for `strata nodes accept n2`"), "{err}");
    assert_eq!(s.site_cmd(&["nodes", "accept", "n2"]).0, 0);
    let (code, _, err) = s.agent(&n2);
    assert_eq!(code, 0, "{err}");
    assert_eq!(motd(&n2).unwrap(), "n2 in test: v1\n");

    // Without a token and without a fingerprint: refused before anything is sent.
    let lost = s.node_root("lost");
    let (code, _, err) = s.enroll(&lost, "n3", None);
    assert_eq!(code, 1);
    assert!(err.contains("no root fingerprint to pin"), "{err}");
    assert!(!lost.join("var/lib/strata/keys/enrollment.json").exists());

    // Forgotten, the name is free for another key.
    assert_eq!(s.site_cmd(&["nodes", "forget", "n1"]).0, 0);
    let (code, _, err) = s.enroll(&thief, "n1", Some(&fresh));
    assert_eq!(code, 0, "{err}");
}

#[test]
fn a_revoked_node_gets_nothing_and_no_node_gets_another_ones() {
    let s = served(&[]);
    s.publish();
    let (n1, n2) = (s.node_root("n1"), s.node_root("n2"));
    assert_eq!(s.enroll(&n1, "n1", Some(&s.token(&[]))).0, 0);
    assert_eq!(s.enroll(&n2, "n2", Some(&s.token(&[]))).0, 0);
    assert_eq!(s.agent(&n2).0, 0);

    // n1's key asking for n2's poll, manifests, blobs, or posting n2's report.
    let c = s.client_of(&n1);
    for (method, path) in [
        ("GET", "/v1/nodes/n2/poll"),
        ("GET", "/v1/nodes/n2/manifests/1"),
        ("GET", "/v1/nodes/n2/blobs/00"),
        ("POST", "/v1/nodes/n2/reports"),
    ] {
        let a = c
            .send(method, path, b"{}", method == "POST", &[], 1 << 20)
            .unwrap();
        assert_eq!(a.status, 403, "{path}");
        assert!(
            String::from_utf8_lossy(&a.body).contains("this key is node n1's, not n2's"),
            "{path}"
        );
    }
    // n1's own poll is fine; a blob no manifest of its environment lists is not served.
    assert_eq!(
        c.send("GET", "/v1/nodes/n1/poll", b"", false, &[], 1 << 20)
            .unwrap()
            .status,
        200
    );
    let a = c
        .send(
            "GET",
            &format!("/v1/nodes/n1/blobs/{}", "ab".repeat(32)),
            b"",
            false,
            &[],
            1 << 20,
        )
        .unwrap();
    assert_eq!(a.status, 404);

    // Revoked: every route refuses it; the node keeps enforcing what it verified.
    assert_eq!(s.site_cmd(&["nodes", "revoke", "n2"]).0, 0);
    let a = s
        .client_of(&n2)
        .send("GET", "/v1/nodes/n2/poll", b"", false, &[], 1 << 20)
        .unwrap();
    assert_eq!(a.status, 403);
    std::fs::write(n2.join("etc/motd"), "drifted\n").unwrap();
    let (code, _, err) = s.agent(&n2);
    assert_eq!(code, 4, "{err}");
    assert!(
        err.contains("stale since") && err.contains("node n2 is revoked"),
        "{err}"
    );
    // A revoked node may not enroll again with the same key either.
    let (code, _, err) = s.enroll(&n2, "n2", Some(&s.token(&[])));
    assert_eq!(code, 1);
    assert!(err.contains("revoked"), "{err}");
    // An unknown key gets nothing.
    let stranger = Client::new(&s.url, KeyPair::generate(Role::Node).unwrap(), None).unwrap();
    let a = stranger
        .send("GET", "/v1/nodes/n1/poll", b"", false, &[], 1 << 20)
        .unwrap();
    assert_eq!(a.status, 401);
}

#[test]
fn replayed_aged_garbage_and_oversized_requests_are_refused_and_the_server_stays_up() {
    let s = served(&[]);
    s.publish();
    let n1 = s.node_root("n1");
    assert_eq!(s.enroll(&n1, "n1", Some(&s.token(&[]))).0, 0);
    let c = s.client_of(&n1);
    let now = strata_snapshot::now();
    let poll = "/v1/nodes/n1/poll";
    let ok = |c: &Client| {
        c.send("GET", poll, b"", false, &[], 1 << 20)
            .unwrap()
            .status
    };

    // Signed 301 s ago (or ahead): refused.
    for created in [now - 301, now + 301] {
        let a = c
            .send_as_of("GET", poll, b"", (created, None), &[])
            .unwrap();
        assert_eq!(a.status, 401);
        assert!(String::from_utf8_lossy(&a.body).contains("301 s"), "{a:?}");
    }
    assert_eq!(
        c.send_as_of("GET", poll, b"", (now - 250, None), &[])
            .unwrap()
            .status,
        200
    );

    // A write replayed with its nonce: refused the second time.
    let report = serde_json::json!({
        "time": now, "environment": "test", "version": 1, "revision": "r",
        "generation": null, "result": "failed", "changes": 0, "paths": [], "error": "x"
    })
    .to_string();
    let path = "/v1/nodes/n1/reports";
    let nonce = Some("0".repeat(32));
    let first = c.send_as_of("POST", path, report.as_bytes(), (now, nonce.clone()), &[]);
    assert_eq!(first.unwrap().status, 201);
    let again = c
        .send_as_of("POST", path, report.as_bytes(), (now, nonce), &[])
        .unwrap();
    assert_eq!(again.status, 401);
    assert!(String::from_utf8_lossy(&again.body).contains("replayed"));
    // Without a nonce, a write is refused.
    let bare = c
        .send_as_of("POST", path, report.as_bytes(), (now, None), &[])
        .unwrap();
    assert_eq!(bare.status, 401);
    // The body is the signed one: a report swapped under the signature is refused.
    assert_eq!(
        s.site_cmd(&["runs", "--json"]).1.matches("\"id\"").count(),
        1
    );

    // Garbage on the socket: the server answers or closes, and answers the next one.
    let mut raw = TcpStream::connect(s.authority()).unwrap();
    raw.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    raw.write_all(b"\x00\xffGARBAGE / HTTP/9\r\n\r\n").unwrap();
    let mut answer = Vec::new();
    let _ = raw.read_to_end(&mut answer);
    assert!(
        answer.is_empty() || answer.starts_with(b"HTTP/1.1 400"),
        "{answer:?}"
    );
    assert_eq!(ok(&c), 200);
    // Unsigned, unknown routes, other methods, query strings.
    let plain = |req: &str| {
        let mut raw = TcpStream::connect(s.authority()).unwrap();
        raw.write_all(req.as_bytes()).unwrap();
        let mut answer = String::new();
        let _ = raw.read_to_string(&mut answer);
        answer
    };
    let host = s.authority();
    assert!(
        plain(&format!(
            "GET /v1/nodes/n1/poll HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
        ))
        .starts_with("HTTP/1.1 401")
    );
    assert!(
        plain(&format!(
            "GET /etc/passwd HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
        ))
        .starts_with("HTTP/1.1 404")
    );
    assert!(
        plain(&format!(
            "DELETE /v1/nodes/n1/poll HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n"
        ))
        .starts_with("HTTP/1.1 405")
    );
    let q = c
        .send(
            "GET",
            "/v1/nodes/n1/poll?token=s3cret",
            b"",
            false,
            &[],
            1 << 20,
        )
        .unwrap();
    assert_eq!(q.status, 400);
    // The request log: one line per request, never a query string.
    let log = std::fs::read_to_string(s.env.path().join("serve.log")).unwrap();
    assert!(log.contains(" GET /v1/nodes/n1/poll 400 "), "{log}");
    assert!(log.contains(" GET /etc/passwd 404 "), "{log}");
    assert!(!log.contains("s3cret"), "{log}");

    // Oversized: 413 before the body is read; the server goes on.
    let big = vec![b'x'; 2 << 20];
    // The server answers 413 and closes while the client still sends: either is fine.
    match c.send("POST", path, &big, true, &[], 1 << 20) {
        Ok(a) => assert_eq!(a.status, 413),
        Err(e) => assert!(
            e.to_string().contains("Broken pipe") || e.to_string().contains("reset"),
            "{e}"
        ),
    }
    let lie = plain(&format!(
        "POST /v1/enroll HTTP/1.1\r\nhost: {host}\r\ncontent-length: 1000000000\r\nconnection: close\r\n\r\n"
    ));
    assert!(lie.starts_with("HTTP/1.1 413"), "{lie}");
    assert_eq!(ok(&c), 200);

    // Publishing needs a signing key of the site: a node's key is refused.
    let a = c
        .send(
            "PUT",
            "/v1/publish/env/test/timestamp.json",
            b"{}",
            true,
            &[],
            1 << 20,
        )
        .unwrap();
    assert_eq!(a.status, 401);
    assert!(String::from_utf8_lossy(&a.body).contains("not a signing key"));
}

#[test]
fn a_blob_swapped_on_the_server_is_refused_and_the_node_keeps_what_it_verified() {
    let s = served(&[]);
    s.publish();
    let n1 = s.node_root("n1");
    assert_eq!(s.enroll(&n1, "n1", Some(&s.token(&[]))).0, 0);
    assert_eq!(s.agent(&n1).0, 0);
    let before = strata_test::tree(&n1, &["var"]);

    s.env.write("modules/m/templates/etc/motd.j2", "v2\n");
    s.publish();
    let hash = blake3::hash(b"v2\n").to_hex().to_string();
    let blob = s
        .env
        .site()
        .join(".strata/serve/blobs")
        .join(&hash[..2])
        .join(&hash);
    std::fs::write(&blob, b"v3\n").unwrap();
    let (code, out, err) = s.agent(&n1);
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("does not match its hash"), "{err}");
    assert_eq!(strata_test::tree(&n1, &["var"]), before, "nothing changed");
    assert_eq!(motd(&n1).unwrap(), "n1 in test: v1\n");
}

#[test]
fn serve_refuses_to_run_beside_a_root_or_signing_key_and_plain_http_off_loopback() {
    let s = served(&[]);
    // The online key placed with the root and signing keys.
    let beside = s.keys.join("online.key");
    std::fs::copy(&s.online, &beside).unwrap();
    let (code, _, err) = output(
        s.env
            .cmd(&["serve", "--listen", "127.0.0.1:0", "--site"])
            .arg(s.env.site())
            .arg("--key")
            .arg(&beside),
    );
    assert_eq!(code, 1);
    assert!(err.contains("key this process can read"), "{err}");
    let (code, _, err) = output(
        s.env
            .cmd(&["serve", "--listen", "0.0.0.0:0", "--site"])
            .arg(s.env.site())
            .arg("--key")
            .arg(&s.online),
    );
    assert_eq!(code, 1);
    assert!(err.contains("not a loopback address"), "{err}");
    // A signing key is not an online key.
    let (code, _, err) = output(
        s.env
            .cmd(&["serve", "--listen", "127.0.0.1:0", "--site"])
            .arg(s.env.site())
            .arg("--key")
            .arg(s.keys.join("signing.key")),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("not a online key") || err.contains("online key"),
        "{err}"
    );
}

#[test]
fn an_overloaded_server_answers_429_with_retry_after() {
    let s = served(&["--max-requests", "1"]);
    let host = s.authority();
    // One request whose body never comes holds the only slot.
    let mut slow = TcpStream::connect(&host).unwrap();
    slow.write_all(
        format!("POST /v1/enroll HTTP/1.1\r\nhost: {host}\r\ncontent-length: 100\r\n\r\n{{")
            .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(300));
    let mut raw = TcpStream::connect(&host).unwrap();
    raw.write_all(
        format!("GET /v1/nodes/n1/poll HTTP/1.1\r\nhost: {host}\r\nconnection: close\r\n\r\n")
            .as_bytes(),
    )
    .unwrap();
    let mut answer = String::new();
    let _ = raw.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 429"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("retry-after: 5"),
        "{answer}"
    );
    drop(slow);
}

/// A test CA and a certificate for 127.0.0.1 it signed, made with `openssl`.
pub(crate) fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("openssl (Debian: apt-get install openssl) makes the test certificates");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=strata test CA",
        ],
    ]
    .concat());
    run(&[
        &["req"][..],
        &ec,
        &[
            "-keyout",
            "key.pem",
            "-out",
            "req.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    ]
    .concat());
    std::fs::write(
        dir.join("ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "req.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "cert.pem",
        "-days",
        "2",
        "-extfile",
        "ext",
    ]);
    (
        dir.join("ca.pem"),
        dir.join("cert.pem"),
        dir.join("key.pem"),
    )
}

#[test]
fn over_tls_a_node_enrolls_and_applies_checking_the_servers_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificates(dir.path());
    let s = served(&[
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ]);
    assert!(s.url.starts_with("https://127.0.0.1:"), "{}", s.url);
    let (code, out, err) = output(
        s.env
            .cmd(&["publish", "--to", &s.url, "--ca"])
            .arg(&ca)
            .arg("--site")
            .arg(s.env.site())
            .arg("--keys")
            .arg(&s.keys),
    );
    assert_eq!(code, 0, "{out}{err}");
    let n1 = s.node_root("n1");
    let token = s.token(&[]);
    // Without the CA, the server's certificate is not trusted: nothing is sent.
    let (code, _, err) = s.enroll(&n1, "n1", Some(&token));
    assert_eq!(code, 1);
    assert!(err.to_lowercase().contains("certificate"), "{err}");
    let ca_arg = ca.to_str().unwrap();
    let (code, out, err) = s.enroll_with(&n1, "n1", Some(&token), &["--ca", ca_arg]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = s.agent(&n1);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(motd(&n1).unwrap(), "n1 in test: v1\n");
    // Plain HTTP to the TLS port gets nothing.
    let plain = s.url.replace("https://", "http://");
    let (code, _, _) = output(
        s.env
            .cmd(&["enroll", "--server", &plain, "--node", "n2", "--token-file"])
            .arg(s.token(&[]))
            .arg("--root")
            .arg(s.node_root("n2")),
    );
    assert_eq!(code, 1);
}

/// A fresh database on the test PostgreSQL server (`STRATA_TEST_PG`).
pub(crate) fn pg_database() -> String {
    let url = std::env::var("STRATA_TEST_PG")
        .expect("STRATA_TEST_PG: needs PostgreSQL (scripts/test starts one and sets it)");
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "strata_serve{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    format!("{}/{name}", url.rsplit_once('/').unwrap().0)
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs PostgreSQL on loopback: scripts/test starts one (feature host-tests)"
)]
fn the_inventory_on_postgresql_enrolls_serves_and_keeps_reports() {
    let db = pg_database();
    let s = served(&["--db", &db]);
    s.publish();
    let n1 = s.node_root("n1");
    let token = s.token(&["--db", &db]);
    assert_eq!(s.enroll(&n1, "n1", Some(&token)).0, 0);
    let (code, _, err) = s.enroll(&s.node_root("n2"), "n2", Some(&token));
    assert_eq!(code, 1);
    assert!(err.contains("already used"), "{err}");
    let (code, out, err) = s.agent(&n1);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(motd(&n1).unwrap(), "n1 in test: v1\n");
    let (_, out, _) = s.site_cmd(&["runs", "n1", "--db", &db]);
    assert!(out.contains("n1 changed test version"), "{out}");
    let (_, out, _) = s.site_cmd(&["nodes", "--db", &db]);
    assert!(out.contains("accepted"), "{out}");
    // Nothing went to the SQLite file.
    assert!(!s.env.site().join(".strata/state.db").exists());
}

#[test]
fn nodes_only_profiles_describe_are_classified_at_acceptance_and_get_signed_assignments() {
    let s = served_with(
        |env| {
            env.write(
                "hardware/profiles.toml",
                "[[profile]]\nname = \"any\"\nrole = \"r@1.0.0\"\npools = [\"ips\"]\n\
                 spec = [[\"system\", \"hostname\", \"name\", \"$$host\"]]\n",
            );
            env.write(
                "hardware/pools/ips.toml",
                "generate = [{ ip = \"10.0.0.1-2\" }]\n",
            );
            env.write("roles/r/1.0.0.toml", "modules = [\"m\"]\n");
            env.write(
                "modules/m/templates/etc/ip.j2",
                "{{ node.name }} ip {{ hw.ips.ip }}\n",
            );
        },
        &[],
    );
    s.publish();
    let host = |name: &str| {
        let root = s.node_root(name);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), format!("{name}\n")).unwrap();
        root
    };
    let (h1, h2, h3) = (host("h1"), host("h2"), host("h3"));
    assert_eq!(s.enroll(&h1, "h1", Some(&s.token(&[]))).0, 0);
    let (code, out, err) = s.agent(&h1);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(h1.join("etc/ip")).unwrap(),
        "h1 ip 10.0.0.1\n"
    );
    // Without a token, classified when accepted.
    let (_, fingerprint, _) = s.site_cmd(&["keys", "fingerprint"]);
    let root_key = ["--root-key", fingerprint.trim()];
    assert_eq!(s.enroll_with(&h2, "h2", None, &root_key).0, 2);
    let (code, out, err) = s.site_cmd(&["nodes", "accept", "h2"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("h2: accepted, hardware profile any"), "{out}");
    assert_eq!(s.agent(&h2).0, 0);
    assert_eq!(
        std::fs::read_to_string(h2.join("etc/ip")).unwrap(),
        "h2 ip 10.0.0.2\n"
    );
    // The pool is exhausted: refused, nothing allocated, the token not consumed.
    let token = s.token(&[]);
    let (code, _, err) = s.enroll(&h3, "h3", Some(&token));
    assert_eq!(code, 1);
    assert!(err.contains("exhausted"), "{err}");
    let (_, out, _) = s.site_cmd(&["pools", "list"]);
    assert!(!out.contains("h3"), "{out}");
    // h1's assignment is h1's: its own key's, checked on the node. The next poll is
    // still one unchanged request.
    let (code, _, err) = s.agent(&h1);
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("(not modified)"), "{err}");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn the_same_site_pushed_and_pulled_writes_the_same_bytes() {
    let hosts = strata_test::TestHosts::start(&["h1.test"]);
    let s = served_with(
        |env| {
            env.write(
                "nodes/h1.test.toml",
                &format!("modules = [\"app\"]\n{}", hosts.node_ssh(0)),
            );
            env.write(
                "modules/app/templates/etc/app/app.conf.j2",
                "# {{ node.name }} in {{ node.environment }}\nlisten = {{ port | default(8080) }}\n",
            );
            env.write_exec("modules/app/files/etc/app/run.sh", "#!/bin/sh\nexec true\n");
            env.write(
                "modules/app/files/etc/app/data.bin",
                "\u{0}\u{1}\u{2}binary\n",
            );
        },
        &[],
    );
    let (code, out, err) = output(
        s.env
            .cmd(&["push", "h1.test"])
            .arg("--keys")
            .arg(&s.keys)
            .arg("--ssh-config")
            .arg(hosts.ssh_config())
            .env("XDG_CACHE_HOME", "/var/cache/strata-test/operator"),
    );
    assert_eq!(code, 0, "{out}{err}");
    s.publish();
    let pulled = s.node_root("pulled");
    assert_eq!(s.enroll(&pulled, "h1.test", Some(&s.token(&[]))).0, 0);
    let (code, out, err) = s.agent(&pulled);
    assert_eq!(code, 0, "{out}{err}");
    let pushed = hosts.host("h1.test").root();
    assert_eq!(
        strata_test::tree(&pushed.join("etc/app"), &[]),
        strata_test::tree(&pulled.join("etc/app"), &[]),
        "type, mode, owner, size and content hash of every file"
    );
    for f in ["app.conf", "run.sh", "data.bin"] {
        assert_eq!(
            std::fs::read(pushed.join("etc/app").join(f)).unwrap(),
            std::fs::read(pulled.join("etc/app").join(f)).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn a_publish_cut_before_its_release_leaves_nodes_on_the_previous_one() {
    use strata_bucket::Storage;
    let s = served(&[]);
    s.publish();
    let n1 = s.node_root("n1");
    assert_eq!(s.enroll(&n1, "n1", Some(&s.token(&[]))).0, 0);
    assert_eq!(s.agent(&n1).0, 0);

    // v2's blob and manifest reach the server, its release never does.
    s.env.write("modules/m/templates/etc/motd.j2", "v2\n");
    let signing = KeyPair::load(&s.keys.join("signing.key"), Role::Signing).unwrap();
    let remote = strata_server::client::Remote(Client::new(&s.url, signing.clone(), None).unwrap());
    let files = strata_snapshot::SiteFiles::read(&s.env.site()).unwrap();
    for (hash, path) in &files.paths {
        let key = strata_bucket::blob_key(hash);
        remote.put_new(&key, &std::fs::read(path).unwrap()).unwrap();
    }
    let now = strata_snapshot::now();
    let m = files.manifest("s", "test", now + 100, now, 3600, &signing);
    assert!(
        remote
            .put_new(&format!("env/test/{}.json", now + 100), &m)
            .unwrap()
    );
    let (code, out, err) = s.agent(&n1);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("(not modified)"), "{err}");
    assert_eq!(motd(&n1).unwrap(), "n1 in test: v1\n");
    // A node cannot fetch the unreleased manifest either.
    let c = s.client_of(&n1);
    let a = c
        .send(
            "GET",
            &format!("/v1/nodes/n1/manifests/{}", now + 100),
            b"",
            false,
            &[],
            1 << 20,
        )
        .unwrap();
    assert_eq!(a.status, 404);
    // The next publish releases a newer version, and the node takes it.
    s.publish();
    assert_eq!(s.agent(&n1).0, 0);
    assert_eq!(motd(&n1).unwrap(), "v2\n");
}

#[test]
fn a_new_online_key_is_certified_by_the_next_root_and_nodes_follow_it() {
    let mut s = served(&[]);
    s.publish();
    let n1 = s.node_root("n1");
    assert_eq!(s.enroll(&n1, "n1", Some(&s.token(&[]))).0, 0);
    assert_eq!(s.agent(&n1).0, 0);

    // A new online key: root/2.json, signed by the root key, certifies it instead.
    let new_key = s.env.path().join("server2/online.key");
    let (code, out, err) = output(
        s.env
            .cmd(&["keys", "online", "--site"])
            .arg(s.env.site())
            .arg("--keys")
            .arg(&s.keys)
            .arg("--out")
            .arg(&new_key),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("root version 2"), "{out}");
    assert!(s.env.site().join(".strata/keys/root/2.json").exists());
    let _ = s.server.kill();
    let _ = s.server.wait();
    // The old key is no longer the site's.
    let (code, _, err) = output(
        s.env
            .cmd(&["serve", "--listen", "127.0.0.1:0", "--site"])
            .arg(s.env.site())
            .arg("--key")
            .arg(&s.online),
    );
    assert_eq!(code, 1);
    assert!(
        err.contains("is not an online key of the site's root"),
        "{err}"
    );
    let (server, url) = start(&s.env, &new_key, &[]);
    s.server = server;
    s.url = url;
    // The node, which pinned root 1, follows the rotation and takes the timestamps
    // the new key signs.
    s.env
        .write("modules/m/templates/etc/motd.j2", "after rotation\n");
    s.publish();
    let (code, out, err) = s.agent(&n1);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(motd(&n1).unwrap(), "after rotation\n");
    let pinned = std::fs::read(n1.join("var/lib/strata/trust/root.json")).unwrap();
    assert_eq!(
        pinned,
        std::fs::read(s.env.site().join(".strata/keys/root/2.json")).unwrap()
    );
}
