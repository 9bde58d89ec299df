//! The commit stopped after each of its steps (as `kill -9` would, through failpoints),
//! and again during recovery: the next command finishes or undoes it.
#![cfg(feature = "failpoints")]

use crate::crash::{NODE, assert_clean, bulk_site, expected};
use crate::env;

const N: usize = 200;

/// An apply of the node stopped at the failpoint `point`.
fn stopped_apply(env: &strata_test::TestEnv, point: &str) {
    let out = env
        .cmd(&["apply", "--node", NODE])
        .env("FAILPOINTS", format!("{point}=return"))
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "{point}: the apply should have been stopped"
    );
}

fn crash_then_recover(point: &str, recovery_crash: Option<&str>, ends_new: bool) {
    let old = expected(N, &[("old", false)]);
    let new = expected(N, &[("old", false), ("new", true)]);
    let env = env();
    bulk_site(&env, N, "old", false);
    env.run(&["apply", "--node", NODE]).code(0);
    bulk_site(&env, N, "new", true);
    stopped_apply(&env, point);
    if let Some(rp) = recovery_crash {
        let out = env
            .cmd(&["generations"])
            .env("FAILPOINTS", format!("{rp}=return"))
            .output()
            .unwrap();
        assert!(
            !out.status.success(),
            "{rp}: the recovery should have been stopped"
        );
    }
    env.run(&["generations"]).code(0);
    env.run(&["generations"]).code(0);
    assert_clean(&env);
    let tree = env.tree();
    if ends_new {
        assert!(tree == new, "{point}: expected all new");
        env.run(&["plan", "--node", NODE]).code(0);
    } else {
        assert!(tree == old, "{point}: expected all old");
        env.run(&["plan", "--node", NODE]).code(2);
        bulk_site(&env, N, "old", false);
        env.run(&["plan", "--node", NODE]).code(0);
    }
}

#[test]
fn before_the_commit_point_the_next_command_undoes() {
    for point in [
        "commit-after-store",
        "commit-after-journal",
        "commit-mid-stage",
        "commit-before-point",
    ] {
        crash_then_recover(point, None, false);
    }
}

#[test]
fn after_the_commit_point_the_next_command_finishes() {
    for point in [
        "commit-after-point",
        "commit-mid-apply",
        "commit-after-apply",
        "commit-after-publish",
    ] {
        crash_then_recover(point, None, true);
    }
}

#[test]
fn a_recovery_stopped_halfway_is_finished_by_the_next_one() {
    crash_then_recover("commit-mid-apply", Some("recover-redo"), true);
    crash_then_recover("commit-mid-stage", Some("recover-undo"), false);
}

/// A first apply into an empty root stages each new directory tree whole and puts it in
/// place with one rename: stopped anywhere, the next command leaves the root empty again
/// or finishes every file.
#[test]
fn a_first_apply_stopped_anywhere_leaves_an_empty_root_or_every_file() {
    let new = expected(N, &[("old", true)]);
    for (point, ends_new) in [
        ("commit-mid-stage", false),
        ("commit-before-point", false),
        ("commit-after-point", true),
        ("commit-mid-apply", true),
    ] {
        let env = env();
        let empty = env.tree();
        bulk_site(&env, N, "old", true);
        stopped_apply(&env, point);
        env.run(&["generations"]).code(0);
        assert_clean(&env);
        if ends_new {
            assert!(env.tree() == new, "{point}: expected every file");
            env.run(&["plan", "--node", NODE]).code(0);
        } else {
            assert_eq!(env.tree(), empty, "{point}: expected the empty root");
        }
    }
}
