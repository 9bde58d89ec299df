//! What a Salt formula's templates find besides the parameters: `pillar` (the site's
//! parameters), `grains` (Salt's names for a node's facts, as far as strata's facts give
//! them), `opts` and `saltenv`. docs/decisions.md ("Salt's dialect") lists the map.

use serde_json::{Map, Value, json};

/// Salt's `os` grain for os-release's `ID`, and its `os_family` (salt/grains/core.py's
/// `_OS_NAME_MAP` and `_OS_FAMILY_MAP`).
const OS: &[(&str, &str, &str)] = &[
    ("debian", "Debian", "Debian"),
    ("ubuntu", "Ubuntu", "Debian"),
    ("linuxmint", "Mint", "Debian"),
    ("raspbian", "Raspbian", "Debian"),
    ("devuan", "Devuan", "Debian"),
    ("pop", "Pop", "Debian"),
    ("rhel", "RedHat", "RedHat"),
    ("centos", "CentOS", "RedHat"),
    ("fedora", "Fedora", "RedHat"),
    ("rocky", "Rocky", "RedHat"),
    ("almalinux", "AlmaLinux", "RedHat"),
    ("ol", "OEL", "RedHat"),
    ("amzn", "Amazon", "RedHat"),
    ("scientific", "Scientific", "RedHat"),
    ("opensuse-leap", "Leap", "Suse"),
    ("opensuse-tumbleweed", "Tumbleweed", "Suse"),
    ("opensuse", "openSUSE", "Suse"),
    ("sles", "SUSE", "Suse"),
    ("arch", "Arch", "Arch"),
    ("manjaro", "Manjaro", "Arch"),
    ("alpine", "Alpine", "Alpine"),
    ("gentoo", "Gentoo", "Gentoo"),
    ("void", "Void", "Void"),
    ("nixos", "NixOS", "NixOS"),
];

/// The text at `path` (`a.b`) of the facts, when it is a non-empty string.
fn text<'a>(facts: &'a Map<String, Value>, path: &str) -> Option<&'a str> {
    let (first, rest) = path.split_once('.').unwrap_or((path, ""));
    let mut v = facts.get(first)?;
    for part in rest.split('.').filter(|p| !p.is_empty()) {
        v = v.get(part)?;
    }
    v.as_str().filter(|s| !s.is_empty())
}

/// Addresses without their prefix, sorted as Salt sorts them (as addresses).
fn sorted_addresses(mut addrs: Vec<String>) -> Vec<String> {
    addrs.sort_by_key(|a| a.parse::<std::net::IpAddr>().ok());
    addrs.dedup();
    addrs
}

/// The grains of node `id` with facts `facts` (`strata facts --json`'s form; what is
/// missing there is missing here).
pub(crate) fn grains(id: &str, facts: &Map<String, Value>) -> Map<String, Value> {
    let mut g = Map::new();
    g.insert("id".into(), json!(id));
    g.insert("kernel".into(), json!("Linux"));
    if let Some(host) = text(facts, "hostname") {
        let (short, domain) = host.split_once('.').unwrap_or((host, ""));
        g.insert("nodename".into(), json!(host));
        g.insert("host".into(), json!(short));
        g.insert("fqdn".into(), json!(host));
        g.insert("domain".into(), json!(domain));
    }
    if let Some(os_id) = text(facts, "os.id") {
        let (os, family) = OS
            .iter()
            .find(|(i, _, _)| *i == os_id)
            .map_or((os_id, os_id), |(_, os, family)| (*os, *family));
        g.insert("os".into(), json!(os));
        g.insert("os_family".into(), json!(family));
    }
    if let Some(release) = text(facts, "os.version_id") {
        g.insert("osrelease".into(), json!(release));
        let major = release.split('.').next().unwrap_or(release);
        if let Ok(n) = major.parse::<u64>() {
            g.insert("osmajorrelease".into(), json!(n));
        }
        g.insert(
            "osrelease_info".into(),
            Value::Array(
                release
                    .split('.')
                    .map(|p| p.parse::<u64>().map_or(json!(p), |n| json!(n)))
                    .collect(),
            ),
        );
    }
    if let Some(pretty) = text(facts, "os.pretty_name") {
        // `Debian GNU/Linux 12 (bookworm)`: the name in parentheses.
        if let Some((_, rest)) = pretty.rsplit_once('(')
            && let Some(code) = rest.strip_suffix(')').filter(|c| !c.contains(' '))
        {
            g.insert("oscodename".into(), json!(code));
        }
    }
    if let Some(model) = text(facts, "cpu.model") {
        g.insert("cpu_model".into(), json!(model));
    }
    if let Some(n) = facts.get("cpu").and_then(|c| c.get("threads")?.as_u64()) {
        g.insert("num_cpus".into(), json!(n));
    }
    if let Some(total) = facts.get("memory").and_then(|m| m.get("total")?.as_u64()) {
        g.insert("mem_total".into(), json!(total >> 20));
    }
    for (key, grain) in [
        ("system.vendor", "manufacturer"),
        ("system.product", "productname"),
        ("system.serial", "serialnumber"),
        ("system.uuid", "uuid"),
    ] {
        if let Some(v) = text(facts, key) {
            g.insert(grain.into(), json!(v));
        }
    }
    if let Some(nics) = facts.get("network").and_then(Value::as_array) {
        network(&mut g, nics);
    }
    g
}

/// `ipv4`, `ipv6` (loopback included, as Salt has them), `ip4_interfaces`,
/// `ip6_interfaces` and `hwaddr_interfaces`.
fn network(g: &mut Map<String, Value>, nics: &[Value]) {
    let bare = |v: Option<&Value>| -> Vec<String> {
        v.and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .map(|a| a.split('/').next().unwrap_or(a).to_string())
            .collect()
    };
    let (mut all4, mut all6) = (vec!["127.0.0.1".to_string()], vec!["::1".to_string()]);
    let (mut by4, mut by6, mut macs) = (Map::new(), Map::new(), Map::new());
    by4.insert("lo".into(), json!(["127.0.0.1"]));
    by6.insert("lo".into(), json!(["::1"]));
    macs.insert("lo".into(), json!("00:00:00:00:00:00"));
    for nic in nics {
        let Some(name) = nic.get("name").and_then(Value::as_str) else {
            continue;
        };
        let (v4, v6) = (bare(nic.get("ipv4")), bare(nic.get("ipv6")));
        all4.extend(v4.iter().cloned());
        all6.extend(v6.iter().cloned());
        by4.insert(name.into(), json!(v4));
        by6.insert(name.into(), json!(v6));
        if let Some(mac) = nic.get("mac").and_then(Value::as_str) {
            macs.insert(name.into(), json!(mac));
        }
    }
    g.insert("ipv4".into(), json!(sorted_addresses(all4)));
    g.insert("ipv6".into(), json!(sorted_addresses(all6)));
    g.insert("ip4_interfaces".into(), Value::Object(by4));
    g.insert("ip6_interfaces".into(), Value::Object(by6));
    g.insert("hwaddr_interfaces".into(), Value::Object(macs));
}

/// The variables Salt gives a `file.managed` template, for a module of Salt's dialect:
/// `pillar` (the parameters), `grains`, `opts` (`id`, `saltenv`, `grains`, `pillar`…:
/// what a template reads of the minion's options) and `saltenv` (the node's
/// environment), each unless a parameter of that name is set.
pub(crate) fn salt_variables(
    params: &Map<String, Value>,
    facts: &Map<String, Value>,
    node: &str,
    environment: &str,
) -> Vec<(&'static str, Value)> {
    let grains = Value::Object(grains(node, facts));
    let pillar = Value::Object(params.clone());
    let opts = json!({
        "id": node,
        "saltenv": environment,
        "pillarenv": environment,
        "renderer": "jinja|yaml",
        "file_client": "local",
        "grains": grains,
        "pillar": pillar,
    });
    vec![
        ("pillar", pillar),
        ("grains", grains),
        ("opts", opts),
        ("saltenv", json!(environment)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> Map<String, Value> {
        json!({
            "hostname": "web1.example.org",
            "cpu": {"model": "AMD EPYC", "physical": 1, "cores": 4, "threads": 8},
            "memory": {"total": 8_589_934_592_u64},
            "network": [
                {"name": "eth0", "mac": "52:54:00:12:34:56",
                 "ipv4": ["192.168.1.10/24", "10.0.0.5/8"], "ipv6": ["fe80::1/64"], "link": true}
            ],
            "system": {"vendor": "QEMU", "product": "Standard PC", "serial": ""},
            "os": {"id": "debian", "version_id": "12",
                   "pretty_name": "Debian GNU/Linux 12 (bookworm)"}
        })
        .as_object()
        .unwrap()
        .clone()
    }

    #[test]
    fn grains_are_salts_names_for_the_facts() {
        let g = grains("web1", &facts());
        let want = json!({
            "id": "web1", "kernel": "Linux",
            "nodename": "web1.example.org", "host": "web1", "fqdn": "web1.example.org",
            "domain": "example.org",
            "os": "Debian", "os_family": "Debian", "osrelease": "12", "osmajorrelease": 12,
            "osrelease_info": [12], "oscodename": "bookworm",
            "cpu_model": "AMD EPYC", "num_cpus": 8, "mem_total": 8192,
            "manufacturer": "QEMU", "productname": "Standard PC",
            "ipv4": ["10.0.0.5", "127.0.0.1", "192.168.1.10"],
            "ipv6": ["::1", "fe80::1"],
            "ip4_interfaces": {"lo": ["127.0.0.1"], "eth0": ["192.168.1.10", "10.0.0.5"]},
            "ip6_interfaces": {"lo": ["::1"], "eth0": ["fe80::1"]},
            "hwaddr_interfaces": {"lo": "00:00:00:00:00:00", "eth0": "52:54:00:12:34:56"},
        });
        assert_eq!(Value::Object(g), want);
    }

    #[test]
    fn families_and_missing_facts() {
        let of = |id: &str, version: &str| {
            let f = json!({"os": {"id": id, "version_id": version, "pretty_name": "X 1 LTS"}});
            grains("n", f.as_object().unwrap())
        };
        let g = of("ubuntu", "22.04");
        assert_eq!(g["os"], "Ubuntu");
        assert_eq!(g["os_family"], "Debian");
        assert_eq!(g["osmajorrelease"], 22);
        assert_eq!(g["osrelease_info"], json!([22, 4]));
        assert!(!g.contains_key("oscodename"), "no codename in `X 1 LTS`");
        assert_eq!(of("rocky", "9.3")["os_family"], "RedHat");
        assert_eq!(of("opensuse-leap", "15.5")["os"], "Leap");
        assert_eq!(of("opensuse-leap", "15.5")["os_family"], "Suse");
        // An ID Salt's map lacks: itself, as Salt falls back to the distribution's name.
        assert_eq!(of("plan9", "4")["os_family"], "plan9");
        // No facts: only what the node's name gives.
        let g = grains("n", &Map::new());
        assert_eq!(Value::Object(g), json!({"id": "n", "kernel": "Linux"}));
    }
}
