//! Measuring the steps of this process (wall time, CPU, faults, peak RSS, bytes read
//! and written), and lowering a helper thread's priority so that what it does in the
//! background yields to the thread a run waits for. What `strata apply` reports as its
//! steps' metrics comes from here.

use std::time::Instant;

use strata_types::{Step, StepMetrics};

/// A running measurement; [`Meter::finish`] turns it into a [`Step`].
#[derive(Debug)]
pub struct Meter {
    start: Instant,
    /// The whole process, or the calling thread only.
    who: libc::c_int,
    usage: libc::rusage,
    io: Option<(u64, u64)>,
}

/// Lowers the calling thread's priority by 10 (to at most nice 19): what it does in the
/// background yields the CPU to the thread the run waits for (on Linux, each thread has
/// its own nice value). Relative, so a strata started with `nice` is never raised.
pub fn background_thread() {
    // SAFETY: getpriority and setpriority take plain integers; `0` is the calling thread.
    unsafe {
        let now = libc::getpriority(libc::PRIO_PROCESS, 0);
        libc::setpriority(libc::PRIO_PROCESS, 0, (now + 10).min(19));
    }
}

fn usage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage only writes into the struct we pass; all-zero is a valid rusage.
    unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(who, &mut ru);
        ru
    }
}

fn secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

impl Meter {
    /// Starts measuring everything, I/O included (a read of `/proc/self/io`).
    pub fn start() -> Meter {
        Meter {
            start: Instant::now(),
            who: libc::RUSAGE_SELF,
            usage: usage(libc::RUSAGE_SELF),
            io: Some(self_io()),
        }
    }

    /// Starts measuring the calling thread without I/O, for many small in-memory steps
    /// (which may run side by side on several threads).
    pub fn light() -> Meter {
        Meter {
            start: Instant::now(),
            who: libc::RUSAGE_THREAD,
            usage: usage(libc::RUSAGE_THREAD),
            io: None,
        }
    }

    /// Ends the measurement.
    pub fn finish(self, name: impl Into<String>) -> Step {
        self.finish_with(name, Vec::new())
    }

    /// Ends the measurement of a step that has sub-steps.
    pub fn finish_with(self, name: impl Into<String>, steps: Vec<Step>) -> Step {
        let end = usage(self.who);
        let (read_bytes, write_bytes) = match self.io {
            Some((r0, w0)) => {
                let (r1, w1) = self_io();
                (r1.saturating_sub(r0), w1.saturating_sub(w0))
            }
            None => (0, 0),
        };
        let metrics = StepMetrics {
            wall: self.start.elapsed().as_secs_f64(),
            user: secs(end.ru_utime) - secs(self.usage.ru_utime),
            sys: secs(end.ru_stime) - secs(self.usage.ru_stime),
            max_rss: end.ru_maxrss as u64 * 1024,
            minor_faults: (end.ru_minflt - self.usage.ru_minflt) as u64,
            major_faults: (end.ru_majflt - self.usage.ru_majflt) as u64,
            read_bytes,
            write_bytes,
            exit: None,
        };
        Step {
            name: name.into(),
            metrics,
            steps,
        }
    }
}

/// Bytes this process has read and written so far (`/proc/self/io`: `rchar`, `wchar`),
/// or zeros when the kernel does not say.
// A kernel counter of this process, not a file of a target or of the site (which all go
// through strata-fs): read directly, and read as zero when it cannot be.
#[allow(clippy::disallowed_methods)]
fn self_io() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/self/io") else {
        return (0, 0);
    };
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name)?.trim().parse::<u64>().ok())
            .unwrap_or(0)
    };
    (field("rchar:"), field("wchar:"))
}

#[cfg(test)]
mod tests {
    fn nice() -> i32 {
        // SAFETY: getpriority takes plain integers; `0` is the calling thread.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    #[test]
    fn a_background_thread_yields_and_the_caller_does_not() {
        let before = nice();
        let theirs = std::thread::spawn(|| {
            super::background_thread();
            nice()
        })
        .join()
        .unwrap();
        assert_eq!(theirs, (before + 10).min(19));
        assert_eq!(nice(), before, "only the calling thread is lowered");
    }
}
