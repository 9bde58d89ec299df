//! Salt's own tags `{% import_yaml "x.yaml" as d %}`, `{% import_json … %}` and
//! `{% import_text … %}` (its SerializerExtension, which template-formula's `map.jinja`
//! uses for its `defaults.yaml`), for a module of Salt's dialect. minijinja cannot parse
//! a tag it does not know, so each is rewritten, on its own line, into what Salt makes of
//! it: the file rendered as a template (with the context, as Salt's globals give it) and
//! its text parsed: `{% set d %}{% include "x.yaml" %}{% endset %}{% set d = d |
//! load_yaml %}`.

use std::borrow::Cow;
use std::sync::LazyLock;

use minijinja::{Error, Value};
use regex::Regex;

static IMPORT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(
        r"\{%([-+]?)\s*import_(yaml|json|text)\s+(.+?)\s+as\s+([A-Za-z_][A-Za-z0-9_]*)(?:\s+(?:with|without)\s+context)?\s*([-+]?)%\}",
    )
    .expect("a valid pattern")
});

/// `source` with Salt's import tags rewritten (borrowed when it has none).
pub(super) fn rewrite(source: &str) -> Cow<'_, str> {
    if !source.contains("import_") {
        return Cow::Borrowed(source);
    }
    IMPORT.replace_all(source, |c: &regex::Captures<'_>| {
        let (open, kind, expr, name, close) = (&c[1], &c[2], &c[3], &c[4], &c[5]);
        let parse = match kind {
            "text" => String::new(),
            kind => format!(" | load_{kind}({expr})"),
        };
        format!(
            "{{%{open} set {name} %}}{{% include {expr} %}}{{% endset %}}\
             {{% set {name} = {name}{parse} {close}%}}"
        )
    })
}

/// Salt's `load_yaml` of an imported file's text: YAML 1.1 as PyYAML reads it (`yes`
/// and `no` as a mapping's values are booleans), mappings in their order.
/// `from` names the file an import read, for its errors.
pub(super) fn load_yaml(text: &str, from: Option<&str>) -> Result<Value, Error> {
    match crate::yamlfile::parse("import_yaml", text) {
        Ok(p) => Ok(json(serde_json::Value::Object(p.values))),
        // Not a mapping (a list, a scalar): as it is.
        Err(_) => serde_norway::from_str::<serde_json::Value>(text)
            .map(json)
            .map_err(|e| {
                Error::new(
                    minijinja::ErrorKind::InvalidOperation,
                    format!("load_yaml{}: invalid YAML: {e}", named(from)),
                )
            }),
    }
}

/// ` of \`x.yaml\``, for an import's error.
fn named(from: Option<&str>) -> String {
    from.map_or(String::new(), |f| format!(" of `{f}`"))
}

fn json(v: serde_json::Value) -> Value {
    Value::from(minijinja::value::Serde(v))
}

/// Salt's `load_json`.
pub(super) fn load_json(text: &str, from: Option<&str>) -> Result<Value, Error> {
    serde_json::from_str::<serde_json::Value>(text)
        .map(json)
        .map_err(|e| {
            Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("load_json{}: invalid JSON: {e}", named(from)),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::rewrite;

    #[test]
    fn import_tags_are_rewritten_on_their_own_line() {
        assert_eq!(
            rewrite("a\n{%- import_yaml tplroot ~ \"/defaults.yaml\" as default_settings %}\nb"),
            "a\n{%- set default_settings %}{% include tplroot ~ \"/defaults.yaml\" %}{% endset %}\
             {% set default_settings = default_settings | load_yaml(tplroot ~ \"/defaults.yaml\") %}\nb"
        );
        assert_eq!(
            rewrite("{% import_json 'x.json' as j -%}"),
            "{% set j %}{% include 'x.json' %}{% endset %}{% set j = j | load_json('x.json') -%}"
        );
        assert_eq!(
            rewrite("{% import_text 'x' as t %}"),
            "{% set t %}{% include 'x' %}{% endset %}{% set t = t %}"
        );
        assert_eq!(
            rewrite("{% import_yaml 'x' as y with context %}"),
            "{% set y %}{% include 'x' %}{% endset %}{% set y = y | load_yaml('x') %}"
        );
        assert_eq!(rewrite("{% import 'x' as y %}"), "{% import 'x' as y %}");
    }
}
