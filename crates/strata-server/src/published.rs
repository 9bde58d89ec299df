//! What was published to the server: the root chain, each environment's manifests and
//! the blobs they list, kept in a directory with the bucket layout `publish` writes
//! everywhere (`root/N.json`, `blobs/<2 hex>/<hash>`, `env/<E>/<version>.json`,
//! `env/<E>/timestamp.json`), and an index in memory of what each environment's recent
//! manifests list, so a node is served only blobs of its environment.
//!
//! Everything put here is checked first: a root must continue the chain the server
//! trusts, a manifest must be signed by a signing key of that root, a blob must have its
//! hash, and a release (the operator's timestamp) must name a manifest the server holds.
//! The timestamp nodes get is then the server's own, signed by its online key for a day.

use std::collections::{BTreeMap, HashSet, VecDeque};
use std::path::Path;

use strata_bucket::{Storage, blob_key, manifest_key, timestamp_key};
use strata_snapshot::{
    KeyPair, MAX_MANIFEST, MAX_METADATA, Manifest, Root, RootSet, Timestamp, open_manifest,
};
use strata_types::Hash;

mod mirror;
pub use mirror::{MIRROR_RECHECK, ServedReleases};

/// How long a timestamp the server signs is trusted (FLEET.md: a day).
pub const TIMESTAMP_LIFETIME: u64 = 24 * 3600;
/// A timestamp older than this is signed again when a node polls.
pub const TIMESTAMP_REFRESH: u64 = 12 * 3600;
/// How many versions of an environment a node may still fetch blobs of (a node that
/// polled just before a release finishes with the previous one).
const KEPT_VERSIONS: usize = 5;

/// Why something put was refused, or storage failed.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The object was refused; the reason.
    #[error("{0}")]
    Refused(String),
    /// An object that is create-only exists with other content.
    #[error("{0} exists")]
    Exists(String),
    /// The disk failed.
    #[error(transparent)]
    Storage(#[from] strata_bucket::StorageError),
}

impl From<strata_snapshot::SnapshotError> for PublishError {
    fn from(e: strata_snapshot::SnapshotError) -> PublishError {
        PublishError::Refused(e.to_string())
    }
}

/// One environment's current release.
#[derive(Debug, Clone)]
pub struct Current {
    /// The manifest's version.
    pub version: u64,
    /// The server's signed timestamp naming it.
    pub timestamp: Vec<u8>,
    /// When that timestamp was signed.
    pub signed: u64,
    /// The site revision its manifest names.
    pub revision: String,
    manifest: Hash,
}

/// The published store and its index.
#[derive(Debug)]
pub struct Published {
    store: Box<dyn Storage>,
    site: String,
    roots: RootSet,
    root: Root,
    current: BTreeMap<String, Current>,
    /// Per environment, the blobs of its last few versions.
    blobs: BTreeMap<String, VecDeque<(u64, HashSet<String>)>>,
    /// A replica's: what `publish` wrote to a shared bucket, read and never written
    /// (mirror.rs).
    mirror: Option<mirror::Mirror>,
}

impl Published {
    /// Opens the store in `dir`, trusting `roots` (the site's chain) or a longer chain
    /// already published that continues it; every environment's timestamp is signed
    /// again with `online` at `now`.
    pub fn open(
        dir: &Path,
        roots: RootSet,
        online: &KeyPair,
        now: u64,
    ) -> Result<Published, PublishError> {
        let store = strata_bucket::open(
            &format!("file://{}", dir.display()),
            &strata_bucket::S3Settings::default(),
        )?;
        let (root, root_bytes) = roots.verify(None)?;
        let mut stored = Vec::new();
        while let Some(r) = store.get(
            &format!("root/{}.json", stored.len() + 1),
            MAX_METADATA as u64,
        )? {
            stored.push(r);
        }
        let stored = RootSet(stored);
        let (roots, root) = match stored.verify(Some(&root_bytes)) {
            Ok((r, _)) if stored.0.len() > roots.0.len() => (stored, r),
            _ => {
                for (i, r) in roots.0.iter().enumerate() {
                    store.put(&format!("root/{}.json", i + 1), r)?;
                }
                (roots, root)
            }
        };
        let mut p = Published {
            store,
            site: root.site.clone(),
            roots,
            root,
            current: BTreeMap::new(),
            blobs: BTreeMap::new(),
            mirror: None,
        };
        // What was current is the server's own record: its timestamps may be signed by
        // an online key the root no longer certifies. Each manifest is checked again.
        let index: BTreeMap<String, (u64, Hash)> = p
            .store
            .get(INDEX, MAX_METADATA as u64)?
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        for (env, (version, hash)) in index {
            if valid_name(&env).is_ok()
                && let Ok(m) = p.manifest_named(&env, version, hash)
            {
                p.release(&env, &m, hash, online, now)?;
            }
        }
        Ok(p)
    }

    /// The site's name.
    pub fn site(&self) -> &str {
        &self.site
    }

    /// The root chain, as published.
    pub fn roots(&self) -> &RootSet {
        &self.roots
    }

    /// The newest trusted root.
    pub fn root(&self) -> &Root {
        &self.root
    }

    /// An environment's current release.
    pub fn current(&self, env: &str) -> Option<&Current> {
        self.current.get(env)
    }

    /// Each environment's current release's revision: (environment, revision).
    pub fn revisions(&self) -> Vec<(String, String)> {
        self.current
            .iter()
            .map(|(e, c)| (e.clone(), c.revision.clone()))
            .collect()
    }

    /// Whether the environment's timestamp is older than [`TIMESTAMP_REFRESH`] (a
    /// replica: whether the bucket was last read [`MIRROR_RECHECK`] ago or more).
    pub fn due(&self, env: &str, now: u64) -> bool {
        if let Some(m) = &self.mirror {
            return m.due(env, now);
        }
        self.current
            .get(env)
            .is_some_and(|c| now >= c.signed + TIMESTAMP_REFRESH)
    }

    /// Signs the environment's timestamp again when it is older than
    /// [`TIMESTAMP_REFRESH`]; whether it did. A replica reads the bucket again instead.
    pub fn refresh(&mut self, env: &str, online: &KeyPair, now: u64) -> Result<bool, PublishError> {
        if self.mirror.is_some() {
            return Ok(self.reload(env, now));
        }
        let Some(c) = self.current.get(env) else {
            return Ok(false);
        };
        if now < c.signed + TIMESTAMP_REFRESH {
            return Ok(false);
        }
        let (version, manifest, revision) = (c.version, c.manifest, c.revision.clone());
        self.sign_timestamp(env, (version, manifest, revision), online, now)?;
        Ok(true)
    }

    /// Whether a node of `env` may fetch this blob: one its environment's recent
    /// manifests list.
    pub fn lists_blob(&self, env: &str, hash: &str) -> bool {
        self.blobs
            .get(env)
            .is_some_and(|v| v.iter().any(|(_, set)| set.contains(hash)))
    }

    /// Whether a node of `env` may fetch this manifest version: a recent one.
    pub fn lists_version(&self, env: &str, version: u64) -> bool {
        self.blobs
            .get(env)
            .is_some_and(|v| v.iter().any(|(ver, _)| *ver == version))
    }

    /// An object's bytes (at most `limit`).
    pub fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, PublishError> {
        Ok(self.store.get(key, limit)?)
    }

    /// Whether an object is there.
    pub fn exists(&self, key: &str) -> Result<bool, PublishError> {
        Ok(self.store.exists(key)?)
    }

    /// Puts an object, checked by its kind (from its key); `create_only` refuses to
    /// replace one (`Ok(false)` when it is there already).
    pub fn put(
        &mut self,
        key: &str,
        bytes: &[u8],
        create_only: bool,
        online: &KeyPair,
        now: u64,
    ) -> Result<bool, PublishError> {
        if let Some(m) = &self.mirror {
            return Err(PublishError::Refused(format!(
                "this server serves what `publish` writes to {}: publish there",
                m.url
            )));
        }
        let parts: Vec<&str> = key.split('/').collect();
        match parts.as_slice() {
            ["root", n] => self.put_root(n, bytes),
            ["blobs", prefix, hash] => self.put_blob(prefix, hash, bytes),
            ["env", env, "timestamp.json"] => {
                valid_name(env)?;
                self.put_release(env, bytes, online, now).map(|()| true)
            }
            ["env", env, file] => {
                valid_name(env)?;
                let version = file
                    .strip_suffix(".json")
                    .and_then(|v| v.parse::<u64>().ok())
                    .ok_or_else(|| PublishError::Refused(format!("{key}: not VERSION.json")))?;
                self.put_manifest(env, version, bytes, create_only)
            }
            _ => Err(PublishError::Refused(format!(
                "{key}: not an object of the published layout"
            ))),
        }
    }

    fn put_root(&mut self, n: &str, bytes: &[u8]) -> Result<bool, PublishError> {
        let n: usize = n
            .strip_suffix(".json")
            .and_then(|v| v.parse().ok())
            .filter(|n| *n >= 1)
            .ok_or_else(|| PublishError::Refused("root/N.json: N must be 1 or more".into()))?;
        if n <= self.roots.0.len() {
            return if self.roots.0[n - 1] == bytes {
                Ok(false)
            } else {
                Err(PublishError::Refused(format!(
                    "root/{n}.json differs from the root the server trusts"
                )))
            };
        }
        if n != self.roots.0.len() + 1 {
            return Err(PublishError::Refused(format!(
                "root/{n}.json: the server has {} roots; send them in order",
                self.roots.0.len()
            )));
        }
        let mut chain = self.roots.clone();
        chain.0.push(bytes.to_vec());
        let newest = self.roots.0.last().cloned().unwrap_or_default();
        let (root, _) = chain.verify(Some(&newest))?;
        self.store.put(&format!("root/{n}.json"), bytes)?;
        self.roots = chain;
        self.root = root;
        Ok(true)
    }

    fn put_blob(&mut self, prefix: &str, hash: &str, bytes: &[u8]) -> Result<bool, PublishError> {
        let actual = Hash::of(bytes).to_string();
        if actual != hash || blob_key(hash) != format!("blobs/{prefix}/{hash}") {
            return Err(PublishError::Refused(format!(
                "blobs/{prefix}/{hash}: the content's blake3 is {actual}"
            )));
        }
        Ok(self.store.put_new(&blob_key(hash), bytes)?)
    }

    fn put_manifest(
        &mut self,
        env: &str,
        version: u64,
        bytes: &[u8],
        create_only: bool,
    ) -> Result<bool, PublishError> {
        let (m, _) = open_manifest(&self.root, bytes)?;
        if m.environment != env || m.version != version {
            return Err(PublishError::Refused(format!(
                "env/{env}/{version}.json holds {} version {}",
                m.environment, m.version
            )));
        }
        if let Some(c) = self.current.get(env).filter(|c| c.version >= version) {
            return Err(PublishError::Refused(format!(
                "{env} is at version {} already; a release must be newer",
                c.version
            )));
        }
        if let Some(e) = m.files.iter().find(|e| {
            !self
                .store
                .exists(&blob_key(&e.blake3.to_string()))
                .unwrap_or(false)
        }) {
            return Err(PublishError::Refused(format!(
                "{}: blob {} was not uploaded first",
                e.path, e.blake3
            )));
        }
        let key = manifest_key(env, version);
        if !self.store.put_new(&key, bytes)? {
            if create_only {
                return Ok(false);
            }
            return Err(PublishError::Exists(key));
        }
        Ok(true)
    }

    /// The operator's timestamp, checked: it must name a manifest the server holds,
    /// newer than the current one (or the current one again).
    fn put_release(
        &mut self,
        env: &str,
        bytes: &[u8],
        online: &KeyPair,
        now: u64,
    ) -> Result<(), PublishError> {
        let t = Timestamp::open_signed(&self.root, bytes)?;
        if t.environment != env {
            return Err(PublishError::Refused(format!(
                "the timestamp of {env} names environment {}",
                t.environment
            )));
        }
        if let Some(c) = self.current.get(env) {
            if c.version > t.version || (c.version == t.version && c.manifest != t.manifest) {
                return Err(PublishError::Refused(format!(
                    "{env} is at version {} already",
                    c.version
                )));
            }
            if c.version == t.version {
                return Ok(());
            }
        }
        let m = self.manifest_named(env, t.version, t.manifest)?;
        self.release(env, &m, t.manifest, online, now)
    }

    /// The stored manifest of `env` at `version`, checked against `hash` and the root.
    fn manifest_named(
        &self,
        env: &str,
        version: u64,
        hash: Hash,
    ) -> Result<Manifest, PublishError> {
        let bytes = self
            .store
            .get(&manifest_key(env, version), MAX_MANIFEST as u64)?
            .ok_or_else(|| {
                PublishError::Refused(format!("env/{env}/{version}.json was not uploaded first"))
            })?;
        if Hash::of(&bytes) != hash {
            return Err(PublishError::Refused(format!(
                "env/{env}/{version}.json is not the manifest the timestamp names"
            )));
        }
        Ok(open_manifest(&self.root, &bytes)?.0)
    }

    fn release(
        &mut self,
        env: &str,
        m: &Manifest,
        hash: Hash,
        online: &KeyPair,
        now: u64,
    ) -> Result<(), PublishError> {
        let kept = self.blobs.entry(env.to_string()).or_default();
        kept.push_back((
            m.version,
            m.files.iter().map(|e| e.blake3.to_string()).collect(),
        ));
        while kept.len() > KEPT_VERSIONS {
            kept.pop_front();
        }
        self.sign_timestamp(env, (m.version, hash, m.revision.clone()), online, now)
    }

    /// Signs and records the timestamp of `env`'s release (version, manifest, revision).
    fn sign_timestamp(
        &mut self,
        env: &str,
        (version, manifest, revision): (u64, Hash, String),
        online: &KeyPair,
        now: u64,
    ) -> Result<(), PublishError> {
        let ts = Timestamp {
            kind: "timestamp".into(),
            site: self.site.clone(),
            environment: env.to_string(),
            version,
            manifest,
            created: now,
            expires: now + TIMESTAMP_LIFETIME,
        }
        .seal(online);
        self.store.put(&timestamp_key(env), &ts)?;
        self.current.insert(
            env.to_string(),
            Current {
                version,
                timestamp: ts,
                signed: now,
                revision,
                manifest,
            },
        );
        let index: BTreeMap<&String, (u64, Hash)> = self
            .current
            .iter()
            .map(|(e, c)| (e, (c.version, c.manifest)))
            .collect();
        let bytes = serde_json::to_vec(&index).expect("an index serializes");
        self.store.put(INDEX, &bytes)?;
        Ok(())
    }
}

/// The server's record of each environment's current release (not part of the layout
/// nodes read): `{ "ENV": [version, manifest hash] }`.
const INDEX: &str = "serve-current.json";

/// An environment's name as a path component: letters, digits, `-`, `_`, `.`, not
/// starting with a dot.
fn valid_name(env: &str) -> Result<(), PublishError> {
    let ok = !env.is_empty()
        && env.len() <= 253
        && !env.starts_with('.')
        && env
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(PublishError::Refused(format!(
            "{env:?} is not an environment name"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use strata_snapshot::{Role, SiteFiles};

    struct Keys {
        root: KeyPair,
        signing: KeyPair,
        online: KeyPair,
        roots: RootSet,
    }

    fn keys() -> Keys {
        let root = KeyPair::generate(Role::Root).unwrap();
        let signing = KeyPair::generate(Role::Signing).unwrap();
        let online = KeyPair::generate(Role::Online).unwrap();
        let r1 = Root::new("s", 1, &[&root, &signing, &online]).seal(&[&root]);
        Keys {
            root,
            signing,
            online,
            roots: RootSet(vec![r1]),
        }
    }

    fn timestamp(k: &Keys, version: u64, manifest: &[u8]) -> Vec<u8> {
        Timestamp {
            kind: "timestamp".into(),
            site: "s".into(),
            environment: "test".into(),
            version,
            manifest: Hash::of(manifest),
            created: 100,
            expires: 10_000,
        }
        .seal(&k.signing)
    }

    #[test]
    fn only_what_a_node_would_accept_is_kept_and_released() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        strata_fs::create_dir_all(&site).unwrap();
        strata_fs::write_atomic(&site.join("a.txt"), b"a\n").unwrap();
        let files = SiteFiles::read(&site).unwrap();
        let k = keys();
        let mut p =
            Published::open(&dir.path().join("store"), k.roots.clone(), &k.online, 100).unwrap();
        let put =
            |p: &mut Published, key: &str, bytes: &[u8]| p.put(key, bytes, true, &k.online, 100);

        // A blob under another name; then its own.
        let hash = Hash::of(b"a\n").to_string();
        let key = blob_key(&hash);
        assert!(
            put(&mut p, &key, b"b\n")
                .unwrap_err()
                .to_string()
                .contains("blake3 is")
        );
        // A manifest before its blobs, by a stranger, or under another version.
        let m = files.manifest("s", "test", 5, 100, 1000, &k.signing);
        assert!(
            put(&mut p, "env/test/5.json", &m)
                .unwrap_err()
                .to_string()
                .contains("uploaded first")
        );
        assert!(put(&mut p, &key, b"a\n").unwrap());
        assert!(!put(&mut p, &key, b"a\n").unwrap(), "create-only");
        let stranger = KeyPair::generate(Role::Signing).unwrap();
        let forged = files.manifest("s", "test", 5, 100, 1000, &stranger);
        assert!(
            put(&mut p, "env/test/5.json", &forged)
                .unwrap_err()
                .to_string()
                .contains("not signed")
        );
        assert!(
            put(&mut p, "env/test/6.json", &m)
                .unwrap_err()
                .to_string()
                .contains("holds test version 5")
        );
        assert!(put(&mut p, "env/../5.json", &m).is_err());
        assert!(put(&mut p, "env/test/5.json", &m).unwrap());
        // Nothing is served before the release, which must name that manifest.
        assert!(p.current("test").is_none() && !p.lists_blob("test", &hash));
        let wrong = timestamp(&k, 5, b"other");
        assert!(
            put(&mut p, "env/test/timestamp.json", &wrong)
                .unwrap_err()
                .to_string()
                .contains("not the manifest")
        );
        put(&mut p, "env/test/timestamp.json", &timestamp(&k, 5, &m)).unwrap();
        assert_eq!(p.current("test").unwrap().version, 5);
        assert!(p.lists_blob("test", &hash) && p.lists_version("test", 5));
        assert!(!p.lists_blob("prod", &hash));
        // The timestamp nodes get is the server's, signed with its online key.
        let t = Timestamp::open_signed(p.root(), &p.current("test").unwrap().timestamp).unwrap();
        assert_eq!(
            (t.version, t.created, t.expires),
            (5, 100, 100 + TIMESTAMP_LIFETIME)
        );
        // An older release is refused; a due timestamp is signed again.
        let m4 = files.manifest("s", "test", 4, 100, 1000, &k.signing);
        assert!(
            put(&mut p, "env/test/4.json", &m4)
                .unwrap_err()
                .to_string()
                .contains("already")
        );
        assert!(!p.due("test", 100 + TIMESTAMP_REFRESH - 1));
        assert!(
            p.refresh("test", &k.online, 100 + TIMESTAMP_REFRESH)
                .unwrap()
        );
        assert_eq!(p.current("test").unwrap().signed, 100 + TIMESTAMP_REFRESH);

        // A root that does not continue the chain; then a rotation that does.
        let other = KeyPair::generate(Role::Root).unwrap();
        let mut r2 = Root::new("s", 2, &[&other, &k.signing, &k.online]);
        r2.version = 2;
        assert!(put(&mut p, "root/2.json", &r2.seal(&[&other])).is_err());
        assert!(put(&mut p, "root/3.json", &r2.seal(&[&k.root, &other])).is_err());
        assert!(put(&mut p, "root/2.json", &r2.seal(&[&k.root, &other])).unwrap());
        assert_eq!(p.roots().0.len(), 2);

        // Opened again, the store serves the same release, timestamp signed anew.
        let again =
            Published::open(&dir.path().join("store"), k.roots.clone(), &k.online, 200).unwrap();
        assert_eq!(again.current("test").unwrap().version, 5);
        assert_eq!(again.current("test").unwrap().signed, 200);
        assert_eq!(again.roots().0.len(), 2);
    }
}
