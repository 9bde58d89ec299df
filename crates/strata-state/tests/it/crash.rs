//! Commits stopped at each failpoint as `kill -9` would stop them: a child process (this
//! test binary, running [`child`]) aborts there, and the next open of the state finishes
//! the commit or undoes it. A recovery stopped halfway is finished by the next one.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Command;

use fail::FailScenario;

use crate::fixture::{Fixture, Tree, new, old, view};

/// The root a child works on.
const ROOT: &str = "STRATA_STATE_TEST_ROOT";
/// What a child does: `commit` (old to new), `first` (nothing to new), or `open`.
const STEP: &str = "STRATA_STATE_TEST_STEP";

/// The points before the commit point: the next open undoes the commit.
const BEFORE_POINT: [&str; 4] = [
    "commit-after-journal",
    "commit-mid-stage",
    "commit-after-store",
    "commit-before-point",
];

/// The points after it: the next open finishes the commit.
const AFTER_POINT: [&str; 6] = [
    "commit-after-point",
    "commit-mid-apply",
    // The replaced /srv/lib swapped with its link, then half removed.
    "commit-after-exchange",
    "commit-mid-replace",
    "commit-after-apply",
    "commit-after-publish",
];

/// Not a test of its own: the tests below run it in a child process, which the
/// failpoints in `FAILPOINTS` stop (`abort()`, as `kill -9` would).
#[test]
#[ignore = "a helper the crash tests run in a child process, stopped at a failpoint"]
fn child() {
    let (Ok(root), Ok(step)) = (std::env::var(ROOT), std::env::var(STEP)) else {
        return;
    };
    let _scenario = FailScenario::setup();
    let f = Fixture::at(Path::new(&root));
    let _ = match step.as_str() {
        "commit" => f.commit(&old(), &new()).map(drop),
        "first" => f.commit(&Tree::new(), &new()).map(drop),
        _ => f.open().map(drop),
    };
}

/// Runs `step` on `f` in a child process stopped at `failpoints`; panics, with what it
/// printed, unless it was stopped.
fn stopped(f: &Fixture, step: &str, failpoints: &str) {
    let out = Command::new(std::env::current_exe().expect("the test binary"))
        .args(["--exact", "crash::child", "--ignored", "--nocapture"])
        .env(ROOT, f.path())
        .env(STEP, step)
        .env("FAILPOINTS", failpoints)
        .output()
        .expect("the child");
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{step} at {failpoints}: the child should have been stopped there\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
}

/// A root where `old` is committed (generation 1).
fn at_old() -> Fixture {
    let f = Fixture::new();
    f.commit(&Tree::new(), &old()).expect("the first commit");
    f
}

/// Opens the state (the recovery), twice, and checks the tree is `want` with `current`
/// recorded and nothing left behind.
fn recovered(f: &Fixture, want: &Tree, current: Option<u64>, what: &str) {
    assert!(f.has_journal(), "{what}: stopped with its journal");
    assert_eq!(f.open().unwrap(), current, "{what}: the generation");
    assert_eq!(
        f.open().unwrap(),
        current,
        "{what}: nothing left to recover"
    );
    assert_eq!(f.seen(), view(want), "{what}: the tree");
    assert_eq!(f.leftovers(), Vec::<String>::new(), "{what}: left behind");
}

#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_commit_stopped_before_its_commit_point_is_undone_on_the_next_open() {
    let _scenario = FailScenario::setup();
    for point in BEFORE_POINT {
        let f = at_old();
        stopped(&f, "commit", &format!("{point}=return"));
        recovered(&f, &old(), Some(1), point);
    }
}

#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_commit_stopped_after_its_commit_point_is_finished_on_the_next_open() {
    let _scenario = FailScenario::setup();
    for point in AFTER_POINT {
        let f = at_old();
        stopped(&f, "commit", &format!("{point}=return"));
        recovered(&f, &new(), Some(2), point);
    }
}

#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_recovery_stopped_halfway_is_finished_by_the_next_open() {
    let _scenario = FailScenario::setup();
    for (point, recovery, want, current) in [
        ("commit-mid-apply", "recover-redo", new(), Some(2)),
        ("commit-mid-stage", "recover-undo", old(), Some(1)),
    ] {
        let f = at_old();
        stopped(&f, "commit", &format!("{point}=return"));
        // The first step of the recovery passes, the second stops it.
        stopped(&f, "open", &format!("{recovery}=1*off->return"));
        recovered(&f, &want, current, &format!("{point}, then {recovery}"));
    }
}

/// A first commit stages each new tree whole and renames it into place: stopped
/// anywhere, the next open leaves the root empty again or finishes every file.
#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_first_commit_stopped_anywhere_leaves_nothing_or_every_file() {
    let _scenario = FailScenario::setup();
    for (point, done) in [
        ("commit-mid-stage", false),
        ("commit-before-point", false),
        ("commit-after-point", true),
        ("commit-mid-apply", true),
    ] {
        let f = Fixture::new();
        stopped(&f, "first", &format!("{point}=return"));
        let (want, current) = if done {
            (new(), Some(1))
        } else {
            (Tree::new(), None)
        };
        recovered(&f, &want, current, point);
    }
}
