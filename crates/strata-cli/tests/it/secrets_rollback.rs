//! Secrets and the node's own record (issue 21): the store keeps what was rendered from a
//! secret sealed to the node's key, rollback keeps a file whose secret changed since at
//! its current content unless `--with-old-secrets`, and a sandbox run leaves the value
//! nowhere on disk.

use std::path::Path;

use crate::env;
use crate::secrets::{
    CANARY, CANARY2, assert_clean, files_with_canary, out, sealed_objects, secret, site,
};

fn conf(c: &str) -> String {
    format!("# app database\nuser = app\npassword = {c}\n")
}

/// Two generations: the first with `CANARY` and `hello`, the second with `CANARY2` and
/// `hello2` in the two files of [`site`]'s module.
fn two_generations(e: &strata_test::TestEnv) {
    site(e);
    secret(e, &["set", "db_password", "--to", "db1"], CANARY).code(0);
    e.run(&["apply", "--node", "db1"]).code(0);
    secret(e, &["set", "db_password", "--to", "db1"], CANARY2).code(0);
    e.write("modules/app/files/etc/app/motd", "hello2\n");
    e.run(&["apply", "--node", "db1"]).code(0);
}

fn read(root: &Path, p: &str) -> String {
    std::fs::read_to_string(root.join(p)).unwrap()
}

#[test]
fn rollback_keeps_a_file_whose_secret_changed_unless_asked() {
    let e = env();
    two_generations(&e);
    let root = e.root();
    assert_eq!(read(&root, "etc/app/db.conf"), conf(CANARY2));

    // By default: everything else goes back, the secret's file stays, and says why.
    let run = e.run(&["rollback"]).code(0);
    assert_clean("rollback", &out(&run));
    assert_eq!(read(&root, "etc/app/motd"), "hello\n");
    assert_eq!(read(&root, "etc/app/db.conf"), conf(CANARY2));
    assert!(
        run.stdout.contains("/etc/app/db.conf")
            && run
                .stdout
                .contains("secret db_password changed since generation 1"),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("--with-old-secrets"), "{}", run.stdout);

    // Asked: the old value comes back, byte for byte, and the store still holds no
    // plaintext.
    let run = e
        .run(&["rollback", "--to", "1", "--with-old-secrets"])
        .code(0);
    assert_clean("rollback --with-old-secrets", &out(&run));
    assert_eq!(
        std::fs::read(root.join("etc/app/db.conf")).unwrap(),
        conf(CANARY).as_bytes()
    );
    let hits = files_with_canary(&root, &["etc/app/db.conf"]);
    assert!(hits.is_empty(), "the secret is in {hits:?}");
    assert!(sealed_objects(&root).len() >= 2);

    // The generation just made read the same value as generation 1: nothing is kept.
    let run = e.run(&["rollback", "--to", "1"]).code(0);
    assert!(!run.stdout.contains("changed since"), "{}", run.stdout);
    let json = e.run(&["generations", "--json"]).code(0);
    assert_clean("generations", &json.stdout);
    // And the value of generation 2 comes back only when asked.
    let run = e.run(&["rollback", "--to", "2"]).code(0);
    assert!(
        run.stdout.contains("changed since generation 2"),
        "{}",
        run.stdout
    );
    assert_eq!(read(&root, "etc/app/db.conf"), conf(CANARY));
    assert_eq!(read(&root, "etc/app/motd"), "hello2\n");
}

#[test]
fn a_rollback_that_needs_the_missing_node_key_fails_and_changes_nothing() {
    let e = env();
    two_generations(&e);
    let key = e.root().join("var/lib/strata/keys/age.key");
    let saved = std::fs::read(&key).unwrap();
    std::fs::remove_file(&key).unwrap();
    let before = e.tree();
    let generations = e.run(&["generations"]).code(0).stdout;
    let run = e.run(&["rollback", "--with-old-secrets"]).code(1);
    assert!(
        run.stderr
            .contains("var/lib/strata/keys/age.key is missing")
            && run.stderr.contains("nothing was changed"),
        "{}",
        run.stderr
    );
    assert_clean("a failed rollback", &out(&run));
    assert_eq!(e.tree(), before, "nothing changed");
    assert_eq!(e.run(&["generations"]).code(0).stdout, generations);

    // Another node's key cannot open the store's sealed copies either.
    let other = e.path().join("other");
    crate::secrets::node_key(&e, &other);
    std::fs::copy(other.join("var/lib/strata/keys/age.key"), &key).unwrap();
    let run = e.run(&["rollback", "--with-old-secrets"]).code(1);
    assert!(
        run.stderr
            .contains("cannot be decrypted with this node's age key"),
        "{}",
        run.stderr
    );
    assert_eq!(e.tree(), before, "nothing changed");

    // Its own key back: the rollback works.
    std::fs::write(&key, saved).unwrap();
    e.run(&["rollback", "--with-old-secrets"]).code(0);
    assert_eq!(read(&e.root(), "etc/app/db.conf"), conf(CANARY));
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_sandboxed_plan_leaves_the_secret_nowhere_on_disk() {
    let e = env();
    strata_test::require_busybox_root!(e);
    site(&e);
    // A script makes the plan go through the sandbox, with the secret's file laid in.
    e.write_exec(
        "modules/app/scripts/10-run.sh",
        "#!/bin/sh\nset -e\ntest -s /etc/app/db.conf\necho ok > /etc/app/ran\n",
    );
    std::fs::create_dir_all(e.root().join("var/lib")).unwrap();
    e.write_root("etc/hosts", "127.0.0.1 localhost\n", 0o644);
    secret(&e, &["set", "db_password", "--to", "db1"], CANARY).code(0);
    let tmp = e.path().join("tmp");
    std::fs::create_dir_all(&tmp).unwrap();
    let plan = e
        .run_env(&["plan", "--node", "db1"], &[("TMPDIR", &tmp)])
        .code(2);
    assert!(plan.stdout.contains("/etc/app/ran"), "{}", plan.stdout);
    assert_clean("plan", &out(&plan));
    for (what, dir) in [("the root", e.root()), ("TMPDIR", tmp.clone())] {
        let hits = files_with_canary(&dir, &[]);
        assert!(hits.is_empty(), "after plan, {what} holds it in {hits:?}");
    }
    let left: Vec<_> = std::fs::read_dir(&tmp)
        .unwrap()
        .filter_map(Result::ok)
        .map(|d| d.file_name())
        .collect();
    assert!(left.is_empty(), "the run left {left:?}");
    // Applied: the target file holds it, nothing else on the node or in TMPDIR.
    e.run_env(&["apply", "--node", "db1"], &[("TMPDIR", &tmp)])
        .code(0);
    assert_eq!(read(&e.root(), "etc/app/db.conf"), conf(CANARY));
    let hits = files_with_canary(&e.root(), &["etc/app/db.conf"]);
    assert!(hits.is_empty(), "after apply, the secret is in {hits:?}");
    assert!(files_with_canary(&tmp, &[]).is_empty());
}
