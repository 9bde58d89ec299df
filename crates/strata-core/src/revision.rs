//! A site's revision, as generations and reports record it: the git commit its checkout
//! is at and whether it has changes not committed, or `none` when it is not in a git
//! checkout (or git, on the PATH, cannot say: not installed, a repository it does not
//! trust). A node's copy of a snapshot has a `.git/HEAD` naming the revision it was built
//! from, which is read directly.

use std::path::Path;
use std::process::{Command, Stdio};

/// What a generation records of the site it was applied from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Revision {
    /// The commit (`3f2a…`), a snapshot's revision (`blake3:…`), or `none`.
    pub id: String,
    /// Whether the checkout had changes not committed.
    pub dirty: bool,
}

/// The suffix a snapshot's revision carries when it was built from a dirty checkout.
pub const DIRTY_SUFFIX: &str = "+dirty";

impl Revision {
    /// No revision: the site is not a git checkout.
    pub fn none() -> Revision {
        Revision {
            id: "none".into(),
            dirty: false,
        }
    }

    /// The revision of the site at `dir`: the commit of the git checkout it is in (its
    /// own, or a repository it is a directory of), dirty when a file below `dir` has
    /// changes not committed; a node's copy of a snapshot (a `.git` with only `HEAD`)
    /// says the revision the snapshot was built from.
    pub fn of(dir: &Path) -> Revision {
        let git_dir = dir.join(".git");
        let snapshot_copy = strata_fs::exists(&git_dir.join("HEAD"))
            && !strata_fs::exists(&git_dir.join("objects"));
        if !snapshot_copy
            && let Some(commit) = git(dir, &["rev-parse", "--verify", "--quiet", "HEAD"])
        {
            let dirty = git(
                dir,
                &[
                    "status",
                    "--porcelain",
                    "--untracked-files=normal",
                    "--",
                    ".",
                ],
            )
            .is_some_and(|s| !s.is_empty());
            return Revision { id: commit, dirty };
        }
        if !snapshot_copy {
            return Revision::none();
        }
        match strata_fs::git_head(dir) {
            Some(id) => match id.strip_suffix(DIRTY_SUFFIX) {
                Some(commit) => Revision {
                    id: commit.to_string(),
                    dirty: true,
                },
                None => Revision { id, dirty: false },
            },
            None => Revision::none(),
        }
    }

    /// As a snapshot's revision carries it: the commit, with [`DIRTY_SUFFIX`] when dirty.
    pub fn to_snapshot(&self) -> String {
        match self.dirty {
            true => format!("{}{DIRTY_SUFFIX}", self.id),
            false => self.id.clone(),
        }
    }
}

/// What `git -C dir ARGS` printed, trimmed, when it succeeded.
fn git(dir: &Path, args: &[&str]) -> Option<String> {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        // A status must not take git's index lock from someone committing.
        .env("GIT_OPTIONAL_LOCKS", "0")
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    Some(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_without_git_has_no_revision() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(Revision::of(dir.path()), Revision::none());
    }

    #[test]
    fn a_broken_git_directory_has_no_revision() {
        let dir = tempfile::tempdir().unwrap();
        strata_fs::create_dir_all(&dir.path().join(".git/objects")).unwrap();
        strata_fs::write_atomic(&dir.path().join(".git/HEAD"), b"garbage\n").unwrap();
        assert_eq!(Revision::of(dir.path()), Revision::none());
    }

    #[test]
    fn a_snapshots_head_is_its_revision_and_says_dirty() {
        let dir = tempfile::tempdir().unwrap();
        strata_fs::create_dir_all(&dir.path().join(".git")).unwrap();
        strata_fs::write_atomic(&dir.path().join(".git/HEAD"), b"abc123+dirty\n").unwrap();
        let r = Revision::of(dir.path());
        assert_eq!((r.id.as_str(), r.dirty), ("abc123", true));
        strata_fs::write_atomic(&dir.path().join(".git/HEAD"), b"blake3:ff\n").unwrap();
        assert_eq!(Revision::of(dir.path()).id, "blake3:ff");
    }
}
