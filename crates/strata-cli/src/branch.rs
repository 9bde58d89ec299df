//! An environment's site taken from its git branch (`[environments] production =
//! "main"` in strata.toml): the branch's commit checked out into a private temporary
//! directory through an index of its own, so neither the user's working tree nor their
//! index is read or touched; the snapshot's revision is that commit.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use anyhow::{Context, anyhow};

/// A branch's commit, checked out; removed when dropped.
#[derive(Debug)]
pub struct BranchSite {
    /// The site's directory in the checkout (the same place in the repository as the
    /// site the command was given).
    pub site: PathBuf,
    /// The branch's commit.
    pub commit: String,
    _dir: tempfile::TempDir,
}

/// Checks out `branch` of the repository holding `site_dir`, for environment `env`.
pub fn checkout(site_dir: &Path, env: &str, branch: &str) -> anyhow::Result<BranchSite> {
    let what = || format!("environment {env} (published from git branch {branch:?})");
    let top = git(site_dir, &["rev-parse", "--show-toplevel"], None).map_err(|e| {
        anyhow!(
            "{}: the site {} is not in a git repository ({e})",
            what(),
            site_dir.display()
        )
    })?;
    let prefix = git(site_dir, &["rev-parse", "--show-prefix"], None)?;
    let commit = git(
        site_dir,
        &[
            "rev-parse",
            "--verify",
            "--quiet",
            &format!("refs/heads/{branch}^{{commit}}"),
        ],
        None,
    )
    .map_err(|_| anyhow!("{}: the repository {top} has no branch {branch:?}", what()))?;
    let dir = tempfile::Builder::new()
        .prefix("strata-branch-")
        .tempdir()
        .context("cannot make a temporary directory for a branch's checkout")?;
    let index = dir.path().join("index");
    let tree = dir.path().join("tree");
    let top = PathBuf::from(top);
    git(&top, &["read-tree", &commit], Some(&index))
        .and_then(|_| {
            let prefix_arg = format!("--prefix={}/", tree.display());
            git(
                &top,
                &["checkout-index", "--all", "--force", &prefix_arg],
                Some(&index),
            )
        })
        .with_context(|| format!("{}: cannot check out commit {commit}", what()))?;
    let site = tree.join(prefix.trim_end_matches('/'));
    if !site.join("strata.toml").is_file() {
        return Err(anyhow!(
            "{}: commit {commit} has no strata.toml at {}",
            what(),
            if prefix.is_empty() {
                "the repository's top"
            } else {
                prefix.as_str()
            }
        ));
    }
    Ok(BranchSite {
        site,
        commit,
        _dir: dir,
    })
}

/// What `git -C dir ARGS` printed, trimmed; its error output when it failed.
fn git(dir: &Path, args: &[&str], index: Option<&Path>) -> anyhow::Result<String> {
    let mut cmd = Command::new("git");
    cmd.arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_OPTIONAL_LOCKS", "0")
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .stdin(Stdio::null());
    match index {
        Some(i) => cmd.env("GIT_INDEX_FILE", i),
        None => cmd.env_remove("GIT_INDEX_FILE"),
    };
    let out = cmd
        .output()
        .context("cannot run git (it must be on the PATH)")?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        return Err(anyhow!(
            "git {}: {}",
            args.first().unwrap_or(&""),
            crate::printer::clean(err.trim())
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
