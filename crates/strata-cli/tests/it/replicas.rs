//! Replicas: any number of stateless `strata serve` processes in front of one PostgreSQL
//! and one bucket (`--published s3://…`, what `publish --to s3://…` wrote): a node
//! enrolls through one, polls and reports through the other, and both serve the same
//! releases. Real PostgreSQL and a real S3-compatible server (moto) on loopback, as
//! scripts/test starts them.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use strata_test::TestEnv;

use crate::env;
use crate::serve::{motd, output, pg_database};

/// The S3 server scripts/test starts (one that takes any key), and a fresh prefix.
fn bucket() -> (String, String) {
    let endpoint = std::env::var("STRATA_TEST_S3")
        .expect("STRATA_TEST_S3: needs the S3-compatible server scripts/test starts");
    let bucket = std::env::var("STRATA_TEST_S3_BUCKET").unwrap();
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let url = format!(
        "s3://{bucket}/replicas{}-{}",
        std::process::id(),
        N.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    );
    (url, endpoint)
}

/// `cmd` with the bucket's credentials (moto takes any) and endpoint.
fn s3(cmd: &mut Command, endpoint: &str) {
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
        cmd.env_remove(k);
    }
    cmd.env("AWS_ACCESS_KEY_ID", "replica")
        .env("AWS_SECRET_ACCESS_KEY", "replica-secret")
        .env("AWS_REGION", "us-east-1")
        .arg("--s3-endpoint")
        .arg(endpoint);
}

/// A running replica, killed when dropped.
struct Replica(Child, String);

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn replica(e: &TestEnv, online: &Path, db: &str, url: &str, endpoint: &str, n: usize) -> Replica {
    let log = std::fs::File::create(e.path().join(format!("replica{n}.log"))).unwrap();
    let mut cmd = e.cmd(&["serve", "--listen", "127.0.0.1:0", "--site"]);
    cmd.arg(e.site())
        .arg("--key")
        .arg(online)
        .args(["--db", db, "--published", url])
        .env("XDG_CONFIG_HOME", e.path().join("xdg"))
        .stdout(Stdio::piped())
        .stderr(log);
    s3(&mut cmd, endpoint);
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr = line.trim().rsplit(' ').next().unwrap_or("").to_string();
    assert!(
        addr.starts_with("http://"),
        "replica {n} did not start: {line}"
    );
    Replica(child, addr)
}

/// Keys made for the site in `e`: the operator's directory and the online key's file.
fn keys(e: &TestEnv) -> (std::path::PathBuf, std::path::PathBuf) {
    let keys = e.path().join("keys");
    let online = e.path().join("server/online.key");
    let (code, _, err) = output(
        e.cmd(&["keys", "init", "--site"])
            .arg(e.site())
            .arg("--keys")
            .arg(&keys)
            .arg("--online-out")
            .arg(&online),
    );
    assert_eq!(code, 0, "{err}");
    (keys, online)
}

/// A token from the shared database, in a file.
fn token(e: &TestEnv, db: &str) -> std::path::PathBuf {
    let token = e.path().join("token");
    let (code, _, err) = output(
        e.cmd(&["nodes", "token", "--db", db, "--out"])
            .arg(&token)
            .arg("--site")
            .arg(e.site()),
    );
    assert_eq!(code, 0, "{err}");
    token
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs PostgreSQL and the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn classified_nodes_get_the_same_assignment_from_every_replica() {
    let e = env();
    e.write("strata.toml", "[site]\nname = \"s\"\n")
        .write(
            "hardware/profiles.toml",
            "[[profile]]\nname = \"any\"\nrole = \"r@1.0.0\"\npools = [\"ips\"]\n\
             spec = [[\"system\", \"hostname\", \"name\", \"$$host\"]]\n",
        )
        .write(
            "hardware/pools/ips.toml",
            "generate = [{ ip = \"10.0.0.1-2\" }]\n",
        )
        .write("roles/r/1.0.0.toml", "modules = [\"m\"]\n")
        .write(
            "modules/m/templates/etc/ip.j2",
            "{{ node.name }} ip {{ hw.ips.ip }}\n",
        );
    let (keys, online) = keys(&e);
    let db = pg_database();
    let (url, endpoint) = bucket();
    let a = replica(&e, &online, &db, &url, &endpoint, 1);
    let b = replica(&e, &online, &db, &url, &endpoint, 2);
    let h1 = e.path().join("h1");
    std::fs::create_dir_all(h1.join("etc")).unwrap();
    std::fs::write(h1.join("etc/hostname"), "h1\n").unwrap();
    let (code, out, err) = output(
        e.cmd(&["enroll", "--server", &a.1, "--node", "h1", "--root"])
            .arg(&h1)
            .arg("--token-file")
            .arg(token(&e, &db)),
    );
    assert_eq!(code, 0, "{out}{err}");
    // Classified at enrollment in PostgreSQL; publish writes its assignment to the bucket.
    let mut cmd = e.cmd(&["publish", "--to", &url, "--db", &db, "--site"]);
    cmd.arg(e.site()).arg("--keys").arg(&keys);
    s3(&mut cmd, &endpoint);
    let (code, out, err) = output(&mut cmd);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(", 1 assignment"), "{out}");
    let agent = |server: &str| {
        output(
            e.cmd(&["agent", "--once", "--server", server, "--root"])
                .arg(&h1),
        )
    };
    let (code, out, err) = agent(&b.1);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(
        std::fs::read_to_string(h1.join("etc/ip")).unwrap(),
        "h1 ip 10.0.0.1\n"
    );
    // The other replica answers with the same bytes: not modified.
    let (code, out, err) = agent(&a.1);
    assert_eq!(code, 0, "{out}{err}");
    assert!(err.contains("(not modified)"), "{err}");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs PostgreSQL and the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn two_replicas_on_one_database_and_one_bucket_serve_the_same_releases() {
    let e = env();
    e.write("strata.toml", "[site]\nname = \"s\"\n")
        .write(
            "nodes/n1.toml",
            "environment = \"test\"\nmodules = [\"m\"]\n",
        )
        .write(
            "modules/m/templates/etc/motd.j2",
            "{{ node.name }} in {{ node.environment }}: v1\n",
        );
    let (keys, online) = keys(&e);
    let db = pg_database();
    let (url, endpoint) = bucket();
    let publish = |to: &str| {
        let mut cmd = e.cmd(&["publish", "--to", to, "--site"]);
        cmd.arg(e.site()).arg("--keys").arg(&keys);
        if to.starts_with("s3://") {
            s3(&mut cmd, &endpoint);
        }
        output(&mut cmd)
    };
    let (code, out, err) = publish(&url);
    assert_eq!(code, 0, "{out}{err}");
    let a = replica(&e, &online, &db, &url, &endpoint, 1);
    let b = replica(&e, &online, &db, &url, &endpoint, 2);

    // Enrolled through A (the token made in the shared database)...
    let token = token(&e, &db);
    let n1 = e.path().join("n1");
    let (code, out, err) = output(
        e.cmd(&["enroll", "--server", &a.1, "--node", "n1", "--root"])
            .arg(&n1)
            .arg("--token-file")
            .arg(&token),
    );
    assert_eq!(code, 0, "{out}{err}");
    // ... polling and reporting through B, which never saw the enrollment itself.
    let agent = |server: &str| {
        output(
            e.cmd(&["agent", "--once", "--server", server, "--root"])
                .arg(&n1),
        )
    };
    let (code, out, err) = agent(&b.1);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(motd(&n1).unwrap(), "n1 in test: v1\n");
    let (_, runs, _) = output(e.cmd(&["runs", "n1", "--db", &db, "--site"]).arg(e.site()));
    assert!(runs.contains("n1 changed test version"), "{runs}");

    // A new release in the bucket reaches the node through A; B is not a place to
    // publish to.
    e.write(
        "modules/m/templates/etc/motd.j2",
        "{{ node.name }} in {{ node.environment }}: v2\n",
    );
    let (code, out, err) = publish(&b.1);
    assert_eq!(code, 1, "{out}{err}");
    assert!(err.contains("publish there"), "{err}");
    let (code, out, err) = publish(&url);
    assert_eq!(code, 0, "{out}{err}");
    let (code, out, err) = agent(&a.1);
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(motd(&n1).unwrap(), "n1 in test: v2\n");
    let (_, runs, _) = output(e.cmd(&["runs", "n1", "--db", &db, "--site"]).arg(e.site()));
    assert_eq!(runs.matches("n1 changed test version").count(), 2, "{runs}");
    // No replica kept a store of its own.
    assert!(!e.site().join(".strata/serve").exists());
}

/// The attack on replicas: someone with write access to the bucket puts an older signed
/// timestamp back. A replica started after that (the same inventory: a restart) serves
/// nothing rather than the old release, so a node enrolled now does not apply it; the
/// next publish gets a new version and is served. A `file://` bucket and SQLite: runs
/// anywhere.
#[test]
fn a_timestamp_put_back_in_the_bucket_is_not_served_after_a_restart() {
    let e = env();
    let db = e.path().join("state.db").display().to_string();
    let url = format!("file://{}", e.path().join("bucket").display());
    rollback(&e, &db, &url, "http://127.0.0.1:1");
}

/// The same on S3 (moto) and PostgreSQL.
#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs PostgreSQL and the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn a_timestamp_put_back_in_s3_is_not_served_after_a_restart() {
    let (url, endpoint) = bucket();
    rollback(&env(), &pg_database(), &url, &endpoint);
}

fn rollback(e: &TestEnv, db: &str, url: &str, endpoint: &str) {
    e.write("strata.toml", "[site]\nname = \"s\"\n")
        .write(
            "nodes/n1.toml",
            "environment = \"test\"\nmodules = [\"m\"]\n",
        )
        .write(
            "nodes/n2.toml",
            "environment = \"test\"\nmodules = [\"m\"]\n",
        )
        .write("modules/m/templates/etc/motd.j2", "{{ node.name }}: v1\n");
    let settings = strata_bucket::S3Settings {
        env: [
            ("AWS_ACCESS_KEY_ID", "replica"),
            ("AWS_SECRET_ACCESS_KEY", "replica-secret"),
            ("AWS_REGION", "us-east-1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .to_vec(),
        endpoint: Some(endpoint.to_string()),
    };
    let store = strata_bucket::open(url, &settings).unwrap();
    let ts = "env/test/timestamp.json";
    let (keys, online) = keys(e);
    let publish = || {
        let mut cmd = e.cmd(&["publish", "--to", url, "--site"]);
        cmd.arg(e.site()).arg("--keys").arg(&keys);
        s3(&mut cmd, endpoint);
        let (code, out, err) = output(&mut cmd);
        assert_eq!(code, 0, "{out}{err}");
        out
    };
    publish();
    let old = store.get(ts, 1 << 20).unwrap().unwrap();
    // Versions are seconds: the next release is a later one.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    e.write("modules/m/templates/etc/motd.j2", "{{ node.name }}: v2\n");
    publish();
    let a = replica(e, &online, db, url, endpoint, 1);
    let enroll_and_run = |server: &str, node: &str| {
        let root = e.path().join(node);
        let (code, out, err) = output(
            e.cmd(&["enroll", "--server", server, "--node", node, "--root"])
                .arg(&root)
                .arg("--token-file")
                .arg(token(e, db)),
        );
        assert_eq!(code, 0, "{out}{err}");
        let run = output(
            e.cmd(&["agent", "--once", "--server", server, "--root"])
                .arg(&root),
        );
        (root, run)
    };
    let (n1, (code, out, err)) = enroll_and_run(&a.1, "n1");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(motd(&n1).unwrap(), "n1: v2\n");
    drop(a);

    // Version 1's timestamp put back; a replica started now.
    store.put(ts, &old).unwrap();
    let b = replica(e, &online, db, url, endpoint, 2);
    let (n2, (_, out, err)) = enroll_and_run(&b.1, "n2");
    assert_eq!(motd(&n2), None, "the old release was applied: {out}{err}");
    let log = std::fs::read_to_string(e.path().join("replica2.log")).unwrap();
    assert!(
        log.contains(&format!("replica of {url}: environment test:"))
            && log.contains("older than version")
            && log.contains("serving nothing"),
        "{log}"
    );
    // The next publish takes a version above both and is served.
    e.write("modules/m/templates/etc/motd.j2", "{{ node.name }}: v3\n");
    publish();
    std::thread::sleep(std::time::Duration::from_secs(
        strata_server::published::MIRROR_RECHECK,
    ));
    let (code, out, err) = output(
        e.cmd(&["agent", "--once", "--server", &b.1, "--root"])
            .arg(&n2),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(motd(&n2).unwrap(), "n2: v3\n");
}
