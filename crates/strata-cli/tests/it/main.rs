//! The `strata` binary as a user runs it, against scratch sites and target roots.
#![allow(clippy::disallowed_methods, clippy::print_stderr)]

mod apply;
mod bench;
mod confinement;
mod crash;
mod downloads;
mod errors;
mod escapes;
mod failpoints;
mod full_disk;
mod gc;
mod hardware;
mod import;
mod package;
mod paths;
mod plan;
mod private;
mod pull;
mod push;
mod receive;
mod resources;
mod sandbox;
mod sandbox_attacks;
mod sensitive;
mod submounts;
mod typechange;

use strata_test::TestEnv;

/// A scratch environment running the binary under test.
pub fn env() -> TestEnv {
    TestEnv::new(env!("CARGO_BIN_EXE_strata"))
}

/// The example site, copied.
pub fn example() -> TestEnv {
    env().with_example_site()
}

pub const WEB1: &str = "web1.example.com";
