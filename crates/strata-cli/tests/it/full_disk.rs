//! Out of space on the target: exit 1 naming the path, the operation and the errno; the
//! target unchanged; no generation recorded.

use std::process::Command;

use crate::crash::{NODE, assert_clean, bulk_site};
use crate::env;

struct Mount(std::path::PathBuf);

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root: scripts/test runs as root (feature host-tests)"
)]
fn a_full_disk_fails_cleanly() {
    strata_test::require_root!();
    let env = env();
    let status = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1200k", "tmpfs"])
        .arg(env.root())
        .status()
        .unwrap();
    assert!(status.success(), "mount tmpfs");
    let _guard = Mount(env.root());
    bulk_site(&env, 100, "old", false);
    env.run(&["apply", "--node", NODE]).code(0);
    let before = strata_test::tree(&env.root(), &[]);
    // 600 files of ~4 KiB blocks each cannot fit in what is left.
    bulk_site(&env, 600, "new", true);
    let run = env.run(&["apply", "--node", NODE]).code(1);
    assert!(
        run.stderr.contains("No space left on device (os error 28)"),
        "{}",
        run.stderr
    );
    assert!(run.stderr.contains("error: cannot "), "{}", run.stderr);
    // What it was committing was shown as it went; nothing says it was applied.
    assert!(run.stdout.contains("\nmodify "), "{}", run.stdout);
    assert!(!run.stdout.contains("Applied to"), "{}", run.stdout);
    assert!(
        run.stderr.contains("[ROOT]/"),
        "the message names the path: {}",
        run.stderr
    );
    let after = strata_test::tree(&env.root(), &[]);
    if after != before {
        let only = |a: &str, b: &str| {
            a.lines()
                .filter(|l| !b.contains(l))
                .collect::<Vec<_>>()
                .join("\n")
        };
        panic!(
            "target or state changed\nonly before:\n{}\nonly after:\n{}",
            only(&before, &after),
            only(&after, &before)
        );
    }
    assert_clean(&env);
    let listed = env.run(&["generations", "--json"]).code(0).stdout;
    let listed: serde_json::Value = serde_json::from_str(&listed).unwrap();
    assert_eq!(listed["generations"].as_array().unwrap().len(), 1);
}
