//! Age keys: the node's own identity under `<root>/var/lib/strata/keys/age.key` (made
//! once, 0600, durably), identity files (a node's, an admin's), public keys and their
//! fingerprints.

use std::path::{Path, PathBuf};
use std::str::FromStr;

use age::secrecy::ExposeSecret;
use age::x25519::{Identity, Recipient};

use crate::SecretError;

/// The most an identity file may hold.
const IDENTITY_LIMIT: u64 = 64 << 10;

/// Where a node keeps its age identity, below its root.
pub fn node_key_path(root: &Path) -> PathBuf {
    root.join("var/lib/strata/keys/age.key")
}

/// A node's age key pair.
#[derive(Debug)]
pub struct NodeKey {
    /// Its public key (`age1…`).
    pub public: String,
    /// Whether this call made it.
    pub created: bool,
}

impl NodeKey {
    /// The node's key under `root`, made when it has none yet (a second strata making
    /// one at the same moment loses, and both report the one that stands).
    pub fn ensure(root: &Path) -> Result<NodeKey, SecretError> {
        let path = node_key_path(root);
        if !strata_fs::exists(&path) {
            let identity = Identity::generate();
            let public = identity.to_public().to_string();
            let text = format!(
                "# strata: this node's age identity (strata keys node)\n# public key: {public}\n{}\n",
                identity.to_string().expose_secret()
            );
            // `<root>/var/lib` as any system has it; strata's own directories are 0700.
            strata_fs::create_dir_all(&root.join("var/lib"))?;
            if strata_fs::create_durable(&path, text.as_bytes())? {
                return Ok(NodeKey {
                    public,
                    created: true,
                });
            }
        }
        let public = load_identity(&path)?.to_public().to_string();
        Ok(NodeKey {
            public,
            created: false,
        })
    }
}

/// Reads an age identity file (`AGE-SECRET-KEY-1…`; `#` comments and blank lines are
/// skipped); the error names the file, never its content.
pub fn load_identity(path: &Path) -> Result<Identity, SecretError> {
    let bad = |reason: &str| SecretError::BadIdentity {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    };
    let (bytes, _) = strata_fs::read_with_mode(path, IDENTITY_LIMIT)?;
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("not an age identity file"))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| bad("holds no age identity"))?;
    if !line.starts_with("AGE-SECRET-KEY-1") {
        return Err(bad(
            "holds no age X25519 identity (AGE-SECRET-KEY-1…); only those are supported",
        ));
    }
    Identity::from_str(line).map_err(|_| bad("holds a malformed age identity"))
}

/// Parses an age public key; `owner` says whose it is, for the error.
pub fn parse_recipient(owner: &str, key: &str) -> Result<Recipient, SecretError> {
    Recipient::from_str(key.trim()).map_err(|_| SecretError::BadRecipient {
        owner: owner.to_string(),
        key: key.to_string(),
    })
}

/// A public key's short fingerprint: the first 16 hex digits of its blake3.
pub fn fingerprint(public: &str) -> String {
    blake3::hash(public.trim().as_bytes()).to_hex()[..16].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[allow(clippy::disallowed_methods)] // the test reads the key file's mode
    fn a_node_key_is_made_once_private_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let first = NodeKey::ensure(dir.path()).unwrap();
        assert!(first.created);
        assert!(first.public.starts_with("age1"), "{}", first.public);
        let again = NodeKey::ensure(dir.path()).unwrap();
        assert!(!again.created);
        assert_eq!(again.public, first.public);
        let path = node_key_path(dir.path());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(
            load_identity(&path).unwrap().to_public().to_string(),
            first.public
        );
    }

    #[test]
    #[allow(clippy::disallowed_methods)] // the test's own files
    fn a_bad_identity_file_is_named_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        std::fs::write(&path, "# c\nAGE-SECRET-KEY-1NOTAKEYATALLXYZ\n").unwrap();
        let e = load_identity(&path).err().expect("refused").to_string();
        assert!(e.contains("malformed"), "{e}");
        assert!(!e.contains("NOTAKEY"), "{e}");
    }
}
