//! The system `ssh`, so `~/.ssh/config`, the agent, ProxyJump and known_hosts apply as
//! the user set them: one master connection per node (`ControlMaster`), every step of
//! that node a session multiplexed over it. `BatchMode=yes`: an unknown host key or a
//! key that needs a passphrase fails instead of asking.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How every connection of a push is made.
#[derive(Debug, Clone)]
pub struct SshOptions {
    /// `ssh -F FILE` instead of `~/.ssh/config`.
    pub config: Option<PathBuf>,
    /// A private directory (0700) for the control sockets.
    pub control_dir: PathBuf,
    /// How long connecting may take.
    pub connect_timeout: Duration,
}

/// One node, as ssh reaches it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// The node's name (the host to connect to unless `host` says otherwise).
    pub name: String,
    /// The address.
    pub host: Option<String>,
    /// The port.
    pub port: Option<u16>,
    /// The user.
    pub user: Option<String>,
    /// Run strata through `sudo -n`.
    pub sudo: bool,
}

/// Why a node could not be reached (or was lost).
#[derive(Debug, thiserror::Error)]
pub enum ReachError {
    /// No connection: refused, timed out, no route, no such host.
    #[error("{0}")]
    Unreachable(String),
    /// The node refused our key.
    #[error("{0}")]
    Auth(String),
    /// The node's host key is unknown or changed.
    #[error("{0}")]
    HostKey(String),
    /// The connection dropped while a command ran.
    #[error("{0}")]
    Lost(String),
    /// `ssh` itself could not run.
    #[error("cannot run ssh: {0}")]
    Spawn(std::io::Error),
}

impl ReachError {
    /// The error's kind, as reports name it.
    pub fn kind(&self) -> &'static str {
        match self {
            ReachError::Unreachable(_) | ReachError::Spawn(_) => "unreachable",
            ReachError::Auth(_) => "auth",
            ReachError::HostKey(_) => "host_key",
            ReachError::Lost(_) => "lost",
        }
    }

    /// Sorts what ssh printed when it could not connect.
    fn from_stderr(stderr: &str) -> ReachError {
        let text = stderr
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with("Warning: Permanently added"))
            .collect::<Vec<_>>()
            .join("; ");
        let text = if text.is_empty() {
            "ssh exited without saying why".to_string()
        } else {
            text
        };
        if text.contains("Host key verification failed")
            || text.contains("REMOTE HOST IDENTIFICATION HAS CHANGED")
            || text.contains("host key for")
        {
            ReachError::HostKey(text)
        } else if text.contains("Permission denied") || text.contains("Too many authentication") {
            ReachError::Auth(text)
        } else {
            ReachError::Unreachable(text)
        }
    }
}

/// An open master connection to one node.
#[derive(Debug)]
pub struct Connection {
    endpoint: Endpoint,
    options: SshOptions,
    control: PathBuf,
    master: Option<Child>,
}

/// How much of a command's stderr is kept (the rest is read and dropped).
pub const STDERR_LIMIT: usize = 1 << 20;

/// Feeds `input` to a child's stdin while reading at most `limit + 1` bytes of its
/// stdout and [`STDERR_LIMIT`] of its stderr; a child that sends more stdout is killed
/// (the child is ssh: killing it closes both pipes, no local process of its holds them).
fn collect_bounded(mut child: Child, input: &[u8], limit: usize) -> std::io::Result<Output> {
    let mut stdin = child.stdin.take().expect("piped");
    let input = input.to_vec();
    // Written beside the reads: a large input and a chatty command would block each
    // other through two full pipes.
    let writer = std::thread::spawn(move || std::io::Write::write_all(&mut stdin, &input));
    let mut stderr = child.stderr.take().expect("piped");
    let errors = std::thread::spawn(move || {
        let mut kept = Vec::new();
        let _ = (&mut stderr)
            .take(STDERR_LIMIT as u64)
            .read_to_end(&mut kept);
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
        kept
    });
    let mut stdout = Vec::new();
    let read = child
        .stdout
        .take()
        .expect("piped")
        .take((limit as u64).saturating_add(1))
        .read_to_end(&mut stdout);
    if read.is_err() || stdout.len() > limit {
        let _ = child.kill();
    }
    let status = child.wait()?;
    let stderr = errors.join().unwrap_or_default();
    let _ = writer.join();
    read?;
    Ok(Output {
        status,
        stdout,
        stderr,
    })
}

/// Quotes a word for the remote shell.
pub fn quote(word: &str) -> String {
    if !word.is_empty()
        && word
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:@,+".contains(&b))
    {
        return word.to_string();
    }
    format!("'{}'", word.replace('\'', r"'\''"))
}

impl Connection {
    /// Connects: starts the master and waits until its socket answers, or says why not.
    pub fn open(endpoint: &Endpoint, options: &SshOptions) -> Result<Connection, ReachError> {
        // A short name: a socket's path is limited to 107 bytes, a node's name is not.
        let id = blake3::hash(endpoint.name.as_bytes()).to_hex();
        let control = options.control_dir.join(format!("{}.sock", &id[..16]));
        let mut cmd = base(endpoint, options, &control);
        cmd.args(["-o", "ControlMaster=yes", "-o", "ControlPersist=no", "-N"])
            .arg(target(endpoint))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        let mut master = cmd.spawn().map_err(ReachError::Spawn)?;
        let deadline = Instant::now() + options.connect_timeout + Duration::from_secs(5);
        loop {
            if let Some(_status) = master.try_wait().map_err(ReachError::Spawn)? {
                let mut err = String::new();
                if let Some(mut e) = master.stderr.take() {
                    let _ = e.read_to_string(&mut err);
                }
                return Err(ReachError::from_stderr(&err));
            }
            if control.exists() && check(endpoint, options, &control) {
                return Ok(Connection {
                    endpoint: endpoint.clone(),
                    options: options.clone(),
                    control,
                    master: Some(master),
                });
            }
            if Instant::now() > deadline {
                let _ = master.kill();
                let _ = master.wait();
                return Err(ReachError::Unreachable(format!(
                    "no connection after {} s",
                    options.connect_timeout.as_secs()
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The command that runs `remote` (a shell command line) over the master, as root
    /// through `sudo -n` when the node says so.
    fn command(&self, remote: &str) -> Command {
        let mut cmd = base(&self.endpoint, &self.options, &self.control);
        cmd.args(["-o", "ControlMaster=no"])
            .arg(target(&self.endpoint));
        if self.endpoint.sudo {
            cmd.arg(format!("sudo -n sh -c {}", quote(remote)));
        } else {
            cmd.arg(remote);
        }
        cmd
    }

    /// Runs a shell command line on the node with `input` on its stdin.
    pub fn run(&self, remote: &str, input: &[u8]) -> Result<Output, ReachError> {
        self.run_limited(remote, input, usize::MAX)
    }

    /// [`Connection::run`], reading at most `limit` bytes of its stdout (and
    /// [`STDERR_LIMIT`] of its stderr): past that the command is killed and its stdout
    /// holds `limit + 1` bytes, so this process never buffers more than a node decides
    /// to send (a hostile node's endless `facts`).
    pub fn run_limited(
        &self,
        remote: &str,
        input: &[u8],
        limit: usize,
    ) -> Result<Output, ReachError> {
        let child = self
            .command(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(ReachError::Spawn)?;
        let out = collect_bounded(child, input, limit).map_err(ReachError::Spawn)?;
        self.finished(out)
    }

    /// Runs a shell command line on the node with the file at `input` as its stdin: ssh
    /// reads it, so it is never in this process's memory (the shipped strata, to many
    /// nodes at once).
    pub fn run_file(&self, remote: &str, input: &std::path::Path) -> Result<Output, ReachError> {
        let file =
            strata_fs::open_read(input).map_err(|e| ReachError::Spawn(std::io::Error::other(e)))?;
        let out = self
            .command(remote)
            .stdin(Stdio::from(file))
            .output()
            .map_err(ReachError::Spawn)?;
        self.finished(out)
    }

    /// A command's output, or the connection lost (ssh's own exit status, 255).
    fn finished(&self, out: Output) -> Result<Output, ReachError> {
        if out.status.code() == Some(255) {
            return Err(self.lost(&out.stderr));
        }
        Ok(out)
    }

    /// Starts a shell command line on the node, its stdin and stdout piped to us.
    pub fn spawn(&self, remote: &str) -> Result<Session, ReachError> {
        let mut child = self
            .command(remote)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(ReachError::Spawn)?;
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("piped");
        Ok(Session {
            child,
            stdin,
            stdout: Some(stdout),
        })
    }

    /// A dropped connection's error, from what ssh printed.
    pub fn lost(&self, stderr: &[u8]) -> ReachError {
        let text = String::from_utf8_lossy(stderr).trim().to_string();
        ReachError::Lost(if text.is_empty() {
            "the connection dropped".to_string()
        } else {
            format!("the connection dropped: {text}")
        })
    }

    /// Closes the master connection.
    pub fn close(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        if let Some(mut m) = self.master.take() {
            let _ = base(&self.endpoint, &self.options, &self.control)
                .args(["-O", "exit"])
                .arg(target(&self.endpoint))
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
            let _ = m.kill();
            let _ = m.wait();
        }
        let _ = strata_fs::remove_file(&self.control);
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.shut();
    }
}

/// A command running on a node over the master connection.
#[derive(Debug)]
pub struct Session {
    /// The local `ssh` process.
    pub child: Child,
    /// Its stdin (the node's), until closed.
    pub stdin: Option<ChildStdin>,
    /// Its stdout (the node's).
    pub stdout: Option<ChildStdout>,
}

/// `ssh` with the options every invocation shares.
fn base(endpoint: &Endpoint, options: &SshOptions, control: &Path) -> Command {
    let mut cmd = Command::new("ssh");
    if let Some(f) = &options.config {
        cmd.arg("-F").arg(f);
    }
    cmd.args(["-o", "BatchMode=yes", "-o", "LogLevel=ERROR"])
        .arg("-o")
        .arg(format!(
            "ConnectTimeout={}",
            options.connect_timeout.as_secs().max(1)
        ))
        .args([
            "-o",
            "ServerAliveInterval=10",
            "-o",
            "ServerAliveCountMax=3",
        ])
        .arg("-o")
        .arg(format!("ControlPath={}", control.display()));
    if let Some(p) = endpoint.port {
        cmd.arg("-p").arg(p.to_string());
    }
    if let Some(u) = &endpoint.user {
        cmd.arg("-l").arg(u);
    }
    cmd
}

/// The host argument: `[ssh] host`, else the node's name.
fn target(endpoint: &Endpoint) -> String {
    endpoint
        .host
        .clone()
        .unwrap_or_else(|| endpoint.name.clone())
}

/// Whether the master behind `control` answers.
fn check(endpoint: &Endpoint, options: &SshOptions, control: &Path) -> bool {
    base(endpoint, options, control)
        .args(["-O", "check"])
        .arg(target(endpoint))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_for_the_remote_shell() {
        assert_eq!(quote("web1.example.com"), "web1.example.com");
        assert_eq!(quote("a b"), "'a b'");
        assert_eq!(quote("it's"), r"'it'\''s'");
        assert_eq!(quote("$(reboot)"), "'$(reboot)'");
        assert_eq!(quote(""), "''");
    }

    fn sh(script: &str) -> Child {
        Command::new("sh")
            .args(["-c", script])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    #[test]
    fn a_command_that_never_stops_talking_is_cut_at_the_limit_and_killed() {
        // An endless stdout (what a hostile node's `facts --tuples` could send) after
        // 5 MB of stderr: at most limit + 1 and STDERR_LIMIT bytes are kept, and the
        // command is killed rather than read to its end.
        let out =
            collect_bounded(sh("head -c 5000000 /dev/zero >&2; exec yes"), b"", 1 << 16).unwrap();
        assert_eq!(out.stdout.len(), (1 << 16) + 1);
        assert!(!out.status.success(), "killed: {:?}", out.status);
        assert!(out.stderr.len() <= STDERR_LIMIT);
    }

    #[test]
    fn a_command_within_the_limit_is_read_whole_with_its_input() {
        let out = collect_bounded(sh("cat; echo done >&2"), b"facts\n", 6).unwrap();
        assert_eq!(out.stdout, b"facts\n");
        assert_eq!(out.stderr, b"done\n");
        assert!(out.status.success());
    }

    #[test]
    fn what_ssh_says_is_sorted() {
        let k = |s: &str| ReachError::from_stderr(s).kind();
        assert_eq!(
            k("ssh: connect to host 127.0.0.1 port 1: Connection refused"),
            "unreachable"
        );
        assert_eq!(k("root@127.0.0.1: Permission denied (publickey)."), "auth");
        assert_eq!(k("Host key verification failed."), "host_key");
        assert_eq!(
            k(
                "No ED25519 host key is known for [127.0.0.1]:2222 and you have requested strict checking.\nHost key verification failed."
            ),
            "host_key"
        );
    }
}
