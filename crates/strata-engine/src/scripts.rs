//! Plans for catalogs with scripts or executable templates: the declarative plan is laid
//! into an overlay sandbox module by module, the programs run there, and what the
//! sandbox finally holds becomes the desired state, planned once more against the real
//! target. The commit then takes the same path as for declarative files. [`Sandbox::plan`]
//! walks down these steps in order: the declared plan, the lays, the sandbox's spec, the
//! run, the observed plan.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde_json::Value;
use strata_core::{Catalog, ResourceKind, SandboxSettings, UserDb};
use strata_fs::{Meter, PENDING, Root};
use strata_sandbox::{
    Changed, Lay, Merged, ModuleSpec, Observed, OutContents, Program, Spec, Template,
};
use strata_state::State;
use strata_types::{ContentSource, Entry, Plan, Snapshot, Step, TargetPath, apply_order};

use crate::downloads::Downloads;
use crate::managed::Managed;
use crate::request::Purpose;
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

/// What planning through the sandbox needs.
pub struct Sandbox<'a> {
    pub req: &'a Request,
    /// A plan's programs see `STRATA_NOOP=1` and no network; a shell opens at the end.
    pub purpose: Purpose,
    /// The strata executable to use as the sandbox helper.
    pub helper: &'a Path,
    pub catalog: &'a Catalog,
    /// The site's `[sandbox]`.
    pub settings: &'a SandboxSettings,
    pub root: &'a Root,
    pub state: &'a State<'a>,
    /// The target's users and groups.
    pub users: &'a UserDb,
    pub downloads: &'a Downloads,
    /// What the last generation manages.
    pub managed: &'a Managed<'a>,
}

/// The catalog's executable templates.
#[derive(Default)]
struct Templates {
    /// Each module's.
    by_module: BTreeMap<String, Vec<Template>>,
    /// The paths they print (known only after the run).
    paths: BTreeSet<TargetPath>,
}

/// The plan of what the site declares, laid into the sandbox before the programs run.
struct Declared {
    plan: Plan,
    templates: Templates,
    /// The paths earlier runs of a module's scripts changed, carried while it is applied.
    carried: BTreeSet<TargetPath>,
}

impl Declared {
    /// Whether what `path` holds is known only from the target until the run (the output
    /// of an executable template, or what an earlier run left).
    fn known_from_target(&self, path: &TargetPath) -> bool {
        self.templates.paths.contains(path) || self.carried.contains(path)
    }
}

impl Sandbox<'_> {
    /// Plans the catalog through the sandbox: what the site declares is planned and laid
    /// into the overlay module by module, the programs run, and what the sandbox finally
    /// holds is planned against the target. `meter` times the first plan (it was started
    /// before the last generation was read). Returns the final plan and the run.
    pub fn plan(
        &self,
        meter: Meter,
        steps: &mut Vec<Step>,
    ) -> Result<(Plan, SandboxRun), EngineError> {
        let store = self.state.store();
        let contents = ((self.catalog, &self.downloads.contents), &store);
        // Owners the modules' own users and groups provide get placeholder ids until the
        // sandbox made them.
        let users = &pending(self.catalog, self.users);
        let mut declared = self.declared(users, &contents)?;
        steps.push(meter.finish("plan declared"));

        let work = strata_sandbox::WorkDir::create()?;
        let lays = lays(&declared.plan, &contents, users, &work.path().join("in"))?;
        let templates = std::mem::take(&mut declared.templates.by_module);
        let modules = self.modules(templates, lays.by_module, work.path())?;
        let watch: Vec<TargetPath> = (declared.plan.entries.iter())
            .map(|e| e.path.clone())
            .chain(lays.released.keys().cloned())
            .collect();
        let spec = self.spec(lays.pre, modules, watch, work.path())?;
        let mut run = self.run(&spec, work, steps)?;

        // What the sandbox finally holds is what the apply must bring about.
        let meter = Meter::start();
        // What a module's programs write is sensitive when they were given secrets.
        let given: BTreeSet<&str> = (self.catalog.runs.iter())
            .filter(|r| !r.secrets.is_empty())
            .map(|r| r.id.as_str())
            .collect();
        let last = final_entries(
            &declared.plan,
            &run.observed,
            |p| declared.known_from_target(p),
            &lays.released,
            &given,
        );
        let contents = (&contents, run.contents());
        let plan = self.managed.plan(self.root, last, &contents)?;
        steps.push(meter.finish("plan observed"));
        let restarts = steps::restarts(self.root, &self.catalog.runs, &plan.changes)?;
        run.observed.calls.extend(restarts);
        Ok((plan, run))
    }

    /// Plans what the site declares: the catalog's entries and downloads, what executable
    /// templates print (the target's until the run), what earlier runs of its modules'
    /// scripts changed, and what its purges remove.
    fn declared(
        &self,
        users: &UserDb,
        contents: &dyn ContentSource,
    ) -> Result<Declared, EngineError> {
        let mut entries = self.catalog.entries(users)?;
        entries.extend(self.downloads.entries.iter().cloned());
        let templates = self.templates(users, &mut entries)?;
        let carried = self.carried(&mut entries)?;
        entries.extend(
            self.catalog
                .purged(self.root, self.managed.entries, &carried)?,
        );
        let plan = self.managed.plan(self.root, entries, contents)?;
        Ok(Declared {
            plan,
            templates,
            carried,
        })
    }

    /// Each module's executable templates, and the paths they print, each added to
    /// `entries` with what the target holds there (what the template prints is known
    /// after the run).
    fn templates(
        &self,
        users: &UserDb,
        entries: &mut Vec<Entry>,
    ) -> Result<Templates, EngineError> {
        let mut templates = Templates::default();
        let mut errors = Vec::new();
        for r in &self.catalog.resources {
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
            (templates.by_module)
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
            templates.paths.insert(r.path.clone());
            entries.push(Entry {
                path: r.path.clone(),
                state: self.root.inspect(&r.path)?,
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
        Ok(templates)
    }

    /// What earlier runs of a module's scripts changed stays the module's while it is
    /// applied: each such path the site does not declare is added to `entries` with what
    /// the target holds there. When what a module's steps depend on changed (its digest),
    /// they run again from the original files.
    fn carried(&self, entries: &mut Vec<Entry>) -> Result<BTreeSet<TargetPath>, EngineError> {
        let declared: BTreeSet<&TargetPath> =
            self.catalog.resources.iter().map(|r| &r.path).collect();
        let applied: BTreeSet<&String> = (self.catalog.runs.iter())
            .filter(|r| self.managed.modules.get(&r.id) == Some(&r.digest))
            .map(|r| &r.id)
            .collect();
        let mut carried: BTreeSet<TargetPath> = BTreeSet::new();
        // What stood below a directory a script replaced with a link is not looked at
        // through that link.
        let originals = self.managed.originals;
        let shadows = strata_core::Shadows::new(self.managed.entries, |top| {
            strata_core::has_below(originals, top)
        });
        for e in self.managed.entries {
            if e.observed
                && !declared.contains(&e.path)
                && e.module.as_ref().is_some_and(|m| applied.contains(m))
            {
                let mut e = e.clone();
                e.state = match shadows.covers(self.root, &e.path)? {
                    true => Snapshot::Absent,
                    false => self.root.inspect(&e.path)?,
                };
                carried.insert(e.path.clone());
                entries.push(e);
            }
        }
        Ok(carried)
    }

    /// Each module's part of the run: its steps (their programs written under `work`),
    /// lays, executable templates and scripts.
    fn modules(
        &self,
        mut templates: BTreeMap<String, Vec<Template>>,
        mut lays: BTreeMap<String, Vec<Lay>>,
        work: &Path,
    ) -> Result<Vec<ModuleSpec>, EngineError> {
        let mut modules = Vec::new();
        for r in &self.catalog.runs {
            let own = steps::module_steps(r, &work.join("steps"))?;
            modules.push(ModuleSpec {
                id: r.id.clone(),
                before: own.before,
                lay: lays.remove(&r.id).unwrap_or_default(),
                lines: own.lines,
                after: own.after,
                templates: templates.remove(&r.id).unwrap_or_default(),
                scripts: (r.scripts.iter())
                    .map(|s| Program {
                        name: s.name.clone(),
                        path: s.path.clone(),
                        network: false,
                    })
                    .collect(),
                timeout_ms: r.timeout.as_millis() as u64,
                network: r.plan_network,
                secrets: (r.secrets.iter())
                    .map(|s| strata_core::secret_variable(&s.name))
                    .collect(),
            });
        }
        Ok(modules)
    }

    /// What the sandbox is to run: the changes laid in before any module (`pre`), then
    /// the modules, reporting the final state of every path in `watch`.
    fn spec(
        &self,
        pre: Vec<Lay>,
        modules: Vec<ModuleSpec>,
        watch: Vec<TargetPath>,
        work: &Path,
    ) -> Result<Spec, EngineError> {
        let packages = (self.catalog.runs.iter()).any(|r| !r.declared.packages.is_empty());
        let cache = match packages {
            true => Some(steps::cache_dir(self.root, &self.req.cache)?),
            false => None,
        };
        let noop = self.purpose.noop();
        Ok(Spec {
            root: self.req.root.clone(),
            work: work.to_path_buf(),
            hostname: self.catalog.node.name.clone(),
            noop,
            network: !noop,
            env: self.env(),
            params_json: serde_json::to_string(&self.catalog.params.values).unwrap_or_default(),
            intercept: self.settings.intercept.clone(),
            ignore: self.settings.ignore.clone(),
            pre,
            modules,
            watch,
            shell: self.purpose == Purpose::Shell,
            term: self.req.terminal.clone(),
            cache,
            limits: limits(self.settings),
            unobserved: unobserved(self.settings)?,
            secrets: strata_sandbox::SecretVars(
                (self.catalog.runs.iter().flat_map(|r| &r.secrets))
                    .map(|s| {
                        let var = strata_core::secret_variable(&s.name);
                        (var, s.value.expose().to_string())
                    })
                    .collect(),
            ),
        })
    }

    /// The variables every program sees: the node, its environment, and the parameters
    /// (`STRATA_P_*`).
    fn env(&self) -> Vec<(String, String)> {
        let node = &self.catalog.node;
        let mut env = vec![
            ("STRATA_NODE".to_string(), node.name.clone()),
            ("STRATA_ENVIRONMENT".to_string(), node.environment.clone()),
        ];
        let params = Value::Object(self.catalog.params.values.clone());
        flatten("STRATA_P", &params, &mut env);
        env
    }

    /// Runs `spec` in the sandbox, as a step with one sub-step per program; a program
    /// that failed fails the plan.
    fn run(
        &self,
        spec: &Spec,
        work: strata_sandbox::WorkDir,
        steps: &mut Vec<Step>,
    ) -> Result<SandboxRun, EngineError> {
        let meter = Meter::start();
        let mut observed = strata_sandbox::run(spec, self.helper)?;
        self.redact(&mut observed);
        let mut step = meter.finish("sandbox");
        step.steps = (observed.runs.iter())
            .map(|r| Step {
                name: format!("run {} {}", r.module, r.program),
                metrics: r.metrics.clone(),
                steps: Vec::new(),
            })
            .collect();
        steps.push(step);
        if let Some(f) = &observed.failure {
            return Err(EngineError::Script {
                module: f.module.clone(),
                program: f.program.clone(),
                status: f.status.clone(),
                stderr: f.stderr_tail.clone(),
                output: observed.runs.clone(),
            });
        }
        Ok(SandboxRun { observed, work })
    }

    /// What the programs printed, with every secret value the node's catalog holds
    /// replaced by `[secret NAME]`: a script given a secret may print it, and its output
    /// goes to the report and to errors.
    fn redact(&self, observed: &mut strata_sandbox::Observed) {
        let mut values: Vec<(&str, &str)> = (self.catalog.runs.iter().flat_map(|r| &r.secrets))
            .flat_map(|s| {
                [
                    (s.name.as_str(), s.value.expose()),
                    (s.name.as_str(), s.value.expose().trim()),
                ]
            })
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if values.is_empty() {
            return;
        }
        // The longest first, so that a value inside another is not cut out of it.
        values.sort_by_key(|(_, v)| std::cmp::Reverse(v.len()));
        let redact = |text: &mut String| {
            for (name, value) in &values {
                if text.contains(value) {
                    *text = text.replace(value, &format!("[secret {name}]"));
                }
            }
        };
        for run in &mut observed.runs {
            redact(&mut run.stdout);
            redact(&mut run.stderr);
        }
        if let Some(f) = &mut observed.failure {
            f.stderr_tail.iter_mut().for_each(redact);
        }
    }
}

/// `[sandbox] unobserved`, as target paths.
fn unobserved(settings: &SandboxSettings) -> Result<Vec<TargetPath>, EngineError> {
    (settings.unobserved.iter())
        .map(|p| {
            TargetPath::parse(p).map_err(|reason| EngineError::Unobserved {
                path: p.clone(),
                reason,
            })
        })
        .collect()
}

/// What the first plan lays into the sandbox: the changes laid in before any module
/// (implicit directories, and what the site no longer declares), each module's own, and
/// the released paths with what they become.
struct Lays {
    pre: Vec<Lay>,
    by_module: BTreeMap<String, Vec<Lay>>,
    released: BTreeMap<TargetPath, Snapshot>,
}

/// The changes of `first` to lay into the sandbox, their contents written to `input`.
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
                let bytes = (contents.content(&h))
                    .ok_or_else(|| EngineError::MissingContent { path: path.clone() })?;
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
    Ok(Lays {
        pre,
        by_module,
        released,
    })
}

/// What the sandbox finally holds is what the apply must bring about: each planned entry
/// with its final state (entries whose content is known only from the target, when the
/// run left them alone, keep the target's), plus every other path a module's files or
/// programs changed, as an observed entry of that module (sensitive when the module's
/// programs were given secrets: `given`).
fn final_entries(
    first: &Plan,
    observed: &Observed,
    from_target: impl Fn(&TargetPath) -> bool,
    released: &BTreeMap<TargetPath, Snapshot>,
    given: &BTreeSet<&str>,
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
        // as changed: the plan says so of any private file. `sensitive` is for what may
        // hold a secret: anything a module given secrets (`STRATA_SECRET_*`) wrote.
        last.push(Entry {
            path: c.path.clone(),
            state: c.state.clone(),
            replace: true,
            implicit: false,
            sensitive: given.contains(module.as_str()),
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
