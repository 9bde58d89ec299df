//! `strata drift`: hand edits of managed paths, found against the current generation and
//! shown with diffs, except for sensitive files (no diff, no hash).

use std::os::unix::fs::PermissionsExt;

use strata_test::TestEnv;

use crate::env;

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEYMATERIALXYZ\n-----END PRIVATE KEY-----\n";
const EDITED_KEY: &str = "-----BEGIN PRIVATE KEY-----\nHANDEDITEDKEY\n-----END PRIVATE KEY-----\n";

/// A site whose node `n1` manages a motd, an app config, a private key and a link, applied.
fn applied() -> TestEnv {
    let e = env();
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", "modules = [\"base\"]\n")
        .write(
            "modules/base/module.toml",
            "[[file]]\npath = \"/etc/ssl/app.key\"\nmode = \"0600\"\n\
             [[link]]\npath = \"/etc/app/current\"\ntarget = \"app.conf\"\n",
        )
        .write("modules/base/files/etc/motd", "welcome\nto n1\n")
        .write("modules/base/files/etc/app/app.conf", "port = 80\n")
        .write("modules/base/files/etc/ssl/app.key", KEY);
    e.run(&["apply", "--node", "n1"]).code(0);
    e
}

#[test]
fn an_untouched_node_has_no_drift() {
    let e = applied();
    let run = e.run(&["drift"]).code(0);
    assert!(
        run.stdout
            .contains("No drift on n1 (generation 1): all 7 managed paths as recorded."),
        "{}",
        run.stdout
    );
    let json = e.run(&["drift", "--json"]).code(0);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["drift"], false);
    assert_eq!(v["paths"], serde_json::json!([]));
}

#[test]
fn hand_edits_are_listed_with_their_diffs_and_kinds() {
    let e = applied();
    let r = e.root();
    std::fs::write(r.join("etc/motd"), "welcome\nto n1, edited by hand\n").unwrap();
    std::fs::set_permissions(
        r.join("etc/app/app.conf"),
        std::fs::Permissions::from_mode(0o666),
    )
    .unwrap();
    std::fs::remove_file(r.join("etc/app/current")).unwrap();
    std::fs::write(r.join("etc/ssl/app.key"), EDITED_KEY).unwrap();
    let run = e.run(&["drift"]).code(2);
    let want = "\
metadata  /etc/app/app.conf  file mode 0644 → 0666  (base)
missing   /etc/app/current   link -> app.conf → absent  (base)
content   /etc/motd          file content ";
    assert!(run.stdout.starts_with(want), "{}", run.stdout);
    for line in [
        "--- /etc/motd\n+++ /etc/motd\n",
        " welcome\n-to n1\n+to n1, edited by hand\n",
        "content   /etc/ssl/app.key   file content (sensitive) → (changed)  (base)\n",
        "Drift on n1 (generation 1): 4 of 7 managed paths differ.\n",
    ] {
        assert!(run.stdout.contains(line), "{line}\n---\n{}", run.stdout);
    }
    // Nothing of the key, before or after, nor their hashes.
    let json = e.run(&["drift", "--json"]).code(2);
    for text in [&run.stdout, &json.stdout] {
        for s in [KEY, EDITED_KEY] {
            let hash = blake3::hash(s.as_bytes()).to_hex().to_string();
            assert!(!text.contains(&hash[..8]), "{text}");
            assert!(!text.contains("KEYMATERIAL") && !text.contains("HANDEDITED"));
        }
    }
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["drift"], true);
    let key = &v["paths"][3];
    assert_eq!(key["path"], "/etc/ssl/app.key");
    assert_eq!(key["sensitive"], true);
    assert_eq!(key["recorded"]["hash"], serde_json::Value::Null);
    assert!(key.get("diff").is_none());
    assert_eq!(v["paths"][0]["kind"], "metadata");
    assert_eq!(v["paths"][0]["found"]["mode"], "0666");
    assert_eq!(v["paths"][1]["kind"], "missing");
    assert_eq!(v["paths"][2]["kind"], "content");
    // Drift writes nothing: the edits stay, and an apply puts everything back.
    assert_eq!(
        std::fs::read_to_string(r.join("etc/motd")).unwrap(),
        "welcome\nto n1, edited by hand\n"
    );
    e.run(&["apply", "--node", "n1"]).code(0);
    e.run(&["drift"]).code(0);
}

#[test]
fn a_root_without_generations_has_nothing_to_drift() {
    let e = env();
    let run = e.run(&["drift"]).code(0);
    assert!(
        run.stdout.contains("No generation recorded"),
        "{}",
        run.stdout
    );
}

#[test]
fn a_directory_where_a_file_was_is_a_change_of_type() {
    let e = applied();
    std::fs::remove_file(e.root().join("etc/motd")).unwrap();
    std::fs::create_dir(e.root().join("etc/motd")).unwrap();
    let run = e.run(&["drift"]).code(2);
    assert!(
        run.stdout.starts_with("type      /etc/motd"),
        "{}",
        run.stdout
    );
}

/// `agent --watch --for SECS` on `e`'s root, started: once it says it is watching, `edit`
/// runs; then its exit code, stdout and stderr, and how long after the edit the on-drift
/// hook wrote its log.
fn watch(e: &TestEnv, secs: u64, extra: &[&str], edit: impl FnOnce()) -> (i32, String, String) {
    use std::io::BufRead;
    let mut child = e
        .cmd(&["agent", "--watch", "--for", &format!("{secs}s"), "--root"])
        .arg(e.root())
        .args(extra)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut err = std::io::BufReader::new(child.stderr.take().unwrap());
    let mut seen = String::new();
    while !seen.contains("agent: watching") {
        let mut line = String::new();
        if err.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push_str(&line);
    }
    edit();
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut err, &mut rest).unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        seen + &rest,
    )
}

#[test]
fn agent_watch_reports_a_hand_edit_within_seconds_and_runs_the_on_drift_hooks() {
    let e = applied();
    let log = e.path().join("drift.log");
    e.write_exec(
        "hooks/on-drift.d/10-alert",
        &format!("#!/bin/sh\ncat > {}\n", log.display()),
    );
    let mut edited = None;
    let (code, out, err) = watch(&e, 6, &[], || {
        std::fs::write(e.root().join("etc/motd"), "welcome\nedited\n").unwrap();
        edited = Some(std::time::SystemTime::now());
    });
    assert_eq!(code, 2, "{out}\n{err}");
    assert!(err.contains("agent: watching 7 managed paths"), "{err}");
    assert!(out.contains("content   /etc/motd"), "{out}");
    assert!(out.contains("+edited\n"), "{out}");
    assert!(
        out.contains("hook hooks/on-drift.d/10-alert  (ok)"),
        "{out}"
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&log).unwrap()).unwrap();
    assert_eq!(summary["event"], "on-drift");
    assert_eq!(summary["result"], "drift");
    assert_eq!(summary["paths"][0]["path"], "/etc/motd");
    let after = std::fs::metadata(&log)
        .unwrap()
        .modified()
        .unwrap()
        .duration_since(edited.unwrap())
        .unwrap();
    assert!(after < std::time::Duration::from_secs(5), "{after:?}");
}

#[test]
fn agent_watch_correct_puts_the_managed_state_back() {
    let e = applied();
    let (code, out, err) = watch(&e, 5, &["--correct"], || {
        std::fs::write(e.root().join("etc/motd"), "edited\n").unwrap();
        std::fs::set_permissions(
            e.root().join("etc/app/app.conf"),
            std::fs::Permissions::from_mode(0o600),
        )
        .unwrap();
    });
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(err.contains("agent: correcting"), "{err}");
    assert_eq!(
        std::fs::read_to_string(e.root().join("etc/motd")).unwrap(),
        "welcome\nto n1\n"
    );
    e.run(&["drift"]).code(0);
    let gens = e.run(&["generations"]).code(0);
    assert!(gens.stdout.contains("   2  "), "{}", gens.stdout);
}

#[test]
fn agent_watch_needs_no_bucket_and_refuses_a_bucket() {
    let e = env();
    let run = e.run(&["agent", "--watch", "--from", "file:///x"]).code(1);
    assert!(run.stderr.contains("cannot be used with"), "{}", run.stderr);
    let run = e.run(&["agent", "--correct"]).code(1);
    assert!(run.stderr.contains("--watch"), "{}", run.stderr);
}

/// Runs git in the site.
fn git(e: &TestEnv, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(e.site())
        .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_site_that_is_no_git_checkout_records_revision_none_without_error() {
    let e = applied();
    let list = e.run(&["generations"]).code(0);
    assert!(
        list.stdout
            .contains("apply                 7 paths  rev none (current)"),
        "{}",
        list.stdout
    );
    let json: serde_json::Value =
        serde_json::from_str(&e.run(&["generations", "--json"]).code(0).stdout).unwrap();
    assert_eq!(json["generations"][0]["revision"], "none");
    let report = e.run(&["report"]).code(0);
    assert!(
        report.stdout.starts_with("generation 1, site rev none\n"),
        "{}",
        report.stdout
    );
}

#[test]
fn each_generation_records_the_commit_and_whether_the_checkout_was_dirty() {
    let e = applied();
    git(&e, &["init", "-q"]);
    git(&e, &["add", "-A"]);
    git(&e, &["commit", "-q", "-m", "one"]);
    let first = git(&e, &["rev-parse", "HEAD"]);
    e.write("modules/base/files/etc/motd", "welcome\nto n1, committed\n");
    git(&e, &["commit", "-q", "-am", "two"]);
    let second = git(&e, &["rev-parse", "HEAD"]);
    assert_ne!(first, second);
    e.run(&["apply", "--node", "n1"]).code(0);
    // Not committed: the generation says so.
    e.write(
        "modules/base/files/etc/motd",
        "welcome\nto n1, not committed\n",
    );
    e.write("modules/base/files/etc/issue", "new\n");
    e.remove("modules/base/files/etc/app/app.conf");
    e.run(&["apply", "--node", "n1"]).code(0);
    let json: serde_json::Value =
        serde_json::from_str(&e.run(&["generations", "--json"]).code(0).stdout).unwrap();
    let g = &json["generations"];
    assert_eq!(g[1]["revision"], second.as_str());
    assert!(g[1].get("dirty").is_none(), "{g}");
    assert_eq!(g[2]["revision"], second.as_str());
    assert_eq!(g[2]["dirty"], true);
    let list = e.run(&["generations"]).code(0).stdout;
    assert!(list.contains(&format!("rev {}\n", &second[..12])), "{list}");
    assert!(
        list.contains(&format!("rev {}+dirty (current)", &second[..12])),
        "{list}"
    );
    let report = e.run(&["report", "--json"]).code(0).stdout;
    let report: serde_json::Value = serde_json::from_str(&report).unwrap();
    assert_eq!(report["revision"], second.as_str());
    assert_eq!(report["dirty"], true);

    // What changed between them, from the store.
    let diff = e.run(&["diff", "2", "3"]).code(0).stdout;
    assert!(
        diff.starts_with(&format!(
            "generation 2 (2024-05-01T12:00:00Z, rev {}) → generation 3 (2024-05-01T12:00:00Z, rev {}+dirty)\n",
            &second[..12],
            &second[..12]
        )),
        "{diff}"
    );
    for want in [
        "removed   /etc/app/app.conf",
        "added     /etc/issue",
        "+new\n",
        "content   /etc/motd",
        "-to n1, committed\n+to n1, not committed\n",
    ] {
        assert!(diff.contains(want), "{want}\n---\n{diff}");
    }
    assert!(diff.ends_with("paths differ.\n"), "{diff}");
    let same = e.run(&["diff", "3", "3"]).code(0).stdout;
    assert_eq!(same.lines().last(), Some("0 paths differ."));
    let json: serde_json::Value =
        serde_json::from_str(&e.run(&["diff", "1", "3", "--json"]).code(0).stdout).unwrap();
    assert_eq!(json["from"]["revision"], "none");
    assert_eq!(json["to"]["dirty"], true);
}

#[test]
fn a_diff_shows_no_content_of_sensitive_files_and_refuses_unknown_generations() {
    let e = applied();
    e.write("modules/base/files/etc/ssl/app.key", EDITED_KEY);
    e.run(&["apply", "--node", "n1"]).code(0);
    let diff = e.run(&["diff", "1", "2"]).code(0).stdout;
    assert!(
        diff.contains("content   /etc/ssl/app.key  file content (sensitive) → (changed)"),
        "{diff}"
    );
    assert!(
        !diff.contains("KEYMATERIAL") && !diff.contains("HANDEDITED"),
        "{diff}"
    );
    let json = e.run(&["diff", "1", "2", "--json"]).code(0).stdout;
    assert!(
        !json.contains("KEYMATERIAL") && !json.contains("HANDEDITED"),
        "{json}"
    );
    let hash = blake3::hash(KEY.as_bytes()).to_hex().to_string();
    assert!(!json.contains(&hash[..8]) && !diff.contains(&hash[..8]));
    let err = e.run(&["diff", "1", "9"]).code(1).stderr;
    assert!(err.contains("no generation 9"), "{err}");
}
