//! The catalog: a node's full desired state, as a compile (crate::compile) makes it. Every
//! path with its metadata and rendered content, each module's part in the sandbox run,
//! the parameters, and what to purge.

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::PathBuf;

use strata_types::{ContentSource, Entry, Hash, Snapshot, Step, TargetPath};

use crate::compiled::{Compiled, Lazy};
use crate::error::{SiteError, SiteErrors};
use crate::params::ParamTree;
use crate::purge::Purge;
use crate::resources::Declared;
use crate::site::NodeInfo;

/// What kind of object a resource is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// A regular file with this content.
    File {
        /// Content hash (the bytes are in [`Catalog::contents`]).
        hash: Hash,
        /// Content size.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link.
    Link {
        /// Where it points.
        target: String,
    },
    /// A file whose content an executable template prints (it runs in the sandbox).
    Exec {
        /// The executable template in the site.
        program: PathBuf,
    },
    /// A file strata fetches, pinned by its SHA-256.
    Download {
        /// Where from (`https://`, or `http://`).
        url: String,
        /// The SHA-256 of its content, lowercase hex.
        sha256: String,
        /// Its size in bytes, when the site declares it.
        size: Option<u64>,
    },
}

impl Resource {
    /// A path a module declares in its `module.toml`: mode, owner and group (root when
    /// not given).
    pub(crate) fn declared(
        path: TargetPath,
        kind: ResourceKind,
        (mode, owner, group): (u32, &Option<String>, &Option<String>),
        module: &str,
        source: String,
    ) -> Resource {
        Resource {
            path,
            kind,
            mode,
            owner: owner.clone().unwrap_or_else(|| "root".into()),
            group: group.clone().unwrap_or_else(|| "root".into()),
            replace: true,
            module: module.to_string(),
            source,
            sensitive: false,
        }
    }

    /// The owner and group ids on the target, from its own users and groups.
    pub fn ids(&self, users: &crate::UserDb) -> Result<(u32, u32), SiteError> {
        let (uid, gid) = (users.uid(&self.owner), users.gid(&self.group));
        let (Some(uid), Some(gid)) = (uid, gid) else {
            let (what, name, file) = if uid.is_none() {
                ("user", &self.owner, "/etc/passwd")
            } else {
                ("group", &self.group, "/etc/group")
            };
            return Err(SiteError::in_file(
                self.source.clone(),
                format!(
                    "{what} `{name}` (for {}, module {}) does not exist on the target: not in its {file}",
                    self.path, self.module
                ),
            ));
        };
        Ok((uid, gid))
    }
}

/// A module's part in a sandbox run, in application order.
#[derive(Debug, Clone)]
pub struct ModuleRun {
    /// `name@version`.
    pub id: String,
    /// Its scripts, in lexical order.
    pub scripts: Vec<ScriptDecl>,
    /// Each script's (and executable template's) time limit.
    pub timeout: std::time::Duration,
    /// `plan_network = true`: its scripts may use the network in a plan.
    pub plan_network: bool,
    /// Its packages, groups, users, services and lines.
    pub declared: Declared,
    /// A digest of what its sandbox steps depend on (declarations and scripts).
    pub digest: String,
    /// The secrets its scripts read (`secrets = [...]` in module.toml), with their values.
    pub secrets: Vec<ScriptSecret>,
}

/// A secret a module's scripts see as `STRATA_SECRET_<NAME>`.
#[derive(Debug, Clone)]
pub struct ScriptSecret {
    /// The secret's name.
    pub name: String,
    /// Its value (which never prints).
    pub value: crate::SecretValue,
}

/// One script of a module.
#[derive(Debug, Clone)]
pub struct ScriptDecl {
    /// `scripts/10-config.sh`.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
}

/// How long a script may run unless its module says otherwise.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// One path the catalog declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The path on the node.
    pub path: TargetPath,
    /// File, directory or link.
    pub kind: ResourceKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner name (or numeric id).
    pub owner: String,
    /// Group name (or numeric id).
    pub group: String,
    /// `false`: create when missing, never overwrite.
    pub replace: bool,
    /// The declaring module (`nginx@1.2`).
    pub module: String,
    /// The site file it comes from.
    pub source: String,
    /// Whether its content came from a secret.
    pub sensitive: bool,
}

/// A node's desired state.
#[derive(Debug)]
pub struct Catalog {
    /// The node as templates saw it.
    pub node: NodeInfo,
    /// The resolved parameters.
    pub params: ParamTree,
    /// Each module in application order: its id, scripts and their settings.
    pub runs: Vec<ModuleRun>,
    /// Every declared path, in path order.
    pub resources: Vec<Resource>,
    /// Content by hash (what was read and rendered).
    pub contents: HashMap<Hash, Vec<u8>>,
    /// Content by hash that is loaded only when asked for (files found unchanged).
    pub lazy: Lazy,
    /// What to remember of the site's files for the next compile: when asked to, and only
    /// when it differs from what the compile started from.
    pub compiled: Option<Compiled>,
    /// Metrics of the compile's own sub-steps (one per rendered template).
    pub steps: Vec<Step>,
    /// Directories whose undeclared entries are removed (`[[dir]] purge = true`).
    pub purges: Vec<Purge>,
}

/// Every content of the catalog: what was read, else loaded on demand.
impl ContentSource for Catalog {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        match self.contents.get(hash) {
            Some(c) => Some(Cow::Borrowed(c)),
            None => self.lazy.content(hash),
        }
    }
}

impl Catalog {
    /// The catalog's paths as generation entries, with owners resolved against the
    /// target's own users and groups.
    pub fn entries(&self, users: &crate::UserDb) -> Result<Vec<Entry>, SiteErrors> {
        let mut out = Vec::with_capacity(self.resources.len());
        let mut errors = Vec::new();
        for r in &self.resources {
            let (uid, gid) = match r.ids(users) {
                Ok(ids) => ids,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let state = match &r.kind {
                ResourceKind::File { hash, size } => Snapshot::File {
                    hash: *hash,
                    size: *size,
                    mode: r.mode,
                    uid,
                    gid,
                    xattrs: Default::default(),
                },
                ResourceKind::Dir => Snapshot::Dir {
                    mode: r.mode,
                    uid,
                    gid,
                    xattrs: Default::default(),
                },
                ResourceKind::Link { target } => Snapshot::Link {
                    target: target.clone(),
                    uid,
                    gid,
                },
                // Its content is known only once it ran in the sandbox.
                ResourceKind::Exec { .. } | ResourceKind::Download { .. } => continue,
            };
            out.push(Entry {
                path: r.path.clone(),
                state,
                replace: r.replace,
                implicit: false,
                sensitive: r.sensitive,
                observed: false,
                module: Some(r.module.clone()),
                source: Some(r.source.clone()),
            });
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(SiteErrors(errors))
        }
    }
}
