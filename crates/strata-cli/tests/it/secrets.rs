//! Secrets (issue 21): `strata keys node`, `strata secret set/list/show/rekey`,
//! `secret("NAME")` in templates, decrypted on the node with its own key, and what a
//! template that read one renders shown nowhere: a canary value is looked for in every
//! output and in the whole target root but the file it was rendered into.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use base64::Engine;
use strata_test::{Run, TestEnv};

use crate::env;

const CANARY: &str = "CANARY-7f3a9c-s3cr3t";
const CANARY2: &str = "CANARY-second-b81e";

/// `strata keys node --root DIR`: the public key it prints.
fn node_key(e: &TestEnv, root: &Path) -> String {
    let run = e
        .run(&["keys", "node", "--root", root.to_str().unwrap()])
        .code(0);
    let key = run.stdout.trim().to_string();
    assert!(key.starts_with("age1"), "{}", run.stdout);
    key
}

/// The admin's identity file (made by `keys node` in a root of its own).
fn admin_identity(e: &TestEnv) -> PathBuf {
    e.path().join("admin/var/lib/strata/keys/age.key")
}

/// A site with an admin, a recipient node `db1` (whose key is in the test's root) and
/// a node `web1` that is not one, both using the module `app`.
fn site(e: &TestEnv) {
    let admin = node_key(e, &e.path().join("admin"));
    let db1 = node_key(e, &e.root());
    let other = e.path().join("web1-root");
    let web1 = node_key(e, &other);
    e.write(
        "strata.toml",
        &format!("[site]\nname = \"t\"\n\n[secrets]\nadmins = [\"{admin}\"]\n"),
    )
    .write(
        "nodes/db1.toml",
        &format!("modules = [\"app\"]\n\n[keys]\nage = \"{db1}\"\n"),
    )
    .write(
        "nodes/web1.toml",
        &format!("modules = [\"app\"]\n\n[keys]\nage = \"{web1}\"\n"),
    )
    .write("groups/dbs.toml", "nodes = [\"db1\"]\n")
    .write(
        "modules/app/templates/etc/app/db.conf.j2",
        "# app database\nuser = app\n",
    )
    .write("modules/app/files/etc/app/motd", "hello\n");
}

/// `strata secret ARGS… --site SITE` with `input` on stdin.
fn secret(e: &TestEnv, args: &[&str], input: &str) -> Run {
    let mut cmd = e.cmd(&[&["secret"], args].concat());
    cmd.arg("--site").arg(e.site());
    cmd.stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("run strata");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// What a canary may look like: itself and its base64 (three alignments).
fn needles(canary: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut out = vec![canary.to_string()];
    for skip in 0..3 {
        let enc = b64.encode(&canary.as_bytes()[skip..]);
        // Only the part that does not depend on what came before it.
        out.push(enc[2..enc.len() - 4].to_string());
    }
    out
}

fn assert_clean(what: &str, text: &str) {
    for n in needles(CANARY).iter().chain(&needles(CANARY2)) {
        assert!(
            !text.contains(n.as_str()),
            "{what} shows the secret ({n}):\n{text}"
        );
    }
}

fn out(run: &Run) -> String {
    format!("{}{}", run.stdout, run.stderr)
}

#[test]
fn keys_node_makes_the_key_once_private_and_prints_only_the_public_key() {
    let e = env();
    let first = e
        .run(&["keys", "node", "--root", e.root().to_str().unwrap()])
        .code(0);
    let key = std::fs::read_to_string(e.root().join("var/lib/strata/keys/age.key")).unwrap();
    let secret_line = key
        .lines()
        .find(|l| l.starts_with("AGE-SECRET-KEY-1"))
        .unwrap();
    assert!(!out(&first).contains(secret_line));
    assert!(
        key.contains(first.stdout.trim()),
        "the file names its public key"
    );
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(e.root().join("var/lib/strata/keys/age.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let again = e
        .run(&["keys", "node", "--root", e.root().to_str().unwrap()])
        .code(0);
    assert_eq!(again.stdout, first.stdout, "made once");
}

#[test]
fn stale_recipients_fail_check_until_rekey() {
    let e = env();
    site(&e);
    secret(&e, &["set", "db_password", "--to", "group:dbs"], CANARY).code(0);
    // A second node joins the group; it has no key yet.
    e.write("nodes/db2.toml", "modules = [\"app\"]\n");
    e.write("groups/dbs.toml", "nodes = [\"db1\", \"db2\"]\n");
    let run = e.run(&["check"]).code(1);
    assert!(
        run.stderr.contains("node db2 has no age key"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("strata keys node"), "{}", run.stderr);
    let root2 = e.path().join("db2-root");
    let db2 = node_key(&e, &root2);
    e.write(
        "nodes/db2.toml",
        &format!("modules = [\"app\"]\n\n[keys]\nage = \"{db2}\"\n"),
    );
    e.write("groups/dbs.toml", "nodes = [\"db2\"]\n");
    let run = e.run(&["check"]).code(1);
    assert!(
        run.stderr
            .contains("secret `db_password` has stale recipients: +db2 \u{2212}db1"),
        "{}",
        run.stderr
    );
    // Not a terminal and no --yes: refused, nothing written.
    let toml = std::fs::read(e.site().join("secrets/db_password.toml")).unwrap();
    let identity = admin_identity(&e);
    let id = identity.to_str().unwrap();
    let run = secret(&e, &["rekey", "--identity", id], "y\n").code(1);
    assert!(run.stdout.contains("+db2"), "{}", run.stdout);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    assert_eq!(
        std::fs::read(e.site().join("secrets/db_password.toml")).unwrap(),
        toml
    );
    let run = secret(&e, &["rekey", "--yes", "--identity", id], "").code(0);
    assert!(
        run.stdout.contains("re-encrypted to 1 node"),
        "{}",
        run.stdout
    );
    assert_clean("rekey", &out(&run));
    let list = secret(&e, &["list"], "").code(0);
    assert!(!list.stdout.contains("stale"), "{}", list.stdout);
    // An admin reads it back.
    let show = secret(&e, &["show", "db_password", "--identity", id], "").code(0);
    assert_eq!(show.stdout, CANARY);
}
