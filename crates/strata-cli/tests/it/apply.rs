//! `apply`, removal and restore ("down"), role version switches and rollback.

use insta::assert_snapshot;

use crate::{WEB1, example};

#[test]
fn apply_lays_out_the_tree_the_site_declares() {
    let env = example();
    let run = env.run(&["apply", "--node", WEB1]).code(0);
    assert!(
        run.stdout.contains("generation 1 recorded"),
        "{}",
        run.stdout
    );
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
    assert!(run.stdout.contains("restore   /etc/motd"), "{}", run.stdout);
    assert!(
        run.stdout.contains("remove    /etc/app/app.conf"),
        "{}",
        run.stdout
    );
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
    assert!(
        up.stdout.contains("create    /etc/ntp.conf"),
        "{}",
        up.stdout
    );
    assert!(env.root().join("etc/app/local.conf").exists());

    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver@1.0\"]\n",
    );
    let down = env.run(&["apply", "--node", WEB1]).code(0);
    assert!(
        down.stdout.contains("remove    /etc/ntp.conf"),
        "{}",
        down.stdout
    );
    assert_eq!(env.tree(), v1);
}

#[test]
fn rollback_replays_an_earlier_generation_without_the_site() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    let gen1 = env.tree();
    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver@1.0\"]\n",
    );
    env.run(&["apply", "--node", WEB1]).code(0);
    let gen2 = env.tree();
    assert_ne!(gen1, gen2);

    std::fs::remove_dir_all(env.site()).unwrap();
    let back = env.run(&["rollback"]).code(0);
    assert!(
        back.stdout.contains("generation 3 recorded"),
        "{}",
        back.stdout
    );
    assert_eq!(env.tree(), gen1);
    env.run(&["rollback", "--to", "2"]).code(0);
    assert_eq!(env.tree(), gen2);

    let list = env.run(&["generations", "--json"]).code(0);
    let list: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    let kinds: Vec<(u64, &str, Option<u64>, bool)> = list["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["number"].as_u64().unwrap(),
                g["kind"].as_str().unwrap(),
                g["replayed"].as_u64(),
                g["current"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        [
            (1, "apply", None, false),
            (2, "apply", None, false),
            (3, "rollback", Some(1), false),
            (4, "rollback", Some(2), true)
        ]
    );
}

#[test]
fn drift_is_shown_and_corrected() {
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    std::fs::write(env.root().join("etc/motd"), "hand edit\n").unwrap();
    let plan = env.run(&["plan", "--node", WEB1]).code(2);
    assert!(
        plan.stdout.contains("-hand edit\n+Welcome to acme\n"),
        "{}",
        plan.stdout
    );
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
    assert!(
        run.stdout.contains("keep      /etc/app/local.conf"),
        "{}",
        run.stdout
    );
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
    assert!(
        text.stdout.contains("\n  render /etc/motd"),
        "{}",
        text.stdout
    );
}
