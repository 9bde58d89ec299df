//! How a command fails: a kind that decides the exit code, the error with its causes, and
//! the hints that the error's type calls for.
//!
//! Hints and kinds are found by looking at the error's type (through the engine's error
//! enums), never at its text: a reworded message cannot lose its hint.

use std::error::Error as StdError;
use std::io;

use strata_core::SiteError;
use strata_engine::EngineError;
use strata_fs::LockError;
use strata_sandbox::SandboxError;
use strata_state::StateError;

use crate::printer::Printer;

/// What kind of failure a command met; each has its exit code. The contract keeps 0, 2
/// and 3 for how a plan or an apply ended, so every failure proper exits 1.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandErrorKind {
    /// The request, the site or the target is not as it must be (a site that does not
    /// compile, an unknown generation, a script that failed): exit 1.
    User,
    /// Another strata process holds the root's lock: exit 1.
    Busy,
    /// strata's own state or machinery failed (a damaged state file, content missing from
    /// the store, an undo that failed, the sandbox's helper): exit 1.
    Internal,
    /// Not a failure: a plan with changes pending exits 2. Carried as an error so that
    /// every command's result goes through one path (`Recovery::end` can turn it into 3).
    ChangesPending,
    /// The commit stands, but commands run after it failed, timed out or could not
    /// start: exit 3.
    CommandsFailed,
    /// Output went to a closed pipe (`strata plan | head`): exit 0, quietly.
    BrokenPipe,
    /// An agent could only apply the last verified snapshot again (the reason was
    /// printed): exit 4.
    Stale,
}

impl CommandErrorKind {
    /// The process's exit status for this kind.
    pub fn exit_code(self) -> u8 {
        match self {
            CommandErrorKind::User | CommandErrorKind::Busy | CommandErrorKind::Internal => 1,
            CommandErrorKind::ChangesPending => 2,
            CommandErrorKind::CommandsFailed => 3,
            CommandErrorKind::BrokenPipe => 0,
            CommandErrorKind::Stale => 4,
        }
    }
}

/// A command's failure: its kind, the error (whose causes are printed after it) and what
/// to do about it.
#[derive(Debug)]
pub struct CommandError {
    /// What kind of failure, hence the exit code.
    pub kind: CommandErrorKind,
    /// The error.
    pub error: anyhow::Error,
    /// `hint:` lines printed after the error.
    pub hints: Vec<String>,
}

/// A command's result.
pub type CommandResult = Result<(), CommandError>;

/// What `hint:` says when another strata process holds the root.
const LOCK_HINT: &str = "wait for it to finish; the lock goes away with its holder";

/// What `hint:` says when commands run after a commit failed.
const COMMANDS_HINT: &str = "the commit stands; once the cause is fixed, run the failed \
                             commands by hand (`strata report` shows their output)";

impl CommandError {
    /// An error of `kind`, without hints.
    pub fn new(kind: CommandErrorKind, error: impl Into<anyhow::Error>) -> CommandError {
        CommandError {
            kind,
            error: error.into(),
            hints: Vec::new(),
        }
    }

    /// The error with `hint` added.
    pub fn hinted(mut self, hint: impl Into<String>) -> CommandError {
        self.hints.push(hint.into());
        self
    }

    /// A plan with changes pending (exit 2).
    pub fn changes_pending() -> CommandError {
        CommandError::new(
            CommandErrorKind::ChangesPending,
            anyhow::anyhow!("changes pending"),
        )
    }

    /// A commit whose commands did not all succeed (exit 3); `text` names each that failed.
    pub fn commands_failed(text: String) -> CommandError {
        CommandError::new(CommandErrorKind::CommandsFailed, anyhow::Error::msg(text))
            .hinted(COMMANDS_HINT)
    }

    /// An agent that could only re-apply stale metadata (exit 4).
    pub fn stale() -> CommandError {
        CommandError::new(CommandErrorKind::Stale, anyhow::anyhow!("stale"))
    }

    /// Prints the error on stderr (nothing for a closed pipe or pending changes) and
    /// returns the exit code.
    pub fn report(&self, printer: &Printer) -> u8 {
        if !matches!(
            self.kind,
            CommandErrorKind::BrokenPipe
                | CommandErrorKind::ChangesPending
                | CommandErrorKind::Stale
        ) {
            self.print(printer);
        }
        self.kind.exit_code()
    }

    /// Site errors each on their own line with their hint; any other error as its cause
    /// chain on one line, then the hints.
    fn print(&self, printer: &Printer) {
        let top: &Cause = self.error.as_ref();
        if let Some(EngineError::Script { output, .. }) = top.downcast_ref::<EngineError>() {
            // What the scripts printed up to the failure, as a successful run shows it.
            let _ = printer.out(&crate::show::runs_text(printer, output));
        }
        if let Some(errors) = site_errors(top) {
            for e in errors {
                printer.error(&e.to_string(), &e.hint.iter().cloned().collect::<Vec<_>>());
            }
            return;
        }
        let chain: Vec<String> = self.error.chain().map(ToString::to_string).collect();
        printer.error(&chain.join(": "), &self.hints);
    }
}

/// Any error converts, its kind and hints found from its type.
impl<E: Into<anyhow::Error>> From<E> for CommandError {
    fn from(e: E) -> CommandError {
        let error: anyhow::Error = e.into();
        let mut kind = CommandErrorKind::User;
        let mut hints = Vec::new();
        for cause in error.chain() {
            if cause
                .downcast_ref::<io::Error>()
                .is_some_and(|io| io.kind() == io::ErrorKind::BrokenPipe)
            {
                kind = CommandErrorKind::BrokenPipe;
                break;
            }
            if let Some(LockError::Held { .. }) = lock_error(cause) {
                kind = CommandErrorKind::Busy;
                hints.push(LOCK_HINT.to_string());
            } else if is_internal(cause) {
                kind = CommandErrorKind::Internal;
            }
        }
        CommandError { kind, error, hints }
    }
}

/// One link of an error's chain.
type Cause = dyn StdError + 'static;

/// The site errors `e` carries, each printed with its own hint.
fn site_errors(e: &Cause) -> Option<&[SiteError]> {
    if let Some(EngineError::Site(errors)) = e.downcast_ref::<EngineError>() {
        return Some(&errors.0);
    }
    if let Some(errors) = e.downcast_ref::<strata_core::SiteErrors>() {
        return Some(&errors.0);
    }
    e.downcast_ref::<SiteError>().map(std::slice::from_ref)
}

/// The state error `e` is or wraps (the engine's are transparent: they are one link of
/// the chain, so the type is looked for inside them).
fn state_error(e: &Cause) -> Option<&StateError> {
    match e.downcast_ref::<EngineError>() {
        Some(EngineError::State(s)) => Some(s),
        Some(_) => None,
        None => e.downcast_ref::<StateError>(),
    }
}

/// The lock error `e` is or wraps.
fn lock_error(e: &Cause) -> Option<&LockError> {
    match state_error(e) {
        Some(StateError::Lock(l)) => Some(l),
        Some(_) => None,
        None => e.downcast_ref::<LockError>(),
    }
}

/// Whether `e` is a failure of strata's state or sandbox rather than of what was asked.
fn is_internal(e: &Cause) -> bool {
    let sandbox = match e.downcast_ref::<EngineError>() {
        Some(EngineError::Sandbox(s)) => Some(s),
        _ => e.downcast_ref::<SandboxError>(),
    };
    matches!(
        state_error(e),
        Some(
            StateError::Corrupt { .. }
                | StateError::MissingContent { .. }
                | StateError::UndoFailed { .. }
        )
    ) || matches!(
        sandbox,
        Some(SandboxError::Setup(_) | SandboxError::Io { .. })
    )
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn held() -> EngineError {
        EngineError::State(StateError::Lock(LockError::Held {
            path: PathBuf::from("/srv/root"),
            holder: "pid 7: strata apply".into(),
        }))
    }

    fn chain(e: &CommandError) -> String {
        let parts: Vec<String> = e.error.chain().map(ToString::to_string).collect();
        parts.join(": ")
    }

    #[test]
    fn a_held_lock_is_busy_with_its_hint_whatever_its_text() {
        let e = CommandError::from(held());
        assert_eq!(e.kind, CommandErrorKind::Busy);
        assert_eq!(e.hints, [LOCK_HINT]);
        assert_eq!(
            chain(&e),
            "/srv/root is locked by another strata process (pid 7: strata apply)"
        );
        // Wrapped in anyhow on its way, it is still found by its type.
        let e = CommandError::from(anyhow::Error::from(held()));
        assert_eq!(e.kind, CommandErrorKind::Busy);
    }

    #[test]
    fn a_failed_file_operation_says_its_cause_once() {
        let fs = strata_fs::FsError::new(
            "read",
            "/srv/root/etc/motd",
            io::Error::from_raw_os_error(13),
        );
        let e = CommandError::from(EngineError::Fs(fs));
        assert_eq!(e.kind, CommandErrorKind::User);
        assert_eq!(
            chain(&e),
            "cannot read /srv/root/etc/motd: Permission denied (os error 13)"
        );
        let sandbox = SandboxError::Io {
            what: "create",
            path: PathBuf::from("/run/w"),
            source: io::Error::from_raw_os_error(28),
        };
        let e = CommandError::from(EngineError::Sandbox(sandbox));
        assert_eq!(e.kind, CommandErrorKind::Internal);
        assert_eq!(
            chain(&e),
            "sandbox: create /run/w: No space left on device (os error 28)"
        );
    }

    #[test]
    fn a_closed_pipe_anywhere_in_the_chain_ends_quietly() {
        let e = CommandError::from(io::Error::from(io::ErrorKind::BrokenPipe));
        assert_eq!(e.kind, CommandErrorKind::BrokenPipe);
        assert_eq!(e.kind.exit_code(), 0);
    }

    #[test]
    fn the_contracts_exit_codes_hold() {
        assert_eq!(CommandError::changes_pending().kind.exit_code(), 2);
        let failed = CommandError::commands_failed("generation 2 committed".into());
        assert_eq!(failed.kind.exit_code(), 3);
        assert_eq!(failed.hints, [COMMANDS_HINT]);
        let damaged = EngineError::State(StateError::Corrupt {
            path: "current".into(),
            message: "not JSON".into(),
        });
        assert_eq!(CommandError::from(damaged).kind.exit_code(), 1);
    }
}
