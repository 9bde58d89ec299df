//! A new key taking over a netboot node that never reported, and every way it cannot,
//! on both stores.

use super::*;

const NODE: &str = "m-525400aabbcc";
const MAC: &str = "52:54:00:aa:bb:cc";

fn facts(mac: &str, uuid: &str) -> String {
    serde_json::to_string(&[
        ["network", "eth0", "serial", mac],
        ["system", "product", "uuid", uuid],
        ["system", "product", "name", "box"],
    ])
    .unwrap()
}

fn req(name: &str, key: &str, token: Option<&str>, facts: String) -> EnrollRequest {
    EnrollRequest {
        name: name.into(),
        key_id: key.into(),
        public: format!("pub-{key}"),
        age: Some(format!("age-{key}")),
        facts,
        token: token.map(str::to_string),
        environment: "production".into(),
    }
}

fn token(hash: &str, uses: u32, expires: u64) -> TokenRecord {
    TokenRecord {
        hash: hash.into(),
        node: None,
        environment: Some("test".into()),
        expires,
        uses,
        provisioning: uses > 1,
    }
}

fn refused(e: Enrolled) -> String {
    match e {
        Enrolled::Refused(why) => why,
        other => panic!("not refused: {other:?}"),
    }
}

/// Every decision of a takeover, against `inv`.
fn takeover_decisions(inv: &mut dyn Inventory) {
    let classified = std::cell::Cell::new(0);
    let mut classify = |_: &mut dyn strata_hardware::Store, _: &str, _: &str| {
        classified.set(classified.get() + 1);
        Ok(Some(
            "{\"profile\":\"vm\",\"pools\":{\"ips\":\"10.0.0.7\"}}".to_string(),
        ))
    };
    inv.add_token(&token("prov", 4, 2000)).unwrap();
    inv.add_token(&token("single", 1, 2000)).unwrap();
    inv.add_token(&token("prov-old", 5, 1000)).unwrap();
    let mut enroll = |inv: &mut dyn Inventory, key: &str, token: Option<&str>, facts: String| {
        inv.enroll(&req(NODE, key, token, facts), 1500, &mut classify)
            .unwrap()
    };

    // The first netboot: enrolled, classified, a use of the token taken.
    let Enrolled::Accepted(first) = enroll(inv, "k1", Some("prov"), facts(MAC, "U-1")) else {
        panic!("not accepted")
    };
    assert_eq!(first.rekeyed, None);
    let still_k1 = |inv: &mut dyn Inventory| {
        let n = inv.node(NODE).unwrap().unwrap();
        assert_eq!((n.key_id.as_str(), n.rekeyed), ("k1", None), "{n:?}");
    };

    // Another machine (another DMI UUID) with the same MAC in its name: refused, why.
    let why = refused(enroll(inv, "k2", Some("prov"), facts(MAC, "U-2")));
    assert!(
        why.contains("bound to another key (k1)")
            && why.contains("another machine: its DMI product UUID is u-2, the node's was u-1"),
        "{why}"
    );
    // One whose NICs lack the name's MAC: refused.
    let why = refused(enroll(
        inv,
        "k2",
        Some("prov"),
        facts("52:54:00:aa:bb:cd", "U-1"),
    ));
    assert!(why.contains("no network interface with MAC"), "{why}");
    // Without a token, with a single-use one, an expired one or an unknown one: refused,
    // with the way out.
    for (token, reason) in [
        (None, "no token was presented"),
        (Some("single"), "not a provisioning token"),
        (Some("prov-old"), "the token expired"),
        (Some("nope"), "not one this server issued"),
    ] {
        let why = refused(enroll(inv, "k2", token, facts(MAC, "U-1")));
        assert!(
            why.contains(reason) && why.contains(&format!("`strata nodes forget {NODE}`")),
            "{why}"
        );
    }
    still_k1(inv);
    // The single-use token was not consumed by that refusal.
    let Enrolled::Accepted(_) = inv
        .enroll(
            &req("web9", "k9", Some("single"), "[]".into()),
            1500,
            &mut |_: &mut dyn strata_hardware::Store, _: &str, _: &str| Ok(None),
        )
        .unwrap()
    else {
        panic!("the single-use token was consumed")
    };
    // A key already enrolled under another name cannot take this one.
    let why = refused(enroll(inv, "k9", Some("prov"), facts(MAC, "U-1")));
    assert!(why.contains("already enrolled as node \"web9\""), "{why}");

    // The same machine, netbooted again with a new key: it takes the name over, keeps
    // its environment and classification (not classified again: no second pool entry),
    // a use of the token taken; the old key no longer names any node.
    assert_eq!(classified.get(), 1);
    let Enrolled::TakenOver(n) = enroll(inv, "k2", Some("prov"), facts(MAC, "U-1")) else {
        panic!("not taken over")
    };
    assert_eq!(classified.get(), 1, "classified again");
    assert_eq!(
        (
            n.key_id.as_str(),
            n.public.as_str(),
            n.age.as_deref(),
            n.old_key.as_deref(),
            n.rekeyed,
            n.state,
            n.environment.as_str(),
            n.enrolled,
        ),
        (
            "k2",
            "pub-k2",
            Some("age-k2"),
            Some("k1"),
            Some(1500),
            NodeState::Accepted,
            "test",
            first.enrolled,
        )
    );
    assert_eq!(n.classification, first.classification);
    assert!(
        inv.node_by_key("k1").unwrap().is_none(),
        "the old key still works"
    );
    assert_eq!(inv.node_by_key("k2").unwrap().unwrap().name, NODE);
    let listed = inv.nodes(1500).unwrap();
    let listed = listed.iter().find(|n| n.name == NODE).unwrap();
    assert_eq!(listed.old_key.as_deref(), Some("k1"));
    // The same key again: answered as it stands.
    assert!(matches!(
        enroll(inv, "k2", Some("prov"), facts(MAC, "U-1")),
        Enrolled::Accepted(_)
    ));
    // Again (a third netboot), then the token is used up: refused, nothing changed.
    assert!(matches!(
        enroll(inv, "k3", Some("prov"), facts(MAC, "U-1")),
        Enrolled::TakenOver(_)
    ));
    assert!(matches!(
        enroll(inv, "k4", Some("prov"), facts(MAC, "U-1")),
        Enrolled::TakenOver(_)
    ));
    let why = refused(enroll(inv, "k5", Some("prov"), facts(MAC, "U-1")));
    assert!(why.contains("already used"), "{why}");
    assert_eq!(inv.node(NODE).unwrap().unwrap().key_id, "k4");

    // Once it reported (its disk done), no new key takes it over, even the same machine
    // with a fresh provisioning token.
    inv.add_token(&token("prov2", 3, 2000)).unwrap();
    inv.add_report(&RunReport {
        id: 0,
        node: NODE.into(),
        time: 1501,
        environment: "test".into(),
        version: 1,
        revision: "r".into(),
        generation: Some(1),
        result: "changed".into(),
        changes: 0,
        paths: vec![],
        truncated: 0,
        drift: false,
        error: None,
        note: Some("provisioned".into()),
        steps: vec![],
        roles: vec![],
        groups: vec![],
    })
    .unwrap();
    assert!(inv.node(NODE).unwrap().unwrap().reported);
    let why = refused(enroll(inv, "k6", Some("prov2"), facts(MAC, "U-1")));
    assert!(
        why.contains("has reported") && why.contains(&format!("`strata nodes forget {NODE}`")),
        "{why}"
    );
    assert_eq!(inv.node(NODE).unwrap().unwrap().key_id, "k4");

    // A name that is not a netboot one is never taken over.
    let Enrolled::Accepted(_) = inv
        .enroll(
            &req("web1", "w1", Some("prov2"), facts(MAC, "U-1")),
            1500,
            &mut |_: &mut dyn strata_hardware::Store, _: &str, _: &str| Ok(None),
        )
        .unwrap()
    else {
        panic!("not accepted")
    };
    let why = refused(
        inv.enroll(
            &req("web1", "w2", Some("prov2"), facts(MAC, "U-1")),
            1500,
            &mut |_: &mut dyn strata_hardware::Store, _: &str, _: &str| Ok(None),
        )
        .unwrap(),
    );
    assert!(why.contains("only a netboot node"), "{why}");
    // A revoked node neither.
    inv.set_state(NODE, NodeState::Revoked, 1502).unwrap();
    inv.forget("web1").unwrap();
    let why = refused(enroll(inv, "k7", Some("prov2"), facts(MAC, "U-1")));
    assert!(why.contains("revoked"), "{why}");

    // Forgotten (to be reinstalled), enrolled again: the reports from before the forget
    // do not count, so a provisioning killed halfway is taken over again.
    assert!(inv.forget(NODE).unwrap());
    let Enrolled::Accepted(n) = enroll(inv, "k8", Some("prov2"), facts(MAC, "U-1")) else {
        panic!("not accepted")
    };
    assert!(!n.reported && n.old_key.is_none(), "{n:?}");
    assert!(matches!(
        enroll(inv, "k10", Some("prov2"), facts(MAC, "U-1")),
        Enrolled::TakenOver(_)
    ));
}

#[test]
fn a_new_key_takes_over_only_a_netboot_node_that_never_reported_in_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    let mut inv = SqliteInventory::open(&dir.path().join("state.db")).unwrap();
    takeover_decisions(&mut inv);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs PostgreSQL on loopback: scripts/test starts one (feature host-tests)"
)]
fn a_new_key_takes_over_only_a_netboot_node_that_never_reported_in_postgresql() {
    let url = std::env::var("STRATA_TEST_PG")
        .expect("STRATA_TEST_PG: needs PostgreSQL (scripts/test starts one and sets it)");
    let name = format!("strata_takeover{}", std::process::id());
    let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap();
    let db = format!("{}/{name}", url.rsplit_once('/').unwrap().0);
    takeover_decisions(&mut PgInventory::connect(&db).unwrap());
}

#[test]
fn files_made_before_takeovers_open_and_their_tokens_take_over_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("old.db");
    let old = rusqlite::Connection::open(&file).unwrap();
    old.execute_batch(
        "CREATE TABLE strata_nodes (
            name TEXT PRIMARY KEY, key_id TEXT NOT NULL UNIQUE, public TEXT NOT NULL, age TEXT,
            state TEXT NOT NULL, environment TEXT NOT NULL, facts TEXT NOT NULL,
            enrolled INTEGER NOT NULL, changed INTEGER NOT NULL, classification TEXT);
         CREATE TABLE strata_tokens (
            hash TEXT PRIMARY KEY, node TEXT, environment TEXT, expires INTEGER NOT NULL,
            used INTEGER, uses INTEGER NOT NULL DEFAULT 1);
         INSERT INTO strata_tokens (hash, expires, uses) VALUES ('t', 2000, 5);",
    )
    .unwrap();
    old.execute(
        "INSERT INTO strata_nodes VALUES (?1, 'k1', 'p', NULL, 'accepted', 'test', ?2, 1, 1, NULL)",
        [NODE, &facts(MAC, "U-1")],
    )
    .unwrap();
    drop(old);
    let mut inv = SqliteInventory::open(&file).unwrap();
    let n = inv.node(NODE).unwrap().unwrap();
    assert_eq!((n.rekeyed, n.old_key), (None, None));
    let why = refused(
        inv.enroll(
            &req(NODE, "k2", Some("t"), facts(MAC, "U-1")),
            1500,
            &mut |_: &mut dyn strata_hardware::Store, _: &str, _: &str| Ok(None),
        )
        .unwrap(),
    );
    assert!(why.contains("not a provisioning token"), "{why}");
}
