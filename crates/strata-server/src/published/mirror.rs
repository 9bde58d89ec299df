//! A replica's published store: what `publish` wrote to a bucket (`s3://` or `file://`)
//! that any number of `serve` processes share, read and never written. An environment's
//! timestamp is read again when a node of it polls, at most every [`MIRROR_RECHECK`]
//! seconds; what it names is checked as an upload would be (the timestamp and the
//! manifest signed under the root the server trusts, the manifest the one the timestamp
//! names by hash, never an older release) and served as published: the operator's
//! timestamp, not one the replica signs, so every replica answers a poll with the same
//! bytes and the same `ETag`.
//!
//! Anyone who can write the bucket can put an older signed timestamp back. So a replica
//! serves no expired timestamp (it keeps the last good one, or serves nothing), and none
//! older than the newest version any replica sharing its inventory served
//! ([`crate::inventory::Inventory::served_release`]), after a restart too. Each refusal is logged once,
//! naming the bucket and the environment.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use strata_bucket::{Storage, timestamp_key};
use strata_snapshot::{MAX_METADATA, RootSet, Timestamp};

use super::{Current, KEPT_VERSIONS, PublishError, Published, valid_name};
use crate::inventory::InventoryError;

/// Records that a replica served a version of an environment (0 records nothing) and
/// answers the newest version served of it: [`crate::inventory::Inventory::served_release`]
/// on the server's inventory, shared by its replicas.
pub type ServedReleases = Box<dyn Fn(&str, u64) -> Result<u64, InventoryError> + Send + Sync>;

/// How long a replica serves an environment's release before it reads the bucket again.
pub const MIRROR_RECHECK: u64 = 5;

/// An object read from the bucket: when, and what was there.
type Read = (u64, Option<Vec<u8>>);

/// A replica's view of the bucket.
pub(super) struct Mirror {
    /// The bucket's URL.
    pub(super) url: String,
    /// When each environment's timestamp was last read.
    checked: BTreeMap<String, u64>,
    /// Why the last read failed, if it did (the last good release is served meanwhile).
    pub(super) error: Option<String>,
    /// Classified nodes' assignments as `publish` wrote them, by key id: when read, and
    /// what was there.
    assignments: Mutex<HashMap<String, Read>>,
    /// When each served timestamp expires.
    expires: BTreeMap<String, u64>,
    /// Each environment's last refusal, logged once.
    refused: BTreeMap<String, String>,
    /// Where the newest version served of each environment is kept.
    served: ServedReleases,
    /// Where refusals are logged (the CLI: stderr).
    log: Box<dyn Fn(&str) + Send + Sync>,
}

impl std::fmt::Debug for Mirror {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mirror")
            .field("url", &self.url)
            .field("checked", &self.checked)
            .field("error", &self.error)
            .field("expires", &self.expires)
            .finish_non_exhaustive()
    }
}

impl Mirror {
    /// Whether the bucket is read again: [`MIRROR_RECHECK`] after the last read, or at
    /// once when the timestamp served expired.
    pub(super) fn due(&self, env: &str, now: u64) -> bool {
        self.checked
            .get(env)
            .is_none_or(|t| now >= t + MIRROR_RECHECK)
            || self.expires.get(env).is_some_and(|e| now >= *e)
    }

    /// The newest version of `env` served by any server of this inventory, after
    /// recording `version` (0: nothing).
    fn served(&self, env: &str, version: u64) -> Result<u64, PublishError> {
        (self.served)(env, version)
            .map_err(|e| PublishError::Refused(format!("the inventory cannot say: {e}")))
    }
}

impl Published {
    /// A replica's store: what was published to `store`, trusting `roots` (the site's
    /// chain) and the rotations the bucket holds beyond it, keeping the newest version
    /// served of each environment with `served` (in the server's inventory, shared by its
    /// replicas) and logging refusals to `log`. Refused when the bucket's roots are
    /// another site's.
    pub fn mirror(
        store: Box<dyn Storage>,
        roots: RootSet,
        served: ServedReleases,
        log: Box<dyn Fn(&str) + Send + Sync>,
    ) -> Result<Published, PublishError> {
        let (root, _) = roots.verify(None)?;
        for (i, r) in roots.0.iter().enumerate() {
            let key = format!("root/{}.json", i + 1);
            if let Some(theirs) = store.get(&key, MAX_METADATA as u64)?
                && theirs != *r
            {
                return Err(PublishError::Refused(format!(
                    "{}/{key} is not the site's root: another site's bucket?",
                    store.url()
                )));
            }
        }
        let url = store.url().to_string();
        let mut p = Published {
            store,
            site: root.site.clone(),
            roots,
            root,
            current: BTreeMap::new(),
            blobs: BTreeMap::new(),
            mirror: Some(Mirror {
                url,
                checked: BTreeMap::new(),
                error: None,
                assignments: Mutex::new(HashMap::new()),
                expires: BTreeMap::new(),
                refused: BTreeMap::new(),
                served,
                log,
            }),
        };
        p.follow_roots()?;
        Ok(p)
    }

    /// A replica: why its last read of the bucket failed, if it did.
    pub fn mirror_error(&self) -> Option<&str> {
        self.mirror.as_ref().and_then(|m| m.error.as_deref())
    }

    /// A replica: the assignment `publish` wrote to the bucket for the node whose key is
    /// `key_id` (`assignments/<key id>.json`), read again at most every
    /// [`MIRROR_RECHECK`] seconds. Every replica serves these same bytes, where
    /// assignments each signed itself would differ in version; the node verifies it as
    /// any other. None when there is none (or the bucket cannot say): the replica then
    /// signs the node's own.
    pub fn mirrored_assignment(&self, key_id: &str, now: u64) -> Option<Vec<u8>> {
        let m = self.mirror.as_ref()?;
        if key_id.is_empty() || !key_id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let mut cache = m.assignments.lock().ok()?;
        if let Some((at, bytes)) = cache.get(key_id)
            && now < at + MIRROR_RECHECK
        {
            return bytes.clone();
        }
        let bytes = self
            .store
            .get(&format!("assignments/{key_id}.json"), MAX_METADATA as u64)
            .ok()
            .flatten();
        cache.insert(key_id.to_string(), (now, bytes.clone()));
        bytes
    }

    /// Reads the environment's release from the bucket again; whether it changed. A
    /// failure (the bucket unreachable, an object refused) keeps the last good release
    /// served while it has not expired, and is kept for [`Published::mirror_error`] and
    /// logged once.
    pub(super) fn reload(&mut self, env: &str, now: u64) -> bool {
        let result = self.read_release(env, now);
        let Some(m) = &mut self.mirror else {
            return false;
        };
        m.checked.insert(env.to_string(), now);
        m.error = result.as_ref().err().map(|e| format!("{env}: {e}"));
        // An expired timestamp is never served, whatever the bucket holds now.
        if m.expires.get(env).is_some_and(|e| now >= *e) {
            m.expires.remove(env);
            self.current.remove(env);
        }
        match &result {
            Err(e) => {
                let why = e.to_string();
                if m.refused.get(env) != Some(&why) {
                    let serving = match self.current.get(env) {
                        Some(c) => format!("still serving version {}", c.version),
                        None => "serving nothing".into(),
                    };
                    (m.log)(&format!(
                        "replica of {}: environment {env}: {why}; {serving}",
                        m.url
                    ));
                    m.refused.insert(env.to_string(), why);
                }
            }
            Ok(_) => {
                m.refused.remove(env);
            }
        }
        result.unwrap_or(false)
    }

    /// Follows the bucket's root chain past the newest trusted root (a rotation).
    fn follow_roots(&mut self) -> Result<(), PublishError> {
        loop {
            let n = self.roots.0.len() + 1;
            let Some(next) = self
                .store
                .get(&format!("root/{n}.json"), MAX_METADATA as u64)?
            else {
                return Ok(());
            };
            let mut chain = self.roots.clone();
            chain.0.push(next);
            let newest = self.roots.0.last().cloned().unwrap_or_default();
            let (root, _) = chain.verify(Some(&newest))?;
            self.roots = chain;
            self.root = root;
        }
    }

    fn read_release(&mut self, env: &str, now: u64) -> Result<bool, PublishError> {
        valid_name(env)?;
        self.follow_roots()?;
        let Some(bytes) = self.store.get(&timestamp_key(env), MAX_METADATA as u64)? else {
            return Ok(false);
        };
        let t = Timestamp::open_signed(&self.root, &bytes)?;
        if t.environment != env {
            return Err(PublishError::Refused(format!(
                "the timestamp of {env} names environment {}",
                t.environment
            )));
        }
        if now >= t.expires {
            return Err(PublishError::Refused(format!(
                "{}/{} (version {}) expired at {} (unix time; now {now}): publish again",
                self.store.url(),
                timestamp_key(env),
                t.version,
                t.expires
            )));
        }
        if let Some(c) = self.current.get(env) {
            if c.timestamp == bytes {
                return Ok(false);
            }
            if t.version < c.version || (t.version == c.version && t.manifest != c.manifest) {
                return Err(PublishError::Refused(format!(
                    "the bucket's timestamp names version {} of {env}, and version {} was served",
                    t.version, c.version
                )));
            }
        }
        let Some(mirror) = &self.mirror else {
            return Ok(false);
        };
        let newest = mirror.served(env, 0)?;
        if t.version < newest {
            return Err(PublishError::Refused(format!(
                "{}/{} names version {}, older than version {newest} served before (a \
                 timestamp put back?): refused until a newer one is published",
                self.store.url(),
                timestamp_key(env),
                t.version
            )));
        }
        let m = self.manifest_named(env, t.version, t.manifest)?;
        if let Some(mirror) = &mut self.mirror {
            mirror.served(env, t.version)?;
            mirror.expires.insert(env.to_string(), t.expires);
        }
        let kept = self.blobs.entry(env.to_string()).or_default();
        if kept.back().map(|(v, _)| *v) != Some(m.version) {
            kept.push_back((
                m.version,
                m.files.iter().map(|e| e.blake3.to_string()).collect(),
            ));
        }
        while kept.len() > KEPT_VERSIONS {
            kept.pop_front();
        }
        self.current.insert(
            env.to_string(),
            Current {
                version: t.version,
                timestamp: bytes,
                signed: now,
                revision: m.revision,
                manifest: t.manifest,
            },
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use strata_bucket::{blob_key, manifest_key};
    use strata_snapshot::{KeyPair, Role, Root, SiteFiles};
    use strata_types::Hash;

    use super::*;

    /// The versions served, kept in the SQLite inventory `db`.
    fn served(db: &Path) -> ServedReleases {
        let inventory = Mutex::new(crate::inventory::open(db.to_str().unwrap()).unwrap());
        Box::new(move |env, v| inventory.lock().unwrap().served_release(env, v))
    }

    /// A site with one file, its keys, and a `file://` bucket in `dir`.
    struct Site {
        files: SiteFiles,
        signing: KeyPair,
        online: KeyPair,
        roots: RootSet,
        url: String,
    }

    impl Site {
        fn new(dir: &Path) -> Site {
            let site = dir.join("site");
            strata_fs::create_dir_all(&site).unwrap();
            strata_fs::write_atomic(&site.join("a.txt"), b"a\n").unwrap();
            let root = KeyPair::generate(Role::Root).unwrap();
            let signing = KeyPair::generate(Role::Signing).unwrap();
            let online = KeyPair::generate(Role::Online).unwrap();
            let roots = RootSet(vec![
                Root::new("s", 1, &[&root, &signing, &online]).seal(&[&root]),
            ]);
            let s = Site {
                files: SiteFiles::read(&site).unwrap(),
                signing,
                online,
                roots,
                url: format!("file://{}", dir.join("bucket").display()),
            };
            let b = s.open();
            b.put(&blob_key(&Hash::of(b"a\n").to_string()), b"a\n")
                .unwrap();
            b.put("root/1.json", &s.roots.0[0]).unwrap();
            s
        }

        fn open(&self) -> Box<dyn Storage> {
            strata_bucket::open(&self.url, &strata_bucket::S3Settings::default()).unwrap()
        }

        /// Publishes `version` signed by `signer`, its timestamp expiring at `expires`;
        /// the timestamp's bytes.
        fn release(&self, version: u64, expires: u64, signer: &KeyPair) -> Vec<u8> {
            let m = self.files.manifest("s", "test", version, 100, 1000, signer);
            let b = self.open();
            b.put(&manifest_key("test", version), &m).unwrap();
            let ts = Timestamp {
                kind: "timestamp".into(),
                site: "s".into(),
                environment: "test".into(),
                version,
                manifest: Hash::of(&m),
                created: 100,
                expires,
            }
            .seal(signer);
            b.put(&timestamp_key("test"), &ts).unwrap();
            ts
        }

        /// A replica started now on the bucket, keeping what it served in the SQLite
        /// inventory `db`; and its log.
        fn replica(&self, db: &Path) -> (Published, Arc<Mutex<Vec<String>>>) {
            let log = Arc::new(Mutex::new(Vec::new()));
            let lines = log.clone();
            let p = Published::mirror(
                self.open(),
                self.roots.clone(),
                served(db),
                Box::new(move |l| lines.lock().unwrap().push(l.to_string())),
            )
            .unwrap();
            (p, log)
        }
    }

    #[test]
    fn a_replica_serves_what_the_bucket_holds_and_nothing_older_or_forged() {
        let dir = tempfile::tempdir().unwrap();
        let s = Site::new(dir.path());
        let db = dir.path().join("state.db");
        let (mut p, _) = s.replica(&db);
        assert!(
            p.due("test", 0) && !p.reload("test", 0),
            "nothing published yet"
        );
        let ts5 = s.release(5, 10_000, &s.signing);
        // Read again only once MIRROR_RECHECK has passed.
        assert!(!p.due("test", MIRROR_RECHECK - 1));
        assert!(p.refresh("test", &s.online, MIRROR_RECHECK).unwrap());
        assert_eq!(
            p.current("test").unwrap().timestamp,
            ts5,
            "served as published"
        );
        let hash = Hash::of(b"a\n").to_string();
        assert!(p.lists_blob("test", &hash) && p.lists_version("test", 5));
        // Another replica opened on the same bucket answers with the same bytes.
        let (mut q, _) = s.replica(&db);
        assert!(q.reload("test", 0));
        assert_eq!(q.current("test").unwrap().timestamp, ts5);
        // A forged release and an older one are refused; version 5 is still served.
        let stranger = KeyPair::generate(Role::Signing).unwrap();
        s.release(6, 10_000, &stranger);
        assert!(!p.reload("test", 100));
        assert!(
            p.mirror_error().unwrap().contains("not signed"),
            "{:?}",
            p.mirror_error()
        );
        s.release(4, 10_000, &s.signing);
        assert!(!p.reload("test", 200));
        assert!(p.mirror_error().unwrap().contains("version 5 was served"));
        assert_eq!(p.current("test").unwrap().version, 5);
        // Uploads go to the bucket, never through a replica.
        let err = p.put("root/2.json", b"x", true, &s.online, 0).unwrap_err();
        assert!(err.to_string().contains("publish there"), "{err}");
        // A bucket of another site is refused at start.
        let other = KeyPair::generate(Role::Root).unwrap();
        let foreign = RootSet(vec![
            Root::new("s", 1, &[&other, &s.signing]).seal(&[&other]),
        ]);
        assert!(Published::mirror(s.open(), foreign, served(&db), Box::new(|_| ())).is_err());
    }

    #[test]
    fn a_timestamp_put_back_is_not_served_by_a_replica_started_after() {
        let dir = tempfile::tempdir().unwrap();
        let s = Site::new(dir.path());
        let db = dir.path().join("state.db");
        let old = s.release(4, 10_000, &s.signing);
        let new = s.release(5, 10_000, &s.signing);
        let (mut a, _) = s.replica(&db);
        assert!(a.reload("test", 100));
        assert_eq!(a.current("test").unwrap().timestamp, new);
        // Someone with write access to the bucket puts version 4's timestamp back.
        s.open().put(&timestamp_key("test"), &old).unwrap();
        assert!(!a.reload("test", 110));
        assert_eq!(a.current("test").unwrap().version, 5);
        // A replica started now (a restart: the same inventory) serves nothing, and
        // logs why, naming the bucket and the environment.
        let (mut b, log) = s.replica(&db);
        assert!(!b.reload("test", 120));
        assert!(b.current("test").is_none(), "the old release is not served");
        let lines = log.lock().unwrap().clone();
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(
            lines[0].contains(&s.url)
                && lines[0].contains("environment test")
                && lines[0].contains("names version 4, older than version 5 served before")
                && lines[0].ends_with("serving nothing"),
            "{lines:?}"
        );
        // Logged once, not at every read.
        assert!(b.due("test", 130) && !b.reload("test", 130));
        assert_eq!(log.lock().unwrap().len(), 1);
        // The next release is served by both.
        let v6 = s.release(6, 10_000, &s.signing);
        assert!(b.reload("test", 140) && a.reload("test", 140));
        assert_eq!(b.current("test").unwrap().timestamp, v6);
        assert_eq!(a.current("test").unwrap().timestamp, v6);
        // A replica with an inventory of its own (nothing served yet) still takes the
        // bucket's newest.
        let (mut c, _) = s.replica(&dir.path().join("other.db"));
        assert!(c.reload("test", 150));
        assert_eq!(c.current("test").unwrap().version, 6);
    }

    #[test]
    fn an_expired_timestamp_is_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let s = Site::new(dir.path());
        let db = dir.path().join("state.db");
        // The reviewer's case: only an expired timestamp in the bucket at start.
        s.release(4, 200, &s.signing);
        let (mut a, log) = s.replica(&db);
        assert!(!a.reload("test", 1_000));
        assert!(a.current("test").is_none());
        let lines = log.lock().unwrap().clone();
        assert!(
            lines.len() == 1
                && lines[0].contains(&s.url)
                && lines[0].contains("environment test")
                && lines[0].contains("expired at 200")
                && lines[0].ends_with("serving nothing"),
            "{lines:?}"
        );
        // A good one is served until it expires: then at once nothing, even between
        // reads of the bucket, and the bucket's (the same, expired) is not taken again.
        let ts = s.release(5, 2_000, &s.signing);
        assert!(a.reload("test", 1_990));
        assert_eq!(a.current("test").unwrap().timestamp, ts);
        assert!(!a.due("test", 1_994));
        assert!(a.due("test", 2_000), "expired: read again at once");
        assert!(!a.reload("test", 2_000));
        assert!(a.current("test").is_none());
        assert!(a.mirror_error().unwrap().contains("expired at 2000"));
        // A newer release that expired meanwhile keeps the last good one served.
        s.release(6, 3_000, &s.signing);
        assert!(a.reload("test", 2_500));
        s.release(7, 2_400, &s.signing);
        assert!(!a.reload("test", 2_600));
        assert_eq!(a.current("test").unwrap().version, 6);
    }
}
