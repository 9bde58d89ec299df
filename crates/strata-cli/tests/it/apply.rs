//! `apply`, removal and restore ("down"), role version switches and rollback.

use insta::assert_snapshot;

use crate::{WEB1, assert_output, example};

#[test]
fn apply_lays_out_the_tree_the_site_declares() {
    let env = example();
    let run = env.run(&["apply", "--node", WEB1]).code(0);
    assert_output!("apply_web1_fresh", run.stdout);
    assert_snapshot!("tree_web1", env.tree());
    let conf = std::fs::read_to_string(env.root().join("etc/app/app.conf")).unwrap();
    assert!(
        conf.contains("listen = 8080\nworkers = 4\nlog_level = \"warn\"\ngzip = true\n"),
        "{conf}"
    );
}

#[test]
fn what_the_site_no_longer_declares_is_removed_and_originals_come_back() {
    let env = example();
    std::fs::create_dir_all(env.root().join("var/lib")).unwrap();
    env.write_root("etc/motd", "Debian's own motd\n", 0o600);
    let pristine = env.tree();
    env.run(&["apply", "--node", WEB1]).code(0);
    assert_ne!(env.tree(), pristine);

    // The node no longer has any role or module.
    env.write(
        "nodes/web1.example.com.toml",
        "environment = \"production\"\n",
    );
    env.write("groups/webservers.toml", "nodes = [\"web2.example.com\"]\n");
    let run = env.run(&["apply", "--node", WEB1]).code(0);
    assert_output!("apply_web1_released", run.stdout);
    assert_eq!(
        env.tree(),
        pristine,
        "the target must be back to how strata found it"
    );
    env.run(&["plan", "--node", WEB1]).code(0);
}

#[test]
fn switching_role_version_takes_back_what_the_old_version_had() {
    let env = example();
    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver@1.0\"]\n",
    );
    env.run(&["apply", "--node", WEB1]).code(0);
    let v1 = env.tree();
    assert!(!env.root().join("etc/ntp.conf").exists());

    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver@2.0\"]\n",
    );
    let up = env.run(&["apply", "--node", WEB1]).code(0);
    assert_output!("apply_web1_role_up", up.stdout);
    assert!(env.root().join("etc/app/local.conf").exists());

    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver@1.0\"]\n",
    );
    let down = env.run(&["apply", "--node", WEB1]).code(0);
    assert_output!("apply_web1_role_down", down.stdout);
    assert_eq!(env.tree(), v1);
}

#[test]
fn rollback_replays_an_earlier_generation_without_the_site() {
    let env = example();
    // Each command at its own time: a generation records the time it was committed at.
    let at = |time: &str, args: &[&str]| env.run_env(args, &[("STRATA_TEST_NOW", time)]);
    at("2024-05-01T12:00:00Z", &["apply", "--node", WEB1]).code(0);
    let gen1 = env.tree();
    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver@1.0\"]\n",
    );
    at("2024-05-01T12:05:00Z", &["apply", "--node", WEB1]).code(0);
    let gen2 = env.tree();
    assert_ne!(gen1, gen2);

    std::fs::remove_dir_all(env.site()).unwrap();
    let back = at("2024-05-02T08:30:00Z", &["rollback"]).code(0);
    assert_output!("rollback_web1_to_1", back.stdout);
    assert_eq!(env.tree(), gen1);
    at("2024-05-02T08:31:15Z", &["rollback", "--to", "2"]).code(0);
    assert_eq!(env.tree(), gen2);

    let list = env.run(&["generations", "--json"]).code(0);
    assert_output!("generations_web1_json", list.stdout);
    assert_output!(env.run(&["generations"]).code(0).stdout, @r#"
           1  2024-05-01T12:00:00Z  apply                13 paths  rev none
           2  2024-05-01T12:05:00Z  apply                11 paths  rev none
           3  2024-05-02T08:30:00Z  rollback to 1        13 paths  rev none
           4  2024-05-02T08:31:15Z  rollback to 2        11 paths  rev none (current)
        store: 8 objects, 831 B
        "#);
}

#[test]
fn a_test_clock_that_is_not_an_rfc_3339_time_is_refused() {
    let env = example();
    let run = env
        .run_env(&["apply", "--node", WEB1], &[("STRATA_TEST_NOW", "noon")])
        .code(1);
    assert_output!(run.stderr, @"error: STRATA_TEST_NOW: `noon` is not an RFC 3339 time in UTC: timestamp format is invalid");
    assert_eq!(env.tree(), "", "nothing was applied");
}

#[test]
fn drift_is_shown_and_corrected() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    std::fs::write(env.root().join("etc/motd"), "hand edit\n").unwrap();
    let plan = env.run(&["plan", "--node", WEB1]).code(2);
    assert_output!(plan.stdout, @r#"
        modify    /etc/motd  file content cfc7c7a4 → 7c6ceadb  (base)
        --- /etc/motd
        +++ /etc/motd
        @@ -1 +1,4 @@
        -hand edit
        +Welcome to acme
        +This is web1.example.com (production), managed by strata.
        +Roles: webserver@2.0
        +Questions: ops@acme.example
        Plan for web1.example.com (production): 0 to create, 1 to modify, 0 to remove, 0 to restore, 12 unchanged.
        "#);
    env.run(&["apply", "--node", WEB1]).code(0);
    env.run(&["plan", "--node", WEB1]).code(0);
}

#[test]
fn an_add_only_file_is_created_once_and_never_overwritten() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    std::fs::write(env.root().join("etc/app/local.conf"), "workers = 16\n").unwrap();
    env.run(&["plan", "--node", WEB1]).code(0);
    env.run(&["apply", "--node", WEB1]).code(0);
    assert_eq!(
        std::fs::read_to_string(env.root().join("etc/app/local.conf")).unwrap(),
        "workers = 16\n"
    );

    // Undeclared: strata created it, but the machine made it its own: kept.
    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver@1.0\"]\n",
    );
    let run = env.run(&["apply", "--node", WEB1]).code(0);
    assert_output!("apply_web1_keep", run.stdout);
    assert_eq!(
        std::fs::read_to_string(env.root().join("etc/app/local.conf")).unwrap(),
        "workers = 16\n"
    );
}

#[test]
fn report_shows_each_step_and_each_render() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    let run = env.run(&["report", "--json"]).code(0);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "load", "compile", "plan", "stage", "store", "commit", "stamp"
        ]
    );
    let renders: Vec<&str> = v["steps"][1]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert!(renders.contains(&"render /etc/motd"), "{renders:?}");
    let stage = &v["steps"][3]["metrics"];
    assert!(stage["write_bytes"].as_u64().unwrap() > 0, "{stage}");
    assert!(stage["max_rss"].as_u64().unwrap() > 0, "{stage}");
    let text = env.run(&["report"]).code(0);
    assert_output!(text.stdout, @r#"
        generation 1, site rev none
        step                                               wall       user        sys    max rss       faults       read    written
        load  [measured]
        compile  [measured]
          render /etc/motd  [measured]
          render /etc/app/app.conf  [measured]
          render /etc/ntp.conf  [measured]
        plan  [measured]
        stage  [measured]
        store  [measured]
        commit  [measured]
        stamp  [measured]
        "#);
}
