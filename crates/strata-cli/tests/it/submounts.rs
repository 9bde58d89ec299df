//! A target made of several file systems, as real machines are (issue 26): an ext2 image on
//! `/boot`, an ext4 image on `/home`, an xfs image on `/var/lib/data` and a tmpfs on
//! `/srv/data`, all mounted inside a busybox root. Scripts change each of them; the plan
//! names every change and touches nothing, the apply commits all, undeclaring restores
//! all, and an apply stopped anywhere leaves each file system all-old or all-new.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_test::{TestEnv, require_busybox_root};

use crate::env;

/// Mounted file systems, unmounted (lazily, deepest first) when dropped.
struct Mounts(Vec<PathBuf>);

impl Drop for Mounts {
    fn drop(&mut self) {
        for m in self.0.iter().rev() {
            let _ = Command::new("umount").arg("-l").arg(m).status();
        }
    }
}

fn sh(cmd: &mut Command) {
    let out = cmd.output().expect("run");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Mounts a fresh `fstype` image of `mb` MiB (or a tmpfs) at `root/at`.
fn mount(e: &TestEnv, mounts: &mut Mounts, at: &str, fstype: &str, mb: u64, options: &str) {
    let dir = e.root().join(at);
    std::fs::create_dir_all(&dir).expect("mount point");
    if fstype == "tmpfs" {
        sh(Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "strata-test"])
            .arg(&dir));
    } else {
        let img = e.path().join(format!("{}.img", at.replace('/', "_")));
        sh(Command::new("truncate")
            .arg("-s")
            .arg(format!("{mb}M"))
            .arg(&img));
        let mkfs = format!("mkfs.{fstype}");
        let quiet = if fstype == "xfs" { "-q" } else { "-qF" };
        sh(Command::new(&mkfs).arg(quiet).arg(&img));
        let opts = if options.is_empty() {
            "loop".to_string()
        } else {
            format!("loop,{options}")
        };
        // Loop devices freed by other tests' lazy unmounts may be busy for a moment.
        for attempt in 0.. {
            let out = Command::new("mount")
                .args(["-o", &opts])
                .arg(&img)
                .arg(&dir)
                .output()
                .expect("mount");
            if out.status.success() {
                break;
            }
            assert!(
                attempt < 5,
                "mount {}: {}",
                img.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
    mounts.0.push(dir);
}

fn have(tool: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The busybox root with its four file systems, each holding a few files.
fn machine(e: &TestEnv) -> Mounts {
    for tool in ["mkfs.ext2", "mkfs.ext4", "mkfs.xfs", "truncate"] {
        assert!(
            have(tool),
            "this test needs {tool} (e2fsprogs, xfsprogs: scripts/test installs them)"
        );
    }
    let mut m = Mounts(Vec::new());
    mount(e, &mut m, "boot", "ext2", 16, "");
    mount(e, &mut m, "home", "ext4", 32, "");
    std::fs::create_dir_all(e.root().join("var/lib/strata")).expect("state dir");
    mount(e, &mut m, "var/lib/data", "xfs", 300, "");
    mount(e, &mut m, "srv/data", "tmpfs", 8, "");
    e.write_root("boot/grub.cfg", "timeout=5\n", 0o644)
        .write_root("boot/old-kernel", "vmlinuz-6.1\n", 0o644)
        .write_root("home/alice/notes", "buy milk\n", 0o640)
        .write_root("home/alice/trash", "junk\n", 0o644)
        .write_root("var/lib/data/db.conf", "size=1\n", 0o644)
        .write_root("var/lib/data/stale.lock", "1\n", 0o644)
        .write_root("srv/data/cache.txt", "cached\n", 0o644)
        .write_root("srv/data/tmp.txt", "tmp\n", 0o644)
        .write_root("etc/hosts", "127.0.0.1 localhost\n", 0o644);
    std::os::unix::fs::chown(e.root().join("home/alice"), Some(1000), Some(1000)).expect("chown");
    std::os::unix::fs::chown(e.root().join("home/alice/notes"), Some(1000), Some(1000))
        .expect("chown");
    m
}

/// A script that creates, edits and deletes on every file system.
const SCRIPT: &str = "#!/bin/sh
set -e
sed -i 's/timeout=5/timeout=1/' /boot/grub.cfg
echo 'menuentry strata' > /boot/strata.cfg
rm -f /boot/old-kernel
grep -q bread /home/alice/notes || echo 'buy bread' >> /home/alice/notes
chmod 600 /home/alice/notes
mkdir -p /home/bob && echo hi > /home/bob/hello && chown -R 1001:1001 /home/bob
rm -f /home/alice/trash
sed -i 's/size=1/size=2/' /var/lib/data/db.conf
echo new > /var/lib/data/new.conf
rm -f /var/lib/data/stale.lock
echo warm > /srv/data/cache.txt
echo fresh > /srv/data/fresh.txt
rm -f /srv/data/tmp.txt
grep -q db /etc/hosts || echo '10.0.0.1 db' >> /etc/hosts
";

fn site(e: &TestEnv, with_module: bool) {
    e.write("strata.toml", "[site]\nname = \"t\"\n");
    e.write(
        "nodes/n1.toml",
        if with_module {
            "modules = [\"disks\"]\n"
        } else {
            "modules = []\n"
        },
    );
    e.write("modules/disks/module.toml", "");
    let path = e.site().join("modules/disks/scripts/10-disks.sh");
    strata_test::write(&path, SCRIPT);
    sh(Command::new("chmod").arg("755").arg(&path));
}

fn plan_paths(e: &TestEnv) -> Vec<(String, String)> {
    let run = e.run(&["plan", "--node", "n1", "--json"]);
    assert!(run.code == 0 || run.code == 2, "plan: {}", run.stderr);
    let json: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    json["changes"]
        .as_array()
        .expect("changes")
        .iter()
        .map(|c| {
            (
                c["action"].as_str().unwrap_or_default().to_string(),
                c["path"].as_str().expect("path").to_string(),
            )
        })
        .collect()
}

fn read(e: &TestEnv, rel: &str) -> String {
    std::fs::read_to_string(e.root().join(rel)).unwrap_or_else(|_| "(absent)".into())
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn scripts_on_every_mounted_file_system_are_planned_applied_and_undone() {
    let e = env();
    require_busybox_root!(e);
    let _mounts = machine(&e);
    site(&e, true);
    let before = e.tree();
    let planned: Vec<String> = plan_paths(&e).into_iter().map(|(_, p)| p).collect();
    assert_eq!(e.tree(), before, "the plan changed the target");
    for path in [
        "/boot/grub.cfg",
        "/boot/strata.cfg",
        "/boot/old-kernel",
        "/home/alice/notes",
        "/home/alice/trash",
        "/home/bob",
        "/home/bob/hello",
        "/var/lib/data/db.conf",
        "/var/lib/data/new.conf",
        "/var/lib/data/stale.lock",
        "/srv/data/cache.txt",
        "/srv/data/fresh.txt",
        "/srv/data/tmp.txt",
        "/etc/hosts",
    ] {
        assert!(
            planned.contains(&path.to_string()),
            "{path} missing from {planned:?}"
        );
    }
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(read(&e, "boot/grub.cfg"), "timeout=1\n");
    assert_eq!(read(&e, "boot/old-kernel"), "(absent)");
    assert_eq!(read(&e, "home/alice/notes"), "buy milk\nbuy bread\n");
    let notes = std::fs::metadata(e.root().join("home/alice/notes")).expect("notes");
    use std::os::unix::fs::MetadataExt;
    assert_eq!(
        (notes.mode() & 0o777, notes.uid(), notes.gid()),
        (0o600, 1000, 1000)
    );
    let bob = std::fs::metadata(e.root().join("home/bob/hello")).expect("bob");
    assert_eq!((bob.uid(), bob.gid()), (1001, 1001));
    assert_eq!(read(&e, "var/lib/data/db.conf"), "size=2\n");
    assert_eq!(read(&e, "var/lib/data/stale.lock"), "(absent)");
    assert_eq!(read(&e, "srv/data/fresh.txt"), "fresh\n");
    assert_eq!(read(&e, "srv/data/tmp.txt"), "(absent)");
    // Each file stayed on its own file system.
    for (file, mount) in [
        ("boot/strata.cfg", "boot"),
        ("home/bob/hello", "home"),
        ("var/lib/data/new.conf", "var/lib/data"),
        ("srv/data/fresh.txt", "srv/data"),
    ] {
        let dev = |p: &Path| std::fs::metadata(p).expect("stat").dev();
        assert_eq!(
            dev(&e.root().join(file)),
            dev(&e.root().join(mount)),
            "{file}"
        );
    }
    e.run(&["plan", "--node", "n1"]).code(0);
    // The module goes away: everything its script did on every file system is undone.
    site(&e, false);
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(
        e.tree(),
        before,
        "undeclaring did not restore every file system"
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn a_read_only_mount_stays_read_only_in_the_sandbox() {
    let e = env();
    require_busybox_root!(e);
    let mut mounts = machine(&e);
    std::fs::create_dir_all(e.root().join("opt")).expect("opt");
    mount(&e, &mut mounts, "opt", "ext2", 8, "ro");
    site(&e, true);
    let path = e.site().join("modules/disks/scripts/20-opt.sh");
    strata_test::write(
        &path,
        "#!/bin/sh\n{ echo x > /opt/new; } 2>/etc/opt-error || true\n",
    );
    sh(Command::new("chmod").arg("755").arg(&path));
    let before = e.tree();
    e.run(&["apply", "--node", "n1"]).code(0);
    assert!(
        read(&e, "etc/opt-error").contains("Read-only file system"),
        "{}",
        read(&e, "etc/opt-error")
    );
    assert_eq!(read(&e, "opt/new"), "(absent)");
    assert_ne!(e.tree(), before);
}

/// The commit stopped after each of its steps (as `kill -9` would) over four file
/// systems: once the next command ran, every file system is all old or all new.
#[cfg(feature = "failpoints")]
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn an_apply_stopped_anywhere_leaves_each_file_system_all_old_or_all_new() {
    let points = [
        "commit-after-journal",
        "commit-mid-stage",
        "commit-after-store",
        "commit-before-point",
        "commit-after-point",
        "commit-mid-apply",
        "commit-after-apply",
        "commit-after-publish",
    ];
    let (old, new) = {
        let e = env();
        require_busybox_root!(e);
        let _m = machine(&e);
        let old = e.tree();
        site(&e, true);
        e.run(&["apply", "--node", "n1"]).code(0);
        (old, e.tree())
    };
    let part = |tree: &str, fs: &str| -> String {
        tree.lines()
            .filter(|l| l.starts_with(fs))
            .collect::<Vec<_>>()
            .join("\n")
    };
    for point in points {
        let e = env();
        assert!(e.busybox_root(), "busybox");
        let _m = machine(&e);
        site(&e, true);
        let out = e
            .cmd(&["apply", "--node", "n1"])
            .env("FAILPOINTS", format!("{point}=return"))
            .output()
            .expect("apply");
        assert!(!out.status.success(), "{point}: the apply was not stopped");
        e.run(&["generations"]).code(0);
        let tree = e.tree();
        for fs in ["boot", "home", "var/lib/data", "srv/data", "etc"] {
            let (have, o, n) = (part(&tree, fs), part(&old, fs), part(&new, fs));
            assert!(
                have == o || have == n,
                "{point}: /{fs} is neither all old nor all new:\n{have}"
            );
        }
        assert!(
            tree == old || tree == new,
            "{point}: the file systems disagree:\n{tree}\nold:\n{old}\nnew:\n{new}"
        );
    }
}

/// `/boot/efi` on vfat: a declared file and a script's file are planned as vfat stores
/// them (its mount options' owner and mode), so the second plan is empty.
#[test]
#[ignore = "this kernel has no vfat; run with --ignored where mkfs.vfat and vfat exist"]
fn a_vfat_boot_efi_is_planned_as_it_stores_files() {
    let e = env();
    require_busybox_root!(e);
    let mut mounts = Mounts(Vec::new());
    std::fs::create_dir_all(e.root().join("boot/efi")).expect("efi");
    let img = e.path().join("efi.img");
    sh(Command::new("truncate").arg("-s").arg("64M").arg(&img));
    sh(Command::new("mkfs.vfat").arg(&img));
    sh(Command::new("mount")
        .args(["-o", "loop,fmask=0077,dmask=0077"])
        .arg(&img)
        .arg(e.root().join("boot/efi")));
    mounts.0.push(e.root().join("boot/efi"));
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", "modules = [\"efi\"]\n")
        .write(
            "modules/efi/module.toml",
            "[[file]]\npath = \"/boot/efi/startup.nsh\"\nmode = \"0644\"\n",
        )
        .write(
            "modules/efi/files/boot/efi/startup.nsh",
            "fs0:\\EFI\\boot.efi\n",
        );
    let path = e.site().join("modules/efi/scripts/10-grub.sh");
    strata_test::write(
        &path,
        "#!/bin/sh\nmkdir -p /boot/efi/EFI/debian\necho efi > /boot/efi/EFI/debian/grubx64.efi\n",
    );
    sh(Command::new("chmod").arg("755").arg(&path));
    e.run(&["apply", "--node", "n1"]).code(0);
    e.run(&["plan", "--node", "n1"]).code(0);
}
