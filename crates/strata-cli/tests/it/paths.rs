//! Paths an attacker shapes (issue 17, items 1 and 5): a link from a user's directory
//! into root's files, owners that chown cannot give, names that are not UTF-8, and site
//! links that lead out of the site.

use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use strata_test::{TestEnv, require_root};

use crate::env;

fn chown(path: &Path, id: u32) {
    std::os::unix::fs::lchown(path, Some(id), Some(id)).expect("lchown");
}

/// (uid, gid, mode) of what stands at `path`, not followed.
fn owner_mode(path: &Path) -> (u32, u32, u32) {
    let md = std::fs::symlink_metadata(path).expect("lstat");
    (md.uid(), md.gid(), md.mode() & 0o7777)
}

fn site(e: &TestEnv, module: &str, toml: &str) {
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", &format!("modules = [\"{module}\"]\n"))
        .write(&format!("modules/{module}/module.toml"), toml);
}

/// A site giving alice her `authorized_keys` (0600, hers), and a target where root has
/// its own and alice (uid 1000) owns `/home/alice`.
fn alice(e: &TestEnv) {
    site(
        e,
        "ssh",
        "[[file]]\npath = \"/home/alice/.ssh/authorized_keys\"\nmode = \"0600\"\n\
         owner = \"alice\"\ngroup = \"alice\"\n",
    );
    e.write(
        "modules/ssh/files/home/alice/.ssh/authorized_keys",
        "alice key\n",
    )
    .write_root(
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
        0o644,
    )
    .write_root("etc/group", "root:x:0:\nalice:x:1000:\n", 0o644)
    .write_root("root/.ssh/authorized_keys", "root key\n", 0o600);
    std::fs::create_dir_all(e.root().join("home/alice")).expect("home");
    chown(&e.root().join("home/alice"), 1000);
}

/// Root's key: its content, owner and mode as they were, and nothing beside it.
fn roots_key_is_untouched(e: &TestEnv) {
    let keys = e.root().join("root/.ssh/authorized_keys");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), "root key\n");
    assert_eq!(owner_mode(&keys), (0, 0, 0o600), "root's key was chowned");
    assert_eq!(owner_mode(&e.root().join("root/.ssh")).0, 0);
    assert_eq!(
        std::fs::read_dir(e.root().join("root/.ssh"))
            .unwrap()
            .count(),
        1
    );
}

/// Issue 17, item 1: alice replaced `.ssh` in her home with a link to `/root/.ssh`. Plan
/// and apply refuse, naming the link, where it leads and both owners; root's key never
/// shows in a plan, is never written, never chowned. Once `.ssh` is alice's own
/// directory, the apply goes through.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root: scripts/test runs as root (feature host-tests)"
)]
fn a_users_link_into_roots_ssh_is_refused_by_plan_and_apply() {
    require_root!();
    for (target, want) in [
        (
            "/root/.ssh",
            "cannot open directory [ROOT]/home/alice/.ssh: unsafe path transition from \
             /home/alice/.ssh (a link to /root/.ssh, owned by alice, uid 1000) to / (owned by \
             root, uid 0)",
        ),
        (
            "../../root/.ssh",
            "unsafe path transition from /home/alice (owned by alice, uid 1000) to /home \
             (owned by root, uid 0), following the link /home/alice/.ssh -> ../../root/.ssh",
        ),
    ] {
        let e = env();
        alice(&e);
        let link = e.root().join("home/alice/.ssh");
        std::os::unix::fs::symlink(target, &link).expect("symlink");
        chown(&link, 1000);
        let before = e.tree();
        for verb in ["plan", "apply"] {
            let run = e.run(&[verb, "--node", "n1"]).code(1);
            assert!(
                run.stderr.contains(want),
                "{verb} {target}:\n{}",
                run.stderr
            );
            assert!(
                !run.stdout.contains("root key") && !run.stderr.contains("root key"),
                "{verb} showed root's key:\n{}",
                run.stdout
            );
            roots_key_is_untouched(&e);
            assert_eq!(e.tree(), before, "{verb} changed the target");
        }

        // Alice makes it a directory of her own: now it is hers to get.
        std::fs::remove_file(&link).unwrap();
        std::fs::create_dir(&link).unwrap();
        chown(&link, 1000);
        e.run(&["apply", "--node", "n1"]).code(0);
        let keys = link.join("authorized_keys");
        assert_eq!(std::fs::read_to_string(&keys).unwrap(), "alice key\n");
        assert_eq!(owner_mode(&keys), (1000, 1000, 0o600));
        roots_key_is_untouched(&e);
        e.run(&["plan", "--node", "n1"]).code(0);
    }
}

/// A missing `.ssh` that strata makes in alice's home is hers (owner and group of the
/// directory it is made in), so that the path stays one strata follows; the next plan
/// reads it back and has nothing to do.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root: scripts/test runs as root (feature host-tests)"
)]
fn a_directory_strata_makes_in_a_users_home_is_that_users() {
    require_root!();
    let e = env();
    alice(&e);
    let run = e.run(&["apply", "--node", "n1"]).code(0);
    let line = run
        .stdout
        .lines()
        .find(|l| l.starts_with("create    /home/alice/.ssh "))
        .expect("a line for .ssh");
    assert!(line.ends_with("dir 0755 alice:alice"), "{line}");
    assert_eq!(
        owner_mode(&e.root().join("home/alice/.ssh")),
        (1000, 1000, 0o755)
    );
    let keys = e.root().join("home/alice/.ssh/authorized_keys");
    assert_eq!(std::fs::read_to_string(&keys).unwrap(), "alice key\n");
    assert_eq!(owner_mode(&keys), (1000, 1000, 0o600));
    e.run(&["plan", "--node", "n1"]).code(0);
    roots_key_is_untouched(&e);
}

/// A site that would put a directory of root's inside alice's home, with a file below it,
/// is refused by the plan before anything is written: the next plan could not follow that
/// path.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root: scripts/test runs as root (feature host-tests)"
)]
fn a_directory_declared_for_another_owner_in_a_users_home_is_refused() {
    require_root!();
    let e = env();
    alice(&e);
    e.write(
        "modules/ssh/module.toml",
        "[[dir]]\npath = \"/home/alice/.ssh\"\nowner = \"root\"\n",
    );
    let before = e.tree();
    for verb in ["plan", "apply"] {
        let run = e.run(&[verb, "--node", "n1"]).code(1);
        assert!(
            run.stderr.contains(
                "/home/alice/.ssh: would be owned by root, uid 0 inside /home/alice, owned by \
                 alice, uid 1000: strata does not follow"
            ),
            "{verb}:\n{}",
            run.stderr
        );
        assert_eq!(e.tree(), before, "{verb} changed the target");
    }
}

/// Debian's `/bin -> usr/bin` (root's link in root's directory), relative or absolute, is
/// followed as before: a file declared under `/bin` lands in `/usr/bin`.
#[test]
fn debian_style_bin_and_sbin_links_are_followed() {
    let e = env();
    site(&e, "tools", "");
    e.write("modules/tools/files/bin/hello", "hello\n")
        .write("modules/tools/files/sbin/admin", "admin\n");
    std::fs::create_dir_all(e.root().join("usr/bin")).unwrap();
    std::fs::create_dir_all(e.root().join("usr/sbin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", e.root().join("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/sbin", e.root().join("sbin")).unwrap();
    e.run(&["plan", "--node", "n1"]).code(2);
    e.run(&["apply", "--node", "n1"]).code(0);
    let read = |rel: &str| std::fs::read_to_string(e.root().join(rel)).unwrap();
    assert_eq!(read("usr/bin/hello"), "hello\n");
    assert_eq!(read("usr/sbin/admin"), "admin\n");
    assert!(
        std::fs::symlink_metadata(e.root().join("bin"))
            .unwrap()
            .is_symlink()
    );
    e.run(&["plan", "--node", "n1"]).code(0);
}

/// Issue 17, item 5a: 4294967295 is `(uid_t)-1`, which chown takes as "leave unchanged":
/// the file would never get it and drift for ever. It is refused with its line, as owner
/// or group, in `[[file]]`, `[[dir]]` and `[[download]]` (and as a `[[user]]`'s uid), and
/// nothing is written.
#[test]
fn an_owner_or_group_of_minus_one_is_refused_with_its_line() {
    for (toml, want) in [
        (
            "[[file]]\npath = \"/etc/app.conf\"\nowner = \"4294967295\"\n",
            "modules/app/module.toml:3:9: owner `4294967295` is the id -1, which chown takes \
             as \"leave unchanged\"",
        ),
        (
            "\n[[dir]]\npath = \"/etc/app\"\ngroup = \"4294967295\"\n",
            "modules/app/module.toml:4:9: group `4294967295` is the id -1",
        ),
        (
            "[[download]]\nurl = \"http://127.0.0.1:9/x\"\nsha256 = \"\
             0000000000000000000000000000000000000000000000000000000000000000\"\n\
             path = \"/opt/x\"\nowner = \"4294967295\"\n",
            "modules/app/module.toml:1:1: [[download]] /opt/x: owner `4294967295` is the id -1",
        ),
        (
            "[[user]]\nname = \"bob\"\nuid = 4294967295\n",
            "modules/app/module.toml:1:1: uid `4294967295` is the id -1",
        ),
        (
            "[[file]]\npath = \"/etc/app.conf\"\nowner = \"4294901760\"\n",
            "modules/app/module.toml:3:9: owner `4294901760`: ids from 4294901760 up are \
             reserved",
        ),
    ] {
        let e = env();
        site(&e, "app", toml);
        e.write("modules/app/files/etc/app.conf", "x\n");
        let check = e.run(&["check"]).code(1);
        assert!(check.stderr.contains(want), "{}", check.stderr);
        for verb in ["plan", "apply"] {
            let run = e.run(&[verb, "--node", "n1"]).code(1);
            assert!(run.stderr.contains(want), "{verb}:\n{}", run.stderr);
            assert_eq!(e.tree(), "", "{verb} wrote to the target");
        }
    }
}

/// Issue 17, item 5b: a name that is not UTF-8 in a purged directory is listed (escaped),
/// removed, and comes back byte for byte when the purge goes.
#[test]
fn a_name_that_is_not_utf8_in_a_purged_directory_is_removed_and_shown_escaped() {
    let e = env();
    site(&e, "app", "[[dir]]\npath = \"/etc/app.d\"\npurge = true\n");
    e.write("modules/app/files/etc/app.d/ours.conf", "ours\n");
    let dir = e.root().join("etc/app.d");
    std::fs::create_dir_all(&dir).unwrap();
    let raw = std::ffi::OsStr::from_bytes(b"old\xff\x1b.conf");
    std::fs::write(dir.join(raw), "stray\n").unwrap();
    std::fs::set_permissions(dir.join(raw), std::fs::Permissions::from_mode(0o640)).unwrap();

    let plan = e.run(&["plan", "--node", "n1"]).code(2);
    assert!(
        plan.stdout
            .contains("remove    /etc/app.d/old\\xff\\u{1b}.conf  file 0640"),
        "{}",
        plan.stdout
    );
    let json = e.run(&["plan", "--node", "n1", "--json"]).code(2);
    assert!(
        json.stdout
            .contains("\"/etc/app.d/old\\u0000ff\\u001b.conf\""),
        "{}",
        json.stdout
    );
    e.run(&["apply", "--node", "n1"]).code(0);
    let names: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|d| d.unwrap().file_name().as_bytes().to_vec())
        .collect();
    assert_eq!(names, [b"ours.conf".to_vec()]);
    e.run(&["plan", "--node", "n1"]).code(0);

    // Without the purge it comes back, name, content and mode.
    e.write("modules/app/module.toml", "");
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(std::fs::read(dir.join(raw)).unwrap(), b"stray\n");
    assert_eq!(owner_mode(&dir.join(raw)).2, 0o640);
}

/// Issue 17, item 5c: a module's `files/`, `templates/`, `scripts/` or a script that is a
/// link leading out of the site is refused by `check`, `plan` and `apply`, naming the
/// link; nothing of the host file shows. A link that stays inside the site is followed.
#[test]
fn a_module_link_out_of_the_site_is_refused_by_name() {
    let host = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(host.path().join("etc")).unwrap();
    std::fs::write(host.path().join("etc/secret"), "host secret\n").unwrap();
    std::fs::write(host.path().join("run.sh"), "#!/bin/sh\necho host secret\n").unwrap();
    let h = host.path().display().to_string();
    for (link, target) in [
        ("modules/app/files", h.clone()),
        ("modules/app/templates", h.clone()),
        ("modules/app/scripts", h.clone()),
        ("modules/app/scripts/10-run", format!("{h}/run.sh")),
    ] {
        let e = env();
        site(&e, "app", "");
        let at = e.site().join(link);
        std::fs::create_dir_all(at.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(&target, &at).unwrap();
        let want = format!("{link}: a link to {target}, which leads out of the site");
        let check = e.run(&["check"]).code(1);
        assert!(check.stderr.contains(&want), "{link}:\n{}", check.stderr);
        for verb in ["plan", "apply"] {
            let run = e.run(&[verb, "--node", "n1"]).code(1);
            assert!(run.stderr.contains(&want), "{verb} {link}:\n{}", run.stderr);
            assert!(!run.stdout.contains("host secret"), "{}", run.stdout);
            assert_eq!(e.tree(), "", "{verb} wrote to the target");
        }
    }

    // Inside the site: a version sharing another's files.
    let e = env();
    site(&e, "app", "");
    e.write("shared/files/etc/shared.conf", "shared\n");
    std::os::unix::fs::symlink("../../shared/files", e.site().join("modules/app/files")).unwrap();
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(
        std::fs::read_to_string(e.root().join("etc/shared.conf")).unwrap(),
        "shared\n"
    );
}
