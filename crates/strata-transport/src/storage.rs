//! Where published snapshots wait for agents (FLEET.md, "Pull from object storage"): a
//! bucket's layout behind one small trait, so `file://` (a directory: tests, air-gapped
//! sites) and object storage are written and read the same way.
//!
//! Layout: `root/N.json`; `blobs/<2 hex>/<hash>` (create-only); `env/<E>/<version>.json`
//! (create-only); `env/<E>/timestamp.json`, the only object ever overwritten, written
//! last, so a reader never sees half a release.

use std::path::PathBuf;

/// A failed storage operation, naming the object.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The URL is not one strata can use.
    #[error("{url}: {why}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        why: String,
    },
    /// Reading or writing an object failed.
    #[error("{key}: {source}")]
    Io {
        /// The object.
        key: String,
        /// The cause.
        #[source]
        source: strata_fs::FsError,
    },
    /// An object is larger than the reader accepts.
    #[error("{key} is larger than {limit} bytes")]
    TooLarge {
        /// The object.
        key: String,
        /// The limit.
        limit: u64,
    },
}

/// A bucket of published snapshots.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// An object's bytes (at most `limit`), or `None` when it is not there.
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError>;
    /// Whether an object is there.
    fn exists(&self, key: &str) -> Result<bool, StorageError>;
    /// Creates an object that must not exist yet; `false` when it did (nothing written).
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError>;
    /// Writes an object whole, replacing what was there.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
}

/// Opens `file:///DIR` (object storage is not built yet).
pub fn open(url: &str) -> Result<Box<dyn Storage>, StorageError> {
    let bad = |why: &str| StorageError::Url {
        url: url.to_string(),
        why: why.to_string(),
    };
    if let Some(path) = url.strip_prefix("file://") {
        if !path.starts_with('/') {
            return Err(bad(
                "a file:// URL needs an absolute path (file:///srv/strata)",
            ));
        }
        return Ok(Box::new(FileStorage {
            dir: PathBuf::from(path),
        }));
    }
    if url.starts_with("s3://") || url.starts_with("https://") || url.starts_with("http://") {
        return Err(bad(
            "only file:// is built yet (object storage and serve are not)",
        ));
    }
    Err(bad("expected file:///DIR"))
}

/// A directory laid out as a bucket.
#[derive(Debug)]
pub struct FileStorage {
    dir: PathBuf,
}

impl FileStorage {
    fn path(&self, key: &str) -> PathBuf {
        debug_assert!(!key.split('/').any(|c| c.is_empty() || c == ".."));
        self.dir.join(key)
    }
}

impl Storage for FileStorage {
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key);
        if !strata_fs::exists(&path) {
            return Ok(None);
        }
        match strata_fs::read_with_mode(&path, limit) {
            Ok((bytes, _)) => Ok(Some(bytes)),
            Err(e) if e.source.kind() == std::io::ErrorKind::Other => Err(StorageError::TooLarge {
                key: key.to_string(),
                limit,
            }),
            Err(source) => Err(StorageError::Io {
                key: key.to_string(),
                source,
            }),
        }
    }

    fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(strata_fs::exists(&self.path(key)))
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        strata_fs::create_durable(&self.path(key), bytes).map_err(|source| StorageError::Io {
            key: key.to_string(),
            source,
        })
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        strata_fs::write_durable(&self.path(key), bytes).map_err(|source| StorageError::Io {
            key: key.to_string(),
            source,
        })
    }
}

/// The key of a blob.
pub fn blob_key(hash: &str) -> String {
    format!("blobs/{}/{hash}", &hash[..2.min(hash.len())])
}

/// The key of an environment's manifest at a version.
pub fn manifest_key(environment: &str, version: u64) -> String {
    format!("env/{environment}/{version}.json")
}

/// The key of an environment's timestamp.
pub fn timestamp_key(environment: &str) -> String {
    format!("env/{environment}/timestamp.json")
}
