//! Errors in a site, located by file, line and column.

use std::fmt;

/// One problem in a site.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl SiteError {
    /// An error not tied to a place in a file.
    pub fn new(message: impl Into<String>) -> SiteError {
        SiteError {
            file: None,
            line: None,
            column: None,
            message: message.into(),
            hint: None,
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

impl From<strata_fs::FsError> for SiteError {
    fn from(e: strata_fs::FsError) -> SiteError {
        SiteError::new(format!("{e}: {}", e.source))
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

impl From<strata_fs::FsError> for SiteErrors {
    fn from(e: strata_fs::FsError) -> SiteErrors {
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
