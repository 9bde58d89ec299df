//! The site tree: its settings, nodes, groups, roles and modules, read from disk.

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;
use strata_types::NodeName;
use toml::Spanned;

use crate::error::{SiteError, SiteErrors};
use crate::settings::{SandboxSettings, SiteToml, StateSettings};
use crate::tomlfile::{self, TomlFile};

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

/// Where the versions of a role or module live.
#[derive(Debug, Clone)]
pub(crate) enum Versions {
    /// One unversioned file or directory.
    Single(PathBuf),
    /// Version → file or directory.
    Many(Vec<(String, PathBuf)>),
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
    pub(crate) groups: BTreeMap<String, TomlFile<GroupToml>>,
    pub(crate) roles: BTreeMap<String, Versions>,
    pub(crate) modules: BTreeMap<String, Versions>,
}

const MODULE_MARKERS: [&str; 5] = ["module.toml", "files", "templates", "scripts", "env"];

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

/// Looks a role or module up by name, then picks the version.
fn find(
    kind: &str,
    index: &BTreeMap<String, Versions>,
    name: &str,
    version: Option<&str>,
) -> Result<(PathBuf, Option<String>), String> {
    let versions = index.get(name).ok_or_else(|| {
        let known = index.keys().map(String::as_str);
        format!("unknown {kind} `{name}`{}", candidates(known, name))
    })?;
    pick(versions, version).map_err(|have| {
        format!(
            "{kind} `{name}` has no version {}{have}",
            version.unwrap_or("")
        )
    })
}

fn pick(versions: &Versions, wanted: Option<&str>) -> Result<(PathBuf, Option<String>), String> {
    match (versions, wanted) {
        (Versions::Single(p), None) => Ok((p.clone(), None)),
        (Versions::Single(p), Some(v)) => Ok((p.clone(), Some(v.to_string()))),
        (Versions::Many(list), None) => {
            let (v, p) = list.last().expect("a versioned directory has versions");
            Ok((p.clone(), Some(v.clone())))
        }
        (Versions::Many(list), Some(want)) => list
            .iter()
            .rev()
            .find(|(v, _)| v == want || v.starts_with(&format!("{want}.")))
            .map(|(v, p)| (p.clone(), Some(v.clone())))
            .ok_or_else(|| {
                let have: Vec<&str> = list.iter().map(|(v, _)| v.as_str()).collect();
                format!(" (available: {})", have.join(", "))
            }),
    }
}

/// Orders versions numerically part by part (`1.10` after `1.9`).
pub(crate) fn cmp_versions(a: &str, b: &str) -> Ordering {
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// File stems of `dir/*.toml`, sorted.
fn toml_stems(site: &Path, dir: &str) -> Result<Vec<String>, SiteErrors> {
    Ok(strata_fs::list_dir(&site.join(dir))?
        .into_iter()
        .filter_map(|n| n.strip_suffix(".toml").map(str::to_string))
        .collect())
}

fn index_roles(
    site: &Path,
    errors: &mut Vec<SiteError>,
) -> Result<BTreeMap<String, Versions>, SiteErrors> {
    let dir = site.join("roles");
    let mut out = BTreeMap::new();
    for name in strata_fs::list_dir(&dir)? {
        let path = dir.join(&name);
        if let Some(stem) = name.strip_suffix(".toml") {
            if strata_fs::is_dir(&dir.join(stem)) {
                errors.push(SiteError::in_file(
                    format!("roles/{name}"),
                    format!("role `{stem}` is both a file and a versioned directory roles/{stem}/"),
                ));
            }
            out.insert(stem.to_string(), Versions::Single(path));
        } else if strata_fs::is_dir(&path) {
            let mut versions: Vec<(String, PathBuf)> = strata_fs::list_dir(&path)?
                .into_iter()
                .filter_map(|f| {
                    f.strip_suffix(".toml")
                        .map(|v| (v.to_string(), path.join(&f)))
                })
                .collect();
            versions.sort_by(|a, b| cmp_versions(&a.0, &b.0));
            if versions.is_empty() {
                errors.push(SiteError::in_file(
                    format!("roles/{name}"),
                    "a role directory with no <version>.toml",
                ));
            } else {
                out.entry(name).or_insert(Versions::Many(versions));
            }
        }
    }
    Ok(out)
}

fn index_modules(site: &Path) -> Result<BTreeMap<String, Versions>, SiteErrors> {
    let dir = site.join("modules");
    let mut out = BTreeMap::new();
    for name in strata_fs::list_dir(&dir)? {
        let path = dir.join(&name);
        if !strata_fs::is_dir(&path) {
            continue;
        }
        let entries = strata_fs::list_dir(&path)?;
        if entries.iter().any(|e| MODULE_MARKERS.contains(&e.as_str())) || entries.is_empty() {
            out.insert(name, Versions::Single(path));
        } else {
            let mut versions: Vec<(String, PathBuf)> = entries
                .into_iter()
                .filter(|v| strata_fs::is_dir(&path.join(v)))
                .map(|v| (v.clone(), path.join(v)))
                .collect();
            versions.sort_by(|a, b| cmp_versions(&a.0, &b.0));
            out.insert(name, Versions::Many(versions));
        }
    }
    Ok(out)
}

/// A reference `name` or `name@version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ref {
    pub name: String,
    pub version: Option<String>,
}

impl Ref {
    /// Parses `name[@version]`; names are lowercase letters, digits, `-` and `_`.
    pub fn parse(s: &str) -> Result<Ref, String> {
        let (name, version) = match s.split_once('@') {
            Some((n, v)) if !v.is_empty() => (n, Some(v.to_string())),
            Some(_) => return Err(format!("`{s}`: empty version after '@'")),
            None => (s, None),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(format!(
                "`{s}`: names are lowercase letters, digits, '-' and '_'"
            ));
        }
        Ok(Ref {
            name: name.to_string(),
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        let mut v = vec!["1.10", "1.9", "2", "1.9.1"];
        v.sort_by(|a, b| cmp_versions(a, b));
        assert_eq!(v, ["1.9", "1.9.1", "1.10", "2"]);
    }

    #[test]
    fn refs_parse() {
        assert_eq!(
            Ref::parse("nginx@1.2").unwrap().version.as_deref(),
            Some("1.2")
        );
        assert!(Ref::parse("Nginx").is_err());
        assert!(Ref::parse("x@").is_err());
    }

    #[test]
    fn a_prefix_picks_the_highest_matching_version() {
        let v = Versions::Many(vec![
            ("1.9".into(), "a".into()),
            ("2.0".into(), "b".into()),
            ("2.1".into(), "c".into()),
            ("20".into(), "d".into()),
        ]);
        assert_eq!(pick(&v, Some("2")).unwrap().1.as_deref(), Some("2.1"));
        assert_eq!(pick(&v, None).unwrap().1.as_deref(), Some("20"));
        assert!(pick(&v, Some("3")).is_err());
    }
}
