//! Where allocations live: which machine holds which profile and which pool entries.
//! Durable and safe against concurrent enrolments; SQLite by default.

use std::collections::BTreeMap;
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use serde::Serialize;

use crate::matcher::Bindings;
use crate::pools::PoolEntry;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("allocation database {db}: {message}")]
    Db {
        /// Which database.
        db: String,
        /// What went wrong.
        message: String,
    },
    /// A pool has no free entry left.
    #[error("pool `{pool}` is exhausted: all {size} entries are allocated (profile `{profile}`)")]
    Exhausted {
        /// The pool.
        pool: String,
        /// Its size.
        size: usize,
        /// The profile asking.
        profile: String,
    },
    /// The machine already holds another profile.
    #[error(
        "machine {machine} holds profile `{held}`, which its facts no longer match; release it first (strata pools release {machine})"
    )]
    Holds {
        /// The machine.
        machine: String,
        /// Its profile.
        held: String,
    },
}

/// What a machine holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Allocation {
    /// The machine's identity.
    pub machine: String,
    /// Its profile.
    pub profile: String,
    /// Pool → (entry index, entry).
    pub entries: BTreeMap<String, (u32, PoolEntry)>,
}

/// A request to enrol a machine with a profile.
#[derive(Debug, Clone)]
pub struct Enrollment<'a> {
    /// The machine's identity.
    pub machine: &'a str,
    /// The profile it matched.
    pub profile: &'a str,
    /// The profile's `max`.
    pub max: Option<u32>,
    /// Its `$$var` identity variables.
    pub identity: &'a Bindings,
    /// The pools it takes an entry from, with their entries.
    pub pools: Vec<(&'a str, &'a [PoolEntry])>,
}

/// Whether an enrolment keeps what it allocates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Allocate {
    /// Nothing is kept: the answer is what an enrolment would give (a plan).
    DryRun,
    /// The allocation is kept (an apply, `strata classify`).
    Commit,
}

/// Allocation storage.
pub trait Store {
    /// What the machine holds, if anything.
    fn holds(&mut self, machine: &str) -> Result<Option<Allocation>, StoreError>;
    /// Enrols the machine, all or nothing: the allocation it already holds for this
    /// profile, else a new one; `None` when the profile's `max` is reached. With
    /// [`Allocate::DryRun`] nothing is kept: the answer is what an enrolment would give.
    fn enroll(
        &mut self,
        req: &Enrollment<'_>,
        allocate: Allocate,
    ) -> Result<Option<Allocation>, StoreError>;
    /// Every allocation.
    fn list(&mut self) -> Result<Vec<Allocation>, StoreError>;
    /// Gives a machine's entries and profile slot back; whether it held any.
    fn release(&mut self, machine: &str) -> Result<bool, StoreError>;
}

const SCHEMA: &str = "PRAGMA journal_mode = WAL;
     PRAGMA synchronous = FULL;
     CREATE TABLE IF NOT EXISTS machines (
         machine TEXT PRIMARY KEY, profile TEXT NOT NULL, identity TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS allocations (
         pool TEXT NOT NULL, idx INTEGER NOT NULL, machine TEXT NOT NULL, entry TEXT NOT NULL,
         PRIMARY KEY (pool, idx));";

/// The tables alone (what can be made inside a transaction).
const TABLES: &str = "CREATE TABLE IF NOT EXISTS machines (
         machine TEXT PRIMARY KEY, profile TEXT NOT NULL, identity TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS allocations (
         pool TEXT NOT NULL, idx INTEGER NOT NULL, machine TEXT NOT NULL, entry TEXT NOT NULL,
         PRIMARY KEY (pool, idx));";

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}

/// What an enrolment answers for a machine that already holds an allocation: the same one
/// for the same profile; for another profile, an error (it must be released first).
pub(crate) fn keep_held(
    held: Allocation,
    req: &Enrollment<'_>,
) -> Result<Option<Allocation>, StoreError> {
    if held.profile == req.profile {
        Ok(Some(held))
    } else {
        Err(StoreError::Holds {
            machine: req.machine.to_string(),
            held: held.profile,
        })
    }
}

/// Whether a profile holding `count` machines has no room left.
pub(crate) fn full(count: u64, req: &Enrollment<'_>) -> bool {
    req.max.is_some_and(|max| count >= u64::from(max))
}

/// The entry a machine gets from a pool: one that already holds one of its identity
/// values (sticky assignment), else the first free one.
pub(crate) fn choose(
    req: &Enrollment<'_>,
    pool: &str,
    entries: &[PoolEntry],
    taken: impl Fn(usize) -> bool,
) -> Result<usize, StoreError> {
    let free = |i: &usize| !taken(*i);
    let sticky = (0..entries.len()).filter(free).find(|i| {
        req.identity
            .iter()
            .any(|(k, v)| entries[*i].get(k) == Some(v))
    });
    sticky
        .or_else(|| (0..entries.len()).find(free))
        .ok_or_else(|| StoreError::Exhausted {
            pool: pool.to_string(),
            size: entries.len(),
            profile: req.profile.to_string(),
        })
}

/// Turns a SQLite error into a store error naming the database.
fn db_err(path: &str) -> impl Fn(rusqlite::Error) -> StoreError + Copy + '_ {
    move |e| StoreError::Db {
        db: path.to_string(),
        message: e.to_string(),
    }
}

/// A SQLite file.
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    path: String,
}

impl SqliteStore {
    /// An empty database in memory (what a plan enrols against when no file exists yet).
    pub fn in_memory() -> Result<SqliteStore, StoreError> {
        let db = db_err(":memory:");
        let conn = Connection::open_in_memory().map_err(db)?;
        conn.execute_batch(SCHEMA).map_err(db)?;
        Ok(SqliteStore {
            conn,
            path: ":memory:".into(),
        })
    }

    /// Opens (creating) the database file.
    pub fn open(path: &std::path::Path) -> Result<SqliteStore, StoreError> {
        let name = path.display().to_string();
        let db = db_err(&name);
        if let Some(dir) = path.parent() {
            let _ = strata_fs::create_dir_all(dir);
        }
        let conn = Connection::open(path).map_err(db)?;
        conn.busy_timeout(Duration::from_secs(60)).map_err(db)?;
        // Many enrolments may open a fresh database at once: switching it to WAL takes an
        // exclusive lock, for which SQLite can answer "busy" without waiting. Retry.
        let mut wait = Duration::from_millis(5);
        loop {
            match conn.execute_batch(SCHEMA) {
                Ok(()) => break,
                Err(e) if is_busy(&e) && wait < Duration::from_secs(10) => {
                    std::thread::sleep(wait);
                    wait *= 2;
                }
                Err(e) => return Err(db(e)),
            }
        }
        Ok(SqliteStore { conn, path: name })
    }
}

fn read_allocation(conn: &Connection, machine: &str) -> rusqlite::Result<Option<Allocation>> {
    let Some(profile) = conn
        .query_row(
            "SELECT profile FROM machines WHERE machine = ?1",
            [machine],
            |r| r.get::<_, String>(0),
        )
        .optional()?
    else {
        return Ok(None);
    };
    let mut stmt = conn.prepare("SELECT pool, idx, entry FROM allocations WHERE machine = ?1")?;
    let entries = stmt
        .query_map([machine], |r| {
            let entry: String = r.get(2)?;
            Ok((
                r.get::<_, String>(0)?,
                (
                    r.get::<_, u32>(1)?,
                    serde_json::from_str(&entry).unwrap_or_default(),
                ),
            ))
        })?
        .collect::<rusqlite::Result<BTreeMap<_, _>>>()?;
    Ok(Some(Allocation {
        machine: machine.to_string(),
        profile,
        entries,
    }))
}

impl Store for SqliteStore {
    fn holds(&mut self, machine: &str) -> Result<Option<Allocation>, StoreError> {
        read_allocation(&self.conn, machine).map_err(db_err(&self.path))
    }

    fn enroll(
        &mut self,
        req: &Enrollment<'_>,
        allocate: Allocate,
    ) -> Result<Option<Allocation>, StoreError> {
        let db = db_err(&self.path);
        // IMMEDIATE: the write lock is taken before reading, so two enrolments never pick
        // the same free entry.
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let out = enroll_on(&tx, &self.path, req)?;
        if allocate == Allocate::Commit {
            tx.commit().map_err(db)?;
        }
        Ok(out)
    }

    fn list(&mut self) -> Result<Vec<Allocation>, StoreError> {
        list_on(&self.conn, &self.path)
    }

    fn release(&mut self, machine: &str) -> Result<bool, StoreError> {
        let db = db_err(&self.path);
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(db)?;
        let released = release_on(&tx, &self.path, machine)?;
        tx.commit().map_err(db)?;
        Ok(released)
    }
}

/// The allocation store inside a SQLite transaction its caller opened (`BEGIN
/// IMMEDIATE`) and commits or drops: what `serve` uses, so that accepting a node and
/// allocating its pool entries are one transaction. [`Allocate`] is the caller's.
#[derive(Debug)]
pub struct SqliteTx<'a> {
    conn: &'a Connection,
    path: String,
}

impl<'a> SqliteTx<'a> {
    /// The store on `conn` (the tables are made when missing), named `path` in errors.
    pub fn new(conn: &'a Connection, path: &str) -> Result<SqliteTx<'a>, StoreError> {
        conn.execute_batch(TABLES).map_err(db_err(path))?;
        Ok(SqliteTx {
            conn,
            path: path.to_string(),
        })
    }
}

impl Store for SqliteTx<'_> {
    fn holds(&mut self, machine: &str) -> Result<Option<Allocation>, StoreError> {
        read_allocation(self.conn, machine).map_err(db_err(&self.path))
    }

    fn enroll(
        &mut self,
        req: &Enrollment<'_>,
        _allocate: Allocate,
    ) -> Result<Option<Allocation>, StoreError> {
        enroll_on(self.conn, &self.path, req)
    }

    fn list(&mut self) -> Result<Vec<Allocation>, StoreError> {
        list_on(self.conn, &self.path)
    }

    fn release(&mut self, machine: &str) -> Result<bool, StoreError> {
        release_on(self.conn, &self.path, machine)
    }
}

/// An enrolment on `conn`, inside a transaction the caller holds.
fn enroll_on(
    tx: &Connection,
    path: &str,
    req: &Enrollment<'_>,
) -> Result<Option<Allocation>, StoreError> {
    let db = db_err(path);
    if let Some(held) = read_allocation(tx, req.machine).map_err(db)? {
        return keep_held(held, req);
    }
    let count: u64 = tx
        .query_row(
            "SELECT COUNT(*) FROM machines WHERE profile = ?1",
            [req.profile],
            |r| r.get(0),
        )
        .map_err(&db)?;
    if full(count, req) {
        return Ok(None);
    }
    let identity = serde_json::to_string(req.identity).expect("strings serialise");
    tx.execute(
        "INSERT INTO machines (machine, profile, identity) VALUES (?1, ?2, ?3)",
        params![req.machine, req.profile, identity],
    )
    .map_err(db)?;
    for (pool, entries) in &req.pools {
        let taken: std::collections::BTreeSet<u32> = {
            let mut stmt = tx
                .prepare("SELECT idx FROM allocations WHERE pool = ?1")
                .map_err(db)?;
            stmt.query_map([pool], |r| r.get(0))
                .map_err(db)?
                .collect::<rusqlite::Result<_>>()
                .map_err(db)?
        };
        let idx = choose(req, pool, entries, |i| taken.contains(&(i as u32)))?;
        let entry = serde_json::to_string(&entries[idx]).expect("strings serialise");
        tx.execute(
            "INSERT INTO allocations (pool, idx, machine, entry) VALUES (?1, ?2, ?3, ?4)",
            params![pool, idx as u32, req.machine, entry],
        )
        .map_err(db)?;
    }
    read_allocation(tx, req.machine).map_err(db)
}

fn list_on(conn: &Connection, path: &str) -> Result<Vec<Allocation>, StoreError> {
    let db = db_err(path);
    let machines: Vec<String> = {
        let mut stmt = conn
            .prepare("SELECT machine FROM machines ORDER BY machine")
            .map_err(db)?;
        stmt.query_map([], |r| r.get(0))
            .map_err(db)?
            .collect::<rusqlite::Result<_>>()
            .map_err(db)?
    };
    let mut out = Vec::new();
    for m in machines {
        out.extend(read_allocation(conn, &m).map_err(db)?);
    }
    Ok(out)
}

fn release_on(tx: &Connection, path: &str, machine: &str) -> Result<bool, StoreError> {
    let db = db_err(path);
    tx.execute("DELETE FROM allocations WHERE machine = ?1", [machine])
        .map_err(db)?;
    let n = tx
        .execute("DELETE FROM machines WHERE machine = ?1", [machine])
        .map_err(db)?;
    Ok(n > 0)
}
