//! `[[dir]] purge = true`: which paths below a purged directory are to go.
//!
//! This reads the target, which the rest of compiling does not: what is to go is whatever
//! stands below the directory that no module declares. It is still core's to decide, as
//! the plan is (crate::plan reads the target too): the answer is part of the desired
//! state, made from the catalog, and only read, through the root-confined
//! [`strata_fs::Root`], never written. The engine calls [`Catalog::purged`] where it
//! makes a plan (docs/decisions.md, "The target").

use std::collections::{BTreeMap, BTreeSet};

use globset::{Glob, GlobSet, GlobSetBuilder};
use strata_fs::{DirEntryKind, FsError, Root};
use strata_types::{Entry, Snapshot, TargetPath};

use crate::catalog::Catalog;
use crate::error::SiteError;
use crate::module::{DirDecl, ModuleToml};
use crate::tomlfile::TomlFile;

/// A `[[dir]]` with `purge = true`.
#[derive(Debug, Clone)]
pub struct Purge {
    /// The directory.
    pub path: TargetPath,
    /// Paths below it (relative to it) that are left alone.
    pub keep: GlobSet,
    /// The declaring module.
    pub module: String,
    /// Where it is declared.
    pub source: String,
}

impl Purge {
    /// The purge a `[[dir]]` of module `module` declares, if it does. A bad `keep` pattern
    /// and a purge of `/` are errors at the `[[dir]]`'s path.
    pub(crate) fn declared(
        d: &DirDecl,
        path: &TargetPath,
        toml: &TomlFile<ModuleToml>,
        module: &str,
    ) -> Result<Option<Purge>, Vec<SiteError>> {
        if !d.purge.as_ref().is_some_and(|p| *p.get_ref()) {
            return Ok(None);
        }
        let at = d.path.span().start;
        let mut errors = Vec::new();
        let mut keep = GlobSetBuilder::new();
        for k in &d.keep {
            match Glob::new(k) {
                Ok(g) => {
                    keep.add(g);
                }
                Err(e) => errors.push(
                    toml.error_at(at, format!("[[dir]] {path}: bad keep pattern `{k}`: {e}")),
                ),
            }
        }
        if path.as_str() == "/" {
            errors.push(toml.error_at(at, "the root directory cannot be purged"));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(keep.build().ok().map(|keep| Purge {
            path: path.clone(),
            keep,
            module: module.to_string(),
            source: format!("{}:{}", toml.rel, toml.line(at)),
        }))
    }
}

impl Catalog {
    /// What `[[dir]] purge` removes: each path below a purged directory that no module
    /// declares or needs as a parent, that no `keep` pattern matches (a kept directory
    /// keeps its contents), and that is not in `also` (what the modules' scripts made);
    /// plus what earlier purges removed, which stays removed.
    pub fn purged(
        &self,
        root: &Root,
        current: &[Entry],
        also: &BTreeSet<TargetPath>,
    ) -> Result<Vec<Entry>, FsError> {
        if self.purges.is_empty() {
            return Ok(Vec::new());
        }
        let declared: BTreeSet<&TargetPath> = self
            .resources
            .iter()
            .map(|r| &r.path)
            .chain(also.iter())
            .collect();
        let needed: BTreeSet<TargetPath> = declared.iter().flat_map(|p| p.ancestors()).collect();
        let mut out: BTreeMap<TargetPath, Entry> = BTreeMap::new();
        for p in &self.purges {
            let absent = |path: TargetPath| Entry {
                path,
                state: Snapshot::Absent,
                replace: true,
                implicit: false,
                sensitive: false,
                observed: false,
                module: Some(p.module.clone()),
                source: Some(p.source.clone()),
            };
            let mut gone = Vec::new();
            purge_walk(root, p, &p.path, &declared, &needed, &mut gone)?;
            for e in current {
                if e.state.is_absent()
                    && !e.observed
                    && e.module.as_ref() == Some(&p.module)
                    && e.path.starts_with(&p.path)
                    && e.path != p.path
                    && !declared.contains(&e.path)
                    && !needed.contains(&e.path)
                {
                    gone.push(e.path.clone());
                }
            }
            for path in gone {
                out.insert(path.clone(), absent(path));
            }
        }
        Ok(out.into_values().collect())
    }
}

/// Collects what is to go below `dir`; `true` when all of it goes.
fn purge_walk(
    root: &Root,
    p: &Purge,
    dir: &TargetPath,
    declared: &BTreeSet<&TargetPath>,
    needed: &BTreeSet<TargetPath>,
    gone: &mut Vec<TargetPath>,
) -> Result<bool, FsError> {
    let mut all = true;
    for (name, kind) in root.list(dir)? {
        let Ok(child) = dir.join(&name) else {
            all = false;
            continue;
        };
        let rel = &child.as_str()[p.path.as_str().len() + 1..];
        let is_dir = kind == DirEntryKind::Dir;
        if declared.contains(&child) || needed.contains(&child) {
            if is_dir {
                purge_walk(root, p, &child, declared, needed, gone)?;
            }
            all = false;
        } else if p.keep.is_match(rel)
            || p.keep.is_match(&name)
            || (is_dir && !purge_walk(root, p, &child, declared, needed, gone)?)
        {
            // Kept, or holding something kept.
            all = false;
        } else {
            gone.push(child);
        }
    }
    Ok(all)
}
