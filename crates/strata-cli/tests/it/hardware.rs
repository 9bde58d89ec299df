//! `strata facts`, `strata classify` and `strata pools` on fixture facts.

use std::path::{Path, PathBuf};

use serde_json::Value;
use strata_test::TestEnv;

use crate::env;

const PROFILES: &str = r#"
[[profile]]
name = "hp"
role = "mysql@1.0.0"
max = 1
pools = ["ips"]
spec = [
  ["system", "product", "vendor", "regexp(HP.*)"],
  ["disk", "$disk", "size", "gt(250)"],
  ["network", "$eth", "ipv4", "network(192.168.122.0/24)"],
  ["network", "$eth", "serial", "$$mac"],
]

[[profile]]
name = "any"
role = "base"
pools = ["ips"]
spec = [["network", "$eth", "serial", "$mac"]]
"#;

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../strata-facts/tests/fixtures")
        .join(name)
}

fn hw_site(env: &TestEnv, ips: &str) {
    env.write("strata.toml", "[site]\nname = \"hw\"\n");
    env.write("hardware/profiles.toml", PROFILES);
    env.write(
        "hardware/pools/ips.toml",
        &format!("generate = [{{ ip = \"{ips}\", gateway = \"192.168.122.1\" }}]\n"),
    );
}

/// The bare-metal fixture's tuples, with its MAC and serial replaced.
fn machine(env: &TestEnv, name: &str, mac: &str) -> PathBuf {
    let out = env
        .run(&[
            "facts",
            "--tuples",
            "--root",
            fixture("baremetal").to_str().unwrap(),
        ])
        .code(0);
    let mut tuples: Vec<[String; 4]> = serde_json::from_str(&out.stdout).unwrap();
    for t in &mut tuples {
        if t[0] == "network" && t[1] == "eno1" && t[2] == "serial" {
            t[3] = mac.to_string();
        }
        if t[0] == "system" && t[2] == "serial" {
            t[3] = format!("SN-{name}");
        }
    }
    let path = env.path().join(format!("{name}.json"));
    std::fs::write(&path, serde_json::to_string(&tuples).unwrap()).unwrap();
    path
}

fn classify(env: &TestEnv, facts: &Path) -> strata_test::Run {
    classify_db(env, facts, None)
}

fn classify_db(env: &TestEnv, facts: &Path, db: Option<&str>) -> strata_test::Run {
    let site = env.site();
    let mut args = vec![
        "classify",
        "--json",
        "--site",
        site.to_str().unwrap(),
        "--facts",
        facts.to_str().unwrap(),
    ];
    args.extend(db.iter().flat_map(|d| ["--db", *d]));
    env.run(&args)
}

fn pools(env: &TestEnv) -> Vec<Value> {
    pools_db(env, None)
}

fn pools_db(env: &TestEnv, db: Option<&str>) -> Vec<Value> {
    let site = env.site();
    let mut args = vec!["pools", "list", "--json", "--site", site.to_str().unwrap()];
    args.extend(db.iter().flat_map(|d| ["--db", *d]));
    serde_json::from_str(&env.run(&args).code(0).stdout).unwrap()
}

#[test]
fn a_machine_gets_the_first_matching_profile_its_variables_and_a_pool_entry_once() {
    let env = env();
    hw_site(&env, "192.168.122.3-4");
    let m1 = machine(&env, "m1", "94:18:82:0a:1b:c0");
    let v: Value = serde_json::from_str(&classify(&env, &m1).code(0).stdout).unwrap();
    assert_eq!(v["profile"], "hp");
    assert_eq!(v["role"], "mysql@1.0.0");
    assert_eq!(
        v["machine"], "mac=94:18:82:0a:1b:c0",
        "the $$ identity variable names the machine"
    );
    let hw = &v["params"]["hw"];
    assert_eq!(
        (hw["disk"].as_str(), hw["eth"].as_str()),
        (Some("nvme0n1"), Some("eno1"))
    );
    assert_eq!(hw["ips"]["ip"], "192.168.122.3");
    assert_eq!(hw["ips"]["gateway"], "192.168.122.1");
    // Again: the same allocation, found by identity.
    let again: Value = serde_json::from_str(&classify(&env, &m1).code(0).stdout).unwrap();
    assert_eq!(again["params"], v["params"]);
    assert_eq!(pools(&env).len(), 1);
}

#[test]
fn max_sends_the_next_machine_on_and_an_exhausted_pool_allocates_nothing() {
    let env = env();
    hw_site(&env, "192.168.122.3-4");
    classify(&env, &machine(&env, "m1", "aa:00:00:00:00:01")).code(0);
    let m2: Value = serde_json::from_str(
        &classify(&env, &machine(&env, "m2", "aa:00:00:00:00:02"))
            .code(0)
            .stdout,
    )
    .unwrap();
    assert_eq!(m2["profile"], "any", "hp has max = 1");
    assert_eq!(m2["params"]["hw"]["ips"]["ip"], "192.168.122.4");

    let m3 = machine(&env, "m3", "aa:00:00:00:00:03");
    let run = classify(&env, &m3).code(1);
    assert!(
        run.stderr
            .contains("pool `ips` is exhausted: all 2 entries are allocated (profile `any`)"),
        "{}",
        run.stderr
    );
    assert_eq!(pools(&env).len(), 2, "nothing allocated for m3");

    // Releasing m1 gives its hp slot and its address back.
    let site = env.site();
    env.run(&[
        "pools",
        "release",
        "--site",
        site.to_str().unwrap(),
        "mac=aa:00:00:00:00:01",
    ])
    .code(0);
    let m3: Value = serde_json::from_str(&classify(&env, &m3).code(0).stdout).unwrap();
    assert_eq!(
        (
            m3["profile"].as_str(),
            m3["params"]["hw"]["ips"]["ip"].as_str()
        ),
        (Some("hp"), Some("192.168.122.3"))
    );
}

#[test]
fn explain_says_why_each_profile_did_not_match() {
    let env = env();
    hw_site(&env, "192.168.122.3-4");
    // The JSON form of `strata facts` is read as well as the tuples.
    let out = env
        .run(&["facts", "--json", "--root", fixture("vm").to_str().unwrap()])
        .code(0);
    let vm = env.path().join("vm.json");
    std::fs::write(&vm, out.stdout).unwrap();
    let site = env.site();
    let run = env
        .run(&[
            "classify",
            "--explain",
            "--site",
            site.to_str().unwrap(),
            "--facts",
            vm.to_str().unwrap(),
        ])
        .code(0);
    assert!(run.stdout.contains("profile any"), "{}", run.stdout);
    assert!(
        run.stdout.contains(
            r#"hp: entry 1 ["system", "product", "vendor", "regexp(HP.*)"] matches no fact"#
        ),
        "{}",
        run.stdout
    );
    assert!(run.stdout.contains("any: matched"), "{}", run.stdout);
}

#[test]
fn bad_profiles_and_pools_are_located() {
    let env = env();
    hw_site(&env, "192.168.122.3-4");
    env.write("hardware/profiles.toml", "[[profile]]\nname = \"x\"\npools = [\"nope\"]\nspec = [\n  [\"disk\", \"$d\", \"size\", \"bigger(4)\"],\n]\n");
    env.write(
        "hardware/pools/bad.toml",
        "generate = [{ ip = \"10.0.1-300.1\" }]\n",
    );
    let m1 = machine(&env, "m1", "aa:00:00:00:00:01");
    let run = classify(&env, &m1).code(1);
    assert!(
        run.stderr
            .contains("hardware/profiles.toml:3: profile `x`: unknown pool `nope`"),
        "{}",
        run.stderr
    );
    assert!(
        run.stderr.contains(
            "hardware/profiles.toml:5: profile `x`: spec entry 1: unknown matcher `bigger`"
        ),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("hardware/pools/bad.toml: generate entry 1: ip = \"10.0.1-300.1\": an octet is out of 0-255"), "{}", run.stderr); // check reports them as well.
    env.write("nodes/n1.toml", "modules = []\n");
    let check = env.run(&["check"]).code(1);
    assert!(
        check.stderr.contains(
            "hardware/profiles.toml:5: profile `x`: spec entry 1: unknown matcher `bigger`"
        ),
        "{}",
        check.stderr
    );
    assert!(
        check
            .stderr
            .contains("hardware/pools/bad.toml: generate entry 1"),
        "{}",
        check.stderr
    );
}

/// A fresh database on the test PostgreSQL server (`STRATA_TEST_PG`, which
/// `scripts/test` starts).
fn pg_database() -> String {
    let url = std::env::var("STRATA_TEST_PG")
        .expect("STRATA_TEST_PG: needs PostgreSQL (scripts/test starts one and sets it)");
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let name = format!(
        "strata_t{}_{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    let mut admin =
        postgres::Client::connect(&url, postgres::NoTls).expect("connect to the test server");
    admin
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .expect("create database");
    format!(
        "{}/{name}",
        url.rsplit_once('/').expect("a database in the URL").0
    )
}

#[test]
fn twenty_processes_enrolling_two_hundred_machines_share_out_every_entry_once() {
    enroll_concurrently(None);
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs PostgreSQL on loopback: scripts/test starts one (feature host-tests)"
)]
fn the_same_holds_on_postgresql() {
    enroll_concurrently(Some(&pg_database()));
}

fn enroll_concurrently(db: Option<&str>) {
    let env = env();
    env.write("strata.toml", "[site]\nname = \"hw\"\n");
    env.write(
        "hardware/profiles.toml",
        "[[profile]]\nname = \"first\"\nmax = 120\npools = [\"a\"]\nspec = [[\"system\", \"product\", \"serial\", \"$$serial\"]]\n\n\
         [[profile]]\nname = \"rest\"\npools = [\"b\"]\nspec = [[\"system\", \"product\", \"serial\", \"$serial\"]]\n",
    );
    env.write(
        "hardware/pools/a.toml",
        "generate = [{ ip = \"10.0.0-1.1-250\" }]\n",
    );
    env.write(
        "hardware/pools/b.toml",
        "generate = [{ ip = \"10.1.0.1-100\" }]\n",
    );
    let files: Vec<PathBuf> = (0..200)
        .map(|i| {
            let p = env.path().join(format!("f{i}.json"));
            let tuples = serde_json::json!([
                ["system", "product", "serial", format!("SN{i:03}")],
                [
                    "network",
                    "eth0",
                    "serial",
                    format!("aa:00:00:00:{:02x}:{:02x}", i / 256, i % 256)
                ]
            ]);
            std::fs::write(&p, tuples.to_string()).unwrap();
            p
        })
        .collect();
    std::thread::scope(|s| {
        for chunk in files.chunks(10) {
            let env = &env;
            s.spawn(move || {
                for f in chunk {
                    classify_db(env, f, db).code(0);
                }
            });
        }
    });
    let list = pools_db(&env, db);
    assert_eq!(list.len(), 200, "none lost");
    let count = |p: &str| list.iter().filter(|a| a["profile"] == p).count();
    assert_eq!((count("first"), count("rest")), (120, 80), "max respected");
    let mut ips: Vec<String> = list
        .iter()
        .flat_map(|a| {
            a["entries"]
                .as_object()
                .unwrap()
                .values()
                .map(|e| e[1]["ip"].as_str().unwrap().to_string())
        })
        .collect();
    ips.sort();
    let n = ips.len();
    ips.dedup();
    assert_eq!((n, ips.len()), (200, 200), "no entry given twice");
}

#[test]
fn a_node_without_a_node_file_gets_its_role_and_hw_params_from_its_profile() {
    let env = env();
    hw_site(&env, "192.168.122.3-4");
    env.write("roles/mysql/1.0.0.toml", "modules = [\"db\"]\n");
    env.write("roles/base.toml", "modules = []\n");
    env.write(
        "modules/db/templates/etc/db.conf.j2",
        "bind = {{ hw.ips.ip }}\ndatadir on {{ hw.disk }}\nvendor = {{ facts.system.product.vendor }}\n",
    );
    let m1 = machine(&env, "m1", "94:18:82:0a:1b:c0");
    let facts = m1.to_str().unwrap();
    let plan = env
        .run(&["plan", "--node", "db7.rack3.example.com", "--facts", facts])
        .code(2);
    assert!(
        plan.stdout
            .contains("+bind = 192.168.122.3\n+datadir on nvme0n1\n+vendor = HPE\n"),
        "{}",
        plan.stdout
    );
    assert!(
        !env.site().join(".strata/state.db").exists(),
        "a plan allocates nothing"
    );

    env.run(&["apply", "--node", "db7.rack3.example.com", "--facts", facts])
        .code(0);
    assert_eq!(
        std::fs::read_to_string(env.root().join("etc/db.conf")).unwrap(),
        "bind = 192.168.122.3\ndatadir on nvme0n1\nvendor = HPE\n"
    );
    assert_eq!(pools(&env).len(), 1);
    let params = env.run(&["params", "db7.rack3.example.com", "hw.ips.ip"]);
    // `params` has no facts, so an unknown node is an error there: the profile needs facts.
    assert_eq!(params.code, 1);
    // check validates the roles profiles name.
    std::fs::remove_dir_all(env.site().join("roles/mysql")).unwrap();
    env.write("nodes/other.toml", "modules = []\n");
    let check = env.run(&["check"]).code(1);
    assert!(
        check
            .stderr
            .contains("hardware/profiles.toml: profile `hp`: unknown role `mysql`"),
        "{}",
        check.stderr
    );
}
