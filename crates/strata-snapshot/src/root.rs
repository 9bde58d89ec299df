//! The root of trust: which keys may sign what for a site, versioned. `root/1.json` is
//! signed by its own root key; each `root/N+1.json` by the root keys of N and of N+1, so
//! a node that trusts N walks N+1, N+2… to follow a rotation (TUF's root chain).

use std::path::Path;

use ed25519_dalek::VerifyingKey;
use serde::{Deserialize, Serialize};

use crate::envelope::{self, seal};
use crate::keys::{hex, public_from_hex};
use crate::{KeyId, KeyPair, MAX_METADATA, Role, SnapshotError, UnixTime};

/// The payload type of a root document.
pub const ROOT_TYPE: &str = "application/vnd.strata.root+json";

/// One certified key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootKey {
    /// Its id (blake3 of the public key).
    pub id: KeyId,
    /// The ed25519 public key, hex.
    pub public: String,
    /// What it may sign.
    pub role: Role,
}

/// A root document's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Root {
    /// Always `"root"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The site it is the root of.
    pub site: String,
    /// 1, then one more per rotation.
    pub version: u64,
    /// When it was made.
    pub created: UnixTime,
    /// The certified keys.
    pub keys: Vec<RootKey>,
}

impl Root {
    /// A first root for `site`, certifying `keys`.
    pub fn new(site: &str, created: UnixTime, keys: &[&KeyPair]) -> Root {
        Root {
            kind: "root".into(),
            site: site.to_string(),
            version: 1,
            created,
            keys: keys
                .iter()
                .map(|k| RootKey {
                    id: k.id(),
                    public: hex(k.public().as_bytes()),
                    role: k.role,
                })
                .collect(),
        }
    }

    /// The public keys certified for `role`.
    pub fn keys_for(&self, role: Role) -> Vec<VerifyingKey> {
        self.keys
            .iter()
            .filter(|k| k.role == role)
            .filter_map(|k| public_from_hex(&k.public))
            .collect()
    }

    /// The root's fingerprint: the id of its (first) root key, what a node pins.
    pub fn fingerprint(&self) -> String {
        self.keys
            .iter()
            .find(|k| k.role == Role::Root)
            .map_or_else(|| "(no root key)".to_string(), |k| k.id.0.clone())
    }

    /// Signs this root with `signers` (its own root key, and for a rotation the previous
    /// root's), into the bytes of `root/N.json`.
    pub fn seal(&self, signers: &[&KeyPair]) -> Vec<u8> {
        let payload = serde_json::to_vec(self).expect("a root serializes");
        seal(ROOT_TYPE, &payload, signers)
    }

    fn parse(payload: &[u8], what: &str) -> Result<Root, SnapshotError> {
        let root: Root =
            serde_json::from_slice(payload).map_err(|e| SnapshotError::malformed(what, e))?;
        if root.kind != "root" {
            return Err(SnapshotError::malformed(what, "its type is not \"root\""));
        }
        for k in &root.keys {
            let public = public_from_hex(&k.public).ok_or_else(|| {
                SnapshotError::malformed(what, format!("key {} is not ed25519", k.id))
            })?;
            if KeyId::of(&public) != k.id {
                return Err(SnapshotError::malformed(
                    what,
                    format!("key {} has another id", k.id),
                ));
            }
        }
        if root.keys_for(Role::Root).is_empty() {
            return Err(SnapshotError::malformed(what, "it certifies no root key"));
        }
        Ok(root)
    }
}

/// Whether an opened envelope carries a signature of one of `keys`.
fn signed_by_any(opened: &envelope::Opened, keys: &[VerifyingKey]) -> bool {
    keys.iter().any(|k| opened.signed_by(k))
}

/// A site's chain of root documents, `root/1.json` … `root/N.json`, as bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RootSet(pub Vec<Vec<u8>>);

impl RootSet {
    /// Reads `DIR/root/1.json`, `2.json`… up to the first missing one.
    pub fn load(keys_dir: &Path) -> Result<RootSet, SnapshotError> {
        let mut out = Vec::new();
        loop {
            let path = keys_dir.join(format!("root/{}.json", out.len() + 1));
            if !strata_fs::exists(&path) {
                break;
            }
            out.push(strata_fs::read_sized_file(&path, MAX_METADATA)?);
        }
        Ok(RootSet(out))
    }

    /// Verifies the chain from what the node already trusts (`pinned`, the bytes of its
    /// trusted root) or, with nothing pinned, from `root/1.json` signed by itself; returns
    /// the newest trusted root and its bytes.
    pub fn verify(&self, pinned: Option<&[u8]>) -> Result<(Root, Vec<u8>), SnapshotError> {
        let pinned = match pinned {
            Some(bytes) => {
                let opened = envelope::open(bytes, "the pinned root", ROOT_TYPE, MAX_METADATA)?;
                Some(Root::parse(opened.payload(), "the pinned root")?)
            }
            None => None,
        };
        let mut trusted: Option<(Root, Vec<u8>)> = None;
        for (i, bytes) in self.0.iter().enumerate() {
            let what = format!("root/{}.json", i + 1);
            let opened = envelope::open(bytes, &what, ROOT_TYPE, MAX_METADATA)?;
            // Parsed to read its keys; trusted only once the signatures below verify.
            let candidate = Root::parse(opened.payload(), &what)?;
            if candidate.version != i as u64 + 1 {
                return Err(SnapshotError::malformed(
                    &what,
                    format!("it says version {}", candidate.version),
                ));
            }
            let own = candidate.keys_for(Role::Root);
            match (&trusted, &pinned) {
                // Versions up to the pinned one: the node trusts exactly that one.
                (_, Some(p)) if candidate.version < p.version => continue,
                (_, Some(p)) if candidate.version == p.version => {
                    if candidate != *p {
                        return Err(SnapshotError::OtherRoot {
                            pinned: p.fingerprint(),
                            offered: candidate.fingerprint(),
                        });
                    }
                }
                (None, Some(_)) => unreachable!("the pinned version comes first"),
                (None, None) => {
                    if !signed_by_any(&opened, &own) {
                        return Err(unsigned(&what, &opened));
                    }
                }
                (Some((t, _)), _) => {
                    if candidate.site != t.site {
                        return Err(SnapshotError::OtherSite {
                            got: candidate.site,
                            want: t.site.clone(),
                        });
                    }
                    let old = t.keys_for(Role::Root);
                    if !signed_by_any(&opened, &old) || !signed_by_any(&opened, &own) {
                        return Err(unsigned(&what, &opened));
                    }
                }
            }
            trusted = Some((candidate, bytes.clone()));
        }
        match (trusted, pinned) {
            (Some(t), _) => Ok(t),
            // The chain never reached the pinned version: it says nothing of this node's root.
            (None, Some(p)) => Err(SnapshotError::OtherRoot {
                pinned: p.fingerprint(),
                offered: "(a shorter root chain)".into(),
            }),
            (None, None) => Err(SnapshotError::malformed("the root chain", "it is empty")),
        }
    }
}

impl RootSet {
    /// The pinned root itself, parsed (it was verified when it was pinned).
    pub(crate) fn verify_pinned(&self, pinned: &[u8]) -> Result<(Root, Vec<u8>), SnapshotError> {
        let opened = envelope::open(pinned, "the pinned root", ROOT_TYPE, MAX_METADATA)?;
        Ok((
            Root::parse(opened.payload(), "the pinned root")?,
            pinned.to_vec(),
        ))
    }
}

fn unsigned(what: &str, opened: &envelope::Opened) -> SnapshotError {
    SnapshotError::Unsigned {
        what: what.to_string(),
        role: "root",
        keys: opened.signers().into_iter().map(|k| k.0).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> (KeyPair, KeyPair) {
        (
            KeyPair::generate(Role::Root).unwrap(),
            KeyPair::generate(Role::Signing).unwrap(),
        )
    }

    #[test]
    fn a_first_root_is_trusted_when_self_signed_and_a_rotation_needs_both_roots() {
        let (root1, signing) = keys();
        let r1 = Root::new("acme", 1, &[&root1, &signing]);
        let set = RootSet(vec![r1.seal(&[&root1])]);
        let (trusted, bytes) = set.verify(None).unwrap();
        assert_eq!(trusted.version, 1);

        // Rotation to a new root key, signed by the old and the new.
        let root2 = KeyPair::generate(Role::Root).unwrap();
        let mut r2 = Root::new("acme", 2, &[&root2, &signing]);
        r2.version = 2;
        let good = RootSet(vec![set.0[0].clone(), r2.seal(&[&root1, &root2])]);
        assert_eq!(good.verify(Some(&bytes)).unwrap().0.version, 2);
        // Signed by the new key only: an attacker's rotation.
        let forged = RootSet(vec![set.0[0].clone(), r2.seal(&[&root2])]);
        let err = forged.verify(Some(&bytes)).unwrap_err().to_string();
        assert!(err.contains("not signed by a trusted root key"), "{err}");

        // A node that trusts another site's root refuses this chain.
        let (other, _) = keys();
        let o1 = Root::new("acme", 1, &[&other]).seal(&[&other]);
        let err = set.verify(Some(&o1)).unwrap_err().to_string();
        assert!(err.contains("trusts another root"), "{err}");
        // A first root signed by a key it does not certify is refused.
        let err = RootSet(vec![r1.seal(&[&signing])])
            .verify(None)
            .unwrap_err()
            .to_string();
        assert!(err.contains("not signed by a trusted root key"), "{err}");
    }
}
