//! What a caller asks of the pipeline: the [`Request`] it fills in, and the [`Purpose`]
//! each entry point gives it (a plan, a shell, an apply).

use std::path::PathBuf;

use strata_hardware::Allocate;

/// What `plan`, `shell` and `apply` need.
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
    /// strata's cache directory on the machine running it (the CLI's default:
    /// `$STRATA_CACHE_DIR`, else `/var/cache/strata` for root, else `~/.cache/strata`):
    /// what compiling a node learnt of the site's files, checked downloads, and package
    /// lists and packages per distribution. Created when first needed.
    pub cache: PathBuf,
    /// The caller's terminal type (`TERM`), for the interactive shell of `shell`.
    pub terminal: Option<String>,
    /// Where the node's hardware classification comes from.
    pub classify: Classify,
}

/// Where a node's hardware classification comes from, when the site has profiles.
#[derive(Debug, Clone)]
pub enum Classify {
    /// Here: the node's facts against the site's profiles, pools allocated in `db`.
    Here,
    /// From a signed assignment (push, pull), confirmed against the node's own facts;
    /// nothing is allocated here. `None`: the node got none, so a node that only a
    /// profile describes is refused.
    Assigned(Option<strata_hardware::Classification>),
}

/// What a run of the pipeline is for. It decides what the run may do beyond reading: keep
/// hardware allocations, fetch downloads and give scripts the network, open a shell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Purpose {
    /// `plan`: nothing is written or allocated; scripts run with `STRATA_NOOP=1` and no
    /// network (unless a module allows it).
    Plan,
    /// `shell`: a plan that opens an interactive shell in its sandbox, always sandboxed.
    Shell,
    /// `apply`: allocations are kept, downloads fetched, scripts given the network, and
    /// the plan committed.
    Apply,
}

impl Purpose {
    /// Whether classifying the node keeps the pool entries it allocates.
    pub(crate) fn allocate(self) -> Allocate {
        match self {
            Purpose::Apply => Allocate::Commit,
            Purpose::Plan | Purpose::Shell => Allocate::DryRun,
        }
    }

    /// Whether nothing is to change: scripts then see `STRATA_NOOP=1`.
    pub(crate) fn noop(self) -> bool {
        self != Purpose::Apply
    }
}
