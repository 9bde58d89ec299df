//! One module directory: its `module.toml` and where its files come from.

use std::path::PathBuf;

use serde::Deserialize;
use toml::Spanned;

use crate::error::SiteError;
use crate::site::{Ref, Site};
use crate::tomlfile::{self, TomlFile};

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
    pub package: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub user: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub group: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub line: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub download: Vec<Spanned<toml::Table>>,
    #[serde(default)]
    pub service: Vec<Spanned<toml::Table>>,
    #[allow(dead_code)]
    pub plan_network: Option<bool>,
    #[allow(dead_code)]
    pub timeout: Option<toml::Value>,
}

/// `[[file]]`: metadata for paths from `files/` and `templates/` (a glob).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct FileDecl {
    pub path: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub replace: Option<bool>,
}

/// `[[dir]]`: a directory that must exist.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DirDecl {
    pub path: Spanned<String>,
    pub mode: Option<Spanned<String>>,
    pub owner: Option<String>,
    pub group: Option<String>,
    pub purge: Option<Spanned<bool>>,
    #[serde(default)]
    #[allow(dead_code)]
    pub keep: Vec<String>,
}

/// `[[link]]`: a symbolic link.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct LinkDecl {
    pub path: Spanned<String>,
    pub target: String,
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

    /// Errors for resource kinds that this version of strata does not implement yet:
    /// refusing is better than silently ignoring a declaration.
    pub fn unsupported(&self) -> Vec<SiteError> {
        let v = &self.toml.value;
        let kinds: [(&str, &Vec<Spanned<toml::Table>>); 6] = [
            ("package", &v.package),
            ("user", &v.user),
            ("group", &v.group),
            ("line", &v.line),
            ("download", &v.download),
            ("service", &v.service),
        ];
        let mut out = Vec::new();
        for (kind, list) in kinds {
            for item in list {
                out.push(self.toml.error_at(
                    item.span().start,
                    format!("[[{kind}]] resources are not supported by this version of strata yet"),
                ));
            }
        }
        for d in &v.dir {
            if let Some(purge) = d.purge.as_ref().filter(|p| *p.get_ref()) {
                out.push(self.toml.error_at(
                    purge.span().start,
                    "[[dir]] purge is not supported by this version of strata yet",
                ));
            }
        }
        for sub in ["scripts"] {
            if !strata_fs::list_dir(&self.dir.join(sub))
                .unwrap_or_default()
                .is_empty()
            {
                out.push(SiteError::in_file(
                    format!("{}/{sub}", self.toml.rel.trim_end_matches("/module.toml")),
                    "module scripts need the sandbox, which this version of strata does not have yet",
                ));
            }
        }
        out
    }
}
