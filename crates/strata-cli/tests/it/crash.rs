//! Killing an apply at any moment leaves every managed path at the old or at the new
//! generation, once the next command has run.

use strata_test::TestEnv;

use crate::env;

pub const NODE: &str = "bulk.test";

/// A site whose node has `n` files in directories of 50; `tag` goes into every file, and
/// with `extra` a new directory of files appears and the last directory disappears, so a
/// commit creates, modifies and removes.
pub fn bulk_site(env: &TestEnv, n: usize, tag: &str, extra: bool) {
    let _ = std::fs::remove_dir_all(env.site());
    env.write("strata.toml", "[site]\nname = \"bulk\"\n");
    env.write(&format!("nodes/{NODE}.toml"), "modules = [\"bulk\"]\n");
    env.write(
        "modules/bulk/module.toml",
        "[[file]]\npath = \"/srv/bulk/d00/*\"\nmode = \"0600\"\n",
    );
    let dirs = n.div_ceil(50);
    for i in 0..n {
        let d = i / 50;
        if extra && d == dirs - 1 {
            continue;
        }
        env.write(
            &format!("modules/bulk/files/srv/bulk/d{d:02}/f{i:05}"),
            &format!("{tag} {i}\n{}\n", "x".repeat(200)),
        );
    }
    if extra {
        for i in 0..20 {
            env.write(
                &format!("modules/bulk/files/srv/bulk/new/g{i:03}"),
                &format!("{tag} new {i}\n"),
            );
        }
    }
}

/// The tree of a fresh root after applying the bulk site at `tag`, then `tag2`.
pub fn expected(n: usize, steps: &[(&str, bool)]) -> String {
    let e = env();
    for (tag, extra) in steps {
        bulk_site(&e, n, tag, *extra);
        e.run(&["apply", "--node", NODE]).code(0);
    }
    e.tree()
}

/// Leftovers a commit must never leave once recovered: staged files and markers.
pub fn assert_clean(env: &TestEnv) {
    let tree = strata_test::tree(&env.root(), &[]);
    assert!(!tree.contains(".strata-new"), "staged files left:\n{tree}");
    for f in ["journal", "commit", "undo", "current.new"] {
        assert!(
            !env.root().join("var/lib/strata").join(f).exists(),
            "{f} left behind"
        );
    }
}

#[test]
fn an_apply_killed_at_any_moment_is_all_old_or_all_new_after_the_next_command() {
    const N: usize = 3000;
    let old = expected(N, &[("old", false)]);
    let new = expected(N, &[("old", false), ("new", true)]);
    assert_ne!(old, new);

    let env = env();
    bulk_site(&env, N, "old", false);
    env.run(&["apply", "--node", NODE]).code(0);
    // How long a full apply takes here, to spread the kills over it.
    bulk_site(&env, N, "new", true);
    let start = std::time::Instant::now();
    env.run(&["apply", "--node", NODE]).code(0);
    let full = start.elapsed();
    bulk_site(&env, N, "old", false);
    env.run(&["apply", "--node", NODE]).code(0);
    assert_eq!(env.tree(), old);

    let (mut saw_old, mut saw_new) = (0, 0);
    let mut seed: u64 = 0x5eed;
    // 24 kills spread over the measured apply time; this disk's speed varies from one
    // minute to the next, so when none landed after the commit point, up to 8 more come
    // later and later.
    for round in 0..32 {
        if round >= 24 && saw_old > 0 && saw_new > 0 {
            break;
        }
        let (tag, extra) = if env.tree() == old {
            ("new", true)
        } else {
            ("old", false)
        };
        bulk_site(&env, N, tag, extra);
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let delay = if round < 24 {
            full.mul_f64(((seed >> 33) % 1000) as f64 / 1000.0 * 1.1)
        } else if saw_new == 0 {
            full.mul_f64(1.0 + (round - 23) as f64 * 0.5)
        } else {
            full.mul_f64(((seed >> 33) % 100) as f64 / 1000.0)
        };
        let mut child = env
            .cmd(&["apply", "--node", NODE])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        let _ = child.kill();
        let _ = child.wait();
        // Any command recovers first.
        env.run(&["generations"]).code(0);
        let tree = env.tree();
        assert!(
            tree == old || tree == new,
            "round {round} (killed after {delay:?}): a mix of old and new"
        );
        assert_clean(&env);
        if tree == old {
            saw_old += 1;
        } else {
            saw_new += 1;
        }
        // The recorded generation agrees with the tree.
        let want = if tree == new {
            ("new", true)
        } else {
            ("old", false)
        };
        bulk_site(&env, N, want.0, want.1);
        env.run(&["plan", "--node", NODE]).code(0);
    }
    eprintln!(
        "crash rounds: {saw_old} ended old, {saw_new} ended new (a full apply takes {full:?})"
    );
    assert!(
        saw_old > 0 && saw_new > 0,
        "the kills never landed on both sides of the commit point"
    );
}
