//! A node's own record, under `<root>/var/lib/strata`: the content-addressed store, the
//! generations, the journaled all-or-nothing commit with its crash recovery, and the
//! pruning of old generations (`gc`). Contents rendered from a secret are kept in the
//! store sealed to the node's age key, never in clear.
//!
//! A commit runs in two phases. *Prepare* writes every content it may need into the store,
//! a journal of every operation (each path's state before and after), the new generation
//! file, and stages new files under temporary names beside their targets; nothing the node
//! uses has changed yet. A `commit` marker, made durable, is the commit point. *Apply*
//! renames the staged files into place and removes what goes; a type change (a directory
//! replaced by a file or link, or the reverse) swaps the staged entry with the old one in
//! one `RENAME_EXCHANGE`, then removes the old one. Any strata command that
//! finds a journal first finishes it (marker present) or undoes it (marker absent), so
//! every managed path ends at the old or at the new generation.

mod activate;
mod commit;
mod crash;
mod error;
mod gc;
mod pack;
mod prefetch;
mod seal;
mod stamps;
mod state;
mod store;

pub use activate::{DEFAULT_TIMEOUT, Scheduled, run_hook};
pub use commit::{Committed, Op, Recovered};
pub use error::StateError;
pub use gc::{DEFAULT_KEEP, Pruned, Sweep};
pub use prefetch::Prefetching;
pub use stamps::parse_stamps;
pub use state::{CommandInfo, GenerationInfo, History, State};
pub use store::{Store, StoreSize};
