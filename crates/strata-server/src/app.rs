//! The routes `serve` answers, and only those (anything else is 404, a known path with
//! another method 405), behind the server's first defences: a body limit per route
//! (413), a timeout per request (408), and a concurrency limit that sheds what it cannot
//! take at once with 429 and `Retry-After`.
//!
//! Node routes (`/v1/nodes/NODE/…`) need a request signed with the node's key
//! ([`crate::httpsig`]): the key names the node, never the body, and the path's NODE
//! must be that node. Publish routes (`/v1/publish/…`) need a request signed with a
//! signing key the site's root certifies. `/v1/enroll` is signed with the key it
//! enrolls. The dashboard's routes (`/`, `/nodes/…`, `/runs/…`, `/api/…`) need an
//! operator instead, and never a node ([`crate::dashboard`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use axum::Router;
use axum::body::Bytes;
use axum::error_handling::HandleErrorLayer;
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use strata_bucket::{blob_key, manifest_key};
use strata_snapshot::{Assignment, Classified, KeyId, KeyPair, Role, public_from_hex};
use tower::ServiceBuilder;
use tower::limit::GlobalConcurrencyLimitLayer;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;

use crate::httpsig::{self, Target};
use crate::inventory::{
    EnrollRequest, Enrolled, MAX_REPORT_PATHS, NodeRecord, NodeState, Pool, RunReport,
};
use crate::published::{PublishError, Published, TIMESTAMP_REFRESH};

pub use crate::limits::Limits;

/// What the routes share.
pub struct Server {
    /// What was published.
    pub published: RwLock<Published>,
    /// Nodes, tokens, nonces and reports: a pool of connections.
    pub inventory: Pool,
    /// The online key: signs timestamps (and assignments).
    pub online: KeyPair,
    /// A new node's environment when its token names none: its file's, else the default.
    pub environment_of: Box<dyn Fn(&str) -> String + Send + Sync>,
    /// The clock, in seconds since the epoch.
    pub clock: Box<dyn Fn() -> u64 + Send + Sync>,
    /// Classifies a node at acceptance (the site's hardware profiles and pools).
    pub classify: Box<Classify>,
    /// Each node's signed assignment, as last signed.
    pub assignments: Mutex<HashMap<String, Signed>>,
    /// Where each request's log line goes (the CLI: stderr).
    pub log: Box<dyn Fn(&str) + Send + Sync>,
    /// What `/boot/*` serves (`serve --netboot DIR`): see [`crate::boot`].
    pub netboot: Option<crate::boot::Netboot>,
}

/// A classifier a server holds: see [`crate::inventory::Classifier`].
pub type Classify = dyn Fn(&mut dyn strata_hardware::Store, &str, &str) -> Result<Option<String>, String>
    + Send
    + Sync;

/// A node's assignment as signed, and what it was signed from.
#[derive(Debug, Clone)]
pub struct Signed {
    /// The envelope.
    pub bytes: Vec<u8>,
    /// Its version (the signing time, and more than the one before).
    pub version: u64,
    /// When it was signed.
    pub signed: u64,
    /// The node's key, the classification and the environment it carries.
    pub from: (String, String, String),
}

/// How long an assignment the server signs is trusted.
pub const ASSIGNMENT_LIFETIME: u64 = 24 * 3600;

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Server({:?})", self.online)
    }
}

/// A refusal or failure, as the client sees it: a status and a short JSON message.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            message: message.into(),
        }
    }
}

/// The JSON of an error answer.
#[derive(Debug, Serialize, Deserialize)]
pub struct ErrorBody {
    /// What went wrong, for a person.
    pub error: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            axum::Json(ErrorBody {
                error: self.message,
            }),
        )
            .into_response()
    }
}

pub(crate) fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
}

impl From<crate::inventory::InventoryError> for ApiError {
    fn from(e: crate::inventory::InventoryError) -> ApiError {
        internal(e)
    }
}

impl From<PublishError> for ApiError {
    fn from(e: PublishError) -> ApiError {
        match e {
            PublishError::Refused(_) => ApiError::new(StatusCode::CONFLICT, e.to_string()),
            PublishError::Exists(_) => {
                ApiError::new(StatusCode::PRECONDITION_FAILED, e.to_string())
            }
            PublishError::Storage(_) => internal(e),
        }
    }
}

pub(crate) type Answer = Result<Response, ApiError>;

/// The router.
pub fn app(server: Arc<Server>, limits: &Limits) -> Router {
    let nodes = Router::new()
        .route("/v1/enroll", post(enroll))
        .route("/v1/nodes/{node}/poll", get(poll))
        .route("/v1/nodes/{node}/manifests/{version}", get(manifest))
        .route("/v1/nodes/{node}/blobs/{hash}", get(blob))
        .route("/v1/nodes/{node}/reports", post(report))
        // 413 from the Content-Length before anything is read, or once the body passes it.
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limits.body))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.timeout,
        ));
    let publish = Router::new()
        .route("/v1/publish/{*key}", get(publish_get).put(publish_put))
        .layer(DefaultBodyLimit::disable())
        .layer(RequestBodyLimitLayer::new(limits.upload))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.upload_timeout,
        ));
    let retry = limits.retry_after;
    let logged = server.clone();
    let limiter = crate::limits::limiter(limits);
    nodes
        .merge(publish)
        .merge(crate::dashboard::routes(limits).merge(crate::boot::routes()))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .layer(
            ServiceBuilder::new()
                .layer(HandleErrorLayer::new(
                    move |_: tower::BoxError| async move {
                        (
                            StatusCode::TOO_MANY_REQUESTS,
                            [(header::RETRY_AFTER, retry.to_string())],
                            axum::Json(ErrorBody {
                                error: "the server is overloaded; retry later".into(),
                            }),
                        )
                    },
                ))
                .load_shed()
                // One limit for the whole server (a layer of its own per route otherwise).
                .layer(GlobalConcurrencyLimitLayer::new(limits.concurrency)),
        )
        .layer(axum::middleware::from_fn(move |req, next| {
            crate::limits::maybe_limit(limiter.clone(), req, next)
        }))
        .layer(axum::middleware::from_fn(move |req, next| {
            log_request(logged.clone(), req, next)
        }))
        .with_state(server)
}

/// One line per request: client, method, path (never its query: a secret), status, time.
async fn log_request(
    s: Arc<Server>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let start = std::time::Instant::now();
    let peer = req
        .extensions()
        .get::<crate::listen::Peer>()
        .map_or_else(|| "-".to_string(), |p| p.0.to_string());
    let method = req.method().clone();
    let path: String = req
        .uri()
        .path()
        .chars()
        .take(200)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    let response = next.run(req).await;
    (s.log)(&format!(
        "{peer} {method} {path} {} {:.1} ms",
        response.status().as_u16(),
        start.elapsed().as_secs_f64() * 1000.0
    ));
    response
}

/// Runs `f` on a blocking thread (the inventory and the published store do disk I/O).
pub(crate) async fn blocking(
    s: Arc<Server>,
    f: impl FnOnce(&Server) -> Answer + Send + 'static,
) -> Response {
    match tokio::task::spawn_blocking(move || f(&s)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => e.into_response(),
        Err(e) => internal(e).into_response(),
    }
}

/// What a signature covers, as received.
struct Received {
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
}

impl Received {
    fn header(&self, name: &'static str) -> Result<&str, ApiError> {
        self.headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, format!("no {name} header")))
    }

    /// The signature's headers and parameters, not yet verified.
    fn signature(&self) -> Result<(httpsig::Headers, httpsig::Params), ApiError> {
        if self.uri.query().is_some() {
            return Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "a query string is not accepted (it would not be signed)",
            ));
        }
        let h = httpsig::Headers {
            content_digest: self.header("content-digest")?.to_string(),
            signature_input: self.header("signature-input")?.to_string(),
            signature: self.header("signature")?.to_string(),
        };
        let p = httpsig::parse(&h.signature_input).map_err(unauthorized)?;
        Ok((h, p))
    }

    /// Verifies the signature with `public` at `now`.
    fn verify(
        &self,
        public: &ed25519_dalek::VerifyingKey,
        h: &httpsig::Headers,
        now: u64,
    ) -> Result<httpsig::Params, ApiError> {
        let t = Target {
            method: self.method.as_str(),
            authority: self.header("host")?,
            path: self.uri.path(),
            body: &self.body,
        };
        httpsig::verify(public, &t, h, now).map_err(unauthorized)
    }
}

fn unauthorized(e: impl std::fmt::Display) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, e.to_string())
}

/// A write's nonce, remembered; a replay is refused.
fn fresh_nonce(s: &Server, key: &str, p: &httpsig::Params, now: u64) -> Result<(), ApiError> {
    let nonce = p
        .nonce
        .as_deref()
        .ok_or_else(|| unauthorized(httpsig::SigError::NoNonce))?;
    if !s
        .inventory
        .lock()
        .map_err(internal)?
        .fresh_nonce(key, nonce, now)?
    {
        return Err(unauthorized(
            "this request was replayed: its nonce was used already",
        ));
    }
    Ok(())
}

/// The node whose key signed the request, which must be `node`, accepted.
fn node_identity(
    s: &Server,
    r: &Received,
    node: &str,
    write: bool,
) -> Result<NodeRecord, ApiError> {
    let (h, p) = r.signature()?;
    let now = (s.clock)();
    let rec = s
        .inventory
        .lock()
        .map_err(internal)?
        .node_by_key(&p.key_id)?
        .ok_or_else(|| unauthorized("this key is not enrolled"))?;
    let public = public_from_hex(&rec.public).ok_or_else(|| internal("a stored key is bad"))?;
    r.verify(&public, &h, now)?;
    let forbidden = |m: String| ApiError::new(StatusCode::FORBIDDEN, m);
    match rec.state {
        NodeState::Accepted => {}
        NodeState::Revoked => return Err(forbidden(format!("node {} is revoked", rec.name))),
        NodeState::Pending => {
            return Err(forbidden(format!(
                "node {} waits for `strata nodes accept {}`",
                rec.name, rec.name
            )));
        }
    }
    if rec.name != node {
        return Err(forbidden(format!(
            "this key is node {}'s, not {node}'s",
            rec.name
        )));
    }
    if write {
        fresh_nonce(s, &rec.key_id, &p, now)?;
    }
    Ok(rec)
}

/// What a node sends to enroll.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollBody {
    /// The name it asks for.
    pub node: String,
    /// Its ed25519 public key, hex (the key that signed the request).
    pub public: String,
    /// Its age public key, if it has one.
    pub age: Option<String>,
    /// Its facts (`strata facts --tuples`).
    pub facts: serde_json::Value,
    /// The token's secret part, if it has a token.
    pub token: Option<String>,
}

/// What the server answers an enrollment.
#[derive(Debug, Serialize, Deserialize)]
pub struct EnrollAnswer {
    /// `accepted` or `pending`.
    pub state: String,
    /// The node's name.
    pub node: String,
    /// The environment it is served.
    pub environment: String,
}

/// The hash a token is stored under.
pub fn token_hash(secret: &str) -> String {
    blake3::hash(secret.as_bytes()).to_hex().to_string()
}

async fn enroll(
    State(s): State<Arc<Server>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Received {
        method,
        uri,
        headers,
        body,
    };
    blocking(s, move |s| enroll_now(s, &r)).await
}

fn enroll_now(s: &Server, r: &Received) -> Answer {
    let (h, p) = r.signature()?;
    let bad = |m: String| ApiError::new(StatusCode::BAD_REQUEST, m);
    let e: EnrollBody = serde_json::from_slice(&r.body).map_err(|e| bad(e.to_string()))?;
    strata_types::NodeName::parse(&e.node).map_err(|e| bad(e.to_string()))?;
    let public = public_from_hex(&e.public).ok_or_else(|| bad("not an ed25519 key".into()))?;
    let key_id = KeyId::of(&public);
    if key_id.0 != p.key_id {
        return Err(unauthorized(
            "the request is not signed by the key it enrolls",
        ));
    }
    let now = (s.clock)();
    r.verify(&public, &h, now)?;
    fresh_nonce(s, &key_id.0, &p, now)?;
    let req = EnrollRequest {
        environment: (s.environment_of)(&e.node),
        name: e.node,
        key_id: key_id.0,
        public: e.public,
        age: e.age,
        facts: e.facts.to_string(),
        token: e.token.as_deref().map(token_hash),
    };
    let done =
        s.inventory
            .lock()
            .map_err(internal)?
            .enroll(&req, now, &mut |store, name, facts| {
                (s.classify)(store, name, facts)
            })?;
    let (status, node) = match done {
        Enrolled::Accepted(n) => (StatusCode::OK, n),
        Enrolled::TakenOver(n) => {
            // A netboot node that never reported, back with a new key (docs/provision.md).
            (s.log)(&format!(
                "enroll: key {} took over node {} from key {} (never reported; a \
                 provisioning token's use taken; classification and pool entries kept)",
                n.key_id,
                n.name,
                n.old_key.as_deref().unwrap_or("-")
            ));
            (StatusCode::OK, n)
        }
        Enrolled::Pending(n) => (StatusCode::ACCEPTED, n),
        Enrolled::Refused(why) => return Err(ApiError::new(StatusCode::FORBIDDEN, why)),
    };
    Ok((
        status,
        axum::Json(EnrollAnswer {
            state: node.state.as_str().into(),
            node: node.name,
            environment: node.environment,
        }),
    )
        .into_response())
}

/// What a poll answers: everything small a node needs to know whether anything changed.
#[derive(Debug, Serialize, Deserialize)]
pub struct PollAnswer {
    /// The node's environment.
    pub environment: String,
    /// The root chain, each document base64.
    pub roots: Vec<String>,
    /// The environment's timestamp (base64), if anything is published for it.
    pub timestamp: Option<String>,
    /// The node's signed assignment (base64), if the site gives it one.
    pub assignment: Option<String>,
}

async fn poll(
    State(s): State<Arc<Server>>,
    Path(node): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Received {
        method,
        uri,
        headers,
        body,
    };
    blocking(s, move |s| poll_now(s, &r, &node)).await
}

fn poll_now(s: &Server, r: &Received, node: &str) -> Answer {
    let rec = node_identity(s, r, node, false)?;
    let env = rec.environment.clone();
    let now = (s.clock)();
    // The write lock only when the timestamp is due to be signed again.
    if s.published.read().map_err(internal)?.due(&env, now) {
        let mut p = s.published.write().map_err(internal)?;
        p.refresh(&env, &s.online, now)?;
    }
    let p = s.published.read().map_err(internal)?;
    let min_version = p.current(&env).map_or(0, |c| c.version);
    // A replica serves the one `publish` wrote to the shared bucket, if there is one.
    let assignment = match &rec.classification {
        Some(c) => Some(match p.mirrored_assignment(&rec.key_id, now) {
            Some(a) => a,
            None => assignment_for(
                s,
                (&rec.name, &rec.key_id),
                (p.site(), &env),
                c,
                (min_version, now),
            )?,
        }),
        None => None,
    };
    let answer = PollAnswer {
        roots: p.roots().0.iter().map(|b| STANDARD.encode(b)).collect(),
        timestamp: p.current(&env).map(|c| STANDARD.encode(&c.timestamp)),
        assignment: assignment.map(|a| STANDARD.encode(a)),
        environment: env,
    };
    let body = serde_json::to_vec(&answer).expect("a poll answer serializes");
    let etag = format!("\"{}\"", &blake3::hash(&body).to_hex()[..32]);
    if r.headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag)]).into_response());
    }
    Ok((
        StatusCode::OK,
        [
            (header::ETAG, etag),
            (header::CONTENT_TYPE, "application/json".into()),
        ],
        body,
    )
        .into_response())
}

/// The node's assignment: the one signed last while its classification and environment
/// are the same and it is younger than 12 hours, else a new one with a higher version.
fn assignment_for(
    s: &Server,
    (node, key_id): (&str, &str),
    (site, env): (&str, &str),
    classification: &str,
    (min_version, now): (u64, u64),
) -> Result<Vec<u8>, ApiError> {
    let mut cache = s.assignments.lock().map_err(internal)?;
    // The key too: a new key that took the node's name over gets an assignment naming it.
    let from = (
        key_id.to_string(),
        classification.to_string(),
        env.to_string(),
    );
    let previous = cache.get(node);
    if let Some(a) = previous.filter(|a| a.from == from && now < a.signed + TIMESTAMP_REFRESH) {
        return Ok(a.bytes.clone());
    }
    let classified: Classified = serde_json::from_str(classification).map_err(internal)?;
    let version = previous.map_or(now, |a| now.max(a.version + 1));
    let bytes = Assignment {
        kind: "assignment".into(),
        site: site.to_string(),
        node: node.to_string(),
        node_key: Some(KeyId(key_id.to_string())),
        environment: env.to_string(),
        version,
        created: now,
        expires: now + ASSIGNMENT_LIFETIME,
        min_snapshot_version: min_version,
        classification: classified,
    }
    .seal(&s.online);
    cache.insert(
        node.to_string(),
        Signed {
            bytes: bytes.clone(),
            version,
            signed: now,
            from,
        },
    );
    Ok(bytes)
}

async fn manifest(
    State(s): State<Arc<Server>>,
    Path((node, version)): Path<(String, u64)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Received {
        method,
        uri,
        headers,
        body,
    };
    blocking(s, move |s| {
        let rec = node_identity(s, &r, &node, false)?;
        let p = s.published.read().map_err(internal)?;
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no version {version} of {}", rec.environment),
            )
        };
        if !p.lists_version(&rec.environment, version) {
            return Err(not_found());
        }
        let bytes = p
            .get(&manifest_key(&rec.environment, version), u64::MAX)?
            .ok_or_else(not_found)?;
        Ok(([(header::CONTENT_TYPE, "application/json")], bytes).into_response())
    })
    .await
}

async fn blob(
    State(s): State<Arc<Server>>,
    Path((node, hash)): Path<(String, String)>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Received {
        method,
        uri,
        headers,
        body,
    };
    blocking(s, move |s| {
        let rec = node_identity(s, &r, &node, false)?;
        let p = s.published.read().map_err(internal)?;
        let not_found = || {
            ApiError::new(
                StatusCode::NOT_FOUND,
                format!("{hash} is not a blob of environment {}", rec.environment),
            )
        };
        if !p.lists_blob(&rec.environment, &hash) {
            return Err(not_found());
        }
        let bytes = p.get(&blob_key(&hash), u64::MAX)?.ok_or_else(not_found)?;
        Ok(([(header::CONTENT_TYPE, "application/octet-stream")], bytes).into_response())
    })
    .await
}

async fn report(
    State(s): State<Arc<Server>>,
    Path(node): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Received {
        method,
        uri,
        headers,
        body,
    };
    blocking(s, move |s| {
        let rec = node_identity(s, &r, &node, true)?;
        let mut report: RunReport = serde_json::from_slice(&r.body)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e.to_string()))?;
        report.id = 0;
        report.node = rec.name;
        crate::inventory::check_steps(&report.steps)
            .and_then(|()| crate::inventory::check_labels(&report))
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, e))?;
        if report.paths.len() > MAX_REPORT_PATHS {
            report.truncated += report.paths.len() - MAX_REPORT_PATHS;
            report.paths.truncate(MAX_REPORT_PATHS);
        }
        let id = s.inventory.lock().map_err(internal)?.add_report(&report)?;
        Ok((
            StatusCode::CREATED,
            axum::Json(serde_json::json!({ "id": id })),
        )
            .into_response())
    })
    .await
}

/// The signing key (certified by the root the server trusts) that signed the request.
fn operator(s: &Server, r: &Received, write: bool) -> Result<(), ApiError> {
    let (h, p) = r.signature()?;
    let now = (s.clock)();
    let public = {
        let published = s.published.read().map_err(internal)?;
        published
            .root()
            .keys
            .iter()
            .find(|k| k.id.0 == p.key_id && k.role == Role::Signing)
            .and_then(|k| public_from_hex(&k.public))
            .ok_or_else(|| unauthorized("not a signing key of the site's root"))?
    };
    r.verify(&public, &h, now)?;
    if write {
        fresh_nonce(s, &p.key_id, &p, now)?;
    }
    Ok(())
}

/// A key of the published layout: components that are not empty, `.` or `..`.
fn layout_key(key: &str) -> Result<(), ApiError> {
    if key
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == ".." || c.len() > 255)
    {
        return Err(ApiError::new(StatusCode::BAD_REQUEST, "not an object key"));
    }
    Ok(())
}

async fn publish_get(
    State(s): State<Arc<Server>>,
    Path(key): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Received {
        method,
        uri,
        headers,
        body,
    };
    blocking(s, move |s| {
        operator(s, &r, false)?;
        layout_key(&key)?;
        let p = s.published.read().map_err(internal)?;
        if r.method == Method::HEAD {
            return Ok(if p.exists(&key)? {
                StatusCode::OK
            } else {
                StatusCode::NOT_FOUND
            }
            .into_response());
        }
        match p.get(&key, u64::MAX)? {
            Some(bytes) => Ok(bytes.into_response()),
            None => Err(ApiError::new(StatusCode::NOT_FOUND, format!("{key}: none"))),
        }
    })
    .await
}

async fn publish_put(
    State(s): State<Arc<Server>>,
    Path(key): Path<String>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let r = Received {
        method,
        uri,
        headers,
        body,
    };
    blocking(s, move |s| {
        operator(s, &r, true)?;
        layout_key(&key)?;
        let create_only = r
            .headers
            .get(header::IF_NONE_MATCH)
            .is_some_and(|v| v.as_bytes() == b"*");
        let now = (s.clock)();
        let mut p = s.published.write().map_err(internal)?;
        if p.put(&key, &r.body, create_only, &s.online, now)? {
            Ok(StatusCode::CREATED.into_response())
        } else if create_only {
            Ok(StatusCode::PRECONDITION_FAILED.into_response())
        } else {
            Ok(StatusCode::OK.into_response())
        }
    })
    .await
}
