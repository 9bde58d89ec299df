//! The state of one path, observed on a target or desired by a catalog.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Hash, TargetPath};

/// Extended attributes strata manages on a path, by name: the value in hex, or `None`
/// for "must not be there". Only names listed are managed; others are left alone.
pub type Xattrs = BTreeMap<String, Option<String>>;

/// The permission bits (`0o7777`), owner and group that a file, directory or FIFO is
/// given.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    /// Permission bits.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

impl Meta {
    /// Owned by root, with these permission bits (strata's own files).
    pub const fn root(mode: u32) -> Meta {
        Meta {
            mode,
            uid: 0,
            gid: 0,
        }
    }
}

/// What stands at one path: its type and the attributes strata manages.
/// Modes are the permission bits only (`0o7777`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", try_from = "Flat")]
pub enum Snapshot {
    /// Nothing is there.
    Absent,
    /// A regular file.
    File {
        /// blake3 of the content.
        hash: Hash,
        /// Size in bytes.
        size: u64,
        /// Permission bits.
        mode: u32,
        /// Owner id.
        uid: u32,
        /// Group id.
        gid: u32,
        /// Managed extended attributes.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        xattrs: Xattrs,
    },
    /// A directory.
    Dir {
        /// Permission bits.
        mode: u32,
        /// Owner id.
        uid: u32,
        /// Group id.
        gid: u32,
        /// Managed extended attributes.
        #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
        xattrs: Xattrs,
    },
    /// A symbolic link.
    Link {
        /// Where it points, as written.
        target: String,
        /// Owner id.
        uid: u32,
        /// Group id.
        gid: u32,
    },
    /// A named pipe (FIFO).
    Fifo {
        /// Permission bits.
        mode: u32,
        /// Owner id.
        uid: u32,
        /// Group id.
        gid: u32,
    },
    /// Anything else (socket, device): strata never manages these.
    Other {
        /// What it is.
        kind: String,
    },
}

/// A snapshot as it is written, read in one pass: serde reads an internally tagged enum
/// by buffering each object first, and a generation holds thousands of them.
#[derive(Deserialize)]
struct Flat {
    #[serde(rename = "type")]
    tag: Tag,
    hash: Option<Hash>,
    size: Option<u64>,
    mode: Option<u32>,
    uid: Option<u32>,
    gid: Option<u32>,
    #[serde(default)]
    xattrs: Xattrs,
    target: Option<String>,
    kind: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "lowercase")]
enum Tag {
    Absent,
    File,
    Dir,
    Link,
    Fifo,
    Other,
}

impl TryFrom<Flat> for Snapshot {
    type Error = String;

    fn try_from(f: Flat) -> Result<Snapshot, String> {
        fn need<T>(v: Option<T>, field: &str, kind: &str) -> Result<T, String> {
            v.ok_or_else(|| format!("missing field `{field}` of a {kind}"))
        }
        Ok(match f.tag {
            Tag::Absent => Snapshot::Absent,
            Tag::File => Snapshot::File {
                hash: need(f.hash, "hash", "file")?,
                size: need(f.size, "size", "file")?,
                mode: need(f.mode, "mode", "file")?,
                uid: need(f.uid, "uid", "file")?,
                gid: need(f.gid, "gid", "file")?,
                xattrs: f.xattrs,
            },
            Tag::Dir => Snapshot::Dir {
                mode: need(f.mode, "mode", "dir")?,
                uid: need(f.uid, "uid", "dir")?,
                gid: need(f.gid, "gid", "dir")?,
                xattrs: f.xattrs,
            },
            Tag::Link => Snapshot::Link {
                target: need(f.target, "target", "link")?,
                uid: need(f.uid, "uid", "link")?,
                gid: need(f.gid, "gid", "link")?,
            },
            Tag::Fifo => Snapshot::Fifo {
                mode: need(f.mode, "mode", "fifo")?,
                uid: need(f.uid, "uid", "fifo")?,
                gid: need(f.gid, "gid", "fifo")?,
            },
            Tag::Other => Snapshot::Other {
                kind: need(f.kind, "kind", "other")?,
            },
        })
    }
}

impl Snapshot {
    /// A one-word name of the type: `file`, `dir`, `link`, `absent` or the other kind.
    pub fn kind(&self) -> &str {
        match self {
            Snapshot::Absent => "absent",
            Snapshot::File { .. } => "file",
            Snapshot::Dir { .. } => "dir",
            Snapshot::Link { .. } => "link",
            Snapshot::Fifo { .. } => "fifo",
            Snapshot::Other { kind } => kind,
        }
    }

    /// Whether `have` (what stands at a path) already is `self` (what is wanted). Links
    /// are compared by target only: their ownership is not managed. Of extended
    /// attributes, only those `self` manages count. Runs for every path of every plan, so
    /// it compares in place.
    pub fn satisfied_by(&self, have: &Snapshot) -> bool {
        match (self, have) {
            (Snapshot::Link { target: a, .. }, Snapshot::Link { target: b, .. }) => a == b,
            (
                Snapshot::File {
                    hash: a,
                    size: s,
                    mode: m,
                    uid: u,
                    gid: g,
                    ..
                },
                Snapshot::File {
                    hash: b,
                    size: t,
                    mode: n,
                    uid: v,
                    gid: h,
                    ..
                },
            ) => (a, s, m, u, g) == (b, t, n, v, h) && self.xattrs_in(have),
            (
                Snapshot::Dir {
                    mode: m,
                    uid: u,
                    gid: g,
                    ..
                },
                Snapshot::Dir {
                    mode: n,
                    uid: v,
                    gid: h,
                    ..
                },
            ) => (m, u, g) == (n, v, h) && self.xattrs_in(have),
            _ => self == have,
        }
    }

    /// Each attribute `self` manages is as wanted in `have`; unmanaged ones do not matter.
    fn xattrs_in(&self, have: &Snapshot) -> bool {
        let got = have.xattrs();
        self.xattrs()
            .iter()
            .all(|(k, v)| got.get(k).and_then(Option::as_ref) == v.as_ref())
    }

    /// The managed extended attributes (none for links, FIFOs and absent paths).
    pub fn xattrs(&self) -> &Xattrs {
        static NONE: Xattrs = BTreeMap::new();
        match self {
            Snapshot::File { xattrs, .. } | Snapshot::Dir { xattrs, .. } => xattrs,
            _ => &NONE,
        }
    }

    /// The managed extended attributes, to change them (files and directories).
    pub fn xattrs_mut(&mut self) -> Option<&mut Xattrs> {
        match self {
            Snapshot::File { xattrs, .. } | Snapshot::Dir { xattrs, .. } => Some(xattrs),
            _ => None,
        }
    }

    /// Whether nothing stands there.
    pub fn is_absent(&self) -> bool {
        matches!(self, Snapshot::Absent)
    }

    /// Whether a directory stands there.
    pub fn is_dir(&self) -> bool {
        matches!(self, Snapshot::Dir { .. })
    }

    /// Whether turning `self` into `after` changes a directory into a file, link or FIFO,
    /// or one of those into a directory: a *type change*, which replaces a whole tree
    /// (docs/state.md). A file that becomes a link, or the reverse, is not one: one rename
    /// replaces either.
    pub fn dir_type_change(&self, after: &Snapshot) -> bool {
        let plain = |s: &Snapshot| {
            matches!(
                s,
                Snapshot::File { .. } | Snapshot::Link { .. } | Snapshot::Fifo { .. }
            )
        };
        (self.is_dir() && plain(after)) || (plain(self) && after.is_dir())
    }

    /// The content hash of a file.
    pub fn hash(&self) -> Option<Hash> {
        match self {
            Snapshot::File { hash, .. } => Some(*hash),
            _ => None,
        }
    }

    /// The permission bits, for files, directories and FIFOs.
    pub fn mode(&self) -> Option<u32> {
        match self {
            Snapshot::File { mode, .. }
            | Snapshot::Dir { mode, .. }
            | Snapshot::Fifo { mode, .. } => Some(*mode),
            _ => None,
        }
    }

    /// Permission bits, owner and group, for files, directories and FIFOs.
    pub fn meta(&self) -> Option<Meta> {
        match self {
            Snapshot::File { mode, uid, gid, .. }
            | Snapshot::Dir { mode, uid, gid, .. }
            | Snapshot::Fifo { mode, uid, gid } => Some(Meta {
                mode: *mode,
                uid: *uid,
                gid: *gid,
            }),
            _ => None,
        }
    }

    /// Owner and group ids, for files, directories, links and FIFOs.
    pub fn owner(&self) -> Option<(u32, u32)> {
        match self {
            Snapshot::File { uid, gid, .. }
            | Snapshot::Dir { uid, gid, .. }
            | Snapshot::Link { uid, gid, .. }
            | Snapshot::Fifo { uid, gid, .. } => Some((*uid, *gid)),
            _ => None,
        }
    }

    /// Owner and group ids, to change them.
    pub fn ids_mut(&mut self) -> Option<(&mut u32, &mut u32)> {
        match self {
            Snapshot::File { uid, gid, .. }
            | Snapshot::Dir { uid, gid, .. }
            | Snapshot::Link { uid, gid, .. }
            | Snapshot::Fifo { uid, gid, .. } => Some((uid, gid)),
            _ => None,
        }
    }
}

/// One path a catalog or a generation manages, with what should stand there.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// The path on the node.
    pub path: TargetPath,
    /// The desired state: a file, directory or link (absent: a script deleted it).
    pub state: Snapshot,
    /// `false` for add-only files: created when missing, never overwritten.
    #[serde(default = "yes", skip_serializing_if = "is_true")]
    pub replace: bool,
    /// A directory strata creates only because a managed path lies below it.
    #[serde(default, skip_serializing_if = "is_false")]
    pub implicit: bool,
    /// Whether the content came from a secret (never shown).
    #[serde(default, skip_serializing_if = "is_false")]
    pub sensitive: bool,
    /// The state was observed after the module's scripts ran, not declared: the module
    /// owns the path while it is applied, and taking the module away takes it back.
    #[serde(default, skip_serializing_if = "is_false")]
    pub observed: bool,
    /// The module that declares it (`nginx@1.2`); none for implicit directories.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub module: Option<String>,
    /// The site file it comes from, relative to the site.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

fn yes() -> bool {
    true
}

fn is_true(b: &bool) -> bool {
    *b
}

fn is_false(b: &bool) -> bool {
    !*b
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(xattrs: &[(&str, Option<&str>)]) -> Snapshot {
        Snapshot::File {
            hash: Hash::of(b"x"),
            size: 1,
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: xattrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.map(str::to_string)))
                .collect(),
        }
    }

    #[test]
    fn only_managed_extended_attributes_count() {
        let want = file(&[("user.a", Some("01")), ("user.gone", None)]);
        assert!(want.satisfied_by(&file(&[("user.a", Some("01")), ("user.other", Some("ff"))])));
        assert!(!want.satisfied_by(&file(&[("user.a", Some("02"))])));
        assert!(!want.satisfied_by(&file(&[])));
        assert!(!want.satisfied_by(&file(&[("user.a", Some("01")), ("user.gone", Some("00"))])));
        assert!(file(&[]).satisfied_by(&file(&[("user.x", Some("01"))])));
    }

    /// What a generation or journal wrote reads back the same, every kind of it.
    #[test]
    fn every_kind_reads_back_as_written() {
        let all = [
            Snapshot::Absent,
            file(&[]),
            file(&[("user.a", Some("01")), ("security.capability", None)]),
            Snapshot::Dir {
                mode: 0o2750,
                uid: 1,
                gid: 2,
                xattrs: Default::default(),
            },
            Snapshot::Link {
                target: "../x".into(),
                uid: 3,
                gid: 4,
            },
            Snapshot::Fifo {
                mode: 0o600,
                uid: 0,
                gid: 5,
            },
            Snapshot::Other {
                kind: "socket".into(),
            },
        ];
        for s in all {
            let text = serde_json::to_string(&s).unwrap();
            let back: Snapshot = serde_json::from_str(&text).unwrap();
            assert_eq!(back, s, "{text}");
        }
    }

    #[test]
    fn a_damaged_snapshot_says_what_is_missing() {
        let err = serde_json::from_str::<Snapshot>(r#"{"type":"file","size":1,"mode":420}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing field `hash` of a file"), "{err}");
        let err = serde_json::from_str::<Snapshot>(r#"{"type":"door"}"#)
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown variant `door`"), "{err}");
    }
}
