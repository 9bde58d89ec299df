//! Commits in this process: one that goes through, one that fails past its commit point
//! (a failing disk, through a failpoint), one that a panic drops half done, one whose
//! target changed since the plan, and one whose undo is itself stopped.

use std::panic::{AssertUnwindSafe, catch_unwind};

use fail::FailScenario;
use strata_state::StateError;
use strata_types::TargetPath;

use crate::fixture::{Fixture, Tree, Want, new, old, view};

fn path(p: &str) -> TargetPath {
    TargetPath::parse(p).unwrap()
}

/// An error and its causes, as the CLI prints them.
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(&format!(": {c}"));
        cause = c.source();
    }
    out
}

/// A root where `old` is committed (generation 1).
fn at_old() -> Fixture {
    let f = Fixture::new();
    f.commit(&Tree::new(), &old()).expect("the first commit");
    assert_eq!(f.seen(), view(&old()));
    f
}

/// Checks that `f` is back where `at_old` left it, and that opening it again finds
/// nothing to recover.
fn assert_all_old(f: &Fixture, what: &str) {
    assert_eq!(f.seen(), view(&old()), "{what}: expected all old");
    assert_eq!(f.leftovers(), Vec::<String>::new(), "{what}: left behind");
    assert_eq!(f.open().unwrap(), Some(1), "{what}: the current generation");
}

// Every test holds a scenario: failpoints are process-wide, and one test's must not
// stop another's commit.

#[test]
fn a_commit_brings_every_path_to_its_new_state_and_records_the_generation() {
    let _scenario = FailScenario::setup();
    let f = at_old();
    let committed = f.commit(&old(), &new()).expect("the commit");
    assert_eq!(committed.generation.number, 2);
    assert_eq!(f.seen(), view(&new()));
    assert_eq!(f.leftovers(), Vec::<String>::new());
    assert_eq!(f.open().unwrap(), Some(2));
    // And back: the same commit machinery undoes a type change the other way.
    f.commit(&new(), &old()).expect("the commit back");
    assert_eq!(f.seen(), view(&old()));
    assert_eq!(f.open().unwrap(), Some(3));
}

#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_commit_failing_past_its_commit_point_is_undone_in_the_same_process() {
    let _scenario = FailScenario::setup();
    let f = at_old();
    // A write fails once the replaced /srv/lib, set aside, is half removed.
    fail::cfg("commit-mid-replace-fails", "1*return").unwrap();
    let err = f.commit(&old(), &new()).expect_err("the failpoint");
    assert!(chain(&err).ends_with(": failpoint"), "{}", chain(&err));
    assert!(
        !f.has_journal(),
        "undone at once, not left to the next command"
    );
    assert_all_old(&f, "failed past the commit point");
}

#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn a_commit_dropped_by_a_panic_is_undone_by_its_guard() {
    for point in [
        // The journal written, nothing staged.
        "commit-after-journal",
        // Half the paths staged, the generation file half written.
        "commit-mid-stage",
        // Past the commit point, half the paths in place.
        "commit-mid-apply",
        // The replaced /srv/lib set aside, half removed.
        "commit-mid-replace",
    ] {
        let _scenario = FailScenario::setup();
        let f = at_old();
        fail::cfg(point, "panic").unwrap();
        let dropped = catch_unwind(AssertUnwindSafe(|| f.commit(&old(), &new())));
        assert!(dropped.is_err(), "{point}: the commit should have panicked");
        fail::cfg(point, "off").unwrap();
        assert!(!f.has_journal(), "{point}: undone by the guard, not left");
        assert_all_old(&f, point);
    }
}

/// A file changed between the plan and the commit: nothing is applied, and nothing is
/// added to the store or to strata's own directories.
#[test]
fn a_commit_whose_target_changed_since_the_plan_changes_nothing() {
    let _scenario = FailScenario::setup();
    let f = at_old();
    // A file strata never stored, which the plan saw and is to remove; changed since.
    let mut saw = old();
    saw.insert(path("/srv/extra"), Want::File("what the plan saw\n".into()));
    std::fs::write(f.path().join("srv/extra"), "changed by hand\n").unwrap();
    let objects = f.store_files();
    let changed = f.seen();
    let err = f.commit(&saw, &new()).expect_err("a changed target");
    assert!(
        matches!(&err, StateError::Changed { path } if path.as_str() == "/srv/extra"),
        "{err}"
    );
    assert_eq!(f.seen(), changed);
    assert_eq!(f.store_files(), objects, "no object added");
    assert_eq!(f.leftovers(), Vec::<String>::new());
    assert_eq!(f.open().unwrap(), Some(1));
    // A first commit: not even strata's state directory is made.
    let f = Fixture::new();
    std::fs::create_dir_all(f.path().join("srv")).unwrap();
    std::fs::write(f.path().join("srv/data"), "someone else's\n").unwrap();
    let mut saw = Tree::new();
    saw.insert(path("/srv"), Want::Dir);
    saw.insert(path("/srv/data"), Want::File("what the plan saw\n".into()));
    let err = f.commit(&saw, &old()).expect_err("a changed target");
    assert!(matches!(err, StateError::Changed { .. }), "{err}");
    assert!(!f.path().join("var").exists(), "no state directory made");
}

/// The undo of a failed commit, itself stopped (a panic on its second step): the journal
/// stays, marked to be undone, and the next open finishes the undo.
#[test]
#[cfg_attr(not(feature = "failpoints"), ignore = "needs --features failpoints")]
fn an_undo_stopped_halfway_is_finished_by_the_next_open() {
    let _scenario = FailScenario::setup();
    let f = at_old();
    fail::cfg("commit-mid-replace-fails", "1*return").unwrap();
    fail::cfg("recover-undo", "1*off->panic").unwrap();
    let stopped = catch_unwind(AssertUnwindSafe(|| f.commit(&old(), &new())));
    assert!(stopped.is_err(), "the undo should have panicked");
    fail::cfg("recover-undo", "off").unwrap();
    assert!(f.has_journal(), "the journal stays for the next command");
    assert!(
        f.path().join("var/lib/strata/undo").exists(),
        "marked to be undone"
    );
    assert_eq!(f.open().unwrap(), Some(1), "the undo finished");
    assert_all_old(&f, "an undo finished by the next open");
}
