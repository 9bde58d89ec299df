//! The few system calls neither std nor rustix wraps the way the sandbox needs them:
//! `unshare` in a child before exec, `wait4` with the child's own resource usage, a poll
//! on a pidfd with a timeout, and bringing up loopback in a fresh network namespace.

use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::time::Duration;

use strata_types::StepMetrics;

/// Moves the calling process into new namespaces.
pub fn unshare(flags: libc::c_int) -> io::Result<()> {
    // SAFETY: unshare takes flags only; the sandbox processes are single-threaded.
    if unsafe { libc::unshare(flags) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to kill this process when its parent dies.
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_PDEATHSIG) with a signal number has no memory effects.
    if unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Makes this process non-dumpable: processes without CAP_SYS_PTRACE cannot open its
/// `/proc/PID/root`, `fd`, `mem`…
pub fn not_dumpable() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_DUMPABLE) with a flag has no memory effects.
    if unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0 as libc::c_ulong) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Removes CAP_SYS_PTRACE from the capability bounding set, so what this process runs
/// (as root) never gets it.
pub fn drop_ptrace() -> io::Result<()> {
    // SAFETY: prctl(PR_CAPBSET_DROP) with a capability number has no memory effects.
    if unsafe { libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_PTRACE) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Sends `signal` to a process group.
pub fn kill_group(pgid: i32, signal: libc::c_int) {
    // SAFETY: kill has no memory effects; an already-gone group is fine.
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Reaps every exited child without blocking (the sandbox's init adopts orphans).
pub fn reap_zombies() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only the status we pass.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
    }
}

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// It exited with this code.
    Code(i32),
    /// A signal killed it.
    Signal(i32),
    /// It ran longer than its timeout and was killed.
    Timeout,
}

/// Waits for `pid` at most `timeout` (then kills its process group), and returns how it
/// ended with the resources it used.
pub fn wait_child(pid: i32, timeout: Duration) -> io::Result<(Exit, StepMetrics)> {
    let pidfd: OwnedFd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or_else(|| io::Error::other("bad pid"))?,
        rustix::process::PidfdFlags::empty(),
    )?;
    let start = std::time::Instant::now();
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            kill_group(pid, libc::SIGKILL);
            timed_out = true;
            break;
        }
        let mut fds = [libc::pollfd {
            fd: pidfd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: poll reads and writes only the array we pass.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if n > 0 {
            break;
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        }
    }
    let mut status = 0;
    // SAFETY: all-zero is a valid rusage; wait4 writes only into what we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    loop {
        // SAFETY: as above.
        let r = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
        if r == pid {
            break;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let exit = if timed_out {
        Exit::Timeout
    } else if libc::WIFEXITED(status) {
        Exit::Code(libc::WEXITSTATUS(status))
    } else {
        Exit::Signal(libc::WTERMSIG(status))
    };
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    let metrics = StepMetrics {
        wall,
        user: secs(ru.ru_utime),
        sys: secs(ru.ru_stime),
        max_rss: ru.ru_maxrss as u64 * 1024,
        minor_faults: ru.ru_minflt as u64,
        major_faults: ru.ru_majflt as u64,
        read_bytes: ru.ru_inblock as u64 * 512,
        write_bytes: ru.ru_oublock as u64 * 512,
        exit: Some(match exit {
            Exit::Code(c) => c,
            Exit::Signal(s) => 128 + s,
            Exit::Timeout => 128 + libc::SIGKILL,
        }),
    };
    Ok((exit, metrics))
}

/// Brings the loopback interface up (a new network namespace starts with it down).
pub fn loopback_up() -> io::Result<()> {
    // SAFETY: a plain socket for the ioctl, closed below.
    let sock = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if sock < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: all-zero is a valid ifreq; the name fits.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: the ioctls read and write only the ifreq we pass.
    let r = unsafe {
        if libc::ioctl(sock, libc::SIOCGIFFLAGS, &mut req) < 0 {
            -1
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(sock, libc::SIOCSIFFLAGS, &req)
        }
    };
    let err = io::Error::last_os_error();
    // SAFETY: closing the socket we opened.
    unsafe { libc::close(sock) };
    if r < 0 { Err(err) } else { Ok(()) }
}

/// The effective user id.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}

/// `CAP_SYS_PTRACE` (linux/capability.h).
const CAP_SYS_PTRACE: libc::c_ulong = 19;
