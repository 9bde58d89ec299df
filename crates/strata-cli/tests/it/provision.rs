//! `strata provision`: a disk image made into a node boots by itself in QEMU (TCG) and runs
//! the site's unit; bad layouts fail before the disk is touched; a provisioning killed
//! halfway leaves a disk that neither boots nor shows partitions, and the next run takes
//! it over.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_test::TestEnv;

use crate::env;

const LAYOUT: &str = "boot = \"bios\"\n\
    [[partition]]\nsize = \"1MiB\"\ntype = \"bios_grub\"\n\
    [[partition]]\nmount = \"/\"\nfs = \"ext4\"\nsize = \"rest\"\n";

/// What the machine boots from: GRUB's core, a separate /boot, the root, swap.
const FULL_LAYOUT: &str = "boot = \"bios\"\n\
    [[partition]]\nsize = \"1MiB\"\ntype = \"bios_grub\"\n\
    [[partition]]\nmount = \"/boot\"\nfs = \"ext2\"\nsize = \"256MiB\"\n\
    [[partition]]\nmount = \"/\"\nfs = \"ext4\"\nsize = \"rest\"\n\
    [[partition]]\ntype = \"swap\"\nsize = \"64MiB\"\n";

/// Prints its marker on the serial console once the machine is up (with what /boot is
/// and which swap is on, both found through fstab by UUID), then powers it off.
const UNIT: &str = "[Unit]\nDescription=strata provision test marker\n\
    [Service]\nType=oneshot\n\
    ExecStart=/bin/sh /usr/local/lib/strata-marker.sh\n\
    ExecStartPost=/bin/systemctl poweroff --no-block\n\
    [Install]\nWantedBy=multi-user.target\n";

const MARKER: &str = "boot=$(awk '$2 == \"/boot\" { print $3 }' /proc/mounts)\n\
    swap=$(awk 'NR > 1 { print $1 }' /proc/swaps)\n\
    echo \"STRATA-BOOTED-$(cat /etc/hostname) boot=$boot swap=$swap\" >/dev/ttyS0\n";

/// A site whose node `db1` has a unit that says it booted.
fn site(e: &TestEnv, layout: &str) {
    e.write(
        "strata.toml",
        "[site]\nname = \"t\"\n[provision]\nbase = \"debian:bookworm\"\n\
         layout = \"default\"\nconsole = \"ttyS0,115200\"\n",
    );
    e.write("hardware/layouts/default.toml", layout);
    e.write("nodes/db1.toml", "modules = [\"marker\"]\n");
    e.write(
        "modules/marker/module.toml",
        "[[service]]\nname = \"strata-marker\"\n",
    );
    e.write(
        "modules/marker/files/etc/systemd/system/strata-marker.service",
        UNIT,
    );
    e.write(
        "modules/marker/files/usr/local/lib/strata-marker.sh",
        MARKER,
    );
}

/// An image file of `size` bytes whose first MiB is a pattern (to see it untouched).
fn image(e: &TestEnv, size: u64) -> PathBuf {
    let path = e.path().join("disk.img");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(size).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0xAB; 1 << 20], 0).unwrap();
    path
}

fn head(disk: &Path) -> Vec<u8> {
    let mut buf = vec![0u8; 1 << 20];
    std::fs::File::open(disk)
        .unwrap()
        .read_exact(&mut buf)
        .unwrap();
    buf
}

fn provision(e: &TestEnv, disk: &Path) -> Command {
    let mut cmd = e.cmd(&["provision", "--node", "db1", "--disk"]);
    cmd.arg(disk).arg("--site").arg(e.site());
    cmd
}

#[test]
fn a_bad_layout_or_a_disk_too_small_fails_before_the_disk_is_written() {
    let e = env();
    let disk = image(&e, 256 << 20);
    for (layout, says) in [
        (
            LAYOUT.replace("\"rest\"", "\"lots\""),
            "hardware/layouts/default.toml: partition[2].size: \"lots\" is not a size",
        ),
        (
            LAYOUT.replace("ext4", "btrfs"),
            "hardware/layouts/default.toml: partition[2].fs: \"btrfs\": unknown file system",
        ),
        (
            LAYOUT.replace("\"rest\"", "\"4GiB\""),
            "the layout needs at least 4.0 GiB but the disk has 256.0 MiB",
        ),
        (
            LAYOUT.replace("type = \"bios_grub\"\n", ""),
            "a bios layout needs exactly one partition of type \"bios_grub\"",
        ),
    ] {
        site(&e, &layout);
        let out = provision(&e, &disk).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{stderr}");
        assert!(stderr.contains(says), "wanted {says:?} in:\n{stderr}");
        assert!(
            head(&disk).iter().all(|b| *b == 0xAB),
            "the disk was written"
        );
        // `strata check` finds the same mistakes in the layout (the disk's size is not
        // the layout's: that one only provisioning can see).
        if !says.contains("the disk has") {
            let out = e.cmd(&["check"]).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{stderr}");
            assert!(
                stderr.contains(says),
                "check: wanted {says:?} in:\n{stderr}"
            );
        }
    }
    site(&e, LAYOUT);
    let out = e.cmd(&["check"]).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok      provisioning settings and layout"),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A missing disk, and an empty image file, are named with what to do.
    site(&e, LAYOUT);
    let out = provision(&e, &e.path().join("none.img")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("none.img: no such disk") && stderr.contains("truncate -s"),
        "{stderr}"
    );
    std::fs::File::create(e.path().join("empty.img")).unwrap();
    let out = provision(&e, &e.path().join("empty.img")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("empty.img: the disk is empty"), "{stderr}");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and loop devices: scripts/test provides them (feature host-tests)"
)]
fn a_disk_in_use_or_with_4k_sectors_is_refused_and_left_as_it_was() {
    let e = env();
    assert!(strata_test::is_root(), "needs root");
    site(&e, LAYOUT);
    let disk = e.path().join("used.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let mkfs = Command::new("mkfs.ext4")
        .arg("-q")
        .arg(&disk)
        .status()
        .unwrap();
    assert!(mkfs.success());
    let mnt = e.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    // The file system on a loop device, mounted while strata is asked to provision it.
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "dev=$(losetup -f --show \"$1\") || exit 99; mount \"$dev\" \"$2\" || \
             { losetup -d \"$dev\"; exit 98; }; shift 2; \"$@\" --disk \"$dev\"; code=$?; \
             umount \"$MNT\"; losetup -d \"$dev\"; exit $code",
        )
        .arg("sh")
        .arg(&disk)
        .arg(&mnt)
        .arg(env!("CARGO_BIN_EXE_strata"))
        .args(["provision", "--node", "db1", "--site"])
        .arg(e.site())
        .env("MNT", &mnt)
        .env("NO_COLOR", "1")
        .env("STRATA_CACHE_DIR", e.cache())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the disk is in use") && stderr.contains("/dev/loop"),
        "{stderr}"
    );
    // Mounting wrote the superblock; strata wrote nothing: no table, no boot code, and
    // the file system checks clean.
    let h = head(&disk);
    assert!(&h[512..520] != b"EFI PART" && h[510..512] != [0x55, 0xAA]);
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        fsck.status.success(),
        "{}",
        String::from_utf8_lossy(&fsck.stdout)
    );

    // A disk whose logical sectors are 4 KiB is refused as well, and left as it was.
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "dev=$(losetup -f --show -b 4096 \"$1\") || exit 99; shift; \
             \"$@\" --disk \"$dev\"; code=$?; losetup -d \"$dev\"; exit $code",
        )
        .arg("sh")
        .arg(&disk)
        .arg(env!("CARGO_BIN_EXE_strata"))
        .args(["provision", "--node", "db1", "--site"])
        .arg(e.site())
        .env("NO_COLOR", "1")
        .env("STRATA_CACHE_DIR", e.cache())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("its logical sectors are 4096 bytes"),
        "{stderr}"
    );
    let fsck = Command::new("e2fsck")
        .arg("-fn")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(fsck.status.success());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root, loop devices and debootstrap's mirror once: scripts/test provides \
              them (feature host-tests)"
)]
fn a_block_device_is_written_through_its_device_each_file_system_where_it_says() {
    let e = env();
    assert!(strata_test::is_root(), "needs root");
    shared_cache(&e);
    site(&e, FULL_LAYOUT);
    let disk = image(&e, 2 << 30);
    // The image as a block device (a loop device), provisioned through it.
    let out = Command::new("sh")
        .arg("-c")
        .arg(
            "dev=$(losetup -f --show \"$1\") || exit 99; shift; \"$@\" --disk \"$dev\"; \
             code=$?; losetup -d \"$dev\"; exit $code",
        )
        .arg("sh")
        .arg(&disk)
        .arg(env!("CARGO_BIN_EXE_strata"))
        .args(["provision", "--node", "db1", "--site"])
        .arg(e.site())
        .env("NO_COLOR", "1")
        .env("STRATA_CACHE_DIR", e.cache())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("provisioned /dev/loop"), "{stdout}");
    // "  /boot        ext2  UUID=… at OFFSET (SIZE)": each file system is where strata
    // says, with the type and UUID it says (blkid probing the disk at that offset).
    let mut seen = 0;
    for line in stdout.lines().filter(|l| l.contains(" UUID=")) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let (fs, uuid, offset) = (f[1], &f[2]["UUID=".len()..], f[4]);
        let probe = Command::new("blkid")
            .args([
                "-p", "-O", offset, "-o", "value", "-s", "TYPE", "-s", "UUID",
            ])
            .arg(&disk)
            .output()
            .unwrap();
        let got = String::from_utf8_lossy(&probe.stdout);
        let got: Vec<&str> = got.lines().collect();
        assert!(
            got.contains(&fs) && got.contains(&uuid),
            "{line}: blkid found {got:?}"
        );
        seen += 1;
    }
    assert_eq!(seen, 3, "{stdout}");
}

/// This test's cache, sharing the base OS and the packages between tests and runs (the
/// base is made once with debootstrap: about 3.5 minutes and a 650 MB tarball).
fn shared_cache(e: &TestEnv) {
    let shared = Path::new("/var/cache/strata-test/cache");
    std::fs::create_dir_all(e.cache()).unwrap();
    for dir in ["provision", "packages"] {
        std::fs::create_dir_all(shared.join(dir)).unwrap();
        std::os::unix::fs::symlink(shared.join(dir), e.cache().join(dir)).unwrap();
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root, debootstrap's mirror once and the catalog's packages: scripts/test \
              provides them (feature host-tests)"
)]
fn a_catalog_that_fails_leaves_the_disk_untouched() {
    let e = env();
    assert!(strata_test::is_root(), "needs root");
    shared_cache(&e);
    site(&e, LAYOUT);
    e.write(
        "modules/marker/module.toml",
        "[[package]]\nname = \"strata-no-such-package\"\n",
    );
    let disk = image(&e, 2 << 30);
    let out = provision(&e, &disk).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("applying the node's catalog onto the new tree")
            && stderr.contains("strata-no-such-package"),
        "{stderr}"
    );
    assert!(
        head(&disk).iter().all(|b| *b == 0xAB),
        "the disk was written"
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root, QEMU (qemu-system-x86), loop devices and debootstrap's mirror once: \
              scripts/test provides them (feature host-tests)"
)]
fn a_provisioned_image_boots_by_itself_runs_the_sites_unit_and_plans_nothing() {
    let e = env();
    assert!(strata_test::is_root(), "needs root");
    shared_cache(&e);
    site(&e, FULL_LAYOUT);
    let disk = image(&e, 3 << 30);

    // Killed while it makes the file systems: no partition table, no boot code.
    let work = e.cache().join("provision/work");
    let trees = || -> std::collections::BTreeSet<String> {
        std::fs::read_dir(&work)
            .map(|d| {
                d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default()
    };
    let before = trees();
    let mut child = provision(&e, &disk)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .process_group(0)
        .spawn()
        .unwrap();
    let pgid = child.id();
    let mut seen = String::new();
    for line in BufReader::new(child.stderr.take().unwrap()).lines() {
        let line = line.unwrap();
        seen.push_str(&line);
        seen.push('\n');
        if line.starts_with("making ") {
            rustix::process::kill_process_group(
                rustix::process::Pid::from_raw(pgid as i32).unwrap(),
                rustix::process::Signal::KILL,
            )
            .unwrap();
            break;
        }
    }
    child.wait().unwrap();
    assert!(
        seen.contains("making ext2 for /boot"),
        "never reached the disk:\n{seen}"
    );
    let h = head(&disk);
    assert!(
        h[..34 * 512].iter().all(|b| *b == 0),
        "a provisioning killed halfway left a partition table or boot code"
    );
    let left: Vec<String> = trees().difference(&before).cloned().collect();
    assert_eq!(left.len(), 1, "the killed run's tree: {left:?}");
    // Its tree is taken for abandoned once it is a minute old.
    let old = std::time::SystemTime::now() - Duration::from_secs(120);
    std::fs::File::open(work.join(&left[0]))
        .unwrap()
        .set_modified(old)
        .unwrap();

    // The next provisioning takes it over from scratch.
    let out = provision(&e, &disk).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("as db1: 3 changes from the catalog, generation 1"),
        "{stdout}"
    );
    // "  /            ext4  UUID=… at OFFSET (SIZE)": where the root file system is.
    let root_offset: u64 = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("/ "))
        .and_then(|l| l.split(" at ").nth(1))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no root file system in:\n{stdout}"));
    assert!(
        !work.join(&left[0]).exists(),
        "the killed run's tree is still there"
    );
    let h = head(&disk);
    assert_eq!(&h[512..520], b"EFI PART");
    assert_eq!(&h[510..512], &[0x55, 0xAA]);

    // It boots by itself (no -kernel): SeaBIOS, GRUB, the kernel, systemd, the unit.
    let serial = e.path().join("serial.log");
    let mut qemu = Command::new("qemu-system-x86_64")
        .args([
            "-machine",
            "pc,accel=tcg",
            "-m",
            "1024",
            "-nographic",
            "-no-reboot",
        ])
        .args(["-monitor", "none", "-nic", "none", "-drive"])
        .arg(format!("file={},format=raw,if=ide", disk.display()))
        .arg("-serial")
        .arg(format!("file:{}", serial.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("qemu-system-x86_64 (apt-get install qemu-system-x86)");
    let started = Instant::now();
    let booted = loop {
        let log = std::fs::read(&serial).unwrap_or_default();
        if String::from_utf8_lossy(&log).contains("STRATA-BOOTED-db1 boot=ext2 swap=/dev/sda4") {
            break true;
        }
        if qemu.try_wait().unwrap().is_some() || started.elapsed() > Duration::from_secs(600) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    // The unit powers the machine off; give it a bounded while, then stop it.
    let deadline = Instant::now() + Duration::from_secs(120);
    while qemu.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(500));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    let log = String::from_utf8_lossy(&std::fs::read(&serial).unwrap_or_default()).into_owned();
    let tail: String = log.lines().rev().take(40).collect::<Vec<_>>().join("\n");
    assert!(
        booted,
        "the site's unit never said it booted; the console ended (reversed):\n{tail}"
    );
    assert!(log.contains("GRUB"), "booted without GRUB?");

    // strata on the image's root, after the boot: generation 1 is there, nothing to do.
    let mnt = e.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(
            "mount -o loop,offset=$OFFSET \"$1\" \"$2\" && shift 2 && \
             \"$@\"; code=$?; umount \"$MNT\"; exit $code",
        )
        .arg("sh")
        .arg(&disk)
        .arg(&mnt)
        .arg(env!("CARGO_BIN_EXE_strata"))
        .args(["plan", "--node", "db1", "--site"])
        .arg(e.site())
        .arg("--root")
        .arg(&mnt)
        .env("MNT", &mnt)
        .env("OFFSET", root_offset.to_string())
        .env("NO_COLOR", "1")
        .env("STRATA_CACHE_DIR", e.cache())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "plan on the booted image\n{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("0 to create, 0 to modify, 0 to remove"),
        "{stdout}"
    );
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root, loop devices and debootstrap's mirror once: scripts/test provides \
              them (feature host-tests)"
)]
fn a_machine_is_classified_from_its_facts_and_its_pool_entry_lands_on_its_disk() {
    let e = env();
    assert!(strata_test::is_root(), "needs root");
    shared_cache(&e);
    site(&e, LAYOUT);
    // No node file: the profile gives the role, the pool an address.
    std::fs::remove_file(e.site().join("nodes/db1.toml")).unwrap();
    e.write(
        "hardware/profiles.toml",
        "[[profile]]\nname = \"any\"\nrole = \"db\"\npools = [\"ips\"]\n\
         spec = [[\"network\", \"$eth\", \"serial\", \"$mac\"]]\n",
    );
    e.write(
        "hardware/pools/ips.toml",
        "generate = [{ ip = \"10.1.2.7-8\" }]\n",
    );
    e.write("roles/db.toml", "modules = [\"addr\"]\n");
    e.write(
        "modules/addr/templates/etc/strata-address.j2",
        "{{ hw.ips.ip }} on {{ facts.system.product.vendor }}\n",
    );
    let fixture =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../strata-facts/tests/fixtures/baremetal");
    let facts = e.path().join("facts.json");
    let out = e
        .cmd(&["facts", "--tuples", "--root"])
        .arg(&fixture)
        .output()
        .unwrap();
    assert!(out.status.success());
    std::fs::write(&facts, &out.stdout).unwrap();
    let disk = image(&e, 2 << 30);
    let out = provision(&e, &disk)
        .arg("--facts")
        .arg(&facts)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // The file on the disk's root file system (at 2 MiB), read through a loop mount.
    let mnt = e.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let cat = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -o loop,ro,offset=2097152 \"$1\" \"$2\" && cat \"$2/etc/strata-address\"")
        .arg("sh")
        .arg(&disk)
        .arg(&mnt)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&cat.stdout),
        "10.1.2.7 on HPE\n",
        "{}",
        String::from_utf8_lossy(&cat.stderr)
    );
    // The allocation is the site's, as for apply: the next machine gets the next entry.
    let pools = e.run(&["pools", "list", "--site", e.site().to_str().unwrap()]);
    assert!(pools.stdout.contains("10.1.2.7"), "{}", pools.stdout);
}
