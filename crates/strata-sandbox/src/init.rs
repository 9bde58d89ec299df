//! The init helper: PID 1 of the sandbox. Lays each module's files into the overlay, runs
//! its programs confined to it (see `jail`), keeps track of which module touched what,
//! collects the intercepted calls from the call channel, and finally turns the upper dir
//! into the result. (About 650 lines: the laying of files is in `lay`; what stays is one
//! process's state, `Ctx`, and the steps that change it.)

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::mount::MountFlags;
use strata_fs::{Root, UserDb};
use strata_types::{Snapshot, TargetPath};

use crate::cgroup::Cgroup;
use crate::helper_error::{HelperError, Result};
use crate::jail::{self, Event, Job, MountNs, UserNs};
use crate::observe::{self, Fingerprints};
use crate::outer::{dirs, own_dir};
use crate::{Failure, ModuleSpec, Observed, Program, Spec, Template, lay, shim, sys};
use strata_fs::{create_private, write_private};
use strata_types::{Deferred, ProgramRun};

/// How much of a program's output is kept with the run.
const OUTPUT_LIMIT: u64 = 1 << 20;

/// The largest file an executable template may print (it is read whole by init, which no
/// memory limit bounds).
const TEMPLATE_LIMIT: u64 = 64 << 20;

/// `PATH` inside the sandbox: the interception shims first.
const PATH: &str = "/run/strata/shims:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A bind remounted read-only, with nothing to execute, no devices, no set-user-id.
const READ_ONLY: MountFlags = MountFlags::BIND
    .union(MountFlags::RDONLY)
    .union(MountFlags::NOSUID)
    .union(MountFlags::NODEV)
    .union(MountFlags::NOEXEC);

/// The parts of `/proc` a root in another user namespace could still write to reach the
/// host (sysctls, the magic SysRq key, interrupt affinities): read-only inside. Mounts
/// made here are locked for the programs, which cannot make them writable again.
const PROC_READ_ONLY: &[&str] = &["sys", "sysrq-trigger", "irq", "bus", "fs"];

struct Ctx<'a> {
    spec: &'a Spec,
    /// The values of secrets that modules' scripts read (from stdin: never a file).
    secrets: crate::SecretVars,
    /// The run's mount namespace, and the one with the download cache bound in (made when
    /// a package program first needs it).
    mounts: MountNs,
    mounts_cache: Option<MountNs>,
    merged_c: CString,
    proc: PathBuf,
    tree: Root,
    observed: Observed,
    counter: usize,
    userns: UserNs,
    filters: Vec<seccompiler::BpfProgram>,
    cgroup: Option<Cgroup>,
    /// The process limit is the PID namespace's `pid_max`.
    by_pid_max: bool,
    /// Init joining the cgroup, until its first program.
    joining: Option<std::thread::JoinHandle<Result<()>>>,
    calls: OwnedFd,
    intercepted: Vec<String>,
    /// strata's download cache and where it is bound for package programs.
    cache: Option<(CString, CString)>,
    /// The target's `/sbin/init` is systemd.
    systemd: bool,
}

/// Init's whole life, in order: limits, `/proc`, namespaces, the modules, the
/// observation, the result. (Long: each step needs what the one before it made, and
/// reads best as one sequence.)
pub fn main(spec: &Spec) -> Result<i32> {
    // First, so that the caller's pipe is drained whatever happens next.
    let secrets = crate::read_secrets(spec)?;
    // Programs must not reach the host through /proc/1/root: init is not dumpable, and
    // they run in another user namespace without CAP_SYS_PTRACE (see `jail`).
    rustix::process::set_dumpable_behavior(rustix::process::DumpableBehavior::NotDumpable)
        .map_err(HelperError::sys("prctl"))?;
    // Moving a process into a cgroup waits for an RCU grace period (milliseconds): init
    // moves itself once, on a second thread while it sets up and lays the first files,
    // and waits for it before its first program, which is then born in the cgroup.
    let by_pid_max = crate::cgroup::limit_by_pid_max(spec.limits.max_processes)?;
    let cgroup = match spec.limits.max_memory.is_some() || !by_pid_max {
        true => Cgroup::create(&crate::outer::run_name(spec), &spec.limits)?,
        false => None,
    };
    let joining = match &cgroup {
        Some(c) => Some(c.join_in_background()?),
        None => None,
    };
    let d = dirs(spec);
    let proc = d.merged.join("proc");
    mount_proc(spec, &proc)?;
    let tree = Root::open(&d.merged)?;
    let out = spec.work.join("out");
    let userns = UserNs::create(&proc).map_err(HelperError::sys("user namespace"))?;
    // Read-only once the maps are written: nothing in /proc can be changed from inside,
    // not even the permissions of its kernel-wide entries.
    rustix::mount::mount_remount(&proc, READ_ONLY, "")
        .map_err(HelperError::sys("make /proc read-only"))?;
    let systemd = TargetPath::parse("/sbin/init")
        .ok()
        .and_then(|p| tree.resolve(&p).ok().flatten())
        .is_some_and(|p| p.as_str().contains("systemd"));
    let cstr = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).map_err(|e| e.to_string());
    let cache = match &spec.cache {
        Some(c) => Some((cstr(c)?, cstr(&d.merged.join(&crate::CACHE[1..]))?)),
        None => None,
    };
    let mut cx = Ctx {
        spec,
        secrets,
        mounts: MountNs::create(&proc, &cstr(&d.merged)?, None)
            .map_err(HelperError::sys("mount namespace"))?,
        mounts_cache: None,
        merged_c: cstr(&d.merged)?,
        proc: proc.clone(),
        tree,
        observed: Observed::default(),
        counter: 0,
        userns,
        filters: crate::seccomp::filters()?,
        cgroup,
        by_pid_max,
        joining,
        calls: jail::open_fifo(&own_dir(spec).join("calls"))
            .map_err(HelperError::sys("open the call channel"))?,
        intercepted: crate::INTERCEPTED
            .iter()
            .map(|s| s.to_string())
            .chain(spec.intercept.iter().cloned())
            .collect(),
        cache,
        systemd,
    };
    let lower = Root::open(&spec.root)?;
    let upper = crate::outer::layers(spec)?;
    let mut prints = Fingerprints::default();
    let mut owner: BTreeMap<TargetPath, Option<String>> = BTreeMap::new();

    lay::lay_all(&cx.tree, &spec.pre)?;
    prints.update(&upper, None, &mut owner);
    for m in &spec.modules {
        let ok = cx.module(m)?;
        if !m.is_empty() {
            prints.update(&upper, Some(&m.id), &mut owner);
        }
        if !ok {
            break;
        }
    }
    if spec.shell && cx.observed.failure.is_none() {
        cx.shell()?;
        prints.update(&upper, Some("shell"), &mut owner);
    }
    if cx.observed.failure.is_none() {
        let ignore = observe::ignore_set(&spec.ignore)?;
        let shimmed = crate::outer::shimmed(spec);
        let max_file = spec
            .limits
            .max_memory
            .or(spec.limits.scratch)
            .unwrap_or(u64::MAX);
        cx.observed.changed =
            observe::changes(&upper, &lower, &ignore, &owner, &out, &shimmed, max_file)?;
        cx.observed.watched = observe::watched(&spec.watch, &upper, &cx.tree, &out)?;
        cx.observed.touched = spec
            .watch
            .iter()
            .filter_map(|p| Some((p.clone(), owner.get(p)?.clone()?)))
            .collect();
    }
    let result = spec.work.join("result.json");
    let json = serde_json::to_vec(&cx.observed).map_err(|source| HelperError::Json {
        path: result.clone(),
        source,
    })?;
    write_private(&result, &json)?;
    Ok(0)
}

impl Ctx<'_> {
    /// One module: its packages, groups and users, its files, lines and services, then its
    /// executable templates and scripts. `false` when a step failed.
    fn module(&mut self, m: &ModuleSpec) -> Result<bool> {
        let timeout = Duration::from_millis(m.timeout_ms);
        for p in &m.before {
            if !self.program(m, p, timeout, None)? {
                return Ok(false);
            }
        }
        let users = (m.lay.iter().any(|l| l.names.is_some())
            || m.templates.iter().any(|t| t.names.is_some()))
        .then(|| UserDb::load(&self.tree))
        .transpose()?;
        let resolve = |names: &Option<(String, String)>, ids: (u32, u32)| match (names, &users) {
            (Some((owner, group)), Some(db)) => match (db.uid(owner), db.gid(group)) {
                (Some(u), Some(g)) => Ok((u, g)),
                (None, _) => Err(format!(
                    "user `{owner}` does not exist (declare it in this module or one it requires)"
                )),
                (_, None) => Err(format!(
                    "group `{group}` does not exist (declare it in this module or one it requires)"
                )),
            },
            _ => Ok(ids),
        };
        for l in &m.lay {
            let mut l = l.clone();
            if let Some((uid, gid)) = l.state.ids_mut() {
                match resolve(&l.names, (*uid, *gid)) {
                    Ok(ids) => (*uid, *gid) = ids,
                    Err(e) => return Ok(self.fail(m, &format!("files ({})", l.path), e)),
                }
            }
            lay::lay(&self.tree, &l).map_err(lay::laying(&l))?;
        }
        for l in &m.lines {
            if let Err(e) = lay::line(&self.tree, l) {
                return Ok(self.fail(m, &l.name, e.text()));
            }
        }
        for p in &m.after {
            if !self.program(m, p, timeout, None)? {
                return Ok(false);
            }
        }
        let mut templates = Vec::new();
        for t in &m.templates {
            let mut t = t.clone();
            match resolve(&t.names, (t.meta.uid, t.meta.gid)) {
                Ok((u, g)) => (t.meta.uid, t.meta.gid) = (u, g),
                Err(e) => return Ok(self.fail(m, &t.program.name, e)),
            }
            templates.push(t);
        }
        self.module_programs(m, &templates, timeout)
    }

    /// Records that a step of strata's own failed; returns `false`.
    fn fail(&mut self, m: &ModuleSpec, step: &str, why: String) -> bool {
        self.observed.failure = Some(Failure {
            module: m.id.clone(),
            program: step.to_string(),
            status: why,
            stderr_tail: Vec::new(),
        });
        false
    }

    /// Runs a module's executable templates, then its scripts. `false` when one failed.
    fn module_programs(
        &mut self,
        m: &ModuleSpec,
        templates: &[Template],
        timeout: Duration,
    ) -> Result<bool> {
        for tpl in templates {
            let content = self.counter_path("content");
            let ok = self.program(m, &tpl.program, timeout, Some(&content))?;
            if !ok {
                return Ok(false);
            }
            let dir = tpl.target.parent().unwrap_or_else(TargetPath::root);
            self.tree.create_dirs(&dir)?;
            let size = std::fs::metadata(&content).map_or(0, |m| m.len());
            if size > TEMPLATE_LIMIT {
                return Ok(self.fail(
                    m,
                    &tpl.program.name,
                    format!(
                        "printed {} for {}, more than the {} an executable template may make",
                        crate::cgroup::human(size),
                        tpl.target,
                        crate::cgroup::human(TEMPLATE_LIMIT)
                    ),
                ));
            }
            let bytes = std::fs::read(&content).map_err(HelperError::io("read", &content))?;
            if let Snapshot::Dir { .. } = self.tree.inspect(&tpl.target)? {
                return Err(format!(
                    "{} is a directory; the executable template {} cannot replace it",
                    tpl.target, tpl.program.name
                )
                .into());
            }
            self.tree
                .write_file_in(&dir, tpl.target.file_name(), &bytes, tpl.meta)
                .map_err(|e| HelperError::inside(format!("write {}", tpl.target))(e.into()))?;
        }
        for s in &m.scripts {
            if !self.program(m, s, timeout, None)? {
                return Ok(false);
            }
        }
        Ok(true)
    }

    fn counter_path(&mut self, what: &str) -> PathBuf {
        self.counter += 1;
        logs_dir(self.spec).join(format!("{}.{what}", self.counter))
    }

    /// Runs one program confined to the merged tree. For a template, its standard output
    /// goes to `content`. `false` when it failed. (Long: why a program failed is read
    /// from its end, its output, its calls and the limits together.)
    fn program(
        &mut self,
        m: &ModuleSpec,
        p: &Program,
        timeout: Duration,
        content: Option<&Path>,
    ) -> Result<bool> {
        let stdout_path = match content {
            Some(c) => c.to_path_buf(),
            None => self.counter_path("out"),
        };
        let stderr_path = self.counter_path("err");
        let inside = format!("/run/strata/programs/{}", self.counter);
        let host_copy = own_dir(self.spec).join(&inside["/run/strata/".len()..]);
        std::fs::copy(&p.path, &host_copy).map_err(HelperError::io("copy", &p.path))?;
        std::fs::set_permissions(&host_copy, std::fs::Permissions::from_mode(0o755))
            .map_err(HelperError::io("chmod", &host_copy))?;
        let mut head = [0u8; 2];
        let shebang = File::open(&host_copy)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
            .is_ok()
            && &head == b"#!";
        let mut argv = vec![inside];
        if !shebang {
            argv.insert(0, "/bin/sh".into());
        }
        let mut extra = vec![
            ("STRATA_MODULE", m.id.as_str()),
            ("STRATA_SCRIPT", p.name.as_str()),
            ("STRATA_ROOT", "/"),
            ("STRATA_NOOP", if self.spec.noop { "1" } else { "0" }),
        ];
        // Secrets only for the module's own scripts, those it asked for.
        if m.scripts.iter().any(|s| std::ptr::eq(s, p)) {
            for var in &m.secrets {
                if let Some(value) = self.secrets.0.get(var) {
                    extra.push((var.as_str(), value.as_str()));
                }
            }
        }
        let env = self.env(&extra);
        let stdout = create_private(&stdout_path)?;
        let stderr = create_private(&stderr_path)?;
        let isolate = !(self.spec.network || m.network || p.network);
        // Only strata's own package programs get the download cache.
        let cache = p.network;
        let run = self.run(
            cache,
            argv,
            env,
            jail::Stdio {
                stdin: None,
                stdout: stdout.as_fd(),
                stderr: stderr.as_fd(),
            },
            isolate,
            timeout,
        )?;
        drop((stdout, stderr));
        let read = |path: &Path| -> String {
            let mut bytes = Vec::new();
            let _ = File::open(path).and_then(|f| {
                std::io::Read::read_to_end(&mut std::io::Read::take(f, OUTPUT_LIMIT), &mut bytes)
            });
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let stderr = read(&stderr_path);
        let stdout = if content.is_some() {
            String::new()
        } else {
            read(&stdout_path)
        };
        let mut failed = self.collect_calls(&m.id, &p.name, &run);
        let mut metrics = run.metrics;
        metrics.exit = Some(match run.end {
            End::Exit(c) => c,
            End::Signal(s) => 128 + s,
            End::Timeout | End::Error(_) => 128 + libc::SIGKILL,
            End::Stopped => 0,
        });
        if failed.is_none() {
            failed = match run.end {
                End::Exit(0) | End::Stopped => None,
                End::Exit(c) => Some(format!("exit status {c}")),
                End::Signal(s) => Some(format!("killed by signal {s}")),
                End::Timeout => Some(format!(
                    "timed out after {}",
                    humantime::format_duration(timeout)
                )),
                End::Error(e) => Some(format!("could not start: {e}")),
            }
            .map(|why| {
                // A fork refused by the namespace's pid_max says only EAGAIN: a failure whose
                // last words are about forking is put down to the limit.
                let forked = self.by_pid_max && {
                    let e = stderr.to_lowercase();
                    e.contains("fork") || e.contains("resource temporarily unavailable")
                };
                match self.cgroup.as_ref().and_then(Cgroup::reached) {
                    Some(limit) => format!("{why}: {limit}"),
                    None if forked => format!(
                        "{why}: the sandbox's limit of {} processes was reached ([sandbox] max_processes)",
                        self.spec.limits.max_processes
                    ),
                    None => why,
                }
            });
        }
        if let Some(status) = failed {
            let lines: Vec<String> = stderr.lines().map(str::to_string).collect();
            let tail = lines[lines.len().saturating_sub(10)..].to_vec();
            self.observed.failure = Some(Failure {
                module: m.id.clone(),
                program: p.name.clone(),
                status,
                stderr_tail: tail,
            });
        }
        self.observed.runs.push(ProgramRun {
            module: m.id.clone(),
            program: p.name.clone(),
            metrics,
            stdout,
            stderr,
        });
        Ok(self.observed.failure.is_none())
    }

    /// Every program's environment: the run's variables and `extra`.
    fn env(&self, extra: &[(&str, &str)]) -> Vec<CString> {
        [
            ("PATH", PATH),
            ("HOME", "/root"),
            ("STRATA_PARAMS", "/run/strata/params.json"),
        ]
        .iter()
        .copied()
        .chain(extra.iter().copied())
        .chain(self.spec.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .filter_map(|(k, v)| CString::new(format!("{k}={v}")).ok())
        .collect()
    }

    /// Starts a program in the jail and waits for it, collecting its events and the calls
    /// it made. (Long: the events' order decides how the program ended.)
    #[allow(clippy::too_many_arguments)]
    fn run(
        &mut self,
        cache: bool,
        argv: Vec<String>,
        env: Vec<CString>,
        stdio: jail::Stdio<'_>,
        isolate_network: bool,
        timeout: Duration,
    ) -> Result<Run> {
        let argv = argv
            .into_iter()
            .map(|a| CString::new(a).map_err(|e| e.to_string()))
            .collect::<Result<Vec<_>, _>>()?;
        let session = stdio.stdin.is_none();
        if cache
            && self.mounts_cache.is_none()
            && let Some((c, at)) = &self.cache
        {
            self.mounts_cache = Some(
                MountNs::create(
                    &self.proc,
                    &self.merged_c,
                    Some((c.as_c_str(), at.as_c_str())),
                )
                .map_err(HelperError::sys("mount namespace"))?,
            );
        }
        let mounts = match (&self.mounts_cache, cache) {
            (Some(m), true) => m,
            _ => &self.mounts,
        };
        let job = Job {
            argv,
            env,
            stdio,
            isolate_network,
            session,
            mounts,
            filters: &self.filters,
            systemd: self.systemd,
        };
        if let Some(joining) = self.joining.take() {
            // Also makes init single-threaded again before it forks a program.
            joining
                .join()
                .map_err(|_| "join the cgroup: the thread panicked".to_string())??;
        }
        let started = jail::spawn(&job, &self.userns).map_err(HelperError::sys("start"))?;
        let mut events = Vec::new();
        let mut calls = Vec::new();
        let (timed_out, metrics) = sys::wait_child(
            started.pid,
            timeout,
            &mut [(&started.events, &mut events), (&self.calls, &mut calls)],
        )
        .map_err(HelperError::sys("wait"))?;
        // It may have changed the tree's directories behind `tree`'s back.
        self.tree.forget_dirs();
        let events = Event::parse(&events);
        let mut stops = Vec::new();
        let mut end = if timed_out { Some(End::Timeout) } else { None };
        for e in events {
            match e {
                Event::Stop { what, how } => stops.push((what, how)),
                Event::Exit(c) => {
                    end.get_or_insert(End::Exit(c));
                }
                Event::Signal(s) => {
                    end.get_or_insert(End::Signal(s));
                }
                Event::Error(e) => {
                    end.get_or_insert(End::Error(e));
                }
            }
        }
        // A program that asked the kernel itself to reboot ended there, as it would on the
        // machine: that is no failure, and the reboot is deferred like any other.
        let end = end.unwrap_or(if stops.iter().any(|(_, how)| how == "reboot(2)") {
            End::Stopped
        } else {
            End::Error("the sandbox's reaper ended without a status".into())
        });
        Ok(Run {
            end,
            metrics,
            stops,
            calls,
        })
    }

    /// Turns the calls recorded on the channel and the stop requests into deferred
    /// commands; a record that is not a call of an intercepted command is a failure.
    fn collect_calls(&mut self, module: &str, program: &str, run: &Run) -> Option<String> {
        if run.calls.len() > jail::CHANNEL_LIMIT {
            return Some(format!(
                "wrote more than {} to strata's call channel",
                crate::cgroup::human(jail::CHANNEL_LIMIT as u64)
            ));
        }
        let argvs = match shim::parse(&run.calls) {
            Ok(a) => a,
            Err(e) => return Some(format!("wrote to strata's call channel: {e}")),
        };
        for argv in &argvs {
            if !self.intercepted.iter().any(|n| Some(n) == argv.first()) {
                return Some(format!(
                    "wrote a call of `{}` to strata's call channel, which is not an intercepted command",
                    argv.first().map_or("", String::as_str)
                ));
            }
        }
        for argv in argvs {
            self.observed.calls.push(Deferred {
                module: module.to_string(),
                program: program.to_string(),
                argv,
            });
        }
        for (what, how) in &run.stops {
            self.observed.calls.push(Deferred {
                module: module.to_string(),
                program: format!("{program} ({how})"),
                argv: vec![what.clone()],
            });
        }
        None
    }

    /// An interactive shell in the sandbox, on the caller's terminal.
    fn shell(&mut self) -> Result<()> {
        let mut extra = vec![("PS1", "strata-sandbox# "), ("STRATA_NOOP", "1")];
        let term = self.spec.term.clone().unwrap_or_default();
        if !term.is_empty() {
            extra.push(("TERM", &term));
        }
        let env = self.env(&extra);
        let run = self.run(
            false,
            vec!["/bin/sh".into(), "-i".into()],
            env,
            jail::Stdio {
                stdin: Some(std::io::stdin().as_fd()),
                stdout: std::io::stdout().as_fd(),
                stderr: std::io::stderr().as_fd(),
            },
            !self.spec.network,
            Duration::from_secs(u64::MAX / 4),
        )?;
        match self.collect_calls("shell", "sh", &run) {
            Some(e) => Err(e.into()),
            None => Ok(()),
        }
    }
}

/// Mounts the sandbox's `/proc` with its writable parts read-only, and makes the
/// directories of the run's output.
fn mount_proc(spec: &Spec, proc: &Path) -> Result<()> {
    rustix::mount::mount(
        "proc",
        proc,
        "proc",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        None,
    )
    .map_err(HelperError::sys("mount /proc"))?;
    for part in PROC_READ_ONLY {
        let p = proc.join(part);
        if p.exists() {
            rustix::mount::mount_bind(&p, &p)
                .and_then(|()| rustix::mount::mount_remount(&p, READ_ONLY, ""))
                .map_err(HelperError::sys(format!("make /proc/{part} read-only")))?;
        }
    }
    // Logs live on the sandbox's tmpfs: what a program prints counts against its memory
    // limit, never against the host's disk.
    for dir in [&spec.work.join("out"), &logs_dir(spec)] {
        std::fs::create_dir_all(dir).map_err(HelperError::io("create", dir))?;
    }
    Ok(())
}

/// Where programs' output goes: the sandbox's own tmpfs.
fn logs_dir(spec: &Spec) -> PathBuf {
    spec.work.join("sb/logs")
}

/// How a program ended.
enum End {
    Exit(i32),
    Signal(i32),
    Timeout,
    /// It called reboot(2) (its PID namespace ended with it).
    Stopped,
    Error(String),
}

/// What one program's run gave.
struct Run {
    end: End,
    metrics: strata_types::StepMetrics,
    /// Reboot, halt and power-off requests: (what, how).
    stops: Vec<(String, String)>,
    /// The bytes written to the call channel meanwhile.
    calls: Vec<u8>,
}
