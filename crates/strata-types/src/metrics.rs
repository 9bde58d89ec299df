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
    /// The site revision of the run (as its generation records it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<String>,
    /// The site's checkout had changes not committed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dirty: bool,
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
#[serde(from = "ActivationRecord")]
pub struct Activation {
    /// The command.
    pub command: Deferred,
    /// How it ended, in one word (`ok`, `failed`, `killed`, `timed-out`, `not-started`,
    /// `interrupted`).
    pub status: CommandStatus,
    /// Its exit status (none: it could not start, or was killed).
    pub exit: Option<i32>,
    /// The signal that ended it, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// What it printed on standard output and standard error (one pipe, in the order it
    /// wrote them), at most [`Activation::OUTPUT_LIMIT`] bytes: past that, the first and
    /// last halves with a line saying how much was left out between them.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output: String,
    /// Why it could not run or was stopped, or that an earlier run was interrupted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// How a deferred command ended.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CommandStatus {
    /// It exited with status 0.
    Ok,
    /// It exited with another status.
    Failed,
    /// A signal it did not get from strata ended it.
    Killed,
    /// It ran past its time limit: strata killed it and its process group.
    TimedOut,
    /// It could not be started (no such program on the target, …).
    #[default]
    NotStarted,
    /// It was running when strata was interrupted: its outcome is unknown, and it is
    /// not run a second time.
    Interrupted,
}

impl Activation {
    /// How much of a command's output is kept.
    pub const OUTPUT_LIMIT: usize = 1 << 20;

    /// Whether the command ran and exited with status 0.
    pub fn succeeded(&self) -> bool {
        self.status == CommandStatus::Ok
    }

    /// How it ended, as a person reads it: `ok`, `exit status 3`, `timed out after 10m`…
    pub fn describe(&self) -> String {
        if let Some(e) = &self.error {
            return e.clone();
        }
        match (self.status, self.exit, self.signal) {
            (CommandStatus::Ok, _, _) => "ok".into(),
            (_, Some(c), _) => format!("exit status {c}"),
            (_, None, Some(s)) => format!("killed by signal {s}"),
            (CommandStatus::Failed | CommandStatus::Killed, None, None) => "failed".into(),
            (CommandStatus::TimedOut, None, None) => "timed out".into(),
            (CommandStatus::NotStarted, None, None) => "could not start".into(),
            (CommandStatus::Interrupted, None, None) => {
                "was running when strata was interrupted; not run a second time".into()
            }
        }
    }
}

/// An [`Activation`] as recorded, also by strata versions that did not record its
/// status: then it is derived from the exit status and error.
#[derive(Deserialize)]
struct ActivationRecord {
    command: Deferred,
    #[serde(default)]
    status: Option<CommandStatus>,
    exit: Option<i32>,
    #[serde(default)]
    signal: Option<i32>,
    #[serde(default)]
    output: String,
    #[serde(default)]
    error: Option<String>,
}

impl From<ActivationRecord> for Activation {
    fn from(r: ActivationRecord) -> Activation {
        let status = r.status.unwrap_or(match (r.exit, &r.error) {
            (Some(0), None) => CommandStatus::Ok,
            (Some(_), _) => CommandStatus::Failed,
            (None, Some(e)) if e.contains("interrupted") => CommandStatus::Interrupted,
            (None, Some(e)) if e.starts_with("could not start") => CommandStatus::NotStarted,
            (None, _) => CommandStatus::Killed,
        });
        Activation {
            command: r.command,
            status,
            exit: r.exit,
            signal: r.signal,
            output: r.output,
            error: r.error,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_activation_recorded_without_a_status_gets_one_from_its_exit_and_error() {
        let cases = [
            (r#""exit":0"#, CommandStatus::Ok),
            (r#""exit":3"#, CommandStatus::Failed),
            (
                r#""exit":null,"error":"could not start: No such file or directory (os error 2)""#,
                CommandStatus::NotStarted,
            ),
            (
                r#""exit":null,"error":"was running when strata was interrupted; not run a second time""#,
                CommandStatus::Interrupted,
            ),
            (
                r#""exit":null,"error":"signal: 9 (SIGKILL)""#,
                CommandStatus::Killed,
            ),
        ];
        for (fields, want) in cases {
            let json = format!(
                r#"{{"command":{{"module":"m","program":"p","argv":["systemctl"]}},{fields}}}"#
            );
            let a: Activation = serde_json::from_str(&json).expect(&json);
            assert_eq!(a.status, want, "{json}");
            assert_eq!(a.succeeded(), want == CommandStatus::Ok, "{json}");
        }
    }

    #[test]
    fn an_activation_reads_back_as_written() {
        let a = Activation {
            command: Deferred {
                module: "app".into(),
                program: "scripts/10-x.sh".into(),
                argv: vec!["systemctl".into(), "restart".into(), "app".into()],
            },
            status: CommandStatus::TimedOut,
            exit: None,
            signal: Some(9),
            output: "starting\n".into(),
            error: Some("timed out after 10m".into()),
        };
        let json = serde_json::to_value(&a).expect("serialise");
        assert_eq!(json["status"], "timed-out");
        assert_eq!(a.describe(), "timed out after 10m");
        let back: Activation = serde_json::from_value(json).expect("parse");
        assert_eq!(back, a);
    }
}
