//! Secrets over pull (issue 21): a node enrolls with `strata serve`, its age key goes to
//! the server, `nodes keys --write` records it, `secret set` encrypts to it, `publish`
//! and `agent --once` render it on the node. A canary value is then looked for in the
//! server's database and log, its published store, the node's whole root but the target
//! file, the operator's site but the ciphertext, and every command's output: nowhere.
//! A second node that is not a recipient fails naming the secret and itself.

use std::path::Path;

use crate::secrets::{CANARY, admin_identity, assert_clean, files_with_canary, node_key, secret};
use crate::serve::{Out, served_with};

fn text(out: &Out) -> String {
    format!("{}{}", out.1, out.2)
}

#[test]
fn a_pulled_secret_is_rendered_on_its_node_and_shown_nowhere_else() {
    let s = served_with(
        |e| {
            let admin = node_key(e, &e.path().join("admin"));
            e.write(
                "strata.toml",
                &format!("[site]\nname = \"s\"\n\n[secrets]\nadmins = [\"{admin}\"]\n"),
            );
            for n in ["n1", "n2"] {
                e.write(
                    &format!("nodes/{n}.toml"),
                    "environment = \"test\"\nmodules = [\"m\", \"app\"]\n",
                );
            }
            e.write(
                "modules/app/templates/etc/app/db.conf.j2",
                "# app database\npassword = {{ secret(\"db_password\") }}\n",
            );
        },
        &[],
    );
    assert!(admin_identity(&s.env).exists());
    let mut outputs: Vec<(String, String)> = Vec::new();
    let (n1, n2) = (s.node_root("n1"), s.node_root("n2"));
    for (root, name) in [(&n1, "n1"), (&n2, "n2")] {
        let token = s.token(&["--node", name]);
        let run = s.enroll(root, name, Some(&token));
        assert_eq!(run.0, 0, "{}", text(&run));
        outputs.push((format!("enroll {name}"), text(&run)));
    }
    let keys = s.site_cmd(&["nodes", "keys", "--write"]);
    assert_eq!(keys.0, 0, "{}", text(&keys));
    outputs.push(("nodes keys --write".into(), text(&keys)));

    let set = secret(&s.env, &["set", "db_password", "--to", "n1"], CANARY).code(0);
    assert!(set.stdout.contains("1 node (n1)"), "{}", set.stdout);
    outputs.push(("secret set".into(), format!("{}{}", set.stdout, set.stderr)));
    let (code, out, err) = crate::serve::output(
        s.env
            .cmd(&["publish", "--to", &s.url, "--site"])
            .arg(s.env.site())
            .arg("--keys")
            .arg(&s.keys),
    );
    assert_eq!(code, 0, "{out}{err}");
    outputs.push(("publish".into(), format!("{out}{err}")));

    // The recipient renders it.
    let run = s.agent(&n1);
    assert_eq!(run.0, 0, "{}", text(&run));
    outputs.push(("agent n1".into(), text(&run)));
    assert_eq!(
        std::fs::read_to_string(n1.join("etc/app/db.conf")).unwrap(),
        format!("# app database\npassword = {CANARY}\n")
    );
    let again = s.agent(&n1);
    assert_eq!(again.0, 0, "{}", text(&again));
    assert!(again.1.contains("Nothing to do for n1"), "{}", again.1);
    outputs.push(("agent n1 again".into(), text(&again)));

    // The other node is not a recipient: it fails naming the secret and itself, and
    // applies nothing.
    let run = s.agent(&n2);
    assert_ne!(run.0, 0, "{}", text(&run));
    assert!(
        text(&run).contains("node n2 is not a recipient of secret `db_password`"),
        "{}",
        text(&run)
    );
    assert!(!n2.join("etc").exists(), "nothing applied on n2");
    outputs.push(("agent n2".into(), text(&run)));

    // Its report names the secret, not the value.
    let runs = s.site_cmd(&["runs", "n2"]);
    assert_eq!(runs.0, 0, "{}", text(&runs));
    assert!(
        runs.1.contains("n2 failed") && runs.1.contains("db_password"),
        "{}",
        runs.1
    );
    outputs.push(("runs n2".into(), text(&runs)));
    for args in [&["runs"][..], &["runs", "--json"], &["nodes", "--json"]] {
        let run = s.site_cmd(args);
        assert_eq!(run.0, 0, "{}", text(&run));
        outputs.push((args.join(" "), text(&run)));
    }

    // Revoking the recipient names what it could decrypt; the other node, nothing.
    let revoke = s.site_cmd(&["nodes", "revoke", "n1"]);
    assert_eq!(revoke.0, 0, "{}", text(&revoke));
    assert!(
        revoke
            .1
            .contains("n1: revoked\nn1 could decrypt 1 secret: db_password\n"),
        "{}",
        revoke.1
    );
    assert!(revoke.2.contains("strata secret set NAME"), "{}", revoke.2);
    outputs.push(("nodes revoke n1".into(), text(&revoke)));
    let revoke = s.site_cmd(&["nodes", "revoke", "n2"]);
    assert_eq!(revoke.0, 0, "{}", text(&revoke));
    assert_eq!(revoke.1, "n2: revoked\n");

    for (what, out) in &outputs {
        assert_clean(what, out);
    }
    // The server: its database (and write-ahead log), its request log and what it
    // serves hold none of it; they are there to be searched.
    let site = s.env.site();
    let db = site.join(".strata/state.db");
    assert!(db.exists(), "the inventory is at {}", db.display());
    let store = site.join(".strata/serve");
    assert!(
        walkdir::WalkDir::new(&store).into_iter().count() > 3,
        "the published store is at {}",
        store.display()
    );
    let log = s.env.path().join("serve.log");
    assert!(
        std::fs::read_to_string(&log)
            .unwrap()
            .contains("/v1/nodes/n1/poll"),
        "the request log is at {}",
        log.display()
    );
    assert_clean("serve's log", &std::fs::read_to_string(&log).unwrap());
    for dir in [site.join(".strata"), store] {
        let hits = files_with_canary(&dir, &[]);
        assert!(hits.is_empty(), "{}: {hits:?}", dir.display());
    }
    // The node: only the file it was rendered into; the store keeps it sealed.
    let hits = files_with_canary(&n1, &["etc/app/db.conf"]);
    assert!(hits.is_empty(), "n1: {hits:?}");
    assert!(!crate::secrets::sealed_objects(&n1).is_empty());
    assert!(files_with_canary(&n2, &[]).is_empty(), "n2");
    // The operator's site: the ciphertext only. And everything else the test made
    // (keys, tokens, caches, the admin's root).
    let hits = files_with_canary(
        s.env.path(),
        &["n1/etc/app/db.conf", "site/secrets/db_password.age"],
    );
    assert!(hits.is_empty(), "{hits:?}");
    assert_site_is_under(s.env.path(), &site);
}

/// The test's site is where the whole-tree search excepted its ciphertext.
fn assert_site_is_under(top: &Path, site: &Path) {
    assert_eq!(site.strip_prefix(top).unwrap(), Path::new("site"));
    assert!(site.join("secrets/db_password.age").exists());
}
