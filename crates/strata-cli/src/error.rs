//! The few kinds of failure the CLI knows, each with its exit code.

use std::io;

/// How a command ended, other than with success.
#[derive(Debug)]
pub enum CliError {
    /// Anything that failed: exit 1.
    Failed(anyhow::Error),
    /// A plan with changes pending: exit 2 (not an error).
    ChangesPending,
    /// A commit stands, but commands run after it failed, timed out or could not start:
    /// exit 3. The text names each.
    CommandsFailed(String),
    /// An agent could only apply the last verified snapshot again: exit 4 (the reason
    /// was printed).
    Stale,
    /// Output went to a closed pipe: exit quietly.
    BrokenPipe,
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> CliError {
        let e: anyhow::Error = e.into();
        if let Some(io) = e.downcast_ref::<io::Error>()
            && io.kind() == io::ErrorKind::BrokenPipe
        {
            return CliError::BrokenPipe;
        }
        CliError::Failed(e)
    }
}

/// A command's result.
pub type CliResult = Result<(), CliError>;
