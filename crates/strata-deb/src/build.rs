//! Each package's content, checked before anything is written, then staged in a
//! directory and packed by `dpkg-deb`.

use std::path::{Path, PathBuf};

use strata_core::{Resource, ResourceKind, Site};
use strata_types::ContentSource;

use crate::debian::{self, Control};
use crate::maint::{self, Owner};
use crate::select::{STAND_IN, Selection};
use crate::{ExportError, Package};

/// One package to build.
#[derive(Debug)]
pub(crate) struct Spec<'a> {
    name: String,
    version: String,
    /// `module app@2.0` or `role webserver@2.0`.
    source: String,
    depends: Vec<String>,
    description: String,
    /// The module's id, for a module's package.
    module: Option<&'a str>,
}

/// Everything a build needs besides the spec.
#[derive(Debug)]
pub(crate) struct Context<'a> {
    pub site: &'a Site,
    pub selection: &'a Selection,
    pub maintainer: &'a str,
}

/// `module.toml`'s fields an export reads (the rest strata-core has checked).
#[derive(Debug, Default, serde::Deserialize)]
struct ModuleHead {
    description: Option<String>,
    #[serde(default)]
    requires: Vec<String>,
}

/// The packages of the selection: each module's, in application order, then the role's.
/// Every reason not to export is found here, so that nothing is written when one is.
pub(crate) fn specs<'a>(cx: &Context<'a>, prefix: &str) -> Result<Vec<Spec<'a>>, ExportError> {
    let sel = cx.selection;
    let mut errors = Vec::new();
    let mut specs = Vec::new();
    let mut versions = Vec::new();
    for id in &sel.modules {
        let (name, version) = debian::split_id(id);
        versions.push((
            name,
            debian::package_name(prefix, None, name),
            debian::version(&format!("module {id}"), version),
        ));
    }
    let exact = |name: &str| -> Option<String> {
        versions
            .iter()
            .find(|(n, _, _)| *n == name)
            .and_then(|(_, pkg, v)| Some(format!("{pkg} (= {})", v.as_ref().ok()?)))
    };
    for (id, (_, pkg, version)) in sel.modules.iter().zip(&versions) {
        let version = match version {
            Ok(v) => v.clone(),
            Err(e) => {
                errors.push(e.to_string());
                continue;
            }
        };
        errors.extend(unsupported(cx, id));
        let head = module_head(cx.site, id)?;
        let mut depends: Vec<String> = head
            .requires
            .iter()
            .filter_map(|r| exact(debian::split_id(r).0))
            .collect();
        let run = sel.catalog.runs.iter().find(|r| &r.id == id);
        for p in run.iter().flat_map(|r| &r.declared.packages) {
            depends.push(match &p.version {
                Some(v) => format!("{} (= {v})", p.name),
                None => p.name.clone(),
            });
        }
        specs.push(Spec {
            name: pkg.clone(),
            version,
            source: format!("module {id}"),
            depends,
            description: head.description.unwrap_or_default(),
            module: Some(id),
        });
    }
    if let Some(role) = &sel.role {
        let (name, version) = debian::split_id(role);
        match debian::version(&format!("role {role}"), version) {
            Ok(version) => specs.push(Spec {
                name: debian::package_name(prefix, Some("role"), name),
                version,
                source: format!("role {role}"),
                depends: versions.iter().filter_map(|(n, _, _)| exact(n)).collect(),
                description: String::new(),
                module: None,
            }),
            Err(e) => errors.push(e.to_string()),
        }
    }
    for (i, s) in specs.iter().enumerate() {
        if let Some(other) = specs[..i].iter().find(|o| o.name == s.name) {
            errors.push(format!(
                "{} and {} would both be package {}",
                other.source, s.source, s.name
            ));
        }
    }
    if !errors.is_empty() {
        return Err(ExportError::Invalid(errors.join("\n")));
    }
    Ok(specs)
}

/// What a module declares that a package cannot hold (yet), one message each.
fn unsupported(cx: &Context<'_>, id: &str) -> Vec<String> {
    let catalog = &cx.selection.catalog;
    let mut out = Vec::new();
    for r in catalog.resources.iter().filter(|r| r.module == id) {
        let kind = match &r.kind {
            ResourceKind::Exec { .. } => {
                Some("an executable template (its output is made on the node)")
            }
            ResourceKind::Download { .. } => Some("a download"),
            _ => None,
        };
        if let Some(kind) = kind {
            out.push(format!(
                "module {id}: {} is {kind}, which export deb does not package yet",
                r.path
            ));
        }
        if r.path.as_str().chars().any(char::is_control) {
            out.push(format!(
                "module {id}: {} has a control character or a name that is not UTF-8",
                r.path.shown()
            ));
        } else if is_conffile(r) && r.path.as_str().contains(char::is_whitespace) {
            out.push(format!("module {id}: conffile {} has a space in its path, which dpkg's conffiles cannot list", r.path));
        }
    }
    for p in catalog.purges.iter().filter(|p| p.module == id) {
        out.push(format!(
            "module {id}: [[dir]] {} has purge = true, which a package cannot do",
            p.path
        ));
    }
    if let Some(run) = catalog.runs.iter().find(|r| r.id == id) {
        let d = &run.declared;
        for (count, what) in [
            (d.users.len(), "[[user]]"),
            (d.groups.len(), "[[group]]"),
            (d.services.len(), "[[service]]"),
            (d.lines.len(), "[[line]]"),
        ] {
            if count > 0 {
                out.push(format!(
                    "module {id}: {what} is not packaged by export deb yet"
                ));
            }
        }
    }
    out
}

/// Reads a module's description and requirements from its `module.toml`.
fn module_head(site: &Site, id: &str) -> Result<ModuleHead, ExportError> {
    let (name, version) = debian::split_id(id);
    let base = site.dir.join("modules").join(name);
    let dir = match version.map(|v| base.join(v)) {
        Some(d) if strata_fs::is_dir(&d) => d,
        _ => base,
    };
    let file = dir.join("module.toml");
    if !strata_fs::exists(&file) {
        return Ok(ModuleHead::default());
    }
    let text = strata_fs::read_to_string(&file)?;
    toml::from_str(&text)
        .map_err(|e| ExportError::Invalid(format!("{}: {}", file.display(), e.message())))
}

/// Conffiles: the files under `/etc` (Debian's rule), and the add-only ones
/// (`replace = false`), whose edits dpkg then keeps as strata does.
fn is_conffile(r: &Resource) -> bool {
    matches!(r.kind, ResourceKind::File { .. })
        && (r.path.as_str().starts_with("/etc/") || !r.replace)
}

/// Stages and packs one package into `out`.
pub(crate) fn write(cx: &Context<'_>, spec: &Spec<'_>, out: &Path) -> Result<Package, ExportError> {
    let stage = tempfile::Builder::new()
        .prefix(".strata-export.")
        .tempdir_in(out)
        .map_err(|e| strata_fs::FsError::new("create", out, e))?;
    let tree = stage.path();
    let mut staged = Staged::default();
    if let Some(id) = spec.module {
        staged.module(cx, spec, id, tree)?;
    }
    staged.modes(tree)?;
    let debian = tree.join("DEBIAN");
    let control = Control {
        package: &spec.name,
        version: &spec.version,
        maintainer: cx.maintainer,
        installed_kib: staged.kib,
        depends: &spec.depends,
        summary: &format!("{} of strata site {}", spec.source, cx.site.name),
        description: &description(cx, spec),
    };
    control_file(&debian.join("control"), &control.text(), 0o644)?;
    if spec.module.is_some() {
        if !staged.conffiles.is_empty() {
            let list: String = staged.conffiles.iter().map(|c| format!("{c}\n")).collect();
            control_file(&debian.join("conffiles"), &list, 0o644)?;
        }
        let postinst = maint::postinst(&spec.name, &staged.owners, staged.runner.as_deref());
        control_file(&debian.join("postinst"), &postinst, 0o755)?;
    }
    strata_fs::set_mode(&debian, 0o755)?;
    let path = out.join(format!("{}_{}_all.deb", spec.name, spec.version));
    dpkg_deb(&spec.name, tree, &path)?;
    Ok(Package {
        name: spec.name.clone(),
        version: spec.version.clone(),
        path,
        source: spec.source.clone(),
        depends: spec.depends.clone(),
        paths: staged.paths,
    })
}

/// The long description: the module's own, then where the package comes from.
fn description(cx: &Context<'_>, spec: &Spec<'_>) -> String {
    let node = &cx.selection.catalog.node;
    let whose = if node.name == STAND_IN {
        format!("environment {}", node.environment)
    } else {
        format!("node {} (environment {})", node.name, node.environment)
    };
    let mut text = String::new();
    if !spec.description.is_empty() {
        text.push_str(&spec.description);
        text.push_str("\n\n");
    }
    text.push_str(&format!(
        "Exported by `strata export deb` from site {} for {whose}.",
        cx.site.name
    ));
    text
}

fn control_file(path: &Path, text: &str, mode: u32) -> Result<(), ExportError> {
    strata_fs::write_new(path, text.as_bytes())?;
    strata_fs::set_mode(path, mode)?;
    Ok(())
}

/// What a module's package holds, as staged.
#[derive(Debug, Default)]
struct Staged {
    /// Declared directories and their modes (the others are 0755).
    dirs: Vec<(PathBuf, u32)>,
    conffiles: Vec<String>,
    owners: Vec<Owner>,
    /// The program `postinst` runs, when the module has scripts.
    runner: Option<String>,
    paths: usize,
    kib: u64,
}

impl Staged {
    /// Lays the module's paths and scripts into `tree`.
    fn module(
        &mut self,
        cx: &Context<'_>,
        spec: &Spec<'_>,
        id: &str,
        tree: &Path,
    ) -> Result<(), ExportError> {
        let catalog = &cx.selection.catalog;
        for r in catalog.resources.iter().filter(|r| r.module == id) {
            let dest = tree.join(r.path.relative());
            match &r.kind {
                ResourceKind::File { hash, size } => {
                    let bytes = catalog.content(hash).ok_or_else(|| {
                        ExportError::Invalid(format!(
                            "module {id}: the content of {} is missing",
                            r.path
                        ))
                    })?;
                    strata_fs::write_new(&dest, &bytes)?;
                    strata_fs::set_mode(&dest, r.mode)?;
                    self.kib += size.div_ceil(1024);
                    if is_conffile(r) {
                        self.conffiles.push(r.path.as_str().to_string());
                    }
                }
                ResourceKind::Dir => {
                    strata_fs::create_dir_all(&dest)?;
                    self.dirs.push((dest, r.mode));
                    self.kib += 1;
                }
                ResourceKind::Link { target } => {
                    if let Some(parent) = dest.parent() {
                        strata_fs::create_dir_all(parent)?;
                    }
                    std::os::unix::fs::symlink(target, &dest)
                        .map_err(|e| strata_fs::FsError::new("create link", &dest, e))?;
                    self.kib += 1;
                }
                ResourceKind::Exec { .. } | ResourceKind::Download { .. } => continue,
            }
            self.paths += 1;
            let is_root = |n: &str| n == "root" || n == "0";
            let by_root = is_root(&r.owner) && is_root(&r.group);
            // A link's owner is not managed (docs/decisions.md).
            if !by_root && !matches!(r.kind, ResourceKind::Link { .. }) {
                self.owners.push(Owner {
                    path: r.path.as_str().to_string(),
                    owner: r.owner.clone(),
                    group: r.group.clone(),
                    mode: r.mode,
                });
            }
        }
        self.scripts(cx, spec, id, tree)
    }

    /// The module's scripts, its parameters and the program that runs them, under
    /// `/usr/lib/PACKAGE/` (root's alone: parameters may hold what others must not read).
    fn scripts(
        &mut self,
        cx: &Context<'_>,
        spec: &Spec<'_>,
        id: &str,
        tree: &Path,
    ) -> Result<(), ExportError> {
        let catalog = &cx.selection.catalog;
        let Some(run) = catalog
            .runs
            .iter()
            .find(|r| r.id == id)
            .filter(|r| !r.scripts.is_empty())
        else {
            return Ok(());
        };
        let home = format!("/usr/lib/{}", spec.name);
        let mut listed = Vec::new();
        for s in &run.scripts {
            let base = s.name.trim_start_matches("scripts/");
            let installed = format!("{home}/scripts/{base}");
            let bytes = strata_fs::read(&s.path)?;
            let dest = tree.join(&installed[1..]);
            strata_fs::write_new(&dest, &bytes)?;
            strata_fs::set_mode(&dest, 0o755)?;
            listed.push((s.name.clone(), installed));
        }
        let params = serde_json::to_vec_pretty(&catalog.params.values).unwrap_or_default();
        let params_file = tree.join(&home[1..]).join("params.json");
        strata_fs::write_new(&params_file, &params)?;
        let mut vars = vec![
            ("STRATA_PARAMS".to_string(), format!("{home}/params.json")),
            ("STRATA_NODE".to_string(), catalog.node.name.clone()),
            (
                "STRATA_ENVIRONMENT".to_string(),
                catalog.node.environment.clone(),
            ),
            ("STRATA_MODULE".to_string(), id.to_string()),
            ("STRATA_ROOT".to_string(), "/".to_string()),
            ("STRATA_NOOP".to_string(), "0".to_string()),
        ];
        for (key, value) in catalog.params.leaves() {
            let value = match value {
                serde_json::Value::String(s) => s,
                serde_json::Value::Null | serde_json::Value::Object(_) => continue,
                other => other.to_string(),
            };
            vars.push((format!("STRATA_P_{}", key.replace(['-', '.'], "_")), value));
        }
        let runner = format!("{home}/run");
        let dest = tree.join(&runner[1..]);
        strata_fs::write_new(&dest, maint::runner(&vars, &listed).as_bytes())?;
        strata_fs::set_mode(&dest, 0o700)?;
        self.paths += listed.len() + 2;
        self.runner = Some(runner);
        Ok(())
    }

    /// Gives every directory of the tree its mode: declared, else 0755.
    fn modes(&mut self, tree: &Path) -> Result<(), ExportError> {
        strata_fs::set_mode(tree, 0o755)?;
        for entry in walkdir::WalkDir::new(tree).min_depth(1) {
            let entry = entry
                .map_err(|e| strata_fs::FsError::new("walk", tree, std::io::Error::from(e)))?;
            if !entry.file_type().is_dir() {
                continue;
            }
            let mode = self
                .dirs
                .iter()
                .find(|(p, _)| p == entry.path())
                .map_or(0o755, |(_, m)| *m);
            strata_fs::set_mode(entry.path(), mode)?;
        }
        Ok(())
    }
}

/// Packs `tree` into `deb`, every path owned by root (owners are set by `postinst`).
fn dpkg_deb(package: &str, tree: &Path, deb: &Path) -> Result<(), ExportError> {
    let out = std::process::Command::new("dpkg-deb")
        .args(["--root-owner-group", "--build"])
        .arg(tree)
        .arg(deb)
        .output()
        .map_err(|e| ExportError::DpkgDeb {
            package: package.to_string(),
            why: format!("cannot run dpkg-deb ({e}); it is in Debian's dpkg package"),
        })?;
    if !out.status.success() {
        return Err(ExportError::DpkgDeb {
            package: package.to_string(),
            why: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(())
}
