//! `file:///DIR`: a directory laid out as a bucket, each object a file written durably
//! (create-only objects with `O_EXCL`).

use std::path::PathBuf;

use crate::{Storage, StorageError, valid_key};

/// A directory laid out as a bucket.
#[derive(Debug)]
pub struct FileStorage {
    url: String,
    dir: PathBuf,
}

impl FileStorage {
    /// The bucket at `dir`, named `url` in messages.
    pub fn new(url: &str, dir: &str) -> FileStorage {
        FileStorage {
            url: url.to_string(),
            dir: PathBuf::from(dir),
        }
    }

    fn path(&self, key: &str) -> PathBuf {
        debug_assert!(valid_key(key), "{key}");
        self.dir.join(key)
    }

    fn io(key: &str) -> impl FnOnce(strata_fs::FsError) -> StorageError + '_ {
        move |source| StorageError::Io {
            key: key.to_string(),
            source,
        }
    }
}

impl Storage for FileStorage {
    fn get(&self, key: &str, limit: u64) -> Result<Option<Vec<u8>>, StorageError> {
        let path = self.path(key);
        if !strata_fs::exists(&path) {
            return Ok(None);
        }
        let too_large = || StorageError::TooLarge {
            key: key.to_string(),
            limit,
        };
        match strata_fs::read_with_mode(&path, limit) {
            // A file that grew between its stat and its reading.
            Ok((bytes, _)) if bytes.len() as u64 > limit => Err(too_large()),
            Ok((bytes, _)) => Ok(Some(bytes)),
            Err(e) if e.source.kind() == std::io::ErrorKind::Other => Err(too_large()),
            Err(source) => Err(Self::io(key)(source)),
        }
    }

    fn exists(&self, key: &str) -> Result<bool, StorageError> {
        Ok(strata_fs::exists(&self.path(key)))
    }

    fn put_new(&self, key: &str, bytes: &[u8]) -> Result<bool, StorageError> {
        strata_fs::create_durable(&self.path(key), bytes).map_err(Self::io(key))
    }

    fn put(&self, key: &str, bytes: &[u8]) -> Result<(), StorageError> {
        strata_fs::write_durable(&self.path(key), bytes).map_err(Self::io(key))
    }

    fn list(&self, prefix: &str) -> Result<Vec<String>, StorageError> {
        let prefix = prefix.trim_end_matches('/');
        let files = strata_fs::walk_files(&self.path(prefix)).map_err(Self::io(prefix))?;
        Ok(files
            .into_iter()
            .filter(|f| !f.is_link)
            .map(|f| format!("{prefix}/{}", f.rel))
            .filter(|k| valid_key(k))
            .collect())
    }

    fn delete(&self, key: &str) -> Result<(), StorageError> {
        strata_fs::remove_file(&self.path(key)).map_err(Self::io(key))
    }

    fn url(&self) -> &str {
        &self.url
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_behaves_as_a_bucket() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_str().unwrap();
        let s = FileStorage::new(&format!("file://{dir}"), dir);
        assert_eq!(s.get("env/a/1.json", 10).unwrap(), None);
        assert!(s.put_new("env/a/1.json", b"one").unwrap());
        assert!(!s.put_new("env/a/1.json", b"two").unwrap());
        assert_eq!(s.get("env/a/1.json", 10).unwrap().unwrap(), b"one");
        assert!(matches!(
            s.get("env/a/1.json", 2),
            Err(StorageError::TooLarge { .. })
        ));
        s.put("env/a/timestamp.json", b"t").unwrap();
        s.put("blobs/ab/abc", b"b").unwrap();
        assert_eq!(
            s.list("env/").unwrap(),
            ["env/a/1.json", "env/a/timestamp.json"]
        );
        assert_eq!(s.list("nothing").unwrap(), Vec::<String>::new());
        s.delete("env/a/1.json").unwrap();
        s.delete("env/a/1.json").unwrap();
        assert!(!s.exists("env/a/1.json").unwrap());
    }
}
