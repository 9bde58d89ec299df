//! `strata publish` to a directory laid out as a bucket (`file://`), and `strata agent`
//! pulling from it: what a node applies, follows and refuses.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_snapshot::{KeyPair, Role, Timestamp};
use strata_test::TestEnv;

use crate::env;

struct Pull {
    env: TestEnv,
    keys: PathBuf,
    bucket: PathBuf,
    fingerprint: String,
}

/// A site with one node, `n1`, in environment `test` by its own file.
fn pull() -> Pull {
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
    Pull {
        env,
        keys,
        bucket,
        fingerprint,
    }
}

impl Pull {
    fn publish(&self) {
        let out = self
            .env
            .cmd(&[
                "publish",
                "--to",
                &format!("file://{}", self.bucket.display()),
                "--site",
            ])
            .arg(self.env.site())
            .arg("--keys")
            .arg(&self.keys)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// `agent --once`: exit code, stdout, stderr.
    fn agent(&self, root_key: &str) -> (i32, String, String) {
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "agent",
                "--once",
                "--node",
                "n1",
                "--root-key",
                root_key,
                "--from",
            ])
            .arg(format!("file://{}", self.bucket.display()))
            .arg("--root")
            .arg(self.env.root())
            .output()
            .unwrap();
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
