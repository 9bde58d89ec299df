//! Debian packages of a site's modules and roles (`strata export deb`), for sites whose
//! machines take their configuration from apt. A module version becomes one package: its
//! files and rendered templates with their modes, directories and links, owners set and
//! its scripts run in order from `postinst`, `Depends:` on what it `requires`. A role
//! version becomes a metapackage depending on its modules' exact versions. Upgrading,
//! removing and purging are then dpkg's own (docs/packaging.md).
//!
//! No terminal, no environment: the caller says which site, what, for which node or
//! environment, and where the packages go. Packages are built by `dpkg-deb`.

mod build;
mod debian;
mod maint;
mod select;

use std::path::PathBuf;

use strata_core::{Site, SiteErrors};
use strata_fs::FsError;

pub use select::Scope;

/// What to export.
#[derive(Debug, Clone)]
pub struct Request {
    /// The site directory.
    pub site: PathBuf,
    /// `MODULE[@VERSION]` or `ROLE[@VERSION]` (`module:NAME`, `role:NAME` when a module
    /// and a role share the name).
    pub what: String,
    /// Rendered for one node, or for an environment.
    pub scope: Scope,
    /// Where the `.deb` files go.
    pub out: PathBuf,
    /// The packages' `Maintainer:` (`Name <address>`).
    pub maintainer: String,
}

/// One package written.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Package {
    /// Its Debian name (`strata-acme-app`).
    pub name: String,
    /// Its Debian version.
    pub version: String,
    /// The `.deb` file.
    pub path: PathBuf,
    /// What it holds: `module app@2.0` or `role webserver@2.0`.
    pub source: String,
    /// Its `Depends:`, one relation each.
    pub depends: Vec<String>,
    /// How many paths it installs (files, directories and links).
    pub paths: usize,
}

/// Why an export failed.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// The site is invalid, or the node does not compile.
    #[error("{0}")]
    Site(#[from] SiteErrors),
    /// A file could not be read or written.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// What was asked cannot be exported (an unknown name, a declaration packages cannot
    /// hold, a version Debian refuses…).
    #[error("{0}")]
    Invalid(String),
    /// `dpkg-deb` could not run or refused a package.
    #[error("dpkg-deb could not build {package}: {why}")]
    DpkgDeb {
        /// The package.
        package: String,
        /// What it said, or why it did not run.
        why: String,
    },
}

/// Builds the packages of `req.what` into `req.out`: one per module version (the
/// module and every module it requires), plus a metapackage when a role was asked for.
/// In dependency order: a package comes after those it depends on.
pub fn export(req: &Request) -> Result<Vec<Package>, ExportError> {
    let site = Site::open(&req.site)?;
    let prefix = debian::site_prefix(&site.name)?;
    let selection = select::select(&site, &req.what, &req.scope)?;
    let cx = build::Context {
        site: &site,
        selection: &selection,
        maintainer: &req.maintainer,
    };
    let specs = build::specs(&cx, &prefix)?;
    strata_fs::create_dir_all(&req.out)?;
    specs
        .iter()
        .map(|s| build::write(&cx, s, &req.out))
        .collect()
}
