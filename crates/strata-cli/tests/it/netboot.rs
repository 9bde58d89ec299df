//! Netboot (docs/provision.md, "Netboot"): `strata netboot build` makes the kernel and
//! initrd, `strata serve --netboot` serves them with an iPXE script, and a QEMU machine
//! with an empty disk boots from the network (iPXE's ROM, QEMU's user-mode network:
//! the host's loopback is 10.0.2.2 to the guest, nothing leaves the machine), enrolls
//! with its facts and is classified; a machine the pool has no entry left for stops
//! with the reason on its console. Every disk stays untouched: the first machine's site
//! has nothing published for it to install (netprov.rs provisions one).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::serve::{Served, output, served_with};

const BASE: &str = "/var/cache/strata-test/cache/provision/base/debian-bookworm-bios.tar";

/// The base tarball the kernel comes from, made once by `strata provision` (which the
/// provision tests share) when no test made it yet.
pub(crate) fn base(s: &Served) -> PathBuf {
    let base = PathBuf::from(BASE);
    if !base.exists() {
        let e = &s.env;
        let cache = e.path().join("pcache");
        std::fs::create_dir_all(&cache).unwrap();
        let shared = Path::new("/var/cache/strata-test/cache/provision");
        std::fs::create_dir_all(shared).unwrap();
        std::os::unix::fs::symlink(shared, cache.join("provision")).unwrap();
        let site = e.path().join("psite");
        std::fs::create_dir_all(site.join("nodes")).unwrap();
        std::fs::write(
            site.join("strata.toml"),
            "[site]\nname = \"p\"\n[provision]\n",
        )
        .unwrap();
        std::fs::write(site.join("nodes/p1.toml"), "").unwrap();
        std::fs::create_dir_all(site.join("hardware/layouts")).unwrap();
        std::fs::write(
            site.join("hardware/layouts/default.toml"),
            "boot = \"bios\"\n[[partition]]\nsize = \"1MiB\"\ntype = \"bios_grub\"\n\
             [[partition]]\nmount = \"/\"\nfs = \"ext4\"\nsize = \"rest\"\n",
        )
        .unwrap();
        let disk = e.path().join("p.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(2 << 30)
            .unwrap();
        let (code, out, err) = output(
            e.cmd(&["provision", "--node", "p1", "--site"])
                .arg(&site)
                .arg("--disk")
                .arg(&disk)
                .env("STRATA_CACHE_DIR", &cache),
        );
        assert_eq!(code, 0, "making the base: {out}{err}");
    }
    base
}

/// The status and body of GET `path` from the server at `authority`, asked for as
/// `host`.
pub(crate) fn get_status(authority: &str, path: &str, host: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut c = std::net::TcpStream::connect(authority).unwrap();
    write!(
        c,
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    c.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.split_whitespace().nth(1).unwrap().parse().unwrap();
    (status, body.to_string())
}

/// The body of a GET that must succeed.
pub(crate) fn get(authority: &str, path: &str, host: &str) -> String {
    let (status, body) = get_status(authority, path, host);
    assert_eq!(status, 200, "{body}");
    body
}

#[test]
fn boot_routes_refuse_a_forged_host_a_bad_token_file_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let token_file = dir.path().join("token");
    let boot = dir.path().join("boot");
    let s = served_with(
        |_| {},
        &[
            "--netboot",
            boot.to_str().unwrap(),
            "--netboot-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let a = s.authority();
    // The first script asks again with the MAC of the interface iPXE booted from.
    assert_eq!(
        get(&a, "/boot/ipxe", "10.0.2.2:80"),
        "#!ipxe\nchain http://10.0.2.2:80/boot/ipxe/${netX/mac:hexraw}\n"
    );
    let (status, body) = get_status(&a, "/boot/ipxe/52:54:00:12:34:01", "10.0.2.2:80");
    assert_eq!(status, 400, "{body}");
    const MAC: &str = "/boot/ipxe/525400123401";
    // No token file yet: 503, naming it.
    let (status, body) = get_status(&a, MAC, "10.0.2.2:80");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("netboot token file"), "{body}");
    // A file that would add an iPXE command or a kernel argument.
    std::fs::write(&token_file, "strata1.ab cd\nshell\n").unwrap();
    let (status, body) = get_status(&a, MAC, "10.0.2.2:80");
    assert_eq!(status, 503, "{body}");
    assert!(!body.contains("shell"), "{body}");
    std::fs::copy(s.token(&[]), &token_file).unwrap();
    assert!(get(&a, MAC, "10.0.2.2:80").starts_with("#!ipxe\nkernel "));
    // A Host that would inject into the script.
    for host in ["x/boot", "x;shell", "a%0a"] {
        for path in ["/boot/ipxe", MAC] {
            let (status, body) = get_status(&a, path, host);
            assert_eq!(status, 400, "{host}: {body}");
        }
    }
    // Nothing built yet: 404 saying what to run.
    for file in ["/boot/initrd.img", "/boot/base.tar"] {
        let (status, body) = get_status(&a, file, "10.0.2.2:80");
        assert_eq!(status, 404, "{body}");
        assert!(body.contains("netboot build"), "{body}");
    }
    // A token for no node at all, or for more than 10 000, is refused.
    for n in ["0", "10001", "many"] {
        let (code, _, err) = s.site_cmd(&["nodes", "token", "--uses", n]);
        assert_eq!(code, 1, "{n}: {err}");
        assert!(err.contains("--uses"), "{err}");
    }
    // A server without --netboot serves nothing under /boot.
    let plain = served_with(|_| {}, &[]);
    let (status, body) = get_status(&plain.authority(), "/boot/ipxe", "10.0.2.2:80");
    assert_eq!(status, 404, "{body}");
    assert!(body.contains("--netboot"), "{body}");
}

/// An empty disk image.
pub(crate) fn disk(dir: &Path, name: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(1 << 30).unwrap();
    p
}

/// Whether nothing was written to `disk` (a sparse file of zeros).
fn untouched(disk: &Path) -> bool {
    std::fs::read(disk).unwrap().iter().all(|b| *b == 0)
}

/// Netboots a machine (iPXE, chained from QEMU's TFTP to the server) until its
/// console shows `strata-netboot: stopped` or it powers off (at most 10 minutes), and
/// returns its console.
fn netboot(dir: &Path, port: &str, disk: &Path, mac: &str, dmi: &str) -> String {
    let tftp = dir.join("tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    std::fs::write(
        tftp.join("boot.ipxe"),
        format!("#!ipxe\nchain http://10.0.2.2:{port}/boot/ipxe\n"),
    )
    .unwrap();
    let console = dir.join(format!("console-{mac}.log").replace(':', ""));
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc,accel=tcg", "-m", "1024", "-nographic"])
        .args(["-no-reboot", "-monitor", "none", "-boot", "n", "-smbios"])
        .arg(format!("type=1,{dmi}"))
        .arg("-netdev")
        .arg(format!(
            "user,id=n0,tftp={},bootfile=boot.ipxe",
            tftp.display()
        ))
        .arg("-device")
        .arg(format!(
            "e1000,netdev=n0,mac={mac},romfile=/usr/lib/ipxe/qemu/efi-e1000.rom"
        ))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=ide", disk.display()))
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("qemu-system-x86_64 (apt-get install qemu-system-x86 ipxe-qemu)");
    let started = Instant::now();
    let read =
        || String::from_utf8_lossy(&std::fs::read(&console).unwrap_or_default()).into_owned();
    while qemu.try_wait().unwrap().is_none()
        && !read().contains("strata-netboot: stopped")
        && started.elapsed() < Duration::from_secs(600)
    {
        std::thread::sleep(Duration::from_millis(500));
    }
    // It powers itself off; give it a bounded while, then stop it.
    let deadline = Instant::now() + Duration::from_secs(20);
    while qemu.try_wait().unwrap().is_none() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(200));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    eprintln!("netboot of {mac}: {:.0?}", started.elapsed());
    read()
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs QEMU with iPXE's ROMs (qemu-system-x86, ipxe-qemu) and the provision \
              base (debootstrap's mirror once): scripts/test provides them (feature host-tests)"
)]
fn bare_machines_netboot_enroll_with_their_facts_and_are_classified_or_stop_saying_why() {
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    let token_file = dir.path().join("token");
    let s = served_with(
        |env| {
            env.write(
                "hardware/profiles.toml",
                "[[profile]]\nname = \"vm\"\nrole = \"r@1.0.0\"\npools = [\"ips\"]\n\
                 spec = [[\"system\", \"product\", \"name\", \"strata-vm\"]]\n",
            );
            env.write(
                "hardware/pools/ips.toml",
                "generate = [{ ip = \"10.0.0.7-7\" }]\n",
            );
            env.write("roles/r/1.0.0.toml", "modules = [\"m\"]\n");
        },
        &[
            "--netboot",
            boot.to_str().unwrap(),
            "--netboot-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let base = base(&s);
    let (code, out, err) = output(
        s.env
            .cmd(&["netboot", "build", "--out"])
            .arg(&boot)
            .arg("--base")
            .arg(&base),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("initrd.img"), "{out}");
    let port = s.url.rsplit(':').next().unwrap().to_string();

    // The script carries the kernel, the server the guest reaches and the token.
    // One provisioning token for every machine: two enrollments, within a day.
    std::fs::copy(s.token(&["--uses", "2", "--ttl", "1d"]), &token_file).unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap();
    let script = get(
        &s.authority(),
        "/boot/ipxe/525400123401",
        &format!("10.0.2.2:{port}"),
    );
    assert!(
        script.starts_with("#!ipxe\n")
            && script.contains(&format!("kernel http://10.0.2.2:{port}/boot/vmlinuz"))
            && script.contains(&format!("strata.token={}", token.trim())),
        "{script}"
    );

    // The first machine: enrolled with its facts, classified, its pool entry taken.
    let d1 = disk(dir.path(), "d1.img");
    let console = netboot(
        dir.path(),
        &port,
        &d1,
        "52:54:00:12:34:01",
        "product=strata-vm,serial=vm-1",
    );
    // The token is on the kernel's command line, never on its console.
    let secret = token.trim().rsplit('.').next().unwrap();
    assert!(!console.contains(secret), "the token is on the console");
    let tail: String = console
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        console.contains("strata-netboot: enrolled as m-525400123401: Enrolled")
            && console.contains("accepted"),
        "console (reversed):\n{tail}"
    );
    // Nothing is published for it: it stops before its disk is touched.
    assert!(
        console.contains("strata-netboot: stopped: provisioning failed")
            && console.contains("nothing is published"),
        "console (reversed):\n{tail}"
    );
    let (code, out, err) = s.site_cmd(&["nodes", "--json"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        out.contains("\"name\": \"m-525400123401\"") && out.contains("\"state\": \"accepted\""),
        "{out}"
    );
    let (_, pools, _) = s.site_cmd(&["pools", "list"]);
    // Its DMI serial (QEMU's -smbios) names the machine; profile vm took it.
    let line = pools
        .lines()
        .find(|l| l.contains("10.0.0.7"))
        .unwrap_or_default();
    assert!(
        line.starts_with("serial=vm-1 ") && line.split_whitespace().nth(1) == Some("vm"),
        "{pools}"
    );
    assert!(untouched(&d1), "the first disk was written");

    // The second: the pool has no entry left, so it stops and says why; nothing changed
    // and the token's use is not taken.
    let d2 = disk(dir.path(), "d2.img");
    let console = netboot(
        dir.path(),
        &port,
        &d2,
        "52:54:00:12:34:02",
        "product=strata-vm,serial=vm-2",
    );
    let tail: String = console
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        console.contains("strata-netboot: stopped: enrollment failed")
            && console.contains("exhausted"),
        "console (reversed):\n{tail}"
    );
    assert!(untouched(&d2), "the second disk was written");
    let (_, out, _) = s.site_cmd(&["nodes", "--json"]);
    assert!(!out.contains("m-525400123402"), "{out}");

    // The third matches no profile: it stops and says so; its disk is untouched.
    let d3 = disk(dir.path(), "d3.img");
    let console = netboot(
        dir.path(),
        &port,
        &d3,
        "52:54:00:12:34:03",
        "product=other,serial=o-3",
    );
    let tail: String = console
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        console.contains("strata-netboot: stopped: enrollment failed")
            && console.contains("no hardware profile of the site matches this machine"),
        "console (reversed):\n{tail}"
    );
    assert!(untouched(&d3), "the third disk was written");
    // What the machines asked for and how long each answer took (for docs/provision.md).
    let log = std::fs::read_to_string(s.env.path().join("serve.log")).unwrap_or_default();
    for l in log
        .lines()
        .filter(|l| l.contains("/boot/") || l.contains("/v1/"))
    {
        eprintln!("serve: {l}");
    }
    // The token's two uses are taken: the next machine is refused.
    let (code, _, err) = s.enroll(&s.node_root("m4"), "m4", Some(&token_file));
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("already used"), "{err}");

    // The first machine never reported (as one whose provisioning stopped halfway): its
    // next netboot gets the provisioning kernel again, not "boot your disk", with a new
    // key. A single-use token cannot let that key take the name over: the initrd says so
    // and how to let it enroll again.
    std::fs::copy(s.token(&["--uses", "1"]), &token_file).unwrap();
    std::fs::remove_file(dir.path().join("console-525400123401.log")).unwrap();
    let console = netboot(
        dir.path(),
        &port,
        &d1,
        "52:54:00:12:34:01",
        "product=strata-vm,serial=vm-1",
    );
    let tail: String = console
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        console.contains("bound to another key")
            && console.contains("not a provisioning token")
            && console.contains("m-525400123401 enrolled before with another key")
            && console.contains("`strata nodes forget m-525400123401`"),
        "console (reversed):\n{tail}"
    );
    assert!(untouched(&d1), "the first disk was written");
    // With a provisioning token, the same machine (its MAC and DMI serial) takes its name
    // over by itself: enrolled again, its classification and pool entry kept (no second
    // entry), then it stops where it stopped before (nothing published).
    std::fs::copy(s.token(&["--uses", "2"]), &token_file).unwrap();
    let (_, before, _) = s.site_cmd(&["nodes", "--json"]);
    std::fs::remove_file(dir.path().join("console-525400123401.log")).unwrap();
    let console = netboot(
        dir.path(),
        &port,
        &d1,
        "52:54:00:12:34:01",
        "product=strata-vm,serial=vm-1",
    );
    let tail: String = console
        .lines()
        .rev()
        .take(30)
        .collect::<Vec<_>>()
        .join("\n");
    assert!(
        console.contains("strata-netboot: enrolled as m-525400123401: Enrolled")
            && console.contains("nothing is published"),
        "console (reversed):\n{tail}"
    );
    let (_, after, _) = s.site_cmd(&["nodes", "--json"]);
    let key = |json: &str| {
        let v: serde_json::Value = serde_json::from_str(json).unwrap();
        let n = v
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["name"] == "m-525400123401")
            .cloned()
            .unwrap();
        (n["key_id"].clone(), n["old_key"].clone())
    };
    let ((k1, _), (k2, old)) = (key(&before), key(&after));
    assert!(k1 != k2 && old == k1, "{before}\n{after}");
    let (_, pools, _) = s.site_cmd(&["pools", "list"]);
    let line = pools
        .lines()
        .find(|l| l.contains("10.0.0.7"))
        .unwrap_or_default();
    assert!(
        line.starts_with("serial=vm-1 ") && line.split_whitespace().nth(1) == Some("vm"),
        "{pools}"
    );
    assert!(untouched(&d1), "the first disk was written");
}
