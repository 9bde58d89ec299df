//! A hostile module author against the sandbox: each test is an attack that worked before
//! the sandbox ran scripts in a user namespace behind `pivot_root` with seccomp (issue 16),
//! made harmless (a marker file in a temporary directory; a sysctl read back and
//! restored), and checks that the plan stays inside its sandbox.
//!
//! (Over 600 lines, kept whole: sixteen independent attacks of a few dozen lines each on
//! the same small site and helpers; one file is the list of what the sandbox withstands,
//! read in one place, which split by size would be two lists of nothing in particular.)

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_test::{TestEnv, require_busybox_root};

use crate::env;

/// A site with one node `n1` applying module `app`, on a busybox root.
fn site(e: &TestEnv, sandbox: &str) {
    e.write(
        "strata.toml",
        &format!("[site]\nname = \"t\"\n[sandbox]\n{sandbox}\n"),
    )
    .write(
        "nodes/n1.toml",
        "modules = [\"app\"]\n[params]\napp.password = \"hunter2-s3cr3t\"\n",
    )
    .write("modules/app/module.toml", "timeout = 60\n")
    .write_root("etc/passwd", "root:x:0:0:root:/root:/bin/sh\n", 0o644);
    std::fs::create_dir_all(e.root().join("var/lib")).expect("var/lib");
}

fn script(e: &TestEnv, name: &str, body: &str) {
    let path = e.site().join("modules/app/scripts").join(name);
    strata_test::write(&path, &format!("#!/bin/sh\n{body}\n"));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}

/// Plans with `--json`; the plan must succeed.
fn plan(e: &TestEnv) -> Value {
    let run = e.run(&["plan", "--node", "n1", "--json"]);
    assert!(
        run.code == 0 || run.code == 2,
        "plan failed:\n{}\n{}",
        run.stdout,
        run.stderr
    );
    serde_json::from_str(&run.stdout).expect("plan json")
}

fn changed_paths(plan: &Value) -> Vec<String> {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| c["path"].as_str().expect("path").to_string())
        .collect()
}

fn would_run(plan: &Value) -> Vec<String> {
    plan["calls"]
        .as_array()
        .expect("calls in the plan's JSON")
        .iter()
        .map(|c| {
            c["argv"]
                .as_array()
                .expect("argv")
                .iter()
                .map(|a| a.as_str().expect("arg"))
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

/// A static program that tries the classic chroot escape and then writes `marker` (a
/// host path) and appends to the target's `/etc/passwd` (also a host path).
fn escape_program(e: &TestEnv) -> Option<PathBuf> {
    let src = e.path().join("escape.c");
    std::fs::write(
        &src,
        r#"#include <fcntl.h>
#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>
int main(int argc, char **argv) {
    mkdir("/escape", 0755);
    if (chroot("/escape") != 0) perror("chroot");
    for (int i = 0; i < 64; i++) chdir("..");
    if (chroot(".") != 0) perror("chroot .");
    for (int i = 1; i < argc; i++) {
        int fd = open(argv[i], O_WRONLY | O_CREAT | O_APPEND, 0644);
        if (fd < 0) { perror(argv[i]); continue; }
        write(fd, "escaped:x:0:0::/:/bin/sh\n", 25);
        close(fd);
    }
    return 0;
}
"#,
    )
    .expect("write escape.c");
    let out = e.site().join("modules/app/files/usr/local/bin/escape");
    std::fs::create_dir_all(out.parent().expect("parent")).expect("dir");
    let ok = std::process::Command::new("cc")
        .args(["-static", "-O1", "-o"])
        .arg(&out)
        .arg(&src)
        .status()
        .is_ok_and(|s| s.success());
    ok.then_some(out)
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_chroot_escape_stays_in_the_sandbox() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    if escape_program(&e).is_none() {
        panic!("this test needs a C compiler with a static libc (cc -static)");
    }
    std::fs::set_permissions(
        e.site().join("modules/app/files/usr/local/bin/escape"),
        std::fs::Permissions::from_mode(0o755),
    )
    .expect("chmod");
    e.write(
        "modules/app/module.toml",
        "timeout = 60\n[[file]]\npath = \"/usr/local/bin/escape\"\nmode = \"0755\"\n",
    );
    let marker = e.path().join("escaped-marker");
    let passwd = e.root().join("etc/passwd");
    script(
        &e,
        "10-escape.sh",
        &format!(
            "/usr/local/bin/escape {} {}",
            marker.display(),
            passwd.display()
        ),
    );
    let before = e.tree();
    plan(&e);
    assert!(!marker.exists(), "the script wrote {}", marker.display());
    assert_eq!(e.tree(), before, "the plan changed the target");
    assert!(
        !std::fs::read_to_string(&passwd)
            .expect("passwd")
            .contains("escaped"),
        "the script appended to the target's /etc/passwd"
    );
}

/// The device number of the file system holding `path`, as `major minor`.
fn device_of(path: &Path) -> (u64, u64) {
    let dev = std::fs::metadata(path).expect("stat").dev();
    let (major, minor) = (libc::major(dev) as u64, libc::minor(dev) as u64);
    // A file system without a block device (overlay, tmpfs): try the first loop device.
    if major == 0 { (7, 0) } else { (major, minor) }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn device_nodes_mounts_and_host_sysctls_are_refused() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    let (major, minor) = device_of(e.path());
    let swappiness = Path::new("/proc/sys/vm/swappiness");
    let host = std::fs::read_to_string(swappiness).expect("read swappiness");
    let other = (host.trim().parse::<u32>().expect("a number") + 7) % 100;
    script(
        &e,
        "10-host.sh",
        &format!(
            "mknod /etc/disk b {major} {minor} 2>/dev/null || echo refused > /etc/refused-mknod
mkdir -p /mnt/disk
mount /etc/disk /mnt/disk 2>/dev/null || echo refused > /etc/refused-mount-disk
mount -t tmpfs none /mnt/disk 2>/dev/null || echo refused > /etc/refused-mount-tmpfs
mount -o remount,rw /proc/sys 2>/dev/null || echo refused > /etc/refused-remount
echo {other} > /proc/sys/vm/swappiness 2>/dev/null || echo refused > /etc/refused-sysctl
echo h > /proc/sysrq-trigger 2>/dev/null || echo refused > /etc/refused-sysrq
exit 0"
        ),
    );
    let before = e.tree();
    let json = plan(&e);
    let now = std::fs::read_to_string(swappiness).expect("read swappiness");
    if now != host {
        std::fs::write(swappiness, &host).expect("restore swappiness");
    }
    assert_eq!(
        now, host,
        "a plan's script changed the host's vm.swappiness"
    );
    assert_eq!(e.tree(), before, "the plan changed the target");
    let paths = changed_paths(&json);
    for what in [
        "mknod",
        "mount-disk",
        "mount-tmpfs",
        "remount",
        "sysctl",
        "sysrq",
    ] {
        assert!(
            paths.contains(&format!("/etc/refused-{what}")),
            "{what} was not refused: the plan changes {paths:?}"
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_forged_call_record_is_refused_and_nothing_runs() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    let marker = e.path().join("forged-marker");
    script(
        &e,
        "10-forge.sh",
        &format!(
            "printf '%s\\0' 2 /bin/sh -c 'touch {}' > /run/strata/calls",
            marker.display()
        ),
    );
    let before = e.tree();
    let run = e.run(&["apply", "--node", "n1"]).code(1);
    assert!(
        run.stderr.contains("scripts/10-forge.sh")
            && run.stderr.contains("`/bin/sh`")
            && run.stderr.contains("not an intercepted command"),
        "{}",
        run.stderr
    );
    assert!(!marker.exists(), "the forged command ran");
    assert_eq!(e.tree(), before, "a refused apply changed the target");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn the_call_channel_and_shims_cannot_be_replaced() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    script(
        &e,
        "10-replace.sh",
        "rm -f /run/strata/calls 2>/dev/null || echo refused > /etc/refused-rm
echo x > /run/strata/shims/reboot 2>/dev/null || echo refused > /etc/refused-shim
exit 0",
    );
    let paths = changed_paths(&plan(&e));
    for what in ["rm", "shim"] {
        assert!(
            paths.contains(&format!("/etc/refused-{what}")),
            "{what} was not refused: {paths:?}"
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_reboot_asked_for_in_any_way_is_reported_by_the_plan() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    // Never applied here: an apply would run these on the target after the commit.
    script(&e, "10-applet.sh", "busybox reboot\nbusybox halt");
    script(
        &e,
        "20-other-path.sh",
        "ln -s /bin/busybox /tmp/rb && cd /tmp && ./rb 2>/dev/null; ln -sf /bin/busybox /tmp/reboot && /tmp/reboot",
    );
    // The kernel stops the namespace at once; the sleep keeps the shell from racing it.
    script(
        &e,
        "30-syscall.sh",
        "busybox poweroff -f\nsleep 5\necho not reached > /etc/after",
    );
    script(&e, "40-next.sh", "echo ran > /etc/next");
    let json = plan(&e);
    let calls = would_run(&json);
    assert_eq!(
        calls.iter().filter(|c| *c == "reboot").count(),
        2,
        "calls: {calls:?}"
    );
    assert!(calls.contains(&"halt".to_string()), "calls: {calls:?}");
    assert!(calls.contains(&"poweroff".to_string()), "calls: {calls:?}");
    let paths = changed_paths(&json);
    assert!(
        !paths.contains(&"/etc/after".to_string()),
        "the script went on after reboot(2)"
    );
    assert!(
        paths.contains(&"/etc/next".to_string()),
        "the next script did not run"
    );
}

/// The pids of processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .expect("/proc")
        .flatten()
        .filter_map(|d| d.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| String::from_utf8_lossy(&c).contains(needle))
        })
        .collect()
}

fn run_dirs(tmp: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(tmp)
        .expect("tmp")
        .flatten()
        .map(|d| d.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("strata-sandbox."))
        })
        .collect()
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_killed_plan_leaves_no_process_and_its_work_dir_goes_next_time() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    let tag = format!("strata-attack-{}", std::process::id());
    let forever = "while :; do sleep 1; done";
    script(
        &e,
        "10-sleep.sh",
        &format!("sh -c '{forever}' bg-{tag} &\nsh -c '{forever}' fg-{tag}"),
    );
    let tmp = e.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    let mut child = e
        .cmd(&["plan", "--node", "n1"])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start strata");
    let start = Instant::now();
    while processes_with(&format!("-{tag}")).len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the script never started"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // While it runs: the work dir and everything in it are the owner's alone.
    let dirs = run_dirs(&tmp);
    assert_eq!(dirs.len(), 1, "{dirs:?}");
    let md = std::fs::metadata(&dirs[0]).expect("work dir");
    assert_eq!(md.mode() & 0o777, 0o700, "work dir mode");
    for entry in walkdir::WalkDir::new(&dirs[0]).into_iter().flatten() {
        let md = entry.metadata().expect("stat");
        if md.is_file() {
            assert_eq!(
                md.mode() & 0o077,
                0,
                "{} is readable by others",
                entry.path().display()
            );
        }
    }
    child.kill().expect("kill -9 strata");
    child.wait().expect("reap");
    let start = Instant::now();
    while !processes_with(&format!("-{tag}")).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the script's processes outlived strata"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(run_dirs(&tmp).len(), 1, "the killed run's work dir");
    script(&e, "10-sleep.sh", "true");
    let run = e
        .cmd(&["plan", "--node", "n1"])
        .env("TMPDIR", &tmp)
        .output()
        .expect("plan");
    assert!(run.status.code().is_some_and(|c| c == 0 || c == 2));
    assert_eq!(run_dirs(&tmp), Vec::<PathBuf>::new(), "left behind");
}

/// Files under `dir` that others may read and that hold `secret`.
fn readable_with(dir: &Path, secret: &str) -> Vec<PathBuf> {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|entry| {
            entry
                .metadata()
                .is_ok_and(|md| md.is_file() && md.mode() & 0o004 != 0)
                && std::fs::read(entry.path())
                    .is_ok_and(|t| String::from_utf8_lossy(&t).contains(secret))
        })
        .map(|entry| entry.path().to_path_buf())
        .collect()
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn parameters_never_reach_a_file_others_can_read() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    let tag = format!("strata-scan-{}", std::process::id());
    script(
        &e,
        "10-x.sh",
        &format!("echo \"$STRATA_P_app_password\" | wc -c > /etc/len\nsh -c 'sleep 2; :' {tag}"),
    );
    let tmp = e.path().join("tmp");
    std::fs::create_dir_all(&tmp).expect("tmp");
    // TMPDIR readable by all, as /tmp is.
    std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o1777)).expect("chmod");
    let mut child = e
        .cmd(&["apply", "--node", "n1"])
        .env("TMPDIR", &tmp)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start strata");
    let start = Instant::now();
    while processes_with(&tag).is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "the script never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // While the script runs, then once all is done.
    let during = readable_with(&tmp, "hunter2-s3cr3t");
    assert_eq!(child.wait().expect("apply").code(), Some(0));
    assert_eq!(
        during,
        Vec::<PathBuf>::new(),
        "readable by others during the run"
    );
    for dir in [&tmp, &e.root()] {
        let after = readable_with(dir, "hunter2-s3cr3t");
        assert_eq!(
            after,
            Vec::<PathBuf>::new(),
            "readable by others after the run"
        );
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn the_process_limit_stops_a_fork_bomb() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "max_processes = 40");
    script(
        &e,
        "10-bomb.sh",
        "set -e\ni=0\nwhile [ $i -lt 200 ]; do sleep 30 & i=$((i+1)); done\nwait",
    );
    let started = Instant::now();
    let run = e.run(&["plan", "--node", "n1"]).code(1);
    assert!(
        run.stderr.contains("limit of 40 processes"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the bomb ran on"
    );
}

/// Above 300 processes the limit is the sandbox PID namespace's own `pid_max` (Linux
/// 6.14 and later; a cgroup on older kernels), which costs no cgroup migration.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_large_process_limit_stops_a_fork_bomb_too() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "max_processes = 400");
    script(
        &e,
        "10-bomb.sh",
        "set -e\ni=0\nwhile [ $i -lt 700 ]; do sleep 30 & i=$((i+1)); done\nwait",
    );
    let started = Instant::now();
    let run = e.run(&["plan", "--node", "n1"]).code(1);
    assert!(
        run.stderr.contains("limit of 400 processes"),
        "{}",
        run.stderr
    );
    assert!(
        started.elapsed() < Duration::from_secs(25),
        "the bomb ran on"
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn the_memory_limit_stops_a_script_that_eats_memory() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "max_memory = \"64M\"");
    script(
        &e,
        "10-eat.sh",
        "set -e\nx=$(head -c 300000000 /dev/zero | tr '\\0' a)\necho ${#x}",
    );
    let run = e.run(&["plan", "--node", "n1"]).code(1);
    assert!(
        run.stderr.contains("memory limit of 64 MiB"),
        "{}",
        run.stderr
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_bad_memory_limit_names_the_file() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "max_memory = \"lots\"");
    script(&e, "10-x.sh", "true");
    let run = e.run(&["plan", "--node", "n1"]).code(1);
    assert!(
        run.stderr.contains("strata.toml") && run.stderr.contains("`lots` is not a size"),
        "{}",
        run.stderr
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn only_package_programs_see_the_download_cache() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    e.write(
        "modules/app/module.toml",
        "timeout = 60\n[[package]]\nname = \"nginx\"\n",
    );
    // Stub package tools: "installed" already, after noting that the cache is there.
    e.write_root("usr/bin/apt-get", "#!/bin/sh\nexit 0\n", 0o755)
        .write_root(
            "usr/bin/dpkg-query",
            "#!/bin/sh\ntouch /run/strata/cache/seen-by-package\nprintf 'installed 1.0'\n",
            0o755,
        );
    script(
        &e,
        "10-cache.sh",
        "touch /run/strata/cache/planted 2>/dev/null && echo yes > /etc/wrote-cache || echo refused > /etc/refused-cache\nexit 0",
    );
    let cache = e.cache();
    let run = e
        .cmd(&["plan", "--node", "n1", "--json"])
        .output()
        .expect("plan");
    let json: Value = serde_json::from_slice(&run.stdout)
        .unwrap_or_else(|_| panic!("plan failed: {}", String::from_utf8_lossy(&run.stderr)));
    let paths = changed_paths(&json);
    assert!(
        paths.contains(&"/etc/refused-cache".to_string()),
        "a script wrote to the cache: {paths:?}"
    );
    let files: Vec<String> = walkdir::WalkDir::new(&cache)
        .into_iter()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(files.contains(&"seen-by-package".to_string()), "{files:?}");
    assert!(!files.contains(&"planted".to_string()), "{files:?}");
    // The cache a package program writes to is root's alone.
    for entry in std::fs::read_dir(cache.join("packages")).expect("packages") {
        let path = entry.expect("entry").path();
        let md = std::fs::metadata(&path).expect("stat");
        assert_eq!(md.mode() & 0o077, 0, "{} is open to others", path.display());
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn descriptors_left_open_by_strata_s_caller_never_reach_a_script() {
    use std::os::unix::process::CommandExt;
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    let outside = e.path().join("outside");
    std::fs::create_dir_all(&outside).expect("outside");
    script(
        &e,
        "10-fd.sh",
        "for n in 3 4 5 6 7 8 9 10; do echo x > /proc/self/fd/$n/marker 2>/dev/null; done\nexit 0",
    );
    let dir = std::fs::File::open(&outside).expect("open dir");
    let fd = std::os::fd::AsRawFd::as_raw_fd(&dir);
    let mut cmd = e.cmd(&["plan", "--node", "n1"]);
    // SAFETY: dup2 in the child before exec; the new descriptor has no close-on-exec.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(fd, 7) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let run = cmd.output().expect("plan");
    assert!(run.status.code().is_some_and(|c| c == 0 || c == 2));
    assert!(
        !outside.join("marker").exists(),
        "a script wrote through a descriptor strata inherited"
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn host_devices_and_proc_entries_keep_their_permissions() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    let mode = |p: &str| std::fs::metadata(p).map(|m| m.mode() & 0o7777).ok();
    let (full, slab) = (mode("/dev/full"), mode("/proc/slabinfo"));
    script(
        &e,
        "10-perm.sh",
        "chmod 0600 /dev/full 2>/dev/null || echo refused > /etc/refused-dev
chmod 0444 /proc/slabinfo 2>/dev/null || echo refused > /etc/refused-proc
exit 0",
    );
    let json = plan(&e);
    let (full_after, slab_after) = (mode("/dev/full"), mode("/proc/slabinfo"));
    // Put back what an old build changed before asserting.
    if let (Some(m), true) = (full, full != full_after) {
        std::fs::set_permissions("/dev/full", std::fs::Permissions::from_mode(m)).ok();
    }
    if let (Some(m), true) = (slab, slab != slab_after) {
        std::fs::set_permissions("/proc/slabinfo", std::fs::Permissions::from_mode(m)).ok();
    }
    assert_eq!(full_after, full, "a plan changed the host's /dev/full");
    assert_eq!(slab_after, slab, "a plan changed the host's /proc/slabinfo");
    let paths = changed_paths(&json);
    assert!(paths.contains(&"/etc/refused-dev".to_string()), "{paths:?}");
    assert!(
        paths.contains(&"/etc/refused-proc".to_string()),
        "{paths:?}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_sparse_giant_and_a_flood_of_calls_are_refused() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "max_memory = \"64M\"");
    script(&e, "10-sparse.sh", "truncate -s 3G /etc/big.img");
    let run = e.run(&["plan", "--node", "n1"]).code(1);
    assert!(
        run.stderr.contains("/etc/big.img") && run.stderr.contains("memory limit"),
        "{}",
        run.stderr
    );
    script(
        &e,
        "10-sparse.sh",
        "head -c 3000000 /dev/zero > /run/strata/calls",
    );
    let run = e.run(&["plan", "--node", "n1"]).code(1);
    assert!(
        run.stderr
            .contains("more than 1 MiB to strata's call channel"),
        "{}",
        run.stderr
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_shim_bound_over_a_real_command_cannot_be_rewritten() {
    let e = env();
    require_busybox_root!(e);
    site(&e, "");
    e.write_root("usr/sbin/poweroff", "#!/bin/sh\nexit 0\n", 0o755);
    script(
        &e,
        "10-shim.sh",
        "echo 'exit 0' > /usr/sbin/poweroff 2>/dev/null || echo refused > /etc/refused-shim\nexit 0",
    );
    script(&e, "20-call.sh", "/usr/sbin/poweroff");
    let json = plan(&e);
    assert!(
        changed_paths(&json).contains(&"/etc/refused-shim".to_string()),
        "{:?}",
        changed_paths(&json)
    );
    assert!(
        would_run(&json).contains(&"/usr/sbin/poweroff".to_string())
            || would_run(&json).contains(&"poweroff".to_string()),
        "{:?}",
        would_run(&json)
    );
}
