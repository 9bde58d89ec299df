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

pub(crate) const CANARY: &str = "CANARY-7f3a9c-s3cr3t";
pub(crate) const CANARY2: &str = "CANARY-second-b81e";

/// `strata keys node --root DIR`: the public key it prints.
pub(crate) fn node_key(e: &TestEnv, root: &Path) -> String {
    let run = e
        .run(&["keys", "node", "--root", root.to_str().unwrap()])
        .code(0);
    let key = run.stdout.trim().to_string();
    assert!(key.starts_with("age1"), "{}", run.stdout);
    key
}

/// The admin's identity file (made by `keys node` in a root of its own).
pub(crate) fn admin_identity(e: &TestEnv) -> PathBuf {
    e.path().join("admin/var/lib/strata/keys/age.key")
}

/// A site with an admin, a recipient node `db1` (whose key is in the test's root) and
/// a node `web1` that is not one, both using the module `app`, whose template reads the
/// secret `db_password`.
pub(crate) fn site(e: &TestEnv) {
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
        "# app database\nuser = app\npassword = {{ secret(\"db_password\") }}\n",
    )
    .write("modules/app/files/etc/app/motd", "hello\n");
}

/// `strata secret ARGS… --site SITE` with `input` on stdin.
pub(crate) fn secret(e: &TestEnv, args: &[&str], input: &str) -> Run {
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

/// What a canary may look like: itself, its hex (either case) and its base64 (three
/// alignments).
pub(crate) fn needles(canary: &str) -> Vec<String> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let hex: String = canary.bytes().map(|b| format!("{b:02x}")).collect();
    let mut out = vec![canary.to_string(), hex.to_uppercase(), hex];
    for skip in 0..3 {
        let enc = b64.encode(&canary.as_bytes()[skip..]);
        // Only the part that does not depend on what came before it.
        out.push(enc[2..enc.len() - 4].to_string());
    }
    out
}

pub(crate) fn assert_clean(what: &str, text: &str) {
    for n in needles(CANARY).iter().chain(&needles(CANARY2)) {
        assert!(
            !text.contains(n.as_str()),
            "{what} shows the secret ({n}):\n{text}"
        );
    }
}

/// Every file below `dir` holding a canary, but those in `except` (root-relative).
pub(crate) fn files_with_canary(dir: &Path, except: &[&str]) -> Vec<String> {
    let needles: Vec<Vec<u8>> = needles(CANARY)
        .into_iter()
        .chain(needles(CANARY2))
        .map(String::into_bytes)
        .collect();
    let mut hits = Vec::new();
    for entry in walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
    {
        if !entry.file_type().is_file() {
            continue;
        }
        let rel = entry
            .path()
            .strip_prefix(dir)
            .unwrap()
            .display()
            .to_string();
        if except.contains(&rel.as_str()) {
            continue;
        }
        let bytes = std::fs::read(entry.path()).unwrap_or_default();
        if needles
            .iter()
            .any(|n| bytes.windows(n.len()).any(|w| w == n.as_slice()))
        {
            hits.push(rel);
        }
    }
    hits
}

/// The store's sealed objects (each an age file, checked), by name.
pub(crate) fn sealed_objects(root: &Path) -> Vec<String> {
    let dir = root.join("var/lib/strata/store/sealed");
    let Ok(list) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for entry in list.filter_map(Result::ok) {
        let bytes = std::fs::read(entry.path()).unwrap();
        assert!(
            bytes.starts_with(b"age-encryption.org/v1\n"),
            "{:?} is not an age file",
            entry.path()
        );
        out.push(entry.file_name().to_string_lossy().into_owned());
    }
    out
}

/// `strata VERB --node NODE` against another target root than the test's.
pub(crate) fn on_root(e: &TestEnv, verb: &str, node: &str, root: &Path) -> Run {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args([verb, "--node", node, "--site"])
        .arg(e.site())
        .arg("--root")
        .arg(root)
        .env("NO_COLOR", "1")
        .env("STRATA_CACHE_DIR", e.cache())
        .output()
        .expect("run strata");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

pub(crate) fn out(run: &Run) -> String {
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
fn a_secret_is_rendered_on_its_node_and_shown_nowhere_else() {
    let e = env();
    site(&e);
    let set = secret(&e, &["set", "db_password", "--to", "group:dbs"], CANARY).code(0);
    assert!(set.stdout.contains("1 node (db1)"), "{}", set.stdout);
    let age = std::fs::read(e.site().join("secrets/db_password.age")).unwrap();
    assert!(age.starts_with(b"age-encryption.org/v1\n"));
    let toml = std::fs::read_to_string(e.site().join("secrets/db_password.toml")).unwrap();
    assert!(
        toml.contains("to = [\"group:dbs\"]") && toml.contains("db1 = "),
        "{toml}"
    );
    let mut outputs = vec![("secret set", out(&set))];

    let check = e.run(&["check"]).code(1);
    assert!(
        check.stderr.contains("node web1 is not a recipient"),
        "{}",
        check.stderr
    );
    outputs.push(("check", out(&check)));
    let list = secret(&e, &["list"], "").code(0);
    assert!(
        list.stdout.contains("db_password  to group:dbs  nodes db1"),
        "{}",
        list.stdout
    );
    outputs.push(("secret list", out(&list)));

    let plan = e.run(&["plan", "--node", "db1"]).code(2);
    assert!(plan.stdout.contains("/etc/app/db.conf"), "{}", plan.stdout);
    assert!(plan.stdout.contains("(sensitive)"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("+hello"),
        "other files keep their diff"
    );
    outputs.push(("plan", out(&plan)));
    let json = e.run(&["plan", "--node", "db1", "--json"]).code(2);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    let db_conf = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/etc/app/db.conf")
        .expect("db.conf in the plan");
    assert_eq!(db_conf["sensitive"], true, "{db_conf}");
    assert!(db_conf.get("diff").is_none(), "{db_conf}");
    assert!(db_conf["after"]["hash"].is_null(), "{db_conf}");
    outputs.push(("plan --json", out(&json)));
    let apply = e.run(&["apply", "--node", "db1"]).code(0);
    outputs.push(("apply", out(&apply)));
    let first = std::fs::read(e.root().join("etc/app/db.conf")).unwrap();
    assert_eq!(
        first,
        format!("# app database\nuser = app\npassword = {CANARY}\n").as_bytes()
    );
    // The target file holds it, and nothing else on the node: the store keeps it sealed.
    let hits = files_with_canary(&e.root(), &["etc/app/db.conf"]);
    assert!(hits.is_empty(), "after apply, the secret is in {hits:?}");
    let sealed = sealed_objects(&e.root());
    assert!(!sealed.is_empty(), "the store keeps a sealed copy");
    let again = e.run(&["plan", "--node", "db1", "--json"]).code(0);
    outputs.push(("plan after apply", out(&again)));

    // A new value: the file changes, and rollback brings the old one back.
    let set2 = secret(&e, &["set", "db_password", "--to", "group:dbs"], CANARY2).code(0);
    outputs.push(("secret set again", out(&set2)));
    let plan2 = e.run(&["plan", "--node", "db1"]).code(2);
    assert!(plan2.stdout.contains("(sensitive)"), "{}", plan2.stdout);
    outputs.push(("plan of the new value", out(&plan2)));
    let apply2 = e.run(&["apply", "--node", "db1", "--json"]).code(0);
    outputs.push(("apply --json", out(&apply2)));
    let conf = std::fs::read_to_string(e.root().join("etc/app/db.conf")).unwrap();
    assert!(conf.contains(CANARY2), "{conf}");
    for args in [
        &["generations"][..],
        &["generations", "--json"],
        &["report"],
        &["report", "--json"],
    ] {
        let run = e.run(args).code(0);
        outputs.push((args.join(" ").leak(), out(&run)));
    }
    let rollback = e.run(&["rollback", "--with-old-secrets"]).code(0);
    outputs.push(("rollback", out(&rollback)));
    let conf = std::fs::read(e.root().join("etc/app/db.conf")).unwrap();
    assert_eq!(
        conf, first,
        "rollback restores the old secret's file byte for byte"
    );
    let hits = files_with_canary(&e.root(), &["etc/app/db.conf"]);
    assert!(hits.is_empty(), "after rollback, the secret is in {hits:?}");

    // A failing template that read the secret names itself and its line, not the value.
    e.write(
        "modules/app/templates/etc/app/db.conf.j2",
        "# app database\n{{ secret(\"db_password\") | from_json }}\n",
    );
    let failed = e.run(&["plan", "--node", "db1"]).code(1);
    assert!(
        failed
            .stderr
            .contains("modules/app/templates/etc/app/db.conf.j2:2"),
        "{}",
        failed.stderr
    );
    outputs.push(("a failing template", out(&failed)));

    // Nor the hash of what was rendered from it.
    let hashes: Vec<String> = [CANARY, CANARY2]
        .iter()
        .map(|c| {
            let conf = format!("# app database\nuser = app\npassword = {c}\n");
            blake3::hash(conf.as_bytes()).to_hex()[..8].to_string()
        })
        .collect();
    for (what, text) in &outputs {
        assert_clean(what, text);
        for h in &hashes {
            assert!(
                !text.contains(h.as_str()),
                "{what} shows the hash {h}:\n{text}"
            );
        }
    }
    // The target holds the value in the file it was rendered into; the store keeps
    // both values for rollback, sealed to the node's key. Nothing else anywhere.
    let hits = files_with_canary(&e.root(), &["etc/app/db.conf"]);
    assert!(hits.is_empty(), "the secret is in {hits:?}");
    assert!(
        sealed_objects(&e.root()).len() >= 2,
        "both values are kept, sealed"
    );
    assert!(
        files_with_canary(&e.cache(), &[]).is_empty(),
        "the cache holds it"
    );
    assert!(
        files_with_canary(&e.site(), &[]).is_empty(),
        "the site holds it"
    );
}

#[test]
fn a_node_that_is_not_a_recipient_fails_naming_the_secret_and_itself() {
    let e = env();
    site(&e);
    secret(&e, &["set", "db_password", "--to", "db1"], CANARY).code(0);
    let other = e.path().join("web1-root");
    let run = on_root(&e, "plan", "web1", &other).code(1);
    assert!(
        run.stderr
            .contains("node web1 is not a recipient of secret `db_password`"),
        "{}",
        run.stderr
    );
    assert_clean("plan of web1", &out(&run));
    assert!(
        !other.join("etc").exists(),
        "nothing rendered, nothing written"
    );
}

#[test]
fn a_missing_or_corrupt_secret_or_a_wrong_key_changes_nothing() {
    let e = env();
    site(&e);
    secret(&e, &["set", "db_password", "--to", "db1"], CANARY).code(0);
    e.run(&["apply", "--node", "db1"]).code(0);
    let before = e.tree();
    let edited = "# app database\nuser = app2\npassword = {{ secret(\"db_password\") }}\n";
    e.write("modules/app/templates/etc/app/db.conf.j2", edited);

    // Missing.
    let age = std::fs::read(e.site().join("secrets/db_password.age")).unwrap();
    std::fs::remove_file(e.site().join("secrets/db_password.age")).unwrap();
    let run = e.run(&["apply", "--node", "db1"]).code(1);
    assert!(
        run.stderr.contains("secrets/db_password.age is missing"),
        "{}",
        run.stderr
    );
    // Corrupt.
    let mut bad = age.clone();
    let n = bad.len();
    bad[n - 5] ^= 0x55;
    std::fs::write(e.site().join("secrets/db_password.age"), &bad).unwrap();
    let run = e.run(&["apply", "--node", "db1"]).code(1);
    assert!(
        run.stderr
            .contains("secrets/db_password.age is not a valid age file"),
        "{}",
        run.stderr
    );
    std::fs::write(e.site().join("secrets/db_password.age"), b"garbage\n").unwrap();
    let run = e.run(&["apply", "--node", "db1"]).code(1);
    assert!(
        run.stderr.contains("is not a valid age file"),
        "{}",
        run.stderr
    );
    // The wrong key: the node's key replaced by another.
    std::fs::write(e.site().join("secrets/db_password.age"), &age).unwrap();
    let key = e.root().join("var/lib/strata/keys/age.key");
    node_key(&e, &e.path().join("stranger"));
    std::fs::copy(e.path().join("stranger/var/lib/strata/keys/age.key"), &key).unwrap();
    let run = e.run(&["apply", "--node", "db1"]).code(1);
    assert!(
        run.stderr
            .contains("secrets/db_password.age cannot be decrypted with node db1's key"),
        "{}",
        run.stderr
    );
    assert_clean("apply with the wrong key", &out(&run));
    // A secret the template names that the site does not have.
    e.write(
        "modules/app/templates/etc/app/db.conf.j2",
        "password = {{ secret(\"nope\") }}\n",
    );
    let run = e.run(&["apply", "--node", "db1"]).code(1);
    assert!(
        run.stderr
            .contains("secret `nope` does not exist: secrets/nope.toml is missing"),
        "{}",
        run.stderr
    );
    assert_eq!(e.tree(), before, "nothing changed");
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
    // Push refuses too, before it connects to anything.
    let run = e.run(&["push", "dbs"]).code(1);
    assert!(
        run.stderr.contains("has stale recipients"),
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
    let run = e.run(&["check"]).code(1);
    assert!(!run.stderr.contains("stale"), "{}", run.stderr);
    // The new recipient renders it; the old one no longer can.
    on_root(&e, "apply", "db2", &root2).code(0);
    let conf = std::fs::read_to_string(root2.join("etc/app/db.conf")).unwrap();
    assert!(conf.contains(CANARY));
    let run = e.run(&["plan", "--node", "db1"]).code(1);
    assert!(
        run.stderr.contains("node db1 is not a recipient"),
        "{}",
        run.stderr
    );
    // An admin reads it back.
    let show = secret(&e, &["show", "db_password", "--identity", id], "").code(0);
    assert_eq!(show.stdout, CANARY);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn only_scripts_whose_module_asks_see_the_secret() {
    let e = env();
    strata_test::require_busybox_root!(e);
    let key = node_key(&e, &e.root());
    let script = |module: &str, body: &str| {
        e.write_exec(
            &format!("modules/{module}/scripts/10-run.sh"),
            &format!("#!/bin/sh\nset -e\n{body}\n"),
        );
    };
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write(
            "nodes/db1.toml",
            &format!("modules = [\"app\", \"other\"]\n\n[keys]\nage = \"{key}\"\n"),
        )
        .write("modules/app/module.toml", "secrets = [\"db_password\"]\n")
        .write("modules/other/module.toml", "");
    script(
        "app",
        "printf '%s' \"$STRATA_SECRET_DB_PASSWORD\" | wc -c > /etc/app-seen\n\
         printf 'password=%s\\n' \"$STRATA_SECRET_DB_PASSWORD\" > /etc/app.conf\n\
         echo \"connecting with $STRATA_SECRET_DB_PASSWORD\"; echo \"as $STRATA_SECRET_DB_PASSWORD\" >&2",
    );
    script(
        "other",
        "echo \"x${STRATA_SECRET_DB_PASSWORD:-unset}\" > /etc/other-seen; env | grep -c SECRET > /etc/other-env || true",
    );
    std::fs::create_dir_all(e.root().join("var/lib")).unwrap();
    e.write_root("etc/hosts", "127.0.0.1 localhost\n", 0o644);
    secret(&e, &["set", "db_password", "--to", "db1"], CANARY).code(0);
    let plan = e.run(&["plan", "--node", "db1"]).code(2);
    let apply = e.run(&["apply", "--node", "db1"]).code(0);
    let report = e.run(&["report", "--json"]).code(0);
    for (what, run) in [("plan", &plan), ("apply", &apply), ("report", &report)] {
        assert_clean(what, &out(run));
    }
    // What the script printed is in the report, the value named instead.
    assert!(
        report
            .stdout
            .contains("connecting with [secret db_password]")
            && report.stdout.contains("as [secret db_password]"),
        "{}",
        report.stdout
    );
    // What the asking module's script wrote may hold the secret: sensitive, no diff,
    // its contents sealed in the store.
    let line = |run: &Run| {
        (run.stdout.lines())
            .find(|l| l.contains("/etc/app.conf"))
            .map(str::to_string)
            .unwrap_or_default()
    };
    assert!(line(&plan).contains("(sensitive)"), "{}", plan.stdout);
    assert!(line(&apply).contains("(sensitive)"), "{}", apply.stdout);
    let read = |p: &str| std::fs::read_to_string(e.root().join(p)).unwrap();
    assert_eq!(read("etc/app.conf"), format!("password={CANARY}\n"));
    assert!(!sealed_objects(&e.root()).is_empty());
    assert_eq!(read("etc/app-seen").trim(), CANARY.len().to_string());
    assert_eq!(read("etc/other-seen"), "xunset\n");
    assert_eq!(read("etc/other-env").trim(), "0");
    let hits = files_with_canary(&e.root(), &["etc/app.conf"]);
    assert!(hits.is_empty(), "the secret is in {hits:?}");
    assert!(files_with_canary(&e.cache(), &[]).is_empty());
    // The sandbox's scratch directories are gone; none of them kept it either.
    let tmp = std::env::temp_dir();
    let scratch: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|d| {
            d.file_name()
                .to_string_lossy()
                .starts_with("strata-sandbox.")
        })
        .flat_map(|d| files_with_canary(&d.path(), &[]))
        .collect();
    assert!(scratch.is_empty(), "{scratch:?}");
}

/// Every file of a host's disk (not the file systems mounted in it) holding a canary, by
/// path from its `/`, but `except`.
fn host_files_with_canary(root: &Path, except: &[&str]) -> Vec<String> {
    let needles = e_needles();
    let script = format!(
        "cd {} && find . -xdev -type f -print0 | xargs -0 grep -l -F -f {} || true",
        root.display(),
        needles.display()
    );
    let out = std::process::Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("find and grep");
    let _ = std::fs::remove_file(&needles);
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .filter(|l| !except.contains(&l.as_str()))
        .collect()
}

/// The canaries' forms, one a line, in a file for `grep -f`.
fn e_needles() -> PathBuf {
    let path = std::env::temp_dir().join(format!("strata-needles-{}", std::process::id()));
    let text: Vec<String> = needles(CANARY)
        .into_iter()
        .chain(needles(CANARY2))
        .collect();
    std::fs::write(&path, text.join("\n") + "\n").unwrap();
    path
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn push_delivers_only_ciphertext_and_only_the_recipient_renders() {
    let f = crate::push::fleet(2);
    let e = &f.env;
    let h1 = f.hosts.host("h1.test").root();
    let admin = node_key(e, &e.path().join("admin"));
    let key = node_key(e, &h1);
    let node_file = e.site().join("nodes/h1.test.toml");
    let text = std::fs::read_to_string(&node_file).unwrap();
    let text = text.replace("modules = [\"motd\"]", "modules = [\"motd\", \"db\"]");
    std::fs::write(&node_file, format!("{text}\n[keys]\nage = \"{key}\"\n")).unwrap();
    e.write(
        "strata.toml",
        &format!("[site]\nname = \"fleet\"\n\n[secrets]\nadmins = [\"{admin}\"]\n"),
    )
    .write(
        "modules/db/templates/etc/app/db.conf.j2",
        "password = {{ secret(\"db_password\") }}\n",
    );
    secret(e, &["set", "db_password", "--to", "h1.test"], CANARY).code(0);

    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    for v in &nodes {
        assert_clean("push --json", &v.to_string());
    }
    let db = &nodes[0]["paths"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["path"] == "/etc/app/db.conf")
        .cloned()
        .expect("db.conf pushed to h1");
    assert_eq!(db["sensitive"], true, "{db}");
    assert_eq!(
        f.hosts.host("h1.test").read("/etc/app/db.conf").as_deref(),
        Some(format!("password = {CANARY}\n").as_str())
    );
    assert!(f.hosts.host("h2.test").read("/etc/app/db.conf").is_none());
    // h1's disk: the file only (the store keeps it sealed; the snapshot it received
    // holds only the ciphertext). h2's disk: nothing.
    let hits = host_files_with_canary(&h1, &[]);
    assert_eq!(hits, ["etc/app/db.conf"], "h1 holds the secret in {hits:?}");
    let h2 = host_files_with_canary(&f.hosts.host("h2.test").root(), &[]);
    assert!(h2.is_empty(), "h2 holds the secret in {h2:?}");
}
