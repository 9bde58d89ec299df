//! strata-state's integration tests: commits, their undo and their recovery, driven on a
//! temporary root, and stopped at each failpoint of the commit (`--features failpoints`)
//! as `kill -9` would stop them (in a child process) or as a failing disk or a panic
//! would (in this one). Each test checks what a user would: the files below `/srv` are
//! all old or all new, the generation recorded agrees, and nothing is left behind.
// The tests look at the tree as a user would, with the standard library.
#![allow(clippy::disallowed_methods)]

mod commit;
mod crash;
mod fixture;
