//! Which modules go into packages, and the catalog their content comes from.
//!
//! strata-core compiles nodes, so a module or role is compiled as the only thing a
//! stand-in node has (`nodes/strata-export.toml` in a scratch copy of the site, in no
//! group). With `--env` that catalog is the packages' content. With `--node` the real
//! node's catalog is, so its groups' and its own parameters apply, and the stand-in's
//! modules must all be the node's, at the same versions.

use std::path::Path;

use strata_core::{Catalog, CompileOptions, Site};

use strata_types::NodeName;

use crate::ExportError;

/// Whose configuration the packages hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One node's: its environment, groups and parameters.
    Node(String),
    /// An environment's (the site's default one when `None`): no group's or node's
    /// parameters.
    Environment(Option<String>),
}

/// The stand-in node's name, as templates see it (`node.name`) with `--env`.
pub const STAND_IN: &str = "strata-export";

/// Modules or role, as asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Target {
    Module(String),
    Role(String),
}

/// What to package.
#[derive(Debug)]
pub(crate) struct Selection {
    /// The catalog the packages' content, parameters and node come from.
    pub catalog: Catalog,
    /// The modules to package (`name@version` or `name`), in application order.
    pub modules: Vec<String>,
    /// The role asked for, as compiled (`name@version` or `name`).
    pub role: Option<String>,
    /// The scratch copy of the site, where the scripts of a stand-in's catalog are.
    _scratch: tempfile::TempDir,
}

/// Compiles what `what` names for `scope`.
pub(crate) fn select(site: &Site, what: &str, scope: &Scope) -> Result<Selection, ExportError> {
    let target = target(site, what)?;
    let node = match scope {
        Scope::Node(n) => {
            let n = NodeName::parse(n).map_err(|e| ExportError::Invalid(e.to_string()))?;
            Some(strata_core::compile(site, &n, &CompileOptions::default())?)
        }
        Scope::Environment(_) => None,
    };
    let environment = match (scope, &node) {
        (_, Some(c)) => c.node.environment.clone(),
        (Scope::Environment(Some(e)), None) => e.clone(),
        _ => site.default_environment.clone(),
    };
    let (alone, scratch) = compile_alone(site, &target, &environment)?;
    let modules: Vec<String> = alone.runs.iter().map(|r| r.id.clone()).collect();
    let role = match target {
        Target::Role(_) => alone.node.roles.first().cloned(),
        Target::Module(_) => None,
    };
    let Some(catalog) = node else {
        return Ok(Selection {
            catalog: alone,
            modules,
            role,
            _scratch: scratch,
        });
    };
    let asked = role.as_deref().unwrap_or(what);
    for id in &modules {
        if catalog.runs.iter().any(|r| &r.id == id) {
            continue;
        }
        let name = id.split('@').next().unwrap_or(id);
        let has = catalog
            .runs
            .iter()
            .find(|r| r.id.split('@').next() == Some(name))
            .map(|r| format!(" (it has {})", r.id))
            .unwrap_or_default();
        return Err(ExportError::Invalid(format!(
            "node {} does not have module {id}, which {asked} needs{has}",
            catalog.node.name
        )));
    }
    Ok(Selection {
        catalog,
        modules,
        role,
        _scratch: scratch,
    })
}

/// Reads `[module:|role:]NAME[@VERSION]`: a role or a module of the site.
pub(crate) fn target(site: &Site, what: &str) -> Result<Target, ExportError> {
    let (kind, reference) = match what.split_once(':') {
        Some((k @ ("module" | "role"), r)) => (Some(k), r),
        _ => (None, what),
    };
    let name = reference.split('@').next().unwrap_or(reference);
    let is_role = strata_fs::exists(&site.dir.join(format!("roles/{name}.toml")))
        || strata_fs::is_dir(&site.dir.join(format!("roles/{name}")));
    let is_module = strata_fs::is_dir(&site.dir.join(format!("modules/{name}")));
    match (kind, is_module, is_role) {
        (Some("module"), true, _) | (None, true, false) => Ok(Target::Module(reference.into())),
        (Some("role"), _, true) | (None, false, true) => Ok(Target::Role(reference.into())),
        (None, true, true) => Err(ExportError::Invalid(format!(
            "`{name}` is both a module and a role of the site: write module:{reference} or \
             role:{reference}"
        ))),
        _ => Err(ExportError::Invalid(format!(
            "no module or role `{name}` in {} (modules/{name}/, roles/{name}.toml or \
             roles/{name}/)",
            site.dir.display()
        ))),
    }
}

/// Compiles the target as the only thing the stand-in node has, in `environment`; the
/// scratch copy of the site goes with it.
fn compile_alone(
    site: &Site,
    target: &Target,
    environment: &str,
) -> Result<(Catalog, tempfile::TempDir), ExportError> {
    let scratch = tempfile::Builder::new()
        .prefix("strata-export.")
        .tempdir()
        .map_err(|e| strata_fs::FsError::new("create", std::env::temp_dir(), e))?;
    let copy = scratch.path().join("site");
    for part in ["strata.toml", "params", "roles", "modules"] {
        copy_tree(&site.dir.join(part), &copy.join(part))?;
    }
    let quoted = |s: &str| toml::Value::from(s).to_string();
    let (key, reference) = match target {
        Target::Module(r) => ("modules", r),
        Target::Role(r) => ("roles", r),
    };
    let node = format!(
        "environment = {}\n{key} = [{}]\n",
        quoted(environment),
        quoted(reference)
    );
    strata_fs::write_new(
        &copy.join(format!("nodes/{STAND_IN}.toml")),
        node.as_bytes(),
    )?;
    let copied = Site::open(&copy)?;
    let stand_in = NodeName::parse(STAND_IN).expect("a valid name");
    let catalog = strata_core::compile(&copied, &stand_in, &CompileOptions::default())?;
    Ok((catalog, scratch))
}

/// Copies a file or a tree: files with their permission bits, links as links (a link
/// that stays inside the site stays inside the copy), directories.
fn copy_tree(from: &Path, to: &Path) -> Result<(), ExportError> {
    if !strata_fs::exists(from) {
        return Ok(());
    }
    for entry in walkdir::WalkDir::new(from) {
        let entry = entry.map_err(|e| {
            let path = e.path().unwrap_or(from).to_path_buf();
            strata_fs::FsError::new("walk", path, std::io::Error::from(e))
        })?;
        let dest = match entry.path().strip_prefix(from) {
            Ok(rel) if !rel.as_os_str().is_empty() => to.join(rel),
            _ => to.to_path_buf(),
        };
        let kind = entry.file_type();
        if kind.is_dir() {
            strata_fs::create_dir_all(&dest)?;
        } else if kind.is_symlink() {
            let target = strata_fs::read_link(entry.path())?;
            std::os::unix::fs::symlink(&target, &dest)
                .map_err(|e| strata_fs::FsError::new("create link", &dest, e))?;
        } else if kind.is_file() {
            let (bytes, mode) = strata_fs::read_with_mode(entry.path(), u64::MAX)?;
            strata_fs::write_new(&dest, &bytes)?;
            strata_fs::set_mode(&dest, mode)?;
        }
    }
    Ok(())
}
