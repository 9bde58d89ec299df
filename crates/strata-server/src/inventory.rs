//! The inventory: enrolled nodes (name, key, state, environment, facts), enrollment
//! tokens (hashed), the nonces of recent writes and the reports of runs, behind one
//! trait: a SQLite file by default (`SITE/.strata/state.db`, the database hardware
//! classification uses), PostgreSQL for a shared one.

use serde::{Deserialize, Serialize};
use strata_transport::wire::{PathChange, StepTime};

mod fleet;
mod pg;
mod pool;
mod sqlite;
mod takeover;

pub use fleet::{
    Cursor, FleetPage, FleetQuery, Key, LastRun, MAX_FILTER, MAX_LABEL, MAX_LABELS, NodeSummary,
    Revision, Sort, check_label, check_labels,
};
pub use pg::PgInventory;
pub use pool::{POOL_SIZE, Pool, Pooled};
pub use sqlite::SqliteInventory;

/// How long a pending enrollment waits for `nodes accept`, in seconds (FLEET.md: 24 h).
pub const PENDING_TTL: u64 = 24 * 3600;

/// A failed inventory operation.
#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// The database failed.
    #[error("inventory {db}: {message}")]
    Db {
        /// Which database (a URL without its password).
        db: String,
        /// What went wrong.
        message: String,
    },
}

/// Where a node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeState {
    /// Enrolled without a token: waits for `nodes accept`.
    Pending,
    /// Served.
    Accepted,
    /// Served nothing, its name still bound to its key.
    Revoked,
}

impl NodeState {
    /// Its name, as stored and printed.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeState::Pending => "pending",
            NodeState::Accepted => "accepted",
            NodeState::Revoked => "revoked",
        }
    }

    fn parse(s: &str) -> NodeState {
        match s {
            "accepted" => NodeState::Accepted,
            "revoked" => NodeState::Revoked,
            _ => NodeState::Pending,
        }
    }
}

/// One node of the inventory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeRecord {
    /// Its name, bound to its first key.
    pub name: String,
    /// Its ed25519 key's id.
    pub key_id: String,
    /// Its ed25519 public key, hex.
    pub public: String,
    /// Its age public key, if it sent one.
    pub age: Option<String>,
    /// Where it stands.
    pub state: NodeState,
    /// The environment it is served.
    pub environment: String,
    /// Its facts as it sent them (`strata facts --tuples`).
    #[serde(skip)]
    pub facts: String,
    /// When it first enrolled.
    pub enrolled: u64,
    /// When its state last changed.
    pub changed: u64,
    /// Its hardware classification (a [`strata_snapshot::Classified`] as JSON), made
    /// when it was accepted, if the site has hardware profiles and one took it.
    #[serde(skip)]
    pub classification: Option<String>,
    /// When a new key last took its name over (a netboot node reprovisioned before it
    /// ever reported, docs/provision.md), if one did.
    pub rekeyed: Option<u64>,
    /// The key id that takeover displaced.
    pub old_key: Option<String>,
    /// Whether it posted a report since it was enrolled under this name (a `forget`
    /// clears it): for a netboot node, that its disk was provisioned.
    #[serde(skip)]
    pub reported: bool,
}

/// Classifies a node being accepted, given the allocation store inside the inventory's
/// own transaction (so acceptance and allocation are one), the node's name and facts:
/// the classification to keep (JSON), none, or why the node cannot be accepted.
pub type Classifier<'a> =
    dyn FnMut(&mut dyn strata_hardware::Store, &str, &str) -> Result<Option<String>, String> + 'a;

/// A token as stored: its hash, never the secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    /// blake3 of the token's secret, hex.
    pub hash: String,
    /// The only node name it enrolls, if bound.
    pub node: Option<String>,
    /// The environment it puts the node in, if set.
    pub environment: Option<String>,
    /// When it stops being accepted.
    pub expires: u64,
    /// How many nodes it may enroll (1: single use); each enrollment takes one.
    pub uses: u32,
    /// A provisioning token (made with `--uses` above 1): it may also let a new key take
    /// over a netboot node that never reported (see [`takeover`]).
    pub provisioning: bool,
}

/// An enrollment request, once its signature showed the node holds its key.
#[derive(Debug, Clone)]
pub struct EnrollRequest {
    /// The name asked for.
    pub name: String,
    /// The key's id.
    pub key_id: String,
    /// The public key, hex.
    pub public: String,
    /// The age public key, if sent.
    pub age: Option<String>,
    /// Facts.
    pub facts: String,
    /// The hash of the token presented, if any.
    pub token: Option<String>,
    /// The environment when neither the token nor anything else names one.
    pub environment: String,
}

/// How an enrollment ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Enrolled {
    /// The node is (or was already) accepted.
    Accepted(NodeRecord),
    /// The node waits for `nodes accept`.
    Pending(NodeRecord),
    /// A new key took over the name of a node that never reported (its old key is in
    /// [`NodeRecord::old_key`]); its classification and pool entries are kept.
    TakenOver(NodeRecord),
    /// Refused, with the reason; nothing was recorded and no token consumed.
    Refused(String),
}

/// One run's report, as a node posts it and `strata runs` lists it (never contents).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunReport {
    /// Its id in the inventory (0 until stored).
    #[serde(default)]
    pub id: i64,
    /// The node (set by the server from the request's key, never from the body).
    #[serde(default)]
    pub node: String,
    /// When the run ended, in seconds since the epoch (the node's clock).
    pub time: u64,
    /// The environment.
    pub environment: String,
    /// The snapshot's version.
    pub version: u64,
    /// The snapshot's revision.
    pub revision: String,
    /// The generation the run recorded, if it committed one.
    pub generation: Option<u64>,
    /// `changed`, `unchanged`, `would_change` or `failed`.
    pub result: String,
    /// Paths that changed (or would).
    pub changes: usize,
    /// Those paths and their kinds, at most [`MAX_REPORT_PATHS`].
    pub paths: Vec<PathChange>,
    /// How many paths were left out past the cap.
    #[serde(default)]
    pub truncated: usize,
    /// Whether the run found drift (it changed paths of a snapshot already applied).
    #[serde(default)]
    pub drift: bool,
    /// Why it failed, or what failed after its commit.
    pub error: Option<String>,
    /// `stale since T: …` when the node could only apply its last verified snapshot.
    #[serde(default)]
    pub note: Option<String>,
    /// What each top-level step of the run cost, at most [`MAX_REPORT_STEPS`] (none in
    /// reports from agents older than this field).
    #[serde(default)]
    pub steps: Vec<StepTime>,
    /// The node's roles (`name` or `name@version`) in the snapshot it applied, at most
    /// [`MAX_LABELS`] (none from older agents; kept on the node's row, not the report's).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<String>,
    /// The node's groups in that snapshot, as `roles`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub groups: Vec<String>,
}

/// The most steps a report may carry; a report with more is refused.
pub const MAX_REPORT_STEPS: usize = 64;
/// The longest step name a report may carry, in bytes.
pub const MAX_STEP_NAME: usize = 64;

/// Why a report's steps cannot be kept, if they cannot.
pub fn check_steps(steps: &[StepTime]) -> Result<(), String> {
    if steps.len() > MAX_REPORT_STEPS {
        return Err(format!(
            "the report has {} steps, more than {MAX_REPORT_STEPS}",
            steps.len()
        ));
    }
    for s in steps {
        if s.name.is_empty() || s.name.len() > MAX_STEP_NAME || s.name.chars().any(char::is_control)
        {
            return Err(format!(
                "a step's name must be 1 to {MAX_STEP_NAME} bytes without control characters"
            ));
        }
    }
    Ok(())
}

/// The most paths a report keeps (FLEET.md: then `truncated: N`).
pub const MAX_REPORT_PATHS: usize = 10_000;

/// Where the inventory lives.
pub trait Inventory: Send + std::fmt::Debug {
    /// Stores a new token.
    fn add_token(&mut self, token: &TokenRecord) -> Result<(), InventoryError>;
    /// Stores (or replaces) an operator's bearer token, by its hash.
    fn add_operator(&mut self, name: &str, hash: &str, now: u64) -> Result<(), InventoryError>;
    /// The operator whose bearer token has this hash.
    fn operator(&mut self, hash: &str) -> Result<Option<String>, InventoryError>;
    /// Binds a client certificate, by its SHA-256 fingerprint (hex), to an operator,
    /// adding the operator (with no token) if new; a certificate bound to another
    /// operator moves to this one.
    fn add_operator_cert(
        &mut self,
        name: &str,
        fingerprint: &str,
        now: u64,
    ) -> Result<(), InventoryError>;
    /// The operator a client certificate's fingerprint is bound to.
    fn operator_by_cert(&mut self, fingerprint: &str) -> Result<Option<String>, InventoryError>;
    /// Stores a browser sign-in code (single use) or a session (`session`), by its hash,
    /// for an operator until `expires`; false when there is no such operator.
    fn add_operator_code(
        &mut self,
        hash: &str,
        name: &str,
        session: bool,
        expires: u64,
    ) -> Result<bool, InventoryError>;
    /// Uses a sign-in code: the operator it was for, once, before it expires.
    fn redeem_login(&mut self, hash: &str, now: u64) -> Result<Option<String>, InventoryError>;
    /// The operator of a session that has not expired.
    fn session(&mut self, hash: &str, now: u64) -> Result<Option<String>, InventoryError>;
    /// Enrolls a node in one transaction: the token (if any) checked and consumed, the
    /// name bound to the key. A name already bound to another key is refused, token or
    /// not, except for a takeover (a netboot node that never reported, a provisioning
    /// token, the same machine's facts: [`takeover`]); the same key again answers as the
    /// node stands.
    fn enroll(
        &mut self,
        req: &EnrollRequest,
        now: u64,
        classify: &mut Classifier<'_>,
    ) -> Result<Enrolled, InventoryError>;
    /// Accepts a node (pending, or revoked), classifying it in the same transaction;
    /// `Ok(Err(why))` when it is unknown or its classification failed.
    fn accept(
        &mut self,
        name: &str,
        now: u64,
        classify: &mut Classifier<'_>,
    ) -> Result<Result<NodeRecord, String>, InventoryError>;
    /// The node holding this key.
    fn node_by_key(&mut self, key_id: &str) -> Result<Option<NodeRecord>, InventoryError>;
    /// The node of this name.
    fn node(&mut self, name: &str) -> Result<Option<NodeRecord>, InventoryError>;
    /// Every node, by name (pending ones past [`PENDING_TTL`] left out).
    fn nodes(&mut self, now: u64) -> Result<Vec<NodeRecord>, InventoryError>;
    /// Sets a node's state; whether it was there.
    fn set_state(&mut self, name: &str, state: NodeState, now: u64)
    -> Result<bool, InventoryError>;
    /// Removes a node, freeing its name for another key; whether it was there.
    fn forget(&mut self, name: &str) -> Result<bool, InventoryError>;
    /// Remembers a write's nonce for [`crate::httpsig::NONCE_TTL`]; false when this key
    /// already used it (a replay).
    fn fresh_nonce(&mut self, key_id: &str, nonce: &str, now: u64) -> Result<bool, InventoryError>;
    /// Stores a report; returns its id.
    fn add_report(&mut self, report: &RunReport) -> Result<i64, InventoryError>;
    /// Reports, oldest first, of one node or of all.
    fn reports(&mut self, node: Option<&str>) -> Result<Vec<RunReport>, InventoryError>;
    /// One report, by its id.
    fn report(&mut self, id: i64) -> Result<Option<RunReport>, InventoryError>;
    /// One page of the fleet, by name, with each node's last run, paged and filtered in
    /// the database (pending nodes past [`PENDING_TTL`] left out).
    fn fleet(&mut self, q: &FleetQuery<'_>, now: u64) -> Result<FleetPage, InventoryError>;
    /// Whether the connection is gone for good (a [`Pool`] then opens another).
    fn closed(&self) -> bool {
        false
    }
    /// Records that a replica served `version` of `env` (0 records nothing) and returns
    /// the highest version any server sharing this inventory served of it, so that none
    /// serves an older one later (a timestamp put back in the bucket).
    fn served_release(&mut self, env: &str, version: u64) -> Result<u64, InventoryError>;
}

/// Whether `db` names a PostgreSQL server rather than a SQLite file.
pub(crate) fn is_postgres(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// Opens the inventory at `db`: a `postgres://` URL, else a SQLite file.
pub fn open(db: &str) -> Result<Box<dyn Inventory>, InventoryError> {
    if is_postgres(db) {
        Ok(Box::new(PgInventory::connect(db)?))
    } else {
        Ok(Box::new(SqliteInventory::open(std::path::Path::new(db))?))
    }
}

/// What an enrollment decides for a node already bound to a name, or for a new one,
/// given the token's check: shared by both stores so they answer alike.
pub(crate) fn decide(
    existing: Option<&NodeRecord>,
    by_key: Option<&NodeRecord>,
    req: &EnrollRequest,
    token: Option<Result<&TokenRecord, String>>,
    (reported, now): (bool, u64),
) -> Decision {
    let token_ok = matches!(&token, Some(Ok(t))
        if t.expires > now && t.node.as_ref().is_none_or(|n| *n == req.name));
    let displaced = existing.is_some_and(|n| n.key_id != req.key_id);
    if let Some(n) = existing {
        if displaced && n.state == NodeState::Pending && !token_ok {
            return Decision::Refuse(format!(
                "a request for node {:?} by another key ({}) is pending; accept or forget \
                 it on the server, or enroll with a token",
                n.name, n.key_id
            ));
        }
        if displaced && n.state != NodeState::Pending {
            if let Some(other) = by_key {
                return Decision::Refuse(format!(
                    "this key is already enrolled as node {:?}",
                    other.name
                ));
            }
            return match takeover::allowed(n, req, token.as_ref(), reported, now) {
                Ok(()) => Decision::Takeover,
                Err(why) => Decision::Refuse(format!(
                    "node name {:?} is bound to another key ({}): {why}; run `strata nodes \
                     forget {}` on the server to free it",
                    n.name, n.key_id, n.name
                )),
            };
        }
        // Only an accepted key binds a name: a pending request by another key gives way
        // to a valid token (below).
        match n.state {
            NodeState::Revoked => {
                return Decision::Refuse(format!("node {:?} is revoked", n.name));
            }
            NodeState::Accepted => return Decision::Already,
            NodeState::Pending => {}
        }
    }
    if let Some(other) = by_key.filter(|o| o.name != req.name) {
        return Decision::Refuse(format!(
            "this key is already enrolled as node {:?}",
            other.name
        ));
    }
    match token {
        None => Decision::Pending,
        Some(Err(why)) => Decision::Refuse(why),
        Some(Ok(t)) => {
            if t.expires <= now {
                return Decision::Refuse("the token expired".into());
            }
            if t.node.as_ref().is_some_and(|n| *n != req.name) {
                return Decision::Refuse(format!(
                    "the token is for node {:?}, not {:?}",
                    t.node.as_deref().unwrap_or_default(),
                    req.name
                ));
            }
            Decision::Accept(t.environment.clone())
        }
    }
}

/// What [`decide`] decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Refuse(String),
    /// Accepted before: answer as it stands.
    Already,
    Pending,
    /// Accept now, consuming the token, in this environment if the token names one.
    Accept(Option<String>),
    /// Give the accepted node's name to this key, consuming the token, keeping the
    /// node's environment, classification and pool entries ([`takeover`]).
    Takeover,
}

/// The text kept for a report's paths.
pub(crate) fn paths_json(paths: &[PathChange]) -> String {
    serde_json::to_string(paths).expect("paths serialize")
}

/// The text kept for a report's steps.
pub(crate) fn steps_json(steps: &[StepTime]) -> String {
    serde_json::to_string(steps).expect("steps serialize")
}

/// A report's steps back from the text kept (none for a report stored without).
pub(crate) fn steps_from(text: &str) -> Vec<StepTime> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A report's paths back from the text kept.
pub(crate) fn paths_from(text: &str) -> Vec<PathChange> {
    serde_json::from_str(text).unwrap_or_default()
}

/// A token's check, shared: unknown or used tokens are refused with the reason.
pub(crate) fn token_check(
    found: Option<(TokenRecord, Option<u64>)>,
) -> Result<TokenRecord, String> {
    match found {
        None => Err("the token is not one this server issued".into()),
        Some((_, Some(_))) => Err("the token was already used".into()),
        Some((t, None)) => Ok(t),
    }
}

#[cfg(test)]
mod fleet_tests;
#[cfg(test)]
mod takeover_tests;
#[cfg(test)]
mod tests;
