//! Hardware classification as eDeploy did it: facts matched against ordered profiles,
//! values handed out from pools, allocations kept durable and safe against concurrent
//! enrolments through a store (a SQLite file by default).

mod classify;
pub mod matcher;
mod pg;
pub mod pools;
mod profiles;
mod store;

pub use classify::{Classification, ClassifyError, Explanation, classify, confirm, explain};
pub use pg::{PgStore, PgTx, connect_schema, open, open_for, redact};
pub use profiles::{Hardware, Profile};
pub use store::{Allocate, Allocation, Enrollment, SqliteStore, SqliteTx, Store, StoreError};
