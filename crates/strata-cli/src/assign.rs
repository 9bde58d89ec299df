//! The operator's side of a node's assignment (FLEET.md, "One engine, one unit of
//! delivery"): a pushed node's facts classified against the site's hardware profiles,
//! pools allocated in the operator's database (`[fleet] db`) once, and the result signed
//! for that node alone.

use std::sync::Mutex;

use strata_hardware::{Allocate, ClassifyError, Hardware};
use strata_snapshot::{Assignment, Classified, KeyPair, UnixTime};
use strata_transport::push::{Assign, NodeJob};

/// Makes the signed assignments of one push.
#[derive(Debug)]
pub struct Assigner {
    /// The site's name.
    pub site: String,
    /// Its profiles and pools.
    pub hardware: Hardware,
    /// The allocation database: a SQLite file or a `postgres://` URL.
    pub db: String,
    /// Whether allocations are kept (an apply) or only looked up (`--noop`).
    pub allocate: Allocate,
    /// The signing key.
    pub key: KeyPair,
    /// The push's one reading of the clock: each assignment's creation.
    pub now: UnixTime,
    /// How long an assignment is trusted, in seconds (as long as the manifest).
    pub lifetime: u64,
    /// The version of the manifests sent with it: the oldest it may be used with, and
    /// each assignment's version.
    pub min_snapshot_version: u64,
    /// One classification at a time: the store allocates in its own transactions, and
    /// one at a time keeps a pool's order the nodes' order.
    pub one: Mutex<()>,
}

impl Assign for Assigner {
    fn assign(&self, node: &NodeJob, facts: &[u8]) -> Result<Option<Vec<u8>>, String> {
        let tuples: Vec<[String; 4]> = serde_json::from_slice(facts)
            .map_err(|e| format!("the node's facts are not `strata facts --tuples`: {e}"))?;
        let _one = self.one.lock().map_err(|_| "a classification panicked")?;
        let mut store = strata_hardware::open_for(&self.db, self.allocate)
            .map_err(|e| format!("the allocation database: {e}"))?;
        let c =
            match strata_hardware::classify(&self.hardware, &tuples, store.as_mut(), self.allocate)
            {
                Ok((c, _)) => c,
                // Every pushed node is named by the site itself, so it needs no profile.
                Err(ClassifyError::NoProfile(_)) => return Ok(None),
                Err(e) => return Err(e.to_string()),
            };
        let assignment = Assignment {
            kind: "assignment".into(),
            site: self.site.clone(),
            node: node.endpoint.name.clone(),
            node_key: None,
            environment: node.environment.clone(),
            // The push's version: one push's assignments never share a version with
            // another's (see `push_version`).
            version: self.min_snapshot_version,
            created: self.now,
            expires: self.now + self.lifetime,
            min_snapshot_version: self.min_snapshot_version,
            classification: Classified {
                machine: c.machine,
                profile: c.profile,
                role: c.role,
                vars: c.vars,
                pools: c.pools,
            },
        };
        Ok(Some(assignment.seal(&self.key)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn facts_a_node_garbled_fail_that_node_with_the_reason() {
        let assigner = Assigner {
            site: "s".into(),
            hardware: Hardware {
                profiles: Vec::new(),
                pools: Default::default(),
            },
            db: "/nonexistent/state.db".into(),
            allocate: Allocate::DryRun,
            key: KeyPair::generate(strata_snapshot::Role::Signing).unwrap(),
            now: 1,
            lifetime: 1,
            min_snapshot_version: 1,
            one: Mutex::new(()),
        };
        let node = NodeJob {
            endpoint: strata_transport::Endpoint {
                name: "web1".into(),
                host: None,
                port: None,
                user: None,
                sudo: false,
            },
            environment: "production".into(),
        };
        for garbage in [&b"{\"cpu\": 1}"[..], b"[[1, 2]]", b"\xff\xfe", b""] {
            let err = assigner.assign(&node, garbage).unwrap_err();
            assert!(err.contains("not `strata facts --tuples`"), "{err}");
        }
    }
}
