//! The site's fleet settings (FLEET.md, "Site additions"): `[fleet]` in `strata.toml`,
//! `[ssh]` and `[keys]` in node files; how push reaches a node.

use std::time::Duration;

use serde::Deserialize;

use strata_types::NodeName;

use crate::error::SiteError;
use crate::site::Site;

/// `[fleet]` in `strata.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetSettings {
    /// Nodes pushed at once (default 10).
    pub forks: Option<usize>,
    /// How long a signed manifest is trusted (default 30 days), as `30d`, `12h`…
    #[serde(default, deserialize_with = "duration")]
    pub expires: Option<Duration>,
    /// Where pools are allocated when pushing (default `SITE/.strata/state.db`).
    pub db: Option<String>,
}

fn duration<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let s = String::deserialize(d)?;
    humantime::parse_duration(&s)
        .map(Some)
        .map_err(|e| serde::de::Error::custom(format!("{s:?} is not a duration like 30d: {e}")))
}

/// `[secrets]` in `strata.toml`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecretsSettings {
    /// Recipients who can always read and re-encrypt secrets.
    #[serde(default)]
    pub admins: Vec<String>,
}

/// `[ssh]` in a node file: how push reaches it; `~/.ssh/config` applies as well.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SshSettings {
    /// The address to connect to (default: the node's name).
    pub host: Option<String>,
    /// The port (default: ssh's own, 22 or what `~/.ssh/config` says).
    pub port: Option<u16>,
    /// The user (default: ssh's own).
    pub user: Option<String>,
    /// Run strata through `sudo -n` (for a user other than root).
    #[serde(default)]
    pub sudo: bool,
}

/// `[keys]` in a node file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeKeys {
    /// The node's public age key.
    pub age: Option<String>,
}

/// What push needs to know of one node before connecting.
#[derive(Debug, Clone)]
pub struct NodeReach {
    /// The node's name.
    pub name: String,
    /// Its environment.
    pub environment: String,
    /// How to reach it.
    pub ssh: SshSettings,
    /// Its public age key, when recorded.
    pub age: Option<String>,
}

impl Site {
    /// How to reach `name`, and its environment (without compiling it).
    pub fn node_reach(&self, name: &str) -> Result<NodeReach, SiteError> {
        let parsed = NodeName::parse(name).map_err(|e| SiteError::new(e.to_string()))?;
        let file = self.node(&parsed)?;
        let (environment, ssh, age) = match file {
            Some(f) => (
                f.value.environment.map(toml::Spanned::into_inner),
                f.value.ssh,
                f.value.keys.age,
            ),
            None => (None, SshSettings::default(), None),
        };
        Ok(NodeReach {
            name: name.to_string(),
            environment: environment.unwrap_or_else(|| self.default_environment.clone()),
            ssh,
            age,
        })
    }

    /// The names of the site's groups.
    pub fn group_names(&self) -> Vec<String> {
        self.groups.keys().cloned().collect()
    }
}

impl Site {
    /// Expands push targets, nodes or groups (nested groups in place), into nodes in
    /// order, each once. An unknown target is refused by name, with a near name when
    /// there is one, before anything connects.
    pub fn resolve_targets(&self, targets: &[String]) -> Result<Vec<String>, SiteError> {
        let nodes: Vec<String> = self
            .nodes()
            .map_err(|mut e| e.0.remove(0))?
            .into_iter()
            .map(|n| n.as_str().to_string())
            .collect();
        let mut out: Vec<String> = Vec::new();
        for t in targets {
            let members = if let Some(m) = self.group_members(t) {
                m.into_iter().map(|n| n.as_str().to_string()).collect()
            } else if nodes.contains(t) {
                vec![t.clone()]
            } else {
                let known = nodes.iter().chain(self.groups.keys()).map(String::as_str);
                return Err(SiteError::new(format!(
                    "no node or group is named `{t}`{}",
                    crate::site::candidates(known, t)
                ))
                .hint(
                    "nodes are nodes/NAME.toml or members of a group; groups are groups/NAME.toml",
                ));
            };
            for m in members {
                if !out.contains(&m) {
                    out.push(m);
                }
            }
        }
        Ok(out)
    }
}
