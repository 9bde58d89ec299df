//! Packaging: `strata export deb` (a site's modules and roles as Debian packages that
//! dpkg installs, upgrades, removes and purges) and strata's own .deb (scripts/package),
//! both installed with dpkg into a Debian root.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_test::TestEnv;

use crate::env;

/// A site `acme` with a role `web` in two versions. 1.0: app@1.0 (a template, a link, a
/// conffile and a plain file that 2.0 no longer has) and `extra`; 2.0: app@2.0 alone,
/// with another port. Both need `base`: a directory for `nobody`, two scripts.
fn web_site(e: &TestEnv) {
    e.write("strata.toml", "[site]\nname = \"acme\"\n")
        .write("roles/web/1.0.toml", "modules = [\"app@1.0\", \"extra\"]\n")
        .write(
            "roles/web/2.0.toml",
            "modules = [\"app@2.0\"]\n[params]\napp.port = 8080\n",
        )
        .write(
            "modules/base/module.toml",
            "description = \"What every machine has\"\n[params]\ngreeting = \"hello\"\n\
             [[dir]]\npath = \"/var/lib/acme\"\nmode = \"0750\"\nowner = \"nobody\"\n\
             group = \"nogroup\"\n",
        )
        .write("modules/base/files/etc/acme/base.conf", "base\n")
        .write_exec(
            "modules/base/scripts/10-first.sh",
            "#!/bin/sh\necho \"$STRATA_SCRIPT $STRATA_MODULE $STRATA_P_base_greeting \
             $STRATA_P_app_port\" >> /var/log/strata-export-test.log\n",
        )
        .write_exec(
            "modules/base/scripts/20-second.sh",
            "#!/bin/sh\necho \"$STRATA_SCRIPT $STRATA_NOOP $(tr -d ' \\n' < \"$STRATA_PARAMS\")\" \
             >> /var/log/strata-export-test.log\n",
        )
        .write("modules/extra/files/etc/extra.conf", "extra\n");
    for v in ["1.0", "2.0"] {
        e.write(
            &format!("modules/app/{v}/module.toml"),
            &format!(
                "description = \"The app, version {v}\"\nrequires = [\"base\"]\n\
                 [params]\nport = 80\n[[link]]\npath = \"/etc/app/current.conf\"\n\
                 target = \"app.conf\"\n"
            ),
        )
        .write(
            &format!("modules/app/{v}/templates/etc/app/app.conf.j2"),
            &format!("port = {{{{ app.port }}}} ({v})\n"),
        )
        .write(
            &format!("modules/app/{v}/files/usr/share/app/data.txt"),
            &format!("data {v}\n"),
        );
    }
    e.write("modules/app/1.0/files/etc/app/old.conf", "only in 1.0\n")
        .write(
            "modules/app/1.0/files/usr/share/app/old.txt",
            "only in 1.0\n",
        );
}

/// Runs `strata export deb --site SITE ARGS... --out DIR` (DIR under the test's
/// directory).
fn run_export(e: &TestEnv, args: &[&str], out: &str) -> strata_test::Run {
    let (dir, site) = (e.path().join(out), e.site());
    let mut all = vec!["export", "deb", "--site", site.to_str().unwrap()];
    all.extend_from_slice(args);
    all.extend(["--out", dir.to_str().unwrap()]);
    e.run(&all)
}

/// Exports; the lines it printed: name, version, file.
fn export(e: &TestEnv, args: &[&str], out: &str) -> Vec<(String, String, PathBuf)> {
    run_export(e, args, out)
        .code(0)
        .stdout
        .lines()
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let (n, v, p) = (parts.next(), parts.next(), parts.next());
            let p = p.unwrap().replace("[TMP]", e.path().to_str().unwrap());
            (n.unwrap().to_string(), v.unwrap().to_string(), p.into())
        })
        .collect()
}

/// Runs `dpkg --root ROOT ARGS...`, which fails the test unless it succeeds.
fn dpkg(root: &Path, args: &[&str], debs: &[PathBuf]) {
    let out = Command::new("dpkg")
        .arg("--root")
        .arg(root)
        .args(args)
        .args(debs)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .expect("run dpkg");
    assert!(
        out.status.success(),
        "dpkg {args:?} failed\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The root's tree, dpkg's own database and the logs left out.
fn root_tree(e: &TestEnv) -> BTreeSet<String> {
    strata_test::tree(&e.root(), &["var/lib/dpkg", "var/log", "var/cache/debconf"])
        .lines()
        .map(str::to_string)
        .collect()
}

#[track_caller]
fn same_as_before(before: &BTreeSet<String>, after: &BTreeSet<String>) {
    let added: Vec<_> = after.difference(before).collect();
    let gone: Vec<_> = before.difference(after).collect();
    assert!(
        added.is_empty() && gone.is_empty(),
        "the root is not as before\n--- added\n{added:#?}\n--- gone\n{gone:#?}"
    );
}

fn read(e: &TestEnv, rel: &str) -> Option<String> {
    std::fs::read_to_string(e.root().join(rel)).ok()
}

/// The Debian root, which the host tests must have (scripts/test builds it).
fn debian_root(e: &TestEnv) {
    assert!(strata_test::is_root(), "needs root");
    assert!(
        e.debian_root(),
        "needs the cached Debian root: run scripts/debian-root"
    );
}

fn owner_of(e: &TestEnv, rel: &str) -> (u32, u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::symlink_metadata(e.root().join(rel)).unwrap();
    (m.uid(), m.gid(), m.mode() & 0o7777)
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the cached Debian root: scripts/test provides them (feature host-tests)"
)]
fn a_role_exported_as_debs_installs_upgrades_and_purges_with_dpkg() {
    let e = env();
    debian_root(&e);
    web_site(&e);
    let v1 = export(&e, &["web@1.0"], "out1");
    let names: Vec<(&str, &str)> = v1
        .iter()
        .map(|(n, v, _)| (n.as_str(), v.as_str()))
        .collect();
    assert_eq!(
        names,
        [
            ("strata-acme-base", "0"),
            ("strata-acme-app", "1.0"),
            ("strata-acme-extra", "0"),
            ("strata-acme-role-web", "1.0"),
        ]
    );
    let v2 = export(&e, &["web@2.0"], "out2");
    let debs =
        |v: &[(String, String, PathBuf)]| v.iter().map(|(_, _, p)| p.clone()).collect::<Vec<_>>();
    let before = root_tree(&e);

    // Installed: files, rendered templates, links, modes, owners, scripts in order.
    dpkg(&e.root(), &["-i"], &debs(&v1));
    assert_eq!(read(&e, "etc/app/app.conf").unwrap(), "port = 80 (1.0)\n");
    assert_eq!(
        read(&e, "etc/app/current.conf").unwrap(),
        "port = 80 (1.0)\n"
    );
    assert_eq!(read(&e, "usr/share/app/old.txt").unwrap(), "only in 1.0\n");
    assert_eq!(read(&e, "etc/extra.conf").unwrap(), "extra\n");
    // nobody and nogroup are 65534 in Debian's base-passwd.
    assert_eq!(owner_of(&e, "var/lib/acme"), (65534, 65534, 0o750));
    assert_eq!(
        read(&e, "var/log/strata-export-test.log").unwrap(),
        "scripts/10-first.sh base hello 80\n\
         scripts/20-second.sh 0 {\"base\":{\"greeting\":\"hello\"},\"app\":{\"port\":80},\"extra\":{}}\n"
    );
    // The scripts' parameters are root's alone.
    assert_eq!(
        owner_of(&e, "usr/lib/strata-acme-base/params.json").2,
        0o600
    );

    // The role's next version: what app 2.0 no longer has goes, the conffile included.
    dpkg(&e.root(), &["-i"], &debs(&v2));
    assert_eq!(read(&e, "etc/app/app.conf").unwrap(), "port = 8080 (2.0)\n");
    assert_eq!(read(&e, "usr/share/app/data.txt").unwrap(), "data 2.0\n");
    assert_eq!(
        read(&e, "usr/share/app/old.txt"),
        None,
        "dpkg kept a file only 1.0 had"
    );
    assert_eq!(
        read(&e, "etc/app/old.conf"),
        None,
        "a conffile only 1.0 had was kept"
    );
    // A module the new role version dropped stays, as any package a metapackage no
    // longer depends on does, until `apt autoremove` (or dpkg -r) takes it.
    assert_eq!(read(&e, "etc/extra.conf").unwrap(), "extra\n");

    // Removed: only conffiles are left; purged: the root is as it was.
    let all = [
        "strata-acme-role-web",
        "strata-acme-app",
        "strata-acme-extra",
        "strata-acme-base",
    ];
    let names: Vec<PathBuf> = all.iter().map(PathBuf::from).collect();
    dpkg(&e.root(), &["-r"], &names);
    assert_eq!(read(&e, "usr/share/app/data.txt"), None);
    assert_eq!(read(&e, "etc/app/app.conf").unwrap(), "port = 8080 (2.0)\n");
    assert!(!e.root().join("var/lib/acme").exists());
    dpkg(&e.root(), &["-P"], &names);
    // What the scripts wrote is theirs, not the package's (docs/packaging.md).
    std::fs::remove_file(e.root().join("var/log/strata-export-test.log")).unwrap();
    same_as_before(&before, &root_tree(&e));
}

/// A file of a package, as `dpkg-deb` unpacks it.
fn in_deb(deb: &Path, path: &str) -> String {
    let tar = Command::new("dpkg-deb")
        .arg("--fsys-tarfile")
        .arg(deb)
        .output()
        .expect("run dpkg-deb");
    assert!(tar.status.success());
    let mut child = Command::new("tar")
        .args(["-xO", &format!(".{path}")])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("run tar");
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), &tar.stdout).unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn control(deb: &Path, field: &str) -> String {
    let out = Command::new("dpkg-deb")
        .args(["--field"])
        .arg(deb)
        .arg(field)
        .output()
        .expect("run dpkg-deb");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn a_nodes_export_has_its_parameters_and_the_versions_it_has() {
    let e = env();
    web_site(&e);
    e.write(
        "groups/web.toml",
        "nodes = [\"n1\"]\n[params]\napp.port = 81\n",
    )
    .write(
        "nodes/n1.toml",
        "roles = [\"web@1.0\"]\n[params]\nbase.greeting = \"hi\"\n",
    );
    // n1 has web@1.0, but web means the highest version: 2.0, whose app n1 lacks.
    let refused = run_export(&e, &["web", "--node", "n1"], "out").code(1);
    assert_eq!(
        refused.stderr,
        "error: node n1 does not have module app@2.0, which web@2.0 needs (it has app@1.0)\n"
    );
    let debs = export(&e, &["web@1.0", "--node", "n1"], "out");
    let app = &debs[1].2;
    assert_eq!(in_deb(app, "/etc/app/app.conf"), "port = 81 (1.0)\n");
    assert_eq!(control(app, "Depends"), "strata-acme-base (= 0)");
    let role = &debs[3].2;
    assert_eq!(
        control(role, "Depends"),
        "strata-acme-base (= 0), strata-acme-app (= 1.0), strata-acme-extra (= 0)"
    );
    assert!(control(role, "Description").contains("for node n1 (environment production)"));
    let runner = in_deb(&debs[0].2, "/usr/lib/strata-acme-base/run");
    assert!(
        runner.contains("export STRATA_P_base_greeting='hi'\n"),
        "{runner}"
    );
    assert!(runner.contains("export STRATA_NODE='n1'\n"), "{runner}");

    // A module alone, for an environment: the defaults, then the environment's file.
    e.write("params/env/test.toml", "app.port = 8000\n");
    let debs = export(&e, &["app@2.0", "--env", "test"], "env");
    let names: Vec<&str> = debs.iter().map(|(n, _, _)| n.as_str()).collect();
    assert_eq!(names, ["strata-acme-base", "strata-acme-app"]);
    assert_eq!(
        in_deb(&debs[1].2, "/etc/app/app.conf"),
        "port = 8000 (2.0)\n"
    );
}

#[test]
fn what_a_package_cannot_hold_is_refused_before_anything_is_written() {
    let e = env();
    web_site(&e);
    e.write(
        "modules/extra/module.toml",
        "[[user]]\nname = \"deploy\"\n[[dir]]\npath = \"/etc/extra.d\"\npurge = true\n",
    )
    .write(
        "modules/extra/templates/etc/motd.sh-template",
        "#!/bin/sh\necho hi\n",
    );
    let run = run_export(&e, &["web@1.0"], "out").code(1);
    for want in [
        "module extra: /etc/motd is an executable template",
        "module extra: [[dir]] /etc/extra.d has purge = true, which a package cannot do",
        "module extra: [[user]] is not packaged by export deb yet",
    ] {
        assert!(run.stderr.contains(want), "{want}\n{}", run.stderr);
    }
    let written = std::fs::read_dir(e.path().join("out")).map_or(0, |d| d.count());
    assert_eq!(written, 0, "a package was written");

    // Names: both a module and a role; neither.
    e.write("modules/web/module.toml", "");
    let run = run_export(&e, &["web"], "out").code(1);
    assert!(
        run.stderr.contains("write module:web or role:web"),
        "{}",
        run.stderr
    );
    run_export(&e, &["role:web@1.0"], "out").code(1);
    let run = run_export(&e, &["nothing"], "out").code(1);
    assert!(
        run.stderr.contains("no module or role `nothing`"),
        "{}",
        run.stderr
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root, the cached Debian root, cargo-deb and lintian: scripts/test provides them (feature host-tests)"
)]
fn stratas_own_package_installs_into_a_debian_root_and_purges_as_policy_says() {
    let e = env();
    debian_root(&e);
    // The binary under test, packed as scripts/package packs a release build.
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = e.path().join("deb");
    let built = Command::new(repo.join("scripts/package"))
        .args(["--profile", "dev", "--no-build", "--fast", "--out"])
        .arg(&out)
        .output()
        .expect("run scripts/package");
    assert!(
        built.status.success(),
        "scripts/package failed\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let deb = PathBuf::from(String::from_utf8_lossy(&built.stdout).trim());
    assert_eq!(control(&deb, "Package"), "strata");

    // Every error and warning lintian has is fixed or overridden with its reason
    // (docs/packaging.md).
    let lintian = Command::new("lintian")
        .arg(&deb)
        .output()
        .expect("run lintian");
    let said = String::from_utf8_lossy(&lintian.stdout);
    let tags: Vec<&str> = said
        .lines()
        .filter(|l| l.starts_with("E:") || l.starts_with("W:"))
        .collect();
    assert!(tags.is_empty(), "lintian: {tags:#?}");

    let before = root_tree(&e);
    dpkg(&e.root(), &["-i"], std::slice::from_ref(&deb));
    let version = Command::new("chroot")
        .arg(e.root())
        .args(["/usr/bin/strata", "--version"])
        .output()
        .expect("run chroot");
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("strata {}\n", env!("CARGO_PKG_VERSION"))
    );
    for page in ["strata.1.gz", "strata-plan.1.gz", "strata-export-deb.1.gz"] {
        assert!(
            e.root().join("usr/share/man/man1").join(page).is_file(),
            "{page}"
        );
    }
    for completion in [
        "usr/share/bash-completion/completions/strata",
        "usr/share/zsh/vendor-completions/_strata",
        "usr/share/fish/vendor_completions.d/strata.fish",
    ] {
        assert!(e.root().join(completion).is_file(), "{completion}");
    }
    // systemd sees the units; the agent's timer and serve are not enabled until
    // configured.
    let units = Command::new("systemctl")
        .arg(format!("--root={}", e.root().display()))
        .args(["list-unit-files", "--no-legend", "strata-*"])
        .output()
        .expect("run systemctl");
    let units = String::from_utf8_lossy(&units.stdout);
    let states: Vec<Vec<&str>> = units
        .lines()
        .map(|l| l.split_whitespace().take(2).collect())
        .collect();
    assert_eq!(
        states,
        [
            vec!["strata-agent.service", "static"],
            vec!["strata-serve.service", "disabled"],
            vec!["strata-agent.timer", "disabled"]
        ],
        "{units}"
    );

    // What strata makes as it runs: its cache, and the node's state.
    for dir in ["var/cache/strata/packages", "var/lib/strata/generations"] {
        std::fs::create_dir_all(e.root().join(dir)).unwrap();
        std::fs::write(e.root().join(dir).join("x"), "x").unwrap();
    }
    // Removed: the binary goes, the conffile stays.
    dpkg(&e.root(), &["-r"], &[PathBuf::from("strata")]);
    assert!(!e.root().join("usr/bin/strata").exists());
    assert!(e.root().join("etc/default/strata-agent").is_file());
    assert!(e.root().join("etc/default/strata-serve").is_file());
    // Purged: the conffile and the cache go; the generations and originals stay.
    dpkg(&e.root(), &["-P"], &[PathBuf::from("strata")]);
    assert!(!e.root().join("etc/default/strata-agent").exists());
    assert!(!e.root().join("etc/default/strata-serve").exists());
    assert!(!e.root().join("var/cache/strata").exists());
    assert!(e.root().join("var/lib/strata/generations/x").is_file());
    std::fs::remove_dir_all(e.root().join("var/lib/strata")).unwrap();
    same_as_before(&before, &root_tree(&e));
}
