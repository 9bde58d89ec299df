//! Who a secret is for: its selectors (`web1`, `group:G`, `role:R`, `env:E`) resolved
//! against the site as it is now, each node with its recorded `[keys] age`, plus the
//! site's `[secrets] admins`; and how that differs from what `secrets/NAME.toml` says it
//! was encrypted to.

use std::collections::BTreeMap;
use std::fmt;

use age::x25519::Recipient;
use strata_core::Site;
use strata_types::NodeName;

use crate::{SecretError, SecretMeta, fingerprint, parse_recipient};

/// One `--to`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// A node by name.
    Node(String),
    /// The members of a group (nested groups included).
    Group(String),
    /// The nodes that have a role (any version), from their file or their groups.
    Role(String),
    /// The nodes of an environment.
    Env(String),
}

impl Selector {
    /// Parses `NODE`, `group:G`, `role:R` or `env:E`.
    pub fn parse(s: &str) -> Result<Selector, SecretError> {
        let bad = |reason: &str| SecretError::Selector {
            selector: s.to_string(),
            reason: reason.to_string(),
        };
        let sel = match s.split_once(':') {
            Some(("group", g)) => Selector::Group(g.to_string()),
            Some(("role", r)) => Selector::Role(r.to_string()),
            Some(("env", e)) => Selector::Env(e.to_string()),
            Some(_) => return Err(bad("expected NODE, group:G, role:R or env:E")),
            None => Selector::Node(s.to_string()),
        };
        match &sel {
            Selector::Group(x) | Selector::Role(x) | Selector::Env(x) if x.is_empty() => {
                Err(bad("the name after `:` is missing"))
            }
            _ => Ok(sel),
        }
    }

    /// The nodes it selects, in the site's order.
    fn nodes(&self, site: &Site, text: &str) -> Result<Vec<NodeName>, SecretError> {
        let bad = |reason: String| SecretError::Selector {
            selector: text.to_string(),
            reason,
        };
        let all = site.nodes().map_err(|mut e| e.0.remove(0))?;
        let mut out = Vec::new();
        match self {
            Selector::Node(n) => {
                let name = NodeName::parse(n).map_err(|e| bad(e.to_string()))?;
                if !site.knows_node(&name) {
                    return Err(bad(format!("no node is named `{n}`")));
                }
                out.push(name);
            }
            Selector::Group(g) => {
                out = site
                    .group_members(g)
                    .ok_or_else(|| bad(format!("no group is named `{g}`")))?;
            }
            Selector::Role(r) => {
                for n in all {
                    if site.membership(&n)?.roles.contains(r) {
                        out.push(n);
                    }
                }
            }
            Selector::Env(e) => {
                for n in all {
                    if site.membership(&n)?.environment == *e {
                        out.push(n);
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The keys a secret is to be encrypted to.
#[derive(Debug, Clone, Default)]
pub struct Recipients {
    /// Each node and its public key.
    pub nodes: BTreeMap<String, String>,
    /// The admins' public keys.
    pub admins: Vec<String>,
}

impl Recipients {
    /// Every key, parsed.
    pub fn keys(&self) -> Result<Vec<Recipient>, SecretError> {
        let nodes = self
            .nodes
            .iter()
            .map(|(n, k)| parse_recipient(&format!("node {n} ([keys] age)"), k));
        let admins = (self.admins.iter()).map(|k| parse_recipient("[secrets] admins", k));
        nodes.chain(admins).collect()
    }

    /// What `secrets/NAME.toml` records of them.
    pub fn meta(&self, to: &[String]) -> SecretMeta {
        SecretMeta {
            to: to.to_vec(),
            admins: self.admins.iter().map(|k| fingerprint(k)).collect(),
            recipients: (self.nodes.iter())
                .map(|(n, k)| (n.clone(), fingerprint(k)))
                .collect(),
        }
    }
}

/// Resolves selectors against the site: every node they select must have its age key
/// recorded (the error names the first that has none, and how to get it).
pub fn resolve(site: &Site, to: &[String]) -> Result<Recipients, SecretError> {
    let mut out = Recipients::default();
    for text in to {
        for node in Selector::parse(text)?.nodes(site, text)? {
            let reach = site.node_reach(node.as_str())?;
            let key = reach.age.ok_or_else(|| SecretError::NoKey {
                node: node.to_string(),
            })?;
            parse_recipient(&format!("node {node} ([keys] age)"), &key)?;
            out.nodes.insert(node.to_string(), key);
        }
    }
    for k in &site.secrets.admins {
        parse_recipient("[secrets] admins", k)?;
        out.admins.push(k.clone());
    }
    Ok(out)
}

/// How a secret's recipients differ from what it was encrypted to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stale {
    /// Nodes selected now that it is not encrypted to.
    pub added: Vec<String>,
    /// Nodes it is encrypted to that are no longer selected.
    pub removed: Vec<String>,
    /// Nodes whose key changed since.
    pub rekeyed: Vec<String>,
    /// Whether `[secrets] admins` changed since.
    pub admins: bool,
}

impl Stale {
    /// Whether nothing differs.
    pub fn is_empty(&self) -> bool {
        *self == Stale::default()
    }
}

/// `+web9 −web3 ~web1 (new key) admins changed`.
impl fmt::Display for Stale {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = Vec::new();
        parts.extend(self.added.iter().map(|n| format!("+{n}")));
        parts.extend(self.removed.iter().map(|n| format!("\u{2212}{n}")));
        parts.extend(self.rekeyed.iter().map(|n| format!("~{n} (new key)")));
        if self.admins {
            parts.push("[secrets] admins changed".into());
        }
        f.write_str(&parts.join(" "))
    }
}

/// Compares what `meta` records with `now` (the selectors resolved today).
pub fn stale(meta: &SecretMeta, now: &Recipients) -> Stale {
    let want = now.meta(&meta.to);
    let mut out = Stale::default();
    for (node, fp) in &want.recipients {
        match meta.recipients.get(node) {
            None => out.added.push(node.clone()),
            Some(had) if had != fp => out.rekeyed.push(node.clone()),
            Some(_) => {}
        }
    }
    out.removed = (meta.recipients.keys())
        .filter(|n| !want.recipients.contains_key(*n))
        .cloned()
        .collect();
    let (mut a, mut b) = (want.admins, meta.admins.clone());
    a.sort();
    b.sort();
    out.admins = a != b;
    out
}
