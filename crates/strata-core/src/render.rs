//! Jinja2 templates through minijinja, strict about undefined variables, and bounded: a
//! template is a program a module's author wrote, so one render may do only so much work
//! and write only so much.
//!
//! The work is counted by minijinja's fuel: one unit per instruction run and one per 64
//! bytes of data a template makes or walks through (output, strings built by `~`, `*`
//! or a filter, lists, …), checked before a value of known size is made. So one budget
//! bounds both the time a render takes and the memory it can take, and it is the same on
//! every machine and under any load: a template that renders in a plan renders in the
//! apply. The output has its own, smaller limit. docs/decisions.md gives the figures.
//!
//! (Over 600 lines, with one job: about 320 lines of code, the rest the tests of the
//! limits, which belong beside them; the whitespace rules, `secret()` and the measurement
//! that chose the limits are in render/.)

use std::io::Write;
use std::sync::{Arc, OnceLock};

use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::error::SiteError;
use crate::secret::SecretSource;

mod loader;
mod salt_tags;
mod secret;
mod whitespace;

pub use loader::Includes;

use secret::{READ_SECRET, SECRET_ERROR, hide_details};
pub use whitespace::Dialect;
use whitespace::{Whitespace, header, pad_newlines};

/// The fuel one render may burn: 5 million instructions (0.15 s of nested loops on this
/// project's 2-core machine, release build), or 305 MiB of data made or walked; twelve
/// times what an `/etc/hosts` of 10,000 nodes burns.
pub(crate) const TEMPLATE_FUEL: u64 = 5_000_000;

/// The largest output of one template: 64 MiB (a configuration file is kilobytes; every
/// rendered file of a compile is held in memory until it is written).
pub(crate) const TEMPLATE_OUTPUT: usize = 64 << 20;

/// What one render may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Limits {
    /// minijinja fuel (see the module's documentation).
    pub fuel: u64,
    /// Bytes of output.
    pub output: usize,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            fuel: TEMPLATE_FUEL,
            output: TEMPLATE_OUTPUT,
        }
    }
}

/// One environment for all templates of a compile.
pub(crate) struct Renderer {
    env: Environment<'static>,
    /// The environment with other whitespace options, for templates whose `#jinja2:`
    /// line asks for them, made when first needed; indexed by [`Whitespace::index`].
    variants: [OnceLock<Environment<'static>>; 8],
    limits: Limits,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renderer")
    }
}

impl Renderer {
    pub fn new() -> Renderer {
        Renderer::with_limits(Limits::default())
    }

    pub fn with_limits(limits: Limits) -> Renderer {
        Renderer::build(limits, None)
    }

    /// A renderer whose templates read secrets from `secrets` with `secret("NAME")`;
    /// without a source, a template that calls it fails naming the secret.
    pub fn with_secrets(secrets: Option<Arc<dyn SecretSource>>) -> Renderer {
        Renderer::build(Limits::default(), secrets)
    }

    fn build(limits: Limits, secrets: Option<Arc<dyn SecretSource>>) -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(limits.fuel));
        env.set_syntax(Whitespace::ANSIBLE.syntax());
        crate::ansible::register(&mut env);
        env.set_loader(loader::load);
        // Salt's filters that its import tags use (render/salt_tags.rs).
        env.add_filter("load_yaml", salt_tags::load_yaml);
        env.add_filter("load_json", salt_tags::load_json);
        env.set_path_join_callback(loader::join);
        env.add_function("secret", move |name: String| {
            secret::secret(secrets.as_deref(), &name)
        });
        Renderer {
            env,
            variants: Default::default(),
            limits,
        }
    }

    /// The environment for templates with these whitespace options.
    fn env(&self, ws: Whitespace) -> &Environment<'static> {
        if ws == Whitespace::ANSIBLE {
            return &self.env;
        }
        self.variants[ws.index()].get_or_init(|| {
            let mut env = self.env.clone();
            env.set_syntax(ws.syntax());
            env
        })
    }

    /// Parses and renders a template; `name` is its site-relative path. The compiled
    /// template is not kept: a site of thousands of templates stays small in memory.
    #[cfg(test)]
    pub fn render(
        &self,
        name: &str,
        source: &str,
        ctx: &minijinja::Value,
    ) -> Result<String, SiteError> {
        self.render_as(name, source, ctx, Dialect::Ansible)
    }

    /// [`Renderer::render`], with `dialect`'s whitespace rules.
    #[cfg(test)]
    pub fn render_as(
        &self,
        name: &str,
        source: &str,
        ctx: &minijinja::Value,
        dialect: Dialect,
    ) -> Result<String, SiteError> {
        let setup = Setup {
            dialect,
            includes: None,
        };
        self.render_marked(name, source, ctx, &setup).map(|r| r.out)
    }

    /// Renders as `setup` says, and says whether the template read a secret (its output
    /// is then sensitive) or loaded another template. An error of a template that read a
    /// secret names the template and line but shows no detail that could hold its value.
    pub fn render_marked(
        &self,
        name: &str,
        source: &str,
        ctx: &minijinja::Value,
        setup: &Setup,
    ) -> Result<Rendered, SiteError> {
        // Salt's `file.managed` gives its template `source`, where it comes from (here
        // its place in the site), unless a parameter is so named.
        let with_source;
        let ctx = if setup.dialect == Dialect::Salt {
            let source = minijinja::context! { source => format!("salt://{name}") };
            // (The last map wins a key.)
            with_source = minijinja::value::merge_maps([source, ctx.clone()]);
            &with_source
        } else {
            ctx
        };
        READ_SECRET.with(|r| r.set(false));
        let current = loader::Current::set(setup.includes.clone(), setup.dialect);
        let out = self.render_inner(name, source, ctx, setup.dialect);
        let loaded = loader::LOADED.with(std::cell::Cell::get);
        drop(current);
        let read = READ_SECRET.with(|r| r.replace(false));
        match out {
            Ok(out) => Ok(Rendered {
                out,
                sensitive: read,
                loaded,
            }),
            Err(mut e) if read => {
                e.message = hide_details(&e.message);
                Err(e)
            }
            Err(e) => Err(e),
        }
    }

    fn render_inner(
        &self,
        name: &str,
        source: &str,
        ctx: &minijinja::Value,
        dialect: Dialect,
    ) -> Result<String, SiteError> {
        let _watch = crate::budget::watch(name);
        let (ws, body) = match dialect {
            Dialect::Ansible => header(source).map_err(|m| SiteError::in_file(name, m).at(1, 1))?,
            Dialect::Salt => (Whitespace::SALT, source),
        };
        // The lines of the template's body follow the `#jinja2:` line.
        let skipped = usize::from(body.len() != source.len());
        // Salt's import tags, rewritten in place (each on its own line: lines keep their
        // numbers).
        let rewritten = match dialect {
            Dialect::Salt => salt_tags::rewrite(body),
            Dialect::Ansible => std::borrow::Cow::Borrowed(body),
        };
        let body = rewritten.as_ref();
        let fail = |e: minijinja::Error| {
            let mut err = to_site_error(name, body, &e, &self.limits);
            err.line = err.line.map(|l| l + skipped);
            // An error in a template this one loaded: that template's file and line, and
            // where this one loaded it.
            let inner = innermost(&e);
            if let Some(file) = inner.name().filter(|n| *n != name) {
                let from = err.line.map_or(String::new(), |l| format!(" line {l}"));
                let source = inner.template_source().unwrap_or_default();
                err = to_site_error(file, source, inner, &self.limits);
                err.message = format!("{} (loaded by {name}{from})", err.message);
            }
            err
        };
        let template = self
            .env(ws)
            .template_from_named_str(name, body)
            .map_err(fail)?;
        let mut out = Capped {
            bytes: Vec::with_capacity(source.len()),
            limit: self.limits.output,
        };
        template
            .render_captured_to(ctx.clone(), &mut out)
            .map_err(fail)?;
        let mut out = String::from_utf8(out.bytes).expect("minijinja writes UTF-8 text");
        match dialect {
            Dialect::Ansible => pad_newlines(body, &mut out),
            Dialect::Salt if body.ends_with('\n') => out.push('\n'),
            Dialect::Salt => {}
        }
        // The output grew by doubling: thousands of rendered files are kept until written.
        out.shrink_to_fit();
        Ok(out)
    }
}

/// How a module's templates render.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Setup {
    /// Whose whitespace rules.
    pub dialect: Dialect,
    /// Where the templates they import or include are (none: they cannot).
    pub includes: Option<Arc<Includes>>,
}

/// A template's output, and what its render did.
#[derive(Debug)]
pub(crate) struct Rendered {
    pub out: String,
    /// It read a secret.
    pub sensitive: bool,
    /// It imported or included another template (its output depends on more than its
    /// own text and context).
    pub loaded: bool,
}

/// Renders one template as a compile does (Ansible's dialect, strict undefined, the same
/// limits), with `vars` as its context; `name` names it in errors. For tools and tests
/// that render a template outside a site; a compile keeps one environment for all.
pub fn render_template(
    name: &str,
    source: &str,
    vars: &serde_json::Value,
) -> Result<String, SiteError> {
    render_template_as(name, source, vars, Dialect::Ansible)
}

/// [`render_template`] in `dialect`: Salt's formulas' templates render with Salt's
/// whitespace rules. (A site's modules cannot choose it yet: README, "Not built yet".)
pub fn render_template_as(
    name: &str,
    source: &str,
    vars: &serde_json::Value,
    dialect: Dialect,
) -> Result<String, SiteError> {
    render_template_with(
        name,
        source,
        vars,
        &Setup {
            dialect,
            includes: None,
        },
    )
}

/// [`render_template_as`] with the templates it imports or includes found as `setup`
/// says (the corpus test's `include/`).
pub fn render_template_with(
    name: &str,
    source: &str,
    vars: &serde_json::Value,
    setup: &Setup,
) -> Result<String, SiteError> {
    let ctx = minijinja::Value::from(minijinja::value::Serde(vars));
    Renderer::new()
        .render_marked(name, source, &ctx, setup)
        .map(|r| r.out)
}

/// A render's output, refused past its limit.
struct Capped {
    bytes: Vec<u8>,
    limit: usize,
}

/// The error [`Capped`] gives, found again in minijinja's error by its message.
const OUTPUT_FULL: &str = "strata: the template's output limit is reached";

impl Write for Capped {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        if self.bytes.len() + buf.len() > self.limit {
            return Err(std::io::Error::other(OUTPUT_FULL));
        }
        self.bytes.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn to_site_error(name: &str, source: &str, e: &minijinja::Error, limits: &Limits) -> SiteError {
    let mut err = SiteError::in_file(name, describe(source, e, limits));
    if let Some(line) = e.line() {
        let col = e
            .range()
            .map(|r| {
                let before = &source[..r.start.min(source.len())];
                r.start - before.rfind('\n').map_or(0, |i| i + 1) + 1
            })
            .unwrap_or(1);
        err = err.at(line, col);
    }
    err
}

fn describe(source: &str, e: &minijinja::Error, limits: &Limits) -> String {
    let expr = e.range().and_then(|r| source.get(r)).map(str::trim);
    match (e.kind(), expr) {
        // `mandatory`'s own message, with the expression it guards.
        (ErrorKind::UndefinedError, _) if mandatory(e).is_some() => format!(
            "{} `{}`",
            mandatory(e).unwrap_or_default(),
            enclosing(source, e.range().map_or(0, |r| r.start))
        ),
        (ErrorKind::UndefinedError, Some(expr)) => format!("undefined variable `{expr}`"),
        (ErrorKind::InvalidOperation, _)
            if e.detail().is_some_and(|d| d.starts_with(SECRET_ERROR)) =>
        {
            let detail = e.detail().unwrap_or_default();
            format!("secret(): {}", &detail[SECRET_ERROR.len()..])
        }
        (ErrorKind::TemplateNotFound, _) => format!(
            "{}: no such template in {}",
            e.detail().unwrap_or("template not found"),
            loader::looked_in()
                .unwrap_or_else(|| "this render (it has no templates to load)".into())
        ),
        (ErrorKind::SyntaxError, _) => {
            format!(
                "template syntax error: {}",
                e.detail().unwrap_or("invalid syntax")
            )
        }
        (ErrorKind::OutOfFuel, _) => format!(
            "the template does more work than a template may ({} units of minijinja fuel: \
             {} million steps, or {} MiB of text and lists made); a loop far too large, or one \
             that builds a value without end? (docs/decisions.md, \"Templates\")",
            limits.fuel,
            limits.fuel / 1_000_000,
            (limits.fuel * 64) >> 20
        ),
        (ErrorKind::WriteFailure, _) if is_output_full(e) => format!(
            "the template renders more than {} MiB, the most a template may write \
             (docs/decisions.md, \"Templates\")",
            limits.output >> 20
        ),
        (kind, _) => match e.detail() {
            Some(d) => format!("{kind}: {d}"),
            None => kind.to_string(),
        },
    }
}

/// The last error of `e`'s chain that knows its template's line: minijinja wraps an error
/// in a template another loaded in one at the loading line.
fn innermost(e: &minijinja::Error) -> &minijinja::Error {
    let mut inner = e;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(m) = s.downcast_ref::<minijinja::Error>()
            && m.line().is_some()
            && m.name().is_some()
        {
            inner = m;
        }
        source = s.source();
    }
    inner
}

/// The message of `mandatory`'s error (see [`crate::ansible::MANDATORY`]).
fn mandatory(e: &minijinja::Error) -> Option<&str> {
    e.detail()?.strip_prefix(crate::ansible::MANDATORY)
}

/// The `{{ … }}` expression around byte `at` of `source`, trimmed.
fn enclosing(source: &str, at: usize) -> &str {
    let at = at.min(source.len());
    let start = source[..at].rfind("{{").map_or(at, |i| i + 2);
    let end = source[at..].find("}}").map_or(source.len(), |i| at + i);
    source.get(start..end).map_or("", str::trim)
}

/// Whether minijinja failed because [`Capped`] refused more output.
fn is_output_full(e: &minijinja::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.to_string() == OUTPUT_FULL {
            return true;
        }
        source = s.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undefined_variable_is_named_with_its_line() {
        let r = Renderer::new();
        let ctx = minijinja::Value::from(minijinja::value::Serde(
            serde_json::json!({"nginx": {"port": 1}}),
        ));
        let err = r
            .render("t.j2", "a\nport={{ nginx.prt }}\n", &ctx)
            .unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.message, "undefined variable `nginx.prt`");
    }

    #[test]
    fn a_syntax_error_is_located() {
        let r = Renderer::new();
        let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({})));
        let err = r.render("t.j2", "ok\n{% if %}\n", &ctx).unwrap_err();
        assert_eq!(err.file.as_deref(), Some("t.j2"));
        assert_eq!(err.line, Some(2));
        assert!(
            err.message.starts_with("template syntax error"),
            "{}",
            err.message
        );
    }

    fn empty() -> minijinja::Value {
        minijinja::Value::from(minijinja::value::Serde(serde_json::json!({})))
    }

    /// Issue 16: three nested loops of 100,000 ran past 180 s and 2 GiB.
    #[test]
    fn a_loop_far_too_large_stops_on_its_fuel_naming_the_template() {
        let loops = "ok\n{% for a in range(100000) %}{% for b in range(100000) %}\
            {% for c in range(100000) %}{{ c }}{% endfor %}{% endfor %}{% endfor %}\n";
        let start = std::time::Instant::now();
        let err = Renderer::new()
            .render("modules/m/templates/loop.j2", loops, &empty())
            .unwrap_err();
        assert_eq!(err.file.as_deref(), Some("modules/m/templates/loop.j2"));
        assert_eq!(err.line, Some(2));
        assert!(
            err.message
                .starts_with("the template does more work than a template may"),
            "{}",
            err.message
        );
        // Five million units of fuel, in a debug build: seconds, not minutes.
        assert!(start.elapsed().as_secs() < 60, "{:?}", start.elapsed());
    }

    /// Issue 16: strings that double at each step, or are repeated billions of times, fail
    /// on fuel before the string is made, not when memory runs out.
    #[test]
    fn a_string_that_blows_up_fails_before_it_is_made() {
        let r = Renderer::new();
        for src in [
            "{{ \"x\" * 10000000000 }}",
            "{% set ns = namespace(s=\"x\") %}{% for i in range(60) %}\
             {% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s|length }}",
            "{% set ns = namespace(s=\"x\") %}{% for i in range(60) %}\
             {% set ns.s = [ns.s, ns.s]|join %}{% endfor %}",
            "{% macro d(s, n) %}{% if n %}{{ d(s ~ s, n - 1) }}{% endif %}{% endmacro %}\
             {{ d(\"x\", 60) }}",
        ] {
            let err = r.render("t.j2", src, &empty()).unwrap_err();
            assert_eq!(err.file.as_deref(), Some("t.j2"));
            assert!(
                err.message.starts_with("the template does more work"),
                "{src}: {}",
                err.message
            );
        }
        // A `set` inside a loop is the loop's own (Jinja's scoping): this one doubles
        // nothing, and renders.
        let scoped = "{% set s = \"x\" %}{% for i in range(60) %}{% set s = s ~ s %}\
                      {% endfor %}{{ s }}";
        assert_eq!(r.render("t.j2", scoped, &empty()).unwrap(), "x");
    }

    #[test]
    fn output_past_its_limit_is_refused_naming_the_template() {
        // 100 MB of output in 100,000 writes of 1,000 bytes: within the fuel.
        let big = "{% for i in range(100000) %}{{ \"x\" * 1000 }}{% endfor %}";
        let err = Renderer::new().render("big.j2", big, &empty()).unwrap_err();
        assert_eq!(err.file.as_deref(), Some("big.j2"));
        assert_eq!(
            err.message,
            "the template renders more than 64 MiB, the most a template may write \
             (docs/decisions.md, \"Templates\")"
        );
        // Up to the limit is fine.
        let limits = Limits {
            output: 10,
            ..Limits::default()
        };
        let r = Renderer::with_limits(limits);
        assert_eq!(
            r.render("t.j2", "0123456789", &empty()).unwrap(),
            "0123456789"
        );
        assert!(r.render("t.j2", "0123456789!", &empty()).is_err());
    }

    #[test]
    fn a_jinja2_first_line_sets_the_whitespace_options_and_is_not_printed() {
        let r = Renderer::new();
        let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({"l": [1, 2]})));
        let body = "a\n    {% for x in l %}\n{{ x }}\n    {% endfor %}\nb\n";
        // Ansible's default: trim_blocks, no lstrip_blocks.
        assert_eq!(
            r.render("t.j2", body, &ctx).unwrap(),
            "a\n    1\n    2\n    b\n"
        );
        let lstrip = format!("#jinja2: trim_blocks: True, lstrip_blocks: True\n{body}");
        assert_eq!(r.render("t.j2", &lstrip, &ctx).unwrap(), "a\n1\n2\nb\n");
        let neither = format!("#jinja2:trim_blocks:False,lstrip_blocks:False\n{body}");
        assert_eq!(
            r.render("t.j2", &neither, &ctx).unwrap(),
            "a\n    \n1\n    \n2\n    \nb\n"
        );
        // Jinja2 keeps the final newline, and Ansible's padding adds none.
        let keep = "#jinja2: keep_trailing_newline: True\nx\n\n";
        assert_eq!(r.render("t.j2", keep, &ctx).unwrap(), "x\n\n");
        // Jinja2 drops it, and Ansible adds it back.
        let no_nl = "#jinja2: keep_trailing_newline: False\nx\n";
        assert_eq!(r.render("t.j2", no_nl, &ctx).unwrap(), "x\n");
        // The default environment is untouched by a template's options.
        assert_eq!(
            r.render("t.j2", body, &ctx).unwrap(),
            "a\n    1\n    2\n    b\n"
        );
    }

    #[test]
    fn errors_after_a_jinja2_line_keep_their_line_and_a_bad_line_is_named() {
        let r = Renderer::new();
        let err = r
            .render(
                "t.j2",
                "#jinja2: lstrip_blocks: True\nok\n{{ nope }}\n",
                &empty(),
            )
            .unwrap_err();
        assert_eq!(err.line, Some(3));
        for (line, says) in [
            (
                "#jinja2: lstrip_blocks: yes\n",
                "must be True or False, not `yes`",
            ),
            ("#jinja2: lstrip_blocks\n", "`option: value` pairs"),
            (
                "#jinja2: newline_sequence: '\\r\\n'\n",
                "`newline_sequence` is not supported",
            ),
        ] {
            let err = r.render("m/t.j2", line, &empty()).unwrap_err();
            assert_eq!(err.file.as_deref(), Some("m/t.j2"));
            assert_eq!(err.line, Some(1));
            assert!(err.message.contains(says), "{}", err.message);
        }
    }

    /// A filter's error is the template's error: its file, line and what went wrong.
    #[test]
    fn a_filter_error_names_the_template_and_line() {
        let r = Renderer::new();
        let err = r
            .render("m/t.j2", "a\n{{ 'x' | comment('lisp') }}\n", &empty())
            .unwrap_err();
        assert_eq!(err.file.as_deref(), Some("m/t.j2"));
        assert_eq!(err.line, Some(2));
        assert_eq!(
            err.message,
            "invalid operation: comment: unknown style `lisp` (plain, erlang, c, cblock, xml)"
        );
        let err = r
            .render("m/t.j2", "a\n\n{{ nope | mandatory }}\n", &empty())
            .unwrap_err();
        assert_eq!(err.line, Some(3));
        assert_eq!(
            err.message,
            "Mandatory variable not defined. `nope | mandatory`"
        );
    }

    /// Salt's `render_jinja_tmpl`: Jinja2's defaults (a block tag keeps its newline), a
    /// `#jinja2:` line is text, and one newline is appended to the output when the
    /// template ends in one, even after an output that ends in its own.
    #[test]
    fn salt_keeps_block_newlines_and_appends_one_final_newline() {
        let r = Renderer::new();
        let ctx = minijinja::Value::from(minijinja::value::Serde(
            serde_json::json!({"l": [1, 2], "y": "a: 1\n"}),
        ));
        let t = |src: &str| r.render_as("t.jinja", src, &ctx, Dialect::Salt).unwrap();
        assert_eq!(
            t("a\n{% for x in l %}\n{{ x }}\n{% endfor %}\nb\n"),
            "a\n\n1\n\n2\n\nb\n"
        );
        assert_eq!(
            t("{%- for x in l %}\n  {{ x }}\n{%- endfor %}"),
            "\n  1\n  2"
        );
        assert_eq!(t("{{ y }}\n"), "a: 1\n\n");
        assert_eq!(t("x\n\n"), "x\n\n");
        assert_eq!(t("x"), "x");
        assert_eq!(t(""), "");
        assert_eq!(
            t("#jinja2: trim_blocks: False\nx\n"),
            "#jinja2: trim_blocks: False\nx\n"
        );
        // Ansible's rules, for the same templates.
        let a = |src: &str| r.render("t.j2", src, &ctx).unwrap();
        assert_eq!(
            a("a\n{% for x in l %}\n{{ x }}\n{% endfor %}\nb\n"),
            "a\n1\n2\nb\n"
        );
        assert_eq!(a("{{ y }}\n"), "a: 1\n");
    }

    /// minijinja escapes by the template's name; Ansible never does: a `config.yaml.j2`
    /// had its strings written in JSON quotes, an `index.html.j2` its slashes as `&#x2f;`.
    #[test]
    fn no_template_is_escaped_whatever_its_name() {
        let ctx = minijinja::Value::from(minijinja::value::Serde(
            serde_json::json!({"a": "/etc/x <&'\""}),
        ));
        for name in [
            "m/templates/etc/app/config.yaml.j2",
            "m/templates/etc/app/config.yml",
            "m/templates/etc/app/config.json.j2",
            "m/templates/srv/www/index.html.j2",
            "m/templates/etc/app/app.xml.j2",
        ] {
            let out = Renderer::new().render(name, "a: {{ a }}\n", &ctx).unwrap();
            assert_eq!(out, "a: /etc/x <&'\"\n", "{name}");
        }
    }

    #[derive(Debug)]
    struct OneSecret;

    impl SecretSource for OneSecret {
        fn secret(&self, name: &str) -> Result<crate::SecretValue, String> {
            match name {
                "pw" => Ok(crate::SecretValue::new("CANARY-not-a-number".into())),
                _ => Err(format!("secret `{name}` does not exist")),
            }
        }
    }

    #[test]
    fn a_template_that_reads_a_secret_is_marked_and_its_errors_hide_the_value() {
        let r = Renderer::with_secrets(Some(Arc::new(OneSecret)));
        let ansible = Setup::default();
        let marked = r
            .render_marked("t.j2", "pw={{ secret(\"pw\") }}\n", &empty(), &ansible)
            .unwrap();
        let (out, read) = (marked.out, marked.sensitive);
        assert_eq!(out, "pw=CANARY-not-a-number\n");
        assert!(read);
        let marked = r
            .render_marked("t.j2", "plain\n", &empty(), &ansible)
            .unwrap();
        assert!(!marked.sensitive, "the mark is per render");
        // A filter failing on the value would quote it: only the kind and the line remain.
        for src in [
            "a\n{{ secret(\"pw\") | from_json }}\n",
            "a\n{{ \"x\" | regex_replace(secret(\"pw\") ~ \"(\", \"y\") }}\n",
        ] {
            let err = r
                .render_marked("t.j2", src, &empty(), &ansible)
                .unwrap_err();
            assert_eq!(err.file.as_deref(), Some("t.j2"));
            assert_eq!(err.line, Some(2), "{src}");
            assert!(!err.message.contains("CANARY"), "{}", err.message);
            assert!(err.message.contains("details not shown"), "{}", err.message);
        }
        let err = r
            .render_marked("t.j2", "{{ secret(\"nope\") }}", &empty(), &ansible)
            .unwrap_err();
        assert_eq!(err.message, "secret(): secret `nope` does not exist");
        let err = Renderer::new()
            .render("t.j2", "{{ secret(\"pw\") }}", &empty())
            .unwrap_err();
        assert!(
            err.message.contains("this compile has no secrets"),
            "{}",
            err.message
        );
    }

    #[test]
    fn keeps_the_trailing_newline() {
        let r = Renderer::new();
        let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({"a": 1})));
        assert_eq!(r.render("t.j2", "x={{ a }}\n", &ctx).unwrap(), "x=1\n");
    }

    /// Ansible pads the output to the template's count of final newlines, where Jinja2's
    /// `keep_trailing_newline` would keep the template's one after the output's own: a
    /// template ending in `{{ modules | to_nice_yaml }}` wrote a blank last line
    /// (prometheus-community's blackbox_exporter.yml.j2, in the corpus).
    #[test]
    fn final_newlines_are_padded_as_ansible_pads_them() {
        let r = Renderer::new();
        let ctx = minijinja::Value::from(minijinja::value::Serde(
            serde_json::json!({"y": "a: 1\n", "two": "b\n\n", "e": ""}),
        ));
        let t = |src: &str| r.render("t.j2", src, &ctx).unwrap();
        assert_eq!(t("{{ y }}\n"), "a: 1\n");
        assert_eq!(t("{{ y }}"), "a: 1\n");
        assert_eq!(t("{{ two }}\n"), "b\n\n");
        assert_eq!(t("{{ y }}\n\n\n"), "a: 1\n\n\n");
        assert_eq!(t("x\n\n"), "x\n\n");
        assert_eq!(t("{{ e }}\n"), "\n");
        assert_eq!(t("\n\n"), "\n\n");
        assert_eq!(t(""), "");
        // A block's own newline, dropped by trim_blocks, is not a final newline.
        assert_eq!(t("x\n{% if true %}{% endif %}\n"), "x\n");
    }
}

#[cfg(test)]
mod measure;

#[cfg(test)]
mod loader_tests;
