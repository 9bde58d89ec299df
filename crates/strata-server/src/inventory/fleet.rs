//! The fleet's page in the inventory (docs/dashboard.md), the same SQL for both stores:
//! what a node's row keeps of its last report (result, revision, time, roles, groups),
//! the table its roles and groups are looked up in, the indexes each sort seeks in, and
//! the statements of one page. Whatever a request sent is bound as a parameter: the
//! text of a statement is made only of the fixed pieces below and placeholders.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{NodeState, RunReport};

/// The most roles, or groups, a report may carry.
pub const MAX_LABELS: usize = 64;
/// The longest role or group name a report or a filter may carry, in bytes.
pub const MAX_LABEL: usize = 128;
/// The longest `?environment=` or `?status=` a filter may carry, in bytes.
pub const MAX_FILTER: usize = 128;

/// Why `name` cannot be a role or group name: 1 to [`MAX_LABEL`] bytes of ASCII
/// letters, digits and `-_.@` (so no comma, the delimiter kept on the node's row).
pub fn check_label(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > MAX_LABEL
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.@".contains(&b))
    {
        return Err(format!(
            "a role or group name must be 1 to {MAX_LABEL} bytes of letters, digits and -_.@"
        ));
    }
    Ok(())
}

/// Why a report's roles or groups cannot be kept, if they cannot.
pub fn check_labels(report: &RunReport) -> Result<(), String> {
    for (what, names) in [("roles", &report.roles), ("groups", &report.groups)] {
        if names.len() > MAX_LABELS {
            return Err(format!(
                "the report has {} {what}, more than {MAX_LABELS}",
                names.len()
            ));
        }
        for n in names {
            check_label(n).map_err(|e| format!("{what}: {e}"))?;
        }
    }
    Ok(())
}

/// Roles or groups as shown, kept on a node's row in their order: `a,b`.
pub(crate) fn labels_text(names: &[String]) -> String {
    names.join(",")
}

/// Roles or groups back from the text kept (none before a report carried them).
pub(crate) fn labels_from(text: Option<&str>) -> Vec<String> {
    text.unwrap_or_default()
        .split(',')
        .filter(|n| !n.is_empty())
        .map(str::to_string)
        .collect()
}

/// `?revision=`: whether a node's last reported revision is the one published for its
/// environment now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// It differs.
    Behind,
    /// It is that one.
    Current,
}

impl Revision {
    /// `behind` or `current`.
    pub fn parse(text: &str) -> Option<Revision> {
        match text {
            "behind" => Some(Revision::Behind),
            "current" => Some(Revision::Current),
            _ => None,
        }
    }
}

/// A sort key's value: text, or a time for [`Sort::Last`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Key {
    /// A time (seconds), -1 for a node without a report.
    Int(i64),
    /// Text ('' for a node without a report, by revision).
    Text(String),
}

/// Where a page starts in its order: the sort key and the name of the row next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cursor {
    /// The sort key of that row.
    pub key: Key,
    /// Its name.
    pub name: String,
    /// The page ends before that row (a previous page), rather than starting after it.
    pub before: bool,
}

/// A page of the fleet, as asked of the inventory.
#[derive(Debug, Clone, Default)]
pub struct FleetQuery<'a> {
    /// Only nodes in this environment.
    pub environment: Option<&'a str>,
    /// Only nodes of this status (see [`NodeSummary::status`]).
    pub status: Option<&'a str>,
    /// Only nodes whose last report named this role (a [`check_label`] name).
    pub role: Option<&'a str>,
    /// Only nodes whose last report named this group (a [`check_label`] name).
    pub group: Option<&'a str>,
    /// Only nodes behind, or current.
    pub revision: Option<Revision>,
    /// The revision published now for each environment (environment, revision).
    pub published: &'a [(String, String)],
    /// Sort descending.
    pub descending: bool,
    /// The order of the rows.
    pub sort: Sort,
    /// Nodes skipped, in that order (not with a cursor).
    pub offset: usize,
    /// The page seeks from this row rather than skipping `offset` rows.
    pub cursor: Option<Cursor>,
    /// Nodes answered at most.
    pub limit: usize,
}

/// A column the fleet's rows can be sorted by; the node's name breaks ties (in the same
/// direction), so the order is total and pages neither repeat nor skip a node.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Sort {
    /// The node's name.
    #[default]
    Name,
    /// Its environment.
    Environment,
    /// Its status.
    Status,
    /// Its last run's revision (nodes without a run first).
    Revision,
    /// When it last reported (nodes without a run first).
    Last,
}

/// A node's status on its row: its state unless accepted, `none` before a report, else
/// its last run's result (the counts group by it; `sort_status` keeps it).
const STATUS: &str = "(CASE WHEN state <> 'accepted' THEN state WHEN last_report IS NULL \
                      THEN 'none' ELSE last_result END)";

/// The sort keys a node's row keeps as generated columns (name, type, value), each with
/// an index over `(key, name)`: a page after a cursor is a range of that index (SQLite
/// seeks a row value in an index of columns, not of expressions).
const SORT_KEYS: [(&str, &str, &str); 3] = [
    ("sort_status", "TEXT", STATUS),
    ("sort_revision", "TEXT", "COALESCE(last_revision, '')"),
    ("sort_last", "{int}", "COALESCE(last_time, -1)"),
];

impl Sort {
    /// The columns by name, as `?sort=` takes them.
    pub const ALL: [(&'static str, Sort); 5] = [
        ("name", Sort::Name),
        ("environment", Sort::Environment),
        ("status", Sort::Status),
        ("revision", Sort::Revision),
        ("last", Sort::Last),
    ];

    /// The column named `name`, if it is one.
    pub fn parse(name: &str) -> Option<Sort> {
        Sort::ALL.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
    }

    /// Its name.
    pub fn as_str(self) -> &'static str {
        Sort::ALL
            .iter()
            .find(|(_, s)| *s == self)
            .map_or("name", |(n, _)| n)
    }

    /// The column of a node's row it sorts by (with `name` after it, an index).
    fn key_sql(self) -> &'static str {
        match self {
            Sort::Name => "name",
            Sort::Environment => "environment",
            Sort::Status => "sort_status",
            Sort::Revision => "sort_revision",
            Sort::Last => "sort_last",
        }
    }

    /// The sort key of a row, as a cursor holds it.
    pub fn key(self, n: &NodeSummary) -> Key {
        match self {
            Sort::Name => Key::Text(n.name.clone()),
            Sort::Environment => Key::Text(n.environment.clone()),
            Sort::Status => Key::Text(n.status.clone()),
            Sort::Revision => Key::Text(
                n.last
                    .as_ref()
                    .map(|l| l.revision.clone())
                    .unwrap_or_default(),
            ),
            Sort::Last => Key::Int(
                n.last
                    .as_ref()
                    .map_or(-1, |l| i64::try_from(l.time).unwrap_or(i64::MAX)),
            ),
        }
    }

    /// Whether `key` is of this sort's kind.
    pub fn takes(self, key: &Key) -> bool {
        matches!(
            (self, key),
            (Sort::Last, Key::Int(_))
                | (
                    Sort::Name | Sort::Environment | Sort::Status | Sort::Revision,
                    Key::Text(_)
                )
        )
    }
}

/// A page of the fleet.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FleetPage {
    /// Nodes past the filters, on every page.
    pub total: usize,
    /// Nodes by status over the whole fleet, filters aside.
    pub counts: BTreeMap<String, usize>,
    /// Nodes behind and current over the whole fleet (`behind`, `current`), filters aside.
    pub revisions: BTreeMap<String, usize>,
    /// This page's nodes, in the order asked.
    pub nodes: Vec<NodeSummary>,
    /// More rows follow past this page, in the direction it was read (before it, for a
    /// cursor's previous page).
    pub more: bool,
}

/// A node and the gist of its last run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSummary {
    /// Its name.
    pub name: String,
    /// Where it stands.
    pub state: NodeState,
    /// Its environment.
    pub environment: String,
    /// Its last run's result if it is accepted, `none` before a first report, else its
    /// state.
    pub status: String,
    /// Its last run, if it reported one.
    pub last: Option<LastRun>,
    /// Its roles, as its last report that named any did.
    pub roles: Vec<String>,
    /// Its groups, as that report named them.
    pub groups: Vec<String>,
    /// Whether its last run's revision differs from the one published for its
    /// environment now; none without a run, or with nothing published for it.
    pub behind: Option<bool>,
}

/// The gist of a node's last run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastRun {
    /// The report's id.
    pub id: i64,
    /// When it ended.
    pub time: u64,
    /// Its result.
    pub result: String,
    /// The site revision it applied.
    pub revision: String,
    /// Whether it found drift.
    pub drift: bool,
}

/// The columns a node's row gained first for the fleet's page (its last report and
/// result), filled by [`FLEET_BACKFILL`]: `{int}` the store's integer type.
pub(crate) fn fleet_columns(int: &str) -> [String; 2] {
    [
        format!("ALTER TABLE strata_nodes ADD COLUMN last_report {int}"),
        "ALTER TABLE strata_nodes ADD COLUMN last_result TEXT".into(),
    ]
}

/// Sets every node's `last_report` and `last_result` from the reports table (once, when
/// the columns are new).
pub(crate) const FLEET_BACKFILL: &str = "UPDATE strata_nodes SET
    last_report = (SELECT max(r.id) FROM strata_reports r WHERE r.node = strata_nodes.name),
    last_result = (SELECT r.result FROM strata_reports r WHERE r.node = strata_nodes.name
                   ORDER BY r.id DESC LIMIT 1)";

/// The columns it gained next (its last report's revision and time, its roles and
/// groups as shown, and the sort keys generated from them), filled by [`ROW_BACKFILL`]:
/// `generated` is `VIRTUAL` (SQLite adds no other) or `STORED` (PostgreSQL has no other).
pub(crate) fn row_columns(int: &str, generated: &str) -> Vec<String> {
    let mut columns = vec![
        "last_revision TEXT".to_string(),
        format!("last_time {int}"),
        "node_roles TEXT".into(),
        "node_groups TEXT".into(),
    ];
    for (name, kind, value) in SORT_KEYS {
        let kind = kind.replace("{int}", int);
        columns.push(format!(
            "{name} {kind} GENERATED ALWAYS AS ({value}) {generated}"
        ));
    }
    columns
        .iter()
        .map(|c| format!("ALTER TABLE strata_nodes ADD COLUMN {c}"))
        .collect()
}

/// Sets `last_revision` and `last_time` from each node's last report.
pub(crate) const ROW_BACKFILL: &str = "UPDATE strata_nodes SET
    last_revision = (SELECT r.revision FROM strata_reports r WHERE r.id = strata_nodes.last_report),
    last_time = (SELECT r.time FROM strata_reports r WHERE r.id = strata_nodes.last_report)
  WHERE last_report IS NOT NULL";

/// The table a role or group filter looks in, and the indexes of the fleet's counts and
/// of each sort.
pub(crate) const FLEET_INDEXES: &str =
    "CREATE TABLE IF NOT EXISTS strata_node_labels (node TEXT NOT NULL, kind TEXT NOT NULL,
           label TEXT NOT NULL, PRIMARY KEY (kind, label, node));
         CREATE INDEX IF NOT EXISTS strata_node_labels_node ON strata_node_labels (node);
         DROP INDEX IF EXISTS strata_nodes_fleet;
         CREATE INDEX IF NOT EXISTS strata_nodes_counts ON strata_nodes
           (state, changed, environment, last_report, last_result, last_revision);
         CREATE INDEX IF NOT EXISTS strata_nodes_by_environment ON strata_nodes (environment, name);
         CREATE INDEX IF NOT EXISTS strata_nodes_by_status ON strata_nodes (sort_status, name);
         CREATE INDEX IF NOT EXISTS strata_nodes_by_revision ON strata_nodes (sort_revision, name);
         CREATE INDEX IF NOT EXISTS strata_nodes_by_last ON strata_nodes (sort_last, name);";

/// Records a report as its node's last: `p(1)` its id, `p(2)` result, `p(3)` revision,
/// `p(4)` time, `p(5)` the node.
pub(crate) fn fleet_last(p: impl Fn(usize) -> String) -> String {
    format!(
        "UPDATE strata_nodes SET last_report = {}, last_result = {}, last_revision = {},
         last_time = {} WHERE name = {}",
        p(1),
        p(2),
        p(3),
        p(4),
        p(5)
    )
}

/// The statements that keep a node's roles and groups, run with the report that names
/// them: on its row `p(1)` roles, `p(2)` groups ([`labels_text`]), `p(3)` the node; then
/// its rows in `strata_node_labels` cleared (`p(1)` the node) and added one by one
/// (`p(1)` node, `p(2)` `role` or `group`, `p(3)` the name).
pub(crate) fn labels_sql(p: impl Fn(usize) -> String) -> [String; 3] {
    [
        format!(
            "UPDATE strata_nodes SET node_roles = {}, node_groups = {} WHERE name = {}",
            p(1),
            p(2),
            p(3)
        ),
        format!("DELETE FROM strata_node_labels WHERE node = {}", p(1)),
        format!(
            "INSERT INTO strata_node_labels (node, kind, label) VALUES ({}, {}, {})
             ON CONFLICT DO NOTHING",
            p(1),
            p(2),
            p(3)
        ),
    ]
}

/// A value bound to a statement.
#[derive(Debug, Clone)]
pub(crate) enum Arg {
    Text(String),
    Int(i64),
}

/// A statement and its parameters, in the store's placeholders (`?N` or `$N`).
#[derive(Debug, Clone)]
pub(crate) struct Sql {
    pub text: String,
    pub args: Vec<Arg>,
    dollar: bool,
}

impl Sql {
    fn new(dollar: bool) -> Sql {
        Sql {
            text: String::new(),
            args: Vec::new(),
            dollar,
        }
    }

    /// Binds `a`; its placeholder.
    fn bind(&mut self, a: Arg) -> String {
        self.args.push(a);
        let n = self.args.len();
        if self.dollar {
            format!("${n}")
        } else {
            format!("?{n}")
        }
    }
}

/// The statements of one page: the counts (status, nodes, current, behind), the
/// filtered total (none when nothing is filtered: the counts' sum) and the page's rows
/// (see [`PageRow`]), one more than the limit to tell whether more follow.
pub(crate) struct FleetSql {
    pub counts: Sql,
    pub total: Option<Sql>,
    pub page: Sql,
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The revision published now for a row's environment: a `CASE` of bound pairs.
fn published(sql: &mut Sql, q: &FleetQuery<'_>) -> String {
    if q.published.is_empty() {
        return "CAST(NULL AS TEXT)".into();
    }
    let mut s = String::from("(CASE environment");
    for (env, rev) in q.published {
        let (e, r) = (
            sql.bind(Arg::Text(env.clone())),
            sql.bind(Arg::Text(rev.clone())),
        );
        s.push_str(&format!(" WHEN {e} THEN {r}"));
    }
    s.push_str(" END)");
    s
}

/// The nodes listed at all (pending ones past their time left out) and the filters.
fn filtered(sql: &mut Sql, q: &FleetQuery<'_>, oldest: u64) -> String {
    let mut w = format!(
        "WHERE (state <> 'pending' OR changed >= {})",
        sql.bind(Arg::Int(i(oldest)))
    );
    if let Some(e) = q.environment {
        w.push_str(&format!(
            " AND environment = {}",
            sql.bind(Arg::Text(e.into()))
        ));
    }
    if let Some(st) = q.status {
        w.push_str(&format!(
            " AND {STATUS} = {}",
            sql.bind(Arg::Text(st.into()))
        ));
    }
    for (kind, name) in [("role", q.role), ("group", q.group)] {
        if let Some(name) = name {
            w.push_str(&format!(
                " AND name IN (SELECT node FROM strata_node_labels WHERE kind = '{kind}'
                   AND label = {})",
                sql.bind(Arg::Text(name.into()))
            ));
        }
    }
    if let Some(r) = q.revision {
        let op = if r == Revision::Behind { "<>" } else { "=" };
        w.push_str(&format!(" AND last_revision {op} {}", published(sql, q)));
    }
    w
}

/// The statements of the page `q` asks for; `dollar` for PostgreSQL's placeholders.
pub(crate) fn fleet_sql(q: &FleetQuery<'_>, oldest: u64, dollar: bool) -> FleetSql {
    let mut counts = Sql::new(dollar);
    let visible = filtered(&mut counts, &FleetQuery::default(), oldest);
    let (p1, p2) = (published(&mut counts, q), published(&mut counts, q));
    // One group per status (a few): each with its nodes current and behind summed, not
    // grouped (PostgreSQL guesses a group per row for two expressions and sorts them).
    counts.text = format!(
        "SELECT {STATUS}, count(*), sum(CASE WHEN last_revision = {p1} THEN 1 ELSE 0 END),
           sum(CASE WHEN last_revision <> {p2} THEN 1 ELSE 0 END)
         FROM strata_nodes {visible} GROUP BY 1"
    );
    let filters = q.environment.is_some()
        || q.status.is_some()
        || q.role.is_some()
        || q.group.is_some()
        || q.revision.is_some();
    let total = filters.then(|| {
        let mut t = Sql::new(dollar);
        let w = filtered(&mut t, q, oldest);
        t.text = format!("SELECT count(*) FROM strata_nodes {w}");
        t
    });
    let mut page = Sql::new(dollar);
    let mut w = filtered(&mut page, q, oldest);
    let key = q.sort.key_sql();
    // Read backwards for the page before a cursor, then turned round by the caller.
    let back = q.cursor.as_ref().is_some_and(|c| c.before);
    let desc = q.descending != back;
    let dir = if desc { "DESC" } else { "ASC" };
    let mut offset = q.offset;
    if let Some(c) = &q.cursor {
        let op = if desc { "<" } else { ">" };
        if q.sort == Sort::Name {
            let n = page.bind(Arg::Text(c.name.clone()));
            w.push_str(&format!(" AND name {op} {n}"));
        } else {
            let k = page.bind(match &c.key {
                Key::Int(v) => Arg::Int(*v),
                Key::Text(t) => Arg::Text(t.clone()),
            });
            let n = page.bind(Arg::Text(c.name.clone()));
            w.push_str(&format!(" AND ({key}, name) {op} ({k}, {n})"));
        }
        offset = 0;
    }
    let limit = page.bind(Arg::Int(i(q.limit as u64 + 1)));
    let offset = page.bind(Arg::Int(i(offset as u64)));
    page.text = format!(
        "SELECT p.name, p.state, p.environment, p.last_report, p.last_time, p.last_result,
           p.last_revision, r.drift, p.status, p.node_roles, p.node_groups
         FROM (SELECT name, state, environment, last_report, last_time, last_result,
                 last_revision, node_roles, node_groups, sort_status AS status, {key} AS k
               FROM strata_nodes {w} ORDER BY {key} {dir}, name {dir}
               LIMIT {limit} OFFSET {offset}) p
         LEFT JOIN strata_reports r ON r.id = p.last_report
         ORDER BY p.k {dir}, p.name {dir}"
    );
    FleetSql {
        counts,
        total,
        page,
    }
}

/// One row of [`FleetSql::page`], as both stores read it.
pub(crate) struct PageRow {
    pub name: String,
    pub state: String,
    pub environment: String,
    pub id: Option<i64>,
    pub time: Option<i64>,
    pub result: Option<String>,
    pub revision: Option<String>,
    pub drift: Option<bool>,
    pub status: String,
    pub roles: Option<String>,
    pub groups: Option<String>,
}

/// The page from its rows (one past the limit meaning more follow), in the order asked.
pub(crate) fn fleet_page(
    q: &FleetQuery<'_>,
    mut rows: Vec<PageRow>,
    counts: Vec<(String, usize, usize, usize)>,
    total: Option<usize>,
) -> FleetPage {
    let more = rows.len() > q.limit;
    rows.truncate(q.limit);
    if q.cursor.as_ref().is_some_and(|c| c.before) {
        rows.reverse();
    }
    let mut page = FleetPage {
        more,
        ..FleetPage::default()
    };
    for (status, n, current, behind) in counts {
        *page.counts.entry(status).or_default() += n;
        for (what, k) in [("current", current), ("behind", behind)] {
            if k > 0 {
                *page.revisions.entry(what.into()).or_default() += k;
            }
        }
    }
    page.total = total.unwrap_or_else(|| page.counts.values().sum());
    page.nodes = rows
        .into_iter()
        .map(|r| {
            let last = r.id.map(|id| LastRun {
                id,
                time: u64::try_from(r.time.unwrap_or_default()).unwrap_or_default(),
                result: r.result.unwrap_or_default(),
                revision: r.revision.unwrap_or_default(),
                drift: r.drift.unwrap_or_default(),
            });
            let behind = last.as_ref().and_then(|l| {
                q.published
                    .iter()
                    .find(|(e, _)| *e == r.environment)
                    .map(|(_, rev)| *rev != l.revision)
            });
            NodeSummary {
                name: r.name,
                state: NodeState::parse(&r.state),
                environment: r.environment,
                status: r.status,
                last,
                roles: labels_from(r.roles.as_deref()),
                groups: labels_from(r.groups.as_deref()),
                behind,
            }
        })
        .collect();
    page
}
