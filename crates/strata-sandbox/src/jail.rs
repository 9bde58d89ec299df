//! Starts one program confined to the sandbox, so that nothing it does reaches the host
//! even as root and even when it tries (docs/sandbox.md, "Confinement").
//!
//! Three processes per program, all forks of the single-threaded init (so they may
//! allocate), only the last one exec'd:
//! - the *entry* (host root, the sandbox's PID namespace, in the run's cgroup as init is)
//!   joins the run's mount namespace, whose root is the merged tree (`pivot_root`, the old
//!   root detached: no `..` or `chroot` leads back; see [`MountNs`]), joins the
//!   sandbox's user namespace (uid and gid 0–4294967294 mapped to themselves: file owners
//!   work, while the kernel refuses device nodes, mounts and the host's sysctls to anyone
//!   whose namespace is not the host's), and makes a PID (and, in a plan, network)
//!   namespace owned by it;
//! - the *reaper* is PID 1 of that PID namespace: it catches the signals that ask an init
//!   to reboot, halt or power off (what `busybox reboot` sends), reaps orphans, and kills
//!   whatever the program left when it ends; when the program calls reboot(2) itself, the
//!   kernel kills the reaper with SIGHUP or SIGINT, which the entry sees;
//! - the *program*: its own session, stdio set, CAP_SYS_PTRACE out of its bounding set,
//!   `NO_NEW_PRIVS` and a seccomp filter (`seccomp`: kernel modules, kexec, keyrings,
//!   swap, bpf, mounts, new user namespaces…), then exec.
//!
//! The entry and the reaper report on a pipe whose write end no program holds (`Event`);
//! they are forks of init, which is not dumpable and whose memory belongs to the host's
//! user namespace, so a program cannot ptrace them or open their descriptors.

use std::ffi::{CStr, CString};
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicU64, Ordering};

use rustix::pipe::{PipeFlags, pipe_with};
use rustix::process::Pid;
use rustix::thread::{CapabilitySet, LinkNameSpaceType, UnshareFlags};
use seccompiler::BpfProgram;

use crate::sys;

/// The signals an init takes as a request to stop the machine: sysvinit's and busybox's
/// (SIGTERM reboot, SIGUSR1 halt, SIGUSR2 poweroff, SIGINT ctrl-alt-del: reboot) or
/// systemd's (SIGINT ctrl-alt-del, SIGRTMIN+3/+13 halt, +4/+14 poweroff, +5/+15 reboot;
/// its SIGTERM re-executes itself, no stop).
fn stop_signals(systemd: bool) -> Vec<(libc::c_int, &'static str)> {
    if systemd {
        let rt = libc::SIGRTMIN();
        vec![
            (libc::SIGINT, "reboot"),
            (rt + 3, "halt"),
            (rt + 4, "poweroff"),
            (rt + 5, "reboot"),
            (rt + 13, "halt"),
            (rt + 14, "poweroff"),
            (rt + 15, "reboot"),
        ]
    } else {
        vec![
            (libc::SIGTERM, "reboot"),
            (libc::SIGINT, "reboot"),
            (libc::SIGUSR1, "halt"),
            (libc::SIGUSR2, "poweroff"),
        ]
    }
}

/// Which stop signals the reaper received, one bit per signal number.
static STOPS: AtomicU64 = AtomicU64::new(0);

/// The sandbox's user namespace: root mapped to root.
pub struct UserNs(OwnedFd);

impl UserNs {
    /// Makes the namespace (a child unshares it and waits while the maps are written,
    /// then exits; the descriptor keeps the namespace). `proc` is a proc file system of
    /// the caller's PID namespace.
    pub fn create(proc: &std::path::Path) -> io::Result<UserNs> {
        held_child(
            || sys::unshare(UnshareFlags::NEWUSER).is_ok(),
            |pid| {
                for map in ["uid_map", "gid_map"] {
                    std::fs::write(proc.join(format!("{pid}/{map}")), "0 0 4294967295\n")
                        .map_err(|e| io::Error::other(format!("write {map}: {e}")))?;
                }
                let ns = std::fs::File::open(proc.join(format!("{pid}/ns/user")))?;
                Ok(UserNs(ns.into()))
            },
            "cannot create a user namespace",
        )
    }
}

/// Forks a child that runs `setup` (system calls only: the caller may have a second
/// thread), says whether it worked, and waits while `then` uses it (by its pid); then
/// lets it exit. What `then` returns is the result.
fn held_child<T>(
    setup: impl FnOnce() -> bool,
    then: impl FnOnce(i32) -> io::Result<T>,
    failed: &str,
) -> io::Result<T> {
    let (ready_r, ready_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (done_r, done_w) = pipe_with(PipeFlags::CLOEXEC)?;
    let (mut ready_r, mut ready_w) = (std::fs::File::from(ready_r), std::fs::File::from(ready_w));
    let mut done_r = std::fs::File::from(done_r);
    // SAFETY: the child only makes system calls and exits.
    let Some(pid) = (unsafe { sys::fork() })? else {
        drop(done_w);
        let ok = setup();
        let _ = ready_w.write_all(if ok { b"y" } else { b"n" });
        let mut buf = [0u8; 1];
        let _ = done_r.read(&mut buf);
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(0) };
    };
    drop(ready_w);
    drop(done_r);
    let result = (|| {
        let mut buf = [0u8; 1];
        ready_r.read_exact(&mut buf)?;
        if &buf != b"y" {
            return Err(io::Error::other(failed.to_string()));
        }
        then(pid.as_raw_nonzero().get())
    })();
    drop(done_w);
    sys::wait_quiet(pid);
    result
}

/// A mount namespace whose root is the merged tree (`pivot_root`, the old root detached),
/// made once per run and joined by every program: joining costs nothing, while making
/// and dropping one per program costs a copy of the mount table and an RCU grace period.
/// Programs cannot change it (it belongs to the host's user namespace).
pub struct MountNs(OwnedFd);

impl MountNs {
    /// Makes the namespace: a child takes a copy of init's, binds `cache` (nosuid, nodev,
    /// noexec) when given, pivots into `merged` and waits while its namespace is opened.
    pub fn create(
        proc: &std::path::Path,
        merged: &CStr,
        cache: Option<(&CStr, &CStr)>,
    ) -> io::Result<MountNs> {
        held_child(
            || {
                sys::unshare(UnshareFlags::NEWNS).is_ok()
                    && cache.is_none_or(|(c, at)| sys::bind_private(c, at).is_ok())
                    && sys::pivot_into(merged).is_ok()
            },
            |pid| {
                let ns = std::fs::File::open(proc.join(format!("{pid}/ns/mnt")))?;
                Ok(MountNs(ns.into()))
            },
            "cannot make the sandbox's mount namespace",
        )
    }
}

/// Where a program's standard streams go.
pub struct Stdio<'a> {
    /// Standard input; `None`: `/dev/null` inside.
    pub stdin: Option<BorrowedFd<'a>>,
    /// Standard output.
    pub stdout: BorrowedFd<'a>,
    /// Standard error.
    pub stderr: BorrowedFd<'a>,
}

/// One program to start, everything prepared before the fork.
pub struct Job<'a> {
    /// The executable and its arguments, as seen inside.
    pub argv: Vec<CString>,
    /// Its whole environment.
    pub env: Vec<CString>,
    /// Its standard streams.
    pub stdio: Stdio<'a>,
    /// A network namespace with only loopback.
    pub isolate_network: bool,
    /// A session of its own (not for an interactive shell, which keeps the terminal).
    pub session: bool,
    /// The mount namespace it joins (its root is the merged tree).
    pub mounts: &'a MountNs,
    /// The seccomp filters, applied in order.
    pub filters: &'a [BpfProgram],
    /// The target's init is systemd (which signals ask it to stop).
    pub systemd: bool,
}

/// What the entry and the reaper report about a program.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The program asked for a reboot, halt or power-off (`how` says in which way).
    Stop {
        /// `reboot`, `halt` or `poweroff`.
        what: String,
        /// `signal SIGTERM to init`, `reboot(2)`.
        how: String,
    },
    /// The program exited with this code.
    Exit(i32),
    /// A signal killed the program.
    Signal(i32),
    /// The program could not be started.
    Error(String),
}

impl Event {
    fn line(&self) -> String {
        match self {
            Event::Stop { what, how } => format!("stop {what} {how}\n"),
            Event::Exit(c) => format!("exit {c}\n"),
            Event::Signal(s) => format!("signal {s}\n"),
            Event::Error(e) => format!("error {}\n", e.replace('\n', " ")),
        }
    }

    /// Parses what the entry and reaper wrote (they are strata's own code: a line that
    /// does not parse is dropped).
    pub fn parse(bytes: &[u8]) -> Vec<Event> {
        String::from_utf8_lossy(bytes)
            .lines()
            .filter_map(|l| {
                let (kind, rest) = l.split_once(' ')?;
                Some(match kind {
                    "stop" => {
                        let (what, how) = rest.split_once(' ')?;
                        Event::Stop {
                            what: what.to_string(),
                            how: how.to_string(),
                        }
                    }
                    "exit" => Event::Exit(rest.parse().ok()?),
                    "signal" => Event::Signal(rest.parse().ok()?),
                    "error" => Event::Error(rest.to_string()),
                    _ => return None,
                })
            })
            .collect()
    }
}

/// A started program: the entry's pid (wait for it, kill it to end everything) and the
/// read end of its report pipe.
pub struct Started {
    /// The entry process.
    pub pid: Pid,
    /// Where the entry and the reaper report.
    pub events: OwnedFd,
}

/// Starts `job` confined in `ns`.
pub fn spawn(job: &Job<'_>, ns: &UserNs) -> io::Result<Started> {
    let (events_r, events_w) = pipe_with(PipeFlags::CLOEXEC)?;
    // SAFETY: init is single-threaded: the child may do anything; it never returns.
    let Some(pid) = (unsafe { sys::fork() })? else {
        drop(events_r);
        let code = match entry(job, ns, &events_w) {
            Ok(code) => code,
            Err(e) => {
                report(&events_w, &Event::Error(e.to_string()));
                127
            }
        };
        // SAFETY: ends the child without running the parent's destructors.
        unsafe { libc::_exit(code) };
    };
    drop(events_w);
    Ok(Started {
        pid,
        events: events_r,
    })
}

fn report(to: &OwnedFd, event: &Event) {
    let _ = sys::write_all_fd(to, event.line().as_bytes());
}

/// Joins the namespace `ns` (a `/proc/PID/ns/…` descriptor) of type `kind`.
fn move_into(ns: &OwnedFd, kind: LinkNameSpaceType) -> io::Result<()> {
    Ok(rustix::thread::move_into_link_name_space(
        ns.as_fd(),
        Some(kind),
    )?)
}

fn step<T>(what: &str, r: io::Result<T>) -> io::Result<T> {
    r.map_err(|e| io::Error::new(e.kind(), format!("{what}: {e}")))
}

/// The entry: namespaces, then the reaper; returns the exit code of the entry.
fn entry(job: &Job<'_>, ns: &UserNs, events: &OwnedFd) -> io::Result<i32> {
    step("parent-death signal", sys::die_with_parent())?;
    // Joining a mount namespace sets the root and the working directory to its root.
    step(
        "enter the tree",
        move_into(&job.mounts.0, LinkNameSpaceType::Mount),
    )?;
    step(
        "enter the tree",
        rustix::process::chdir(c"/").map_err(Into::into),
    )?;
    step("user namespace", move_into(&ns.0, LinkNameSpaceType::User))?;
    let mut flags = UnshareFlags::NEWPID;
    if job.isolate_network {
        flags |= UnshareFlags::NEWNET;
    }
    step("PID namespace", sys::unshare(flags))?;
    if job.isolate_network {
        step("loopback", sys::loopback_up())?;
    }
    // SAFETY: single-threaded, as above.
    let Some(reaper) = (unsafe { sys::fork() })? else {
        let code = match reap(job, events) {
            Ok(c) => c,
            Err(e) => {
                report(events, &Event::Error(e.to_string()));
                127
            }
        };
        // SAFETY: as above.
        unsafe { libc::_exit(code) };
    };
    // Only reboot(2) in the namespace kills its init with SIGHUP or SIGINT: the reaper has
    // no handler for SIGHUP, catches SIGINT, and nothing outside sends either.
    if let Some(signal) = sys::wait_status(reaper)?.terminating_signal() {
        match signal {
            libc::SIGHUP => report(
                events,
                &Event::Stop {
                    what: "reboot".into(),
                    how: "reboot(2)".into(),
                },
            ),
            libc::SIGINT => report(
                events,
                &Event::Stop {
                    what: "poweroff".into(),
                    how: "reboot(2)".into(),
                },
            ),
            _ => {}
        }
    }
    Ok(0)
}

extern "C" fn on_stop(signal: libc::c_int) {
    if (0..64).contains(&signal) {
        STOPS.fetch_or(1 << signal, Ordering::SeqCst);
    }
}

/// PID 1 of the program's PID namespace.
fn reap(job: &Job<'_>, events: &OwnedFd) -> io::Result<i32> {
    step("parent-death signal", sys::die_with_parent())?;
    let stops = stop_signals(job.systemd);
    for (signal, _) in &stops {
        step("signal handler", sys::catch(*signal, on_stop))?;
    }
    // SAFETY: single-threaded, as above.
    let Some(program) = (unsafe { sys::fork() })? else {
        let e = exec(job);
        report(events, &Event::Error(format!("{e}")));
        // SAFETY: as above.
        unsafe { libc::_exit(127) };
    };
    let mut ended = None;
    loop {
        let waited = rustix::process::wait(rustix::process::WaitOptions::empty());
        flush_stops(events, &stops);
        match waited {
            Ok(Some((pid, status))) if pid == program => {
                ended = Some(match status.exit_status() {
                    Some(code) => Event::Exit(code),
                    None => Event::Signal(status.terminating_signal().unwrap_or(0)),
                });
                // What the program left running does not outlive it.
                // libc: rustix has no kill(-1).
                // SAFETY: kill(-1) from a PID namespace's init reaches every other process
                // of the namespace and nothing outside it.
                unsafe { libc::kill(-1, libc::SIGKILL) };
            }
            Err(rustix::io::Errno::CHILD) => break,
            _ => {}
        }
    }
    flush_stops(events, &stops);
    if let Some(e) = ended {
        report(events, &e);
    }
    Ok(0)
}

fn flush_stops(events: &OwnedFd, stops: &[(libc::c_int, &str)]) {
    let bits = STOPS.swap(0, Ordering::SeqCst);
    for (signal, what) in stops {
        if bits & (1 << signal) != 0 {
            report(
                events,
                &Event::Stop {
                    what: what.to_string(),
                    how: format!("signal {} to init", sys::signal_name(*signal)),
                },
            );
        }
    }
}

/// The program's last steps before exec; returns only on failure.
fn exec(job: &Job<'_>) -> io::Error {
    let r = (|| -> io::Result<()> {
        step("signals", sys::default_signals())?;
        if job.session {
            step(
                "setsid",
                rustix::process::setsid().map(drop).map_err(Into::into),
            )?;
        }
        let null;
        let stdin = match job.stdio.stdin {
            Some(fd) => fd,
            None => {
                null = std::fs::File::open("/dev/null")?;
                null.as_fd()
            }
        };
        step(
            "standard streams",
            rustix::stdio::dup2_stdin(stdin)
                .and_then(|()| rustix::stdio::dup2_stdout(job.stdio.stdout))
                .and_then(|()| rustix::stdio::dup2_stderr(job.stdio.stderr))
                .map_err(Into::into),
        )?;
        step("close descriptors", sys::cloexec_from(3))?;
        // What the program runs (as root) never gets CAP_SYS_PTRACE.
        step(
            "capabilities",
            rustix::thread::remove_capability_from_bounding_set(CapabilitySet::SYS_PTRACE)
                .map_err(Into::into),
        )?;
        for f in job.filters {
            seccompiler::apply_filter(f).map_err(|e| io::Error::other(format!("seccomp: {e}")))?;
        }
        Ok(())
    })();
    if let Err(e) = r {
        return e;
    }
    let mut argv: Vec<*const libc::c_char> = job.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut env: Vec<*const libc::c_char> = job.env.iter().map(|a| a.as_ptr()).collect();
    env.push(std::ptr::null());
    // SAFETY: both arrays are NUL-terminated and point to live C strings.
    unsafe { libc::execve(argv[0], argv.as_ptr(), env.as_ptr()) };
    let e = io::Error::last_os_error();
    io::Error::new(
        e.kind(),
        format!("exec {}: {e}", job.argv[0].to_string_lossy()),
    )
}

/// How much a program may write to the call channel (and the helpers to the event pipe):
/// past it the rest is read and dropped, and the call channel's reader fails the run.
pub const CHANNEL_LIMIT: usize = 1 << 20;

/// Reads whatever is in a non-blocking descriptor now, keeping at most [`CHANNEL_LIMIT`]
/// bytes (and one more, to tell that the limit was passed).
pub fn drain(fd: &OwnedFd, into: &mut Vec<u8>) {
    let mut buf = [0u8; 8192];
    // Until it would block (or fails, or is at its end).
    while let Ok(n @ 1..) = rustix::io::read(fd, &mut buf) {
        let room = (CHANNEL_LIMIT + 1).saturating_sub(into.len());
        into.extend_from_slice(&buf[..n.min(room)]);
    }
}

/// Opens a FIFO for reading without ever blocking or seeing end-of-file (the descriptor
/// also counts as a writer).
pub fn open_fifo(path: &std::path::Path) -> io::Result<OwnedFd> {
    use std::os::unix::fs::OpenOptionsExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    Ok(f.into())
}
