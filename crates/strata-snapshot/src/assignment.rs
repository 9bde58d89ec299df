//! The assignment: what only the operator or the server can decide for one node (its
//! hardware classification, its pool entries, its environment), signed beside the
//! snapshot. The node checks it against the manifest it comes with before using it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::envelope::{self, seal};
use crate::{KeyId, KeyPair, MAX_METADATA, Manifest, Role, Root, SnapshotError, UnixTime};

/// The payload type of an assignment.
pub const ASSIGNMENT_TYPE: &str = "application/vnd.strata.assignment+json";

/// A hardware classification as the operator's database made it: the profile that took
/// the machine, its role, the variables its spec captured and the pool entries it holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Classified {
    /// The machine's identity in the allocation database.
    pub machine: String,
    /// The profile.
    pub profile: String,
    /// The profile's role.
    pub role: Option<String>,
    /// Variables the profile's spec captured (`hw.<var>`).
    pub vars: BTreeMap<String, String>,
    /// Pool → the entry allocated (`hw.<pool>.<key>`).
    pub pools: BTreeMap<String, BTreeMap<String, String>>,
}

/// An assignment's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Assignment {
    /// Always `"assignment"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The site.
    pub site: String,
    /// The node it is for.
    pub node: String,
    /// The node's own key id: none for a pushed node, which SSH identifies by its host key.
    pub node_key: Option<KeyId>,
    /// The node's environment.
    pub environment: String,
    /// Only goes up, per node.
    pub version: u64,
    /// When it was signed.
    pub created: UnixTime,
    /// When it stops being trusted.
    pub expires: UnixTime,
    /// The oldest manifest version it may be used with.
    pub min_snapshot_version: u64,
    /// The classification.
    pub classification: Classified,
}

impl Assignment {
    /// Signs it into the bytes sent.
    pub fn seal(&self, key: &KeyPair) -> Vec<u8> {
        let payload = serde_json::to_vec(self).expect("an assignment serializes");
        seal(ASSIGNMENT_TYPE, &payload, &[key])
    }

    /// Checks the signature (a signing or online key of `root`, over the exact bytes) and
    /// parses; returns the assignment and the blake3 of its payload.
    pub(crate) fn open(
        root: &Root,
        bytes: &[u8],
    ) -> Result<(Assignment, strata_types::Hash), SnapshotError> {
        let opened = envelope::open(bytes, WHAT, ASSIGNMENT_TYPE, MAX_METADATA)?;
        let mut keys = root.keys_for(Role::Signing);
        keys.extend(root.keys_for(Role::Online));
        if !keys.iter().any(|k| opened.signed_by(k)) {
            return Err(SnapshotError::Unsigned {
                what: WHAT.into(),
                role: "signing or online",
                keys: opened.signers().into_iter().map(|k| k.0).collect(),
            });
        }
        let a: Assignment = serde_json::from_slice(opened.payload())
            .map_err(|e| SnapshotError::malformed(WHAT, e))?;
        if a.kind != "assignment" {
            return Err(SnapshotError::malformed(
                WHAT,
                "its type is not \"assignment\"",
            ));
        }
        if a.site != root.site {
            return Err(SnapshotError::OtherSite {
                got: a.site,
                want: root.site.clone(),
            });
        }
        Ok((a, strata_types::Hash::of(opened.payload())))
    }

    /// Why this assignment may not be used by node `node` (whose own key is `node_key`)
    /// with `manifest`, if it may not.
    pub(crate) fn check_for(
        &self,
        node: &str,
        node_key: Option<&KeyId>,
        manifest: &Manifest,
    ) -> Result<(), SnapshotError> {
        let refuse = |why: String| Err(SnapshotError::Mismatch { what: WHAT, why });
        if self.node != node {
            return refuse(format!("it is for node {:?}, not {node:?}", self.node));
        }
        if self.node_key.as_ref() != node_key {
            let name = |k: Option<&KeyId>| k.map_or("none".to_string(), |k| k.0.clone());
            return refuse(format!(
                "it is for node key {}, and this node's key is {}",
                name(self.node_key.as_ref()),
                name(node_key)
            ));
        }
        if self.environment != manifest.environment {
            return refuse(format!(
                "it is for environment {:?}, and the manifest is for {:?}",
                self.environment, manifest.environment
            ));
        }
        if manifest.version < self.min_snapshot_version {
            return refuse(format!(
                "it needs a manifest of version {} or later; this one is {}",
                self.min_snapshot_version, manifest.version
            ));
        }
        Ok(())
    }
}

const WHAT: &str = "the assignment";

#[cfg(test)]
mod tests {
    use super::*;

    fn assignment(node: &str) -> Assignment {
        Assignment {
            kind: "assignment".into(),
            site: "s".into(),
            node: node.into(),
            node_key: None,
            environment: "production".into(),
            version: 7,
            created: 100,
            expires: 200,
            min_snapshot_version: 5,
            classification: Classified {
                machine: "serial=1".into(),
                profile: "p".into(),
                role: None,
                vars: BTreeMap::new(),
                pools: BTreeMap::new(),
            },
        }
    }

    fn manifest(environment: &str, version: u64) -> Manifest {
        Manifest {
            kind: "manifest".into(),
            format: crate::manifest_format(),
            site: "s".into(),
            environment: environment.into(),
            version,
            revision: "r".into(),
            created: 100,
            expires: 200,
            key: KeyId("k".into()),
            files: Vec::new(),
        }
    }

    #[test]
    fn another_node_environment_key_or_older_manifest_is_refused() {
        let a = assignment("web1");
        a.check_for("web1", None, &manifest("production", 5))
            .unwrap();
        let err = |node: &str, key: Option<&KeyId>, m: &Manifest| {
            a.check_for(node, key, m).unwrap_err().to_string()
        };
        assert!(err("web2", None, &manifest("production", 5)).contains("node \"web1\""));
        assert!(err("web1", None, &manifest("staging", 5)).contains("environment"));
        assert!(err("web1", None, &manifest("production", 4)).contains("version 5 or later"));
        let key = KeyId("nodekey".into());
        assert!(err("web1", Some(&key), &manifest("production", 5)).contains("node key none"));
    }
}
