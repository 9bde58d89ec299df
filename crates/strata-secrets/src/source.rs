//! The secret sources a compile reads `secret("NAME")` through: [`NodeSource`] on the
//! node (decrypting with its own key), [`CheckSource`] for `check` on the operator's
//! machine (which only checks that each node using a secret is one of its recipients).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use age::secrecy::ExposeSecret;

use age::x25519::Identity;
use strata_core::{SecretSource, SecretValue};

use crate::{SecretError, SecretFiles, load_identity, node_key_path};

/// The node's own secrets: the site's `secrets/`, opened with the node's age identity.
pub struct NodeSource {
    node: String,
    files: SecretFiles,
    key_path: PathBuf,
    /// The identity, or why there is none (read once, when first needed).
    identity: std::sync::OnceLock<Result<Identity, String>>,
    /// The version of each secret read so far (see [`NodeSource::versions`]).
    versions: Mutex<BTreeMap<String, String>>,
}

impl std::fmt::Debug for NodeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeSource")
            .field("node", &self.node)
            .field("key_path", &self.key_path)
            .finish_non_exhaustive()
    }
}

impl NodeSource {
    /// Secrets of the site at `site` for `node`, whose key is under `root`.
    pub fn new(site: &Path, root: &Path, node: &str) -> NodeSource {
        NodeSource {
            node: node.to_string(),
            files: SecretFiles::of(site),
            key_path: node_key_path(root),
            identity: std::sync::OnceLock::new(),
            versions: Mutex::new(BTreeMap::new()),
        }
    }

    /// Each secret read so far, by name, with its version: 16 hex digits of a hash of its
    /// value keyed by the node's own key (so that it tells a changed value from the same
    /// one, and says nothing of the value to anyone without that key).
    pub fn versions(&self) -> BTreeMap<String, String> {
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    fn identity(&self) -> Result<&Identity, String> {
        let loaded = self.identity.get_or_init(|| {
            if !strata_fs::exists(&self.key_path) {
                return Err(format!(
                    "node {} has no age key ({} is missing): run `strata keys node` on it",
                    self.node,
                    self.key_path.display()
                ));
            }
            load_identity(&self.key_path).map_err(|e| e.to_string())
        });
        loaded.as_ref().map_err(Clone::clone)
    }

    fn read(&self, name: &str) -> Result<SecretValue, SecretError> {
        crate::secret_name(name)?;
        let meta = self.files.meta(name)?;
        if !meta.recipients.contains_key(&self.node) {
            return Err(SecretError::NotRecipient {
                name: name.to_string(),
                node: self.node.clone(),
                file: SecretFiles::rel(name, "toml"),
            });
        }
        let identity = self.identity().map_err(|reason| SecretError::BadIdentity {
            path: self.key_path.clone(),
            reason,
        })?;
        let key = format!("node {}'s key ({})", self.node, self.key_path.display());
        let value = self.files.decrypt(name, identity, &key)?;
        self.versions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .insert(name.to_string(), version(identity, value.expose()));
        Ok(value)
    }
}

/// A secret value's version: its hash keyed by a key derived from the node's identity.
fn version(identity: &Identity, value: &str) -> String {
    let key = blake3::derive_key(
        "strata 2026-12 secret version",
        identity.to_string().expose_secret().as_bytes(),
    );
    blake3::keyed_hash(&key, value.as_bytes()).to_hex()[..16].to_string()
}

impl SecretSource for NodeSource {
    fn secret(&self, name: &str) -> Result<SecretValue, String> {
        self.read(name).map_err(|e| format!("secret `{name}`: {e}"))
    }
}

/// For `check`: a secret exists and lists the node among its recipients; its value is
/// a stand-in (`check` decrypts nothing).
#[derive(Debug)]
pub struct CheckSource {
    node: String,
    files: SecretFiles,
}

impl CheckSource {
    /// Checks the secrets of the site at `site` for `node`.
    pub fn new(site: &Path, node: &str) -> CheckSource {
        CheckSource {
            node: node.to_string(),
            files: SecretFiles::of(site),
        }
    }
}

impl SecretSource for CheckSource {
    fn secret(&self, name: &str) -> Result<SecretValue, String> {
        let check = || -> Result<SecretValue, SecretError> {
            crate::secret_name(name)?;
            let meta = self.files.meta(name)?;
            if !meta.recipients.contains_key(&self.node) {
                return Err(SecretError::NotRecipient {
                    name: name.to_string(),
                    node: self.node.clone(),
                    file: SecretFiles::rel(name, "toml"),
                });
            }
            if !strata_fs::exists(&self.files.dir.join(format!("{name}.age"))) {
                return Err(SecretError::Missing {
                    name: name.to_string(),
                    file: SecretFiles::rel(name, "age"),
                });
            }
            Ok(SecretValue::new(format!("(secret {name})")))
        };
        check().map_err(|e| format!("secret `{name}`: {e}"))
    }
}
