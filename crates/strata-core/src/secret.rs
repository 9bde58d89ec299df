//! What templates and scripts read secrets through. The compile never decrypts anything
//! itself: its caller hands it a [`SecretSource`] (the engine one that decrypts with the
//! node's own key, `check` one that only checks that the node is a recipient), so this
//! crate reads no key and no environment. A [`SecretValue`] never prints.

use std::fmt;

use strata_types::NodeName;

use crate::error::SiteError;
use crate::site::{NodeInfo, Site};
use crate::versions::Ref;

/// Where a compile finds the values of `secret("NAME")` and of a module's `secrets`.
pub trait SecretSource: Send + Sync + fmt::Debug {
    /// The value of secret `name` for the node being compiled. The error says which
    /// secret and why (not a recipient, missing, corrupt, wrong key), never a value.
    fn secret(&self, name: &str) -> Result<SecretValue, String>;
}

/// A secret's plaintext: its `Debug` and `Display` show no byte of it.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretValue(String);

impl SecretValue {
    /// Wraps a plaintext.
    pub fn new(value: String) -> SecretValue {
        SecretValue(value)
    }

    /// The plaintext, for the one place it goes (a rendered file, a script's variable).
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretValue(..)")
    }
}

/// Whether `name` can name a secret: letters, digits and `_`, starting with a letter, at
/// most 64 characters (it becomes `secrets/NAME.age` and `STRATA_SECRET_<NAME>`).
pub fn valid_secret_name(name: &str) -> bool {
    name.len() <= 64
        && name.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// The variable a script reads secret `name` from: `STRATA_SECRET_` and the name in
/// capitals.
pub fn secret_variable(name: &str) -> String {
    format!("STRATA_SECRET_{}", name.to_ascii_uppercase())
}

impl Site {
    /// Where `node` stands in the site without compiling it: its environment, groups and
    /// roles (names without versions; a role only hardware assigns is not known here).
    pub fn membership(&self, node: &NodeName) -> Result<NodeInfo, SiteError> {
        let file = self.node(node)?;
        let environment = file
            .as_ref()
            .and_then(|f| f.value.environment.as_ref().map(|e| e.get_ref().clone()))
            .unwrap_or_else(|| self.default_environment.clone());
        let groups = self.groups_of(node);
        let mut roles: Vec<String> = Vec::new();
        let own = file.iter().flat_map(|f| f.value.roles.iter());
        let from_groups = groups
            .iter()
            .filter_map(|g| self.groups.get(g))
            .flat_map(|g| g.value.roles.iter());
        for r in own.chain(from_groups) {
            if let Ok(r) = Ref::parse(r.get_ref())
                && !roles.contains(&r.name)
            {
                roles.push(r.name);
            }
        }
        Ok(NodeInfo {
            name: node.to_string(),
            environment,
            roles,
            groups,
        })
    }
}
