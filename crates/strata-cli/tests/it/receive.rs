//! The node's side of a push (`strata receive`), attacked with what a network or a stolen
//! key could send: every refusal names what was refused, and leaves the node as it was.

use std::io::Write;
use std::process::{Command, Stdio};

use strata_snapshot::{Entry, KeyPair, Manifest, Role, Root};
use strata_test::TestEnv;
use strata_types::Hash;

use crate::env;

struct Operator {
    root_key: KeyPair,
    signing: KeyPair,
    roots: Vec<Vec<u8>>,
}

fn operator() -> Operator {
    let root_key = KeyPair::generate(Role::Root).unwrap();
    let signing = KeyPair::generate(Role::Signing).unwrap();
    let roots = vec![Root::new("s", 1, &[&root_key, &signing]).seal(&[&root_key])];
    Operator {
        root_key,
        signing,
        roots,
    }
}

/// The site as files: (path, content, executable).
fn site_files(motd: &str) -> Vec<(String, Vec<u8>, bool)> {
    let mut files = vec![
        (
            "strata.toml".into(),
            b"[site]\nname = \"s\"\n".to_vec(),
            false,
        ),
        (
            "nodes/n1.toml".into(),
            b"modules = [\"m\"]\n".to_vec(),
            false,
        ),
        (
            "modules/m/files/etc/motd".into(),
            motd.as_bytes().to_vec(),
            false,
        ),
    ];
    files.sort();
    files
}

fn manifest(op: &Operator, version: u64, files: &[(String, Vec<u8>, bool)]) -> Manifest {
    let now = strata_snapshot::now();
    Manifest {
        kind: "manifest".into(),
        format: strata_snapshot::manifest_format(),
        site: "s".into(),
        environment: "production".into(),
        version,
        revision: format!("rev{version}"),
        created: now,
        expires: now + 3600,
        key: op.signing.id(),
        files: files
            .iter()
            .map(|(p, c, x)| Entry {
                path: p.clone(),
                exec: *x,
                size: c.len() as u64,
                blake3: Hash::of(c),
            })
            .collect(),
    }
}

fn frame(out: &mut Vec<u8>, tag: &str, arg: &str, body: &[u8]) {
    if arg.is_empty() {
        writeln!(out, "{tag} {}", body.len()).unwrap();
    } else {
        writeln!(out, "{tag} {} {arg}", body.len()).unwrap();
    }
    out.extend_from_slice(body);
}

/// The whole operator's side of a session: roots, manifest, then the blobs the node
/// lacks (as it would ask), in one go.
fn stream(
    env: &TestEnv,
    roots: &[Vec<u8>],
    manifest: &[u8],
    blobs: &[(String, Vec<u8>)],
) -> Vec<u8> {
    let store = env.root().join("var/lib/strata/snapshot/blobs");
    let lacking: Vec<(String, Vec<u8>)> = blobs
        .iter()
        .filter(|(h, _)| !store.join(&h[..2]).join(h).exists())
        .cloned()
        .collect();
    stream_all(roots, manifest, &lacking)
}

/// A session that sends exactly `blobs`.
fn stream_all(roots: &[Vec<u8>], manifest: &[u8], blobs: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in roots {
        frame(&mut out, "root", "", r);
    }
    frame(&mut out, "manifest", "", manifest);
    frame(&mut out, "end", "", b"");
    for (h, b) in blobs {
        frame(&mut out, "blob", h, b);
    }
    frame(&mut out, "end", "", b"");
    out
}

fn blobs(files: &[(String, Vec<u8>, bool)]) -> Vec<(String, Vec<u8>)> {
    files
        .iter()
        .map(|(_, c, _)| (Hash::of(c).to_string(), c.clone()))
        .collect()
}

/// Runs `strata receive` on the env's root: its last event and exit code.
fn receive(env: &TestEnv, input: &[u8], noop: bool) -> (serde_json::Value, i32) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
    cmd.args(["receive", "--node", "n1", "--root"])
        .arg(env.root());
    if noop {
        cmd.arg("--noop");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = stdin.write_all(&input);
    });
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text
        .lines()
        .last()
        .unwrap_or_else(|| panic!("no event; stderr: {}", String::from_utf8_lossy(&out.stderr)));
    (
        serde_json::from_str(last).unwrap(),
        out.status.code().unwrap_or(-1),
    )
}

fn refused(env: &TestEnv, input: &[u8], want: &str) {
    let before = env.tree();
    let (event, code) = receive(env, input, false);
    assert_eq!(code, 1, "{event}");
    assert_eq!(event["result"], "failed", "{event}");
    let message = event["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains(want), "wanted {want:?} in {message:?}");
    assert_eq!(env.tree(), before, "a refused push changed the node");
    let tmp = env.root().join("var/lib/strata/tmp");
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "left behind: {left:?}");
}

#[test]
fn a_verified_push_applies_and_every_forgery_is_refused() {
    let env = env();
    let op = operator();
    let files = site_files("v5\n");
    let m5 = manifest(&op, 5, &files).seal(&op.signing);
    let (event, code) = receive(&env, &stream(&env, &op.roots, &m5, &blobs(&files)), false);
    assert_eq!(
        (event["result"].as_str(), code),
        (Some("changed"), 0),
        "{event}"
    );
    assert_eq!(
        std::fs::read_to_string(env.root().join("etc/motd")).unwrap(),
        "v5\n"
    );

    // A replayed older manifest, correctly signed.
    let old = site_files("v4\n");
    let m4 = manifest(&op, 4, &old).seal(&op.signing);
    refused(
        &env,
        &stream(&env, &op.roots, &m4, &blobs(&old)),
        "below this node's floor 5",
    );

    // Version 6 whose blob was swapped in transit (same size, other bytes).
    let new = site_files("v6\n");
    let m6 = manifest(&op, 6, &new).seal(&op.signing);
    let mut tampered = blobs(&new);
    for (h, b) in &mut tampered {
        if *h == Hash::of(b"v6\n").to_string() {
            *b = b"v7\n".to_vec();
        }
    }
    refused(
        &env,
        &stream(&env, &op.roots, &m6, &tampered),
        "does not match its hash",
    );

    // Signed by a key the root does not certify.
    let stranger = KeyPair::generate(Role::Signing).unwrap();
    let mut forged = manifest(&op, 6, &new);
    forged.key = stranger.id();
    refused(
        &env,
        &stream(&env, &op.roots, &forged.seal(&stranger), &blobs(&new)),
        "not signed by a trusted signing key",
    );

    // Another root altogether (a second operator's, or an attacker's).
    let other = operator();
    let m6_other = manifest(&other, 6, &new).seal(&other.signing);
    refused(
        &env,
        &stream(&env, &other.roots, &m6_other, &blobs(&new)),
        "trusts another root",
    );

    // The payload edited after signing.
    let text = String::from_utf8(m6.clone()).unwrap();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap();
    let payload = v["payload"].as_str().unwrap();
    use base64::Engine;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(payload)
        .unwrap();
    let edited = String::from_utf8(decoded)
        .unwrap()
        .replace("\"version\":6", "\"version\":60");
    let mut v2 = v.clone();
    v2["payload"] = base64::engine::general_purpose::STANDARD
        .encode(edited)
        .into();
    refused(
        &env,
        &stream(&env, &op.roots, v2.to_string().as_bytes(), &blobs(&new)),
        "not signed by a trusted signing key",
    );

    // Expired, and a path that climbs out of the site, each correctly signed.
    let mut expired = manifest(&op, 7, &new);
    expired.expires = expired.created.saturating_sub(7200);
    refused(
        &env,
        &stream(&env, &op.roots, &expired.seal(&op.signing), &blobs(&new)),
        "expired",
    );
    let mut climbing = new.clone();
    climbing.push(("../../etc/shadow".into(), b"x".to_vec(), false));
    climbing.sort();
    refused(
        &env,
        &stream(
            &env,
            &op.roots,
            &manifest(&op, 8, &climbing).seal(&op.signing),
            &blobs(&climbing),
        ),
        "`..` component",
    );

    // A blob nobody asked for.
    let mut extra = blobs(&new);
    extra.push((Hash::of(b"surprise").to_string(), b"surprise".to_vec()));
    refused(
        &env,
        &stream_all(&op.roots, &m6, &extra),
        "was not asked for",
    );

    // A rotation signed by the new root key only.
    let root2 = KeyPair::generate(Role::Root).unwrap();
    let mut r2 = Root::new("s", 2, &[&root2, &op.signing]);
    r2.version = 2;
    let chain = vec![op.roots[0].clone(), r2.seal(&[&root2])];
    refused(
        &env,
        &stream(&env, &chain, &m6, &blobs(&new)),
        "not signed by a trusted root key",
    );
    // ... and by both: accepted, with version 6.
    let chain = vec![op.roots[0].clone(), r2.seal(&[&op.root_key, &root2])];
    let (event, code) = receive(&env, &stream(&env, &chain, &m6, &blobs(&new)), false);
    assert_eq!(
        (event["result"].as_str(), code),
        (Some("changed"), 0),
        "{event}"
    );
    assert_eq!(
        std::fs::read_to_string(env.root().join("etc/motd")).unwrap(),
        "v6\n"
    );
}

#[test]
fn a_noop_push_raises_no_floor_and_garbage_is_refused() {
    let env = env();
    let op = operator();
    let files = site_files("v9\n");
    let m9 = manifest(&op, 9, &files).seal(&op.signing);
    let (event, code) = receive(&env, &stream(&env, &op.roots, &m9, &blobs(&files)), true);
    assert_eq!(
        (event["result"].as_str(), code),
        (Some("would_change"), 2),
        "{event}"
    );
    assert!(!env.root().join("etc/motd").exists());
    // The noop trusted nothing: an older version still applies.
    let m8 = manifest(&op, 8, &files).seal(&op.signing);
    let (event, _) = receive(&env, &stream(&env, &op.roots, &m8, &blobs(&files)), false);
    assert_eq!(event["result"], "changed", "{event}");

    refused(&env, b"GET / HTTP/1.1\r\n\r\n", "push");
    refused(
        &env,
        format!("manifest {}\n", 100u64 << 20).as_bytes(),
        "over the limit",
    );
    refused(&env, b"", "ended early");
}

/// A site whose only node is described by a hardware profile that any machine matches
/// (its hostname captured as its identity), with one pool of addresses.
fn hardware_site() -> Vec<(String, Vec<u8>, bool)> {
    let text = |p: &str, c: &str| (p.to_string(), c.as_bytes().to_vec(), false);
    let mut files = vec![
        text("strata.toml", "[site]\nname = \"s\"\n"),
        text(
            "hardware/profiles.toml",
            "[[profile]]\nname = \"elsewhere\"\nrole = \"r@1.0.0\"\n\
             spec = [[\"system\", \"hostname\", \"name\", \"no-such-host.invalid\"]]\n\n\
             [[profile]]\nname = \"any\"\nrole = \"r@1.0.0\"\npools = [\"ips\"]\n\
             spec = [[\"system\", \"hostname\", \"name\", \"$$host\"]]\n",
        ),
        text(
            "hardware/pools/ips.toml",
            "generate = [{ ip = \"10.0.0.1-3\" }]\n",
        ),
        text("roles/r/1.0.0.toml", "modules = [\"m\"]\n"),
        text("modules/m/templates/etc/ip.j2", "ip {{ hw.ips.ip }}\n"),
    ];
    files.sort();
    files
}

fn assignment(version: u64, profile: &str, ip: &str) -> strata_snapshot::Assignment {
    let now = strata_snapshot::now();
    strata_snapshot::Assignment {
        kind: "assignment".into(),
        site: "s".into(),
        node: "n1".into(),
        node_key: None,
        environment: "production".into(),
        version,
        created: now,
        expires: now + 3600,
        min_snapshot_version: 1,
        classification: strata_snapshot::Classified {
            machine: "host=n1".into(),
            profile: profile.into(),
            role: Some("r@1.0.0".into()),
            vars: [("host".to_string(), "n1".to_string())].into(),
            pools: [(
                "ips".to_string(),
                [("ip".to_string(), ip.to_string())].into(),
            )]
            .into(),
        },
    }
}

/// A session with an assignment after the manifest, and every blob the node lacks.
fn stream_assigned(env: &TestEnv, op: &Operator, manifest: &[u8], assignment: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in &op.roots {
        frame(&mut out, "root", "", r);
    }
    frame(&mut out, "manifest", "", manifest);
    frame(&mut out, "assignment", "", assignment);
    frame(&mut out, "end", "", b"");
    let store = env.root().join("var/lib/strata/snapshot/blobs");
    for (h, b) in blobs(&hardware_site()) {
        if !store.join(&h[..2]).join(&h).exists() {
            frame(&mut out, "blob", &h, &b);
        }
    }
    frame(&mut out, "end", "", b"");
    out
}

#[test]
fn an_assignment_is_checked_before_its_classification_is_used() {
    let env = env();
    let op = operator();
    let files = hardware_site();
    let m = manifest(&op, 5, &files).seal(&op.signing);

    // Without an assignment, a node only a profile describes is refused; nothing applied.
    let (event, code) = receive(&env, &stream(&env, &op.roots, &m, &blobs(&files)), false);
    assert_eq!(
        (event["result"].as_str(), code),
        (Some("failed"), 1),
        "{event}"
    );
    let why = event["error"]["message"].as_str().unwrap();
    assert!(why.contains("no signed assignment"), "{why}");
    assert!(!env.root().join("etc/ip").exists());

    // The operator's classification, signed: its pool entry is what the node renders.
    let a = assignment(10, "any", "10.0.0.2").seal(&op.signing);
    let (event, code) = receive(&env, &stream_assigned(&env, &op, &m, &a), false);
    assert_eq!(
        (event["result"].as_str(), code),
        (Some("changed"), 0),
        "{event}"
    );
    assert_eq!(
        std::fs::read_to_string(env.root().join("etc/ip")).unwrap(),
        "ip 10.0.0.2\n"
    );

    // Refused before anything is used: another node's, an unknown key's, an older one,
    // the same version with other content, one that needs a newer manifest.
    let mut other = assignment(11, "any", "10.0.0.3");
    other.node = "n2".into();
    refused(
        &env,
        &stream_assigned(&env, &op, &m, &other.seal(&op.signing)),
        "it is for node \"n2\", not \"n1\"",
    );
    let stranger = KeyPair::generate(Role::Signing).unwrap();
    refused(
        &env,
        &stream_assigned(
            &env,
            &op,
            &m,
            &assignment(11, "any", "10.0.0.3").seal(&stranger),
        ),
        "the assignment is not signed by a trusted signing or online key",
    );
    refused(
        &env,
        &stream_assigned(
            &env,
            &op,
            &m,
            &assignment(9, "any", "10.0.0.3").seal(&op.signing),
        ),
        "version 9, below this node's floor 10",
    );
    refused(
        &env,
        &stream_assigned(
            &env,
            &op,
            &m,
            &assignment(10, "any", "10.0.0.3").seal(&op.signing),
        ),
        "already trusts with other content",
    );
    let mut newer = assignment(11, "any", "10.0.0.3");
    newer.min_snapshot_version = 6;
    refused(
        &env,
        &stream_assigned(&env, &op, &m, &newer.seal(&op.signing)),
        "needs a manifest of version 6 or later",
    );

    // Genuine, but not true of this node and site: an address outside the site's pool,
    // and a profile whose spec the node's own facts do not match. The node keeps what it
    // had.
    for (version, profile, ip, want) in [
        (
            12,
            "any",
            "10.9.9.9",
            "the entry of pool \"ips\" is not in the site's pool",
        ),
        (
            13,
            "elsewhere",
            "10.0.0.3",
            "facts do not match profile \"elsewhere\"",
        ),
    ] {
        let a = assignment(version, profile, ip).seal(&op.signing);
        let (event, code) = receive(&env, &stream_assigned(&env, &op, &m, &a), false);
        assert_eq!(
            (event["result"].as_str(), code),
            (Some("failed"), 1),
            "{event}"
        );
        let why = event["error"]["message"].as_str().unwrap();
        assert!(why.contains(want), "wanted {want:?} in {why:?}");
        assert_eq!(
            std::fs::read_to_string(env.root().join("etc/ip")).unwrap(),
            "ip 10.0.0.2\n"
        );
    }
}
