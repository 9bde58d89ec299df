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
use crate::{
    CLOCK_TOLERANCE, MAX_MANIFEST, MAX_METADATA, Role, Root, RootSet, SnapshotError, UnixTime,
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
        let pinned = self.pinned()?;
        let (root, root_bytes) = roots.verify(pinned.as_deref())?;
        let opened = envelope::open(manifest, "the manifest", MANIFEST_TYPE, MAX_MANIFEST)?;
        if !root
            .keys_for(Role::Signing)
            .iter()
            .any(|k| opened.signed_by(k))
        {
            return Err(SnapshotError::Unsigned {
                what: "the manifest".into(),
                role: "signing",
                keys: opened.signers().into_iter().map(|k| k.0).collect(),
            });
        }
        let hash = Hash::of(opened.payload());
        let m = Manifest::parse(opened.payload())?;
        if m.site != root.site {
            return Err(SnapshotError::OtherSite {
                got: m.site,
                want: root.site,
            });
        }
        let floors = self.floors()?;
        let newest = floors.newest_created.max(m.created);
        if now + CLOCK_TOLERANCE < newest {
            return Err(SnapshotError::ClockBehind { by: newest - now });
        }
        if m.expires + CLOCK_TOLERANCE < now {
            return Err(SnapshotError::Expired {
                what: "the manifest".into(),
                ago: now - m.expires,
            });
        }
        if let Some(floor) = floors.environments.get(&m.environment) {
            if m.version < floor.version {
                return Err(SnapshotError::Replay {
                    what: "the manifest".into(),
                    environment: m.environment,
                    version: m.version,
                    floor: floor.version,
                });
            }
            if m.version == floor.version && hash != floor.hash {
                return Err(SnapshotError::Forked {
                    what: "the manifest".into(),
                    environment: m.environment,
                    version: m.version,
                });
            }
        }
        Ok(Verified {
            manifest: m,
            hash,
            root,
            root_bytes,
        })
    }

    /// Pins the manifest's root and raises the environment's floor to it, durably: done
    /// before the manifest is applied, so a crash never lets an older one in again.
    pub fn record(&self, v: &Verified) -> Result<(), SnapshotError> {
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
        let bytes = serde_json::to_vec_pretty(&floors).expect("floors serialize");
        strata_fs::write_durable(&self.dir.join("floors.json"), &bytes)?;
        Ok(())
    }
}
