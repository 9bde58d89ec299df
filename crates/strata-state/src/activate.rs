//! Commands deferred until after a commit (the intercepted calls of scripts). They are
//! part of the commit's journal, each with its time limit; before each one starts, its
//! number is recorded (and flushed) in `activations`, and once it ended, how it went, so
//! a commit interrupted after its commit point runs each command exactly once: the ones
//! that had not started run on recovery, the one that was running when the process died
//! is reported, never run a second time, and the ones that ended keep their result.
//!
//! Each command runs in a session (and process group) of its own; past its time limit the
//! whole group is killed. Its output is kept up to [`Activation::OUTPUT_LIMIT`], and
//! output still coming more than [`LINGER`] after it exited (a daemon it started that
//! kept the pipe open) is not waited for.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::fd::AsRawFd;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use strata_fs::Root;
use strata_types::{Activation, CommandStatus, Deferred};

use crate::StateError;
use crate::state::state_path;

/// How long a deferred command may run when nothing says otherwise (also for commands a
/// journal written by an older strata holds).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(600);

/// How long output is still read once the command itself exited.
pub const LINGER: Duration = Duration::from_secs(1);

/// A command to run after the commit, with its time limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scheduled {
    /// The call.
    #[serde(flatten)]
    pub call: Deferred,
    /// How long it may run before it is killed with its process group.
    #[serde(with = "millis", default = "default_timeout")]
    pub timeout: Duration,
}

impl Scheduled {
    /// `call` with the default time limit.
    pub fn new(call: Deferred) -> Scheduled {
        Scheduled {
            call,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

fn default_timeout() -> Duration {
    DEFAULT_TIMEOUT
}

/// A duration as whole milliseconds (`timeout_ms` would repeat the unit in every name).
mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_millis().try_into().unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

/// Runs the commands not started yet, in order, and says how each went.
pub(crate) fn run_pending(
    root: &Root,
    commands: &[Scheduled],
) -> Result<Vec<Activation>, StateError> {
    let path = state_path("activations");
    let mut progress = root
        .read(&path)?
        .map(|b| parse_progress(&b))
        .unwrap_or_default();
    let mut out = Vec::new();
    for (i, command) in commands.iter().enumerate() {
        match progress.get(&i) {
            Some(Some(done)) => {
                out.push(done.clone());
                continue;
            }
            Some(None) => {
                out.push(Activation {
                    command: command.call.clone(),
                    status: CommandStatus::Interrupted,
                    exit: None,
                    signal: None,
                    output: String::new(),
                    error: Some(
                        "was running when strata was interrupted; not run a second time".into(),
                    ),
                });
                continue;
            }
            None => {}
        }
        progress.insert(i, None);
        root.write_atomic(&path, &write_progress(&progress))?;
        crate::crashpoint!("activate-after-mark");
        let done = run(root.path(), command);
        // The command may have changed the target's directories behind the root's back.
        root.forget_dirs();
        progress.insert(i, Some(done.clone()));
        root.write_atomic(&path, &write_progress(&progress))?;
        out.push(done);
    }
    Ok(out)
}

/// The progress file: a line per started command, its number, then once it ended how it
/// went (JSON). Lines that do not parse are dropped: a command not known to have started
/// runs.
fn parse_progress(bytes: &[u8]) -> BTreeMap<usize, Option<Activation>> {
    String::from_utf8_lossy(bytes)
        .lines()
        .filter_map(|l| {
            let (n, done) = l.trim().split_once(' ').unwrap_or((l.trim(), ""));
            let n: usize = n.parse().ok()?;
            Some((n, serde_json::from_str(done).ok()))
        })
        .collect()
}

fn write_progress(progress: &BTreeMap<usize, Option<Activation>>) -> Vec<u8> {
    let mut out = String::new();
    for (n, done) in progress {
        out.push_str(&n.to_string());
        if let Some(a) = done.as_ref().and_then(|a| serde_json::to_string(a).ok()) {
            out.push(' ');
            out.push_str(&a);
        }
        out.push('\n');
    }
    out.into_bytes()
}

/// Runs one command on the target: chrooted into it unless it is this machine's `/`, in
/// a session of its own, for at most its time limit.
fn run(root: &Path, command: &Scheduled) -> Activation {
    let mut result = Activation {
        command: command.call.clone(),
        ..Activation::default()
    };
    let started = prepare(Some(root), &command.call.argv)
        .and_then(|(mut cmd, reader)| Ok((cmd.spawn().map_err(|e| e.to_string())?, reader)));
    let (mut child, reader) = match started {
        Ok(c) => c,
        Err(why) => {
            result.error = Some(format!("could not start: {why}"));
            return result;
        }
    };
    // The parent's copies of the pipe's write end went with the `Command`: only the
    // command and what it started hold it now.
    let watched = watch(&mut child, reader, command.timeout);
    ended(&mut result, watched, command.timeout);
    result
}

/// Runs a site's hook on this machine: not chrooted, in a session of its own, with
/// `env` added to a plain `PATH`, `input` on its standard input (what it does not read is
/// dropped), for at most `timeout`; `call` names it in the result.
pub fn run_hook(
    call: Deferred,
    program: &Path,
    env: &[(String, String)],
    input: &[u8],
    timeout: Duration,
) -> Activation {
    let mut result = Activation {
        command: call,
        ..Activation::default()
    };
    let argv = [program.display().to_string()];
    let started = prepare(None, &argv).and_then(|(mut cmd, reader)| {
        cmd.envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::piped());
        Ok((cmd.spawn().map_err(|e| e.to_string())?, reader))
    });
    let (mut child, reader) = match started {
        Ok(c) => c,
        Err(why) => {
            result.error = Some(format!("could not start: {why}"));
            return result;
        }
    };
    let watched = std::thread::scope(|s| {
        if let Some(mut stdin) = child.stdin.take() {
            s.spawn(move || {
                use std::io::Write;
                let _ = stdin.write_all(input);
            });
        }
        watch(&mut child, reader, timeout)
    });
    ended(&mut result, watched, timeout);
    result
}

/// Records in `result` how a command that started ended.
fn ended(
    result: &mut Activation,
    (status, output, timed_out): (std::io::Result<ExitStatus>, String, bool),
    timeout: Duration,
) {
    result.output = output;
    match status {
        Err(e) => {
            result.status = CommandStatus::Killed;
            result.error = Some(format!("cannot wait for it: {e}"));
        }
        Ok(s) if timed_out => {
            result.status = CommandStatus::TimedOut;
            result.signal = s.signal();
            result.error = Some(format!("timed out after {}", duration(timeout)));
        }
        Ok(s) => {
            result.exit = s.code();
            result.signal = s.signal();
            result.status = match s.code() {
                Some(0) => CommandStatus::Ok,
                Some(_) => CommandStatus::Failed,
                None => CommandStatus::Killed,
            };
        }
    }
}

/// The command `argv`, ready to start as [`run`] says, and the read end of the pipe its
/// output goes to; or why it cannot start.
fn prepare(root: Option<&Path>, argv: &[String]) -> Result<(Command, std::io::PipeReader), String> {
    let Some((program, args)) = argv.split_first() else {
        return Err("an empty command".into());
    };
    let (reader, writer) = std::io::pipe().map_err(|e| format!("cannot make a pipe: {e}"))?;
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdin(Stdio::null());
    let shared = writer
        .try_clone()
        .map_err(|e| format!("cannot share the pipe: {e}"))?;
    cmd.stdout(shared).stderr(writer);
    // Made before the fork: the child of a possibly multi-threaded process may not
    // allocate. No root: not chrooted (a hook).
    let root = match root.filter(|r| std::fs::canonicalize(r).map_or(true, |p| p != Path::new("/")))
    {
        Some(root) => Some(
            std::ffi::CString::new(root.as_os_str().as_encoded_bytes())
                .map_err(|_| "the root path holds a NUL byte".to_string())?,
        ),
        None => None,
    };
    // SAFETY: setsid, chroot and chdir are async-signal-safe; both strings exist already.
    unsafe {
        cmd.pre_exec(move || {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // Nothing strata's caller left open (a lock, a pipe) reaches the command.
            if libc::syscall(
                libc::SYS_close_range,
                3 as libc::c_uint,
                libc::c_uint::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if let Some(root) = &root
                && (libc::chroot(root.as_ptr()) != 0 || libc::chdir(c"/".as_ptr()) != 0)
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    Ok((cmd, reader))
}

/// Reads the command's output until it exited (and its output ended, or [`LINGER`]
/// passed), killing its process group once `timeout` passed. Returns how it ended, what
/// it printed, and whether it was killed for its time.
fn watch(
    child: &mut Child,
    mut reader: std::io::PipeReader,
    timeout: Duration,
) -> (std::io::Result<ExitStatus>, String, bool) {
    let start = Instant::now();
    let mut output = Capped::default();
    let mut ended: Option<(std::io::Result<ExitStatus>, Instant)> = None;
    let mut timed_out = false;
    let mut open = true;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let now = Instant::now();
        if ended.is_none() {
            match child.try_wait() {
                Ok(Some(s)) => ended = Some((Ok(s), now)),
                Ok(None) if now.duration_since(start) >= timeout => {
                    // The whole group (the command leads it, see `run`): what it started
                    // in the background too.
                    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
                        // SAFETY: a plain system call.
                        unsafe { libc::kill(-pid, libc::SIGKILL) };
                    }
                    timed_out = true;
                    ended = Some((child.wait(), now));
                }
                Ok(None) => {}
                Err(e) => ended = Some((Err(e), now)),
            }
        }
        let wait = match &ended {
            Some((_, at)) if !open || now.duration_since(*at) >= LINGER => break,
            Some((_, at)) => LINGER.saturating_sub(now.duration_since(*at)),
            None => timeout.saturating_sub(now.duration_since(start)),
        }
        .min(Duration::from_millis(if open { 100 } else { 10 }));
        if !open {
            std::thread::sleep(wait);
            continue;
        }
        let mut fds = [libc::pollfd {
            fd: reader.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        }];
        let ms = wait.as_millis().clamp(1, 100) as libc::c_int;
        // SAFETY: one valid pollfd, for the length given.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), 1, ms) };
        if ready > 0 {
            match reader.read(&mut buf) {
                Ok(0) => open = false,
                Ok(n) => output.push(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => open = false,
            }
        }
    }
    let (status, _) = ended.expect("the loop ends once the command ended");
    (status, output.into_text(), timed_out)
}

/// Output kept up to [`Activation::OUTPUT_LIMIT`]: the first half, and the last half in a
/// ring, with the count of what fell between.
#[derive(Default)]
struct Capped {
    head: Vec<u8>,
    tail: std::collections::VecDeque<u8>,
    dropped: u64,
}

impl Capped {
    const HALF: usize = Activation::OUTPUT_LIMIT / 2;

    fn push(&mut self, mut bytes: &[u8]) {
        let room = Self::HALF - self.head.len();
        let (first, rest) = bytes.split_at(room.min(bytes.len()));
        self.head.extend_from_slice(first);
        bytes = rest;
        if bytes.len() >= Self::HALF {
            self.dropped += (self.tail.len() + bytes.len() - Self::HALF) as u64;
            self.tail.clear();
            bytes = &bytes[bytes.len() - Self::HALF..];
        }
        let over = (self.tail.len() + bytes.len()).saturating_sub(Self::HALF);
        self.tail.drain(..over);
        self.dropped += over as u64;
        self.tail.extend(bytes);
    }

    fn into_text(self) -> String {
        let mut text = String::from_utf8_lossy(&self.head).into_owned();
        if self.dropped > 0 {
            if !text.ends_with('\n') {
                text.push('\n');
            }
            text.push_str(&format!(
                "[strata: {} bytes of output left out here]\n",
                self.dropped
            ));
        }
        let (a, b) = self.tail.as_slices();
        let mut tail = a.to_vec();
        tail.extend_from_slice(b);
        text.push_str(&String::from_utf8_lossy(&tail));
        text
    }
}

/// `10m`, `90s`, `1m 30s`, `250ms`.
fn duration(d: Duration) -> String {
    let ms = d.as_millis();
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let s = d.as_secs();
    match (s / 3600, s / 60 % 60, s % 60) {
        (0, 0, s) => format!("{s}s"),
        (0, m, 0) => format!("{m}m"),
        (0, m, s) => format!("{m}m {s}s"),
        (h, 0, 0) => format!("{h}h"),
        (h, m, s) => format!("{h}h {m}m {s}s"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str, timeout: Duration) -> Activation {
        let command = Scheduled {
            call: Deferred {
                module: "app".into(),
                program: "scripts/10-x.sh".into(),
                argv: vec!["/bin/sh".into(), "-c".into(), script.into()],
            },
            timeout,
        };
        run(Path::new("/"), &command)
    }

    fn alive(pid: &str) -> bool {
        // A zombie has ended; only its parent has not reaped it yet.
        #[allow(clippy::disallowed_methods)]
        std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
            s.rsplit_once(") ")
                .is_some_and(|(_, r)| !r.starts_with('Z'))
        })
    }

    #[test]
    fn a_command_past_its_time_is_killed_with_what_it_started() {
        let start = Instant::now();
        let a = sh("sleep 60 & echo $!; sleep 60", Duration::from_millis(500));
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(a.status, CommandStatus::TimedOut);
        assert_eq!(a.describe(), "timed out after 500ms");
        assert!(!a.succeeded());
        let pid = a.output.trim();
        assert!(pid.parse::<u32>().is_ok(), "{a:?}");
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(!alive(pid), "the command's background process outlived it");
    }

    #[test]
    fn a_chatty_command_keeps_only_the_first_and_last_half_mebibyte() {
        // 3 MiB of numbered lines: the first and the last survive, the middle does not.
        let a = sh(
            "i=0; while [ $i -lt 3 ]; do echo first-$i; i=$((i+1)); done; \
             head -c 3145728 /dev/zero | tr '\\0' x; echo; echo last-line",
            Duration::from_secs(60),
        );
        assert_eq!(a.status, CommandStatus::Ok, "{}", a.describe());
        assert!(
            a.output.len() <= Activation::OUTPUT_LIMIT + 100,
            "{} bytes kept",
            a.output.len()
        );
        assert!(
            a.output.starts_with("first-0\nfirst-1\n"),
            "{}",
            &a.output[..40]
        );
        assert!(a.output.ends_with("x\nlast-line\n"));
        assert!(a.output.contains("bytes of output left out here]"));
    }

    #[test]
    fn a_daemon_holding_the_output_open_does_not_hold_strata() {
        let start = Instant::now();
        let a = sh("sleep 30 & echo started", Duration::from_secs(60));
        assert!(
            start.elapsed() < LINGER + Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(a.status, CommandStatus::Ok);
        assert_eq!(a.output, "started\n");
    }

    #[test]
    fn each_way_a_command_ends_has_its_status() {
        let failed = sh("echo oops >&2; exit 4", Duration::from_secs(60));
        assert_eq!(
            (failed.status, failed.exit, failed.output.as_str()),
            (CommandStatus::Failed, Some(4), "oops\n")
        );
        assert_eq!(failed.describe(), "exit status 4");
        let killed = sh("kill -TERM $$", Duration::from_secs(60));
        assert_eq!(
            (killed.status, killed.signal),
            (CommandStatus::Killed, Some(15))
        );
        let missing = run(
            Path::new("/"),
            &Scheduled::new(Deferred {
                argv: vec!["/nonexistent/systemctl".into()],
                ..Deferred::default()
            }),
        );
        assert_eq!(missing.status, CommandStatus::NotStarted);
        assert!(
            missing.describe().starts_with("could not start"),
            "{missing:?}"
        );
    }

    #[test]
    fn a_journal_without_time_limits_gets_the_default() {
        let s: Scheduled =
            serde_json::from_str(r#"{"module":"m","program":"p","argv":["systemctl"]}"#)
                .expect("parse");
        assert_eq!(s.timeout, DEFAULT_TIMEOUT);
        let json = serde_json::to_string(&Scheduled {
            timeout: Duration::from_secs(90),
            ..s
        })
        .expect("serialise");
        assert!(json.contains(r#""timeout":90000"#), "{json}");
    }

    #[test]
    fn progress_keeps_how_each_ended_command_went_and_reads_older_files() {
        let done = Activation {
            command: Deferred {
                module: "app".into(),
                program: "scripts/10-x.sh".into(),
                argv: vec!["systemctl".into(), "restart".into(), "app".into()],
            },
            status: CommandStatus::Failed,
            exit: Some(4),
            signal: None,
            output: "line one\nline two\n".into(),
            error: None,
        };
        let progress = BTreeMap::from([(0, Some(done)), (1, None)]);
        assert_eq!(parse_progress(&write_progress(&progress)), progress);
        // Written by a strata that recorded only what started.
        assert_eq!(
            parse_progress(b"0\n1\n"),
            BTreeMap::from([(0, None), (1, None)])
        );
    }

    #[test]
    fn durations_read_as_a_person_writes_them() {
        assert_eq!(duration(Duration::from_secs(600)), "10m");
        assert_eq!(duration(Duration::from_secs(90)), "1m 30s");
        assert_eq!(duration(Duration::from_secs(1)), "1s");
        assert_eq!(duration(Duration::from_millis(250)), "250ms");
    }
}
