//! Push over SSH (FLEET.md, "Push over SSH"): the system `ssh`, one multiplexed
//! connection per node ([`ssh`]), strata shipped where the node lacks it ([`ship`]), the
//! snapshot and the node's events over one session ([`wire`]), many nodes at once
//! ([`push`]). No terminal here: progress goes to a callback the CLI draws.

pub mod push;
pub mod ship;
pub mod ssh;
pub mod wire;

pub use push::{Assign, NodeJob, NodeReport, Outcome, Progress, PushJob, run};
pub use ship::Shipment;
pub use ssh::{Connection, Endpoint, ReachError, SshOptions};
pub use wire::{ErrorInfo, NodeEvent, PathChange};
