//! `strata push` against whole test hosts on loopback (scripts/test-host: each its own
//! ext4 disk, namespaces and sshd), as an operator runs it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_test::{TestEnv, TestHosts, tree};

use crate::env;

/// A site whose nodes are the test hosts, in group `all`, with the keys to sign pushes.
pub(crate) struct Fleet {
    pub(crate) env: TestEnv,
    pub(crate) hosts: TestHosts,
    pub(crate) keys: PathBuf,
}

/// Starts hosts `h1`… and writes a site for them: module `motd` renders the node's name,
/// and its script leaves a file of its own (a script's effects travel like files).
pub(crate) fn fleet(n: usize) -> Fleet {
    let names: Vec<String> = (1..=n).map(|i| format!("h{i}.test")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let hosts = TestHosts::start(&refs);
    let env = env();
    env.write("strata.toml", "[site]\nname = \"fleet\"\n");
    for (i, name) in names.iter().enumerate() {
        env.write(
            &format!("nodes/{name}.toml"),
            &format!("modules = [\"motd\"]\n{}", hosts.node_ssh(i)),
        );
    }
    let members: Vec<String> = names.iter().map(|n| format!("\"{n}\"")).collect();
    env.write(
        "groups/all.toml",
        &format!("nodes = [{}]\n", members.join(", ")),
    );
    env.write(
        "modules/motd/templates/etc/motd.j2",
        "Welcome to {{ node.name }} ({{ node.environment }})\n",
    );
    env.write_exec(
        "modules/motd/scripts/10-stamp.sh",
        "#!/bin/sh\nset -e\necho \"stamped for $STRATA_NODE\" > \"$STRATA_ROOT/etc/stamp\"\n",
    );
    let keys = env.path().join("keys");
    env.cmd(&["keys", "init", "--site"])
        .arg(env.site())
        .arg("--keys")
        .arg(&keys)
        .output()
        .map(|o| assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr)))
        .expect("keys init");
    Fleet { env, hosts, keys }
}

impl Fleet {
    fn push(&self, args: &[&str]) -> Command {
        let mut cmd = self.env.cmd(&[&["push"], args].concat());
        cmd.arg("--keys")
            .arg(&self.keys)
            .arg("--ssh-config")
            .arg(self.hosts.ssh_config())
            // The shipped strata is kept between tests, as an operator's cache keeps it.
            .env("XDG_CACHE_HOME", "/var/cache/strata-test/operator");
        cmd
    }

    /// Runs a push with `--json`: its exit code and one object per node, by name.
    pub(crate) fn push_json(
        &self,
        args: &[&str],
    ) -> (i32, Vec<serde_json::Value>, serde_json::Value) {
        let out = self
            .push(&[args, &["--json"]].concat())
            .output()
            .expect("run push");
        let text = String::from_utf8_lossy(&out.stdout);
        let mut nodes = Vec::new();
        let mut summary = serde_json::Value::Null;
        for line in text.lines() {
            let v: serde_json::Value = serde_json::from_str(line)
                .unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}\n{text}"));
            match v["type"].as_str() {
                Some("node") => nodes.push(v),
                Some("summary") => summary = v["summary"].clone(),
                _ => panic!("unknown object {v}"),
            }
        }
        nodes.sort_by_key(|v| v["node"].as_str().unwrap_or_default().to_string());
        let code = out.status.code().unwrap_or(-1);
        assert!(
            !summary.is_null(),
            "no summary\n{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        (code, nodes, summary)
    }
}

/// What a user compares: the host's /etc and /var/lib, strata's own state left out.
fn host_tree(root: &Path) -> String {
    tree(&root.join("etc"), &[]) + &tree(&root.join("var/lib"), &["strata"])
}

fn results(nodes: &[serde_json::Value]) -> Vec<(String, String)> {
    nodes
        .iter()
        .map(|v| {
            (
                v["node"].as_str().unwrap().to_string(),
                v["result"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn a_group_of_four_is_planned_applied_and_then_unchanged() {
    let f = fleet(4);
    let before: Vec<String> = f.hosts.hosts.iter().map(|h| host_tree(&h.root())).collect();

    // --noop: every host's plan, exit 2, and nothing changes anywhere.
    let (code, nodes, summary) = f.push_json(&["all", "--noop"]);
    assert_eq!(code, 2, "{nodes:?}");
    assert_eq!(summary["would_change"], 4, "{summary}");
    for (h, b) in f.hosts.hosts.iter().zip(&before) {
        assert_eq!(&host_tree(&h.root()), b, "{} changed in a noop", h.name);
        assert!(!h.root().join("var/lib/strata/generations").exists());
    }
    // Shipped once per host, by the first push that reached it.
    assert!(nodes.iter().all(|v| v["shipped"] == true), "{nodes:?}");

    // The push: each host its own rendering and its own script's effect.
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    for v in &nodes {
        assert_eq!(v["result"], "changed", "{v}");
        assert_eq!(v["generation"], 1, "{v}");
        assert_eq!(v["shipped"], false, "strata was shipped twice: {v}");
        // The node's own steps, measured there, as its report to a server carries them.
        let steps: Vec<&str> = v["steps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["name"].as_str().unwrap())
            .collect();
        assert!(
            steps.contains(&"compile") && steps.contains(&"commit"),
            "{v}"
        );
        let paths: Vec<&str> = v["paths"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["path"].as_str().unwrap())
            .collect();
        assert!(
            paths.contains(&"/etc/motd") && paths.contains(&"/etc/stamp"),
            "{v}"
        );
    }
    for h in &f.hosts.hosts {
        assert_eq!(
            h.read("/etc/motd").unwrap(),
            format!("Welcome to {} (production)\n", h.name)
        );
        assert_eq!(
            h.read("/etc/stamp").unwrap(),
            format!("stamped for {}\n", h.name)
        );
    }

    // Again: nothing to do anywhere.
    let (code, nodes, summary) = f.push_json(&["all"]);
    assert_eq!(code, 0);
    assert_eq!(summary["unchanged"], 4, "{nodes:?}");

    // The module goes from the site: its files go from every host, the originals back.
    f.env.write(
        "nodes/h1.test.toml",
        &format!("modules = []\n{}", f.hosts.node_ssh(0)),
    );
    for i in 1..4 {
        f.env.write(
            &format!("nodes/h{}.test.toml", i + 1),
            &format!("modules = []\n{}", f.hosts.node_ssh(i)),
        );
    }
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    for (h, b) in f.hosts.hosts.iter().zip(&before) {
        assert!(
            h.read("/etc/stamp").is_none(),
            "{} kept the script's file",
            h.name
        );
        assert_eq!(
            &host_tree(&h.root()),
            b,
            "{} is not as before the module",
            h.name
        );
        // The generation records the snapshot's revision, as a local apply records its
        // checkout's.
        let generations = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["generations", "--json", "--root"])
            .arg(h.root())
            .output()
            .unwrap();
        let g: serde_json::Value = serde_json::from_slice(&generations.stdout).unwrap();
        let revision = g["generations"][0]["revision"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(revision.starts_with("blake3:"), "{g}");
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn a_down_host_and_a_failing_host_leave_the_others_done() {
    let mut f = fleet(3);
    // h2's apply fails: a script of its own exits 1.
    f.env.write(
        "nodes/h2.test.toml",
        &format!("modules = [\"motd\", \"broken\"]\n{}", f.hosts.node_ssh(1)),
    );
    f.env.write_exec(
        "modules/broken/scripts/10-fail.sh",
        "#!/bin/sh\necho no >&2\nexit 1\n",
    );
    f.hosts.host_mut("h3.test").stop();
    let (code, nodes, summary) = f.push_json(&["all"]);
    assert_eq!(code, 1);
    assert_eq!(
        results(&nodes),
        [
            ("h1.test".into(), "changed".into()),
            ("h2.test".into(), "failed".into()),
            ("h3.test".into(), "unreachable".into())
        ],
        "{summary}"
    );
    assert_eq!(nodes[2]["error"]["kind"], "unreachable", "{}", nodes[2]);
    assert!(
        nodes[1]["error"]["message"]
            .as_str()
            .unwrap()
            .contains("10-fail.sh"),
        "{}",
        nodes[1]
    );
    // The failing host is as it was: all or nothing.
    assert!(f.hosts.host("h2.test").read("/etc/stamp").is_none());
    assert!(
        !f.hosts
            .host("h2.test")
            .root()
            .join("var/lib/strata/generations/1.json")
            .exists()
    );
    assert_eq!(
        f.hosts.host("h1.test").read("/etc/stamp").unwrap(),
        "stamped for h1.test\n"
    );

    // --serial stops at the first failure: h1 after h2 is never started.
    let (code, nodes, _) = f.push_json(&["h2.test", "h1.test", "--serial"]);
    assert_eq!(code, 1);
    assert_eq!(
        results(&nodes),
        [
            ("h1.test".into(), "skipped".into()),
            ("h2.test".into(), "failed".into())
        ]
    );
    // --max-failures 2, one node at a time: the third is never started.
    let (code, nodes, _) = f.push_json(&[
        "h3.test",
        "h2.test",
        "h1.test",
        "--forks",
        "1",
        "--max-failures",
        "2",
    ]);
    assert_eq!(code, 1);
    assert_eq!(
        results(&nodes),
        [
            ("h1.test".into(), "skipped".into()),
            ("h2.test".into(), "failed".into()),
            ("h3.test".into(), "unreachable".into())
        ]
    );

    // Text output: the table names every host and the reasons.
    let out = f.push(&["all"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(
        text.contains("h3.test") && text.contains("unreachable") && text.contains("3 nodes:"),
        "{text}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn a_cut_connection_leaves_the_host_all_old_or_all_new_and_the_next_push_finishes() {
    let f = fleet(2);
    // Ship strata first, so the cut falls in the apply.
    let (code, _, _) = f.push_json(&["all", "--noop"]);
    assert_eq!(code, 2);
    f.env.write_exec(
        "modules/motd/scripts/20-slow.sh",
        "#!/bin/sh\nsleep 2\necho slow > \"$STRATA_ROOT/etc/slow\"\n",
    );
    let before: Vec<String> = f.hosts.hosts.iter().map(|h| host_tree(&h.root())).collect();
    let mut cmd = f.push(&["all"]);
    cmd.stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0);
    let child = cmd.spawn().unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    // The whole push process group, ssh included, as a closed laptop lid would.
    // SAFETY: kill(2) on the process group this test just made.
    unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
    let mut child = child;
    let _ = child.wait();
    // Each host finishes (or undoes) on its own; wait until no strata runs there.
    for (h, before) in f.hosts.hosts.iter().zip(&before) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while strata_running(&h.root()) {
            assert!(Instant::now() < deadline, "{}: strata still runs", h.name);
            std::thread::sleep(Duration::from_millis(100));
        }
        let all_new = h.read("/etc/slow").is_some()
            && h.read("/etc/motd") == Some(format!("Welcome to {} (production)\n", h.name));
        let all_old = &host_tree(&h.root()) == before;
        assert!(
            all_new || all_old,
            "{} is half applied:\n{}",
            h.name,
            host_tree(&h.root())
        );
    }
    // The next push finishes whatever was left: every host all new.
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    for h in &f.hosts.hosts {
        assert_eq!(h.read("/etc/slow").unwrap(), "slow\n");
    }
}

/// Whether a strata process runs on the host whose root is `root`.
fn strata_running(root: &Path) -> bool {
    let Ok(dir) = std::fs::read_dir(root.join("proc")) else {
        return false;
    };
    dir.flatten().any(|e| {
        std::fs::read_to_string(e.path().join("comm")).is_ok_and(|c| c.starts_with("strata"))
    })
}

#[test]
fn an_unknown_target_is_named_before_anything_connects() {
    let env = env();
    env.write("strata.toml", "[site]\nname = \"s\"\n");
    env.write("nodes/web1.toml", "[ssh]\nhost = \"192.0.2.1\"\n");
    env.write("groups/webservers.toml", "nodes = [\"web1\"]\n");
    let run = env.run(&["push", "webserver"]).code(1);
    assert!(
        run.stderr.contains("no node or group is named `webserver`")
            && run.stderr.contains("did you mean `webservers`?"),
        "{}",
        run.stderr
    );
    // No keys yet: said before connecting, with what to do.
    let run = env.run(&["push", "webservers"]).code(1);
    assert!(run.stderr.contains("strata keys init"), "{}", run.stderr);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn a_changed_host_key_a_refused_user_and_a_read_only_disk_fail_only_their_host() {
    let f = fleet(4);
    // h3: a user the host does not know (no key of ours is authorized for it).
    f.env.write(
        "nodes/h3.test.toml",
        &format!(
            "modules = [\"motd\"]\n{}user = \"nobody\"\n",
            f.hosts.node_ssh(2)
        ),
    );
    // h4: its root file system read-only.
    let init = f.hosts.host("h4.test").root();
    let pid = init
        .parent()
        .unwrap()
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    let ok = Command::new("nsenter")
        .args(["-t", &pid, "-m", "mount", "-o", "remount,ro", "/"])
        .status()
        .unwrap();
    assert!(ok.success(), "remount read-only");
    // The operator's known_hosts has another key for h2.
    let known = f.hosts.ssh_config().with_file_name("known_hosts");
    let text = std::fs::read_to_string(&known).unwrap();
    let other = f.env.path().join("other");
    let ok = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&other)
        .status()
        .unwrap();
    assert!(ok.success());
    let other_pub = std::fs::read_to_string(other.with_extension("pub")).unwrap();
    let other_key: Vec<&str> = other_pub.split_whitespace().take(2).collect();
    let port = f.hosts.host("h2.test").port;
    let forged: String = text
        .lines()
        .map(|l| {
            if l.starts_with(&format!("[127.0.0.1]:{port} ")) {
                format!("[127.0.0.1]:{port} {}\n", other_key.join(" "))
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    std::fs::write(&known, forged).unwrap();
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 1);
    assert_eq!(
        results(&nodes),
        [
            ("h1.test".into(), "changed".into()),
            ("h2.test".into(), "unreachable".into()),
            ("h3.test".into(), "unreachable".into()),
            ("h4.test".into(), "failed".into())
        ]
    );
    assert_eq!(nodes[1]["error"]["kind"], "host_key", "{}", nodes[1]);
    assert_eq!(nodes[2]["error"]["kind"], "auth", "{}", nodes[2]);
    let why = nodes[3]["error"]["message"].as_str().unwrap();
    assert!(why.contains("Read-only file system"), "{}", nodes[3]);
    assert!(f.hosts.host("h2.test").read("/etc/stamp").is_none());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn a_site_that_classifies_hardware_is_pushed_with_signed_assignments() {
    let f = fleet(2);
    // Each host is its own machine by its hostname; each gets an address from the pool.
    f.env.write(
        "hardware/profiles.toml",
        "[[profile]]\nname = \"host\"\nrole = \"net@1.0.0\"\npools = [\"ips\"]\n\
         spec = [[\"system\", \"hostname\", \"name\", \"$$host\"]]\n",
    );
    f.env.write(
        "hardware/pools/ips.toml",
        "generate = [{ ip = \"10.0.0.1-9\" }]\n",
    );
    f.env.write("roles/net/1.0.0.toml", "modules = [\"net\"]\n");
    f.env.write(
        "modules/net/templates/etc/net.conf.j2",
        "host {{ hw.host }} ip {{ hw.ips.ip }}\n",
    );
    let db = f.env.site().join(".strata/state.db");

    // --noop: each host's plan shows its address; nothing is allocated anywhere.
    let out = f.push(&["all", "--noop"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{text}");
    for h in &f.hosts.hosts {
        assert!(
            text.contains(&format!("+host {} ip 10.0.0.", h.name)),
            "{text}"
        );
    }
    assert!(!db.exists(), "a noop push allocated");

    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    let mut ips = Vec::new();
    for h in &f.hosts.hosts {
        let conf = h.read("/etc/net.conf").expect("net.conf rendered");
        assert!(
            conf.starts_with(&format!("host {} ip 10.0.0.", h.name)),
            "{conf}"
        );
        ips.push(conf);
    }
    ips.sort();
    ips.dedup();
    assert_eq!(ips.len(), 2, "two hosts got one address: {ips:?}");

    // Allocations are kept: the next push gives each host the same address.
    let (code, nodes, summary) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    assert_eq!(summary["unchanged"], 2, "{nodes:?}");
    // The node keeps the assignment it applied, and its floor.
    for h in &f.hosts.hosts {
        assert!(
            h.root()
                .join("var/lib/strata/trust/assignment.json")
                .exists()
        );
    }
}

/// Runs `script` with `sh` in host `name`'s mount namespace (its own `/`).
fn in_host(f: &Fleet, name: &str, script: &str) -> std::process::Output {
    let init = f.hosts.host(name).root();
    let pid = init.parent().unwrap().file_name().unwrap().to_owned();
    Command::new("nsenter")
        .arg("-t")
        .arg(pid)
        .args(["-m", "sh", "-c", script])
        .output()
        .unwrap()
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn a_full_disk_fails_only_its_host_and_nothing_there_is_half_applied() {
    let f = fleet(2);
    // Ship strata first, so the disk fills up under the apply.
    let (code, _, _) = f.push_json(&["all", "--noop"]);
    assert_eq!(code, 2);
    let before = host_tree(&f.hosts.host("h2.test").root());
    // Every free block of h2's disk taken, root's reserve too.
    let filled = in_host(
        &f,
        "h2.test",
        "mkdir /fill && cd /fill && i=0; \
         while fallocate -l 64M big$i 2>/dev/null; do i=$((i+1)); done; \
         while fallocate -l 1M small$i 2>/dev/null; do i=$((i+1)); done; \
         dd if=/dev/zero of=last bs=4096 2>/dev/null; sync; [ $i -gt 0 ]",
    );
    assert!(
        filled.status.success(),
        "{}",
        String::from_utf8_lossy(&filled.stderr)
    );
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 1, "{nodes:?}");
    assert_eq!(
        results(&nodes),
        [
            ("h1.test".into(), "changed".into()),
            ("h2.test".into(), "failed".into())
        ]
    );
    let why = nodes[1]["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("No space left on device"), "{}", nodes[1]);
    let h2 = f.hosts.host("h2.test");
    assert_eq!(host_tree(&h2.root()), before, "h2 is half applied");
    // Room again: the next push applies there.
    let freed = in_host(&f, "h2.test", "rm -rf /fill");
    assert!(freed.status.success());
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    assert_eq!(
        h2.read("/etc/motd").unwrap(),
        "Welcome to h2.test (production)\n"
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn a_user_who_may_sudo_pushes_as_root_and_one_who_may_not_is_refused() {
    let f = fleet(2);
    // The image's `deploy` may run anything with `sudo -n`; h2's node file asks no sudo.
    for (i, sudo) in [(0, true), (1, false)] {
        f.env.write(
            &format!("nodes/h{}.test.toml", i + 1),
            &format!(
                "modules = [\"motd\"]\n{}user = \"deploy\"\nsudo = {sudo}\n",
                f.hosts.node_ssh(i)
            ),
        );
    }
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 1, "{nodes:?}");
    assert_eq!(
        results(&nodes),
        [
            ("h1.test".into(), "changed".into()),
            ("h2.test".into(), "failed".into())
        ],
        "{nodes:?}"
    );
    let h1 = f.hosts.host("h1.test");
    assert_eq!(
        h1.read("/etc/motd").unwrap(),
        "Welcome to h1.test (production)\n"
    );
    // Installed and run as root, where the SSH user cannot write.
    let bin = h1.root().join("var/lib/strata/bin");
    let meta = std::fs::metadata(&bin).unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (meta.uid(), meta.mode() & 0o022),
        (0, 0),
        "{}",
        bin.display()
    );
    let why = nodes[1]["error"]["message"].as_str().unwrap_or_default();
    assert!(why.contains("Permission denied"), "{}", nodes[1]);
    assert!(f.hosts.host("h2.test").read("/etc/stamp").is_none());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn a_newer_strata_on_a_node_is_not_replaced_without_allow_downgrade() {
    let f = fleet(2);
    // h2 has a strata that says it is 99.0.0.
    let fake = in_host(
        &f,
        "h2.test",
        "mkdir -p /var/lib/strata/bin && printf '#!/bin/sh\\necho strata 99.0.0\\n' \
         >/var/lib/strata/bin/strata-newer && chmod 0755 /var/lib/strata/bin/strata-newer",
    );
    assert!(
        fake.status.success(),
        "{}",
        String::from_utf8_lossy(&fake.stderr)
    );
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 1, "{nodes:?}");
    assert_eq!(
        results(&nodes),
        [
            ("h1.test".into(), "changed".into()),
            ("h2.test".into(), "failed".into())
        ]
    );
    assert_eq!(nodes[1]["error"]["kind"], "downgrade", "{}", nodes[1]);
    let why = nodes[1]["error"]["message"].as_str().unwrap();
    assert!(why.contains("strata 99.0.0, newer than this one"), "{why}");
    assert!(f.hosts.host("h2.test").read("/etc/stamp").is_none());

    let (code, nodes, _) = f.push_json(&["all", "--allow-downgrade"]);
    assert_eq!(code, 0, "{nodes:?}");
    assert_eq!(nodes[1]["result"], "changed", "{}", nodes[1]);
    assert_eq!(nodes[1]["shipped"], true, "{}", nodes[1]);
}
