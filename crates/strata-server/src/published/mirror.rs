//! A replica's published store: what `publish` wrote to a bucket (`s3://` or `file://`)
//! that any number of `serve` processes share, read and never written. An environment's
//! timestamp is read again when a node of it polls, at most every [`MIRROR_RECHECK`]
//! seconds; what it names is checked as an upload would be (the timestamp and the
//! manifest signed under the root the server trusts, the manifest the one the timestamp
//! names by hash, never an older release) and served as published: the operator's
//! timestamp, not one the replica signs, so every replica answers a poll with the same
//! bytes and the same `ETag`.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use strata_bucket::{Storage, timestamp_key};
use strata_snapshot::{MAX_METADATA, RootSet, Timestamp};

use super::{Current, KEPT_VERSIONS, PublishError, Published, valid_name};

/// How long a replica serves an environment's release before it reads the bucket again.
pub const MIRROR_RECHECK: u64 = 5;

/// An object read from the bucket: when, and what was there.
type Read = (u64, Option<Vec<u8>>);

/// A replica's view of the bucket.
#[derive(Debug)]
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
}

impl Mirror {
    pub(super) fn due(&self, env: &str, now: u64) -> bool {
        self.checked
            .get(env)
            .is_none_or(|t| now >= t + MIRROR_RECHECK)
    }
}

impl Published {
    /// A replica's store: what was published to `store`, trusting `roots` (the site's
    /// chain) and the rotations the bucket holds beyond it. Refused when the bucket's
    /// roots are another site's.
    pub fn mirror(store: Box<dyn Storage>, roots: RootSet) -> Result<Published, PublishError> {
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
    /// served, and is kept for [`Published::mirror_error`].
    pub(super) fn reload(&mut self, env: &str, now: u64) -> bool {
        let result = self.read_release(env, now);
        if let Some(m) = &mut self.mirror {
            m.checked.insert(env.to_string(), now);
            m.error = result.as_ref().err().map(|e| format!("{env}: {e}"));
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
        let m = self.manifest_named(env, t.version, t.manifest)?;
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
                manifest: t.manifest,
            },
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use strata_bucket::{blob_key, manifest_key};
    use strata_snapshot::{KeyPair, Role, Root, SiteFiles};
    use strata_types::Hash;

    use super::*;

    #[test]
    fn a_replica_serves_what_the_bucket_holds_and_nothing_older_or_forged() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path().join("site");
        strata_fs::create_dir_all(&site).unwrap();
        strata_fs::write_atomic(&site.join("a.txt"), b"a\n").unwrap();
        let files = SiteFiles::read(&site).unwrap();
        let root = KeyPair::generate(Role::Root).unwrap();
        let signing = KeyPair::generate(Role::Signing).unwrap();
        let online = KeyPair::generate(Role::Online).unwrap();
        let roots = RootSet(vec![
            Root::new("s", 1, &[&root, &signing, &online]).seal(&[&root]),
        ]);
        let url = format!("file://{}", dir.path().join("bucket").display());
        let open = || strata_bucket::open(&url, &strata_bucket::S3Settings::default()).unwrap();
        let bucket = open();
        let release = |version: u64, signer: &KeyPair| {
            let m = files.manifest("s", "test", version, 100, 1000, signer);
            bucket.put(&manifest_key("test", version), &m).unwrap();
            let ts = Timestamp {
                kind: "timestamp".into(),
                site: "s".into(),
                environment: "test".into(),
                version,
                manifest: Hash::of(&m),
                created: 100,
                expires: 10_000,
            }
            .seal(signer);
            bucket.put(&timestamp_key("test"), &ts).unwrap();
            ts
        };
        let hash = Hash::of(b"a\n").to_string();
        bucket.put(&blob_key(&hash), b"a\n").unwrap();
        bucket.put("root/1.json", &roots.0[0]).unwrap();
        let mut p = Published::mirror(open(), roots.clone()).unwrap();
        assert!(
            p.due("test", 0) && !p.reload("test", 0),
            "nothing published yet"
        );
        let ts5 = release(5, &signing);
        // Read again only once MIRROR_RECHECK has passed.
        assert!(!p.due("test", MIRROR_RECHECK - 1));
        assert!(p.refresh("test", &online, MIRROR_RECHECK).unwrap());
        assert_eq!(
            p.current("test").unwrap().timestamp,
            ts5,
            "served as published"
        );
        assert!(p.lists_blob("test", &hash) && p.lists_version("test", 5));
        // Another replica opened on the same bucket answers with the same bytes.
        let mut q = Published::mirror(open(), roots).unwrap();
        assert!(q.reload("test", 0));
        assert_eq!(q.current("test").unwrap().timestamp, ts5);
        // A forged release and an older one are refused; version 5 is still served.
        let stranger = KeyPair::generate(Role::Signing).unwrap();
        release(6, &stranger);
        assert!(!p.reload("test", 100));
        assert!(
            p.mirror_error().unwrap().contains("not signed"),
            "{:?}",
            p.mirror_error()
        );
        release(4, &signing);
        assert!(!p.reload("test", 200));
        assert!(p.mirror_error().unwrap().contains("version 5 was served"));
        assert_eq!(p.current("test").unwrap().version, 5);
        // Uploads go to the bucket, never through a replica.
        let err = p.put("root/2.json", b"x", true, &online, 0).unwrap_err();
        assert!(err.to_string().contains("publish there"), "{err}");
        // A bucket of another site is refused at start.
        let other = KeyPair::generate(Role::Root).unwrap();
        let foreign = RootSet(vec![Root::new("s", 1, &[&other, &signing]).seal(&[&other])]);
        assert!(Published::mirror(open(), foreign).is_err());
    }
}
