//! `to_yaml`, `to_nice_yaml` and `from_yaml`. The writer follows PyYAML's `yaml.dump` as
//! Ansible calls it: keys sorted, sequences in a mapping not indented (`-   item` with
//! `to_nice_yaml`'s indent of 4), a collection of scalars in flow style for `to_yaml`,
//! and a string quoted only when plain it would read back as something else.
//!
//! Lines past 80 columns fold at a single space, and flow collections wrap, as PyYAML
//! does. Not followed: the folding of double-quoted strings (those holding control
//! characters).

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

/// A character PyYAML counts as a line break.
fn line_break(c: char) -> bool {
    matches!(c, '\n' | '\u{85}' | '\u{2028}' | '\u{2029}')
}

/// A character PyYAML will write only escaped, in double quotes.
fn special(c: char) -> bool {
    let printable = c == '\n'
        || (' '..='~').contains(&c)
        || c == '\u{85}'
        || ('\u{A0}'..='\u{D7FF}').contains(&c)
        || ('\u{E000}'..='\u{FFFD}').contains(&c)
        || c >= '\u{10000}';
    !printable || c == '\u{FEFF}'
}

/// PyYAML's double-quoted scalar.
fn double_quoted(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        let short = match c {
            '\0' => Some('0'),
            '\x07' => Some('a'),
            '\x08' => Some('b'),
            '\t' => Some('t'),
            '\n' => Some('n'),
            '\x0b' => Some('v'),
            '\x0c' => Some('f'),
            '\r' => Some('r'),
            '\x1b' => Some('e'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            '\u{85}' => Some('N'),
            '\u{A0}' => Some('_'),
            '\u{2028}' => Some('L'),
            '\u{2029}' => Some('P'),
            _ => None,
        };
        let escaped = c == '"' || c == '\\' || special(c) || line_break(c);
        match (escaped, short) {
            (false, _) => out.push(c),
            (true, Some(e)) => {
                out.push('\\');
                out.push(e);
            }
            _ if (c as u32) <= 0xFF => out.push_str(&format!("\\x{:02X}", c as u32)),
            _ if (c as u32) <= 0xFFFF => out.push_str(&format!("\\u{:04X}", c as u32)),
            _ => out.push_str(&format!("\\U{:08X}", c as u32)),
        }
    }
    out.push('"');
}

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
    if s.contains(": ") || s.contains(" #") || s.chars().any(|c| line_break(c) || special(c)) {
        return false;
    }
    !(in_flow && (s.chars().any(|c| flow_ind(c) || c == '?') || s.contains(':')))
}

/// The column `out` ends at.
fn column(out: &str) -> usize {
    // Every line break starts a column 0, as PyYAML counts.
    let start = out
        .char_indices()
        .rev()
        .find(|&(_, c)| line_break(c))
        .map_or(0, |(i, c)| i + c.len_utf8());
    out[start..].chars().count()
}

/// PyYAML's line width: past it, a single space may become a line break.
const WIDTH: usize = 80;

/// Writes the words of `text`, breaking at a lone space once past [`WIDTH`] (PyYAML's
/// folding of plain and single-quoted scalars), the next line at column `indent`.
fn fold(text: &str, indent: usize, split: bool, quoted: bool, out: &mut String) {
    // The column is counted as the text is written: once per scalar, not per space.
    let mut col = column(out);
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != ' ' {
            out.push(chars[i]);
            col += 1;
            i += 1;
            continue;
        }
        let start = i;
        while i < chars.len() && chars[i] == ' ' {
            i += 1;
        }
        let lone = i - start == 1 && !(quoted && (start == 0 || i == chars.len()));
        if lone && split && col > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
            col = indent;
        } else {
            out.extend(&chars[start..i]);
            col += i - start;
        }
    }
}

/// Writes a scalar; `indent` is where a folded line goes on, `split` whether it may fold
/// (not a key).
fn scalar(v: &Json, in_flow: bool, indent: usize, split: bool, out: &mut String) {
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&match float(f).as_str() {
                "NaN" => ".nan".to_string(),
                "Infinity" => ".inf".to_string(),
                "-Infinity" => "-.inf".to_string(),
                // PyYAML: `repr(f).lower()`, with `.0` before an exponent that has no point.
                s if s.contains('e') && !s.contains('.') => {
                    s.to_lowercase().replacen('e', ".0e", 1)
                }
                s => s.to_lowercase(),
            }),
            _ => out.push_str(&n.to_string()),
        },
        Json::String(s) if plain(s, in_flow) => fold(s, indent, split, false, out),
        // Double quotes for what single quotes cannot hold.
        Json::String(s) if s.chars().any(special) => double_quoted(s, out),
        Json::String(s) => {
            out.push('\'');
            let text = s.replace('\'', "''");
            let mut rest = text.as_str();
            while !rest.is_empty() {
                let end = rest.find(line_break).unwrap_or(rest.len());
                fold(&rest[..end], indent, split, true, out);
                rest = &rest[end..];
                let breaks = rest.find(|c| !line_break(c)).unwrap_or(rest.len());
                if breaks > 0 {
                    // A `\n` in single quotes is written as an empty line; other breaks as
                    // themselves; the text goes on indented.
                    if rest.starts_with('\n') {
                        out.push('\n');
                    }
                    out.push_str(&rest[..breaks]);
                    out.push_str(&" ".repeat(indent));
                    rest = &rest[breaks..];
                }
            }
            out.push('\'');
        }
        Json::Array(_) => out.push_str("[]"),
        Json::Object(_) => out.push_str("{}"),
    }
}

/// Writes a collection in flow style; `indent` is the column its items wrap to once a
/// line is past [`WIDTH`].
fn flow_node(v: &Json, style: &Style, indent: usize, out: &mut String) {
    let inner = indent + style.indent;
    let next = |i: usize, out: &mut String| {
        if i > 0 {
            out.push(',');
        }
        if column(out) > WIDTH {
            out.push('\n');
            out.push_str(&" ".repeat(indent));
        } else if i > 0 {
            out.push(' ');
        }
    };
    let child = |x: &Json, out: &mut String| {
        if matches!(x, Json::Array(a) if !a.is_empty())
            || matches!(x, Json::Object(m) if !m.is_empty())
        {
            flow_node(x, style, inner, out);
        } else {
            scalar(x, true, inner, true, out);
        }
    };
    match v {
        Json::Array(a) if !a.is_empty() => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                next(i, out);
                child(x, out);
            }
            out.push(']');
        }
        Json::Object(m) if !m.is_empty() => {
            out.push('{');
            for (i, (k, x)) in entries(m, style).into_iter().enumerate() {
                next(i, out);
                scalar(&Json::String(k.clone()), true, inner, false, out);
                out.push_str(": ");
                child(x, out);
            }
            out.push('}');
        }
        _ => scalar(v, true, inner, true, out),
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
                scalar(&Json::String(k.clone()), false, indent, false, out);
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
                // A block collection starts at the item's column; anything else after
                // one space.
                if flow(x, style) {
                    out.push(' ');
                } else {
                    out.push_str(&" ".repeat(style.indent - 1));
                }
                item(x, style, indent + style.indent, out);
            }
        }
        // At the top, what follows a folded line is indented as in a collection.
        _ if is_scalar(v) && !v.is_array() && !v.is_object() => {
            scalar(v, false, indent.max(style.indent), true, out);
            out.push('\n');
        }
        _ => {
            flow_node(v, style, indent.max(style.indent), out);
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
            if v.is_array() || v.is_object() {
                flow_node(v, style, indent + style.indent, out);
            } else {
                scalar(v, false, indent + style.indent, true, out);
            }
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
            "empty: {}\nflag: true\nnothing: null\nserver:\n    names:\n    - a\n    - b\n    port: 80\nusers:\n-   name: x\n    uid: 1\n"
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

    /// Expected outputs made by PyYAML 6 (`yaml.dump`, as Ansible calls it).
    #[test]
    fn long_lines_fold_and_items_align_as_pyyaml_writes_them() {
        let long = "this is a fairly long description of a thing that goes on and on past the width of eighty columns for sure";
        let t = |src: &str, v: serde_json::Value| render(src, json!({ "v": v }));
        assert_eq!(
            t("{{ v | to_nice_yaml }}", json!({"desc": long, "k": 1})),
            "desc: this is a fairly long description of a thing that goes on and on past the width\n    of eighty columns for sure\nk: 1\n"
        );
        assert_eq!(
            t(
                "{{ v | to_nice_yaml(indent=2) }}",
                json!({"a": {"b": long}})
            ),
            "a:\n  b: this is a fairly long description of a thing that goes on and on past the width\n    of eighty columns for sure\n"
        );
        assert_eq!(
            t("{{ v | to_nice_yaml }}", json!([long, "short"])),
            "- this is a fairly long description of a thing that goes on and on past the width\n    of eighty columns for sure\n- short\n"
        );
        assert_eq!(
            t(
                "{{ v | to_nice_yaml }}",
                json!({"q": format!("it's: {long}")})
            ),
            "q: 'it''s: this is a fairly long description of a thing that goes on and on past the\n    width of eighty columns for sure'\n"
        );
        let forty: Vec<u32> = (0..40).collect();
        assert_eq!(
            t("{{ v | to_yaml }}", json!({"l": forty})),
            "l: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21,\n  22, 23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39]\n"
        );
        assert_eq!(
            t("{{ v | to_yaml }}", json!(forty)),
            "[0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,\n  23, 24, 25, 26, 27, 28, 29, 30, 31, 32, 33, 34, 35, 36, 37, 38, 39]\n"
        );
        for (v, two, four) in [
            (
                json!([["a", "b"], "c"]),
                "- - a\n  - b\n- c\n",
                "-   - a\n    - b\n- c\n",
            ),
            (
                json!([{"n": 1, "m": [1, 2]}]),
                "- m:\n  - 1\n  - 2\n  n: 1\n",
                "-   m:\n    - 1\n    - 2\n    n: 1\n",
            ),
            (
                json!({"k": [[1, 2], {"x": 1}]}),
                "k:\n- - 1\n  - 2\n- x: 1\n",
                "k:\n-   - 1\n    - 2\n-   x: 1\n",
            ),
            (
                json!([[], {}, null, "x"]),
                "- []\n- {}\n- null\n- x\n",
                "- []\n- {}\n- null\n- x\n",
            ),
        ] {
            assert_eq!(t("{{ v | to_nice_yaml(indent=2) }}", v.clone()), two, "{v}");
            assert_eq!(
                t("{{ v | to_nice_yaml(indent=4) }}", v.clone()),
                four,
                "{v}"
            );
        }
        assert_eq!(
            t(
                "{{ v | to_yaml }}",
                json!({"k": [[1, 2], {"x": 1}], "e": [], "s": "a b"})
            ),
            "e: []\nk:\n- [1, 2]\n- {x: 1}\ns: a b\n"
        );
    }
}
