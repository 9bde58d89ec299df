//! `[[download]]`: files strata fetches itself (HTTPS through rustls), pinned by their
//! SHA-256. The content is checked before anything uses it, kept in a cache on the machine
//! running strata, and committed through the content store like any file, so rollback
//! needs no network. A plan needs none either: a target that already holds the pinned
//! content, or a cached copy, gives the real file; otherwise the plan says the file will be
//! fetched at apply.

use std::collections::{BTreeMap, HashMap};
use std::io::Read;

use sha2::{Digest, Sha256};
use strata_core::{Catalog, ResourceKind, UserDb};
use strata_fs::Root;
use strata_types::{Entry, Hash, Snapshot, TargetPath};

use crate::{EngineError, steps};

/// The downloads of a catalog as desired entries.
#[derive(Debug, Default)]
pub struct Downloads {
    /// One entry per download.
    pub entries: Vec<Entry>,
    /// Their contents.
    pub contents: HashMap<Hash, Vec<u8>>,
    /// Paths whose content is not here yet (a plan without a cached copy), with the URL.
    pub pending: BTreeMap<TargetPath, String>,
}

/// Largest download kept in memory.
const LIMIT: u64 = 4 << 30;

/// Finds each download's content: on the target, in the cache, or (when `fetch`) from
/// its URL.
pub fn resolve(
    catalog: &Catalog,
    root: &Root,
    users: &UserDb,
    fetch: bool,
) -> Result<Downloads, EngineError> {
    let mut out = Downloads::default();
    if !catalog
        .resources
        .iter()
        .any(|r| matches!(r.kind, ResourceKind::Download { .. }))
    {
        return Ok(out);
    }
    let cache = steps::cache_base().join("downloads");
    for r in &catalog.resources {
        let ResourceKind::Download { url, sha256 } = &r.kind else {
            continue;
        };
        let (uid, gid) = r.ids(users).map_err(strata_core::SiteErrors::from)?;
        let cached = cache.join(sha256);
        let on_target = match root.inspect(&r.path)? {
            Snapshot::File { .. } => root.read(&r.path)?.filter(|b| sha256_hex(b) == *sha256),
            _ => None,
        };
        let bytes = match on_target {
            Some(b) => Some(b),
            None if strata_fs::exists(&cached) => {
                Some(strata_fs::read(&cached)?).filter(|b| sha256_hex(b) == *sha256)
            }
            None => None,
        };
        let bytes = match bytes {
            Some(b) => b,
            None if fetch => {
                let b = get(url).map_err(|e| {
                    EngineError::Invalid(format!(
                        "download of {url} for {} ({}) failed: {e}; nothing was written",
                        r.path, r.source
                    ))
                })?;
                let got = sha256_hex(&b);
                if got != *sha256 {
                    return Err(EngineError::Invalid(format!(
                        "download of {url} for {} ({}): its sha256 is {got}, not the declared {sha256}; nothing was written",
                        r.path, r.source
                    )));
                }
                strata_fs::write_atomic(&cached, &b)?;
                b
            }
            None => {
                out.pending.insert(r.path.clone(), url.clone());
                out.entries.push(entry(r, pending(sha256), 0, uid, gid));
                continue;
            }
        };
        let hash = Hash::of(&bytes);
        out.entries
            .push(entry(r, hash, bytes.len() as u64, uid, gid));
        out.contents.insert(hash, bytes);
    }
    Ok(out)
}

/// Stands for content not fetched yet in a plan.
fn pending(sha256: &str) -> Hash {
    Hash::of(format!("strata: not fetched yet, sha256 {sha256}").as_bytes())
}

fn entry(r: &strata_core::Resource, hash: Hash, size: u64, uid: u32, gid: u32) -> Entry {
    Entry {
        path: r.path.clone(),
        state: Snapshot::File {
            hash,
            size,
            mode: r.mode,
            uid,
            gid,
            xattrs: Default::default(),
        },
        replace: true,
        implicit: false,
        sensitive: false,
        observed: false,
        module: Some(r.module.clone()),
        source: Some(r.source.clone()),
    }
}

fn get(url: &str) -> Result<Vec<u8>, String> {
    let mut response = ureq::get(url).call().map_err(|e| e.to_string())?;
    let mut bytes = Vec::new();
    response
        .body_mut()
        .as_reader()
        .take(LIMIT)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

fn sha256_hex(bytes: &[u8]) -> String {
    strata_types::hex(&Sha256::digest(bytes))
}
