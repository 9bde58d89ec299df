//! The compile driver: a node's name, the site, its facts and the command line's `--set`s
//! become a catalog. It finds what the node is made of (roles, modules, parameters), then
//! has the [`Builder`] turn each module into resources, in application order.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use strata_types::NodeName;

use crate::builder::Builder;
use crate::catalog::Catalog;
use crate::compiled::Compiled;
use crate::error::{SiteError, SiteErrors};
use crate::graph::{self, Wanted};
use crate::module::Module;
use crate::params::{self, ParamTree};
use crate::resources::{self, Declared};
use crate::site::{NodeInfo, NodeToml, RoleToml, Site, candidates};
use crate::tomlfile::{self, TomlFile};
use crate::versions::Ref;

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
    /// Where `secret("NAME")` and modules' `secrets` are read from; `None`: a site
    /// that uses a secret fails to compile, naming it.
    pub secrets: Option<std::sync::Arc<dyn crate::SecretSource>>,
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
pub fn compile(site: &Site, node: &NodeName, opts: &CompileOptions) -> Result<Catalog, SiteErrors> {
    let parts = NodeParts::find(site, node, opts)?;
    let mut errors: Vec<SiteError> = Vec::new();
    let mut runs = Vec::new();
    for m in &parts.modules {
        match m.run(site) {
            Ok(mut r) => {
                r.secrets = script_secrets(m, node, opts, &mut errors);
                runs.push(r);
            }
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
    let mut builder = Builder::new(site, &parts.environment, opts, &params, &info);
    for m in &parts.modules {
        builder.module(m);
    }
    builder.finish(info, params, runs)
}

/// The secrets module `m` asks for its scripts (`secrets = [...]`), read from the
/// compile's source; each that cannot be read is an error at its line naming it.
fn script_secrets(
    m: &Module,
    node: &NodeName,
    opts: &CompileOptions,
    errors: &mut Vec<SiteError>,
) -> Vec<crate::ScriptSecret> {
    let mut out = Vec::new();
    for s in &m.toml.value.secrets {
        let name = s.get_ref();
        let at = |message: String| m.toml.error_at(s.span().start, message);
        if !crate::valid_secret_name(name) {
            errors.push(at(format!(
                "`{name}` is not a secret's name (letters, digits and `_`, starting with a letter)"
            )));
            continue;
        }
        let value = match &opts.secrets {
            Some(source) => source.secret(name),
            None => Err(format!(
                "secret `{name}` cannot be read here: this compile has no secrets (node {node})"
            )),
        };
        match value {
            Ok(value) => out.push(crate::ScriptSecret {
                name: name.clone(),
                value,
            }),
            Err(e) => errors.push(at(e)),
        }
    }
    out
}

impl NodeParts {
    /// Finds what `node` is made of: its roles (the node's own, then its groups', each
    /// role once), then its modules (the roles', the groups', then the node's own) and
    /// everything they require.
    fn find(site: &Site, node: &NodeName, opts: &CompileOptions) -> Result<NodeParts, SiteErrors> {
        if !site.knows_node(node) && opts.hardware.is_none() {
            let known = site.nodes()?;
            return Err(SiteError::new(format!(
                "unknown node `{node}`: no nodes/{node}.toml and no group lists it{}",
                candidates(known.iter().map(NodeName::as_str), node.as_str())
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::catalog::ResourceKind;

    fn node(name: &str) -> NodeName {
        NodeName::parse(name).unwrap()
    }

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
        let cat = compile(&site, &node("n1"), &CompileOptions::default()).unwrap();
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
            let cat =
                compile(&site, &node("web1.example.com"), &CompileOptions::default()).unwrap();
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

    /// Issue 25: a Salt formula brought over as a module: `template_dialect = "salt"`
    /// gives its templates Salt's whitespace rules, `pillar`, `grains` (from the facts),
    /// `opts`, `saltenv`, and its `map.jinja` under include/ (never deployed).
    #[test]
    #[allow(clippy::disallowed_methods)] // the test's own temporary files
    fn a_module_of_salt_s_dialect_renders_a_formula_with_its_map_jinja() {
        let map = "{% set nginx = salt['grains.filter_by']({\n\
                   'Debian': {'user': 'www-data'},\n\
                   'RedHat': {'user': 'nginx'},\n\
                   }, merge=salt['pillar.get']('nginx:lookup')) %}\n";
        let template = "{% from 'nginx/map.jinja' import nginx %}\n\
                        user {{ nginx.user }};\n\
                        {% if grains['os_family'] == 'Debian' %}\n\
                        # {{ grains.os }} {{ grains.osrelease }} {{ grains.host }} {{ opts.id }} {{ saltenv }}\n\
                        # {{ source }} {{ tpldir }}\n\
                        {% endif %}\n\
                        workers {{ pillar.nginx.workers }};\n";
        let dir = site_of(&[
            (
                "nodes/web1.toml",
                "environment = \"prod\"\nmodules = [\"nginx\"]\n",
            ),
            (
                "modules/nginx/module.toml",
                "template_dialect = \"salt\"\n[params]\nworkers = 4\n",
            ),
            ("modules/nginx/include/nginx/map.jinja", map),
            ("modules/nginx/templates/etc/nginx/nginx.conf", template),
        ]);
        let site = Site::open(dir.path()).unwrap();
        let facts = json!({
            "hostname": "web1.example.org",
            "os": {"id": "debian", "version_id": "12", "pretty_name": "Debian GNU/Linux 12 (bookworm)"}
        });
        let opts = CompileOptions {
            facts: facts.as_object().unwrap().clone(),
            ..CompileOptions::default()
        };
        let cat = compile(&site, &node("web1"), &opts).unwrap();
        // Salt's whitespace: each block tag keeps its line's newline.
        assert_eq!(
            compiled_text(&cat, "/etc/nginx/nginx.conf"),
            "\nuser www-data;\n\n# Debian 12 web1 web1 prod\n\
             # salt://modules/nginx/templates/etc/nginx/nginx.conf nginx\n\nworkers 4;\n"
        );
        let paths: Vec<&str> = cat.resources.iter().map(|r| r.path.as_str()).collect();
        assert!(
            !paths.iter().any(|p| p.contains("map.jinja")),
            "include/ is not deployed: {paths:?}"
        );
        // The pillar's lookup merges over the map; a RedHat node gets its own.
        let facts = json!({"os": {"id": "rocky", "version_id": "9.3"}});
        std::fs::create_dir_all(dir.path().join("params")).unwrap();
        std::fs::write(
            dir.path().join("params/common.toml"),
            "[nginx.lookup]\nuser = \"web\"\n",
        )
        .unwrap();
        let opts = CompileOptions {
            facts: facts.as_object().unwrap().clone(),
            ..CompileOptions::default()
        };
        let cat = compile(&site, &node("web1"), &opts).unwrap();
        assert!(
            compiled_text(&cat, "/etc/nginx/nginx.conf").starts_with("\nuser web;\n\nworkers"),
            "{}",
            compiled_text(&cat, "/etc/nginx/nginx.conf")
        );
    }

    #[test]
    fn a_bad_template_dialect_is_named_with_its_line() {
        let dir = site_of(&[
            ("nodes/n1.toml", "modules = [\"m\"]\n"),
            ("modules/m/module.toml", "\ntemplate_dialect = \"puppet\"\n"),
        ]);
        let site = Site::open(dir.path()).unwrap();
        let err = compile(&site, &node("n1"), &CompileOptions::default()).unwrap_err();
        // (A module's file is named in the message of the error at its reference.)
        let e = &err.0[0];
        assert!(
            e.message.starts_with(
                "modules/m/module.toml:2:20: unknown variant `puppet`, expected `ansible` or `salt`"
            ),
            "{}",
            e.message
        );
    }

    #[test]
    fn bad_or_doubled_yaml_parameter_files_are_named() {
        let dir = site_of(&[
            ("nodes/n1.toml", "modules = []\n"),
            ("params/common.yaml", "a: 1\nb: [1\n"),
        ]);
        let site = Site::open(dir.path()).unwrap();
        let err = compile(&site, &node("n1"), &CompileOptions::default()).unwrap_err();
        let e = &err.0[0];
        assert_eq!(e.file.as_deref(), Some("params/common.yaml"));
        assert!(e.line.is_some(), "{e:?}");
        let dir = site_of(&[
            ("nodes/n1.toml", "modules = []\n"),
            ("params/common.toml", "a = 1\n"),
            ("params/common.yaml", "a: 2\n"),
        ]);
        let site = Site::open(dir.path()).unwrap();
        let err = compile(&site, &node("n1"), &CompileOptions::default()).unwrap_err();
        assert_eq!(
            err.0[0].message,
            "params/common.toml and params/common.yaml both hold these parameters: keep one"
        );
    }

    /// Issue 18: a node's name is parsed where the site gives it, so a name that is not
    /// one (a path, a space) is refused there, with its file and line.
    #[test]
    fn a_name_that_is_not_a_node_s_is_refused_where_the_site_gives_it() {
        let dir = site_of(&[("groups/web.toml", "nodes = [\"web1\", \"../etc\"]\n")]);
        let e = &Site::open(dir.path()).unwrap_err().0[0];
        // (At the list: toml locates an element's own error at the array it is in.)
        assert_eq!(
            (e.file.as_deref(), e.line),
            (Some("groups/web.toml"), Some(1))
        );
        assert_eq!(
            e.message,
            "invalid node name \"../etc\": must start with a letter or digit"
        );
        let dir = site_of(&[("nodes/web 1.toml", "")]);
        let e = &Site::open(dir.path()).unwrap().nodes().unwrap_err().0[0];
        assert_eq!(e.file.as_deref(), Some("nodes/web 1.toml"));
        assert!(e.message.starts_with("invalid node name \"web 1\""), "{e}");
    }
}
