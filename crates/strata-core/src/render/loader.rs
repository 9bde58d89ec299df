//! `{% include %}`, `{% import %}` and `{% from … import … %}` of a module's other
//! templates: names are found in the module's `include/` (never deployed: a Salt
//! formula's `map.jinja`, a role's macros) and then its `templates/`, each with its
//! environment's layer first; a name beginning with `./` or `../` is relative to the
//! including template, as Salt's loader has it. Nothing outside those directories is
//! read: no absolute name, no `..` that climbs out, no link that leads out of the module.
//!
//! minijinja asks for a template twice: the path-join callback turns the written name
//! into the found file's site-relative path (the name errors show), and the loader reads
//! that file when the environment has not loaded it yet. Both see the render under way
//! through a thread-local (a render runs on one thread).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use minijinja::{Error, ErrorKind};

/// Where one module's templates find the templates they name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Includes {
    /// The site's directory: names are relative to it.
    site: PathBuf,
    /// The module's directory, resolved: no file outside it is read.
    module: PathBuf,
    /// Searched in order, site-relative.
    roots: Vec<String>,
}

impl Includes {
    /// A module's: `dir` is its directory, `site` the site's, `env` the node's environment.
    pub(crate) fn of_module(site: &Path, dir: &Path, env: &str) -> Includes {
        let rel = dir.strip_prefix(site).unwrap_or(dir).display().to_string();
        let roots = [
            format!("env/{env}/include"),
            "include".into(),
            format!("env/{env}/templates"),
            "templates".into(),
        ]
        .into_iter()
        .map(|r| strata_fs::join_rel(&rel, &r))
        .collect();
        Includes {
            site: site.to_path_buf(),
            module: strata_fs::canonical(dir).unwrap_or_else(|_| dir.to_path_buf()),
            roots,
        }
    }

    /// One directory as the only root (the corpus test's `include/`): `dir` holds the
    /// templates, named relative to it.
    pub fn of_dir(dir: &Path) -> Includes {
        Includes {
            site: dir.to_path_buf(),
            module: strata_fs::canonical(dir).unwrap_or_else(|_| dir.to_path_buf()),
            roots: vec![String::new()],
        }
    }

    /// The roots, for messages: `modules/m/include/, modules/m/templates/`.
    fn looked_in(&self) -> String {
        let shown: Vec<String> = (self.roots.iter())
            .filter(|r| r.is_empty() || strata_fs::is_dir(&self.site.join(r)))
            .map(|r| {
                if r.is_empty() {
                    "./".into()
                } else {
                    format!("{r}/")
                }
            })
            .collect();
        if shown.is_empty() {
            format!("{}/ (missing)", self.roots[1])
        } else {
            shown.join(", ")
        }
    }

    /// The site-relative path of the template `name` asked for from `parent`, or why
    /// it cannot be loaded.
    fn resolve(&self, name: &str, parent: &str) -> Result<String, String> {
        if name.is_empty() || name.contains('\0') || name.contains('\\') {
            return Err(format!("`{}` is not a template name", name.escape_debug()));
        }
        if name.starts_with('/') {
            return Err(format!(
                "`{name}` is absolute: a template names another by its path under the \
                 module's include/ or templates/"
            ));
        }
        if name.starts_with("./") || name.starts_with("../") {
            let dir = Path::new(parent).parent().unwrap_or(Path::new(""));
            let joined = normalize(&dir.join(name))
                .filter(|p| self.roots.iter().any(|r| p.starts_with(Path::new(r))))
                .ok_or_else(|| {
                    format!(
                        "`{name}` leads out of the module's templates ({})",
                        self.looked_in()
                    )
                })?;
            let rel = joined.display().to_string();
            return self.check(&rel).map(|()| rel);
        }
        if Path::new(name)
            .components()
            .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
        {
            return Err(format!(
                "`{name}` leads out of the module's templates: `..` may only begin a name \
                 relative to the including template"
            ));
        }
        for root in &self.roots {
            let rel = strata_fs::join_rel(root, name);
            let path = self.site.join(&rel);
            if path.is_file() || strata_fs::is_link(&path) {
                return self.check(&rel).map(|()| rel);
            }
        }
        Err(NOT_FOUND.into())
    }

    /// Refuses a file that is missing or whose links lead out of the module.
    fn check(&self, rel: &str) -> Result<(), String> {
        let path = self.site.join(rel);
        match strata_fs::canonical(&path) {
            Ok(real) if real.starts_with(&self.module) => Ok(()),
            Ok(_) => Err(format!(
                "`{rel}` is a link that leads out of the module: a template may load only \
                 the module's own files"
            )),
            Err(e) if e.is_not_found() => Err(NOT_FOUND.into()),
            Err(e) => Err(format!("`{rel}`: {}", e.source)),
        }
    }
}

/// Why [`Includes::resolve`] failed when the name is simply not there.
const NOT_FOUND: &str = "";

/// `path` with `.` and `..` folded, or `None` when `..` climbs above its start.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

thread_local! {
    /// The render under way on this thread: where its templates are found.
    static CURRENT: RefCell<Option<Arc<Includes>>> = const { RefCell::new(None) };
    /// The dialect of the render under way (a Salt module's loaded templates get Salt's
    /// import tags too).
    static DIALECT: Cell<super::Dialect> = const { Cell::new(super::Dialect::Ansible) };
    /// Whether the render under way asked for another template.
    pub(super) static LOADED: Cell<bool> = const { Cell::new(false) };
    /// The site-relative paths [`join`] found for the render under way: all the loader
    /// may read.
    static RESOLVED: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Sets the render's [`Includes`] until it is dropped.
pub(super) struct Current(());

impl Current {
    pub(super) fn set(includes: Option<Arc<Includes>>, dialect: super::Dialect) -> Current {
        CURRENT.with(|c| *c.borrow_mut() = includes);
        DIALECT.with(|d| d.set(dialect));
        LOADED.with(|l| l.set(false));
        RESOLVED.with(|r| r.borrow_mut().clear());
        Current(())
    }
}

impl Drop for Current {
    fn drop(&mut self) {
        CURRENT.with(|c| *c.borrow_mut() = None);
        RESOLVED.with(|r| r.borrow_mut().clear());
    }
}

/// What the render's templates may load, for messages.
pub(super) fn looked_in() -> Option<String> {
    CURRENT.with(|c| c.borrow().as_ref().map(|i| i.looked_in()))
}

/// A name minijinja gets back for a template that cannot be loaded: the loader turns it
/// into the error (minijinja's path-join callback cannot fail).
const REFUSED: &str = "\0refused\0";

/// The same for a template that is not there.
const MISSING: &str = "\0missing\0";

/// minijinja's path-join callback.
pub(super) fn join<'s>(name: &'s str, parent: &'s str) -> Cow<'s, str> {
    // What the render asked for, found or not, is what its output depends on: a file
    // that appears later changes it too.
    LOADED.with(|l| l.set(true));
    let found = CURRENT.with(|c| match c.borrow().as_ref() {
        None => {
            Err("this template is rendered outside a module: it cannot load another".to_string())
        }
        Some(inc) => inc.resolve(name, parent),
    });
    match found {
        Ok(rel) => {
            RESOLVED.with(|r| {
                let mut r = r.borrow_mut();
                if !r.contains(&rel) {
                    r.push(rel.clone());
                }
            });
            Cow::Owned(rel)
        }
        // Not there: minijinja's own "not found" (which `ignore missing` obeys), for a
        // name no module's file has, so that nothing loaded before is found by it.
        Err(why) if why.is_empty() => Cow::Owned(format!("{MISSING}{name}")),
        Err(why) => Cow::Owned(format!("{REFUSED}{why}")),
    }
}

/// minijinja's loader: reads a template [`join`] found.
pub(super) fn load(name: &str) -> Result<Option<String>, Error> {
    if let Some(why) = name.strip_prefix(REFUSED) {
        return Err(Error::new(ErrorKind::InvalidOperation, why.to_string()));
    }
    if name.starts_with(MISSING) {
        return Ok(None);
    }
    // Only what `join` found is read: any other name is no template.
    let Some(site) = CURRENT.with(|c| c.borrow().as_ref().map(|i| i.site.clone())) else {
        return Ok(None);
    };
    if !RESOLVED.with(|r| r.borrow().iter().any(|n| n == name)) {
        return Ok(None);
    }
    let path = site.join(name);
    let bytes = strata_fs::read(&path).map_err(|e| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("cannot read `{name}`: {}", e.source),
        )
    })?;
    let text = String::from_utf8(bytes).map_err(|_| {
        Error::new(
            ErrorKind::InvalidOperation,
            format!("`{name}` is not UTF-8 text"),
        )
    })?;
    Ok(Some(match DIALECT.with(Cell::get) {
        super::Dialect::Salt => super::salt_tags::rewrite(&text).into_owned(),
        super::Dialect::Ansible => text,
    }))
}
