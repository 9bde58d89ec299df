//! The outer helper: runs in the new mount namespace (but still in the caller's PID
//! namespace), builds the overlay and everything mounted inside it, then starts init.

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use rustix::mount::{MountFlags, MountPropagationFlags};
use strata_types::{Hash, Meta, Snapshot, TargetPath};

use crate::helper_error::{HelperError, Result};
use crate::mounts::{Layer, Show};
use crate::{HELPER_ARG, INTERCEPTED, Spec, shim, sys};

/// The sandbox's own directories, in the caller's work dir.
pub struct Dirs {
    pub upper: PathBuf,
    pub merged: PathBuf,
}

/// Where the helpers find things.
pub fn dirs(spec: &Spec) -> Dirs {
    let base = spec.work.join("sb");
    Dirs {
        upper: base.join("upper"),
        merged: base.join("merged"),
    }
}

/// The directories mounted over inside the merged tree: created in the overlay when the
/// target lacks them, and never reported.
pub const MOUNT_POINTS: &[&str] = &["/proc", "/dev", "/sys", "/run", "/tmp"];

fn mount(src: &str, target: &Path, fstype: &str, flags: MountFlags, data: &str) -> Result<()> {
    let data = std::ffi::CString::new(data).map_err(|e| e.to_string())?;
    rustix::mount::mount(src, target, fstype, flags, Some(data.as_c_str())).map_err(
        HelperError::sys(format!("mount {fstype} on {}", target.display())),
    )
}

fn bind(src: &Path, target: &Path) -> Result<()> {
    rustix::mount::mount_bind(src, target).map_err(HelperError::sys(format!(
        "bind {} on {}",
        src.display(),
        target.display()
    )))
}

/// Binds `src` on `target` read-only, without set-user-id or devices: what scripts must
/// use but never change (a bind of a host inode would let root inside change it).
fn bind_ro(src: &Path, target: &Path, dev: bool) -> Result<()> {
    bind(src, target)?;
    let mut flags = MountFlags::BIND | MountFlags::RDONLY | MountFlags::NOSUID;
    if !dev {
        flags |= MountFlags::NODEV;
    }
    rustix::mount::mount_remount(target, flags, "").map_err(read_only(target))
}

/// For `map_err`: making `target` read-only failed.
fn read_only(target: &Path) -> impl FnOnce(rustix::io::Errno) -> HelperError {
    HelperError::sys(format!("make {} read-only", target.display()))
}

/// Sets everything up and runs init; returns init's exit code.
pub fn main(spec: &Spec) -> Result<i32> {
    sys::die_with_parent().map_err(HelperError::sys("parent-death signal"))?;
    build(spec)?;
    let exe = std::env::current_exe().map_err(HelperError::sys("own executable"))?;
    let spec_path = spec.work.join("spec.json");
    let mut cmd = Command::new(exe);
    cmd.arg(HELPER_ARG).arg("init").arg(&spec_path);
    // SAFETY: prctl and getppid are async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            sys::cloexec_from(3)?;
            sys::die_with_parent()
        });
    }
    let status = cmd.status().map_err(HelperError::sys("start init"))?;
    Ok(status.code().unwrap_or(1))
}

/// The run's name (its work dir's), which its cgroup also has.
pub fn run_name(spec: &Spec) -> String {
    spec.work
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// Everything mounted before init starts. (Long: the mounts in the order the kernel
/// needs them, each a line or two.)
fn build(spec: &Spec) -> Result<()> {
    rustix::mount::mount_change(
        "/",
        MountPropagationFlags::REC | MountPropagationFlags::PRIVATE,
    )
    .map_err(HelperError::sys("make mounts private"))?;
    let base = spec.work.join("sb");
    std::fs::create_dir_all(&base).map_err(HelperError::io("create", &base))?;
    let size = spec
        .limits
        .scratch
        .map(|b| format!(",size={b}"))
        .unwrap_or_default();
    mount(
        "tmpfs",
        &base,
        "tmpfs",
        MountFlags::empty(),
        &format!("mode=0700{size}"),
    )?;
    let d = dirs(spec);
    let work = base.join("work");
    for dir in [&d.upper, &d.merged, &work] {
        std::fs::create_dir(dir).map_err(HelperError::io("create", dir))?;
    }
    // No device nodes and no set-user-id programs of the target's take effect inside.
    let nosuid = MountFlags::NOSUID | MountFlags::NODEV;
    overlay(&spec.root, &d.upper, &work, &d.merged, nosuid)?;
    let m = &d.merged;
    let mut layers = vec![Layer {
        at: TargetPath::root(),
        upper: d.upper.clone(),
    }];
    // Every file system mounted inside the target, parents first, at its place.
    let subs = crate::submounts(spec).map_err(|e| e.to_string())?;
    for (i, sub) in subs.iter().enumerate() {
        let at = m.join(sub.at.relative());
        match sub.how {
            // A file mounted on a file (a container's /etc/hosts) cannot be an overlay's
            // layer: it is shown read-only.
            Show::Overlay if sub.host.is_dir() => {
                let dir = base.join("layers").join(i.to_string());
                let (upper, work) = (dir.join("upper"), dir.join("work"));
                for d in [&upper, &work] {
                    std::fs::create_dir_all(d).map_err(HelperError::io("create", d))?;
                }
                overlay(&sub.host, &upper, &work, &at, nosuid)?;
                layers.push(Layer {
                    at: sub.at.clone(),
                    upper,
                });
            }
            Show::Overlay | Show::ReadOnly | Show::Unobserved => {
                bind(&sub.host, &at)?;
                rustix::mount::mount_remount(
                    &at,
                    MountFlags::BIND | MountFlags::RDONLY | nosuid,
                    "",
                )
                .map_err(read_only(&at))?;
            }
        }
    }
    let path = layers_file(spec);
    let json = serde_json::to_vec(&layers).map_err(|source| HelperError::Json {
        path: path.clone(),
        source,
    })?;
    write(&path, &json, 0o600)?;
    for point in MOUNT_POINTS {
        let dir = m.join(&point[1..]);
        if !dir.is_dir() {
            std::fs::create_dir_all(&dir).map_err(HelperError::io("create", &dir))?;
        }
    }
    mount("tmpfs", &m.join("run"), "tmpfs", nosuid, "mode=0755")?;
    mount("tmpfs", &m.join("tmp"), "tmpfs", nosuid, "mode=1777")?;
    minimal_dev(&m.join("dev"))?;
    // A sysfs of its own, read-only, without the host's mounts under /sys (cgroups,
    // debugfs, securityfs…), which a recursive bind would bring in writable.
    mount(
        "sysfs",
        &m.join("sys"),
        "sysfs",
        MountFlags::RDONLY | MountFlags::NOEXEC | nosuid,
        "",
    )?;
    // strata's own directory: built here, seen read-only inside (scripts can neither
    // replace the shims nor the call channel), written by init through `own`.
    let own = own_dir(spec);
    for sub in ["shims", "real", "programs", "cache"] {
        std::fs::create_dir_all(own.join(sub)).map_err(HelperError::io("create", &own))?;
    }
    let calls = own.join("calls");
    rustix::fs::mkfifoat(
        rustix::fs::CWD,
        &calls,
        rustix::fs::Mode::from_raw_mode(0o600),
    )
    .map_err(HelperError::sys(format!(
        "make the call channel {}",
        calls.display()
    )))?;
    write(&own.join("params.json"), spec.params_json.as_bytes(), 0o600)?;
    shims(spec, m, &own)?;
    let inside = m.join("run/strata");
    std::fs::create_dir_all(&inside).map_err(HelperError::io("create", &inside))?;
    rustix::mount::mount_bind_recursive(&own, &inside).map_err(HelperError::sys(format!(
        "bind {} on {}",
        own.display(),
        inside.display()
    )))?;
    rustix::mount::mount_remount(&inside, MountFlags::BIND | MountFlags::RDONLY | nosuid, "")
        .map_err(read_only(&inside))?;
    if let Some(cache) = &spec.cache {
        // Bound per program, for strata's own package programs only (see `jail`).
        std::fs::create_dir_all(cache).map_err(HelperError::io("create", cache))?;
        std::fs::set_permissions(cache, std::fs::Permissions::from_mode(0o700))
            .map_err(HelperError::io("chmod", cache))?;
    }
    rustix::system::sethostname(spec.hostname.as_bytes()).map_err(HelperError::sys("set host name"))
}

/// Mounts an overlay of `lower` at `at`, its upper dir showing `lower`'s own owner and
/// mode at the top (an overlay's root takes its upper dir's).
fn overlay(lower: &Path, upper: &Path, work: &Path, at: &Path, flags: MountFlags) -> Result<()> {
    for p in [lower, upper, work] {
        let s = p.to_string_lossy();
        if s.contains([',', ':', '\\']) {
            return Err(format!(
                "{s}: overlayfs cannot take a path with `,`, `:` or `\\` as a layer"
            )
            .into());
        }
    }
    let md = std::fs::metadata(lower).map_err(HelperError::io("inspect", lower))?;
    std::os::unix::fs::chown(upper, Some(md.uid()), Some(md.gid()))
        .map_err(HelperError::io("chown", upper))?;
    std::fs::set_permissions(upper, std::fs::Permissions::from_mode(md.mode() & 0o7777))
        .map_err(HelperError::io("chmod", upper))?;
    mount(
        "overlay",
        at,
        "overlay",
        flags,
        &format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            upper.display(),
            work.display()
        ),
    )
}

/// Where outer tells init the overlay layers it mounted.
fn layers_file(spec: &Spec) -> PathBuf {
    spec.work.join("sb/layers.json")
}

/// The overlay layers of the run, the root's first.
pub fn layers(spec: &Spec) -> Result<Vec<Layer>> {
    let path = layers_file(spec);
    let bytes = std::fs::read(&path).map_err(HelperError::io("read", &path))?;
    serde_json::from_slice(&bytes).map_err(|source| HelperError::Json { path, source })
}

/// strata's own directory for the run (`/run/strata` inside), as the helpers reach it.
pub fn own_dir(spec: &Spec) -> PathBuf {
    spec.work.join("sb/strata")
}

fn write(path: &Path, content: &[u8], mode: u32) -> Result<()> {
    strata_fs::write_private(path, content)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(HelperError::io("chmod", path))
}

/// A tmpfs `/dev` with the harmless devices bound from the host.
fn minimal_dev(dev: &Path) -> Result<()> {
    mount(
        "tmpfs",
        dev,
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC,
        "mode=0755",
    )?;
    for name in ["null", "zero", "full", "random", "urandom", "tty"] {
        let target = dev.join(name);
        write(&target, b"", 0o666)?;
        // Read-only binds: the devices still read and write, but their owner, mode and
        // times (the host's own inodes) cannot be changed.
        bind_ro(&Path::new("/dev").join(name), &target, true)?;
    }
    for sub in ["pts", "shm"] {
        std::fs::create_dir(dev.join(sub)).map_err(HelperError::io("create", dev))?;
    }
    mount(
        "tmpfs",
        &dev.join("shm"),
        "tmpfs",
        MountFlags::NOSUID | MountFlags::NODEV,
        "mode=1777",
    )?;
    for (name, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, dev.join(name)).map_err(HelperError::io("link", dev))?;
    }
    Ok(())
}

/// Puts a shim on `PATH` (`/run/strata/shims`) for every intercepted command, and over
/// the real command wherever it exists in the tree, so absolute paths are caught too: a
/// regular file gets the shim bound over it; a symbolic link (often to a multi-call binary
/// such as busybox or systemctl, which must keep working under its other names) is
/// replaced by the shim in the overlay, and that replacement is never reported.
fn shims(spec: &Spec, merged: &Path, own: &Path) -> Result<()> {
    let tree = strata_fs::Root::open(merged)?;
    let names = INTERCEPTED
        .iter()
        .map(|s| s.to_string())
        .chain(spec.intercept.iter().cloned());
    let mut replaced = String::new();
    for name in names {
        let base = name.rsplit('/').next().unwrap_or(&name).to_string();
        let candidates: Vec<String> = if name.starts_with('/') {
            vec![name.clone()]
        } else {
            crate::BIN_DIRS
                .iter()
                .map(|d| format!("{d}/{name}"))
                .collect()
        };
        let mut files: Vec<TargetPath> = Vec::new();
        let mut links: Vec<TargetPath> = Vec::new();
        let mut real: Option<TargetPath> = None;
        for c in candidates {
            let Ok(p) = TargetPath::parse(&c) else {
                continue;
            };
            let Ok(Some(resolved)) = tree.resolve(&p) else {
                continue;
            };
            if !merged.join(resolved.relative()).is_file() {
                continue;
            }
            real.get_or_insert(resolved.clone());
            // The link itself, where the path's directories lead.
            let parent = p.parent().and_then(|d| tree.resolve(&d).ok().flatten());
            let at = parent.and_then(|d| d.join(p.file_name()).ok());
            match at {
                Some(at) if matches!(tree.inspect(&at), Ok(Snapshot::Link { .. })) => {
                    if !links.contains(&at) {
                        links.push(at);
                    }
                }
                _ => {
                    if !files.contains(&resolved) {
                        files.push(resolved);
                    }
                }
            }
        }
        let real_copy = own.join("real").join(&base);
        if let Some(r) = &real {
            write(&real_copy, b"", 0o755)?;
            bind_ro(&merged.join(r.relative()), &real_copy, false)?;
        }
        let text = shim::script(&name, real.is_some());
        let shim = own.join("shims").join(&base);
        write(&shim, text.as_bytes(), 0o755)?;
        for f in files {
            bind_ro(&shim, &merged.join(f.relative()), false)?;
        }
        for l in links {
            let dir = l.parent().unwrap_or_else(TargetPath::root);
            tree.write_file_in(&dir, l.file_name(), text.as_bytes(), Meta::root(0o755))?;
            replaced.push_str(&format!("{} {}\n", l, Hash::of(text.as_bytes())));
        }
    }
    let list = spec.work.join("sb/shimmed");
    std::fs::write(&list, replaced).map_err(HelperError::io("write", &list))
}

/// The links the shims replaced in the overlay, with the shim's hash: the observation
/// skips them while they still hold the shim.
pub fn shimmed(spec: &Spec) -> std::collections::BTreeMap<TargetPath, Hash> {
    std::fs::read_to_string(spec.work.join("sb/shimmed"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (p, h) = l.split_once(' ')?;
            Some((
                TargetPath::parse(p).ok()?,
                Hash::try_from(h.to_string()).ok()?,
            ))
        })
        .collect()
}
