//! `strata capture`: a live tree read into a module, and the module applied to a fresh
//! root giving the same files, modes and owners; what it cannot or must not take.

use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

use strata_test::TestEnv;

use crate::env;

const KEY: &str = "-----BEGIN PRIVATE KEY-----\nCAPTUREDKEYMATERIAL\n-----END PRIVATE KEY-----\n";

/// A site, and a hand-configured tree at `src` (not the target root) holding /etc/app.
fn hand_made() -> (TestEnv, PathBuf) {
    let e = env();
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n2.toml", "modules = [\"app\"]\n");
    let src = e.path().join("src");
    let app = src.join("etc/app");
    std::fs::create_dir_all(app.join("conf.d")).unwrap();
    std::fs::create_dir_all(app.join("empty")).unwrap();
    std::fs::write(app.join("app.conf"), "port = 8080\n").unwrap();
    std::fs::write(app.join("run.sh"), "#!/bin/sh\necho run\n").unwrap();
    std::fs::write(app.join("conf.d/10-x.conf"), "x = 1\n").unwrap();
    let mode =
        |p: &Path, m: u32| std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    mode(&app.join("run.sh"), 0o755);
    mode(&app.join("app.conf"), 0o640);
    mode(&app.join("conf.d"), 0o750);
    if strata_test::is_root() {
        std::os::unix::fs::chown(app.join("app.conf"), Some(1000), Some(1001)).unwrap();
    }
    symlink("app.conf", app.join("current")).unwrap();
    (e, src)
}

fn capture(e: &TestEnv, src: &Path, args: &[&str]) -> strata_test::Run {
    let out = e
        .cmd(&["capture", "--site"])
        .arg(e.site())
        .arg("--root")
        .arg(src)
        .args(args)
        .output()
        .unwrap();
    strata_test::Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout)
            .replace(&e.path().display().to_string(), "[TMP]"),
        stderr: String::from_utf8_lossy(&out.stderr)
            .replace(&e.path().display().to_string(), "[TMP]"),
    }
}

#[test]
fn a_captured_tree_applied_to_a_fresh_root_is_the_same_tree() {
    let (e, src) = hand_made();
    let run = capture(&e, &src, &["/etc/app", "--module", "app"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(
        run.stdout.contains("captured /etc/app/app.conf  file 0640"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("captured /etc/app/current  link -> app.conf"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout
            .contains("Module app: 3 files, 1 links, 3 directories, 0 secrets; 0 skipped."),
        "{}",
        run.stdout
    );
    let toml = std::fs::read_to_string(e.site().join("modules/app/module.toml")).unwrap();
    for want in [
        "[[file]]\npath = \"/etc/app/app.conf\"\nmode = \"0640\"\n",
        "[[dir]]\npath = \"/etc/app/conf.d\"\nmode = \"0750\"\n",
        "[[dir]]\npath = \"/etc/app/empty\"\n",
        "[[link]]\npath = \"/etc/app/current\"\ntarget = \"app.conf\"\n",
    ] {
        assert!(toml.contains(want), "{want}\n---\n{toml}");
    }
    // run.sh is 0755 in the site: no entry needed.
    assert!(!toml.contains("run.sh"), "{toml}");
    e.run(&["apply", "--node", "n2"]).code(0);
    assert_eq!(
        strata_test::tree(&e.root().join("etc/app"), &[]),
        strata_test::tree(&src.join("etc/app"), &[]),
    );
    // A second capture of the same tree changes nothing; an edit shows as a diff.
    let again = capture(&e, &src, &["/etc/app", "--module", "app", "--update"]);
    assert!(
        again.stdout.contains("no change to the module"),
        "{}",
        again.stdout
    );
    std::fs::write(src.join("etc/app/conf.d/10-x.conf"), "x = 2\n").unwrap();
    let again = capture(&e, &src, &["/etc/app", "--module", "app", "--update"]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again
            .stdout
            .contains("changed   files/etc/app/conf.d/10-x.conf\n"),
        "{}",
        again.stdout
    );
    assert!(
        again.stdout.contains("-x = 1\n+x = 2\n"),
        "{}",
        again.stdout
    );
}

#[test]
fn sockets_and_links_leaving_the_root_are_listed_as_skipped() {
    let (e, src) = hand_made();
    let _sock = std::os::unix::net::UnixListener::bind(src.join("etc/app/sock")).unwrap();
    symlink("../../../../../outside", src.join("etc/app/escape")).unwrap();
    let run = capture(&e, &src, &["/etc/app", "--module", "app"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.contains("skipped  /etc/app/sock  a socket\n"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "skipped  /etc/app/escape  a symbolic link leading out of the root (-> ../../../../../outside)\n"
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("; 2 skipped."), "{}", run.stdout);
    let toml = std::fs::read_to_string(e.site().join("modules/app/module.toml")).unwrap();
    assert!(!toml.contains("escape") && !toml.contains("sock"), "{toml}");
}

#[test]
fn bad_captures_write_nothing_and_say_why() {
    let (e, src) = hand_made();
    // A path that does not exist.
    let run = capture(&e, &src, &["/etc/app", "/etc/nothing", "--module", "app"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("/etc/nothing: no such file or directory"),
        "{}",
        run.stderr
    );
    assert!(!e.site().join("modules/app").exists());
    // A relative path, hosts mixed, a bad module name.
    let run = capture(&e, &src, &["etc/app", "--module", "app"]);
    assert!(
        run.code == 1 && run.stderr.contains("paths are absolute"),
        "{}",
        run.stderr
    );
    let run = capture(&e, &src, &["/etc/app", "db1:/etc/x", "--module", "app"]);
    assert!(
        run.code == 1 && run.stderr.contains("same place"),
        "{}",
        run.stderr
    );
    let run = capture(&e, &src, &["/etc/app", "--module", "App"]);
    assert!(
        run.code == 1 && run.stderr.contains("module name `App`"),
        "{}",
        run.stderr
    );
    // A module that exists needs --update.
    capture(&e, &src, &["/etc/app/app.conf", "--module", "app"]);
    let run = capture(&e, &src, &["/etc/app", "--module", "app"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("module app exists"), "{}", run.stderr);
    assert!(run.stderr.contains("hint: pass --update"), "{}", run.stderr);
    // A path another module manages names it.
    let run = capture(&e, &src, &["/etc/app/app.conf", "--module", "other"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr
            .contains("/etc/app/app.conf is managed by module app"),
        "{}",
        run.stderr
    );
    assert!(!e.site().join("modules/other").exists());
}

#[test]
fn secret_looking_files_are_refused_then_stored_encrypted() {
    let (e, src) = hand_made();
    std::fs::write(src.join("etc/app/tls.key"), KEY).unwrap();
    let run = capture(&e, &src, &["/etc/app", "--module", "app"]);
    assert_eq!(run.code, 1);
    assert!(
        run.stderr.contains(
            "these look like secrets; nothing was written:\n  /etc/app/tls.key (a *.key file)"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("--include-secrets"), "{}", run.stderr);
    assert!(!e.site().join("modules/app").exists());
    // The node's key, recorded in its file.
    let key = e
        .cmd(&["keys", "node", "--root"])
        .arg(e.root())
        .output()
        .unwrap();
    let public = String::from_utf8_lossy(&key.stdout).trim().to_string();
    assert!(public.starts_with("age1"), "{public}");
    e.write(
        "nodes/n2.toml",
        &format!("modules = [\"app\"]\n[keys]\nage = \"{public}\"\n"),
    );
    let run = capture(
        &e,
        &src,
        &[
            "/etc/app",
            "--module",
            "app",
            "--include-secrets",
            "--to",
            "n2",
        ],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout
            .contains("captured /etc/app/tls.key  secret app_etc_app_tls_key (sensitive)"),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("CAPTUREDKEY"));
    // Nowhere in the site in clear.
    for f in walkdir::WalkDir::new(e.site()).into_iter().flatten() {
        if f.file_type().is_file() {
            let bytes = std::fs::read(f.path()).unwrap();
            assert!(
                !String::from_utf8_lossy(&bytes).contains("CAPTUREDKEYMATERIAL"),
                "{} holds the key",
                f.path().display()
            );
        }
    }
    assert!(e.site().join("secrets/app_etc_app_tls_key.age").exists());
    e.run(&["apply", "--node", "n2"]).code(0);
    assert_eq!(
        std::fs::read_to_string(e.root().join("etc/app/tls.key")).unwrap(),
        KEY
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the test hosts scripts/test builds (feature host-tests)"
)]
fn a_capture_over_ssh_of_a_real_host_rebuilds_the_same_files() {
    let hosts = strata_test::TestHosts::start(&["cap1.test"]);
    let host = hosts.host("cap1.test");
    let hroot = host.root();
    let app = hroot.join("etc/capt");
    std::fs::create_dir_all(app.join("conf.d")).unwrap();
    std::fs::write(app.join("capt.conf"), "listen = 5432\n").unwrap();
    std::fs::set_permissions(
        app.join("capt.conf"),
        std::fs::Permissions::from_mode(0o640),
    )
    .unwrap();
    std::os::unix::fs::chown(app.join("capt.conf"), Some(1000), Some(1000)).unwrap();
    std::fs::write(app.join("conf.d/x.conf"), "x\n").unwrap();
    symlink("capt.conf", app.join("current")).unwrap();
    let _sock = std::os::unix::net::UnixListener::bind(app.join("sock")).unwrap();
    let e = env();
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n2.toml", "modules = [\"capt\"]\n");
    let port = hosts
        .node_ssh(0)
        .lines()
        .find_map(|l| l.strip_prefix("port = ").map(str::to_string))
        .unwrap();
    let config = e.path().join("ssh_config");
    std::fs::write(
        &config,
        std::fs::read_to_string(hosts.ssh_config()).unwrap()
            + &format!("Host cap1.test\n  HostName 127.0.0.1\n  Port {port}\n"),
    )
    .unwrap();
    let out = e
        .cmd(&[
            "capture",
            "root@cap1.test:/etc/capt",
            "--module",
            "capt",
            "--site",
        ])
        .arg(e.site())
        .arg("--ssh-config")
        .arg(&config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("skipped  /etc/capt/sock  a socket"),
        "{stdout}"
    );
    assert!(
        stdout.contains("captured /etc/capt/capt.conf  file 0640 1000:1000"),
        "{stdout}"
    );
    e.run(&["apply", "--node", "n2"]).code(0);
    assert_eq!(
        strata_test::tree(&e.root().join("etc/capt"), &[]),
        strata_test::tree(&app, &["sock"]),
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the test hosts scripts/test builds (feature host-tests)"
)]
fn rebuild_makes_a_fresh_host_what_an_old_node_is() {
    let f = crate::push::fleet(2);
    // h2 is a fresh host the site does not know yet.
    let port = f
        .hosts
        .node_ssh(1)
        .lines()
        .find_map(|l| l.strip_prefix("port = ").map(str::to_string))
        .unwrap();
    std::fs::remove_file(f.env.site().join("nodes/h2.test.toml")).unwrap();
    f.env.write(
        "groups/all.toml",
        "# every host\nnodes = [\"h1.test\"]\n[params]\nx = 1\n",
    );
    f.env.write_exec(
        "hooks/post-apply.d/10-mark",
        "#!/bin/sh\necho \"$STRATA_NODE\" > /etc/rebuilt-by-hook\n",
    );
    let (code, nodes, _) = f.push_json(&["h1.test"]);
    assert_eq!(code, 0, "{nodes:?}");
    let out = f
        .env
        .cmd(&["rebuild", "h2.test", "--like", "h1.test", "--site"])
        .arg(f.env.site())
        .args(["--ssh-host", "127.0.0.1", "--ssh-port", &port])
        .arg("--keys")
        .arg(&f.keys)
        .arg("--ssh-config")
        .arg(f.hosts.ssh_config())
        .env("XDG_CACHE_HOME", "/var/cache/strata-test/operator")
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "{}\n{err}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(err.contains("rebuild: h2.test added to group all"), "{err}");
    let group = std::fs::read_to_string(f.env.site().join("groups/all.toml")).unwrap();
    assert_eq!(
        group,
        "# every host\nnodes = [\"h1.test\", \"h2.test\"]\n[params]\nx = 1\n"
    );
    let node = std::fs::read_to_string(f.env.site().join("nodes/h2.test.toml")).unwrap();
    assert!(
        node.contains("modules = [\"motd\"]") && node.contains("port = "),
        "{node}"
    );
    let (h1, h2) = (f.hosts.host("h1.test"), f.hosts.host("h2.test"));
    assert_eq!(
        h2.read("/etc/motd").as_deref(),
        Some("Welcome to h2.test (production)\n")
    );
    assert_eq!(
        h2.read("/etc/stamp").as_deref(),
        Some("stamped for h2.test\n")
    );
    assert_eq!(
        h2.read("/etc/rebuilt-by-hook").as_deref(),
        Some("h2.test\n")
    );
    assert_eq!(
        h1.read("/etc/rebuilt-by-hook").as_deref(),
        Some("h1.test\n")
    );
    // Again: nothing to write, nothing to change.
    let again = f
        .env
        .cmd(&["rebuild", "h2.test", "--like", "h1.test", "--site"])
        .arg(f.env.site())
        .args(["--ssh-host", "127.0.0.1", "--ssh-port", &port])
        .arg("--keys")
        .arg(&f.keys)
        .arg("--ssh-config")
        .arg(f.hosts.ssh_config())
        .env("XDG_CACHE_HOME", "/var/cache/strata-test/operator")
        .output()
        .unwrap();
    assert!(
        again.status.success(),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}

#[test]
fn rebuild_refuses_an_unknown_old_node_and_a_different_new_one() {
    let e = env();
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/old.toml", "modules = [\"m\"]\n")
        .write("nodes/new.toml", "modules = [\"other\"]\n");
    let run = e.run(&[
        "rebuild",
        "new",
        "--like",
        "nope",
        "--site",
        &e.site().display().to_string(),
    ]);
    let run = run.code(1);
    assert!(
        run.stderr.contains("no node file for nope"),
        "{}",
        run.stderr
    );
    let run = e
        .run(&[
            "rebuild",
            "new",
            "--like",
            "old",
            "--site",
            &e.site().display().to_string(),
        ])
        .code(1);
    assert!(
        run.stderr.contains("nodes/new.toml exists"),
        "{}",
        run.stderr
    );
}
