//! Provisioning from the netboot initrd (docs/provision.md, "Provisioning from the
//! initrd"): `strata netboot provision` fetches the node's signed snapshot and assignment
//! as its agent does, streams the base from `serve`'s /boot/base.tar (checked against the
//! hash `netboot build` pinned), writes the disk as `strata provision` does and installs
//! the node's identity and agent on it; the server then answers the machine's iPXE with
//! "boot your disk". On this machine with a disk image first (a wrong base, a run killed
//! halfway, then one that completes, and the installed agent's first report), then end to
//! end in QEMU: netboot, enroll, classify, provision, reboot into the disk, report.

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use strata_test::TestEnv;

use crate::netboot::{base, get};
use crate::serve::{Served, output, served_with};

const LAYOUT: &str = "boot = \"bios\"\n\
    [[partition]]\nsize = \"1MiB\"\ntype = \"bios_grub\"\n\
    [[partition]]\nmount = \"/\"\nfs = \"ext4\"\nsize = \"rest\"\n";

/// Says on the serial console that the installed system booted, with the address its
/// pool entry gave it.
const UNIT: &str = "[Unit]\nDescription=strata netboot test marker\n\
    [Service]\nType=oneshot\n\
    ExecStart=/bin/sh -c 'echo \"STRATA-BOOTED-$(cat /etc/hostname) ip=$(cat /etc/strata-address)\" >/dev/ttyS0'\n\
    [Install]\nWantedBy=multi-user.target\n";

/// The site: provisioning settings, the layout, the marker and the network (DHCP with
/// systemd-networkd, so that the installed agent reaches the server).
fn site(e: &TestEnv, modules_of: &str) {
    e.write(
        "strata.toml",
        "[site]\nname = \"s\"\n[provision]\nconsole = \"ttyS0,115200\"\n",
    );
    e.write("hardware/layouts/default.toml", LAYOUT);
    e.write(modules_of, "modules = [\"marker\", \"net\"]\n");
    e.write(
        "modules/marker/module.toml",
        "[[service]]\nname = \"strata-marker\"\n",
    );
    e.write(
        "modules/marker/files/etc/systemd/system/strata-marker.service",
        UNIT,
    );
    e.write(
        "modules/net/module.toml",
        "[[service]]\nname = \"systemd-networkd\"\n",
    );
    e.write(
        "modules/net/files/etc/systemd/network/80-dhcp.network",
        "[Match]\nName=en* eth*\n[Network]\nDHCP=ipv4\n",
    );
}

/// Builds the netboot files into `boot` and returns the base's pinned hash.
fn build(s: &Served, boot: &Path) -> String {
    let base = base(s);
    let (code, out, err) = output(
        s.env
            .cmd(&["netboot", "build", "--out"])
            .arg(boot)
            .arg("--base")
            .arg(&base),
    );
    assert_eq!(code, 0, "{out}{err}");
    out.split("blake3 ")
        .nth(1)
        .and_then(|r| r.split(',').next())
        .map(str::to_string)
        .unwrap_or_else(|| panic!("no hash in: {out}"))
}

/// An image file of `size` bytes whose first MiB is a pattern (to see it untouched).
fn image(dir: &Path, size: u64) -> PathBuf {
    let path = dir.join("disk.img");
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

/// `strata netboot provision` for the node enrolled in `root`.
fn provision(s: &Served, root: &Path, disk: &Path, hash: &Path) -> Command {
    let mut cmd = s.env.cmd(&["netboot", "provision", "--root"]);
    cmd.arg(root)
        .arg("--disk")
        .arg(disk)
        .arg("--base-hash")
        .arg(hash)
        .env("STRATA_CACHE_DIR", s.env.path().join("ncache"));
    cmd
}

/// A node's root whose facts are the machine's as the initrd sees them: its NIC's MAC and
/// its DMI product UUID (`/sys`), and nothing kept from an earlier netboot.
fn machine_root(s: &Served, dir: &str, uuid: &str) -> PathBuf {
    let root = s.node_root(dir);
    for (path, value) in [
        ("sys/class/net/eth0/address", "52:54:00:aa:bb:cc"),
        ("sys/class/dmi/id/product_uuid", uuid),
    ] {
        let file = root.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, format!("{value}\n")).unwrap();
    }
    root
}

/// The answer to the machine's iPXE, asked with its MAC.
fn ipxe(s: &Served, mac: &str) -> String {
    get(&s.authority(), &format!("/boot/ipxe/{mac}"), &s.authority())
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root, the provision base (debootstrap's mirror once) and loop mounts: \
              scripts/test provides them (feature host-tests)"
)]
fn a_node_provisions_its_disk_from_the_server_only_with_the_pinned_base_and_only_once_done() {
    assert!(strata_test::is_root(), "needs root");
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    let token_file = dir.path().join("token");
    let node = "m-525400aabbcc";
    let s = served_with(
        |e| site(e, &format!("nodes/{node}.toml")),
        &[
            "--netboot",
            boot.to_str().unwrap(),
            "--netboot-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    let hash = build(&s, &boot);
    s.publish();
    // The provisioning token: one use per netboot that enrolls.
    std::fs::copy(s.token(&["--uses", "2"]), &token_file).unwrap();
    // The node enrolls as the initrd does (its state in a directory here, in memory there).
    let uuid = "4c4c4544-0042-3510-8052-b4c04f4e4d31";
    let root = machine_root(&s, "initrd", uuid);
    let (code, out, err) = s.enroll(&root, node, Some(&token_file));
    assert_eq!(code, 0, "{out}{err}");
    assert!(ipxe(&s, "525400aabbcc").contains("\nkernel "));
    let disk = image(dir.path(), 3 << 30);

    // A base that is not the pinned one: refused, the disk as it was.
    let wrong = dir.path().join("wrong.blake3");
    std::fs::write(&wrong, format!("{}\n", "0".repeat(64))).unwrap();
    let (code, out, err) = output(&mut provision(&s, &root, &disk, &wrong));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("the base is not the one `netboot build` pinned")
            && err.contains(&format!("blake3 {hash}")),
        "{err}"
    );
    assert!(
        head(&disk).iter().all(|b| *b == 0xAB),
        "the disk was written"
    );

    // Killed while it makes the file system: no table, no boot code, no report, so the
    // server still answers the machine with the provisioning kernel.
    let pinned = dir.path().join("base.blake3");
    std::fs::write(&pinned, format!("{hash}\n")).unwrap();
    let mut child = provision(&s, &root, &disk, &pinned)
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
        seen.contains("making ext4 for /"),
        "never reached the disk:\n{seen}"
    );
    assert!(
        head(&disk)[..34 * 512].iter().all(|b| *b == 0),
        "a provisioning killed halfway left a partition table or boot code"
    );
    assert!(ipxe(&s, "525400aabbcc").contains("\nkernel "));
    let (_, runs, _) = s.site_cmd(&["runs", node]);
    assert!(!runs.contains("provisioned"), "{runs}");

    // The next netboot keeps nothing: a new key. Another machine claiming the name (its
    // DMI UUID differs) is refused, saying why; this one, a machine that never reported
    // with the provisioning token, takes its name over by itself, and the old key's
    // signed requests are refused from then on.
    let other = machine_root(&s, "impostor", "00000000-0000-0000-0000-000000000001");
    let (code, out, err) = s.enroll(&other, node, Some(&token_file));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("bound to another key")
            && err.contains("another machine: its DMI product UUID is 00000000"),
        "{err}"
    );
    let old = root;
    let root = machine_root(&s, "initrd-again", uuid);
    let (code, out, err) = s.enroll(&root, node, Some(&token_file));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("accepted"), "{out}");
    let (code, out, err) = s.agent(&old);
    assert_ne!(code, 0, "the old key still works: {out}{err}");
    assert!(err.contains("this key is not enrolled"), "{err}");
    let (_, nodes, _) = s.site_cmd(&["nodes"]);
    assert!(nodes.contains("new key since"), "{nodes}");
    let log = std::fs::read_to_string(s.env.path().join("serve.log")).unwrap_or_default();
    assert!(log.contains(&format!("took over node {node}")), "{log}");

    // It starts over and completes; the server then says "boot your disk".
    let started = Instant::now();
    let (code, out, err) = output(&mut provision(&s, &root, &disk, &pinned));
    assert_eq!(code, 0, "{out}{err}");
    eprintln!(
        "netboot provision on this machine: {:.0?}\n{out}",
        started.elapsed()
    );
    assert!(
        out.contains(&format!("as {node}:")) && out.contains("generation 1"),
        "{out}"
    );
    assert_eq!(&head(&disk)[512..520], b"EFI PART");
    let answer = ipxe(&s, "525400aabbcc");
    assert!(
        answer.contains("sanboot --no-describe --drive 0x80") && !answer.contains("kernel"),
        "{answer}"
    );
    let (_, runs, _) = s.site_cmd(&["runs", node]);
    assert!(runs.contains(node), "{runs}");
    // Reported, it keeps its key: no new key takes it over, even the same machine's with
    // a fresh provisioning token; the way out is still `nodes forget`.
    let fresh = s.token(&["--uses", "2"]);
    let (code, out, err) = s.enroll(&machine_root(&s, "initrd-late", uuid), node, Some(&fresh));
    assert_eq!(code, 1, "{out}{err}");
    assert!(
        err.contains("has reported") && err.contains(&format!("`strata nodes forget {node}`")),
        "{err}"
    );

    // The installed root: the node's identity (keys 0600), strata, the agent's units
    // pointing at this server; its agent's first run reports, unchanged.
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let check = "k=\"$2/var/lib/strata/keys\"; stat -c '%a %n' \"$k/node.key\" && \
        cat \"$k/enrollment.json\" && test -x \"$2/usr/bin/strata\" && \
        cat \"$2/etc/systemd/system/strata-agent.service\" && \
        readlink \"$2/etc/systemd/system/multi-user.target.wants/strata-agent.service\" && \
        readlink \"$2/etc/systemd/system/timers.target.wants/strata-agent.timer\" && \
        test -s \"$2/var/lib/strata/trust/root.json\" && echo pinned-root && \
        test -e \"$2/var/lib/strata/agent/first-boot\" && echo first-boot && \
        \"$STRATA\" agent --once --server \"$URL\" --root \"$2\"; \
        test -e \"$2/var/lib/strata/agent/first-boot\" && echo still-first-boot; true";
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg(format!(
            "mount -o loop,offset=2097152 \"$1\" \"$2\" || exit 99; {check}"
        ))
        .arg("sh")
        .arg(&disk)
        .arg(&mnt)
        .env("STRATA", env!("CARGO_BIN_EXE_strata"))
        .env("URL", &s.url)
        .env("NO_COLOR", "1")
        .env("STRATA_CACHE_DIR", s.env.path().join("ncache"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("600 ") && text.contains("node.key"), "{text}");
    assert!(text.contains(&format!("\"node\": \"{node}\"")), "{text}");
    assert!(
        text.contains(&format!(
            "ExecStart=/usr/bin/strata agent --once --server {}",
            s.url
        )),
        "{text}"
    );
    assert!(
        text.contains("/etc/systemd/system/strata-agent.service\n")
            && text.contains("/etc/systemd/system/strata-agent.timer\n")
            && text.contains("pinned-root\n")
            && text.contains("first-boot\n")
            && !text.contains("still-first-boot"),
        "{text}"
    );
    let (_, runs, _) = s.site_cmd(&["runs", node, "--json"]);
    assert!(
        runs.contains("provisioned") && runs.contains("first boot of the installed system"),
        "{runs}"
    );

    // Forgotten to be reinstalled, then enrolled again: its reports from before do not
    // make it provisioned, so the server answers the provisioning kernel until the new
    // enrollment reports.
    let (code, out, err) = s.site_cmd(&["nodes", "forget", node]);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = s.enroll(
        &machine_root(&s, "initrd-reinstall", uuid),
        node,
        Some(&fresh),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(ipxe(&s, "525400aabbcc").contains("\nkernel "));
}

/// Boots a machine that netboots first (iPXE chained from QEMU's TFTP to the server) and
/// reboots when told to, until `done` says its console and the server show what the
/// test waits for, it stops, or 25 minutes pass; returns its console.
fn machine(
    dir: &Path,
    port: &str,
    disk: &Path,
    mac: &str,
    dmi: &str,
    done: &dyn Fn(&str) -> bool,
) -> String {
    let tftp = dir.join("tftp");
    std::fs::create_dir_all(&tftp).unwrap();
    std::fs::write(
        tftp.join("boot.ipxe"),
        format!("#!ipxe\nchain http://10.0.2.2:{port}/boot/ipxe\n"),
    )
    .unwrap();
    let console = dir.join(format!("console-{mac}.log").replace(':', ""));
    // Network first, as a PXE-managed machine is set up: the server decides whether it
    // provisions or boots its disk. 2 GiB: the new tree is built in memory.
    let mut qemu = Command::new("qemu-system-x86_64")
        .args(["-machine", "pc,accel=tcg", "-m", "2048", "-nographic"])
        .args(["-monitor", "none", "-boot", "order=nc", "-smbios"])
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
    let mut marks: Vec<(&str, Duration)> = Vec::new();
    while qemu.try_wait().unwrap().is_none() && started.elapsed() < Duration::from_secs(1500) {
        let text = read();
        for m in [
            "strata-netboot: enrolled",
            "fetching and unpacking the base",
            "applying",
            "making ext4",
            "strata-netboot: provisioned",
            "STRATA-BOOTED-",
        ] {
            if text.contains(m) && !marks.iter().any(|(k, _)| *k == m) {
                marks.push((m, started.elapsed()));
            }
        }
        if text.contains("strata-netboot: stopped") || done(&text) {
            break;
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    let _ = qemu.kill();
    let _ = qemu.wait();
    for (m, t) in &marks {
        eprintln!("{mac}: {m:?} at {t:.0?}");
    }
    eprintln!("{mac}: ended at {:.0?}", started.elapsed());
    read()
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs QEMU with iPXE's ROMs (qemu-system-x86, ipxe-qemu) and the provision \
              base (debootstrap's mirror once): scripts/test provides them (feature host-tests)"
)]
fn bare_machines_netboot_provision_their_disks_reboot_into_them_and_report() {
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    let token_file = dir.path().join("token");
    let s = served_with(
        |e| {
            site(e, "roles/prov.toml");
            e.write(
                "roles/prov.toml",
                "modules = [\"marker\", \"net\", \"addr\"]\n",
            );
            e.write(
                "modules/addr/templates/etc/strata-address.j2",
                "{{ hw.ips.ip }}\n",
            );
            // Two kinds of machine, each with its own pool.
            e.write(
                "hardware/profiles.toml",
                "[[profile]]\nname = \"small\"\nrole = \"prov\"\npools = [\"ips\"]\n\
                 spec = [[\"system\", \"product\", \"name\", \"strata-small\"]]\n\
                 [[profile]]\nname = \"big\"\nrole = \"prov\"\npools = [\"ips\"]\n\
                 spec = [[\"system\", \"product\", \"name\", \"strata-big\"]]\n",
            );
            e.write(
                "hardware/pools/ips.toml",
                "generate = [{ ip = \"10.0.0.7-8\" }]\n",
            );
        },
        &[
            "--netboot",
            boot.to_str().unwrap(),
            "--netboot-token-file",
            token_file.to_str().unwrap(),
        ],
    );
    build(&s, &boot);
    s.publish();
    // One provisioning token for both machines.
    std::fs::copy(s.token(&["--uses", "2", "--ttl", "1d"]), &token_file).unwrap();
    let token = std::fs::read_to_string(&token_file).unwrap();
    let port = s.url.rsplit(':').next().unwrap().to_string();
    let machines = [
        (
            "52:54:00:12:34:11",
            "product=strata-small,serial=vm-11",
            3u64 << 30,
        ),
        (
            "52:54:00:12:34:12",
            "product=strata-big,serial=vm-12",
            4u64 << 30,
        ),
    ];
    let consoles: Vec<String> = std::thread::scope(|scope| {
        let handles: Vec<_> = machines
            .iter()
            .map(|(mac, dmi, size)| {
                let (s, dir, port) = (&s, dir.path(), &port);
                scope.spawn(move || {
                    let node = format!("m-{}", mac.replace(':', ""));
                    let disk = dir.join(format!("{node}.img"));
                    std::fs::File::create(&disk)
                        .unwrap()
                        .set_len(*size)
                        .unwrap();
                    let reported = || {
                        let (_, runs, _) = s.site_cmd(&["runs", &node, "--json"]);
                        runs.contains("first boot of the installed system")
                    };
                    machine(dir, port, &disk, mac, dmi, &|text| {
                        text.contains("STRATA-BOOTED-") && reported()
                    })
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let log = std::fs::read_to_string(s.env.path().join("serve.log")).unwrap_or_default();
    for l in log
        .lines()
        .filter(|l| l.contains("/boot/") || (l.contains("/v1/") && !l.contains("/blobs/")))
    {
        eprintln!("serve: {l}");
    }
    let secret = token.trim().rsplit('.').next().unwrap();
    let mut ips = Vec::new();
    for ((mac, _, _), console) in machines.iter().zip(&consoles) {
        let node = format!("m-{}", mac.replace(':', ""));
        let tail: String = console
            .lines()
            .rev()
            .take(60)
            .collect::<Vec<_>>()
            .join("\n");
        assert!(
            !console.contains(secret),
            "the token is on {node}'s console"
        );
        assert!(
            console.contains(&format!("strata-netboot: enrolled as {node}"))
                && console.contains("strata-netboot: provisioned; rebooting into the disk"),
            "{node}'s console (reversed):\n{tail}"
        );
        // The installed system booted from its disk and ran the site's unit with its
        // pool entry.
        let booted = format!("STRATA-BOOTED-{node} ip=");
        let ip = console
            .split(&booted)
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("{node}'s console (reversed):\n{tail}"))
            .to_string();
        ips.push(ip);
        // Its report from the initrd, and its agent's from the installed system.
        let (_, runs, _) = s.site_cmd(&["runs", &node, "--json"]);
        assert!(
            runs.contains("provisioned /dev/sda from the netboot initrd")
                && runs.contains("first boot of the installed system"),
            "{runs}"
        );
        // Its next netboot is answered "boot your disk".
        assert!(ipxe(&s, &mac.replace(':', "")).contains("sanboot"));
    }
    ips.sort();
    assert_eq!(ips, ["10.0.0.7", "10.0.0.8"], "each machine its own entry");
    let (_, pools, _) = s.site_cmd(&["pools", "list"]);
    eprintln!("{pools}");
    for (serial, profile) in [("vm-11", "small"), ("vm-12", "big")] {
        assert!(
            pools
                .lines()
                .any(|l| l.starts_with(&format!("serial={serial} "))
                    && l.split_whitespace().nth(1) == Some(profile)),
            "{pools}"
        );
    }
    let (_, nodes, _) = s.site_cmd(&["nodes"]);
    eprintln!("{nodes}");
    let (_, runs, _) = s.site_cmd(&["runs"]);
    eprintln!("{runs}");
}
