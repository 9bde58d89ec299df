//! `[[download]]`: a file strata fetches, pinned by its SHA-256. Here its declaration
//! is checked and made a resource; the fetching is the engine's (it needs the network,
//! which core never uses).

use serde::Deserialize;
use strata_types::TargetPath;

use crate::catalog::{Resource, ResourceKind};
use crate::module::parse_mode;
use crate::resources::bad_id;

/// `[[download]]`: a file fetched by strata, pinned by its SHA-256.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct DownloadDecl {
    pub url: String,
    pub sha256: String,
    /// Its size in bytes: a body longer or shorter is an error.
    pub size: Option<u64>,
    pub path: String,
    pub mode: Option<String>,
    pub owner: Option<String>,
    pub group: Option<String>,
}

impl DownloadDecl {
    /// The resource this declares for module `module` (declared at `source`), or what is
    /// wrong with it.
    pub(crate) fn resource(&self, module: &str, source: String) -> Result<Resource, String> {
        let path = TargetPath::parse(&self.path).map_err(|e| e.to_string())?;
        let sha256 = self.sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(format!(
                "[[download]] {path}: sha256 must be 64 hexadecimal digits, not `{}`",
                self.sha256
            ));
        }
        if !(self.url.starts_with("https://") || self.url.starts_with("http://")) {
            return Err(format!(
                "[[download]] {path}: url must start with https:// (or http://), not `{}`",
                self.url
            ));
        }
        let mode = self.mode.as_deref().map(parse_mode).transpose()?;
        let ids = [("owner", &self.owner), ("group", &self.group)];
        if let Some(msg) = ids.iter().find_map(|(what, v)| bad_id(what, v.as_deref()?)) {
            return Err(format!("[[download]] {path}: {msg}"));
        }
        Ok(Resource::declared(
            path,
            ResourceKind::Download {
                url: self.url.clone(),
                sha256,
                size: self.size,
            },
            (mode.unwrap_or(0o644), &self.owner, &self.group),
            module,
            source,
        ))
    }
}
