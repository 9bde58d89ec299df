//! `string` and `join` as Jinja2 has them: through Python's `str`, so that a boolean is
//! `True` and none is `None` (minijinja writes `true` and `none`).

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, State, Value};

use super::repr::repr;

/// Python's `str(value)`.
pub(super) fn python_str(value: &Value) -> String {
    match value.kind() {
        ValueKind::String => value.as_str().unwrap_or_default().to_string(),
        _ => {
            let mut s = String::new();
            repr(value, false, &mut s);
            s
        }
    }
}

/// `x | string`.
pub(super) fn string(value: Value) -> Value {
    match value.kind() {
        ValueKind::String => value,
        _ => Value::from(python_str(&value)),
    }
}

/// `list | join(d='', attribute=None)`.
pub(super) fn join(
    state: &State,
    value: Value,
    sep: Option<String>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let sep = match sep {
        Some(s) => s,
        None => kwargs.get::<Option<String>>("d")?.unwrap_or_default(),
    };
    let attribute = kwargs.get::<Option<String>>("attribute")?;
    kwargs.assert_all_used()?;
    if value.is_undefined() || value.is_none() {
        return Ok(Value::from(""));
    }
    if let Some(s) = value.as_str() {
        // A string joins its characters.
        let chars: Vec<String> = s.chars().map(String::from).collect();
        state.consume_fuel(((s.len() + sep.len() * chars.len()) / 64) as u64)?;
        return Ok(Value::from(chars.join(&sep)));
    }
    let mut out = String::new();
    for (i, item) in value.try_iter()?.enumerate() {
        if i > 0 {
            out.push_str(&sep);
        }
        let item = match &attribute {
            Some(a) => {
                // `attribute="a.b"` or `attribute="0"` walks, as Jinja2's does.
                let mut v = item;
                for part in a.split('.') {
                    v = match part.parse::<i64>() {
                        Ok(n) => v.get_item(&Value::from(n))?,
                        Err(_) => v.get_attr(part)?,
                    };
                }
                v
            }
            None => item,
        };
        let before = out.len();
        out.push_str(&python_str(&item));
        state.consume_fuel(((out.len() - before + sep.len()) / 64) as u64)?;
    }
    Ok(Value::from(out))
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, render};
    use serde_json::json;

    #[test]
    fn string_and_join_write_as_python() {
        let ctx = json!({"l": [true, null, 1, "a", 2.5], "u": [{"n": "x"}, {"n": "y"}]});
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(t("{{ l | join(',') }}"), "True,None,1,a,2.5");
        assert_eq!(t("{{ l | join }}"), "TrueNone1a2.5");
        assert_eq!(t("{{ u | join(', ', attribute='n') }}"), "x, y");
        assert_eq!(t("{{ [[1, 'a']] | join }}"), "[1, 'a']");
        assert_eq!(r("{{ 'abc' | join('-') }}"), "a-b-c");
        assert_eq!(
            t("{{ (true | string) ~ '|' ~ (none | string) ~ '|' ~ ([1] | string) }}"),
            "True|None|[1]"
        );
        assert_eq!(r("{{ 'x' | string }}"), "x");
    }
}
