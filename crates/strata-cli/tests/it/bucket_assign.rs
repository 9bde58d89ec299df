//! Assignments in a bucket (FLEET.md, "Pull from object storage"): nodes that the
//! site's hardware profiles classified when they enrolled with `serve` read their signed
//! assignment beside the snapshot `publish` wrote to a bucket, by their own key; another
//! node's assignment, or a forged one, is refused and the node keeps what it verified.

use std::path::Path;
use std::process::Command;

use strata_snapshot::{Assignment, Classified, KeyId, KeyPair, Role};

use crate::serve::{output, served_with};

#[test]
fn classified_nodes_read_their_own_assignment_from_the_bucket() {
    let s = served_with(
        |env| {
            env.write(
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
        },
        &[],
    );
    let host = |name: &str| {
        let root = s.node_root(name);
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::write(root.join("etc/hostname"), format!("{name}\n")).unwrap();
        assert_eq!(s.enroll(&root, name, Some(&s.token(&[]))).0, 0, "{name}");
        root
    };
    let (h1, h2) = (host("h1"), host("h2"));
    let bucket = s.env.path().join("bucket");
    let url = format!("file://{}", bucket.display());
    let (code, out, err) = output(
        s.env
            .cmd(&["publish", "--to", &url, "--site"])
            .arg(s.env.site())
            .arg("--keys")
            .arg(&s.keys),
    );
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("test version") && out.contains(", 2 assignments"),
        "{out}"
    );
    let (_, fingerprint, _) = s.site_cmd(&["keys", "fingerprint"]);
    let agent = |root: &Path, node: &str| {
        output(
            Command::new(env!("CARGO_BIN_EXE_strata"))
                .args(["agent", "--once", "--node", node, "--from", &url])
                .args(["--root-key", fingerprint.trim(), "--root"])
                .arg(root),
        )
    };
    for (root, node, ip) in [(&h1, "h1", "10.0.0.1"), (&h2, "h2", "10.0.0.2")] {
        let (code, out, err) = agent(root, node);
        assert_eq!(code, 0, "{node}: {out}{err}");
        assert_eq!(
            std::fs::read_to_string(root.join("etc/ip")).unwrap(),
            format!("{node} ip {ip}\n")
        );
    }
    let key_of = |root: &Path| {
        KeyPair::load(&root.join("var/lib/strata/keys/node.key"), Role::Node)
            .unwrap()
            .id()
            .0
    };
    let file = |root: &Path| bucket.join(format!("assignments/{}.json", key_of(root)));
    let mine = std::fs::read(file(&h2)).unwrap();

    // h1's assignment put where h2 reads its own: refused, h2 keeps what it verified.
    std::fs::copy(file(&h1), file(&h2)).unwrap();
    let (code, out, err) = agent(&h2, "h2");
    assert_eq!(code, 4, "{out}{err}");
    assert!(err.contains("stale since") && err.contains("h1"), "{err}");
    assert_eq!(
        std::fs::read_to_string(h2.join("etc/ip")).unwrap(),
        "h2 ip 10.0.0.2\n"
    );

    // One signed by a key the site's root does not certify, taking h1's address.
    let stranger = KeyPair::generate(Role::Signing).unwrap();
    let forged = Assignment {
        kind: "assignment".into(),
        site: "s".into(),
        node: "h2".into(),
        node_key: Some(KeyId(key_of(&h2))),
        environment: "test".into(),
        version: u64::MAX / 2,
        created: strata_snapshot::now(),
        expires: strata_snapshot::now() + 3600,
        min_snapshot_version: 0,
        classification: Classified {
            machine: "h2".into(),
            profile: "any".into(),
            role: Some("r@1.0.0".into()),
            vars: Default::default(),
            pools: [(
                "ips".to_string(),
                [("ip".to_string(), "10.0.0.1".to_string())].into(),
            )]
            .into(),
        },
    };
    std::fs::write(file(&h2), forged.seal(&stranger)).unwrap();
    let (code, out, err) = agent(&h2, "h2");
    assert_eq!(code, 4, "{out}{err}");
    assert!(
        err.contains("not signed") || err.contains("signing or online"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(h2.join("etc/ip")).unwrap(),
        "h2 ip 10.0.0.2\n"
    );

    // Its own again: applied, nothing to change.
    std::fs::write(file(&h2), &mine).unwrap();
    let (code, out, err) = agent(&h2, "h2");
    assert_eq!(code, 0, "{out}{err}");
}
