//! Reading facts from the files of a root.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use crate::{Cpu, Disk, Facts, Memory, Nic, Os, Pci, System};

/// Reads what a root's `/proc`, `/sys` and `/etc` say; each missing or unreadable source
/// adds a warning instead of failing.
pub fn gather(root: &Path) -> (Facts, Vec<String>) {
    let mut r = Reader {
        root,
        warnings: Vec::new(),
    };
    let facts = Facts {
        hostname: r
            .text("proc/sys/kernel/hostname")
            .or_else(|| r.quiet("etc/hostname"))
            .unwrap_or_default(),
        cpu: r.cpu(),
        memory: r.memory(),
        disks: r.disks(),
        network: r.network(),
        pci: r.pci(),
        system: r.system(),
        os: r.os(),
    };
    (facts, r.warnings)
}

struct Reader<'a> {
    root: &'a Path,
    warnings: Vec<String>,
}

impl Reader<'_> {
    /// A file's trimmed text, or a warning.
    fn text(&mut self, rel: &str) -> Option<String> {
        match strata_fs::read_to_string(&self.root.join(rel)) {
            Ok(t) => Some(t.trim().to_string()),
            Err(e) => {
                self.warnings.push(format!("/{rel}: {}", e.source));
                None
            }
        }
    }

    /// A file's trimmed text, silently absent (optional attributes).
    fn quiet(&self, rel: &str) -> Option<String> {
        strata_fs::read_to_string(&self.root.join(rel))
            .ok()
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
    }

    fn list(&mut self, rel: &str) -> Vec<String> {
        let dir = self.root.join(rel);
        if !strata_fs::exists(&dir) {
            self.warnings.push(format!("/{rel}: missing"));
        }
        strata_fs::list_dir(&dir).unwrap_or_default()
    }

    fn cpu(&mut self) -> Cpu {
        let Some(info) = self.text("proc/cpuinfo") else {
            return Cpu::default();
        };
        let mut cpu = Cpu::default();
        let mut packages = std::collections::BTreeSet::new();
        let mut cores = std::collections::BTreeSet::new();
        let mut package = String::new();
        for line in info.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "processor" => cpu.threads += 1,
                "model name" if cpu.model.is_empty() => cpu.model = v.to_string(),
                "physical id" => {
                    package = v.to_string();
                    packages.insert(v.to_string());
                }
                "core id" => {
                    cores.insert((package.clone(), v.to_string()));
                }
                _ => {}
            }
        }
        cpu.physical = packages.len().max(1) as u32;
        cpu.cores = if cores.is_empty() {
            cpu.threads
        } else {
            cores.len() as u32
        };
        cpu
    }

    fn memory(&mut self) -> Memory {
        let total = self
            .text("proc/meminfo")
            .and_then(|m| {
                m.lines().find_map(|l| {
                    l.strip_prefix("MemTotal:")?
                        .trim()
                        .strip_suffix("kB")?
                        .trim()
                        .parse::<u64>()
                        .ok()
                })
            })
            .map_or(0, |kib| kib * 1024);
        Memory { total }
    }

    fn disks(&mut self) -> Vec<Disk> {
        let mut out = Vec::new();
        for name in self.list("sys/block") {
            if ["loop", "ram", "dm-", "zram", "sr", "md"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                continue;
            }
            let base = format!("sys/block/{name}");
            let sectors: u64 = self
                .quiet(&format!("{base}/size"))
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            out.push(Disk {
                size: sectors * 512,
                rotational: self.quiet(&format!("{base}/queue/rotational")).as_deref() == Some("1"),
                vendor: self
                    .quiet(&format!("{base}/device/vendor"))
                    .unwrap_or_default(),
                model: self
                    .quiet(&format!("{base}/device/model"))
                    .unwrap_or_default(),
                serial: self
                    .quiet(&format!("{base}/device/serial"))
                    .or_else(|| self.quiet(&format!("{base}/serial")))
                    .unwrap_or_default(),
                name,
            });
        }
        out
    }

    fn network(&mut self) -> Vec<Nic> {
        let v4 = self.ipv4_by_iface();
        let v6 = self.ipv6_by_iface();
        let mut out = Vec::new();
        for name in self.list("sys/class/net") {
            if name == "lo" {
                continue;
            }
            let base = format!("sys/class/net/{name}");
            let driver = strata_fs::read_link(&self.root.join(format!("{base}/device/driver")))
                .ok()
                .and_then(|t| t.rsplit('/').next().map(str::to_string))
                .unwrap_or_default();
            out.push(Nic {
                mac: self.quiet(&format!("{base}/address")).unwrap_or_default(),
                ipv4: v4
                    .iter()
                    .filter(|(i, _)| *i == name)
                    .map(|(_, a)| a.clone())
                    .collect(),
                ipv6: v6
                    .iter()
                    .filter(|(i, _)| *i == name)
                    .map(|(_, a)| a.clone())
                    .collect(),
                driver,
                speed: self
                    .quiet(&format!("{base}/speed"))
                    .and_then(|s| s.parse::<i64>().ok())
                    .filter(|s| *s > 0)
                    .map(|s| s as u64),
                link: self.quiet(&format!("{base}/operstate")).as_deref() == Some("up"),
                name,
            });
        }
        out
    }

    /// IPv4 addresses per interface: the local addresses of `/proc/net/fib_trie`, each given
    /// to the interface whose route in `/proc/net/route` covers it (longest prefix).
    fn ipv4_by_iface(&mut self) -> Vec<(String, String)> {
        let (Some(trie), Some(routes)) =
            (self.text("proc/net/fib_trie"), self.text("proc/net/route"))
        else {
            return Vec::new();
        };
        let routes: Vec<(String, u32, u32)> = routes
            .lines()
            .skip(1)
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let dest = u32::from_str_radix(f.get(1)?, 16).ok()?.swap_bytes();
                let mask = u32::from_str_radix(f.get(7)?, 16).ok()?.swap_bytes();
                (mask != 0).then(|| (f[0].to_string(), dest, mask))
            })
            .collect();
        let mut locals = std::collections::BTreeSet::new();
        let mut last: Option<Ipv4Addr> = None;
        for line in trie.lines() {
            let t = line.trim_start_matches([' ', '|', '+', '-']);
            if let Ok(addr) = t.trim().parse::<Ipv4Addr>() {
                last = Some(addr);
            } else if t.trim() == "/32 host LOCAL"
                && let Some(a) = last.filter(|a| !a.is_loopback())
            {
                locals.insert(a);
            }
        }
        let mut out = Vec::new();
        for addr in locals {
            let a = u32::from(addr);
            let best = routes
                .iter()
                .filter(|(_, d, m)| a & m == *d)
                .max_by_key(|(_, _, m)| m.count_ones());
            if let Some((iface, _, mask)) = best {
                out.push((iface.clone(), format!("{addr}/{}", mask.count_ones())));
            }
        }
        out
    }

    fn ipv6_by_iface(&mut self) -> Vec<(String, String)> {
        let Some(text) = self.quiet("proc/net/if_inet6") else {
            return Vec::new();
        };
        text.lines()
            .filter_map(|l| {
                let f: Vec<&str> = l.split_whitespace().collect();
                let hex = f.first()?;
                let bits = u128::from_str_radix(hex, 16).ok()?;
                let prefix = u8::from_str_radix(f.get(2)?, 16).ok()?;
                let iface = f.get(5)?;
                (*iface != "lo").then(|| {
                    (
                        iface.to_string(),
                        format!("{}/{prefix}", Ipv6Addr::from(bits)),
                    )
                })
            })
            .collect()
    }

    fn pci(&mut self) -> Vec<Pci> {
        let mut out = Vec::new();
        for slot in self.list("sys/bus/pci/devices") {
            let base = format!("sys/bus/pci/devices/{slot}");
            out.push(Pci {
                vendor: self.quiet(&format!("{base}/vendor")).unwrap_or_default(),
                device: self.quiet(&format!("{base}/device")).unwrap_or_default(),
                class: self.quiet(&format!("{base}/class")).unwrap_or_default(),
                slot,
            });
        }
        out
    }

    fn system(&mut self) -> System {
        if !strata_fs::exists(&self.root.join("sys/class/dmi/id")) {
            self.warnings
                .push("/sys/class/dmi/id: missing (no DMI data)".into());
            return System::default();
        }
        let get = |r: &Self, f: &str| {
            r.quiet(&format!("sys/class/dmi/id/{f}"))
                .unwrap_or_default()
        };
        System {
            vendor: get(self, "sys_vendor"),
            product: get(self, "product_name"),
            serial: get(self, "product_serial"),
            uuid: get(self, "product_uuid"),
        }
    }

    fn os(&mut self) -> Os {
        let Some(text) = self
            .text("etc/os-release")
            .or_else(|| self.quiet("usr/lib/os-release"))
        else {
            return Os::default();
        };
        let get = |key: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
                .map(|v| v.trim_matches('"').to_string())
                .unwrap_or_default()
        };
        Os {
            id: get("ID"),
            version_id: get("VERSION_ID"),
            pretty_name: get("PRETTY_NAME"),
        }
    }
}
