//! Stamps: what a managed file's metadata says about its content, so that a plan reads
//! only files whose metadata changed since strata last verified them (git's index does the
//! same).
//!
//! A stamp binds a file's device, inode, size, mtime and ctime to the hash of the content
//! strata read back from it. Any write to a file, a `chmod`, `chown`, `setfattr`, rename or
//! replacement changes its ctime, which no program can set back. The one trap is a write in
//! the same clock tick as the reading (timestamps are coarse): a stamp is therefore only
//! taken when the file's ctime is strictly older than `now`, a timestamp of the same file
//! system taken *before* the file was read. Any later write then gets a ctime of at least
//! `now`, so it cannot look like the stamp. Files changed in the last tick before a commit
//! ended are simply not stamped and are read in full, as before.

use std::collections::HashMap;

use rustix::fs::Stat;
use strata_types::{Hash, StatKey, TargetPath};

/// One file's stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The metadata it was read with.
    pub key: StatKey,
    /// The hash of its content.
    pub hash: Hash,
}

/// The key of a `stat` result.
pub(crate) fn key_of(st: &Stat) -> StatKey {
    StatKey {
        dev: st.st_dev,
        ino: st.st_ino,
        size: st.st_size as u64,
        mtime: (st.st_mtime, st.st_mtime_nsec as u32),
        ctime: (st.st_ctime, st.st_ctime_nsec as u32),
    }
}

/// The stamps of a root's managed files, by path.
pub type Stamps = HashMap<TargetPath, Stamp>;
