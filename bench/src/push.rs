//! `--sections push` (issue 19): `strata push` to H whole test hosts on loopback
//! (strata_test::TestHosts: each its own ext4 disk, namespaces and sshd), side by side
//! with Ansible and pyinfra reaching the same hosts through the same ssh configuration,
//! and with two floors: `ssh HOST true` and a tar of the files over ssh, to all hosts in
//! parallel. Writes `bench/PUSH.md`.
//!
//! Each host gets the workload's 100 files (half static, half templates), rendered with
//! its own host name. Phases: the first push to a host that lacks strata (it ships the
//! binary), first apply (the host reset, the shipped binary kept), push with nothing
//! changed, dry run with diffs (`--noop` with another host name, so every template would
//! change).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_bench::tools::{self, Tool, Vars};
use strata_test::{TestHost, TestHosts};

use crate::anchors::timed;
use crate::{Args, Sample, invocation, machine, measure_to, median, ms, paired_median};

/// Files per host: the workload at N = 100.
const FILES: usize = 100;
/// The host name of the dry run, on every host.
const DRY_HOST: &str = "other.example.com";

/// The hosts and what reaches them.
struct Fleet {
    hosts: TestHosts,
    /// Node names, `b1.test`…, also each host's name in its rendering.
    names: Vec<String>,
    /// The `ssh -F` file: key, known_hosts, user root.
    config: PathBuf,
    key: PathBuf,
    known_hosts: PathBuf,
}

impl Fleet {
    fn start(count: usize) -> Fleet {
        let names: Vec<String> = (1..=count).map(|i| format!("b{i}.test")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let hosts = TestHosts::start(&refs);
        let config = hosts.ssh_config();
        let text = std::fs::read_to_string(&config).expect("ssh config");
        let option = |name: &str| {
            text.lines()
                .find_map(|l| l.trim().strip_prefix(name))
                .map(|v| PathBuf::from(v.trim()))
                .unwrap_or_else(|| panic!("{name} in {}", config.display()))
        };
        let (key, known_hosts) = (option("IdentityFile"), option("UserKnownHostsFile"));
        let fleet = Fleet {
            hosts,
            names,
            config,
            key,
            known_hosts,
        };
        for i in 0..count {
            fleet.enable_sftp(i);
        }
        fleet
    }

    /// Gives host `i`'s sshd the SFTP subsystem every Debian sshd has (the test hosts'
    /// configuration leaves it out; pyinfra uploads over SFTP only, Ansible tries it
    /// first): a line in its configuration, then SIGHUP to sshd, its PID 1, which makes
    /// it execute itself again and read it.
    fn enable_sftp(&self, i: usize) {
        let root = self.host(i).root();
        let conf = root.join("etc/ssh/sshd_config.strata");
        let text = std::fs::read_to_string(&conf).expect("the host's sshd configuration");
        if !text.contains("Subsystem sftp") {
            std::fs::write(
                &conf,
                format!("{text}Subsystem sftp /usr/lib/openssh/sftp-server\n"),
            )
            .expect("the host's sshd configuration");
        }
        let pid: libc::pid_t = root
            .parent()
            .and_then(|p| p.file_name())
            .and_then(|p| p.to_str())
            .and_then(|p| p.parse().ok())
            .expect("/proc/PID/root");
        // SAFETY: a signal to the host's sshd, which re-executes itself on SIGHUP.
        assert_eq!(
            unsafe { libc::kill(pid, libc::SIGHUP) },
            0,
            "SIGHUP to sshd"
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
        loop {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let ok = self
                .ssh(i, "true")
                .stdin(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{}: sshd did not come back after SIGHUP",
                self.names[i]
            );
        }
    }

    fn host(&self, i: usize) -> &TestHost {
        &self.hosts.hosts[i]
    }

    /// `ssh -F CONFIG -p PORT 127.0.0.1 REMOTE`, as the floors reach host `i`.
    fn ssh(&self, i: usize, remote: &str) -> Command {
        let mut c = Command::new("ssh");
        c.arg("-F")
            .arg(&self.config)
            .arg("-p")
            .arg(self.host(i).port.to_string())
            .arg("127.0.0.1")
            .arg(remote);
        c
    }
}

/// What to take away from a host before a run.
#[derive(Clone, Copy, PartialEq)]
enum Reset {
    /// The written files only (before a tool's first apply or a floor's tar).
    Files,
    /// The files and strata's state and cache, the shipped binary kept: a first apply.
    KeepBinary,
    /// All of it, the binary too: the first push to a host.
    All,
}

/// Resets host `host` from outside (its files are `host.root()`). The hosts' disks are
/// ext4 with a journal, so files removed here do not slow the next creations (see
/// strata_bench::set_aside for the journal-less case).
fn reset(host: &TestHost, what: Reset) {
    let root = host.root();
    let remove = |p: &Path| {
        if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        }
        .unwrap_or_else(|e| panic!("remove {}: {e}", p.display()));
    };
    let files = root.join("srv/bench");
    if files.exists() {
        remove(&files);
    }
    if what == Reset::Files {
        return;
    }
    let cache = root.join("var/cache/strata");
    if cache.exists() {
        remove(&cache);
    }
    let state = root.join("var/lib/strata");
    let Ok(entries) = std::fs::read_dir(&state) else {
        return;
    };
    for e in entries {
        let e = e.expect("read /var/lib/strata");
        if what == Reset::KeepBinary && e.file_name() == "bin" {
            continue;
        }
        remove(&e.path());
    }
}

/// One column of figures: wall seconds and operator CPU seconds per counted run.
#[derive(Default, Clone)]
struct Series {
    secs: Vec<f64>,
    cpu: Vec<f64>,
    /// The command's own CPU, its children's (the ssh processes) left out.
    own: Vec<f64>,
    rss: u64,
}

impl Series {
    fn push(&mut self, s: &Sample) {
        self.secs.push(s.secs);
        self.cpu.push(s.cpu);
        self.own.push(s.cpu - s.children_cpu);
        self.rss = self.rss.max(s.rss);
    }
    fn own(&self) -> Option<f64> {
        (!self.own.is_empty()).then(|| median(self.own.clone()))
    }
    fn med(&self) -> Option<f64> {
        (!self.secs.is_empty()).then(|| median(self.secs.clone()))
    }
    fn cpu(&self) -> Option<f64> {
        (!self.cpu.is_empty()).then(|| median(self.cpu.clone()))
    }
}

/// strata's, a floor's or a tool's figures at one H.
#[derive(Default, Clone)]
struct Figures {
    ship: Series,
    first: Series,
    again: Series,
    dry: Series,
    rss: u64,
    problem: Option<String>,
}

/// Everything measured at one host count.
struct Row {
    h: usize,
    strata: Figures,
    ssh: Series,
    tar: Series,
    tar_sync: Series,
    /// (b) and `ssh true` with the curve25519 key exchange instead of OpenSSH's default.
    again_x: Series,
    ssh_x: Series,
    tools: Vec<(Tool, Figures)>,
}

/// The site (the workload, one node file per host with its name and `[ssh]`, groups
/// `g1`… of the first H hosts), signed by keys made here; per host the expected files'
/// manifest and a tree of them for the tar floor; the tools' configurations.
struct Setup {
    site: PathBuf,
    keys: PathBuf,
    cache: PathBuf,
    manifests: Vec<PathBuf>,
    trees: Vec<PathBuf>,
    ansible: PathBuf,
    pyinfra: PathBuf,
}

fn setup(a: &Args, work: &Path, fleet: &Fleet, strata: &Path) -> Setup {
    let site = work.join("push-site");
    let files = strata_bench::generate(&site, FILES, "bench.example.com").expect("generate");
    let mut manifests = Vec::new();
    let mut trees = Vec::new();
    for (i, name) in fleet.names.iter().enumerate() {
        let node = format!(
            "modules = [\"gen\"]\n\n[params]\ngen.host_name = \"{name}\"\n\n{}",
            fleet.hosts.node_ssh(i)
        );
        std::fs::write(site.join(format!("nodes/{name}.toml")), node).expect("node file");
        let expected =
            strata_bench::generate(&work.join(format!("push-expected-{i}")), FILES, name)
                .expect("generate");
        let manifest = work.join(format!("push-manifest-{i}"));
        strata_bench::write_manifest(&manifest, &expected).expect("manifest");
        manifests.push(manifest);
        let tree = work.join(format!("push-tar-{i}"));
        for e in &expected {
            let p = tree.join(&e.path);
            std::fs::create_dir_all(p.parent().expect("a parent")).expect("mkdir");
            std::fs::write(&p, &e.content).expect("write");
        }
        trees.push(tree);
    }
    std::fs::create_dir_all(site.join("groups")).expect("groups");
    for &h in &a.hosts {
        let members: Vec<String> = fleet.names[..h]
            .iter()
            .map(|n| format!("\"{n}\""))
            .collect();
        std::fs::write(
            site.join(format!("groups/g{h}.toml")),
            format!("nodes = [{}]\n", members.join(", ")),
        )
        .expect("group file");
    }
    let keys = work.join("push-keys");
    let out = Command::new(strata)
        .args(["keys", "init", "--site"])
        .arg(&site)
        .arg("--keys")
        .arg(&keys)
        .output()
        .expect("strata keys init");
    assert!(
        out.status.success(),
        "strata keys init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The tools' static trees and templates (bench/src/tools.rs), then their playbook,
    // deploy script and inventories for these hosts.
    let rels: Vec<String> = files
        .iter()
        .filter(|e| tools::templated(e))
        .map(|e| e.path.clone())
        .collect();
    let vars = Vars {
        host: "bench.example.com",
    };
    let ansible = work.join("push-ansible");
    let pyinfra = work.join("push-pyinfra");
    tools::generate(Tool::Ansible, &ansible, Path::new("/"), &files, &vars).expect("ansible");
    tools::generate(Tool::Pyinfra, &pyinfra, Path::new("/"), &files, &vars).expect("pyinfra");
    let ups = r#"["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"]"#;
    let list = |f: &dyn Fn(&String) -> String| rels.iter().map(f).collect::<String>();
    std::fs::write(
        ansible.join("playbook.yml"),
        format!(
            "- hosts: bench\n  gather_facts: false\n  vars:\n    gen: {{host_name: \"{{{{ bench_host }}}}\", port: 8443, log_level: info, upstreams: {ups}, tls: true}}\n  tasks:\n    - name: static files\n      copy:\n        src: \"{src}/srv/bench\"\n        dest: /srv/\n        mode: \"0644\"\n        directory_mode: \"0755\"\n    - name: templated files\n      template:\n        src: \"{tpl}/{{{{ item }}}}.j2\"\n        dest: \"/{{{{ item }}}}\"\n        mode: \"0644\"\n      loop:\n{}",
            list(&|r| format!("        - {r}\n")),
            src = ansible.join("src").display(),
            tpl = ansible.join("templates").display(),
        ),
    )
    .expect("playbook");
    std::fs::write(
        pyinfra.join("deploy.py"),
        format!(
            "from pyinfra import host\nfrom pyinfra.operations import files\n\ngen = {{\"host_name\": host.data.bench_host, \"port\": 8443, \"log_level\": \"info\", \"upstreams\": {ups}, \"tls\": True}}\n\nfiles.sync(name=\"static files\", src=\"{src}/srv/bench\", dest=\"/srv/bench\", mode=\"644\", dir_mode=\"755\")\n\nfor rel in [\n{}]:\n    files.template(name=rel, src=\"{tpl}/\" + rel + \".j2\", dest=\"/\" + rel, mode=\"644\", gen=gen)\n",
            list(&|r| format!("    \"{r}\",\n")),
            src = pyinfra.join("src").display(),
            tpl = pyinfra.join("templates").display(),
        ),
    )
    .expect("deploy.py");
    for &h in &a.hosts {
        let mut ini = String::from("[bench]\n");
        let mut py = String::from("hosts = [\n");
        for (i, name) in fleet.names[..h].iter().enumerate() {
            let port = fleet.host(i).port;
            let _ = writeln!(
                ini,
                "{name} ansible_host=127.0.0.1 ansible_port={port} bench_host={name}"
            );
            let _ = writeln!(
                py,
                "    (\"{name}\", {{\"ssh_hostname\": \"127.0.0.1\", \"ssh_port\": {port}, \"ssh_user\": \"root\", \"ssh_key\": \"{}\", \"ssh_known_hosts_file\": \"{}\", \"ssh_strict_host_key_checking\": \"yes\", \"ssh_allow_agent\": False, \"ssh_look_for_keys\": False, \"bench_host\": \"{name}\"}}),",
                fleet.key.display(),
                fleet.known_hosts.display()
            );
        }
        let _ = write!(
            ini,
            "\n[bench:vars]\nansible_user=root\nansible_ssh_common_args='-F {}'\nansible_python_interpreter=/usr/bin/python3\n",
            fleet.config.display()
        );
        py.push_str("]\n");
        std::fs::write(ansible.join(format!("inventory-{h}.ini")), ini).expect("inventory");
        std::fs::write(pyinfra.join(format!("inventory_{h}.py")), py).expect("inventory");
    }
    Setup {
        site,
        keys,
        cache: work.join("push-operator-cache"),
        manifests,
        trees,
        ansible,
        pyinfra,
    }
}

/// `strata push gH` with the bench's site, keys and ssh configuration.
fn push_command(strata: &Path, s: &Setup, config: &Path, h: usize, extra: &[&str]) -> Command {
    let mut c = Command::new(strata);
    c.args(["push", &format!("g{h}"), "--site"])
        .arg(&s.site)
        .arg("--keys")
        .arg(&s.keys)
        .arg("--ssh-config")
        .arg(config)
        .args(extra)
        // The shipped binary (stripped and gzipped once per executable) is kept here.
        .env("XDG_CACHE_HOME", &s.cache)
        .env("NO_COLOR", "1");
    c
}

/// Runs a push (through `peak`, stdout to `out`) and checks its outcome: the exit code,
/// and with `--json` every node's result and whether strata was shipped to it.
fn push(cmd: &mut Command, out: &Path, code: i32, result: &str, shipped: Option<bool>) -> Sample {
    let s = measure_to(cmd, Some(out));
    let text = std::fs::read_to_string(out).unwrap_or_default();
    assert_eq!(s.code, code, "strata push exited {}:\n{text}", s.code);
    if result.is_empty() {
        return s;
    }
    let mut nodes = 0;
    for line in text.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        if v["type"] == "node" {
            nodes += 1;
            assert_eq!(v["result"], result, "{v}");
            if let Some(shipped) = shipped {
                assert_eq!(v["shipped"], shipped, "{v}");
            }
        }
    }
    assert!(nodes > 0, "no node in the push's output:\n{text}");
    s
}

/// Whether hosts `0..h` hold exactly the expected files (`floor check` of each host's
/// manifest against its root, seen from outside), or what differs.
fn check_hosts(floor: &Path, s: &Setup, fleet: &Fleet, h: usize) -> Result<(), String> {
    for i in 0..h {
        let out = Command::new(floor)
            .arg("check")
            .arg(&s.manifests[i])
            .arg(fleet.host(i).root())
            .env("RUST_BACKTRACE", "0")
            .output()
            .expect("floor check");
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            let last = err
                .lines()
                .rfind(|l| !l.trim().is_empty() && !l.starts_with("note:"))
                .unwrap_or("");
            return Err(format!("{}: {}", fleet.names[i], last.trim()));
        }
    }
    Ok(())
}

/// A shell script that runs one line per host in parallel and fails when any fails.
fn parallel_script(path: &Path, lines: &[String]) {
    let mut sh = String::from("set -e\npids=\n");
    for l in lines {
        let _ = writeln!(sh, "{l} &\npids=\"$pids $!\"");
    }
    sh.push_str("for p in $pids; do wait $p; done\n");
    std::fs::write(path, sh).expect("script");
}

/// Python for Ansible on every host (its modules run there; strata and pyinfra need
/// none): `python3`'s packages downloaded once by the first host's apt and kept in
/// `/var/cache/strata-bench/python-debs`, then installed with `dpkg -i` on each host.
fn python_on_hosts(fleet: &Fleet, count: usize) -> Result<(), String> {
    let cache = PathBuf::from("/var/cache/strata-bench/python-debs");
    let debs = |dir: &Path| -> Vec<PathBuf> {
        std::fs::read_dir(dir)
            .map(|d| {
                d.filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == "deb"))
                    .collect()
            })
            .unwrap_or_default()
    };
    let run = |c: &mut Command, what: &str| -> Result<(), String> {
        let out = c.output().map_err(|e| format!("{what}: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{what}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    if debs(&cache).is_empty() {
        eprintln!("push: downloading python3 for the hosts (once) ...");
        run(
            &mut fleet.ssh(
                0,
                "apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq -d \
                 --no-install-recommends python3",
            ),
            "apt-get install -d python3 on a test host",
        )?;
        std::fs::create_dir_all(&cache).map_err(|e| e.to_string())?;
        for d in debs(&fleet.host(0).root().join("var/cache/apt/archives")) {
            std::fs::copy(&d, cache.join(d.file_name().expect("a name")))
                .map_err(|e| e.to_string())?;
        }
    }
    let debs = debs(&cache);
    std::thread::scope(|scope| {
        let jobs: Vec<_> = (0..count)
            .map(|i| {
                let debs = &debs;
                scope.spawn(move || {
                    let dir = fleet.host(i).root().join("var/tmp/python-debs");
                    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
                    for d in debs {
                        std::fs::copy(d, dir.join(d.file_name().expect("a name")))
                            .map_err(|e| e.to_string())?;
                    }
                    // dpkg -i does not order pre-dependencies: a package whose
                    // pre-dependency is in the same batch waits for the next pass.
                    run(
                        &mut fleet.ssh(
                            i,
                            "cd /var/tmp/python-debs && for pass in 1 2 3 4; do \
                             dpkg -i --skip-same-version ./*.deb >/dev/null 2>&1 && break; done; \
                             cd / && rm -rf /var/tmp/python-debs && python3 -c 'import json'",
                        ),
                        "dpkg -i python3",
                    )
                })
            })
            .collect();
        jobs.into_iter()
            .try_for_each(|j| j.join().expect("a thread"))
    })
}

/// The command of a tool's phase (0 first apply, 1 no change, 2 dry run with diffs).
fn tool_command(t: Tool, s: &Setup, venv: &Path, h: usize, phase: usize) -> Command {
    match t {
        Tool::Ansible => {
            let mut c = Command::new(venv.join("ansible-playbook"));
            c.arg("-i")
                .arg(s.ansible.join(format!("inventory-{h}.ini")))
                .args(["-f", &h.max(5).to_string()])
                .arg(s.ansible.join("playbook.yml"))
                .env("ANSIBLE_PIPELINING", "1")
                .env("ANSIBLE_NOCOLOR", "1")
                .env("ANSIBLE_HOME", s.ansible.join("home"))
                .env("ANSIBLE_LOCAL_TEMP", s.ansible.join("tmp"));
            if phase == 2 {
                c.args(["--check", "--diff", "-e", &format!("bench_host={DRY_HOST}")]);
            }
            c
        }
        _ => {
            let mut c = Command::new(venv.join("pyinfra"));
            c.args(["--no-wait", "--parallel", &h.to_string()]);
            if phase == 2 {
                // Not with -y: it skips change detection, and a dry run then shows nothing.
                c.args([
                    "--dry",
                    "--diff",
                    "--data",
                    &format!("bench_host={DRY_HOST}"),
                ]);
            } else {
                c.arg("-y");
            }
            c.arg(format!("inventory_{h}.py"))
                .arg("deploy.py")
                .current_dir(&s.pyinfra);
            c
        }
    }
}

/// A command line as text, the work directory as `$WORK`.
fn show(c: &Command, work: &Path) -> String {
    let env: Vec<String> = c
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_string_lossy(), v?.to_string_lossy())))
        .collect();
    let cd = c
        .get_current_dir()
        .map(|d| format!("cd {} && ", d.display()))
        .unwrap_or_default();
    let line: Vec<String> = env
        .into_iter()
        .chain(std::iter::once(
            c.get_program().to_string_lossy().into_owned(),
        ))
        .chain(c.get_args().map(|a| a.to_string_lossy().into_owned()))
        .collect();
    format!("{cd}{}", line.join(" ")).replace(&*work.to_string_lossy(), "$WORK")
}

pub fn section(a: &Args, work: &Path) -> String {
    let mut md = String::from("# strata push over SSH, side by side\n\n");
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        md.push_str("Not measured: the test hosts need root.\n");
        return md;
    }
    let load_before = loadavg();
    let mut hs = a.hosts.clone();
    hs.sort_unstable();
    hs.dedup();
    let count = *hs.last().expect("--hosts");
    let strata = a.bin.join("strata");
    let floor = a.bin.join("floor");
    let mut problems = String::new();
    let venv = match Command::new("bench/tools/setup").arg("push").output() {
        Ok(o) if o.status.success() => {
            Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        }
        Ok(o) => {
            let _ = writeln!(
                problems,
                "- Ansible and pyinfra not measured: bench/tools/setup failed: {}",
                String::from_utf8_lossy(&o.stderr).trim()
            );
            None
        }
        Err(e) => {
            let _ = writeln!(
                problems,
                "- Ansible and pyinfra not measured: bench/tools/setup: {e}"
            );
            None
        }
    };
    let tool_list: Vec<Tool> = [Tool::Pyinfra, Tool::Ansible]
        .into_iter()
        .filter(|t| venv.is_some() && a.tools.contains(t))
        .collect();
    eprintln!("push: starting {count} test hosts ...");
    let fleet = Fleet::start(count);
    let s = setup(a, work, &fleet, &strata);
    let mut ansible_problem = None;
    if tool_list.contains(&Tool::Ansible)
        && let Err(e) = python_on_hosts(&fleet, count)
    {
        ansible_problem = Some(format!("not run: no python3 on the hosts ({})", brief(&e)));
    }
    let log = work.join("push.out");
    // The same configuration with the classic curve25519 key exchange: OpenSSH 9's
    // default (sntrup761x25519) costs the client tens of ms of CPU per connection.
    let x_config = work.join("push-ssh-config-curve25519");
    std::fs::write(
        &x_config,
        std::fs::read_to_string(&fleet.config).expect("ssh config")
            + "  KexAlgorithms curve25519-sha256\n",
    )
    .expect("ssh config");

    // The very first push: the operator's cache is empty, so strata strips and gzips its
    // binary first, then ships it to every host.
    eprintln!("push: the very first push ...");
    for i in 0..hs[0] {
        reset(fleet.host(i), Reset::All);
    }
    strata_bench::sync();
    let cold = push(
        &mut push_command(&strata, &s, &fleet.config, hs[0], &["--json"]),
        &log,
        0,
        "changed",
        Some(true),
    );
    let ship_cache = dir_size(&s.cache);

    let mut rows = Vec::new();
    let mut over: Vec<Tool> = Vec::new();
    let mut commands = String::new();
    for &h in &hs {
        eprintln!("push: H = {h} ...");
        let mut f = Figures::default();
        let (mut ssh, mut tar, mut tar_sync) =
            (Series::default(), Series::default(), Series::default());
        let (mut again_x, mut ssh_x) = (Series::default(), Series::default());
        let ssh_lines = |config: &Path| -> Vec<String> {
            (0..h)
                .map(|i| {
                    format!(
                        "ssh -F '{}' -p {} 127.0.0.1 true",
                        config.display(),
                        fleet.host(i).port
                    )
                })
                .collect()
        };
        let lines = ssh_lines(&fleet.config);
        let ssh_script = work.join(format!("push-ssh-{h}.sh"));
        parallel_script(&ssh_script, &lines);
        let ssh_x_script = work.join(format!("push-ssh-{h}-curve25519.sh"));
        parallel_script(&ssh_x_script, &ssh_lines(&x_config));
        let tar_script = |sync: bool| {
            let path = work.join(format!(
                "push-tar-{h}{}.sh",
                if sync { "-sync" } else { "" }
            ));
            let lines: Vec<String> = (0..h)
                .map(|i| {
                    format!(
                        "tar -C '{}' -c srv/bench | ssh -F '{}' -p {} 127.0.0.1 'tar -C / -x{}'",
                        s.trees[i].display(),
                        fleet.config.display(),
                        fleet.host(i).port,
                        if sync { " && sync -f /srv/bench" } else { "" }
                    )
                })
                .collect();
            parallel_script(&path, &lines);
            path
        };
        let (tar_plain, tar_synced) = (tar_script(false), tar_script(true));
        let sh = |p: &Path| {
            let mut c = Command::new("sh");
            c.arg(p);
            c
        };
        let dry_set = format!("gen.host_name={DRY_HOST}");
        if h == hs[0] {
            let _ = writeln!(
                commands,
                "- strata, (s) (a) (b): `{}`\n- strata, (c): `{}`\n- floor, ssh true, one per host in parallel: `{}`\n- floor, tar (+ syncfs), one per host in parallel: `{}`",
                show(&push_command(&strata, &s, &fleet.config, h, &["--json"]), work),
                show(
                    &push_command(&strata, &s, &fleet.config, h, &["--noop", "--set", &dry_set]),
                    work
                ),
                lines[0],
                format!(
                    "tar -C '{}' -c srv/bench | ssh -F '{}' -p PORT 127.0.0.1 'tar -C / -x [&& sync -f /srv/bench]'",
                    s.trees[0].display(),
                    fleet.config.display(),
                )
                .replace(&*work.to_string_lossy(), "$WORK"),
            );
        }
        // Round 0 warms the binaries and the page cache; rounds 1.. count. Within a round
        // strata and the floors run one after the other, so drift hits them alike.
        for run in 0..=a.runs {
            let hosts = || (0..h).map(|i| fleet.host(i));
            hosts().for_each(|x| reset(x, Reset::All));
            strata_bench::sync();
            let ship = push(
                &mut push_command(&strata, &s, &fleet.config, h, &["--json"]),
                &log,
                0,
                "changed",
                Some(true),
            );
            hosts().for_each(|x| reset(x, Reset::KeepBinary));
            strata_bench::sync();
            let first = push(
                &mut push_command(&strata, &s, &fleet.config, h, &["--json"]),
                &log,
                0,
                "changed",
                Some(false),
            );
            if let Err(e) = check_hosts(&floor, &s, &fleet, h) {
                panic!("strata's files differ from the expected ones on {e}");
            }
            strata_bench::sync();
            let again = push(
                &mut push_command(&strata, &s, &fleet.config, h, &["--json"]),
                &log,
                0,
                "unchanged",
                Some(false),
            );
            let dry = push(
                &mut push_command(
                    &strata,
                    &s,
                    &fleet.config,
                    h,
                    &["--noop", "--set", &dry_set],
                ),
                &log,
                2,
                "",
                None,
            );
            let shown = std::fs::read_to_string(&log).unwrap_or_default();
            assert!(
                shown.contains(&format!("server_name {DRY_HOST};")),
                "the dry run shows no diff:\n{shown}"
            );
            let fs = measure_to(&mut sh(&ssh_script), None);
            assert_eq!(fs.code, 0, "ssh true failed");
            let ax = push(
                &mut push_command(&strata, &s, &x_config, h, &["--json"]),
                &log,
                0,
                "unchanged",
                Some(false),
            );
            let fsx = measure_to(&mut sh(&ssh_x_script), None);
            assert_eq!(fsx.code, 0, "ssh true failed");
            hosts().for_each(|x| reset(x, Reset::Files));
            strata_bench::sync();
            let ft = measure_to(&mut sh(&tar_plain), None);
            assert_eq!(ft.code, 0, "the tar floor failed");
            hosts().for_each(|x| reset(x, Reset::Files));
            strata_bench::sync();
            let fts = measure_to(&mut sh(&tar_synced), None);
            assert_eq!(fts.code, 0, "the tar floor failed");
            if let Err(e) = check_hosts(&floor, &s, &fleet, h) {
                panic!("the tar floor's files differ on {e}");
            }
            if run > 0 {
                f.ship.push(&ship);
                f.first.push(&first);
                f.again.push(&again);
                f.dry.push(&dry);
                ssh.push(&fs);
                again_x.push(&ax);
                ssh_x.push(&fsx);
                tar.push(&ft);
                tar_sync.push(&fts);
            }
            f.rss = f
                .rss
                .max(ship.rss)
                .max(first.rss)
                .max(again.rss)
                .max(dry.rss);
        }
        // The tools, `--tool-runs` rounds each (every run counts: they are slow), one
        // after the other within a round; over the time limit at one H, not run at larger H.
        let mut tools: Vec<(Tool, Figures)> = tool_list
            .iter()
            .map(|&t| {
                let problem = if t == Tool::Ansible && ansible_problem.is_some() {
                    ansible_problem.clone()
                } else if over.contains(&t) {
                    Some(format!("not run: over {} s at fewer hosts", a.tool_limit))
                } else {
                    None
                };
                (
                    t,
                    Figures {
                        problem,
                        ..Figures::default()
                    },
                )
            })
            .collect();
        for _ in 0..a.tool_runs {
            for (t, tf) in tools.iter_mut() {
                if tf.problem.is_some() {
                    continue;
                }
                let venv = venv.as_deref().expect("tools only with a venv");
                eprintln!("push: H = {h}, {} ...", t.name());
                for i in 0..h {
                    reset(fleet.host(i), Reset::KeepBinary);
                }
                strata_bench::sync();
                let tlog = work.join(format!("push-{}-{h}.log", t.name()));
                for phase in 0..3 {
                    let mut cmd = tool_command(*t, &s, venv, h, phase);
                    if h == hs[0] && tf.first.secs.is_empty() && phase != 1 {
                        let _ = writeln!(
                            commands,
                            "- {}, {}: `{}`",
                            t.name(),
                            if phase == 0 { "(a) (b)" } else { "(c)" },
                            show(&cmd, work)
                        );
                    }
                    let r = timed(&mut cmd, a.tool_limit, &tlog);
                    if r.code == 124 || r.code == 137 {
                        tf.problem = Some(format!(
                            "{} over {} s",
                            ["first apply", "no-change run", "dry run"][phase],
                            a.tool_limit
                        ));
                        over.push(*t);
                        break;
                    }
                    if r.code != 0 {
                        let text = std::fs::read_to_string(&tlog).unwrap_or_default();
                        let tail: Vec<&str> = text.lines().rev().take(3).collect();
                        tf.problem = Some(format!(
                            "phase {phase} failed (exit {}): {}",
                            r.code,
                            brief(&tail.into_iter().rev().collect::<Vec<_>>().join("\n"))
                        ));
                        break;
                    }
                    if phase == 2 {
                        let shown = std::fs::read_to_string(&tlog).unwrap_or_default();
                        if !shown.contains(&format!("server_name {DRY_HOST};")) {
                            tf.problem = Some("its dry run showed no diff".into());
                            break;
                        }
                    }
                    if phase == 0 {
                        if let Err(e) = check_hosts(&floor, &s, &fleet, h) {
                            tf.problem = Some(format!("its files differ on {}", brief(&e)));
                            break;
                        }
                        strata_bench::sync();
                    }
                    tf.rss = tf.rss.max(r.rss);
                    [&mut tf.first, &mut tf.again, &mut tf.dry][phase].push(&r);
                }
            }
        }
        rows.push(Row {
            h,
            strata: f,
            ssh,
            tar,
            tar_sync,
            again_x,
            ssh_x,
            tools,
        });
    }
    drop(fleet);

    let versions: Vec<String> = tool_list
        .iter()
        .map(|t| {
            format!(
                "{} ({})",
                t.name(),
                t.version(venv.as_deref().expect("venv"))
            )
        })
        .collect();
    let _ = write!(
        md,
        "Written by `bench/run --sections push` (issue 19). Machine: {}.\nCommand: `{}`.\n\n\
         **Hosts**: H = {} whole test hosts on loopback (strata_test::TestHosts: each a copy of a\n\
         Debian bookworm ext4 image with openssh-server, mounted in its own mount, PID and UTS\n\
         namespaces, sshd on 127.0.0.1:PORT), all reached through one `ssh -F` configuration (its\n\
         key, its known_hosts, user root; the client is {}, the default key exchange). Their sshd is\n\
         given the SFTP subsystem every Debian sshd has (pyinfra uploads only over SFTP).\n\
         **Workload**: the bench's {FILES} files per host (50 static, 50 Jinja2 templates with five\n\
         variables), each host its own rendering (its host name). Every tool's first apply is\n\
         checked byte for byte (content and mode) on every host (`floor check`), every dry run for\n\
         the diff of a template.\n\n\
         **Phases**: (s) the first push to hosts without strata: the binary is shipped (from the\n\
         operator's cache of the stripped, gzipped binary), then the apply; (a) first apply: each\n\
         host's files, `/var/lib/strata` and `/var/cache/strata` removed, strata's shipped binary\n\
         kept; (b) the same again, nothing to change; (c) dry run with diffs after changing the host\n\
         name, so that the 50 templated files would change on every host (`strata push --noop --set\n\
         gen.host_name=…`, `ansible-playbook --check --diff -e`, `pyinfra --dry --diff --data`).\n\
         **Floors**: `ssh HOST true` to the H hosts in parallel; `tar c | ssh HOST tar x` of the\n\
         host's {FILES} files to the H hosts in parallel, plain and followed by one `sync -f` (a\n\
         syncfs: the durability strata's commit gives).\n\n\
         strata and the floors: medians of {} rounds after a warm-up round (each round: s, a, b, c,\n\
         ssh true, b and ssh true again with `KexAlgorithms curve25519-sha256`, tar, tar + syncfs);\n\
         ratios pair by pair (run i against run i of the same round). Ansible and pyinfra: {} run(s)\n\
         each, {} s at most per phase. **Operator CPU** is user + system time of the command and\n\
         every process it waited for (its ssh processes), from `wait4`; **peak RSS** the largest of\n\
         those processes (bench/src/bin/peak.rs). Ansible: ssh connection with its defaults\n\
         (ControlPersist 60 s, so a run reuses the connections the run before it left), pipelining,\n\
         forks = max(H, 5), no facts; python3 installed on the hosts for it (strata and pyinfra need\n\
         none). pyinfra: its paramiko connector with the same key and known_hosts, `--parallel H\n\
         --no-wait`, `-y` except for the dry run (with `-y` it skips change detection and shows no\n\
         diff). Tools: {}.\n\n",
        machine(work),
        invocation(),
        hs.iter()
            .map(|h| h.to_string())
            .collect::<Vec<_>>()
            .join(", "),
        ssh_version(),
        a.runs,
        a.tool_runs,
        a.tool_limit,
        if versions.is_empty() {
            "none".to_string()
        } else {
            versions.join(", ")
        },
    );
    let _ = write!(
        md,
        "Load average (1, 5, 15 min) when the section started: {load_before}; when it ended: {}.\n\n",
        loadavg()
    );
    let _ = write!(
        md,
        "The very first push (H = {}; the operator's cache empty: strata strips and gzips itself, {:.1} MB\n\
         cached, then ships to each host): {}.\n\n",
        hs[0],
        ship_cache as f64 / 1e6,
        secs(cold.secs)
    );
    let cell = |x: Option<f64>| x.map_or_else(|| "—".to_string(), secs);
    md.push_str("## strata and the floors\n\n| H | (s) first push, ships strata | (a) first apply | (b) no change | (c) dry run with diffs | floor: ssh true | floor: tar | floor: tar + syncfs | (a) ÷ tar | (a) ÷ tar + syncfs | (b) ÷ ssh true |\n|---|---|---|---|---|---|---|---|---|---|---|\n");
    let pair = |x: &Series, y: &Series| {
        paired_median(&x.secs, &y.secs).map_or_else(|| "—".into(), |r| format!("{r:.2}×"))
    };
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.h,
            cell(r.strata.ship.med()),
            cell(r.strata.first.med()),
            cell(r.strata.again.med()),
            cell(r.strata.dry.med()),
            cell(r.ssh.med()),
            cell(r.tar.med()),
            cell(r.tar_sync.med()),
            pair(&r.strata.first, &r.tar),
            pair(&r.strata.first, &r.tar_sync),
            pair(&r.strata.again, &r.ssh),
        );
    }
    md.push_str("\n## Side by side with Ansible and pyinfra\n\n| H | tool | (a) first apply | (b) no change | (c) dry run with diffs | peak RSS | tool ÷ strata (a / b / c) | problem |\n|---|---|---|---|---|---|---|---|\n");
    for r in &rows {
        let _ = writeln!(
            md,
            "| {} | strata | {} | {} | {} | {:.1} MiB | — | |",
            r.h,
            cell(r.strata.first.med()),
            cell(r.strata.again.med()),
            cell(r.strata.dry.med()),
            r.strata.rss as f64 / 1048576.0
        );
        for (t, tf) in &r.tools {
            let ratio = |x: &Series, s: &Series| match (x.med(), s.med()) {
                (Some(x), Some(s)) => format!("{:.0}×", x / s),
                _ => "—".into(),
            };
            let _ = writeln!(
                md,
                "| {} | {} | {} | {} | {} | {:.1} MiB | {} / {} / {} | {} |",
                r.h,
                t.name(),
                cell(tf.first.med()),
                cell(tf.again.med()),
                cell(tf.dry.med()),
                tf.rss as f64 / 1048576.0,
                ratio(&tf.first, &r.strata.first),
                ratio(&tf.again, &r.strata.again),
                ratio(&tf.dry, &r.strata.dry),
                tf.problem.as_deref().unwrap_or(""),
            );
        }
    }
    md.push_str("\n## The operator's CPU and memory\n\nCPU: user + system of `strata push` and its ssh processes, then of strata's process alone (ssh\nleft out); the floors' CPU is their ssh (and tar) processes'. Peak RSS: the largest process.\n\n| H | strata CPU (s / a / b / c) | strata alone (s / a / b / c) | ssh true CPU | tar CPU | strata peak RSS (s / a / b / c) | with curve25519: (b) time, CPU | ssh true time, CPU |\n|---|---|---|---|---|---|---|---|\n");
    let cpu = |x: &Series| x.cpu().map_or_else(|| "—".to_string(), ms);
    let own = |x: &Series| x.own().map_or_else(|| "—".to_string(), ms);
    let mib = |x: &Series| format!("{:.1}", x.rss as f64 / 1048576.0);
    for r in &rows {
        let f = &r.strata;
        let _ = writeln!(
            md,
            "| {} | {} / {} / {} / {} | {} / {} / {} / {} | {} | {} | {} / {} / {} / {} MiB | {}, {} | {}, {} |",
            r.h,
            cpu(&f.ship),
            cpu(&f.first),
            cpu(&f.again),
            cpu(&f.dry),
            own(&f.ship),
            own(&f.first),
            own(&f.again),
            own(&f.dry),
            cpu(&r.ssh),
            cpu(&r.tar),
            mib(&f.ship),
            mib(&f.first),
            mib(&f.again),
            mib(&f.dry),
            cell(r.again_x.med()),
            cpu(&r.again_x),
            cell(r.ssh_x.med()),
            cpu(&r.ssh_x),
        );
    }

    // The issue's targets.
    md.push_str("\n## Targets (issue 19)\n\n");
    let word = |ok: bool| if ok { "met" } else { "MISSED" };
    let (lo, hi) = (rows.first().expect("a row"), rows.last().expect("a row"));
    if let Some(r) = paired_median(&hi.strata.again.secs, &hi.ssh.secs) {
        let _ = writeln!(
            md,
            "- No-change push to {} hosts within 2× the `ssh true` floor: {} against {}, {r:.2}× ({}).",
            hi.h,
            cell(hi.strata.again.med()),
            cell(hi.ssh.med()),
            word(r <= 2.0)
        );
    }
    for r in &rows {
        if let (Some(x), Some(y)) = (
            paired_median(&r.strata.first.secs, &r.tar.secs),
            paired_median(&r.strata.first.secs, &r.tar_sync.secs),
        ) {
            let _ = writeln!(
                md,
                "- First apply to {} host(s) within 3× the tar floor: {} against {}, {x:.2}× ({}); against tar + syncfs {y:.2}×.",
                r.h,
                cell(r.strata.first.med()),
                cell(r.tar.med()),
                word(x <= 3.0)
            );
        }
    }
    if hi.h > lo.h {
        let k = (hi.h - lo.h) as f64;
        let mut parts = Vec::new();
        let mut all = true;
        for (label, x, y) in [
            ("(s)", &lo.strata.ship, &hi.strata.ship),
            ("(a)", &lo.strata.first, &hi.strata.first),
            ("(b)", &lo.strata.again, &hi.strata.again),
            ("(c)", &lo.strata.dry, &hi.strata.dry),
        ] {
            if let (Some(x), Some(y)) = (x.cpu(), y.cpu()) {
                let per = (y - x) / k;
                all &= per < 0.030;
                parts.push(format!("{label} {}", ms(per)));
            }
        }
        let per = |x: Option<f64>, y: Option<f64>| match (x, y) {
            (Some(x), Some(y)) => ms((y - x) / k),
            _ => "—".into(),
        };
        let _ = writeln!(
            md,
            "- One more host under 30 ms of operator CPU ((CPU at {} − CPU at {}) / {k:.0}, user + system, ssh included): {} ({}). Of which strata's process alone: (a) {}, (b) {}; the `ssh true` floor alone costs {} per host. With `KexAlgorithms curve25519-sha256` in the ssh configuration: (b) {} per host ({}), `ssh true` {}.",
            hi.h,
            lo.h,
            parts.join(", "),
            word(all),
            per(lo.strata.first.own(), hi.strata.first.own()),
            per(lo.strata.again.own(), hi.strata.again.own()),
            per(lo.ssh.cpu(), hi.ssh.cpu()),
            per(lo.again_x.cpu(), hi.again_x.cpu()),
            match (lo.again_x.cpu(), hi.again_x.cpu()) {
                (Some(x), Some(y)) => word((y - x) / k < 0.030),
                _ => "—",
            },
            per(lo.ssh_x.cpu(), hi.ssh_x.cpu()),
        );
    }
    let _ = writeln!(
        md,
        "- Operator peak RSS under 100 MiB at {} hosts: {:.1} MiB ({}).",
        hi.h,
        hi.strata.rss as f64 / 1048576.0,
        word(hi.strata.rss < 100 << 20)
    );
    for (t, goal) in [(Tool::Ansible, 100.0), (Tool::Pyinfra, 10.0)] {
        if let Some((_, tf)) = hi.tools.iter().find(|(x, _)| *x == t) {
            if let (Some(x), Some(s)) = (tf.again.med(), hi.strata.again.med()) {
                let _ = writeln!(
                    md,
                    "- No-change run to {} hosts at least {goal:.0}× faster than {}: {:.0}× ({}).",
                    hi.h,
                    t.name(),
                    x / s,
                    word(x / s >= goal)
                );
            } else {
                let _ = writeln!(
                    md,
                    "- No-change run to {} hosts against {}: not measured ({}).",
                    hi.h,
                    t.name(),
                    tf.problem.as_deref().unwrap_or("no figure")
                );
            }
        }
    }
    if !problems.is_empty() {
        md.push_str("\nProblems:\n\n");
        md.push_str(&problems);
    }
    let _ = write!(
        md,
        "\nThe exact commands at H = {} (`$WORK` is the work directory; `bench/run` keeps it with\n`STRATA_BENCH_KEEP=1`):\n\n{commands}",
        hs[0]
    );
    md
}

/// This machine's load average over 1, 5 and 15 minutes (other work on it slows every
/// figure).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|t| t.split_whitespace().take(3).collect::<Vec<_>>().join(", "))
        .unwrap_or_default()
}

/// The ssh client's version, as `ssh -V` prints it.
fn ssh_version() -> String {
    Command::new("ssh")
        .arg("-V")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
        .unwrap_or_else(|e| format!("ssh: {e}"))
}

/// A message on one line, at most 300 characters.
fn brief(text: &str) -> String {
    let line: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let line = line.join(" / ");
    match line.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &line[..i]),
        None => line,
    }
}

/// Seconds, or milliseconds below one second.
fn secs(s: f64) -> String {
    if s >= 1.0 { format!("{s:.2} s") } else { ms(s) }
}

/// Bytes of the regular files under `dir`.
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map_or(0, |m| m.len()),
            _ => 0,
        })
        .sum()
}
