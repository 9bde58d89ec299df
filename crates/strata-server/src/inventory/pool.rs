//! A small pool of inventory connections for `serve`: requests on different blocking
//! threads read the inventory at once instead of queueing behind one connection.
//!
//! SQLite: every connection of the pool opens the same WAL file, so readers never wait
//! for each other nor for the writer; writes are serialised inside the process by one
//! lock the connections share ([`SqliteInventory::open_shared`]), so no write ever waits
//! in SQLite's busy handler (which sleeps in steps of up to 100 ms) behind another of
//! this process. PostgreSQL: independent connections; one found closed (the server
//! restarted, the network dropped) is replaced by a new one when it is next taken.

use std::ops::{Deref, DerefMut};
use std::sync::{Arc, Condvar, Mutex};

use super::{Inventory, InventoryError, PgInventory, SqliteInventory, is_postgres};

/// Connections `serve` keeps: more than its two tokio workers and a few blocking
/// requests at once, few enough for PostgreSQL's `max_connections` across replicas.
pub const POOL_SIZE: usize = 8;

/// Connections to one inventory, each lent to one request at a time.
pub struct Pool {
    idle: Mutex<Vec<Box<dyn Inventory>>>,
    returned: Condvar,
    db: String,
    writer: Arc<Mutex<()>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pool({})", strata_hardware::redact(&self.db))
    }
}

impl Pool {
    /// Opens `size` connections (at least one) to `db`: a `postgres://` URL, else a
    /// SQLite file.
    pub fn open(db: &str, size: usize) -> Result<Pool, InventoryError> {
        let pool = Pool {
            idle: Mutex::new(Vec::new()),
            returned: Condvar::new(),
            db: db.to_string(),
            writer: Arc::new(Mutex::new(())),
        };
        let mut idle = Vec::with_capacity(size.max(1));
        for _ in 0..size.max(1) {
            idle.push(pool.connect()?);
        }
        *pool
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = idle;
        Ok(pool)
    }

    /// A pool around connections already open (tests, a single connection): writes to
    /// a SQLite file are then serialised by SQLite alone.
    pub fn of(connections: Vec<Box<dyn Inventory>>) -> Pool {
        Pool {
            idle: Mutex::new(connections),
            returned: Condvar::new(),
            db: String::new(),
            writer: Arc::new(Mutex::new(())),
        }
    }

    fn connect(&self) -> Result<Box<dyn Inventory>, InventoryError> {
        if is_postgres(&self.db) {
            Ok(Box::new(PgInventory::connect(&self.db)?))
        } else {
            Ok(Box::new(SqliteInventory::open_shared(
                std::path::Path::new(&self.db),
                self.writer.clone(),
            )?))
        }
    }

    /// A connection, once one is free (named like `Mutex::lock`, which the pool
    /// replaced: `s.inventory.lock()?.node(…)`).
    pub fn lock(&self) -> Result<Pooled<'_>, InventoryError> {
        let mut idle = self
            .idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut conn = loop {
            if let Some(c) = idle.pop() {
                break c;
            }
            idle = self
                .returned
                .wait(idle)
                .unwrap_or_else(std::sync::PoisonError::into_inner);
        };
        drop(idle);
        if conn.closed() && !self.db.is_empty() {
            // Replaced outside the pool's lock; on failure the closed one goes back, so
            // the pool keeps its size and the next request tries again.
            match self.connect() {
                Ok(fresh) => conn = fresh,
                Err(e) => {
                    self.give_back(conn);
                    return Err(e);
                }
            }
        }
        Ok(Pooled {
            pool: self,
            conn: Some(conn),
        })
    }

    fn give_back(&self, conn: Box<dyn Inventory>) {
        self.idle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(conn);
        self.returned.notify_one();
    }
}

/// A connection lent by the [`Pool`], given back when dropped.
#[derive(Debug)]
pub struct Pooled<'a> {
    pool: &'a Pool,
    conn: Option<Box<dyn Inventory>>,
}

impl Deref for Pooled<'_> {
    type Target = dyn Inventory;
    fn deref(&self) -> &(dyn Inventory + 'static) {
        self.conn.as_deref().expect("a lent connection")
    }
}

impl DerefMut for Pooled<'_> {
    fn deref_mut(&mut self) -> &mut (dyn Inventory + 'static) {
        self.conn.as_deref_mut().expect("a lent connection")
    }
}

impl Drop for Pooled<'_> {
    fn drop(&mut self) {
        if let Some(c) = self.conn.take() {
            self.pool.give_back(c);
        }
    }
}

#[cfg(test)]
mod tests;
