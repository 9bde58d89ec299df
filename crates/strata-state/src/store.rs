//! Content-addressed storage: every content strata wrote or replaced, by blake3 hash, so
//! that restore and rollback work offline.

use std::borrow::Cow;

use strata_fs::Root;
use strata_types::{ContentSource, Hash, TargetPath};

use crate::StateError;

/// The store under `<root>/var/lib/strata/store`, fanned out by the first two hex digits.
#[derive(Debug)]
pub struct Store<'r> {
    root: &'r Root,
}

pub(crate) fn store_dir() -> TargetPath {
    TargetPath::parse("/var/lib/strata/store").expect("fixed path")
}

impl<'r> Store<'r> {
    /// The store of a root.
    pub fn new(root: &'r Root) -> Store<'r> {
        Store { root }
    }

    fn path(hash: &Hash) -> (TargetPath, String) {
        let hex = hash.to_string();
        (store_dir().join(&hex[..2]).expect("hex"), hex)
    }

    /// The content with this hash, verified.
    pub fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, StateError> {
        let (dir, name) = Self::path(hash);
        let path = dir.join(&name).expect("hex");
        match self.root.read(&path)? {
            Some(bytes) if Hash::of(&bytes) == *hash => Ok(Some(bytes)),
            Some(_) => Err(StateError::Corrupt {
                path: self.root.host_path(&path).display().to_string(),
                message: "content does not match its hash".into(),
            }),
            None => Ok(None),
        }
    }

    /// Whether the store holds this hash.
    pub fn contains(&self, hash: &Hash) -> bool {
        let (dir, name) = Self::path(hash);
        !matches!(
            self.root.inspect(&dir.join(&name).expect("hex")),
            Ok(strata_types::Snapshot::Absent) | Err(_)
        )
    }

    /// Removes content (and its fan-out directory when empty).
    pub fn remove(&self, hash: &Hash) -> Result<(), StateError> {
        let (dir, name) = Self::path(hash);
        self.root.remove(&dir.join(&name).expect("hex"))?;
        let _ = self.root.remove_dir(&dir);
        Ok(())
    }

    /// Adds content (not yet durable: the commit syncs the file system once).
    pub fn put(&self, hash: &Hash, bytes: &[u8]) -> Result<(), StateError> {
        if self.contains(hash) {
            return Ok(());
        }
        let (dir, name) = Self::path(hash);
        self.root.create_dirs(&dir)?;
        let tmp = format!(".{name}.tmp");
        self.root.write_file_in(&dir, &tmp, bytes, (0o600, 0, 0))?;
        self.root.rename_in(&dir, &tmp, &name)?;
        Ok(())
    }
}

impl ContentSource for Store<'_> {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        self.get(hash).ok().flatten().map(Cow::Owned)
    }
}
