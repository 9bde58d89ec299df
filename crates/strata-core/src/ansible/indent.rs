//! Jinja2's `indent`, which, unlike minijinja's, keeps the text's trailing newline (a
//! block indented into a file keeps its blank line) and indents as `str.splitlines`
//! splits. `blank` is given by name (`indent(2, blank=true)`).

use minijinja::value::Kwargs;
use minijinja::{Error, State, Value};

/// `s | indent(width=4, first=False, blank=False)`, as Jinja2 3.
pub(super) fn indent(
    state: &State,
    value: Value,
    width: Option<Value>,
    first: Option<bool>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    // minijinja passes at most five arguments: `blank` is by name only.
    let blank: Option<bool> = None;
    let width = match width.or(kwargs.get::<Option<Value>>("width")?) {
        // A string width is the indentation itself.
        Some(w) if w.as_str().is_some() => w.as_str().unwrap_or_default().to_string(),
        Some(w) => " ".repeat(usize::try_from(w)?),
        None => "    ".to_string(),
    };
    let first = first.or(kwargs.get("first")?).unwrap_or(false);
    let blank = blank.or(kwargs.get("blank")?).unwrap_or(false);
    kwargs.assert_all_used()?;
    let text = value.to_string();
    // Jinja2 appends a newline, then splits into lines: a trailing newline survives.
    let with_nl = format!("{text}\n");
    let lines: Vec<&str> = with_nl.lines().collect();
    state.consume_fuel(((width.len() + 1) * lines.len() / 64) as u64)?;
    let mut out = String::with_capacity(text.len() + width.len() * lines.len());
    for (i, line) in lines.iter().enumerate() {
        if i > 0 {
            out.push('\n');
            if blank || !line.is_empty() {
                out.push_str(&width);
            }
        }
        out.push_str(line);
    }
    if first {
        out.insert_str(0, &width);
    }
    Ok(if value.is_safe() {
        Value::from_safe_string(out)
    } else {
        Value::from(out)
    })
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::r;

    #[test]
    fn keeps_the_trailing_newline_as_jinja2() {
        assert_eq!(r("{{ 'a\\nb\\n' | indent(2) }}"), "a\n  b\n");
        assert_eq!(r("{{ 'a\\nb' | indent(2) }}"), "a\n  b");
        assert_eq!(r("{{ 'a\\n\\nb\\n' | indent }}"), "a\n\n    b\n");
        assert_eq!(r("{{ 'a\\nb' | indent(2, true) }}"), "  a\n  b");
        assert_eq!(
            r("{{ 'a\\n\\nb' | indent(width=2, blank=true) }}"),
            "a\n  \n  b"
        );
        assert_eq!(r("{{ 'a\\nb' | indent('> ') }}"), "a\n> b");
    }
}
