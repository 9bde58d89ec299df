//! `plan`: what it shows, that it writes nothing, its exit codes and its JSON.

use std::os::unix::fs::MetadataExt;

use insta::assert_snapshot;

use crate::{WEB1, assert_output, example};

#[test]
fn a_plan_shows_every_path_with_attributes_and_diffs_and_writes_nothing() {
    let env = example();
    let run = env.run(&["plan", "--node", WEB1]).code(2);
    assert_snapshot!("plan_web1_fresh", run.stdout);
    assert_eq!(
        std::fs::read_dir(env.root()).unwrap().count(),
        0,
        "a plan must not write to the target"
    );
}

#[test]
fn without_node_the_plan_is_for_this_machine_by_its_host_name() {
    // The harness names the machine `strata_test::HOST_NAME`.
    let env = example();
    let run = env.run(&["plan"]).code(1);
    assert_output!(run.stderr, @"error: unknown node `testhost.example.com`: no nodes/testhost.example.com.toml and no group lists it");
    env.write(
        "nodes/testhost.example.com.toml",
        "environment = \"test\"\nroles = [\"webserver@1.0\"]\n",
    );
    let run = env.run(&["plan"]).code(2);
    assert_output!("plan_this_host", run.stdout);
}

#[test]
fn a_plan_against_an_applied_root_exits_0_and_verbose_lists_unchanged_paths() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    let quiet = env.run(&["plan", "--node", WEB1]).code(0);
    assert_snapshot!("plan_web1_applied", quiet.stdout);
    let verbose = env.run(&["plan", "-v", "--node", WEB1]).code(0);
    assert_output!("plan_web1_applied_verbose", verbose.stdout);
}

#[test]
fn json_plan_has_the_documented_fields() {
    let env = example();
    env.write_root("etc/motd", "old motd\n", 0o664);
    let run = env.run(&["plan", "--json", "--node", WEB1]).code(2);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(v["node"], WEB1);
    assert_eq!(v["environment"], "production");
    assert_eq!(v["summary"]["modify"], 1);
    let motd = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/etc/motd")
        .unwrap();
    assert_eq!(motd["action"], "modify");
    assert_eq!(motd["before"]["type"], "file");
    assert_eq!(motd["before"]["mode"], "0664");
    assert_eq!(motd["after"]["mode"], "0644");
    assert_eq!(motd["after"]["owner"], "root");
    assert_eq!(
        motd["before"]["hash"],
        blake3::hash(b"old motd\n").to_hex().as_str()
    );
    assert!(
        motd["diff"]
            .as_str()
            .unwrap()
            .contains("-old motd\n+Welcome to acme\n"),
        "{}",
        motd["diff"]
    );
    assert_snapshot!("plan_web1_json", run.stdout);
}

#[test]
fn an_apply_with_nothing_to_change_writes_nothing() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    let before = mtimes(&env.root());
    std::thread::sleep(std::time::Duration::from_millis(20));
    let run = env.run(&["apply", "--node", WEB1]).code(0);
    assert_output!(run.stdout, @"Nothing to do for web1.example.com (production): 13 paths already as declared.");
    assert_eq!(mtimes(&env.root()), before, "mtimes or entries changed");
    let listed = env.run(&["generations", "--json"]).code(0).stdout;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["generations"].as_array().unwrap().len(), 1);
}

/// Drifts the motd on the target and applies, so that strata commits once more.
fn drift_and_apply(env: &strata_test::TestEnv) {
    env.write_root("etc/motd", "drifted\n", 0o644);
    env.run(&["apply", "--node", WEB1]).code(0);
}

/// Bytes each top-level step of the last generation read.
fn bytes_read(env: &strata_test::TestEnv) -> std::collections::BTreeMap<String, u64> {
    let run = env.run(&["report", "--json"]).code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let name = s["name"].as_str().unwrap().to_string();
            (name, s["metrics"]["read_bytes"].as_u64().unwrap())
        })
        .collect()
}

#[test]
fn a_plan_reads_only_the_files_whose_metadata_changed() {
    let env = example();
    env.write("modules/base/files/srv/big.bin", &"x".repeat(4 << 20));
    env.run(&["apply", "--node", WEB1]).code(0);
    // Files written in the commit's last clock tick are stamped by the next commit.
    drift_and_apply(&env);
    drift_and_apply(&env);
    let read = bytes_read(&env);
    assert!(read["plan"] < 1 << 20, "the plan read the target: {read:?}");
    // Nor the site's copy: the compile knew it unchanged from its metadata.
    assert!(
        read["compile"] < 1 << 20,
        "the compile read the site: {read:?}"
    );
    // --checksum trusts no metadata: both copies are read in full.
    env.write_root("etc/motd", "drifted again\n", 0o644);
    env.run(&["apply", "--node", WEB1, "--checksum"]).code(0);
    let read = bytes_read(&env);
    for step in ["compile", "plan"] {
        assert!(
            read[step] >= 4 << 20,
            "{step} did not read it all: {read:?}"
        );
    }
    // Yet what is there is known: a verbose plan shows it unchanged with its hash.
    let run = env.run(&["plan", "--node", WEB1, "--json"]).code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let big = v["changes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["path"] == "/srv/big.bin")
        .unwrap();
    assert_eq!(big["action"], "unchanged");
    assert_eq!(
        big["before"]["hash"],
        blake3::hash("x".repeat(4 << 20).as_bytes())
            .to_hex()
            .as_str()
    );
}

#[test]
fn a_file_rewritten_with_the_same_size_and_mtime_is_still_seen() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    drift_and_apply(&env);
    assert_stamped(&env, "/etc/app/mime.types");
    rewrite_in_place_is_seen(&env, "/etc/app/mime.types");
}

/// The target's stamps file has an entry for `target`.
fn assert_stamped(env: &strata_test::TestEnv, target: &str) {
    let bytes = std::fs::read(env.root().join("var/lib/strata/stamps")).unwrap();
    let stamps = strata_state::parse_stamps(&bytes).expect("a whole stamps file");
    let target = strata_types::TargetPath::parse(target).unwrap();
    assert!(stamps.contains_key(&target), "{:?}", stamps.keys());
}

/// Changes a byte of `target` on the target, keeping its size and mtime: the next plan
/// still sees it modified.
fn rewrite_in_place_is_seen(env: &strata_test::TestEnv, target: &str) {
    let path = env.root().join(target.trim_start_matches('/'));
    let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[0] ^= 0x20;
    std::fs::write(&path, &bytes).unwrap();
    set_mtime(&path, mtime);
    let run = env.run(&["plan", "--node", WEB1]).code(2);
    assert!(
        run.stdout.contains(&format!("modify    {target}")),
        "{}",
        run.stdout
    );
}

#[cfg(feature = "failpoints")]
#[test]
fn a_first_apply_stamps_what_it_wrote_without_reading_it_back_and_a_later_write_is_seen() {
    let env = example();
    env.write("modules/base/files/srv/big.bin", &"x".repeat(4 << 20));
    // A pause after staging, longer than a clock tick, so that no file was written in the
    // last tick before the commit (such a file would be read back instead).
    let out = env
        .cmd(&["apply", "--node", WEB1])
        .env("FAILPOINTS", "commit-before-point=sleep(25)")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let read = bytes_read(&env);
    assert!(
        read["stamp"] < 1 << 20,
        "the target was read back: {read:?}"
    );
    assert_stamped(&env, "/srv/big.bin");
    env.run(&["plan", "--node", WEB1]).code(0);
    // Changed at once, keeping size and mtime: the stamp does not hide it.
    rewrite_in_place_is_seen(&env, "/srv/big.bin");
}

/// Sets a file's modification time back to `mtime` (its ctime moves on regardless).
fn set_mtime(path: &std::path::Path, mtime: std::time::SystemTime) {
    std::fs::File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    assert_eq!(std::fs::metadata(path).unwrap().modified().unwrap(), mtime);
}

#[test]
fn a_site_file_edited_in_place_with_the_same_size_and_mtime_is_still_seen() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    drift_and_apply(&env);
    env.run(&["plan", "--node", WEB1]).code(0);
    for (site_file, target) in [
        (
            "modules/app/2.0/files/etc/app/mime.types",
            "/etc/app/mime.types",
        ),
        (
            "modules/app/2.0/templates/etc/app/app.conf.j2",
            "/etc/app/app.conf",
        ),
    ] {
        let path = env.site().join(site_file);
        let mtime = std::fs::metadata(&path).unwrap().modified().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        // Same size: one letter changes case.
        let i = text.find(|c: char| c.is_ascii_lowercase()).unwrap();
        let mut edited = text.clone();
        edited.replace_range(i..=i, &text[i..=i].to_uppercase());
        std::fs::write(&path, &edited).unwrap();
        set_mtime(&path, mtime);
        let run = env.run(&["plan", "--node", WEB1]).code(2);
        assert!(
            run.stdout.contains(&format!("modify    {target}")),
            "{}",
            run.stdout
        );
        std::fs::write(&path, &text).unwrap();
    }
}

#[test]
fn a_changed_parameter_renders_the_unchanged_template_again() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    drift_and_apply(&env);
    env.run(&["plan", "--node", WEB1]).code(0);
    let node = std::fs::read_to_string(env.site().join("nodes/web1.example.com.toml")).unwrap();
    env.write(
        "nodes/web1.example.com.toml",
        &node.replace("app.port = 8080", "app.port = 9090"),
    );
    let run = env.run(&["plan", "--node", WEB1]).code(2);
    assert!(run.stdout.contains("+listen = 9090"), "{}", run.stdout);
    // And a --set, for this plan only.
    let run = env
        .run(&["plan", "--node", WEB1, "--set", "app.port=7070"])
        .code(2);
    assert!(run.stdout.contains("+listen = 7070"), "{}", run.stdout);
}

/// Every path with its mtime and ctime.
fn mtimes(dir: &std::path::Path) -> Vec<(String, i64, i64)> {
    walkdir(dir)
        .into_iter()
        .map(|(p, m)| {
            (
                p,
                m.mtime_nsec() + m.mtime() * 1_000_000_000,
                m.ctime_nsec() + m.ctime() * 1_000_000_000,
            )
        })
        .collect()
}

fn walkdir(dir: &std::path::Path) -> Vec<(String, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.path().symlink_metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.push((e.path().display().to_string(), m));
        }
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

#[test]
fn params_show_each_value_with_the_file_and_line_that_set_it() {
    let env = example();
    let run = env.run(&["params", WEB1, "app"]).code(0);
    assert_snapshot!("params_web1_app", run.stdout);
    let set = env
        .run(&["params", WEB1, "app.port", "--set", "app.port=9090"])
        .code(0);
    assert_eq!(set.stdout.trim(), "app.port = 9090  # --set");
}

#[test]
fn a_plan_does_not_even_touch_access_times() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    // An access time older than the modification time: relatime would update it on read.
    let motd = env.root().join("etc/motd");
    let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_000_000);
    std::fs::File::options()
        .write(true)
        .open(&motd)
        .unwrap()
        .set_times(std::fs::FileTimes::new().set_accessed(old))
        .unwrap();
    env.run(&["plan", "--node", WEB1]).code(0);
    assert_eq!(std::fs::metadata(&motd).unwrap().accessed().unwrap(), old);
}

#[test]
fn a_new_site_checks_plans_and_applies_as_it_is() {
    let env = crate::env();
    let site = env.site();
    let run = env.run(&["new", "site", site.to_str().unwrap()]).code(0);
    assert_output!(run.stdout, @r#"
        created [SITE]/strata.toml
        created [SITE]/params/common.toml
        created [SITE]/params/env/production.toml
        created [SITE]/nodes/node1.example.com.toml
        created [SITE]/groups/all.toml
        created [SITE]/roles/base.toml
        created [SITE]/modules/motd/module.toml
        created [SITE]/modules/motd/files/usr/share/doc/strata-motd/README
        created [SITE]/modules/motd/templates/etc/motd.j2
        "#);
    assert_output!(run.stderr, @"next: strata check --site [SITE] && strata plan --site [SITE] --node node1.example.com --root /tmp/scratch");
    env.run(&[
        "new",
        "module",
        "nginx-conf",
        "--site",
        site.to_str().unwrap(),
    ])
    .code(0);
    let again = env
        .run(&[
            "new",
            "module",
            "nginx-conf",
            "--site",
            site.to_str().unwrap(),
        ])
        .code(1);
    assert_output!(again.stderr, @"error: [SITE]/modules/nginx-conf/module.toml: already exists; nothing was written");
    let check = env.run(&["check"]).code(0);
    assert_output!(check.stdout, @"ok      node1.example.com (2 paths)");
    env.run(&["apply", "--node", "node1.example.com"]).code(0);
    let motd = std::fs::read_to_string(env.root().join("etc/motd")).unwrap();
    assert_eq!(
        motd,
        "Managed by strata\nThis is node1.example.com (production).\n"
    );
}
