//! The pipeline as a library: the CLI, a push to a remote node and the agent all call
//! these functions; none of them touches the terminal or reads a setting from the
//! environment (the caller resolves its settings into a [`Request`]).
//!
//! An apply walks down the stages once, one module each, in this order:
//!
//! 1. `request`: what the caller asks ([`Request`]) and for what (a plan, a shell, an
//!    apply).
//! 2. `compile`: the site loaded, the node's facts classified against the site's
//!    hardware profiles (allocating only for an apply), and the node's catalog compiled.
//! 3. `plan`: the root and its state opened, the downloads resolved (`downloads`), and
//!    the catalog planned against what the last generation manages (`managed`):
//!    directly, or through the sandbox when it has scripts or executable templates
//!    (`scripts`, with the modules' own `steps` and the `intercept` check of what the
//!    programs called).
//! 4. `commit`: the plan committed and recorded as a generation, the intercepted
//!    commands run, the retention applied.
//! 5. `outcome`: what was found and done, returned to the caller ([`Outcome`]).
//!
//! [`plan()`] and [`shell`] skip stage 4, [`apply`] goes through all five; the three share
//! one preparation of stages 1 to 3 (`plan::prepare`). [`rollback`] replays a stored
//! generation through stages 3 to 5 without the site. `history` reads and prunes what the
//! stages recorded on a root; [`check`] and [`params`] stop after stage 2. [`drift`]
//! plans the current generation's own entries (stage 3 alone, like a rollback to it) to
//! find what was changed by hand.

mod apply;
mod commit;
mod compile;
mod downloads;
mod drift;
mod error;
mod history;
mod hooks;
mod intercept;
mod managed;
mod outcome;
mod plan;
mod request;
mod rollback;
mod scripts;
mod steps;

pub use apply::{apply, apply_showing, apply_showing_by, on_failure};
pub use commit::Clock;
pub use compile::{NodeCheck, check, params, stale_secrets};
pub use drift::{Drift, DriftKind, Drifted, drift, on_drift};
pub use error::{DownloadError, EngineError, RollbackError};
pub use history::{GenerationDiff, GenerationSide, diff, gc, generations, recover, report};
pub use hooks::HookContext;
pub use outcome::{Outcome, Pending};
pub use plan::{plan, shell};
pub use request::{Classify, Request};
pub use rollback::rollback;
pub use strata_core::NodeInfo;
pub use strata_state::{DEFAULT_KEEP, Recovered};
