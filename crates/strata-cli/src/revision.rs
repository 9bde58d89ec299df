//! The site revision a snapshot carries: the git commit with `+dirty` when the checkout
//! has changes not committed (strata-core's `Revision`), else strata-snapshot's
//! `blake3:` hash of the site's files, which names their content exactly.

use std::path::Path;

use strata_snapshot::SiteFiles;

/// The site's files for a release, their revision marked dirty when the checkout is.
pub fn site_files(site: &Path) -> anyhow::Result<SiteFiles> {
    let mut files = SiteFiles::read(site)?;
    let revision = strata_core::Revision::of(site);
    if revision.id != "none" {
        files.revision = revision.to_snapshot();
    }
    Ok(files)
}
