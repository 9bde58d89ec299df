//! `strata nodes keys [--write]`: the age keys enrolled nodes sent the server, copied
//! into their node files' `[keys] age` (FLEET.md, "Secrets").

use crate::serve::served;

#[test]
fn nodes_keys_copies_enrolled_age_keys_into_node_files_only_when_asked() {
    let s = served(&[]);
    let n1 = s.node_root("n1");
    let token = s.token(&["--node", "n1"]);
    let (code, out, err) = s.enroll(&n1, "n1", Some(&token));
    assert_eq!(code, 0, "{out}{err}");
    let age = s
        .env
        .run(&["keys", "node", "--root", n1.to_str().unwrap()])
        .code(0)
        .stdout
        .trim()
        .to_string();
    let file = s.env.site().join("nodes/n1.toml");
    let before = std::fs::read_to_string(&file).unwrap();

    let (code, out, err) = s.site_cmd(&["nodes", "keys"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains(&format!("n1  {age}  missing from the node file")),
        "{out}"
    );
    assert_eq!(std::fs::read_to_string(&file).unwrap(), before, "only said");

    let (code, out, err) = s.site_cmd(&["nodes", "keys", "--write"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("n1  {age}  written")), "{out}");
    assert!(err.contains("strata secret rekey"), "{err}");
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(text, format!("{before}\n[keys]\nage = \"{age}\"\n"));
    let (_, out, _) = s.site_cmd(&["nodes", "keys"]);
    assert!(out.contains(&format!("n1  {age}  up to date")), "{out}");

    // A node file with another key: said, then replaced, the rest of the file kept.
    std::fs::write(
        &file,
        format!("{before}\n[keys]\n# the old one\nage = \"age1old\"\n"),
    )
    .unwrap();
    let (_, out, _) = s.site_cmd(&["nodes", "keys"]);
    assert!(out.contains("differs from the node file"), "{out}");
    let (code, out, err) = s.site_cmd(&["nodes", "keys", "--write"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("replaced"), "{out}");
    assert_eq!(
        std::fs::read_to_string(&file).unwrap(),
        format!("{before}\n[keys]\n# the old one\nage = \"{age}\"\n")
    );
    // A node file that is not TOML: named, nothing written.
    std::fs::write(&file, "modules = [\n").unwrap();
    let (code, _, err) = s.site_cmd(&["nodes", "keys", "--write"]);
    assert_eq!(code, 1, "{err}");
    assert!(err.contains("nodes/n1.toml"), "{err}");
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "modules = [\n");
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and the test hosts' Debian image: scripts/test provides them (feature host-tests)"
)]
fn the_first_push_makes_the_node_key_and_records_it_in_the_node_file() {
    let f = crate::push::fleet(1);
    let h1 = f.hosts.host("h1.test").root();
    let key = h1.join("var/lib/strata/keys/age.key");
    let file = f.env.site().join("nodes/h1.test.toml");
    let before = std::fs::read_to_string(&file).unwrap();
    assert!(!key.exists());
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    let age = f
        .env
        .run(&["keys", "node", "--root", h1.to_str().unwrap()])
        .code(0)
        .stdout
        .trim()
        .to_string();
    let text = std::fs::read_to_string(&file).unwrap();
    assert_eq!(
        text,
        format!("{}\n\n[keys]\nage = \"{age}\"\n", before.trim_end())
    );
    // The next push changes neither the key nor the file.
    let made = std::fs::read(&key).unwrap();
    let (code, nodes, _) = f.push_json(&["all"]);
    assert_eq!(code, 0, "{nodes:?}");
    assert_eq!(std::fs::read(&key).unwrap(), made);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), text);
}
