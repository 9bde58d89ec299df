//! The fleet's list (`/`, `/api/nodes`): what a request may ask, checked before the
//! inventory sees it, and the page it answers, with the cursors of the pages beside it.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};

use super::{DEFAULT_LIMIT, MAX_LIMIT, bad_request};
use crate::app::{ApiError, Server, internal};
use crate::inventory::{self, Cursor, Key, LastRun, MAX_FILTER, Revision, Sort};

/// The longest cursor taken, in bytes (a name and a sort key, encoded).
const MAX_CURSOR: usize = 1024;

/// `?page=` (from 1), `?limit=` (capped at [`MAX_LIMIT`]), `?environment=`, `?status=`,
/// `?role=`, `?group=`, `?revision=` (`behind`, `current`), `?sort=` (a column of
/// [`Sort::ALL`]), `?order=` (`asc`, `desc`), and `?after=` or `?before=` (a cursor).
#[derive(Debug, Default, Clone, Deserialize)]
pub struct FleetQuery {
    /// The page, from 1 (with a cursor, only the number shown).
    pub page: Option<usize>,
    /// Rows per page.
    pub limit: Option<usize>,
    /// Only nodes in this environment.
    pub environment: Option<String>,
    /// Only nodes whose status is this: a last run's result, or `none`, `pending`,
    /// `revoked`.
    pub status: Option<String>,
    /// Only nodes whose last report naming roles named this one.
    pub role: Option<String>,
    /// Only nodes whose last report naming groups named this one.
    pub group: Option<String>,
    /// `behind` or `current`: only nodes whose last run's revision differs from, or is,
    /// the one published for their environment now.
    pub revision: Option<String>,
    /// The column to sort by (default `name`).
    pub sort: Option<String>,
    /// `asc` (default) or `desc`.
    pub order: Option<String>,
    /// The page after this cursor (a `next` of an earlier answer).
    pub after: Option<String>,
    /// The page before this cursor (a `prev` of an earlier answer).
    pub before: Option<String>,
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
    /// Its roles, as its last report naming any did.
    pub roles: Vec<String>,
    /// Its groups, as that report named them.
    pub groups: Vec<String>,
    /// Whether its last run's revision differs from the one published for its
    /// environment now (null without a run or with nothing published for it).
    pub behind: Option<bool>,
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
    /// The column sorted by.
    pub sort: String,
    /// `asc` or `desc`.
    pub order: String,
    /// Nodes by status, over the whole fleet (filters not applied).
    pub counts: BTreeMap<String, usize>,
    /// Nodes `behind` and `current`, over the whole fleet (filters not applied).
    pub revisions: BTreeMap<String, usize>,
    /// This page's rows, in the order asked.
    pub nodes: Vec<FleetRow>,
    /// `?after=` of the next page, if there is one.
    pub next: Option<String>,
    /// `?before=` of the previous page, if there is one.
    pub prev: Option<String>,
}

/// The cursor of a row in `sort`'s order: `[sort, key, name]` as JSON, base64url.
pub fn cursor(sort: Sort, key: &Key, name: &str) -> String {
    let json = serde_json::to_vec(&(sort.as_str(), key, name)).expect("a cursor serializes");
    URL_SAFE_NO_PAD.encode(json)
}

/// The cursor of `?after=` or `?before=` (`what`), if it is one of `sort`'s.
fn parse_cursor(what: &str, text: &str, sort: Sort, before: bool) -> Result<Cursor, ApiError> {
    let bad = || {
        bad_request(format!(
            "{what}: not a cursor of this list sorted by {}",
            sort.as_str()
        ))
    };
    if text.len() > MAX_CURSOR {
        return Err(bad());
    }
    let bytes = URL_SAFE_NO_PAD.decode(text).map_err(|_| bad())?;
    let (s, key, name): (String, Key, String) =
        serde_json::from_slice(&bytes).map_err(|_| bad())?;
    if s != sort.as_str() || !sort.takes(&key) {
        return Err(bad());
    }
    Ok(Cursor { key, name, before })
}

/// A filter's value; an empty one (a field of the page's form left blank) filters
/// nothing.
pub(super) fn given(v: Option<&String>) -> Option<&str> {
    v.map(String::as_str).filter(|v| !v.is_empty())
}

/// A filter's text, if short enough.
fn filter<'a>(what: &str, v: Option<&'a String>) -> Result<Option<&'a str>, ApiError> {
    match given(v) {
        Some(v) if v.len() > MAX_FILTER => {
            Err(bad_request(format!("{what}: at most {MAX_FILTER} bytes")))
        }
        v => Ok(v),
    }
}

/// The fleet's page asked for, paged and filtered by the inventory.
pub fn fleet(s: &Server, q: &FleetQuery) -> Result<Fleet, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let page = q.page.unwrap_or(1).clamp(1, 1 << 30);
    let sort = match q.sort.as_deref() {
        None => Sort::Name,
        Some(name) => Sort::parse(name).ok_or_else(|| {
            let names: Vec<&str> = Sort::ALL.iter().map(|(n, _)| *n).collect();
            bad_request(format!("sort: one of {}", names.join(", ")))
        })?,
    };
    let descending = match q.order.as_deref() {
        None | Some("asc") => false,
        Some("desc") => true,
        Some(_) => return Err(bad_request("order: asc or desc")),
    };
    for (what, name) in [("role", &q.role), ("group", &q.group)] {
        if let Some(name) = given(name.as_ref()) {
            inventory::check_label(name).map_err(|e| bad_request(format!("{what}: {e}")))?;
        }
    }
    let revision = match given(q.revision.as_ref()) {
        None => None,
        Some(r) => {
            Some(Revision::parse(r).ok_or_else(|| bad_request("revision: behind or current"))?)
        }
    };
    let seek = match (&q.after, &q.before) {
        (Some(_), Some(_)) => return Err(bad_request("after and before: one or the other")),
        (Some(c), None) => Some(parse_cursor("after", c, sort, false)?),
        (None, Some(c)) => Some(parse_cursor("before", c, sort, true)?),
        (None, None) => None,
    };
    let published = s.published.read().map_err(internal)?.revisions();
    let asked = inventory::FleetQuery {
        environment: filter("environment", q.environment.as_ref())?,
        status: filter("status", q.status.as_ref())?,
        role: given(q.role.as_ref()),
        group: given(q.group.as_ref()),
        revision,
        published: &published,
        sort,
        descending,
        offset: (page - 1).saturating_mul(limit),
        cursor: seek.clone(),
        limit,
    };
    let now = (s.clock)();
    let f = s.inventory.lock().map_err(internal)?.fleet(&asked, now)?;
    let at = |n: Option<&inventory::NodeSummary>| n.map(|n| cursor(sort, &sort.key(n), &n.name));
    let (first, last) = (at(f.nodes.first()), at(f.nodes.last()));
    let (next, prev) = match &seek {
        None => (last.filter(|_| f.more), first.filter(|_| page > 1)),
        Some(c) if c.before => (last, first.filter(|_| f.more)),
        Some(_) => (last.filter(|_| f.more), first),
    };
    let nodes = f
        .nodes
        .into_iter()
        .map(|n| FleetRow {
            name: n.name,
            state: n.state.as_str().into(),
            environment: n.environment,
            status: n.status,
            last: n.last,
            roles: n.roles,
            groups: n.groups,
            behind: n.behind,
        })
        .collect();
    Ok(Fleet {
        total: f.total,
        page,
        limit,
        sort: sort.as_str().into(),
        order: if descending { "desc" } else { "asc" }.into(),
        counts: f.counts,
        revisions: f.revisions,
        nodes,
        next,
        prev,
    })
}
