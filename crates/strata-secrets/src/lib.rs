//! A site's secrets: `secrets/NAME.age`, in the age format, encrypted to the age keys of
//! the nodes it is for and to the site's `[secrets] admins`, and `secrets/NAME.toml`,
//! which records who that is (the selectors given to `strata secret set`, and each
//! recipient's key fingerprint) so that `check` sees when a node joined or left.
//!
//! The node side is [`NodeSource`]: the engine opens it with the node's own key and
//! hands it to the compile, which reads `secret("NAME")` through it. Nothing here
//! prints, reads the environment or keeps a plaintext anywhere but in memory.

mod error;
mod file;
mod key;
mod recipients;
mod source;

pub use error::SecretError;
pub use file::{SecretFiles, SecretMeta, secret_name};
pub use key::{NodeKey, fingerprint, load_identity, node_key_path, parse_recipient};
pub use recipients::{Recipients, Selector, Stale, resolve, stale};
pub use source::{CheckSource, NodeSource};
