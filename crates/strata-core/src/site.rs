//! The site tree: its settings, nodes, groups, roles and modules, read from disk (how the
//! roles and modules are versioned is in `versions`).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use strata_types::NodeName;
use toml::Spanned;

use crate::error::{SiteError, SiteErrors};
use crate::settings::{SandboxSettings, SiteToml, StateSettings};
use crate::tomlfile::{self, TomlFile};
use crate::versions::{Ref, Versions, find, index_modules, index_roles};

/// `nodes/<node>.toml`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NodeToml {
    pub environment: Option<Spanned<String>>,
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub modules: Vec<Spanned<String>>,
    #[serde(default)]
    pub params: toml::Table,
    #[serde(default)]
    pub ssh: crate::fleet::SshSettings,
    #[serde(default)]
    pub keys: crate::fleet::NodeKeys,
}

/// `groups/<group>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct GroupToml {
    /// Each parsed as it is read: a name that is not a node's is an error at its line.
    #[serde(default)]
    pub nodes: Vec<Spanned<NodeName>>,
    #[serde(default)]
    pub groups: Vec<Spanned<String>>,
    #[serde(default)]
    pub roles: Vec<Spanned<String>>,
    #[serde(default)]
    pub modules: Vec<Spanned<String>>,
    #[serde(default)]
    pub params: toml::Table,
}

/// `roles/<role>.toml` or `roles/<role>/<version>.toml`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RoleToml {
    #[allow(dead_code)]
    pub description: Option<String>,
    #[serde(default)]
    pub modules: Vec<Spanned<String>>,
    #[serde(default)]
    pub params: toml::Table,
}

/// A node's place in the site: its name, environment, roles and groups, as templates see
/// them (`node.*`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct NodeInfo {
    /// The node's name.
    pub name: String,
    /// Its environment.
    pub environment: String,
    /// Its roles (`name@version`).
    pub roles: Vec<String>,
    /// The groups it belongs to, least specific first.
    pub groups: Vec<String>,
}

/// A site directory, opened: settings and groups are read, nodes, roles and modules are
/// indexed and read on demand.
#[derive(Debug)]
pub struct Site {
    /// The site directory.
    pub dir: PathBuf,
    /// Where it really is, links resolved (what a module's files must lie inside).
    real: PathBuf,
    /// `site.name`.
    pub name: String,
    /// `site.default_environment`.
    pub default_environment: String,
    /// `[sandbox]`: what scripts' sandbox intercepts and ignores.
    pub sandbox: SandboxSettings,
    /// `[state]`: how much history a node keeps.
    pub state: StateSettings,
    /// `[fleet]`: how push and publish reach nodes.
    pub fleet: crate::fleet::FleetSettings,
    /// `[secrets]`: who can always read secrets.
    pub secrets: crate::fleet::SecretsSettings,
    /// `[hooks]`: how the site's hooks run.
    pub hooks: crate::settings::HookSettings,
    /// `[environments]`: the git branch each environment is published from.
    pub environments: BTreeMap<String, crate::settings::Branch>,
    pub(crate) groups: BTreeMap<String, TomlFile<GroupToml>>,
    pub(crate) roles: BTreeMap<String, Versions>,
    pub(crate) modules: BTreeMap<String, Versions>,
}

impl Site {
    /// Opens a site: reads `strata.toml` and every group, indexes roles and modules.
    pub fn open(dir: &Path) -> Result<Site, SiteErrors> {
        if !strata_fs::exists(&dir.join("strata.toml")) {
            return Err(SiteError::in_file(
                dir.join("strata.toml").display().to_string(),
                "not a strata site: strata.toml is missing",
            )
            .hint("pass --site DIR, set STRATA_SITE, or run from the site directory")
            .into());
        }
        let mut errors = Vec::new();
        let settings = tomlfile::load::<SiteToml>(dir, "strata.toml").map_err(|e| vec![e]);
        let mut groups = BTreeMap::new();
        for name in toml_stems(dir, "groups")? {
            match tomlfile::load::<GroupToml>(dir, &format!("groups/{name}.toml")) {
                Ok(g) => {
                    groups.insert(name, g);
                }
                Err(e) => errors.push(e),
            }
        }
        let roles = index_roles(dir, &mut errors)?;
        let modules = index_modules(dir)?;
        let settings = match settings {
            Ok(s) => Some(s),
            Err(e) => {
                errors.extend(e);
                None
            }
        };
        if !errors.is_empty() {
            return Err(SiteErrors(errors));
        }
        let SiteToml {
            site: settings,
            sandbox,
            state,
            fleet,
            secrets,
            hooks,
            environments,
            provision: _,
        } = settings.expect("no errors").value;
        let site = Site {
            dir: dir.to_path_buf(),
            real: strata_fs::canonical(dir).unwrap_or_else(|_| dir.to_path_buf()),
            name: settings.name,
            default_environment: settings.default_environment,
            sandbox,
            state,
            fleet,
            secrets,
            hooks,
            environments,
            groups,
            roles,
            modules,
        };
        site.check_groups()?;
        Ok(site)
    }

    /// Every node the site knows: those with a node file and those named in a group. A
    /// node file whose name is not a node's is an error naming it.
    pub fn nodes(&self) -> Result<Vec<NodeName>, SiteErrors> {
        let mut names: BTreeSet<NodeName> = BTreeSet::new();
        let mut errors = Vec::new();
        for stem in toml_stems(&self.dir, "nodes")? {
            match NodeName::parse(&stem) {
                Ok(name) => {
                    names.insert(name);
                }
                Err(e) => errors.push(SiteError::in_file(
                    format!("nodes/{stem}.toml"),
                    e.to_string(),
                )),
            }
        }
        if !errors.is_empty() {
            return Err(SiteErrors(errors));
        }
        for g in self.groups.values() {
            names.extend(g.value.nodes.iter().map(|n| n.get_ref().clone()));
        }
        Ok(names.into_iter().collect())
    }

    /// Reads a node's file; a node named only in groups has an empty one.
    pub(crate) fn node(&self, name: &NodeName) -> Result<Option<TomlFile<NodeToml>>, SiteError> {
        let rel = format!("nodes/{name}.toml");
        if !strata_fs::exists(&self.dir.join(&rel)) {
            return Ok(None);
        }
        tomlfile::load(&self.dir, &rel).map(Some)
    }

    /// Whether a node is known at all.
    pub fn knows_node(&self, name: &NodeName) -> bool {
        strata_fs::exists(&self.dir.join(format!("nodes/{name}.toml")))
            || self
                .groups
                .values()
                .any(|g| g.value.nodes.iter().any(|n| n.get_ref() == name))
    }

    /// The groups that contain `node`, directly or through nested groups, least specific
    /// (outermost) first, then by name.
    pub(crate) fn groups_of(&self, node: &NodeName) -> Vec<String> {
        let member: BTreeSet<&String> = self
            .groups
            .keys()
            .filter(|g| self.expand(g, &mut Vec::new()).contains(node))
            .collect();
        // A group that nests another comes first: the nested one is more specific.
        let mut order: Vec<String> = Vec::new();
        let mut left: Vec<&String> = member.iter().copied().collect();
        while !left.is_empty() {
            let pos = left
                .iter()
                .position(|g| {
                    !left
                        .iter()
                        .any(|p| p != g && self.nests(p, g, &mut Vec::new()))
                })
                .unwrap_or(0);
            order.push(left.remove(pos).clone());
        }
        order
    }

    fn nests(&self, outer: &str, inner: &str, seen: &mut Vec<String>) -> bool {
        if seen.iter().any(|s| s == outer) {
            return false;
        }
        seen.push(outer.to_string());
        let Some(g) = self.groups.get(outer) else {
            return false;
        };
        g.value
            .groups
            .iter()
            .any(|n| n.get_ref() == inner || self.nests(n.get_ref(), inner, seen))
    }

    fn expand(&self, group: &str, seen: &mut Vec<String>) -> BTreeSet<NodeName> {
        let mut out = BTreeSet::new();
        if seen.iter().any(|s| s == group) {
            return out;
        }
        seen.push(group.to_string());
        if let Some(g) = self.groups.get(group) {
            out.extend(g.value.nodes.iter().map(|n| n.get_ref().clone()));
            for nested in &g.value.groups {
                out.extend(self.expand(nested.get_ref(), seen));
            }
        }
        seen.pop();
        out
    }

    /// The members of a group in push order (nested groups expanded in place).
    pub fn group_members(&self, group: &str) -> Option<Vec<NodeName>> {
        self.groups.get(group)?;
        let mut out = Vec::new();
        self.members_into(group, &mut Vec::new(), &mut out);
        Some(out)
    }

    fn members_into(&self, group: &str, seen: &mut Vec<String>, out: &mut Vec<NodeName>) {
        if seen.iter().any(|s| s == group) {
            return;
        }
        seen.push(group.to_string());
        if let Some(g) = self.groups.get(group) {
            for n in &g.value.nodes {
                if !out.contains(n.get_ref()) {
                    out.push(n.get_ref().clone());
                }
            }
            for nested in &g.value.groups {
                self.members_into(nested.get_ref(), seen, out);
            }
        }
    }

    /// Unknown nested groups and group cycles.
    fn check_groups(&self) -> Result<(), SiteErrors> {
        let mut errors = Vec::new();
        for (name, g) in &self.groups {
            for nested in &g.value.groups {
                if !self.groups.contains_key(nested.get_ref()) {
                    errors.push(
                        g.error_at(
                            nested.span().start,
                            format!("unknown group `{}`", nested.get_ref()),
                        )
                        .with_candidates(self.groups.keys()),
                    );
                } else if self.nests(nested.get_ref(), name, &mut Vec::new()) {
                    errors.push(g.error_at(
                        nested.span().start,
                        format!(
                            "group cycle: `{name}` nests `{}`, which nests `{name}`",
                            nested.get_ref()
                        ),
                    ));
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(SiteErrors(errors))
        }
    }

    /// Finds the file of `role` at `version` (highest when none); the version chosen.
    pub(crate) fn role_path(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(PathBuf, Option<String>), String> {
        find("role", &self.roles, name, version)
    }

    /// Whether a role reference (`name[@version]`) names an existing role version.
    pub fn check_role(&self, reference: &str) -> Result<(), String> {
        let r = Ref::parse(reference).map_err(|e| format!("bad role reference {e}"))?;
        self.role_path(&r.name, r.version.as_deref()).map(|_| ())
    }

    /// Finds the directory of `module` at `version` (highest when none); the version chosen.
    pub(crate) fn module_path(
        &self,
        name: &str,
        version: Option<&str>,
    ) -> Result<(PathBuf, Option<String>), String> {
        find("module", &self.modules, name, version)
    }

    /// Site-relative form of a path in the site, for messages.
    pub(crate) fn rel(&self, path: &Path) -> String {
        path.strip_prefix(&self.dir)
            .unwrap_or(path)
            .display()
            .to_string()
    }

    /// Refuses `path` (a module's `files/`, `templates/`, `scripts/` or a script) when a
    /// link on its way leads out of the site: what strata reads to build a catalog or run
    /// a script comes from the site, never from the machine running strata. The error
    /// names the link. A link that stays inside the site is followed (see
    /// docs/decisions.md); a path that does not exist is fine.
    pub(crate) fn inside(&self, path: &Path) -> Result<(), SiteError> {
        let real = match strata_fs::canonical(path) {
            Ok(real) => real,
            Err(e) if e.is_not_found() => return Ok(()),
            Err(e) => {
                return Err(SiteError::in_file(self.rel(path), e.source.to_string()).caused_by(e));
            }
        };
        if real.starts_with(&self.real) {
            return Ok(());
        }
        // The first link on the way from the site's directory.
        let below = path.strip_prefix(&self.dir).unwrap_or(path);
        let link = below
            .ancestors()
            .filter(|a| !a.as_os_str().is_empty())
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .map(|a| self.dir.join(a))
            .find(|a| strata_fs::is_link(a))
            .unwrap_or_else(|| path.to_path_buf());
        let target = strata_fs::read_link(&link).unwrap_or_default();
        Err(SiteError::in_file(
            self.rel(&link),
            format!(
                "a link to {target}, which leads out of the site (to {}): strata reads a \
                 module's files, templates and scripts only from inside the site",
                real.display()
            ),
        ))
    }
}

impl SiteError {
    fn with_candidates<'a>(self, names: impl Iterator<Item = &'a String>) -> SiteError {
        let names: Vec<&str> = names.map(String::as_str).collect();
        if names.is_empty() {
            self
        } else {
            self.hint(format!("known: {}", names.join(", ")))
        }
    }
}

/// ", did you mean `x`?" when a known name is close.
pub(crate) fn candidates<'a>(names: impl Iterator<Item = &'a str>, wanted: &str) -> String {
    names
        .map(|n| (strsim::jaro_winkler(n, wanted), n))
        .filter(|(s, _)| *s > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, n)| format!(" (did you mean `{n}`?)"))
        .unwrap_or_default()
}

/// File stems of `dir/*.toml`, sorted.
fn toml_stems(site: &Path, dir: &str) -> Result<Vec<String>, SiteErrors> {
    Ok(strata_fs::list_dir(&site.join(dir))?
        .into_iter()
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect())
}
