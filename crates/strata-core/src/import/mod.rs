//! `strata import ansible-role`: an Ansible role brought over as a module. Its templates
//! and files go where its `template` and `copy` tasks put them (and the templates they
//! include or import to the module's `include/`, by crate::import's `includes`), its defaults become the
//! site's common parameters (Ansible's variables are global, as they are there), the
//! services its handlers restart restart when those files change, and every task that
//! could not be translated is listed with its file and line.
//!
//! Here: the import itself (what it checks, the defaults, the `module.toml` it writes,
//! nothing written unless all of it can be); the reading of the role's tasks and
//! handlers is in `tasks`.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::SiteError;
use crate::versions::Ref;

mod includes;
mod tasks;

/// What an import wrote, and what it could not translate.
#[derive(Debug, Default, serde::Serialize)]
pub struct Imported {
    /// The files written, relative to the site.
    pub written: Vec<String>,
    /// What was left out, each with the role's file and line.
    pub untranslated: Vec<Untranslated>,
}

/// One part of the role that has no translation.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Untranslated {
    /// The file, relative to the role.
    pub file: String,
    /// The 1-based line, when known.
    pub line: Option<usize>,
    /// What it is and why.
    pub what: String,
}

/// A `[[file]]` entry: a target path with its mode, owner and group.
#[derive(Debug)]
struct FileMeta {
    path: String,
    mode: Option<String>,
    owner: Option<String>,
    group: Option<String>,
}

/// Everything gathered from the role before anything is written.
#[derive(Debug, Default)]
struct Plan {
    /// Site-relative path → content.
    files: BTreeMap<String, Vec<u8>>,
    /// `[[file]]` metadata.
    meta: Vec<FileMeta>,
    /// `[[package]]` names.
    packages: Vec<String>,
    /// Services a task starts or enables: `[[service]]` entries even without a handler.
    services: Vec<String>,
    /// The role's templates its tasks use: role-relative path, text.
    templates: Vec<(String, String)>,
    /// Handler name → the target paths whose tasks notify it.
    notified: BTreeMap<String, Vec<String>>,
    untranslated: Vec<Untranslated>,
}

/// Imports the role at `role` into the site `site` as the module `module`.
pub fn import_ansible_role(role: &Path, site: &Path, module: &str) -> Result<Imported, SiteError> {
    let r = Ref::parse(module).map_err(|e| SiteError::new(format!("bad module name {e}")))?;
    if r.version.is_some() {
        return Err(SiteError::new(format!(
            "`{module}`: give the module's name only; versions are directories"
        )));
    }
    if !strata_fs::exists(&site.join("strata.toml")) {
        return Err(SiteError::in_file(
            site.join("strata.toml").display().to_string(),
            "not a strata site: strata.toml is missing",
        ));
    }
    let dir = format!("modules/{module}");
    if strata_fs::exists(&site.join(&dir)) {
        return Err(SiteError::in_file(
            &dir,
            "already exists; nothing was written",
        ));
    }
    let mut plan = Plan::default();
    let defaults = read_defaults(role, site, &mut plan)?;
    // The role's vars/main.yml outranks its defaults where a dest names a variable.
    let mut vars = defaults;
    if let Some(text) = read(role, "vars/main.yml")? {
        vars.extend(crate::yamlfile::parse("vars/main.yml", &text)?.values);
    }
    let vars = Value::Object(vars);
    tasks::walk(role, &vars, &dir, &mut plan)?;
    includes::copy_included(role, &dir, &mut plan)?;
    let services = tasks::handlers(role, &mut plan)?;
    let toml = module_toml(role, &plan, &services);
    plan.files
        .insert(format!("{dir}/module.toml"), toml.into_bytes());
    let mut imported = Imported {
        untranslated: plan.untranslated,
        ..Imported::default()
    };
    for rel in plan.files.keys() {
        if strata_fs::exists(&site.join(rel)) {
            return Err(SiteError::in_file(
                rel,
                "already exists; nothing was written",
            ));
        }
    }
    for (rel, bytes) in &plan.files {
        strata_fs::write_site_file(&site.join(rel), bytes)
            .map_err(|e| SiteError::in_file(rel, e.source.to_string()).caused_by(e))?;
        imported.written.push(rel.clone());
    }
    Ok(imported)
}

/// A role's file, or `None` when it has none.
fn read(role: &Path, rel: &str) -> Result<Option<String>, SiteError> {
    for rel in [rel.to_string(), rel.replace(".yml", ".yaml")] {
        let path = role.join(&rel);
        if strata_fs::exists(&path) {
            return strata_fs::read_to_string(&path)
                .map(Some)
                .map_err(|e| unreadable(&path, e));
        }
    }
    Ok(None)
}

/// A file of the role that could not be read: named by its path on this machine, the
/// failure kept whole.
fn unreadable(path: &Path, e: strata_fs::FsError) -> SiteError {
    SiteError::in_file(path.display().to_string(), e.source.to_string()).caused_by(e)
}

fn note(plan: &mut Plan, file: &str, line: Option<usize>, what: impl Into<String>) {
    plan.untranslated.push(Untranslated {
        file: file.to_string(),
        line,
        what: what.into(),
    });
}

/// The role's defaults: copied as the site's `params/common.yaml` (comments and order
/// kept) when the site has no common parameters yet.
fn read_defaults(
    role: &Path,
    site: &Path,
    plan: &mut Plan,
) -> Result<Map<String, Value>, SiteError> {
    let rel = "defaults/main.yml";
    let Some(text) = read(role, rel)? else {
        return Ok(Map::new());
    };
    let parsed = crate::yamlfile::parse(rel, &text)?;
    for (key, line) in &parsed.lines {
        let holds = |v: &Value| v.to_string().contains("{{");
        if key_value(&parsed.values, key).is_some_and(holds) {
            note(
                plan,
                rel,
                Some(*line),
                format!("`{key}` holds a template expression, which parameters do not evaluate"),
            );
        }
    }
    let taken = ["toml", "yaml", "yml"]
        .iter()
        .find(|ext| strata_fs::exists(&site.join(format!("params/common.{ext}"))));
    match taken {
        None => {
            plan.files
                .insert("params/common.yaml".into(), text.into_bytes());
        }
        Some(ext) => note(
            plan,
            rel,
            None,
            format!("not copied: the site has params/common.{ext}; add the role's defaults to it"),
        ),
    }
    Ok(parsed.values)
}

fn key_value<'a>(map: &'a Map<String, Value>, dotted: &str) -> Option<&'a Value> {
    let mut parts = dotted.split('.');
    let mut cur = map.get(parts.next()?)?;
    for p in parts {
        cur = cur.as_object()?.get(p)?;
    }
    Some(cur)
}

fn quoted(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_default()
}

/// The module's `module.toml`.
fn module_toml(role: &Path, plan: &Plan, services: &BTreeMap<String, (String, bool)>) -> String {
    let mut out = format!(
        "# Imported from the Ansible role {} by `strata import ansible-role`.\n\
         description = {}\n",
        role.display(),
        quoted(&format!(
            "Ansible role {}",
            role.file_name().map_or("".into(), |n| n.to_string_lossy())
        ))
    );
    for name in &plan.packages {
        out.push_str(&format!("\n[[package]]\nname = {}\n", quoted(name)));
    }
    for f in &plan.meta {
        out.push_str(&format!("\n[[file]]\npath = {}\n", quoted(&f.path)));
        for (k, v) in [("mode", &f.mode), ("owner", &f.owner), ("group", &f.group)] {
            if let Some(v) = v {
                out.push_str(&format!("{k} = {}\n", quoted(v)));
            }
        }
    }
    // One [[service]] per unit, with the paths of every handler that restarts it.
    let mut units: BTreeMap<&str, (Vec<&str>, Vec<&str>)> = BTreeMap::new();
    for (handler, paths) in &plan.notified {
        if let Some((unit, reload)) = services.get(handler) {
            let e = units.entry(unit.as_str()).or_default();
            let list = if *reload { &mut e.1 } else { &mut e.0 };
            list.extend(paths.iter().map(String::as_str));
        }
    }
    for unit in &plan.services {
        units.entry(unit.as_str()).or_default();
    }
    for (unit, (restart, reload)) in units {
        out.push_str(&format!("\n[[service]]\nname = {}\n", quoted(unit)));
        let list = |l: &[&str]| l.iter().map(|p| quoted(p)).collect::<Vec<_>>().join(", ");
        if !restart.is_empty() {
            out.push_str(&format!("restart_on = [{}]\n", list(&restart)));
        }
        if !reload.is_empty() {
            out.push_str(&format!("reload_on = [{}]\n", list(&reload)));
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::disallowed_methods)] // the test's own temporary files
mod tests {
    use super::*;

    fn tree(files: &[(&str, &str)]) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for (rel, text) in files {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, text).unwrap();
        }
        dir
    }

    fn role() -> tempfile::TempDir {
        tree(&[
            (
                "defaults/main.yml",
                "---\n# Redis\nredis_port: 6379\nredis_conf: /etc/redis/redis.conf\nredis_extra: \"{{ redis_port }}\"\n",
            ),
            (
                "tasks/main.yml",
                "---\n- name: Install\n  package: name=redis state=present\n\n- name: Configure\n  template:\n    src: redis.conf.j2\n    dest: \"{{ redis_conf }}\"\n    mode: \"0640\"\n  notify: restart redis\n\n- import_tasks: extra.yml\n\n- name: Start\n  service: name=redis-server state=started enabled=yes\n- service:\n    name: other\n    state: stopped\n",
            ),
            (
                "tasks/extra.yml",
                "- name: Limits\n  copy: src=limits.conf dest=/etc/security/limits.d/redis.conf\n  when: redis_limits\n  notify: [restart redis]\n",
            ),
            (
                "handlers/main.yml",
                "- name: restart redis\n  service: name=redis-server state=restarted\n- name: say\n  debug: msg=hi\n",
            ),
            (
                "templates/redis.conf.j2",
                "port {{ redis_port }}\n{% for k, v in {'b': 1, 'a': 2}.items() %}{{ k }}{% endfor %}\n",
            ),
            ("files/limits.conf", "redis - nofile 65536\n"),
        ])
    }

    fn site() -> tempfile::TempDir {
        tree(&[
            ("strata.toml", "[site]\nname = \"t\"\n"),
            ("nodes/n1.toml", "modules = [\"redis\"]\n"),
        ])
    }

    /// Issue 25: copy a role's templates, files and defaults; get the same bytes.
    #[test]
    fn a_role_becomes_a_module_that_compiles_and_renders_as_ansible_would() {
        let (role, site) = (role(), site());
        let imported = import_ansible_role(role.path(), site.path(), "redis").unwrap();
        assert_eq!(
            imported.written,
            [
                "modules/redis/files/etc/security/limits.d/redis.conf",
                "modules/redis/module.toml",
                "modules/redis/templates/etc/redis/redis.conf.j2",
                "params/common.yaml",
            ]
        );
        let module =
            std::fs::read_to_string(site.path().join("modules/redis/module.toml")).unwrap();
        assert!(
            module.contains("[[file]]\npath = \"/etc/redis/redis.conf\"\nmode = \"0640\"\n"),
            "{module}"
        );
        assert!(
            module.contains("[[service]]\nname = \"redis-server\"\nrestart_on = [\"/etc/redis/redis.conf\", \"/etc/security/limits.d/redis.conf\"]\n"),
            "{module}"
        );
        let notes: Vec<String> = imported
            .untranslated
            .iter()
            .map(|u| format!("{}:{}: {}", u.file, u.line.unwrap_or(0), u.what))
            .collect();
        assert_eq!(
            notes,
            [
                "defaults/main.yml:5: `redis_extra` holds a template expression, which parameters do not evaluate",
                "tasks/extra.yml:1: task `Limits`: its `when` is dropped: /etc/security/limits.d/redis.conf is always put in place",
                "tasks/main.yml:16: task `(unnamed)` (`service`) is not translated: only a service started and enabled is",
                "handlers/main.yml:3: handler `say` is not translated (only a service's restart or reload is)",
            ]
        );
        let s = crate::Site::open(site.path()).unwrap();
        let cat = crate::compile(
            &s,
            &strata_types::NodeName::parse("n1").unwrap(),
            &crate::CompileOptions::default(),
        )
        .unwrap();
        let conf = cat
            .resources
            .iter()
            .find(|r| r.path.to_string() == "/etc/redis/redis.conf")
            .expect("the template is in the catalog");
        let crate::ResourceKind::File { hash, .. } = &conf.kind else {
            panic!("not a file");
        };
        let bytes = strata_types::ContentSource::content(&cat.lazy, hash)
            .map(|c| c.to_vec())
            .or_else(|| cat.contents.get(hash).cloned())
            .unwrap();
        // trim_blocks drops the newline after `{% endfor %}`, and Ansible pads the output
        // to the template's final newline (ansible-core 2.19 writes these bytes).
        assert_eq!(String::from_utf8(bytes).unwrap(), "port 6379\nba\n");
        assert_eq!(conf.mode, 0o640);
    }

    /// Issue 25: what a role's templates include or import comes along to include/, by
    /// its name in the role's templates/, and renders as Ansible renders it.
    #[test]
    fn templates_a_role_s_templates_load_come_to_include() {
        let role = tree(&[
            (
                "tasks/main.yml",
                "- name: Configure\n  template: src=site.conf.j2 dest=/etc/site.conf\n",
            ),
            (
                "templates/site.conf.j2",
                "{% from 'macros.j2' import kv %}\n{{ kv('port', 80) }}\n\
                 {% include \"parts/tail.j2\" %}\n{% include tail_name %}\n",
            ),
            (
                "templates/macros.j2",
                "{% macro kv(k, v) %}{{ k }} = {{ v }}{% endmacro %}\n\
                 {% include 'gone.j2' ignore missing %}\n",
            ),
            ("templates/parts/tail.j2", "# tail\n"),
            ("templates/unused.j2", "never copied\n"),
        ]);
        let site = site();
        let imported = import_ansible_role(role.path(), site.path(), "app").unwrap();
        assert_eq!(
            imported.written,
            [
                "modules/app/include/macros.j2",
                "modules/app/include/parts/tail.j2",
                "modules/app/module.toml",
                "modules/app/templates/etc/site.conf.j2",
            ]
        );
        let notes: Vec<String> = imported
            .untranslated
            .iter()
            .map(|u| format!("{}:{}: {}", u.file, u.line.unwrap_or(0), u.what))
            .collect();
        assert_eq!(
            notes,
            [
                "templates/site.conf.j2:4: loads a computed template name `tail_name`: copy what it loads to include/",
                "templates/macros.j2:2: loads `gone.j2`, which is not in the role's templates/",
            ]
        );
        // The module compiles, and renders the bytes Jinja2 renders with Ansible's
        // options and a FileSystemLoader at the role's templates/ (Ansible pads the final
        // newline).
        std::fs::create_dir_all(site.path().join("params")).unwrap();
        std::fs::write(
            site.path().join("params/common.toml"),
            "tail_name = \"parts/tail.j2\"\n",
        )
        .unwrap();
        std::fs::write(site.path().join("nodes/n1.toml"), "modules = [\"app\"]\n").unwrap();
        let s = crate::Site::open(site.path()).unwrap();
        let cat = crate::compile(
            &s,
            &strata_types::NodeName::parse("n1").unwrap(),
            &crate::CompileOptions::default(),
        )
        .unwrap();
        let conf = (cat.resources.iter())
            .find(|r| r.path.to_string() == "/etc/site.conf")
            .expect("the template is in the catalog");
        let crate::ResourceKind::File { hash, .. } = &conf.kind else {
            panic!("not a file");
        };
        let bytes = cat.contents.get(hash).cloned().unwrap();
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            "port = 80\n# tail# tail\n"
        );
        assert!(
            !cat.resources
                .iter()
                .any(|r| r.path.to_string().contains("macros")),
            "include/ is not deployed"
        );
    }

    #[test]
    fn nothing_is_written_over_a_module_or_outside_a_site() {
        let (role, site) = (role(), site());
        import_ansible_role(role.path(), site.path(), "redis").unwrap();
        let err = import_ansible_role(role.path(), site.path(), "redis").unwrap_err();
        assert_eq!(err.file.as_deref(), Some("modules/redis"));
        let err = import_ansible_role(role.path(), role.path(), "redis").unwrap_err();
        assert!(err.message.contains("not a strata site"), "{}", err.message);
        assert!(import_ansible_role(role.path(), site.path(), "Bad/Name").is_err());
    }

    #[test]
    fn a_site_with_common_parameters_keeps_them_and_is_told() {
        let role = role();
        let site = tree(&[
            ("strata.toml", "[site]\nname = \"t\"\n"),
            ("params/common.toml", "x = 1\n"),
        ]);
        let imported = import_ansible_role(role.path(), site.path(), "redis").unwrap();
        assert!(!imported.written.iter().any(|w| w.starts_with("params/")));
        assert!(
            imported
                .untranslated
                .iter()
                .any(|u| u.file == "defaults/main.yml"
                    && u.what.contains("the site has params/common.toml"))
        );
    }
}
