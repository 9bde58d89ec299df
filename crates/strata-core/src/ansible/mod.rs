//! Ansible's Jinja2 dialect on top of minijinja: the filters and tests Ansible roles and
//! Salt formulas use, Python's methods on values, under their short and their fully
//! qualified names (`comment`, `ansible.builtin.comment`), so that the templates users
//! already have render as they did there.
//!
//! Everything is registered once per [`Environment`]; a render pays nothing for it.

// minijinja hands a filter its arguments by value, as the filter's signature says.
#![allow(clippy::needless_pass_by_value)]

mod comment;
mod dicts;
pub(crate) mod grains;
mod hash;
mod indent;
mod ipaddr;
mod json;
mod lists;
mod logic;
mod paths;
mod pystr;
mod regex;
mod repr;
mod salt;
mod text;
mod version;
mod yaml;

use minijinja::value::{FunctionArgs, FunctionResult, ValueKind};
use minijinja::{Environment, Error, ErrorKind};

/// Adds the dialect to `env`.
pub(crate) fn register(env: &mut Environment<'static>) {
    env.set_unknown_method_callback(methods);
    env.set_formatter(repr::format);
    // Jinja2 as Ansible configures it never escapes: minijinja would, by the template's
    // name (`.yaml.j2`, `.json.j2` as JSON, `.html.j2`, `.xml.j2` as HTML).
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_global("salt", salt::global());

    builtin(env, "comment", comment::comment);
    builtin(env, "ternary", logic::ternary);
    builtin(env, "mandatory", logic::mandatory);
    builtin(env, "bool", logic::to_bool);
    builtin(env, "regex_replace", regex::regex_replace);
    builtin(env, "regex_search", regex::regex_search);
    builtin(env, "regex_findall", regex::regex_findall);
    builtin(env, "regex_escape", regex::regex_escape);
    builtin(env, "flatten", lists::flatten);
    builtin(env, "unique", lists::unique);
    builtin(env, "union", lists::union);
    builtin(env, "intersect", lists::intersect);
    builtin(env, "difference", lists::difference);
    builtin(env, "symmetric_difference", lists::symmetric_difference);
    builtin(env, "combine", dicts::combine);
    builtin(env, "dict2items", dicts::dict2items);
    builtin(env, "items2dict", dicts::items2dict);
    builtin(env, "to_json", json::to_json);
    builtin(env, "to_nice_json", json::to_nice_json);
    builtin(env, "from_json", json::from_json);
    builtin(env, "to_yaml", yaml::to_yaml);
    builtin(env, "to_nice_yaml", yaml::to_nice_yaml);
    builtin(env, "from_yaml", yaml::from_yaml);
    builtin(env, "b64encode", text::b64encode);
    builtin(env, "b64decode", text::b64decode);
    builtin(env, "quote", text::quote);
    builtin(env, "hash", hash::hash);
    builtin(env, "basename", paths::basename);
    builtin(env, "dirname", paths::dirname);
    // Jinja2's own `indent`, which keeps a block's trailing newline, and `string` and
    // `join` through Python's `str` (`True`, `None`).
    env.add_filter("indent", indent::indent);
    env.add_filter("string", pystr::string);
    env.add_filter("join", pystr::join);

    for prefix in ["", "ansible.utils.", "ansible.netcommon."] {
        env.add_filter(format!("{prefix}ipaddr"), ipaddr::ipaddr);
        env.add_filter(format!("{prefix}ipv4"), ipaddr::ipv4);
        env.add_filter(format!("{prefix}ipv6"), ipaddr::ipv6);
        env.add_filter(format!("{prefix}ipwrap"), ipaddr::ipwrap);
    }

    for name in ["version", "version_compare"] {
        env.add_test(name, version::version);
        env.add_test(format!("ansible.builtin.{name}"), version::version);
    }
    for (name, f) in [
        ("any", logic::is_any as fn(&_) -> _),
        ("all", logic::is_all),
    ] {
        env.add_test(name, f);
        env.add_test(format!("ansible.builtin.{name}"), f);
    }
    for (name, f) in [
        ("match", regex::is_match as fn(_, _, _) -> _),
        ("search", regex::is_search),
        ("regex", regex::is_regex),
    ] {
        env.add_test(name, f);
        env.add_test(format!("ansible.builtin.{name}"), f);
    }
}

/// Python's methods on values (minijinja-contrib's `pycompat`); the ones that change a
/// value cannot work on minijinja's values, and say what to write instead.
fn methods(
    state: &mut minijinja::State,
    value: &minijinja::Value,
    method: &str,
    args: &[minijinja::Value],
) -> Result<minijinja::Value, Error> {
    const MUTATING: &[&str] = &[
        "append",
        "extend",
        "insert",
        "pop",
        "remove",
        "clear",
        "update",
        "setdefault",
        "popitem",
        "sort",
        "reverse",
    ];
    if MUTATING.contains(&method) && matches!(value.kind(), ValueKind::Seq | ValueKind::Map) {
        return Err(Error::new(
            ErrorKind::InvalidOperation,
            format!(
                "`.{method}()` would change a {}, and template values cannot change here; \
                 build a new one instead: {{% set ns = namespace(l=[]) %}} … \
                 {{% set ns.l = ns.l + [x] %}}, or `d | combine({{'k': v}})` for a mapping",
                value.kind()
            ),
        ));
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

/// Registers `f` as `name` and `ansible.builtin.name`.
fn builtin<F, Rv, Args>(env: &mut Environment<'static>, name: &'static str, f: F)
where
    F: minijinja::functions::Function<Rv, Args> + Clone,
    Rv: FunctionResult,
    Args: for<'a> FunctionArgs<'a>,
{
    env.add_filter(name, f.clone());
    env.add_filter(format!("ansible.builtin.{name}"), f);
}

/// The start of `mandatory`'s error, by which the render's error finds it and adds the
/// expression it guards.
pub(crate) const MANDATORY: &str = "mandatory: ";

/// An error of a filter's own, as Ansible words it.
fn fail(message: impl Into<String>) -> Error {
    Error::new(ErrorKind::InvalidOperation, message.into())
}

#[cfg(test)]
pub(crate) mod testing {
    //! Renders one expression or template with the dialect, for the unit tests.

    use minijinja::Environment;

    fn env() -> Environment<'static> {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        super::register(&mut env);
        env
    }

    /// Renders `src` with the JSON context `ctx`.
    pub fn render(src: &str, ctx: serde_json::Value) -> String {
        try_render(src, ctx).unwrap_or_else(|e| panic!("{src}: {e:#}"))
    }

    /// Renders `src`, or its error's text.
    pub fn try_render(src: &str, ctx: serde_json::Value) -> Result<String, String> {
        env()
            .render_str(src, minijinja::value::Serde(ctx))
            .map_err(|e| e.to_string())
    }

    /// Renders `src` with no variables.
    pub fn r(src: &str) -> String {
        render(src, serde_json::json!({}))
    }
}

#[cfg(test)]
mod tests {
    use super::testing::{render, try_render};
    use serde_json::json;

    #[test]
    fn python_methods_on_values() {
        let ctx = json!({"d": {"b": 1, "a": 2}, "s": "a,b , c", "l": [1, 2, 1]});
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(
            t("{% for k, v in d.items() %}{{ k }}={{ v }};{% endfor %}"),
            "b=1;a=2;"
        );
        assert_eq!(
            t("{{ d.keys() | list }} {{ d.values() | list }}"),
            "['b', 'a'] [1, 2]"
        );
        assert_eq!(
            t("{{ d.get('a') }} {{ d.get('x') }} {{ d.get('x', 5) }}"),
            "2 None 5"
        );
        assert_eq!(t("{{ s.split(',') }}"), "['a', 'b ', ' c']");
        assert_eq!(
            t("{{ 'a b'.split() }} {{ s.upper() }} {{ l.count(1) }}"),
            "['a', 'b'] A,B , C 2"
        );
        assert_eq!(t("{{ 'x'.startswith('x') }}"), "True");
        // `{% do %}` runs an expression for nothing.
        assert_eq!(t("{% do d.get('a') %}ok"), "ok");
        assert!(try_render("{{ d.nosuch() }}", ctx.clone()).is_err());
        // What would change a value says how to build a new one.
        let err = try_render("{% set l = [] %}{% do l.append(1) %}", ctx.clone()).unwrap_err();
        assert!(err.contains("`.append()` would change a sequence"), "{err}");
        assert!(err.contains("namespace"), "{err}");
        let err = try_render("{% do d.update({'c': 3}) %}", ctx).unwrap_err();
        assert!(err.contains("combine"), "{err}");
    }
}
