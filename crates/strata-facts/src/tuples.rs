//! eDeploy's view of facts: `(category, item, attribute, value)`, all strings.

use crate::Facts;

/// One fact as eDeploy wrote it.
pub type Tuple = [String; 4];

fn t(c: &str, i: &str, a: &str, v: &dyn ToString) -> Tuple {
    [c.to_string(), i.to_string(), a.to_string(), v.to_string()]
}

/// The facts as 4-tuples. Disk sizes are in GB (10^9 bytes, rounded down), memory in
/// bytes, as eDeploy gave them.
pub fn to_tuples(f: &Facts) -> Vec<Tuple> {
    let mut out = vec![
        t("cpu", "physical", "number", &f.cpu.physical),
        t("cpu", "logical", "number", &f.cpu.threads),
        t("cpu", "physical_0", "product", &f.cpu.model),
        t("cpu", "physical", "cores", &f.cpu.cores),
        t("memory", "total", "size", &f.memory.total),
    ];
    for d in &f.disks {
        out.push(t("disk", &d.name, "size", &(d.size / 1_000_000_000)));
        out.push(t("disk", &d.name, "rotational", &u8::from(d.rotational)));
        for (attr, v) in [
            ("vendor", &d.vendor),
            ("model", &d.model),
            ("serial", &d.serial),
        ] {
            if !v.is_empty() {
                out.push(t("disk", &d.name, attr, &v));
            }
        }
    }
    for n in &f.network {
        out.push(t("network", &n.name, "serial", &n.mac));
        for a in &n.ipv4 {
            let (ip, prefix) = a.split_once('/').unwrap_or((a, ""));
            out.push(t("network", &n.name, "ipv4", &ip));
            out.push(t("network", &n.name, "ipv4-netmask-bits", &prefix));
        }
        for a in &n.ipv6 {
            out.push(t(
                "network",
                &n.name,
                "ipv6",
                &a.split('/').next().unwrap_or(a),
            ));
        }
        if !n.driver.is_empty() {
            out.push(t("network", &n.name, "driver", &n.driver));
        }
        if let Some(s) = n.speed {
            out.push(t("network", &n.name, "speed", &s));
        }
        out.push(t(
            "network",
            &n.name,
            "link",
            &if n.link { "yes" } else { "no" },
        ));
    }
    for p in &f.pci {
        out.push(t("pci", &p.slot, "vendor", &p.vendor));
        out.push(t("pci", &p.slot, "device", &p.device));
        out.push(t("pci", &p.slot, "class", &p.class));
    }
    for (attr, v) in [
        ("vendor", &f.system.vendor),
        ("name", &f.system.product),
        ("serial", &f.system.serial),
        ("uuid", &f.system.uuid),
    ] {
        if !v.is_empty() {
            out.push(t("system", "product", attr, &v));
        }
    }
    if !f.os.id.is_empty() {
        out.push(t("system", "os", "id", &f.os.id));
        out.push(t("system", "os", "version", &f.os.version_id));
    }
    if !f.hostname.is_empty() {
        out.push(t("system", "hostname", "name", &f.hostname));
    }
    out
}
