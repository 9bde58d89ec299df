//! `{% include %}` and `{% import %}` of a module's templates (render/loader.rs), attacked.

#![allow(clippy::disallowed_methods)] // the tests' own temporary sites

use std::path::Path;
use std::sync::Arc;

use super::{Includes, Renderer, Setup};
use crate::render::Dialect;

/// A site with modules `a` and `b`, and a file outside both.
fn site() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let w = |rel: &str, text: &str| {
        let p = dir.path().join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    };
    w(
        "modules/a/include/keepalived/macro.jinja",
        "{% macro kv(k, v) %}{{ k }} {{ v }}{% endmacro %}",
    );
    w(
        "modules/a/include/keepalived/map.jinja",
        "{% set map = {'port': 80} %}{% from './macro.jinja' import kv %}",
    );
    w("modules/a/include/part.j2", "part of {{ who }}\n");
    w("modules/a/env/prod/include/part.j2", "prod part");
    w("modules/a/templates/etc/other.conf.j2", "other {{ who }}\n");
    w("modules/a/include/bad.j2", "line 1\n{{ nope }}\n");
    w("modules/b/include/b.j2", "b's\n");
    w("strata.toml", "[site]\n");
    w("outside/secret.j2", "outside\n");
    std::os::unix::fs::symlink(
        dir.path().join("outside/secret.j2"),
        dir.path().join("modules/a/include/link.j2"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("modules/b/include/b.j2"),
        dir.path().join("modules/a/include/to-b.j2"),
    )
    .unwrap();
    std::os::unix::fs::symlink(
        dir.path().join("outside"),
        dir.path().join("modules/a/include/dirlink"),
    )
    .unwrap();
    w(
        "modules/a/include/base.j2",
        "<{% block body %}{% endblock %}>",
    );
    std::os::unix::fs::symlink(
        "part.j2",
        dir.path().join("modules/a/include/inside-link.j2"),
    )
    .unwrap();
    dir
}

fn setup(site: &Path, module: &str, env: &str) -> Setup {
    Setup {
        dialect: Dialect::Ansible,
        includes: Some(Arc::new(Includes::of_module(
            site,
            &site.join("modules").join(module),
            env,
        ))),
    }
}

fn ctx() -> minijinja::Value {
    minijinja::context! { who => "a" }
}

const NAME: &str = "modules/a/templates/etc/x.conf.j2";

#[test]
fn a_template_includes_and_imports_the_modules_templates() {
    let site = site();
    let r = Renderer::new();
    let t = |src: &str, env: &str| {
        let out = r
            .render_marked(NAME, src, &ctx(), &setup(site.path(), "a", env))
            .unwrap_or_else(|e| panic!("{src}: {e}"));
        assert!(out.loaded, "{src}");
        out.out
    };
    assert_eq!(t("{% include 'part.j2' %}", "test"), "part of a");
    // The environment's layer first.
    assert_eq!(t("{% include 'part.j2' %}", "prod"), "prod part");
    // Salt's form: the formula's directory under include/, a relative import in it.
    assert_eq!(
        t(
            "{% from 'keepalived/map.jinja' import map, kv %}{{ kv('port', map.port) }}",
            "test"
        ),
        "port 80"
    );
    assert_eq!(
        t(
            "{% import 'keepalived/macro.jinja' as m %}{{ m.kv(1, 2) }}",
            "test"
        ),
        "1 2"
    );
    // A deployed template, by its path under templates/; a link that stays inside.
    assert_eq!(t("{% include 'etc/other.conf.j2' %}", "test"), "other a");
    assert_eq!(t("{% include 'inside-link.j2' %}", "test"), "part of a");
    // Relative to the including template, inside templates/.
    assert_eq!(t("{% include './other.conf.j2' %}", "test"), "other a");
    assert_eq!(
        t("{% include ['nope.j2', 'part.j2'] %}", "test"),
        "part of a"
    );
    assert_eq!(t("x{% include 'nope.j2' ignore missing %}", "test"), "x");
    assert_eq!(
        t(
            "{% extends 'base.j2' %}{% block body %}b{% endblock %}",
            "test"
        ),
        "<b>"
    );
    let plain = r
        .render_marked(NAME, "plain", &ctx(), &setup(site.path(), "a", "test"))
        .unwrap();
    assert!(!plain.loaded, "a template that loads nothing is not marked");
}

/// Nothing outside the module's include/ and templates/ is read: each attempt fails
/// naming the including template, its line and why, and reads nothing.
#[test]
fn names_that_leave_the_module_are_refused() {
    let site = site();
    let r = Renderer::new();
    for (src, says) in [
        (
            "{% include '../../b/include/b.j2' %}",
            "leads out of the module",
        ),
        (
            "{% include 'x/../../../b/include/b.j2' %}",
            "leads out of the module",
        ),
        (
            "{% include '../../../../strata.toml' %}",
            "leads out of the module",
        ),
        (
            "{% include './../../../../outside/secret.j2' %}",
            "leads out of the module",
        ),
        ("{% include '/etc/passwd' %}", "is absolute"),
        (
            "{% include 'link.j2' %}",
            "is a link that leads out of the module",
        ),
        (
            "{% include 'to-b.j2' %}",
            "is a link that leads out of the module",
        ),
        (
            "{% import 'link.j2' as x %}",
            "is a link that leads out of the module",
        ),
        (
            "{% from 'link.j2' import x %}",
            "is a link that leads out of the module",
        ),
        // Another module's file by its site path, and the site's own files.
        ("{% include 'modules/b/include/b.j2' %}", "no such template"),
        ("{% include 'strata.toml' %}", "no such template"),
        ("{% include 'outside/secret.j2' %}", "no such template"),
    ] {
        let src = format!("first\n{src}\n");
        let err = r
            .render_marked(NAME, &src, &ctx(), &setup(site.path(), "a", "test"))
            .unwrap_err();
        assert_eq!(err.file.as_deref(), Some(NAME), "{src}");
        assert_eq!(err.line, Some(2), "{src}");
        assert!(err.message.contains(says), "{src}: {}", err.message);
        assert!(!err.message.contains("outside\n"), "{}", err.message);
    }
    // Once module b's own render has loaded its template, module a still cannot.
    let b = r
        .render_marked(
            "modules/b/templates/x.j2",
            "{% include 'b.j2' %}",
            &ctx(),
            &setup(site.path(), "b", "test"),
        )
        .unwrap();
    assert_eq!(
        b.out, "b's",
        "Jinja2 drops a loaded template's final newline too"
    );
    let err = r
        .render_marked(
            NAME,
            "{% include 'modules/b/include/b.j2' %}",
            &ctx(),
            &setup(site.path(), "a", "test"),
        )
        .unwrap_err();
    assert!(err.message.contains("no such template"), "{}", err.message);
}

#[test]
fn a_missing_template_is_named_with_the_including_file_and_line() {
    let site = site();
    let err = Renderer::new()
        .render_marked(
            NAME,
            "a\nb\n{% from 'keepalived/nope.jinja' import x %}\n",
            &ctx(),
            &setup(site.path(), "a", "test"),
        )
        .unwrap_err();
    assert_eq!(err.file.as_deref(), Some(NAME));
    assert_eq!(err.line, Some(3));
    assert!(
        err.message.contains("'keepalived/nope.jinja'"),
        "{}",
        err.message
    );
    assert!(
        err.message
            .contains("modules/a/include/, modules/a/templates/"),
        "{}",
        err.message
    );
    // A render outside a module (a tool's, a test's) cannot load templates, and says so.
    let err =
        crate::render::render_template("t.j2", "{% include 'x.j2' %}", &serde_json::json!({}))
            .unwrap_err();
    assert!(err.message.contains("outside a module"), "{}", err.message);
}

/// An error in a loaded template names that template's file and line, and where it was
/// loaded.
#[test]
fn an_error_in_a_loaded_template_names_its_file_and_line() {
    let site = site();
    let err = Renderer::new()
        .render_marked(
            NAME,
            "x\n{% include 'bad.j2' %}\n",
            &ctx(),
            &setup(site.path(), "a", "test"),
        )
        .unwrap_err();
    assert_eq!(err.file.as_deref(), Some("modules/a/include/bad.j2"));
    assert_eq!(err.line, Some(2));
    assert!(
        err.message.starts_with("undefined variable `nope`"),
        "{}",
        err.message
    );
    assert!(
        err.message.contains(&format!("loaded by {NAME} line 2")),
        "{}",
        err.message
    );
}

/// A template that includes itself stops, on minijinja's recursion limit or the
/// render's fuel, naming the template.
#[test]
fn a_template_that_includes_itself_stops() {
    let site = site();
    let dir = site.path().join("modules/a/include");
    std::fs::write(dir.join("self.j2"), "x{% include 'self.j2' %}").unwrap();
    std::fs::write(dir.join("ping.j2"), "{% include 'pong.j2' %}").unwrap();
    std::fs::write(
        dir.join("pong.j2"),
        "{% for i in range(1000) %}{% endfor %}{% include 'ping.j2' %}",
    )
    .unwrap();
    let r = Renderer::new();
    for src in ["{% include 'self.j2' %}", "{% include 'ping.j2' %}"] {
        let start = std::time::Instant::now();
        let err = r
            .render_marked(NAME, src, &ctx(), &setup(site.path(), "a", "test"))
            .unwrap_err();
        assert!(
            err.file
                .as_deref()
                .is_some_and(|f| f.starts_with("modules/a/")),
            "{err:?}"
        );
        assert!(
            err.message.contains("recursion") || err.message.contains("more work"),
            "{}",
            err.message
        );
        assert!(start.elapsed().as_secs() < 60);
    }
}

/// Salt's `import_yaml` (template-formula's `map.jinja`): the file rendered with the
/// context, then read as YAML 1.1 as PyYAML reads it, through the same confined loader.
#[test]
fn salt_s_import_yaml_reads_a_rendered_yaml_file_of_the_module() {
    let site = site();
    let dir = site.path().join("modules/a/include/f");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("defaults.yaml"),
        "---\non: yes\nl: [1, 2]\n{{ who }}: x\n",
    )
    .unwrap();
    std::fs::write(dir.join("bad.yaml"), "a: [1\n").unwrap();
    std::fs::write(
        dir.join("map.jinja"),
        "{%- import_yaml tplroot ~ '/defaults.yaml' as d %}\n{%- import_json 'f/j.json' as j %}",
    )
    .unwrap();
    std::fs::write(dir.join("j.json"), "{\"k\": [true]}").unwrap();
    let mut salt = setup(site.path(), "a", "test");
    salt.dialect = Dialect::Salt;
    let ctx = minijinja::context! { who => "a", tplroot => "f" };
    let r = Renderer::new();
    let out = r
        .render_marked(
            NAME,
            "{% from 'f/map.jinja' import d, j %}{{ d }} {{ j }}",
            &ctx,
            &salt,
        )
        .unwrap();
    assert_eq!(out.out, "{'on': True, 'l': [1, 2], 'a': 'x'} {'k': [True]}");
    for (src, says) in [
        (
            "x\n{% import_yaml 'f/bad.yaml' as b %}",
            "load_yaml of `f/bad.yaml`: invalid YAML",
        ),
        (
            "x\n{% import_yaml '../../b/include/b.j2' as b %}",
            "leads out of the module",
        ),
        (
            "x\n{% import_yaml 'link.j2' as b %}",
            "is a link that leads out of the module",
        ),
    ] {
        let err = r.render_marked(NAME, src, &ctx, &salt).unwrap_err();
        assert_eq!(err.line, Some(2), "{src}: {err:?}");
        assert!(err.message.contains(says), "{src}: {}", err.message);
    }
    // Ansible's dialect has no such tag.
    let err = r
        .render_marked(
            NAME,
            "{% import_yaml 'f/defaults.yaml' as d %}",
            &ctx,
            &setup(site.path(), "a", "test"),
        )
        .unwrap_err();
    assert!(err.message.contains("syntax error"), "{}", err.message);
}

#[derive(Debug)]
struct OneSecret;

impl crate::secret::SecretSource for OneSecret {
    fn secret(&self, _: &str) -> Result<crate::SecretValue, String> {
        Ok(crate::SecretValue::new("CANARY".into()))
    }
}

/// A secret read by a loaded template makes the loading template's output sensitive.
#[test]
fn a_secret_read_in_a_loaded_template_marks_the_output() {
    let site = site();
    let dir = site.path().join("modules/a/include");
    std::fs::write(dir.join("pw.j2"), "pw={{ secret('pw') }}").unwrap();
    let r = Renderer::with_secrets(Some(Arc::new(OneSecret)));
    let out = r
        .render_marked(
            NAME,
            "{% include 'pw.j2' %}",
            &ctx(),
            &setup(site.path(), "a", "t"),
        )
        .unwrap();
    assert_eq!(out.out, "pw=CANARY");
    assert!(out.sensitive);
}
