//! The unit of delivery (FLEET.md, "One engine, one unit of delivery"): an environment's
//! site files as content-addressed blobs under a signed manifest, the keys that sign it,
//! and the node's side: its pinned root, its version floors and its blob store.
//!
//! Everything a node receives is checked here before anything parses it: an envelope's
//! signature covers the exact payload bytes received ([`envelope`]), and only a verified
//! payload is parsed into a [`Manifest`] or a [`Root`].

mod assignment;
mod blobs;
pub mod envelope;
mod error;
mod keys;
mod manifest;
mod root;
mod timestamp;
mod trust;

pub use assignment::{ASSIGNMENT_TYPE, Assignment, Classified};
pub use blobs::{BlobStore, Materialized};
pub use error::SnapshotError;
pub use keys::{KeyId, KeyPair, Role, public_from_hex, readable_key_role};
pub use manifest::{Entry, Manifest, SiteFiles, build_entries, git_revision, site_revision};
pub use root::{Root, RootKey, RootSet};
pub use timestamp::Timestamp;
pub use trust::{Floor, Trust, Verified, VerifiedAssignment, open_manifest};

/// Limits before verification (FLEET.md): metadata (a root, an assignment) at most 1 MiB.
pub const MAX_METADATA: usize = 1 << 20;
/// A manifest at most 64 MiB.
pub const MAX_MANIFEST: usize = 64 << 20;
/// How far a clock may be off when expiry and creation times are checked, in seconds.
pub const CLOCK_TOLERANCE: u64 = 300;

/// Seconds since the Unix epoch, the time format of every signed document.
pub type UnixTime = u64;

/// The current time, read once per check by the caller (FLEET.md: "one reading of the
/// clock at the start").
pub fn now() -> UnixTime {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The manifest format this strata writes.
pub fn manifest_format() -> u32 {
    manifest::FORMAT
}
