//! Plans for catalogs with scripts or executable templates: the declarative plan is laid
//! into an overlay sandbox module by module, the programs run there, and what the
//! sandbox finally holds becomes the desired state, planned once more against the real
//! target. The commit then takes the same path as for declarative files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use strata_core::{Catalog, ResourceKind, SandboxSettings, UserDb};
use strata_fs::{Meter, PENDING, Root};
use strata_sandbox::{
    Changed, Lay, Merged, ModuleSpec, Observed, OutContents, Program, Spec, Template,
};
use strata_state::State;
use strata_types::{
    ContentSource, Entry, Generation, Plan, Snapshot, Step, TargetPath, apply_order,
};

use crate::{EngineError, Request, steps};

/// What a sandbox run leaves for the rest of the pipeline.
#[derive(Debug)]
pub struct SandboxRun {
    /// What the programs did and called.
    pub observed: Observed,
    /// The run's scratch dir (the contents of what the scripts changed are in it).
    work: strata_sandbox::WorkDir,
}

impl SandboxRun {
    /// The contents of files the scripts wrote.
    pub fn contents(&self) -> OutContents {
        OutContents(self.work.path().to_path_buf())
    }

    /// The target's users and groups as they are once the plan is applied, to show owners
    /// the run made by name.
    pub fn users(&self, root: &Root) -> Result<UserDb, EngineError> {
        let read = |file: &str| -> Result<Option<Vec<u8>>, EngineError> {
            let path = TargetPath::parse(file).expect("a fixed path");
            match self.observed.changed.iter().find(|c| c.path == path) {
                Some(c) => Ok(c
                    .state
                    .hash()
                    .and_then(|h| self.contents().content(&h).map(|b| b.into_owned()))),
                None => Ok(root.read(&path)?),
            }
        };
        Ok(UserDb::parse(
            read("/etc/passwd")?.as_deref(),
            read("/etc/group")?.as_deref(),
        ))
    }
}

/// The sandbox's limits: the site's, else a process limit, and half of this machine's
/// memory for what scripts write into the sandbox (docs/sandbox.md).
fn limits(settings: &SandboxSettings) -> strata_sandbox::Limits {
    // SAFETY: sysconf has no memory effects.
    let ram = unsafe {
        libc::sysconf(libc::_SC_PHYS_PAGES) as u64 * libc::sysconf(libc::_SC_PAGESIZE) as u64
    };
    strata_sandbox::Limits {
        max_processes: settings
            .max_processes
            .unwrap_or(strata_sandbox::DEFAULT_MAX_PROCESSES),
        max_memory: settings.max_memory.map(|s| s.0),
        required: settings.max_processes.is_some() || settings.max_memory.is_some(),
        scratch: (ram > 0).then_some(ram / 2),
    }
}

/// Whether the catalog needs the sandbox.
pub fn needed(catalog: &Catalog) -> bool {
    catalog
        .runs
        .iter()
        .any(|r| !r.scripts.is_empty() || !r.declared.is_empty())
        || catalog
            .resources
            .iter()
            .any(|r| matches!(r.kind, ResourceKind::Exec { .. }))
}

/// How a sandboxed plan should run.
pub struct Mode<'a> {
    /// A plan (`STRATA_NOOP=1`, no network unless a module allows it).
    pub noop: bool,
    /// Open an interactive shell at the end.
    pub shell: bool,
    /// The strata executable to use as the sandbox helper.
    pub helper: &'a Path,
}

/// Plans `catalog` through the sandbox. Returns the final plan and the run.
#[allow(clippy::too_many_arguments)]
pub fn plan(
    req: &Request,
    catalog: &Catalog,
    root: &Root,
    state: &State<'_>,
    users: &UserDb,
    downloads: &crate::downloads::Downloads,
    settings: &SandboxSettings,
    mode: &Mode<'_>,
    steps: &mut Vec<Step>,
) -> Result<(Plan, Option<Generation>, SandboxRun), EngineError> {
    let meter = Meter::start();
    let current = state.current()?;
    let (cur_entries, originals) = crate::managed(current.as_ref());
    let store = state.store();
    let catalog_contents = ((catalog, &downloads.contents), &store);

    // Owners the modules' own users and groups provide get placeholder ids until the
    // sandbox made them.
    let users = &pending(catalog, users);
    let mut entries = catalog.entries(users)?;
    entries.extend(downloads.entries.iter().cloned());
    let declared: BTreeSet<TargetPath> = catalog.resources.iter().map(|r| r.path.clone()).collect();
    let mut exec: BTreeSet<TargetPath> = BTreeSet::new();
    let mut templates: BTreeMap<String, Vec<Template>> = BTreeMap::new();
    let mut errors = Vec::new();
    for r in &catalog.resources {
        let ResourceKind::Exec { program } = &r.kind else {
            continue;
        };
        let (uid, gid) = match r.ids(users) {
            Ok(ids) => ids,
            Err(e) => {
                errors.push(e);
                continue;
            }
        };
        templates
            .entry(r.module.clone())
            .or_default()
            .push(Template {
                program: Program {
                    name: r
                        .source
                        .rsplit_once("/templates/")
                        .map_or(r.source.clone(), |(_, t)| format!("templates/{t}")),
                    path: program.clone(),
                    network: false,
                },
                target: r.path.clone(),
                meta: strata_types::Meta {
                    mode: r.mode,
                    uid,
                    gid,
                },
                names: names(users, uid, gid),
            });
        exec.insert(r.path.clone());
        // What the template prints is known after the run; until then, the target's.
        entries.push(Entry {
            path: r.path.clone(),
            state: root.inspect(&r.path)?,
            replace: r.replace,
            implicit: false,
            sensitive: false,
            observed: false,
            module: Some(r.module.clone()),
            source: Some(r.source.clone()),
        });
    }
    if !errors.is_empty() {
        return Err(strata_core::SiteErrors(errors).into());
    }
    // What earlier runs of a module's scripts changed stays the module's while it is applied.
    // When what its steps depend on changed, they run again from the original files.
    let digests = current.as_ref().map(|g| &g.modules);
    let applied: BTreeSet<&String> = catalog
        .runs
        .iter()
        .filter(|r| digests.and_then(|d| d.get(&r.id)) == Some(&r.digest))
        .map(|r| &r.id)
        .collect();
    let mut carried: BTreeSet<TargetPath> = BTreeSet::new();
    // What stood below a directory a script replaced with a link is not looked at
    // through that link.
    let shadows =
        strata_core::Shadows::new(cur_entries, |top| strata_core::has_below(originals, top));
    for e in cur_entries {
        if e.observed
            && !declared.contains(&e.path)
            && e.module.as_ref().is_some_and(|m| applied.contains(m))
        {
            let mut e = e.clone();
            e.state = match shadows.covers(root, &e.path)? {
                true => Snapshot::Absent,
                false => root.inspect(&e.path)?,
            };
            carried.insert(e.path.clone());
            entries.push(e);
        }
    }
    entries.extend(catalog.purged(root, cur_entries, &carried)?);
    let first = strata_core::plan(root, entries, cur_entries, originals, &catalog_contents)?;
    steps.push(meter.finish("plan declared"));

    let work = strata_sandbox::WorkDir::create()?;
    let (pre, mut by_module, released) =
        lays(&first, &catalog_contents, users, &work.path().join("in"))?;
    let mut modules = Vec::new();
    for r in &catalog.runs {
        let own = steps::module_steps(r, &work.path().join("steps"))?;
        modules.push(ModuleSpec {
            id: r.id.clone(),
            before: own.before,
            lay: by_module.remove(&r.id).unwrap_or_default(),
            lines: own.lines,
            after: own.after,
            templates: templates.remove(&r.id).unwrap_or_default(),
            scripts: r
                .scripts
                .iter()
                .map(|s| Program {
                    name: s.name.clone(),
                    path: s.path.clone(),
                    network: false,
                })
                .collect(),
            timeout_ms: r.timeout.as_millis() as u64,
            network: r.plan_network,
        });
    }
    let cache = match catalog.runs.iter().any(|r| !r.declared.packages.is_empty()) {
        true => Some(steps::cache_dir(root)?),
        false => None,
    };
    let mut env = vec![
        ("STRATA_NODE".to_string(), catalog.node.name.clone()),
        (
            "STRATA_ENVIRONMENT".to_string(),
            catalog.node.environment.clone(),
        ),
    ];
    flatten(
        "STRATA_P",
        &Value::Object(catalog.params.values.clone()),
        &mut env,
    );
    let watch: Vec<TargetPath> = first
        .entries
        .iter()
        .map(|e| e.path.clone())
        .chain(released.keys().cloned())
        .collect();
    let spec = Spec {
        root: req.root.clone(),
        work: work.path().to_path_buf(),
        hostname: catalog.node.name.clone(),
        noop: mode.noop,
        network: !mode.noop,
        env,
        params_json: serde_json::to_string(&catalog.params.values).unwrap_or_default(),
        intercept: settings.intercept.clone(),
        ignore: settings.ignore.clone(),
        pre,
        modules,
        watch,
        shell: mode.shell,
        cache,
        limits: limits(settings),
        unobserved: settings
            .unobserved
            .iter()
            .map(|p| {
                TargetPath::parse(p).map_err(|e| {
                    EngineError::Invalid(format!("strata.toml: [sandbox] unobserved: `{p}`: {e}"))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let meter = Meter::start();
    let observed = strata_sandbox::run(&spec, mode.helper)?;
    let mut step = meter.finish("sandbox");
    step.steps = observed
        .runs
        .iter()
        .map(|r| Step {
            name: format!("run {} {}", r.module, r.program),
            metrics: r.metrics.clone(),
            steps: Vec::new(),
        })
        .collect();
    steps.push(step);
    let mut run = SandboxRun { observed, work };
    if let Some(f) = &run.observed.failure {
        return Err(EngineError::Script {
            module: f.module.clone(),
            program: f.program.clone(),
            status: f.status.clone(),
            stderr: f.stderr_tail.clone(),
            output: run.observed.runs.clone(),
        });
    }

    // What the sandbox finally holds is what the apply must bring about.
    let meter = Meter::start();
    let last = final_entries(
        &first,
        &run.observed,
        |p| exec.contains(p) || carried.contains(p),
        &released,
    );
    let contents = (&catalog_contents, run.contents());
    let plan = strata_core::plan(root, last, cur_entries, originals, &contents)?;
    steps.push(meter.finish("plan observed"));
    let restarts = steps::restarts(root, &catalog.runs, &plan.changes)?;
    run.observed.calls.extend(restarts);
    Ok((plan, current, run))
}

/// Changes laid in before any module (implicit directories, and what the site no longer
/// declares), each module's own, and the released paths with what they become. Contents
/// are written to `input`.
type Lays = (
    Vec<Lay>,
    BTreeMap<String, Vec<Lay>>,
    BTreeMap<TargetPath, Snapshot>,
);

fn lays(
    first: &Plan,
    contents: &dyn ContentSource,
    users: &UserDb,
    input: &Path,
) -> Result<Lays, EngineError> {
    strata_fs::create_dir_all(input)?;
    let lay = |path: &TargetPath, state: &Snapshot| -> Result<Lay, EngineError> {
        let content = match state.hash() {
            Some(h) => {
                let file = input.join(h.to_string());
                let bytes = contents
                    .content(&h)
                    .ok_or_else(|| EngineError::Invalid(format!("no content for {path}")))?;
                // Private from its creation: declared contents may be secret.
                strata_fs::write_private(&file, &bytes)?;
                Some(file)
            }
            None => None,
        };
        Ok(Lay {
            path: path.clone(),
            state: state.clone(),
            content,
            names: state.owner().and_then(|(u, g)| names(users, u, g)),
        })
    };
    let owned: BTreeMap<&TargetPath, &Entry> = first.entries.iter().map(|e| (&e.path, e)).collect();
    let (mut pre, mut by_module, mut released) = (Vec::new(), BTreeMap::new(), BTreeMap::new());
    for c in first.changes.iter().filter(|c| c.action.changes_target()) {
        match owned.get(&c.path).map(|e| &e.module) {
            Some(Some(module)) => by_module
                .entry(module.clone())
                .or_insert_with(Vec::new)
                .push(lay(&c.path, &c.after)?),
            Some(None) => pre.push((lay(&c.path, &c.after)?, &c.before)),
            None => {
                released.insert(c.path.clone(), c.after.clone());
                pre.push((lay(&c.path, &c.after)?, &c.before));
            }
        }
    }
    pre.sort_by(|(a, ba), (b, bb)| apply_order((&a.path, ba, &a.state), (&b.path, bb, &b.state)));
    let pre = pre.into_iter().map(|(l, _)| l).collect();
    Ok((pre, by_module, released))
}

/// What the sandbox finally holds is what the apply must bring about: each planned entry
/// with its final state (entries whose content is known only from the target, when the
/// run left them alone, keep the target's), plus every other path a module's files or
/// programs changed, as an observed entry of that module.
fn final_entries(
    first: &Plan,
    observed: &Observed,
    from_target: impl Fn(&TargetPath) -> bool,
    released: &BTreeMap<TargetPath, Snapshot>,
) -> Vec<Entry> {
    let before: BTreeMap<&TargetPath, &Snapshot> =
        first.changes.iter().map(|c| (&c.path, &c.before)).collect();
    let mut last = Vec::new();
    for mut e in first.entries.iter().cloned() {
        match observed.watched.get(&e.path) {
            Some(Merged::State { state }) => e.state = state.clone(),
            Some(Merged::Lower) | None => {
                if from_target(&e.path)
                    && let Some(b) = before.get(&e.path)
                {
                    e.state = (*b).clone();
                }
            }
        }
        if e.implicit && !matches!(e.state, Snapshot::Dir { .. }) {
            continue;
        }
        last.push(e);
    }
    let known: BTreeSet<TargetPath> = last.iter().map(|e| e.path.clone()).collect();
    // A released path a module made again exactly as the target has it is not a change,
    // but it stays that module's.
    let changed: BTreeSet<&TargetPath> = observed.changed.iter().map(|c| &c.path).collect();
    let remade: Vec<Changed> = released
        .keys()
        .filter(|p| !changed.contains(p))
        .filter_map(|p| match observed.watched.get(p) {
            Some(Merged::State { state }) => Some(Changed {
                path: p.clone(),
                state: state.clone(),
                module: observed.touched.get(p).cloned(),
            }),
            _ => None,
        })
        .collect();
    for c in observed.changed.iter().chain(&remade) {
        let undone = released
            .get(&c.path)
            .is_some_and(|want| want.satisfied_by(&c.state));
        let (false, false, Some(module)) = (known.contains(&c.path), undone, &c.module) else {
            continue;
        };
        // What the target keeps from other users' eyes (shadow files, keys) is shown only
        // as changed.
        let private = matches!(c.state, Snapshot::File { mode, .. } if mode & 0o004 == 0);
        last.push(Entry {
            path: c.path.clone(),
            state: c.state.clone(),
            replace: true,
            implicit: false,
            sensitive: private,
            observed: true,
            module: Some(module.clone()),
            source: None,
        });
    }
    last
}

/// The target's users and groups, plus placeholders for those the modules declare.
fn pending(catalog: &Catalog, users: &UserDb) -> UserDb {
    let declared = catalog.runs.iter().map(|r| &r.declared);
    let user_names: Vec<&str> = declared
        .clone()
        .flat_map(|d| d.users.iter().map(|u| u.name.as_str()))
        .collect();
    // `useradd` makes a group of the user's name unless told another.
    let group_names: Vec<&str> = declared
        .flat_map(|d| {
            d.groups.iter().map(|g| g.name.as_str()).chain(
                d.users
                    .iter()
                    .filter(|u| u.group.is_none())
                    .map(|u| u.name.as_str()),
            )
        })
        .collect();
    users.with_pending(user_names, group_names)
}

/// Owner and group names to resolve in the sandbox, when either is a placeholder.
fn names(users: &UserDb, uid: u32, gid: u32) -> Option<(String, String)> {
    (uid >= PENDING || gid >= PENDING).then(|| (users.user_name(uid), users.group_name(gid)))
}

/// `nginx.port = 8080` becomes `STRATA_P_nginx_port=8080`; tables are flattened, lists
/// are given as JSON.
fn flatten(prefix: &str, v: &Value, out: &mut Vec<(String, String)>) {
    match v {
        Value::Object(map) => {
            for (k, v) in map {
                let key = format!("{prefix}_{}", k.replace(['-', '.'], "_"));
                flatten(&key, v, out);
            }
        }
        Value::String(s) => out.push((prefix.to_string(), s.clone())),
        Value::Null => {}
        other => out.push((prefix.to_string(), other.to_string())),
    }
}
