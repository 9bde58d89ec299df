//! What an earlier compile learnt of a node's site files, so that an unchanged file is
//! neither read nor rendered again.
//!
//! For each file: the metadata it was read with, for a template the hash of everything it
//! was rendered with (parameters, node, facts, module), and the hash and size of the
//! result. The rules are those of the target's stamps ([`strata_fs::Stamp`]): an entry is
//! only recorded when the file's ctime is older than the site's file system clock read
//! before the compile began, and when its metadata was the same before and after the read,
//! so any later edit (which no program can hide from ctime) makes the entry miss. A
//! template sees nothing but its own text and that context (there is no `include`), so the
//! same text and context render the same bytes.
//!
//! The content of a file found here is loaded only if something needs it (a diff, a
//! write): see [`Lazy`].

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_fs::{Records, StatKey};
use strata_types::{ContentSource, Hash};

use crate::render::{Renderer, Setup};

/// The first line of the file; another strata version starts afresh (rendering may differ).
fn header() -> String {
    format!("strata compiled 2 {}", env!("CARGO_PKG_VERSION"))
}

/// One site file, as an earlier compile found it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Known {
    /// The file's metadata when it was read.
    pub key: StatKey,
    /// For a template, the hash of its context.
    pub ctx: Option<Hash>,
    /// The hash of the (rendered) content.
    pub hash: Hash,
    /// Its size.
    pub size: u64,
}

/// The known site files of one node (a cache: strata keeps it under its cache directory).
/// One compile uses it: what that compile finds unchanged is marked as it goes.
#[derive(Debug, Clone, Default)]
pub struct Compiled {
    /// By path (a string: hashing a `Path` walks its components).
    files: HashMap<String, Entry>,
}

#[derive(Debug)]
struct Entry {
    known: Known,
    /// Found unchanged by the compile using it.
    seen: AtomicBool,
}

impl Clone for Entry {
    fn clone(&self) -> Entry {
        Entry {
            known: self.known,
            seen: AtomicBool::new(self.seen.load(Ordering::Relaxed)),
        }
    }
}

impl Compiled {
    /// What is known of `path`, when it still has this metadata and context (which marks
    /// it found unchanged).
    pub(crate) fn get(&self, path: &Path, key: &StatKey, ctx: Option<&Hash>) -> Option<&Known> {
        let e = self
            .files
            .get(path.to_str()?)
            .filter(|e| e.known.key == *key && e.known.ctx.as_ref() == ctx)?;
        e.seen.store(true, Ordering::Relaxed);
        Some(&e.known)
    }

    /// Reads a saved one; empty when it is not one, torn, or from another strata version.
    pub fn parse(bytes: &[u8]) -> Compiled {
        Self::parse_inner(bytes).unwrap_or_default()
    }

    fn parse_inner(bytes: &[u8]) -> Option<Compiled> {
        let files = strata_fs::read_map(bytes, &header(), |r| {
            let key = r.key()?;
            let ctx = match r.u64()? {
                0 => None,
                _ => Some(r.hash()?),
            };
            let hash = r.hash()?;
            let size = r.u64()?;
            let path = r.str()?.to_string();
            let known = Known {
                key,
                ctx,
                hash,
                size,
            };
            let seen = AtomicBool::new(false);
            Some((path, Entry { known, seen }))
        })?;
        Some(Compiled { files })
    }

    /// The file [`Compiled::parse`] reads: per site file its metadata, its context's hash
    /// (for a template), the hash and size of the result, and its path
    /// ([`strata_fs::Records`]).
    pub fn write(&self) -> Vec<u8> {
        let mut r = Records::new(&header(), self.files.len() * 200);
        for (p, Entry { known: k, .. }) in &self.files {
            r.key(&k.key);
            match &k.ctx {
                Some(h) => {
                    r.u64(1);
                    r.hash(h);
                }
                None => r.u64(0),
            }
            r.hash(&k.hash);
            r.u64(k.size);
            r.str(p);
            r.end_record();
        }
        r.finish()
    }
}

/// What a compile learns of the files it reads (those it finds unchanged are marked in the
/// [`Compiled`] it started from): a new [`Compiled`] only when something changed.
#[derive(Debug, Default)]
pub(crate) struct Learnt {
    read: Vec<(String, Known)>,
}

impl Learnt {
    /// Records a file read (not found unchanged).
    pub fn learn(&mut self, path: &Path, known: Known) {
        if let Some(path) = path.to_str().filter(|p| !p.contains('\n')) {
            self.read.push((path.to_string(), known));
        }
    }

    /// Ends a compile that started from `before`: what it neither read nor found unchanged
    /// is forgotten. `None` (nothing to save, nothing copied) when nothing changed.
    pub fn finish(self, before: &Compiled) -> Option<Compiled> {
        let seen = |e: &Entry| e.seen.load(Ordering::Relaxed);
        if self.read.is_empty() && before.files.values().all(seen) {
            return None;
        }
        let mut files: HashMap<String, Entry> = (before.files.iter())
            .filter(|(_, e)| seen(e))
            .map(|(p, e)| (p.clone(), e.clone()))
            .collect();
        for (path, known) in self.read {
            let seen = AtomicBool::new(false);
            files.insert(path, Entry { known, seen });
        }
        Some(Compiled { files })
    }
}

/// A site file whose content was not loaded: where it is and how it is rendered.
#[derive(Debug)]
pub(crate) struct LazyFile {
    pub path: PathBuf,
    pub rel: String,
    /// For a template, its context (an index into [`Lazy::ctxs`]).
    pub ctx: Option<usize>,
    /// The site file's size when it was last read.
    pub size: u64,
    /// Its content, once loaded (`None`: it no longer gives its hash, or cannot be read).
    pub loaded: OnceLock<Option<Vec<u8>>>,
}

/// Contents known by hash but loaded only when asked for, once.
#[derive(Debug, Default)]
pub struct Lazy {
    pub(crate) renderer: Option<Renderer>,
    /// Each module's template context and how its templates render.
    pub(crate) ctxs: Vec<(minijinja::Value, Setup)>,
    pub(crate) files: HashMap<Hash, LazyFile>,
}

impl Lazy {
    /// Reads (and renders) a file again; `None` if it no longer gives its hash (it changed
    /// during the run) or cannot be read.
    fn load(&self, f: &LazyFile, hash: &Hash) -> Option<Vec<u8>> {
        // What is read is checked against the hash below: no metadata is needed.
        let bytes = strata_fs::read_sized_file(&f.path, f.size as usize).ok()?;
        let bytes = match f.ctx {
            Some(i) => {
                let text = String::from_utf8(bytes).ok()?;
                let r = self.renderer.as_ref()?;
                let (ctx, setup) = self.ctxs.get(i)?;
                r.render_marked(&f.rel, &text, ctx, setup)
                    .ok()?
                    .out
                    .into_bytes()
            }
            None => bytes,
        };
        (Hash::of(&bytes) == *hash).then_some(bytes)
    }

    /// The contents loaded so far, by hash.
    pub fn into_loaded(self) -> HashMap<Hash, Vec<u8>> {
        self.files
            .into_iter()
            .filter_map(|(h, f)| Some((h, f.loaded.into_inner()??)))
            .collect()
    }
}

impl ContentSource for Lazy {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        let f = self.files.get(hash)?;
        let bytes = f.loaded.get_or_init(|| self.load(f, hash)).as_deref()?;
        Some(Cow::Borrowed(bytes))
    }
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test's own temporary files
mod tests {
    use super::*;

    fn lazy_of(dir: &Path) -> (Lazy, Hash, Hash) {
        let stat = b"static\n".to_vec();
        std::fs::write(dir.join("a"), &stat).unwrap();
        std::fs::write(dir.join("b.j2"), "port {{ port }}\n").unwrap();
        let rendered = b"port 8443\n";
        let (a, b) = (Hash::of(&stat), Hash::of(rendered));
        let file = |name: &str, ctx, size| LazyFile {
            path: dir.join(name),
            rel: name.to_string(),
            ctx,
            size,
            loaded: OnceLock::new(),
        };
        let lazy = Lazy {
            renderer: Some(Renderer::new()),
            ctxs: vec![(minijinja::context! { port => 8443 }, Setup::default())],
            files: HashMap::from([(a, file("a", None, 7)), (b, file("b.j2", Some(0), 16))]),
        };
        (lazy, a, b)
    }

    fn known(ino: u64) -> Known {
        let key = StatKey {
            dev: 1,
            ino,
            size: 3,
            mtime: (1, 0),
            ctime: (1, 0),
        };
        Known {
            key,
            ctx: None,
            hash: Hash::of(&ino.to_le_bytes()),
            size: 3,
        }
    }

    /// A cache of `/s/a` and `/s/b`, as read back from its file.
    fn cache() -> Compiled {
        let files = [("/s/a", 1), ("/s/b", 2)].map(|(p, i)| {
            let seen = AtomicBool::new(false);
            (
                p.to_string(),
                Entry {
                    known: known(i),
                    seen,
                },
            )
        });
        let text = Compiled {
            files: HashMap::from(files),
        }
        .write();
        Compiled::parse(&text)
    }

    /// What the next compile would find of `path` in `c`.
    fn lookup(c: &Compiled, path: &str, ino: u64) -> Option<Known> {
        c.get(Path::new(path), &known(ino).key, None).copied()
    }

    #[test]
    fn a_template_entry_survives_the_file_and_a_torn_file_is_empty() {
        let mut k = known(7);
        k.ctx = Some(Hash::of(b"context"));
        let seen = AtomicBool::new(false);
        let text = Compiled {
            files: HashMap::from([("/s/t.j2".to_string(), Entry { known: k, seen })]),
        }
        .write();
        let back = Compiled::parse(&text);
        let ctx = k.ctx.as_ref();
        assert_eq!(
            back.get(Path::new("/s/t.j2"), &k.key, ctx).copied(),
            Some(k)
        );
        // Another context is another render.
        let other = Hash::of(b"other");
        assert!(
            back.get(Path::new("/s/t.j2"), &k.key, Some(&other))
                .is_none()
        );
        assert!(Compiled::parse(&text[..text.len() - 1]).files.is_empty());
    }

    #[test]
    fn a_new_cache_only_when_a_file_was_read_or_went() {
        // Every file found unchanged: nothing to save.
        let before = cache();
        assert_eq!(lookup(&before, "/s/a", 1), Some(known(1)));
        assert_eq!(lookup(&before, "/s/b", 2), Some(known(2)));
        assert!(Learnt::default().finish(&before).is_none());
        // `/s/b` changed and was read again: the new cache has what was read.
        let before = cache();
        assert!(lookup(&before, "/s/a", 1).is_some());
        assert!(lookup(&before, "/s/b", 9).is_none());
        let mut learnt = Learnt::default();
        learnt.learn(Path::new("/s/b"), known(9));
        let after = learnt.finish(&before).expect("changed");
        assert_eq!(lookup(&after, "/s/a", 1), Some(known(1)));
        assert_eq!(lookup(&after, "/s/b", 9), Some(known(9)));
        assert!(lookup(&after, "/s/b", 2).is_none());
        // `/s/b` is gone from the site: forgotten.
        let before = cache();
        assert!(lookup(&before, "/s/a", 1).is_some());
        let after = Learnt::default().finish(&before).expect("changed");
        assert!(lookup(&after, "/s/b", 2).is_none());
        assert_eq!(after.files.len(), 1);
    }

    /// Loaded when first asked for (by the commit, or by the thread that loads its
    /// contents ahead of it: see `strata_state::Prefetching`), once.
    #[test]
    fn contents_are_loaded_and_rendered_when_asked_for_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let (lazy, a, b) = lazy_of(dir.path());
        assert!(lazy.files.values().all(|f| f.loaded.get().is_none()));
        assert_eq!(lazy.content(&b).as_deref(), Some(&b"port 8443\n"[..]));
        std::fs::write(dir.path().join("b.j2"), "edited\n").unwrap();
        assert_eq!(
            lazy.content(&b).as_deref(),
            Some(&b"port 8443\n"[..]),
            "kept"
        );
        let loaded = lazy.into_loaded();
        assert_eq!(loaded.len(), 1);
        assert!(!loaded.contains_key(&a));
    }

    #[test]
    fn a_file_changed_since_the_compile_gives_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let (lazy, a, b) = lazy_of(dir.path());
        std::fs::write(dir.path().join("a"), "edited\n").unwrap();
        assert!(lazy.content(&a).is_none());
        assert_eq!(lazy.content(&b).as_deref(), Some(&b"port 8443\n"[..]));
    }
}
