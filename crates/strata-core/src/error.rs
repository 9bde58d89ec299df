//! Errors in a site, located by file, line and column.

use std::fmt;
use std::sync::Arc;

use strata_fs::FsError;
use strata_types::NameError;

/// One problem in a site.
#[derive(Debug, Clone)]
pub struct SiteError {
    /// The file, relative to the site (or absolute when outside it).
    pub file: Option<String>,
    /// 1-based line.
    pub line: Option<usize>,
    /// 1-based column.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
    /// What to do about it.
    pub hint: Option<String>,
    /// The file-system operation that failed, when one did: what was being done, to which
    /// path on this machine, and the system's error. The message says it in words already;
    /// this keeps it whole for whoever shows it otherwise (it is not the error's
    /// `source()`, which a printer of the cause chain would show a second time).
    pub fs: Option<Arc<FsError>>,
}

/// Two errors are the same when they say the same; a file-system cause compares by its
/// operation, path and kind of system error (`io::Error` has no equality).
impl PartialEq for SiteError {
    fn eq(&self, other: &SiteError) -> bool {
        let fs = |e: &SiteError| {
            e.fs.as_ref()
                .map(|f| (f.op, f.path.clone(), f.source.kind()))
        };
        self.file == other.file
            && self.line == other.line
            && self.column == other.column
            && self.message == other.message
            && self.hint == other.hint
            && fs(self) == fs(other)
    }
}

impl Eq for SiteError {}

impl SiteError {
    /// An error not tied to a place in a file.
    pub fn new(message: impl Into<String>) -> SiteError {
        SiteError {
            file: None,
            line: None,
            column: None,
            message: message.into(),
            hint: None,
            fs: None,
        }
    }

    /// An error in a file.
    pub fn in_file(file: impl Into<String>, message: impl Into<String>) -> SiteError {
        SiteError {
            file: Some(file.into()),
            ..SiteError::new(message)
        }
    }

    /// Adds a position.
    pub fn at(mut self, line: usize, column: usize) -> SiteError {
        self.line = Some(line);
        self.column = Some(column);
        self
    }

    /// Adds a hint.
    pub fn hint(mut self, hint: impl Into<String>) -> SiteError {
        self.hint = Some(hint.into());
        self
    }

    /// Keeps the file-system failure the error comes from (see [`SiteError::fs`]).
    pub fn caused_by(mut self, e: FsError) -> SiteError {
        self.fs = Some(Arc::new(e));
        self
    }
}

impl fmt::Display for SiteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = &self.file {
            write!(f, "{file}")?;
            if let Some(line) = self.line {
                write!(f, ":{line}")?;
                if let Some(col) = self.column {
                    write!(f, ":{col}")?;
                }
            }
            write!(f, ": ")?;
        }
        write!(f, "{}", self.message)
    }
}

impl std::error::Error for SiteError {}

/// "cannot read /site/x: No such file or directory (os error 2)", the failure kept whole.
impl From<FsError> for SiteError {
    fn from(e: FsError) -> SiteError {
        SiteError::new(format!("{e}: {}", e.source)).caused_by(e)
    }
}

/// A node's name refused: "invalid node name \"../x\": must start with a letter or digit".
impl From<NameError> for SiteError {
    fn from(e: NameError) -> SiteError {
        SiteError::new(e.to_string())
    }
}

/// Every problem found in a site (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SiteErrors(pub Vec<SiteError>);

impl fmt::Display for SiteErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for SiteErrors {}

impl From<SiteError> for SiteErrors {
    fn from(e: SiteError) -> SiteErrors {
        SiteErrors(vec![e])
    }
}

impl From<NameError> for SiteErrors {
    fn from(e: NameError) -> SiteErrors {
        SiteErrors(vec![e.into()])
    }
}

impl From<FsError> for SiteErrors {
    fn from(e: FsError) -> SiteErrors {
        SiteErrors(vec![e.into()])
    }
}

/// 1-based line and column of a byte offset.
pub(crate) fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before
        .rfind('\n')
        .map_or(before.len(), |i| before.len() - i - 1)
        + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::path::Path;

    use super::*;

    #[test]
    fn a_file_system_failure_keeps_its_operation_and_path() {
        let e = SiteError::from(FsError::new(
            "list",
            "/site/modules",
            io::Error::from(io::ErrorKind::PermissionDenied),
        ));
        assert_eq!(e.message, "cannot list /site/modules: permission denied");
        let fs = e.fs.as_deref().expect("the cause is kept");
        assert_eq!(fs.op, "list");
        assert_eq!(fs.path, Path::new("/site/modules"));
        assert_eq!(e.clone(), e);
    }

    #[test]
    fn a_site_file_that_cannot_be_read_names_it_and_keeps_the_host_path() {
        let dir = tempfile::tempdir().unwrap();
        let e = crate::tomlfile::load::<toml::Table>(dir.path(), "nodes/n1.toml").unwrap_err();
        assert!(
            e.to_string().starts_with("nodes/n1.toml: cannot read: "),
            "{e}"
        );
        let fs = e.fs.as_deref().expect("the cause is kept");
        assert_eq!(fs.op, "read");
        assert_eq!(fs.path, dir.path().join("nodes/n1.toml"));
        assert!(fs.is_not_found());
    }
}
