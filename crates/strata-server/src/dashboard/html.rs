//! The dashboard's pages as HTML (maud escapes every string: whatever a node sent), no
//! JavaScript, a small inline style sheet.

use maud::{DOCTYPE, Markup, html};

use super::chart::{Series, chart, duration, mib};
use super::{Fleet, FleetQuery, NodeView};
use crate::inventory::{RunReport, Sort};

const STYLE: &str = "body{font:14px system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}
.changed{color:#0a58ca}.unchanged{color:#198754}.failed{color:#dc3545;font-weight:bold}
.would_change{color:#b8860b}.none,.pending,.revoked{color:#777}.drift,.behind{color:#dc3545}
.current{color:#198754}form.filters{margin:.5em 0 1em}
.counts span{margin-right:1.2em}code{font-size:12px}td.status a,.counts a{color:inherit}
th a{color:inherit;text-decoration:none}svg.steps{display:block;margin:.5em 0}
section{margin-bottom:1.5em}dt{font-weight:bold}";

pub(super) fn page(title: &str, body: &Markup) -> axum::response::Html<String> {
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

/// The query of a fleet's page: its filters, `page`, `sort`, `order` and `extra` (a
/// cursor), each value URL-encoded.
fn fleet_link(
    f: &Fleet,
    q: &FleetQuery,
    page: usize,
    (sort, order): (&str, &str),
    extra: &str,
) -> String {
    let mut s = format!("/?page={page}&limit={}&sort={sort}&order={order}", f.limit);
    for (k, v) in [
        ("environment", &q.environment),
        ("status", &q.status),
        ("role", &q.role),
        ("group", &q.group),
        ("revision", &q.revision),
    ] {
        if let Some(v) = super::fleet::given(v.as_ref()) {
            s.push_str(&format!("&{k}={}", urlencode(v)));
        }
    }
    s.push_str(extra);
    s
}

/// Names, each linking to the fleet filtered by it (`key`).
fn labels(key: &str, names: &[String]) -> Markup {
    html! {
        @for (i, r) in names.iter().enumerate() {
            @if i > 0 { ", " }
            a href={ "/?" (key) "=" (urlencode(r)) } { (r) }
        }
    }
}

/// The filters as a form (GET: the same query as the links).
fn filters(q: &FleetQuery, f: &Fleet) -> Markup {
    let field = |name: &str, v: &Option<String>| {
        html! { label { (name) " " input type="text" name=(name) size="10" value=(v.as_deref().unwrap_or_default()); } " " }
    };
    html! {
        form.filters method="get" action="/" {
            (field("environment", &q.environment)) (field("status", &q.status))
            (field("role", &q.role)) (field("group", &q.group))
            label { "revision " select name="revision" {
                @for r in ["", "behind", "current"] {
                    option value=(r) selected[q.revision.as_deref().unwrap_or_default() == r] { (r) }
                }
            } } " "
            input type="hidden" name="sort" value=(f.sort);
            input type="hidden" name="order" value=(f.order);
            input type="hidden" name="limit" value=(f.limit);
            button type="submit" { "filter" }
        }
    }
}

pub(super) fn fleet(f: &Fleet, q: &FleetQuery, now: u64) -> Markup {
    let pages = f.total.div_ceil(f.limit).max(1);
    let here = (f.sort.as_str(), f.order.as_str());
    // A column's header sorts by it, ascending; the column sorted by, the other way.
    let header = |label: &str, sort: Sort| {
        let here = f.sort == sort.as_str();
        let up = f.order == "asc";
        let order = if here && up { "desc" } else { "asc" };
        let aria = match (here, up) {
            (false, _) => "none",
            (true, true) => "ascending",
            (true, false) => "descending",
        };
        html! {
            th aria-sort=(aria) data-sort=(sort.as_str()) {
                a href=(fleet_link(f, q, 1, (sort.as_str(), order), "")) { (label)
                    @if here { @if up { " ▲" } @else { " ▼" } } }
            }
        }
    };
    // The next and previous pages seek from a cursor (no OFFSET scan); the first page
    // is its own link.
    let next = f
        .next
        .as_ref()
        .map(|c| fleet_link(f, q, f.page + 1, here, &format!("&after={c}")));
    let prev = f.prev.as_ref().map(|c| {
        let extra = if f.page <= 2 {
            String::new()
        } else {
            format!("&before={c}")
        };
        fleet_link(f, q, f.page.saturating_sub(1).max(1), here, &extra)
    });
    html! {
        h1 { "Fleet" }
        p.counts {
            @for (status, n) in &f.counts {
                span class=(status) { a href={ "/?status=" (urlencode(status)) } { (status) } ": " strong { (n) } }
            }
            @for (r, n) in &f.revisions {
                span class=(r) { a href={ "/?revision=" (urlencode(r)) } { (r) } ": " strong { (n) } }
            }
        }
        (filters(q, f))
        table id="nodes" {
            thead { tr { (header("node", Sort::Name)) (header("environment", Sort::Environment))
                th { "roles" } th { "groups" }
                (header("last result", Sort::Status)) (header("revision", Sort::Revision))
                th { "drift" } (header("last report", Sort::Last)) } }
            tbody {
                @for n in &f.nodes {
                    tr.node data-node=(n.name) data-status=(n.status) {
                        td { a href={ "/nodes/" (urlencode(&n.name)) } { (n.name) } }
                        td { (n.environment) }
                        td.roles { (labels("role", &n.roles)) }
                        td.groups { (labels("group", &n.groups)) }
                        td.status class=(n.status) {
                            @if let Some(l) = &n.last {
                                a href={ "/runs/" (l.id) } { (n.status) }
                            } @else { (n.status) }
                        }
                        @if let Some(l) = &n.last {
                            td.revision { code { (short(&l.revision)) }
                                @match n.behind {
                                    Some(true) => { " " span.behind { "behind" } }
                                    Some(false) => { " " span.current { "current" } }
                                    None => {}
                                }
                            }
                            td { @if l.drift { "drift" } }
                            td { (ago(now, l.time)) " ago" }
                        } @else { td.revision {} td {} td { "never" } }
                    }
                }
            }
        }
        p { "page " (f.page) " of " (pages) " (" (f.total) " nodes) "
            @if let Some(prev) = prev { a rel="prev" href=(prev) { "previous" } " " }
            @if let Some(next) = next { a rel="next" href=(next) { "next" } } }
    }
}

pub(super) fn node(v: &NodeView, now: u64) -> Markup {
    let name = urlencode(&v.node.name);
    let latest = v.runs.first();
    html! {
        h1 { "Node " (v.node.name) }
        p { "environment " (v.node.environment) ", " (v.node.state.as_str())
            ", key " code { (v.node.key_id) } }
        section id="facts" {
            h2 { "Facts" }
            @if v.facts.is_empty() { p { "No facts were sent." } } @else {
                dl { @for f in &v.facts { dt { (f.name) } dd { (f.value) } } }
            }
        }
        section id="hardware" {
            h2 { "Hardware" }
            @if let Some(h) = &v.hardware {
                dl {
                    dt { "machine" } dd { code { (h.machine) } }
                    dt { "profile" } dd { (h.profile) }
                    @if let Some(r) = &h.role { dt { "role" } dd { (r) } }
                    @for (k, val) in &h.vars { dt { "hw." (k) } dd { (val) } }
                }
                @if !h.pools.is_empty() {
                    table id="pools" {
                        thead { tr { th { "pool" } th { "entry" } } }
                        tbody { @for (pool, entry) in &h.pools {
                            tr.pool { td { (pool) } td {
                                @for (k, val) in entry { code { (k) "=" (val) } " " }
                            } }
                        } }
                    }
                }
            } @else { p { "Not classified by a hardware profile." } }
        }
        section id="drift" {
            h2 { "Drift" }
            p { @if v.drift.last { span.drift { "The last run found drift. " } }
                (v.drift.runs) " runs found drift"
                @if let Some((id, t)) = v.drift.latest {
                    ", the latest " a href={ "/runs/" (id) } { "run " (id) } " " (ago(now, t)) " ago"
                } "." }
        }
        section id="timings" {
            h2 { "Time per step" }
            @if let [a, b] = &v.compare[..] {
                p { "Run " a href={ "/runs/" (a.id) } { (a.id) } " against run "
                    a href={ "/runs/" (b.id) } { (b.id) } ". "
                    a href={ "/nodes/" (name) } { "the last run only" } }
                (chart(&[Series { run: a.id, steps: &a.steps }, Series { run: b.id, steps: &b.steps }]))
            } @else if let Some(r) = latest {
                p { "The last run, " a href={ "/runs/" (r.id) } { (r.id) } "; "
                    "\"compare\" in the runs below charts another beside it." }
                (chart(&[Series { run: r.id, steps: &r.steps }]))
            } @else { p { "No runs yet." } }
        }
        section id="changes" {
            h2 { "Last run's changes" }
            @if let Some(r) = latest { (paths(r)) } @else { p { "No runs yet." } }
        }
        section id="generations" {
            h2 { "Generations" }
            table {
                thead { tr { th { "generation" } th { "revision" } th { "version" } th { "run" }
                    th { "ended" } } }
                tbody { @for g in &v.generations {
                    tr.generation data-generation=(g.generation) {
                        td { (g.generation) } td { code { (short(&g.revision)) } }
                        td { (g.version) } td { a href={ "/runs/" (g.run) } { (g.run) } }
                        td { (ago(now, g.time)) " ago" }
                    }
                } }
            }
        }
        section {
            h2 { "Last runs" }
            table id="runs" {
                thead { tr { th { "run" } th { "result" } th { "revision" } th { "changes" }
                    th { "generation" } th { "time" } th { "ended" } th {} } }
                tbody {
                    @for r in &v.runs {
                        tr.run {
                            td { a href={ "/runs/" (r.id) } { (r.id) } }
                            td class=(r.result) { (r.result) @if r.drift { " (drift)" } }
                            td { code { (short(&r.revision)) } }
                            td { (r.changes) }
                            td { @if let Some(g) = r.generation { (g) } }
                            td { @if !r.steps.is_empty() {
                                (duration(r.steps.iter().map(|s| s.wall_us).fold(0, u64::saturating_add)))
                            } }
                            td { (ago(now, r.time)) " ago" }
                            td { @if let Some(l) = latest.filter(|l| l.id != r.id) {
                                a.compare href={ "/nodes/" (name) "?compare=" (l.id) "," (r.id) } {
                                    "compare" }
                            } }
                        }
                    }
                }
            }
        }
    }
}

/// A run's changed paths: kind and path, sensitive ones said to be (never contents).
fn paths(r: &RunReport) -> Markup {
    html! {
        p { (r.changes) " changed paths" @if r.truncated > 0 { " (" (r.truncated) " not kept)" } }
        ul id="paths" {
            @for p in &r.paths {
                li.path data-sensitive=(p.sensitive) { (p.kind) " " code { (p.path) }
                    @if p.sensitive { " " em.sensitive { "(sensitive: content not shown)" } } }
            }
        }
    }
}

pub(super) fn run(r: &RunReport) -> Markup {
    html! {
        h1 { "Run " (r.id) " of " a href={ "/nodes/" (urlencode(&r.node)) } { (r.node) } }
        p class={ "status " (r.result) } { (r.result) @if r.drift { " (drift)" } }
        dl {
            dt { "environment" } dd { (r.environment) }
            dt { "revision" } dd { code { (r.revision) } " (version " (r.version) ")" }
            @if let Some(g) = r.generation { dt { "generation" } dd { (g) } }
            @if let Some(e) = &r.error { dt { "error" } dd.failed { (e) } }
            @if let Some(n) = &r.note { dt { "note" } dd { (n) } }
        }
        h2 { "Time per step" }
        (chart(&[Series { run: r.id, steps: &r.steps }]))
        @if !r.steps.is_empty() {
            table id="steps" {
                thead { tr { th { "step" } th { "wall time" } th { "peak RSS" } } }
                tbody { @for s in &r.steps {
                    tr.step { td { (s.name) } td { (duration(s.wall_us)) } td { (mib(s.max_rss)) } }
                } }
            }
        }
        h2 { "Changes" }
        (paths(r))
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
