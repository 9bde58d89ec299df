//! Why a step of the sandbox's helper processes (outer and init) failed. A helper prints
//! the error with its causes on its standard error, which the parent reads back as
//! [`crate::SandboxError::Setup`]; a module's own step that fails (a line that cannot be
//! edited) becomes the run's failure instead.

use std::io;
use std::path::{Path, PathBuf};

use strata_fs::FsError;
use strata_types::PathError;

/// A failed step of a helper.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// A host file or directory (the work dir, a cgroup, `/proc`) could not be used.
    #[error("{what} {}", .path.display())]
    Io {
        /// What was done (`create`, `read`, `chmod`…).
        what: &'static str,
        /// The host path.
        path: PathBuf,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// A system call of the set-up failed (a mount, a namespace, a cgroup move…).
    #[error("{what}")]
    Sys {
        /// The step, naming what it acted on (`mount tmpfs on /w/sb`).
        what: String,
        /// Why it failed.
        #[source]
        source: io::Error,
    },
    /// An operation in a tree (the target, the merged tree, an upper dir) failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A path is not a valid target path.
    #[error(transparent)]
    Path(#[from] PathError),
    /// A helper's file (the layers, the result) is not the JSON it should be.
    #[error("{}", .path.display())]
    Json {
        /// The file.
        path: PathBuf,
        /// Why it is not.
        #[source]
        source: serde_json::Error,
    },
    /// What was asked cannot be done, said in words (a line that matches twice, a path
    /// overlayfs cannot take, a seccomp rule).
    #[error("{0}")]
    Refused(String),
    /// A step, for the failure below it (`laying /etc/x into the sandbox`).
    #[error("{what}")]
    In {
        /// The step.
        what: String,
        /// What failed in it.
        #[source]
        source: Box<HelperError>,
    },
}

impl HelperError {
    /// For `map_err`: `what` failed on the host path `path`.
    pub fn io<'a>(
        what: &'static str,
        path: &'a Path,
    ) -> impl FnOnce(io::Error) -> HelperError + 'a {
        move |source| HelperError::Io {
            what,
            path: path.to_path_buf(),
            source,
        }
    }

    /// For `map_err`: the system call of step `what` failed.
    pub fn sys<E: Into<io::Error>>(what: impl Into<String>) -> impl FnOnce(E) -> HelperError {
        let what = what.into();
        move |e| HelperError::Sys {
            what,
            source: e.into(),
        }
    }

    /// For `map_err`: the failure happened in step `what`.
    pub fn inside(what: impl Into<String>) -> impl FnOnce(HelperError) -> HelperError {
        let what = what.into();
        move |e| HelperError::In {
            what,
            source: Box::new(e),
        }
    }

    /// The error and its causes on one line, as the parent and the user see it.
    pub fn text(&self) -> String {
        let mut text = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            text.push_str(": ");
            text.push_str(&c.to_string());
            cause = c.source();
        }
        text
    }
}

impl From<String> for HelperError {
    fn from(why: String) -> HelperError {
        HelperError::Refused(why)
    }
}

impl From<&str> for HelperError {
    fn from(why: &str) -> HelperError {
        HelperError::Refused(why.to_string())
    }
}

/// A helper's result.
pub type Result<T, E = HelperError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_text_names_each_step_and_its_cause_once() {
        let e = HelperError::io("create", Path::new("/w/sb"))(io::Error::from_raw_os_error(28));
        assert_eq!(
            e.text(),
            "create /w/sb: No space left on device (os error 28)"
        );
        let fs = FsError::new("write", "/w/merged/etc/x", io::Error::from_raw_os_error(30));
        let e = HelperError::inside("laying /etc/x into the sandbox")(fs.into());
        assert_eq!(
            e.text(),
            "laying /etc/x into the sandbox: cannot write /w/merged/etc/x: Read-only file \
             system (os error 30)"
        );
        let e = HelperError::sys("make /proc read-only")(rustix::io::Errno::PERM);
        assert_eq!(
            e.text(),
            "make /proc read-only: Operation not permitted (os error 1)"
        );
    }
}
