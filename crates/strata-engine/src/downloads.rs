//! `[[download]]`: files strata fetches itself (HTTPS through rustls), pinned by their
//! SHA-256. The content is checked before anything uses it, kept in a cache on the machine
//! running strata, and committed through the content store like any file, so rollback
//! needs no network. A plan needs none either: a target that already holds the pinned
//! content, or a cached copy, gives the real file; otherwise the plan says the file will be
//! fetched at apply.
//!
//! A body is never held in memory: it is streamed into a private file of the cache
//! (0600, in a 0700 directory), hashed as it comes, and cut at its declared `size` (or
//! [`DEFAULT_LIMIT`]); once checked it is renamed into the cache and read through a
//! read-only mapping ([`strata_fs::Mapped`]).

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::io::{Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};
use strata_core::{Catalog, Resource, ResourceKind, UserDb};
use strata_fs::{Mapped, Root};
use strata_types::{ContentSource, Entry, Hash, Snapshot, TargetPath};

use crate::{DownloadError, EngineError};

/// The most a download without a declared `size` may be: 1 GiB. Far above a release
/// tarball or a binary a configuration fetches, and it bounds the disk an endless body
/// can fill in the cache (memory it never takes).
pub const DEFAULT_LIMIT: u64 = 1 << 30;

/// The downloads of a catalog as desired entries.
#[derive(Debug, Default)]
pub struct Downloads {
    /// One entry per download.
    pub entries: Vec<Entry>,
    /// Their contents.
    pub contents: Bodies,
    /// Paths whose content is not here yet (a plan without a cached copy), with the URL.
    pub pending: BTreeMap<TargetPath, String>,
}

/// Checked download bodies by hash, each mapped from its file in the cache.
#[derive(Debug, Default)]
pub struct Bodies(HashMap<Hash, Mapped>);

impl ContentSource for Bodies {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        self.0.get(hash).map(|m| Cow::Borrowed(&m[..]))
    }
}

/// One `[[download]]`, as the catalog declares it.
struct Wanted<'a> {
    url: &'a str,
    sha256: &'a str,
    size: Option<u64>,
    /// The target path and where it is declared, for messages.
    resource: &'a Resource,
}

impl Wanted<'_> {
    /// The most its body may be.
    fn limit(&self) -> u64 {
        self.size.unwrap_or(DEFAULT_LIMIT)
    }

    fn failed(&self, why: &str) -> EngineError {
        Box::new(DownloadError::Failed {
            url: self.url.to_string(),
            path: self.resource.path.clone(),
            source_file: self.resource.source.clone(),
            why: why.to_string(),
        })
        .into()
    }

    /// Its body is `got`, not what its sha256 pins.
    fn mismatch(&self, got: String) -> EngineError {
        Box::new(DownloadError::Mismatch {
            url: self.url.to_string(),
            path: self.resource.path.clone(),
            source_file: self.resource.source.clone(),
            got,
            sha256: self.sha256.to_string(),
        })
        .into()
    }
}

/// Finds each download's content: in `cache` (strata's cache directory), on the target,
/// or (when `fetch`) from its URL.
pub fn resolve(
    catalog: &Catalog,
    root: &Root,
    users: &UserDb,
    cache: &Path,
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
    let cache = cache.join("downloads");
    strata_fs::private_dir(&cache)?;
    for r in &catalog.resources {
        let ResourceKind::Download { url, sha256, size } = &r.kind else {
            continue;
        };
        let (uid, gid) = r.ids(users).map_err(strata_core::SiteErrors::from)?;
        let want = Wanted {
            url,
            sha256,
            size: *size,
            resource: r,
        };
        let cached = cache.join(sha256);
        let mut body = checked(&cached, sha256)?;
        if body.is_none() {
            body = from_target(root, &r.path, &want, &cache)?;
        }
        if body.is_none() && fetch {
            body = Some(get(&want, &cache)?);
        }
        let Some(body) = body else {
            out.pending.insert(r.path.clone(), url.clone());
            out.entries.push(entry(r, pending(sha256), 0, uid, gid));
            continue;
        };
        let hash = Hash::of(&body);
        out.entries
            .push(entry(r, hash, body.len() as u64, uid, gid));
        out.contents.0.insert(hash, body);
    }
    Ok(out)
}

/// The cached body at `path`, when there is one and it still has this sha256.
fn checked(path: &Path, sha256: &str) -> Result<Option<Mapped>, EngineError> {
    if !strata_fs::exists(path) {
        return Ok(None);
    }
    let body = Mapped::open(path)?;
    Ok((strata_types::hex(&Sha256::digest(&body[..])) == sha256).then_some(body))
}

/// The body from the target's own file, when it holds the pinned content: then copied
/// into the cache (streamed, hashed again on the way), so that it can be laid again
/// without network.
fn from_target(
    root: &Root,
    path: &TargetPath,
    want: &Wanted<'_>,
    cache: &Path,
) -> Result<Option<Mapped>, EngineError> {
    // A regular file of a size it may have (its metadata only: it is read below).
    match root.stat_key(path)? {
        Some(k) if k.size <= want.limit() && want.size.is_none_or(|s| s == k.size) => {}
        _ => return Ok(None),
    }
    let host = root.host_path(path);
    let unreadable = |e| EngineError::Fs(strata_fs::FsError::new("read", &host, e));
    let Some(file) = root.open_file(path)? else {
        return Ok(None);
    };
    if sha256_of(file).map_err(unreadable)? != want.sha256 {
        return Ok(None);
    }
    let Some(file) = root.open_file(path)? else {
        return Ok(None);
    };
    match keep(file, want, cache, unreadable) {
        Ok(body) => Ok(Some(body)),
        // Changed since: it will be replaced.
        Err(Kept::Other(_)) => Ok(None),
        Err(Kept::Failed(e)) => Err(e),
    }
}

/// The sha256 of what `r` reads, read through a 64 KiB buffer.
fn sha256_of(mut r: impl Read) -> std::io::Result<String> {
    let (mut buf, mut sha) = (vec![0; 1 << 16], Sha256::new());
    loop {
        match r.read(&mut buf) {
            Ok(0) => return Ok(strata_types::hex(&sha.finalize())),
            Ok(n) => sha.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Fetches the body of `want` into the cache.
fn get(want: &Wanted<'_>, cache: &Path) -> Result<Mapped, EngineError> {
    let mut response = ureq::get(want.url)
        .call()
        .map_err(|e| want.failed(&e.to_string()))?;
    if let Some(len) = response.body().content_length() {
        too_long(want, len)?;
        if let Some(size) = want.size
            && len < size
        {
            return Err(want.failed(&format!(
                "the server announces {len} bytes, less than its declared size of {size} bytes"
            )));
        }
    }
    let body = response.body_mut().as_reader();
    match keep(body, want, cache, |e| want.failed(&e.to_string())) {
        Ok(body) => Ok(body),
        Err(Kept::Other(got)) => Err(want.mismatch(got)),
        Err(Kept::Failed(e)) => Err(e),
    }
}

/// Why a body was not kept.
enum Kept {
    /// It has another sha256 (this one).
    Other(String),
    /// It could not be read or written, or is too long or too short.
    Failed(EngineError),
}

/// Streams `body` into a private file of the cache, hashing it and cutting it at its
/// limit; when it has the pinned sha256 (and declared size), renames it into the cache
/// and maps it. Whatever fails, nothing is left in the cache.
fn keep(
    body: impl Read,
    want: &Wanted<'_>,
    cache: &Path,
    read_failed: impl Fn(std::io::Error) -> EngineError,
) -> Result<Mapped, Kept> {
    let partial = cache.join(format!(".partial-{}-{}", want.sha256, std::process::id()));
    strata_fs::remove_file(&partial).map_err(|e| Kept::Failed(e.into()))?;
    let file = strata_fs::create_private(&partial).map_err(|e| Kept::Failed(e.into()))?;
    let streamed = stream(body, file, want, &partial, read_failed);
    let kept = streamed.and_then(|got| {
        if got != want.sha256 {
            return Err(Kept::Other(got));
        }
        let cached = cache.join(want.sha256);
        strata_fs::rename(&partial, &cached).map_err(|e| Kept::Failed(e.into()))?;
        Mapped::open(&cached).map_err(|e| Kept::Failed(e.into()))
    });
    if kept.is_err() {
        let _ = strata_fs::remove_file(&partial);
    }
    kept
}

/// Copies `body` into `file` through a 64 KiB buffer, hashing it; refuses more than the
/// limit (and, with a declared size, less). Returns the sha256.
fn stream(
    mut body: impl Read,
    mut file: impl Write,
    want: &Wanted<'_>,
    path: &Path,
    read_failed: impl Fn(std::io::Error) -> EngineError,
) -> Result<String, Kept> {
    let mut buf = vec![0; 1 << 16];
    let (mut total, mut sha) = (0u64, Sha256::new());
    loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Kept::Failed(read_failed(e))),
        };
        total += n as u64;
        too_long(want, total).map_err(Kept::Failed)?;
        sha.update(&buf[..n]);
        file.write_all(&buf[..n]).map_err(|e| {
            Kept::Failed(EngineError::Fs(strata_fs::FsError::new("write", path, e)))
        })?;
    }
    if let Some(size) = want.size
        && total < size
    {
        return Err(Kept::Failed(want.failed(&format!(
            "the body ended after {total} bytes, shorter than its declared size of {size} bytes"
        ))));
    }
    Ok(strata_types::hex(&sha.finalize()))
}

/// Refuses a body (or an announced length) of `len` bytes when it is past the limit.
fn too_long(want: &Wanted<'_>, len: u64) -> Result<(), EngineError> {
    if len <= want.limit() {
        return Ok(());
    }
    Err(want.failed(&match want.size {
        Some(size) => format!("the body is longer than its declared size of {size} bytes"),
        None => format!(
            "the body is longer than {} MiB, the most a download may be without a declared \
             `size` (docs/resources.md)",
            DEFAULT_LIMIT >> 20
        ),
    }))
}

/// Stands for content not fetched yet in a plan.
fn pending(sha256: &str) -> Hash {
    Hash::of(format!("strata: not fetched yet, sha256 {sha256}").as_bytes())
}

fn entry(r: &Resource, hash: Hash, size: u64, uid: u32, gid: u32) -> Entry {
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
