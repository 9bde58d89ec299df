//! Why a command of the engine failed.

use strata_core::{PlanError, SiteErrors};
use strata_fs::FsError;
use strata_state::StateError;
use strata_types::ProgramRun;

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
