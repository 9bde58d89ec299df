//! Sealed store objects: the contents of files rendered from a secret, kept in the store
//! encrypted (age, X25519) to the node's own key under `<root>/var/lib/strata/keys/`, so
//! that rollback and recovery work offline while no plaintext copy lies on the disk but
//! the target file itself. Encryption and decryption happen in memory only.

use std::io::{Read, Write};
use std::str::FromStr;

use age::x25519::Identity;
use strata_fs::Root;
use strata_types::TargetPath;

use crate::StateError;
use crate::state::state_path;

/// The node's identity (its `Debug` shows nothing of it).
pub(crate) struct NodeIdentity(pub(crate) Identity);

impl std::fmt::Debug for NodeIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NodeIdentity(..)")
    }
}

/// The most a key file may hold.
const KEY_LIMIT: usize = 64 << 10;

/// Where the node keeps its age identity (what `strata keys node` makes).
pub(crate) fn key_path() -> TargetPath {
    state_path("keys/age.key")
}

/// The node's identity, read from its key file; the error names the file, never its
/// content.
pub(crate) fn load(root: &Root) -> Result<NodeIdentity, StateError> {
    let path = key_path();
    let bad = |reason: &str| StateError::NodeKey {
        path: root.host_path(&path).display().to_string(),
        reason: reason.to_string(),
    };
    let bytes = root.read(&path)?.ok_or_else(|| bad("is missing"))?;
    if bytes.len() > KEY_LIMIT {
        return Err(bad("is not an age identity file"));
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| bad("is not an age identity file"))?;
    let line = (text.lines().map(str::trim))
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .ok_or_else(|| bad("holds no age identity"))?;
    if !line.starts_with("AGE-SECRET-KEY-1") {
        return Err(bad("holds no age X25519 identity"));
    }
    (Identity::from_str(line).map(NodeIdentity)).map_err(|_| bad("holds a malformed age identity"))
}

/// `plain` encrypted to `identity`'s public key.
pub(crate) fn seal(identity: &Identity, plain: &[u8]) -> Result<Vec<u8>, String> {
    let recipient = identity.to_public();
    let encryptor =
        age::Encryptor::with_recipients(std::iter::once(&recipient as &dyn age::Recipient))
            .map_err(|e| e.to_string())?;
    let mut out = Vec::with_capacity(plain.len() + 256);
    let mut writer = encryptor.wrap_output(&mut out).map_err(|e| e.to_string())?;
    writer
        .write_all(plain)
        .and_then(|()| writer.finish().map(|_| ()))
        .map_err(|e| e.to_string())?;
    Ok(out)
}

/// A sealed object opened with `identity`.
pub(crate) fn open(identity: &Identity, sealed: &[u8]) -> Result<Vec<u8>, String> {
    let decryptor = age::Decryptor::new(sealed).map_err(|e| e.to_string())?;
    let mut reader = decryptor
        .decrypt(std::iter::once(identity as &dyn age::Identity))
        .map_err(|e| match e {
            age::DecryptError::NoMatchingKeys => {
                "it was sealed to another key: the node's key changed since".to_string()
            }
            e => e.to_string(),
        })?;
    let mut plain = Vec::with_capacity(sealed.len());
    reader.read_to_end(&mut plain).map_err(|e| e.to_string())?;
    Ok(plain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_object_opens_with_its_key_only_and_holds_no_plaintext() {
        let (a, b) = (Identity::generate(), Identity::generate());
        let plain = b"password = CANARY-in-the-store";
        let sealed = seal(&a, plain).unwrap();
        assert!(!sealed.windows(6).any(|w| w == b"CANARY"));
        assert_eq!(open(&a, &sealed).unwrap(), plain);
        let err = open(&b, &sealed).unwrap_err();
        assert!(err.contains("another key"), "{err}");
        let mut bad = sealed;
        let n = bad.len();
        bad[n - 3] ^= 1;
        assert!(open(&a, &bad).is_err());
    }

    #[test]
    fn a_missing_or_bad_key_file_is_named_without_its_content() {
        let dir = tempfile::tempdir().unwrap();
        let root = Root::open(dir.path()).unwrap();
        let err = load(&root).unwrap_err().to_string();
        assert!(err.contains("keys/age.key is missing"), "{err}");
        root.create_private_dirs(&state_path("keys"), &state_path(""))
            .unwrap();
        root.write_file_in(
            &state_path("keys"),
            "age.key",
            b"# x\nAGE-SECRET-KEY-1NOTAKEYXYZ\n",
            strata_types::Meta::root(0o600),
        )
        .unwrap();
        let err = load(&root).unwrap_err().to_string();
        assert!(err.contains("malformed"), "{err}");
        assert!(!err.contains("NOTAKEY"), "{err}");
    }
}
