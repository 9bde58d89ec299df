//! The third stage: a plan committed to the target and recorded as a generation, the
//! intercepted commands run after it, and the retention applied. An apply and a rollback
//! both commit through [`ToCommit::commit`].

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::SystemTime;

use strata_core::Catalog;
use strata_fs::Meter;
use strata_state::{DEFAULT_KEEP, Op, Pruned, Scheduled, State, StateError, Sweep};
use strata_types::{
    Activation, Change, Deferred, Entry, Generation, GenerationKind, ProgramRun, Report, Snapshot,
    Step, TargetPath,
};

use crate::EngineError;

/// What a generation records besides the plan's entries and originals.
pub(crate) struct Header {
    pub kind: GenerationKind,
    pub replayed: Option<u64>,
    pub node: String,
    pub environment: String,
    pub site: Option<String>,
    pub revision: Option<String>,
    pub dirty: bool,
    pub modules: BTreeMap<String, String>,
    pub keep_generations: Option<u64>,
    /// The version of each secret the compile read (see [`Generation::secrets`]).
    pub secrets: BTreeMap<String, String>,
    /// What tells the time the generation is recorded at.
    pub clock: Clock,
    /// Whether to prune beyond `keep_generations` (else [`DEFAULT_KEEP`]) once committed:
    /// an apply does, a rollback does not (it has no site to say how many to keep).
    pub prune: bool,
}

/// What tells the time a generation is recorded at: the system's clock, or a time the
/// caller fixed (the CLI's tests do, so that their snapshots show exact times).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Clock {
    /// The system's clock, read when the generation is made.
    #[default]
    System,
    /// Always this time.
    Fixed(SystemTime),
}

impl Clock {
    /// The time now, by this clock.
    pub fn now(self) -> SystemTime {
        match self {
            Clock::System => SystemTime::now(),
            Clock::Fixed(t) => t,
        }
    }
}

/// What a commit recorded.
#[derive(Default)]
pub(crate) struct Recorded {
    /// The new generation, unless nothing changed.
    pub generation: Option<u64>,
    /// How each command run after the commit went.
    pub activations: Vec<Activation>,
    /// What the retention pruned, when there was one to apply.
    pub pruned: Option<Result<Pruned, StateError>>,
}

/// A plan about to be committed, with what the commit needs.
pub(crate) struct ToCommit<'a> {
    pub state: &'a State<'a>,
    /// The plan's changes.
    pub changes: &'a [Change],
    /// The plan's entries and originals: they move into the generation.
    pub entries: Vec<Entry>,
    pub originals: BTreeMap<TargetPath, Snapshot>,
    /// The generation the plan was made against.
    pub current: Option<&'a Generation>,
    pub header: Header,
    /// The contents of the files it writes (the commit looks in its own store for what
    /// they lack), with what is worth loading ahead of it.
    pub contents: strata_state::Prefetching<'a>,
    /// The commands to run after the commit, in call order.
    pub calls: Vec<Scheduled>,
    /// The programs that ran in the sandbox, for the full report.
    pub programs: &'a [ProgramRun],
}

impl ToCommit<'_> {
    /// Commits the plan unless it changes nothing, on the target and in what strata
    /// manages; then, when the header says so, prunes the generations beyond the newest it
    /// keeps (even when nothing changed: a lowered `keep_generations` takes effect at
    /// once). A failed pruning does not undo the commit: it is returned beside it.
    pub(crate) fn commit(self, steps: &mut Vec<Step>) -> Result<Recorded, EngineError> {
        let keep =
            (self.header.prune).then(|| self.header.keep_generations.unwrap_or(DEFAULT_KEEP));
        let state = self.state;
        let changing = self.changes.iter().filter(|c| c.action.changes_target());
        if changing.clone().next().is_none() && self.same_ownership() && self.calls.is_empty() {
            return Ok(Recorded {
                generation: None,
                activations: Vec::new(),
                pruned: keep.map(|k| state.gc(k, Sweep::AfterPruning)),
            });
        }
        // A path rendered from a secret, now or in the current generation: its contents
        // are kept sealed (almost always none).
        let secret: HashSet<&TargetPath> = (self.entries.iter())
            .chain(self.current.iter().flat_map(|g| g.entries.iter()))
            .filter(|e| e.sensitive)
            .map(|e| &e.path)
            .collect();
        // Sized once: a first apply has an op for every path.
        let mut ops: Vec<Op> = Vec::with_capacity(changing.clone().count());
        ops.extend(changing.map(|c| Op {
            path: c.path.clone(),
            before: c.before.clone(),
            after: c.after.clone(),
            sealed: !secret.is_empty() && secret.contains(&c.path),
        }));
        let (contents, programs) = (self.contents, self.programs);
        let (generation, calls) = self.generation(steps);
        let strata_state::Committed {
            generation,
            steps: commit_steps,
            activations,
            stamps,
        } = state.commit(ops, generation, &contents, calls)?;
        steps.extend(commit_steps);
        // Stamps are a cache: a failure to take them costs the next plan time, nothing else.
        let meter = Meter::start();
        let _ = state.restamp(&generation.entries, stamps);
        steps.push(meter.finish("stamp"));
        let pruned = prune(state, keep, steps);
        // The full report is a convenience: a failure to save it does not undo the commit.
        let report = Report {
            revision: generation.revision.clone(),
            dirty: generation.dirty,
            steps: steps.clone(),
            activations: activations.clone(),
            programs: programs.to_vec(),
        };
        let _ = state.save_report(generation.number, &report);
        Ok(Recorded {
            generation: Some(generation.number),
            activations,
            pruned,
        })
    }

    /// Whether what strata manages stays as the current generation has it.
    fn same_ownership(&self) -> bool {
        match self.current {
            Some(g) => {
                g.entries == self.entries
                    && g.originals == self.originals
                    && (g.modules == self.header.modules
                        || self.entries.iter().all(|e| !e.observed))
            }
            None => self.entries.is_empty() && self.originals.is_empty(),
        }
    }

    /// The generation to record (numbered by the commit), and the calls it schedules.
    fn generation(self, steps: &[Step]) -> (Generation, Vec<Scheduled>) {
        let header = self.header;
        let generation = Generation {
            number: 0,
            time: humantime::format_rfc3339_seconds(header.clock.now()).to_string(),
            kind: header.kind,
            replayed: header.replayed,
            node: header.node,
            environment: header.environment,
            site: header.site,
            revision: header.revision,
            dirty: header.dirty,
            entries: self.entries,
            originals: self.originals,
            modules: header.modules,
            commands: Vec::new(),
            keep_generations: header.keep_generations,
            secrets: header.secrets,
            // Top-level steps only: the generation is read by every plan, and the full
            // report (every template render) is saved beside it.
            report: Report {
                steps: (steps.iter())
                    .map(|s| Step {
                        name: s.name.clone(),
                        metrics: s.metrics.clone(),
                        steps: Vec::new(),
                    })
                    .collect(),
                ..Report::default()
            },
        };
        (generation, self.calls)
    }
}

/// Prunes the generations beyond the newest `keep`, when there is a retention to apply; a
/// step when it pruned something (or failed).
fn prune(
    state: &State<'_>,
    keep: Option<u64>,
    steps: &mut Vec<Step>,
) -> Option<Result<Pruned, StateError>> {
    let meter = Meter::start();
    let pruned = keep.map(|k| state.gc(k, Sweep::AfterPruning));
    if pruned
        .as_ref()
        .is_some_and(|p| p.as_ref().map_or(true, |p| !p.pruned.is_empty()))
    {
        steps.push(meter.finish("prune"));
    }
    pruned
}

/// The calls to run after the commit, each with the time limit of the module that made
/// it (its scripts' `timeout`); calls of no module in the catalog get the default.
pub(crate) fn scheduled(catalog: &Catalog, calls: &[Deferred]) -> Vec<Scheduled> {
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
