//! Scripts and executable templates in the overlay sandbox, on tiny busybox roots: what a
//! plan reports is exactly what the apply then does, path by path and attribute by
//! attribute; failures commit nothing; intercepted commands run after the commit.
//!
//! (Over 600 lines, kept whole: the fidelity test's table of typical scripts and the
//! prediction it is checked against are a third of it, and the other sixteen tests, each
//! a few dozen lines, use the same site, script and plan helpers, which `typechange` and
//! `resources` import from here.)

use std::collections::BTreeMap;

use serde_json::Value;
use strata_test::{TestEnv, require_busybox_root, require_debian_root};

use crate::env;

/// A site with one node `n1` applying module `app`, and a target with a few files.
fn site(e: &TestEnv) {
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write(
            "nodes/n1.toml",
            "modules = [\"app\"]\n[params]\napp.port = 8080\n",
        )
        .write("modules/app/module.toml", "[params]\nport = 80\n")
        .write_root("etc/app.conf", "listen 80\nworkers 2\n", 0o644)
        .write_root("etc/hosts", "127.0.0.1 localhost\n", 0o644)
        .write_root("etc/old.conf", "old\n", 0o644)
        .write_root("srv/old/a", "a\n", 0o644)
        .write_root("srv/old/sub/b", "b\n", 0o644)
        .write_root("opt/tool", "#!/bin/sh\n", 0o755)
        .write_root("var/log/.keep", "", 0o644);
    std::os::unix::fs::symlink("app.conf", e.root().join("etc/link")).expect("link");
    // Where strata keeps its state: not part of what the scripts change.
    std::fs::create_dir_all(e.root().join("var/lib")).expect("var/lib");
}

/// Writes an executable script of module `app` (`set -e` first).
pub(crate) fn script(e: &TestEnv, name: &str, body: &str) {
    let path = e.site().join("modules/app/scripts").join(name);
    strata_test::write(&path, &format!("#!/bin/sh\nset -e\n{body}\n"));
    let mut perms = std::fs::metadata(&path).expect("script").permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perms, 0o755);
    std::fs::set_permissions(&path, perms).expect("chmod");
}

/// The tree lines (as `strata_test::tree` writes them) keyed by path.
fn lines(tree: &str) -> BTreeMap<String, String> {
    tree.lines()
        .map(|l| (l.split(' ').next().unwrap_or("").to_string(), l.to_string()))
        .collect()
}

/// What the tree will look like once the plan's changes are applied.
fn predicted(before: &str, plan: &Value) -> BTreeMap<String, String> {
    let mut tree = lines(before);
    for c in plan["changes"].as_array().expect("changes") {
        let path = c["path"].as_str().expect("path").to_string();
        let a = &c["after"];
        let owner = || format!("{}:{}", a["uid"], a["gid"]);
        let line = match a["type"].as_str().expect("type") {
            "absent" => {
                tree.remove(&path);
                continue;
            }
            // Sensitive content (files others cannot read) has no hash in plans.
            "file" => match a["hash"].as_str() {
                Some(hash) => format!(
                    "{path} file {} {} {} {}",
                    a["mode"].as_str().expect("mode"),
                    owner(),
                    a["size"],
                    &hash[..12]
                ),
                None => format!(
                    "{path} file {} {} {}",
                    a["mode"].as_str().expect("mode"),
                    owner(),
                    a["size"]
                ),
            },
            "dir" => format!(
                "{path} dir {} {}",
                a["mode"].as_str().expect("mode"),
                owner()
            ),
            "link" => format!("{path} link -> {}", a["target"].as_str().expect("target")),
            "fifo" => format!(
                "{path} fifo {} {}",
                a["mode"].as_str().expect("mode"),
                owner()
            ),
            other => panic!("unexpected type {other}"),
        };
        tree.insert(path, line);
    }
    tree
}

/// Plans, applies, and checks that the apply did exactly what the plan said. Returns the
/// plan's JSON.
pub(crate) fn plan_equals_apply(e: &TestEnv) -> Value {
    let before = e.tree();
    let plan = e.run(&["plan", "--node", "n1", "--json"]);
    assert!(
        plan.code == 0 || plan.code == 2,
        "plan failed:\n{}\n{}",
        plan.stdout,
        plan.stderr
    );
    assert_eq!(e.tree(), before, "a plan changed the target");
    let json: Value = serde_json::from_str(&plan.stdout).expect("plan json");
    e.run(&["apply", "--node", "n1"]).code(0);
    let want = predicted(&before, &json);
    let mut have = lines(&e.tree());
    for (path, line) in have.iter_mut() {
        if want.get(path).is_some_and(|w| w.split(' ').count() == 5) && line.contains(" file ") {
            *line = line
                .rsplit_once(' ')
                .map_or(line.clone(), |(l, _)| l.to_string());
        }
    }
    assert_eq!(have, want, "the apply did not do what the plan said");
    json
}

/// The (action, path) pairs a plan changes.
pub(crate) fn changed_paths(plan: &Value) -> Vec<(String, String)> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .filter(|c| c["action"] != "unchanged")
        .map(|c| {
            (
                c["action"].as_str().unwrap_or("").to_string(),
                c["path"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

/// Each case: a script body and the (action, path) pairs its plan must report.
const CASES: &[(&str, &[(&str, &str)])] = &[
    (
        "sed -i 's/80/8080/' /etc/app.conf",
        &[("modify", "/etc/app.conf")],
    ),
    (
        "sed -i '/workers/d' /etc/app.conf",
        &[("modify", "/etc/app.conf")],
    ),
    (
        "echo '10.0.0.5 db' >> /etc/hosts",
        &[("modify", "/etc/hosts")],
    ),
    (
        "echo x | tee -a /etc/hosts >/dev/null",
        &[("modify", "/etc/hosts")],
    ),
    (": > /etc/hosts", &[("modify", "/etc/hosts")]),
    (
        "cp /etc/app.conf /etc/app.copy && chmod 0640 /etc/app.copy",
        &[("create", "/etc/app.copy")],
    ),
    (
        "cp -a /etc/app.conf /etc/app.bak",
        &[("create", "/etc/app.bak")],
    ),
    (
        "mv /etc/old.conf /etc/new.conf",
        &[("create", "/etc/new.conf"), ("remove", "/etc/old.conf")],
    ),
    (
        "rm -rf /srv/old",
        &[
            ("remove", "/srv/old"),
            ("remove", "/srv/old/a"),
            ("remove", "/srv/old/sub"),
            ("remove", "/srv/old/sub/b"),
        ],
    ),
    (
        "mkdir -p /opt/x && tar -C /etc -cf /tmp/e.tar app.conf hosts && tar -C /opt/x -xf /tmp/e.tar",
        &[
            ("create", "/opt/x"),
            ("create", "/opt/x/app.conf"),
            ("create", "/opt/x/hosts"),
        ],
    ),
    (
        "ln -sf /etc/app.conf /etc/app.link",
        &[("create", "/etc/app.link")],
    ),
    ("ln -sfn /srv/old /etc/link", &[("modify", "/etc/link")]),
    ("rm /etc/link", &[("remove", "/etc/link")]),
    ("chmod 0600 /etc/app.conf", &[("modify", "/etc/app.conf")]),
    ("chmod +x /etc/hosts", &[("modify", "/etc/hosts")]),
    (
        "chown 1000:1000 /etc/app.conf",
        &[("modify", "/etc/app.conf")],
    ),
    ("touch -d '2020-01-01 00:00' /etc/app.conf", &[]),
    ("cat /etc/app.conf > /tmp/x && cp /tmp/x /etc/app.conf", &[]),
    (
        "echo log >> /var/log/app.log && echo t > /tmp/t && mkdir -p /run/app",
        &[],
    ),
    ("echo tmp > /etc/scratch && rm /etc/scratch", &[]),
    (
        "mkdir -p /var/www/html && echo hi > /var/www/html/index.html",
        &[
            ("create", "/var/www"),
            ("create", "/var/www/html"),
            ("create", "/var/www/html/index.html"),
        ],
    ),
    (
        "rm -rf /srv/old && mkdir /srv/old && echo new > /srv/old/c",
        &[
            ("create", "/srv/old/c"),
            ("remove", "/srv/old/a"),
            ("remove", "/srv/old/sub"),
            ("remove", "/srv/old/sub/b"),
        ],
    ),
    (
        "mv /srv/old /srv/moved",
        &[
            ("create", "/srv/moved"),
            ("create", "/srv/moved/a"),
            ("create", "/srv/moved/sub"),
            ("create", "/srv/moved/sub/b"),
            ("remove", "/srv/old"),
            ("remove", "/srv/old/a"),
            ("remove", "/srv/old/sub"),
            ("remove", "/srv/old/sub/b"),
        ],
    ),
    (
        "ln /etc/app.conf /etc/app.hard",
        &[("create", "/etc/app.hard")],
    ),
    (
        "(umask 077; echo secret > /etc/secret)",
        &[("create", "/etc/secret")],
    ),
    (
        "mkdir -p /etc/app.d && for i in 1 2 3; do echo $i > /etc/app.d/$i.conf; done",
        &[
            ("create", "/etc/app.d"),
            ("create", "/etc/app.d/1.conf"),
            ("create", "/etc/app.d/2.conf"),
            ("create", "/etc/app.d/3.conf"),
        ],
    ),
    ("rm /opt/tool", &[("remove", "/opt/tool")]),
    ("mkfifo -m 0640 /etc/pipe", &[("create", "/etc/pipe")]),
    (
        "find /srv/old -type f -exec rm {} +",
        &[("remove", "/srv/old/a"), ("remove", "/srv/old/sub/b")],
    ),
    (
        "awk '{print toupper($0)}' /etc/hosts > /etc/hosts.new && mv /etc/hosts.new /etc/hosts",
        &[("modify", "/etc/hosts")],
    ),
    (
        "sed -i \"s/listen .*/listen $STRATA_P_app_port/\" /etc/app.conf",
        &[("modify", "/etc/app.conf")],
    ),
    (
        "[ \"$STRATA_NOOP\" = 1 ] || [ \"$STRATA_NOOP\" = 0 ]; echo \"$STRATA_NODE $STRATA_ENVIRONMENT $STRATA_MODULE\" > /etc/who",
        &[("create", "/etc/who")],
    ),
    (
        "grep -q app.port \"$STRATA_PARAMS\" || grep -q '\"port\":8080' \"$STRATA_PARAMS\"; cp \"$STRATA_PARAMS\" /etc/params.json",
        &[("create", "/etc/params.json")],
    ),
];

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn every_script_does_on_apply_exactly_what_its_plan_reported() {
    for (i, (body, want)) in CASES.iter().enumerate() {
        let e = env();
        require_busybox_root!(e);
        site(&e);
        script(&e, "10-case.sh", body);
        let plan = plan_equals_apply(&e);
        let mut got = changed_paths(&plan);
        got.sort();
        let mut want: Vec<(String, String)> = want
            .iter()
            .map(|(a, p)| (a.to_string(), p.to_string()))
            .collect();
        want.sort();
        assert_eq!(got, want, "case {i}: `{body}`");
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_later_module_sees_what_an_earlier_one_wrote() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    e.write("nodes/n1.toml", "modules = [\"b\"]\n")
        .write("modules/a/files/etc/a.conf", "from a\n")
        .write("modules/b/module.toml", "requires = [\"a\"]\n");
    let path = e.site().join("modules/b/scripts/10-copy");
    strata_test::write(
        &path,
        "#!/bin/sh\nset -e\ncp /etc/a.conf /etc/b.conf\necho ' and b' >> /etc/b.conf\n",
    );
    let plan = plan_equals_apply(&e);
    assert_eq!(
        changed_paths(&plan),
        [
            ("create".into(), "/etc/a.conf".into()),
            ("create".into(), "/etc/b.conf".into())
        ]
    );
    let b = std::fs::read_to_string(e.root().join("etc/b.conf")).expect("b.conf");
    assert_eq!(b, "from a\n and b\n");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn idempotent_scripts_plan_nothing_after_an_apply_and_their_module_going_away_undoes_them() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    let original = e.tree();
    script(
        &e,
        "10-conf.sh",
        "sed -i \"s/listen .*/listen $STRATA_P_app_port/\" /etc/app.conf\n\
         grep -q db /etc/hosts || echo '10.0.0.5 db' >> /etc/hosts\n\
         mkdir -p /srv/data\nrm -f /etc/old.conf\nln -sf /etc/app.conf /etc/app.link\n\
         [ -p /srv/data/pipe ] || mkfifo /srv/data/pipe",
    );
    e.run(&["apply", "--node", "n1"]).code(0);
    let applied = e.tree();
    let again = e.run(&["plan", "--node", "n1"]).code(0);
    assert!(
        again.stdout.contains("0 to create, 0 to modify"),
        "{}",
        again.stdout
    );
    // Rollback-style "down": the node no longer applies the module.
    e.write("nodes/n1.toml", "modules = []\n");
    let down = e.run(&["plan", "--node", "n1"]).code(2);
    assert!(
        down.stdout.contains("restore   /etc/old.conf"),
        "{}",
        down.stdout
    );
    assert!(
        down.stdout.contains("remove    /srv/data"),
        "{}",
        down.stdout
    );
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(
        e.tree(),
        original,
        "taking the module away restores the target"
    );
    // And rolling back to generation 1 brings the scripts' effects back, without the site.
    e.run(&["rollback", "--to", "1"]).code(0);
    assert_eq!(e.tree(), applied);
}

/// A file or directory a script deletes comes back with every extended attribute it had
/// when the module goes away, not only with its content, mode and owner.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn what_a_script_deletes_comes_back_with_its_extended_attributes() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    let xattr = |rel: &str, name: &str, value: &[u8]| {
        rustix::fs::lsetxattr(
            e.root().join(rel),
            name,
            value,
            rustix::fs::XattrFlags::empty(),
        )
        .expect("setxattr");
    };
    xattr("srv/old/a", "user.kept", b"yes");
    xattr("srv/old/sub", "user.dir", b"1");
    let read = |rel: &str, name: &str| {
        let mut buf = [0u8; 64];
        rustix::fs::lgetxattr(e.root().join(rel), name, &mut buf[..])
            .ok()
            .map(|n| buf[..n].to_vec())
    };
    let original = e.tree();
    script(&e, "10-rm.sh", "rm -rf /srv/old");
    let plan = e.run(&["plan", "--node", "n1"]).code(2);
    assert!(
        plan.stdout.contains("/srv/old/a ") && plan.stdout.contains("user.kept=0x796573"),
        "{}",
        plan.stdout
    );
    e.run(&["apply", "--node", "n1"]).code(0);
    assert!(!e.root().join("srv/old").exists());
    e.write("nodes/n1.toml", "modules = []\n");
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(e.tree(), original);
    assert_eq!(read("srv/old/a", "user.kept").as_deref(), Some(&b"yes"[..]));
    assert_eq!(read("srv/old/sub", "user.dir").as_deref(), Some(&b"1"[..]));
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_failing_script_commits_nothing_and_says_what_failed() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    e.write("modules/app/files/etc/motd", "hello\n");
    script(&e, "10-edit.sh", "echo edited >> /etc/hosts");
    script(
        &e,
        "20-fail.sh",
        "echo 'cannot reach the database' >&2\nexit 3",
    );
    script(&e, "15-say.sh", "echo 'checking the database'");
    let before = e.tree();
    let run = e.run(&["apply", "--node", "n1"]).code(1);
    assert!(
        run.stdout
            .contains("app scripts/15-say.sh: checking the database"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("module app: scripts/20-fail.sh failed (exit status 3)"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains("cannot reach the database"),
        "{}",
        run.stderr
    );
    assert_eq!(e.tree(), before);
    assert!(!e.root().join("var/lib/strata/current").exists());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_script_running_past_its_timeout_fails_the_run() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    e.write(
        "modules/app/module.toml",
        "timeout = \"1s\"\n[params]\nport = 80\n",
    );
    script(&e, "10-slow.sh", "echo started > /etc/slow\nsleep 30");
    let before = e.tree();
    let run = e.run(&["apply", "--node", "n1"]).code(1);
    assert!(run.stderr.contains("timed out after 1s"), "{}", run.stderr);
    assert_eq!(e.tree(), before);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn intercepted_commands_are_reported_by_plan_and_run_once_after_the_commit() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    e.write(
        "strata.toml",
        "[site]\nname = \"t\"\n[sandbox]\nintercept = [\"/usr/local/bin/deploy-hook\"]\n",
    )
    .write_root(
        "usr/local/bin/deploy-hook",
        "#!/bin/sh\n# runs on the target: the commit must already be there\ngrep -q 8080 /etc/app.conf && echo \"committed $*\" >> /hook.log\n",
        0o755,
    );
    script(
        &e,
        "10-conf.sh",
        "sed -i 's/80/8080/' /etc/app.conf\necho 'restarting the app'\ndeploy-hook first\n/usr/local/bin/deploy-hook second\nsystemctl restart nginx",
    );
    let plan = e.run(&["plan", "--node", "n1"]).code(2);
    assert!(
        plan.stdout
            .contains("would run /usr/local/bin/deploy-hook first"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout
            .contains("would run /usr/local/bin/deploy-hook second"),
        "{}",
        plan.stdout
    );
    assert!(
        plan.stdout.contains("would run systemctl restart nginx"),
        "{}",
        plan.stdout
    );
    assert!(
        !e.root().join("hook.log").exists(),
        "a plan ran an intercepted command"
    );
    // The busybox root has no systemctl: the restart is reported as failed, not hidden,
    // and the apply exits 3 (committed; a command after the commit failed).
    let apply = e.run(&["apply", "--node", "n1", "--json"]).code(3);
    let json: Value = serde_json::from_str(&apply.stdout).expect("json");
    let log = std::fs::read_to_string(e.root().join("hook.log")).expect("the hook ran");
    assert_eq!(log, "committed first\ncommitted second\n");
    let activations = json["activations"].as_array().expect("activations");
    assert_eq!(activations.len(), 3);
    assert_eq!(activations[0]["exit"], 0);
    assert_eq!(activations[0]["status"], "ok");
    assert_eq!(activations[2]["status"], "not-started");
    assert!(
        activations[2]["error"]
            .as_str()
            .is_some_and(|e| e.contains("could not start"))
    );
    assert!(
        apply.stderr.contains(
            "generation 1 committed; 1 of 3 commands run after the commit failed:\n  \
             systemctl restart nginx: could not start"
        ),
        "{}",
        apply.stderr
    );
    let report = e.run(&["report", "--json"]).code(0);
    assert!(
        report.stdout.contains("\"activations\""),
        "{}",
        report.stdout
    );
    // What the scripts printed is kept with the run.
    let text = e.run(&["report"]).code(0);
    assert!(
        text.stdout
            .contains("app scripts/10-conf.sh: restarting the app"),
        "{}",
        text.stdout
    );
    assert!(
        text.stdout.contains("ran systemctl restart nginx"),
        "{}",
        text.stdout
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn executable_templates_print_their_content_and_are_idempotent() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    let path = e.site().join("modules/app/templates/etc/motd.sh-template");
    strata_test::write(
        &path,
        "#!/bin/sh\necho \"node $STRATA_NODE port $STRATA_P_app_port\"\nhostname\n",
    );
    let plan = plan_equals_apply(&e);
    assert_eq!(
        changed_paths(&plan),
        [("create".into(), "/etc/motd".into())]
    );
    let motd = std::fs::read_to_string(e.root().join("etc/motd")).expect("motd");
    assert_eq!(motd, "node n1 port 8080\nn1\n");
    let mode = std::fs::metadata(e.root().join("etc/motd")).expect("motd");
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o644
    );
    e.run(&["plan", "--node", "n1"]).code(0);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn plan_scripts_have_no_network_but_loopback() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    // In a plan the script sees loopback alone (else it fails the plan); in an apply, the
    // host's interfaces.
    script(
        &e,
        "10-net.sh",
        "n=$(grep -c ':' /proc/net/dev)\n\
         if [ \"$STRATA_NOOP\" = 1 ]; then test \"$n\" = 1; grep -q 'lo:' /proc/net/dev; fi\n\
         echo $n > /etc/ifaces",
    );
    e.run(&["plan", "--node", "n1"]).code(2);
    e.run(&["apply", "--node", "n1"]).code(0);
    let host = std::fs::read_to_string("/proc/net/dev")
        .expect("host interfaces")
        .lines()
        .filter(|l| l.contains(':'))
        .count();
    let applied = std::fs::read_to_string(e.root().join("etc/ifaces")).expect("ifaces");
    assert_eq!(
        applied.trim(),
        host.to_string(),
        "the apply saw the host's interfaces"
    );
    // `plan_network = true`: the module's scripts see the host's interfaces in a plan too,
    // so the file the apply wrote is unchanged.
    e.write(
        "modules/app/module.toml",
        "plan_network = true\n[params]\nport = 80\n",
    );
    script(&e, "10-net.sh", "grep -c ':' /proc/net/dev > /etc/ifaces");
    e.run(&["plan", "--node", "n1"]).code(0);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn scripts_cannot_see_or_signal_host_processes() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    // This test's own process, seen from the host, must be out of reach.
    let me = std::process::id();
    script(
        &e,
        "10-pid.sh",
        &format!(
            "ls /proc | grep -E '^[0-9]+$' | wc -l > /etc/pids\n\
             if ls /proc/1/root/ >/dev/null 2>&1; then echo 'reached the root of init' >&2; exit 1; fi\n\
             if kill -0 {me} 2>/dev/null; then echo 'signalled a host process' >&2; exit 1; fi"
        ),
    );
    e.run(&["apply", "--node", "n1"]).code(0);
    let pids: usize = std::fs::read_to_string(e.root().join("etc/pids"))
        .expect("pids")
        .trim()
        .parse()
        .expect("a number");
    assert!(pids < 10, "the script saw {pids} processes");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root: scripts/test runs as root (feature host-tests)"
)]
fn a_target_without_a_shell_is_refused_clearly() {
    let e = env();
    strata_test::require_root!();
    site(&e);
    script(&e, "10-x.sh", "true");
    let before = e.tree();
    let run = e.run(&["apply", "--node", "n1"]).code(1);
    assert!(run.stderr.contains("has no /bin/sh"), "{}", run.stderr);
    assert_eq!(e.tree(), before);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_device_node_made_by_a_script_is_refused_by_the_kernel() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    // Scripts are root only in the sandbox's user namespace: the kernel refuses device
    // nodes (the observation's own refusal of them stays behind it).
    script(&e, "10-dev.sh", "mknod /etc/null c 1 3");
    let before = e.tree();
    let run = e.run(&["apply", "--node", "n1"]).code(1);
    assert!(
        run.stderr.contains("scripts/10-dev.sh failed") && run.stderr.contains("not permitted"),
        "{}",
        run.stderr
    );
    assert_eq!(e.tree(), before);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn shell_shows_what_the_session_changed_and_commits_nothing() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    script(&e, "10-conf.sh", "sed -i 's/80/8080/' /etc/app.conf");
    let before = e.tree();
    let mut child = e
        .cmd(&["shell", "--node", "n1"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run strata shell");
    std::io::Write::write_all(
        &mut child.stdin.take().expect("stdin"),
        b"grep -q 8080 /etc/app.conf && echo from-shell > /etc/session\nexit\n",
    )
    .expect("type into the shell");
    let out = child.wait_with_output().expect("strata shell");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("modify    /etc/app.conf"), "{stdout}");
    assert!(stdout.contains("create    /etc/session"), "{stdout}");
    assert_eq!(e.tree(), before, "a shell session committed something");
}

/// The apply dies once it marked the second of three deferred commands started: the next
/// command finishes the commit and runs the third; none runs twice.
#[cfg(feature = "failpoints")]
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn deferred_commands_run_once_across_a_crash() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    e.write(
        "strata.toml",
        "[site]\nname = \"t\"\n[sandbox]\nintercept = [\"/usr/local/bin/hook\"]\n",
    )
    .write_root(
        "usr/local/bin/hook",
        "#!/bin/sh\necho \"$1\" >> /hook.log\n",
        0o755,
    );
    script(
        &e,
        "10-conf.sh",
        "sed -i 's/80/8080/' /etc/app.conf\nhook first\nhook second\nhook third",
    );
    let out = e
        .cmd(&["apply", "--node", "n1"])
        .env("FAILPOINTS", "activate-after-mark=1*off->return")
        .output()
        .expect("apply");
    assert!(!out.status.success(), "the apply should have been stopped");
    let log = || std::fs::read_to_string(e.root().join("hook.log")).unwrap_or_default();
    assert_eq!(log(), "first\n");
    // The command that finishes the commit says what it ran, and exits 3: the second
    // command's outcome is unknown (it was marked started when the apply died).
    let recovering = e.run(&["generations"]).code(3);
    assert_eq!(
        log(),
        "first\nthird\n",
        "recovery runs what had not started, once"
    );
    assert!(
        recovering
            .stderr
            .contains("note: finished the commit of generation 1"),
        "{}",
        recovering.stderr
    );
    assert!(
        recovering.stderr.contains(
            "generation 1 committed (its interrupted commit was finished by this command); \
             1 of 3 commands run after the commit failed:\n  \
             /usr/local/bin/hook second: was running when strata was interrupted; not run a second time"
        ),
        "{}",
        recovering.stderr
    );
    e.run(&["generations"]).code(0);
    assert_eq!(log(), "first\nthird\n");
    let app = std::fs::read_to_string(e.root().join("etc/app.conf")).expect("app.conf");
    assert!(app.contains("8080"), "the commit was finished");
    let report = e.run(&["report", "--json"]).code(0);
    assert!(
        report.stdout.contains("not run a second time"),
        "{}",
        report.stdout
    );
    // How the first command went before the crash is kept, not taken for interrupted.
    let generations: Value =
        serde_json::from_str(&e.run(&["generations", "--json"]).code(0).stdout).expect("json");
    let statuses: Vec<&Value> = (generations["generations"][0]["commands"]
        .as_array()
        .expect("commands"))
    .iter()
    .map(|c| &c["status"])
    .collect();
    assert_eq!(statuses, ["ok", "interrupted", "ok"]);
}

/// A command run after the commit that fails does not make the apply a success: exit 3,
/// the failure named with its status, and recorded with the generation.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_deferred_command_that_fails_makes_the_apply_exit_3_and_is_recorded() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    e.write(
        "strata.toml",
        "[site]\nname = \"t\"\n[sandbox]\nintercept = [\"/usr/local/bin/hook\"]\n",
    )
    .write_root(
        "usr/local/bin/hook",
        "#!/bin/sh\necho \"$1\" >> /hook.log\n\
         if [ \"$1\" = second ]; then echo 'cannot reach the bus' >&2; exit 4; fi\n",
        0o755,
    );
    script(
        &e,
        "10-conf.sh",
        "sed -i 's/80/8080/' /etc/app.conf\nhook first\nhook second",
    );
    let apply = e.run(&["apply", "--node", "n1"]).code(3);
    assert!(
        apply.stderr.contains(
            "error: generation 1 committed; 1 of 2 commands run after the commit failed:\n  \
             /usr/local/bin/hook second: exit status 4 (app scripts/10-conf.sh)"
        ),
        "{}",
        apply.stderr
    );
    assert!(
        apply.stdout.contains("cannot reach the bus"),
        "{}",
        apply.stdout
    );
    let app = std::fs::read_to_string(e.root().join("etc/app.conf")).expect("app.conf");
    assert!(app.contains("8080"), "the commit stands");

    let generations: Value =
        serde_json::from_str(&e.run(&["generations", "--json"]).code(0).stdout).expect("json");
    let commands = &generations["generations"][0]["commands"];
    assert_eq!(
        commands[0]["command"]["argv"],
        serde_json::json!(["/usr/local/bin/hook", "first"])
    );
    assert_eq!(commands[0]["status"], "ok");
    assert_eq!(commands[1]["status"], "failed");
    assert_eq!(commands[1]["exit"], 4);
    let listed = e.run(&["generations"]).code(0);
    assert!(
        listed.stdout.contains("2 commands (1 failed)"),
        "{}",
        listed.stdout
    );
    let report = e.run(&["report"]).code(0);
    assert!(
        report
            .stdout
            .contains("ran /usr/local/bin/hook second  (exit status 4; app scripts/10-conf.sh)"),
        "{}",
        report.stdout
    );
    let generation = std::fs::read_to_string(e.root().join("var/lib/strata/generations/1.json"))
        .expect("generation file");
    let generation: Value = serde_json::from_str(&generation).expect("json");
    assert_eq!(
        generation["commands"][1]["argv"],
        serde_json::json!(["/usr/local/bin/hook", "second"])
    );
}

/// A deferred command gets the time limit of the module that called it; past it, it and
/// everything it started are killed, and the apply exits 3.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_deferred_command_past_its_modules_timeout_is_killed_with_its_process_group() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    e.write(
        "strata.toml",
        "[site]\nname = \"t\"\n[sandbox]\nintercept = [\"/usr/local/bin/hook\"]\n",
    )
    .write(
        "modules/app/module.toml",
        "timeout = \"1s\"\n[params]\nport = 80\n",
    )
    .write_root(
        "usr/local/bin/hook",
        "#!/bin/sh\nsleep 60 &\necho $! > /bg.pid\nsleep 60\n",
        0o755,
    );
    script(&e, "10-conf.sh", "sed -i 's/80/8080/' /etc/app.conf\nhook");
    let start = std::time::Instant::now();
    let apply = e.run(&["apply", "--node", "n1", "--json"]).code(3);
    assert!(
        start.elapsed() < std::time::Duration::from_secs(30),
        "{:?}",
        start.elapsed()
    );
    let json: Value = serde_json::from_str(&apply.stdout).expect("json");
    assert_eq!(json["activations"][0]["status"], "timed-out");
    assert_eq!(json["activations"][0]["error"], "timed out after 1s");
    assert!(
        apply
            .stderr
            .contains("/usr/local/bin/hook: timed out after 1s"),
        "{}",
        apply.stderr
    );
    let pid = std::fs::read_to_string(e.root().join("bg.pid")).expect("the hook ran");
    let alive = || {
        std::fs::read_to_string(format!("/proc/{}/stat", pid.trim())).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, r)| !r.starts_with('Z'))
        })
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while alive() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!alive(), "what the command started outlived it");
}

/// Scripts using Debian's own tools on a real Debian root (scripts/debian-root): what the
/// plan reports is what the apply does, and the module going away takes it all back.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the cached Debian root: scripts/test builds it (feature host-tests)"
)]
fn debian_tools_in_scripts_plan_exactly_what_they_apply() {
    let cases: &[(&str, &[&str])] = &[
        (
            "id deploy >/dev/null 2>&1 || useradd --create-home --shell /bin/bash --groups users deploy",
            &[
                "/etc/passwd",
                "/etc/shadow",
                "/etc/group",
                "/etc/gshadow",
                "/home/deploy",
            ],
        ),
        (
            "grep -q '^ssl-cert:' /etc/group || groupadd --system ssl-cert",
            &["/etc/group", "/etc/gshadow"],
        ),
        (
            "echo 'Europe/Paris' > /etc/timezone && ln -sf /usr/share/zoneinfo/Europe/Paris /etc/localtime",
            &["/etc/timezone", "/etc/localtime"],
        ),
        (
            "dpkg-divert --list /etc/issue | grep -q local || dpkg-divert --local --rename --add /etc/issue\necho strata > /etc/issue",
            &[
                "/etc/issue",
                "/etc/issue.distrib",
                "/var/lib/dpkg/diversions",
            ],
        ),
    ];
    for (body, paths) in cases {
        let e = env();
        require_debian_root!(e);
        site(&e);
        let original = e.tree();
        script(&e, "10-debian.sh", body);
        let plan = plan_equals_apply(&e);
        let changed: Vec<String> = changed_paths(&plan).into_iter().map(|(_, p)| p).collect();
        for p in *paths {
            assert!(
                changed.iter().any(|c| c == p),
                "`{body}`: {p} not in {changed:?}"
            );
        }
        e.run(&["plan", "--node", "n1"]).code(0);
        e.write("nodes/n1.toml", "modules = []\n");
        e.run(&["apply", "--node", "n1"]).code(0);
        assert_eq!(
            e.tree(),
            original,
            "`{body}`: taking the module away restores the root"
        );
    }
}
