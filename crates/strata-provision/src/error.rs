//! What can go wrong while provisioning.

/// A provisioning failure. Every variant raised before [`crate::Stage::Disk`] leaves the
/// disk untouched.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// A setting or a layout is wrong.
    #[error("{file}: {field}{sep}{message}", sep = if field.is_empty() { "" } else { ": " })]
    Config {
        /// The site file.
        file: String,
        /// The field (`partition[2].size`), or empty for the whole file.
        field: String,
        /// What is wrong.
        message: String,
    },
    /// The layout does not fit the disk, or the disk cannot be used.
    #[error("{disk}: {message}")]
    Disk {
        /// The disk.
        disk: String,
        /// What is wrong.
        message: String,
    },
    /// A program strata runs failed.
    #[error("{program} failed ({status}){detail}", detail = if output.is_empty() { String::new() } else { format!(":\n{output}") })]
    Program {
        /// The program.
        program: String,
        /// Its exit status.
        status: String,
        /// The end of its output.
        output: String,
    },
    /// The new tree lacks what the boot needs.
    #[error("{0}")]
    Tree(String),
    /// Applying the node's catalog failed.
    #[error("applying the node's catalog onto the new tree: {0}")]
    Catalog(String),
    /// A file could not be read or written.
    #[error(transparent)]
    Fs(#[from] strata_fs::FsError),
    /// The disk could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}

impl ProvisionError {
    /// An I/O error on `path`.
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> ProvisionError {
        ProvisionError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}
