//! Salt's way of reading parameters in a template: `salt['pillar.get']('a:b', default)`
//! (and `config.get`) reads the parameter `a.b`, so that a formula's templates render
//! with the site's parameters as their pillar.

use minijinja::value::Kwargs;
use minijinja::{Error, State, Value};

/// `salt['pillar.get'](key, default='', delimiter=':')`.
fn pillar_get(
    state: &State,
    key: String,
    default: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from("")),
    };
    let delimiter = kwargs
        .get::<Option<String>>("delimiter")?
        .unwrap_or(":".into());
    kwargs.assert_all_used()?;
    let mut parts = key.split(delimiter.as_str());
    let Some(mut value) = parts.next().and_then(|first| state.lookup(first)) else {
        return Ok(default);
    };
    for part in parts {
        value = match value.get_attr(part) {
            Ok(v) if !v.is_undefined() => v,
            _ => return Ok(default),
        };
    }
    Ok(if value.is_undefined() { default } else { value })
}

/// The `salt` global: its execution functions that read parameters.
pub(super) fn global() -> Value {
    Value::from_pairs([
        ("pillar.get", Value::from_function(pillar_get)),
        ("config.get", Value::from_function(pillar_get)),
    ])
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::render;
    use serde_json::json;

    #[test]
    fn pillar_get_reads_a_parameter_by_its_colon_path() {
        let ctx = json!({"nginx": {"server": {"port": 8080, "names": ["a"]}}});
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(t("{{ salt['pillar.get']('nginx:server:port') }}"), "8080");
        assert_eq!(t("{{ salt['pillar.get']('nginx:server:nope', 80) }}"), "80");
        assert_eq!(t("{{ salt['pillar.get']('absent') }}|"), "|");
        assert_eq!(t("{{ salt['pillar.get']('absent:x', default={}) }}"), "{}");
        assert_eq!(
            t("{{ salt['config.get']('nginx/server/names', delimiter='/') }}"),
            "['a']"
        );
        assert_eq!(
            t("{% for k, v in salt['pillar.get']('nginx', {}).items() %}{{ k }}{% endfor %}"),
            "server"
        );
    }
}
