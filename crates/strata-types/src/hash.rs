//! Content hashes: blake3, shown as lowercase hex.

use std::fmt;

use serde::{Deserialize, Serialize};

/// The blake3 hash of a file's content, as 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct Hash([u8; 32]);

impl Hash {
    /// Hashes `bytes`.
    pub fn of(bytes: &[u8]) -> Hash {
        Hash(*blake3::hash(bytes).as_bytes())
    }

    /// Wraps a finished blake3 hash.
    pub fn from_blake3(hash: blake3::Hash) -> Hash {
        Hash(*hash.as_bytes())
    }

    /// The first 8 hex digits, for human output.
    pub fn short(&self) -> String {
        self.to_string()[..8].to_string()
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.short())
    }
}

impl From<Hash> for String {
    fn from(h: Hash) -> String {
        h.to_string()
    }
}

impl TryFrom<String> for Hash {
    type Error = String;
    fn try_from(s: String) -> Result<Hash, String> {
        let parsed = blake3::Hash::from_hex(&s).map_err(|e| format!("bad hash {s:?}: {e}"))?;
        Ok(Hash::from_blake3(parsed))
    }
}

/// Bytes as lowercase hex.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_hex() {
        let h = Hash::of(b"hello");
        let s = String::from(h);
        assert_eq!(s.len(), 64);
        assert_eq!(Hash::try_from(s).unwrap(), h);
        assert!(Hash::try_from("zz".to_string()).is_err());
    }
}
