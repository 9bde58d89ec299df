//! The assignments `publish` writes to a bucket (FLEET.md, "Pull from object storage"):
//! each enrolled, accepted node that the site's hardware profiles classified gets its
//! signed assignment at `assignments/<node key id>.json`, beside the snapshot of its
//! environment, after that manifest and before its timestamp; an agent reading the
//! bucket fetches its own by its key.

use std::collections::BTreeMap;
use std::path::Path;

use strata_bucket::Storage;
use strata_snapshot::{Assignment, Classified, KeyId, KeyPair};

/// The accepted, classified nodes of the inventory, by environment: (name, key id,
/// classification).
pub type Classifieds = BTreeMap<String, Vec<(String, String, Classified)>>;

/// The key of a node's assignment in a bucket.
pub fn assignment_key(key_id: &str) -> String {
    format!("assignments/{key_id}.json")
}

/// The nodes to assign, when the site has hardware profiles and `to` is a bucket (a
/// server signs its nodes' own): read from the inventory `db` (`--db`, else the site's
/// SQLite file when there is one).
pub fn classified(site: &Path, to: &str, db: Option<&str>) -> anyhow::Result<Classifieds> {
    let mut out = Classifieds::new();
    if to.starts_with("https://") || to.starts_with("http://") {
        return Ok(out);
    }
    if crate::commands::classify::load_hardware(site)?
        .profiles
        .is_empty()
    {
        return Ok(out);
    }
    let url = crate::commands::serve::db_url(site, db);
    if db.is_none() && !strata_fs::exists(Path::new(&url)) {
        return Ok(out);
    }
    let mut inventory = strata_server::inventory::open(&url)?;
    for n in inventory.nodes(strata_snapshot::now())? {
        let Some(c) = n.classification.as_deref() else {
            continue;
        };
        if n.state != strata_server::inventory::NodeState::Accepted {
            continue;
        }
        let c: Classified = serde_json::from_str(c)
            .map_err(|e| anyhow::anyhow!("{url}: node {}'s classification: {e}", n.name))?;
        out.entry(n.environment)
            .or_default()
            .push((n.name, n.key_id, c));
    }
    Ok(out)
}

/// Writes the assignments of `env`'s nodes for its manifest `version`; how many.
pub fn write(
    store: &dyn Storage,
    nodes: &Classifieds,
    (site, env): (&str, &str),
    version: u64,
    (now, lifetime): (u64, u64),
    key: &KeyPair,
) -> anyhow::Result<usize> {
    let Some(nodes) = nodes.get(env) else {
        return Ok(0);
    };
    for (name, key_id, classification) in nodes {
        let a = Assignment {
            kind: "assignment".into(),
            site: site.to_string(),
            node: name.clone(),
            node_key: Some(KeyId(key_id.clone())),
            environment: env.to_string(),
            // The manifest's version: above the last publish's, so it only goes up.
            version,
            created: now,
            expires: now + lifetime,
            min_snapshot_version: version,
            classification: classification.clone(),
        };
        store.put(&assignment_key(key_id), &a.seal(key))?;
    }
    Ok(nodes.len())
}
