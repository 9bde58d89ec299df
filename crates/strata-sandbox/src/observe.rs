//! Turning the overlay's upper dir into a change set (see SANDBOX-NOTES.md): every entry
//! is compared with the lower one; whiteouts and opaque directories are deletions;
//! copied-up entries whose type, content, mode, owner, group and link target equal the
//! lower ones are no change (times are not compared: a script that rewrites a file with
//! the same content changes nothing).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use globset::{Glob, GlobSet, GlobSetBuilder};
use strata_fs::Root;
use strata_types::{Hash, Snapshot, StatKey, TargetPath, Xattrs};

use crate::helper_error::{HelperError, Result};
use crate::mounts::Layer;
use crate::outer::MOUNT_POINTS;
use crate::{Changed, DEFAULT_IGNORE, Merged};

/// Who touched what: the first module whose phase created or changed each upper entry.
pub type Owners = BTreeMap<TargetPath, Option<String>>;

/// The upper dir's entries as last seen, to tell which phase touched which path.
#[derive(Default)]
pub struct Fingerprints(BTreeMap<TargetPath, Print>);

/// How an upper-dir entry looked: the metadata that changes with its content (its ctime
/// with any change at all), and its mode.
#[derive(PartialEq, Eq)]
struct Print {
    key: StatKey,
    mode: u32,
}

impl Fingerprints {
    /// Walks the upper dir and attributes every new or changed entry to `module`, unless
    /// a module already touched it.
    pub fn update(&mut self, layers: &[Layer], module: Option<&str>, owners: &mut Owners) {
        let mut now = BTreeMap::new();
        for layer in layers {
            walk_upper(&layer.upper, &layer.at, &layer.at, &mut |path, md| {
                let print = Print {
                    key: StatKey::of_metadata(&md),
                    mode: md.mode(),
                };
                now.insert(path, print);
            });
        }
        for (path, print) in &now {
            if self.0.get(path) != Some(print) && !matches!(owners.get(path), Some(Some(_))) {
                owners.insert(path.clone(), module.map(str::to_string));
            }
        }
        self.0 = now;
    }
}

/// Calls `f` for every entry below `dir` of the layer at `at` whose upper dir is `base`
/// (depth first, parents before children).
fn walk_upper(
    base: &Path,
    at: &TargetPath,
    dir: &TargetPath,
    f: &mut dyn FnMut(TargetPath, std::fs::Metadata),
) {
    let host = host(base, at, dir);
    let Ok(entries) = std::fs::read_dir(&host) else {
        return;
    };
    let mut names: Vec<_> = entries.flatten().collect();
    names.sort_by_key(|e| e.file_name());
    for e in names {
        let Some(name) = e.file_name().to_str().map(str::to_string) else {
            continue;
        };
        let Ok(path) = dir.join(&name) else { continue };
        let Ok(md) = e.metadata() else { continue };
        let is_dir = md.is_dir();
        f(path.clone(), md);
        if is_dir {
            walk_upper(base, at, &path, f);
        }
    }
}

/// Where `p` is in the upper dir `base` of the layer mounted at `at`.
fn host(base: &Path, at: &TargetPath, p: &TargetPath) -> std::path::PathBuf {
    let rel = if at.as_str() == "/" {
        p.relative()
    } else {
        p.as_str()[at.as_str().len()..].trim_start_matches('/')
    };
    if rel.is_empty() {
        base.to_path_buf()
    } else {
        base.join(rel)
    }
}

/// The layer `p` lies in: the deepest whose mount point is `p` or above it.
fn layer_of<'a>(layers: &'a [Layer], p: &TargetPath) -> &'a Layer {
    layers
        .iter()
        .filter(|l| p.starts_with(&l.at))
        .max_by_key(|l| l.at.depth())
        .expect("the root layer holds every path")
}

/// What is not reported: the default ignore list plus the site's, except what the
/// package manager keeps in a cache directory but is its state (debconf's answers).
pub struct Ignore {
    ignore: GlobSet,
    keep: GlobSet,
}

impl Ignore {
    pub fn is_match(&self, path: &str) -> bool {
        self.ignore.is_match(path)
            && !self.keep.is_match(path)
            // Directories that hold what is kept are walked.
            && !crate::DEFAULT_KEEP.iter().any(|k| {
                k.strip_prefix(path).is_some_and(|rest| rest.starts_with('/'))
            })
    }
}

/// The default ignore list plus the site's.
pub fn ignore_set(extra: &[String]) -> Result<Ignore> {
    let set = |globs: &mut dyn Iterator<Item = &str>| -> Result<GlobSet> {
        let mut b = GlobSetBuilder::new();
        for g in globs {
            b.add(Glob::new(g).map_err(|e| format!("ignore pattern `{g}`: {e}"))?);
        }
        Ok(b.build().map_err(|e| e.to_string())?)
    };
    Ok(Ignore {
        ignore: set(&mut DEFAULT_IGNORE
            .iter()
            .copied()
            .chain(extra.iter().map(String::as_str)))?,
        keep: set(&mut crate::DEFAULT_KEEP.iter().copied())?,
    })
}

fn is_whiteout(md: &std::fs::Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn is_opaque(path: &Path) -> bool {
    let mut buf = [0u8; 8];
    matches!(
        rustix::fs::lgetxattr(path, "trusted.overlay.opaque", &mut buf),
        Ok(n) if &buf[..n] == b"y"
    )
}

struct Walk<'a> {
    upper: &'a Path,
    /// Where the layer is mounted.
    at: &'a TargetPath,
    /// The upper dir as a tree, to read extended attributes.
    upper_tree: Root,
    lower: &'a Root,
    ignore: &'a Ignore,
    owners: &'a Owners,
    out: &'a Path,
    shimmed: &'a BTreeMap<TargetPath, Hash>,
    /// The largest file a script may leave (the memory limit: a larger one is sparse).
    max_file: u64,
    acc: Vec<Changed>,
}

/// Every path whose state after the run differs from the target's, in path order, with
/// the contents of changed files copied to `out/<hash>`.
pub fn changes(
    layers: &[Layer],
    lower: &Root,
    ignore: &Ignore,
    owners: &Owners,
    out: &Path,
    shimmed: &BTreeMap<TargetPath, Hash>,
    max_file: u64,
) -> Result<Vec<Changed>> {
    let mut acc = Vec::new();
    for layer in layers {
        let mut w = Walk {
            upper: &layer.upper,
            at: &layer.at,
            upper_tree: Root::open(&layer.upper)?,
            lower,
            ignore,
            owners,
            out,
            shimmed,
            max_file,
            acc: Vec::new(),
        };
        if layer.at.as_str() != "/" {
            w.top()?;
        }
        w.dir(&layer.at, false)?;
        acc.append(&mut w.acc);
    }
    acc.sort_by(|a, b| a.path.cmp(&b.path));
    acc.dedup_by(|a, b| a.path == b.path);
    Ok(acc)
}

impl Walk<'_> {
    /// The extended attributes the run set or removed on a file or directory of the upper
    /// dir, against the target's; `before` gets the target's values for those names.
    fn xattrs(&self, path: &TargetPath, before: &mut Snapshot) -> Result<Xattrs> {
        let inner = TargetPath::parse(&format!(
            "/{}",
            host(Path::new(""), self.at, path).to_string_lossy()
        ))?;
        let now = self.upper_tree.xattrs(&inner, None)?;
        let was = match before {
            Snapshot::File { .. } | Snapshot::Dir { .. } => self.lower.xattrs(path, None)?,
            _ => Xattrs::new(),
        };
        let mut diff = Xattrs::new();
        for (name, value) in &now {
            if was.get(name) != Some(value) {
                diff.insert(name.clone(), value.clone());
            }
        }
        for name in was.keys().filter(|n| !now.contains_key(*n)) {
            diff.insert(name.clone(), None);
        }
        if let Some(x) = before.xattrs_mut() {
            *x = diff
                .keys()
                .map(|n| (n.clone(), was.get(n).cloned().flatten()))
                .collect();
        }
        Ok(diff)
    }

    fn owner(&self, p: &TargetPath) -> Option<String> {
        std::iter::once(p.clone())
            .chain(p.ancestors())
            .find_map(|a| self.owners.get(&a).cloned())
            .flatten()
    }

    fn push(&mut self, path: TargetPath, state: Snapshot, module: Option<String>) {
        self.acc.push(Changed {
            path,
            state,
            module,
        });
    }

    /// The top of a mounted file system's layer: its owner, group and mode (its contents
    /// are walked by `dir`).
    fn top(&mut self) -> Result<()> {
        let md = std::fs::symlink_metadata(self.upper)
            .map_err(HelperError::io("inspect", self.upper))?;
        let mut before = self.lower.inspect(self.at)?;
        let state = Snapshot::Dir {
            mode: md.mode() & 0o7777,
            uid: md.uid(),
            gid: md.gid(),
            xattrs: self.xattrs(self.at, &mut before)?,
        };
        if !state.satisfied_by(&before) {
            let module = self.owner(self.at);
            self.push(self.at.clone(), state, module);
        }
        Ok(())
    }

    /// Walks one upper directory; `new` when the lower has no directory there. (Long: one
    /// branch per kind of entry, each short.)
    fn dir(&mut self, dir: &TargetPath, new: bool) -> Result<()> {
        let host_dir = host(self.upper, self.at, dir);
        let mut names: Vec<String> = std::fs::read_dir(&host_dir)
            .map_err(HelperError::io("read", &host_dir))?
            .flatten()
            .filter_map(|e| e.file_name().to_str().map(str::to_string))
            .collect();
        names.sort();
        if !new && dir != self.at && is_opaque(&host_dir) {
            // Everything the lower directory held and the upper one lacks is gone.
            let present: BTreeSet<&String> = names.iter().collect();
            for (name, _) in self.lower.list(dir)? {
                if !present.contains(&name) {
                    let p = dir.join(&name)?;
                    let module = self.owner(dir);
                    self.gone(&p, module)?;
                }
            }
        }
        for name in names {
            let path = dir.join(&name)?;
            if self.ignore.is_match(path.as_str()) {
                continue;
            }
            let host_path = host(self.upper, self.at, &path);
            let md = std::fs::symlink_metadata(&host_path)
                .map_err(HelperError::io("inspect", &host_path))?;
            let mut before = if new {
                Snapshot::Absent
            } else {
                self.lower.inspect(&path)?
            };
            if dir.as_str() == "/" && MOUNT_POINTS.contains(&path.as_str()) && before.is_absent() {
                continue; // made by the sandbox to mount on
            }
            let module = self.owner(&path);
            let ft = md.file_type();
            if !ft.is_dir() && !is_whiteout(&md) && before.is_dir() {
                // A directory replaced by a file, link or FIFO (`/lib -> usr/lib`):
                // everything it held is gone with it.
                self.gone_below(&path, module.as_ref())?;
            }
            if is_whiteout(&md) {
                self.gone(&path, module)?;
            } else if ft.is_dir() {
                let state = Snapshot::Dir {
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    xattrs: self.xattrs(&path, &mut before)?,
                };
                if !state.satisfied_by(&before) {
                    self.push(path.clone(), state, module);
                }
                self.dir(&path, !matches!(before, Snapshot::Dir { .. }))?;
            } else if ft.is_file() {
                if md.len() > self.max_file {
                    return Err(format!(
                        "{path}: a script made a file of {}, larger than the sandbox's memory limit of {} (a sparse file?)",
                        crate::cgroup::human(md.len()),
                        crate::cgroup::human(self.max_file)
                    )
                    .into());
                }
                let hash = hash_file(&host_path)?;
                let state = Snapshot::File {
                    hash,
                    size: md.len(),
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                    xattrs: self.xattrs(&path, &mut before)?,
                };
                if self.shimmed.get(&path) == Some(&hash) {
                    continue; // an interception shim, not the scripts' doing
                }
                if !state.satisfied_by(&before) {
                    copy_out(self.out, &hash, &host_path)?;
                    self.push(path, state, module);
                }
            } else if ft.is_symlink() {
                let target = std::fs::read_link(&host_path)
                    .map_err(HelperError::io("read link", &host_path))?;
                let state = Snapshot::Link {
                    target: target.to_string_lossy().into_owned(),
                    uid: md.uid(),
                    gid: md.gid(),
                };
                if !state.satisfied_by(&before) {
                    self.push(path, state, module);
                }
            } else if ft.is_fifo() {
                let state = Snapshot::Fifo {
                    mode: md.mode() & 0o7777,
                    uid: md.uid(),
                    gid: md.gid(),
                };
                if state != before {
                    self.push(path, state, module);
                }
            } else {
                let kind = if ft.is_socket() { "socket" } else { "device" };
                if before.kind() != kind {
                    self.push(path, Snapshot::Other { kind: kind.into() }, module);
                }
            }
        }
        Ok(())
    }

    /// A lower path (and everything below it) that the run deleted.
    fn gone(&mut self, path: &TargetPath, module: Option<String>) -> Result<()> {
        if self.ignore.is_match(path.as_str()) {
            return Ok(());
        }
        let before = self.lower.inspect(path)?;
        if before.is_absent() {
            return Ok(());
        }
        if before.is_dir() {
            self.gone_below(path, module.as_ref())?;
        }
        self.push(path.clone(), Snapshot::Absent, module);
        Ok(())
    }

    /// Everything below a lower directory, which the run deleted or replaced.
    fn gone_below(&mut self, dir: &TargetPath, module: Option<&String>) -> Result<()> {
        for (name, _) in self.lower.list(dir)? {
            let child = dir.join(&name)?;
            self.gone(&child, module.cloned())?;
        }
        Ok(())
    }
}

/// A file's content hash, read in pieces (a changed file may be large).
fn hash_file(path: &Path) -> Result<Hash> {
    let err = |e| HelperError::io("read", path)(e);
    let mut f = std::fs::File::open(path).map_err(err)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = std::io::Read::read(&mut f, &mut buf).map_err(err)?;
        if n == 0 {
            return Ok(Hash::from_blake3(hasher.finalize()));
        }
        hasher.update(&buf[..n]);
    }
}

/// Copies a changed file's content to `out/<hash>`, privately.
fn copy_out(out: &Path, hash: &Hash, from: &Path) -> Result<()> {
    let p = out.join(hash.to_string());
    if !p.exists() {
        let mut src = std::fs::File::open(from).map_err(HelperError::io("read", from))?;
        let mut dst = strata_fs::create_private(&p)?;
        std::io::copy(&mut src, &mut dst).map_err(HelperError::io("write", &p))?;
    }
    Ok(())
}

fn save(out: &Path, hash: &Hash, bytes: &[u8]) -> Result<()> {
    let p = out.join(hash.to_string());
    if !p.exists() {
        strata_fs::write_private(&p, bytes)?;
    }
    Ok(())
}

/// The final state of each watched path: `Lower` when the run left it alone.
pub fn watched(
    watch: &[TargetPath],
    layers: &[Layer],
    merged: &Root,
    out: &Path,
) -> Result<BTreeMap<TargetPath, Merged>> {
    let mut result = BTreeMap::new();
    for path in watch {
        let state = merged.inspect(path)?;
        let touched = state.is_absent() || in_upper(layer_of(layers, path), path);
        let merged_state = if !touched {
            Merged::Lower
        } else {
            if let Some(hash) = state.hash()
                && let Some(bytes) = merged.read(path)?
            {
                save(out, &hash, &bytes)?;
            }
            Merged::State { state }
        };
        result.insert(path.clone(), merged_state);
    }
    Ok(result)
}

/// Whether the layer's upper dir holds `path` itself, reached through real directories
/// only.
fn in_upper(layer: &Layer, path: &TargetPath) -> bool {
    let mut ancestors: Vec<TargetPath> = path
        .ancestors()
        .filter(|a| a.starts_with(&layer.at) && *a != layer.at)
        .collect();
    ancestors.reverse();
    for a in &ancestors {
        match std::fs::symlink_metadata(host(&layer.upper, &layer.at, a)) {
            Ok(md) if md.is_dir() => {}
            _ => return false,
        }
    }
    // A layer's top is its upper dir itself, which always exists.
    std::fs::symlink_metadata(host(&layer.upper, &layer.at, path)).is_ok()
}
