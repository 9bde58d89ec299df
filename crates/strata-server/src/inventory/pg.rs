//! The inventory on a PostgreSQL server, shared by `serve` replicas: the same tables and
//! the same decisions as the SQLite file; an enrollment locks the rows it reads
//! (`SELECT … FOR UPDATE`) under one transaction-scoped advisory lock.

use postgres::{Client, Row};
use strata_hardware::PgTx;

use super::fleet::{
    Arg, FLEET_BACKFILL, FLEET_INDEXES, PageRow, ROW_BACKFILL, Sql, fleet_columns, fleet_last,
    fleet_page, fleet_sql, labels_sql, labels_text, row_columns,
};
use super::{
    Classifier, Decision, EnrollRequest, Enrolled, Inventory, InventoryError, NodeRecord,
    NodeState, PENDING_TTL, RunReport, TokenRecord, decide, paths_from, paths_json, token_check,
};
use super::{FleetPage, FleetQuery};
use super::{steps_from, steps_json, takeover};
use crate::httpsig::NONCE_TTL;

/// Serialises enrollments across replicas.
use strata_hardware::redact;

const LOCK: i64 = 0x5354_5241_5445; // "STRATE"

const SCHEMA: &str = "CREATE TABLE IF NOT EXISTS strata_nodes (
        name TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, public TEXT NOT NULL, age TEXT,
        state TEXT NOT NULL, environment TEXT NOT NULL, facts TEXT NOT NULL,
        enrolled BIGINT NOT NULL, changed BIGINT NOT NULL, classification TEXT);
    CREATE TABLE IF NOT EXISTS strata_tokens (
        hash TEXT PRIMARY KEY, node TEXT, environment TEXT, expires BIGINT NOT NULL,
        used BIGINT, uses BIGINT NOT NULL DEFAULT 1);
    ALTER TABLE strata_tokens ADD COLUMN IF NOT EXISTS uses BIGINT NOT NULL DEFAULT 1;
    ALTER TABLE strata_tokens ADD COLUMN IF NOT EXISTS provisioning BOOLEAN NOT NULL
        DEFAULT false;
    ALTER TABLE strata_nodes ADD COLUMN IF NOT EXISTS rekeyed BIGINT;
    ALTER TABLE strata_nodes ADD COLUMN IF NOT EXISTS old_key TEXT;
    CREATE TABLE IF NOT EXISTS strata_nonces (
        key_id TEXT NOT NULL, nonce TEXT NOT NULL, expires BIGINT NOT NULL,
        PRIMARY KEY (key_id, nonce));
    CREATE TABLE IF NOT EXISTS strata_reports (
        id BIGSERIAL PRIMARY KEY, node TEXT NOT NULL, time BIGINT NOT NULL,
        environment TEXT NOT NULL, version BIGINT NOT NULL, revision TEXT NOT NULL,
        generation BIGINT, result TEXT NOT NULL, changes BIGINT NOT NULL,
        paths TEXT NOT NULL, truncated BIGINT NOT NULL, drift BOOLEAN NOT NULL,
        error TEXT, note TEXT);
    CREATE INDEX IF NOT EXISTS strata_reports_node ON strata_reports (node, id);
    ALTER TABLE strata_reports ADD COLUMN IF NOT EXISTS steps TEXT NOT NULL DEFAULT '[]';
    CREATE INDEX IF NOT EXISTS strata_nonces_expires ON strata_nonces (expires);
    CREATE INDEX IF NOT EXISTS strata_nodes_pending ON strata_nodes (state, changed);
    CREATE TABLE IF NOT EXISTS strata_operators (
        name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, created BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS strata_operator_certs (
        fingerprint TEXT PRIMARY KEY, name TEXT NOT NULL, created BIGINT NOT NULL);
    CREATE TABLE IF NOT EXISTS strata_operator_codes (
        hash TEXT PRIMARY KEY, name TEXT NOT NULL, session BOOLEAN NOT NULL,
        expires BIGINT NOT NULL, used BIGINT);
    CREATE TABLE IF NOT EXISTS strata_releases (
        environment TEXT PRIMARY KEY, version BIGINT NOT NULL);";

const REPORT_COLUMNS: &str = "id, node, time, environment, version, revision, generation, \
     result, changes, paths, truncated, drift, error, note, steps";

fn report_row(r: &Row) -> RunReport {
    RunReport {
        id: r.get(0),
        node: r.get(1),
        time: u(r.get(2)),
        environment: r.get(3),
        version: u(r.get(4)),
        revision: r.get(5),
        generation: r.get::<_, Option<i64>>(6).map(u),
        result: r.get(7),
        changes: u(r.get(8)) as usize,
        paths: paths_from(r.get(9)),
        truncated: u(r.get(10)) as usize,
        drift: r.get(11),
        error: r.get(12),
        note: r.get(13),
        steps: steps_from(r.get(14)),
        roles: Vec::new(),
        groups: Vec::new(),
    }
}

const NODE_COLUMNS: &str = "name, key_id, public, age, state, environment, facts, enrolled, \
     changed, classification, rekeyed, old_key, last_report IS NOT NULL";

/// The columns a new node's row is written with.
const NEW_NODE: &str =
    "name, key_id, public, age, state, environment, facts, enrolled, changed, classification";

/// The inventory on PostgreSQL.
pub struct PgInventory {
    client: Client,
    url: String,
}

impl std::fmt::Debug for PgInventory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgInventory({})", redact(&self.url))
    }
}

fn i(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn u(v: i64) -> u64 {
    v.max(0).unsigned_abs()
}

fn node_row(r: &Row) -> NodeRecord {
    NodeRecord {
        name: r.get(0),
        key_id: r.get(1),
        public: r.get(2),
        age: r.get(3),
        state: NodeState::parse(r.get(4)),
        environment: r.get(5),
        facts: r.get(6),
        enrolled: u(r.get(7)),
        changed: u(r.get(8)),
        classification: r.get(9),
        rekeyed: r.get::<_, Option<i64>>(10).map(u),
        old_key: r.get(11),
        reported: r.get(12),
    }
}

pub(super) fn node_where(
    c: &mut impl postgres::GenericClient,
    column: &str,
    value: &str,
    lock: bool,
) -> Result<Option<NodeRecord>, postgres::Error> {
    let lock = if lock { " FOR UPDATE" } else { "" };
    Ok(c.query_opt(
        &format!("SELECT {NODE_COLUMNS} FROM strata_nodes WHERE {column} = $1{lock}"),
        &[&value],
    )?
    .as_ref()
    .map(node_row))
}

/// Adds the fleet's columns to tables made before them (filled from the reports), and
/// their index, under the schema's advisory lock.
fn fleet_columns_added(client: &mut Client) -> Result<(), postgres::Error> {
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])?;
    let has: i64 = tx
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()
             AND table_name = 'strata_nodes' AND column_name = 'last_report'",
            &[],
        )?
        .get(0);
    if has == 0 {
        for alter in fleet_columns("BIGINT") {
            tx.batch_execute(&alter)?;
        }
        tx.batch_execute(FLEET_BACKFILL)?;
    }
    let row: i64 = tx
        .query_one(
            "SELECT count(*) FROM information_schema.columns WHERE table_schema = current_schema()
             AND table_name = 'strata_nodes' AND column_name = 'last_revision'",
            &[],
        )?
        .get(0);
    if row == 0 {
        for alter in row_columns("BIGINT", "STORED") {
            tx.batch_execute(&alter)?;
        }
        tx.batch_execute(ROW_BACKFILL)?;
    }
    tx.batch_execute(FLEET_INDEXES)?;
    tx.commit()
}

impl PgInventory {
    /// Connects and creates the tables when missing.
    pub fn connect(url: &str) -> Result<PgInventory, InventoryError> {
        let name = redact(url);
        let db = |e: postgres::Error| InventoryError::Db {
            db: name.clone(),
            message: e.to_string(),
        };
        let mut client = strata_hardware::connect_schema(url, LOCK, SCHEMA).map_err(&db)?;
        fleet_columns_added(&mut client).map_err(&db)?;
        Ok(PgInventory {
            client,
            url: url.to_string(),
        })
    }

    fn err(&self) -> impl Fn(postgres::Error) -> InventoryError + use<> {
        let db = redact(&self.url);
        move |e| InventoryError::Db {
            db: db.clone(),
            message: e.to_string(),
        }
    }
}

impl Inventory for PgInventory {
    fn add_token(&mut self, t: &TokenRecord) -> Result<(), InventoryError> {
        let db = self.err();
        self.client
            .execute(
                "INSERT INTO strata_tokens (hash, node, environment, expires, uses, provisioning) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &t.hash,
                    &t.node,
                    &t.environment,
                    &i(t.expires),
                    &i64::from(t.uses),
                    &t.provisioning,
                ],
            )
            .map_err(db)?;
        Ok(())
    }

    fn add_operator(&mut self, name: &str, hash: &str, now: u64) -> Result<(), InventoryError> {
        let db = self.err();
        self.client
            .execute(
                "INSERT INTO strata_operators (name, hash, created) VALUES ($1, $2, $3)
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, created = excluded.created",
                &[&name, &hash, &i(now)],
            )
            .map_err(db)?;
        Ok(())
    }

    fn operator(&mut self, hash: &str) -> Result<Option<String>, InventoryError> {
        let db = self.err();
        let row = self
            .client
            .query_opt(
                "SELECT name FROM strata_operators WHERE hash = $1",
                &[&hash],
            )
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn add_operator_cert(
        &mut self,
        name: &str,
        fingerprint: &str,
        now: u64,
    ) -> Result<(), InventoryError> {
        let db = self.err();
        let mut tx = self.client.transaction().map_err(&db)?;
        // No token hashes to `cert:…` (a token's hash is hex): the operator has none.
        tx.execute(
            "INSERT INTO strata_operators (name, hash, created)
             VALUES ($1, 'cert:' || $2 || ':' || $1, $3) ON CONFLICT (name) DO NOTHING",
            &[&name, &fingerprint, &i(now)],
        )
        .map_err(&db)?;
        tx.execute(
            "INSERT INTO strata_operator_certs (fingerprint, name, created) VALUES ($1, $2, $3)
             ON CONFLICT (fingerprint) DO UPDATE SET name = excluded.name, created = excluded.created",
            &[&fingerprint, &name, &i(now)],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    fn operator_by_cert(&mut self, fingerprint: &str) -> Result<Option<String>, InventoryError> {
        let db = self.err();
        let row = self
            .client
            .query_opt(
                "SELECT name FROM strata_operator_certs WHERE fingerprint = $1",
                &[&fingerprint],
            )
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn add_operator_code(
        &mut self,
        hash: &str,
        name: &str,
        session: bool,
        expires: u64,
    ) -> Result<bool, InventoryError> {
        let db = self.err();
        let n = self
            .client
            .execute(
                "INSERT INTO strata_operator_codes (hash, name, session, expires)
                 SELECT $1, name, $3, $4 FROM strata_operators WHERE name = $2",
                &[&hash, &name, &session, &i(expires)],
            )
            .map_err(db)?;
        Ok(n == 1)
    }

    fn redeem_login(&mut self, hash: &str, now: u64) -> Result<Option<String>, InventoryError> {
        let db = self.err();
        let row = self
            .client
            .query_opt(
                "UPDATE strata_operator_codes SET used = $2
                 WHERE hash = $1 AND NOT session AND used IS NULL AND expires > $2
                 RETURNING name",
                &[&hash, &i(now)],
            )
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn session(&mut self, hash: &str, now: u64) -> Result<Option<String>, InventoryError> {
        let db = self.err();
        let row = self
            .client
            .query_opt(
                "SELECT name FROM strata_operator_codes
                 WHERE hash = $1 AND session AND expires > $2",
                &[&hash, &i(now)],
            )
            .map_err(db)?;
        Ok(row.map(|r| r.get(0)))
    }

    fn enroll(
        &mut self,
        req: &EnrollRequest,
        now: u64,
        classify: &mut Classifier<'_>,
    ) -> Result<Enrolled, InventoryError> {
        let db = self.err();
        let url = self.url.clone();
        let mut tx = self.client.transaction().map_err(&db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .map_err(&db)?;
        tx.execute(
            "DELETE FROM strata_nodes WHERE state = 'pending' AND changed < $1",
            &[&i(now.saturating_sub(PENDING_TTL))],
        )
        .map_err(&db)?;
        let existing = node_where(&mut tx, "name", &req.name, true).map_err(&db)?;
        let by_key = node_where(&mut tx, "key_id", &req.key_id, true).map_err(&db)?;
        let token = match &req.token {
            None => None,
            Some(hash) => {
                let found = tx
                    .query_opt(
                        "SELECT hash, node, environment, expires, used, uses, provisioning
                         FROM strata_tokens WHERE hash = $1 FOR UPDATE",
                        &[hash],
                    )
                    .map_err(&db)?
                    .map(|r| {
                        (
                            TokenRecord {
                                hash: r.get(0),
                                node: r.get(1),
                                environment: r.get(2),
                                expires: u(r.get(3)),
                                uses: u32::try_from(r.get::<_, i64>(5)).unwrap_or(0),
                                provisioning: r.get(6),
                            },
                            r.get::<_, Option<i64>>(4).map(u),
                        )
                    });
                Some(token_check(found))
            }
        };
        let reported = existing.as_ref().is_some_and(|n| n.reported);
        let decision = decide(
            existing.as_ref(),
            by_key.as_ref(),
            req,
            token.as_ref().map(|t| t.as_ref().map_err(Clone::clone)),
            (reported, now),
        );
        let state = match decision {
            Decision::Refuse(why) => return Ok(Enrolled::Refused(why)),
            Decision::Takeover => {
                let old = existing.expect("a node taken over");
                return takeover::pg(tx, req, &old.key_id, now).map_err(&db);
            }
            Decision::Already => {
                return Ok(Enrolled::Accepted(existing.expect("an accepted node")));
            }
            Decision::Pending => NodeState::Pending,
            Decision::Accept(_) => NodeState::Accepted,
        };
        if let Decision::Accept(_) = &decision {
            let hash = req.token.clone().unwrap_or_default();
            let n = tx
                .execute(
                    "UPDATE strata_tokens SET uses = uses - 1,
                     used = CASE WHEN uses <= 1 THEN $1::BIGINT ELSE NULL END
                     WHERE hash = $2 AND used IS NULL AND uses > 0",
                    &[&i(now), &hash],
                )
                .map_err(&db)?;
            if n != 1 {
                return Ok(Enrolled::Refused("the token was already used".into()));
            }
        }
        let classification = match state {
            NodeState::Accepted => {
                let mut store = PgTx::new(&mut tx, &url).map_err(|e| InventoryError::Db {
                    db: redact(&url),
                    message: e.to_string(),
                })?;
                match classify(&mut store, &req.name, &req.facts) {
                    Ok(c) => c,
                    // Dropped: nothing allocated, no token consumed, nothing recorded.
                    Err(why) => return Ok(Enrolled::Refused(why)),
                }
            }
            _ => None,
        };
        // A pending request by another key, displaced by this one's valid token.
        let existing = match existing {
            Some(n) if n.key_id != req.key_id => {
                tx.execute("DELETE FROM strata_nodes WHERE name = $1", &[&req.name])
                    .map_err(&db)?;
                None
            }
            other => other,
        };
        let environment = match &decision {
            Decision::Accept(Some(e)) => e.clone(),
            _ => existing
                .as_ref()
                .map_or_else(|| req.environment.clone(), |n| n.environment.clone()),
        };
        if existing.is_some() {
            tx.execute(
                "UPDATE strata_nodes SET state = $1, environment = $2, facts = $3, age = $4,
                 changed = $5, classification = $6 WHERE name = $7",
                &[
                    &state.as_str(),
                    &environment,
                    &req.facts,
                    &req.age,
                    &i(now),
                    &classification,
                    &req.name,
                ],
            )
            .map_err(&db)?;
        } else {
            tx.execute(
                &format!(
                    "INSERT INTO strata_nodes ({NEW_NODE}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
                ),
                &[
                    &req.name,
                    &req.key_id,
                    &req.public,
                    &req.age,
                    &state.as_str(),
                    &environment,
                    &req.facts,
                    &i(now),
                    &i(now),
                    &classification,
                ],
            )
            .map_err(&db)?;
        }
        let node = node_where(&mut tx, "name", &req.name, false)
            .map_err(&db)?
            .expect("just written");
        tx.commit().map_err(&db)?;
        Ok(match state {
            NodeState::Accepted => Enrolled::Accepted(node),
            _ => Enrolled::Pending(node),
        })
    }

    fn accept(
        &mut self,
        name: &str,
        now: u64,
        classify: &mut Classifier<'_>,
    ) -> Result<Result<NodeRecord, String>, InventoryError> {
        let db = self.err();
        let url = self.url.clone();
        let mut tx = self.client.transaction().map_err(&db)?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .map_err(&db)?;
        let Some(node) = node_where(&mut tx, "name", name, true).map_err(&db)? else {
            return Ok(Err(format!("no node {name} in the inventory")));
        };
        let classification = {
            let mut store = PgTx::new(&mut tx, &url).map_err(|e| InventoryError::Db {
                db: redact(&url),
                message: e.to_string(),
            })?;
            match classify(&mut store, name, &node.facts) {
                Ok(c) => c,
                Err(why) => return Ok(Err(why)),
            }
        };
        tx.execute(
            "UPDATE strata_nodes SET state = 'accepted', changed = $1, classification = $2
             WHERE name = $3",
            &[&i(now), &classification, &name],
        )
        .map_err(&db)?;
        let node = node_where(&mut tx, "name", name, false)
            .map_err(&db)?
            .expect("just written");
        tx.commit().map_err(&db)?;
        Ok(Ok(node))
    }

    fn node_by_key(&mut self, key_id: &str) -> Result<Option<NodeRecord>, InventoryError> {
        let db = self.err();
        node_where(&mut self.client, "key_id", key_id, false).map_err(db)
    }

    fn node(&mut self, name: &str) -> Result<Option<NodeRecord>, InventoryError> {
        let db = self.err();
        node_where(&mut self.client, "name", name, false).map_err(db)
    }

    fn nodes(&mut self, now: u64) -> Result<Vec<NodeRecord>, InventoryError> {
        let db = self.err();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {NODE_COLUMNS} FROM strata_nodes
                     WHERE state != 'pending' OR changed >= $1 ORDER BY name"
                ),
                &[&i(now.saturating_sub(PENDING_TTL))],
            )
            .map_err(db)?;
        Ok(rows.iter().map(node_row).collect())
    }

    fn set_state(
        &mut self,
        name: &str,
        state: NodeState,
        now: u64,
    ) -> Result<bool, InventoryError> {
        let db = self.err();
        let n = self
            .client
            .execute(
                "UPDATE strata_nodes SET state = $1, changed = $2 WHERE name = $3",
                &[&state.as_str(), &i(now), &name],
            )
            .map_err(db)?;
        Ok(n > 0)
    }

    fn forget(&mut self, name: &str) -> Result<bool, InventoryError> {
        let db = self.err();
        let n = self
            .client
            .execute("DELETE FROM strata_nodes WHERE name = $1", &[&name])
            .map_err(&db)?;
        self.client
            .execute("DELETE FROM strata_node_labels WHERE node = $1", &[&name])
            .map_err(&db)?;
        Ok(n > 0)
    }

    fn fresh_nonce(&mut self, key_id: &str, nonce: &str, now: u64) -> Result<bool, InventoryError> {
        let db = self.err();
        self.client
            .execute("DELETE FROM strata_nonces WHERE expires < $1", &[&i(now)])
            .map_err(&db)?;
        let n = self
            .client
            .execute(
                "INSERT INTO strata_nonces (key_id, nonce, expires) VALUES ($1, $2, $3)
                 ON CONFLICT DO NOTHING",
                &[&key_id, &nonce, &i(now + NONCE_TTL)],
            )
            .map_err(&db)?;
        Ok(n == 1)
    }

    fn add_report(&mut self, r: &RunReport) -> Result<i64, InventoryError> {
        let db = self.err();
        // The report and its node's note of it, together.
        let mut tx = self.client.transaction().map_err(&db)?;
        let id: i64 = tx
            .query_one(
                "INSERT INTO strata_reports (node, time, environment, version, revision,
                 generation, result, changes, paths, truncated, drift, error, note, steps)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
                 RETURNING id",
                &[
                    &r.node,
                    &i(r.time),
                    &r.environment,
                    &i(r.version),
                    &r.revision,
                    &r.generation.map(i),
                    &r.result,
                    &i(r.changes as u64),
                    &paths_json(&r.paths),
                    &i(r.truncated as u64),
                    &r.drift,
                    &r.error,
                    &r.note,
                    &steps_json(&r.steps),
                ],
            )
            .map_err(&db)?
            .get(0);
        let p = |n: usize| format!("${n}");
        tx.execute(
            &fleet_last(p),
            &[&id, &r.result, &r.revision, &i(r.time), &r.node],
        )
        .map_err(&db)?;
        // A report that names no role nor group (an older agent, a site it could not
        // read) leaves the last ones named.
        if !r.roles.is_empty() || !r.groups.is_empty() {
            let [row, clear, add] = labels_sql(p);
            tx.execute(
                &row,
                &[&labels_text(&r.roles), &labels_text(&r.groups), &r.node],
            )
            .map_err(&db)?;
            tx.execute(&clear, &[&r.node]).map_err(&db)?;
            let add = tx.prepare(&add).map_err(&db)?;
            for (kind, names) in [("role", &r.roles), ("group", &r.groups)] {
                for name in names {
                    tx.execute(&add, &[&r.node, &kind, name]).map_err(&db)?;
                }
            }
        }
        tx.commit().map_err(&db)?;
        Ok(id)
    }

    fn reports(&mut self, node: Option<&str>) -> Result<Vec<RunReport>, InventoryError> {
        let db = self.err();
        let rows = self
            .client
            .query(
                &format!(
                    "SELECT {REPORT_COLUMNS} FROM strata_reports
                     WHERE $1::TEXT IS NULL OR node = $1 ORDER BY id"
                ),
                &[&node],
            )
            .map_err(db)?;
        Ok(rows.iter().map(report_row).collect())
    }

    fn closed(&self) -> bool {
        self.client.is_closed()
    }

    fn fleet(&mut self, q: &FleetQuery<'_>, now: u64) -> Result<FleetPage, InventoryError> {
        let db = self.err();
        let sql = fleet_sql(q, now.saturating_sub(PENDING_TTL), true);
        let client = &mut self.client;
        let mut run = |s: &Sql| {
            let args: Vec<Box<dyn postgres::types::ToSql + Sync>> = s
                .args
                .iter()
                .map(|a| -> Box<dyn postgres::types::ToSql + Sync> {
                    match a {
                        Arg::Text(t) => Box::new(t.clone()),
                        Arg::Int(i) => Box::new(*i),
                    }
                })
                .collect();
            let refs: Vec<&(dyn postgres::types::ToSql + Sync)> =
                args.iter().map(AsRef::as_ref).collect();
            client.query(&s.text, &refs)
        };
        let counts = run(&sql.counts)
            .map_err(&db)?
            .iter()
            .map(|r| {
                let n = |i: usize| u(r.get::<_, i64>(i)) as usize;
                (r.get(0), n(1), n(2), n(3))
            })
            .collect();
        let total = match &sql.total {
            None => None,
            Some(t) => Some(u(run(t).map_err(&db)?[0].get(0)) as usize),
        };
        let rows = run(&sql.page)
            .map_err(&db)?
            .iter()
            .map(|r| PageRow {
                name: r.get(0),
                state: r.get(1),
                environment: r.get(2),
                id: r.get(3),
                time: r.get(4),
                result: r.get(5),
                revision: r.get(6),
                drift: r.get(7),
                status: r.get(8),
                roles: r.get(9),
                groups: r.get(10),
            })
            .collect();
        Ok(fleet_page(q, rows, counts, total))
    }

    fn report(&mut self, id: i64) -> Result<Option<RunReport>, InventoryError> {
        let db = self.err();
        let row = self
            .client
            .query_opt(
                &format!("SELECT {REPORT_COLUMNS} FROM strata_reports WHERE id = $1"),
                &[&id],
            )
            .map_err(db)?;
        Ok(row.as_ref().map(report_row))
    }

    fn served_release(&mut self, env: &str, version: u64) -> Result<u64, InventoryError> {
        let db = self.err();
        let row = self
            .client
            .query_one(
                "INSERT INTO strata_releases (environment, version) VALUES ($1, $2)
                 ON CONFLICT (environment)
                 DO UPDATE SET version = GREATEST(strata_releases.version, EXCLUDED.version)
                 RETURNING version",
                &[&env, &i(version)],
            )
            .map_err(&db)?;
        Ok(u64::try_from(row.get::<_, i64>(0)).unwrap_or(0))
    }
}
