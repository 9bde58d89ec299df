//! `publish --gc`: each environment keeps its last versions; a blob goes only when no
//! kept manifest of any environment lists it.
//!
//! Safe for readers: an agent that read timestamp N finds manifest N and its blobs,
//! because the current version and the ones before it are kept, and so is every version
//! above the current one (a publish between its manifest and its timestamp). Manifests
//! go before blobs, so an interrupted collection leaves only unreferenced blobs behind,
//! which the next one takes. Not safe against a publish of the same bucket running at the
//! same moment: a publisher that found a blob already there may name it in a manifest
//! this collection did not see yet; agents then meet a missing blob, re-apply what they
//! have ("retry later") and the next publish writes it again.

use std::collections::{BTreeMap, BTreeSet};

use strata_snapshot::{MAX_MANIFEST, MAX_METADATA, Manifest, Root, SnapshotError, Timestamp};

use crate::{Storage, StorageError, timestamp_key};

/// What a collection removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct GcReport {
    /// Manifests deleted, as `env/E/N.json`.
    pub manifests: Vec<String>,
    /// Blobs deleted.
    pub blobs: usize,
    /// Versions kept, per environment.
    pub kept: BTreeMap<String, Vec<u64>>,
}

/// Why a collection stopped.
#[derive(Debug, thiserror::Error)]
pub enum GcError {
    /// The bucket failed.
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// A kept manifest cannot be read: its blobs are unknown, so none is deleted.
    #[error("{key} cannot be read, so no blob was deleted: {source}")]
    Manifest {
        /// The manifest's key.
        key: String,
        /// Why.
        #[source]
        source: SnapshotError,
    },
}

/// The versions of each environment: `env/<E>/<N>.json`.
fn versions(store: &dyn Storage) -> Result<BTreeMap<String, BTreeSet<u64>>, StorageError> {
    let mut out: BTreeMap<String, BTreeSet<u64>> = BTreeMap::new();
    for key in store.list("env/")? {
        let parts: Vec<&str> = key.split('/').collect();
        let [_, env, file] = parts[..] else { continue };
        let entry = out.entry(env.to_string()).or_default();
        if let Some(v) = file.strip_suffix(".json").and_then(|v| v.parse().ok()) {
            entry.insert(v);
        }
    }
    Ok(out)
}

/// Which versions of one environment stay: every one above `current` (a publish in
/// flight), then the `keep` newest up to and including it.
fn kept(all: &BTreeSet<u64>, current: u64, keep: usize) -> BTreeSet<u64> {
    let above = all.range(current.saturating_add(1)..).copied();
    let upto = all.range(..=current).rev().take(keep).copied();
    above.chain(upto).collect()
}

/// Deletes the manifests beyond each environment's last `keep` versions (at least 2: the
/// current one and the one before it), then the blobs no kept manifest lists. The current
/// version is the timestamp's, read with `root`; an environment whose timestamp is
/// missing or unreadable keeps everything.
pub fn collect(store: &dyn Storage, root: &Root, keep: usize) -> Result<GcReport, GcError> {
    let keep = keep.max(2);
    let mut report = GcReport::default();
    let mut needed: BTreeSet<String> = BTreeSet::new();
    let mut doomed = Vec::new();
    for (env, all) in versions(store)? {
        let current = match store.get(&timestamp_key(&env), MAX_METADATA as u64)? {
            Some(bytes) => Timestamp::open_signed(root, &bytes).map_or(0, |t| t.version),
            None => 0,
        };
        let stay = if current == 0 {
            all.clone()
        } else {
            kept(&all, current, keep)
        };
        for &v in &stay {
            let key = crate::manifest_key(&env, v);
            // Gone since the listing (another collection): nothing of it to keep.
            let Some(bytes) = store.get(&key, MAX_MANIFEST as u64)? else {
                continue;
            };
            let m = Manifest::open_signed(root, &bytes)
                .map_err(|source| GcError::Manifest { key, source })?;
            needed.extend(m.files.iter().map(|e| e.blake3.to_string()));
        }
        doomed.extend(all.difference(&stay).map(|&v| crate::manifest_key(&env, v)));
        report.kept.insert(env, stay.into_iter().collect());
    }
    for key in doomed {
        store.delete(&key)?;
        report.manifests.push(key);
    }
    for key in store.list("blobs/")? {
        let Some(hash) = key.rsplit('/').next() else {
            continue;
        };
        let is_blob = hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_hexdigit());
        if is_blob && crate::blob_key(hash) == key && !needed.contains(hash) {
            store.delete(&key)?;
            report.blobs += 1;
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_current_version_the_ones_before_and_those_in_flight_stay() {
        let all: BTreeSet<u64> = [1, 2, 3, 5, 8, 13, 21, 34].into();
        assert_eq!(kept(&all, 34, 5), [5, 8, 13, 21, 34].into());
        // 34 is a publish between its manifest and its timestamp.
        assert_eq!(kept(&all, 21, 5), [3, 5, 8, 13, 21, 34].into());
        assert_eq!(kept(&all, 21, 1), [21, 34].into());
        assert_eq!(kept(&all, 100, 3), [13, 21, 34].into());
    }
}
