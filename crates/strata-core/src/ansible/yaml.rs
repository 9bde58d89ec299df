//! `to_yaml`, `to_nice_yaml` and `from_yaml`. The writer follows PyYAML's `yaml.dump` as
//! Ansible calls it: keys sorted, sequences in a mapping not indented (`-   item` with
//! `to_nice_yaml`'s indent of 4), a collection of scalars in flow style for `to_yaml`,
//! and a string quoted only when plain it would read back as something else.
//!
//! Not followed: PyYAML's folding of lines past 80 columns, and its multi-line layout of
//! long strings and flow collections.

use std::sync::LazyLock;

use minijinja::value::Kwargs;
use minijinja::{Error, Value};
use regex::Regex;
use serde_json::Value as Json;

use super::fail;
use super::json::{float, to_data};

/// How to write: `yaml.dump`'s options.
struct Style {
    indent: usize,
    /// `default_flow_style=None`: collections of scalars in flow style.
    flow_leaves: bool,
    sort_keys: bool,
}

fn is_scalar(v: &Json) -> bool {
    !matches!(v, Json::Array(a) if !a.is_empty()) && !matches!(v, Json::Object(m) if !m.is_empty())
}

fn entries<'a>(m: &'a serde_json::Map<String, Json>, style: &Style) -> Vec<(&'a String, &'a Json)> {
    let mut e: Vec<_> = m.iter().collect();
    if style.sort_keys {
        e.sort_by(|a, b| a.0.cmp(b.0));
    }
    e
}

/// Whether a collection is written in flow style.
fn flow(v: &Json, style: &Style) -> bool {
    match v {
        Json::Array(a) => {
            a.is_empty() || (style.flow_leaves && a.iter().all(|x| !x.is_array() && !x.is_object()))
        }
        Json::Object(m) => {
            m.is_empty()
                || (style.flow_leaves && m.values().all(|x| !x.is_array() && !x.is_object()))
        }
        _ => true,
    }
}

/// Strings that YAML 1.1 (PyYAML's resolver) would read as another type.
static IMPLICIT: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^(?:yes|Yes|YES|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF",
        r"|~|null|Null|NULL|=|<<",
        r"|[-+]?(?:0b[0-1_]+|0[0-7_]+|(?:0|[1-9][0-9_]*)|0x[0-9a-fA-F_]+|[1-9][0-9_]*(?::[0-5]?[0-9])+)",
        r"|[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+][0-9]+)?|\.[0-9_]+(?:[eE][-+][0-9]+)?",
        r"|[-+]?[0-9][0-9_]*(?::[0-5]?[0-9])+\.[0-9_]*|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
        r"|[0-9][0-9][0-9][0-9]-[0-9][0-9]?-[0-9][0-9]?",
        r"(?:(?:[Tt]|[ \t]+)[0-9][0-9]?:[0-9][0-9]:[0-9][0-9](?:\.[0-9]*)?",
        r"(?:[ \t]*(?:Z|[-+][0-9][0-9]?(?::[0-9][0-9])?))?)?)$"
    ))
    .expect("a valid pattern")
});

/// Whether `s` may be written plain (PyYAML's `analyze_scalar`, simplified).
fn plain(s: &str, in_flow: bool) -> bool {
    let Some(first) = s.chars().next() else {
        return false;
    };
    let second = s.chars().nth(1);
    let flow_ind = |c: char| ",[]{}".contains(c);
    if s.starts_with(' ') || s.ends_with(' ') || s.ends_with(':') || IMPLICIT.is_match(s) {
        return false;
    }
    if "#,[]{}&*!|>'\"%@`".contains(first)
        || ("?:-".contains(first) && second.is_none_or(|c| c == ' ' || (in_flow && flow_ind(c))))
    {
        return false;
    }
    if s.contains(": ")
        || s.contains(" #")
        || s.chars().any(|c| c == '\n' || c == '\t' || c.is_control())
    {
        return false;
    }
    !(in_flow && (s.chars().any(|c| flow_ind(c) || c == '?') || s.contains(':')))
}

fn scalar(v: &Json, in_flow: bool, indent: usize, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&match float(f).as_str() {
                "NaN" => ".nan".to_string(),
                "Infinity" => ".inf".to_string(),
                "-Infinity" => "-.inf".to_string(),
                s => s.to_lowercase(),
            }),
            _ => out.push_str(&n.to_string()),
        },
        Json::String(s) if plain(s, in_flow) => out.push_str(s),
        Json::String(s) if s.chars().any(|c| c.is_control() && c != '\n') => {
            // Double quotes for what single quotes cannot hold.
            out.push_str(&serde_json::to_string(s).unwrap_or_default());
        }
        Json::String(s) => {
            out.push('\'');
            let mut lines = s.split('\n').peekable();
            while let Some(line) = lines.next() {
                out.push_str(&line.replace('\'', "''"));
                if lines.peek().is_some() {
                    // A line break in a single-quoted scalar is written as an empty line.
                    out.push('\n');
                    out.push('\n');
                    out.push_str(&" ".repeat(indent));
                }
            }
            out.push('\'');
        }
        Json::Array(_) => out.push_str("[]"),
        Json::Object(_) => out.push_str("{}"),
    }
}

fn flow_node(v: &Json, style: &Style, indent: usize, out: &mut String) {
    match v {
        Json::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                flow_node(x, style, indent, out);
            }
            out.push(']');
        }
        Json::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in entries(m, style).into_iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                scalar(&Json::String(k.clone()), true, indent, out);
                out.push_str(": ");
                flow_node(x, style, indent, out);
            }
            out.push('}');
        }
        _ => scalar(v, true, indent, out),
    }
}

/// Writes `v` as the value after `key:`, `- ` or at the top; `indent` is the column of
/// the collection `v` belongs to.
fn block(v: &Json, style: &Style, indent: usize, out: &mut String) {
    match v {
        Json::Object(m) if !flow(v, style) => {
            let mut first = true;
            for (k, x) in entries(m, style) {
                if !first {
                    out.push_str(&" ".repeat(indent));
                }
                first = false;
                scalar(&Json::String(k.clone()), false, indent, out);
                out.push(':');
                value_after(x, style, indent, true, out);
            }
        }
        Json::Array(a) if !flow(v, style) => {
            let mut first = true;
            for x in a {
                if !first {
                    out.push_str(&" ".repeat(indent));
                }
                first = false;
                out.push('-');
                out.push_str(&" ".repeat(style.indent - 1));
                item(x, style, indent + style.indent, out);
            }
        }
        _ if is_scalar(v) && !v.is_array() && !v.is_object() => {
            scalar(v, false, indent, out);
            out.push('\n');
        }
        _ => {
            flow_node(v, style, indent, out);
            out.push('\n');
        }
    }
}

/// A sequence item: a collection starts on the dash's line.
fn item(v: &Json, style: &Style, indent: usize, out: &mut String) {
    block(v, style, indent, out);
}

/// The value of a mapping key at column `indent`.
fn value_after(v: &Json, style: &Style, indent: usize, _in_map: bool, out: &mut String) {
    match v {
        Json::Object(_) if !flow(v, style) => {
            out.push('\n');
            out.push_str(&" ".repeat(indent + style.indent));
            block(v, style, indent + style.indent, out);
        }
        // A sequence in a mapping is not indented.
        Json::Array(_) if !flow(v, style) => {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            block(v, style, indent, out);
        }
        _ => {
            out.push(' ');
            let mut s = String::new();
            if v.is_array() || v.is_object() {
                flow_node(v, style, indent + style.indent, &mut s);
            } else {
                scalar(v, false, indent + style.indent, &mut s);
            }
            out.push_str(&s);
            out.push('\n');
        }
    }
}

fn dump(value: &Value, kwargs: &Kwargs, indent: usize, flow_leaves: bool) -> Result<String, Error> {
    let style = Style {
        indent: kwargs
            .get::<Option<usize>>("indent")?
            .unwrap_or(indent)
            .max(2),
        flow_leaves: match kwargs.get::<Option<Value>>("default_flow_style")? {
            Some(v) if v.is_none() => true,
            Some(v) => v.is_true(),
            None => flow_leaves,
        },
        sort_keys: kwargs.get::<Option<bool>>("sort_keys")?.unwrap_or(true),
    };
    let _ = kwargs.get::<Option<bool>>("allow_unicode")?;
    let _ = kwargs.get::<Option<usize>>("width")?;
    kwargs.assert_all_used()?;
    let data = to_data(value)?;
    let mut out = String::new();
    block(&data, &style, 0, &mut out);
    if is_scalar(&data) && !data.is_array() && !data.is_object() {
        // A document that is a lone scalar ends with an explicit end marker.
        out.push_str("...\n");
    }
    Ok(out)
}

/// `x | to_yaml`: PyYAML's `yaml.dump(x, default_flow_style=None)`.
pub(super) fn to_yaml(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    dump(&value, &kwargs, 2, true)
}

/// `x | to_nice_yaml(indent=4)`: block style throughout.
pub(super) fn to_nice_yaml(
    value: Value,
    indent: Option<usize>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    dump(&value, &kwargs, indent.unwrap_or(4), false)
}

/// `s | from_yaml`.
pub(super) fn from_yaml(text: String) -> Result<Value, Error> {
    let data: Json =
        serde_norway::from_str(&text).map_err(|e| fail(format!("from_yaml: invalid YAML: {e}")))?;
    Ok(Value::from(minijinja::value::Serde(data)))
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, render};
    use serde_json::json;

    #[test]
    fn to_nice_yaml_as_pyyaml_writes_it() {
        let ctx = json!({"cfg": {"server": {"port": 80, "names": ["a", "b"]}, "users": [{"name": "x", "uid": 1}], "empty": {}, "flag": true, "nothing": null}});
        assert_eq!(
            render("{{ cfg | to_nice_yaml }}", ctx),
            "empty: {}\nflag: true\nnothing: null\nserver:\n    names:\n    -   a\n    -   b\n    port: 80\nusers:\n-   name: x\n    uid: 1\n"
        );
        assert_eq!(
            r("{{ {'b': [[1, 2]], 'a': 1} | to_nice_yaml(indent=2) }}"),
            "a: 1\nb:\n- - 1\n  - 2\n"
        );
    }

    #[test]
    fn to_yaml_puts_collections_of_scalars_in_flow_style() {
        assert_eq!(
            r("{{ {'b': [1, 2], 'a': {'x': 'y'}} | to_yaml }}"),
            "a: {x: y}\nb: [1, 2]\n"
        );
        assert_eq!(r("{{ {'a': 1} | ansible.builtin.to_yaml }}"), "{a: 1}\n");
        assert_eq!(r("{{ 'abc' | to_yaml }}"), "abc\n...\n");
        assert_eq!(
            r("{{ {'k': 'v', 'a': 1} | to_yaml(sort_keys=false) }}"),
            "{k: v, a: 1}\n"
        );
    }

    #[test]
    fn strings_are_quoted_only_where_plain_would_change_them() {
        let t = |s: &str| render("{{ {'k': v} | to_nice_yaml }}", json!({"v": s}));
        assert_eq!(t("plain text"), "k: plain text\n");
        for (s, out) in [
            ("yes", "'yes'"),
            ("off", "'off'"),
            ("123", "'123'"),
            ("1.5", "'1.5'"),
            ("0x1f", "'0x1f'"),
            ("null", "'null'"),
            ("~", "'~'"),
            ("", "''"),
            ("2024-01-02", "'2024-01-02'"),
            ("a: b", "'a: b'"),
            ("#x", "'#x'"),
            ("- x", "'- x'"),
            ("it's: x", "'it''s: x'"),
            (" lead", "' lead'"),
            ("*", "'*'"),
            ("{x}", "'{x}'"),
            ("a #b", "'a #b'"),
            ("/etc/x:y", "/etc/x:y"),
            ("-x", "-x"),
            ("1.2.3", "1.2.3"),
        ] {
            assert_eq!(t(s), format!("k: {out}\n"), "{s:?}");
        }
        assert_eq!(
            render("{{ v | to_yaml }}", json!({"v": ["a,b", "c"]})),
            "['a,b', c]\n"
        );
    }

    #[test]
    fn from_yaml_reads_keeping_order_and_null() {
        assert_eq!(
            r("{{ ('b: 1\\na: [x, ~]' | from_yaml).a[1] is none }}"),
            "True"
        );
        assert_eq!(r("{{ ('b: 1\\na: 2' | from_yaml) | list }}"), "['b', 'a']");
        assert!(
            crate::ansible::testing::try_render("{{ 'a: [' | from_yaml }}", json!({})).is_err()
        );
    }
}
