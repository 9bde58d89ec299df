//! Classification and allocation figures: matching a machine against 100 profiles of 20
//! entries over 500 fact tuples, and enrolments per second on each allocation store.

use std::collections::BTreeMap;
use std::time::Instant;

use strata_hardware::matcher::{Element, match_spec};
use strata_hardware::{Enrollment, Store};

/// 500 tuples of a large machine: 40 disks, 24 NICs, 100 PCI devices, the rest.
pub fn tuples() -> Vec<[String; 4]> {
    let t = |a: &str, b: String, c: &str, d: String| [a.to_string(), b, c.to_string(), d];
    let mut out = Vec::new();
    for i in 0..40 {
        out.push(t(
            "disk",
            format!("sd{i}"),
            "size",
            format!("{}", 100 + i * 50),
        ));
        out.push(t(
            "disk",
            format!("sd{i}"),
            "rotational",
            format!("{}", i % 2),
        ));
        out.push(t(
            "disk",
            format!("sd{i}"),
            "model",
            format!("MODEL-{}", i % 4),
        ));
    }
    for i in 0..24 {
        out.push(t(
            "network",
            format!("eth{i}"),
            "serial",
            format!("52:54:00:00:00:{i:02x}"),
        ));
        out.push(t(
            "network",
            format!("eth{i}"),
            "ipv4",
            format!("10.0.{i}.10"),
        ));
        out.push(t("network", format!("eth{i}"), "speed", "10000".into()));
        out.push(t("network", format!("eth{i}"), "link", "yes".into()));
    }
    for i in 0..100 {
        out.push(t(
            "pci",
            format!("0000:{i:02x}:00.0"),
            "vendor",
            "0x8086".into(),
        ));
        out.push(t(
            "pci",
            format!("0000:{i:02x}:00.0"),
            "device",
            format!("0x{:04x}", 0x1000 + i),
        ));
    }
    out.push(t("system", "product".into(), "vendor", "HPE".into()));
    out.push(t("system", "product".into(), "serial", "CZJ0001".into()));
    while out.len() < 500 {
        let i = out.len();
        out.push(t(
            "memory",
            format!("bank{i}"),
            "size",
            "34359738368".into(),
        ));
    }
    out
}

/// 100 profiles of 20 entries; only the last matches. Each of the others fails on its
/// last entry (a vendor it does not have), after 19 entries that do match.
pub fn profiles() -> Vec<Vec<[Element; 4]>> {
    (0..100)
        .map(|p| {
            let mut spec: Vec<[String; 4]> = (0..19)
                .map(|e| match e % 3 {
                    0 => [
                        "disk".into(),
                        format!("$d{e}"),
                        "size".into(),
                        "gt(100)".into(),
                    ],
                    1 => [
                        "network".into(),
                        format!("$n{e}"),
                        "ipv4".into(),
                        "network(10.0.0.0/8)".into(),
                    ],
                    _ => [
                        "pci".into(),
                        format!("$p{e}"),
                        "vendor".into(),
                        "0x8086".into(),
                    ],
                })
                .collect();
            let vendor = if p == 99 {
                "HPE".to_string()
            } else {
                format!("VENDOR{p}")
            };
            spec.push(["system".into(), "product".into(), "vendor".into(), vendor]);
            spec.iter()
                .map(|e| e.clone().map(|s| Element::parse(&s).expect("valid")))
                .collect()
        })
        .collect()
}

/// Median milliseconds to classify one machine (first matching profile of 100).
pub fn classify_ms(runs: usize) -> f64 {
    let t = tuples();
    let ps = profiles();
    let mut times: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            let hit = ps.iter().position(|s| {
                matches!(
                    match_spec(s, &t),
                    strata_hardware::matcher::Outcome::Matched(_)
                )
            });
            assert_eq!(hit, Some(99));
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

/// Enrolments per second on a store: `n` machines, one pool entry each.
pub fn enrolments_per_second(store: &mut dyn Store, n: usize) -> f64 {
    let entries: Vec<BTreeMap<String, String>> = (0..n)
        .map(|i| {
            BTreeMap::from([(
                "ip".to_string(),
                format!("10.{}.{}.{}", i / 65536, i / 256 % 256, i % 256),
            )])
        })
        .collect();
    let identity = BTreeMap::new();
    let start = Instant::now();
    for i in 0..n {
        let machine = format!("m{i}");
        let req = Enrollment {
            machine: &machine,
            profile: "p",
            max: None,
            identity: &identity,
            pools: vec![("ips", &entries)],
        };
        store
            .enroll(&req, strata_hardware::Allocate::Commit)
            .expect("enrol");
    }
    n as f64 / start.elapsed().as_secs_f64()
}
