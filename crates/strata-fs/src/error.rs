//! The error type of every file-system operation.

use std::io;
use std::path::PathBuf;

/// A failed file-system operation, with the path and what was being done.
#[derive(Debug, thiserror::Error)]
#[error("cannot {op} {}", .path.display())]
pub struct FsError {
    /// The operation (`read`, `write`, `rename`, …).
    pub op: &'static str,
    /// The host path, including the root.
    pub path: PathBuf,
    /// The system's error (its message names the errno).
    #[source]
    pub source: io::Error,
}

impl FsError {
    /// Builds an error.
    pub fn new(op: &'static str, path: impl Into<PathBuf>, source: impl Into<io::Error>) -> Self {
        FsError {
            op,
            path: path.into(),
            source: source.into(),
        }
    }

    /// Whether the cause is "no such file or directory".
    pub fn is_not_found(&self) -> bool {
        self.source.kind() == io::ErrorKind::NotFound
    }
}

/// Shorthand for this crate's results.
pub type Result<T, E = FsError> = std::result::Result<T, E>;
