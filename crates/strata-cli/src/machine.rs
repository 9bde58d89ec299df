//! What strata reads of the machine running it that changes from one run to the next: its
//! host name (the default node) and the time (a generation's). Each can be fixed by a
//! variable meant for strata's own tests only, so that their snapshots show exactly what a
//! user sees (docs/testing.md): they are read here, in the binary, and passed down.

use anyhow::Context;
use strata_engine::Clock;

/// Replaces this machine's host name (the default `--node`, and what decides whether the
/// node is this machine). For tests only.
pub const TEST_HOSTNAME: &str = "STRATA_TEST_HOSTNAME";

/// Replaces the time a generation is recorded at: an RFC 3339 time in UTC
/// (`2024-05-01T12:00:00Z`). For tests only.
pub const TEST_NOW: &str = "STRATA_TEST_NOW";

/// This machine's host name: `uname`'s, or `$STRATA_TEST_HOSTNAME`.
pub fn host_name() -> String {
    match std::env::var(TEST_HOSTNAME) {
        Ok(name) if !name.is_empty() => name,
        _ => rustix::system::uname()
            .nodename()
            .to_string_lossy()
            .into_owned(),
    }
}

/// The clock a generation's time is read from: the system's, or `$STRATA_TEST_NOW`.
pub fn clock() -> anyhow::Result<Clock> {
    match std::env::var(TEST_NOW) {
        Ok(time) if !time.is_empty() => humantime::parse_rfc3339(&time)
            .map(Clock::Fixed)
            .with_context(|| format!("{TEST_NOW}: `{time}` is not an RFC 3339 time in UTC")),
        _ => Ok(Clock::System),
    }
}
