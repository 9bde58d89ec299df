//! `strata provision` attacked: by the site's catalog, which owns the new tree once it is
//! applied (a link at `/boot/grub` to a directory of this machine, a `grub-mkimage` of its
//! own), and by a second writer of the disk (a loop device, another provisioning). Each
//! run uses a small stand-in base built here (busybox, a kernel and initramfs of two
//! bytes, GRUB's `boot.img` and a `grub-mkimage` that prints a recognisable core image),
//! cached where the real base would be, so a provisioning takes well under a second.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use strata_test::TestEnv;

use crate::env;

const LAYOUT: &str = "boot = \"bios\"\n\
    [[partition]]\nsize = \"1MiB\"\ntype = \"bios_grub\"\n\
    [[partition]]\nmount = \"/\"\nfs = \"ext4\"\nsize = \"rest\"\n";

/// The base's grub-mkimage: a core image of 1 KiB of padding, then what it was given
/// (its environment, its arguments) for the test to read back from the disk; to `-o FILE`
/// when given one, else to its output.
const MKIMAGE: &str = "#!/bin/sh\n\
    prev=; for a in \"$@\"; do [ \"$prev\" = -o ] && exec >\"$a\"; prev=$a; done\n\
    i=0; while [ $i -lt 64 ]; do printf 'FAKE-CORE-BASE..'; i=$((i+1)); done\n\
    echo ARGS: \"$@\"\n/bin/busybox env\n";

/// A site whose node `n` has the module `m` (written by each test).
fn site(e: &TestEnv) {
    e.write(
        "strata.toml",
        "[site]\nname = \"t\"\n[provision]\nbase = \"debian:bookworm\"\nlayout = \"default\"\n",
    );
    e.write("hardware/layouts/default.toml", LAYOUT);
    e.write("nodes/n.toml", "modules = [\"m\"]\n");
    e.write("modules/m/module.toml", "");
    fake_base(e);
}

/// The stand-in base, cached as `strata provision` caches the one debootstrap makes.
fn fake_base(e: &TestEnv) {
    fake_base_with(e, MKIMAGE);
}

/// The stand-in base with this `grub-mkimage` (made once per test).
fn fake_base_with(e: &TestEnv, mkimage: &str) {
    let tar = e.cache().join("provision/base/debian-bookworm-bios.tar");
    if tar.exists() {
        return;
    }
    let b = e.path().join("base");
    let file = |rel: &str, content: &[u8], mode: u32| {
        let p = b.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(&p, content).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    };
    file(
        "bin/busybox",
        &std::fs::read("/bin/busybox").unwrap(),
        0o755,
    );
    std::os::unix::fs::symlink("busybox", b.join("bin/sh")).unwrap();
    file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644);
    file("etc/group", b"root:x:0:\n", 0o644);
    file("boot/vmlinuz-1", b"k\n", 0o644);
    file("boot/initrd.img-1", b"i\n", 0o644);
    let mut boot_img = vec![0u8; 512];
    boot_img[..9].copy_from_slice(b"BASE-BOOT");
    file("usr/lib/grub/i386-pc/boot.img", &boot_img, 0o644);
    file(
        "usr/lib/grub/i386-pc/normal.mod",
        b"BASE normal.mod\n",
        0o644,
    );
    file("usr/bin/grub-mkimage", mkimage.as_bytes(), 0o755);
    for d in ["tmp", "proc", "var/lib", "root"] {
        std::fs::create_dir_all(b.join(d)).unwrap();
    }
    std::fs::create_dir_all(tar.parent().unwrap()).unwrap();
    let ok = Command::new("tar")
        .arg("-C")
        .arg(&b)
        .args(["--numeric-owner", "-cf"])
        .arg(&tar)
        .arg(".")
        .status()
        .unwrap();
    assert!(ok.success());
}

/// An image file of 64 MiB whose first MiB is a pattern (to see it untouched).
fn image(e: &TestEnv, name: &str) -> PathBuf {
    let path = e.path().join(name);
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(64 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    f.write_all_at(&[0xAB; 1 << 20], 0).unwrap();
    path
}

fn read_at(disk: &Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0u8; len];
    std::fs::File::open(disk)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

fn untouched(disk: &Path) -> bool {
    read_at(disk, 0, 1 << 20).iter().all(|b| *b == 0xAB)
}

fn provision(e: &TestEnv, disk: &Path) -> Command {
    let mut cmd = e.cmd(&["provision", "--node", "n", "--disk"]);
    cmd.arg(disk).arg("--site").arg(e.site());
    cmd
}

/// Every file below `dir` with its content, links as `-> target`.
fn snapshot(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let p = entry.unwrap().path();
            let rel = p.strip_prefix(dir).unwrap().display().to_string();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            if meta.is_symlink() {
                out.push((
                    rel,
                    format!("-> {}", std::fs::read_link(&p).unwrap().display()),
                ));
            } else if meta.is_dir() {
                out.push((rel, "dir".into()));
                todo.push(p);
            } else {
                out.push((
                    rel,
                    String::from_utf8_lossy(&std::fs::read(&p).unwrap()).into(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// A directory of this machine the catalog points its links at.
fn host_dir(e: &TestEnv) -> PathBuf {
    let host = e.path().join("host");
    std::fs::create_dir_all(host.join("grub/i386-pc")).unwrap();
    std::fs::write(host.join("grub/grub.cfg"), "this machine's own menu\n").unwrap();
    std::fs::write(host.join("grub/i386-pc/normal.mod"), "this machine's own\n").unwrap();
    std::fs::write(host.join("file"), "this machine's own file\n").unwrap();
    host
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root (chroot): scripts/test runs as root (feature host-tests)"
)]
fn a_catalogs_link_at_boot_grub_never_leads_grubs_files_out_of_the_tree() {
    let e = env();
    strata_test::require_root!();
    site(&e);
    let host = host_dir(&e);
    let before = snapshot(&host);

    // /boot/grub a link to a directory of this machine: refused, naming it; nothing there
    // written, the disk untouched.
    let disk = image(&e, "disk.img");
    e.write(
        "modules/m/module.toml",
        &format!(
            "[[link]]\npath = \"/boot/grub\"\ntarget = \"{}\"\n",
            host.join("grub").display()
        ),
    );
    let out = provision(&e, &disk).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/boot/grub in the new tree is a symbolic link")
            && stderr.contains(&host.join("grub").display().to_string()),
        "{stderr}"
    );
    assert_eq!(snapshot(&host), before, "provision wrote outside the tree");
    assert!(untouched(&disk), "the disk was written");

    // /boot/grub/i386-pc a link: refused the same way.
    e.write(
        "modules/m/module.toml",
        &format!(
            "[[link]]\npath = \"/boot/grub/i386-pc\"\ntarget = \"{}\"\n",
            host.join("grub/i386-pc").display()
        ),
    );
    let out = provision(&e, &disk).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("/boot/grub/i386-pc in the new tree is a symbolic link"),
        "{stderr}"
    );
    assert_eq!(snapshot(&host), before, "provision wrote outside the tree");
    assert!(untouched(&disk), "the disk was written");

    // A link at the file grub.cfg: the menu replaces the link in the tree, nothing is
    // written through it, and the run succeeds.
    e.write(
        "modules/m/module.toml",
        &format!(
            "[[link]]\npath = \"/boot/grub/grub.cfg\"\ntarget = \"{}\"\n",
            host.join("file").display()
        ),
    );
    let out = provision(&e, &disk).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(snapshot(&host), before, "provision wrote outside the tree");
}

/// A file of the root file system (at 2 MiB on the disk), read with debugfs.
fn on_disk(disk: &Path, path: &str) -> String {
    let out = Command::new("debugfs")
        .arg("-R")
        .arg(format!("cat {path}"))
        .arg(format!("{}?offset=2097152", disk.display()))
        .output()
        .expect("debugfs (e2fsprogs)");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root (chroot): scripts/test runs as root (feature host-tests)"
)]
fn a_catalogs_grub_mkimage_and_modules_never_run_nor_land_in_the_boot_loader() {
    let e = env();
    strata_test::require_root!();
    site(&e);
    let host = host_dir(&e);
    let before = snapshot(&host);
    // The site ships its own grub-mkimage (which tries to escape the chroot through a proc
    // mount, write to this machine and make a core image of its own) and a normal.mod, and makes /boot/grub/i386-pc/normal.mod a
    // link to this machine's.
    e.write(
        "modules/m/module.toml",
        &format!(
            "[[file]]\npath = \"/usr/bin/grub-mkimage\"\nmode = \"0755\"\n\
             [[link]]\npath = \"/boot/grub/i386-pc/normal.mod\"\ntarget = \"{}\"\n",
            host.join("grub/i386-pc/normal.mod").display()
        ),
    );
    e.write(
        "modules/m/files/usr/bin/grub-mkimage",
        &format!(
            "#!/bin/sh\n/bin/busybox mount -t proc proc /proc && \
             echo pwned >/proc/1/root{}/pwned; /bin/busybox umount /proc\n\
             prev=; for a in \"$@\"; do [ \"$prev\" = -o ] && exec >\"$a\"; prev=$a; done\n\
             i=0; while [ $i -lt 64 ]; do printf 'HOSTILE-CORE....'; i=$((i+1)); done\n",
            host.display()
        ),
    );
    e.write(
        "modules/m/files/usr/lib/grub/i386-pc/normal.mod",
        "ATTACKER normal.mod\n",
    );
    let disk = image(&e, "disk.img");
    let out = provision(&e, &disk)
        .env("STRATA_TEST_SENTINEL", "strata's own environment")
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        snapshot(&host),
        before,
        "something ran or wrote outside the tree"
    );
    // The core image in the bios_grub partition (at 1 MiB) is the base's grub-mkimage's,
    // run with a minimal environment; the MBR's code is the base's boot.img.
    let core = String::from_utf8_lossy(&read_at(&disk, 1 << 20, 4096)).into_owned();
    assert!(core.starts_with("FAKE-CORE-BASE.."), "{core}");
    assert!(
        core.contains("ARGS: -O i386-pc -d /usr/lib/grub/i386-pc -c /tmp/strata-grub-early."),
        "{core}"
    );
    assert!(
        !core.contains("STRATA") && core.contains("PATH=/usr/sbin:/usr/bin:/sbin:/bin"),
        "grub-mkimage saw strata's environment:\n{core}"
    );
    assert_eq!(&read_at(&disk, 0, 9), b"BASE-BOOT");
    // /boot/grub/i386-pc holds the base's modules, whatever the catalog left in
    // /usr/lib/grub; the catalog's own file stays where it put it.
    assert_eq!(
        on_disk(&disk, "/boot/grub/i386-pc/normal.mod"),
        "BASE normal.mod\n"
    );
    assert_eq!(
        on_disk(&disk, "/usr/lib/grub/i386-pc/normal.mod"),
        "ATTACKER normal.mod\n"
    );
    assert!(on_disk(&disk, "/boot/grub/grub.cfg").contains("menuentry 'n'"));
}

/// Detaches a loop device when dropped.
struct Attached(String);

impl Drop for Attached {
    fn drop(&mut self) {
        let _ = Command::new("losetup").arg("-d").arg(&self.0).status();
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and loop devices: scripts/test provides them (feature host-tests)"
)]
fn an_image_file_attached_to_a_loop_device_is_refused_and_left_as_it_was() {
    let e = env();
    strata_test::require_root!();
    site(&e);
    let disk = image(&e, "disk.img");
    let out = Command::new("losetup")
        .args(["-f", "--show"])
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "losetup: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let dev = Attached(String::from_utf8_lossy(&out.stdout).trim().to_string());
    let out = provision(&e, &disk).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("the image file is attached to {}", dev.0))
            && stderr.contains("losetup -d"),
        "{stderr}"
    );
    assert!(untouched(&disk), "the disk was written");
    // Renamed since it was attached: the same file, refused all the same.
    let moved = e.path().join("moved.img");
    std::fs::rename(&disk, &moved).unwrap();
    let out = provision(&e, &moved).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("is attached to /dev/loop"), "{stderr}");
    assert!(untouched(&moved), "the disk was written");
    // Detached, it is provisioned.
    drop(dev);
    let out = provision(&e, &moved).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(&read_at(&moved, 512, 8), b"EFI PART");
}

#[test]
fn a_disk_another_provisioning_holds_is_refused_at_once() {
    let e = env();
    site(&e);
    let disk = image(&e, "disk.img");
    // What a provisioning of this disk holds from its start to its end.
    let held = std::fs::File::open(&disk).unwrap();
    rustix::fs::flock(&held, rustix::fs::FlockOperation::NonBlockingLockExclusive).unwrap();
    let started = std::time::Instant::now();
    let out = provision(&e, &disk).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}: the disk is in use by another provisioning",
            disk.display()
        )),
        "{stderr}"
    );
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "it waited"
    );
    assert!(untouched(&disk), "the disk was written");
    drop(held);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root (chroot): scripts/test runs as root (feature host-tests)"
)]
fn a_second_provisioning_while_the_first_runs_is_refused_and_the_first_finishes() {
    use std::io::BufRead;
    let e = env();
    strata_test::require_root!();
    // The base's grub-mkimage takes 5 s: the first run holds the disk meanwhile.
    slow_base(&e);
    site(&e);
    let disk = image(&e, "disk.img");
    let mut first = provision(&e, &disk)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(first.stderr.take().unwrap()).lines();
    // "base: …" comes once the disk is open.
    let mut seen = String::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        seen.push_str(&line);
        if line.starts_with("base: ") {
            break;
        }
    }
    assert!(seen.contains("base: "), "{seen}");
    let second = provision(&e, &disk).output().unwrap();
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert_eq!(second.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("the disk is in use by another provisioning"),
        "{stderr}"
    );
    let rest: Vec<String> = lines.map(Result::unwrap).collect();
    let first = first.wait_with_output().unwrap();
    assert!(first.status.success(), "{}", rest.join("\n"));
    assert_eq!(&read_at(&disk, 512, 8), b"EFI PART");
}

/// The stand-in base whose grub-mkimage takes 5 s.
fn slow_base(e: &TestEnv) {
    let slow = MKIMAGE.replacen("#!/bin/sh\n", "#!/bin/sh\n/bin/busybox sleep 5\n", 1);
    fake_base_with(e, &slow);
}

#[test]
fn the_work_directory_is_private_and_an_abandoned_tree_is_removed_at_the_next_start() {
    let e = env();
    site(&e);
    let disk = image(&e, "disk.img");
    // What an older strata made (open to all), and the tree of a provisioning killed two
    // minutes ago, with a rendered file.
    let work = e.cache().join("provision/work");
    let left = work.join("tree.killed");
    std::fs::create_dir_all(left.join("root/etc")).unwrap();
    std::fs::write(left.join("root/etc/secret"), "rendered\n").unwrap();
    std::fs::set_permissions(&work, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old = std::time::SystemTime::now() - std::time::Duration::from_secs(120);
    std::fs::File::open(&left)
        .unwrap()
        .set_modified(old)
        .unwrap();
    let out = provision(&e, &disk).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let mode = std::fs::metadata(&work).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o700, "{stderr}");
    assert!(
        !left.exists(),
        "the abandoned tree is still there: {stderr}"
    );
    assert!(
        stderr.contains(&format!("removing {}", left.display())),
        "{stderr}"
    );
}
