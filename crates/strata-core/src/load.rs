//! Loading one file of a module: read, rendered when it is a template, and hashed; or,
//! when an earlier compile knows it unchanged (crate::compiled), only looked at.

use strata_fs::Meter;
use strata_types::{Hash, Step};

use crate::compiled::{Compiled, Known};
use crate::error::SiteError;
use crate::module::{FileKind, ModuleFile};
use crate::render::{Renderer, Setup};

/// A file of the site read (and rendered, for a template), or found unchanged.
pub(crate) struct Loaded {
    /// `None` when found unchanged: loaded only if needed.
    pub content: Option<Vec<u8>>,
    /// Its mode in the site.
    pub mode: u32,
    pub hash: Hash,
    pub size: u64,
    /// The render's step, for a template.
    pub render: Option<Step>,
    /// What to remember of it.
    pub known: Option<Known>,
    /// A template that read a secret: its output is shown nowhere, and never cached.
    pub sensitive: bool,
}

/// What a compile knows before loading a module's files: what earlier compiles learnt, the
/// hash of the module's template context, and the site's clock.
#[derive(Clone, Copy)]
pub(crate) struct Prior<'a> {
    pub known: &'a Compiled,
    pub ctx: &'a Hash,
    pub now: Option<(i64, u32)>,
}

/// Reads a file of the site, renders it when it is a template, and hashes the result;
/// when `prior` knows it unchanged, only looks at its metadata.
pub(crate) fn load(
    f: &ModuleFile,
    renderer: &Renderer,
    ctx: &minijinja::Value,
    setup: &Setup,
    prior: Option<Prior<'_>>,
) -> Result<Loaded, SiteError> {
    let unreadable = |e: strata_fs::FsError| {
        SiteError::in_file(&f.rel, format!("cannot read: {}", e.source)).caused_by(e)
    };
    let template = f.kind == FileKind::Template;
    let ctx_hash = prior.filter(|_| template).map(|p| *p.ctx);
    if let Some(p) = prior {
        let (key, mode) = strata_fs::stat_key(&f.path).map_err(unreadable)?;
        if let Some(k) = p.known.get(&f.path, &key, ctx_hash.as_ref()) {
            return Ok(Loaded {
                content: None,
                mode,
                hash: k.hash,
                size: k.size,
                render: None,
                known: Some(*k),
                sensitive: false,
            });
        }
    }
    let (bytes, key, mode) = strata_fs::read_with_key(&f.path).map_err(unreadable)?;
    let (content, render, sensitive, loaded) = if template {
        let meter = Meter::light();
        let text = String::from_utf8(bytes)
            .map_err(|_| SiteError::in_file(&f.rel, "a template must be UTF-8 text"))?;
        let r = renderer.render_marked(&f.rel, &text, ctx, setup)?;
        let step = meter.finish(format!("render {}", f.target));
        (r.out.into_bytes(), Some(step), r.sensitive, r.loaded)
    } else {
        (bytes, None, false, false)
    };
    let hash = Hash::of(&content);
    let now = prior.and_then(|p| p.now);
    // What read a secret is rendered again by every compile: its hash is kept nowhere,
    // and a changed secret is always seen. So is what loaded another template, whose
    // change its own file's would not show.
    let known = match (key, now) {
        _ if sensitive || loaded => None,
        (Some(key), Some(now)) if key.ctime < now => Some(Known {
            key,
            ctx: ctx_hash,
            hash,
            size: content.len() as u64,
        }),
        _ => None,
    };
    Ok(Loaded {
        size: content.len() as u64,
        content: Some(content),
        mode,
        hash,
        render,
        known,
        sensitive,
    })
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test's own temporary files
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::render::{Dialect, Includes};

    /// A template that loads another is not remembered: the next compile would find its
    /// own file unchanged and miss the loaded one's change.
    #[test]
    fn a_template_that_loads_another_is_not_remembered() {
        let site = tempfile::tempdir().unwrap();
        let module = site.path().join("modules/m");
        std::fs::create_dir_all(module.join("templates")).unwrap();
        std::fs::create_dir_all(module.join("include")).unwrap();
        std::fs::write(module.join("include/part.j2"), "part").unwrap();
        std::fs::write(module.join("templates/plain.j2"), "plain").unwrap();
        std::fs::write(module.join("templates/loads.j2"), "{% include 'part.j2' %}").unwrap();
        let setup = Setup {
            dialect: Dialect::Ansible,
            includes: Some(Arc::new(Includes::of_module(site.path(), &module, "e"))),
        };
        let (known, ctx) = (Compiled::default(), Hash::of(b"ctx"));
        let prior = Prior {
            known: &known,
            ctx: &ctx,
            // The site's clock far ahead: every file is old enough to be remembered.
            now: Some((i64::MAX, 0)),
        };
        let load_one = |name: &str| {
            let f = ModuleFile {
                target: strata_types::TargetPath::parse(name).unwrap(),
                rel: format!("modules/m/templates/{name}.j2"),
                path: module.join(format!("templates/{name}.j2")),
                kind: FileKind::Template,
            };
            let ctx = minijinja::Value::from(());
            load(&f, &Renderer::new(), &ctx, &setup, Some(prior)).unwrap()
        };
        let plain = load_one("plain");
        assert!(plain.known.is_some(), "an ordinary template is remembered");
        let loads = load_one("loads");
        assert_eq!(loads.content.as_deref(), Some(&b"part"[..]));
        assert!(loads.known.is_none(), "one that loads another is not");
    }
}
