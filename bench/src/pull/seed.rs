//! The fleet the load plays: a site with its keys, and an inventory seeded with N
//! accepted nodes (each with its ed25519 key and a last report), the tokens of the
//! enrollment storm and an operator, written in bulk straight into the store's tables
//! (enrolling 100,000 nodes one by one would take the bench's whole budget).

use std::io::Write as _;
use std::path::Path;
use std::process::Command;

use strata_snapshot::{KeyId, KeyPair, Role};

use super::load::Node;

/// The environment every node is in.
pub const ENV: &str = "test";

/// Facts as an agent sends them (`strata facts --tuples`), about 1 KiB.
pub fn facts() -> serde_json::Value {
    serde_json::json!([
        ["os.family", "debian"],
        ["os.name", "Debian GNU/Linux"],
        ["os.version", "12"],
        ["kernel.release", "6.1.0-28-amd64"],
        ["cpu.count", 4],
        ["cpu.model", "Intel(R) Xeon(R) CPU E5-2680 v4 @ 2.40GHz"],
        ["memory.total", 8_328_667_136u64],
        ["net.hostname", "web"],
        ["net.fqdn", "web.example.com"],
        ["net.interfaces.eth0.mac", "52:54:00:12:34:56"],
        ["net.interfaces.eth0.ipv4", "10.0.0.10"],
        ["disk.vda.size", 53_687_091_200u64],
        ["disk.vda.model", "QEMU HARDDISK"],
        ["dmi.vendor", "QEMU"],
        ["dmi.product", "Standard PC (Q35 + ICH9, 2009)"],
        ["virt.kind", "kvm"],
        ["boot.mode", "uefi"],
        ["locale", "C.UTF-8"],
        ["timezone", "UTC"]
    ])
}

/// `count` nodes named `{prefix}000001…`, each with a new key.
pub fn nodes(prefix: &str, count: usize) -> Vec<Node> {
    (1..=count)
        .map(|i| Node {
            name: format!("{prefix}{i:06}"),
            key: KeyPair::generate(Role::Node).expect("a key"),
        })
        .collect()
}

/// A site with one module and a node file in [`ENV`], its keys made by `strata keys
/// init`: (site, keys, online key).
pub fn site(
    strata: &Path,
    dir: &Path,
) -> (std::path::PathBuf, std::path::PathBuf, std::path::PathBuf) {
    let site = dir.join("site");
    let write = |rel: &str, text: &str| {
        let p = site.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).expect("mkdir");
        std::fs::write(p, text).expect("write");
    };
    write(
        "strata.toml",
        &format!("[site]\nname = \"bench\"\ndefault_environment = \"{ENV}\"\n"),
    );
    write(
        "nodes/n1.toml",
        &format!("environment = \"{ENV}\"\nmodules = [\"m\"]\n"),
    );
    write(
        "modules/m/templates/etc/motd.j2",
        "{{ node.name }}: welcome\n",
    );
    let keys = dir.join("keys");
    let online = dir.join("server/online.key");
    let out = Command::new(strata)
        .args(["keys", "init", "--site"])
        .arg(&site)
        .arg("--keys")
        .arg(&keys)
        .arg("--online-out")
        .arg(&online)
        .output()
        .expect("strata keys init");
    assert!(
        out.status.success(),
        "strata keys init: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    (site, keys, online)
}

fn key_row(n: &Node) -> (String, String) {
    let public = n.key.public();
    (KeyId::of(&public).0, strata_types::hex(public.as_bytes()))
}

/// What `add_report` keeps on each node's row, for the reports seeded beside it: its
/// last report, result, revision and time, and its roles and groups (see [`labels`]),
/// on its row and in the table the filters look in.
const LAST_RUNS: &str = "UPDATE strata_nodes SET
    last_report = (SELECT max(r.id) FROM strata_reports r WHERE r.node = strata_nodes.name);
  UPDATE strata_nodes SET
    last_result = (SELECT r.result FROM strata_reports r WHERE r.id = strata_nodes.last_report),
    last_revision = (SELECT r.revision FROM strata_reports r WHERE r.id = strata_nodes.last_report),
    last_time = (SELECT r.time FROM strata_reports r WHERE r.id = strata_nodes.last_report);
  UPDATE strata_nodes SET node_roles = CASE WHEN substr(name, length(name) - 1) = '00'
      THEN 'db,base' ELSE 'web,base' END,
    node_groups = 'g' || substr(name, length(name) - 1);
  INSERT INTO strata_node_labels (node, kind, label)
    SELECT name, 'role', 'base' FROM strata_nodes;
  INSERT INTO strata_node_labels (node, kind, label)
    SELECT name, 'role', CASE WHEN substr(name, length(name) - 1) = '00' THEN 'db' ELSE 'web' END
    FROM strata_nodes;
  INSERT INTO strata_node_labels (node, kind, label)
    SELECT name, 'group', 'g' || substr(name, length(name) - 1) FROM strata_nodes;";

/// A seeded node's last run: mostly unchanged, some changed, failed or drifted.
fn last_run(i: usize) -> (&'static str, bool, Option<&'static str>) {
    match i % 100 {
        0..=2 => ("failed", false, Some("apply: /etc/motd: permission denied")),
        3..=4 => ("changed", true, None),
        5..=9 => ("changed", false, None),
        _ => ("unchanged", false, None),
    }
}

/// Seeds a SQLite inventory (its tables made by strata's own store first).
pub fn sqlite(db: &Path, nodes: &[Node], tokens: &[String], operator: &str, now: u64) {
    drop(strata_server::inventory::open(&db.display().to_string()).expect("open the inventory"));
    let mut conn = rusqlite::Connection::open(db).expect("open");
    let tx = conn.transaction().expect("begin");
    {
        let facts = facts().to_string();
        let mut node = tx
            .prepare(
                "INSERT INTO strata_nodes (name, key_id, public, age, state, environment, facts,
                 enrolled, changed, classification) VALUES (?1, ?2, ?3, NULL, 'accepted', ?4, ?5, ?6, ?6, NULL)",
            )
            .expect("prepare");
        let mut report = tx
            .prepare(
                "INSERT INTO strata_reports (node, time, environment, version, revision, generation,
                 result, changes, paths, truncated, drift, error, note)
                 VALUES (?1, ?2, ?3, 1, 'r1', 1, ?4, 0, '[]', 0, ?5, ?6, NULL)",
            )
            .expect("prepare");
        for (i, n) in nodes.iter().enumerate() {
            let (key_id, public) = key_row(n);
            node.execute(rusqlite::params![n.name, key_id, public, ENV, facts, now])
                .expect("insert a node");
            let (result, drift, error) = last_run(i);
            report
                .execute(rusqlite::params![
                    n.name,
                    now - 60,
                    ENV,
                    result,
                    drift,
                    error
                ])
                .expect("insert a report");
        }
        let mut token = tx
            .prepare("INSERT INTO strata_tokens (hash, node, environment, expires) VALUES (?1, NULL, NULL, ?2)")
            .expect("prepare");
        for t in tokens {
            token
                .execute(rusqlite::params![
                    strata_server::app::token_hash(t),
                    now + 3600
                ])
                .expect("insert a token");
        }
        tx.execute_batch(LAST_RUNS)
            .expect("note each node's last run");
        tx.execute(
            "INSERT INTO strata_operators (name, hash, created) VALUES ('bench', ?1, ?2)",
            rusqlite::params![strata_server::app::token_hash(operator), now],
        )
        .expect("insert the operator");
    }
    tx.commit().expect("commit");
}

/// A fresh database on the PostgreSQL server of `url` (`STRATA_TEST_PG`): its URL.
pub fn pg_database(url: &str, name: &str) -> String {
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect to PostgreSQL");
    // One statement each: together they would be one transaction, which neither takes.
    c.batch_execute(&format!("DROP DATABASE IF EXISTS {name}"))
        .expect("drop the database");
    c.batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create the database");
    match url.rfind('/') {
        Some(i) => format!("{}/{name}", &url[..i]),
        None => panic!("{url}: no database in the URL"),
    }
}

/// Seeds a PostgreSQL inventory with COPY (its tables made by strata's own store).
pub fn pg(url: &str, nodes: &[Node], tokens: &[String], operator: &str, now: u64) {
    drop(strata_server::inventory::open(url).expect("open the inventory"));
    let mut c = postgres::Client::connect(url, postgres::NoTls).expect("connect");
    let facts = facts().to_string().replace('\\', "\\\\");
    let mut w = c
        .copy_in(
            "COPY strata_nodes (name, key_id, public, state, environment, facts, enrolled, changed)
             FROM STDIN",
        )
        .expect("copy");
    for n in nodes {
        let (key_id, public) = key_row(n);
        writeln!(
            w,
            "{}\t{key_id}\t{public}\taccepted\t{ENV}\t{facts}\t{now}\t{now}",
            n.name
        )
        .expect("copy a node");
    }
    w.finish().expect("copy the nodes");
    let mut w = c
        .copy_in(
            "COPY strata_reports (node, time, environment, version, revision, generation, result,
             changes, paths, truncated, drift, error) FROM STDIN",
        )
        .expect("copy");
    for (i, n) in nodes.iter().enumerate() {
        let (result, drift, error) = last_run(i);
        writeln!(
            w,
            "{}\t{}\t{ENV}\t1\tr1\t1\t{result}\t0\t[]\t0\t{drift}\t{}",
            n.name,
            now - 60,
            error.unwrap_or("\\N")
        )
        .expect("copy a report");
    }
    w.finish().expect("copy the reports");
    let mut w = c
        .copy_in("COPY strata_tokens (hash, expires) FROM STDIN")
        .expect("copy");
    for t in tokens {
        writeln!(w, "{}\t{}", strata_server::app::token_hash(t), now + 3600).expect("copy a token");
    }
    w.finish().expect("copy the tokens");
    c.batch_execute(LAST_RUNS)
        .expect("note each node's last run");
    // What autovacuum does a little after such updates: the dead rows of the seeding's
    // passes reclaimed and the tables' statistics taken (on its own: not in a
    // transaction).
    c.batch_execute("VACUUM ANALYZE")
        .expect("vacuum the seeded tables");
    c.execute(
        "INSERT INTO strata_operators (name, hash, created) VALUES ('bench', $1, $2)",
        &[
            &strata_server::app::token_hash(operator),
            &i64::try_from(now).unwrap_or(i64::MAX),
        ],
    )
    .expect("insert the operator");
    // What autovacuum does to a table that has settled: statistics, and the visibility
    // map without which no index-only scan is possible (COPY leaves it empty).
    c.batch_execute("VACUUM ANALYZE").expect("vacuum");
}
