//! Content-addressed storage: every content strata wrote or replaced, by blake3 hash, so
//! that restore and rollback work offline.
//!
//! Objects are either loose (`store/<ab>/<hash>`) or in a pack: a commit that adds many
//! objects writes them as one `store/packs/<name>.pack` with a `<name>.idx` beside it
//! (records of hash, offset and length), one file creation instead of thousands.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};

use strata_fs::{DirEntryKind, Root};
use strata_types::{ContentSource, Hash, TargetPath};

use crate::StateError;

/// Above this many objects, a commit writes a pack.
const PACK_THRESHOLD: usize = 16;
const RECORD: usize = 32 + 8 + 8;

/// The store under `<root>/var/lib/strata/store`.
#[derive(Debug)]
pub struct Store<'r> {
    root: &'r Root,
    packs: OnceCell<HashMap<Hash, (String, u64, u64)>>,
    /// The fan-out directories of loose objects (`store/<ab>`, by the hash's first byte),
    /// listed once: an object whose directory is not there is not looked for (a first
    /// apply of thousands of files would otherwise look in a missing directory for each).
    fanout: RefCell<Option<HashSet<u8>>>,
}

pub(crate) fn store_dir() -> TargetPath {
    TargetPath::parse("/var/lib/strata/store").expect("fixed path")
}

fn packs_dir() -> TargetPath {
    store_dir().join("packs").expect("fixed path")
}

fn loose(hash: &Hash) -> (TargetPath, String) {
    let hex = hash.to_string();
    (store_dir().join(&hex[..2]).expect("hex"), hex)
}

impl<'r> Store<'r> {
    /// The store of a root.
    pub fn new(root: &'r Root) -> Store<'r> {
        Store {
            root,
            packs: OnceCell::new(),
            fanout: RefCell::new(None),
        }
    }

    /// Whether a loose object with this hash may exist (its fan-out directory does).
    fn may_be_loose(&self, hash: &Hash) -> Result<bool, StateError> {
        let mut fanout = self.fanout.borrow_mut();
        let dirs = match fanout.as_mut() {
            Some(d) => d,
            None => fanout.insert(
                self.root
                    .list(&store_dir())?
                    .into_iter()
                    .filter(|(name, kind)| name.len() == 2 && *kind == DirEntryKind::Dir)
                    .filter_map(|(name, _)| u8::from_str_radix(&name, 16).ok())
                    .collect(),
            ),
        };
        Ok(dirs.contains(&hash.as_bytes()[0]))
    }

    /// Every packed object, read once from the pack indexes.
    fn index(&self) -> Result<&HashMap<Hash, (String, u64, u64)>, StateError> {
        if let Some(map) = self.packs.get() {
            return Ok(map);
        }
        let mut map = HashMap::new();
        for (name, _) in self.root.list(&packs_dir())? {
            let Some(stem) = name.strip_suffix(".idx") else {
                continue;
            };
            let path = packs_dir().join(&name).expect("a plain name");
            let bytes = self.root.read(&path)?.unwrap_or_default();
            if bytes.len() % RECORD != 0 {
                return Err(StateError::Corrupt {
                    path: self.root.host_path(&path).display().to_string(),
                    message: "truncated pack index".into(),
                });
            }
            for rec in bytes.chunks_exact(RECORD) {
                let bytes: [u8; 32] = rec[..32].try_into().expect("32 bytes");
                let hash = Hash::from_bytes(bytes);
                let off = u64::from_le_bytes(rec[32..40].try_into().expect("8 bytes"));
                let len = u64::from_le_bytes(rec[40..48].try_into().expect("8 bytes"));
                map.insert(hash, (format!("{stem}.pack"), off, len));
            }
        }
        Ok(self.packs.get_or_init(|| map))
    }

    /// The content with this hash, verified.
    pub fn get(&self, hash: &Hash) -> Result<Option<Vec<u8>>, StateError> {
        let (dir, name) = loose(hash);
        let mut path = dir.join(&name).expect("hex");
        let loose = match self.may_be_loose(hash)? {
            true => self.root.read(&path)?,
            false => None,
        };
        let bytes = match loose {
            Some(b) => b,
            None => match self.index()?.get(hash) {
                Some((pack, off, len)) => {
                    path = packs_dir().join(pack).expect("a plain name");
                    self.root.read_at(&path, *off, *len as usize)?
                }
                None => return Ok(None),
            },
        };
        if Hash::of(&bytes) != *hash {
            return Err(StateError::Corrupt {
                path: self.root.host_path(&path).display().to_string(),
                message: "content does not match its hash".into(),
            });
        }
        Ok(Some(bytes))
    }

    /// Whether the store holds this hash (nothing is read).
    pub fn contains(&self, hash: &Hash) -> Result<bool, StateError> {
        if self.index()?.contains_key(hash) {
            return Ok(true);
        }
        if !self.may_be_loose(hash)? {
            return Ok(false);
        }
        let (dir, name) = loose(hash);
        Ok(self.root.exists(&dir.join(&name).expect("hex")))
    }

    /// Whether [`Store::put_all`] stores this many objects as one pack (else loose).
    pub fn packs(count: usize) -> bool {
        count > PACK_THRESHOLD
    }

    /// Adds objects: loose when few, else as the pack `name` (not yet durable: the commit
    /// syncs the file system once). Returns the pack's name when one was written.
    pub fn put_all(
        &self,
        objects: &[(Hash, Cow<'_, [u8]>)],
        name: &str,
    ) -> Result<Option<String>, StateError> {
        if !Self::packs(objects.len()) {
            for (hash, bytes) in objects {
                self.put(hash, bytes)?;
            }
            return Ok(None);
        }
        let dir = packs_dir();
        crate::state::private_dirs(self.root, &dir)?;
        let mut idx = Vec::with_capacity(objects.len() * RECORD);
        let mut offset = 0u64;
        for (hash, bytes) in objects {
            idx.extend(hash.as_bytes());
            idx.extend(offset.to_le_bytes());
            idx.extend((bytes.len() as u64).to_le_bytes());
            offset += bytes.len() as u64;
        }
        let parts: Vec<&[u8]> = objects.iter().map(|(_, b)| &b[..]).collect();
        // The index names the pack's objects, so it is written last.
        self.root
            .write_parts_in(&dir, &format!("{name}.pack"), &parts, (0o600, 0, 0))?;
        self.root
            .write_file_in(&dir, &format!("{name}.idx"), &idx, (0o600, 0, 0))?;
        Ok(Some(name.to_string()))
    }

    /// Adds one loose object.
    pub fn put(&self, hash: &Hash, bytes: &[u8]) -> Result<(), StateError> {
        if self.contains(hash)? {
            return Ok(());
        }
        let (dir, name) = loose(hash);
        let tmp = format!(".{name}.tmp");
        if let Err(e) = self.root.write_file_in(&dir, &tmp, bytes, (0o600, 0, 0)) {
            if !e.is_not_found() {
                return Err(e.into());
            }
            crate::state::private_dirs(self.root, &dir)?;
            self.root.write_file_in(&dir, &tmp, bytes, (0o600, 0, 0))?;
        }
        if let Some(dirs) = self.fanout.borrow_mut().as_mut() {
            dirs.insert(hash.as_bytes()[0]);
        }
        self.root.rename_in(&dir, &tmp, &name)?;
        Ok(())
    }

    /// Removes a loose object (and its fan-out directory when empty).
    pub fn remove(&self, hash: &Hash) -> Result<(), StateError> {
        let (dir, name) = loose(hash);
        self.root.remove(&dir.join(&name).expect("hex"))?;
        let _ = self.root.remove_dir(&dir);
        Ok(())
    }

    /// Removes a pack and its index.
    pub fn remove_pack(&self, name: &str) -> Result<(), StateError> {
        for ext in ["idx", "pack"] {
            self.root.remove(
                &packs_dir()
                    .join(&format!("{name}.{ext}"))
                    .expect("a plain name"),
            )?;
        }
        let _ = self.root.remove_dir(&packs_dir());
        Ok(())
    }
}

impl ContentSource for Store<'_> {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        self.get(hash).ok().flatten().map(Cow::Owned)
    }
}
