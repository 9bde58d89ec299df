//! Reading one TOML file of the site into a typed value, with errors that name the file,
//! line and column, and a "did you mean" for misspelt keys.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::de::{DeTable, DeValue};

use crate::error::{SiteError, line_col};

/// A parsed file: its text (for positions) and its typed content.
#[derive(Debug)]
pub(crate) struct TomlFile<T> {
    pub rel: String,
    pub text: String,
    pub value: T,
}

impl<T> TomlFile<T> {
    /// The 1-based line of a byte offset.
    pub fn line(&self, offset: usize) -> usize {
        line_col(&self.text, offset).0
    }

    /// An error at a byte offset of this file.
    pub fn error_at(&self, offset: usize, message: impl Into<String>) -> SiteError {
        let (l, c) = line_col(&self.text, offset);
        SiteError::in_file(&self.rel, message).at(l, c)
    }
}

/// Reads and parses `site/rel`.
pub(crate) fn load<T: DeserializeOwned>(site: &Path, rel: &str) -> Result<TomlFile<T>, SiteError> {
    let text = strata_fs::read_to_string(&site.join(rel))
        .map_err(|e| SiteError::in_file(rel, format!("cannot read: {}", e.source)).caused_by(e))?;
    parse(rel, text)
}

/// Parses `text` as the file `rel`.
pub(crate) fn parse<T: DeserializeOwned>(
    rel: &str,
    text: String,
) -> Result<TomlFile<T>, SiteError> {
    match toml::from_str::<T>(&text) {
        Ok(value) => Ok(TomlFile {
            rel: rel.to_string(),
            text,
            value,
        }),
        Err(e) => {
            let mut err = SiteError::in_file(rel, e.message().trim().to_string());
            if let Some(span) = e.span() {
                let (l, c) = line_col(&text, span.start);
                err = err.at(l, c);
            }
            if let Some(hint) = suggest(e.message()) {
                err = err.hint(hint);
            }
            Err(err)
        }
    }
}

/// For serde's "unknown field `x`, expected one of `a`, `b`", the nearest expected name.
fn suggest(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    let (typo, rest) = rest.split_once('`')?;
    let expected: Vec<&str> = rest.split('`').skip(1).step_by(2).collect();
    let best = expected
        .iter()
        .map(|cand| (strsim::jaro_winkler(typo, cand), *cand))
        .filter(|(score, _)| *score > 0.75)
        .max_by(|a, b| a.0.total_cmp(&b.0))?;
    Some(format!("did you mean `{}`?", best.1))
}

/// The 1-based line where each leaf of the table at `prefix` (e.g. `["params"]`, or `[]`
/// for the whole file) is written, keyed by its dotted path below that table.
pub(crate) fn leaf_lines(text: &str, prefix: &[&str]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    let Ok(doc) = DeTable::parse(text) else {
        return out;
    };
    let mut table = doc.get_ref();
    for key in prefix {
        match table.get(*key).map(|v| v.get_ref()) {
            Some(DeValue::Table(t)) => table = t,
            _ => return out,
        }
    }
    collect(text, table, "", &mut out);
    out
}

fn collect(text: &str, table: &DeTable<'_>, prefix: &str, out: &mut BTreeMap<String, usize>) {
    for (key, value) in table.iter() {
        let path = if prefix.is_empty() {
            key.get_ref().to_string()
        } else {
            format!("{prefix}.{}", key.get_ref())
        };
        match value.get_ref() {
            DeValue::Table(t) => collect(text, t, &path, out),
            _ => {
                out.insert(path, line_col(text, key.span().start).0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Node {
        modules: Vec<String>,
        roles: Option<Vec<String>>,
    }

    #[test]
    fn unknown_key_is_located_and_suggested() {
        let err =
            parse::<Node>("nodes/a.toml", "modules = []\nmodles = [\"x\"]\n".into()).unwrap_err();
        assert_eq!(err.file.as_deref(), Some("nodes/a.toml"));
        assert_eq!(err.line, Some(2));
        assert!(
            err.message.contains("unknown field `modles`"),
            "{}",
            err.message
        );
        assert_eq!(err.hint.as_deref(), Some("did you mean `modules`?"));
    }

    #[test]
    fn leaves_know_their_line() {
        let text = "a = 1\n[params]\nnginx.port = 8080\n[params.x]\ny = true\n";
        let lines = leaf_lines(text, &["params"]);
        assert_eq!(lines.get("nginx.port"), Some(&3));
        assert_eq!(lines.get("x.y"), Some(&5));
    }
}
