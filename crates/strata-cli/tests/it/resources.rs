//! Packages, users, groups, services and lines on real roots: the plan lists every file
//! the target's own tools would change, the apply does it in one transaction, a second
//! plan finds nothing to do, and undeclaring takes all of it back.
//!
//! (Over 600 lines, kept whole: twelve tests, each one kind of resource (or its errors)
//! through plan, apply and undeclaring, sharing `node`, `plan_json`, `apply_converges` and
//! `same_tree`; the two longest, downloads with their loopback server and services under
//! a booted systemd, need those helpers too.)

use serde_json::Value;
use strata_test::{TestEnv, require_busybox_root, require_debian_root};

use crate::env;
use crate::sandbox::changed_paths as changes;

/// A site whose node `n1` applies the given modules.
fn node(e: &TestEnv, modules: &[&str]) {
    let list: Vec<String> = modules.iter().map(|m| format!("\"{m}\"")).collect();
    e.write("strata.toml", "[site]\nname = \"t\"\n").write(
        "nodes/n1.toml",
        &format!("modules = [{}]\n", list.join(", ")),
    );
}

fn plan_json(e: &TestEnv) -> Value {
    let out = e.run(&["plan", "--node", "n1", "--json"]);
    assert!(
        out.code == 0 || out.code == 2,
        "plan failed: {}",
        out.stderr
    );
    serde_json::from_str(&out.stdout).expect("plan JSON")
}

fn changed(plan: &Value, path: &str) -> bool {
    changes(plan).iter().any(|(_, p)| p == path)
}

fn read(e: &TestEnv, rel: &str) -> String {
    std::fs::read_to_string(e.root().join(rel)).unwrap_or_default()
}

/// Asserts two tree snapshots are equal, showing only the lines that differ.
#[track_caller]
fn same_tree(have: &str, want: &str) {
    let (h, w): (Vec<&str>, Vec<&str>) = (have.lines().collect(), want.lines().collect());
    let extra: Vec<&&str> = h.iter().filter(|l| !w.contains(l)).collect();
    let missing: Vec<&&str> = w.iter().filter(|l| !h.contains(l)).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "trees differ\n--- not expected\n{extra:#?}\n--- missing\n{missing:#?}"
    );
}

/// Applies, then a plan finds nothing left to do.
fn apply_converges(e: &TestEnv) {
    e.run(&["apply", "--node", "n1"]).code(0);
    let again = e.run(&["plan", "--node", "n1"]);
    assert_eq!(
        again.code, 0,
        "a second plan still changes:\n{}",
        again.stdout
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the cached Debian root: scripts/test builds it (feature host-tests)"
)]
fn users_and_groups_come_from_the_targets_tools_and_are_taken_back() {
    let e = env();
    require_debian_root!(e);
    node(&e, &["acct"]);
    e.write(
        "modules/acct/module.toml",
        r#"
[[group]]
name = "ssl-cert"
system = true

[[user]]
name = "deploy"
groups = ["ssl-cert", "sudo"]
shell = "/bin/bash"
comment = "Deploy user"

[[user]]
name = "www-data"       # already there: only the shell changes
shell = "/bin/sh"

[[file]]
path = "/srv/app/key"
mode = "0640"
owner = "deploy"
group = "ssl-cert"
"#,
    )
    .write("modules/acct/files/srv/app/key", "not really a key\n");
    let original = e.tree();

    let text = e.run(&["plan", "--node", "n1"]).code(2).stdout;
    // Every account file the tools touch is listed; what is in shadow files never shows.
    for path in ["/etc/passwd", "/etc/group", "/etc/shadow", "/etc/gshadow"] {
        assert!(
            text.contains(&format!("modify    {path} ")),
            "{path} in\n{text}"
        );
    }
    assert!(
        text.contains("+deploy:x:1000:1000:Deploy user:/home/deploy:/bin/bash"),
        "{text}"
    );
    assert!(
        text.contains("-www-data:x:33:33:www-data:/var/www:/usr/sbin/nologin"),
        "{text}"
    );
    assert!(text.contains("create    /home/deploy/.bashrc"), "{text}");
    assert!(text.contains("deploy:ssl-cert"), "owners by name: {text}");
    assert!(!text.contains("deploy:!"), "shadow content shown: {text}");
    same_tree(&e.tree(), &original);

    apply_converges(&e);
    let passwd = read(&e, "etc/passwd");
    let deploy: Vec<&str> = passwd
        .lines()
        .find(|l| l.starts_with("deploy:"))
        .expect("deploy in /etc/passwd")
        .split(':')
        .collect();
    assert_eq!(deploy[6], "/bin/bash");
    let group = read(&e, "etc/group");
    let ssl = group
        .lines()
        .find(|l| l.starts_with("ssl-cert:"))
        .expect("ssl-cert in /etc/group");
    assert!(ssl.ends_with(":deploy"), "{ssl}");
    assert!(
        ssl.split(':')
            .nth(2)
            .expect("gid")
            .parse::<u32>()
            .expect("gid")
            < 1000,
        "system group: {ssl}"
    );
    assert!(
        group
            .lines()
            .any(|l| l.starts_with("sudo:") && l.ends_with(":deploy"))
    );
    assert!(passwd.contains("www-data:x:33:33:www-data:/var/www:/bin/sh"));
    // The file belongs to the user and group made in the same run.
    let md = std::fs::metadata(e.root().join("srv/app/key")).expect("key");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(md.uid().to_string(), deploy[2]);
    assert_eq!(md.gid().to_string(), ssl.split(':').nth(2).expect("gid"));

    // Taking the declarations away restores every account file and removes the home.
    node(&e, &[]);
    apply_converges(&e);
    same_tree(&e.tree(), &original);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the cached Debian root: scripts/test builds it (feature host-tests)"
)]
fn a_declaration_removed_from_a_module_that_stays_is_taken_back_alone() {
    let e = env();
    require_debian_root!(e);
    node(&e, &["acct"]);
    let both = "[[user]]\nname = \"alice\"\n\n[[user]]\nname = \"bob\"\n";
    e.write("modules/acct/module.toml", both);
    apply_converges(&e);
    let with_both = e.tree();
    assert!(read(&e, "etc/passwd").contains("bob:x:"));

    // alice's home holds a file of her own: not strata's, so it stays.
    e.write_root("home/alice/notes.txt", "mine\n", 0o644);
    e.write("modules/acct/module.toml", "[[user]]\nname = \"bob\"\n");
    let text = e.run(&["plan", "--node", "n1"]).code(2).stdout;
    assert!(text.contains("left in place"), "{text}");
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(read(&e, "home/alice/notes.txt"), "mine\n");
    assert!(!e.root().join("home/alice/.bashrc").exists());
    std::fs::remove_dir_all(e.root().join("home/alice")).expect("rm");
    e.write("modules/acct/module.toml", both);
    apply_converges(&e);
    assert_eq!(e.tree(), with_both);

    e.write("modules/acct/module.toml", "[[user]]\nname = \"alice\"\n");
    let plan = plan_json(&e);
    let paths: Vec<String> = changes(&plan).into_iter().map(|(_, p)| p).collect();
    assert!(paths.contains(&"/home/bob".to_string()), "{paths:?}");
    assert!(
        !paths.iter().any(|p| p.starts_with("/home/alice")),
        "alice's home stays as it is: {paths:?}"
    );
    apply_converges(&e);
    let passwd = read(&e, "etc/passwd");
    assert!(passwd.contains("alice:x:1000:1000:"), "{passwd}");
    assert!(!passwd.contains("bob:"), "{passwd}");
    assert!(!e.root().join("home/bob").exists());
    assert_ne!(e.tree(), with_both);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn lines_are_added_or_replaced_and_put_back() {
    let e = env();
    require_busybox_root!(e);
    node(&e, &["db", "cache"]);
    // Where strata keeps its state: not part of the comparison.
    std::fs::create_dir_all(e.root().join("var/lib")).expect("var/lib");
    let hosts = "127.0.0.1 localhost\n10.0.0.9 db.internal\n";
    e.write_root("etc/hosts", hosts, 0o644)
        .write(
            "modules/db/module.toml",
            "[[line]]\npath = \"/etc/hosts\"\nline = \"10.0.0.5 db.internal\"\nmatch = '\\sdb\\.internal$'\n",
        )
        .write(
            "modules/cache/module.toml",
            "[[line]]\npath = \"/etc/hosts\"\nline = \"10.0.0.6 cache.internal\"\n\n[[line]]\npath = \"/etc/cache.conf\"\nline = \"size = 1G\"\n",
        );
    let original = e.tree();
    let text = e.run(&["plan", "--node", "n1"]).code(2).stdout;
    assert!(
        text.contains("-10.0.0.9 db.internal\n+10.0.0.5 db.internal\n+10.0.0.6 cache.internal"),
        "{text}"
    );
    assert!(text.contains("create    /etc/cache.conf"), "{text}");
    apply_converges(&e);
    assert_eq!(
        read(&e, "etc/hosts"),
        "127.0.0.1 localhost\n10.0.0.5 db.internal\n10.0.0.6 cache.internal\n"
    );
    assert_eq!(read(&e, "etc/cache.conf"), "size = 1G\n");

    // Without module db, its replaced line comes back; cache's line stays.
    node(&e, &["cache"]);
    apply_converges(&e);
    assert_eq!(
        read(&e, "etc/hosts"),
        "127.0.0.1 localhost\n10.0.0.9 db.internal\n10.0.0.6 cache.internal\n"
    );
    node(&e, &[]);
    apply_converges(&e);
    same_tree(&e.tree(), &original);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn conflicting_or_impossible_lines_are_clear_errors_that_change_nothing() {
    let e = env();
    require_busybox_root!(e);
    e.write_root("etc/hosts", "10.0.0.1 a\n10.0.0.2 a\n", 0o644);
    let line = "[[line]]\npath = \"/etc/hosts\"\nline = \"10.0.0.5 db\"\n";
    node(&e, &["one", "two"]);
    e.write("modules/one/module.toml", line)
        .write("modules/two/module.toml", line);
    let before = e.tree();
    let err = e.run(&["plan", "--node", "n1"]).code(1).stderr;
    assert!(
        err.contains("/etc/hosts is managed by both modules one and two"),
        "{err}"
    );

    node(&e, &["one"]);
    e.write(
        "modules/one/module.toml",
        "[[line]]\npath = \"/etc/hosts\"\nline = \"10.0.0.5 db\"\nmatch = \" a$\"\n",
    );
    let err = e.run(&["apply", "--node", "n1"]).code(1).stderr;
    assert!(
        err.contains("2 lines of /etc/hosts match ` a$` (lines 1, 2)"),
        "{err}"
    );

    e.write(
        "modules/one/module.toml",
        "[[line]]\npath = \"/etc/hosts\"\nline = \"x\"\nmatch = \"(\"\n",
    );
    let err = e.run(&["apply", "--node", "n1"]).code(1).stderr;
    assert!(err.contains("modules/one/module.toml:1"), "{err}");
    assert!(err.contains("not a valid regular expression"), "{err}");

    e.write(
        "modules/one/module.toml",
        "[[line]]\npath = \"/etc/motd\"\nline = \"hi\"\n",
    )
    .write("modules/one/files/etc/motd", "hello\n");
    let err = e.run(&["apply", "--node", "n1"]).code(1).stderr;
    assert!(err.contains("/etc/motd is declared whole by one"), "{err}");
    same_tree(&e.tree(), &before);
}

#[test]
fn bad_package_user_and_service_declarations_are_located_errors() {
    let e = env();
    node(&e, &["a", "b"]);
    e.write(
        "modules/a/module.toml",
        "[[user]]\nname = \"Bad User\"\n\n[[package]]\nname = \"nginx\"\nversion = \"1.0\"\n",
    )
    .write(
        "modules/b/module.toml",
        "[[package]]\nname = \"nginx\"\nversion = \"2.0\"\n\n[[service]]\nname = \"x\"\nrestart_on = [\"[\"]\n",
    );
    let err = e.run(&["check"]).code(1).stderr;
    assert!(err.contains("modules/a/module.toml:1"), "{err}");
    assert!(err.contains("invalid user name `Bad User`"), "{err}");
    assert!(err.contains("modules/b/module.toml:5"), "{err}");
    assert!(err.contains("bad glob `[`"), "{err}");
    e.write(
        "modules/a/module.toml",
        "[[package]]\nname = \"nginx\"\nversion = \"1.0\"\n",
    )
    .write(
        "modules/b/module.toml",
        "[[package]]\nname = \"nginx\"\nversion = \"2.0\"\n",
    );
    let err = e.run(&["check"]).code(1).stderr;
    assert!(
        err.contains("package `nginx` is declared differently by modules a and b"),
        "{err}"
    );
    e.write(
        "modules/a/module.toml",
        "[[download]]\nurl = \"https://example.org/x\"\nsha256 = \"abc\"\npath = \"/opt/x\"\n",
    );
    let err = e.run(&["check"]).code(1).stderr;
    assert!(err.contains("modules/a/module.toml:1"), "{err}");
    assert!(
        err.contains("sha256 must be 64 hexadecimal digits, not `abc`"),
        "{err}"
    );
    e.write(
        "modules/a/module.toml",
        "[[package]]\nname = \"nginx\"\nversion = \"1.0\"\n",
    );
    // The same declaration in two modules is one package.
    e.write(
        "modules/b/module.toml",
        "[[package]]\nname = \"nginx\"\nversion = \"1.0\"\n",
    );
    e.run(&["check"]).code(0);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the cached Debian root: scripts/test builds it (feature host-tests)"
)]
fn services_are_enabled_offline_and_restarted_after_commits_that_touch_their_files() {
    let e = env();
    require_debian_root!(e);
    node(&e, &["net"]);
    e.write(
        "modules/net/module.toml",
        r#"
[[service]]
name = "systemd-networkd"
restart_on = ["/etc/systemd/network/**"]

[[service]]
name = "fstrim.timer"
enable = false
"#,
    )
    .write(
        "modules/net/files/etc/systemd/network/10-eth.network",
        "[Match]\nName=eth0\n[Network]\nDHCP=yes\n",
    );
    let original = e.tree();
    let wants = "/etc/systemd/system/multi-user.target.wants/systemd-networkd.service";
    let plan = plan_json(&e);
    assert!(changed(&plan, wants), "{:?}", changes(&plan));
    assert!(
        changes(&plan).contains(&(
            "remove".to_string(),
            "/etc/systemd/system/timers.target.wants/fstrim.timer".to_string()
        )),
        "{:?}",
        changes(&plan)
    );
    // A root that is not running gets no restarts: its services start when it boots.
    assert_eq!(plan["calls"], serde_json::json!([]));
    apply_converges(&e);
    assert!(e.root().join(&wants[1..]).is_symlink());

    // On a running system (systemd's own test: /run/systemd/system), a change under
    // restart_on restarts the service after the commit.
    std::fs::create_dir_all(e.root().join("run/systemd/system")).expect("mkdir");
    e.write(
        "modules/net/files/etc/systemd/network/10-eth.network",
        "[Match]\nName=eth1\n[Network]\nDHCP=yes\n",
    );
    let text = e.run(&["plan", "--node", "n1"]).code(2).stdout;
    assert!(
        text.contains(
            "would run systemctl restart systemd-networkd  (net service systemd-networkd)"
        ),
        "{text}"
    );
    // No systemd runs in this test root, so the restart itself fails, says why, and the
    // apply exits 3: committed, a command after the commit failed.
    let run = e.run(&["apply", "--node", "n1", "--json"]).code(3);
    let applied: Value = serde_json::from_str(&run.stdout).expect("json");
    let ran = &applied["activations"][0];
    assert_eq!(
        ran["command"]["argv"],
        serde_json::json!(["systemctl", "restart", "systemd-networkd"])
    );
    assert_eq!(ran["status"], "failed", "{ran}");
    assert!(
        ran["output"].as_str().expect("output").contains("bus"),
        "{ran}"
    );
    assert!(
        run.stderr
            .contains("systemctl restart systemd-networkd: exit status"),
        "{}",
        run.stderr
    );
    e.run(&["plan", "--node", "n1"]).code(0);

    std::fs::remove_dir(e.root().join("run/systemd/system")).expect("rm");
    node(&e, &[]);
    apply_converges(&e);
    same_tree(&e.tree(), &original);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the cached Debian root: scripts/test builds it (feature host-tests)"
)]
fn packages_install_in_the_sandbox_and_their_down_removes_them_with_their_dependencies() {
    let e = env();
    require_debian_root!(e);
    node(&e, &["tools"]);
    // jq pulls in libjq1 and libonig5; bash was there before strata.
    e.write(
        "modules/tools/module.toml",
        "[[package]]\nname = \"jq\"\n\n[[package]]\nname = \"bash\"\n",
    );
    let original = e.tree();
    let status = read(&e, "var/lib/dpkg/status");
    let plan = plan_json(&e);
    for path in [
        "/usr/bin/jq",
        "/usr/lib/x86_64-linux-gnu/libonig.so.5",
        "/var/lib/dpkg/status",
        "/var/lib/dpkg/info/jq.list",
    ] {
        assert!(changed(&plan, path), "{path} not in {:?}", changes(&plan));
    }
    assert!(
        !changes(&plan)
            .iter()
            .any(|(_, p)| p.starts_with("/usr/share/doc/bash"))
    );
    same_tree(&e.tree(), &original);

    apply_converges(&e);
    let out = std::process::Command::new("chroot")
        .arg(e.root())
        .args(["jq", "-n", "1+1"])
        .output()
        .expect("run jq");
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "2");

    node(&e, &[]);
    apply_converges(&e);
    assert_eq!(read(&e, "var/lib/dpkg/status"), status);
    same_tree(&e.tree(), &original);
    assert!(e.root().join("usr/bin/bash").exists());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the cached Debian root: scripts/test builds it (feature host-tests)"
)]
fn an_unknown_package_is_a_clear_error_and_nothing_changes() {
    let e = env();
    require_debian_root!(e);
    node(&e, &["tools"]);
    e.write(
        "modules/tools/module.toml",
        "[[package]]\nname = \"no-such-package-strata\"\n",
    );
    let before = e.tree();
    let err = e.run(&["apply", "--node", "n1"]).code(1).stderr;
    assert!(
        err.contains("module tools: package no-such-package-strata failed"),
        "{err}"
    );
    assert!(
        err.contains("Unable to locate package no-such-package-strata"),
        "{err}"
    );
    same_tree(&e.tree(), &before);
}

#[test]
fn a_purged_directory_loses_what_no_module_declares_and_gets_it_back_when_unpurged() {
    let e = env();
    node(&e, &["web"]);
    std::fs::create_dir_all(e.root().join("var/lib")).expect("var/lib");
    e.write_root("etc/nginx/conf.d/old.conf", "old\n", 0o644)
        .write_root("etc/nginx/conf.d/site.local", "mine\n", 0o644)
        .write_root("etc/nginx/conf.d/sub/deep.conf", "deep\n", 0o600)
        .write("modules/web/files/etc/nginx/conf.d/app.conf", "ours\n")
        .write(
            "modules/web/module.toml",
            "[[dir]]\npath = \"/etc/nginx/conf.d\"\npurge = true\nkeep = [\"*.local\"]\n",
        );
    let original = e.tree();
    let plan = plan_json(&e);
    let removed: Vec<String> = changes(&plan)
        .into_iter()
        .filter(|(a, _)| a == "remove")
        .map(|(_, p)| p)
        .collect();
    assert_eq!(
        removed,
        [
            "/etc/nginx/conf.d/old.conf",
            "/etc/nginx/conf.d/sub",
            "/etc/nginx/conf.d/sub/deep.conf"
        ]
    );
    apply_converges(&e);
    let mut names: Vec<String> = std::fs::read_dir(e.root().join("etc/nginx/conf.d"))
        .expect("conf.d")
        .map(|d| d.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(names, ["app.conf", "site.local"]);

    // Something dropped in later goes on the next apply.
    e.write_root("etc/nginx/conf.d/stray.conf", "stray\n", 0o644);
    let plan = plan_json(&e);
    assert_eq!(
        changes(&plan),
        [(
            "remove".to_string(),
            "/etc/nginx/conf.d/stray.conf".to_string()
        )]
    );
    apply_converges(&e);

    // Without the purge, everything it removed comes back from the store.
    e.write("modules/web/module.toml", "");
    apply_converges(&e);
    assert_eq!(read(&e, "etc/nginx/conf.d/old.conf"), "old\n");
    assert_eq!(read(&e, "etc/nginx/conf.d/sub/deep.conf"), "deep\n");
    assert_eq!(read(&e, "etc/nginx/conf.d/stray.conf"), "stray\n");
    node(&e, &[]);
    apply_converges(&e);
    std::fs::remove_file(e.root().join("etc/nginx/conf.d/stray.conf")).expect("rm");
    same_tree(&e.tree(), &original);
}

/// A tiny HTTP server on loopback serving `files` by path; counts the requests it answers,
/// and answers 503 once `down` is set.
struct Server {
    port: u16,
    files: std::sync::Arc<std::sync::Mutex<std::collections::HashMap<String, Vec<u8>>>>,
    hits: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    down: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Server {
    fn start() -> Server {
        use std::io::{BufRead, Write};
        use std::sync::atomic::Ordering;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let server = Server {
            port,
            files: Default::default(),
            hits: Default::default(),
            down: Default::default(),
        };
        let (files, hits, down) = (
            server.files.clone(),
            server.hits.clone(),
            server.down.clone(),
        );
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { continue };
                let mut reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
                let mut request = String::new();
                let _ = reader.read_line(&mut request);
                let mut line = String::new();
                while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                    line.clear();
                }
                let path = request.split(' ').nth(1).unwrap_or("/").to_string();
                let body = files.lock().expect("files").get(&path).cloned();
                let (status, body) = match body {
                    _ if down.load(Ordering::SeqCst) => ("503 Unavailable", Vec::new()),
                    Some(b) => {
                        hits.fetch_add(1, Ordering::SeqCst);
                        ("200 OK", b)
                    }
                    None => ("404 Not Found", Vec::new()),
                };
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(&body);
            }
        });
        server
    }

    fn serve(&self, path: &str, body: &str) -> String {
        self.files
            .lock()
            .expect("files")
            .insert(path.to_string(), body.as_bytes().to_vec());
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn hits(&self) -> usize {
        self.hits.load(std::sync::atomic::Ordering::SeqCst)
    }
}

fn sha256(text: &str) -> String {
    let dir = tempfile::tempdir().expect("tmp");
    let file = dir.path().join("f");
    std::fs::write(&file, text).expect("write");
    let out = std::process::Command::new("sha256sum")
        .arg(&file)
        .output()
        .expect("sha256sum");
    String::from_utf8_lossy(&out.stdout)[..64].to_string()
}

#[test]
fn downloads_are_verified_before_anything_is_written_and_roll_back_offline() {
    let e = env();
    node(&e, &["dl"]);
    std::fs::create_dir_all(e.root().join("var/lib")).expect("var/lib");
    let cache = e.cache();
    let server = Server::start();
    let declare = |url: &str, sum: &str| {
        e.write(
            "modules/dl/module.toml",
            &format!(
                "[[download]]\nurl = \"{url}\"\nsha256 = \"{sum}\"\npath = \"/opt/tool.txt\"\nmode = \"0755\"\n"
            ),
        );
    };
    let original = e.tree();

    // A wrong checksum: a clear error, and nothing on the target or in the cache.
    let url = server.serve("/v1", "tool v1\n");
    declare(&url, &sha256("something else\n"));
    let err = e.run(&["apply", "--node", "n1"]).code(1).stderr;
    assert!(
        err.contains(&format!("its sha256 is {}", sha256("tool v1\n"))),
        "{err}"
    );
    assert!(err.contains("nothing was written"), "{err}");
    same_tree(&e.tree(), &original);
    assert!(
        !cache.join("downloads").exists()
            || std::fs::read_dir(cache.join("downloads"))
                .expect("dir")
                .count()
                == 0
    );

    // A plan needs no network: it says the file will be fetched.
    declare(&url, &sha256("tool v1\n"));
    let hits = server.hits();
    let text = e.run(&["plan", "--node", "n1"]).code(2).stdout;
    assert!(text.contains("create    /opt/tool.txt"), "{text}");
    assert!(
        text.contains(&format!(
            "fetched from {url} and checked against its sha256 at apply"
        )),
        "{text}"
    );
    assert_eq!(server.hits(), hits, "a plan fetched");
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(read(&e, "opt/tool.txt"), "tool v1\n");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(e.root().join("opt/tool.txt"))
        .expect("md")
        .permissions()
        .mode();
    assert_eq!(mode & 0o7777, 0o755);
    e.run(&["plan", "--node", "n1"]).code(0);

    // Version 2, then a rollback with the server gone: the store has version 1.
    let url2 = server.serve("/v2", "tool v2\n");
    declare(&url2, &sha256("tool v2\n"));
    let text = e.run(&["plan", "--node", "n1"]).code(2).stdout;
    assert!(text.contains("modify    /opt/tool.txt"), "{text}");
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(read(&e, "opt/tool.txt"), "tool v2\n");
    server.down.store(true, std::sync::atomic::Ordering::SeqCst);
    e.run(&["rollback"]).code(0);
    assert_eq!(read(&e, "opt/tool.txt"), "tool v1\n");
    // The cached copy makes a plan show the real change, offline.
    let text = e.run(&["plan", "--node", "n1"]).code(2).stdout;
    assert!(text.contains("-tool v1\n+tool v2"), "{text}");

    node(&e, &[]);
    e.run(&["apply", "--node", "n1"]).code(0);
    same_tree(&e.tree(), &original);
}

/// The Debian root booted with its own systemd in a container (`systemd-nspawn --boot`),
/// shut down when dropped.
struct Booted {
    nspawn: std::process::Child,
    /// The container's PID 1, as this machine sees it.
    init: u32,
}

impl Booted {
    fn start(root: &std::path::Path) -> Option<Booted> {
        let nspawn = std::process::Command::new("systemd-nspawn")
            .arg("-D")
            .arg(root)
            .args([
                "--boot",
                "--register=no",
                "--keep-unit",
                "--console=pipe",
                "-q",
            ])
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()?;
        let mut booted = Booted { nspawn, init: 0 };
        for _ in 0..300 {
            std::thread::sleep(std::time::Duration::from_millis(100));
            let children = format!("/proc/{}/task/{0}/children", booted.nspawn.id());
            booted.init = std::fs::read_to_string(children)
                .ok()
                .and_then(|c| c.split_whitespace().next()?.parse().ok())
                .unwrap_or(0);
            if booted.init != 0 {
                let state = booted.sh("systemctl is-system-running");
                if state.starts_with("running") || state.starts_with("degraded") {
                    return Some(booted);
                }
            }
        }
        None
    }

    /// Runs a shell command inside the container; its standard output.
    fn sh(&self, command: &str) -> String {
        let out = std::process::Command::new("nsenter")
            .args(["-t", &self.init.to_string(), "-a", "/bin/sh", "-c", command])
            .output()
            .expect("nsenter");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for Booted {
    fn drop(&mut self) {
        // Killing the container's PID 1 ends every process in it; then nspawn exits.
        if self.init != 0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &self.init.to_string()])
                .status();
        }
        let _ = self.nspawn.kill();
        let _ = self.nspawn.wait();
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs systemd-nspawn and the Debian root: scripts/test provides them (feature host-tests)"
)]
fn services_are_enabled_and_restarted_under_a_real_systemd() {
    let e = env();
    require_debian_root!(e);
    assert!(
        std::process::Command::new("systemd-nspawn")
            .arg("--version")
            .output()
            .is_ok(),
        "needs systemd-nspawn (apt-get install systemd-container; scripts/test does)"
    );
    // strata runs on the node itself, as it would there.
    let root = e.root();
    std::fs::copy(
        env!("CARGO_BIN_EXE_strata"),
        root.join("usr/local/bin/strata"),
    )
    .expect("copy strata");
    node(&e, &["demo"]);
    e.write(
        "modules/demo/files/etc/systemd/system/strata-demo.service",
        "[Unit]\nDescription=strata demo\n[Service]\nExecStart=/bin/sh -c 'cat /etc/demo/conf >> /var/lib/demo.log; exec sleep infinity'\n[Install]\nWantedBy=multi-user.target\n",
    )
    .write("modules/demo/files/etc/demo/conf", "v1\n")
    .write(
        "modules/demo/module.toml",
        "[[service]]\nname = \"strata-demo\"\nrestart_on = [\"/etc/demo/**\"]\n",
    );
    strata_test::copy_tree(&e.site(), &root.join("srv/site"));
    let Some(sys) = Booted::start(&root) else {
        panic!("the Debian root did not boot under systemd-nspawn");
    };
    let strata = |verb: &str| {
        sys.sh(&format!(
            "strata {verb} --site /srv/site --node n1 --root / 2>&1; echo exit=$?"
        ))
    };

    let plan = strata("plan");
    assert!(plan.contains("would run systemctl daemon-reload"), "{plan}");
    assert!(
        plan.contains("would run systemctl restart strata-demo"),
        "{plan}"
    );
    assert!(plan.ends_with("exit=2\n"), "{plan}");
    let applied = strata("apply");
    assert!(
        applied.contains("ran systemctl restart strata-demo  (ok;"),
        "{applied}"
    );
    assert_eq!(sys.sh("systemctl is-enabled strata-demo").trim(), "enabled");
    assert_eq!(sys.sh("systemctl is-active strata-demo").trim(), "active");
    assert_eq!(sys.sh("cat /var/lib/demo.log"), "v1\n");
    assert!(strata("plan").ends_with("exit=0\n"), "nothing left to do");

    // A change under restart_on restarts it; the new process reads the new file.
    std::fs::write(
        root.join("srv/site/modules/demo/files/etc/demo/conf"),
        "v2\n",
    )
    .expect("write");
    let applied = strata("apply");
    assert!(
        applied.contains("ran systemctl restart strata-demo  (ok;"),
        "{applied}"
    );
    assert!(
        !applied.contains("daemon-reload"),
        "no unit file changed: {applied}"
    );
    assert_eq!(sys.sh("cat /var/lib/demo.log"), "v1\nv2\n");

    // Undeclared: disabled again, its unit file gone.
    std::fs::write(root.join("srv/site/nodes/n1.toml"), "modules = []\n").expect("write");
    let applied = strata("apply");
    assert!(applied.ends_with("exit=0\n"), "{applied}");
    assert_ne!(
        sys.sh("systemctl is-enabled strata-demo 2>&1").trim(),
        "enabled"
    );
    assert!(
        !root
            .join("etc/systemd/system/multi-user.target.wants/strata-demo.service")
            .exists()
    );
}

/// An extended attribute of a path under the root, if set.
fn xattr(e: &TestEnv, rel: &str, name: &str) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(e.root().join(rel), name, &mut buf[..]).ok()?;
    buf.truncate(n);
    Some(buf)
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the cached Debian root: scripts/test builds it (feature host-tests)"
)]
fn extended_attributes_set_or_removed_by_tools_are_planned_applied_and_taken_back() {
    let e = env();
    require_debian_root!(e);
    node(&e, &["x"]);
    rustix::fs::lsetxattr(
        e.root().join("etc/issue"),
        "user.old",
        b"v",
        rustix::fs::XattrFlags::empty(),
    )
    .expect("set user.old");
    e.write(
        "modules/x/module.toml",
        "[[package]]\nname = \"attr\"\n\n[[package]]\nname = \"libcap2-bin\"\n",
    )
    .write(
        "modules/x/scripts/10-x.sh",
        "#!/bin/sh\nset -e\necho hi > /etc/x.conf\nsetfattr -n user.strata -v hello /etc/x.conf\nsetfattr -n user.dir -v 1 /srv\nsetfattr -x user.old /etc/issue 2>/dev/null || true\ncp /bin/true /usr/local/bin/ping2\nsetcap cap_net_raw+ep /usr/local/bin/ping2\n",
    );
    let script = e.site().join("modules/x/scripts/10-x.sh");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let text = e.run(&["plan", "--node", "n1"]).code(2).stdout;
    for line in [
        "modify    /etc/issue",
        "xattrs user.old=0x76 → user.old=(none)",
        "user.strata=0x68656c6c6f",
        "dir xattrs user.dir=(none) → user.dir=0x31",
        "security.capability=0x",
    ] {
        assert!(text.contains(line), "{line} in\n{text}");
    }
    assert_eq!(xattr(&e, "srv", "user.dir"), None, "a plan changes nothing");

    apply_converges(&e);
    assert_eq!(
        xattr(&e, "etc/x.conf", "user.strata").as_deref(),
        Some(&b"hello"[..])
    );
    assert_eq!(xattr(&e, "srv", "user.dir").as_deref(), Some(&b"1"[..]));
    assert_eq!(xattr(&e, "etc/issue", "user.old"), None);
    assert!(xattr(&e, "usr/local/bin/ping2", "security.capability").is_some());

    node(&e, &[]);
    apply_converges(&e);
    assert_eq!(
        xattr(&e, "etc/issue", "user.old").as_deref(),
        Some(&b"v"[..])
    );
    assert_eq!(xattr(&e, "srv", "user.dir"), None);
    assert!(!e.root().join("etc/x.conf").exists());
}
