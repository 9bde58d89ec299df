//! The node's blob store (`<root>/var/lib/strata/snapshot/`): file contents by blake3,
//! received into `tmp/` and moved in only once their hash is checked; and the site tree
//! rebuilt from them, which the node compiles as `apply --site` would.

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_types::Hash;

use crate::{Entry, Manifest, SnapshotError};

/// The blob store of one node.
#[derive(Debug)]
pub struct BlobStore {
    blobs: PathBuf,
    site: PathBuf,
    tmp: PathBuf,
}

/// A site tree rebuilt from a manifest.
#[derive(Debug)]
pub struct Materialized {
    /// The site directory to compile.
    pub dir: PathBuf,
    /// Files written or replaced.
    pub written: usize,
    /// Files removed.
    pub removed: usize,
}

/// What the site tree holds, written once it is complete (`site.json`).
#[derive(Default, Serialize, Deserialize)]
struct Built {
    files: BTreeMap<String, (Hash, bool)>,
}

impl BlobStore {
    /// The store of the node whose state is in `state` (`<root>/var/lib/strata`).
    pub fn open(state: &Path) -> BlobStore {
        BlobStore {
            blobs: state.join("snapshot/blobs"),
            site: state.join("snapshot/site"),
            tmp: state.join("tmp"),
        }
    }

    fn path(&self, hash: &Hash) -> PathBuf {
        let hex = hash.to_string();
        self.blobs.join(&hex[..2]).join(hex)
    }

    /// The blobs of `m` the store lacks, each once.
    pub fn missing(&self, m: &Manifest) -> Vec<(Hash, u64)> {
        let mut seen = BTreeSet::new();
        m.files
            .iter()
            .filter(|e| seen.insert(e.blake3) && !strata_fs::exists(&self.path(&e.blake3)))
            .map(|e| (e.blake3, e.size))
            .collect()
    }

    /// Reads exactly `size` bytes from `input` as the blob `hash`: into a private file
    /// under `tmp/`, hashed as it comes, moved into the store only if the hash matches.
    pub fn receive(
        &self,
        hash: &Hash,
        size: u64,
        input: &mut impl Read,
    ) -> Result<(), SnapshotError> {
        strata_fs::private_dir(&self.tmp)?;
        let tmp = self.tmp.join(format!("blob.{}.{hash}", std::process::id()));
        strata_fs::remove_file(&tmp)?;
        let mut file = strata_fs::create_private(&tmp)?;
        let mut hasher = blake3::Hasher::new();
        let mut left = size;
        let mut buf = vec![0u8; 64 << 10];
        let result = (|| {
            while left > 0 {
                let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
                let n = input
                    .read(&mut buf[..want])
                    .map_err(|e| strata_fs::FsError::new("receive", &tmp, e))?;
                if n == 0 {
                    return Err(SnapshotError::BadBlob {
                        hash: hash.to_string(),
                        why: format!("the stream ended {left} bytes short"),
                    });
                }
                hasher.update(&buf[..n]);
                file.write_all(&buf[..n])
                    .map_err(|e| strata_fs::FsError::new("write", &tmp, e))?;
                left -= n as u64;
            }
            let got = Hash::from_blake3(hasher.finalize());
            if got != *hash {
                return Err(SnapshotError::BadBlob {
                    hash: hash.to_string(),
                    why: format!("its content hashes to {got}"),
                });
            }
            file.sync_all()
                .map_err(|e| strata_fs::FsError::new("sync", &tmp, e))?;
            let dest = self.path(hash);
            strata_fs::private_dir(dest.parent().expect("a blob has a directory"))?;
            strata_fs::rename(&tmp, &dest)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = strata_fs::remove_file(&tmp);
        }
        result
    }

    /// Rebuilds the site tree of `m` from the store: only changed entries are written
    /// (to a temporary name, then renamed), files no longer listed are removed, and
    /// `.git/HEAD` records the revision (a detached checkout), so the generation records
    /// the snapshot's revision as a local apply records its checkout's.
    pub fn materialize(&self, m: &Manifest) -> Result<Materialized, SnapshotError> {
        let record = self.site.with_extension("json");
        let built: Built = if strata_fs::exists(&record) {
            let bytes = strata_fs::read(&record)?;
            serde_json::from_slice(&bytes).unwrap_or_default()
        } else {
            Built::default()
        };
        // Until the tree is complete again, nothing says what it holds.
        strata_fs::remove_file(&record)?;
        strata_fs::private_dir(&self.site)?;
        let mut written = 0;
        for e in &m.files {
            if built.files.get(&e.path) == Some(&(e.blake3, e.exec))
                && strata_fs::exists(&self.site.join(&e.path))
            {
                continue;
            }
            self.write_entry(e)?;
            written += 1;
        }
        let listed: BTreeSet<&str> = m.files.iter().map(|e| e.path.as_str()).collect();
        let mut removed = 0;
        for f in strata_fs::walk_files(&self.site)? {
            if f.rel != ".git/HEAD" && !listed.contains(f.rel.as_str()) {
                strata_fs::remove_file(&f.path)?;
                removed += 1;
            }
        }
        strata_fs::write_atomic(
            &self.site.join(".git/HEAD"),
            format!("{}\n", m.revision).as_bytes(),
        )?;
        let now = Built {
            files: m
                .files
                .iter()
                .map(|e| (e.path.clone(), (e.blake3, e.exec)))
                .collect(),
        };
        strata_fs::write_atomic(&record, &serde_json::to_vec(&now).expect("serializes"))?;
        Ok(Materialized {
            dir: self.site.clone(),
            written,
            removed,
        })
    }

    fn write_entry(&self, e: &Entry) -> Result<(), SnapshotError> {
        let dest = self.site.join(&e.path);
        let dir = dest.parent().expect("an entry has a directory");
        // A file standing where a directory must be (the site changed shape) goes.
        let mut d = dir;
        while d != self.site {
            if strata_fs::exists(d) && !strata_fs::is_dir(d) {
                strata_fs::remove_file(d)?;
            }
            d = d.parent().expect("inside the site");
        }
        strata_fs::private_dir(dir)?;
        let content = strata_fs::read(&self.path(&e.blake3))?;
        if Hash::of(&content) != e.blake3 {
            return Err(SnapshotError::BadBlob {
                hash: e.blake3.to_string(),
                why: "the stored copy changed".into(),
            });
        }
        let tmp = dest.with_extension("strata-tmp");
        strata_fs::write_private(&tmp, &content)?;
        strata_fs::set_mode(&tmp, if e.exec { 0o700 } else { 0o600 })?;
        if strata_fs::is_dir(&dest) {
            strata_fs::remove_dir_all(&dest)?;
        }
        strata_fs::rename(&tmp, &dest)?;
        Ok(())
    }

    /// Removes the blobs no entry of `m` names (after a successful apply).
    pub fn prune(&self, m: &Manifest) -> Result<usize, SnapshotError> {
        let keep: BTreeSet<String> = m.files.iter().map(|e| e.blake3.to_string()).collect();
        let mut removed = 0;
        for f in strata_fs::walk_files(&self.blobs)? {
            let name = f.rel.rsplit('/').next().unwrap_or_default();
            if !keep.contains(name) {
                strata_fs::remove_file(&f.path)?;
                removed += 1;
            }
        }
        Ok(removed)
    }
}
