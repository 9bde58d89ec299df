//! The run's limits: processes (`[sandbox] max_processes`) by the sandbox PID namespace's
//! own `pid_max` where the kernel has it per namespace (6.14 and later), else by a
//! cgroup; memory (`max_memory`) by a cgroup, on cgroup v2 or v1.
//!
//! RLIMIT_NPROC cannot limit processes: it never applies to uid 0, and the programs are
//! uid 0 (mapped to the host's) so that file owners come out right. A cgroup costs a
//! migration per run, which waits for an RCU grace period (7–20 ms on this kind of
//! machine): it is made only when it is needed.

use std::fs::File;
use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::helper_error::{HelperError, Result};

/// Whether this kernel keeps `pid_max` per PID namespace (Linux 6.14): a write from inside
/// the sandbox's namespace then limits that namespace alone. On an older kernel the same
/// write, by init as the host's root, would set the host's: never tried there.
pub fn pid_max_per_namespace() -> bool {
    let uname = rustix::system::uname();
    let release = uname.release().to_string_lossy();
    let mut parts = release.split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    let minor: u32 = parts.next().and_then(|p| p.parse().ok()).unwrap_or(0);
    (major, minor) >= (6, 14)
}

/// The lowest `pid_max` the kernel takes (its reserved PIDs and one).
pub const PID_MAX_MIN: u64 = 301;

/// Limits the processes (and threads) of the calling process's PID namespace to `max`,
/// by its `pid_max`; `false` when that cannot be done here (an old kernel, a limit below
/// what `pid_max` can express, a read-only `/proc/sys`), and a cgroup must do it.
pub fn limit_by_pid_max(max: u64) -> Result<bool> {
    if !pid_max_per_namespace() || max + 1 < PID_MAX_MIN {
        return Ok(false);
    }
    // In a container /proc/sys is often read-only: the limit then falls to a cgroup.
    let path = Path::new("/proc/sys/kernel/pid_max");
    if write(path, &(max + 1).to_string()).is_err() {
        return Ok(false);
    }
    let back = std::fs::read_to_string(path).map_err(HelperError::io("read", path))?;
    Ok(back.trim() == (max + 1).to_string())
}

/// What the programs of one run may use together.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Limits {
    /// Processes and threads at once (`pids.max`).
    pub max_processes: u64,
    /// Bytes of memory (`memory.max`); `None`: no limit.
    pub max_memory: Option<u64>,
    /// The site set a limit: a host where it cannot be applied is an error, not a
    /// silent run without it.
    pub required: bool,
    /// The size of the sandbox's own tmpfs (the overlays' upper dirs, logs): what scripts
    /// may write there together.
    #[serde(default)]
    pub scratch: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_processes: DEFAULT_MAX_PROCESSES,
            max_memory: None,
            required: false,
            scratch: None,
        }
    }
}

/// The default process limit: far above what package tools start (apt, dpkg and their
/// maintainer scripts stay under a hundred), far below what exhausts a host.
pub const DEFAULT_MAX_PROCESSES: u64 = 1024;

/// Where strata's cgroups live, under each hierarchy's root.
const PARENT: &str = "strata-sandbox";

const ROOT: &str = "/sys/fs/cgroup";

/// One run's cgroup directories (one for v2; one per controller for v1), removed when
/// dropped.
pub struct Cgroup {
    dirs: Vec<PathBuf>,
    procs: Vec<OwnedFd>,
    limits: Limits,
}

fn unified() -> bool {
    Path::new(ROOT).join("cgroup.controllers").exists()
}

/// The run's directories: `(dir, controller)` pairs; v2 has one directory for both.
fn dirs(name: &str) -> Vec<(PathBuf, &'static str)> {
    if unified() {
        vec![(Path::new(ROOT).join(PARENT).join(name), "")]
    } else {
        ["pids", "memory"]
            .into_iter()
            .map(|c| (Path::new(ROOT).join(c).join(PARENT).join(name), c))
            .collect()
    }
}

fn write(path: &Path, value: &str) -> Result<()> {
    File::options()
        .write(true)
        .open(path)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(HelperError::sys(format!(
            "write {value:?} to {}",
            path.display()
        )))
}

impl Cgroup {
    /// Makes the cgroup `name` with `limits`. `Ok(None)` when this host offers no
    /// writable cgroup hierarchy and the limits are only the defaults.
    pub fn create(name: &str, limits: &Limits) -> Result<Option<Cgroup>> {
        match Self::try_create(name, limits) {
            Ok(c) => Ok(Some(c)),
            Err(_) if !limits.required => Ok(None),
            Err(e) => Err(HelperError::inside(
                "the sandbox limits ([sandbox] max_processes / max_memory) cannot be applied",
            )(e)),
        }
    }

    fn try_create(name: &str, limits: &Limits) -> Result<Cgroup> {
        let mut cg = Cgroup {
            dirs: Vec::new(),
            procs: Vec::new(),
            limits: limits.clone(),
        };
        let v2 = unified();
        for (dir, controller) in dirs(name) {
            let parent = dir.parent().expect("under a parent");
            if !parent.is_dir() {
                std::fs::create_dir(parent).map_err(HelperError::io("create", parent))?;
            }
            if v2 {
                write(&parent.join("cgroup.subtree_control"), "+pids +memory")?;
            }
            std::fs::create_dir(&dir).map_err(HelperError::io("create", &dir))?;
            cg.dirs.push(dir.clone());
            if v2 || controller == "pids" {
                write(&dir.join("pids.max"), &limits.max_processes.to_string())?;
            }
            if let Some(bytes) = limits.max_memory {
                if v2 {
                    write(&dir.join("memory.max"), &bytes.to_string())?;
                    write(&dir.join("memory.swap.max"), "0").ok();
                } else if controller == "memory" {
                    write(&dir.join("memory.limit_in_bytes"), &bytes.to_string())?;
                }
            }
            let procs = dir.join("cgroup.procs");
            let f = File::options()
                .write(true)
                .open(&procs)
                .map_err(HelperError::io("open", &procs))?;
            cg.procs.push(f.into());
        }
        Ok(cg)
    }

    /// Moves the calling process into the cgroup from a thread of its own, returned to be
    /// waited for. Until then the process may only fork children that make system calls
    /// and exit (they stay outside the cgroup).
    pub fn join_in_background(&self) -> Result<std::thread::JoinHandle<Result<()>>> {
        let fds = self
            .procs
            .iter()
            .map(|f| f.try_clone().map_err(HelperError::sys("join the cgroup")))
            .collect::<Result<Vec<OwnedFd>>>()?;
        Ok(std::thread::spawn(move || {
            for procs in &fds {
                crate::sys::write_all_fd(procs, b"0")
                    .map_err(HelperError::sys("join the cgroup"))?;
            }
            Ok(())
        }))
    }

    /// Why the kernel refused or killed something, when a limit was reached.
    pub fn reached(&self) -> Option<String> {
        let count = |file: &str, key: &str| -> u64 {
            self.dirs
                .iter()
                .filter_map(|d| std::fs::read_to_string(d.join(file)).ok())
                .flat_map(|t| {
                    t.lines()
                        .filter_map(|l| l.strip_prefix(key)?.trim().parse::<u64>().ok())
                        .collect::<Vec<_>>()
                })
                .sum()
        };
        let oom = count("memory.events", "oom_kill ") + count("memory.oom_control", "oom_kill ");
        if oom > 0 {
            return Some(format!(
                "the sandbox's memory limit of {} was reached ([sandbox] max_memory)",
                self.limits.max_memory.map_or("?".into(), human)
            ));
        }
        if count("pids.events", "max ") > 0 {
            return Some(format!(
                "the sandbox's limit of {} processes was reached ([sandbox] max_processes)",
                self.limits.max_processes
            ));
        }
        None
    }
}

// No Drop: the helpers are in the cgroup until they exit; its directories go with the
// run's work dir (`WorkDir`'s drop calls `remove_stale`).

/// Removes the cgroups of a run that is gone (a cgroup with processes in it stays).
pub fn remove_stale(name: &str) {
    for (dir, _) in dirs(name) {
        let _ = std::fs::remove_dir(dir);
    }
}

/// `512 MiB`, `2 GiB`.
pub fn human(bytes: u64) -> String {
    const UNITS: &[&str] = &["bytes", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} bytes")
    } else {
        format!("{v:.1} {}", UNITS[unit]).replace(".0 ", " ")
    }
}
