//! The manifest: which files make an environment's site at one version, by path, size,
//! executable bit and blake3, signed by a signing key. Built from a site directory on the
//! operator's side; checked entry by entry on the node's.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use strata_types::Hash;

use crate::envelope::seal;
use crate::{KeyId, KeyPair, SnapshotError, UnixTime};

/// The payload type of a manifest.
pub const MANIFEST_TYPE: &str = "application/vnd.strata.manifest+json";
/// The manifest format this strata writes and reads.
pub const FORMAT: u32 = 1;

/// One file of the site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Its path relative to the site, `/`-separated.
    pub path: String,
    /// Whether it is executable (scripts, executable templates).
    pub exec: bool,
    /// Its size in bytes.
    pub size: u64,
    /// The blake3 of its content: the blob's name.
    pub blake3: Hash,
}

/// A manifest's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `"manifest"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// [`FORMAT`].
    pub format: u32,
    /// The site's name.
    pub site: String,
    /// The environment it is for.
    pub environment: String,
    /// Only goes up, per environment.
    pub version: u64,
    /// The site's git commit, or a content hash.
    pub revision: String,
    /// When it was signed.
    pub created: UnixTime,
    /// When it stops being trusted.
    pub expires: UnixTime,
    /// The signing key's id.
    pub key: KeyId,
    /// The files, in path order.
    pub files: Vec<Entry>,
}

impl Manifest {
    /// Signs the manifest with `key` (whose id it must name) into the bytes sent.
    pub fn seal(&self, key: &KeyPair) -> Vec<u8> {
        let payload = serde_json::to_vec(self).expect("a manifest serializes");
        seal(MANIFEST_TYPE, &payload, &[key])
    }

    /// Checks a manifest's signature (a signing key of `root`), site and entries, not its
    /// times or any floor: what a publisher reads of its own bucket to know which blobs
    /// a kept version still needs.
    pub fn open_signed(root: &crate::Root, bytes: &[u8]) -> Result<Manifest, SnapshotError> {
        crate::trust::open_manifest(root, bytes).map(|(m, _)| m)
    }

    /// Parses a verified payload and checks every entry: relative `/`-separated paths
    /// with no `..`, `.` or empty component, in strictly increasing order (so none twice).
    pub(crate) fn parse(payload: &[u8]) -> Result<Manifest, SnapshotError> {
        const WHAT: &str = "the manifest";
        let m: Manifest =
            serde_json::from_slice(payload).map_err(|e| SnapshotError::malformed(WHAT, e))?;
        if m.kind != "manifest" || m.format != FORMAT {
            return Err(SnapshotError::malformed(
                WHAT,
                format!(
                    "it is {:?} format {}, not manifest format {FORMAT}",
                    m.kind, m.format
                ),
            ));
        }
        let mut last: Option<&str> = None;
        for e in &m.files {
            check_path(&e.path).map_err(|why| {
                SnapshotError::malformed(WHAT, format!("entry {:?}: {why}", e.path))
            })?;
            if last.is_some_and(|l| l >= e.path.as_str()) {
                return Err(SnapshotError::malformed(
                    WHAT,
                    format!("entry {:?} is out of order or listed twice", e.path),
                ));
            }
            last = Some(&e.path);
        }
        Ok(m)
    }
}

/// Why a manifest path is refused, if it is.
fn check_path(path: &str) -> Result<(), &'static str> {
    if path.is_empty() || path.starts_with('/') {
        return Err("not a relative path");
    }
    if path.contains('\0') || path.contains('\\') {
        return Err("has a NUL or backslash");
    }
    if path
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return Err("has an empty, `.` or `..` component");
    }
    if path == ".strata" || path.starts_with(".strata/") || path.starts_with(".git/") {
        return Err("is strata's or git's own");
    }
    Ok(())
}

/// The site files a snapshot carries, with where they are: every regular file of the
/// site but `.strata/` (the operator's database and keys) and `.git/`. A symlink is
/// refused, naming it: a snapshot holds regular files only (FLEET.md), and a link's
/// target on the operator's machine means nothing on a node.
pub fn build_entries(site: &Path) -> Result<Vec<(Entry, PathBuf)>, SnapshotError> {
    let mut out = Vec::new();
    let skip: BTreeSet<&str> = [".strata", ".git"].into();
    for f in strata_fs::walk_files(site)? {
        let top = f.rel.split('/').next().unwrap_or_default();
        if skip.contains(top) {
            continue;
        }
        if f.is_link {
            return Err(SnapshotError::malformed(
                f.path.display().to_string(),
                "it is a symlink; a snapshot carries regular files only (copy its target in)",
            ));
        }
        check_path(&f.rel)
            .map_err(|why| SnapshotError::malformed(f.path.display().to_string(), why))?;
        let (content, mode) = strata_fs::read_with_mode(&f.path, u64::MAX)?;
        out.push((
            Entry {
                path: f.rel,
                exec: mode & 0o111 != 0,
                size: content.len() as u64,
                blake3: Hash::of(&content),
            },
            f.path,
        ));
    }
    Ok(out)
}

/// The site's revision: its git commit when it is a git checkout (read from `.git`
/// without running git), else `blake3:` and the hash of its entries.
pub fn site_revision(site: &Path, entries: &[Entry]) -> String {
    if let Some(commit) = git_revision(site) {
        return commit;
    }
    let mut h = blake3::Hasher::new();
    for e in entries {
        h.update(e.path.as_bytes());
        h.update(&[0, u8::from(e.exec)]);
        h.update(e.blake3.as_bytes());
    }
    format!("blake3:{}", h.finalize().to_hex())
}

/// The commit a git checkout is at.
pub fn git_revision(site: &Path) -> Option<String> {
    strata_fs::git_head(site)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "",
            "/etc/passwd",
            "a/../../etc",
            "a//b",
            "./a",
            "a/.",
            ".strata/x",
            ".git/config",
            "a\\b",
        ] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["strata.toml", "modules/a/files/etc/x", "a/.hidden", "a/..b"] {
            assert!(check_path(good).is_ok(), "{good:?} refused");
        }
    }

    #[test]
    fn entries_out_of_order_or_twice_are_refused() {
        let e = |p: &str| Entry {
            path: p.into(),
            exec: false,
            size: 0,
            blake3: Hash::of(b""),
        };
        let mut m = Manifest {
            kind: "manifest".into(),
            format: FORMAT,
            site: "s".into(),
            environment: "e".into(),
            version: 1,
            revision: "r".into(),
            created: 0,
            expires: 1,
            key: KeyId("k".into()),
            files: vec![e("a"), e("b")],
        };
        assert!(Manifest::parse(&serde_json::to_vec(&m).unwrap()).is_ok());
        m.files = vec![e("a"), e("a")];
        let err = Manifest::parse(&serde_json::to_vec(&m).unwrap())
            .unwrap_err()
            .to_string();
        assert!(err.contains("listed twice"), "{err}");
    }
}

/// A site's files read for a release: the entries, where each blob's content is, and the
/// site's revision; one read serves every environment's manifest.
#[derive(Debug)]
pub struct SiteFiles {
    /// The entries, in path order.
    pub entries: Vec<Entry>,
    /// Where each blob's content is, by hash (hex).
    pub paths: std::collections::HashMap<String, PathBuf>,
    /// The site's revision.
    pub revision: String,
}

impl SiteFiles {
    /// Reads the site (see [`build_entries`]).
    pub fn read(site: &Path) -> Result<SiteFiles, SnapshotError> {
        let built = build_entries(site)?;
        let entries: Vec<Entry> = built.iter().map(|(e, _)| e.clone()).collect();
        let revision = site_revision(site, &entries);
        let paths = built
            .into_iter()
            .map(|(e, p)| (e.blake3.to_string(), p))
            .collect();
        Ok(SiteFiles {
            entries,
            paths,
            revision,
        })
    }

    /// The manifest of `environment` at `version`, signed by `key`, valid from `created`
    /// for `lifetime` seconds.
    pub fn manifest(
        &self,
        site: &str,
        environment: &str,
        version: u64,
        created: UnixTime,
        lifetime: u64,
        key: &KeyPair,
    ) -> Vec<u8> {
        Manifest {
            kind: "manifest".into(),
            format: FORMAT,
            site: site.to_string(),
            environment: environment.to_string(),
            version,
            revision: self.revision.clone(),
            created,
            expires: created + lifetime,
            key: key.id(),
            files: self.entries.clone(),
        }
        .seal(key)
    }
}
