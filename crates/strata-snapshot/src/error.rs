//! What can go wrong reading, checking or storing a snapshot.

use strata_fs::FsError;

/// A refused or failed snapshot operation; each variant names what was refused and why.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// Reading or writing strata's own files failed.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A document is larger than the limit for its kind, checked before reading it.
    #[error("{what} is {size} bytes, over the limit of {limit}")]
    TooLarge {
        /// What was received.
        what: String,
        /// Its size.
        size: u64,
        /// The limit.
        limit: u64,
    },
    /// A document does not have the expected shape.
    #[error("{what} is malformed: {why}")]
    Malformed {
        /// What was received.
        what: String,
        /// Why it was refused.
        why: String,
    },
    /// No signature of a trusted key for that role verifies.
    #[error("{what} is not signed by a trusted {role} key{}", keys_note(.keys))]
    Unsigned {
        /// What was received.
        what: String,
        /// The role whose signature was needed.
        role: &'static str,
        /// The key ids the signatures named.
        keys: Vec<String>,
    },
    /// A document expired.
    #[error("{what} expired {ago} s ago (re-sign it: strata push or strata publish)")]
    Expired {
        /// What was received.
        what: String,
        /// Seconds since it expired.
        ago: u64,
    },
    /// The node's clock is earlier than a document it already trusted was made.
    #[error(
        "this node's clock is {by} s behind the newest snapshot it trusted; fix the clock \
         (NTP) before updating"
    )]
    ClockBehind {
        /// By how many seconds.
        by: u64,
    },
    /// An older version than the node already applied: a replay or a rollback attack.
    #[error(
        "{what} is version {version}, below this node's floor {floor} for environment \
         {environment:?}"
    )]
    Replay {
        /// What was received.
        what: String,
        /// The environment.
        environment: String,
        /// Its version.
        version: u64,
        /// The node's floor.
        floor: u64,
    },
    /// The same version as one already trusted, with other content.
    #[error(
        "{what} is version {version} of environment {environment:?}, which this node already \
         trusts with other content"
    )]
    Forked {
        /// What was received.
        what: String,
        /// The environment.
        environment: String,
        /// The version.
        version: u64,
    },
    /// The node pins a root of another site, or of the same site with other keys.
    #[error("this node trusts another root ({pinned}); the snapshot's root is {offered}")]
    OtherRoot {
        /// The pinned root's fingerprint.
        pinned: String,
        /// The offered root's fingerprint.
        offered: String,
    },
    /// A manifest for another site than the node's root certifies.
    #[error("the manifest is for site {got:?}, but this node's root is site {want:?}")]
    OtherSite {
        /// The manifest's site.
        got: String,
        /// The root's site.
        want: String,
    },
    /// A document that is genuine but not for this node, environment or manifest.
    #[error("{what} does not apply here: {why}")]
    Mismatch {
        /// What was received.
        what: &'static str,
        /// Why not.
        why: String,
    },
    /// A blob's content does not hash to its name.
    #[error("blob {hash} does not match its hash ({why})")]
    BadBlob {
        /// The hash it was sent as.
        hash: String,
        /// What differed.
        why: String,
    },
    /// A key file could not be used.
    #[error("key {path}: {why}")]
    Key {
        /// The key file.
        path: String,
        /// What is wrong with it.
        why: String,
    },
}

fn keys_note(keys: &[String]) -> String {
    if keys.is_empty() {
        " (it has no signature)".to_string()
    } else {
        format!(" (signed by {})", keys.join(", "))
    }
}

impl SnapshotError {
    #[allow(
        clippy::needless_pass_by_value,
        reason = "callers hand over their errors"
    )]
    pub(crate) fn malformed(what: impl Into<String>, why: impl ToString) -> Self {
        SnapshotError::Malformed {
            what: what.into(),
            why: why.to_string(),
        }
    }
}
