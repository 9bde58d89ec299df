//! The node's side of trust: the root it pinned, its version floor per environment and
//! the newest creation time it trusted, under `<root>/var/lib/strata/trust/`; a manifest
//! is checked against them before it is parsed, and they are raised (fsynced) before the
//! manifest is applied.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_types::Hash;

use crate::envelope;
use crate::manifest::{MANIFEST_TYPE, Manifest};
use crate::timestamp::Timestamp;
use crate::{
    Assignment, CLOCK_TOLERANCE, KeyId, MAX_MANIFEST, MAX_METADATA, Role, Root, RootSet,
    SnapshotError, UnixTime,
};

/// What a node last trusted for one environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Floor {
    /// The manifest's version: nothing older is accepted.
    pub version: u64,
    /// The blake3 of its payload: the same version with other content is refused.
    pub hash: Hash,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Floors {
    environments: BTreeMap<String, Floor>,
    newest_created: UnixTime,
    /// The node's assignment: one floor, whatever its environment.
    #[serde(default)]
    assignment: Option<Floor>,
}

/// The node's trust directory.
#[derive(Debug)]
pub struct Trust {
    dir: PathBuf,
}

/// A manifest whose signature, site, times and version were checked.
#[derive(Debug)]
pub struct Verified {
    /// The manifest.
    pub manifest: Manifest,
    /// The blake3 of its payload.
    pub hash: Hash,
    /// The root that certified its key.
    pub root: Root,
    root_bytes: Vec<u8>,
    /// The envelope as received, kept for stale re-applies.
    bytes: Vec<u8>,
}

/// An assignment whose signature, node, times and version were checked against the
/// manifest it came with.
#[derive(Debug)]
pub struct VerifiedAssignment {
    /// The assignment.
    pub assignment: Assignment,
    /// The blake3 of its payload.
    pub hash: Hash,
    /// The envelope as received, kept for stale re-applies.
    bytes: Vec<u8>,
}

impl Verified {
    /// The envelope as received (what a timestamp's hash names).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }
}

impl Trust {
    /// The trust directory of the node whose state is in `state` (`<root>/var/lib/strata`).
    pub fn open(state: &Path) -> Trust {
        Trust {
            dir: state.join("trust"),
        }
    }

    /// The bytes of the pinned root, if the node trusts one.
    pub fn pinned(&self) -> Result<Option<Vec<u8>>, SnapshotError> {
        let path = self.dir.join("root.json");
        if !strata_fs::exists(&path) {
            return Ok(None);
        }
        Ok(Some(strata_fs::read_sized_file(&path, MAX_METADATA)?))
    }

    fn floors(&self) -> Result<Floors, SnapshotError> {
        let path = self.dir.join("floors.json");
        if !strata_fs::exists(&path) {
            return Ok(Floors::default());
        }
        let bytes = strata_fs::read_sized_file(&path, MAX_METADATA)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| SnapshotError::malformed(path.display().to_string(), e))
    }

    /// The floor of an environment, if the node applied one of its manifests.
    pub fn floor(&self, environment: &str) -> Result<Option<Floor>, SnapshotError> {
        Ok(self.floors()?.environments.remove(environment))
    }

    /// Checks a manifest: the root chain from what the node pins (or, with nothing pinned
    /// yet, from `root/1.json`), a signing key of that root over its exact bytes, then its
    /// site, times and version against the floors. `now` is read once by the caller.
    pub fn verify(
        &self,
        roots: &RootSet,
        manifest: &[u8],
        now: UnixTime,
    ) -> Result<Verified, SnapshotError> {
        let (root, root_bytes) = roots.verify(self.pinned()?.as_deref())?;
        let (m, hash) = open_manifest(&root, manifest)?;
        let floors = self.floors()?;
        check_times("the manifest", m.created, m.expires, now, &floors)?;
        check_floor(
            "the manifest",
            &m.environment,
            m.version,
            Some(hash),
            &floors,
        )?;
        Ok(Verified {
            manifest: m,
            hash,
            root,
            root_bytes,
            bytes: manifest.to_vec(),
        })
    }

    /// Checks the assignment that came with `manifest` (already verified): a signing or
    /// online key of the manifest's root over its exact bytes, for this node (`node`,
    /// whose own key is `node_key`) and the manifest's site and environment, in date, and
    /// not older than the node's assignment floor.
    pub fn verify_assignment(
        &self,
        manifest: &Verified,
        bytes: &[u8],
        node: &str,
        node_key: Option<&KeyId>,
        now: UnixTime,
    ) -> Result<VerifiedAssignment, SnapshotError> {
        let what = "the assignment";
        let (a, hash) = Assignment::open(&manifest.root, bytes)?;
        a.check_for(node, node_key, &manifest.manifest)?;
        let floors = self.floors()?;
        check_times(what, a.created, a.expires, now, &floors)?;
        if let Some(floor) = &floors.assignment {
            if a.version < floor.version {
                return Err(SnapshotError::Replay {
                    what: what.into(),
                    environment: a.environment,
                    version: a.version,
                    floor: floor.version,
                });
            }
            if a.version == floor.version && hash != floor.hash {
                return Err(SnapshotError::Forked {
                    what: what.into(),
                    environment: a.environment,
                    version: a.version,
                });
            }
        }
        Ok(VerifiedAssignment {
            assignment: a,
            hash,
            bytes: bytes.to_vec(),
        })
    }

    /// The assignment last applied, checked again against the pinned root and the last
    /// applied manifest but not against the clock (a stale re-apply).
    pub fn last_assignment(
        &self,
        manifest: &Verified,
        node: &str,
    ) -> Result<Option<VerifiedAssignment>, SnapshotError> {
        let path = self.dir.join("assignment.json");
        if !strata_fs::exists(&path) {
            return Ok(None);
        }
        let bytes = strata_fs::read_sized_file(&path, MAX_METADATA)?;
        let (a, hash) = Assignment::open(&manifest.root, &bytes)?;
        a.check_for(node, a.node_key.as_ref(), &manifest.manifest)?;
        Ok(Some(VerifiedAssignment {
            assignment: a,
            hash,
            bytes,
        }))
    }

    /// Checks an environment's timestamp as [`Trust::verify`] checks a manifest; it may
    /// be signed by a signing key (`publish`) or the online key (`serve`).
    pub fn verify_timestamp(
        &self,
        roots: &RootSet,
        bytes: &[u8],
        now: UnixTime,
    ) -> Result<Timestamp, SnapshotError> {
        let (root, _) = roots.verify(self.pinned()?.as_deref())?;
        let what = "the timestamp";
        let t = Timestamp::open_signed(&root, bytes)?;
        let floors = self.floors()?;
        check_times(what, t.created, t.expires, now, &floors)?;
        check_floor(what, &t.environment, t.version, None, &floors)?;
        Ok(t)
    }

    /// The manifest last applied, checked again against the pinned root but not against
    /// the clock: what an agent enforces while newer metadata cannot be had ("stale").
    pub fn last_applied(&self) -> Result<Option<Verified>, SnapshotError> {
        let path = self.dir.join("manifest.json");
        let Some(pinned) = self.pinned()? else {
            return Ok(None);
        };
        if !strata_fs::exists(&path) {
            return Ok(None);
        }
        let bytes = strata_fs::read_sized_file(&path, MAX_MANIFEST)?;
        let (root, root_bytes) = RootSet(vec![]).verify_pinned(&pinned)?;
        let (manifest, hash) = open_manifest(&root, &bytes)?;
        Ok(Some(Verified {
            manifest,
            hash,
            root,
            root_bytes,
            bytes,
        }))
    }

    /// Pins the manifest's root and raises the environment's floor to it (and the
    /// assignment's floor to the assignment's), durably: done before the manifest is
    /// applied, so a crash never lets an older one in again.
    pub fn record(
        &self,
        v: &Verified,
        assignment: Option<&VerifiedAssignment>,
    ) -> Result<(), SnapshotError> {
        if self.pinned()?.as_deref() != Some(v.root_bytes.as_slice()) {
            strata_fs::write_durable(&self.dir.join("root.json"), &v.root_bytes)?;
        }
        let mut floors = self.floors()?;
        let m = &v.manifest;
        floors.newest_created = floors.newest_created.max(m.created);
        floors.environments.insert(
            m.environment.clone(),
            Floor {
                version: m.version,
                hash: v.hash,
            },
        );
        if let Some(a) = assignment {
            floors.newest_created = floors.newest_created.max(a.assignment.created);
            floors.assignment = Some(Floor {
                version: a.assignment.version,
                hash: a.hash,
            });
        }
        let bytes = serde_json::to_vec_pretty(&floors).expect("floors serialize");
        strata_fs::write_durable(&self.dir.join("floors.json"), &bytes)?;
        strata_fs::write_durable(&self.dir.join("manifest.json"), &v.bytes)?;
        let kept = self.dir.join("assignment.json");
        match assignment {
            Some(a) => strata_fs::write_durable(&kept, &a.bytes)?,
            None if strata_fs::exists(&kept) => strata_fs::remove_file(&kept)?,
            None => {}
        }
        Ok(())
    }
}

/// A manifest envelope signed by a signing key of `root`, parsed, for `root`'s site; with
/// the blake3 of its payload. What `serve` checks of a manifest published to it.
pub fn open_manifest(root: &Root, bytes: &[u8]) -> Result<(Manifest, Hash), SnapshotError> {
    let what = "the manifest";
    let opened = envelope::open(bytes, what, MANIFEST_TYPE, MAX_MANIFEST)?;
    if !root
        .keys_for(Role::Signing)
        .iter()
        .any(|k| opened.signed_by(k))
    {
        return Err(unsigned(what, "signing", &opened));
    }
    let hash = Hash::of(opened.payload());
    let m = Manifest::parse(opened.payload())?;
    if m.site != root.site {
        return Err(SnapshotError::OtherSite {
            got: m.site,
            want: root.site.clone(),
        });
    }
    Ok((m, hash))
}

fn unsigned(what: &str, role: &'static str, opened: &envelope::Opened) -> SnapshotError {
    SnapshotError::Unsigned {
        what: what.into(),
        role,
        keys: opened.signers().into_iter().map(|k| k.0).collect(),
    }
}

/// The clock against a document's creation and expiry, with [`CLOCK_TOLERANCE`].
fn check_times(
    what: &str,
    created: UnixTime,
    expires: UnixTime,
    now: UnixTime,
    floors: &Floors,
) -> Result<(), SnapshotError> {
    let newest = floors.newest_created.max(created);
    if now + CLOCK_TOLERANCE < newest {
        return Err(SnapshotError::ClockBehind { by: newest - now });
    }
    if expires + CLOCK_TOLERANCE < now {
        return Err(SnapshotError::Expired {
            what: what.into(),
            ago: now - expires,
        });
    }
    Ok(())
}

/// A version against the environment's floor: never below; equal only with the same
/// content (when the content's hash is known).
fn check_floor(
    what: &str,
    environment: &str,
    version: u64,
    hash: Option<Hash>,
    floors: &Floors,
) -> Result<(), SnapshotError> {
    let Some(floor) = floors.environments.get(environment) else {
        return Ok(());
    };
    if version < floor.version {
        return Err(SnapshotError::Replay {
            what: what.into(),
            environment: environment.into(),
            version,
            floor: floor.version,
        });
    }
    if version == floor.version && hash.is_some_and(|h| h != floor.hash) {
        return Err(SnapshotError::Forked {
            what: what.into(),
            environment: environment.into(),
            version,
        });
    }
    Ok(())
}
