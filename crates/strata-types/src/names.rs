//! Names that can only be built by parsing.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Why a name was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("invalid node name {name:?}: {why}")]
pub struct NameError {
    /// The refused name.
    pub name: String,
    /// What is wrong with it.
    pub why: &'static str,
}

/// A node's name, normally its FQDN: letters, digits, `-`, `_` and `.`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct NodeName(String);

impl NodeName {
    /// Parses a node name.
    pub fn parse(name: &str) -> Result<NodeName, NameError> {
        let bad = |why| NameError {
            name: name.to_string(),
            why,
        };
        if name.is_empty() || name.len() > 253 {
            return Err(bad("must have 1 to 253 characters"));
        }
        if name.starts_with('.') || name.starts_with('-') {
            return Err(bad("must start with a letter or digit"));
        }
        if !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return Err(bad("only letters, digits, '-', '_' and '.' are allowed"));
        }
        Ok(NodeName(name.to_string()))
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for NodeName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeName({})", self.0)
    }
}

impl From<NodeName> for String {
    fn from(n: NodeName) -> String {
        n.0
    }
}

impl TryFrom<String> for NodeName {
    type Error = NameError;
    fn try_from(s: String) -> Result<NodeName, NameError> {
        NodeName::parse(&s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_fqdns_and_refuses_paths() {
        assert!(NodeName::parse("web1.example.com").is_ok());
        assert!(NodeName::parse("../etc").is_err());
        assert!(NodeName::parse("a/b").is_err());
        assert!(NodeName::parse("").is_err());
    }
}
