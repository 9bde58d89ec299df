//! Output as Python prints values, which is what Jinja2 writes: `True`, `False`, `None`,
//! and lists and dictionaries in Python's `repr` (`['a', 1]`, `{'k': None}`), where
//! minijinja would write `true`, `none` and JSON-like text.

use std::fmt::Write;

use minijinja::value::ValueKind;
use minijinja::{Error, Output, State, Value};

/// The environment's formatter.
pub(super) fn format(out: &mut Output, state: &mut State, value: &Value) -> Result<(), Error> {
    match value.kind() {
        ValueKind::None | ValueKind::Bool | ValueKind::Seq | ValueKind::Map => {
            let mut s = String::new();
            repr(value, false, &mut s);
            out.write_str(&s).map_err(Error::from)
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// Python's `repr` of a string.
fn string(s: &str, out: &mut String) {
    let quote = if s.contains('\'') && !s.contains('"') {
        '"'
    } else {
        '\''
    };
    out.push(quote);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c == quote => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                let _ = write!(out, "\\x{:02x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push(quote);
}

/// Writes `value` as Python's `str` (top level) or `repr` (inside a collection).
pub(super) fn repr(value: &Value, nested: bool, out: &mut String) {
    match value.kind() {
        ValueKind::None | ValueKind::Undefined => out.push_str("None"),
        ValueKind::Bool => out.push_str(if value.is_true() { "True" } else { "False" }),
        ValueKind::String if nested => string(value.as_str().unwrap_or_default(), out),
        ValueKind::Seq | ValueKind::Iterable => {
            out.push('[');
            for (i, item) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(&item, true, out);
            }
            out.push(']');
        }
        ValueKind::Map => {
            out.push('{');
            for (i, key) in value.try_iter().into_iter().flatten().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(&key, true, out);
                out.push_str(": ");
                repr(&value.get_item(&key).unwrap_or_default(), true, out);
            }
            out.push('}');
        }
        _ => {
            let _ = write!(out, "{value}");
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::render;
    use serde_json::json;

    #[test]
    fn prints_as_jinja2_prints() {
        let ctx = json!({"t": true, "n": null, "l": ["a", 1, 2.5, null, false, "it's"], "d": {"k": "v", "e": {}}});
        assert_eq!(
            render("{{ t }} {{ not t }} {{ n }}", ctx.clone()),
            "True False None"
        );
        assert_eq!(
            render("{{ l }}", ctx.clone()),
            "['a', 1, 2.5, None, False, \"it's\"]"
        );
        assert_eq!(render("{{ d }}", ctx.clone()), "{'k': 'v', 'e': {}}");
        assert_eq!(render("{{ 'a\\nb' }}|{{ 3 }}|{{ 1.0 }}", ctx), "a\nb|3|1.0");
    }
}
