//! `peak CMD ARGS...`: runs CMD (its stdout to /dev/null, its stderr passed through) and
//! prints `SECONDS PEAK_RSS_BYTES EXIT_CODE` on its own stdout.
//!
//! Why a separate process: Linux counts into a child's `ru_maxrss` the resident size of
//! the memory it had before `exec`, which for a child of `fork` or `posix_spawn` is its
//! parent's. Measured from the benchmark harness (tens of MiB: it holds the workload), every
//! small program would show the harness's size. Spawned from this small program, a
//! command's peak is its own (or this program's ~2 MiB, whichever is larger).
#![allow(clippy::disallowed_methods, clippy::print_stdout, clippy::print_stderr)]

use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

// The child is reaped by wait4, which also gives its rusage; Child::wait would not.
#[allow(clippy::zombie_processes)]
fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(program) = args.next() else {
        eprintln!("usage: peak CMD ARGS...");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    let child = match Command::new(&program)
        .args(args)
        .stdout(Stdio::null())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            eprintln!("peak: {}: {e}", program.to_string_lossy());
            return ExitCode::from(127);
        }
    };
    let pid = child.id() as libc::pid_t;
    let mut status = 0;
    // SAFETY: an all-zero rusage is valid; wait4 fills it for our own child.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: waiting for our own child, with valid pointers.
    let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    assert_eq!(r, pid, "wait4");
    let secs = start.elapsed().as_secs_f64();
    let code = if libc::WIFEXITED(status) {
        libc::WEXITSTATUS(status)
    } else {
        -1
    };
    println!("{secs} {} {code}", ru.ru_maxrss as u64 * 1024);
    ExitCode::SUCCESS
}
