//! One module directory: its `module.toml`, where its files come from, and its scripts.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::catalog::{DEFAULT_TIMEOUT, ModuleRun, ScriptDecl};
use crate::download::DownloadDecl;
use crate::error::SiteError;
use crate::resources::{self, Group, Line, Package, Service, User};
use crate::site::Site;
use crate::tomlfile::{self, TomlFile};
use crate::versions::Ref;
use strata_types::{Hash, TargetPath};

/// `module.toml`; every table is optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ModuleToml {
    #[allow(dead_code)]
    pub description: Option<String>,
    pub version: Option<Spanned<String>>,
    #[serde(default)]
    pub requires: Vec<Spanned<String>>,
    #[serde(default)]
    pub params: toml::Table,
    #[serde(default)]
    pub file: Vec<FileDecl>,
    #[serde(default)]
    pub dir: Vec<DirDecl>,
    #[serde(default)]
    pub link: Vec<LinkDecl>,
    #[serde(default)]
    pub package: Vec<Spanned<Package>>,
    #[serde(default)]
    pub user: Vec<Spanned<User>>,
    #[serde(default)]
    pub group: Vec<Spanned<Group>>,
    #[serde(default)]
    pub line: Vec<Spanned<Line>>,
    #[serde(default)]
    pub download: Vec<Spanned<DownloadDecl>>,
    #[serde(default)]
    pub service: Vec<Spanned<Service>>,
    pub plan_network: Option<bool>,
    pub timeout: Option<Spanned<toml::Value>>,
    /// Secrets its scripts read, as `STRATA_SECRET_<NAME>`.
    #[serde(default)]
    pub secrets: Vec<Spanned<String>>,
    /// Whose Jinja2 its templates are written for: `"ansible"` (the default) or
    /// `"salt"` (a formula's templates: Salt's whitespace rules and objects).
    #[serde(default)]
    pub template_dialect: crate::render::Dialect,
}

/// `[[file]]`: metadata for paths from `files/` and `templates/` (a glob).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDecl {
    pub path: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub owner: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub replace: Option<bool>,
}

/// `[[dir]]`: a directory that must exist.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirDecl {
    pub path: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub owner: Option<Spanned<String>>,
    pub group: Option<Spanned<String>>,
    pub purge: Option<Spanned<bool>>,
    #[serde(default)]
    pub keep: Vec<String>,
}

/// `[[link]]`: a symbolic link.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkDecl {
    pub path: Spanned<String>,
    pub target: String,
}

/// A file of a module, before it is loaded: where it goes on the target and where it
/// comes from in the site.
pub(crate) struct ModuleFile {
    /// Its path on the target (`templates/etc/a.conf.j2` goes to `/etc/a.conf`).
    pub target: TargetPath,
    /// Its path in the site, for messages.
    pub rel: String,
    /// Its path on this machine.
    pub path: PathBuf,
    /// How its content is made.
    pub kind: FileKind,
}

/// How a module's file becomes what its target holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// In `files/`: copied as it is.
    Copied,
    /// In `templates/` (`.j2` or no suffix): rendered.
    Template,
    /// A symbolic link in either: the same link on the target.
    Link,
    /// A `.sh-template` in `templates/`: run in the sandbox, what it prints is the content.
    Exec,
}

/// A module at one version, loaded.
#[derive(Debug)]
pub(crate) struct Module {
    pub name: String,
    pub version: Option<String>,
    pub dir: PathBuf,
    pub toml: TomlFile<ModuleToml>,
}

impl Module {
    /// `name@version`, or `name` when unversioned.
    pub fn id(&self) -> String {
        match &self.version {
            Some(v) => format!("{}@{v}", self.name),
            None => self.name.clone(),
        }
    }

    /// The key of its parameters in the tree (`-` becomes `_`).
    pub fn param_key(&self) -> String {
        self.name.replace('-', "_")
    }

    /// Loads the module a reference names.
    pub fn load(site: &Site, r: &Ref) -> Result<Module, String> {
        let (dir, version) = site.module_path(&r.name, r.version.as_deref())?;
        let rel = format!("{}/module.toml", site.rel(&dir));
        let toml = if strata_fs::exists(&dir.join("module.toml")) {
            tomlfile::load::<ModuleToml>(&site.dir, &rel).map_err(|e| format!("{e}"))?
        } else {
            TomlFile {
                rel,
                text: String::new(),
                value: ModuleToml::default(),
            }
        };
        let declared = toml.value.version.as_ref().map(|v| v.get_ref().clone());
        let version = match (version, declared) {
            (Some(asked), Some(has))
                if !(has == asked || has.starts_with(&format!("{asked}."))) =>
            {
                return Err(format!("module `{}` is version {has}, not {asked}", r.name));
            }
            (_, Some(has)) => Some(has),
            (v, None) => v,
        };
        Ok(Module {
            name: r.name.clone(),
            version,
            dir,
            toml,
        })
    }

    /// Its files and templates, with `env/<environment>/` overriding the base ones by
    /// target. Two files of one layer with one target are an error naming both.
    pub fn files(&self, site: &Site, environment: &str) -> Result<Vec<ModuleFile>, SiteError> {
        // Each layer's files in target order (a stable sort: of two files with one target,
        // the first found comes first), then the environment's layer over the base one.
        let mut by_target: Vec<ModuleFile> = Vec::new();
        let env_dir = format!("env/{environment}");
        for base in ["", env_dir.as_str()] {
            let mut layer: Vec<ModuleFile> = Vec::new();
            for (sub, template) in [("files", false), ("templates", true)] {
                let dir = if base.is_empty() {
                    self.dir.join(sub)
                } else {
                    self.dir.join(base).join(sub)
                };
                site.inside(&dir)?;
                let dir_rel = site.rel(&dir);
                for f in strata_fs::walk_files(&dir)? {
                    let rel = strata_fs::join_rel(&dir_rel, &f.rel);
                    let mut target_rel = &f.rel[..];
                    let mut exec = false;
                    if template {
                        if let Some(stripped) = target_rel.strip_suffix(".sh-template") {
                            target_rel = stripped;
                            exec = true;
                        } else if let Some(stripped) = target_rel.strip_suffix(".j2") {
                            target_rel = stripped;
                        }
                    }
                    let target = TargetPath::parse(target_rel)
                        .map_err(|e| SiteError::in_file(&rel, e.to_string()))?;
                    let kind = match (f.is_link, exec, template) {
                        (true, _, _) => FileKind::Link,
                        (false, true, _) => FileKind::Exec,
                        (false, false, true) => FileKind::Template,
                        (false, false, false) => FileKind::Copied,
                    };
                    layer.push(ModuleFile {
                        target,
                        rel,
                        path: f.path,
                        kind,
                    });
                }
            }
            layer.sort_by(|a, b| a.target.cmp(&b.target));
            if let Some(w) = layer.windows(2).find(|w| w[0].target == w[1].target) {
                return Err(SiteError::in_file(
                    &w[1].rel,
                    format!("{} also comes from {}", w[1].target, w[0].rel),
                ));
            }
            by_target.extend(layer);
        }
        // The base layer before the environment's: where both give a target, the last one
        // found (the environment's) is kept.
        by_target.sort_by(|a, b| a.target.cmp(&b.target));
        let mut out: Vec<ModuleFile> = Vec::with_capacity(by_target.len());
        for f in by_target {
            match out.last_mut() {
                Some(last) if last.target == f.target => *last = f,
                _ => out.push(f),
            }
        }
        Ok(out)
    }

    /// Its scripts (`scripts/*` in lexical order; hidden files and `~` backups skipped)
    /// and their settings. A script (or `scripts/`) reached through a link that leads out
    /// of the site is refused.
    pub fn run(&self, site: &Site) -> Result<ModuleRun, Vec<SiteError>> {
        let v = &self.toml.value;
        let timeout = match &v.timeout {
            None => DEFAULT_TIMEOUT,
            Some(t) => {
                let bad = || {
                    self.toml.error_at(
                        t.span().start,
                        "timeout must be a number of seconds or a duration such as \"90s\" or \"5m\"",
                    )
                };
                match t.get_ref() {
                    toml::Value::Integer(n) if *n > 0 => Duration::from_secs(*n as u64),
                    toml::Value::String(s) => {
                        humantime::parse_duration(s).map_err(|_| vec![bad()])?
                    }
                    _ => return Err(vec![bad()]),
                }
            }
        };
        let dir = self.dir.join("scripts");
        site.inside(&dir).map_err(|e| vec![e])?;
        let mut scripts = Vec::new();
        for name in strata_fs::list_dir(&dir).map_err(|e| vec![fs_error(e)])? {
            let path = dir.join(&name);
            if name.starts_with('.') || name.ends_with('~') {
                continue;
            }
            site.inside(&path).map_err(|e| vec![e])?;
            if strata_fs::is_dir(&path) {
                continue;
            }
            scripts.push(ScriptDecl {
                name: format!("scripts/{name}"),
                path,
            });
        }
        let declared = resources::validate(
            &self.toml, &v.package, &v.group, &v.user, &v.service, &v.line,
        )?;
        // What the module's sandbox steps depend on: when it changes, what they did before
        // is undone and they run again from the target's original files.
        let mut digest = serde_json::to_vec(&declared).unwrap_or_default();
        for s in &v.secrets {
            digest.extend_from_slice(format!("secret {}\n", s.get_ref()).as_bytes());
        }
        for s in &scripts {
            digest.extend_from_slice(s.name.as_bytes());
            let bytes = strata_fs::read(&s.path).map_err(|e| vec![fs_error(e)])?;
            digest.extend_from_slice(Hash::of(&bytes).to_string().as_bytes());
        }
        Ok(ModuleRun {
            id: self.id(),
            scripts,
            timeout,
            plan_network: v.plan_network.unwrap_or(false),
            declared,
            digest: Hash::of(&digest).to_string(),
            secrets: Vec::new(),
        })
    }
}

/// "cannot read /site/modules/m/scripts/x", the failure kept whole.
fn fs_error(e: strata_fs::FsError) -> SiteError {
    SiteError::new(e.to_string()).caused_by(e)
}

/// Parses an octal mode string such as `"0644"` or `"755"`.
pub(crate) fn parse_mode(s: &str) -> Result<u32, String> {
    let digits = s.strip_prefix("0o").unwrap_or(s);
    match u32::from_str_radix(digits, 8) {
        Ok(m) if m <= 0o7777 && !digits.is_empty() => Ok(m),
        _ => Err(format!(
            "bad mode `{s}`: expected octal digits such as \"0644\""
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_are_octal() {
        assert_eq!(parse_mode("0644"), Ok(0o644));
        assert_eq!(parse_mode("4755"), Ok(0o4755));
        assert!(parse_mode("0999").is_err());
        assert!(parse_mode("").is_err());
        assert!(parse_mode("17777").is_err());
    }
}
