//! The inventory in a SQLite file (WAL, `synchronous = FULL`; each enrollment one
//! `BEGIN IMMEDIATE` transaction, so two enrollments never both consume a token).

use std::path::Path;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, Row, TransactionBehavior, params};

use strata_hardware::SqliteTx;

use super::fleet::{Arg, PageRow, fleet_last, fleet_page, fleet_sql, labels_sql, labels_text};
use super::{
    Classifier, Decision, EnrollRequest, Enrolled, Inventory, InventoryError, NodeRecord,
    NodeState, PENDING_TTL, RunReport, TokenRecord, decide, paths_from, paths_json, token_check,
};
use super::{FleetPage, FleetQuery};
use super::{steps_from, steps_json, takeover};
use crate::httpsig::NONCE_TTL;

mod upgrade;

const SCHEMA: &str = "PRAGMA journal_mode = WAL;
    PRAGMA synchronous = FULL;
    CREATE TABLE IF NOT EXISTS strata_nodes (
        name TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, public TEXT NOT NULL, age TEXT,
        state TEXT NOT NULL, environment TEXT NOT NULL, facts TEXT NOT NULL,
        enrolled INTEGER NOT NULL, changed INTEGER NOT NULL, classification TEXT,
        rekeyed INTEGER, old_key TEXT);
    CREATE TABLE IF NOT EXISTS strata_tokens (
        hash TEXT PRIMARY KEY, node TEXT, environment TEXT, expires INTEGER NOT NULL,
        used INTEGER, uses INTEGER NOT NULL DEFAULT 1,
        provisioning INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS strata_nonces (
        key_id TEXT NOT NULL, nonce TEXT NOT NULL, expires INTEGER NOT NULL,
        PRIMARY KEY (key_id, nonce));
    CREATE TABLE IF NOT EXISTS strata_reports (
        id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, time INTEGER NOT NULL,
        environment TEXT NOT NULL, version INTEGER NOT NULL, revision TEXT NOT NULL,
        generation INTEGER, result TEXT NOT NULL, changes INTEGER NOT NULL,
        paths TEXT NOT NULL, truncated INTEGER NOT NULL, drift INTEGER NOT NULL,
        error TEXT, note TEXT);
    CREATE INDEX IF NOT EXISTS strata_reports_node ON strata_reports (node, id);
    CREATE INDEX IF NOT EXISTS strata_nonces_expires ON strata_nonces (expires);
    CREATE INDEX IF NOT EXISTS strata_nodes_pending ON strata_nodes (state, changed);
    CREATE TABLE IF NOT EXISTS strata_operators (
        name TEXT PRIMARY KEY, hash TEXT NOT NULL UNIQUE, created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS strata_operator_certs (
        fingerprint TEXT PRIMARY KEY, name TEXT NOT NULL, created INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS strata_operator_codes (
        hash TEXT PRIMARY KEY, name TEXT NOT NULL, session INTEGER NOT NULL,
        expires INTEGER NOT NULL, used INTEGER);
    CREATE TABLE IF NOT EXISTS strata_releases (
        environment TEXT PRIMARY KEY, version INTEGER NOT NULL);";

const NODE_COLUMNS: &str = "name, key_id, public, age, state, environment, facts, enrolled, \
     changed, classification, rekeyed, old_key, last_report IS NOT NULL";

/// The columns a new node's row is written with.
const NEW_NODE: &str =
    "name, key_id, public, age, state, environment, facts, enrolled, changed, classification";

/// The inventory in a SQLite file.
#[derive(Debug)]
pub struct SqliteInventory {
    conn: Connection,
    path: String,
    /// Held by every write of this process's connections to the file (see [`super::Pool`]).
    writer: Arc<Mutex<()>>,
}

/// The lock of [`SqliteInventory::write_turn`], taken by [`WriteTurn::take`].
struct WriteTurn(Arc<Mutex<()>>);

impl WriteTurn {
    fn take(&self) -> MutexGuard<'_, ()> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn node_row(r: &Row<'_>) -> rusqlite::Result<NodeRecord> {
    Ok(NodeRecord {
        name: r.get(0)?,
        key_id: r.get(1)?,
        public: r.get(2)?,
        age: r.get(3)?,
        state: NodeState::parse(&r.get::<_, String>(4)?),
        environment: r.get(5)?,
        facts: r.get(6)?,
        enrolled: r.get(7)?,
        changed: r.get(8)?,
        classification: r.get(9)?,
        rekeyed: r.get(10)?,
        old_key: r.get(11)?,
        reported: r.get(12)?,
    })
}

const REPORT_COLUMNS: &str = "id, node, time, environment, version, revision, generation, \
     result, changes, paths, truncated, drift, error, note, steps";

fn report_row(r: &Row<'_>) -> rusqlite::Result<RunReport> {
    Ok(RunReport {
        id: r.get(0)?,
        node: r.get(1)?,
        time: r.get(2)?,
        environment: r.get(3)?,
        version: r.get(4)?,
        revision: r.get(5)?,
        generation: r.get(6)?,
        result: r.get(7)?,
        changes: r.get(8)?,
        paths: paths_from(&r.get::<_, String>(9)?),
        truncated: r.get(10)?,
        drift: r.get(11)?,
        error: r.get(12)?,
        note: r.get(13)?,
        steps: steps_from(&r.get::<_, String>(14)?),
        roles: Vec::new(),
        groups: Vec::new(),
    })
}

pub(super) fn node_where(
    conn: &Connection,
    column: &str,
    value: &str,
) -> rusqlite::Result<Option<NodeRecord>> {
    conn.query_row(
        &format!("SELECT {NODE_COLUMNS} FROM strata_nodes WHERE {column} = ?1"),
        [value],
        node_row,
    )
    .optional()
}

impl SqliteInventory {
    /// Opens (creating) the database file.
    pub fn open(path: &Path) -> Result<SqliteInventory, InventoryError> {
        SqliteInventory::open_shared(path, Arc::new(Mutex::new(())))
    }

    /// Opens the file as one of several connections of this process whose writes take
    /// `writer` first: they then wait for each other here, in turn, rather than in
    /// SQLite's busy handler.
    pub fn open_shared(
        path: &Path,
        writer: Arc<Mutex<()>>,
    ) -> Result<SqliteInventory, InventoryError> {
        let name = path.display().to_string();
        let db = |e: rusqlite::Error| InventoryError::Db {
            db: name.clone(),
            message: e.to_string(),
        };
        if let Some(dir) = path.parent() {
            let _ = strata_fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(30)).map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        upgrade::schema_upgraded(&conn).map_err(db)?;
        Ok(SqliteInventory {
            conn,
            path: name,
            writer,
        })
    }

    /// This process's write turn on the file (a clone of the lock, so the guard does not
    /// borrow `self`).
    fn write_turn(&self) -> WriteTurn {
        WriteTurn(self.writer.clone())
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> InventoryError + use<> {
        let db = self.path.clone();
        move |e| InventoryError::Db {
            db: db.clone(),
            message: e.to_string(),
        }
    }
}

impl Inventory for SqliteInventory {
    fn add_token(&mut self, t: &TokenRecord) -> Result<(), InventoryError> {
        let turn = self.write_turn();
        let _turn = turn.take();
        self.conn
            .execute(
                "INSERT INTO strata_tokens (hash, node, environment, expires, uses, provisioning) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    t.hash,
                    t.node,
                    t.environment,
                    t.expires,
                    t.uses,
                    t.provisioning
                ],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn add_operator(&mut self, name: &str, hash: &str, now: u64) -> Result<(), InventoryError> {
        let turn = self.write_turn();
        let _turn = turn.take();
        self.conn
            .execute(
                "INSERT INTO strata_operators (name, hash, created) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET hash = excluded.hash, created = excluded.created",
                params![name, hash, now],
            )
            .map_err(self.err())?;
        Ok(())
    }

    fn operator(&mut self, hash: &str) -> Result<Option<String>, InventoryError> {
        self.conn
            .query_row(
                "SELECT name FROM strata_operators WHERE hash = ?1",
                [hash],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    fn add_operator_cert(
        &mut self,
        name: &str,
        fingerprint: &str,
        now: u64,
    ) -> Result<(), InventoryError> {
        let db = self.err();
        let tx = self.conn.transaction().map_err(&db)?;
        // No token hashes to `cert:…` (a token's hash is hex): the operator has none.
        tx.execute(
            "INSERT INTO strata_operators (name, hash, created)
             VALUES (?1, 'cert:' || ?2 || ':' || ?1, ?3) ON CONFLICT (name) DO NOTHING",
            params![name, fingerprint, now],
        )
        .map_err(&db)?;
        tx.execute(
            "INSERT INTO strata_operator_certs (fingerprint, name, created) VALUES (?1, ?2, ?3)
             ON CONFLICT (fingerprint) DO UPDATE SET name = excluded.name, created = excluded.created",
            params![fingerprint, name, now],
        )
        .map_err(&db)?;
        tx.commit().map_err(&db)
    }

    fn operator_by_cert(&mut self, fingerprint: &str) -> Result<Option<String>, InventoryError> {
        self.conn
            .query_row(
                "SELECT name FROM strata_operator_certs WHERE fingerprint = ?1",
                [fingerprint],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    fn add_operator_code(
        &mut self,
        hash: &str,
        name: &str,
        session: bool,
        expires: u64,
    ) -> Result<bool, InventoryError> {
        let turn = self.write_turn();
        let _turn = turn.take();
        let n = self
            .conn
            .execute(
                "INSERT INTO strata_operator_codes (hash, name, session, expires)
                 SELECT ?1, name, ?3, ?4 FROM strata_operators WHERE name = ?2",
                params![hash, name, session, expires],
            )
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn redeem_login(&mut self, hash: &str, now: u64) -> Result<Option<String>, InventoryError> {
        let turn = self.write_turn();
        let _turn = turn.take();
        self.conn
            .query_row(
                "UPDATE strata_operator_codes SET used = ?2
                 WHERE hash = ?1 AND session = 0 AND used IS NULL AND expires > ?2
                 RETURNING name",
                params![hash, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    fn session(&mut self, hash: &str, now: u64) -> Result<Option<String>, InventoryError> {
        self.conn
            .query_row(
                "SELECT name FROM strata_operator_codes
                 WHERE hash = ?1 AND session = 1 AND expires > ?2",
                params![hash, now],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.err())
    }

    fn enroll(
        &mut self,
        req: &EnrollRequest,
        now: u64,
        classify: &mut Classifier<'_>,
    ) -> Result<Enrolled, InventoryError> {
        let turn = self.write_turn();
        let _turn = turn.take();
        let db = self.err();
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        tx.execute(
            "DELETE FROM strata_nodes WHERE state = 'pending' AND changed < ?1",
            [now.saturating_sub(PENDING_TTL)],
        )
        .map_err(&db)?;
        let existing = node_where(&tx, "name", &req.name).map_err(&db)?;
        let by_key = node_where(&tx, "key_id", &req.key_id).map_err(&db)?;
        let token = match &req.token {
            None => None,
            Some(hash) => {
                let found = tx
                    .query_row(
                        "SELECT hash, node, environment, expires, used, uses, provisioning \
                         FROM strata_tokens WHERE hash = ?1",
                        [hash],
                        |r| {
                            Ok((
                                TokenRecord {
                                    hash: r.get(0)?,
                                    node: r.get(1)?,
                                    environment: r.get(2)?,
                                    expires: r.get(3)?,
                                    uses: r.get(5)?,
                                    provisioning: r.get(6)?,
                                },
                                r.get::<_, Option<u64>>(4)?,
                            ))
                        },
                    )
                    .optional()
                    .map_err(&db)?;
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
                return takeover::sqlite(tx, req, &old.key_id, now).map_err(&db);
            }
            Decision::Already => {
                return Ok(Enrolled::Accepted(existing.expect("an accepted node")));
            }
            Decision::Pending => NodeState::Pending,
            Decision::Accept(_) => NodeState::Accepted,
        };
        if let Decision::Accept(_) = &decision {
            let hash = req.token.as_deref().unwrap_or_default();
            let n = tx
                .execute(
                    "UPDATE strata_tokens SET uses = uses - 1, \
                     used = CASE WHEN uses <= 1 THEN ?1 ELSE NULL END \
                     WHERE hash = ?2 AND used IS NULL AND uses > 0",
                    params![now, hash],
                )
                .map_err(&db)?;
            if n != 1 {
                return Ok(Enrolled::Refused("the token was already used".into()));
            }
        }
        let classification = match state {
            NodeState::Accepted => {
                let mut store = SqliteTx::new(&tx, &path).map_err(|e| InventoryError::Db {
                    db: path.clone(),
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
                tx.execute("DELETE FROM strata_nodes WHERE name = ?1", [&req.name])
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
                "UPDATE strata_nodes SET state = ?1, environment = ?2, facts = ?3, age = ?4, changed = ?5, classification = ?6 WHERE name = ?7",
                params![state.as_str(), environment, req.facts, req.age, now, classification, req.name],
            )
            .map_err(&db)?;
        } else {
            tx.execute(
                &format!("INSERT INTO strata_nodes ({NEW_NODE}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)"),
                params![
                    req.name,
                    req.key_id,
                    req.public,
                    req.age,
                    state.as_str(),
                    environment,
                    req.facts,
                    now,
                    now,
                    classification
                ],
            )
            .map_err(&db)?;
        }
        let node = node_where(&tx, "name", &req.name)
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
        let turn = self.write_turn();
        let _turn = turn.take();
        let db = self.err();
        let path = self.path.clone();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(&db)?;
        let Some(node) = node_where(&tx, "name", name).map_err(&db)? else {
            return Ok(Err(format!("no node {name} in the inventory")));
        };
        let mut store = SqliteTx::new(&tx, &path).map_err(|e| InventoryError::Db {
            db: path.clone(),
            message: e.to_string(),
        })?;
        let classification = match classify(&mut store, name, &node.facts) {
            Ok(c) => c,
            Err(why) => return Ok(Err(why)),
        };
        tx.execute(
            "UPDATE strata_nodes SET state = 'accepted', changed = ?1, classification = ?2 WHERE name = ?3",
            params![now, classification, name],
        )
        .map_err(&db)?;
        let node = node_where(&tx, "name", name)
            .map_err(&db)?
            .expect("just written");
        tx.commit().map_err(&db)?;
        Ok(Ok(node))
    }

    fn node_by_key(&mut self, key_id: &str) -> Result<Option<NodeRecord>, InventoryError> {
        node_where(&self.conn, "key_id", key_id).map_err(self.err())
    }

    fn node(&mut self, name: &str) -> Result<Option<NodeRecord>, InventoryError> {
        node_where(&self.conn, "name", name).map_err(self.err())
    }

    fn nodes(&mut self, now: u64) -> Result<Vec<NodeRecord>, InventoryError> {
        let db = self.err();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {NODE_COLUMNS} FROM strata_nodes
                 WHERE state != 'pending' OR changed >= ?1 ORDER BY name"
            ))
            .map_err(&db)?;
        stmt.query_map([now.saturating_sub(PENDING_TTL)], node_row)
            .map_err(&db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&db)
    }

    fn set_state(
        &mut self,
        name: &str,
        state: NodeState,
        now: u64,
    ) -> Result<bool, InventoryError> {
        let turn = self.write_turn();
        let _turn = turn.take();
        let n = self
            .conn
            .execute(
                "UPDATE strata_nodes SET state = ?1, changed = ?2 WHERE name = ?3",
                params![state.as_str(), now, name],
            )
            .map_err(self.err())?;
        Ok(n > 0)
    }

    fn forget(&mut self, name: &str) -> Result<bool, InventoryError> {
        let turn = self.write_turn();
        let _turn = turn.take();
        let n = self
            .conn
            .execute("DELETE FROM strata_nodes WHERE name = ?1", [name])
            .map_err(self.err())?;
        self.conn
            .execute("DELETE FROM strata_node_labels WHERE node = ?1", [name])
            .map_err(self.err())?;
        Ok(n > 0)
    }

    fn fresh_nonce(&mut self, key_id: &str, nonce: &str, now: u64) -> Result<bool, InventoryError> {
        let turn = self.write_turn();
        let _turn = turn.take();
        let db = self.err();
        self.conn
            .execute("DELETE FROM strata_nonces WHERE expires < ?1", [now])
            .map_err(&db)?;
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO strata_nonces (key_id, nonce, expires) VALUES (?1, ?2, ?3)",
                params![key_id, nonce, now + NONCE_TTL],
            )
            .map_err(&db)?;
        Ok(n == 1)
    }

    fn add_report(&mut self, r: &RunReport) -> Result<i64, InventoryError> {
        let turn = self.write_turn();
        let _turn = turn.take();
        let db = self.err();
        // The report and its node's note of it, together.
        let tx = self.conn.transaction().map_err(&db)?;
        tx.execute(
            "INSERT INTO strata_reports (node, time, environment, version, revision,
             generation, result, changes, paths, truncated, drift, error, note, steps)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)",
            params![
                r.node,
                r.time,
                r.environment,
                r.version,
                r.revision,
                r.generation,
                r.result,
                r.changes,
                paths_json(&r.paths),
                r.truncated,
                r.drift,
                r.error,
                r.note,
                steps_json(&r.steps)
            ],
        )
        .map_err(&db)?;
        let id = tx.last_insert_rowid();
        let p = |n: usize| format!("?{n}");
        tx.execute(
            &fleet_last(p),
            params![id, r.result, r.revision, r.time, r.node],
        )
        .map_err(&db)?;
        // A report that names no role nor group (an older agent, a site it could not
        // read) leaves the last ones named.
        if !r.roles.is_empty() || !r.groups.is_empty() {
            let [row, clear, add] = labels_sql(p);
            tx.execute(
                &row,
                params![labels_text(&r.roles), labels_text(&r.groups), r.node],
            )
            .map_err(&db)?;
            tx.execute(&clear, [&r.node]).map_err(&db)?;
            let mut add = tx.prepare(&add).map_err(&db)?;
            for (kind, names) in [("role", &r.roles), ("group", &r.groups)] {
                for name in names {
                    add.execute(params![r.node, kind, name]).map_err(&db)?;
                }
            }
        }
        tx.commit().map_err(&db)?;
        Ok(id)
    }

    fn reports(&mut self, node: Option<&str>) -> Result<Vec<RunReport>, InventoryError> {
        let db = self.err();
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {REPORT_COLUMNS} FROM strata_reports
                 WHERE ?1 IS NULL OR node = ?1 ORDER BY id"
            ))
            .map_err(&db)?;
        stmt.query_map([node], report_row)
            .map_err(&db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&db)
    }

    fn fleet(&mut self, q: &FleetQuery<'_>, now: u64) -> Result<FleetPage, InventoryError> {
        let db = self.err();
        let sql = fleet_sql(q, now.saturating_sub(PENDING_TTL), false);
        let args = |s: &super::fleet::Sql| -> Vec<rusqlite::types::Value> {
            s.args
                .iter()
                .map(|a| match a {
                    Arg::Text(t) => t.clone().into(),
                    Arg::Int(i) => (*i).into(),
                })
                .collect()
        };
        let counts = self
            .conn
            .prepare(&sql.counts.text)
            .map_err(&db)?
            .query_map(rusqlite::params_from_iter(args(&sql.counts)), |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .map_err(&db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&db)?;
        let total = match &sql.total {
            None => None,
            Some(t) => Some(
                self.conn
                    .query_row(&t.text, rusqlite::params_from_iter(args(t)), |r| r.get(0))
                    .map_err(&db)?,
            ),
        };
        let rows = self
            .conn
            .prepare(&sql.page.text)
            .map_err(&db)?
            .query_map(rusqlite::params_from_iter(args(&sql.page)), |r| {
                Ok(PageRow {
                    name: r.get(0)?,
                    state: r.get(1)?,
                    environment: r.get(2)?,
                    id: r.get(3)?,
                    time: r.get(4)?,
                    result: r.get(5)?,
                    revision: r.get(6)?,
                    drift: r.get(7)?,
                    status: r.get(8)?,
                    roles: r.get(9)?,
                    groups: r.get(10)?,
                })
            })
            .map_err(&db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(&db)?;
        Ok(fleet_page(q, rows, counts, total))
    }

    fn report(&mut self, id: i64) -> Result<Option<RunReport>, InventoryError> {
        self.conn
            .query_row(
                &format!("SELECT {REPORT_COLUMNS} FROM strata_reports WHERE id = ?1"),
                [id],
                report_row,
            )
            .optional()
            .map_err(self.err())
    }

    fn served_release(&mut self, env: &str, version: u64) -> Result<u64, InventoryError> {
        let v: i64 = self
            .conn
            .query_row(
                "INSERT INTO strata_releases (environment, version) VALUES (?1, ?2)
                 ON CONFLICT (environment) DO UPDATE SET version = max(version, excluded.version)
                 RETURNING version",
                params![env, i64::try_from(version).unwrap_or(i64::MAX)],
                |r| r.get(0),
            )
            .map_err(self.err())?;
        Ok(u64::try_from(v).unwrap_or(0))
    }
}
