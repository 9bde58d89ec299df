//! The plan: for every path the site declares or strata managed before, what stands there
//! now, what must stand there, and what the apply will do about it.

use std::collections::{BTreeMap, BTreeSet};

use strata_fs::{FsError, Root};
use strata_types::{Action, Change, ContentSource, Entry, Plan, Snapshot, TargetPath};

use crate::diff::diff_for;
use crate::typechange::{self, Shadows, has_below};

/// Why no plan could be made.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Reading the target failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// What stands at a path cannot be turned into what is declared.
    #[error("{path}: {message}")]
    Conflict {
        /// The path.
        path: TargetPath,
        /// What is in the way.
        message: String,
    },
}

/// Compares the desired `entries` with the target and with what the last generation
/// managed (`current` entries and the `originals` it recorded), and says what to do.
pub fn plan(
    root: &Root,
    entries: Vec<Entry>,
    current: &[Entry],
    originals: &BTreeMap<TargetPath, Snapshot>,
    contents: &dyn ContentSource,
) -> Result<Plan, PlanError> {
    let mut desired: BTreeMap<TargetPath, Entry> =
        entries.into_iter().map(|e| (e.path.clone(), e)).collect();
    let current: BTreeMap<&TargetPath, &Entry> = current.iter().map(|e| (&e.path, e)).collect();
    add_implicit_dirs(root, &mut desired, &current, originals)?;
    check_owners(root, &desired)?;
    typechange::complete(&mut desired, originals)?;
    let shadows = Shadows::new(desired.values().chain(current.values().copied()), |top| {
        has_below(&desired, top) || has_below(originals, top)
    });
    let against = Against {
        root,
        current,
        originals,
        shadows,
        contents,
    };

    // Sized once: a plan of thousands of paths would otherwise copy its changes over and
    // over as they grow.
    let mut plan = Plan {
        changes: Vec::with_capacity(desired.len()),
        entries: Vec::with_capacity(desired.len()),
        originals: BTreeMap::new(),
    };
    // Directories scripts replaced, with the module that did.
    let mut replaced = Vec::new();
    for (path, entry) in desired {
        against.desired(path, entry, &mut plan, &mut replaced)?;
    }
    if !replaced.is_empty() {
        typechange::name_replaced(root, &mut plan, &replaced, contents)?;
    }
    against.release(&mut plan)?;
    plan.changes.sort_by(|a, b| a.path.cmp(&b.path));
    typechange::note(&mut plan.changes);
    Ok(plan)
}

/// What a plan compares the desired state with: the target, what the last generation
/// managed (its entries and the originals it recorded), and where contents come from.
struct Against<'a> {
    root: &'a Root,
    current: BTreeMap<&'a TargetPath, &'a Entry>,
    originals: &'a BTreeMap<TargetPath, Snapshot>,
    /// Where nothing stands below a path a script made a file or link.
    shadows: Shadows,
    contents: &'a dyn ContentSource,
}

impl Against<'_> {
    /// Plans one desired entry: its change, its entry and its original (what stood there
    /// before strata first managed it). `replaced` gets a directory a script replaced.
    fn desired(
        &self,
        path: TargetPath,
        mut entry: Entry,
        plan: &mut Plan,
        replaced: &mut Vec<(TargetPath, Option<String>)>,
    ) -> Result<(), PlanError> {
        let root = self.root;
        // Compared with what is wanted: an identical file is neither hashed nor kept (nor
        // read, when its stamp says it is unchanged).
        let want = entry.state.hash();
        let bytes = || want.as_ref().and_then(|h| self.contents.content(h));
        let (mut before, old) = if self.shadows.covers(root, &path)? {
            (Snapshot::Absent, None)
        } else {
            root.inspect_with_content(&path, want.as_ref().map(|h| (h, &bytes as _)))?
        };
        root.fill_xattrs(&path, entry.state.xattrs(), &mut before)?;
        // On vfat and its kind, what the file system will really keep.
        if let Some(fixed) = root.fixed_meta(&path) {
            fixed.apply(&mut entry.state);
        }
        if entry.state.is_absent() || before.dir_type_change(&entry.state) {
            keep_xattrs(root, &path, &mut before)?;
        }
        if !entry.replace && self.add_only(&path, &mut entry, &before, plan) {
            return Ok(());
        }
        conflict(&path, &entry.state, &before, entry.observed)?;
        if entry.observed && before.is_dir() && before.dir_type_change(&entry.state) {
            replaced.push((path.clone(), entry.module.clone()));
        }
        let action = if entry.state.satisfied_by(&before) {
            Action::Unchanged
        } else if before.is_absent() {
            Action::Create
        } else if entry.state.is_absent() {
            Action::Remove
        } else {
            Action::Modify
        };
        // A file others may not read, before or after (`/etc/shadow`, a key at 0600), is
        // shown only as changed: no diff, no hash, anywhere. The entry keeps saying only
        // whether it was rendered from a secret (the store seals those contents).
        let sensitive = entry.sensitive || private(&before) || private(&entry.state);
        let diff = if sensitive {
            None
        } else {
            diff_for(&path, &before, old.as_deref(), &entry.state, self.contents)
        };
        let original = self
            .originals
            .get(&path)
            .cloned()
            .unwrap_or_else(|| before.clone());
        plan.originals.insert(path, original);
        let mut change = change(&entry, action, before, entry.state.clone(), diff);
        change.sensitive = sensitive;
        plan.changes.push(change);
        plan.entries.push(entry);
        Ok(())
    }

    /// An add-only entry (`replace = false`): once there, never overwritten, and what
    /// strata first wrote stays its state. `true` when a file stands there, planned then
    /// as unchanged; `false` when it is to be planned as any other entry.
    fn add_only(
        &self,
        path: &TargetPath,
        entry: &mut Entry,
        before: &Snapshot,
        plan: &mut Plan,
    ) -> bool {
        let created_by_us = self.originals.get(path).is_some_and(Snapshot::is_absent);
        if let Some(cur) = self
            .current
            .get(path)
            .filter(|c| !c.replace && created_by_us)
        {
            entry.state = cur.state.clone();
        }
        if !matches!(before, Snapshot::File { .. }) {
            return false;
        }
        if created_by_us {
            plan.originals.insert(path.clone(), Snapshot::Absent);
            plan.entries.push(entry.clone());
        }
        plan.changes.push(change(
            entry,
            Action::Unchanged,
            before.clone(),
            before.clone(),
            None,
        ));
        true
    }
}

fn change(
    entry: &Entry,
    action: Action,
    before: Snapshot,
    after: Snapshot,
    diff: Option<String>,
) -> Change {
    Change {
        path: entry.path.clone(),
        action,
        before,
        after,
        module: entry.module.clone(),
        sensitive: entry.sensitive,
        diff,
        note: None,
    }
}

/// Adds the missing parents of declared paths as implicit directories. A directory strata
/// created before stays managed while something below it is declared. Each is 0755 and
/// root's, unless the directory it is made in belongs to another (existing) user: then it
/// is that user's, so that the path stays one strata follows (see [`check_owners`]).
fn add_implicit_dirs(
    root: &Root,
    desired: &mut BTreeMap<TargetPath, Entry>,
    current: &BTreeMap<&TargetPath, &Entry>,
    originals: &BTreeMap<TargetPath, Snapshot>,
) -> Result<(), PlanError> {
    // Each entry's ancestors, up to the first one already seen (siblings come together).
    let mut parents: BTreeSet<TargetPath> = BTreeSet::new();
    for e in desired.values().filter(|e| !e.state.is_absent()) {
        for dir in e.path.ancestor_strs() {
            if desired.contains_key(dir) {
                continue;
            }
            if parents.contains(dir) {
                break;
            }
            parents.insert(TargetPath::parse(dir).expect("an ancestor of a valid path"));
        }
    }
    // Each missing directory, with the owner it gets.
    let mut missing: BTreeMap<TargetPath, (u32, u32)> = BTreeMap::new();
    for dir in parents {
        let ours =
            originals.get(&dir).is_some_and(Snapshot::is_absent) && current.contains_key(&dir);
        let parent = dir.parent().unwrap_or_else(TargetPath::root);
        let made_in = missing.get(&parent).copied();
        if ours || made_in.is_some() || root.dir_owner(&dir)?.is_none() {
            let above = match (made_in, desired.get(&parent).map(|e| &e.state)) {
                (Some(owner), _) => Some(owner),
                (None, Some(Snapshot::Dir { uid, gid, .. })) => Some((*uid, *gid)),
                (None, _) => root.dir_owner(&parent)?,
            };
            // Users the sandbox is yet to make are root's until then.
            let (uid, gid) = match above {
                Some((uid, gid))
                    if uid != 0 && uid < strata_fs::PENDING && gid < strata_fs::PENDING =>
                {
                    (uid, gid)
                }
                _ => (0, 0),
            };
            if !ours {
                missing.insert(dir.clone(), (uid, gid));
            }
            let state = Snapshot::Dir {
                mode: 0o755,
                uid,
                gid,
                xattrs: Default::default(),
            };
            desired.insert(
                dir.clone(),
                Entry {
                    path: dir,
                    state,
                    replace: true,
                    implicit: true,
                    sensitive: false,
                    observed: false,
                    module: None,
                    source: None,
                },
            );
        }
    }
    Ok(())
}

/// Refuses a directory the catalog would put (or keep) below one that a user other than
/// root owns, owned by someone else, with declared paths below it: strata does not follow
/// such a path (see `strata_fs::unsafe_transition`), so what is below could not be
/// written, nor read by the next plan. Found here, before anything is written.
fn check_owners(root: &Root, desired: &BTreeMap<TargetPath, Entry>) -> Result<(), PlanError> {
    let mut last: Option<&str> = None;
    for path in desired.keys().rev() {
        // Directories with something declared below them: each checked once.
        let Some(dir) = path.parent_str().filter(|d| *d != "/") else {
            continue;
        };
        if last == Some(dir) {
            continue;
        }
        last = Some(dir);
        let Some((
            dir,
            Entry {
                state: Snapshot::Dir { uid, .. },
                ..
            },
        )) = desired.get_key_value(dir)
        else {
            continue;
        };
        let above = dir.parent().unwrap_or_else(TargetPath::root);
        let owner = match desired.get(&above).map(|e| &e.state) {
            Some(Snapshot::Dir { uid, .. }) => Some(*uid),
            _ => root.dir_owner(&above)?.map(|(uid, _)| uid),
        };
        if let Some(owner) = owner
            && strata_fs::unsafe_transition(owner, *uid)
        {
            let users =
                crate::UserDb::load(root).unwrap_or_else(|_| crate::UserDb::parse(None, None));
            let name = |uid: u32| users.describe_user(uid);
            return Err(PlanError::Conflict {
                path: dir.clone(),
                message: format!(
                    "would be owned by {} inside {above}, owned by {}: strata does not follow a \
                     path from what a user other than root owns to what another user owns, so \
                     what is declared below it could not be written; give it the owner of {above}",
                    name(*uid),
                    name(owner)
                ),
            });
        }
    }
    Ok(())
}

/// Whether `s` is a file other users may not read: its contents are never shown.
fn private(s: &Snapshot) -> bool {
    matches!(s, Snapshot::File { mode, .. } if mode & 0o004 == 0)
}

/// Reads into `before`, the state of a file or directory that is to go, every extended
/// attribute strata manages: the journal and the originals keep it whole, so an undo,
/// "down" or a rollback brings it back with them (a program's capabilities included).
pub(crate) fn keep_xattrs(
    root: &Root,
    path: &TargetPath,
    before: &mut Snapshot,
) -> Result<(), FsError> {
    if let Some(x) = before.xattrs_mut() {
        *x = root.xattrs(path, None)?;
    }
    Ok(())
}

/// Refuses to turn a directory into something else, or something else into a directory,
/// unless a script did (`by_script`: the plan then replaces the whole tree, see
/// [`typechange`]); never makes or replaces sockets and devices.
fn conflict(
    path: &TargetPath,
    want: &Snapshot,
    have: &Snapshot,
    by_script: bool,
) -> Result<(), PlanError> {
    let message = match (want, have) {
        (Snapshot::Absent, _) => return Ok(()),
        (Snapshot::Other { kind }, _) => {
            format!("a script made a {kind} here; strata manages files, directories and links only")
        }
        (_, Snapshot::Other { kind }) => format!(
            "a {kind} stands where a {} is declared; strata does not replace it",
            want.kind()
        ),
        _ if by_script => return Ok(()),
        (
            Snapshot::Dir { .. },
            Snapshot::File { .. } | Snapshot::Link { .. } | Snapshot::Fifo { .. },
        ) => {
            format!(
                "a {} stands where a directory is declared; strata does not replace it",
                have.kind()
            )
        }
        (
            Snapshot::File { .. } | Snapshot::Link { .. } | Snapshot::Fifo { .. },
            Snapshot::Dir { .. },
        ) => {
            format!(
                "a directory stands where a {} is declared; strata does not replace directories",
                want.kind()
            )
        }
        _ => return Ok(()),
    };
    Err(PlanError::Conflict {
        path: path.clone(),
        message,
    })
}

impl Against<'_> {
    /// Takes back what the last generation managed and the site no longer declares:
    /// removed when strata created it, restored when it was there before. Deepest paths
    /// first, so a directory is removed only once what strata put in it is gone.
    fn release(&self, plan: &mut Plan) -> Result<(), PlanError> {
        let kept: BTreeSet<&TargetPath> = plan.originals.keys().collect();
        let mut gone: Vec<(&TargetPath, &Snapshot)> = self
            .originals
            .iter()
            .filter(|(p, _)| !kept.contains(p))
            .collect();
        gone.sort_by(|a, b| b.0.depth().cmp(&a.0.depth()).then(a.0.cmp(b.0)));
        let mut removed: BTreeSet<TargetPath> = BTreeSet::new();
        let mut changes = Vec::new();
        for (path, original) in gone {
            changes.extend(self.released(path, original, &mut removed)?);
        }
        plan.changes.extend(changes);
        Ok(())
    }

    /// What a directory still holds that this plan does not remove (what `removed` does
    /// not list): a directory strata created, or one a script made where a file or link
    /// stood, is taken away only when nothing else is left in it.
    fn leftovers(
        &self,
        path: &TargetPath,
        before: &Snapshot,
        removed: &BTreeSet<TargetPath>,
    ) -> Result<usize, PlanError> {
        if !before.is_dir() {
            return Ok(0);
        }
        Ok(self
            .root
            .list(path)?
            .into_iter()
            .filter(|(name, _)| path.join(name).map_or(true, |p| !removed.contains(&p)))
            .count())
    }

    /// The change that takes `path` back to its `original`, if any; `removed` holds what
    /// the deeper ones removed (and gets `path` when it goes).
    fn released(
        &self,
        path: &TargetPath,
        original: &Snapshot,
        removed: &mut BTreeSet<TargetPath>,
    ) -> Result<Option<Change>, PlanError> {
        let root = self.root;
        let (mut before, old) = if self.shadows.covers(root, path)? {
            (Snapshot::Absent, None)
        } else {
            root.inspect_with_content(path, None)?
        };
        root.fill_xattrs(path, original.xattrs(), &mut before)?;
        if original.is_absent() {
            keep_xattrs(root, path, &mut before)?;
        }
        let was = self.current.get(path);
        let mut c = Change {
            path: path.clone(),
            action: Action::Unchanged,
            before: before.clone(),
            after: original.clone(),
            module: was.and_then(|e| e.module.clone()),
            sensitive: was.is_some_and(|e| e.sensitive) || private(&before) || private(original),
            diff: None,
            note: None,
        };
        let keep = |c: &mut Change, note: String| {
            c.action = Action::Keep;
            c.after = before.clone();
            c.note = Some(note);
        };
        let still_holds = |n: usize| {
            format!("directory still holds {n} entries strata does not manage; left in place")
        };
        if original.is_absent() {
            if before.is_absent() {
                return Ok(None);
            }
            let add_only_edited =
                was.is_some_and(|e| !e.replace && before.hash() != e.state.hash());
            let leftovers = self.leftovers(path, &before, removed)?;
            if add_only_edited {
                keep(
                    &mut c,
                    "add-only file changed since strata created it; left in place".into(),
                );
            } else if leftovers > 0 {
                keep(&mut c, still_holds(leftovers));
            } else {
                c.action = Action::Remove;
                removed.insert(path.clone());
            }
        } else if !original.satisfied_by(&before) {
            conflict(path, original, &before, was.is_some_and(|e| e.observed))?;
            let leftovers = match before.dir_type_change(original) {
                true => self.leftovers(path, &before, removed)?,
                false => 0,
            };
            if leftovers == 0 {
                c.action = Action::Restore;
            } else {
                keep(&mut c, still_holds(leftovers));
            }
        }
        if !c.sensitive && c.action.changes_target() {
            c.diff = diff_for(path, &before, old.as_deref(), &c.after, self.contents);
        }
        Ok(Some(c))
    }
}
