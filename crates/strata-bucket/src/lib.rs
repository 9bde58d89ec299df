//! Where published snapshots wait for agents (FLEET.md, "Pull from object storage"): a
//! bucket's layout behind one small blocking trait, so `file://` (a directory: tests,
//! air-gapped sites) and `s3://` (any S3-compatible object storage) are written and read
//! the same way.
//!
//! Layout: `root/N.json`; `blobs/<2 hex>/<hash>` (create-only); `env/<E>/<version>.json`
//! (create-only); `env/<E>/timestamp.json`, the only object ever overwritten, written
//! last, so a reader never sees half a release. Readers (agents) only get objects by
//! name; listing and deleting are for the publisher's [`gc`].

mod file;
pub mod gc;
mod s3;

pub use file::FileStorage;
pub use gc::{GcError, GcReport, collect};
pub use s3::{S3Settings, S3Storage};

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
    /// Object storage answered with an error, or could not be reached.
    #[error("{url}: {why}")]
    Remote {
        /// The object's URL (`s3://bucket/prefix/key`).
        url: String,
        /// What went wrong, without credentials.
        why: String,
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

/// A bucket of published snapshots. Keys are `/`-separated, relative, without empty,
/// `.` or `..` components.
pub trait Storage: Send + Sync + std::fmt::Debug {
    /// An object's bytes (at most `limit`), or `None` when it is not there. A larger
    /// object is refused before it is read whole.
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError>;
    /// Whether an object is there.
    fn exists(&self, key: &str) -> Result<bool, StorageError>;
    /// Creates an object that must not exist yet; `false` when it did (nothing written).
    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError>;
    /// Writes an object whole, replacing what was there.
    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError>;
    /// The keys under `prefix` (a directory: `env/`, `blobs/`), sorted. For the
    /// publisher's garbage collection only: agents never list.
    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError>;
    /// Removes an object; one that is not there is fine.
    fn delete(&self, key: &str) -> Result<(), StorageError>;
    /// The bucket's URL, for messages.
    fn url(&self) -> &str;
}

/// Opens `file:///DIR` or `s3://BUCKET[/PREFIX]` (with `s3`'s credentials and endpoint).
pub fn open(url: &str, s3: &S3Settings) -> Result<Box<dyn Storage>, StorageError> {
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
        return Ok(Box::new(FileStorage::new(url, path)));
    }
    if url.starts_with("s3://") {
        return Ok(Box::new(S3Storage::open(url, s3)?));
    }
    if url.starts_with("https://") || url.starts_with("http://") {
        return Err(bad(
            "a server is not built yet: publish to s3://BUCKET/PREFIX or file:///DIR",
        ));
    }
    Err(bad("expected s3://BUCKET/PREFIX or file:///DIR"))
}

/// Whether `key` is one this crate writes or reads: relative, `/`-separated, no empty,
/// `.` or `..` component.
fn valid_key(key: &str) -> bool {
    !key.is_empty()
        && !key
            .split('/')
            .any(|c| c.is_empty() || c == "." || c == "..")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked() {
        let s3 = S3Settings::default();
        for (url, why) in [
            ("file://relative", "absolute path"),
            ("ftp://x", "expected s3://"),
            ("https://server", "not built yet"),
            ("s3://", "a bucket name"),
            ("s3://Bad_Bucket/p", "a bucket name"),
            ("s3://bkt/a//b", "empty"),
            ("s3://bkt/../x", ".."),
        ] {
            let e = open(url, &s3).unwrap_err().to_string();
            assert!(e.contains(why), "{url}: {e}");
        }
        assert!(open("s3://bucket", &s3).is_ok());
        assert!(open("s3://bucket/some/prefix/", &s3).is_ok());
    }

    #[test]
    fn keys_are_checked() {
        assert!(valid_key("env/a/1.json"));
        for k in ["", "/a", "a/", "a//b", "a/./b", "a/../b"] {
            assert!(!valid_key(k), "{k}");
        }
    }
}
