//! Writes into the new tree that never go through a symbolic link: once the node's catalog
//! is applied the tree is the site's, and a link at `/boot/grub` (to a directory of this
//! machine) must not take GRUB's files out of it. Each directory is opened component by
//! component with `O_NOFOLLOW` from a handle on the tree, and a file is created with
//! `O_EXCL | O_NOFOLLOW` after what stood at its name is unlinked.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Mode, OFlags, mkdirat, openat, unlinkat};
use rustix::io::Errno;

use crate::error::ProvisionError;

/// A directory of the tree, reached without following a link.
#[derive(Debug)]
pub struct TreeDir {
    fd: OwnedFd,
    /// The directory as the node sees it (`/boot/grub`), for messages.
    shown: String,
    /// The directory on this machine, for I/O errors.
    path: PathBuf,
}

/// Opens the directory `rel` (`boot/grub`) of `tree`, making what is missing (0755);
/// refuses, naming it, a component that is a symbolic link or not a directory.
pub fn dir(tree: &Path, rel: &str) -> Result<TreeDir, ProvisionError> {
    let open = |at: &dyn rustix::fd::AsFd, name: &Path| {
        openat(
            at,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
    };
    let mut fd = open(&rustix::fs::CWD, tree).map_err(|e| ProvisionError::io(tree, e.into()))?;
    let mut shown = String::new();
    let mut path = tree.to_path_buf();
    for part in rel.split('/').filter(|p| !p.is_empty()) {
        shown.push('/');
        shown.push_str(part);
        path.push(part);
        let next = match open(&fd, Path::new(part)) {
            Err(Errno::NOENT) => {
                match mkdirat(&fd, part, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => return Err(ProvisionError::io(&path, e.into())),
                }
                open(&fd, Path::new(part))
            }
            other => other,
        };
        fd = match next {
            Ok(fd) => fd,
            Err(Errno::LOOP | Errno::NOTDIR) => return Err(not_a_dir(&fd, part, &shown)),
            Err(e) => return Err(ProvisionError::io(&path, e.into())),
        };
    }
    Ok(TreeDir { fd, shown, path })
}

/// The error for `name` in `parent`, which is a link or not a directory.
fn not_a_dir(parent: &OwnedFd, name: &str, shown: &str) -> ProvisionError {
    let what = match rustix::fs::readlinkat(parent, name, Vec::new()) {
        Ok(to) => format!("a symbolic link (to {})", to.to_string_lossy()),
        Err(_) => "not a directory".to_string(),
    };
    ProvisionError::Tree(format!(
        "{shown} in the new tree is {what}: strata provision writes the boot loader's files \
         only into a real directory of the tree (the node's catalog must not replace it)"
    ))
}

impl TreeDir {
    /// Writes the file `name` in this directory with `mode`, replacing what stood there
    /// (a link is removed, never followed; a directory is refused).
    pub fn write(&self, name: &str, content: &[u8], mode: u32) -> Result<(), ProvisionError> {
        let path = self.path.join(name);
        let create = || {
            openat(
                &self.fd,
                name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        let fd = match create() {
            Err(Errno::EXIST) => {
                unlinkat(&self.fd, name, AtFlags::empty()).map_err(|e| {
                    if e == Errno::ISDIR {
                        ProvisionError::Tree(format!(
                            "{}/{name} in the new tree is a directory where the boot loader \
                             writes a file",
                            self.shown
                        ))
                    } else {
                        ProvisionError::io(&path, e.into())
                    }
                })?;
                create()
            }
            other => other,
        }
        .map_err(|e| ProvisionError::io(&path, e.into()))?;
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
            .map_err(|e| ProvisionError::io(&path, e.into()))?;
        let mut rest = content;
        while !rest.is_empty() {
            match rustix::io::write(&fd, rest) {
                Ok(0) => {
                    return Err(ProvisionError::io(
                        &path,
                        std::io::ErrorKind::WriteZero.into(),
                    ));
                }
                Ok(n) => rest = &rest[n..],
                Err(Errno::INTR) => {}
                Err(e) => return Err(ProvisionError::io(&path, e.into())),
            }
        }
        Ok(())
    }

    /// Reads the file `name` of this directory (a link is refused, not followed).
    pub fn read(&self, name: &str) -> Result<Vec<u8>, ProvisionError> {
        let path = self.path.join(name);
        let fd = openat(
            &self.fd,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| ProvisionError::io(&path, e.into()))?;
        let mut out = Vec::new();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match rustix::io::read(&fd, &mut buf) {
                Ok(0) => return Ok(out),
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(Errno::INTR) => {}
                Err(e) => return Err(ProvisionError::io(&path, e.into())),
            }
        }
    }

    /// Removes the file `name` of this directory, if there.
    pub fn remove(&self, name: &str) -> Result<(), ProvisionError> {
        match unlinkat(&self.fd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => Ok(()),
            Err(e) => Err(ProvisionError::io(&self.path.join(name), e.into())),
        }
    }
}

/// Writes the file `rel` (`etc/fstab`) of `tree` with `mode`, through no link (see
/// [`dir`] and [`TreeDir::write`]).
pub fn write_tree_file(
    tree: &Path,
    rel: &str,
    content: &[u8],
    mode: u32,
) -> Result<(), ProvisionError> {
    let rel = rel.trim_start_matches('/');
    let (parent, name) = rel.rsplit_once('/').unwrap_or(("", rel));
    dir(tree, parent)?.write(name, content, mode)
}

#[cfg(test)]
#[allow(
    clippy::disallowed_methods,
    reason = "the tests set up their trees by hand"
)]
mod tests {
    use super::*;

    #[test]
    fn a_link_on_the_way_or_at_the_file_is_never_followed() {
        let t = tempfile::tempdir().unwrap();
        let tree = t.path().join("tree");
        let host = t.path().join("host");
        std::fs::create_dir_all(tree.join("boot")).unwrap();
        std::fs::create_dir_all(&host).unwrap();
        std::fs::write(host.join("grub.cfg"), "host's own\n").unwrap();
        // A directory link: refused, naming it and where it leads.
        std::os::unix::fs::symlink(&host, tree.join("boot/grub")).unwrap();
        let e = write_tree_file(&tree, "boot/grub/grub.cfg", b"x", 0o644)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("/boot/grub in the new tree is a symbolic link")
                && e.contains(&host.display().to_string()),
            "{e}"
        );
        // A file where a directory must be: refused.
        std::fs::remove_file(tree.join("boot/grub")).unwrap();
        std::fs::write(tree.join("boot/grub"), "").unwrap();
        let e = dir(&tree, "boot/grub/i386-pc").unwrap_err().to_string();
        assert!(
            e.contains("/boot/grub in the new tree is not a directory"),
            "{e}"
        );
        // A link at the file itself: replaced, the host's file untouched.
        std::fs::remove_file(tree.join("boot/grub")).unwrap();
        std::fs::create_dir(tree.join("boot/grub")).unwrap();
        std::os::unix::fs::symlink(host.join("grub.cfg"), tree.join("boot/grub/grub.cfg")).unwrap();
        write_tree_file(&tree, "boot/grub/grub.cfg", b"menu\n", 0o644).unwrap();
        assert_eq!(
            std::fs::read_to_string(host.join("grub.cfg")).unwrap(),
            "host's own\n"
        );
        assert_eq!(
            std::fs::read_to_string(tree.join("boot/grub/grub.cfg")).unwrap(),
            "menu\n"
        );
        // Missing directories are made.
        write_tree_file(&tree, "etc/new/fstab", b"f", 0o600).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(tree.join("etc/new/fstab"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o7777, 0o600);
    }
}
