//! What can go wrong with a node's state.

use strata_fs::{FsError, LockError};
use strata_types::{Hash, TargetPath};

/// A failure reading or writing `<root>/var/lib/strata`, or committing to the target.
#[derive(Debug, thiserror::Error)]
pub enum StateError {
    /// A file-system operation failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// Another process is committing to this root.
    #[error(transparent)]
    Lock(#[from] LockError),
    /// A state file is not what strata wrote.
    #[error("{path} is damaged: {message}")]
    Corrupt {
        /// The state file.
        path: String,
        /// What is wrong.
        message: String,
    },
    /// No such generation.
    #[error("no generation {0} on this root")]
    NoGeneration(u64),
    /// The generation was pruned (by `strata gc` or the site's retention).
    #[error(
        "generation {generation} was pruned from this root (by `strata gc` or the site's \
         `[state] keep_generations`){}",
        match oldest {
            Some(n) => format!("; the oldest generation kept is {n}"),
            None => String::new(),
        }
    )]
    Pruned {
        /// The generation asked for.
        generation: u64,
        /// The oldest generation still recorded.
        oldest: Option<u64>,
    },
    /// Content a commit needs is neither in the catalog nor in the store.
    #[error("content {hash} for {path} is not in the store")]
    MissingContent {
        /// The content's hash.
        hash: Hash,
        /// The path that needs it.
        path: TargetPath,
    },
    /// The target changed between the plan and the commit.
    #[error("{path} changed while strata was committing; nothing was applied, run again")]
    Changed {
        /// The path.
        path: TargetPath,
    },
    /// A commit failed and so did undoing it; the journal stays for the next command.
    #[error(
        "{first}; undoing it also failed ({undo}); the next strata command on this root will finish the recovery"
    )]
    UndoFailed {
        /// The commit's failure.
        first: Box<StateError>,
        /// The undo's failure.
        undo: Box<StateError>,
    },
    /// The node's age key, which sensitive contents are kept encrypted to, is missing or
    /// unusable.
    #[error(
        "{path} {reason}: strata keeps the contents of files rendered from secrets in its store \
         encrypted to this node's age key (`strata keys node` makes one); nothing was changed"
    )]
    NodeKey {
        /// The key file, on the host.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A sealed store object cannot be opened (never shows its content).
    #[error("{path} cannot be decrypted with this node's age key ({reason}); nothing was changed")]
    Sealed {
        /// The object's file, on the host.
        path: String,
        /// Why.
        reason: String,
    },
}
