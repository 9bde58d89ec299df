//! The site's hooks (`hooks/<event>.d/*`): run around an apply on the node, outside the
//! sandbox and not chrooted, in lexical order, with the run's summary on stdin; a failing
//! or hanging pre-apply hook aborts the apply with nothing committed; a plan lists them and
//! runs none.

use std::time::{Duration, Instant};

use strata_test::TestEnv;

use crate::env;

/// A site whose node `n1` gets one file, and a log outside the root that hooks append to.
fn site() -> (TestEnv, std::path::PathBuf) {
    let e = env();
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", "modules = [\"base\"]\n")
        .write("modules/base/files/etc/motd", "hello\n");
    let log = e.path().join("hooks.log");
    (e, log)
}

/// A hook that appends its name, `$STRATA_HOOK`, `$STRATA_ROOT` and its stdin to `log`,
/// then runs `tail`.
fn hook(e: &TestEnv, name: &str, log: &std::path::Path, tail: &str) {
    e.write_exec(
        &format!("hooks/{name}"),
        &format!(
            "#!/bin/sh\n{{ echo \"== {name} $STRATA_HOOK $STRATA_ROOT $STRATA_NODE\"; cat; echo; }} >> {}\n{tail}\n",
            log.display()
        ),
    );
}

fn read(p: &std::path::Path) -> String {
    std::fs::read_to_string(p).unwrap_or_default()
}

#[test]
fn hooks_run_in_order_around_the_commit_with_the_summary_on_stdin() {
    let (e, log) = site();
    hook(&e, "pre-apply.d/20-second", &log, "echo checked");
    hook(&e, "pre-apply.d/10-first", &log, "");
    hook(&e, "post-apply.d/10-notify", &log, "echo notified");
    hook(&e, "on-failure.d/10-page", &log, "");
    // Not executable, hidden, a backup: not hooks.
    e.write("hooks/pre-apply.d/30-readme", "not a hook\n");
    hook(&e, "pre-apply.d/.hidden", &log, "");
    hook(&e, "pre-apply.d/10-first~", &log, "");

    // A plan lists them and runs none.
    let plan = e.run(&["plan", "--node", "n1"]).code(2);
    assert!(
        plan.stdout.contains(
            "would run hook hooks/pre-apply.d/10-first\n\
             would run hook hooks/pre-apply.d/20-second\n\
             would run hook hooks/post-apply.d/10-notify\n"
        ),
        "{}",
        plan.stdout
    );
    assert!(!log.exists(), "a plan ran a hook:\n{}", read(&log));

    let run = e.run(&["apply", "--node", "n1"]).code(0);
    assert!(
        run.stdout.contains(
            "hook hooks/pre-apply.d/10-first  (ok)\n\
             hook hooks/pre-apply.d/20-second  (ok)\n          checked\n\
             hook hooks/post-apply.d/10-notify  (ok)\n          notified\n"
        ),
        "{}",
        run.stdout
    );
    let text = read(&log);
    let root = e.root().display().to_string();
    let heads: Vec<&str> = text.lines().filter(|l| l.starts_with("== ")).collect();
    assert_eq!(
        heads,
        [
            format!("== pre-apply.d/10-first pre-apply {root} n1"),
            format!("== pre-apply.d/20-second pre-apply {root} n1"),
            format!("== post-apply.d/10-notify post-apply {root} n1"),
        ],
        "{text}"
    );
    // The summaries: what will change before, the generation after.
    let summaries: Vec<serde_json::Value> = text
        .split("\n== ")
        .filter_map(|s| s.split_once('\n'))
        .map(|(_, json)| serde_json::from_str(json.trim()).expect(json))
        .collect();
    assert_eq!(summaries[0]["event"], "pre-apply");
    assert_eq!(summaries[0]["result"], "pending");
    assert_eq!(summaries[0]["changes"][0]["path"], "/etc");
    assert_eq!(summaries[0]["changes"][1]["path"], "/etc/motd");
    assert_eq!(summaries[2]["event"], "post-apply");
    assert_eq!(summaries[2]["generation"], 1);
    assert_eq!(summaries[2]["root"], root);

    // Nothing to do: no hook runs.
    std::fs::remove_file(&log).unwrap();
    e.run(&["apply", "--node", "n1"]).code(0);
    assert!(!log.exists(), "{}", read(&log));
}

#[test]
fn a_failing_pre_apply_hook_aborts_the_apply_naming_it_with_nothing_committed() {
    let (e, log) = site();
    hook(
        &e,
        "pre-apply.d/10-gate",
        &log,
        "echo 'change freeze' >&2; exit 3",
    );
    hook(&e, "pre-apply.d/20-never", &log, "");
    hook(&e, "on-failure.d/10-page", &log, "echo paged");
    let pristine = e.tree();
    let run = e.run(&["apply", "--node", "n1"]).code(1);
    assert!(
        run.stderr
            .contains("hook hooks/pre-apply.d/10-gate exited with status 3; nothing was committed"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("change freeze"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("hook hooks/on-failure.d/10-page  (ok)\n          paged"),
        "{}",
        run.stderr
    );
    assert_eq!(e.tree(), pristine, "the target changed");
    assert!(!e.root().join("var/lib/strata/current").exists());
    let text = read(&log);
    assert!(!text.contains("20-never"), "{text}");
    assert!(text.contains("\"result\": \"failed\""), "{text}");
}

#[test]
fn a_hanging_pre_apply_hook_is_killed_at_its_timeout_and_named() {
    let (e, _log) = site();
    e.write(
        "strata.toml",
        "[site]\nname = \"t\"\n[hooks]\ntimeout = \"1s\"\n",
    );
    // It also leaves a child behind, which goes with it.
    e.write_exec(
        "hooks/pre-apply.d/10-hang",
        "#!/bin/sh\nsleep 300 &\nsleep 300\n",
    );
    let pristine = e.tree();
    let start = Instant::now();
    let run = e.run(&["apply", "--node", "n1"]).code(1);
    assert!(
        start.elapsed() < Duration::from_secs(20),
        "{:?}",
        start.elapsed()
    );
    assert!(
        run.stderr
            .contains("hook hooks/pre-apply.d/10-hang timed out after 1s; nothing was committed"),
        "{}",
        run.stderr
    );
    assert_eq!(e.tree(), pristine);
}

#[test]
fn a_failing_post_apply_hook_is_reported_and_the_commit_stands() {
    let (e, _log) = site();
    e.write_exec("hooks/post-apply.d/10-notify", "#!/bin/sh\nexit 7\n");
    let run = e.run(&["apply", "--node", "n1"]).code(3);
    assert!(
        run.stderr.contains(
            "generation 1 committed; a hook run after the commit failed:\n  \
             hooks/post-apply.d/10-notify: exit status 7"
        ),
        "{}",
        run.stderr
    );
    assert_eq!(read(&e.root().join("etc/motd")), "hello\n");
}

#[test]
fn a_bad_hooks_timeout_is_a_site_error() {
    let (e, _log) = site();
    e.write(
        "strata.toml",
        "[site]\nname = \"t\"\n[hooks]\ntimeout = 0\n",
    );
    let run = e.run(&["plan", "--node", "n1"]).code(1);
    assert!(run.stderr.contains("timeout must be"), "{}", run.stderr);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the test hosts scripts/test builds (feature host-tests)"
)]
fn a_pushed_node_runs_the_sites_hooks_on_the_node_and_a_failing_gate_stops_it() {
    let f = crate::push::fleet(1);
    // Run on the node: they see the node's own files, and write there.
    f.env.write_exec(
        "hooks/post-apply.d/10-mark",
        "#!/bin/sh\ncat > /etc/post-apply.json\necho \"$STRATA_HOOK $STRATA_ROOT\" > /etc/post-apply.env\n",
    );
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    let host = f.hosts.host("h1.test");
    assert_eq!(
        host.read("/etc/post-apply.env").as_deref(),
        Some("post-apply /\n")
    );
    let summary: serde_json::Value =
        serde_json::from_str(&host.read("/etc/post-apply.json").unwrap()).unwrap();
    assert_eq!(summary["node"], "h1.test");
    assert_eq!(summary["generation"], 1);

    // A pre-apply gate that fails: the node is reported failed, naming it, unchanged.
    f.env.write_exec(
        "hooks/pre-apply.d/10-freeze",
        "#!/bin/sh\necho frozen; exit 1\n",
    );
    f.env.write(
        "modules/motd/templates/etc/motd.j2",
        "changed on {{ node.name }}\n",
    );
    let before = host.read("/etc/motd");
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 1, "{nodes:?}");
    let message = nodes[0]["error"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(
            "hook hooks/pre-apply.d/10-freeze exited with status 1; nothing was committed"
        ),
        "{message}"
    );
    assert_eq!(host.read("/etc/motd"), before);
}
