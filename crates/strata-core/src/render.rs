//! Jinja2 templates through minijinja, strict about undefined variables.

use minijinja::{Environment, ErrorKind, UndefinedBehavior};

use crate::error::SiteError;

/// One environment for all templates of a compile.
pub(crate) struct Renderer {
    env: Environment<'static>,
}

impl std::fmt::Debug for Renderer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Renderer")
    }
}

impl Renderer {
    pub fn new() -> Renderer {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        // As Ansible renders templates: a block tag's own newline is dropped, and the
        // file's final newline is kept.
        let syntax = minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(true)
            .keep_trailing_newline(true)
            .build()
            .expect("the default delimiters are valid");
        env.set_syntax(syntax);
        Renderer { env }
    }

    /// Parses and renders a template; `name` is its site-relative path. The compiled
    /// template is not kept: a site of thousands of templates stays small in memory.
    pub fn render(
        &self,
        name: &str,
        source: &str,
        ctx: &minijinja::Value,
    ) -> Result<String, SiteError> {
        let mut out = self
            .env
            .render_named_str(name, source, ctx)
            .map_err(|e| to_site_error(name, source, &e))?;
        // The output grew by doubling: thousands of rendered files are kept until written.
        out.shrink_to_fit();
        Ok(out)
    }
}

fn to_site_error(name: &str, source: &str, e: &minijinja::Error) -> SiteError {
    let mut err = SiteError::in_file(name, describe(source, e));
    if let Some(line) = e.line() {
        let col = e
            .range()
            .map(|r| {
                let before = &source[..r.start.min(source.len())];
                r.start - before.rfind('\n').map_or(0, |i| i + 1) + 1
            })
            .unwrap_or(1);
        err = err.at(line, col);
    }
    err
}

fn describe(source: &str, e: &minijinja::Error) -> String {
    let expr = e.range().and_then(|r| source.get(r)).map(str::trim);
    match (e.kind(), expr) {
        (ErrorKind::UndefinedError, Some(expr)) => format!("undefined variable `{expr}`"),
        (ErrorKind::SyntaxError, _) => {
            format!(
                "template syntax error: {}",
                e.detail().unwrap_or("invalid syntax")
            )
        }
        (kind, _) => match e.detail() {
            Some(d) => format!("{kind}: {d}"),
            None => kind.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_undefined_variable_is_named_with_its_line() {
        let r = Renderer::new();
        let ctx = minijinja::Value::from(minijinja::value::Serde(
            serde_json::json!({"nginx": {"port": 1}}),
        ));
        let err = r
            .render("t.j2", "a\nport={{ nginx.prt }}\n", &ctx)
            .unwrap_err();
        assert_eq!(err.line, Some(2));
        assert_eq!(err.message, "undefined variable `nginx.prt`");
    }

    #[test]
    fn a_syntax_error_is_located() {
        let r = Renderer::new();
        let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({})));
        let err = r.render("t.j2", "ok\n{% if %}\n", &ctx).unwrap_err();
        assert_eq!(err.file.as_deref(), Some("t.j2"));
        assert_eq!(err.line, Some(2));
        assert!(
            err.message.starts_with("template syntax error"),
            "{}",
            err.message
        );
    }

    #[test]
    fn keeps_the_trailing_newline() {
        let r = Renderer::new();
        let ctx = minijinja::Value::from(minijinja::value::Serde(serde_json::json!({"a": 1})));
        assert_eq!(r.render("t.j2", "x={{ a }}\n", &ctx).unwrap(), "x=1\n");
    }
}
