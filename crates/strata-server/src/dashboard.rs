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

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{DOCTYPE, Markup, html};
use serde::{Deserialize, Serialize};

use crate::app::{Answer, ApiError, Limits, Server, blocking, internal, token_hash};
pub use crate::inventory::LastRun;
use crate::inventory::{self, NodeRecord, RunReport};

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

/// The operator a request's bearer token names, else its session cookie's (every route
/// here only reads), else 401 (a node's signature is not looked at: node keys never
/// open these routes).
fn operator(s: &Server, headers: &HeaderMap) -> Result<String, ApiError> {
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

/// `?page=` (from 1), `?limit=` (capped at [`MAX_LIMIT`]), `?environment=`, `?status=`.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct FleetQuery {
    /// The page, from 1.
    pub page: Option<usize>,
    /// Rows per page.
    pub limit: Option<usize>,
    /// Only nodes in this environment.
    pub environment: Option<String>,
    /// Only nodes whose status is this: a last run's result, or `none`, `pending`,
    /// `revoked`.
    pub status: Option<String>,
    /// A sign-in code (`/` only).
    pub token: Option<String>,
}

/// One node in the fleet's list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FleetRow {
    /// Its name.
    pub name: String,
    /// `pending`, `accepted` or `revoked`.
    pub state: String,
    /// Its environment.
    pub environment: String,
    /// The last run's result, `none` before a first report, else the state when it is
    /// not accepted.
    pub status: String,
    /// Its last run, if it reported one.
    pub last: Option<LastRun>,
}

/// `/api/nodes`: one page of the fleet.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fleet {
    /// Nodes past the filters, on every page.
    pub total: usize,
    /// This page, from 1.
    pub page: usize,
    /// Rows per page.
    pub limit: usize,
    /// Nodes by status, over the whole fleet (filters not applied).
    pub counts: BTreeMap<String, usize>,
    /// This page's rows, by name.
    pub nodes: Vec<FleetRow>,
}

/// `/api/nodes/NODE`: a node and its last runs, newest first.
#[derive(Debug, Clone, Serialize)]
pub struct NodeView {
    /// The node.
    pub node: NodeRecord,
    /// Its last [`NODE_RUNS`] runs, newest first.
    pub runs: Vec<RunReport>,
}

/// The fleet's page asked for, paged and filtered by the inventory.
pub fn fleet(s: &Server, q: &FleetQuery) -> Result<Fleet, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let page = q.page.unwrap_or(1).clamp(1, 1 << 30);
    let asked = inventory::FleetQuery {
        environment: q.environment.as_deref(),
        status: q.status.as_deref(),
        offset: (page - 1).saturating_mul(limit),
        limit,
    };
    let now = (s.clock)();
    let f = s.inventory.lock().map_err(internal)?.fleet(&asked, now)?;
    let nodes = f
        .nodes
        .into_iter()
        .map(|n| FleetRow {
            name: n.name,
            state: n.state.as_str().into(),
            environment: n.environment,
            status: n.status,
            last: n.last,
        })
        .collect();
    Ok(Fleet {
        total: f.total,
        page,
        limit,
        counts: f.counts,
        nodes,
    })
}

fn node_view(s: &Server, name: &str) -> Result<NodeView, ApiError> {
    let mut inv = s.inventory.lock().map_err(internal)?;
    let node = inv
        .node(name)?
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, "no such node"))?;
    let mut runs = inv.reports(Some(name))?;
    runs.reverse();
    runs.truncate(NODE_RUNS);
    Ok(NodeView { node, runs })
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
    headers: HeaderMap,
    Query(q): Query<FleetQuery>,
) -> Response {
    blocking(s, move |s| {
        operator(s, &headers)?;
        json(&fleet(s, &q)?)
    })
    .await
}

async fn node_json(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Response {
    blocking(s, move |s| {
        operator(s, &headers)?;
        json(&node_view(s, &node)?)
    })
    .await
}

async fn run_json(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    blocking(s, move |s| {
        operator(s, &headers)?;
        json(&run(s, id)?)
    })
    .await
}

async fn fleet_page(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    tls: Option<axum::Extension<crate::listen::Tls>>,
    Query(q): Query<FleetQuery>,
) -> Response {
    let tls = tls.is_some_and(|t| t.0.0);
    blocking(s, move |s| {
        if let Some(code) = &q.token {
            return sign_in(s, code, tls);
        }
        operator(s, &headers)?;
        let f = fleet(s, &q)?;
        Ok(page("strata: fleet", &fleet_html(&f, &q, (s.clock)())).into_response())
    })
    .await
}

async fn node_page(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Path(node): Path<String>,
) -> Response {
    blocking(s, move |s| {
        operator(s, &headers)?;
        let v = node_view(s, &node)?;
        Ok(page("strata: node", &node_html(&v, (s.clock)())).into_response())
    })
    .await
}

async fn run_page(
    State(s): State<Arc<Server>>,
    headers: HeaderMap,
    Path(id): Path<i64>,
) -> Response {
    blocking(s, move |s| {
        operator(s, &headers)?;
        let r = run(s, id)?;
        Ok(page("strata: run", &run_html(&r)).into_response())
    })
    .await
}

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}
.changed{color:#0a58ca}.unchanged{color:#198754}.failed{color:#dc3545;font-weight:bold}
.would_change{color:#b8860b}.none,.pending,.revoked{color:#777}
.counts span{margin-right:1.2em}code{font-size:12px}td.status a{color:inherit}";

fn page(title: &str, body: &Markup) -> axum::response::Html<String> {
    let m = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="referrer" content="no-referrer";
                title { (title) }
                style { (maud::PreEscaped(STYLE)) }
            }
            body {
                nav { a href="/" { "fleet" } }
                (body)
            }
        }
    };
    axum::response::Html(m.into_string())
}

/// `42 s`, `5 min`, `3 h`, `2 d`.
fn ago(now: u64, then: u64) -> String {
    let d = now.saturating_sub(then);
    match d {
        0..60 => format!("{d} s"),
        60..3600 => format!("{} min", d / 60),
        3600..86400 => format!("{} h", d / 3600),
        _ => format!("{} d", d / 86400),
    }
}

fn fleet_html(f: &Fleet, q: &FleetQuery, now: u64) -> Markup {
    let pages = f.total.div_ceil(f.limit).max(1);
    let link = |page: usize| {
        let mut s = format!("/?page={page}&limit={}", f.limit);
        for (k, v) in [("environment", &q.environment), ("status", &q.status)] {
            if let Some(v) = v {
                s.push_str(&format!("&{k}={}", urlencode(v)));
            }
        }
        s
    };
    html! {
        h1 { "Fleet" }
        p.counts {
            @for (status, n) in &f.counts {
                span class=(status) { (status) ": " strong { (n) } }
            }
        }
        table id="nodes" {
            thead { tr { th { "node" } th { "environment" } th { "last result" }
                th { "revision" } th { "drift" } th { "last report" } } }
            tbody {
                @for n in &f.nodes {
                    tr.node data-node=(n.name) data-status=(n.status) {
                        td { a href={ "/nodes/" (urlencode(&n.name)) } { (n.name) } }
                        td { (n.environment) }
                        td.status class=(n.status) {
                            @if let Some(l) = &n.last {
                                a href={ "/runs/" (l.id) } { (n.status) }
                            } @else { (n.status) }
                        }
                        @if let Some(l) = &n.last {
                            td { code { (short(&l.revision)) } }
                            td { @if l.drift { "drift" } }
                            td { (ago(now, l.time)) " ago" }
                        } @else { td {} td {} td { "never" } }
                    }
                }
            }
        }
        p { "page " (f.page) " of " (pages) " (" (f.total) " nodes) "
            @if f.page > 1 { a href=(link(f.page - 1)) { "previous" } " " }
            @if f.page < pages { a href=(link(f.page + 1)) { "next" } } }
    }
}

fn node_html(v: &NodeView, now: u64) -> Markup {
    html! {
        h1 { "Node " (v.node.name) }
        p { "environment " (v.node.environment) ", " (v.node.state.as_str())
            ", key " code { (v.node.key_id) } }
        h2 { "Last runs" }
        table id="runs" {
            thead { tr { th { "run" } th { "result" } th { "revision" } th { "changes" }
                th { "generation" } th { "ended" } } }
            tbody {
                @for r in &v.runs {
                    tr.run {
                        td { a href={ "/runs/" (r.id) } { (r.id) } }
                        td class=(r.result) { (r.result) @if r.drift { " (drift)" } }
                        td { code { (short(&r.revision)) } }
                        td { (r.changes) }
                        td { @if let Some(g) = r.generation { (g) } }
                        td { (ago(now, r.time)) " ago" }
                    }
                }
            }
        }
    }
}

fn run_html(r: &RunReport) -> Markup {
    html! {
        h1 { "Run " (r.id) " of " a href={ "/nodes/" (urlencode(&r.node)) } { (r.node) } }
        p.status class=(r.result) { (r.result) @if r.drift { " (drift)" } }
        dl {
            dt { "environment" } dd { (r.environment) }
            dt { "revision" } dd { code { (r.revision) } " (version " (r.version) ")" }
            @if let Some(g) = r.generation { dt { "generation" } dd { (g) } }
            @if let Some(e) = &r.error { dt { "error" } dd.failed { (e) } }
            @if let Some(n) = &r.note { dt { "note" } dd { (n) } }
        }
        h2 { (r.changes) " changed paths" @if r.truncated > 0 { " (" (r.truncated) " not kept)" } }
        ul id="paths" {
            @for p in &r.paths {
                li.path { (p.kind) " " code { (p.path) } @if p.sensitive { " (sensitive)" } }
            }
        }
    }
}

/// A revision's first 12 hex digits, after its `blake3:` prefix.
fn short(revision: &str) -> &str {
    let digits = revision.find(':').map_or(0, |i| i + 1);
    revision.get(..digits + 12).unwrap_or(revision)
}

/// Percent-encodes everything but unreserved characters, for a path segment or a query
/// value.
fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ago_rounds_down_to_its_unit() {
        assert_eq!(ago(100, 58), "42 s");
        assert_eq!(ago(4000, 100), "1 h");
        assert_eq!(ago(10, 20), "0 s");
    }

    #[test]
    fn urlencode_leaves_no_markup() {
        assert_eq!(urlencode("a<b>/c d"), "a%3Cb%3E%2Fc%20d");
    }
}
