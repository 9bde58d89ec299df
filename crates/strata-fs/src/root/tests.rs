//! Tests of the root: handles never outlive their path, writes are exact, and no walk
//! crosses from one owner to another.

use strata_types::{Meta, Snapshot};

use super::*;

fn p(s: &str) -> TargetPath {
    TargetPath::parse(s).unwrap()
}

fn meta(mode: u32, uid: u32, gid: u32) -> Meta {
    Meta { mode, uid, gid }
}

/// The cached handle on a directory never outlives the directory's path: what is
/// written after the path was replaced lands in what stands there now.
#[test]
fn a_replaced_directory_is_not_written_through_its_old_handle() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("old")).unwrap();
    std::os::unix::fs::symlink("old", t.path().join("d")).unwrap();
    let root = Root::open(t.path()).unwrap();
    // Through the link: the handle on /d is the old directory.
    root.write_file_in(&p("/d"), "a", b"1", Meta::root(0o644))
        .unwrap();
    assert!(t.path().join("old/a").is_file());
    // The link goes and a real directory takes its place.
    root.remove(&p("/d")).unwrap();
    root.mkdir(&p("/d"), Meta::root(0o755)).unwrap();
    root.write_file_in(&p("/d"), "b", b"2", Meta::root(0o644))
        .unwrap();
    assert!(t.path().join("d/b").is_file());
    assert!(!t.path().join("old/b").exists());
    // Likewise when an ancestor of the cached directory is renamed over.
    std::fs::create_dir_all(t.path().join("x/y")).unwrap();
    root.write_file_in(&p("/x/y"), "c", b"3", Meta::root(0o644))
        .unwrap();
    root.symlink_in(&p("/"), "x2", "old", 0, 0).unwrap();
    std::fs::rename(t.path().join("x"), t.path().join("gone")).unwrap();
    root.rename_in(&p("/"), "x2", "x").unwrap();
    assert!(!root.exists(&p("/x/y/c")));
    assert!(root.exists(&p("/x/a")));
}

/// What is written is exactly the content given, in any number of parts (none,
/// empty ones, more than one `writev` takes), with exactly the mode asked for (set-id
/// bits and write bits for others included), and the metadata returned is the file's.
#[test]
fn a_written_file_has_its_content_and_mode_and_the_metadata_returned() {
    use std::os::unix::fs::MetadataExt;
    let t = tempfile::tempdir().unwrap();
    let root = Root::open(t.path()).unwrap();
    let (uid, gid) = root.me;
    let many: Vec<Vec<u8>> = (0..1500)
        .map(|i| format!("part {i}\n").into_bytes())
        .collect();
    let mut parts: Vec<&[u8]> = many.iter().map(|b| &b[..]).collect();
    parts.insert(7, b"");
    let cases: [(&str, &[&[u8]], u32); 4] = [
        ("empty", &[], 0o644),
        ("blank", &[b"", b""], 0o600),
        ("many", &parts, 0o4755),
        ("shared", &[b"a", b"b"], 0o666),
    ];
    for (name, parts, mode) in cases {
        let key = root
            .write_parts_in(&p("/"), name, parts, meta(mode, uid, gid))
            .unwrap();
        let path = t.path().join(name);
        assert_eq!(std::fs::read(&path).unwrap(), parts.concat(), "{name}");
        let md = std::fs::metadata(&path).unwrap();
        assert_eq!(md.mode() & 0o7777, mode, "{name}");
        assert_eq!(Some(key), root.stat_key(&p(&format!("/{name}"))).unwrap());
    }
}

/// A file is written in its directory under a name that is one path component:
/// anything else is refused, and nothing is written anywhere.
#[test]
fn a_name_that_is_not_one_component_is_refused() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("d/e")).unwrap();
    let root = Root::open(t.path()).unwrap();
    for name in ["", ".", "..", "e/f", "../f", "a\0b"] {
        let err = root
            .write_file_in(&p("/d"), name, b"x", Meta::root(0o644))
            .unwrap_err();
        assert_eq!(err.op, "write", "{name:?}");
    }
    let names = |d: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(t.path().join(d))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(""), ["d"]);
    assert_eq!(names("d"), ["e"]);
    assert!(names("d/e").is_empty());
}

/// An exchange swaps a directory tree and a link whole, and what is then looked at
/// through either name is what stands there now, not a handle kept from before.
#[test]
fn an_exchange_swaps_a_tree_and_a_link_and_forgets_old_handles() {
    let t = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(t.path().join("lib/sub")).unwrap();
    std::fs::write(t.path().join("lib/sub/f"), "old").unwrap();
    std::fs::create_dir_all(t.path().join("usr/lib/sub")).unwrap();
    std::fs::write(t.path().join("usr/lib/sub/f"), "new").unwrap();
    std::os::unix::fs::symlink("usr/lib", t.path().join(".lib.new")).unwrap();
    let root = Root::open(t.path()).unwrap();
    assert_eq!(root.read(&p("/lib/sub/f")).unwrap().unwrap(), b"old");
    root.exchange_in(&p("/"), ".lib.new", "lib").unwrap();
    assert!(matches!(
        root.inspect(&p("/lib")).unwrap(),
        Snapshot::Link { .. }
    ));
    assert_eq!(root.read(&p("/lib/sub/f")).unwrap().unwrap(), b"new");
    assert_eq!(root.read(&p("/.lib.new/sub/f")).unwrap().unwrap(), b"old");
    assert_eq!(
        root.inspect_kind(&p("/.lib.new")).unwrap(),
        Some(DirEntryKind::Dir)
    );
    // Both names must exist: nothing is swapped with nothing.
    let err = root.exchange_in(&p("/"), "missing", "lib").unwrap_err();
    assert_eq!(err.op, "exchange");
    assert!(matches!(
        root.inspect(&p("/lib")).unwrap(),
        Snapshot::Link { .. }
    ));
}

/// These tests chown: they need root (scripts/test runs as root with `host-tests`).
fn assert_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test chowns: run it as root"
    );
}

fn lchown(path: &std::path::Path, id: u32) {
    std::os::unix::fs::lchown(path, Some(id), Some(id)).unwrap();
}

/// A tree with root's `/root/.ssh/authorized_keys` and alice's (uid 1000) home.
fn alice_and_root() -> tempfile::TempDir {
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let at = |rel: &str| t.path().join(rel);
    std::fs::create_dir_all(at("root/.ssh")).unwrap();
    std::fs::create_dir_all(at("home/alice")).unwrap();
    std::fs::create_dir_all(at("etc")).unwrap();
    std::fs::write(
        at("etc/passwd"),
        "root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(at("root/.ssh/authorized_keys"), "root key\n").unwrap();
    std::fs::set_permissions(
        at("root/.ssh/authorized_keys"),
        std::fs::Permissions::from_mode(0o600),
    )
    .unwrap();
    lchown(&at("home/alice"), 1000);
    t
}

/// Root's `authorized_keys` as it was made: content, owner and mode.
fn roots_key_is_untouched(t: &tempfile::TempDir) {
    use std::os::unix::fs::MetadataExt;
    let f = t.path().join("root/.ssh/authorized_keys");
    assert_eq!(std::fs::read_to_string(&f).unwrap(), "root key\n");
    let md = std::fs::symlink_metadata(&f).unwrap();
    assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (0, 0, 0o600));
    let names: Vec<_> = std::fs::read_dir(t.path().join("root/.ssh"))
        .unwrap()
        .collect();
    assert_eq!(names.len(), 1, "nothing was added beside it");
}

/// Issue 17, item 1: alice, who owns /home/alice, replaced `.ssh` with a link to
/// root's. Reading, listing, writing and setting metadata through it are refused,
/// naming both ends and their owners, and root's file is left as it was.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "chowns: needs root, as scripts/test runs (feature host-tests)"
)]
fn a_users_link_into_roots_files_is_refused_for_reading_and_writing() {
    assert_root();
    for (target, want) in [
        (
            "/root/.ssh",
            "unsafe path transition from /home/alice/.ssh (a link to /root/.ssh, owned by \
             alice, uid 1000) to / (owned by root, uid 0)",
        ),
        (
            "../../root/.ssh",
            "unsafe path transition from /home/alice (owned by alice, uid 1000) to /home \
             (owned by root, uid 0), following the link /home/alice/.ssh -> ../../root/.ssh",
        ),
    ] {
        let t = alice_and_root();
        let link = t.path().join("home/alice/.ssh");
        std::os::unix::fs::symlink(target, &link).unwrap();
        lchown(&link, 1000);
        let root = Root::open(t.path()).unwrap();
        let ssh = p("/home/alice/.ssh");
        let keys = p("/home/alice/.ssh/authorized_keys");
        let errors = [
            root.inspect(&keys).map(drop),
            root.read(&keys).map(drop),
            root.xattrs(&keys, None).map(drop),
            root.write_file_in(
                &ssh,
                "authorized_keys",
                b"alice key\n",
                meta(0o600, 1000, 1000),
            )
            .map(drop),
            root.set_meta(&keys, meta(0o600, 1000, 1000)),
            root.symlink_in(&ssh, "authorized_keys", "x", 1000, 1000),
            root.remove(&keys),
            root.resolve(&keys).map(drop),
        ];
        for (i, e) in errors.into_iter().enumerate() {
            let e = e.expect_err(&format!("call {i} through {target}"));
            let msg = e.source.to_string();
            assert!(msg.starts_with(want), "call {i} through {target}: {msg}");
            assert!(
                e.path.starts_with(t.path().join("home/alice/.ssh")),
                "{}",
                e.path.display()
            );
        }
        assert!(!root.is_dir_followed(&ssh));
        assert!(root.dir_owner(&ssh).is_err());
        // The link itself is alice's to have: it is seen, not followed.
        assert!(matches!(
            root.inspect(&ssh).unwrap(),
            Snapshot::Link { uid: 1000, .. }
        ));
        roots_key_is_untouched(&t);
    }
}

/// What CHASE_SAFE lets through: links that root owns in root's directories (Debian's
/// `/bin -> usr/bin`, absolute or relative), and a user's relative link to what the
/// same user owns. What it does not: a user's absolute link (it leads back to the
/// root, which root owns), and a directory root owns inside a user's directory.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "chowns: needs root, as scripts/test runs (feature host-tests)"
)]
fn links_are_followed_only_within_one_owner_or_out_of_roots_hands() {
    assert_root();
    let t = alice_and_root();
    let at = |rel: &str| t.path().join(rel);
    std::fs::create_dir_all(at("usr/bin")).unwrap();
    std::os::unix::fs::symlink("usr/bin", at("bin")).unwrap();
    std::os::unix::fs::symlink("/usr/bin", at("sbin")).unwrap();
    std::fs::create_dir_all(at("home/alice/dotfiles/ssh")).unwrap();
    lchown(&at("home/alice/dotfiles"), 1000);
    lchown(&at("home/alice/dotfiles/ssh"), 1000);
    std::os::unix::fs::symlink("dotfiles/ssh", at("home/alice/.ssh")).unwrap();
    lchown(&at("home/alice/.ssh"), 1000);
    std::os::unix::fs::symlink("/home/alice/dotfiles", at("home/alice/abs")).unwrap();
    lchown(&at("home/alice/abs"), 1000);
    std::fs::create_dir_all(at("home/alice/rootdir")).unwrap();
    let root = Root::open(t.path()).unwrap();
    for dir in ["/bin", "/sbin"] {
        root.write_file_in(&p(dir), "hello", b"hi\n", Meta::root(0o755))
            .unwrap();
    }
    assert_eq!(
        std::fs::read_to_string(at("usr/bin/hello")).unwrap(),
        "hi\n"
    );
    assert_eq!(
        root.resolve(&p("/bin/hello")).unwrap(),
        Some(p("/usr/bin/hello"))
    );
    assert_eq!(root.dir_owner(&p("/bin")).unwrap(), Some((0, 0)));
    root.write_file_in(
        &p("/home/alice/.ssh"),
        "authorized_keys",
        b"alice key\n",
        meta(0o600, 1000, 1000),
    )
    .unwrap();
    assert_eq!(
        std::fs::read_to_string(at("home/alice/dotfiles/ssh/authorized_keys")).unwrap(),
        "alice key\n"
    );
    assert_eq!(
        root.dir_owner(&p("/home/alice/.ssh")).unwrap(),
        Some((1000, 1000))
    );
    for refused in ["/home/alice/abs/ssh/x", "/home/alice/rootdir/x"] {
        let e = root.inspect(&p(refused)).unwrap_err();
        assert!(
            e.source
                .to_string()
                .starts_with("unsafe path transition from "),
            "{e}"
        );
    }
    roots_key_is_untouched(&t);
}

/// Owners and modes of links and FIFOs are set through a handle on what strata made,
/// never through a path that could lead elsewhere: what a link points to keeps its own.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "chowns: needs root, as scripts/test runs (feature host-tests)"
)]
fn links_and_fifos_get_their_owner_and_mode_through_a_handle() {
    use std::os::unix::fs::MetadataExt;
    assert_root();
    let t = alice_and_root();
    let root = Root::open(t.path()).unwrap();
    root.symlink_in(&p("/"), "l", "/root/.ssh/authorized_keys", 1000, 1000)
        .unwrap();
    root.set_link_owner(&p("/l"), 1000, 0).unwrap();
    root.fifo_in(&p("/"), "f", meta(0o640, 1000, 1000)).unwrap();
    let link = std::fs::symlink_metadata(t.path().join("l")).unwrap();
    assert_eq!((link.uid(), link.gid()), (1000, 0));
    let fifo = std::fs::symlink_metadata(t.path().join("f")).unwrap();
    assert!(std::os::unix::fs::FileTypeExt::is_fifo(&fifo.file_type()));
    assert_eq!(
        (fifo.uid(), fifo.gid(), fifo.mode() & 0o7777),
        (1000, 1000, 0o640)
    );
    roots_key_is_untouched(&t);
}

/// A name that is not UTF-8 is listed in the form a path keeps it, and can be
/// inspected, written and removed under that name.
#[test]
fn a_name_that_is_not_utf8_is_listed_and_can_be_removed() {
    use std::os::unix::ffi::OsStrExt;
    let t = tempfile::tempdir().unwrap();
    let raw = std::ffi::OsStr::from_bytes(b"bad\xffname");
    std::fs::create_dir(t.path().join("d")).unwrap();
    std::fs::write(t.path().join("d").join(raw), "x").unwrap();
    let root = Root::open(t.path()).unwrap();
    let listed = root.list(&p("/d")).unwrap();
    assert_eq!(listed, [("bad\0ffname".to_string(), DirEntryKind::File)]);
    let child = p("/d").join(&listed[0].0).unwrap();
    assert!(matches!(
        root.inspect(&child).unwrap(),
        Snapshot::File { size: 1, .. }
    ));
    root.write_file_in(&p("/d"), "new\0fe", b"y", Meta::root(0o644))
        .unwrap();
    assert_eq!(
        std::fs::read(
            t.path()
                .join("d")
                .join(std::ffi::OsStr::from_bytes(b"new\xfe"))
        )
        .unwrap(),
        b"y"
    );
    root.remove(&child).unwrap();
    root.remove(&p("/d/new\0fe")).unwrap();
    assert_eq!(std::fs::read_dir(t.path().join("d")).unwrap().count(), 0);
}

/// A directory found missing is looked for again once it has been created.
#[test]
fn a_directory_created_after_being_found_missing_is_seen() {
    let t = tempfile::tempdir().unwrap();
    let root = Root::open(t.path()).unwrap();
    assert!(root.inspect(&p("/d/f")).unwrap().is_absent());
    root.mkdir(&p("/d"), Meta::root(0o755)).unwrap();
    root.write_file_in(&p("/d"), "f", b"x", Meta::root(0o644))
        .unwrap();
    assert!(!root.inspect(&p("/d/f")).unwrap().is_absent());
    // Made by another program (a deferred command, a script in the sandbox): seen
    // once the root is told that others ran.
    assert!(!root.exists(&p("/e/g")));
    std::fs::create_dir(t.path().join("e")).unwrap();
    std::fs::write(t.path().join("e/g"), "y").unwrap();
    root.forget_dirs();
    assert!(root.exists(&p("/e/g")));
}
