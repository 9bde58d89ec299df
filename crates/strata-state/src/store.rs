//! Content-addressed storage: every content strata wrote or replaced, by blake3 hash, so
//! that restore and rollback work offline.
//!
//! Objects are either loose (`store/<ab>/<hash>`) or in a pack: a commit that adds many
//! objects writes them as one `store/packs/<name>.pack` with a `<name>.idx` beside it
//! (records of hash, offset and length), one file creation instead of thousands.
//!
//! The contents of files rendered from a secret are *sealed*: kept as
//! `store/sealed/<hash>`, encrypted to the node's age key (see `seal.rs`), never in clear.

use std::borrow::Cow;
use std::cell::{OnceCell, RefCell};
use std::collections::{HashMap, HashSet};
use std::rc::Rc;

use serde::Serialize;
use strata_fs::{DirEntryKind, Root};
use strata_types::{ContentSource, Hash, Meta, TargetPath};

use crate::StateError;
use crate::pack::{IndexWriter, PackRecord, parse_index};

/// Above this many objects, a commit writes a pack.
const PACK_THRESHOLD: usize = 16;

/// A file of the store, as [`Store::files`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StoreFile {
    /// A loose object.
    Loose(Hash),
    /// A pack's index (its name without `.idx`).
    Index(String),
    /// A pack (its name without `.pack`).
    Pack(String),
    /// Anything else: a temporary file an interrupted write left.
    Other,
}

/// How big a store is.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct StoreSize {
    /// Distinct contents held, loose or packed.
    pub objects: u64,
    /// The size of every file of the store (loose objects, packs, their indexes).
    pub bytes: u64,
}

/// The store under `<root>/var/lib/strata/store`.
#[derive(Debug)]
pub struct Store<'r> {
    root: &'r Root,
    /// Every packed object: the pack it is in, and where.
    packs: OnceCell<HashMap<Hash, (Rc<str>, PackRecord)>>,
    /// The fan-out directories of loose objects (`store/<ab>`, by the hash's first byte),
    /// listed once: an object whose directory is not there is not looked for (a first
    /// apply of thousands of files would otherwise look in a missing directory for each).
    fanout: RefCell<Option<HashSet<u8>>>,
    /// The sealed objects, listed once (almost always none).
    sealed: RefCell<Option<HashSet<Hash>>>,
    /// The node's age identity, read when a sealed object is first written or read.
    key: OnceCell<crate::seal::NodeIdentity>,
}

pub(crate) fn store_dir() -> TargetPath {
    TargetPath::parse("/var/lib/strata/store").expect("fixed path")
}

fn packs_dir() -> TargetPath {
    store_dir().join("packs").expect("fixed path")
}

fn sealed_dir() -> TargetPath {
    store_dir().join("sealed").expect("fixed path")
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
            sealed: RefCell::new(None),
            key: OnceCell::new(),
        }
    }

    /// Whether a sealed object with this hash is in the store.
    fn is_sealed(&self, hash: &Hash) -> Result<bool, StateError> {
        let mut sealed = self.sealed.borrow_mut();
        let set = match sealed.as_mut() {
            Some(s) => s,
            None => sealed.insert(
                (self.root.list(&sealed_dir())?.into_iter())
                    .filter_map(|(name, _)| Hash::parse(&name).ok())
                    .collect(),
            ),
        };
        Ok(set.contains(hash))
    }

    /// The node's age identity, read once.
    fn key(&self) -> Result<&age::x25519::Identity, StateError> {
        if let Some(k) = self.key.get() {
            return Ok(&k.0);
        }
        let k = crate::seal::load(self.root)?;
        Ok(&self.key.get_or_init(|| k).0)
    }

    /// Checks that sealed objects can be written: the node's key is there and readable.
    pub(crate) fn can_seal(&self) -> Result<(), StateError> {
        self.key().map(|_| ())
    }

    /// Adds `plain` sealed to the node's key (unless the store holds this hash already,
    /// sealed or not). Nothing but the ciphertext reaches the disk.
    pub fn put_sealed(&self, hash: &Hash, plain: &[u8]) -> Result<(), StateError> {
        if self.contains(hash)? {
            return Ok(());
        }
        let dir = sealed_dir();
        let name = hash.to_string();
        let bytes = crate::seal::seal(self.key()?, plain).map_err(|reason| StateError::Sealed {
            path: self
                .root
                .host_path(&dir.join(&name).expect("hex"))
                .display()
                .to_string(),
            reason,
        })?;
        let tmp = format!(".{name}.tmp");
        crate::state::private_dirs(self.root, &dir)?;
        self.root
            .write_file_in(&dir, &tmp, &bytes, Meta::root(0o600))?;
        self.root.rename_in(&dir, &tmp, &name)?;
        if let Some(set) = self.sealed.borrow_mut().as_mut() {
            set.insert(*hash);
        }
        Ok(())
    }

    /// A sealed object, opened with the node's key and checked against its hash.
    fn get_sealed(&self, hash: &Hash) -> Result<Option<Vec<u8>>, StateError> {
        let path = sealed_dir().join(&hash.to_string()).expect("hex");
        let Some(bytes) = self.root.read(&path)? else {
            return Ok(None);
        };
        let host = || self.root.host_path(&path).display().to_string();
        let plain =
            crate::seal::open(self.key()?, &bytes).map_err(|reason| StateError::Sealed {
                path: host(),
                reason,
            })?;
        if Hash::of(&plain) != *hash {
            return Err(StateError::Corrupt {
                path: host(),
                message: "content does not match its hash".into(),
            });
        }
        Ok(Some(plain))
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
    fn index(&self) -> Result<&HashMap<Hash, (Rc<str>, PackRecord)>, StateError> {
        if let Some(map) = self.packs.get() {
            return Ok(map);
        }
        let mut map = HashMap::new();
        for stem in self.pack_names()? {
            let pack: Rc<str> = format!("{stem}.pack").into();
            for r in self.read_index(&stem)? {
                map.insert(r.hash, (pack.clone(), r));
            }
        }
        Ok(self.packs.get_or_init(|| map))
    }

    /// The names of the packs that have an index (`g3` for `g3.pack` and `g3.idx`).
    pub(crate) fn pack_names(&self) -> Result<Vec<String>, StateError> {
        Ok((self.root.list(&packs_dir())?.into_iter())
            .filter_map(|(name, _)| Some(name.strip_suffix(".idx")?.to_string()))
            .collect())
    }

    /// The records of a pack's index: hash, offset and length of each object.
    pub(crate) fn read_index(&self, stem: &str) -> Result<Vec<PackRecord>, StateError> {
        let path = packs_dir()
            .join(&format!("{stem}.idx"))
            .expect("a plain name");
        let bytes = self.root.read(&path)?.unwrap_or_default();
        parse_index(&bytes).ok_or_else(|| StateError::Corrupt {
            path: self.root.host_path(&path).display().to_string(),
            message: "truncated pack index".into(),
        })
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
                Some((pack, r)) => {
                    path = packs_dir().join(pack).expect("a plain name");
                    self.root.read_at(&path, r.offset, r.len as usize)?
                }
                None if self.is_sealed(hash)? => return self.get_sealed(hash),
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
        if self.index()?.contains_key(hash) || self.is_sealed(hash)? {
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
        let mut idx = IndexWriter::new(objects.len());
        for (hash, bytes) in objects {
            idx.push(hash, bytes.len() as u64);
        }
        let idx = idx.finish();
        let parts: Vec<&[u8]> = objects.iter().map(|(_, b)| &b[..]).collect();
        // The index names the pack's objects, so it is written last.
        self.root
            .write_parts_in(&dir, &format!("{name}.pack"), &parts, Meta::root(0o600))?;
        self.root
            .write_file_in(&dir, &format!("{name}.idx"), &idx, Meta::root(0o600))?;
        Ok(Some(name.to_string()))
    }

    /// Adds one loose object.
    pub fn put(&self, hash: &Hash, bytes: &[u8]) -> Result<(), StateError> {
        if self.contains(hash)? {
            return Ok(());
        }
        let (dir, name) = loose(hash);
        let tmp = format!(".{name}.tmp");
        if let Err(e) = self
            .root
            .write_file_in(&dir, &tmp, bytes, Meta::root(0o600))
        {
            if !e.is_not_found() {
                return Err(e.into());
            }
            crate::state::private_dirs(self.root, &dir)?;
            self.root
                .write_file_in(&dir, &tmp, bytes, Meta::root(0o600))?;
        }
        if let Some(dirs) = self.fanout.borrow_mut().as_mut() {
            dirs.insert(hash.as_bytes()[0]);
        }
        self.root.rename_in(&dir, &tmp, &name)?;
        Ok(())
    }

    /// Removes a loose or sealed object (and its directory when empty).
    pub fn remove(&self, hash: &Hash) -> Result<(), StateError> {
        let (dir, name) = loose(hash);
        self.root.remove(&dir.join(&name).expect("hex"))?;
        let _ = self.root.remove_dir(&dir);
        if self.is_sealed(hash)? {
            self.root.remove(&sealed_dir().join(&name).expect("hex"))?;
            let _ = self.root.remove_dir(&sealed_dir());
        }
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

    /// Every file of the store with its path and size, loose objects (by fan-out
    /// directory) first, then the packs directory.
    pub(crate) fn files(&self) -> Result<Vec<(StoreFile, TargetPath, u64)>, StateError> {
        let mut out = Vec::new();
        let mut dirs: Vec<TargetPath> = (self.root.list(&store_dir())?.into_iter())
            .filter(|(name, kind)| name.len() == 2 && *kind == DirEntryKind::Dir)
            .map(|(name, _)| store_dir().join(&name).expect("a plain name"))
            .collect();
        dirs.push(packs_dir());
        dirs.push(sealed_dir());
        for dir in dirs {
            for (name, _) in self.root.list(&dir)? {
                let path = dir.join(&name).expect("a plain name");
                let Some(key) = self.root.stat_key(&path)? else {
                    continue;
                };
                let kind = if dir == packs_dir() {
                    match (name.strip_suffix(".idx"), name.strip_suffix(".pack")) {
                        (Some(stem), _) => StoreFile::Index(stem.to_string()),
                        (_, Some(stem)) => StoreFile::Pack(stem.to_string()),
                        _ => StoreFile::Other,
                    }
                } else {
                    match Hash::parse(&name) {
                        Ok(h) if loose(&h).0 == dir || dir == sealed_dir() => StoreFile::Loose(h),
                        _ => StoreFile::Other,
                    }
                };
                out.push((kind, path, key.size));
            }
        }
        Ok(out)
    }

    /// How many distinct contents the store holds, and the size of its files.
    pub fn size(&self) -> Result<StoreSize, StateError> {
        let mut hashes = HashSet::new();
        let mut bytes = 0;
        for (file, _, size) in self.files()? {
            bytes += size;
            match file {
                StoreFile::Loose(h) => {
                    hashes.insert(h);
                }
                StoreFile::Index(stem) => {
                    hashes.extend(self.read_index(&stem)?.into_iter().map(|r| r.hash));
                }
                StoreFile::Pack(_) | StoreFile::Other => {}
            }
        }
        Ok(StoreSize {
            objects: hashes.len() as u64,
            bytes,
        })
    }

    /// Copies the objects `keep` of the pack `old` into a new pack `new`, each checked
    /// against its hash, and makes it durable: written under temporary names, flushed,
    /// renamed (the index last) and the directory flushed. `old` is left as it was.
    pub(crate) fn repack(
        &self,
        old: &str,
        keep: &[PackRecord],
        new: &str,
    ) -> Result<(), StateError> {
        let dir = packs_dir();
        let from = dir.join(&format!("{old}.pack")).expect("a plain name");
        let (pack_tmp, idx_tmp) = (format!(".{new}.pack.tmp"), format!(".{new}.idx.tmp"));
        let mut idx = IndexWriter::new(keep.len());
        let mut failed = None;
        let written = self
            .root
            .create_with_in(&dir, &pack_tmp, Meta::root(0o600), |file| {
                let mut file = std::io::BufWriter::with_capacity(1 << 16, file);
                for &PackRecord { hash, offset, len } in keep {
                    let bytes = match self.root.read_at(&from, offset, len as usize) {
                        Ok(b) if Hash::of(&b) == hash => b,
                        Ok(_) => {
                            failed = Some(StateError::Corrupt {
                                path: self.root.host_path(&from).display().to_string(),
                                message: format!("object {hash} does not match its hash"),
                            });
                            return Err(std::io::Error::other("a damaged object"));
                        }
                        Err(e) => {
                            failed = Some(e.into());
                            return Err(std::io::Error::other("an unreadable object"));
                        }
                    };
                    std::io::Write::write_all(&mut file, &bytes)?;
                    idx.push(&hash, len);
                }
                std::io::Write::flush(&mut file)
            });
        if let Some(e) = failed {
            return Err(e);
        }
        written?;
        self.root
            .write_file_in(&dir, &idx_tmp, &idx.finish(), Meta::root(0o600))?;
        for tmp in [&pack_tmp, &idx_tmp] {
            self.root.fsync(&dir.join(tmp).expect("a plain name"))?;
        }
        self.root
            .rename_in(&dir, &pack_tmp, &format!("{new}.pack"))?;
        self.root.rename_in(&dir, &idx_tmp, &format!("{new}.idx"))?;
        self.root.fsync(&dir)?;
        Ok(())
    }

    /// A name for a pack rewritten from `old` that no pack has: `g3.1`, `g3.2`… (a commit
    /// names its pack `g<n>`, so the two never meet).
    pub(crate) fn rewritten_name(&self, old: &str) -> Result<String, StateError> {
        let taken: HashSet<String> = (self.root.list(&packs_dir())?.into_iter())
            .map(|(name, _)| name)
            .collect();
        let base = old.split_once('.').map_or(old, |(b, _)| b);
        Ok((1u64..)
            .map(|k| format!("{base}.{k}"))
            .find(|n| !taken.contains(&format!("{n}.pack")) && !taken.contains(&format!("{n}.idx")))
            .expect("a free name"))
    }
}

impl ContentSource for Store<'_> {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        self.get(hash).ok().flatten().map(Cow::Owned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn objects(n: usize) -> Vec<(Hash, Cow<'static, [u8]>)> {
        (0..n)
            .map(|i| {
                let bytes = format!("object {i} {}", "x".repeat(i * 10)).into_bytes();
                (Hash::of(&bytes), Cow::Owned(bytes))
            })
            .collect()
    }

    #[test]
    fn a_rewritten_pack_holds_exactly_the_objects_kept_and_the_old_one_is_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let all = objects(20);
        let store = Store::new(&root);
        assert_eq!(store.put_all(&all, "g1").unwrap().as_deref(), Some("g1"));
        let keep: Vec<PackRecord> = (store.read_index("g1").unwrap().into_iter())
            .filter(|r| all[..5].iter().any(|(h, _)| *h == r.hash))
            .collect();
        assert_eq!(keep.len(), 5);
        let new = store.rewritten_name("g1").unwrap();
        assert_eq!(new, "g1.1");
        store.repack("g1", &keep, &new).unwrap();

        let store = Store::new(&root);
        assert_eq!(store.pack_names().unwrap(), ["g1.1", "g1"]);
        assert_eq!(
            store.read_index("g1").unwrap().len(),
            20,
            "the old pack stays"
        );
        assert_eq!(
            store.size().unwrap().objects,
            20,
            "an object in two packs counts once"
        );
        store.remove_pack("g1").unwrap();
        let store = Store::new(&root);
        for (i, (hash, bytes)) in all.iter().enumerate() {
            let got = store.get(hash).unwrap();
            if i < 5 {
                assert_eq!(got.as_deref(), Some(&bytes[..]), "object {i}");
            } else {
                assert_eq!(got, None, "object {i}");
            }
        }
        let size = store.size().unwrap();
        let kept_bytes: u64 = all[..5].iter().map(|(_, b)| b.len() as u64).sum();
        assert_eq!(size.objects, 5);
        assert_eq!(size.bytes, kept_bytes + crate::pack::index_size(5));
        assert_eq!(store.rewritten_name("g1.1").unwrap(), "g1.2");
    }

    #[test]
    fn a_damaged_object_stops_a_rewrite_and_leaves_no_new_pack() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let all = objects(20);
        let store = Store::new(&root);
        store.put_all(&all, "g1").unwrap();
        let pack = packs_dir().join("g1.pack").unwrap();
        let mut bytes = root.read(&pack).unwrap().unwrap();
        bytes[0] ^= 0xff;
        root.write_file_in(&packs_dir(), "g1.pack", &bytes, Meta::root(0o600))
            .unwrap();
        let keep = store.read_index("g1").unwrap();
        let err = store.repack("g1", &keep, "g1.1").unwrap_err().to_string();
        assert!(err.contains("g1.pack is damaged"), "{err}");
        let names: Vec<String> = root
            .list(&packs_dir())
            .unwrap()
            .into_iter()
            .map(|(n, _)| n)
            .collect();
        assert_eq!(names, ["g1.idx", "g1.pack"]);
    }
}
