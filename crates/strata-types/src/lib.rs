//! Plain data shared by every strata crate: names, paths as a node sees them, the
//! state of one path, plans, generations and step metrics. No I/O happens here.

mod content;
mod hash;
mod metrics;
mod names;
mod path;
mod plan;
mod records;
mod snapshot;
mod users;

pub use content::ContentSource;
pub use hash::{Hash, hex};
pub use metrics::{Activation, CommandStatus, Deferred, ProgramRun, Report, Step, StepMetrics};
pub use names::{NameError, NodeName};
pub use path::{PathError, TargetPath};
pub use plan::{Action, Change, Generation, GenerationKind, Plan, Summary, apply_order};
pub use records::{RecordReader, Records, StatKey, read_map};
pub use snapshot::{Entry, Meta, Snapshot, Xattrs};
pub use users::{PENDING, ReadTarget, UserDb};
