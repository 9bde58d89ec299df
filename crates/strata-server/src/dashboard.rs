//! The operators' side of `serve` (FLEET.md, "Dashboard and operator API"): the fleet,
//! a node and a run as server-rendered HTML (`/`, `/nodes/NODE`, `/runs/ID`, no
//! JavaScript) and the same data as JSON (`/api/nodes`, `/api/nodes/NODE`,
//! `/api/runs/ID`).
//!
//! Every route needs `Authorization: Bearer TOKEN`, a token `strata operators add`
//! printed and the inventory keeps hashed, or (reads only) the session cookie a browser
//! gets for `/?token=CODE`, a single-use code from `strata operators login`; anything
//! else, a node's signature included, is 401. Every answer carries `Referrer-Policy: no-referrer` and `Cache-Control:
//! no-store`; strings that came from nodes are escaped by maud.

use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::{Deserialize, Serialize};

use crate::app::{Answer, ApiError, Limits, Server, blocking, internal, token_hash};
pub use crate::inventory::{LastRun, Sort};
use crate::inventory::{NodeRecord, RunReport};
use crate::listen::ClientCert;

mod chart;
mod fleet;
mod html;
mod node;

pub use chart::{Series, chart};
pub use fleet::{Fleet, FleetQuery, FleetRow, cursor, fleet};
pub use node::{Drift, Fact, GENERATIONS, Generation, drift, facts_summary, generations};

/// The most rows a page or `/api/nodes` answers with, whatever `limit` asks.
pub const MAX_LIMIT: usize = 500;
/// How long a sign-in code from `strata operators login` may be used, in seconds.
pub const LOGIN_TTL: u64 = 300;
/// How long a browser's session lasts, in seconds.
pub const SESSION_TTL: u64 = 8 * 3600;
/// The session cookie's name (`__Host-`: only from this host, path `/`).
pub const SESSION_COOKIE: &str = "__Host-strata-session";

/// Rows per page when `limit` is not given.
pub const DEFAULT_LIMIT: usize = 100;
/// The runs a node's page and `/api/nodes/NODE` show, newest first.
pub const NODE_RUNS: usize = 20;

/// The routes, each behind an operator's bearer token.
pub(crate) fn routes(limits: &Limits) -> Router<Arc<Server>> {
    Router::new()
        .route("/", get(fleet_page))
        .route("/nodes/{node}", get(node_page))
        .route("/runs/{id}", get(run_page))
        .route("/api/nodes", get(fleet_json))
        .route("/api/nodes/{node}", get(node_json))
        .route("/api/runs/{id}", get(run_json))
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            limits.timeout,
        ))
        .layer(axum::middleware::from_fn(no_referrer))
}

async fn no_referrer(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if r.status() == StatusCode::UNAUTHORIZED {
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"strata\""),
        );
    }
    r
}

fn refused() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "an operator's bearer token is needed",
    )
}

/// Who asks: a request's headers and the client certificate its connection showed.
struct Asker {
    headers: HeaderMap,
    cert: Option<ClientCert>,
}

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Asker {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Asker, Self::Rejection> {
        Ok(Asker {
            headers: parts.headers.clone(),
            cert: parts.extensions.get::<ClientCert>().cloned(),
        })
    }
}

/// The operator a request's bearer token names, else the one its client certificate
/// (checked against `--operator-ca` in the handshake) is bound to, else its session
/// cookie's (every route here only reads), else 401 (a node's signature is not looked
/// at: node keys never open these routes).
fn operator(s: &Server, asker: &Asker) -> Result<String, ApiError> {
    let headers = &asker.headers;
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty() && t.len() <= 200);
    let mut inv = s.inventory.lock().map_err(internal)?;
    if let Some(token) = bearer {
        return inv.operator(&token_hash(token))?.ok_or_else(refused);
    }
    if let Some(ClientCert(fingerprint)) = &asker.cert
        && let Some(name) = inv.operator_by_cert(fingerprint)?
    {
        return Ok(name);
    }
    let session = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().split_once('='))
        .find(|(k, _)| *k == SESSION_COOKIE)
        .map(|(_, v)| v)
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .ok_or_else(refused)?;
    inv.session(&token_hash(session), (s.clock)())?
        .ok_or_else(refused)
}

/// `/?token=CODE`: uses the code once and answers with a session cookie and a
/// redirect to `/` without the code.
fn sign_in(s: &Server, code: &str, tls: bool) -> Answer {
    let now = (s.clock)();
    let mut inv = s.inventory.lock().map_err(internal)?;
    let name = inv
        .redeem_login(&token_hash(code), now)?
        .ok_or_else(refused)?;
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(internal)?;
    let secret = strata_types::hex(&secret);
    if !inv.add_operator_code(&token_hash(&secret), &name, true, now + SESSION_TTL)? {
        return Err(refused());
    }
    let cookie = format!(
        "{SESSION_COOKIE}={secret}; Path=/; Max-Age={SESSION_TTL}; HttpOnly; SameSite=Strict{}",
        if tls { "; Secure" } else { "" }
    );
    Ok((
        StatusCode::SEE_OTHER,
        [
            (header::LOCATION, "/".to_string()),
            (header::SET_COOKIE, cookie),
        ],
    )
        .into_response())
}

/// `?compare=ID1,ID2`: two of the node's runs whose steps the page charts side by side.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct NodeQuery {
    /// Two run ids, comma-separated.
    pub compare: Option<String>,
}

/// `/api/nodes/NODE`: a node, what its reports say of it, and its last runs, newest
/// first.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// The node.
    pub node: NodeRecord,
    /// Its facts, summed up (from what it sent when it enrolled).
    pub facts: Vec<Fact>,
    /// Its hardware profile and pool entries, if the site classified it.
    pub hardware: Option<strata_snapshot::Classified>,
    /// The generations its reports recorded, newest first, at most [`GENERATIONS`].
    pub generations: Vec<Generation>,
    /// The drift its reports found.
    pub drift: Drift,
    /// Its last [`NODE_RUNS`] runs, newest first.
    pub runs: Vec<RunReport>,
    /// The two runs `?compare=` asked for, in its order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub compare: Vec<RunReport>,
}

fn bad_request(why: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, why)
}

/// The two run ids of `?compare=ID1,ID2`.
fn compared(q: &NodeQuery) -> Result<Option<[i64; 2]>, ApiError> {
    let Some(text) = &q.compare else {
        return Ok(None);
    };
    let ids: Vec<i64> = text
        .split(',')
        .map(|id| id.trim().parse())
        .collect::<Result<_, _>>()
        .map_err(|_| bad_request("compare: two run ids, ID1,ID2"))?;
    match ids[..] {
        [a, b] => Ok(Some([a, b])),
        _ => Err(bad_request("compare: two run ids, ID1,ID2")),
    }
}

fn node_view(s: &Server, name: &str, q: &NodeQuery) -> Result<NodeView, ApiError> {
    let ids = compared(q)?;
    let mut inv = s.inventory.lock().map_err(internal)?;
    let node = inv
        .node(name)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such node"))?;
    let all = inv.reports(Some(name))?;
    drop(inv);
    let mut compare = Vec::new();
    for id in ids.into_iter().flatten() {
        let run = all.iter().find(|r| r.id == id).ok_or_else(|| {
            ApiError::new(StatusCode::NOT_FOUND, format!("no run {id} of this node"))
        })?;
        compare.push(run.clone());
    }
    let runs: Vec<RunReport> = all.iter().rev().take(NODE_RUNS).cloned().collect();
    Ok(NodeView {
        facts: facts_summary(&node.facts),
        hardware: node
            .classification
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok()),
        generations: generations(&all),
        drift: drift(&all),
        node,
        runs,
        compare,
    })
}

fn run(s: &Server, id: i64) -> Result<RunReport, ApiError> {
    let mut inv = s.inventory.lock().map_err(internal)?;
    inv.report(id)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such run"))
}

fn json<T: Serialize>(v: &T) -> Answer {
    Ok(axum::Json(v).into_response())
}

async fn fleet_json(
    State(s): State<Arc<Server>>,
    asker: Asker,
    Query(q): Query<FleetQuery>,
) -> Response {
    blocking(s, move |s| {
        operator(s, &asker)?;
        json(&fleet(s, &q)?)
    })
    .await
}

async fn node_json(
    State(s): State<Arc<Server>>,
    asker: Asker,
    Path(node): Path<String>,
    Query(q): Query<NodeQuery>,
) -> Response {
    blocking(s, move |s| {
        operator(s, &asker)?;
        json(&node_view(s, &node, &q)?)
    })
    .await
}

async fn run_json(State(s): State<Arc<Server>>, asker: Asker, Path(id): Path<i64>) -> Response {
    blocking(s, move |s| {
        operator(s, &asker)?;
        json(&run(s, id)?)
    })
    .await
}

async fn fleet_page(
    State(s): State<Arc<Server>>,
    asker: Asker,
    tls: Option<axum::Extension<crate::listen::Tls>>,
    Query(q): Query<FleetQuery>,
) -> Response {
    let tls = tls.is_some_and(|t| t.0.0);
    blocking(s, move |s| {
        if let Some(code) = &q.token {
            return sign_in(s, code, tls);
        }
        operator(s, &asker)?;
        let f = fleet(s, &q)?;
        Ok(html::page("strata: fleet", &html::fleet(&f, &q, (s.clock)())).into_response())
    })
    .await
}

async fn node_page(
    State(s): State<Arc<Server>>,
    asker: Asker,
    Path(node): Path<String>,
    Query(q): Query<NodeQuery>,
) -> Response {
    blocking(s, move |s| {
        operator(s, &asker)?;
        let v = node_view(s, &node, &q)?;
        Ok(html::page("strata: node", &html::node(&v, (s.clock)())).into_response())
    })
    .await
}

async fn run_page(State(s): State<Arc<Server>>, asker: Asker, Path(id): Path<i64>) -> Response {
    blocking(s, move |s| {
        operator(s, &asker)?;
        let r = run(s, id)?;
        Ok(html::page("strata: run", &html::run(&r)).into_response())
    })
    .await
}
