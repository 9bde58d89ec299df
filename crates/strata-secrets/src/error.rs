//! What can go wrong with a secret; every message names the secret, node or file, and
//! none holds a secret's value.

use std::path::PathBuf;

/// An error about secrets or keys.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// A file could not be read or written.
    #[error(transparent)]
    Fs(#[from] strata_fs::FsError),
    /// The site is wrong.
    #[error(transparent)]
    Site(#[from] strata_core::SiteError),
    /// A name that cannot name a secret.
    #[error("`{0}` is not a secret's name (letters, digits and `_`, starting with a letter)")]
    BadName(String),
    /// A `--to` that names nothing.
    #[error("--to {selector}: {reason}")]
    Selector {
        /// As given.
        selector: String,
        /// Why it names nothing.
        reason: String,
    },
    /// A recipient node whose age key is not recorded.
    #[error(
        "node {node} has no age key: its file has no `[keys] age` (run `strata keys node` \
         on {node} as root, and record the key it prints as `[keys] age = \"age1…\"` in \
         nodes/{node}.toml)"
    )]
    NoKey {
        /// The node.
        node: String,
    },
    /// A key that is not an age X25519 public key.
    #[error("{owner}: `{key}` is not an age public key (age1…)")]
    BadRecipient {
        /// Whose key (`node web1`, `[secrets] admins`).
        owner: String,
        /// The text found.
        key: String,
    },
    /// An identity file that holds no usable age identity.
    #[error("{}: {reason}", .path.display())]
    BadIdentity {
        /// The file.
        path: PathBuf,
        /// What is wrong (never its content).
        reason: String,
    },
    /// A secret that does not exist.
    #[error("secret `{name}` does not exist: {file} is missing")]
    Missing {
        /// The secret.
        name: String,
        /// `secrets/NAME.age` or `.toml`.
        file: String,
    },
    /// `secrets/NAME.toml` that cannot be read.
    #[error("{file}: {reason}")]
    Meta {
        /// The file.
        file: String,
        /// What is wrong.
        reason: String,
    },
    /// A `.age` file that is not one.
    #[error("{file} is not a valid age file ({reason})")]
    Corrupt {
        /// The file.
        file: String,
        /// age's reason.
        reason: String,
    },
    /// A `.age` file that the key given cannot open.
    #[error("{file} cannot be decrypted with {key}: {why}")]
    WrongKey {
        /// The file.
        file: String,
        /// Which key was tried.
        key: String,
        /// What to do.
        why: String,
    },
    /// A node that the secret is not for.
    #[error(
        "node {node} is not a recipient of secret `{name}` ({file} does not list it): \
         add it with `strata secret set {name} --to …`, or drop the use of the secret"
    )]
    NotRecipient {
        /// The secret.
        name: String,
        /// The node.
        node: String,
        /// `secrets/NAME.toml`.
        file: String,
    },
    /// A secret no key could read.
    #[error("secret `{0}` would have no recipient: give --to, or set [secrets] admins")]
    NoRecipients(String),
    /// A plaintext that is not UTF-8 text.
    #[error("secret `{0}` is not UTF-8 text; templates and variables hold text")]
    NotText(String),
    /// age failed to encrypt.
    #[error("cannot encrypt secret `{name}`: {reason}")]
    Encrypt {
        /// The secret.
        name: String,
        /// Why.
        reason: String,
    },
}
