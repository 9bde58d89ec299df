//! The few system calls neither std nor rustix wraps the way the sandbox needs them:
//! `unshare`, `setns` and `pivot_root` in a forked child, `wait4` with the child's own
//! resource usage, a poll on a pidfd (and the call and event pipes) with a timeout,
//! signal handling for the reaper, and bringing up loopback in a fresh network namespace.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
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

fn check(r: libc::c_int) -> io::Result<()> {
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks the kernel to kill this process when its parent dies; fails when the parent is
/// already gone (it died before the request could take effect).
pub fn die_with_parent() -> io::Result<()> {
    // SAFETY: getppid and prctl(PR_SET_PDEATHSIG) have no memory effects.
    let parent = unsafe { libc::getppid() };
    check(unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong) })?;
    // SAFETY: as above.
    if unsafe { libc::getppid() } != parent {
        // No allocation: this may run between fork and exec in a threaded process.
        return Err(io::Error::from_raw_os_error(libc::ESRCH));
    }
    Ok(())
}

/// Joins the namespace `fd` refers to.
pub fn setns(fd: RawFd, kind: libc::c_int) -> io::Result<()> {
    // SAFETY: setns takes a descriptor and flags only.
    check(unsafe { libc::setns(fd, kind) })
}

/// Makes `new_root` (a mount point) the root of this process's mount namespace and
/// detaches the old root with everything mounted under it, so nothing leads back to it.
pub fn pivot_into(new_root: &CStr) -> io::Result<()> {
    // SAFETY: plain system calls on NUL-terminated strings that outlive them.
    unsafe {
        check(libc::chdir(new_root.as_ptr()))?;
        // pivot_root(".", "."): the old root ends up mounted over the new one, at ".".
        check(libc::syscall(libc::SYS_pivot_root, c".".as_ptr(), c".".as_ptr()) as libc::c_int)?;
        check(libc::umount2(c".".as_ptr(), libc::MNT_DETACH))?;
        check(libc::chdir(c"/".as_ptr()))
    }
}

/// Marks every descriptor from `first` up close-on-exec: nothing the caller of strata left
/// open (a lock, a pipe, a directory) reaches a program. Allocation-free.
pub fn cloexec_from(first: libc::c_uint) -> io::Result<()> {
    // SAFETY: close_range with a flag takes plain integers.
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
    let flags = libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
    // SAFETY: mount with NUL-terminated strings that outlive the calls.
    unsafe {
        check(libc::mount(
            src.as_ptr(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND,
            std::ptr::null(),
        ))?;
        check(libc::mount(
            std::ptr::null(),
            target.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REMOUNT | flags,
            std::ptr::null(),
        ))
    }
}

/// `chdir("/")`, allocation-free.
pub fn chdir_root() -> io::Result<()> {
    // SAFETY: chdir with a static NUL-terminated string.
    check(unsafe { libc::chdir(c"/".as_ptr()) })
}

/// A pipe, both ends close-on-exec.
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we pass.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) })?;
    // SAFETY: both are fresh descriptors we now own.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// Writes all of `bytes` to a descriptor.
pub fn write_all_fd(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        // SAFETY: write reads only the slice we pass.
        let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        bytes = &bytes[n as usize..];
    }
    Ok(())
}

/// `dup2`.
pub fn dup2(from: RawFd, to: RawFd) -> io::Result<()> {
    // SAFETY: dup2 takes descriptors only.
    if unsafe { libc::dup2(from, to) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Waits for a child and returns its raw status.
pub fn wait_status(pid: i32) -> io::Result<libc::c_int> {
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes only the status we pass.
        if unsafe { libc::waitpid(pid, &mut status, 0) } == pid {
            return Ok(status);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Waits for a child, ignoring how it ended.
pub fn wait_quiet(pid: i32) {
    let _ = wait_status(pid);
}

/// Runs `handler` on `signal`; system calls it interrupts fail with EINTR (no restart),
/// so a waiting reaper sees it at once.
pub fn catch(signal: libc::c_int, handler: extern "C" fn(libc::c_int)) -> io::Result<()> {
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

/// Waits for `pid` at most `timeout` (then kills it), draining each of `pipes` (non-blocking
/// descriptors) into its buffer meanwhile so that no writer blocks, and returns whether it
/// timed out, with the resources it and the descendants it reaped used.
pub fn wait_child(
    pid: i32,
    timeout: Duration,
    pipes: &mut [(&OwnedFd, &mut Vec<u8>)],
) -> io::Result<(bool, StepMetrics)> {
    let pidfd: OwnedFd = rustix::process::pidfd_open(
        rustix::process::Pid::from_raw(pid).ok_or_else(|| io::Error::other("bad pid"))?,
        rustix::process::PidfdFlags::empty(),
    )?;
    for (fd, _) in pipes.iter() {
        // SAFETY: fcntl on a descriptor we hold.
        unsafe {
            let flags = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
            libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, flags | libc::O_NONBLOCK);
        }
    }
    let start = std::time::Instant::now();
    let mut timed_out = false;
    loop {
        let left = timeout.saturating_sub(start.elapsed());
        if left.is_zero() {
            // SAFETY: kill has no memory effects.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            timed_out = true;
            break;
        }
        let mut fds: Vec<libc::pollfd> = std::iter::once(pidfd.as_raw_fd())
            .chain(pipes.iter().map(|(fd, _)| fd.as_raw_fd()))
            .map(|fd| libc::pollfd {
                fd,
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        let ms = left.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: poll reads and writes only the array we pass.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, ms) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
            continue;
        }
        for (fd, buf) in pipes.iter_mut() {
            crate::jail::drain(fd, buf);
        }
        if fds[0].revents != 0 {
            break;
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
