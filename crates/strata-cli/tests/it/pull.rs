//! `strata publish` to a bucket (a directory laid out as one, `file://`, and a real
//! S3-compatible server on loopback, `s3://`), and `strata agent` pulling from it: what a
//! node applies, follows and refuses; publishes killed halfway or racing; `--gc`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use strata_bucket::{S3Settings, Storage};
use strata_snapshot::{KeyPair, Role, Timestamp};
use strata_test::TestEnv;

use crate::env;

struct Pull {
    env: TestEnv,
    keys: PathBuf,
    /// The directory of a file:// bucket.
    bucket: PathBuf,
    /// The bucket's URL.
    url: String,
    /// How to reach an s3:// bucket.
    s3: Option<S3>,
    fingerprint: String,
}

/// The S3-compatible servers scripts/test starts (scripts/s3.sh): the endpoint, the
/// bucket and the access key; `endpoint` takes any key, `checking` only that one.
#[derive(Clone)]
struct S3 {
    endpoint: String,
    checking: String,
    bucket: String,
    key: String,
    secret: String,
}

impl S3 {
    fn from_env() -> S3 {
        let var = |name: &str| {
            std::env::var(name).unwrap_or_else(|_| {
                panic!("{name}: needs the S3-compatible server scripts/test starts (scripts/s3.sh)")
            })
        };
        S3 {
            endpoint: var("STRATA_TEST_S3"),
            checking: var("STRATA_TEST_S3_AUTH"),
            bucket: var("STRATA_TEST_S3_BUCKET"),
            key: var("STRATA_TEST_S3_KEY"),
            secret: var("STRATA_TEST_S3_SECRET"),
        }
    }

    /// The variables a user sets, and only those.
    fn vars(&self) -> Vec<(String, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID".into(), self.key.clone()),
            ("AWS_SECRET_ACCESS_KEY".into(), self.secret.clone()),
            ("AWS_REGION".into(), "us-east-1".into()),
        ]
    }

    /// Gives `cmd` this server's credentials and endpoint.
    fn apply(&self, cmd: &mut Command) {
        for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("AWS_")) {
            cmd.env_remove(k);
        }
        cmd.envs(self.vars());
        cmd.arg("--s3-endpoint").arg(&self.endpoint);
    }
}

/// A site with one node, `n1`, in environment `test` by its own file, publishing to a
/// directory.
fn pull() -> Pull {
    pull_to(None)
}

/// The same, publishing to a fresh prefix of the test S3 bucket.
fn s3_pull() -> Pull {
    pull_to(Some(S3::from_env()))
}

fn pull_to(s3: Option<S3>) -> Pull {
    let env = env();
    env.write("strata.toml", "[site]\nname = \"s\"\n");
    env.write(
        "nodes/n1.toml",
        "environment = \"test\"\nmodules = [\"m\"]\n",
    );
    env.write(
        "modules/m/templates/etc/motd.j2",
        "{{ node.name }} in {{ node.environment }}: v1\n",
    );
    let keys = env.path().join("keys");
    let ok = env
        .cmd(&["keys", "init", "--site"])
        .arg(env.site())
        .arg("--keys")
        .arg(&keys)
        .status()
        .unwrap();
    assert!(ok.success());
    let out = env
        .cmd(&["keys", "fingerprint", "--site"])
        .arg(env.site())
        .output()
        .unwrap();
    let fingerprint = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let bucket = env.path().join("bucket");
    let url = match &s3 {
        Some(s3) => {
            static N: AtomicUsize = AtomicUsize::new(0);
            format!(
                "s3://{}/t{}-{}",
                s3.bucket,
                std::process::id(),
                N.fetch_add(1, Ordering::SeqCst)
            )
        }
        None => format!("file://{}", bucket.display()),
    };
    Pull {
        env,
        keys,
        bucket,
        url,
        s3,
        fingerprint,
    }
}

impl Pull {
    /// `publish` with these extra arguments and variables (`FAILPOINTS`…).
    fn publish_with(&self, args: &[&str], vars: &[(&str, &str)]) -> Output {
        let mut cmd = self.env.cmd(&["publish", "--to", &self.url, "--site"]);
        cmd.arg(self.env.site()).arg("--keys").arg(&self.keys);
        cmd.args(args).envs(vars.iter().copied());
        if let Some(s3) = &self.s3 {
            s3.apply(&mut cmd);
        }
        cmd.output().unwrap()
    }

    /// `publish`, which must succeed: its output.
    fn publish(&self) -> String {
        let out = self.publish_with(&[], &[]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `agent --once`: exit code, stdout, stderr.
    fn agent(&self, root_key: &str) -> (i32, String, String) {
        self.agent_at(root_key, &self.env.root())
    }

    /// `agent --once` on the node root `root`.
    fn agent_at(&self, root_key: &str, root: &Path) -> (i32, String, String) {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args([
            "agent",
            "--once",
            "--node",
            "n1",
            "--root-key",
            root_key,
            "--from",
            &self.url,
        ])
        .arg("--root")
        .arg(root);
        if let Some(s3) = &self.s3 {
            s3.apply(&mut cmd);
        }
        let out = cmd.output().unwrap();
        (
            out.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }

    fn motd(&self) -> Option<String> {
        std::fs::read_to_string(self.env.root().join("etc/motd")).ok()
    }

    fn file(&self, rel: &str) -> PathBuf {
        self.bucket.join(rel)
    }

    /// The bucket itself, as the tests (an attacker, a second publisher) reach it.
    fn store(&self) -> Box<dyn Storage> {
        let settings = match &self.s3 {
            Some(s3) => S3Settings {
                env: s3.vars(),
                endpoint: Some(s3.endpoint.clone()),
            },
            None => S3Settings::default(),
        };
        strata_bucket::open(&self.url, &settings).unwrap()
    }
}

fn only(dir: &Path, ext: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(ext))
        .collect();
    v.sort();
    v
}

#[test]
fn an_agent_applies_what_was_published_follows_its_environment_and_then_rests() {
    let p = pull();
    p.publish();
    // The node starts from production; its own file puts it in test, which is followed.
    let (code, out, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(p.motd().unwrap(), "n1 in test: v1\n");
    assert!(err.contains("agent: test version"), "{err}");
    let (code, out, _) = p.agent(&p.fingerprint);
    assert_eq!(code, 0);
    assert!(out.contains("Nothing to do for n1"), "{out}");

    // A new release reaches the node at its next poll.
    p.env
        .write("modules/m/templates/etc/motd.j2", "{{ node.name }}: v2\n");
    p.publish();
    let (code, out, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(p.motd().unwrap(), "n1: v2\n");
}

#[test]
fn a_wrong_root_key_on_first_contact_applies_nothing() {
    let p = pull();
    p.publish();
    let (code, out, err) = p.agent(&"0".repeat(64));
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.contains("not the 0000"), "{out}");
    assert!(p.motd().is_none());
    assert!(!p.env.root().join("var/lib/strata/trust/root.json").exists());
}

#[test]
fn a_half_finished_publish_and_every_forgery_leave_the_node_on_what_it_verified() {
    let p = pull();
    p.publish();
    assert_eq!(p.agent(&p.fingerprint).0, 0);
    let v1_ts = std::fs::read(p.file("env/test/timestamp.json")).unwrap();

    // A publish killed before its timestamp: readers see the previous release only.
    p.env.write("modules/m/templates/etc/motd.j2", "v2\n");
    p.publish();
    let v2_ts = std::fs::read(p.file("env/test/timestamp.json")).unwrap();
    std::fs::write(p.file("env/test/timestamp.json"), &v1_ts).unwrap();
    let (code, out, _) = p.agent(&p.fingerprint);
    assert_eq!(code, 0, "{out}");
    assert_eq!(p.motd().unwrap(), "n1 in test: v1\n");

    // A blob swapped in the bucket: refused; the last verified snapshot is enforced
    // again (exit 4, with the reason).
    std::fs::write(p.file("env/test/timestamp.json"), &v2_ts).unwrap();
    let manifests = only(&p.file("env/test"), ".json");
    let newest = manifests
        .iter()
        .filter(|m| !m.ends_with("timestamp.json"))
        .max()
        .unwrap()
        .clone();
    let v2_blob = p
        .file(&format!("blobs/{}", &hash_of(b"v2\n")[..2]))
        .join(hash_of(b"v2\n"));
    std::fs::write(&v2_blob, b"v3\n").unwrap();
    std::fs::write(p.env.root().join("etc/motd"), "drifted\n").unwrap();
    let (code, out, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 4, "{out}\n{err}");
    assert!(
        err.contains("stale since") && err.contains("does not match its hash"),
        "{err}"
    );
    assert_eq!(
        p.motd().unwrap(),
        "n1 in test: v1\n",
        "drift was not corrected"
    );
    std::fs::write(&v2_blob, b"v2\n").unwrap();
    assert_eq!(p.agent(&p.fingerprint).0, 0);
    assert_eq!(p.motd().unwrap(), "v2\n");

    // The old release replayed (its timestamp and manifest are genuine, and older).
    std::fs::write(p.file("env/test/timestamp.json"), &v1_ts).unwrap();
    let (code, _, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("below this node's floor"), "{err}");
    assert_eq!(p.motd().unwrap(), "v2\n");

    // An expired timestamp, correctly signed.
    let key = KeyPair::load(&p.keys.join("signing.key"), Role::Signing).unwrap();
    let mut ts = Timestamp {
        kind: "timestamp".into(),
        site: "s".into(),
        environment: "test".into(),
        version: 0,
        manifest: strata_types::Hash::of(&std::fs::read(&newest).unwrap()),
        created: 1,
        expires: 2,
    };
    ts.version = newest
        .file_stem()
        .unwrap()
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    std::fs::write(p.file("env/test/timestamp.json"), ts.seal(&key)).unwrap();
    let (code, _, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 4, "{err}");
    assert!(err.contains("the timestamp expired"), "{err}");
}

fn hash_of(b: &[u8]) -> String {
    strata_types::Hash::of(b).to_string()
}

/// The version `publish` printed for `env`.
fn version_in(out: &str, env: &str) -> u64 {
    let marker = format!(" {env} version ");
    let at = out.find(&marker).unwrap_or_else(|| panic!("{out}")) + marker.len();
    out[at..].split(' ').next().unwrap().parse().unwrap()
}

/// The manifest versions of `env` in the bucket.
fn versions(store: &dyn Storage, env: &str) -> Vec<u64> {
    store
        .list(&format!("env/{env}/"))
        .unwrap()
        .iter()
        .filter_map(|k| k.rsplit('/').next()?.strip_suffix(".json")?.parse().ok())
        .collect()
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn an_agent_applies_what_was_published_to_s3() {
    let p = s3_pull();
    let out = p.publish();
    assert!(
        out.contains(&format!("new blobs written to {}", p.url)),
        "{out}"
    );
    let store = p.store();
    for key in [
        "root/1.json",
        "env/test/timestamp.json",
        "env/production/timestamp.json",
    ] {
        assert!(store.exists(key).unwrap(), "{key}");
    }
    let (code, out, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(p.motd().unwrap(), "n1 in test: v1\n");
    assert!(err.contains(&format!("from {}", p.url)), "{err}");

    p.env
        .write("modules/m/templates/etc/motd.j2", "{{ node.name }}: v2\n");
    let out = p.publish();
    assert!(out.contains("1 new blobs written"), "{out}");
    let (code, out, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(p.motd().unwrap(), "n1: v2\n");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn a_blob_swapped_grown_or_gone_in_s3_leaves_the_node_on_what_it_verified() {
    let p = s3_pull();
    p.publish();
    assert_eq!(p.agent(&p.fingerprint).0, 0);
    p.env.write("modules/m/templates/etc/motd.j2", "v2\n");
    p.publish();
    let store = p.store();
    let key = strata_bucket::blob_key(&hash_of(b"v2\n"));
    let stale = |why: &str| {
        std::fs::write(p.env.root().join("etc/motd"), "drifted\n").unwrap();
        let (code, out, err) = p.agent(&p.fingerprint);
        assert_eq!(code, 4, "{why}: {out}\n{err}");
        assert!(err.contains("stale since") && err.contains(why), "{err}");
        assert_eq!(p.motd().unwrap(), "n1 in test: v1\n", "{why}: drift stays");
    };
    // Swapped: same length, other bytes.
    store.put(&key, b"v3\n").unwrap();
    stale("does not match its hash");
    // Grown past its declared size: refused from the announced length, before its body.
    store.put(&key, &vec![b'x'; 1 << 20]).unwrap();
    stale("is larger than 3 bytes");
    // Gone (a 404 on a listed blob): retry later.
    store.delete(&key).unwrap();
    stale("is missing; retry later");
    assert!(store.put_new(&key, b"v2\n").unwrap());
    let (code, out, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(p.motd().unwrap(), "v2\n");
}

/// Publishes killed after their blobs and after their manifest leave readers on the
/// previous version; a publisher that finds its version taken (by a killed or a
/// concurrent publish) takes the next one and leaves the other's manifest as it was.
#[cfg(feature = "failpoints")]
fn killed_and_racing_publishes(p: &Pull) {
    p.publish();
    assert_eq!(p.agent(&p.fingerprint).0, 0);
    let store = p.store();
    let ts_key = strata_bucket::timestamp_key("test");
    let v1_ts = store.get(&ts_key, 1 << 20).unwrap().unwrap();
    p.env.write("modules/m/templates/etc/motd.j2", "v2\n");
    for point in ["publish-after-blobs", "publish-after-manifest"] {
        let out = p.publish_with(&[], &[("FAILPOINTS", &format!("{point}=return"))]);
        assert!(!out.status.success(), "{point}: not stopped");
        assert_eq!(
            store.get(&ts_key, 1 << 20).unwrap().unwrap(),
            v1_ts,
            "{point}"
        );
        let (code, out, err) = p.agent(&p.fingerprint);
        assert_eq!(code, 0, "{point}: {out}\n{err}");
        assert!(out.contains("Nothing to do for n1"), "{point}: {out}");
        assert_eq!(p.motd().unwrap(), "n1 in test: v1\n", "{point}");
    }

    // Version F is current, far above the clock, so the next publishers all want F + 1.
    let key = KeyPair::load(&p.keys.join("signing.key"), Role::Signing).unwrap();
    let now = strata_snapshot::now();
    let f = now + 1_000_000;
    let ts = Timestamp {
        kind: "timestamp".into(),
        site: "s".into(),
        environment: "test".into(),
        version: f,
        manifest: strata_types::Hash::of(b"unused"),
        created: now,
        expires: now + 3600,
    };
    store.put(&ts_key, &ts.seal(&key)).unwrap();
    p.env.write("modules/m/templates/etc/motd.j2", "a\n");
    let out = p.publish_with(
        &["--env", "test"],
        &[("FAILPOINTS", "publish-after-manifest=return")],
    );
    assert!(!out.status.success());
    let taken = strata_bucket::manifest_key("test", f + 1);
    let a = store.get(&taken, 64 << 20).unwrap().expect("A took F + 1");
    p.env.write("modules/m/templates/etc/motd.j2", "b\n");
    let out = p.publish_with(&["--env", "test"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert_eq!(version_in(&stdout, "test"), f + 2, "{stdout}");
    assert_eq!(store.get(&taken, 64 << 20).unwrap().unwrap(), a);

    // Two at once: never the same version.
    let children: Vec<_> = (0..2)
        .map(|_| {
            let mut cmd = p
                .env
                .cmd(&["publish", "--to", &p.url, "--env", "test", "--site"]);
            cmd.arg(p.env.site()).arg("--keys").arg(&p.keys);
            if let Some(s3) = &p.s3 {
                s3.apply(&mut cmd);
            }
            cmd.stdout(std::process::Stdio::piped()).spawn().unwrap()
        })
        .collect();
    let mut got: Vec<u64> = children
        .into_iter()
        .map(|c| {
            let out = c.wait_with_output().unwrap();
            assert!(out.status.success());
            version_in(&String::from_utf8_lossy(&out.stdout), "test")
        })
        .collect();
    got.sort_unstable();
    assert_eq!(got, [f + 3, f + 4]);
}

#[test]
#[cfg(feature = "failpoints")]
fn killed_and_racing_publishes_to_a_directory() {
    killed_and_racing_publishes(&pull());
}

#[test]
#[cfg(feature = "failpoints")]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn killed_and_racing_publishes_to_s3() {
    killed_and_racing_publishes(&s3_pull());
}

/// Seven releases, the last with `--gc`: versions 3 to 7 stay with their blobs, 1 and 2
/// go with the blobs only they listed, and a reader that fetched version 6's timestamp
/// before the collection still gets all of version 6.
fn gc_keeps_the_last_five(p: &Pull) {
    let store = p.store();
    let mut published = Vec::new();
    for i in 1..=6 {
        p.env
            .write("modules/m/templates/etc/motd.j2", &format!("v{i}\n"));
        published.push(version_in(&p.publish(), "test"));
    }
    let (code, out, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(p.motd().unwrap(), "v6\n");
    let ts_key = strata_bucket::timestamp_key("test");
    let ts6 = store.get(&ts_key, 1 << 20).unwrap().unwrap();

    p.env.write("modules/m/templates/etc/motd.j2", "v7\n");
    let out = p.publish_with(&["--gc"], &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    published.push(version_in(&stdout, "test"));
    assert!(
        stdout.contains(
            "gc: kept the last 5 versions of each environment; deleted 4 manifests and 2 blobs"
        ),
        "{stdout}"
    );
    assert_eq!(versions(store.as_ref(), "test"), published[2..]);
    assert_eq!(versions(store.as_ref(), "production").len(), 5);
    for i in 1..=7 {
        let blob = strata_bucket::blob_key(&hash_of(format!("v{i}\n").as_bytes()));
        assert_eq!(store.exists(&blob).unwrap(), i > 2, "v{i}");
    }

    // A reader that read the previous timestamp just before: a new node, given it.
    let ts7 = store.get(&ts_key, 1 << 20).unwrap().unwrap();
    store.put(&ts_key, &ts6).unwrap();
    let fresh = p.env.path().join("fresh");
    std::fs::create_dir(&fresh).unwrap();
    let (code, out, err) = p.agent_at(&p.fingerprint, &fresh);
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(
        std::fs::read_to_string(fresh.join("etc/motd")).unwrap(),
        "v6\n"
    );
    store.put(&ts_key, &ts7).unwrap();
    assert_eq!(p.agent(&p.fingerprint).0, 0);
    assert_eq!(p.motd().unwrap(), "v7\n");

    // Version 8 (the same files as 7) pushes version 3 out, and the blob only it listed.
    let out = p.publish_with(&["--gc"], &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("deleted 2 manifests and 1 blobs"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v3 = strata_bucket::blob_key(&hash_of(b"v3\n"));
    assert!(!store.exists(&v3).unwrap());
}

#[test]
fn gc_keeps_the_last_five_versions_in_a_directory() {
    gc_keeps_the_last_five(&pull());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn gc_keeps_the_last_five_versions_in_s3() {
    gc_keeps_the_last_five(&s3_pull());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs the S3-compatible server scripts/test starts (feature host-tests)"
)]
fn bad_credentials_and_unreachable_endpoints_name_the_url_and_no_secret() {
    let mut p = s3_pull();
    let s3 = p.s3.as_mut().unwrap();
    s3.endpoint = s3.checking.clone();
    p.publish();
    assert_eq!(p.agent(&p.fingerprint).0, 0);
    let good = p.s3.clone().unwrap();
    let object = format!("{}/root/1.json", p.url);
    let cases = [
        (
            "a wrong secret",
            good.key.clone(),
            "wrong-secret-0123456789".to_string(),
            good.endpoint.clone(),
            "check the credentials",
        ),
        (
            "an unknown key",
            "AKIAUNKNOWN0123456789".to_string(),
            good.secret.clone(),
            good.endpoint.clone(),
            "check the credentials",
        ),
        (
            "nothing listening",
            good.key.clone(),
            good.secret.clone(),
            "http://127.0.0.1:1".to_string(),
            "127.0.0.1:1",
        ),
    ];
    for (what, key, secret, endpoint, says) in cases {
        let bad = S3 {
            key: key.clone(),
            secret: secret.clone(),
            endpoint,
            ..good.clone()
        };
        let mut cmd = p.env.cmd(&["publish", "--to", &p.url, "--site"]);
        cmd.arg(p.env.site()).arg("--keys").arg(&p.keys);
        bad.apply(&mut cmd);
        let started = std::time::Instant::now();
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{what}: {err}");
        assert!(started.elapsed().as_secs() < 30, "{what}: too slow");
        assert!(err.contains(&object) && err.contains(says), "{what}: {err}");
        for secret in [&key, &secret, &good.key, &good.secret] {
            assert!(
                !err.contains(secret.as_str()),
                "{what}: a secret printed: {err}"
            );
        }

        // The node re-applies what it verified, saying why nothing newer came.
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_strata"));
        cmd.args([
            "agent",
            "--once",
            "--node",
            "n1",
            "--root-key",
            &p.fingerprint,
        ])
        .args(["--from", &p.url])
        .arg("--root")
        .arg(p.env.root());
        bad.apply(&mut cmd);
        let out = cmd.output().unwrap();
        let all = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(4), "{what}: {all}");
        assert!(
            all.contains("stale since") && all.contains(&object),
            "{what}: {all}"
        );
        for secret in [&key, &secret, &good.key, &good.secret] {
            assert!(
                !all.contains(secret.as_str()),
                "{what}: a secret printed: {all}"
            );
        }
    }

    // Plain HTTP beyond loopback: refused before anything is sent.
    let far = S3 {
        endpoint: "http://192.0.2.1:9000".into(),
        ..good
    };
    let mut cmd = p.env.cmd(&["publish", "--to", &p.url, "--site"]);
    cmd.arg(p.env.site()).arg("--keys").arg(&p.keys);
    far.apply(&mut cmd);
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("only to a loopback address"), "{err}");
}

#[test]
fn a_pulled_node_runs_the_sites_hooks_from_its_snapshot() {
    let p = pull();
    let log = p.env.path().join("hooks.log");
    for event in ["pre-apply", "post-apply"] {
        p.env.write_exec(
            &format!("hooks/{event}.d/10-log"),
            &format!(
                "#!/bin/sh\necho \"$STRATA_HOOK $STRATA_NODE $STRATA_ROOT\" >> {}\n",
                log.display()
            ),
        );
    }
    p.publish();
    let (code, out, err) = p.agent(&p.fingerprint);
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(
        out.contains("hook hooks/post-apply.d/10-log  (ok)"),
        "{out}"
    );
    let root = p.env.root().display().to_string();
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        format!("pre-apply n1 {root}\npost-apply n1 {root}\n")
    );
}
