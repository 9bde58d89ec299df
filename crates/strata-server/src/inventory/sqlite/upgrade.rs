//! One way to bring a SQLite file made by an older strata up to the current schema:
//! columns added once, by whoever opens the file first, and filled from what it holds.

use rusqlite::Connection;

use super::super::fleet::{
    FLEET_BACKFILL, FLEET_INDEXES, ROW_BACKFILL, fleet_columns, row_columns,
};

/// Adds columns to a table of a file made before them (`alters`, then `fill`), once,
/// whoever opens the file first: `probe` is the first new column.
fn columns_added(
    conn: &Connection,
    table: &str,
    probe: &str,
    alters: &[String],
    fill: Option<&str>,
) -> rusqlite::Result<()> {
    let has = |c: &Connection| {
        c.query_row(
            "SELECT count(*) FROM pragma_table_info(?1) WHERE name = ?2",
            [table, probe],
            |r| r.get::<_, i64>(0),
        )
    };
    if has(conn)? == 0 {
        conn.execute_batch("BEGIN IMMEDIATE")?;
        let done = (|| {
            if has(conn)? == 0 {
                for alter in alters {
                    conn.execute(alter, [])?;
                }
                if let Some(fill) = fill {
                    conn.execute_batch(fill)?;
                }
            }
            conn.execute_batch("COMMIT")
        })();
        if done.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        done?;
    }
    Ok(())
}

/// What files made by older versions lack: reports' steps, tokens' uses (single use
/// each before), the fleet's columns (filled from the reports) and their index.
pub(super) fn schema_upgraded(conn: &Connection) -> rusqlite::Result<()> {
    let add = |table: &str, column: &str| format!("ALTER TABLE {table} ADD COLUMN {column}");
    let (reports, tokens, nodes) = ("strata_reports", "strata_tokens", "strata_nodes");
    let upgrades: [(&str, &str, Vec<String>, Option<&str>); 6] = [
        (
            reports,
            "steps",
            vec![add(reports, "steps TEXT NOT NULL DEFAULT '[]'")],
            None,
        ),
        (
            tokens,
            "uses",
            vec![add(tokens, "uses INTEGER NOT NULL DEFAULT 1")],
            None,
        ),
        (
            tokens,
            "provisioning",
            vec![add(tokens, "provisioning INTEGER NOT NULL DEFAULT 0")],
            None,
        ),
        (
            nodes,
            "rekeyed",
            vec![add(nodes, "rekeyed INTEGER"), add(nodes, "old_key TEXT")],
            None,
        ),
        (
            nodes,
            "last_report",
            fleet_columns("INTEGER").into(),
            Some(FLEET_BACKFILL),
        ),
        (
            nodes,
            "last_revision",
            row_columns("INTEGER", "VIRTUAL"),
            Some(ROW_BACKFILL),
        ),
    ];
    for (table, column, statements, fill) in &upgrades {
        columns_added(conn, table, column, statements, *fill)?;
    }
    conn.execute_batch(FLEET_INDEXES)
}
