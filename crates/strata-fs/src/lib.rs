//! The one place that touches the file system. Two halves:
//!
//! - [`Root`]: a target root opened once, where every path is resolved as if chrooted,
//!   one component at a time (`walk`), so no symlink in the target ever leads a read or
//!   a write outside it, nor from what one user owns to what another owns, and a symlink
//!   standing at a managed path is replaced, never followed.
//! - plain helpers for reading a site tree (which is the user's own directory).
//!
//! Every error carries the path and the operation that failed.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod durable;
mod error;
mod lock;
mod private;
mod root;
mod site;
mod stamp;
mod walk;

mod fatfs;
pub use durable::{
    create_durable, hash_file, open_read, read_with_mode, remove_dir_all, set_mode, sync_dir,
    write_durable,
};
pub use error::{FsError, Result};
pub use fatfs::{FixedMeta, unescape_mountinfo};
pub use lock::{Lock, LockError};
pub use private::{Mapped, create_private, private_dir, remove_file, rename, write_private};
pub use root::{DirEntryKind, Expected, Flusher, Root, managed_xattr};
pub use site::{
    SiteFile, canonical, create_dir_all, exists, fs_now, git_head, is_dir, is_link, join_rel,
    list_dir, read, read_link, read_sized_file, read_to_string, read_with_key, replace_site_file,
    stat_key, walk_files, write_atomic, write_new, write_site_file, write_site_file_as,
};
pub use stamp::{Stamp, Stamps};
/// The step meter moved to strata-meter; re-exported here for the crates that still
/// import it from strata-fs.
pub use strata_meter::{Meter, background_thread};
/// The target's user table moved to strata-types (a [`Root`] reads it); re-exported here
/// for the crates that still import it from strata-fs.
pub use strata_types::{PENDING, UserDb};
/// The record format and the metadata key moved to strata-types; re-exported here for
/// the crates that still import them from strata-fs.
pub use strata_types::{RecordReader, Records, StatKey, read_map};
pub use walk::unsafe_transition;
