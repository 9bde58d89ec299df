//! Per-step measurements of a run (time, CPU, memory, I/O), as disco's report had.

use serde::{Deserialize, Serialize};

/// What one step cost.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Wall-clock seconds.
    pub wall: f64,
    /// User CPU seconds.
    pub user: f64,
    /// System CPU seconds.
    pub sys: f64,
    /// Peak resident set size in bytes (of the process doing the step, at its end).
    pub max_rss: u64,
    /// Minor page faults.
    pub minor_faults: u64,
    /// Major page faults.
    pub major_faults: u64,
    /// Bytes read (from storage or the page cache).
    pub read_bytes: u64,
    /// Bytes written.
    pub write_bytes: u64,
    /// Exit status, for steps that run a process.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit: Option<i32>,
}

/// A named step with its metrics and sub-steps.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// What the step did (`compile`, `render /etc/motd`).
    pub name: String,
    /// What it cost.
    pub metrics: StepMetrics,
    /// Steps inside it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<Step>,
}

/// The steps of one run, in order.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Report {
    /// Top-level steps.
    pub steps: Vec<Step>,
    /// Commands run on the target after the commit (intercepted calls of scripts).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub activations: Vec<Activation>,
    /// What the scripts and executable templates printed, in run order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub programs: Vec<ProgramRun>,
}

/// One run of a script or executable template in the sandbox.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProgramRun {
    /// The module.
    pub module: String,
    /// The program (`scripts/10-config.sh`).
    pub program: String,
    /// What it cost, and its exit status.
    pub metrics: StepMetrics,
    /// What it printed on standard output (for a template: nothing, that is the content).
    pub stdout: String,
    /// What it printed on standard error.
    pub stderr: String,
}

/// A command a script called in the sandbox, deferred until after the commit.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferred {
    /// The module whose script called it.
    pub module: String,
    /// The script.
    pub program: String,
    /// The command and its arguments.
    pub argv: Vec<String>,
}

/// How a deferred command went on the target.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activation {
    /// The command.
    pub command: Deferred,
    /// Its exit status (none: it could not start, or was killed).
    pub exit: Option<i32>,
    /// What it printed (standard output, then standard error).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Why it could not run, or that an earlier run was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
