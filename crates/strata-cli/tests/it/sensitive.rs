//! A declared file that other users may not read, before or after (`/etc/shadow`, a key
//! at 0600), is shown only as "changed (sensitive)": its contents and their hashes never
//! appear in a plan, its JSON, an apply's output, a report or the generations.

use crate::env;

const OLD: &str = "root:$6$OLDSECRETHASH:19000:0:99999:7:::\n";
const NEW: &str = "root:$6$NEWSECRETHASH:19001:0:99999:7:::\n";
const KEY: &str = "-----BEGIN PRIVATE KEY-----\nKEYMATERIALXYZ\n-----END PRIVATE KEY-----\n";

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root: scripts/test runs as root (feature host-tests)"
)]
fn unreadable_files_never_show_their_contents_or_hashes() {
    let e = env();
    strata_test::require_root!();
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", "modules = [\"base\"]\n")
        .write(
            "modules/base/module.toml",
            "[[file]]\npath = \"/etc/shadow\"\nmode = \"0640\"\n\
             [[file]]\npath = \"/etc/ssl/key.pem\"\nmode = \"0600\"\n\
             [[file]]\npath = \"/etc/motd\"\nmode = \"0644\"\n",
        )
        .write("modules/base/files/etc/shadow", NEW)
        .write("modules/base/files/etc/ssl/key.pem", KEY)
        .write("modules/base/files/etc/motd", "welcome\n")
        // The old shadow was readable by all: the new one is not; either side hides both.
        .write_root("etc/shadow", OLD, 0o644);
    let secrets: Vec<String> = [OLD, NEW, KEY]
        .iter()
        .flat_map(|s| {
            let hash = blake3::hash(s.as_bytes()).to_hex().to_string();
            [
                s.lines().nth(1).unwrap_or(s).trim().to_string(),
                s.lines()
                    .next()
                    .unwrap_or(s)
                    .split(':')
                    .nth(1)
                    .unwrap_or("")
                    .to_string(),
                hash[..8].to_string(),
            ]
        })
        .filter(|s| s.len() >= 8)
        .collect();
    let check = |what: &str, text: &str| {
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "{what} shows {s}:\n{text}");
        }
    };
    let plan = e.run(&["plan", "--node", "n1"]).code(2);
    check("plan", &format!("{}{}", plan.stdout, plan.stderr));
    assert!(plan.stdout.contains("/etc/shadow"), "{}", plan.stdout);
    assert!(plan.stdout.contains("(sensitive)"), "{}", plan.stdout);
    assert!(
        plan.stdout.contains("+welcome"),
        "a readable file keeps its diff"
    );
    let json = e.run(&["plan", "--node", "n1", "--json"]).code(2);
    check("plan --json", &json.stdout);
    let apply = e.run(&["apply", "--node", "n1"]).code(0);
    check("apply", &format!("{}{}", apply.stdout, apply.stderr));
    let apply_json = e.run(&["generations", "--json"]).code(0);
    check("generations --json", &apply_json.stdout);
    let report = e.run(&["report"]).code(0);
    check("report", &report.stdout);
    let report_json = e.run(&["report", "--json"]).code(0);
    check("report --json", &report_json.stdout);
    assert_eq!(
        std::fs::read_to_string(e.root().join("etc/shadow")).expect("shadow"),
        NEW
    );
}
