//! A temporary root, the two trees the tests commit (old and new: files changed, added
//! and removed, a new tree, a directory replaced by a link and a file by a directory),
//! and the views of the tree that the tests compare.

use std::collections::{BTreeMap, HashMap};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use strata_fs::Root;
use strata_state::{Committed, Op, Prefetching, State, StateError};
use strata_types::{Entry, Generation, GenerationKind, Hash, Report, Snapshot, TargetPath};

/// What a test wants at a path.
#[derive(Debug, Clone)]
pub enum Want {
    Dir,
    File(String),
    Link(String),
}

/// A desired tree, by path.
pub type Tree = BTreeMap<TargetPath, Want>;

fn path(p: &str) -> TargetPath {
    TargetPath::parse(p).expect("a test path")
}

/// `/srv/app/d0..d3` with ten files each, `/srv/lib` a directory with a subdirectory,
/// `/srv/data` a file.
pub fn old() -> Tree {
    let mut t = Tree::new();
    for d in ["/srv", "/srv/app", "/srv/lib", "/srv/lib/sub"] {
        t.insert(path(d), Want::Dir);
    }
    for d in 0..4 {
        t.insert(path(&format!("/srv/app/d{d}")), Want::Dir);
        for f in 0..10 {
            let text = format!("old {d}/{f}\n");
            t.insert(path(&format!("/srv/app/d{d}/f{f}")), Want::File(text));
        }
    }
    t.insert(path("/srv/lib/a"), Want::File("lib a\n".into()));
    t.insert(path("/srv/lib/sub/b"), Want::File("lib b\n".into()));
    t.insert(path("/srv/data"), Want::File("data\n".into()));
    t
}

/// `old` changed: `d0..d2` rewritten, `d3` gone, `fresh` new with five files,
/// `/srv/lib` a link to `app/d0`, `/srv/data` a directory holding a file.
pub fn new() -> Tree {
    let mut t = Tree::new();
    for d in ["/srv", "/srv/app", "/srv/app/fresh", "/srv/data"] {
        t.insert(path(d), Want::Dir);
    }
    for d in 0..3 {
        t.insert(path(&format!("/srv/app/d{d}")), Want::Dir);
        for f in 0..10 {
            let text = format!("new {d}/{f}\n");
            t.insert(path(&format!("/srv/app/d{d}/f{f}")), Want::File(text));
        }
    }
    for f in 0..5 {
        let text = format!("fresh {f}\n");
        t.insert(path(&format!("/srv/app/fresh/g{f}")), Want::File(text));
    }
    t.insert(path("/srv/lib"), Want::Link("app/d0".into()));
    t.insert(path("/srv/data/x"), Want::File("x\n".into()));
    t
}

/// The tree as [`Fixture::seen`] shows it, from what the test wants.
pub fn view(tree: &Tree) -> String {
    let mut out = String::new();
    for (p, want) in tree {
        out.push_str(&match want {
            Want::Dir => format!("{p} dir 755\n"),
            Want::File(text) => format!("{p} file 644 {text:?}\n"),
            Want::Link(target) => format!("{p} link {target}\n"),
        });
    }
    out
}

/// A temporary root (or, in a child process, the root of the test that started it).
pub struct Fixture {
    dir: PathBuf,
    _temp: Option<tempfile::TempDir>,
}

impl Fixture {
    pub fn new() -> Fixture {
        let temp = tempfile::tempdir().expect("a temporary directory");
        Fixture {
            dir: temp.path().to_path_buf(),
            _temp: Some(temp),
        }
    }

    /// The root at `dir`, left in place.
    pub fn at(dir: &Path) -> Fixture {
        Fixture {
            dir: dir.to_path_buf(),
            _temp: None,
        }
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Commits `to` as an apply would that planned it against `from` (what it saw on the
    /// target): one op for each path whose state changes, once the state is opened (and
    /// any interrupted commit finished or undone).
    pub fn commit(&self, from: &Tree, to: &Tree) -> Result<Committed, StateError> {
        let root = Root::open(&self.dir)?;
        let state = State::open_for_commit(&root)?;
        let (me, us) = (
            rustix::process::geteuid().as_raw(),
            rustix::process::getegid().as_raw(),
        );
        let mut contents = HashMap::new();
        let mut entries = Vec::new();
        let mut ops = Vec::new();
        for p in from.keys().chain(to.keys()) {
            if ops.iter().any(|op: &Op| &op.path == p) {
                continue;
            }
            let mut state = |tree: &Tree| match tree.get(p) {
                Some(want) => snapshot(want, (me, us), &mut contents),
                None => Snapshot::Absent,
            };
            let (before, after) = (state(from), state(to));
            if !after.is_absent() {
                entries.push(entry(p, &after));
            }
            if before != after {
                ops.push(Op {
                    path: p.clone(),
                    before,
                    after,
                    sealed: false,
                });
            }
        }
        // Only what the commit writes is at hand, as in an apply: what it replaces is
        // read back from the target.
        contents.retain(|h, _| ops.iter().any(|op| op.after.hash() == Some(*h)));
        let generation = generation(entries);
        state.commit(ops, generation, &Prefetching::plain(&contents), Vec::new())
    }

    /// Opens the state as any command does: an interrupted commit is finished or undone.
    pub fn open(&self) -> Result<Option<u64>, StateError> {
        let root = Root::open(&self.dir)?;
        State::open_for_read(&root)?.current_number()
    }

    /// Every directory, file and link below `/srv`, as a user listing it sees them.
    pub fn seen(&self) -> String {
        let mut out = String::new();
        let srv = self.dir.join("srv");
        if std::fs::symlink_metadata(&srv).is_ok() {
            walk(&srv, "/srv", &mut out);
        }
        out
    }

    /// What a commit must never leave once it is finished or undone: staged names, the
    /// journal and its markers.
    pub fn leftovers(&self) -> Vec<String> {
        let mut found = Vec::new();
        find_staged(&self.dir, &mut found);
        for f in ["journal", "commit", "undo", "current.new"] {
            let p = self.dir.join("var/lib/strata").join(f);
            if std::fs::symlink_metadata(&p).is_ok() {
                found.push(p.display().to_string());
            }
        }
        found
    }

    /// How many files the store holds (loose objects, packs and their indexes).
    pub fn store_files(&self) -> usize {
        let mut n = 0;
        count_files(&self.dir.join("var/lib/strata/store"), &mut n);
        n
    }

    /// Whether the journal of a commit in flight is there.
    pub fn has_journal(&self) -> bool {
        self.dir.join("var/lib/strata/journal").exists()
    }
}

fn snapshot(
    want: &Want,
    (uid, gid): (u32, u32),
    contents: &mut HashMap<Hash, Vec<u8>>,
) -> Snapshot {
    let xattrs = Default::default();
    match want {
        Want::Dir => Snapshot::Dir {
            mode: 0o755,
            uid,
            gid,
            xattrs,
        },
        Want::File(text) => {
            let hash = Hash::of(text.as_bytes());
            contents.insert(hash, text.clone().into_bytes());
            Snapshot::File {
                hash,
                size: text.len() as u64,
                mode: 0o644,
                uid,
                gid,
                xattrs,
            }
        }
        Want::Link(target) => Snapshot::Link {
            target: target.clone(),
            uid,
            gid,
        },
    }
}

fn entry(path: &TargetPath, state: &Snapshot) -> Entry {
    Entry {
        path: path.clone(),
        state: state.clone(),
        replace: true,
        implicit: false,
        sensitive: false,
        observed: false,
        module: None,
        source: None,
    }
}

fn generation(entries: Vec<Entry>) -> Generation {
    Generation {
        number: 0,
        time: "2026-01-01T00:00:00Z".into(),
        kind: GenerationKind::Apply,
        replayed: None,
        node: "node.test".into(),
        environment: "test".into(),
        site: None,
        revision: None,
        dirty: false,
        entries,
        originals: BTreeMap::new(),
        modules: BTreeMap::new(),
        commands: Vec::new(),
        keep_generations: None,
        secrets: BTreeMap::new(),
        report: Report::default(),
    }
}

/// Lists `dir` (shown as `shown`) into `out` in [`view`]'s form, depth first.
fn walk(dir: &Path, shown: &str, out: &mut String) {
    let md = std::fs::symlink_metadata(dir).expect("listed");
    let mode = md.permissions().mode() & 0o7777;
    if md.is_symlink() {
        let target = std::fs::read_link(dir).expect("a link");
        out.push_str(&format!("{shown} link {}\n", target.display()));
        return;
    }
    if md.is_file() {
        let text = std::fs::read_to_string(dir).expect("a text file");
        out.push_str(&format!("{shown} file {mode:o} {text:?}\n"));
        return;
    }
    assert!(md.is_dir(), "{shown}: neither file, link nor directory");
    out.push_str(&format!("{shown} dir {mode:o}\n"));
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("a directory")
        .map(|e| {
            e.expect("an entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    for name in names {
        walk(&dir.join(&name), &format!("{shown}/{name}"), out);
    }
}

fn find_staged(dir: &Path, found: &mut Vec<String>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let e = e.expect("an entry");
        let p = e.path();
        if e.file_name().to_string_lossy().contains(".strata-new") {
            found.push(p.display().to_string());
        }
        if e.file_type().expect("a type").is_dir() {
            find_staged(&p, found);
        }
    }
}

fn count_files(dir: &Path, n: &mut usize) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries {
        let e = e.expect("an entry");
        if e.file_type().expect("a type").is_dir() {
            count_files(&e.path(), n);
        } else {
            *n += 1;
        }
    }
}
