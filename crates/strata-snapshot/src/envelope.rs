//! The signed envelope every document travels in (DSSE, the in-toto "Dead Simple Signing
//! Envelope"): the payload's exact bytes, base64, and signatures over
//! `"DSSEv1" SP len(type) SP type SP len(payload) SP payload`. A signature covers the
//! bytes received, never a re-serialisation; the payload is parsed only once a trusted
//! signature over it verifies.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::{KeyId, KeyPair, SnapshotError};

/// A signed document as it is stored and sent.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Envelope {
    /// What the payload is (`application/vnd.strata.manifest+json`, ...).
    #[serde(rename = "payloadType")]
    pub payload_type: String,
    /// The payload, base64.
    pub payload: String,
    /// Signatures over the payload.
    pub signatures: Vec<EnvelopeSignature>,
}

/// One signature in an envelope.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// The signing key's id.
    pub keyid: KeyId,
    /// The ed25519 signature, base64.
    pub sig: String,
}

/// DSSE's pre-authentication encoding: what is really signed.
fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(payload.len() + payload_type.len() + 32);
    m.extend_from_slice(b"DSSEv1 ");
    m.extend_from_slice(payload_type.len().to_string().as_bytes());
    m.push(b' ');
    m.extend_from_slice(payload_type.as_bytes());
    m.push(b' ');
    m.extend_from_slice(payload.len().to_string().as_bytes());
    m.push(b' ');
    m.extend_from_slice(payload);
    m
}

/// Signs `payload` with each key, into the bytes of an envelope.
pub fn seal(payload_type: &str, payload: &[u8], keys: &[&KeyPair]) -> Vec<u8> {
    let message = pae(payload_type, payload);
    let envelope = Envelope {
        payload_type: payload_type.to_string(),
        payload: STANDARD.encode(payload),
        signatures: keys
            .iter()
            .map(|k| EnvelopeSignature {
                keyid: k.id(),
                sig: STANDARD.encode(k.sign(&message)),
            })
            .collect(),
    };
    let mut out = serde_json::to_vec_pretty(&envelope).expect("an envelope serializes");
    out.push(b'\n');
    out
}

/// An envelope read but not yet trusted: its payload's bytes and who signed it.
#[derive(Debug)]
pub struct Opened {
    envelope: Envelope,
    payload: Vec<u8>,
}

/// Reads an envelope's outer shape (at most `limit` bytes), not its payload.
pub fn open(
    bytes: &[u8],
    what: &str,
    payload_type: &str,
    limit: usize,
) -> Result<Opened, SnapshotError> {
    if bytes.len() > limit {
        return Err(SnapshotError::TooLarge {
            what: what.to_string(),
            size: bytes.len() as u64,
            limit: limit as u64,
        });
    }
    let envelope: Envelope =
        serde_json::from_slice(bytes).map_err(|e| SnapshotError::malformed(what, e))?;
    if envelope.payload_type != payload_type {
        return Err(SnapshotError::malformed(
            what,
            format!(
                "its type is {:?}, not {payload_type:?}",
                envelope.payload_type
            ),
        ));
    }
    let payload = STANDARD
        .decode(&envelope.payload)
        .map_err(|e| SnapshotError::malformed(what, format!("payload: {e}")))?;
    Ok(Opened { envelope, payload })
}

impl Opened {
    /// The key ids its signatures name.
    pub fn signers(&self) -> Vec<KeyId> {
        self.envelope
            .signatures
            .iter()
            .map(|s| s.keyid.clone())
            .collect()
    }

    /// Whether `key` signed the payload.
    pub fn signed_by(&self, key: &VerifyingKey) -> bool {
        let id = KeyId::of(key);
        let message = pae(&self.envelope.payload_type, &self.payload);
        self.envelope.signatures.iter().any(|s| {
            s.keyid == id
                && STANDARD
                    .decode(&s.sig)
                    .ok()
                    .and_then(|b| <[u8; 64]>::try_from(b).ok())
                    .is_some_and(|b| {
                        key.verify_strict(&message, &Signature::from_bytes(&b))
                            .is_ok()
                    })
        })
    }

    /// The payload's bytes, for the caller to parse once a trusted key signed them.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Role;

    #[test]
    fn a_signature_covers_the_payload_and_its_type() {
        let key = KeyPair::generate(Role::Signing).unwrap();
        let other = KeyPair::generate(Role::Signing).unwrap();
        let sealed = seal("t", b"{\"a\":1}", &[&key]);
        let opened = open(&sealed, "doc", "t", 1024).unwrap();
        assert!(opened.signed_by(&key.public()));
        assert!(!opened.signed_by(&other.public()));
        assert_eq!(opened.payload(), b"{\"a\":1}");

        // The payload changed, or the type: the signature no longer verifies.
        let mut env: Envelope = serde_json::from_slice(&sealed).unwrap();
        env.payload = STANDARD.encode(b"{\"a\":2}");
        let forged = serde_json::to_vec(&env).unwrap();
        assert!(
            !open(&forged, "doc", "t", 1024)
                .unwrap()
                .signed_by(&key.public())
        );
        let err = open(&sealed, "doc", "u", 1024).unwrap_err().to_string();
        assert!(err.contains("not \"u\""), "{err}");
        // A signature claimed by another key id does not count for this key.
        let mut env: Envelope = serde_json::from_slice(&sealed).unwrap();
        env.signatures[0].keyid = other.id();
        let relabelled = serde_json::to_vec(&env).unwrap();
        assert!(
            !open(&relabelled, "doc", "t", 1024)
                .unwrap()
                .signed_by(&other.public())
        );
        // Over the limit: refused before parsing.
        let err = open(&sealed, "doc", "t", 10).unwrap_err().to_string();
        assert!(err.contains("over the limit of 10"), "{err}");
    }
}
