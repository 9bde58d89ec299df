//! The fleet's pages on both stores (called from tests.rs, which opens them): last runs,
//! counts, filters (roles, groups, behind), sorts, and keyset paging.

use super::fleet;
use super::tests::{no_class, req};
use super::*;

fn report(node: &str, result: &str, time: u64, revision: &str) -> RunReport {
    RunReport {
        id: 0,
        node: node.into(),
        time,
        environment: "production".into(),
        version: 1,
        revision: revision.into(),
        generation: None,
        result: result.into(),
        changes: 0,
        paths: vec![],
        truncated: 0,
        drift: true,
        error: None,
        note: None,
        steps: vec![],
        roles: vec![],
        groups: vec![],
    }
}

/// The fleet's pages: each node's last run, statuses, counts, filters, paging, and
/// pending nodes past their time left out, against a fresh `inv`.
pub(super) fn fleet_pages(inv: &mut dyn Inventory) {
    inv.enroll(&req("d", "kd", None), 0, &mut no_class).unwrap();
    for n in ["a", "b", "c"] {
        inv.enroll(&req(n, &format!("k{n}"), None), 1000, &mut no_class)
            .unwrap();
    }
    for n in ["a", "b"] {
        inv.accept(n, 1000, &mut no_class).unwrap().unwrap();
    }
    let run = |result: &str| RunReport {
        roles: vec!["web".into(), "a_b".into()],
        groups: vec!["east".into(), "all".into()],
        ..report("a", result, 1001, "r1")
    };
    inv.add_report(&run("failed")).unwrap();
    let last = inv.add_report(&run("changed")).unwrap();
    let now = PENDING_TTL + 1000;
    let published = [("production".to_string(), "r1".to_string())];
    let all = FleetQuery {
        limit: 10,
        published: &published,
        ..FleetQuery::default()
    };
    let page = inv.fleet(&all, now).unwrap();
    assert_eq!(page.total, 3);
    let names: Vec<(&str, &str)> = page
        .nodes
        .iter()
        .map(|n| (n.name.as_str(), n.status.as_str()))
        .collect();
    assert_eq!(names, [("a", "changed"), ("b", "none"), ("c", "pending")]);
    let a = page.nodes[0].last.clone().unwrap();
    assert_eq!((a.id, a.result.as_str(), a.drift), (last, "changed", true));
    assert_eq!((a.time, a.revision.as_str()), (1001, "r1"));
    assert_eq!(page.nodes[1].last, None);
    assert_eq!(
        page.counts.clone().into_iter().collect::<Vec<_>>(),
        [
            ("changed".into(), 1),
            ("none".into(), 1),
            ("pending".into(), 1)
        ]
    );
    assert!(!page.more);
    let mut with = |q: FleetQuery<'_>| inv.fleet(&q, now).unwrap();
    let none = with(FleetQuery {
        status: Some("none"),
        ..all.clone()
    });
    assert_eq!((none.total, none.nodes[0].name.as_str()), (1, "b"));
    let elsewhere = with(FleetQuery {
        environment: Some("x"),
        ..all.clone()
    });
    assert_eq!((elsewhere.total, elsewhere.nodes.len()), (0, 0));
    let second = with(FleetQuery {
        offset: 1,
        limit: 1,
        ..all.clone()
    });
    assert_eq!(
        (second.total, second.nodes.len(), second.more),
        (3, 1, true)
    );
    assert_eq!(second.nodes[0].name, "b");

    // Roles and groups: the last report's that named any, in its order; a filter matches
    // a whole name (`_` is no wildcard, a prefix is not the name), never a node
    // without them, and a group is not a role.
    assert_eq!(
        (page.nodes[0].roles.clone(), page.nodes[0].groups.clone()),
        (
            vec!["web".to_string(), "a_b".into()],
            vec!["east".to_string(), "all".into()]
        )
    );
    assert!(page.nodes[1].roles.is_empty());
    for (role, group, found) in [
        (Some("web"), None, "a"),
        (Some("a_b"), None, "a"),
        (Some("axb"), None, ""),
        (Some("we"), None, ""),
        (Some("%"), None, ""),
        (Some("' OR '1'='1"), None, ""),
        (None, Some("east"), "a"),
        (Some("a_b"), Some("all"), "a"),
        (Some("a_b"), Some("west"), ""),
        (None, Some("web"), ""),
    ] {
        let f = with(FleetQuery {
            role,
            group,
            ..all.clone()
        });
        let names: String = f.nodes.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(
            (names.as_str(), f.total),
            (found, found.len()),
            "{role:?} {group:?}"
        );
    }

    // Behind or current: a's last revision against the one published for production.
    assert_eq!(page.nodes[0].behind, Some(false));
    assert_eq!((page.nodes[1].behind, page.nodes[2].behind), (None, None));
    assert_eq!(page.revisions.get("current"), Some(&1));
    let r2 = [("production".to_string(), "r2".to_string())];
    let newer = FleetQuery {
        published: &r2,
        ..all.clone()
    };
    let behind = with(FleetQuery {
        revision: Some(Revision::Behind),
        ..newer.clone()
    });
    assert_eq!(behind.total, 1);
    assert_eq!(
        (behind.nodes[0].name.as_str(), behind.nodes[0].behind),
        ("a", Some(true))
    );
    assert_eq!(behind.revisions.get("behind"), Some(&1));
    let current = with(FleetQuery {
        revision: Some(Revision::Current),
        ..newer.clone()
    });
    assert_eq!(current.total, 0);
    let nothing = with(FleetQuery {
        revision: Some(Revision::Behind),
        published: &[],
        ..all.clone()
    });
    assert_eq!(nothing.total, 0, "nothing published: no node is behind");

    // A report that names no role nor group keeps the last ones named; one that names
    // others replaces them.
    inv.add_report(&report("a", "unchanged", 1002, "r1"))
        .unwrap();
    let kept = inv.fleet(&all, now).unwrap();
    assert_eq!(kept.nodes[0].roles, ["web", "a_b"]);
    inv.add_report(&RunReport {
        roles: vec!["db".into()],
        ..report("a", "changed", 1003, "r1")
    })
    .unwrap();
    let moved = inv.fleet(&all, now).unwrap();
    assert_eq!(
        (moved.nodes[0].roles.clone(), moved.nodes[0].groups.clone()),
        (vec!["db".to_string()], vec![])
    );
    for (role, found) in [("web", 0), ("db", 1)] {
        let f = inv
            .fleet(
                &FleetQuery {
                    role: Some(role),
                    ..all.clone()
                },
                now,
            )
            .unwrap();
        assert_eq!(f.total, found, "{role}");
    }
    // A node forgotten leaves no role behind for one enrolled under its name later.
    assert!(inv.forget("a").unwrap());
    inv.enroll(&req("a", "ka2", None), now, &mut no_class)
        .unwrap();
    inv.accept("a", now, &mut no_class).unwrap().unwrap();
    let f = inv
        .fleet(
            &FleetQuery {
                role: Some("db"),
                ..all.clone()
            },
            now,
        )
        .unwrap();
    assert_eq!(f.total, 0);

    // Sorted by each column, both ways, ties broken by name the same way.
    for (sort, up, down) in [
        (Sort::Name, "abc", "cba"),
        (Sort::Status, "abc", "cba"),
        (Sort::Environment, "abc", "cba"),
        (Sort::Last, "abc", "cba"),
        (Sort::Revision, "abc", "cba"),
    ] {
        for limit in [1, 2, 3] {
            assert_eq!(
                walk(inv, &all, sort, false, limit, now).0,
                up,
                "{sort:?} {limit}"
            );
            assert_eq!(
                walk(inv, &all, sort, true, limit, now).0,
                down,
                "{sort:?} desc {limit}"
            );
        }
    }
}

/// The whole order of `q` sorted by `sort`, read `limit` rows at a time three ways:
/// with offsets, with cursors after each page's last row, and backwards with cursors
/// before each page's first row; the three must agree (asserted), with no node twice.
/// Returns the names joined, and the number of pages.
fn walk(
    inv: &mut dyn Inventory,
    q: &FleetQuery<'_>,
    sort: Sort,
    descending: bool,
    limit: usize,
    now: u64,
) -> (String, usize) {
    let ask = |cursor: Option<Cursor>, offset: usize| FleetQuery {
        sort,
        descending,
        limit,
        offset,
        cursor,
        ..q.clone()
    };
    let mut by_offset = Vec::new();
    for offset in (0..).step_by(limit) {
        let page = inv.fleet(&ask(None, offset), now).unwrap();
        by_offset.extend(page.nodes.into_iter().map(|n| n.name));
        if !page.more {
            break;
        }
    }
    let mut forward: Vec<NodeSummary> = Vec::new();
    let mut pages = 0;
    loop {
        let cursor = forward.last().map(|n| Cursor {
            key: sort.key(n),
            name: n.name.clone(),
            before: false,
        });
        let page = inv.fleet(&ask(cursor, 0), now).unwrap();
        assert!(page.nodes.len() <= limit);
        pages += 1;
        forward.extend(page.nodes);
        if !page.more {
            break;
        }
    }
    let names: Vec<String> = forward.iter().map(|n| n.name.clone()).collect();
    assert_eq!(
        names, by_offset,
        "{sort:?} desc {descending} limit {limit}: keyset and offset"
    );
    let mut seen = std::collections::BTreeSet::new();
    assert!(
        names.iter().all(|n| seen.insert(n.clone())),
        "a node twice: {names:?}"
    );
    // Backwards from past the last row: each page before the first row of the last.
    let mut backward: Vec<String> = Vec::new();
    let mut first = forward.last().cloned();
    if let Some(last) = &first {
        backward.push(last.name.clone());
    }
    while let Some(n) = first.take() {
        let cursor = Cursor {
            key: sort.key(&n),
            name: n.name.clone(),
            before: true,
        };
        let page = inv.fleet(&ask(Some(cursor), 0), now).unwrap();
        for m in page.nodes.iter().rev() {
            backward.push(m.name.clone());
        }
        if page.more {
            first = page.nodes.first().cloned();
        }
    }
    backward.reverse();
    assert_eq!(
        backward, names,
        "{sort:?} desc {descending} limit {limit}: backwards"
    );
    (names.concat(), pages)
}

/// Keyset paging over a fleet of 40 nodes of 3 environments, every status, times and
/// revisions with ties, roles: every sort, both ways, several page sizes, with and
/// without filters, returns each node once, in order, as offsets do.
pub(super) fn fleet_keyset(inv: &mut dyn Inventory) {
    let now = 10_000;
    for i in 0..40 {
        let name = format!("n{:02}", (i * 7) % 40);
        let mut r = req(&name, &format!("k{i}"), None);
        r.environment = ["production", "staging", "test"][i % 3].into();
        inv.enroll(&r, now, &mut no_class).unwrap();
        if i % 10 != 9 {
            inv.accept(&name, now, &mut no_class).unwrap().unwrap();
        }
        if i % 5 < 3 && i % 10 != 9 {
            let result = ["changed", "unchanged", "failed"][i % 3];
            inv.add_report(&RunReport {
                environment: r.environment.clone(),
                roles: if i % 2 == 0 {
                    vec!["web".into()]
                } else {
                    vec!["db".into(), "web".into()]
                },
                groups: vec![format!("g{}", i % 4)],
                ..report(&name, result, 5000 + (i as u64 % 4), ["r1", "r2"][i % 2])
            })
            .unwrap();
        }
    }
    let published = [
        ("production".to_string(), "r1".to_string()),
        ("staging".to_string(), "r2".to_string()),
    ];
    let all = FleetQuery {
        published: &published,
        limit: 100,
        ..FleetQuery::default()
    };
    assert_eq!(inv.fleet(&all, now).unwrap().total, 40);
    let filters = [
        all.clone(),
        FleetQuery {
            role: Some("web"),
            ..all.clone()
        },
        FleetQuery {
            group: Some("g1"),
            environment: Some("staging"),
            ..all.clone()
        },
        FleetQuery {
            revision: Some(Revision::Behind),
            ..all.clone()
        },
        FleetQuery {
            status: Some("none"),
            ..all.clone()
        },
    ];
    for q in &filters {
        let total = inv.fleet(q, now).unwrap().total;
        assert!(total > 0, "{q:?}: the filter finds nodes");
        for (_, sort) in Sort::ALL {
            for descending in [false, true] {
                let whole = walk(inv, q, sort, descending, 100, now).0;
                for limit in [1, 3, 7] {
                    let (names, pages) = walk(inv, q, sort, descending, limit, now);
                    assert_eq!(names, whole);
                    assert_eq!(names.len(), total * 3);
                    assert_eq!(pages, total.div_ceil(limit).max(1));
                }
            }
        }
    }
    // Behind: each node reported, of an environment published, whose revision is not
    // that environment's.
    let behind = inv
        .fleet(
            &FleetQuery {
                revision: Some(Revision::Behind),
                ..all.clone()
            },
            now,
        )
        .unwrap();
    assert!(behind.nodes.iter().all(|n| n.behind == Some(true)));
    let every = inv.fleet(&all, now).unwrap();
    let expected = every
        .nodes
        .iter()
        .filter(|n| n.behind == Some(true))
        .count();
    assert_eq!(
        (behind.total, behind.revisions.get("behind")),
        (expected, Some(&expected))
    );
}

/// The plan SQLite makes for `sql`, its lines joined.
fn plan(conn: &rusqlite::Connection, sql: &fleet::Sql) -> String {
    let args: Vec<rusqlite::types::Value> = sql
        .args
        .iter()
        .map(|a| match a {
            fleet::Arg::Text(t) => t.clone().into(),
            fleet::Arg::Int(i) => (*i).into(),
        })
        .collect();
    let mut stmt = conn
        .prepare(&format!("EXPLAIN QUERY PLAN {}", sql.text))
        .unwrap();
    stmt.query_map(rusqlite::params_from_iter(args), |r| r.get::<_, String>(3))
        .unwrap()
        .collect::<rusqlite::Result<Vec<_>>>()
        .unwrap()
        .join("\n")
}

#[test]
fn on_sqlite_a_page_after_a_cursor_seeks_its_index_and_a_role_looks_up_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plans.db");
    drop(SqliteInventory::open(&path).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    for (_, sort) in Sort::ALL {
        for descending in [false, true] {
            for before in [false, true] {
                let key = if sort == Sort::Last {
                    Key::Int(5)
                } else {
                    Key::Text("k".into())
                };
                let q = FleetQuery {
                    sort,
                    descending,
                    limit: 100,
                    cursor: Some(Cursor {
                        key,
                        name: "n".into(),
                        before,
                    }),
                    ..FleetQuery::default()
                };
                let p = plan(&conn, &fleet::fleet_sql(&q, 0, false).page);
                // A range of the sort's index: `SEARCH … USING INDEX i ((k,name)>(?,?))`
                // or `(name>?)`, never a scan of the table or of the index from its end.
                let seek = p.lines().any(|l| {
                    l.contains("SEARCH strata_nodes USING INDEX")
                        && (l.contains("name)>(?,?)")
                            || l.contains("name)<(?,?)")
                            || l.contains("(name>?)")
                            || l.contains("(name<?)"))
                });
                assert!(seek, "{sort:?} desc {descending} before {before}:\n{p}");
                assert!(!p.contains("SCAN strata_nodes"), "{sort:?}:\n{p}");
            }
        }
    }
    let q = FleetQuery {
        role: Some("web"),
        limit: 100,
        ..FleetQuery::default()
    };
    let sql = fleet::fleet_sql(&q, 0, false);
    for s in [&sql.page, sql.total.as_ref().unwrap()] {
        let p = plan(&conn, s);
        assert!(
            p.contains("SEARCH strata_node_labels USING COVERING INDEX")
                && p.contains("kind=? AND label=?"),
            "{p}"
        );
    }
}
