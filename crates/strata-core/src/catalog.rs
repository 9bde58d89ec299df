//! Compiling one node: the site, the node's facts and the command line's `--set`s become
//! a catalog, the full desired state with rendered content.

use std::borrow::Cow;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

use globset::{Glob, GlobMatcher};
use serde_json::{Map, Value, json};
use strata_fs::Meter;
use strata_types::{ContentSource, Entry, Hash, Snapshot, Step, TargetPath};

use crate::compiled::{Compiled, Known, Lazy, LazyFile, Learnt};

use crate::error::{SiteError, SiteErrors};
use crate::graph::{self, Wanted};
use crate::module::{Module, parse_mode};
use crate::params::{self, ParamTree};
use crate::purge::Purge;
use crate::render::Renderer;
use crate::resources::{self, Declared};
use crate::site::{NodeInfo, NodeToml, Ref, RoleToml, Site, candidates};
use crate::tomlfile::{self, TomlFile};

/// What a compile needs besides the site and the node's name.
#[derive(Debug, Clone, Default)]
pub struct CompileOptions {
    /// `--set key=value` pairs, highest precedence.
    pub sets: Vec<(String, String)>,
    /// The node's facts, seen by templates as `facts`.
    pub facts: Map<String, Value>,
    /// What hardware classification assigned, if anything.
    pub hardware: Option<HardwareLayer>,
    /// What an earlier compile of this node learnt of the site's files: unchanged files
    /// are then neither read nor rendered until their content is needed. `None` reads
    /// everything and learns nothing.
    pub known: Option<Compiled>,
}

/// The role and `hw.*` parameters a hardware profile assigns (parameter layer 6).
#[derive(Debug, Clone, Default)]
pub struct HardwareLayer {
    /// The profile that matched.
    pub profile: String,
    /// Its role (`name@version`).
    pub role: Option<String>,
    /// The `hw.*` values: captured variables and pool entries.
    pub params: Map<String, Value>,
}

/// What kind of object a resource is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResourceKind {
    /// A regular file with this content.
    File {
        /// Content hash (the bytes are in [`Catalog::contents`]).
        hash: Hash,
        /// Content size.
        size: u64,
    },
    /// A directory.
    Dir,
    /// A symbolic link.
    Link {
        /// Where it points.
        target: String,
    },
    /// A file whose content an executable template prints (it runs in the sandbox).
    Exec {
        /// The executable template in the site.
        program: PathBuf,
    },
    /// A file strata fetches, pinned by its SHA-256.
    Download {
        /// Where from (`https://`, or `http://`).
        url: String,
        /// The SHA-256 of its content, lowercase hex.
        sha256: String,
        /// Its size in bytes, when the site declares it.
        size: Option<u64>,
    },
}

impl Resource {
    /// A path a module declares in its `module.toml`: mode, owner and group (root when
    /// not given).
    pub(crate) fn declared(
        path: TargetPath,
        kind: ResourceKind,
        (mode, owner, group): (u32, &Option<String>, &Option<String>),
        module: &str,
        source: String,
    ) -> Resource {
        Resource {
            path,
            kind,
            mode,
            owner: owner.clone().unwrap_or_else(|| "root".into()),
            group: group.clone().unwrap_or_else(|| "root".into()),
            replace: true,
            module: module.to_string(),
            source,
            sensitive: false,
        }
    }

    /// The owner and group ids on the target, from its own users and groups.
    pub fn ids(&self, users: &crate::UserDb) -> Result<(u32, u32), SiteError> {
        let (uid, gid) = (users.uid(&self.owner), users.gid(&self.group));
        let (Some(uid), Some(gid)) = (uid, gid) else {
            let (what, name, file) = if uid.is_none() {
                ("user", &self.owner, "/etc/passwd")
            } else {
                ("group", &self.group, "/etc/group")
            };
            return Err(SiteError::in_file(
                self.source.clone(),
                format!(
                    "{what} `{name}` (for {}, module {}) does not exist on the target: not in its {file}",
                    self.path, self.module
                ),
            ));
        };
        Ok((uid, gid))
    }
}

/// A module's part in a sandbox run, in application order.
#[derive(Debug, Clone)]
pub struct ModuleRun {
    /// `name@version`.
    pub id: String,
    /// Its scripts, in lexical order.
    pub scripts: Vec<ScriptDecl>,
    /// Each script's (and executable template's) time limit.
    pub timeout: std::time::Duration,
    /// `plan_network = true`: its scripts may use the network in a plan.
    pub plan_network: bool,
    /// Its packages, groups, users, services and lines.
    pub declared: Declared,
    /// A digest of what its sandbox steps depend on (declarations and scripts).
    pub digest: String,
}

/// One script of a module.
#[derive(Debug, Clone)]
pub struct ScriptDecl {
    /// `scripts/10-config.sh`.
    pub name: String,
    /// Where it is.
    pub path: PathBuf,
}

/// How long a script may run unless its module says otherwise.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// One path the catalog declares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    /// The path on the node.
    pub path: TargetPath,
    /// File, directory or link.
    pub kind: ResourceKind,
    /// Permission bits.
    pub mode: u32,
    /// Owner name (or numeric id).
    pub owner: String,
    /// Group name (or numeric id).
    pub group: String,
    /// `false`: create when missing, never overwrite.
    pub replace: bool,
    /// The declaring module (`nginx@1.2`).
    pub module: String,
    /// The site file it comes from.
    pub source: String,
    /// Whether its content came from a secret.
    pub sensitive: bool,
}

/// A node's desired state.
#[derive(Debug)]
pub struct Catalog {
    /// The node as templates saw it.
    pub node: NodeInfo,
    /// The resolved parameters.
    pub params: ParamTree,
    /// Each module in application order: its id, scripts and their settings.
    pub runs: Vec<ModuleRun>,
    /// Every declared path, in path order.
    pub resources: Vec<Resource>,
    /// Content by hash (what was read and rendered).
    pub contents: HashMap<Hash, Vec<u8>>,
    /// Content by hash that is loaded only when asked for (files found unchanged).
    pub lazy: Lazy,
    /// What to remember of the site's files for the next compile: when asked to, and only
    /// when it differs from what the compile started from.
    pub compiled: Option<Compiled>,
    /// Metrics of the compile's own sub-steps (one per rendered template).
    pub steps: Vec<Step>,
    /// Directories whose undeclared entries are removed (`[[dir]] purge = true`).
    pub purges: Vec<Purge>,
}

/// Every content of the catalog: what was read, else loaded on demand.
impl ContentSource for Catalog {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        match self.contents.get(hash) {
            Some(c) => Some(Cow::Borrowed(c)),
            None => self.lazy.content(hash),
        }
    }

    fn ahead(&self, order: &[Hash], then: &mut dyn FnMut()) {
        self.lazy.ahead(order, then);
    }
}

impl Catalog {
    /// The catalog's paths as generation entries, with owners resolved against the
    /// target's own users and groups.
    pub fn entries(&self, users: &crate::UserDb) -> Result<Vec<Entry>, SiteErrors> {
        let mut out = Vec::with_capacity(self.resources.len());
        let mut errors = Vec::new();
        for r in &self.resources {
            let (uid, gid) = match r.ids(users) {
                Ok(ids) => ids,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let state = match &r.kind {
                ResourceKind::File { hash, size } => Snapshot::File {
                    hash: *hash,
                    size: *size,
                    mode: r.mode,
                    uid,
                    gid,
                    xattrs: Default::default(),
                },
                ResourceKind::Dir => Snapshot::Dir {
                    mode: r.mode,
                    uid,
                    gid,
                    xattrs: Default::default(),
                },
                ResourceKind::Link { target } => Snapshot::Link {
                    target: target.clone(),
                    uid,
                    gid,
                },
                // Its content is known only once it ran in the sandbox.
                ResourceKind::Exec { .. } | ResourceKind::Download { .. } => continue,
            };
            out.push(Entry {
                path: r.path.clone(),
                state,
                replace: r.replace,
                implicit: false,
                sensitive: r.sensitive,
                observed: false,
                module: Some(r.module.clone()),
                source: Some(r.source.clone()),
            });
        }
        if errors.is_empty() {
            Ok(out)
        } else {
            Err(SiteErrors(errors))
        }
    }
}

/// Where a node's desired state comes from in the site: its own file, its environment,
/// groups, roles and modules, each found once.
pub(crate) struct NodeParts {
    /// `nodes/<node>.toml`; none for a node named only in groups or by hardware.
    pub file: Option<TomlFile<NodeToml>>,
    /// Its environment: the node file's, else the site's default.
    pub environment: String,
    /// Its groups, least specific first.
    pub groups: Vec<String>,
    /// Its roles (`name@version` and file), each once.
    pub roles: Vec<(String, TomlFile<RoleToml>)>,
    /// Its modules in application order: each after what it requires.
    pub modules: Vec<Module>,
}

/// Compiles `node`; every error found is returned, not only the first.
pub fn compile(site: &Site, node: &str, opts: &CompileOptions) -> Result<Catalog, SiteErrors> {
    let parts = NodeParts::find(site, node, opts)?;
    let mut errors: Vec<SiteError> = Vec::new();
    let mut runs = Vec::new();
    for m in &parts.modules {
        match m.run(site) {
            Ok(r) => runs.push(r),
            Err(e) => errors.extend(e),
        }
    }
    let declared: Vec<(String, &Declared)> =
        runs.iter().map(|r| (r.id.clone(), &r.declared)).collect();
    errors.extend(resources::conflicts(&declared));
    let info = NodeInfo {
        name: node.to_string(),
        environment: parts.environment.clone(),
        roles: parts.roles.iter().map(|(id, _)| id.clone()).collect(),
        groups: parts.groups.clone(),
    };
    let params = match params::layer(site, &parts, opts) {
        Ok(p) => p,
        Err(e) => {
            errors.extend(e.0);
            ParamTree::default()
        }
    };
    if !errors.is_empty() {
        return Err(SiteErrors(errors));
    }
    let environment = &parts.environment;
    // The site's clock before any file is looked at (see crate::compiled).
    let now = opts
        .known
        .as_ref()
        .and_then(|_| strata_fs::fs_now(&site.dir));
    let mut builder = Builder {
        site,
        env: environment,
        resources: BTreeMap::new(),
        contents: HashMap::new(),
        errors: Vec::new(),
        steps: Vec::new(),
        purges: Vec::new(),
        lazy: Lazy::default(),
        known: opts.known.as_ref(),
        learnt: Learnt::default(),
        now,
    };
    let renderer = Renderer::new();
    for m in &parts.modules {
        builder.module(m, &renderer, &params, &info, &opts.facts);
    }
    builder.lazy.renderer = Some(renderer);
    builder.check_parents();
    builder.check_lines(&runs);
    if !builder.errors.is_empty() {
        return Err(SiteErrors(builder.errors));
    }
    Ok(Catalog {
        node: info,
        params,
        runs,
        resources: builder.resources.into_values().collect(),
        contents: builder.contents,
        lazy: builder.lazy,
        compiled: builder
            .known
            .and_then(|before| builder.learnt.finish(before)),
        steps: builder.steps,
        purges: builder.purges,
    })
}

impl NodeParts {
    /// Finds what `node` is made of: its roles (the node's own, then its groups', each
    /// role once), then its modules (the roles', the groups', then the node's own) and
    /// everything they require.
    fn find(site: &Site, node: &str, opts: &CompileOptions) -> Result<NodeParts, SiteErrors> {
        if !site.knows_node(node) && opts.hardware.is_none() {
            let known = site.nodes()?;
            return Err(SiteError::new(format!(
                "unknown node `{node}`: no nodes/{node}.toml and no group lists it{}",
                candidates(known.iter(), node)
            ))
            .into());
        }
        let file = site.node(node)?;
        let environment = file
            .as_ref()
            .and_then(|f| f.value.environment.as_ref().map(|e| e.get_ref().clone()))
            .unwrap_or_else(|| site.default_environment.clone());
        let groups = site.groups_of(node);

        let mut role_refs: Vec<Wanted> = Vec::new();
        if let Some(f) = &file {
            role_refs.extend(wanted(f, &f.value.roles, &format!("node {node}")));
        }
        for g in &groups {
            let f = &site.groups[g];
            role_refs.extend(wanted(f, &f.value.roles, &format!("group {g}")));
        }
        if let Some(hw) = &opts.hardware
            && let Some(role) = &hw.role
        {
            role_refs.push(Wanted {
                text: role.clone(),
                by: format!("hardware profile {}", hw.profile),
                error: SiteError::in_file(
                    "hardware/profiles.toml",
                    format!("profile `{}`", hw.profile),
                ),
            });
        }
        let roles = load_roles(site, role_refs)?;

        let mut module_refs: Vec<Wanted> = Vec::new();
        for (id, role) in &roles {
            module_refs.extend(wanted(role, &role.value.modules, &format!("role {id}")));
        }
        for g in &groups {
            let f = &site.groups[g];
            module_refs.extend(wanted(f, &f.value.modules, &format!("group {g}")));
        }
        if let Some(f) = &file {
            module_refs.extend(wanted(f, &f.value.modules, &format!("node {node}")));
        }
        let modules = graph::resolve(site, module_refs)?;
        Ok(NodeParts {
            file,
            environment,
            groups,
            roles,
            modules,
        })
    }
}

/// The references a file lists (roles or modules), each located in that file.
fn wanted<T>(file: &TomlFile<T>, refs: &[toml::Spanned<String>], by: &str) -> Vec<Wanted> {
    refs.iter()
        .map(|r| Wanted {
            text: r.get_ref().clone(),
            by: by.to_string(),
            error: file.error_at(r.span().start, ""),
        })
        .collect()
}

/// Loads each wanted role once (the same role at two versions is an error).
fn load_roles(
    site: &Site,
    refs: Vec<Wanted>,
) -> Result<Vec<(String, TomlFile<RoleToml>)>, SiteErrors> {
    let mut out: Vec<(String, TomlFile<RoleToml>)> = Vec::new();
    let mut by_name: BTreeMap<String, (String, String)> = BTreeMap::new();
    let mut errors = Vec::new();
    for w in refs {
        let fail = |message: String| SiteError {
            message,
            ..w.error.clone()
        };
        let r = match Ref::parse(&w.text) {
            Ok(r) => r,
            Err(e) => {
                errors.push(fail(format!("bad role reference {e}")));
                continue;
            }
        };
        let (path, version) = match site.role_path(&r.name, r.version.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                errors.push(fail(e));
                continue;
            }
        };
        let id = match &version {
            Some(v) => format!("{}@{v}", r.name),
            None => r.name.clone(),
        };
        if let Some((have, by)) = by_name.get(&r.name) {
            if *have != id {
                errors.push(fail(format!(
                    "{} wants role `{}`, but {by} already chose {have}",
                    w.by, w.text
                )));
            }
            continue;
        }
        by_name.insert(r.name.clone(), (id.clone(), w.by.clone()));
        match tomlfile::load::<RoleToml>(&site.dir, &site.rel(&path)) {
            Ok(f) => out.push((id, f)),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(SiteErrors(errors))
    }
}

/// The variables Ansible gives every template that a role's templates use, unless a
/// parameter of the same name is set: `ansible_managed` (Ansible's default text),
/// `inventory_hostname` (the node's name), `inventory_hostname_short` (up to its first
/// dot) and `group_names` (its groups, sorted).
fn ansible_variables(ctx: &mut serde_json::Map<String, Value>, node: &NodeInfo) {
    let short = node
        .name
        .split('.')
        .next()
        .unwrap_or(&node.name)
        .to_string();
    let mut groups = node.groups.clone();
    groups.sort();
    for (key, value) in [
        ("ansible_managed", json!("Ansible managed")),
        ("inventory_hostname", json!(node.name)),
        ("inventory_hostname_short", json!(short)),
        ("group_names", json!(groups)),
    ] {
        ctx.entry(key).or_insert(value);
    }
}

struct Builder<'a> {
    site: &'a Site,
    env: &'a str,
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

/// A file of the site read (and rendered, for a template), or found unchanged.
struct Loaded {
    /// `None` when found unchanged: loaded only if needed.
    content: Option<Vec<u8>>,
    /// Its mode in the site.
    mode: u32,
    hash: Hash,
    size: u64,
    /// The render's step, for a template.
    render: Option<Step>,
    /// What to remember of it.
    known: Option<Known>,
}

/// What a compile knows before loading a module's files: what earlier compiles learnt, the
/// hash of the module's template context, and the site's clock.
#[derive(Clone, Copy)]
struct Prior<'a> {
    known: &'a Compiled,
    ctx: &'a Hash,
    now: Option<(i64, u32)>,
}

/// Reads a file of the site, renders it when it is a template, and hashes the result;
/// when `prior` knows it unchanged, only looks at its metadata.
fn load(
    s: &Source0,
    renderer: &Renderer,
    ctx: &minijinja::Value,
    prior: Option<Prior<'_>>,
) -> Result<Loaded, SiteError> {
    let unreadable =
        |e: strata_fs::FsError| SiteError::in_file(&s.rel, format!("cannot read: {}", e.source));
    let ctx_hash = prior.filter(|_| s.template).map(|p| *p.ctx);
    if let Some(p) = prior {
        let (key, mode) = strata_fs::stat_key(&s.path).map_err(unreadable)?;
        if let Some(k) = p.known.get(&s.path, &key, ctx_hash.as_ref()) {
            return Ok(Loaded {
                content: None,
                mode,
                hash: k.hash,
                size: k.size,
                render: None,
                known: Some(*k),
            });
        }
    }
    let (bytes, key, mode) = strata_fs::read_with_key(&s.path).map_err(unreadable)?;
    let (content, render) = if s.template {
        let meter = Meter::light();
        let text = String::from_utf8(bytes)
            .map_err(|_| SiteError::in_file(&s.rel, "a template must be UTF-8 text"))?;
        let out = renderer.render(&s.rel, &text, ctx)?;
        let step = meter.finish(format!("render {}", s.target));
        (out.into_bytes(), Some(step))
    } else {
        (bytes, None)
    };
    let hash = Hash::of(&content);
    let now = prior.and_then(|p| p.now);
    let known = match (key, now) {
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
    })
}

/// A file of a module before rendering: where it goes and where it comes from.
struct Source0 {
    target: TargetPath,
    rel: String,
    path: std::path::PathBuf,
    template: bool,
    is_link: bool,
    /// An executable template: its output is the content.
    exec: bool,
}

impl Builder<'_> {
    fn module(
        &mut self,
        m: &Module,
        renderer: &Renderer,
        params: &ParamTree,
        node: &NodeInfo,
        facts: &Map<String, Value>,
    ) {
        let id = m.id();
        let sources = match self.sources(m) {
            Ok(s) => s,
            Err(e) => {
                self.errors.push(e);
                return;
            }
        };
        let mut ctx = params.values.clone();
        ctx.insert(
            "node".into(),
            serde_json::to_value(node).unwrap_or(Value::Null),
        );
        ctx.insert("facts".into(), Value::Object(facts.clone()));
        ctx.insert(
            "module".into(),
            json!({"name": m.name, "version": m.version}),
        );
        ansible_variables(&mut ctx, node);
        // Everything a template of this module sees, hashed: same text and context, same
        // output.
        let ctx_hash = self
            .known
            .map(|_| Hash::of(&serde_json::to_vec(&ctx).unwrap_or_default()));
        let ctx = minijinja::Value::from(minijinja::value::Serde(&ctx));
        let ctx_index = self.lazy.ctxs.len();
        self.lazy.ctxs.push(ctx.clone());
        let decls = self.file_decls(m);
        let mut used = vec![false; decls.len()];
        let prior = self.known.zip(ctx_hash.as_ref()).map(|(known, ctx)| Prior {
            known,
            ctx,
            now: self.now,
        });
        // Most of them are found unchanged: room for all at once, not rehashed as it grows.
        self.lazy.files.reserve(sources.len());
        // Reading, rendering and hashing are independent from file to file.
        let loaded = crate::par::map(&sources, |s| {
            (!s.is_link && !s.exec).then(|| load(s, renderer, &ctx, prior))
        });
        for (s, loaded) in sources.into_iter().zip(loaded) {
            // Moved, not copied: each of these is a string per file.
            let Source0 {
                target,
                rel,
                path,
                is_link,
                exec,
                template,
            } = s;
            let mut res = Resource {
                path: target,
                kind: ResourceKind::Dir,
                mode: 0o644,
                owner: "root".into(),
                group: "root".into(),
                replace: true,
                module: id.clone(),
                source: rel,
                sensitive: false,
            };
            if is_link {
                match strata_fs::read_link(&path) {
                    Ok(target) => res.kind = ResourceKind::Link { target },
                    Err(e) => {
                        self.errors.push(SiteError::in_file(
                            &res.source,
                            format!("cannot read link: {}", e.source),
                        ));
                        continue;
                    }
                }
                res.mode = 0o777;
            } else if exec {
                // Executable because it runs; what it prints is an ordinary 0644 file.
                res.kind = ResourceKind::Exec { program: path };
            } else {
                let Loaded {
                    content,
                    mode: site_mode,
                    hash,
                    size,
                    render,
                    known,
                } = match loaded.expect("loaded: neither a link nor executable") {
                    Ok(c) => c,
                    Err(e) => {
                        self.errors.push(e);
                        continue;
                    }
                };
                self.steps.extend(render);
                if site_mode & 0o111 != 0 {
                    res.mode = 0o755;
                }
                res.kind = ResourceKind::File { hash, size };
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
                                rel: res.source.clone(),
                                ctx: template.then_some(ctx_index),
                                size: known.map_or(0, |k| k.key.size),
                                loaded: Default::default(),
                            },
                        );
                    }
                }
            }
            for (i, (glob, decl)) in decls.iter().enumerate() {
                if glob.is_match(res.path.as_str()) {
                    used[i] = true;
                    if let Some((mode, _)) = &decl.mode {
                        res.mode = *mode;
                    }
                    if let Some(o) = &decl.owner {
                        res.owner = o.clone();
                    }
                    if let Some(g) = &decl.group {
                        res.group = g.clone();
                    }
                    if let Some(r) = decl.replace {
                        res.replace = r;
                    }
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

    fn add(&mut self, res: Resource) {
        // One search of the map, not a lookup and then an insert.
        match self.resources.entry(res.path.clone()) {
            std::collections::btree_map::Entry::Occupied(other) => {
                let other = other.get();
                self.errors.push(SiteError::new(format!(
                    "{} is declared by both {} ({}) and {} ({})",
                    res.path, other.module, other.source, res.module, res.source
                )));
            }
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(res);
            }
        }
    }

    /// The module's files and templates, with `env/<environment>/` overriding by target.
    fn sources(&self, m: &Module) -> Result<Vec<Source0>, SiteError> {
        // Each layer's files in target order (a stable sort: of two files with one target,
        // the first found comes first), then the environment's layer over the base one.
        let mut by_target: Vec<Source0> = Vec::new();
        let env_dir = format!("env/{}", self.env);
        for base in ["", env_dir.as_str()] {
            let mut layer: Vec<Source0> = Vec::new();
            for (sub, template) in [("files", false), ("templates", true)] {
                let dir = if base.is_empty() {
                    m.dir.join(sub)
                } else {
                    m.dir.join(base).join(sub)
                };
                self.site.inside(&dir)?;
                let dir_rel = self.site.rel(&dir);
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
                    layer.push(Source0 {
                        target,
                        rel,
                        path: f.path,
                        template: template && !f.is_link && !exec,
                        is_link: f.is_link,
                        exec: exec && !f.is_link,
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
        let mut out: Vec<Source0> = Vec::with_capacity(by_target.len());
        for s in by_target {
            match out.last_mut() {
                Some(last) if last.target == s.target => *last = s,
                _ => out.push(s),
            }
        }
        Ok(out)
    }

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
            let mode = match d
                .mode
                .as_ref()
                .map(|s| parse_mode(s.get_ref()).map(|v| (v, s.span().start)))
                .transpose()
            {
                Ok(m) => m,
                Err(msg) => {
                    self.errors.push(
                        m.toml
                            .error_at(d.mode.as_ref().map_or(0, |s| s.span().start), msg),
                    );
                    continue;
                }
            };
            let (Some(owner), Some(group)) = (
                self.owner(m, "owner", &d.owner),
                self.owner(m, "group", &d.group),
            ) else {
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

    /// A declared owner or group (`what`), refused with its line when it is an id chown
    /// cannot give (see [`crate::resources::bad_id`]): `None` then.
    fn owner(
        &mut self,
        m: &Module,
        what: &str,
        value: &Option<toml::Spanned<String>>,
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

    /// Each `[[dir]]` of module `m` (id `id`), and the purges they declare.
    fn dirs(&mut self, m: &Module, id: &str) {
        for d in &m.toml.value.dir {
            let path = match TargetPath::parse(d.path.get_ref()) {
                Ok(p) => p,
                Err(e) => {
                    self.errors
                        .push(m.toml.error_at(d.path.span().start, e.to_string()));
                    continue;
                }
            };
            let mode = match d.mode.as_ref().map(|s| parse_mode(s.get_ref())).transpose() {
                Ok(mode) => mode.unwrap_or(0o755),
                Err(msg) => {
                    self.errors.push(
                        m.toml
                            .error_at(d.mode.as_ref().map_or(0, |s| s.span().start), msg),
                    );
                    continue;
                }
            };
            let (Some(owner), Some(group)) = (
                self.owner(m, "owner", &d.owner),
                self.owner(m, "group", &d.group),
            ) else {
                continue;
            };
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
            let path = match TargetPath::parse(l.path.get_ref()) {
                Ok(p) => p,
                Err(e) => {
                    self.errors
                        .push(m.toml.error_at(l.path.span().start, e.to_string()));
                    continue;
                }
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

/// A `[[file]]` declaration, compiled.
struct Decl {
    pattern: String,
    offset: usize,
    mode: Option<(u32, usize)>,
    owner: Option<String>,
    group: Option<String>,
    replace: Option<bool>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Writes `files` (site-relative path, text) under a new temporary site.
    #[allow(clippy::disallowed_methods)] // the test's own temporary files
    fn site_of(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let site = [("strata.toml", "[site]\nname = \"t\"\n")];
        for (rel, text) in site.iter().chain(files) {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn compiled_text(cat: &Catalog, path: &str) -> String {
        let res = cat
            .resources
            .iter()
            .find(|r| r.path.to_string() == path)
            .unwrap_or_else(|| panic!("no {path}"));
        let ResourceKind::File { hash, .. } = &res.kind else {
            panic!("{path} is not a file");
        };
        let bytes = match cat.contents.get(hash) {
            Some(b) => b.clone(),
            None => strata_types::ContentSource::content(&cat.lazy, hash)
                .expect("loadable")
                .to_vec(),
        };
        String::from_utf8(bytes).unwrap()
    }

    /// Issue 25: Ansible group_vars and Salt pillar data come over as YAML, null included.
    #[test]
    fn yaml_parameter_files_layer_like_toml_with_null_and_their_lines() {
        let dir = site_of(&[
            (
                "nodes/n1.toml",
                "environment = \"prod\"\nmodules = [\"m\"]\n",
            ),
            (
                "modules/m/module.toml",
                "[params]\nport = 80\nproxy = \"p\"\n",
            ),
            (
                "params/common.yaml",
                "---\nm:\n  port: 8080\n  proxy: ~\nzeta: 1\nalpha: 2\n",
            ),
            ("params/env/prod.yml", "alpha: 3\n"),
            (
                "modules/m/templates/etc/m.conf.j2",
                "port={{ m.port }}\n{% if m.proxy is none %}no proxy\n{% endif %}",
            ),
        ]);
        let site = Site::open(dir.path()).unwrap();
        let cat = compile(&site, "n1", &CompileOptions::default()).unwrap();
        assert_eq!(cat.params.get("m.proxy"), Some(&json!(null)));
        assert_eq!(cat.params.get("alpha"), Some(&json!(3)));
        let port = &cat.params.sources["m.port"];
        assert_eq!(port.file.as_deref(), Some("params/common.yaml"));
        assert_eq!(port.line, Some(3));
        assert_eq!(
            cat.params.sources["alpha"].file.as_deref(),
            Some("params/env/prod.yml")
        );
        assert_eq!(compiled_text(&cat, "/etc/m.conf"), "port=8080\nno proxy\n");
    }

    /// Issue 25: a role's templates begin with `{{ ansible_managed | comment }}`.
    #[test]
    fn ansible_s_variables_are_given_unless_a_parameter_sets_them() {
        let template = "{{ ansible_managed | comment }}\n{{ inventory_hostname }} \
                        {{ inventory_hostname_short }} {{ group_names }}\n";
        let files = |common: &'static str| {
            site_of(&[
                ("nodes/web1.example.com.toml", "modules = [\"m\"]\n"),
                ("groups/web.toml", "nodes = [\"web1.example.com\"]\n"),
                ("modules/m/module.toml", ""),
                ("modules/m/templates/etc/m.conf.j2", template),
                ("params/common.yaml", common),
            ])
        };
        let render = |dir: &tempfile::TempDir| {
            let site = Site::open(dir.path()).unwrap();
            let cat = compile(&site, "web1.example.com", &CompileOptions::default()).unwrap();
            compiled_text(&cat, "/etc/m.conf")
        };
        assert_eq!(
            render(&files("{}\n")),
            "#\n# Ansible managed\n#\nweb1.example.com web1 ['web']\n"
        );
        assert_eq!(
            render(&files("ansible_managed: Managed by strata\n")),
            "#\n# Managed by strata\n#\nweb1.example.com web1 ['web']\n"
        );
    }

    #[test]
    fn bad_or_doubled_yaml_parameter_files_are_named() {
        let dir = site_of(&[
            ("nodes/n1.toml", "modules = []\n"),
            ("params/common.yaml", "a: 1\nb: [1\n"),
        ]);
        let site = Site::open(dir.path()).unwrap();
        let err = compile(&site, "n1", &CompileOptions::default()).unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.file.as_deref(), Some("params/common.yaml"));
        assert!(e.line.is_some(), "{e:?}");
        let dir = site_of(&[
            ("nodes/n1.toml", "modules = []\n"),
            ("params/common.toml", "a = 1\n"),
            ("params/common.yaml", "a: 2\n"),
        ]);
        let site = Site::open(dir.path()).unwrap();
        let err = compile(&site, "n1", &CompileOptions::default()).unwrap_err();
        assert_eq!(
            err.0[0].message,
            "params/common.toml and params/common.yaml both hold these parameters: keep one"
        );
    }
}
