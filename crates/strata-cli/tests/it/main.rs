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
mod secrets;
mod sensitive;
mod submounts;
mod typechange;

use strata_test::TestEnv;

/// What changes from one run to the next in strata's output, replaced for snapshots: the
/// time of day a generation was recorded (the engine reads the clock), what each step of
/// `strata report` measured, and process ids. Paths are already `[SITE]`, `[ROOT]` and
/// `[TMP]` (`strata_test::Run`), and node names come from `--node`, never from this
/// machine's host name.
pub fn filters() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
    s.add_filter(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "[TIME]");
    s.add_filter(
        r"(?m)^( *\S(?:.*?\S)?) +\d+\.\d\d m?s .*$",
        "$1  [measured]",
    );
    s.add_filter(r"\bpid \d+", "pid [PID]");
    s
}

/// `insta::assert_snapshot!` of what strata printed, with [`filters`].
#[macro_export]
macro_rules! assert_output {
    ($($arg:tt)*) => {
        $crate::filters().bind(|| insta::assert_snapshot!($($arg)*))
    };
}

/// A scratch environment running the binary under test.
pub fn env() -> TestEnv {
    TestEnv::new(env!("CARGO_BIN_EXE_strata"))
}

/// The example site, copied.
pub fn example() -> TestEnv {
    env().with_example_site()
}

pub const WEB1: &str = "web1.example.com";
