//! `peak [--stdout FILE] CMD ARGS...`: runs CMD (its stdout to /dev/null, or to FILE; its
//! stderr passed through) and prints `SECONDS PEAK_RSS_BYTES EXIT_CODE CPU_SECONDS` on its
//! own stdout. CPU is user + system time of CMD and of every descendant it waited for
//! (`wait4`'s rusage), e.g. the `ssh` processes of a push. A fifth field says how much of
//! it those descendants used (`cutime + cstime` of `/proc/PID/stat`, read while CMD is a
//! zombie not yet reaped; clock ticks, so to 10 ms).
//!
//! Why a separate process: Linux counts into a child's `ru_maxrss` the resident size of
//! the memory it had before `exec`, which for a child of `fork` or `posix_spawn` is its
//! parent's. Measured from the benchmark harness (tens of MiB: it holds the workload), every
//! small program would show the harness's size. Spawned from this small program, a
//! command's peak is its own (or this program's ~2 MiB, whichever is larger).
// A measuring program kept as small as it can be: std::fs directly, no strata crate.
#![allow(
    clippy::disallowed_methods,
    clippy::disallowed_types,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::process::{Command, ExitCode, Stdio};
use std::time::Instant;

// The child is reaped by wait4, which also gives its rusage; Child::wait would not.
#[allow(clippy::zombie_processes)]
fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let mut program = args.next();
    let mut stdout = Stdio::null();
    if program.as_deref() == Some("--stdout".as_ref()) {
        let Some(file) = args.next() else {
            eprintln!("usage: peak [--stdout FILE] CMD ARGS...");
            return ExitCode::from(2);
        };
        match std::fs::File::create(&file) {
            Ok(f) => stdout = Stdio::from(f),
            Err(e) => {
                eprintln!("peak: {}: {e}", file.to_string_lossy());
                return ExitCode::from(2);
            }
        }
        program = args.next();
    }
    let Some(program) = program else {
        eprintln!("usage: peak [--stdout FILE] CMD ARGS...");
        return ExitCode::from(2);
    };
    let start = Instant::now();
    let child = match Command::new(&program).args(args).stdout(stdout).spawn() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("peak: {}: {e}", program.to_string_lossy());
            return ExitCode::from(127);
        }
    };
    let pid = child.id() as libc::pid_t;
    // Exited but not reaped: its /proc entry still holds what its children used.
    // SAFETY: an all-zero siginfo_t is valid; waitid fills it for our own child.
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    // SAFETY: waiting (without reaping) for our own child, with a valid pointer.
    let r = unsafe {
        libc::waitid(
            libc::P_PID,
            pid as libc::id_t,
            &mut info,
            libc::WEXITED | libc::WNOWAIT,
        )
    };
    assert_eq!(r, 0, "waitid");
    let children_cpu = children_cpu(pid).unwrap_or(f64::NAN);
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
    let tv = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    let cpu = tv(ru.ru_utime) + tv(ru.ru_stime);
    println!(
        "{secs} {} {code} {cpu} {children_cpu}",
        ru.ru_maxrss as u64 * 1024
    );
    ExitCode::SUCCESS
}

/// Seconds of CPU (user + system) that the waited-for descendants of process `pid` used.
fn children_cpu(pid: libc::pid_t) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses: state is
    // field 3, cutime and cstime fields 16 and 17.
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(13)?.parse::<f64>().ok()? + f.get(14)?.parse::<f64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Some(ticks / hz)
}
