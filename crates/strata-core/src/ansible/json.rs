//! `to_json`, `to_nice_json` and `from_json`, writing JSON as Python's `json.dumps` does
//! (`", "` and `": "` separators, non-ASCII escaped, `sort_keys` and `indent` options).

use minijinja::value::Kwargs;
use minijinja::{Error, Value};
use serde_json::Value as Json;

use super::fail;

/// The template value as JSON data (undefined becomes null).
pub(super) fn to_data(value: &Value) -> Result<Json, Error> {
    serde_json::to_value(value).map_err(|e| fail(format!("cannot represent {value}: {e}")))
}

/// Python's `repr` of a float, as `json` and YAML write it.
pub(super) fn float(f: f64) -> String {
    if f.is_nan() {
        "NaN".into()
    } else if f.is_infinite() {
        if f > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        }
    } else if f.fract() == 0.0 && f.abs() < 1e16 {
        format!("{f:.1}")
    } else if f.abs() >= 1e16 || f.abs() < 1e-4 {
        let s = format!("{f:e}");
        let (m, e) = s.split_once('e').unwrap_or((&s, "0"));
        let e: i32 = e.parse().unwrap_or(0);
        format!("{m}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
    } else {
        f.to_string()
    }
}

fn string(s: &str, ascii: bool, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\x08' => out.push_str("\\b"),
            '\x0c' => out.push_str("\\f"),
            // Python escapes what is not printable ASCII (all but space to `~`).
            c if (c as u32) < 0x20 || (ascii && !(' '..='~').contains(&c)) => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// How to write: Python's `json.dumps` options.
struct Style {
    indent: Option<usize>,
    sort_keys: bool,
    ascii: bool,
}

fn write(v: &Json, style: &Style, level: usize, out: &mut String) {
    let (item_sep, newline) = match style.indent {
        Some(n) => (",", Some(n)),
        None => (", ", None),
    };
    let open = |out: &mut String, level: usize| {
        if let Some(n) = newline {
            out.push('\n');
            out.push_str(&" ".repeat(n * level));
        }
    };
    match v {
        Json::Null => out.push_str("null"),
        Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Json::Number(n) => match n.as_f64() {
            Some(f) if !n.is_i64() && !n.is_u64() => out.push_str(&float(f)),
            _ => out.push_str(&n.to_string()),
        },
        Json::String(s) => string(s, style.ascii, out),
        Json::Array(a) if a.is_empty() => out.push_str("[]"),
        Json::Array(a) => {
            out.push('[');
            for (i, x) in a.iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                open(out, level + 1);
                write(x, style, level + 1, out);
            }
            open(out, level);
            out.push(']');
        }
        Json::Object(m) if m.is_empty() => out.push_str("{}"),
        Json::Object(m) => {
            let mut entries: Vec<_> = m.iter().collect();
            if style.sort_keys {
                entries.sort_by(|a, b| a.0.cmp(b.0));
            }
            out.push('{');
            for (i, (k, x)) in entries.into_iter().enumerate() {
                if i > 0 {
                    out.push_str(item_sep);
                }
                open(out, level + 1);
                string(k, style.ascii, out);
                out.push_str(": ");
                write(x, style, level + 1, out);
            }
            open(out, level);
            out.push('}');
        }
    }
}

fn dumps(
    value: &Value,
    kwargs: &Kwargs,
    indent: Option<usize>,
    sort_keys: bool,
) -> Result<String, Error> {
    let style = Style {
        indent: kwargs.get::<Option<usize>>("indent")?.or(indent),
        sort_keys: kwargs
            .get::<Option<bool>>("sort_keys")?
            .unwrap_or(sort_keys),
        ascii: kwargs.get::<Option<bool>>("ensure_ascii")?.unwrap_or(true),
    };
    kwargs.assert_all_used()?;
    let mut out = String::new();
    write(&to_data(value)?, &style, 0, &mut out);
    Ok(out)
}

/// `x | to_json(indent=None, sort_keys=False, ensure_ascii=True)`.
pub(super) fn to_json(value: Value, kwargs: Kwargs) -> Result<String, Error> {
    dumps(&value, &kwargs, None, false)
}

/// `x | to_nice_json(indent=4)`: indented, keys sorted.
pub(super) fn to_nice_json(
    value: Value,
    indent: Option<usize>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    dumps(&value, &kwargs, Some(indent.unwrap_or(4)), true)
}

/// `s | from_json`.
pub(super) fn from_json(text: String) -> Result<Value, Error> {
    let data: Json =
        serde_json::from_str(&text).map_err(|e| fail(format!("from_json: invalid JSON: {e}")))?;
    Ok(Value::from(minijinja::value::Serde(data)))
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, render};
    use serde_json::json;

    #[test]
    fn to_json_writes_as_python_does() {
        let ctx = json!({"d": {"b": [1, 2.5, null, true], "a": "é\"\n"}, "f": 3.0});
        assert_eq!(
            render("{{ d | to_json }}", ctx.clone()),
            r#"{"b": [1, 2.5, null, true], "a": "\u00e9\"\n"}"#
        );
        assert_eq!(render("{{ f | to_json }}", ctx.clone()), "3.0");
        assert_eq!(
            render("{{ d | to_json(sort_keys=true, ensure_ascii=false) }}", ctx),
            "{\"a\": \"é\\\"\\n\", \"b\": [1, 2.5, null, true]}"
        );
        assert_eq!(
            r("{{ {} | to_json }}{{ [] | ansible.builtin.to_json }}"),
            "{}[]"
        );
    }

    #[test]
    fn to_nice_json_indents_and_sorts() {
        assert_eq!(
            r("{{ {'z': [1, {'y': 2}], 'a': {}} | to_nice_json }}"),
            "{\n    \"a\": {},\n    \"z\": [\n        1,\n        {\n            \"y\": 2\n        }\n    ]\n}"
        );
        assert_eq!(
            r("{{ {'b': 1, 'a': 2} | to_nice_json(indent=2) }}"),
            "{\n  \"a\": 2,\n  \"b\": 1\n}"
        );
    }

    #[test]
    fn from_json_reads_and_refuses_bad_text() {
        assert_eq!(r("{{ ('{\"a\": [1, 2]}' | from_json).a[1] }}"), "2");
        let err =
            crate::ansible::testing::try_render("{{ '{' | from_json }}", json!({})).unwrap_err();
        assert!(err.contains("invalid JSON"), "{err}");
    }
}
