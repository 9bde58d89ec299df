//! The `strata` binary as a user runs it, against scratch sites and target roots.
// The tests set up their fixtures (and hold locks and descriptors, as an attacker or a
// second writer would) with std::fs directly, outside what strata-fs allows strata.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::print_stderr
)]

mod agent_install;
mod apply;
mod bench;
mod branches;
mod bucket_assign;
mod capture;
mod confinement;
mod crash;
mod dashboard;
mod dashboard_fleet;
mod dashboard_tls;
mod dashboard_view;
mod downloads;
mod drift;
mod errors;
mod escapes;
mod failpoints;
mod full_disk;
mod gc;
mod hardware;
mod hooks;
mod import;
mod netboot;
mod netprov;
mod package;
mod paths;
mod plan;
mod private;
mod provision;
mod provision_attacks;
mod pull;
mod push;
mod rate_limit;
mod receive;
mod replicas;
mod resources;
mod sandbox;
mod sandbox_attacks;
mod secrets;
mod secrets_keys;
mod secrets_pull;
mod secrets_rollback;
mod sensitive;
mod serve;
mod submounts;
mod typechange;

use strata_test::TestEnv;

/// What changes from one run to the next in strata's output, replaced for snapshots: what
/// each step of `strata report` measured (wall and CPU time, memory, faults, I/O: no clock
/// fixes those) and process ids. Paths are already `[SITE]`, `[ROOT]` and `[TMP]`
/// (`strata_test::Run`); the time a generation is recorded and the host name (the default
/// node) need no filter: every command runs with a fixed clock and host name
/// (`strata_test::NOW`, `strata_test::HOST_NAME`).
pub fn filters() -> insta::Settings {
    let mut s = insta::Settings::clone_current();
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
