//! The pipeline as a library: load → compile → plan → commit → report. The CLI, a push
//! to a remote node and the agent all call these functions; none of them touches the
//! terminal.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use strata_core::{
    Catalog, CompileOptions, Compiled, HardwareLayer, Lazy, ParamTree, PlanError, Site, SiteError,
    SiteErrors, UserDb,
};
use strata_fs::{FsError, Meter, Root};
use strata_hardware::Allocate;
use strata_state::{History, Op, Pruned, Scheduled, State, StateError, Sweep};
use strata_types::{
    Action, Activation, Change, Deferred, Entry, Generation, GenerationKind, Hash, Plan,
    ProgramRun, Report, Snapshot, Step, TargetPath,
};

pub use strata_core::NodeInfo;
pub use strata_state::{DEFAULT_KEEP, Recovered};

mod downloads;
mod intercept;
mod scripts;
mod steps;

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The site is invalid.
    #[error("{0}")]
    Site(#[from] SiteErrors),
    /// The target cannot be brought to the desired state.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The node's state or the commit failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// The target could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// The request itself makes no sense (no generation to roll back to, …).
    #[error("{0}")]
    Invalid(String),
    /// Hardware classification failed.
    #[error(transparent)]
    Hardware(#[from] strata_hardware::ClassifyError),
    /// The sandbox could not run.
    #[error(transparent)]
    Sandbox(#[from] strata_sandbox::SandboxError),
    /// A script or executable template failed: nothing is committed.
    #[error(
        "module {module}: {program} failed ({status}); nothing was committed{}",
        tail(stderr)
    )]
    Script {
        /// The module.
        module: String,
        /// The program.
        program: String,
        /// How it ended.
        status: String,
        /// The last lines of its standard error.
        stderr: Vec<String>,
        /// Every program run until then, with its output.
        output: Vec<ProgramRun>,
    },
    /// A program's call is not to an intercepted command (a forged call record): nothing
    /// is committed, nothing runs.
    #[error(
        "module {module}: {program} called {command:?}, which is not an intercepted command; \
         nothing was committed"
    )]
    NotIntercepted {
        /// The module.
        module: String,
        /// The program that made the call.
        program: String,
        /// What it called (`argv[0]`).
        command: String,
    },
}

fn tail(lines: &[String]) -> String {
    if lines.is_empty() {
        return String::new();
    }
    let mut s = String::from("\nlast lines of its standard error:");
    for l in lines {
        s.push_str("\n  ");
        s.push_str(l);
    }
    s
}

/// What `plan` and `apply` need.
#[derive(Debug, Clone)]
pub struct Request {
    /// The site directory.
    pub site: PathBuf,
    /// The node to compile.
    pub node: String,
    /// The directory acting as the node's `/`.
    pub root: PathBuf,
    /// `--set key=value` pairs.
    pub sets: Vec<(String, String)>,
    /// Saved facts of the node (either form of `strata facts`) for hardware classification.
    pub facts: Option<PathBuf>,
    /// Whether the node is the machine running strata (its live facts are then the node's).
    pub local: bool,
    /// The allocation database: a SQLite file or a `postgres://` URL (default
    /// `<site>/.strata/state.db`).
    pub db: Option<String>,
    /// The strata executable, run as the sandbox's helper when the site has scripts.
    pub helper: Option<PathBuf>,
    /// Read every file of the site and of the target, trusting no stamp (docs/state.md);
    /// what is read is still recorded for the next runs.
    pub checksum: bool,
}

/// What a plan, apply or rollback found and did.
#[derive(Debug)]
pub struct Outcome {
    /// The node.
    pub node: String,
    /// Its environment.
    pub environment: String,
    /// What changes (for an apply: what changed).
    pub plan: Plan,
    /// The target's users and groups, to show owners by name.
    pub users: UserDb,
    /// The generation recorded; none when there was nothing to do (or for a plan).
    pub generation: Option<u64>,
    /// Per-step metrics.
    pub report: Report,
    /// Programs that ran in the sandbox, with their output.
    pub runs: Vec<ProgramRun>,
    /// Intercepted calls: in a plan, what would run; in an apply, what ran after the commit.
    pub calls: Vec<Deferred>,
    /// In an apply: how each intercepted call went on the target.
    pub activations: Vec<Activation>,
    /// In an apply: what the site's retention (`[state] keep_generations`) pruned once the
    /// apply was done, or why it failed (the apply stands either way).
    pub pruned: Option<Result<Pruned, StateError>>,
    /// The content of every file the plan creates (and more), for showing its diff:
    /// plans leave those diffs out so as not to hold each new file twice
    /// ([`Outcome::diff`]). A content too large for a diff is not kept.
    pub contents: HashMap<Hash, Vec<u8>>,
}

impl Outcome {
    /// Whether an apply would do anything: change a path or run a command.
    pub fn has_changes(&self) -> bool {
        self.plan.has_changes() || !self.calls.is_empty()
    }

    /// The unified diff of a change: the plan's, or for a new text file, its content.
    pub fn diff<'a>(&self, c: &'a Change) -> Option<Cow<'a, str>> {
        self.pending().diff(c)
    }

    /// What it changes, to show.
    pub fn pending(&self) -> Pending<'_> {
        Pending {
            changes: &self.plan.changes,
            users: &self.users,
            runs: &self.runs,
            contents: &self.contents,
        }
    }
}

/// What an apply is about to commit, to show while it commits (see [`apply_showing`]), or
/// what an outcome changes ([`Outcome::pending`]).
pub struct Pending<'a> {
    /// Every managed or released path, in path order.
    pub changes: &'a [Change],
    /// The target's users and groups, to show owners by name.
    pub users: &'a UserDb,
    /// Programs that ran in the sandbox, with their output.
    pub runs: &'a [ProgramRun],
    contents: &'a (dyn strata_types::ContentSource + Sync),
}

impl std::fmt::Debug for Pending<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("changes", &self.changes.len())
            .finish_non_exhaustive()
    }
}

impl Pending<'_> {
    /// The unified diff of a change: the plan's, or for a new text file, its content.
    pub fn diff<'c>(&self, c: &'c Change) -> Option<Cow<'c, str>> {
        if let Some(d) = &c.diff {
            return Some(Cow::Borrowed(d));
        }
        if c.action != Action::Create || c.sensitive {
            return None;
        }
        let new = self.contents.content(&c.after.hash()?)?;
        strata_core::diff_text(&c.path, &[], &new).map(Cow::Owned)
    }
}

/// The contents the catalog holds (read, or loaded since), and from `more` those of the
/// other files `plan` creates (see [`Outcome::diff`]). Nothing is copied that can be moved.
fn new_contents(
    plan: &Plan,
    (mut held, lazy): (HashMap<Hash, Vec<u8>>, Lazy),
    more: &dyn strata_types::ContentSource,
) -> HashMap<Hash, Vec<u8>> {
    for c in &plan.changes {
        if c.action != Action::Create || c.sensitive {
            continue;
        }
        let Some(h) = c.after.hash() else { continue };
        if held.contains_key(&h) || strata_types::ContentSource::content(&lazy, &h).is_some() {
            continue;
        }
        // Only to show a diff: what is too large for one is not copied (a download may be
        // gigabytes, mapped from the cache).
        if let Some(bytes) = more
            .content(&h)
            .filter(|b| b.len() <= strata_core::DIFF_LIMIT)
        {
            held.insert(h, bytes.into_owned());
        }
    }
    held.extend(lazy.into_loaded());
    held
}

fn compile_site(
    req: &Request,
    allocate: Allocate,
    steps: &mut Vec<Step>,
) -> Result<(Site, Catalog), EngineError> {
    let meter = Meter::start();
    let site = Site::open(&req.site)?;
    steps.push(meter.finish("load"));
    let meter = Meter::start();
    let facts = node_facts(req)?;
    let hardware = hardware_layer(
        &site,
        req,
        facts.as_ref().map(|(_, t)| t.as_slice()),
        allocate,
    )?;
    if hardware.is_some() {
        steps.push(meter.finish("classify"));
    }
    let meter = Meter::start();
    let opts = CompileOptions {
        sets: req.sets.clone(),
        facts: match facts {
            Some((serde_json::Value::Object(map), _)) => map,
            _ => Default::default(),
        },
        hardware,
        known: Some(if req.checksum {
            Compiled::default()
        } else {
            Compiled::parse(
                &strata_fs::read(&compiled_path(&site.dir, &req.node)).unwrap_or_default(),
            )
        }),
    };
    let mut catalog = strata_core::compile(&site, &req.node, &opts)?;
    // A cache: when it cannot be saved, the next compile reads every file again.
    if let Some(c) = catalog.compiled.take() {
        let _ = strata_fs::write_atomic(&compiled_path(&site.dir, &req.node), &c.write());
    }
    steps.push(meter.finish_with("compile", std::mem::take(&mut catalog.steps)));
    Ok((site, catalog))
}

/// Where what compiles of `node` learnt of the site's files is kept (see
/// [`strata_core::Compiled`]): strata's cache directory, one file per site and node.
fn compiled_path(site: &Path, node: &str) -> PathBuf {
    let mut key = site.as_os_str().as_encoded_bytes().to_vec();
    key.push(0);
    key.extend_from_slice(node.as_bytes());
    let name = Hash::of(&key).to_string();
    steps::cache_base().join("compiled").join(&name[..32])
}

/// Plans `entries` plus what `more` derives from what the current generation manages.
fn plan_against(
    root: &Root,
    state: &State<'_>,
    mut entries: Vec<strata_types::Entry>,
    more: impl FnOnce(&[Entry]) -> Result<Vec<Entry>, EngineError>,
    contents: &dyn strata_types::ContentSource,
    steps: &mut Vec<Step>,
) -> Result<(Plan, Option<Generation>), EngineError> {
    let meter = Meter::start();
    let current = state.current()?;
    let (cur_entries, originals) = managed(current.as_ref());
    entries.extend(more(cur_entries)?);
    let store = state.store();
    let plan = strata_core::plan(root, entries, cur_entries, originals, &(contents, &store))?;
    steps.push(meter.finish("plan"));
    Ok((plan, current))
}

/// What the last generation managed and the originals it recorded (nothing before the
/// first generation).
fn managed(current: Option<&Generation>) -> (&[Entry], &BTreeMap<TargetPath, Snapshot>) {
    static NONE: BTreeMap<TargetPath, Snapshot> = BTreeMap::new();
    match current {
        Some(g) => (&g.entries, &g.originals),
        None => (&[], &NONE),
    }
}

/// The node's facts, when known: `--facts`, or live facts when the node is this machine;
/// as templates see them and as tuples.
type NodeFacts = (serde_json::Value, Vec<strata_facts::Tuple>);

fn node_facts(req: &Request) -> Result<Option<NodeFacts>, EngineError> {
    match &req.facts {
        Some(f) => Ok(Some(
            strata_facts::read_file_with_view(f)
                .map_err(|e| EngineError::Invalid(e.to_string()))?,
        )),
        None if req.local => {
            let (facts, _) = strata_facts::gather(Path::new("/"));
            let tuples = strata_facts::to_tuples(&facts);
            Ok(Some((
                serde_json::to_value(facts).unwrap_or_default(),
                tuples,
            )))
        }
        None => Ok(None),
    }
}

/// Classifies the node against the site's hardware profiles, when the site has some and
/// the node's facts are known. A plan ([`Allocate::DryRun`]) allocates nothing.
fn hardware_layer(
    site: &Site,
    req: &Request,
    tuples: Option<&[strata_facts::Tuple]>,
    allocate: Allocate,
) -> Result<Option<HardwareLayer>, EngineError> {
    let hw = strata_hardware::Hardware::load(&site.dir)
        .map_err(|errs| SiteErrors(errs.into_iter().map(SiteError::new).collect()))?;
    let Some(tuples) = tuples.filter(|_| !hw.profiles.is_empty()) else {
        return Ok(None);
    };
    let default = site.dir.join(".strata/state.db");
    let db = req
        .db
        .clone()
        .unwrap_or_else(|| default.display().to_string());
    let is_url = db.starts_with("postgres://") || db.starts_with("postgresql://");
    let mut store: Box<dyn strata_hardware::Store> =
        if allocate == Allocate::Commit || is_url || strata_fs::exists(Path::new(&db)) {
            strata_hardware::open(&db).map_err(strata_hardware::ClassifyError::from)?
        } else {
            // A plan against a database that does not exist yet creates none.
            Box::new(
                strata_hardware::SqliteStore::in_memory()
                    .map_err(strata_hardware::ClassifyError::from)?,
            )
        };
    match strata_hardware::classify(&hw, tuples, store.as_mut(), allocate) {
        Ok((c, _)) => Ok(Some(HardwareLayer {
            params: c.hw_params(),
            profile: c.profile,
            role: c.role,
        })),
        // A node the site describes itself needs no profile.
        Err(strata_hardware::ClassifyError::NoProfile(_)) if site.knows_node(&req.node) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Computes what an apply would do. Writes nothing (unless an interrupted commit on the
/// root must be finished first).
pub fn plan(req: &Request) -> Result<Outcome, EngineError> {
    run_plan(req, false)
}

/// Opens an interactive shell in the plan's sandbox (after the modules ran), and reports
/// what the session changed on top of the plan. Commits nothing.
pub fn shell(req: &Request) -> Result<Outcome, EngineError> {
    run_plan(req, true)
}

fn run_plan(req: &Request, shell: bool) -> Result<Outcome, EngineError> {
    let mut steps = Vec::new();
    let (site, mut catalog) = compile_site(req, Allocate::DryRun, &mut steps)?;
    let root = Root::open(&req.root)?;
    let state = State::open_for_read(&root)?;
    if !req.checksum {
        root.use_stamps(state.stamps());
    }
    let users = UserDb::load(&root)?;
    let ctx = Planning {
        req,
        site: &site,
        catalog: &catalog,
        root: &root,
        state: &state,
        users: &users,
    };
    let Planned {
        plan,
        run,
        users,
        downloads: dl,
        ..
    } = ctx.plan(true, shell, &mut steps)?;
    let out = run.as_ref().map(|r| r.contents());
    let held = (
        std::mem::take(&mut catalog.contents),
        std::mem::take(&mut catalog.lazy),
    );
    let contents = new_contents(&plan, held, &(&dl.contents, out));
    let (runs, calls) = run
        .map(|r| (r.observed.runs, r.observed.calls))
        .unwrap_or_default();
    Ok(Outcome {
        node: catalog.node.name,
        environment: catalog.node.environment,
        plan,
        users,
        generation: None,
        report: Report {
            steps,
            ..Report::default()
        },
        runs,
        calls,
        activations: Vec::new(),
        pruned: None,
        contents,
    })
}

/// What planning a compiled catalog needs.
struct Planning<'a> {
    req: &'a Request,
    site: &'a Site,
    catalog: &'a Catalog,
    root: &'a Root,
    state: &'a State<'a>,
    users: &'a UserDb,
}

/// A plan and what came with it.
struct Planned {
    plan: Plan,
    /// The generation it was planned against.
    current: Option<Generation>,
    /// The sandbox run, when there was one.
    run: Option<scripts::SandboxRun>,
    /// The downloads' contents.
    downloads: downloads::Downloads,
    /// The target's users and groups once the plan is applied (to show owners by name).
    users: UserDb,
}

impl Planning<'_> {
    /// Plans directly, or through the sandbox when the catalog has scripts or executable
    /// templates (or a shell is wanted).
    fn plan(&self, noop: bool, shell: bool, steps: &mut Vec<Step>) -> Result<Planned, EngineError> {
        let sandboxed = shell || scripts::needed(self.catalog);
        // A plan fetches downloads only when scripts may need them in the sandbox.
        let dl = downloads::resolve(self.catalog, self.root, self.users, !noop || sandboxed)?;
        let (mut plan, current, run) = self.plan_with(&dl, noop, shell, sandboxed, steps)?;
        // Before anything is committed: only intercepted commands ever run.
        if let Some(r) = &run {
            intercept::check(&r.observed.calls, &self.site.sandbox.intercept)?;
        }
        for c in &mut plan.changes {
            if let Some(url) = dl.pending.get(&c.path) {
                c.note = Some(format!(
                    "fetched from {url} and checked against its sha256 at apply"
                ));
            }
        }
        let users = match &run {
            Some(r) => r.users(self.root)?,
            None => self.users.clone(),
        };
        Ok(Planned {
            plan,
            current,
            run,
            downloads: dl,
            users,
        })
    }

    fn plan_with(
        &self,
        dl: &downloads::Downloads,
        noop: bool,
        shell: bool,
        sandboxed: bool,
        steps: &mut Vec<Step>,
    ) -> Result<(Plan, Option<Generation>, Option<scripts::SandboxRun>), EngineError> {
        if !sandboxed {
            let mut entries = self.catalog.entries(self.users)?;
            entries.extend(dl.entries.iter().cloned());
            let purged = |cur: &[Entry]| -> Result<Vec<Entry>, EngineError> {
                Ok(self.catalog.purged(self.root, cur, &Default::default())?)
            };
            let (p, c) = plan_against(
                self.root,
                self.state,
                entries,
                purged,
                &(self.catalog, &dl.contents),
                steps,
            )?;
            return Ok((p, c, None));
        }
        let helper = helper(self.req)?;
        let mode = scripts::Mode {
            noop,
            shell,
            helper: &helper,
        };
        let (p, c, r) = scripts::plan(
            self.req,
            self.catalog,
            self.root,
            self.state,
            self.users,
            dl,
            &self.site.sandbox,
            &mode,
            steps,
        )?;
        Ok((p, c, Some(r)))
    }
}

fn helper(req: &Request) -> Result<PathBuf, EngineError> {
    req.helper.clone().ok_or_else(|| {
        EngineError::Invalid("this program cannot run scripts: it has no sandbox helper".into())
    })
}

/// Plans and commits, all or nothing, and records a generation. Nothing is written when
/// nothing changes. Intercepted commands the scripts called run on the target after the
/// commit, in call order.
pub fn apply(req: &Request) -> Result<Outcome, EngineError> {
    apply_showing(req, |_| ()).map(|(o, ())| o)
}

/// [`apply`], calling `show` on another thread with what is about to be committed, while
/// it commits (a plan of thousands of new files is shown on one core while the other
/// writes them); returns what `show` returned beside the outcome.
pub fn apply_showing<R: Send>(
    req: &Request,
    show: impl FnOnce(&Pending<'_>) -> R + Send,
) -> Result<(Outcome, R), EngineError> {
    let mut steps = Vec::new();
    let (site, mut catalog) = compile_site(req, Allocate::Commit, &mut steps)?;
    let root = Root::open(&req.root)?;
    let state = State::open_for_commit(&root)?;
    if !req.checksum {
        root.use_stamps(state.stamps());
    }
    let users = UserDb::load(&root)?;
    let ctx = Planning {
        req,
        site: &site,
        catalog: &catalog,
        root: &root,
        state: &state,
        users: &users,
    };
    let Planned {
        mut plan,
        current,
        run,
        downloads: dl,
        users,
    } = ctx.plan(false, false, &mut steps)?;
    let header = Header {
        kind: GenerationKind::Apply,
        replayed: None,
        node: catalog.node.name.clone(),
        environment: catalog.node.environment.clone(),
        site: Some(site.dir.display().to_string()),
        revision: git_revision(&site.dir),
        modules: catalog
            .runs
            .iter()
            .map(|r| (r.id.clone(), r.digest.clone()))
            .collect(),
        keep_generations: site.state.keep_generations.map(|k| k.0),
        prune: true,
    };
    let (runs, calls) = run
        .as_ref()
        .map(|r| (r.observed.runs.clone(), r.observed.calls.clone()))
        .unwrap_or_default();
    let scheduled = scheduled(&catalog, &calls);
    let out = run.as_ref().map(|r| r.contents());
    let contents = ((&catalog, &dl.contents), out);
    let owned = (
        std::mem::take(&mut plan.entries),
        std::mem::take(&mut plan.originals),
    );
    let (recorded, shown) = std::thread::scope(|s| {
        let pending = Pending {
            changes: &plan.changes,
            users: &users,
            runs: &runs,
            contents: &contents,
        };
        let shown = s.spawn(move || {
            strata_fs::background_thread();
            show(&pending)
        });
        let committed = commit(
            &state,
            (&plan.changes, owned),
            current.as_ref(),
            header,
            &contents,
            (&scheduled, &runs),
            &mut steps,
        );
        let shown = shown
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p));
        committed.map(|c| (c, shown))
    })?;
    let out = run.as_ref().map(|r| r.contents());
    let held = (
        std::mem::take(&mut catalog.contents),
        std::mem::take(&mut catalog.lazy),
    );
    let contents = new_contents(&plan, held, &(&dl.contents, out));
    let outcome = Outcome {
        node: catalog.node.name,
        environment: catalog.node.environment,
        plan,
        users,
        generation: recorded.generation,
        report: Report {
            steps,
            ..Report::default()
        },
        runs,
        calls,
        activations: recorded.activations,
        pruned: recorded.pruned,
        contents,
    };
    Ok((outcome, shown))
}

/// The calls to run after the commit, each with the time limit of the module that made
/// it (its scripts' `timeout`); calls of no module in the catalog get the default.
fn scheduled(catalog: &Catalog, calls: &[Deferred]) -> Vec<Scheduled> {
    let limits: HashMap<&str, std::time::Duration> = catalog
        .runs
        .iter()
        .map(|r| (r.id.as_str(), r.timeout))
        .collect();
    calls
        .iter()
        .map(|c| Scheduled {
            call: c.clone(),
            timeout: (limits.get(c.module.as_str()).copied())
                .unwrap_or(strata_state::DEFAULT_TIMEOUT),
        })
        .collect()
}

/// What a generation records besides the plan's entries and originals.
struct Header {
    kind: GenerationKind,
    replayed: Option<u64>,
    node: String,
    environment: String,
    site: Option<String>,
    revision: Option<String>,
    modules: BTreeMap<String, String>,
    keep_generations: Option<u64>,
    /// Whether to prune beyond `keep_generations` (else [`DEFAULT_KEEP`]) once committed:
    /// an apply does, a rollback does not (it has no site to say how many to keep).
    prune: bool,
}

/// What [`commit`] recorded.
struct Recorded {
    /// The new generation, unless nothing changed.
    generation: Option<u64>,
    /// How each command run after the commit went.
    activations: Vec<Activation>,
    /// What the retention pruned, when there was one to apply.
    pruned: Option<Result<Pruned, StateError>>,
}

/// What a commit records: the plan's changes, and the entries and originals that move
/// into the generation.
type ToCommit<'p> = (&'p [Change], (Vec<Entry>, BTreeMap<TargetPath, Snapshot>));

/// Commits a plan unless it changes nothing, on the target and in what strata manages;
/// then, when the header says so, prunes the generations beyond the newest it keeps (even
/// when nothing changed: a lowered `keep_generations` takes effect at once). A failed
/// pruning does not undo the commit: it is returned beside it.
fn commit(
    state: &State<'_>,
    (changes, (entries, originals)): ToCommit<'_>,
    current: Option<&Generation>,
    header: Header,
    contents: &dyn strata_types::ContentSource,
    scripted: (&[Scheduled], &[ProgramRun]),
    steps: &mut Vec<Step>,
) -> Result<Recorded, EngineError> {
    let (calls, programs) = scripted;
    let keep = (header.prune).then(|| header.keep_generations.unwrap_or(DEFAULT_KEEP));
    let same_ownership = match current {
        Some(g) => {
            g.entries == entries
                && g.originals == originals
                && (g.modules == header.modules || entries.iter().all(|e| !e.observed))
        }
        None => entries.is_empty() && originals.is_empty(),
    };
    let changing = changes.iter().filter(|c| c.action.changes_target());
    if changing.clone().next().is_none() && same_ownership && calls.is_empty() {
        return Ok(Recorded {
            generation: None,
            activations: Vec::new(),
            pruned: keep.map(|k| state.gc(k, Sweep::AfterPruning)),
        });
    }
    // Sized once: a first apply has an op for every path.
    let mut ops: Vec<Op> = Vec::with_capacity(changing.clone().count());
    ops.extend(changing.map(|c| Op {
        path: c.path.clone(),
        before: c.before.clone(),
        after: c.after.clone(),
    }));
    let generation = Generation {
        number: 0,
        time: now(),
        kind: header.kind,
        replayed: header.replayed,
        node: header.node,
        environment: header.environment,
        site: header.site,
        revision: header.revision,
        entries,
        originals,
        modules: header.modules,
        commands: Vec::new(),
        keep_generations: header.keep_generations,
        // Top-level steps only: the generation is read by every plan, and the full report
        // (every template render) is saved beside it.
        report: Report {
            steps: steps
                .iter()
                .map(|s| Step {
                    name: s.name.clone(),
                    metrics: s.metrics.clone(),
                    steps: Vec::new(),
                })
                .collect(),
            ..Report::default()
        },
    };
    let store = state.store();
    let strata_state::Committed {
        generation,
        steps: commit_steps,
        activations,
        stamps,
    } = state.commit(ops, generation, &(contents, &store), calls.to_vec())?;
    steps.extend(commit_steps);
    // Stamps are a cache: a failure to take them costs the next plan time, nothing else.
    let meter = Meter::start();
    let _ = state.restamp(&generation.entries, stamps);
    steps.push(meter.finish("stamp"));
    let meter = Meter::start();
    let pruned = keep.map(|k| state.gc(k, Sweep::AfterPruning));
    if pruned
        .as_ref()
        .is_some_and(|p| p.as_ref().map_or(true, |p| !p.pruned.is_empty()))
    {
        steps.push(meter.finish("prune"));
    }
    // The full report is a convenience: a failure to save it does not undo the commit.
    let _ = state.save_report(
        generation.number,
        &Report {
            steps: steps.clone(),
            activations: activations.clone(),
            programs: programs.to_vec(),
        },
    );
    Ok(Recorded {
        generation: Some(generation.number),
        activations,
        pruned,
    })
}

/// Replays generation `to` (default: the one before the current) through the same commit,
/// without the site; the result is a new generation.
pub fn rollback(root: &Path, to: Option<u64>) -> Result<Outcome, EngineError> {
    let root = Root::open(root)?;
    let state = State::open_for_commit(&root)?;
    let current = state.current_number()?.ok_or_else(|| {
        EngineError::Invalid("no generation recorded on this root: nothing to roll back".into())
    })?;
    let target = match to {
        Some(n) => n,
        None => match state.numbers()?.into_iter().rfind(|n| *n < current) {
            Some(n) => n,
            None if state.was_pruned(current - 1)? => {
                return Err(EngineError::Invalid(format!(
                    "generation {current} is the oldest one kept: those before it were \
                     pruned (by `strata gc` or the site's `[state] keep_generations`); \
                     nothing was changed"
                )));
            }
            None => {
                return Err(EngineError::Invalid(format!(
                    "generation {current} is the first one: there is none before it"
                )));
            }
        },
    };
    let old = state.generation(target).map_err(|e| match e {
        StateError::Pruned { .. } => {
            EngineError::Invalid(format!("cannot roll back: {e}; nothing was changed"))
        }
        e => e.into(),
    })?;
    root.use_stamps(state.stamps());
    let mut steps = Vec::new();
    let users = UserDb::load(&root)?;
    let empty = std::collections::HashMap::new();
    let (mut plan, current) = plan_against(
        &root,
        &state,
        old.entries.clone(),
        |_| Ok(Vec::new()),
        &empty,
        &mut steps,
    )?;
    let header = Header {
        kind: GenerationKind::Rollback,
        replayed: Some(target),
        node: old.node.clone(),
        environment: old.environment.clone(),
        site: old.site.clone(),
        revision: old.revision.clone(),
        modules: old.modules.clone(),
        // The site's retention as the last apply recorded it: a rollback has no site.
        keep_generations: current.as_ref().and_then(|g| g.keep_generations),
        prune: false,
    };
    let owned = (
        std::mem::take(&mut plan.entries),
        std::mem::take(&mut plan.originals),
    );
    let recorded = commit(
        &state,
        (&plan.changes, owned),
        current.as_ref(),
        header,
        &empty,
        (&[], &[]),
        &mut steps,
    )?;
    let contents = new_contents(&plan, Default::default(), &state.store());
    Ok(Outcome {
        node: old.node,
        environment: old.environment,
        plan,
        users,
        generation: recorded.generation,
        report: Report {
            steps,
            ..Report::default()
        },
        runs: Vec::new(),
        calls: Vec::new(),
        activations: Vec::new(),
        pruned: None,
        contents,
    })
}

/// Finishes a commit an earlier process left interrupted on `root`, if there is one, and
/// says what finishing it did (when it was past its commit point): every entry point does
/// this when it opens the root, this shows it.
pub fn recover(root: &Path) -> Result<Option<Recovered>, EngineError> {
    let root = Root::open(root)?;
    Ok(State::open_for_read(&root)?.recovered().cloned())
}

/// Every generation recorded on a root, the size of its store and what was pruned.
pub fn generations(root: &Path) -> Result<History, EngineError> {
    let root = Root::open(root)?;
    Ok(State::open_for_read(&root)?.history()?)
}

/// Prunes the generations of a root beyond the newest `keep` (default: the retention
/// the current generation recorded from its site, else [`DEFAULT_KEEP`]), and every store
/// object only they used, or that interrupted commits and gcs left.
pub fn gc(root: &Path, keep: Option<u64>) -> Result<Pruned, EngineError> {
    let root = Root::open(root)?;
    let state = State::open_for_commit(&root)?;
    let keep = match keep {
        Some(k) => k,
        None => (state.current()?)
            .and_then(|g| g.keep_generations)
            .unwrap_or(DEFAULT_KEEP),
    };
    Ok(state.gc(keep, Sweep::Always)?)
}

/// The report of generation `n` (default: the current one).
pub fn report(root: &Path, n: Option<u64>) -> Result<(u64, Report), EngineError> {
    let root = Root::open(root)?;
    let state = State::open_for_read(&root)?;
    let n = match n {
        Some(n) => n,
        None => state
            .current_number()?
            .ok_or_else(|| EngineError::Invalid("no generation recorded on this root".into()))?,
    };
    Ok((n, state.report(n)?))
}

/// One node's result in `check`.
#[derive(Debug)]
pub struct NodeCheck {
    /// The node.
    pub node: String,
    /// How many paths it declares, or what is wrong.
    pub result: Result<usize, SiteErrors>,
}

/// Validates the whole site: opens it, then compiles every node, collecting every error.
pub fn check(site: &Path) -> Result<Vec<NodeCheck>, EngineError> {
    let site = Site::open(site)?;
    let hw = strata_hardware::Hardware::load(&site.dir)
        .map_err(|errs| SiteErrors(errs.into_iter().map(SiteError::new).collect()))?;
    let missing: Vec<SiteError> = hw
        .profiles
        .iter()
        .filter_map(|p| {
            let role = p.role.as_ref()?;
            let err = site.check_role(role).err()?;
            Some(SiteError::in_file(
                "hardware/profiles.toml",
                format!("profile `{}`: {err}", p.name),
            ))
        })
        .collect();
    if !missing.is_empty() {
        return Err(SiteErrors(missing).into());
    }
    let mut out = Vec::new();
    for node in site.nodes()? {
        let result = strata_core::compile(&site, &node, &CompileOptions::default())
            .map(|c| c.resources.len());
        out.push(NodeCheck { node, result });
    }
    if out.is_empty() {
        return Err(SiteErrors::from(SiteError::new(
            "the site has no nodes (nodes/*.toml or groups/*.toml)",
        ))
        .into());
    }
    Ok(out)
}

/// A node's resolved parameters with their sources.
pub fn params(
    site: &Path,
    node: &str,
    sets: &[(String, String)],
) -> Result<ParamTree, EngineError> {
    let site = Site::open(site)?;
    let opts = CompileOptions {
        sets: sets.to_vec(),
        ..Default::default()
    };
    Ok(strata_core::compile(&site, node, &opts)?.params)
}

fn now() -> String {
    humantime::format_rfc3339_seconds(SystemTime::now()).to_string()
}

/// The commit the site's git checkout is at, read from `.git` without running git.
fn git_revision(site: &Path) -> Option<String> {
    let git = site.join(".git");
    let head = strata_fs::read_to_string(&git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return Some(head.to_string());
    };
    if let Ok(rev) = strata_fs::read_to_string(&git.join(reference)) {
        return Some(rev.trim().to_string());
    }
    let packed = strata_fs::read_to_string(&git.join("packed-refs")).ok()?;
    packed
        .lines()
        .find_map(|l| l.strip_suffix(reference).map(|rev| rev.trim().to_string()))
}
