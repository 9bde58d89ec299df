//! Runs module scripts and executable templates for real, on a copy-on-write view of a
//! target root, and reports exactly what they changed.
//!
//! The sandbox is a private mount, PID, IPC and UTS namespace (and, unless allowed, a
//! network namespace with loopback only per script) holding an overlayfs whose lower layer
//! is the target root and whose upper and work dirs live on a tmpfs of the sandbox's own:
//! nothing a plan does reaches the target, strata's state, or the host. Inside it, `/proc`,
//! a minimal `/dev`, a read-only `/sys`, and fresh `/run` and `/tmp` are mounted, and the
//! intercepted commands are replaced by shims that record their calls.
//!
//! Three processes take part: the caller; the *outer* helper, started in the new
//! namespaces, which mounts everything; and the *init* helper, PID 1 of the new PID
//! namespace, which lays each module's files into the overlay, runs its programs chrooted
//! into it, walks the upper dir, and writes the result. Both helpers are the caller's own
//! executable started with a hidden first argument (see [`helper_main`]). When init exits
//! the kernel kills whatever the scripts left running and the mounts vanish with the
//! namespace.
// Below strata-fs, like it: the helpers hold raw descriptors (flock'd scratch
// directories, cgroup and /proc files, pidfds) inside namespaces of their own, read the
// target and write only the sandbox's own tmpfs.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod cgroup;
mod helper_error;
mod init;
mod jail;
mod lay;
mod mounts;
mod observe;
mod outer;
mod seccomp;
mod shim;
mod sys;
mod work;

pub use cgroup::{DEFAULT_MAX_PROCESSES, Limits};
pub use mounts::{Show, SubMount};
use strata_fs::write_private;
pub use work::WorkDir;

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::ffi::OsString;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde::{Deserialize, Serialize};
use strata_types::{ContentSource, Deferred, Hash, ProgramRun, Snapshot, TargetPath};

/// The commands every sandbox intercepts (SITE-FORMAT.md, Scripts).
pub const INTERCEPTED: &[&str] = &[
    "systemctl",
    "service",
    "reboot",
    "shutdown",
    "poweroff",
    "halt",
    "init",
    "telinit",
    "invoke-rc.d",
];

/// The directories where the intercepted commands are looked for (and where a call may
/// name one by its full path); also the tail of the sandbox's `PATH`.
pub const BIN_DIRS: [&str; 6] = [
    "/usr/local/sbin",
    "/usr/local/bin",
    "/usr/sbin",
    "/usr/bin",
    "/sbin",
    "/bin",
];

/// What script changes are never reported: logs, caches, scratch space, and strata's
/// own state. A site adds to it with `[sandbox] ignore`.
pub const DEFAULT_IGNORE: &[&str] = &[
    "/var/log/**",
    "/var/cache/**",
    "/tmp/**",
    "/run/**",
    "/var/lib/strata/**",
];

/// Exceptions to [`DEFAULT_IGNORE`]: state that lives in a cache directory (debconf's
/// database, which packages' maintainer scripts write).
pub const DEFAULT_KEEP: &[&str] = &["/var/cache/debconf/*.dat"];

/// The hidden first argument that makes a strata executable act as the sandbox helper.
pub const HELPER_ARG: &str = "__sandbox";

/// Everything a sandbox run needs; written to a file for the helpers.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Spec {
    /// The target root (host path): the overlay's lower layer.
    pub root: PathBuf,
    /// A scratch directory of the caller's: contents to lay in, logs, the result, and the
    /// contents of what the scripts changed (`out/<hash>`).
    pub work: PathBuf,
    /// The host name inside the sandbox (the node's name).
    pub hostname: String,
    /// `STRATA_NOOP=1`: a plan.
    pub noop: bool,
    /// Whether scripts may use the network (an apply).
    pub network: bool,
    /// Variables every program sees (`STRATA_NODE`, `STRATA_P_*`…).
    pub env: Vec<(String, String)>,
    /// The parameter tree, as JSON (`STRATA_PARAMS` names a file holding it).
    pub params_json: String,
    /// Commands intercepted beyond [`INTERCEPTED`] (names or absolute paths).
    pub intercept: Vec<String>,
    /// Globs of paths whose changes are not reported, beyond [`DEFAULT_IGNORE`].
    pub ignore: Vec<String>,
    /// Changes laid in before any module (what the site no longer declares).
    pub pre: Vec<Lay>,
    /// The modules, in dependency order.
    pub modules: Vec<ModuleSpec>,
    /// Paths whose final state the caller needs, touched or not.
    pub watch: Vec<TargetPath>,
    /// Open an interactive shell after the modules ran (`strata shell`).
    pub shell: bool,
    /// The caller's terminal type (`TERM`), given to that shell.
    #[serde(default)]
    pub term: Option<String>,
    /// A host directory for strata's own download caches (package lists and packages),
    /// mounted read-write at [`CACHE`] inside the sandbox; it outlives the run.
    #[serde(default)]
    pub cache: Option<PathBuf>,
    /// What the programs may use together.
    #[serde(default)]
    pub limits: Limits,
    /// Mounted file systems shown read-only and not observed (`[sandbox] unobserved`).
    #[serde(default)]
    pub unobserved: Vec<TargetPath>,
    /// The values of the variables modules' scripts read secrets from (`secrets` of
    /// [`ModuleSpec`]). Never in the spec's file: the helpers get them through a pipe.
    #[serde(skip)]
    pub secrets: SecretVars,
}

/// Where [`Spec::cache`] is mounted inside the sandbox (under `/run`, so never reported).
pub const CACHE: &str = "/run/strata/cache";

/// One change laid into the overlay before a module's programs run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Lay {
    /// The path.
    pub path: TargetPath,
    /// What must stand there.
    pub state: Snapshot,
    /// For a file: where its content is (a host path).
    pub content: Option<PathBuf>,
    /// Owner and group names to resolve inside the sandbox, after the module's users and
    /// groups exist there (they replace the ids in `state`).
    #[serde(default)]
    pub names: Option<(String, String)>,
}

/// One module's part of the run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModuleSpec {
    /// `name@version`.
    pub id: String,
    /// Programs strata wrote for the module's packages, groups and users, run first.
    #[serde(default)]
    pub before: Vec<Program>,
    /// Its files, templates, directories and links, laid in next.
    pub lay: Vec<Lay>,
    /// Its lines, ensured next.
    #[serde(default)]
    pub lines: Vec<LineEdit>,
    /// Programs strata wrote for the module's services, run next.
    #[serde(default)]
    pub after: Vec<Program>,
    /// Its executable templates, run after that.
    pub templates: Vec<Template>,
    /// Its scripts, in lexical order, run last.
    pub scripts: Vec<Program>,
    /// Each program's time limit.
    pub timeout_ms: u64,
    /// `plan_network = true`: its programs get the network in a plan too.
    pub network: bool,
    /// The variables (`STRATA_SECRET_<NAME>`) its scripts, and only they, get from
    /// [`Spec::secrets`].
    #[serde(default)]
    pub secrets: Vec<String>,
}

/// Secrets' variables and values, which never print and never go to a file: the caller
/// writes them to the helper's stdin, which init reads before running anything.
#[derive(Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecretVars(pub BTreeMap<String, String>);

impl std::fmt::Debug for SecretVars {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// The most init reads of secrets from its stdin.
const SECRETS_LIMIT: u64 = 64 << 20;

impl Spec {
    /// Whether a module's scripts read secrets (init then reads their values first).
    fn wants_secrets(&self) -> bool {
        !self.shell && self.modules.iter().any(|m| !m.secrets.is_empty())
    }
}

/// Init's side: the secrets' values from its stdin, when the spec wants some.
pub(crate) fn read_secrets(spec: &Spec) -> std::result::Result<SecretVars, String> {
    if !spec.wants_secrets() {
        return Ok(SecretVars::default());
    }
    let mut bytes = Vec::new();
    use std::io::Read;
    (std::io::stdin().lock().take(SECRETS_LIMIT))
        .read_to_end(&mut bytes)
        .map_err(|e| format!("cannot read the secrets' values: {e}"))?;
    serde_json::from_slice(&bytes).map_err(|_| "the secrets' values are not readable".to_string())
}

impl ModuleSpec {
    /// Whether the module has nothing to do in the sandbox.
    pub fn is_empty(&self) -> bool {
        self.before.is_empty()
            && self.lay.is_empty()
            && self.lines.is_empty()
            && self.after.is_empty()
            && self.templates.is_empty()
            && self.scripts.is_empty()
    }
}

/// A script or executable template.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Program {
    /// As shown to users: `scripts/10-config.sh`.
    pub name: String,
    /// The executable (a host path; copied into the sandbox).
    pub path: PathBuf,
    /// Whether it has the network in a plan too (strata's own package fetches).
    #[serde(default)]
    pub network: bool,
}

/// A line to ensure in a file: present, or replacing the one line `pattern` matches.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LineEdit {
    /// As shown to users: `line /etc/hosts`.
    pub name: String,
    /// The file (it must exist).
    pub path: TargetPath,
    /// The line, without its newline.
    pub line: String,
    /// A regular expression: the line it matches is replaced.
    pub pattern: Option<String>,
}

/// An executable template: its standard output becomes a file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Template {
    /// The program.
    pub program: Program,
    /// The file it produces.
    pub target: TargetPath,
    /// The file's permission bits, owner and group.
    pub meta: strata_types::Meta,
    /// Owner and group names to resolve inside the sandbox (see [`Lay::names`]).
    #[serde(default)]
    pub names: Option<(String, String)>,
}

/// What stands at a watched path after the run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Merged {
    /// The target's own, untouched.
    Lower,
    /// Written in the sandbox: this (file contents are in `out/`).
    State {
        /// The state.
        state: Snapshot,
    },
}

/// A path whose final state differs from the target's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Changed {
    /// The path.
    pub path: TargetPath,
    /// What stands there after the run (file contents are in `out/`).
    pub state: Snapshot,
    /// The first module whose files or programs touched it (none: before any module).
    pub module: Option<String>,
}

/// Why the run stopped.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    /// The module.
    pub module: String,
    /// The program.
    pub program: String,
    /// `exit status 3`, `killed by signal 9`, `timed out after 30s`, or why it could not start.
    pub status: String,
    /// The last lines of its standard error.
    pub stderr_tail: Vec<String>,
}

/// What a sandbox run saw.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Observed {
    /// Each watched path's final state.
    pub watched: BTreeMap<TargetPath, Merged>,
    /// Every path whose final state differs from the target's, in path order.
    pub changed: Vec<Changed>,
    /// The module that first touched each watched path a module touched (also when the
    /// path ended as the target has it).
    #[serde(default)]
    pub touched: BTreeMap<TargetPath, String>,
    /// Intercepted calls, in call order.
    pub calls: Vec<Deferred>,
    /// Every program run, in order.
    pub runs: Vec<ProgramRun>,
    /// Set when a program failed: nothing of the run may be committed.
    pub failure: Option<Failure>,
}

/// Why a sandbox could not run.
#[derive(Debug, thiserror::Error)]
pub enum SandboxError {
    /// Mounting needs root.
    #[error(
        "scripts and executable templates run in an overlay sandbox, which needs root (strata runs as uid {0})"
    )]
    NotRoot(u32),
    /// No shell in the target.
    #[error("the target {0} has no /bin/sh: module scripts and executable templates cannot run")]
    NoShell(PathBuf),
    /// Part of the target is a network or FUSE file system, whose effects the sandbox
    /// cannot observe faithfully.
    #[error(
        "{mount} is a {fstype} mount inside the target {root}: strata cannot observe what scripts would do on a network or FUSE file system; add it to `[sandbox] unobserved` in strata.toml to show it to scripts read-only, unobserved"
    )]
    Submount {
        /// The target.
        root: PathBuf,
        /// The mount point.
        mount: PathBuf,
        /// Its file system type.
        fstype: String,
    },
    /// The helper failed.
    #[error("sandbox: {0}")]
    Setup(String),
    /// Reading or writing the work dir failed (the cause follows in the error's chain).
    #[error("sandbox: {what} {}", .path.display())]
    Io {
        /// What was done.
        what: &'static str,
        /// Where.
        path: PathBuf,
        /// Why it failed.
        source: std::io::Error,
    },
}

fn io_err<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SandboxError + 'a {
    move |source| SandboxError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// Runs `spec` in a sandbox, using `helper` (a strata executable) for the helper
/// processes. A program's failure is reported in [`Observed::failure`], not as an error.
pub fn run(spec: &Spec, helper: &Path) -> Result<Observed, SandboxError> {
    let uid = sys::euid();
    if uid != 0 {
        return Err(SandboxError::NotRoot(uid));
    }
    // The overlay's lower dir and the mount table both name the target canonically.
    let mut spec = spec.clone();
    spec.root = std::fs::canonicalize(&spec.root).map_err(io_err("resolve", &spec.root))?;
    let spec = &spec;
    check_target(spec)?;
    let spec_path = spec.work.join("spec.json");
    let json = serde_json::to_vec(spec).expect("spec serialises");
    write_private(&spec_path, &json).map_err(|e| SandboxError::Io {
        what: e.op,
        path: e.path,
        source: e.source,
    })?;
    let result_path = spec.work.join("result.json");
    let _ = std::fs::remove_file(&result_path);
    let mut cmd = Command::new(helper);
    cmd.arg(HELPER_ARG).arg("outer").arg(&spec_path);
    if !spec.shell {
        // The secrets' values, if any, go through the helper's stdin (outer leaves it
        // to init): never through a file, an argument or the helpers' environment.
        let stdin = match spec.wants_secrets() {
            true => Stdio::piped(),
            false => Stdio::null(),
        };
        cmd.stdin(stdin).stdout(Stdio::null());
    }
    cmd.stderr(if spec.shell {
        Stdio::inherit()
    } else {
        Stdio::piped()
    });
    // SAFETY: the closure makes only async-signal-safe system calls.
    unsafe {
        cmd.pre_exec(|| {
            use rustix::thread::UnshareFlags;
            sys::unshare(
                UnshareFlags::NEWNS
                    | UnshareFlags::NEWPID
                    | UnshareFlags::NEWIPC
                    | UnshareFlags::NEWUTS,
            )?;
            // Nothing strata's caller left open reaches the sandbox.
            sys::cloexec_from(3)?;
            sys::die_with_parent()
        });
    }
    let out = cmd
        .spawn()
        .and_then(|mut c| {
            if let Some(mut stdin) = c.stdin.take() {
                let json = serde_json::to_vec(&spec.secrets).expect("strings serialise");
                // A helper that ended early says why below; its stdin is then closed.
                let _ = std::io::Write::write_all(&mut stdin, &json);
            }
            c.wait_with_output()
        })
        .map_err(|e| SandboxError::Setup(format!("cannot start {}: {e}", helper.display())))?;
    let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
    let bytes = match std::fs::read(&result_path) {
        Ok(b) => b,
        Err(_) => {
            return Err(SandboxError::Setup(if stderr.is_empty() {
                format!("the helper ended with {} and left no result", out.status)
            } else {
                stderr
            }));
        }
    };
    serde_json::from_slice(&bytes).map_err(|e| {
        SandboxError::Setup(format!("unreadable result {}: {e}", result_path.display()))
    })
}

/// Refuses targets the sandbox cannot represent faithfully.
fn check_target(spec: &Spec) -> Result<(), SandboxError> {
    let root = &spec.root;
    let sh = strata_fs::Root::open(root)
        .ok()
        .and_then(|r| {
            r.resolve(&TargetPath::parse("/bin/sh").expect("valid"))
                .ok()
        })
        .flatten();
    if sh.is_none() {
        return Err(SandboxError::NoShell(root.to_path_buf()));
    }
    submounts(spec).map(drop)
}

/// The file systems mounted inside the target, as the sandbox shows them.
pub(crate) fn submounts(spec: &Spec) -> Result<Vec<SubMount>, SandboxError> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    mounts::below(&spec.root, &info, &spec.unobserved, outer::MOUNT_POINTS).map_err(|r| {
        SandboxError::Submount {
            root: spec.root.clone(),
            mount: r.mount,
            fstype: r.fstype,
        }
    })
}

/// The entry point of the helper processes: call it from `main` when the first argument
/// is [`HELPER_ARG`], with the arguments after it. Returns the exit code.
pub fn helper_main(args: &[OsString]) -> i32 {
    let (Some(role), Some(spec)) = (args.first(), args.get(1)) else {
        eprintln_helper("usage: __sandbox outer|init SPEC");
        return 2;
    };
    let spec: Spec = match std::fs::read(spec)
        .map_err(|e| e.to_string())
        .and_then(|b| serde_json::from_slice(&b).map_err(|e| e.to_string()))
    {
        Ok(s) => s,
        Err(e) => {
            eprintln_helper(&format!("cannot read the sandbox spec: {e}"));
            return 2;
        }
    };
    let result = match role.to_str() {
        Some("outer") => outer::main(&spec),
        Some("init") => init::main(&spec),
        _ => Err("unknown helper role".into()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln_helper(&e.text());
            1
        }
    }
}

#[allow(clippy::print_stderr)]
fn eprintln_helper(message: &str) {
    eprintln!("{message}");
}

/// The contents of what a run changed, read from `out/` in its work dir.
#[derive(Debug, Clone)]
pub struct OutContents(pub PathBuf);

impl ContentSource for OutContents {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        std::fs::read(self.0.join("out").join(hash.to_string()))
            .ok()
            .map(Cow::Owned)
    }
}
