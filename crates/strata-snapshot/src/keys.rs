//! ed25519 key pairs and their files: the root key certifies the others, a signing key
//! signs manifests, an online key (held by `serve`) signs assignments.

use std::fmt;
use std::path::Path;

use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::SnapshotError;

/// What a key may sign (FLEET.md, "Keys and their roles").
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Certifies the other keys (`root/N.json`).
    Root,
    /// Signs manifests (`push`, `publish`).
    Signing,
    /// Signs assignments and timestamps (`serve`).
    Online,
    /// A node's own key (made by `enroll`): signs its requests to `serve`; never
    /// certified by a root.
    Node,
}

impl Role {
    /// The role's name, as in files and messages.
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Signing => "signing",
            Role::Online => "online",
            Role::Node => "node",
        }
    }
}

/// A key's id: the blake3 of its 32 public bytes, in hex (also its fingerprint).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(pub String);

impl KeyId {
    /// The id of a public key.
    pub fn of(public: &VerifyingKey) -> KeyId {
        KeyId(blake3::hash(public.as_bytes()).to_hex().to_string())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A private key and its role.
#[derive(Clone)]
pub struct KeyPair {
    /// What it signs.
    pub role: Role,
    key: SigningKey,
}

impl fmt::Debug for KeyPair {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the secret.
        write!(f, "KeyPair({} {})", self.role.name(), self.id())
    }
}

/// A key file: JSON, 0600, the secret as hex.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyFile {
    #[serde(rename = "type")]
    kind: String,
    role: Role,
    public: String,
    secret: String,
}

const KEY_FILE_TYPE: &str = "strata-ed25519-key";

impl KeyPair {
    /// A new key from the system's random source.
    pub fn generate(role: Role) -> Result<KeyPair, SnapshotError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| SnapshotError::Key {
            path: "(new key)".into(),
            why: format!("no randomness: {e}"),
        })?;
        Ok(KeyPair {
            role,
            key: SigningKey::from_bytes(&seed),
        })
    }

    /// The public half.
    pub fn public(&self) -> VerifyingKey {
        self.key.verifying_key()
    }

    /// Its id.
    pub fn id(&self) -> KeyId {
        KeyId::of(&self.public())
    }

    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.key.sign(message).to_bytes()
    }

    /// Writes the key to a new private file (0600); an existing file is never replaced.
    pub fn save(&self, path: &Path) -> Result<(), SnapshotError> {
        let file = KeyFile {
            kind: KEY_FILE_TYPE.into(),
            role: self.role,
            public: hex(self.public().as_bytes()),
            secret: hex(self.key.as_bytes()),
        };
        let mut text = serde_json::to_string_pretty(&file).expect("a key serializes");
        text.push('\n');
        if let Some(dir) = path.parent() {
            strata_fs::private_dir(dir)?;
        }
        let mut f = strata_fs::create_private(path)?;
        std::io::Write::write_all(&mut f, text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| strata_fs::FsError::new("write", path, e))?;
        Ok(())
    }

    /// Reads a key file; it must be the role asked for and readable by its owner only.
    pub fn load(path: &Path, role: Role) -> Result<KeyPair, SnapshotError> {
        let bad = |why: String| SnapshotError::Key {
            path: path.display().to_string(),
            why,
        };
        let (text, mode) = strata_fs::read_with_mode(path, crate::MAX_METADATA as u64)?;
        if mode & 0o077 != 0 {
            return Err(bad(format!(
                "is readable by others (mode {mode:04o}); run chmod 600 on it"
            )));
        }
        let file: KeyFile = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
        if file.kind != KEY_FILE_TYPE {
            return Err(bad(format!("is not a strata key (type {:?})", file.kind)));
        }
        if file.role != role {
            return Err(bad(format!(
                "is a {} key, not a {} key",
                file.role.name(),
                role.name()
            )));
        }
        let secret: [u8; 32] = unhex(&file.secret)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| bad("its secret is not 64 hex digits".into()))?;
        let key = SigningKey::from_bytes(&secret);
        if hex(key.verifying_key().as_bytes()) != file.public {
            return Err(bad("its public key does not match its secret".into()));
        }
        Ok(KeyPair { role, key })
    }
}

/// The role written in a strata key file, if `path` is one this process can read: what
/// `serve` checks to refuse running beside a root or signing key.
pub fn readable_key_role(path: &Path) -> Option<Role> {
    let (text, _) = strata_fs::read_with_mode(path, crate::MAX_METADATA as u64).ok()?;
    let file: KeyFile = serde_json::from_slice(&text).ok()?;
    (file.kind == KEY_FILE_TYPE).then_some(file.role)
}

/// Lower-case hex.
pub(crate) fn hex(bytes: &[u8]) -> String {
    strata_types::hex(bytes)
}

/// Parses lower- or upper-case hex.
pub(crate) fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

/// Parses a public key from hex.
pub fn public_from_hex(s: &str) -> Option<VerifyingKey> {
    let bytes: [u8; 32] = unhex(s)?.try_into().ok()?;
    VerifyingKey::from_bytes(&bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_key_loads_back_and_a_readable_one_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/signing.key");
        let key = KeyPair::generate(Role::Signing).unwrap();
        key.save(&path).unwrap();
        let back = KeyPair::load(&path, Role::Signing).unwrap();
        assert_eq!(back.id(), key.id());
        assert!(format!("{back:?}").len() < 120, "no secret in Debug");
        let err = KeyPair::load(&path, Role::Root).unwrap_err().to_string();
        assert!(err.contains("is a signing key, not a root key"), "{err}");
        assert!(
            key.save(&path).is_err(),
            "an existing key is never replaced"
        );
        strata_fs::set_mode(&path, 0o644).unwrap();
        let err = KeyPair::load(&path, Role::Signing).unwrap_err().to_string();
        assert!(err.contains("readable by others"), "{err}");
    }
}
