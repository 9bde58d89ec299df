//! The pool: each connection lent once at a time, writes from many threads all landing,
//! an inventory file from before the fleet's columns, a PostgreSQL connection lost.

use std::sync::mpsc;
use std::time::Duration;

use super::*;
use crate::inventory::{FleetQuery, NodeState, RunReport};

fn report(node: &str, result: &str) -> RunReport {
    RunReport {
        id: 0,
        node: node.into(),
        time: 1001,
        environment: "production".into(),
        version: 1,
        revision: "r1".into(),
        generation: None,
        result: result.into(),
        changes: 0,
        paths: vec![],
        truncated: 0,
        drift: false,
        error: None,
        note: None,
        steps: vec![],
        roles: vec![],
        groups: vec![],
    }
}

#[test]
fn each_connection_is_lent_once_and_a_request_waits_for_one_back() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db").display().to_string();
    let pool = Pool::open(&db, 2).unwrap();
    let a = pool.lock().unwrap();
    let b = pool.lock().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::scope(|s| {
        s.spawn(|| {
            let mut c = pool.lock().unwrap();
            tx.send(c.node("nobody").unwrap()).unwrap();
        });
        // Both connections are out: the third request waits...
        assert!(rx.recv_timeout(Duration::from_millis(300)).is_err());
        drop(a);
        // ...and is served once one comes back.
        assert_eq!(rx.recv_timeout(Duration::from_secs(30)).unwrap(), None);
    });
    drop(b);
}

#[test]
fn writes_from_many_threads_through_the_pool_all_land() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db").display().to_string();
    let pool = Pool::open(&db, 4).unwrap();
    std::thread::scope(|s| {
        for t in 0..8 {
            let pool = &pool;
            s.spawn(move || {
                for i in 0..25 {
                    let mut c = pool.lock().unwrap();
                    assert!(
                        c.fresh_nonce(&format!("k{t}"), &format!("n{i}"), 1000)
                            .unwrap()
                    );
                    c.add_report(&report(&format!("node{t}"), "changed"))
                        .unwrap();
                }
            });
        }
    });
    let mut c = pool.lock().unwrap();
    let all = c.reports(None).unwrap();
    assert_eq!(all.len(), 200);
    let mut ids: Vec<i64> = all.iter().map(|r| r.id).collect();
    ids.dedup();
    assert_eq!(ids.len(), 200, "every report has its own id");
    // A nonce used by one thread is still refused after the storm.
    assert!(!c.fresh_nonce("k3", "n7", 1001).unwrap());
}

#[test]
fn a_file_from_before_the_fleet_columns_shows_each_nodes_last_run() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    {
        // The tables as the previous release made them, with two nodes and three runs.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE strata_nodes (
                name TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, public TEXT NOT NULL,
                age TEXT, state TEXT NOT NULL, environment TEXT NOT NULL, facts TEXT NOT NULL,
                enrolled INTEGER NOT NULL, changed INTEGER NOT NULL, classification TEXT);
             CREATE TABLE strata_reports (
                id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, time INTEGER NOT NULL,
                environment TEXT NOT NULL, version INTEGER NOT NULL, revision TEXT NOT NULL,
                generation INTEGER, result TEXT NOT NULL, changes INTEGER NOT NULL,
                paths TEXT NOT NULL, truncated INTEGER NOT NULL, drift INTEGER NOT NULL,
                error TEXT, note TEXT);
             INSERT INTO strata_nodes VALUES
                ('a', 'ka', 'pa', NULL, 'accepted', 'production', '[]', 1, 1, NULL),
                ('b', 'kb', 'pb', NULL, 'accepted', 'production', '[]', 1, 1, NULL);
             INSERT INTO strata_reports (node, time, environment, version, revision, result,
                changes, paths, truncated, drift) VALUES
                ('a', 2, 'production', 1, 'r1', 'failed', 0, '[]', 0, 0),
                ('a', 3, 'production', 1, 'r1', 'unchanged', 0, '[]', 0, 0),
                ('b', 4, 'production', 1, 'r1', 'failed', 0, '[]', 0, 0);",
        )
        .unwrap();
    }
    for _ in 0..2 {
        // Opened twice: the columns are added and filled once, then left alone.
        let pool = Pool::open(&path.display().to_string(), 2).unwrap();
        let page = pool
            .lock()
            .unwrap()
            .fleet(
                &FleetQuery {
                    limit: 10,
                    ..FleetQuery::default()
                },
                10,
            )
            .unwrap();
        let got: Vec<(&str, &str, Option<i64>)> = page
            .nodes
            .iter()
            .map(|n| {
                (
                    n.name.as_str(),
                    n.status.as_str(),
                    n.last.as_ref().map(|l| l.id),
                )
            })
            .collect();
        assert_eq!(got, [("a", "unchanged", Some(2)), ("b", "failed", Some(3))]);
        assert_eq!(page.counts.get("failed"), Some(&1));
        assert_eq!(page.total, 2);
    }
    // A report after the upgrade moves the node's status.
    let pool = Pool::open(&path.display().to_string(), 1).unwrap();
    let mut c = pool.lock().unwrap();
    let id = c.add_report(&report("b", "changed")).unwrap();
    let page = c
        .fleet(
            &FleetQuery {
                status: Some("changed"),
                limit: 10,
                ..FleetQuery::default()
            },
            10,
        )
        .unwrap();
    assert_eq!(page.total, 1);
    assert_eq!(page.nodes[0].last.as_ref().map(|l| l.id), Some(id));
    assert_eq!(page.nodes[0].state, NodeState::Accepted);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs PostgreSQL on loopback: scripts/test starts one (feature host-tests)"
)]
fn a_postgresql_connection_the_server_closed_is_replaced() {
    let url = std::env::var("STRATA_TEST_PG")
        .expect("STRATA_TEST_PG: needs PostgreSQL (scripts/test starts one and sets it)");
    let name = format!("strata_pool{}", std::process::id());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let db = format!("{}/{name}", url.rsplit_once('/').unwrap().0);
    let pool = Pool::open(&db, 2).unwrap();
    pool.lock()
        .unwrap()
        .add_report(&report("a", "changed"))
        .unwrap();
    // The server ends every connection of the pool (a restart, a failover).
    admin
        .execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1",
            &[&name],
        )
        .unwrap();
    // A request may find its connection closed and fail; within as many requests as the
    // pool has connections, each has been replaced and the inventory answers again.
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(pool.lock().unwrap().reports(None).map(|r| r.len()));
    }
    assert!(matches!(answers.last(), Some(Ok(1))), "{answers:?}");
}
