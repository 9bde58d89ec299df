//! Type changes by scripts (issue 17, item 4): a directory replaced by a file or a link
//! (Debian's usrmerge: `/lib` → `/lib -> usr/lib`), a file replaced by a directory. Each
//! is planned path by path (the replaced tree's every path named), applied, undone by
//! taking the module away, and rolled back, with the root compared whole each time; and a
//! commit stopped at any of its points leaves the root all-old or all-new.
//!
//! (Over 600 lines, kept whole: its twelve tests are three cases, `CASES`, taken through
//! the same round trip, the same plan checks and the same crash points; the table, its
//! setup and the round trip are half the file, and every test here uses them.)

use std::os::unix::fs::{MetadataExt, PermissionsExt};

use serde_json::Value;
use strata_test::{TestEnv, require_busybox_root};

use crate::env;
use crate::sandbox::{changed_paths, plan_equals_apply, script};

/// One type change: how the target looks before, what the script does (idempotent), and
/// the (action, path) pairs its plan must report.
struct Case {
    name: &'static str,
    setup: fn(&TestEnv),
    body: &'static str,
    changes: &'static [(&'static str, &'static str)],
    /// The path whose type changes, with its type before and after.
    top: (&'static str, &'static str, &'static str),
}

/// A directory full of what a tree can hold: files with set-id bits and private ones,
/// owners other than root, a nested private directory, an empty one, a link and a FIFO,
/// extended attributes (a capability among them).
fn populated(e: &TestEnv, dir: &str) {
    let dir = dir.trim_start_matches('/');
    let root = e.root();
    let at = |rel: &str| root.join(dir).join(rel);
    e.write_root(&format!("{dir}/a"), "a\n", 0o640)
        .write_root(&format!("{dir}/run.sh"), "#!/bin/sh\n", 0o755)
        .write_root(&format!("{dir}/sub/b"), "b\n", 0o600);
    std::fs::create_dir_all(at("sub/empty")).expect("mkdir");
    std::os::unix::fs::symlink("a", at("link")).expect("link");
    let fifo = std::ffi::CString::new(at("pipe").as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0, "mkfifo");
    let own = |rel: &str, uid: u32, gid: u32| {
        std::os::unix::fs::lchown(at(rel), Some(uid), Some(gid)).expect("chown");
    };
    own("", 1000, 1000);
    own("a", 1000, 1000);
    // Its own uid with another group: a directory of another user's below a user's own
    // is a path strata refuses to walk (CHASE_SAFE, paths.rs), never a type change.
    own("sub", 1000, 3);
    own("sub/b", 2, 3);
    own("link", 5, 6);
    own("pipe", 7, 8);
    // After the owners: chown drops file capabilities.
    for (rel, name, value) in [
        ("", "user.top", &b"1"[..]),
        ("a", "user.kept", b"yes"),
        ("sub", "user.dir", b"2"),
        ("run.sh", "security.capability", CAP_NET_RAW),
    ] {
        rustix::fs::lsetxattr(at(rel), name, value, rustix::fs::XattrFlags::empty())
            .expect("setxattr");
    }
    let mode = |rel: &str, mode: u32| {
        std::fs::set_permissions(at(rel), std::fs::Permissions::from_mode(mode)).expect("chmod");
    };
    // After the owners: chown drops set-id bits.
    mode("", 0o750);
    mode("run.sh", 0o4755);
    mode("sub", 0o700);
    mode("pipe", 0o620);
}

/// `cap_net_raw+ep` as `setcap` writes it (VFS_CAP_REVISION_2).
const CAP_NET_RAW: &[u8] = &[
    0x01, 0x00, 0x00, 0x02, 0x00, 0x20, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x00,
];

fn dir_to_file_setup(e: &TestEnv) {
    populated(e, "/srv/data");
}

fn file_to_dir_setup(e: &TestEnv) {
    e.write_root("srv/data", "just a file\n", 0o640);
    let file = e.root().join("srv/data");
    std::os::unix::fs::chown(&file, Some(1000), Some(1000)).expect("chown");
    rustix::fs::lsetxattr(&file, "user.file", b"1", rustix::fs::XattrFlags::empty())
        .expect("setxattr");
}

fn usrmerge_setup(e: &TestEnv) {
    populated(e, "/lib");
    e.write_root("usr/lib/os-release", "ID=busybox\n", 0o644);
}

const CASES: &[Case] = &[
    Case {
        name: "a directory replaced by a file",
        setup: dir_to_file_setup,
        body: "[ -f /srv/data ] || { rm -rf /srv/data; printf 'now a file\\n' > /srv/data; \
               chmod 0600 /srv/data; }",
        changes: &[
            ("modify", "/srv/data"),
            ("remove", "/srv/data/a"),
            ("remove", "/srv/data/link"),
            ("remove", "/srv/data/pipe"),
            ("remove", "/srv/data/run.sh"),
            ("remove", "/srv/data/sub"),
            ("remove", "/srv/data/sub/b"),
            ("remove", "/srv/data/sub/empty"),
        ],
        top: ("/srv/data", "dir", "file"),
    },
    Case {
        name: "a file replaced by a directory",
        setup: file_to_dir_setup,
        body: "[ -d /srv/data ] || { rm /srv/data; mkdir -p /srv/data/sub; echo a > /srv/data/a; \
               echo b > /srv/data/sub/b; ln -s a /srv/data/l; mkfifo /srv/data/p; \
               chown -R 1000:1000 /srv/data; chmod 0700 /srv/data/sub; }",
        changes: &[
            ("create", "/srv/data/a"),
            ("create", "/srv/data/l"),
            ("create", "/srv/data/p"),
            ("create", "/srv/data/sub"),
            ("create", "/srv/data/sub/b"),
            ("modify", "/srv/data"),
        ],
        top: ("/srv/data", "file", "dir"),
    },
    Case {
        name: "a populated directory replaced by a link (usrmerge)",
        setup: usrmerge_setup,
        body: "[ -L /lib ] || { cp -a /lib/. /usr/lib/; rm -rf /lib; ln -s usr/lib /lib; }",
        changes: &[
            ("create", "/usr/lib/a"),
            ("create", "/usr/lib/link"),
            ("create", "/usr/lib/pipe"),
            ("create", "/usr/lib/run.sh"),
            ("create", "/usr/lib/sub"),
            ("create", "/usr/lib/sub/b"),
            ("create", "/usr/lib/sub/empty"),
            ("modify", "/lib"),
            ("modify", "/usr/lib"),
            ("remove", "/lib/a"),
            ("remove", "/lib/link"),
            ("remove", "/lib/pipe"),
            ("remove", "/lib/run.sh"),
            ("remove", "/lib/sub"),
            ("remove", "/lib/sub/b"),
            ("remove", "/lib/sub/empty"),
        ],
        top: ("/lib", "dir", "link"),
    },
];

/// A node `n1` applying module `app`, which declares `/etc/motd`, on the case's target.
fn prepared(e: &TestEnv, case: &Case) {
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", "modules = [\"app\"]\n")
        .write("modules/app/files/etc/motd", "hello\n");
    std::fs::create_dir_all(e.root().join("var/lib")).expect("var/lib");
    (case.setup)(e);
}

/// The whole root as `TestEnv::tree` shows it, plus what its lines leave out: the owner
/// of every link (but busybox's applets) and the extended attributes of every file and
/// directory.
fn snapshot(e: &TestEnv) -> String {
    let mut out = e.tree();
    for entry in walkdir::WalkDir::new(e.root()).sort_by_file_name() {
        let entry = entry.expect("walk");
        let rel = entry.path().strip_prefix(e.root()).expect("below");
        if rel.starts_with("bin") || rel.starts_with("var/lib/strata") {
            continue;
        }
        if entry.path_is_symlink() {
            let md = entry.path().symlink_metadata().expect("lstat");
            out.push_str(&format!(
                "/{} link owner {}:{}\n",
                rel.display(),
                md.uid(),
                md.gid()
            ));
            continue;
        }
        let mut names = vec![0u8; 4096];
        let n = rustix::fs::llistxattr(entry.path(), &mut names[..]).unwrap_or(0);
        for name in names[..n].split(|b| *b == 0).filter(|n| !n.is_empty()) {
            let name = String::from_utf8_lossy(name);
            let mut value = vec![0u8; 4096];
            let len = rustix::fs::lgetxattr(entry.path(), &*name, &mut value[..]).expect("xattr");
            out.push_str(&format!(
                "/{} xattr {name}={:?}\n",
                rel.display(),
                &value[..len]
            ));
        }
    }
    out
}

/// Asserts two snapshots are equal, showing only the lines that differ.
#[track_caller]
fn assert_same(have: &str, want: &str, what: &str) {
    if have != want {
        let (h, w): (Vec<&str>, Vec<&str>) = (have.lines().collect(), want.lines().collect());
        let extra: Vec<&&str> = h.iter().filter(|l| !w.contains(l)).collect();
        let missing: Vec<&&str> = w.iter().filter(|l| !h.contains(l)).collect();
        panic!("{what}: the root differs\nunexpected: {extra:#?}\nmissing: {missing:#?}");
    }
}

fn sorted(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = pairs
        .iter()
        .map(|(a, p)| (a.to_string(), p.to_string()))
        .collect();
    v.sort();
    v
}

/// The change a plan's JSON has for `path`.
fn change<'v>(plan: &'v Value, path: &str) -> &'v Value {
    plan["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .find(|c| c["path"] == path)
        .unwrap_or_else(|| panic!("no change for {path}"))
}

/// Plan, apply, a second plan with nothing to do, `strata rollback`, apply again, the
/// module taken away, and `strata rollback` twice more: each time the root is compared
/// whole with what it was.
fn round_trip(case: &Case) {
    let e = env();
    require_busybox_root!(e);
    prepared(&e, case);
    let original = snapshot(&e);
    e.run(&["apply", "--node", "n1"]).code(0);
    let declared = snapshot(&e);
    script(&e, "10-retype.sh", case.body);

    // Planned: every path of the replaced tree named, the top as a type change; the
    // apply does exactly that.
    let plan = plan_equals_apply(&e);
    let mut got = changed_paths(&plan);
    got.sort();
    assert_eq!(got, sorted(case.changes), "{}: the plan", case.name);
    let (top, was, now) = case.top;
    let c = change(&plan, top);
    assert_eq!(
        (c["before"]["type"].as_str(), c["after"]["type"].as_str()),
        (Some(was), Some(now)),
        "{}",
        case.name
    );
    assert!(
        c["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("type change")),
        "{}: {c}",
        case.name
    );
    let changed = snapshot(&e);
    let kind = std::fs::symlink_metadata(e.root().join(&top[1..])).expect("top");
    let is_now = match now {
        "dir" => kind.is_dir(),
        "file" => kind.is_file(),
        _ => kind.file_type().is_symlink(),
    };
    assert!(is_now, "{}: {top} is a {now} now", case.name);
    let again = e.run(&["plan", "--node", "n1"]).code(0);
    assert!(
        again
            .stdout
            .contains("0 to create, 0 to modify, 0 to remove, 0 to restore"),
        "{}: {}",
        case.name,
        again.stdout
    );

    // Rolled back to the generation before the type change, then applied again.
    e.run(&["rollback"]).code(0);
    assert_same(
        &snapshot(&e),
        &declared,
        &format!("{}: rollback", case.name),
    );
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_same(
        &snapshot(&e),
        &changed,
        &format!("{}: applied again", case.name),
    );

    // The script edited: it runs again from the original tree, and ends where it was.
    script(&e, "10-retype.sh", &format!("{}\n# edited", case.body));
    let edited = e.run(&["plan", "--node", "n1"]).code(0);
    assert!(
        edited
            .stdout
            .contains("0 to create, 0 to modify, 0 to remove, 0 to restore"),
        "{}: {}",
        case.name,
        edited.stdout
    );
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_same(&snapshot(&e), &changed, &format!("{}: edited", case.name));

    // Undone: the module taken away from the node. The plan restores every path of the
    // tree the script replaced.
    e.write("nodes/n1.toml", "modules = []\n");
    let down = e.run(&["plan", "--node", "n1", "--json"]).code(2);
    let down: Value = serde_json::from_str(&down.stdout).expect("json");
    let c = change(&down, top);
    assert_eq!(c["action"], "restore", "{}: {c}", case.name);
    assert!(
        c["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("type change")),
        "{}: {c}",
        case.name
    );
    for (action, path) in case.changes {
        let want = match *action {
            "create" => "remove",
            _ => "restore",
        };
        assert_eq!(
            change(&down, path)["action"],
            want,
            "{}: {path} on the way down",
            case.name
        );
    }
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_same(
        &snapshot(&e),
        &original,
        &format!("{}: the module taken away", case.name),
    );
    e.run(&["plan", "--node", "n1"]).code(0);

    // Rolled back to the type change, and back again.
    e.run(&["rollback"]).code(0);
    assert_same(
        &snapshot(&e),
        &changed,
        &format!("{}: rollback to it", case.name),
    );
    e.run(&["rollback"]).code(0);
    assert_same(
        &snapshot(&e),
        &original,
        &format!("{}: rollback from it", case.name),
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_script_replacing_a_directory_with_a_file_commits_the_whole_tree() {
    round_trip(&CASES[0]);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_script_replacing_a_file_with_a_directory_commits_the_whole_tree() {
    round_trip(&CASES[1]);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_script_replacing_a_populated_directory_with_a_link_commits_the_whole_tree() {
    round_trip(&CASES[2]);
}

/// The plan as a person reads it: the type change on the directory's line, and each path
/// below it as removed.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn the_plan_shows_the_type_change_and_every_path_below_it() {
    let e = env();
    require_busybox_root!(e);
    prepared(&e, &CASES[2]);
    script(&e, "10-retype.sh", CASES[2].body);
    let before = snapshot(&e);
    let plan = e.run(&["plan", "--node", "n1"]).code(2);
    assert_same(&snapshot(&e), &before, "a plan changed the target");
    let lines: Vec<&str> = plan.stdout.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("modify    /lib "))
        .unwrap_or_else(|| panic!("{}", plan.stdout));
    assert!(
        lines[at].contains("  dir 0750 1000:1000 user.top=0x31 → link -> usr/lib  (app"),
        "{}",
        lines[at]
    );
    assert_eq!(
        lines[at + 1].trim(),
        "type change: a link replaces this directory and the 7 paths below it"
    );
    for p in ["a", "link", "pipe", "run.sh", "sub", "sub/b", "sub/empty"] {
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&format!("remove    /lib/{p} "))),
            "/lib/{p}:\n{}",
            plan.stdout
        );
    }
}

/// What the sandbox does not report below a replaced directory (paths the site ignores)
/// goes with it all the same: the plan names it as removed, and "down" brings it back.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn paths_the_sandbox_ignores_below_a_replaced_directory_are_named_too() {
    let e = env();
    require_busybox_root!(e);
    let case = &CASES[0];
    prepared(&e, case);
    e.write(
        "strata.toml",
        "[site]\nname = \"t\"\n[sandbox]\nignore = [\"/srv/data/sub/**\"]\n",
    );
    let original = snapshot(&e);
    script(&e, "10-retype.sh", case.body);
    let plan = plan_equals_apply(&e);
    let mut got = changed_paths(&plan);
    got.sort();
    let mut want = sorted(case.changes);
    want.push(("create".into(), "/etc".into()));
    want.push(("create".into(), "/etc/motd".into()));
    want.sort();
    assert_eq!(got, want);
    assert!(!e.root().join("srv/data/sub").exists());
    e.write("nodes/n1.toml", "modules = []\n");
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_same(&snapshot(&e), &original, "the module taken away");
}

/// A directory a script made where a file stood, holding entries nobody manages when its
/// module goes away, is left in place (as a directory strata created would be) rather
/// than replaced with the original file: what is left in it is not strata's to remove.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_directory_made_in_place_of_a_file_that_holds_other_entries_is_kept_on_the_way_down() {
    let e = env();
    require_busybox_root!(e);
    let case = &CASES[1];
    prepared(&e, case);
    script(&e, "10-retype.sh", case.body);
    e.run(&["apply", "--node", "n1"]).code(0);
    e.write_root("srv/data/by-hand", "mine\n", 0o644);
    e.write("nodes/n1.toml", "modules = []\n");
    let down = e.run(&["plan", "--node", "n1", "--json"]).code(2);
    let down: Value = serde_json::from_str(&down.stdout).expect("json");
    let c = change(&down, "/srv/data");
    assert_eq!(c["action"], "keep", "{c}");
    assert!(
        c["note"]
            .as_str()
            .is_some_and(|n| n.contains("1 entries strata does not manage")),
        "{c}"
    );
    e.run(&["apply", "--node", "n1"]).code(0);
    let mut left: Vec<String> = std::fs::read_dir(e.root().join("srv/data"))
        .expect("still a directory")
        .map(|d| d.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    assert_eq!(left, ["by-hand"]);
    e.run(&["plan", "--node", "n1"]).code(0);
}

/// A script that replaces a directory holding strata's own state is refused before
/// anything is written: the commit's journal and store live there.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_script_replacing_the_directory_of_stratas_state_is_refused() {
    let e = env();
    require_busybox_root!(e);
    let case = &CASES[0];
    prepared(&e, case);
    e.run(&["apply", "--node", "n1"]).code(0);
    script(
        &e,
        "10-retype.sh",
        "mkdir -p /srv/lib && rm -rf /var/lib && ln -s /srv/lib /var/lib",
    );
    let before = snapshot(&e);
    let out = e.run(&["apply", "--node", "n1"]).code(1);
    assert!(
        out.stderr.contains(
            "/var/lib: a script replaced this directory, but it holds strata's own state"
        ),
        "{}",
        out.stderr
    );
    assert_same(&snapshot(&e), &before, "a refused apply");
    e.run(&["generations"]).code(0);
}

/// A file the site declares below a directory that a script replaces with a link would
/// end up through that link, somewhere else: refused, naming both, nothing written.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_declared_file_below_a_directory_a_script_replaces_is_refused() {
    let e = env();
    require_busybox_root!(e);
    prepared(&e, &CASES[2]);
    e.write("modules/app/files/lib/extra.conf", "x\n");
    script(&e, "10-retype.sh", CASES[2].body);
    let before = snapshot(&e);
    let out = e.run(&["apply", "--node", "n1"]).code(1);
    assert!(
        out.stderr
            .contains("/lib/extra.conf: a file is to stand here, but a script made /lib a link"),
        "{}",
        out.stderr
    );
    assert_same(&snapshot(&e), &before, "a refused apply");
}

/// A site that declares a file where the target has a directory is still refused: a
/// declaration does not replace a tree (only a script's own change does).
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root: scripts/test runs as root (feature host-tests)"
)]
fn a_declared_file_where_a_directory_stands_is_still_refused() {
    strata_test::require_root!();
    let e = env();
    prepared(&e, &CASES[0]);
    e.write("modules/app/files/srv/data", "declared\n");
    let before = snapshot(&e);
    let out = e.run(&["plan", "--node", "n1"]).code(1);
    assert!(
        out.stderr
            .contains("/srv/data: a directory stands where a file is declared"),
        "{}",
        out.stderr
    );
    e.run(&["apply", "--node", "n1"]).code(1);
    assert_same(&snapshot(&e), &before, "a refused apply");
}

/// An apply of the case's type change (or, `down`, of the module going away after it)
/// stopped at the failpoints `points` as `kill -9` would (it aborts), or failed there (it
/// exits 1 having undone the commit). Panics, with what it printed, if it ended any other
/// way.
#[cfg(feature = "failpoints")]
fn stopped(e: &TestEnv, points: &str, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = e
        .cmd(&["apply", "--node", "n1"])
        .env("FAILPOINTS", points)
        .output()
        .expect("apply");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let fails = points.starts_with("commit-mid-replace-fails") && !points.contains("recover-");
    let how_it_ended = if fails {
        out.status.code() == Some(1) && stderr.contains("failpoint")
    } else {
        out.status.signal() == Some(libc::SIGABRT)
    };
    assert!(
        how_it_ended,
        "{what}: the apply should have been stopped there, it ended with {}:\n{stderr}",
        out.status
    );
}

/// Each point of the commit, and whether the next command finishes it (all new) or
/// undoes it (all old). `commit-mid-replace` stops while the replaced tree, set aside,
/// is being removed; recovery points stop the next command's own recovery.
#[cfg(feature = "failpoints")]
const POINTS: &[(&str, bool)] = &[
    ("commit-after-journal=return", false),
    ("commit-mid-stage=return", false),
    ("commit-after-store=return", false),
    ("commit-before-point=return", false),
    ("commit-after-point=return", true),
    ("commit-mid-apply=return", true),
    ("commit-after-exchange=return", true),
    ("commit-mid-replace=return", true),
    ("commit-after-apply=return", true),
    ("commit-after-publish=return", true),
    // A write failing after the commit point, once the tree is half removed: undone in
    // the same process (exit 1), and the undo itself stopped before its second step.
    ("commit-mid-replace-fails=1*return", false),
    (
        "commit-mid-replace-fails=1*return;recover-undo=1*off->return",
        false,
    ),
];

#[cfg(feature = "failpoints")]
fn crashes(case: &Case) {
    let e = env();
    require_busybox_root!(e);
    prepared(&e, case);
    let original = snapshot(&e);
    e.run(&["apply", "--node", "n1"]).code(0);
    let old = snapshot(&e);
    script(&e, "10-retype.sh", case.body);
    e.run(&["apply", "--node", "n1"]).code(0);
    let new = snapshot(&e);
    // The replaced side is a directory with entries on the way up for a directory
    // replaced, on the way down for a directory made.
    let (_, was, _) = case.top;
    for (down, replaces_dir) in [(false, was == "dir"), (true, was != "dir")] {
        for (points, ends_new) in POINTS {
            if points.starts_with("commit-mid-replace") && !replaces_dir {
                continue;
            }
            let e = env();
            assert!(e.busybox_root());
            prepared(&e, case);
            e.run(&["apply", "--node", "n1"]).code(0);
            script(&e, "10-retype.sh", case.body);
            let (from, to) = if down {
                e.run(&["apply", "--node", "n1"]).code(0);
                e.write("nodes/n1.toml", "modules = []\n");
                (&new, &original)
            } else {
                (&old, &new)
            };
            let what = format!(
                "{} ({}), {points}",
                case.name,
                if down { "down" } else { "up" }
            );
            assert_same(&snapshot(&e), from, &format!("{what}: the start"));
            stopped(&e, points, &what);
            // Any command finishes or undoes it; a second one finds nothing left to do.
            e.run(&["generations"]).code(0);
            e.run(&["generations"]).code(0);
            crate::crash::assert_clean(&e);
            let want = if *ends_new { to } else { from };
            let side = if *ends_new { "new" } else { "old" };
            assert_same(&snapshot(&e), want, &format!("{what}: expected all {side}"));
            // The recorded generation agrees with the tree.
            let pending = if *ends_new { 0 } else { 2 };
            e.run(&["plan", "--node", "n1"]).code(pending);
        }
    }
}

#[cfg(feature = "failpoints")]
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_directory_replaced_by_a_file_stopped_anywhere_is_all_old_or_all_new() {
    crashes(&CASES[0]);
}

#[cfg(feature = "failpoints")]
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_file_replaced_by_a_directory_stopped_anywhere_is_all_old_or_all_new() {
    crashes(&CASES[1]);
}

#[cfg(feature = "failpoints")]
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_usrmerge_stopped_anywhere_is_all_old_or_all_new() {
    crashes(&CASES[2]);
}
