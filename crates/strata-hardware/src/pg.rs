//! The allocation store on a PostgreSQL server, shared by many `strata` processes and
//! machines: the same schema and the same all-or-nothing enrolment as the SQLite file.

use std::collections::{BTreeMap, BTreeSet};

use postgres::{Client, NoTls};

use crate::pools::PoolEntry;
use crate::store::{Allocate, Allocation, Enrollment, Store, StoreError};

/// A store on PostgreSQL.
pub struct PgStore {
    client: Client,
    url: String,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgStore({})", redact(&self.url))
    }
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => {
            let creds = &url[s + 3..at];
            let user = creds.split(':').next().unwrap_or("");
            format!("{}{user}@{}", &url[..s + 3], &url[at + 1..])
        }
        _ => url.to_string(),
    }
}

/// The tables.
const TABLES: &str = "CREATE TABLE IF NOT EXISTS strata_machines (
         machine TEXT PRIMARY KEY, profile TEXT NOT NULL, identity TEXT NOT NULL);
     CREATE TABLE IF NOT EXISTS strata_allocations (
         pool TEXT NOT NULL, idx INTEGER NOT NULL,
         machine TEXT NOT NULL REFERENCES strata_machines(machine) ON DELETE CASCADE,
         entry TEXT NOT NULL, PRIMARY KEY (pool, idx));";

/// Serialises enrolments: one transaction-scoped advisory lock for the whole store.
const LOCK: i64 = 0x5354_5241_5441; // "STRATA"

/// Connects to `url` and creates `schema`'s tables when missing, holding the advisory
/// lock `lock` meanwhile so that two processes starting at once do not both create them.
pub fn connect_schema(url: &str, lock: i64, schema: &str) -> Result<Client, postgres::Error> {
    let mut client = Client::connect(url, NoTls)?;
    let mut tx = client.transaction()?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&lock])?;
    tx.batch_execute(schema)?;
    tx.commit()?;
    Ok(client)
}

impl PgStore {
    /// Connects and creates the tables when missing.
    pub fn connect(url: &str) -> Result<PgStore, StoreError> {
        let name = redact(url);
        let db = |e: postgres::Error| StoreError::Db {
            db: name.clone(),
            message: e.to_string(),
        };
        let client = connect_schema(url, LOCK, TABLES).map_err(db)?;
        Ok(PgStore {
            client,
            url: url.to_string(),
        })
    }

    fn db(&self) -> impl Fn(postgres::Error) -> StoreError + use<> {
        let name = redact(&self.url);
        move |e| StoreError::Db {
            db: name.clone(),
            message: e.to_string(),
        }
    }
}

fn read(
    tx: &mut impl postgres::GenericClient,
    machine: &str,
) -> Result<Option<Allocation>, postgres::Error> {
    let Some(row) = tx.query_opt(
        "SELECT profile FROM strata_machines WHERE machine = $1",
        &[&machine],
    )?
    else {
        return Ok(None);
    };
    let profile: String = row.get(0);
    let mut entries = BTreeMap::new();
    for r in tx.query(
        "SELECT pool, idx, entry FROM strata_allocations WHERE machine = $1",
        &[&machine],
    )? {
        let entry: String = r.get(2);
        let entry: PoolEntry = serde_json::from_str(&entry).unwrap_or_default();
        entries.insert(r.get::<_, String>(0), (r.get::<_, i32>(1) as u32, entry));
    }
    Ok(Some(Allocation {
        machine: machine.to_string(),
        profile,
        entries,
    }))
}

impl Store for PgStore {
    fn holds(&mut self, machine: &str) -> Result<Option<Allocation>, StoreError> {
        let db = self.db();
        read(&mut self.client, machine).map_err(db)
    }

    fn enroll(
        &mut self,
        req: &Enrollment<'_>,
        allocate: Allocate,
    ) -> Result<Option<Allocation>, StoreError> {
        let db = self.db();
        let mut tx = self.client.transaction().map_err(&db)?;
        let out = enroll_on(&mut tx, &self.url, req)?;
        if allocate == Allocate::Commit {
            tx.commit().map_err(&db)?;
        }
        Ok(out)
    }

    fn list(&mut self) -> Result<Vec<Allocation>, StoreError> {
        list_on(&mut self.client, &self.url)
    }

    fn release(&mut self, machine: &str) -> Result<bool, StoreError> {
        let db = self.db();
        let mut tx = self.client.transaction().map_err(&db)?;
        let released = release_on(&mut tx, &self.url, machine)?;
        tx.commit().map_err(&db)?;
        Ok(released)
    }
}

/// The allocation store inside a PostgreSQL transaction its caller opened and commits
/// or drops: what `serve` uses, so that accepting a node and allocating its pool
/// entries are one transaction. [`Allocate`] is the caller's.
pub struct PgTx<'a, 'b> {
    tx: &'a mut postgres::Transaction<'b>,
    url: String,
}

impl std::fmt::Debug for PgTx<'_, '_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PgTx({})", redact(&self.url))
    }
}

impl<'a, 'b> PgTx<'a, 'b> {
    /// The store in `tx` (the tables are made when missing), named `url` in errors.
    pub fn new(tx: &'a mut postgres::Transaction<'b>, url: &str) -> Result<Self, StoreError> {
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
            .and_then(|_| tx.batch_execute(TABLES))
            .map_err(db_err(url))?;
        Ok(PgTx {
            tx,
            url: url.to_string(),
        })
    }
}

impl Store for PgTx<'_, '_> {
    fn holds(&mut self, machine: &str) -> Result<Option<Allocation>, StoreError> {
        read(self.tx, machine).map_err(db_err(&self.url))
    }

    fn enroll(
        &mut self,
        req: &Enrollment<'_>,
        _allocate: Allocate,
    ) -> Result<Option<Allocation>, StoreError> {
        enroll_on(self.tx, &self.url, req)
    }

    fn list(&mut self) -> Result<Vec<Allocation>, StoreError> {
        list_on(self.tx, &self.url)
    }

    fn release(&mut self, machine: &str) -> Result<bool, StoreError> {
        release_on(self.tx, &self.url, machine)
    }
}

fn db_err(url: &str) -> impl Fn(postgres::Error) -> StoreError + use<> {
    let name = redact(url);
    move |e| StoreError::Db {
        db: name.clone(),
        message: e.to_string(),
    }
}

/// An enrolment inside a transaction the caller holds (under the store's lock).
fn enroll_on(
    tx: &mut impl postgres::GenericClient,
    url: &str,
    req: &Enrollment<'_>,
) -> Result<Option<Allocation>, StoreError> {
    let db = db_err(url);
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .map_err(&db)?;
    if let Some(held) = read(tx, req.machine).map_err(&db)? {
        return crate::store::keep_held(held, req);
    }
    let count: i64 = tx
        .query_one(
            "SELECT COUNT(*) FROM strata_machines WHERE profile = $1",
            &[&req.profile],
        )
        .map_err(&db)?
        .get(0);
    if crate::store::full(count.unsigned_abs(), req) {
        return Ok(None);
    }
    let identity = serde_json::to_string(req.identity).expect("strings serialise");
    tx.execute(
        "INSERT INTO strata_machines (machine, profile, identity) VALUES ($1, $2, $3)",
        &[&req.machine, &req.profile, &identity],
    )
    .map_err(&db)?;
    for (pool, entries) in &req.pools {
        let taken: BTreeSet<i32> = tx
            .query(
                "SELECT idx FROM strata_allocations WHERE pool = $1",
                &[pool],
            )
            .map_err(&db)?
            .iter()
            .map(|r| r.get(0))
            .collect();
        let idx = crate::store::choose(req, pool, entries, |i| taken.contains(&(i as i32)))?;
        let entry = serde_json::to_string(&entries[idx]).expect("strings serialise");
        tx.execute(
            "INSERT INTO strata_allocations (pool, idx, machine, entry) VALUES ($1, $2, $3, $4)",
            &[pool, &(idx as i32), &req.machine, &entry],
        )
        .map_err(&db)?;
    }
    read(tx, req.machine).map_err(&db)
}

fn list_on(c: &mut impl postgres::GenericClient, url: &str) -> Result<Vec<Allocation>, StoreError> {
    let db = db_err(url);
    let machines: Vec<String> = c
        .query("SELECT machine FROM strata_machines ORDER BY machine", &[])
        .map_err(&db)?
        .iter()
        .map(|r| r.get(0))
        .collect();
    let mut out = Vec::new();
    for m in machines {
        out.extend(read(c, &m).map_err(&db)?);
    }
    Ok(out)
}

fn release_on(
    tx: &mut impl postgres::GenericClient,
    url: &str,
    machine: &str,
) -> Result<bool, StoreError> {
    let db = db_err(url);
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&LOCK])
        .map_err(&db)?;
    let n = tx
        .execute(
            "DELETE FROM strata_machines WHERE machine = $1",
            &[&machine],
        )
        .map_err(&db)?;
    Ok(n > 0)
}

/// Opens the store a `--db` value names: a `postgres://` URL, else a SQLite file path.
pub fn open(db: &str) -> Result<Box<dyn Store>, StoreError> {
    if db.starts_with("postgres://") || db.starts_with("postgresql://") {
        Ok(Box::new(PgStore::connect(db)?))
    } else {
        Ok(Box::new(crate::SqliteStore::open(std::path::Path::new(
            db,
        ))?))
    }
}

/// The store a classification uses: [`open`], except that a dry run against a SQLite
/// file that does not exist yet uses an empty store in memory (a plan creates no
/// database).
pub fn open_for(db: &str, allocate: Allocate) -> Result<Box<dyn Store>, StoreError> {
    let is_url = db.starts_with("postgres://") || db.starts_with("postgresql://");
    if allocate == Allocate::Commit || is_url || strata_fs::exists(std::path::Path::new(db)) {
        open(db)
    } else {
        Ok(Box::new(crate::SqliteStore::in_memory()?))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn passwords_never_reach_messages() {
        assert_eq!(
            super::redact("postgres://strata:s3cret@db:5432/x"),
            "postgres://strata@db:5432/x"
        );
        assert_eq!(super::redact("postgres://db/x"), "postgres://db/x");
    }
}
