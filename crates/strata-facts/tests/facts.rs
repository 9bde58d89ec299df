//! Facts read from fixture trees captured from real machines, and from this machine.
#![allow(clippy::disallowed_methods)]

use std::path::PathBuf;

use insta::assert_snapshot;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn tuples_text(name: &str) -> String {
    let (facts, _) = strata_facts::gather(&fixture(name));
    strata_facts::to_tuples(&facts)
        .iter()
        .map(|t| t.join(" | "))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn a_bare_metal_tree_has_every_disk_nic_and_dmi_field() {
    let (facts, warnings) = strata_facts::gather(&fixture("baremetal"));
    assert!(warnings.is_empty(), "{warnings:?}");
    assert_eq!(facts.cpu.physical, 2);
    assert_eq!(facts.cpu.cores, 16);
    assert_eq!(facts.cpu.threads, 32);
    assert_eq!(facts.memory.total, 263_785_648 * 1024);
    let disks: Vec<(&str, u64, bool)> = facts
        .disks
        .iter()
        .map(|d| (d.name.as_str(), d.size, d.rotational))
        .collect();
    assert_eq!(
        disks,
        [
            ("nvme0n1", 1_875_385_008 * 512, false),
            ("sda", 300_000_000_000, true),
            ("sdb", 300_000_000_000, true)
        ]
    );
    let eno1 = facts.network.iter().find(|n| n.name == "eno1").unwrap();
    assert_eq!(eno1.ipv4, ["192.168.122.10/24"]);
    assert_eq!(eno1.ipv6, ["fe80::9618:82ff:fe0a:1bc0/64"]);
    assert_eq!(
        (eno1.driver.as_str(), eno1.speed, eno1.link),
        ("ixgbe", Some(10000), true)
    );
    let eno2 = facts.network.iter().find(|n| n.name == "eno2").unwrap();
    assert_eq!(eno2.ipv4, ["10.0.3.7/16"]);
    let eno3 = facts.network.iter().find(|n| n.name == "eno3").unwrap();
    assert_eq!((eno3.speed, eno3.link), (None, false));
    assert_eq!(facts.system.serial, "CZJ8290ABC");
    assert_eq!(facts.os.id, "debian");
    assert_snapshot!("baremetal_tuples", tuples_text("baremetal"));
}

#[test]
fn a_vm_tree_without_dmi_gives_a_warning_not_a_failure() {
    let (facts, warnings) = strata_facts::gather(&fixture("vm"));
    assert!(
        warnings.iter().any(|w| w.contains("/sys/class/dmi/id")),
        "{warnings:?}"
    );
    assert!(facts.cpu.threads >= 1);
    assert!(facts.memory.total > 0);
    assert!(facts.disks.iter().any(|d| d.name == "vda" && d.size > 0));
    let eth0 = facts
        .network
        .iter()
        .find(|n| n.name == "eth0")
        .expect("eth0");
    assert_eq!(eth0.ipv4, ["192.0.2.2/24"]);
    assert_eq!(eth0.driver, "virtio_net");
    assert_snapshot!("vm_tuples", tuples_text("vm"));
}

#[test]
fn an_empty_root_gives_warnings_and_empty_facts() {
    let dir = std::env::temp_dir().join(format!("strata-facts-empty-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (facts, warnings) = strata_facts::gather(&dir);
    assert!(warnings.len() >= 4, "{warnings:?}");
    assert_eq!(facts.memory.total, 0);
    assert!(facts.disks.is_empty());
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn this_machine_has_a_cpu_memory_and_an_os() {
    let (facts, _) = strata_facts::gather(std::path::Path::new("/"));
    assert!(facts.cpu.threads >= 1);
    assert!(facts.memory.total > 64 << 20);
    assert!(!facts.os.id.is_empty());
}
