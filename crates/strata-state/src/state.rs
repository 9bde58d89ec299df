//! Opening a root's state: the lock, recovery of an interrupted commit, and reading
//! generations.

use serde::Serialize;
use strata_fs::{Lock, Root, Stamps};
use strata_types::{
    CommandStatus, Deferred, Entry, Generation, GenerationKind, Report, Snapshot, TargetPath,
};

use crate::commit::{Journal, Recovered};
use crate::{StateError, StoreSize};

pub(crate) fn state_path(rel: &str) -> TargetPath {
    TargetPath::parse("/var/lib/strata")
        .expect("fixed")
        .join(rel)
        .expect("fixed names")
}

/// Creates the missing state directories of `dir`: `/var/lib/strata` and everything
/// below it are root's alone (0700; the state directory itself is closed if an older
/// strata left it open), since what is kept there (originals of files such as
/// `/etc/shadow`, scripts' output, commands with their arguments) is nobody else's to read.
pub(crate) fn private_dirs(root: &Root, dir: &TargetPath) -> Result<(), StateError> {
    Ok(root.create_private_dirs(dir, &state_path(""))?)
}

/// A root's state, opened. Writers hold the root's lock for as long as this lives.
#[derive(Debug)]
pub struct State<'r> {
    pub(crate) root: &'r Root,
    pub(crate) lock: Option<Lock>,
    recovered: Option<Recovered>,
}

/// One line of `strata generations`.
#[derive(Debug, Clone, Serialize)]
pub struct GenerationInfo {
    /// Its number.
    pub number: u64,
    /// When it was recorded.
    pub time: String,
    /// Apply or rollback.
    pub kind: GenerationKind,
    /// The generation a rollback replayed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<u64>,
    /// How many paths it manages.
    pub paths: usize,
    /// Whether it is the current one.
    pub current: bool,
    /// The site's revision (`none`: not a git checkout; absent: recorded by an older
    /// strata).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The site's checkout had changes not committed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub dirty: bool,
    /// The commands its commit ran after the commit point, and how each went.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<CommandInfo>,
}

/// A command a generation's commit ran after the commit point (`strata generations`):
/// an [`Activation`] without its output.
#[derive(Debug, Clone, Serialize)]
pub struct CommandInfo {
    /// The command.
    pub command: Deferred,
    /// How it ended; none when no record of it was kept.
    pub status: Option<CommandStatus>,
    /// Its exit status.
    pub exit: Option<i32>,
    /// The signal that ended it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Why it could not run or was stopped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl CommandInfo {
    /// Whether the command ran and exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.status == Some(CommandStatus::Ok)
    }

    fn of(generation: &Generation, report: Option<Report>) -> Vec<CommandInfo> {
        let ran = report.map(|r| r.activations).unwrap_or_default();
        let mut out: Vec<CommandInfo> = ran
            .into_iter()
            .map(|a| CommandInfo {
                command: a.command,
                status: Some(a.status),
                exit: a.exit,
                signal: a.signal,
                error: a.error,
            })
            .collect();
        // Commands the report does not account for (it could not be saved).
        for c in generation.commands.iter().skip(out.len()) {
            out.push(CommandInfo {
                command: c.clone(),
                status: None,
                exit: None,
                signal: None,
                error: Some("no record of how it went".into()),
            });
        }
        out
    }
}

impl<'r> State<'r> {
    /// Opens the state to commit: takes the root's lock (failing at once, naming the holder,
    /// when another process has it) and finishes or undoes an interrupted commit.
    pub fn open_for_commit(root: &'r Root) -> Result<State<'r>, StateError> {
        let lock = root.lock()?;
        let mut state = State {
            root,
            lock: Some(lock),
            recovered: None,
        };
        state.recovered = state.recover()?;
        Ok(state)
    }

    /// What opening the state did to finish a commit an earlier process left
    /// interrupted past its commit point, if it did: the generation and how each of its
    /// deferred commands went.
    pub fn recovered(&self) -> Option<&Recovered> {
        self.recovered.as_ref()
    }

    /// Opens the state to read. Writes nothing, unless an interrupted commit must be
    /// finished or undone first (which takes the lock).
    pub fn open_for_read(root: &'r Root) -> Result<State<'r>, StateError> {
        if Journal::exists(root)? {
            return State::open_for_commit(root);
        }
        Ok(State {
            root,
            lock: None,
            recovered: None,
        })
    }

    /// The root this state belongs to.
    pub fn root(&self) -> &'r Root {
        self.root
    }

    /// The generation `current` points at.
    pub fn current(&self) -> Result<Option<Generation>, StateError> {
        match self.current_number()? {
            Some(n) => self.generation(n).map(Some),
            None => Ok(None),
        }
    }

    /// The number of the current generation.
    pub fn current_number(&self) -> Result<Option<u64>, StateError> {
        match self.root.inspect(&state_path("current"))? {
            strata_types::Snapshot::Link { target, .. } => {
                let n = target
                    .strip_prefix("generations/")
                    .and_then(|t| t.strip_suffix(".json"))
                    .and_then(|n| n.parse().ok())
                    .ok_or_else(|| StateError::Corrupt {
                        path: "current".into(),
                        message: format!("points at {target}"),
                    })?;
                Ok(Some(n))
            }
            _ => Ok(None),
        }
    }

    /// The stamps recorded after the last commit (a cache: none when missing or torn).
    pub fn stamps(&self) -> Stamps {
        match self.root.read(&state_path("stamps")) {
            Ok(Some(bytes)) => crate::stamps::parse_stamps(&bytes).unwrap_or_default(),
            _ => Stamps::new(),
        }
    }

    /// After a commit: stamps the regular files `entries` manage, so that the next plans
    /// read only those whose metadata changed. The commit's own stamps (`fresh`, see
    /// [`Committed::stamps`](crate::Committed::stamps)) are taken as they are, a stamp
    /// still valid is kept, and other files are read back. Not made durable: a torn
    /// stamps file is ignored, and a stale stamp never matches a file that changed.
    pub fn restamp(&self, entries: &[Entry], mut fresh: Stamps) -> Result<(), StateError> {
        let path = state_path("stamps");
        let dir = path.parent().expect("below the state directory");
        let Some(now) = self.root.fs_now(&dir)? else {
            return Ok(());
        };
        let old = self.root.stamps();
        let mut new = Stamps::with_capacity(entries.len());
        for e in entries {
            if !matches!(e.state, Snapshot::File { .. }) {
                continue;
            }
            let stamp = match (fresh.remove(&e.path), old.get(&e.path)) {
                (Some(s), _) if e.state.hash() == Some(s.hash) => Some(s),
                (_, Some(s)) if self.root.stat_key(&e.path)? == Some(s.key) => Some(*s),
                _ => self.root.stamp(&e.path, now)?,
            };
            if let Some(s) = stamp {
                new.insert(e.path.clone(), s);
            }
        }
        drop(old);
        self.root.replace_with(&path, 0o600, |w| {
            w.write_all(&crate::stamps::write_stamps(&new))
        })?;
        self.root.use_stamps(new);
        Ok(())
    }

    /// Reads generation `n`; one that was pruned is an error saying so, even when an
    /// interrupted `gc` left its file.
    pub fn generation(&self, n: u64) -> Result<Generation, StateError> {
        if self.pruned()?.contains(n) {
            return Err(StateError::Pruned {
                generation: n,
                oldest: self.numbers()?.first().copied(),
            });
        }
        self.read_generation(n)
    }

    /// Reads the file of generation `n`.
    pub(crate) fn read_generation(&self, n: u64) -> Result<Generation, StateError> {
        let path = state_path(&format!("generations/{n}.json"));
        let bytes = self.root.read(&path)?.ok_or(StateError::NoGeneration(n))?;
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: self.root.host_path(&path).display().to_string(),
            message: e.to_string(),
        })
    }

    /// The numbers of every recorded generation, ascending (not those pruned).
    pub fn numbers(&self) -> Result<Vec<u64>, StateError> {
        let pruned = self.pruned()?;
        let mut out = self.listed_numbers()?;
        out.retain(|n| !pruned.contains(*n));
        Ok(out)
    }

    /// Whether generation `n` was pruned (by `strata gc` or a site's retention).
    pub fn was_pruned(&self, n: u64) -> Result<bool, StateError> {
        Ok(self.pruned()?.contains(n))
    }

    /// The number the next generation gets: above every generation recorded or pruned,
    /// so that a number never names two generations.
    pub(crate) fn next_number(&self) -> Result<u64, StateError> {
        let listed = self.listed_numbers()?.last().copied().unwrap_or(0);
        Ok(listed.max(self.pruned()?.last().unwrap_or(0)) + 1)
    }

    /// The numbers of the generation files, ascending (a pruned one whose file an
    /// interrupted `gc` left included).
    pub(crate) fn listed_numbers(&self) -> Result<Vec<u64>, StateError> {
        let mut out: Vec<u64> = self
            .root
            .list(&state_path("generations"))?
            .into_iter()
            .filter_map(|(name, _)| name.strip_suffix(".json")?.parse().ok())
            .collect();
        out.sort_unstable();
        Ok(out)
    }

    /// A summary of every generation.
    pub fn list(&self) -> Result<Vec<GenerationInfo>, StateError> {
        let current = self.current_number()?;
        let mut out = Vec::new();
        for n in self.numbers()? {
            let g = self.read_generation(n)?;
            let commands = match g.commands.is_empty() {
                true => Vec::new(),
                false => CommandInfo::of(&g, self.report(n).ok()),
            };
            out.push(GenerationInfo {
                number: g.number,
                time: g.time,
                kind: g.kind,
                replayed: g.replayed,
                paths: g.entries.len(),
                current: Some(n) == current,
                revision: g.revision,
                dirty: g.dirty,
                commands,
            });
        }
        Ok(out)
    }

    /// The store of this root.
    pub fn store(&self) -> crate::Store<'r> {
        crate::Store::new(self.root)
    }

    /// What `strata generations` shows: every generation, the store's size and the
    /// generations pruned.
    pub fn history(&self) -> Result<History, StateError> {
        Ok(History {
            generations: self.list()?,
            store: self.store().size()?,
            pruned: self.pruned()?.ranges(),
        })
    }
}

/// A root's history: its generations, how big its store is, what was pruned.
#[derive(Debug, Clone, Serialize)]
pub struct History {
    /// Every generation recorded (and not pruned), oldest first.
    pub generations: Vec<GenerationInfo>,
    /// The store's size.
    pub store: StoreSize,
    /// The generations pruned, as inclusive ranges `[first, last]`.
    pub pruned: Vec<[u64; 2]>,
}

impl State<'_> {
    /// Saves the full report of generation `n` (the generation file holds the steps up to
    /// the plan; the commit's own steps are only known after it).
    pub fn save_report(&self, n: u64, report: &strata_types::Report) -> Result<(), StateError> {
        let dir = state_path("reports");
        private_dirs(self.root, &dir)?;
        // Not flushed: a report lost to a crash leaves the one in the generation file (see
        // `report`), so it is not worth two more fsyncs per apply. Unless it records
        // commands run after the commit: it is their only record. Private: it holds what
        // the scripts printed.
        let path = dir.join(&format!("{n}.json")).expect("plain name");
        let fill = |w: &mut dyn std::io::Write| {
            serde_json::to_writer_pretty(w, report).map_err(std::io::Error::other)
        };
        if report.activations.is_empty() {
            self.root.replace_with(&path, 0o600, fill)?;
        } else {
            self.root.write_atomic_with(&path, fill)?;
        }
        Ok(())
    }

    /// The report of generation `n`: the full one when saved, else the one in the
    /// generation file.
    pub fn report(&self, n: u64) -> Result<strata_types::Report, StateError> {
        if self.pruned()?.contains(n) {
            return self.generation(n).map(|g| g.report);
        }
        let path = state_path(&format!("reports/{n}.json"));
        if let Some(bytes) = self.root.read(&path)?
            && let Ok(r) = serde_json::from_slice(&bytes)
        {
            return Ok(r);
        }
        Ok(self.generation(n)?.report)
    }
}
