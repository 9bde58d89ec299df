//! The [`Builder`]: each module of a node, in application order, made into the catalog's
//! resources (its files and templates, loaded by crate::load, with their `[[file]]`
//! metadata; its `[[dir]]`s, `[[download]]`s and `[[link]]`s), then the checks that need
//! every module's: a path declared once, parents that can be directories, lines only in
//! files no module declares whole.

use std::collections::btree_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use globset::{Glob, GlobMatcher};
use serde_json::{Map, Value, json};
use strata_types::{Hash, Step, TargetPath};
use toml::Spanned;

use crate::catalog::{Catalog, ModuleRun, Resource, ResourceKind};
use crate::compile::CompileOptions;
use crate::compiled::{Compiled, Lazy, LazyFile, Learnt};
use crate::error::{SiteError, SiteErrors};
use crate::load::{Loaded, Prior, load};
use crate::module::{FileKind, Module, ModuleFile, parse_mode};
use crate::params::ParamTree;
use crate::purge::Purge;
use crate::render::{Dialect, Includes, Renderer, Setup};
use crate::site::{NodeInfo, Site};

/// A catalog in the making.
pub(crate) struct Builder<'a> {
    site: &'a Site,
    /// The node's environment (which `env/<environment>/` of a module applies).
    env: &'a str,
    /// What every template sees but `module` and Ansible's variables: the parameters,
    /// `node` and `facts`.
    vars: Map<String, Value>,
    /// Ansible's variables, for templates that use them unless a parameter is so named.
    ansible: Vec<(&'static str, Value)>,
    /// Salt's (`pillar`, `grains`, `opts`, `saltenv`), for modules of Salt's dialect,
    /// made when the first such module is met.
    salt: std::sync::OnceLock<Vec<(&'static str, Value)>>,
    /// The parameters and the node's name, from which Salt's variables are made.
    params: Map<String, Value>,
    node_name: String,
    renderer: Renderer,
    resources: BTreeMap<TargetPath, Resource>,
    contents: HashMap<Hash, Vec<u8>>,
    errors: Vec<SiteError>,
    steps: Vec<Step>,
    purges: Vec<Purge>,
    lazy: Lazy,
    /// What earlier compiles learnt of the site's files.
    known: Option<&'a Compiled>,
    /// What this one learns: the files it read.
    learnt: Learnt,
    /// The site's clock before the compile began.
    now: Option<(i64, u32)>,
}

impl<'a> Builder<'a> {
    /// A builder for the node `node` in `environment`, its parameters resolved.
    pub fn new(
        site: &'a Site,
        environment: &'a str,
        opts: &'a CompileOptions,
        params: &ParamTree,
        node: &NodeInfo,
    ) -> Builder<'a> {
        let mut vars = params.values.clone();
        vars.insert(
            "node".into(),
            serde_json::to_value(node).unwrap_or(Value::Null),
        );
        vars.insert("facts".into(), Value::Object(opts.facts.clone()));
        Builder {
            site,
            env: environment,
            vars,
            ansible: ansible_variables(node),
            salt: std::sync::OnceLock::new(),
            params: params.values.clone(),
            node_name: node.name.clone(),
            renderer: Renderer::with_secrets(opts.secrets.clone()),
            resources: BTreeMap::new(),
            contents: HashMap::new(),
            errors: Vec::new(),
            steps: Vec::new(),
            purges: Vec::new(),
            lazy: Lazy::default(),
            known: opts.known.as_ref(),
            learnt: Learnt::default(),
            // The site's clock before any file is looked at (see crate::compiled).
            now: opts
                .known
                .as_ref()
                .and_then(|_| strata_fs::fs_now(&site.dir)),
        }
    }

    /// Checks what needs every module's resources, and makes the catalog.
    pub fn finish(
        mut self,
        node: NodeInfo,
        params: ParamTree,
        runs: Vec<ModuleRun>,
    ) -> Result<Catalog, SiteErrors> {
        self.check_parents();
        self.check_lines(&runs);
        if !self.errors.is_empty() {
            return Err(SiteErrors(self.errors));
        }
        self.lazy.renderer = Some(self.renderer);
        Ok(Catalog {
            node,
            params,
            runs,
            resources: self.resources.into_values().collect(),
            contents: self.contents,
            lazy: self.lazy,
            compiled: self.known.and_then(|before| self.learnt.finish(before)),
            steps: self.steps,
            purges: self.purges,
        })
    }

    /// Adds what module `m` declares; what is wrong is kept for the end.
    pub fn module(&mut self, m: &Module) {
        let id = m.id();
        let files = match m.files(self.site, self.env) {
            Ok(f) => f,
            Err(e) => {
                self.errors.push(e);
                return;
            }
        };
        let setup = Setup {
            dialect: m.toml.value.template_dialect,
            includes: Some(std::sync::Arc::new(Includes::of_module(
                &self.site.dir,
                &m.dir,
                self.env,
            ))),
        };
        let (ctx, ctx_hash) = self.context(m, setup.dialect);
        let ctx_index = self.lazy.ctxs.len();
        self.lazy.ctxs.push((ctx.clone(), setup.clone()));
        let decls = self.file_decls(m);
        let mut used = vec![false; decls.len()];
        let prior = self.known.zip(ctx_hash.as_ref()).map(|(known, ctx)| Prior {
            known,
            ctx,
            now: self.now,
        });
        // Most of them are found unchanged: room for all at once, not rehashed as it grows.
        self.lazy.files.reserve(files.len());
        // Reading, rendering and hashing are independent from file to file.
        let renderer = &self.renderer;
        let loaded = crate::par::map(&files, |f| {
            matches!(f.kind, FileKind::Copied | FileKind::Template)
                .then(|| load(f, renderer, &ctx, &setup, prior))
        });
        for (f, loaded) in files.into_iter().zip(loaded) {
            let Some(mut res) = self.file(f, loaded, &id, ctx_index) else {
                continue;
            };
            for (i, (glob, decl)) in decls.iter().enumerate() {
                if glob.is_match(res.path.as_str()) {
                    used[i] = true;
                    decl.apply(&mut res);
                }
            }
            self.add(res);
        }
        for ((_, decl), used) in decls.iter().zip(used) {
            if !used {
                self.errors.push(m.toml.error_at(
                    decl.offset,
                    format!(
                        "[[file]] path `{}` matches no file in files/ or templates/",
                        decl.pattern
                    ),
                ));
            }
        }
        self.dirs(m, &id);
        self.downloads(m, &id);
        self.links(m, &id);
    }

    /// What the templates of module `m` see: the parameters, `node`, `facts`, `module`,
    /// Ansible's variables and, in Salt's dialect, Salt's, each unless a parameter is so
    /// named; hashed with the dialect when an earlier compile is to be compared with (the
    /// same text, context and dialect render the same output).
    fn context(&self, m: &Module, dialect: Dialect) -> (minijinja::Value, Option<Hash>) {
        let mut ctx = self.vars.clone();
        ctx.insert(
            "module".into(),
            json!({"name": m.name, "version": m.version}),
        );
        for (key, value) in &self.ansible {
            ctx.entry(*key).or_insert_with(|| value.clone());
        }
        if dialect == Dialect::Salt {
            let salt = self.salt.get_or_init(|| {
                let facts = match self.vars.get("facts") {
                    Some(Value::Object(f)) => f.clone(),
                    _ => Map::new(),
                };
                crate::ansible::grains::salt_variables(
                    &self.params,
                    &facts,
                    &self.node_name,
                    self.env,
                )
            });
            for (key, value) in salt {
                ctx.entry(*key).or_insert_with(|| value.clone());
            }
            // template-formula's `map.jinja` finds its files by `tpldir.split('/')[0]`:
            // the module's name, as the formula's directory under include/.
            ctx.entry("tpldir").or_insert_with(|| json!(m.name));
        }
        let hash = self.known.map(|_| {
            let mut bytes = serde_json::to_vec(&ctx).unwrap_or_default();
            if dialect == Dialect::Salt {
                bytes.extend_from_slice(b"\0salt");
            }
            Hash::of(&bytes)
        });
        (minijinja::Value::from(minijinja::value::Serde(&ctx)), hash)
    }

    /// The resource a module's file makes (`None` when it cannot be read: the error is
    /// kept), root's and 0644 (0755 when executable in the site, 0777 for a link) until
    /// a `[[file]]` says otherwise. `loaded` is what [`load`] made of a copied file or a
    /// template; `ctx` the index of the module's template context.
    fn file(
        &mut self,
        f: ModuleFile,
        loaded: Option<Result<Loaded, SiteError>>,
        module: &str,
        ctx: usize,
    ) -> Option<Resource> {
        // Moved, not copied: each of these is a string per file.
        let ModuleFile {
            target,
            rel,
            path,
            kind,
        } = f;
        let mut res = Resource {
            path: target,
            kind: ResourceKind::Dir,
            mode: 0o644,
            owner: "root".into(),
            group: "root".into(),
            replace: true,
            module: module.to_string(),
            source: rel,
            sensitive: false,
        };
        match kind {
            FileKind::Link => match strata_fs::read_link(&path) {
                Ok(target) => {
                    res.kind = ResourceKind::Link { target };
                    res.mode = 0o777;
                }
                Err(e) => {
                    self.errors.push(
                        SiteError::in_file(&res.source, format!("cannot read link: {}", e.source))
                            .caused_by(e),
                    );
                    return None;
                }
            },
            // Executable because it runs; what it prints is an ordinary 0644 file.
            FileKind::Exec => res.kind = ResourceKind::Exec { program: path },
            FileKind::Copied | FileKind::Template => {
                let loaded = match loaded.expect("loaded: neither a link nor executable") {
                    Ok(l) => l,
                    Err(e) => {
                        self.errors.push(e);
                        return None;
                    }
                };
                if loaded.mode & 0o111 != 0 {
                    res.mode = 0o755;
                }
                res.kind = ResourceKind::File {
                    hash: loaded.hash,
                    size: loaded.size,
                };
                res.sensitive = loaded.sensitive;
                let ctx = (kind == FileKind::Template).then_some(ctx);
                self.keep(loaded, path, &res.source, ctx);
            }
        }
        Some(res)
    }

    /// Keeps a loaded file: its content when it was read, else where to load it from when
    /// asked (`ctx`: the template context it is rendered with); and what the next compile
    /// may skip.
    fn keep(&mut self, loaded: Loaded, path: PathBuf, rel: &str, ctx: Option<usize>) {
        let Loaded {
            content,
            hash,
            render,
            known,
            ..
        } = loaded;
        self.steps.extend(render);
        // (What was found unchanged is marked in `known` already.)
        if let (Some(k), true) = (known, content.is_some()) {
            self.learnt.learn(&path, k);
        }
        match content {
            Some(c) => {
                self.contents.insert(hash, c);
            }
            None => {
                self.lazy.files.insert(
                    hash,
                    LazyFile {
                        path,
                        rel: rel.to_string(),
                        ctx,
                        size: known.map_or(0, |k| k.key.size),
                        loaded: Default::default(),
                    },
                );
            }
        }
    }

    /// A declared path whose parent is declared as a file or a link cannot exist.
    fn check_parents(&mut self) {
        // The nearest declared ancestor of the last directory looked at: siblings come
        // together, and only one of them needs the search.
        let mut last: Option<(Option<&str>, Option<&Resource>)> = None;
        for res in self.resources.values() {
            let dir = res.path.parent_str();
            let nearest = match last {
                Some((d, nearest)) if d == dir => nearest,
                _ => {
                    let nearest = res.path.ancestor_strs().find_map(|a| self.resources.get(a));
                    last = Some((dir, nearest));
                    nearest
                }
            };
            let Some(parent) = nearest else {
                continue;
            };
            if !matches!(parent.kind, ResourceKind::Dir) {
                let kind = if matches!(parent.kind, ResourceKind::Link { .. }) {
                    "link"
                } else {
                    "file"
                };
                self.errors.push(SiteError::new(format!(
                    "{} is declared as a {kind} by {} ({}), but {} ({}, {}) needs it to be a directory",
                    parent.path, parent.module, parent.source, res.path, res.module, res.source
                )));
            }
        }
    }

    /// A line cannot be managed in a file a module declares whole.
    fn check_lines(&mut self, runs: &[ModuleRun]) {
        for r in runs {
            for l in &r.declared.lines {
                let Ok(path) = TargetPath::parse(&l.path) else {
                    continue;
                };
                if let Some(res) = self.resources.get(&path) {
                    self.errors.push(SiteError::new(format!(
                        "{path} is declared whole by {} ({}), so module {} cannot manage a line in it; put the line in that file",
                        res.module, res.source, r.id
                    )));
                }
            }
        }
    }

    /// Adds a resource; a path declared twice is an error naming both.
    fn add(&mut self, res: Resource) {
        // One search of the map, not a lookup and then an insert.
        match self.resources.entry(res.path.clone()) {
            Entry::Occupied(other) => {
                let other = other.get();
                self.errors.push(SiteError::new(format!(
                    "{} is declared by both {} ({}) and {} ({})",
                    res.path, other.module, other.source, res.module, res.source
                )));
            }
            Entry::Vacant(v) => {
                v.insert(res);
            }
        }
    }

    /// Each `[[file]]` of module `m`, its glob compiled; errors are kept and the entry
    /// left out.
    fn file_decls(&mut self, m: &Module) -> Vec<(GlobMatcher, Decl)> {
        let mut out = Vec::new();
        for d in &m.toml.value.file {
            let pattern = d.path.get_ref();
            let pat = if pattern.starts_with('/') {
                pattern.clone()
            } else {
                format!("/{pattern}")
            };
            let glob = match Glob::new(&pat) {
                Ok(g) => g.compile_matcher(),
                Err(e) => {
                    self.errors.push(m.toml.error_at(
                        d.path.span().start,
                        format!("bad glob `{pattern}`: {}", e.kind()),
                    ));
                    continue;
                }
            };
            let Some((mode, owner, group)) = self.meta(m, &d.mode, &d.owner, &d.group) else {
                continue;
            };
            out.push((
                glob,
                Decl {
                    pattern: pattern.clone(),
                    offset: d.path.span().start,
                    mode,
                    owner,
                    group,
                    replace: d.replace,
                },
            ));
        }
        out
    }

    /// The mode, owner and group a `[[file]]` or `[[dir]]` declares, each checked; `None`
    /// when one is refused (the error is kept, at its line).
    fn meta(
        &mut self,
        m: &Module,
        mode: &Option<Spanned<String>>,
        owner: &Option<Spanned<String>>,
        group: &Option<Spanned<String>>,
    ) -> Option<(Option<u32>, Option<String>, Option<String>)> {
        let mode = match mode.as_ref().map(|s| parse_mode(s.get_ref())).transpose() {
            Ok(mode) => mode,
            Err(msg) => {
                let at = mode.as_ref().map_or(0, |s| s.span().start);
                self.errors.push(m.toml.error_at(at, msg));
                return None;
            }
        };
        let (Some(owner), Some(group)) =
            (self.owner(m, "owner", owner), self.owner(m, "group", group))
        else {
            return None;
        };
        Some((mode, owner, group))
    }

    /// A declared owner or group (`what`), refused with its line when it is an id chown
    /// cannot give (see [`crate::resources::bad_id`]): `None` then.
    fn owner(
        &mut self,
        m: &Module,
        what: &str,
        value: &Option<Spanned<String>>,
    ) -> Option<Option<String>> {
        let Some(v) = value else {
            return Some(None);
        };
        match crate::resources::bad_id(what, v.get_ref()) {
            Some(msg) => {
                self.errors.push(m.toml.error_at(v.span().start, msg));
                None
            }
            None => Some(Some(v.get_ref().clone())),
        }
    }

    /// The target path a `[[dir]]` or `[[link]]` declares; `None` when it is not one (the
    /// error is kept, at its line).
    fn target(&mut self, m: &Module, path: &Spanned<String>) -> Option<TargetPath> {
        match TargetPath::parse(path.get_ref()) {
            Ok(p) => Some(p),
            Err(e) => {
                self.errors
                    .push(m.toml.error_at(path.span().start, e.to_string()));
                None
            }
        }
    }

    /// Each `[[dir]]` of module `m` (id `id`), and the purges they declare.
    fn dirs(&mut self, m: &Module, id: &str) {
        for d in &m.toml.value.dir {
            let Some(path) = self.target(m, &d.path) else {
                continue;
            };
            let Some((mode, owner, group)) = self.meta(m, &d.mode, &d.owner, &d.group) else {
                continue;
            };
            let mode = mode.unwrap_or(0o755);
            let line = m.toml.line(d.path.span().start);
            match Purge::declared(d, &path, &m.toml, id) {
                Ok(purge) => self.purges.extend(purge),
                Err(e) => self.errors.extend(e),
            }
            self.add(Resource::declared(
                path,
                ResourceKind::Dir,
                (mode, &owner, &group),
                id,
                format!("{}:{line}", m.toml.rel),
            ));
        }
    }

    /// Each `[[download]]` of module `m` (id `id`).
    fn downloads(&mut self, m: &Module, id: &str) {
        for d in &m.toml.value.download {
            let at = d.span().start;
            let source = format!("{}:{}", m.toml.rel, m.toml.line(at));
            match d.get_ref().resource(id, source) {
                Ok(res) => self.add(res),
                Err(msg) => self.errors.push(m.toml.error_at(at, msg)),
            }
        }
    }

    /// Each `[[link]]` of module `m` (id `id`).
    fn links(&mut self, m: &Module, id: &str) {
        for l in &m.toml.value.link {
            let Some(path) = self.target(m, &l.path) else {
                continue;
            };
            let line = m.toml.line(l.path.span().start);
            self.add(Resource::declared(
                path,
                ResourceKind::Link {
                    target: l.target.clone(),
                },
                (0o777, &None, &None),
                id,
                format!("{}:{line}", m.toml.rel),
            ));
        }
    }
}

/// The variables Ansible gives every template that a role's templates use, unless a
/// parameter of the same name is set: `ansible_managed` (Ansible's default text),
/// `inventory_hostname` (the node's name), `inventory_hostname_short` (up to its first
/// dot) and `group_names` (its groups, sorted).
fn ansible_variables(node: &NodeInfo) -> Vec<(&'static str, Value)> {
    let short = node
        .name
        .split('.')
        .next()
        .unwrap_or(&node.name)
        .to_string();
    let mut groups = node.groups.clone();
    groups.sort();
    vec![
        ("ansible_managed", json!("Ansible managed")),
        ("inventory_hostname", json!(node.name)),
        ("inventory_hostname_short", json!(short)),
        ("group_names", json!(groups)),
    ]
}

/// A `[[file]]` declaration, compiled.
struct Decl {
    /// The glob as written.
    pattern: String,
    /// Where in `module.toml`.
    offset: usize,
    mode: Option<u32>,
    owner: Option<String>,
    group: Option<String>,
    replace: Option<bool>,
}

impl Decl {
    /// Gives a resource its `[[file]]` metadata.
    fn apply(&self, res: &mut Resource) {
        if let Some(mode) = self.mode {
            res.mode = mode;
        }
        if let Some(o) = &self.owner {
            res.owner = o.clone();
        }
        if let Some(g) = &self.group {
            res.group = g.clone();
        }
        if let Some(r) = self.replace {
            res.replace = r;
        }
    }
}
