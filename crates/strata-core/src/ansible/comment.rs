//! Ansible's `comment` filter: text made into a comment block, `#` by default, in the
//! styles and with the options Ansible has (`style=`, `decoration=`, `prefix=`, …).

use minijinja::value::Kwargs;
use minijinja::{Error, State};

/// `text | comment(style="plain", **options)`, as Ansible's `comment` filter.
pub(super) fn comment(
    state: &State,
    text: String,
    style: Option<String>,
    kwargs: Kwargs,
) -> Result<String, Error> {
    let style = match kwargs.get::<Option<String>>("style")? {
        Some(s) => s,
        None => style.unwrap_or_else(|| "plain".into()),
    };
    let (beginning, style_decoration, end) = match style.as_str() {
        "plain" => ("", "# ", ""),
        "erlang" => ("", "% ", ""),
        "c" => ("", "// ", ""),
        "cblock" => ("/*", " * ", " */"),
        "xml" => ("<!--", " - ", "-->"),
        other => {
            return Err(super::fail(format!(
                "comment: unknown style `{other}` (plain, erlang, c, cblock, xml)"
            )));
        }
    };
    let opt = |name: &str, default: &str| -> Result<String, Error> {
        Ok(kwargs
            .get::<Option<String>>(name)?
            .unwrap_or_else(|| default.to_string()))
    };
    let count = |name: &str| -> Result<usize, Error> {
        Ok(kwargs.get::<Option<usize>>(name)?.unwrap_or(1))
    };
    // The decoration given (or the style's) trimmed is the default prefix and postfix.
    let around = opt("decoration", style_decoration)?;
    let around = around.trim_end();
    let newline = opt("newline", "\n")?;
    let beginning = opt("beginning", beginning)?;
    let prefix = opt("prefix", around)?;
    let prefix_count = count("prefix_count")?;
    let decoration = opt("decoration", style_decoration)?;
    let postfix = opt("postfix", around)?;
    let postfix_count = count("postfix_count")?;
    let end = opt("end", end)?;
    kwargs.assert_all_used()?;
    // The counts repeat text: paid for before it is made (issue 16's rule).
    let repeated = (prefix.len() + newline.len()).saturating_mul(prefix_count)
        + (postfix.len() + newline.len()).saturating_mul(postfix_count);
    state.consume_fuel((repeated / 64) as u64)?;

    let mut out = String::new();
    if !beginning.is_empty() {
        out.push_str(&beginning);
        out.push_str(&newline);
    }
    if !prefix.is_empty() {
        let one = if prefix == newline {
            newline.clone()
        } else {
            format!("{prefix}{newline}")
        };
        out.push_str(&one.repeat(prefix_count));
    }
    let body = format!(
        "{decoration}{}",
        text.replace(&newline, &format!("{newline}{decoration}"))
    );
    // A line holding only the decoration loses its trailing spaces.
    out.push_str(&body.replace(
        &format!("{decoration}{newline}"),
        &format!("{}{newline}", decoration.trim_end()),
    ));
    for _ in 0..postfix_count {
        out.push_str(&newline);
        out.push_str(&postfix);
    }
    if !end.is_empty() {
        out.push_str(&newline);
        out.push_str(&end);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, try_render};

    #[test]
    fn plain_is_a_hash_block_with_an_empty_line_around() {
        assert_eq!(
            r("{{ 'Ansible managed' | comment }}"),
            "#\n# Ansible managed\n#"
        );
        assert_eq!(
            r("{{ 'a\\n\\nb' | ansible.builtin.comment }}"),
            "#\n# a\n#\n# b\n#"
        );
    }

    #[test]
    fn styles_as_ansible_documents_them() {
        assert_eq!(r("{{ 'x' | comment('c') }}"), "//\n// x\n//");
        assert_eq!(r("{{ 'x' | comment('erlang') }}"), "%\n% x\n%");
        assert_eq!(r("{{ 'x' | comment('cblock') }}"), "/*\n *\n * x\n *\n */");
        assert_eq!(
            r("{{ 'x' | comment(style='xml') }}"),
            "<!--\n -\n - x\n -\n-->"
        );
    }

    #[test]
    fn options_replace_the_styles_parts() {
        assert_eq!(r("{{ 'x' | comment(decoration='; ') }}"), ";\n; x\n;");
        assert_eq!(
            r("{{ 'x' | comment(decoration='! ', prefix='', postfix='') }}"),
            "! x\n"
        );
        assert_eq!(
            r(
                "{{ 'x' | comment('plain', prefix='#######\\n#', postfix='#\\n#######\\n   #\\n#') }}"
            ),
            "#######\n#\n# x\n#\n#######\n   #\n#"
        );
        assert_eq!(
            r("{{ 'x' | comment(prefix_count=2, postfix_count=0) }}"),
            "#\n#\n# x"
        );
    }

    #[test]
    fn a_huge_count_runs_out_of_fuel_before_it_is_made() {
        let r = crate::render::Renderer::new();
        let ctx = minijinja::Value::from(());
        let err = r
            .render(
                "t.j2",
                "{{ 'x' | comment(prefix_count=100000000000) }}",
                &ctx,
            )
            .unwrap_err();
        assert!(
            err.message.starts_with("the template does more work"),
            "{}",
            err.message
        );
    }

    #[test]
    fn an_unknown_style_or_option_is_an_error() {
        let err = try_render("{{ 'x' | comment('lisp') }}", serde_json::json!({})).unwrap_err();
        assert!(err.contains("unknown style `lisp`"), "{err}");
        assert!(try_render("{{ 'x' | comment(colour='red') }}", serde_json::json!({})).is_err());
    }
}
