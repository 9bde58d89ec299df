//! Why a command of the engine failed: one variant per failed object, each message naming
//! it (the site, a path, a download, a generation, a module's program).

use strata_core::{PlanError, SiteErrors};
use strata_fs::FsError;
use strata_state::StateError;
use strata_types::{PathError, ProgramRun, TargetPath};

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
    /// A path on the target is not one strata can manage (a name in a directory it lists).
    #[error(transparent)]
    Path(#[from] PathError),
    /// The node's saved facts (`--facts`) cannot be read or are not facts.
    #[error(transparent)]
    Facts(#[from] strata_facts::FactsFileError),
    /// The node applies a snapshot without an assignment, and only the site's hardware
    /// profiles describe it.
    #[error(
        "this node is described only by the site's hardware profiles, and it got no \
         signed assignment with its classification (push classifies it; pull needs it \
         enrolled)"
    )]
    Unassigned,
    /// Hardware classification failed.
    #[error(transparent)]
    Hardware(#[from] strata_hardware::ClassifyError),
    /// There is no generation to roll back to: nothing was changed.
    #[error(transparent)]
    Rollback(#[from] RollbackError),
    /// No generation is recorded on the root (a report asks for the current one).
    #[error("no generation recorded on this root")]
    NoGeneration,
    /// The site has scripts, and the caller gave no sandbox helper ([`Request::helper`]).
    ///
    /// [`Request::helper`]: crate::Request::helper
    #[error("this program cannot run scripts: it has no sandbox helper")]
    NoHelper,
    /// A path of `[sandbox] unobserved` in `strata.toml` is not an absolute path.
    #[error("strata.toml: [sandbox] unobserved: `{path}`: {reason}")]
    Unobserved {
        /// The path as written.
        path: String,
        /// What is wrong with it.
        reason: PathError,
    },
    /// A planned file's content is neither in the catalog, the downloads nor the store.
    #[error("no content for {path}")]
    MissingContent {
        /// The file.
        path: TargetPath,
    },
    /// A `[[download]]` could not be fetched or kept: nothing was written.
    #[error(transparent)]
    Download(#[from] Box<DownloadError>),
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
    /// A `pre-apply` hook failed, timed out or could not start: nothing is committed.
    #[error("hook {hook} {how}; nothing was committed{}", output_tail(output))]
    Hook {
        /// The hook (`hooks/pre-apply.d/10-check`).
        hook: String,
        /// How it ended.
        how: String,
        /// What it printed.
        output: String,
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

/// Why a `[[download]]` could not be fetched or kept; nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// It could not be fetched, read or written, or its body is too long or too short.
    #[error("download of {url} for {path} ({source_file}) failed: {why}; nothing was written")]
    Failed {
        /// Its URL.
        url: String,
        /// The target path.
        path: TargetPath,
        /// Where the site declares it.
        source_file: String,
        /// What went wrong.
        why: String,
    },
    /// Its body is not the content its `sha256` pins.
    #[error(
        "download of {url} for {path} ({source_file}): its sha256 is {got}, not the declared \
         {sha256}; nothing was written"
    )]
    Mismatch {
        /// Its URL.
        url: String,
        /// The target path.
        path: TargetPath,
        /// Where the site declares it.
        source_file: String,
        /// The sha256 of what the server sent.
        got: String,
        /// The declared sha256.
        sha256: String,
    },
}

/// Why a rollback found no generation to go back to; nothing was changed.
#[derive(Debug, thiserror::Error)]
pub enum RollbackError {
    /// The root has no generation at all.
    #[error("no generation recorded on this root: nothing to roll back")]
    NoGeneration,
    /// The current generation is the first one.
    #[error("generation {current} is the first one: there is none before it")]
    First {
        /// The current generation.
        current: u64,
    },
    /// Those before the current generation were pruned.
    #[error(
        "generation {current} is the oldest one kept: those before it were pruned (by `strata \
         gc` or the site's `[state] keep_generations`); nothing was changed"
    )]
    OldestKept {
        /// The current generation.
        current: u64,
    },
    /// The generation asked for was pruned (the state's error says which are kept).
    #[error("cannot roll back: {0}; nothing was changed")]
    Pruned(StateError),
}

/// The last lines of a program's standard error, under the message.
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

/// The last lines a hook printed, under the message.
fn output_tail(output: &str) -> String {
    let lines: Vec<String> = output.lines().rev().take(5).map(str::to_string).collect();
    tail(&lines.into_iter().rev().collect::<Vec<_>>()).replace("standard error", "output")
}
