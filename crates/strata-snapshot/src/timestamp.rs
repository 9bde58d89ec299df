//! The timestamp: which manifest is an environment's current one (its version and the
//! blake3 of its envelope), short-lived and re-signed often, so that a reader polling
//! storage learns of a new release from one small object and notices a frozen one.

use serde::{Deserialize, Serialize};
use strata_types::Hash;

use crate::envelope::{self, seal};
use crate::{KeyPair, MAX_METADATA, Role, Root, SnapshotError, UnixTime};

/// The payload type of a timestamp.
pub const TIMESTAMP_TYPE: &str = "application/vnd.strata.timestamp+json";

/// A timestamp's payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Timestamp {
    /// Always `"timestamp"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The site.
    pub site: String,
    /// The environment.
    pub environment: String,
    /// The current manifest's version.
    pub version: u64,
    /// The blake3 of the current manifest's envelope, as stored.
    pub manifest: Hash,
    /// When it was signed.
    pub created: UnixTime,
    /// When it stops being trusted.
    pub expires: UnixTime,
}

impl Timestamp {
    /// Signs it into the bytes stored.
    pub fn seal(&self, key: &KeyPair) -> Vec<u8> {
        seal(
            TIMESTAMP_TYPE,
            &serde_json::to_vec(self).expect("a timestamp serializes"),
            &[key],
        )
    }

    /// Checks a timestamp's signature (a signing or online key of `root`) and site, not
    /// its times: what a publisher reads of its own bucket to pick the next version.
    pub fn open_signed(root: &Root, bytes: &[u8]) -> Result<Timestamp, SnapshotError> {
        let what = "the timestamp";
        let opened = envelope::open(bytes, what, TIMESTAMP_TYPE, MAX_METADATA)?;
        let mut keys = root.keys_for(Role::Signing);
        keys.extend(root.keys_for(Role::Online));
        if !keys.iter().any(|k| opened.signed_by(k)) {
            return Err(SnapshotError::Unsigned {
                what: what.into(),
                role: "signing or online",
                keys: opened.signers().into_iter().map(|k| k.0).collect(),
            });
        }
        let t = Timestamp::parse(opened.payload())?;
        if t.site != root.site {
            return Err(SnapshotError::OtherSite {
                got: t.site,
                want: root.site.clone(),
            });
        }
        Ok(t)
    }

    pub(crate) fn parse(payload: &[u8]) -> Result<Timestamp, SnapshotError> {
        let t: Timestamp = serde_json::from_slice(payload)
            .map_err(|e| SnapshotError::malformed("the timestamp", e))?;
        if t.kind != "timestamp" {
            return Err(SnapshotError::malformed(
                "the timestamp",
                "its type is not \"timestamp\"",
            ));
        }
        Ok(t)
    }
}
