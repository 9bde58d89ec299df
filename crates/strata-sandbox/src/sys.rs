//! The system calls the sandbox's helpers make in sequences of their own (leaving the
//! parent's mount tree, waiting for a child with its resource usage and a timeout), and
//! the few that rustix does not wrap (`fork`, `close_range`, `wait4` with a `rusage`,
//! `sigaction`, the interface-flags ioctls): those stay on libc, each saying why. Everything here is
//! allocation-free where a forked child of a threaded process may call it.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::Duration;

use rustix::event::{PollFd, PollFlags, Timespec, poll};
use rustix::fs::{OFlags, fcntl_getfl, fcntl_setfl};
use rustix::io::Errno;
use rustix::mount::{MountFlags, UnmountFlags, mount_bind, mount_remount, unmount};
use rustix::process::{Pid, Signal, WaitOptions, WaitStatus};
use rustix::thread::UnshareFlags;
use strata_types::StepMetrics;

/// Moves the calling process into new namespaces.
pub fn unshare(flags: UnshareFlags) -> io::Result<()> {
    // rustix marks unshare unsafe for CLONE_FILES, which would split the descriptor table
    // under other threads: never asked for here.
    debug_assert!(!flags.contains(UnshareFlags::FILES));
    // SAFETY: without CLONE_FILES unshare changes no memory and no descriptor.
    Ok(unsafe { rustix::thread::unshare_unsafe(flags) }?)
}

/// Forks: the child's pid in the parent, `None` in the child.
///
/// # Safety
///
/// When the caller has other threads, the child may only make async-signal-safe calls
/// (system calls, no allocation) until it execs or exits.
pub unsafe fn fork() -> io::Result<Option<Pid>> {
    // libc: rustix's fork is in its runtime module, for programs without a C library.
    // SAFETY: the caller keeps to what the child may do.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        pid => Ok(Pid::from_raw(pid)),
    }
}

/// Asks the kernel to kill this process when its parent dies; fails when the parent is
/// already gone (it died before the request could take effect).
pub fn die_with_parent() -> io::Result<()> {
    let parent = rustix::process::getppid();
    rustix::process::set_parent_process_death_signal(Some(Signal::KILL))?;
    if rustix::process::getppid() != parent {
        // No allocation: this may run between fork and exec in a threaded process.
        return Err(Errno::SRCH.into());
    }
    Ok(())
}

/// Makes `new_root` (a mount point) the root of this process's mount namespace and
/// detaches the old root with everything mounted under it, so nothing leads back to it.
pub fn pivot_into(new_root: &CStr) -> io::Result<()> {
    rustix::process::chdir(new_root)?;
    // pivot_root(".", "."): the old root ends up mounted over the new one, at ".".
    rustix::process::pivot_root(c".", c".")?;
    unmount(c".", UnmountFlags::DETACH)?;
    Ok(rustix::process::chdir(c"/")?)
}

/// Marks every descriptor from `first` up close-on-exec: nothing the caller of strata left
/// open (a lock, a pipe, a directory) reaches a program. Allocation-free.
pub fn cloexec_from(first: libc::c_uint) -> io::Result<()> {
    // libc: rustix has no close_range.
    // SAFETY: close_range with a flag takes plain integers and closes nothing.
    let r = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            libc::c_uint::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Binds `src` on `target` with `nosuid,nodev,noexec` (both NUL-terminated host paths).
pub fn bind_private(src: &CStr, target: &CStr) -> io::Result<()> {
    mount_bind(src, target)?;
    let flags = MountFlags::BIND | MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    Ok(mount_remount(target, flags, c"")?)
}

/// Writes all of `bytes` to a descriptor.
pub fn write_all_fd(fd: impl AsFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(&fd, bytes) {
            Ok(n) => bytes = &bytes[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Waits for a child and returns how it ended.
pub fn wait_status(pid: Pid) -> io::Result<WaitStatus> {
    loop {
        match rustix::process::waitpid(Some(pid), WaitOptions::empty()) {
            Ok(Some((_, status))) => return Ok(status),
            // Only WNOHANG returns no status.
            Ok(None) | Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Waits for a child, ignoring how it ended.
pub fn wait_quiet(pid: Pid) {
    let _ = wait_status(pid);
}

/// Runs `handler` on `signal`; system calls it interrupts fail with EINTR (no restart),
/// so a waiting reaper sees it at once.
pub fn catch(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
    // libc: rustix offers no sigaction outside its unsafe runtime module.
    // SAFETY: all-zero is a valid sigaction; the handler only stores to an atomic.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = handler as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        check(libc::sigaction(signal, &sa, std::ptr::null_mut()))
    }
}

/// Puts every signal back to its default action and unblocks them all (before exec).
pub fn default_signals() -> io::Result<()> {
    // libc: rustix offers neither signal() nor sigprocmask outside its runtime module.
    // SAFETY: resets dispositions and the mask; no memory effects beyond the set we pass.
    unsafe {
        for s in 1..libc::SIGRTMIN() {
            if s != libc::SIGKILL && s != libc::SIGSTOP {
                libc::signal(s, libc::SIG_DFL);
            }
        }
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        check(libc::sigprocmask(
            libc::SIG_SETMASK,
            &set,
            std::ptr::null_mut(),
        ))
    }
}

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// `SIGTERM` for 15…
pub fn signal_name(signal: libc::c_int) -> &'static str {
    match signal {
        libc::SIGTERM => "SIGTERM",
        libc::SIGINT => "SIGINT",
        libc::SIGUSR1 => "SIGUSR1",
        libc::SIGUSR2 => "SIGUSR2",
        libc::SIGPWR => "SIGPWR",
        libc::SIGHUP => "SIGHUP",
        _ => "a signal",
    }
}

/// Waits for `pid` at most `timeout` (then kills it), draining each of `pipes` into its
/// buffer meanwhile so that no writer blocks, and returns whether it timed out, with the
/// resources it and the descendants it reaped used.
pub fn wait_child(
    pid: Pid,
    timeout: Duration,
    pipes: &mut [(&OwnedFd, &mut Vec<u8>)],
) -> io::Result<(bool, StepMetrics)> {
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())?;
    for (fd, _) in pipes.iter() {
        fcntl_setfl(fd, fcntl_getfl(fd)? | OFlags::NONBLOCK)?;
    }
    let start = std::time::Instant::now();
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            let _ = rustix::process::kill_process(pid, Signal::KILL);
            timed_out = true;
            break;
        }
        let mut fds: Vec<PollFd<'_>> = std::iter::once(&pidfd)
            .chain(pipes.iter().map(|(fd, _)| *fd))
            .map(|fd| PollFd::new(fd, PollFlags::IN))
            .collect();
        let wait = Timespec::try_from(left.max(Duration::from_millis(1))).unwrap_or(Timespec {
            tv_sec: i64::MAX,
            tv_nsec: 0,
        });
        match poll(&mut fds, Some(&wait)) {
            Ok(_) => {}
            Err(Errno::INTR) => continue,
            Err(e) => return Err(e.into()),
        }
        let ended = !fds[0].revents().is_empty();
        drop(fds);
        for (fd, buf) in pipes.iter_mut() {
            crate::jail::drain(fd, buf);
        }
        if ended {
            break;
        }
    }
    let ru = wait_usage(pid)?;
    for (fd, buf) in pipes.iter_mut() {
        crate::jail::drain(fd, buf);
    }
    let secs = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    let metrics = StepMetrics {
        wall: start.elapsed().as_secs_f64(),
        user: secs(ru.ru_utime),
        sys: secs(ru.ru_stime),
        max_rss: ru.ru_maxrss as u64 * 1024,
        minor_faults: ru.ru_minflt as u64,
        major_faults: ru.ru_majflt as u64,
        read_bytes: ru.ru_inblock as u64 * 512,
        write_bytes: ru.ru_oublock as u64 * 512,
        exit: None,
    };
    Ok((timed_out, metrics))
}

/// Reaps `pid` and returns the resources it and the descendants it reaped used.
fn wait_usage(pid: Pid) -> io::Result<libc::rusage> {
    // libc: rustix has no wait4, the one wait that returns a child's rusage.
    // SAFETY: all-zero is a valid rusage; wait4 writes only into what we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let mut status = 0;
    loop {
        // SAFETY: as above.
        let r = unsafe { libc::wait4(pid.as_raw_nonzero().get(), &mut status, 0, &mut ru) };
        if r == pid.as_raw_nonzero().get() {
            return Ok(ru);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Brings the loopback interface up (a new network namespace starts with it down).
pub fn loopback_up() -> io::Result<()> {
    use rustix::net::{AddressFamily, SocketFlags, SocketType, socket_with};
    let sock = socket_with(
        AddressFamily::INET,
        SocketType::DGRAM,
        SocketFlags::CLOEXEC,
        None,
    )?;
    // libc: rustix has no call for an interface's flags (SIOCGIFFLAGS, SIOCSIFFLAGS).
    // SAFETY: all-zero is a valid ifreq; the name fits.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (i, b) in b"lo".iter().enumerate() {
        req.ifr_name[i] = *b as libc::c_char;
    }
    // SAFETY: the ioctls read and write only the ifreq we pass, on a socket we hold.
    let r = unsafe {
        if libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) < 0 {
            -1
        } else {
            req.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
            libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req)
        }
    };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// The effective user id.
pub fn euid() -> u32 {
    rustix::process::geteuid().as_raw()
}
