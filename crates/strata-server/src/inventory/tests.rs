//! The inventory's decisions, on both stores.

use super::*;
use crate::inventory::fleet_tests::{fleet_keyset, fleet_pages};

pub(super) fn req(name: &str, key: &str, token: Option<&str>) -> EnrollRequest {
    EnrollRequest {
        name: name.into(),
        key_id: key.into(),
        public: format!("pub-{key}"),
        age: None,
        facts: "[]".into(),
        token: token.map(str::to_string),
        environment: "production".into(),
    }
}

fn token(hash: &str, node: Option<&str>, expires: u64) -> TokenRecord {
    TokenRecord {
        hash: hash.into(),
        node: node.map(str::to_string),
        environment: Some("test".into()),
        expires,
        uses: 1,
        provisioning: false,
    }
}

pub(super) fn no_class(
    _: &mut dyn strata_hardware::Store,
    _: &str,
    _: &str,
) -> Result<Option<String>, String> {
    Ok(None)
}

fn refused(e: Enrolled) -> String {
    match e {
        Enrolled::Refused(why) => why,
        other => panic!("not refused: {other:?}"),
    }
}

/// Every decision of an enrollment, against `inv`.
fn enrollment_decisions(inv: &mut dyn Inventory) {
    inv.add_token(&token("t1", None, 2000)).unwrap();
    inv.add_token(&token("t2", Some("web2"), 2000)).unwrap();
    inv.add_token(&token("old", None, 1000)).unwrap();

    // A valid token: accepted at once, in the token's environment.
    let Enrolled::Accepted(n) = inv
        .enroll(&req("web1", "k1", Some("t1")), 1000, &mut no_class)
        .unwrap()
    else {
        panic!("not accepted")
    };
    assert_eq!(
        (n.state, n.environment.as_str()),
        (NodeState::Accepted, "test")
    );
    // The same token again, for another node: used.
    let why = refused(
        inv.enroll(&req("web3", "k3", Some("t1")), 1001, &mut no_class)
            .unwrap(),
    );
    assert!(why.contains("already used"), "{why}");
    assert!(inv.node("web3").unwrap().is_none(), "nothing recorded");
    // A token for two: two nodes, then refused; expired, refused with uses left.
    inv.add_token(&TokenRecord {
        uses: 2,
        ..token("two", None, 2000)
    })
    .unwrap();
    inv.add_token(&TokenRecord {
        uses: 5,
        ..token("two-old", None, 1000)
    })
    .unwrap();
    for (n, k) in [("m1", "km1"), ("m2", "km2")] {
        assert!(matches!(
            inv.enroll(&req(n, k, Some("two")), 1001, &mut no_class)
                .unwrap(),
            Enrolled::Accepted(_)
        ));
    }
    let why = refused(
        inv.enroll(&req("m3", "km3", Some("two")), 1001, &mut no_class)
            .unwrap(),
    );
    assert!(why.contains("already used"), "{why}");
    let why = refused(
        inv.enroll(&req("m3", "km3", Some("two-old")), 1001, &mut no_class)
            .unwrap(),
    );
    assert!(why.contains("expired"), "{why}");
    assert!(inv.node("m3").unwrap().is_none(), "nothing recorded");
    assert!(inv.forget("m1").unwrap() && inv.forget("m2").unwrap());
    // Expired, unknown, bound to another name.
    assert!(
        refused(
            inv.enroll(&req("web3", "k3", Some("old")), 1001, &mut no_class)
                .unwrap()
        )
        .contains("expired")
    );
    assert!(
        refused(
            inv.enroll(&req("web3", "k3", Some("nope")), 1001, &mut no_class)
                .unwrap()
        )
        .contains("not one this server issued")
    );
    assert!(
        refused(
            inv.enroll(&req("web3", "k3", Some("t2")), 1001, &mut no_class)
                .unwrap()
        )
        .contains("for node \"web2\"")
    );
    // The token bound to web2 was not consumed by those refusals.
    assert!(matches!(
        inv.enroll(&req("web2", "k2", Some("t2")), 1002, &mut no_class)
            .unwrap(),
        Enrolled::Accepted(_)
    ));
    // A second key for a known name: refused, token or not.
    inv.add_token(&token("t3", None, 2000)).unwrap();
    let why = refused(
        inv.enroll(&req("web1", "evil", Some("t3")), 1003, &mut no_class)
            .unwrap(),
    );
    assert!(why.contains("bound to another key"), "{why}");
    assert_eq!(inv.node("web1").unwrap().unwrap().key_id, "k1");
    // The same key again: as it stands.
    assert!(matches!(
        inv.enroll(&req("web1", "k1", None), 1004, &mut no_class)
            .unwrap(),
        Enrolled::Accepted(_)
    ));
    // One key, one name.
    assert!(
        refused(
            inv.enroll(&req("web9", "k1", None), 1004, &mut no_class)
                .unwrap()
        )
        .contains("already enrolled as node \"web1\"")
    );
    // Without a token: pending until accepted; a token later accepts it.
    let Enrolled::Pending(p) = inv
        .enroll(&req("db1", "k4", None), 1005, &mut no_class)
        .unwrap()
    else {
        panic!("not pending")
    };
    assert_eq!(p.environment, "production");
    assert!(inv.set_state("db1", NodeState::Accepted, 1006).unwrap());
    assert_eq!(
        inv.node_by_key("k4").unwrap().unwrap().state,
        NodeState::Accepted
    );
    // A pending request binds nothing: another key with a valid token takes the name;
    // without a token it is refused.
    inv.enroll(&req("squat", "k10", None), 1007, &mut no_class)
        .unwrap();
    let why = refused(
        inv.enroll(&req("squat", "k11", None), 1007, &mut no_class)
            .unwrap(),
    );
    assert!(why.contains("is pending"), "{why}");
    inv.add_token(&token("t5", Some("squat"), 2000)).unwrap();
    assert!(matches!(
        inv.enroll(&req("squat", "k11", Some("t5")), 1007, &mut no_class)
            .unwrap(),
        Enrolled::Accepted(_)
    ));
    assert_eq!(inv.node("squat").unwrap().unwrap().key_id, "k11");
    assert!(inv.node_by_key("k10").unwrap().is_none());
    assert!(inv.forget("squat").unwrap());

    // Revoked: refused; forgotten: the name is free for another key.
    assert!(inv.set_state("db1", NodeState::Revoked, 1007).unwrap());
    assert!(
        refused(
            inv.enroll(&req("db1", "k4", None), 1008, &mut no_class)
                .unwrap()
        )
        .contains("revoked")
    );
    assert!(inv.forget("db1").unwrap());
    assert!(matches!(
        inv.enroll(&req("db1", "k5", Some("t3")), 1009, &mut no_class)
            .unwrap(),
        Enrolled::Accepted(_)
    ));
    // A pending request expires after a day.
    inv.enroll(&req("late", "k6", None), 1010, &mut no_class)
        .unwrap();
    let names = |inv: &mut dyn Inventory, now| -> Vec<String> {
        inv.nodes(now)
            .unwrap()
            .into_iter()
            .map(|n| n.name)
            .collect()
    };
    assert_eq!(names(inv, 2000), ["db1", "late", "web1", "web2"]);
    assert_eq!(names(inv, 1011 + PENDING_TTL), ["db1", "web1", "web2"]);

    // Classified at acceptance, in the same transaction: a failed classification
    // refuses the node and consumes nothing; `nodes accept` classifies too.
    inv.add_token(&token("t4", None, 2000)).unwrap();
    let mut full = |_: &mut dyn strata_hardware::Store, _: &str, _: &str| {
        Err::<Option<String>, String>("pool `ips` is exhausted".into())
    };
    let why = refused(
        inv.enroll(&req("hw1", "k7", Some("t4")), 1012, &mut full)
            .unwrap(),
    );
    assert!(why.contains("exhausted"), "{why}");
    assert!(inv.node("hw1").unwrap().is_none());
    let mut profiled = |_: &mut dyn strata_hardware::Store, name: &str, facts: &str| {
        Ok(Some(format!("{name} {facts}")))
    };
    let Enrolled::Accepted(n) = inv
        .enroll(&req("hw1", "k7", Some("t4")), 1013, &mut profiled)
        .unwrap()
    else {
        panic!("not accepted")
    };
    assert_eq!(n.classification.as_deref(), Some("hw1 []"));
    inv.enroll(&req("hw2", "k8", None), 1014, &mut no_class)
        .unwrap();
    assert_eq!(
        inv.accept("hw2", 1015, &mut full).unwrap(),
        Err("pool `ips` is exhausted".into())
    );
    assert_eq!(inv.node("hw2").unwrap().unwrap().state, NodeState::Pending);
    let n = inv.accept("hw2", 1016, &mut profiled).unwrap().unwrap();
    assert_eq!(
        (n.state, n.classification.as_deref()),
        (NodeState::Accepted, Some("hw2 []"))
    );
    assert!(inv.accept("nobody", 1016, &mut profiled).unwrap().is_err());

    // Nonces: once per key, forgotten after their time.
    assert!(inv.fresh_nonce("k1", "n1", 5000).unwrap());
    assert!(!inv.fresh_nonce("k1", "n1", 5100).unwrap());
    assert!(inv.fresh_nonce("k2", "n1", 5100).unwrap());
    assert!(inv.fresh_nonce("k1", "n1", 5000 + 601).unwrap());

    // Reports.
    let r = RunReport {
        id: 0,
        node: "web1".into(),
        time: 7,
        environment: "test".into(),
        version: 3,
        revision: "abc".into(),
        generation: Some(2),
        result: "changed".into(),
        changes: 1,
        paths: vec![PathChange {
            path: "/etc/motd".into(),
            kind: "modify".into(),
            sensitive: false,
        }],
        truncated: 0,
        drift: true,
        error: None,
        note: None,
        steps: vec![
            StepTime {
                name: "load".into(),
                wall_us: 1500,
                max_rss: 10 << 20,
            },
            StepTime {
                name: "commit".into(),
                wall_us: 20,
                max_rss: 11 << 20,
            },
        ],
        roles: vec![],
        groups: vec![],
    };
    let id = inv.add_report(&r).unwrap();
    inv.add_report(&RunReport {
        node: "web2".into(),
        ..r.clone()
    })
    .unwrap();
    let back = inv.reports(Some("web1")).unwrap();
    assert_eq!(back, vec![RunReport { id, ..r }]);
    assert_eq!(inv.reports(None).unwrap().len(), 2);
    assert_eq!(inv.report(id).unwrap(), Some(back[0].clone()));
    assert_eq!(inv.report(id + 100).unwrap(), None);

    // Operators: a hash names one; adding a name again replaces its hash.
    assert_eq!(inv.operator("h1").unwrap(), None);
    inv.add_operator("alice", "h1", 1).unwrap();
    assert_eq!(inv.operator("h1").unwrap().as_deref(), Some("alice"));
    inv.add_operator("alice", "h2", 2).unwrap();
    assert_eq!(inv.operator("h1").unwrap(), None);
    assert_eq!(inv.operator("h2").unwrap().as_deref(), Some("alice"));

    // Client certificates: bound by fingerprint, a new operator added without a token,
    // an existing one keeping hers; a certificate bound again moves.
    assert_eq!(inv.operator_by_cert("f1").unwrap(), None);
    inv.add_operator_cert("alice", "f1", 3).unwrap();
    inv.add_operator_cert("carol", "f2", 3).unwrap();
    assert_eq!(
        inv.operator_by_cert("f1").unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(
        inv.operator_by_cert("f2").unwrap().as_deref(),
        Some("carol")
    );
    assert_eq!(inv.operator("h2").unwrap().as_deref(), Some("alice"));
    assert!(inv.add_operator_code("cc", "carol", false, 100).unwrap());
    inv.add_operator_cert("alice", "f2", 4).unwrap();
    assert_eq!(
        inv.operator_by_cert("f2").unwrap().as_deref(),
        Some("alice")
    );

    // Sign-in codes: only for an operator, once, before they expire; sessions until
    // they expire, and a code is not a session nor a session a code.
    assert!(!inv.add_operator_code("c0", "bob", false, 100).unwrap());
    assert!(inv.add_operator_code("c1", "alice", false, 100).unwrap());
    assert!(inv.add_operator_code("c2", "alice", false, 100).unwrap());
    assert!(inv.add_operator_code("s1", "alice", true, 100).unwrap());
    assert_eq!(inv.session("c1", 50).unwrap(), None);
    assert_eq!(inv.redeem_login("s1", 50).unwrap(), None);
    assert_eq!(
        inv.redeem_login("c1", 50).unwrap().as_deref(),
        Some("alice")
    );
    assert_eq!(inv.redeem_login("c1", 51).unwrap(), None);
    assert_eq!(inv.redeem_login("c2", 100).unwrap(), None);
    assert_eq!(inv.session("s1", 99).unwrap().as_deref(), Some("alice"));
    assert_eq!(inv.session("s1", 100).unwrap(), None);
    // The newest release served only goes up, per environment.
    assert_eq!(inv.served_release("test", 0).unwrap(), 0);
    assert_eq!(inv.served_release("test", 7).unwrap(), 7);
    assert_eq!(inv.served_release("test", 5).unwrap(), 7, "never lowered");
    assert_eq!(inv.served_release("prod", 3).unwrap(), 3);
    assert_eq!(inv.served_release("test", 0).unwrap(), 7);
}

#[test]
fn enrollment_tokens_names_nonces_and_reports_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut inv = SqliteInventory::open(&dir.path().join("state.db")).unwrap();
    enrollment_decisions(&mut inv);
    let mut inv = SqliteInventory::open(&dir.path().join("fleet.db")).unwrap();
    fleet_pages(&mut inv);
    let mut inv = SqliteInventory::open(&dir.path().join("keyset.db")).unwrap();
    fleet_keyset(&mut inv);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs PostgreSQL on loopback: scripts/test starts one (feature host-tests)"
)]
fn enrollment_tokens_names_nonces_and_reports_in_postgresql() {
    let url = std::env::var("STRATA_TEST_PG")
        .expect("STRATA_TEST_PG: needs PostgreSQL (scripts/test starts one and sets it)");
    let name = format!("strata_inv{}", std::process::id());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let db = format!("{}/{name}", url.rsplit_once('/').unwrap().0);
    let mut inv = PgInventory::connect(&db).unwrap();
    enrollment_decisions(&mut inv);
    let fleet = format!("{name}_fleet");
    admin
        .batch_execute(&format!("CREATE DATABASE {fleet}"))
        .unwrap();
    let db = format!("{}/{fleet}", url.rsplit_once('/').unwrap().0);
    fleet_pages(&mut PgInventory::connect(&db).unwrap());
    let keyset = format!("{name}_keyset");
    admin
        .batch_execute(&format!("CREATE DATABASE {keyset}"))
        .unwrap();
    let db = format!("{}/{keyset}", url.rsplit_once('/').unwrap().0);
    fleet_keyset(&mut PgInventory::connect(&db).unwrap());
}

#[test]
fn reports_kept_before_steps_existed_still_read_and_new_ones_keep_theirs() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.db");
    // The reports table as it was before reports carried steps, with one report.
    let old = rusqlite::Connection::open(&file).unwrap();
    old.execute_batch(
        "CREATE TABLE strata_reports (
            id INTEGER PRIMARY KEY AUTOINCREMENT, node TEXT NOT NULL, time INTEGER NOT NULL,
            environment TEXT NOT NULL, version INTEGER NOT NULL, revision TEXT NOT NULL,
            generation INTEGER, result TEXT NOT NULL, changes INTEGER NOT NULL,
            paths TEXT NOT NULL, truncated INTEGER NOT NULL, drift INTEGER NOT NULL,
            error TEXT, note TEXT);
         INSERT INTO strata_reports (node, time, environment, version, revision, result,
            changes, paths, truncated, drift)
         VALUES ('web1', 5, 'test', 1, 'r', 'changed', 0, '[]', 0, 0);",
    )
    .unwrap();
    drop(old);
    let mut inv = SqliteInventory::open(&file).unwrap();
    let before = inv.reports(None).unwrap();
    assert_eq!(before.len(), 1);
    assert!(before[0].steps.is_empty());
    // Opened again: the column is not added twice.
    let mut inv = SqliteInventory::open(&file).unwrap();
    let steps = vec![StepTime {
        name: "compile".into(),
        wall_us: 7,
        max_rss: 1,
    }];
    let id = inv
        .add_report(&RunReport {
            steps: steps.clone(),
            ..before[0].clone()
        })
        .unwrap();
    assert_eq!(inv.report(id).unwrap().unwrap().steps, steps);
}

#[test]
fn a_reports_steps_are_checked() {
    let step = |name: &str| StepTime {
        name: name.into(),
        wall_us: 1,
        max_rss: 1,
    };
    assert!(check_steps(&[step("load"), step("plan observed")]).is_ok());
    assert!(check_steps(&vec![step("x"); MAX_REPORT_STEPS + 1]).is_err());
    assert!(check_steps(&[step("")]).is_err());
    assert!(check_steps(&[step(&"x".repeat(MAX_STEP_NAME + 1))]).is_err());
    assert!(check_steps(&[step("a\nb")]).is_err());
}

#[test]
fn tokens_made_before_they_had_uses_stay_single_use() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.db");
    let old = rusqlite::Connection::open(&file).unwrap();
    old.execute_batch(
        "CREATE TABLE strata_tokens (
            hash TEXT PRIMARY KEY, node TEXT, environment TEXT, expires INTEGER NOT NULL,
            used INTEGER);
         INSERT INTO strata_tokens (hash, expires) VALUES ('t', 2000);",
    )
    .unwrap();
    drop(old);
    let mut inv = SqliteInventory::open(&file).unwrap();
    assert!(matches!(
        inv.enroll(&req("a", "ka", Some("t")), 1000, &mut no_class)
            .unwrap(),
        Enrolled::Accepted(_)
    ));
    let mut inv = SqliteInventory::open(&file).unwrap();
    let why = refused(
        inv.enroll(&req("b", "kb", Some("t")), 1000, &mut no_class)
            .unwrap(),
    );
    assert!(why.contains("already used"), "{why}");
}
