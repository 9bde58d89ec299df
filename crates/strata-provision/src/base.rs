//! The base OS: a Debian tree made once with debootstrap (with what the boot mode needs:
//! a kernel, its initramfs tools, systemd as init and GRUB's modules), cached as a
//! tarball and unpacked for each provisioning.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::config::{Boot, Settings};
use crate::error::ProvisionError;
use crate::run::run;

/// What the base adds to debootstrap's minimal Debian, for the machine to boot by itself.
pub fn boot_packages(boot: Boot) -> &'static [&'static str] {
    match boot {
        Boot::Bios => &[
            "systemd-sysv",
            "udev",
            "kmod",
            "initramfs-tools",
            "linux-image-amd64",
            "grub-pc-bin",
        ],
        Boot::Uefi => &[
            "systemd-sysv",
            "udev",
            "kmod",
            "initramfs-tools",
            "linux-image-amd64",
            "grub-efi-amd64-bin",
        ],
    }
}

/// The cached tarball of a base, made when missing (`progress` says so: it takes minutes
/// and needs the mirror). Provisionings sharing the cache take turns making it.
pub fn tarball(
    settings: &Settings,
    boot: Boot,
    cache: &Path,
    progress: &mut dyn FnMut(&str),
) -> Result<PathBuf, ProvisionError> {
    let dir = cache.join("provision/base");
    strata_fs::create_dir_all(&dir)?;
    let name = format!(
        "{}-{}-{}.tar",
        settings.base.distribution,
        settings.base.suite,
        match boot {
            Boot::Bios => "bios",
            Boot::Uefi => "uefi",
        }
    );
    let tar = dir.join(&name);
    if strata_fs::exists(&tar) {
        return Ok(tar);
    }
    let _lock = lock(&dir)?;
    if strata_fs::exists(&tar) {
        return Ok(tar);
    }
    // What a base being made when its provisioning was killed left (the lock is ours).
    for n in strata_fs::list_dir(&dir)? {
        if n.starts_with("base.") && strata_fs::is_dir(&dir.join(&n)) {
            strata_fs::remove_dir_all(&dir.join(&n))?;
        }
    }
    progress(&format!(
        "making the base {}:{} with debootstrap from {} (once; cached in {})",
        settings.base.distribution,
        settings.base.suite,
        settings.mirror,
        tar.display()
    ));
    let tmp = tempfile::Builder::new()
        .prefix("base.")
        .tempdir_in(&dir)
        .map_err(|e| ProvisionError::io(&dir, e))?;
    let tree = tmp.path().join("tree");
    run(Command::new("debootstrap")
        .arg("--variant=minbase")
        .arg(format!("--include={}", boot_packages(boot).join(",")))
        .arg(&settings.base.suite)
        .arg(&tree)
        .arg(&settings.mirror))?;
    for junk in ["var/cache/apt/archives", "var/lib/apt/lists"] {
        let d = tree.join(junk);
        for n in strata_fs::list_dir(&d)? {
            let p = d.join(&n);
            if n.ends_with(".deb") || (junk.ends_with("lists") && !strata_fs::is_dir(&p)) {
                strata_fs::remove_file(&p)?;
            }
        }
    }
    let part = tmp.path().join("base.tar");
    run(Command::new("tar")
        .arg("-C")
        .arg(&tree)
        .args(["--numeric-owner", "--xattrs", "-cf"])
        .arg(&part)
        .arg("."))?;
    strata_fs::rename(&part, &tar)?;
    Ok(tar)
}

/// Unpacks a base into `tree` (an empty directory).
pub fn unpack(tar: &Path, tree: &Path) -> Result<(), ProvisionError> {
    run(Command::new("tar")
        .arg("-C")
        .arg(tree)
        .args(["--numeric-owner", "--xattrs", "-xf"])
        .arg(tar))?;
    Ok(())
}

/// Waits for and takes the cache directory's lock (dropped with the descriptor).
fn lock(dir: &Path) -> Result<std::os::fd::OwnedFd, ProvisionError> {
    flock_dir(dir, false)?.ok_or_else(|| ProvisionError::Tree("lock".into()))
}

/// Takes a directory's lock; with `try_only`, None when another process holds it.
fn flock_dir(dir: &Path, try_only: bool) -> Result<Option<std::os::fd::OwnedFd>, ProvisionError> {
    use rustix::fs::{FlockOperation, Mode, OFlags, flock, open};
    let fd = open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ProvisionError::io(dir, e.into()))?;
    let op = if try_only {
        FlockOperation::NonBlockingLockExclusive
    } else {
        FlockOperation::LockExclusive
    };
    match flock(&fd, op) {
        Ok(()) => Ok(Some(fd)),
        Err(e) if try_only && e == rustix::io::Errno::WOULDBLOCK => Ok(None),
        Err(e) => Err(ProvisionError::io(dir, e.into())),
    }
}

/// Holds a work tree's lock for as long as the descriptor lives.
pub fn hold(dir: &Path) -> Result<std::os::fd::OwnedFd, ProvisionError> {
    lock(dir)
}

/// Removes the work trees that no running provisioning holds (left by one that was
/// killed: each is a whole OS tree).
pub fn remove_abandoned(work: &Path, progress: &mut dyn FnMut(&str)) -> Result<(), ProvisionError> {
    for name in strata_fs::list_dir(work)? {
        let dir = work.join(&name);
        if !name.starts_with("tree.") || !strata_fs::is_dir(&dir) {
            continue;
        }
        // A tree made this very moment is not locked yet: only older ones are looked at.
        let recent = rustix::fs::stat(&dir).is_ok_and(|st| {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            now.saturating_sub(u64::try_from(st.st_mtime).unwrap_or(0)) < 60
        });
        if recent {
            continue;
        }
        if let Some(_lock) = flock_dir(&dir, true)? {
            progress(&format!(
                "removing {}, left by a provisioning that stopped",
                dir.display()
            ));
            strata_fs::remove_dir_all(&dir)?;
        }
    }
    Ok(())
}
