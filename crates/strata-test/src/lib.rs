//! Test-only helpers: a scratch site and target root per test, running the `strata`
//! binary against them, and tree snapshots that record type, mode, owner, size, content
//! hash and link target, so that "unchanged" means unchanged.
#![allow(clippy::disallowed_methods, clippy::print_stderr)]

mod hosts;
pub use hosts::{TestHost, TestHosts};

use std::ffi::OsStr;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A site and a target root in a temporary directory.
#[derive(Debug)]
pub struct TestEnv {
    dir: tempfile::TempDir,
    bin: PathBuf,
}

impl TestEnv {
    /// An empty environment that runs `bin` (the `strata` binary under test).
    pub fn new(bin: impl Into<PathBuf>) -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("strata-test")
            .tempdir()
            .expect("temp dir");
        std::fs::create_dir_all(dir.path().join("site")).expect("site dir");
        std::fs::create_dir_all(dir.path().join("root")).expect("root dir");
        TestEnv {
            dir,
            bin: bin.into(),
        }
    }

    /// Copies the repository's example site into the site directory.
    pub fn with_example_site(self) -> TestEnv {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/site");
        copy_tree(&src, &self.site());
        self
    }

    /// The site directory.
    pub fn site(&self) -> PathBuf {
        self.dir.path().join("site")
    }

    /// The target root.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// This test's own strata cache (`STRATA_CACHE_DIR` of every command it runs).
    pub fn cache(&self) -> PathBuf {
        self.dir.path().join("cache")
    }

    /// The temporary directory holding both.
    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a site file (creating directories).
    pub fn write(&self, rel: &str, content: &str) -> &TestEnv {
        write(&self.site().join(rel), content);
        self
    }

    /// Removes a site file or directory.
    pub fn remove(&self, rel: &str) -> &TestEnv {
        let p = self.site().join(rel);
        if p.is_dir() {
            std::fs::remove_dir_all(p)
        } else {
            std::fs::remove_file(p)
        }
        .expect("remove site path");
        self
    }

    /// Writes a file in the target root.
    pub fn write_root(&self, rel: &str, content: &str, mode: u32) -> &TestEnv {
        let p = self.root().join(rel);
        write(&p, content);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).expect("chmod");
        self
    }

    /// Writes an executable site file (a script).
    pub fn write_exec(&self, rel: &str, content: &str) -> &TestEnv {
        let p = self.site().join(rel);
        write(&p, content);
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        self
    }

    /// A `strata` command with `--site` and `--root` added for the verbs that take them,
    /// on a machine named [`HOST_NAME`] whose clock stands at [`NOW`].
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.args(args)
            .env("NO_COLOR", "1")
            .env_remove("STRATA_SITE")
            .env("STRATA_TEST_NOW", NOW)
            .env("STRATA_TEST_HOSTNAME", HOST_NAME);
        // Each test its own cache (what one test's compile or download left never serves
        // another); only package lists and packages are shared (`debian_root`).
        cmd.env("STRATA_CACHE_DIR", self.cache());
        let verb = args.first().copied().unwrap_or("");
        if matches!(
            verb,
            "check" | "params" | "plan" | "apply" | "shell" | "push"
        ) {
            cmd.arg("--site").arg(self.site());
        }
        if matches!(
            verb,
            "plan"
                | "apply"
                | "shell"
                | "generations"
                | "rollback"
                | "report"
                | "gc"
                | "drift"
                | "diff"
        ) {
            cmd.arg("--root").arg(self.root());
        }
        cmd
    }

    /// Runs `strata` and returns its output.
    pub fn run(&self, args: &[&str]) -> Run {
        self.run_env::<&str>(args, &[])
    }

    /// Runs `strata` with extra environment variables (which may replace [`NOW`] and
    /// [`HOST_NAME`]).
    pub fn run_env<V: AsRef<OsStr>>(&self, args: &[&str], vars: &[(&str, V)]) -> Run {
        let out = self
            .cmd(args)
            .envs(vars.iter().map(|(k, v)| (*k, v)))
            .output()
            .expect("run strata");
        Run::new(&out, self)
    }

    /// Makes the target root a tiny busybox system (a shell and coreutils in 2 MB);
    /// `false` when this machine has no static busybox (`apt-get install busybox-static`).
    pub fn busybox_root(&self) -> bool {
        let busybox = Path::new("/bin/busybox");
        if !busybox.exists() {
            return false;
        }
        let bin = self.root().join("bin");
        std::fs::create_dir_all(&bin).expect("bin");
        std::fs::copy(busybox, bin.join("busybox")).expect("copy busybox");
        let list = Command::new(busybox)
            .arg("--list")
            .output()
            .expect("busybox --list");
        for applet in String::from_utf8_lossy(&list.stdout).lines() {
            if applet != "busybox" && !applet.is_empty() {
                let _ = std::os::unix::fs::symlink("busybox", bin.join(applet));
            }
        }
        true
    }

    /// Makes the target root a minimal Debian bookworm system, unpacked from the tarball
    /// `scripts/debian-root` builds and caches (`$STRATA_DEBIAN_ROOT`, default
    /// `/var/cache/strata-test/bookworm-systemd.tar`); `false` when it is not there.
    pub fn debian_root(&self) -> bool {
        let tarball = std::env::var_os("STRATA_DEBIAN_ROOT")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/strata-test/bookworm-systemd.tar"));
        if !tarball.is_file() {
            return false;
        }
        let status = Command::new("tar")
            .arg("-C")
            .arg(self.root())
            .arg("-xf")
            .arg(&tarball)
            .status()
            .expect("run tar");
        assert!(status.success(), "unpacking {} failed", tarball.display());
        // Package lists and packages come from deb.debian.org: kept between tests (and
        // runs) beside the cached Debian root, so only the first run downloads them.
        std::fs::create_dir_all(SHARED_PACKAGES).expect("shared package cache");
        std::fs::create_dir_all(self.cache()).expect("cache dir");
        std::os::unix::fs::symlink(SHARED_PACKAGES, self.cache().join("packages"))
            .expect("link the shared package cache");
        true
    }

    /// A snapshot of the target tree, strata's own state excluded.
    pub fn tree(&self) -> String {
        tree(&self.root(), &["var/lib/strata"])
    }
}

/// The time every `strata` a [`TestEnv`] runs reads from its clock (`STRATA_TEST_NOW`):
/// each generation it records has this time.
pub const NOW: &str = "2024-05-01T12:00:00Z";

/// The host name of the machine every `strata` a [`TestEnv`] runs sees
/// (`STRATA_TEST_HOSTNAME`): the node when no `--node` is given.
pub const HOST_NAME: &str = "testhost.example.com";

/// Where the package lists and packages of every test's Debian root are kept.
const SHARED_PACKAGES: &str = "/var/cache/strata-test/cache/packages";

/// A finished `strata` run, with temp paths replaced by `[SITE]`, `[ROOT]` and `[TMP]`.
#[derive(Debug)]
pub struct Run {
    /// Exit code.
    pub code: i32,
    /// Standard output, filtered.
    pub stdout: String,
    /// Standard error, filtered.
    pub stderr: String,
}

impl Run {
    fn new(out: &Output, env: &TestEnv) -> Run {
        let filter = |b: &[u8]| {
            String::from_utf8_lossy(b)
                .replace(&env.site().display().to_string(), "[SITE]")
                .replace(&env.root().display().to_string(), "[ROOT]")
                .replace(&env.path().display().to_string(), "[TMP]")
        };
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: filter(&out.stdout),
            stderr: filter(&out.stderr),
        }
    }

    /// Asserts the exit code, showing both streams when it differs.
    pub fn code(self, want: i32) -> Run {
        assert_eq!(
            self.code, want,
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout, self.stderr
        );
        self
    }
}

/// Writes a file, creating its directories.
pub fn write(path: &Path, content: &str) {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).expect("mkdir");
    }
    std::fs::write(path, content).expect("write");
}

/// Copies a directory tree (files, directories, symlinks, modes).
pub fn copy_tree(from: &Path, to: &Path) {
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.expect("walk");
        let dest = to.join(entry.path().strip_prefix(from).expect("below"));
        let ft = entry.file_type();
        if ft.is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
        } else if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(entry.path()).expect("readlink"), &dest)
                .expect("symlink");
        } else {
            std::fs::copy(entry.path(), &dest).expect("copy");
        }
    }
}

/// One line per entry below `dir`: path, type, mode, owner, size, content hash, link
/// target. Entries under `skip` (relative) are left out.
pub fn tree(dir: &Path, skip: &[&str]) -> String {
    let mut out = String::new();
    for entry in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let entry = entry.expect("walk");
        let rel = entry
            .path()
            .strip_prefix(dir)
            .expect("below")
            .to_string_lossy()
            .into_owned();
        if skip
            .iter()
            .any(|s| rel == *s || rel.starts_with(&format!("{s}/")))
        {
            continue;
        }
        let m = entry.path().symlink_metadata().expect("lstat");
        let mode = m.permissions().mode() & 0o7777;
        let owner = format!("{}:{}", m.uid(), m.gid());
        let line = if m.file_type().is_symlink() {
            format!(
                "/{rel} link -> {}",
                std::fs::read_link(entry.path())
                    .expect("readlink")
                    .display()
            )
        } else if m.is_dir() {
            format!("/{rel} dir {mode:04o} {owner}")
        } else if m.is_file() {
            let hash = blake3::hash(&std::fs::read(entry.path()).expect("read")).to_hex();
            format!("/{rel} file {mode:04o} {owner} {} {}", m.len(), &hash[..12])
        } else if m.file_type().is_fifo() {
            format!("/{rel} fifo {mode:04o} {owner}")
        } else {
            format!("/{rel} other {mode:04o} {owner}")
        };
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// Whether this process runs as root (tests that mount or chown need it).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Makes the target root a busybox root, failing the test when this process is not root
/// or has no `/bin/busybox`. Tests that use it are ignored without feature `host-tests`
/// (`#[cfg_attr(not(feature = "host-tests"), ignore = "…")]`), so that a missing
/// dependency shows as ignored or failed, never as passed.
#[macro_export]
macro_rules! require_busybox_root {
    ($env:expr) => {
        $crate::require_root!();
        assert!(
            $env.busybox_root(),
            "needs /bin/busybox (apt-get install busybox-static; scripts/test does)"
        );
    };
}

/// Makes the target root a Debian root, failing the test when this process is not root or
/// the cached Debian root is missing (see [`require_busybox_root`]).
#[macro_export]
macro_rules! require_debian_root {
    ($env:expr) => {
        $crate::require_root!();
        assert!(
            $env.debian_root(),
            "needs the cached Debian root (run scripts/debian-root; scripts/test does)"
        );
    };
}

/// Fails the test when this process is not root (see [`require_busybox_root`]).
#[macro_export]
macro_rules! require_root {
    () => {
        assert!($crate::is_root(), "needs root (scripts/test runs as root)");
    };
}
