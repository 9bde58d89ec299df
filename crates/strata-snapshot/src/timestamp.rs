//! The timestamp: which manifest is an environment's current one (its version and the
//! blake3 of its envelope), short-lived and re-signed often, so that a reader polling
//! storage learns of a new release from one small object and notices a frozen one.

use serde::{Deserialize, Serialize};
use strata_types::Hash;

use crate::envelope::seal;
use crate::{KeyPair, SnapshotError, UnixTime};

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
