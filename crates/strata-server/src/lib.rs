//! Pull from a server (FLEET.md, "Pull from a server"): what `strata serve` answers and
//! how, the inventory behind it, and the client `enroll`, `agent` and `publish` use.
//!
//! - [`httpsig`]: request signatures (RFC 9421) with ed25519 keys;
//! - [`inventory`]: nodes, tokens, nonces and reports, in SQLite or PostgreSQL;
//! - [`published`]: what `publish` sent, checked, and each environment's timestamp,
//!   signed with the server's online key;
//! - [`app`]: the routes; [`limits`]: their limits, per-address rates among them;
//! - [`listen`]: the socket, TLS or loopback;
//! - [`dashboard`]: the operators' pages and their JSON twins, behind bearer tokens;
//! - [`boot`]: `/boot/*`, what a netbooting machine fetches;
//! - [`client`]: the signing client.

pub mod app;
pub mod boot;
pub mod client;
pub mod dashboard;
pub mod httpsig;
pub mod inventory;
pub mod limits;
pub mod listen;
pub mod published;

pub use app::{Limits, Server, app};
