//! The site's hooks: `hooks/<event>.d/*`, executables run on the node around an apply
//! (docs/drift.md). This module only finds them; the engine runs them.

use std::path::{Path, PathBuf};

use strata_fs::FsError;

/// When a hook runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum HookEvent {
    /// Before an apply commits: a failing hook aborts it, nothing committed.
    PreApply,
    /// After an apply committed.
    PostApply,
    /// After an apply failed.
    OnFailure,
    /// When drift was found (`agent --watch`).
    OnDrift,
}

impl HookEvent {
    /// Every event, in the order of an apply.
    pub const ALL: [HookEvent; 4] = [
        HookEvent::PreApply,
        HookEvent::PostApply,
        HookEvent::OnFailure,
        HookEvent::OnDrift,
    ];

    /// `pre-apply`, `post-apply`, `on-failure`, `on-drift`.
    pub fn as_str(self) -> &'static str {
        match self {
            HookEvent::PreApply => "pre-apply",
            HookEvent::PostApply => "post-apply",
            HookEvent::OnFailure => "on-failure",
            HookEvent::OnDrift => "on-drift",
        }
    }
}

/// One hook of a site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hook {
    /// When it runs.
    pub event: HookEvent,
    /// Its name in the site: `hooks/pre-apply.d/10-check`.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
}

/// The hooks of `event` in the site at `site`, in lexical order: the executable files of
/// `hooks/<event>.d/`, hidden files, `~` backups, directories and files without an
/// execute bit left out (as run-parts does). A missing directory has none.
pub fn hooks(site: &Path, event: HookEvent) -> Result<Vec<Hook>, FsError> {
    let rel = format!("hooks/{}.d", event.as_str());
    let dir = site.join(&rel);
    let mut out = Vec::new();
    for name in strata_fs::list_dir(&dir)? {
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let path = dir.join(&name);
        if strata_fs::is_dir(&path) {
            continue;
        }
        let (_, mode) = strata_fs::stat_key(&path)?;
        if mode & 0o111 == 0 {
            continue;
        }
        out.push(Hook {
            event,
            name: format!("{rel}/{name}"),
            path,
        });
    }
    Ok(out)
}
