//! What a node's page shows beside its runs, from what the inventory holds: a summary of
//! its facts (as it sent them at enrollment), its hardware classification, the
//! generations its reports recorded with their site revisions, and the drift they found.

use serde::{Deserialize, Serialize};

use crate::inventory::RunReport;

/// The generations a node's page lists, newest first.
pub const GENERATIONS: usize = 20;

/// One line of a node's facts summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fact {
    /// `hostname`, `os`, `product`, `cpu`, `memory`, `disks`, `network`, `pci`.
    pub name: String,
    /// Its value, as text.
    pub value: String,
}

/// A generation a report recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Generation {
    /// Its number on the node.
    pub generation: u64,
    /// The site revision it applied.
    pub revision: String,
    /// The snapshot's version.
    pub version: u64,
    /// When its run ended.
    pub time: u64,
    /// The run that recorded it.
    pub run: i64,
}

/// The drift a node's reports found.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Drift {
    /// Whether its last run found drift.
    pub last: bool,
    /// How many of its runs found drift.
    pub runs: usize,
    /// The last run that found drift: its id and when it ended.
    pub latest: Option<(i64, u64)>,
}

/// The summary of facts sent as `strata facts --tuples` prints them (an array of
/// `[category, item, attribute, value]`); nothing for anything else.
pub fn facts_summary(text: &str) -> Vec<Fact> {
    let Ok(tuples) = serde_json::from_str::<Vec<[String; 4]>>(text) else {
        return Vec::new();
    };
    let find = |c: &str, i: &str, a: &str| {
        tuples
            .iter()
            .find(|t| t[0] == c && t[1] == i && t[2] == a)
            .map(|t| t[3].as_str())
            .filter(|v| !v.is_empty())
    };
    let each = |c: &str, a: &str| -> Vec<(&str, &str)> {
        tuples
            .iter()
            .filter(|t| t[0] == c && t[2] == a)
            .map(|t| (t[1].as_str(), t[3].as_str()))
            .collect()
    };
    let mut out = Vec::new();
    let mut add = |name: &str, value: String| {
        if !value.trim().is_empty() {
            out.push(Fact {
                name: name.into(),
                value,
            });
        }
    };
    add(
        "hostname",
        find("system", "hostname", "name")
            .unwrap_or_default()
            .into(),
    );
    add(
        "os",
        [find("system", "os", "id"), find("system", "os", "version")]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(" "),
    );
    add(
        "product",
        [
            find("system", "product", "vendor"),
            find("system", "product", "name"),
        ]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" "),
    );
    if let Some(model) = find("cpu", "physical_0", "product") {
        let threads = find("cpu", "logical", "number").unwrap_or("?");
        add("cpu", format!("{model}, {threads} threads"));
    }
    let memory = find("memory", "total", "size").and_then(|m| m.parse::<u64>().ok());
    if let Some(bytes) = memory.filter(|b| *b > 0) {
        add("memory", format!("{} MiB", bytes >> 20));
    }
    add(
        "disks",
        each("disk", "size")
            .iter()
            .map(|(d, gb)| format!("{d} {gb} GB"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    add(
        "network",
        each("network", "ipv4")
            .iter()
            .map(|(n, ip)| format!("{n} {ip}"))
            .collect::<Vec<_>>()
            .join(", "),
    );
    let pci = each("pci", "class").len();
    if pci > 0 {
        add("pci", format!("{pci} devices"));
    }
    out
}

/// The generations a node's reports (oldest first) recorded, newest first, each once.
pub fn generations(reports: &[RunReport]) -> Vec<Generation> {
    let mut out: Vec<Generation> = Vec::new();
    for r in reports.iter().rev() {
        let Some(generation) = r.generation else {
            continue;
        };
        if out.iter().any(|g| g.generation == generation) {
            continue;
        }
        out.push(Generation {
            generation,
            revision: r.revision.clone(),
            version: r.version,
            time: r.time,
            run: r.id,
        });
        if out.len() == GENERATIONS {
            break;
        }
    }
    out
}

/// The drift a node's reports (oldest first) found.
pub fn drift(reports: &[RunReport]) -> Drift {
    Drift {
        last: reports.last().is_some_and(|r| r.drift),
        runs: reports.iter().filter(|r| r.drift).count(),
        latest: reports
            .iter()
            .rev()
            .find(|r| r.drift)
            .map(|r| (r.id, r.time)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_are_summed_up_and_anything_else_is_nothing() {
        let text = serde_json::json!([
            ["system", "hostname", "name", "web1"],
            ["system", "os", "id", "debian"],
            ["system", "os", "version", "13"],
            ["cpu", "physical_0", "product", "Xeon"],
            ["cpu", "logical", "number", "8"],
            ["memory", "total", "size", "17179869184"],
            ["disk", "sda", "size", "500"],
            ["disk", "sdb", "size", "1000"],
            ["network", "eth0", "ipv4", "10.0.0.5"],
            ["pci", "00:01.0", "class", "0600"]
        ])
        .to_string();
        let facts: Vec<String> = facts_summary(&text)
            .into_iter()
            .map(|f| format!("{}={}", f.name, f.value))
            .collect();
        assert_eq!(
            facts,
            [
                "hostname=web1",
                "os=debian 13",
                "cpu=Xeon, 8 threads",
                "memory=16384 MiB",
                "disks=sda 500 GB, sdb 1000 GB",
                "network=eth0 10.0.0.5",
                "pci=1 devices"
            ]
        );
        assert!(facts_summary("not json").is_empty());
        assert!(facts_summary("{\"a\": 1}").is_empty());
    }
}
