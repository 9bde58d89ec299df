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

/// A base tarball fetched as it is unpacked (the netboot initrd's, from the server):
/// `open` starts the download; the bytes must hash to `blake3` (hex), pinned when the
/// initrd was built.
pub struct Streamed<'a> {
    /// Where it comes from, for messages.
    pub from: String,
    /// Starts reading it.
    pub open: &'a dyn Fn() -> Result<Box<dyn std::io::Read + 'a>, String>,
    /// Its blake3, in hex.
    pub blake3: String,
}

impl std::fmt::Debug for Streamed<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Streamed")
            .field("from", &self.from)
            .field("blake3", &self.blake3)
            .finish_non_exhaustive()
    }
}

/// Unpacks a streamed base into `tree` (an empty directory) as it arrives, hashing it on
/// the way: it is never held whole, in memory or on disk. Its hash is checked once tar
/// has read the end and before anything of the tree is used (nothing in the tree runs
/// and nothing reaches the disk until then); a mismatch is an error, and the caller's
/// temporary tree goes with it.
pub fn unpack_streamed(base: &Streamed<'_>, tree: &Path) -> Result<u64, ProvisionError> {
    use std::io::{Read, Write};
    let mut input =
        (base.open)().map_err(|e| ProvisionError::Tree(format!("{}: {e}", base.from)))?;
    let mut tar = Command::new("tar")
        .arg("-C")
        .arg(tree)
        .args(["--numeric-owner", "--xattrs", "-xf", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| ProvisionError::Program {
            program: "tar".into(),
            status: e.to_string(),
            output: String::new(),
        })?;
    let mut stdin = tar.stdin.take().expect("piped");
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    let copied: Result<(), String> = loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(format!("{}: {e}", base.from)),
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        if let Err(e) = stdin.write_all(&buf[..n]) {
            break Err(format!("tar stopped reading the base: {e}"));
        }
    };
    drop(stdin);
    let out = tar
        .wait_with_output()
        .map_err(|e| ProvisionError::io(tree, e))?;
    if !out.status.success() {
        return Err(ProvisionError::Program {
            program: "tar".into(),
            status: out.status.to_string(),
            output: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    copied.map_err(ProvisionError::Tree)?;
    let got = hasher.finalize().to_hex().to_string();
    if got != base.blake3 {
        return Err(ProvisionError::Tree(format!(
            "{}: the base is not the one `netboot build` pinned ({total} bytes, blake3 {got}; \
             expected {}): nothing was written to the disk",
            base.from, base.blake3
        )));
    }
    Ok(total)
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

#[cfg(test)]
mod tests {
    use std::io::Read;

    use super::*;

    /// A tarball of one file, made by tar.
    fn tarball(dir: &Path) -> Vec<u8> {
        let src = dir.join("src");
        strata_fs::create_dir_all(&src.join("etc")).unwrap();
        strata_fs::write_atomic(&src.join("etc/hostname"), b"base\n").unwrap();
        let out = run(Command::new("tar")
            .arg("-C")
            .arg(&src)
            .args(["-cf", "-", "."]))
        .unwrap();
        assert!(!out.is_empty());
        out
    }

    #[test]
    fn a_streamed_base_is_unpacked_only_when_its_hash_is_the_pinned_one() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = tarball(dir.path());
        let open = || -> Result<Box<dyn std::io::Read>, String> {
            Ok(Box::new(std::io::Cursor::new(bytes.clone())))
        };
        let good = blake3::hash(&bytes).to_hex().to_string();
        let tree = dir.path().join("good");
        strata_fs::create_dir_all(&tree).unwrap();
        let base = Streamed {
            from: "http://s/boot/base.tar".into(),
            open: &open,
            blake3: good.clone(),
        };
        assert_eq!(unpack_streamed(&base, &tree).unwrap(), bytes.len() as u64);
        assert_eq!(
            strata_fs::read(&tree.join("etc/hostname")).unwrap(),
            b"base\n"
        );
        // Another base: an error naming both hashes.
        let tree = dir.path().join("bad");
        strata_fs::create_dir_all(&tree).unwrap();
        let base = Streamed {
            blake3: "0".repeat(64),
            ..base
        };
        let e = unpack_streamed(&base, &tree).unwrap_err().to_string();
        assert!(
            e.contains("not the one `netboot build` pinned") && e.contains(&good),
            "{e}"
        );
        // A download that fails halfway is an error too, whatever the hash.
        let cut = || -> Result<Box<dyn std::io::Read>, String> {
            Ok(Box::new(
                std::io::Cursor::new(bytes[..bytes.len() / 2].to_vec()).chain(Failing),
            ))
        };
        let base = Streamed {
            from: "http://s/boot/base.tar".into(),
            open: &cut,
            blake3: good,
        };
        let tree = dir.path().join("cut");
        strata_fs::create_dir_all(&tree).unwrap();
        assert!(unpack_streamed(&base, &tree).is_err());
    }

    /// A reader whose connection drops.
    struct Failing;

    impl Read for Failing {
        fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
            Err(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "connection reset",
            ))
        }
    }
}
