//! Type changes in a plan: a directory a script replaced with a file, link or FIFO, or one
//! of those it replaced with a directory. The plan names every path of the replaced tree
//! (docs/state.md, "Type changes"), and never looks at a managed path through a link that
//! stands where strata manages a path of its own.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use strata_fs::{DirEntryKind, FsError, Root};
use strata_types::{Action, Change, ContentSource, Entry, Plan, Snapshot, TargetPath};

use crate::diff::diff_for;
use crate::plan::{PlanError, keep_xattrs};

/// strata's own state directory (`strata-state` keeps it there): a type change must never
/// replace a tree that holds it.
const STATE_DIR: &str = "/var/lib/strata";

/// Whether `map` has a key strictly below `top`.
pub fn has_below<V>(map: &BTreeMap<TargetPath, V>, top: &TargetPath) -> bool {
    below(map, top).next().is_some()
}

/// The entries of `map` strictly below `top`, in path order.
fn below<'m, V>(
    map: &'m BTreeMap<TargetPath, V>,
    top: &TargetPath,
) -> impl Iterator<Item = (&'m TargetPath, &'m V)> {
    // Every path below `/a` lies between `/a/` and `/a0` (`0` follows `/`).
    let (lo, hi) = match top.as_str() {
        "/" => ("/".to_string(), "0".to_string()),
        t => (format!("{t}/"), format!("{t}0")),
    };
    map.range::<str, _>((Bound::Excluded(lo.as_str()), Bound::Excluded(hi.as_str())))
}

/// A file, link or FIFO: what a directory can be replaced with, or replace.
fn plain(s: &Snapshot) -> bool {
    matches!(
        s,
        Snapshot::File { .. } | Snapshot::Link { .. } | Snapshot::Fifo { .. }
    )
}

/// Managed paths where a script made a file, link or FIFO and below which strata manages
/// other paths (what stood there before). Where such a path is not a directory on the
/// target, nothing below it is a path of its own: `/lib/libc.so.6` below a link `/lib ->
/// usr/lib` is `/usr/lib/libc.so.6`, which is not strata's to restore or remove under
/// that name. Empty, and free, unless a script changed a type.
#[derive(Debug, Default)]
pub struct Shadows(BTreeSet<TargetPath>);

impl Shadows {
    /// The `entries` that scripts made files, links or FIFOs and below which strata
    /// manages a path (`managed_below`: a desired path, an original).
    pub fn new<'e>(
        entries: impl IntoIterator<Item = &'e Entry>,
        managed_below: impl Fn(&TargetPath) -> bool,
    ) -> Shadows {
        Shadows(
            entries
                .into_iter()
                .filter(|e| e.observed && plain(&e.state) && managed_below(&e.path))
                .map(|e| e.path.clone())
                .collect(),
        )
    }

    /// Whether `path` lies below one of these paths that is not a directory on the target
    /// (looked at, never followed): then nothing stands at `path` itself.
    pub fn covers(&self, root: &Root, path: &TargetPath) -> Result<bool, FsError> {
        if self.0.is_empty() {
            return Ok(false);
        }
        for a in path.ancestor_strs() {
            if let Some(top) = self.0.get(a)
                && root.inspect_kind(top)? != Some(DirEntryKind::Dir)
            {
                return Ok(true);
            }
        }
        Ok(false)
    }
}

/// Completes the desired state below each path a script made a file, link or FIFO: every
/// path below it that strata manages, or kept the original of, is desired absent, owned
/// by the same module (so the generation keeps each one's original and "down" brings the
/// tree back). A desired path that is not absent below such a path is refused. Reads
/// nothing: what the target holds below a replaced directory is added by
/// [`name_replaced`], once the plan has seen the directory.
pub fn complete(
    desired: &mut BTreeMap<TargetPath, Entry>,
    originals: &BTreeMap<TargetPath, Snapshot>,
) -> Result<(), PlanError> {
    // Almost always none: a few range lookups for the files, links and FIFOs scripts made.
    let tops: Vec<TargetPath> = desired
        .values()
        .filter(|e| e.observed && plain(&e.state))
        .filter(|e| has_below(desired, &e.path) || has_below(originals, &e.path))
        .map(|e| e.path.clone())
        .collect();
    for top in tops {
        let (kind, module) = match desired.get(&top) {
            Some(e) => (e.state.kind().to_string(), e.module.clone()),
            None => continue,
        };
        if let Some((p, e)) = below(desired, &top).find(|(_, e)| !e.state.is_absent()) {
            return Err(PlanError::Conflict {
                path: p.clone(),
                message: format!(
                    "a {} is to stand here, but a script made {top} a {kind}",
                    e.state.kind()
                ),
            });
        }
        let gone: Vec<TargetPath> = below(originals, &top).map(|(p, _)| p.clone()).collect();
        for path in gone {
            desired
                .entry(path.clone())
                .or_insert_with(|| absent(path, &module));
        }
    }
    Ok(())
}

/// A path a type change removes, owned by `module`.
fn absent(path: TargetPath, module: &Option<String>) -> Entry {
    Entry {
        path,
        state: Snapshot::Absent,
        replace: true,
        implicit: false,
        sensitive: false,
        observed: true,
        module: module.clone(),
        source: None,
    }
}

/// Adds to `plan` every path the target holds below each directory a script replaced
/// (`replaced`, with the module that did) that the plan does not name yet: removed, and
/// kept as an original. A script's observation names them all already, but for what it
/// does not report (ignored paths: a replaced `/var/log`) and for a generation replayed on
/// a tree that gained paths since. A tree that holds strata's own state is refused.
pub fn name_replaced(
    root: &Root,
    plan: &mut Plan,
    replaced: &[(TargetPath, Option<String>)],
    contents: &dyn ContentSource,
) -> Result<(), PlanError> {
    for (top, module) in replaced {
        if TargetPath::parse(STATE_DIR)
            .expect("a fixed path")
            .starts_with(top)
        {
            return Err(PlanError::Conflict {
                path: top.clone(),
                message: format!(
                    "a script replaced this directory, but it holds strata's own state \
                     ({STATE_DIR})"
                ),
            });
        }
        let mut paths = Vec::new();
        walk(root, top, &mut paths)?;
        for path in paths {
            if plan.originals.contains_key(&path) {
                continue;
            }
            let (mut before, old) = root.inspect_with_content(&path, None)?;
            keep_xattrs(root, &path, &mut before)?;
            let diff = diff_for(&path, &before, old.as_deref(), &Snapshot::Absent, contents);
            plan.originals.insert(path.clone(), before.clone());
            plan.changes.push(Change {
                path: path.clone(),
                action: Action::Remove,
                before,
                after: Snapshot::Absent,
                module: module.clone(),
                sensitive: false,
                diff,
                note: None,
            });
            plan.entries.push(absent(path, module));
        }
    }
    plan.entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(())
}

/// Every path below the directory `dir` of the target, parents first.
fn walk(root: &Root, dir: &TargetPath, out: &mut Vec<TargetPath>) -> Result<(), FsError> {
    for (name, kind) in root.list(dir)? {
        let Ok(path) = dir.join(&name) else { continue };
        out.push(path.clone());
        if kind == DirEntryKind::Dir {
            walk(root, &path, out)?;
        }
    }
    Ok(())
}

/// Notes each type change in `changes` (sorted by path) says what it replaces: a
/// directory's note counts the paths below it that go with it.
pub fn note(changes: &mut [Change]) {
    let changed: Vec<usize> = (0..changes.len())
        .filter(|&i| {
            let c = &changes[i];
            c.action.changes_target() && c.before.dir_type_change(&c.after)
        })
        .collect();
    for i in changed {
        let c = &changes[i];
        let note = if c.before.is_dir() {
            let n = changes
                .iter()
                .filter(|d| d.path.starts_with(&c.path) && d.path != c.path)
                .filter(|d| d.action.changes_target())
                .count();
            let paths = if n == 1 { "path" } else { "paths" };
            format!(
                "type change: a {} replaces this directory and the {n} {paths} below it",
                c.after.kind()
            )
        } else {
            format!("type change: a directory replaces this {}", c.before.kind())
        };
        changes[i].note = Some(note);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TargetPath {
        TargetPath::parse(s).unwrap()
    }

    /// Below `/lib` are `/lib/…` only: not `/lib-x`, `/lib.d` or `/lib0`, which sort
    /// among them, nor `/lib` itself.
    #[test]
    fn below_means_below_and_not_a_name_that_starts_alike() {
        let map: BTreeMap<TargetPath, ()> = [
            "/lib", "/lib-x", "/lib-x/a", "/lib.d", "/lib/a", "/lib/a/b", "/lib0", "/libz", "/li",
        ]
        .into_iter()
        .map(|s| (p(s), ()))
        .collect();
        let got: Vec<&str> = below(&map, &p("/lib")).map(|(k, _)| k.as_str()).collect();
        assert_eq!(got, ["/lib/a", "/lib/a/b"]);
        assert!(has_below(&map, &p("/lib-x")));
        assert!(!has_below(&map, &p("/lib.d")));
        assert_eq!(below(&map, &p("/")).count(), map.len());
    }

    /// A type change's note counts what goes with a replaced directory.
    #[test]
    fn a_replaced_directory_is_noted_with_the_paths_below_it() {
        let dir = Snapshot::Dir {
            mode: 0o755,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        };
        let link = Snapshot::Link {
            target: "usr/lib".into(),
            uid: 0,
            gid: 0,
        };
        let change = |path: &str, action: Action, before: &Snapshot, after: &Snapshot| Change {
            path: p(path),
            action,
            before: before.clone(),
            after: after.clone(),
            module: None,
            sensitive: false,
            diff: None,
            note: None,
        };
        let mut changes = vec![
            change("/lib", Action::Modify, &dir, &link),
            change("/lib/a", Action::Remove, &dir, &Snapshot::Absent),
            change("/lib/a/b", Action::Remove, &link, &Snapshot::Absent),
            change("/lib-x", Action::Remove, &dir, &Snapshot::Absent),
            change("/opt", Action::Restore, &link, &dir),
        ];
        note(&mut changes);
        assert_eq!(
            changes[0].note.as_deref(),
            Some("type change: a link replaces this directory and the 2 paths below it")
        );
        assert_eq!(changes[1].note, None);
        assert_eq!(
            changes[4].note.as_deref(),
            Some("type change: a directory replaces this link")
        );
    }
}
