//! A template's whitespace rules: Jinja2's options as Ansible and Salt set them,
//! Ansible's `#jinja2:` first line, and Ansible's padding of final newlines.

/// Jinja2's whitespace options.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Whitespace {
    pub(super) trim_blocks: bool,
    pub(super) lstrip_blocks: bool,
    pub(super) keep_trailing_newline: bool,
}

impl Whitespace {
    /// As Ansible renders templates: a block tag's own newline is dropped, and Jinja2
    /// drops the template's final newline (Ansible then pads the output, see
    /// [`pad_newlines`]).
    pub(super) const ANSIBLE: Whitespace = Whitespace {
        trim_blocks: true,
        lstrip_blocks: false,
        keep_trailing_newline: false,
    };

    pub(super) fn index(self) -> usize {
        usize::from(self.trim_blocks)
            | usize::from(self.lstrip_blocks) << 1
            | usize::from(self.keep_trailing_newline) << 2
    }

    pub(super) fn syntax(self) -> minijinja::syntax::SyntaxConfig {
        minijinja::syntax::SyntaxConfig::builder()
            .trim_blocks(self.trim_blocks)
            .lstrip_blocks(self.lstrip_blocks)
            .keep_trailing_newline(self.keep_trailing_newline)
            .build()
            .expect("the default delimiters are valid")
    }
}

/// Whose Jinja2 a template is written for. The filters, tests and methods are the same;
/// the whitespace rules are not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Dialect {
    /// Ansible's `template` module: trim_blocks, a `#jinja2:` first line obeyed, the
    /// output padded to the template's count of final newlines.
    #[default]
    Ansible,
    /// Salt's `file.managed` with `template: jinja` and its default options: no
    /// trim_blocks or lstrip_blocks, no `#jinja2:` line (it is text), and one newline
    /// appended when the template ends in one (Jinja2 drops it; Salt adds it back
    /// whatever the output ends with).
    Salt,
}

impl Whitespace {
    /// Salt's defaults (`jinja_env` unset): Jinja2's own.
    pub(super) const SALT: Whitespace = Whitespace {
        trim_blocks: false,
        lstrip_blocks: false,
        keep_trailing_newline: false,
    };
}

/// The prefix of Ansible's first-line override of the environment's options.
const OVERRIDE: &str = "#jinja2:";

/// Splits a leading `#jinja2: trim_blocks: False, lstrip_blocks: True` line off
/// `source`, as Ansible does: the options it sets, and the template without that line.
pub(super) fn header(source: &str) -> Result<(Whitespace, &str), String> {
    let Some(rest) = source.strip_prefix(OVERRIDE) else {
        return Ok((Whitespace::ANSIBLE, source));
    };
    let (line, body) = rest.split_once('\n').unwrap_or((rest, ""));
    let mut ws = Whitespace::ANSIBLE;
    for pair in line.trim_end_matches('\r').split(',') {
        let Some((key, value)) = pair.split_once(':') else {
            return Err(format!(
                "`#jinja2:` expects `option: value` pairs separated by commas, not `{}`",
                pair.trim()
            ));
        };
        let slot = match key.trim() {
            "trim_blocks" => &mut ws.trim_blocks,
            "lstrip_blocks" => &mut ws.lstrip_blocks,
            "keep_trailing_newline" => &mut ws.keep_trailing_newline,
            other => {
                return Err(format!(
                    "`#jinja2:` option `{other}` is not supported (trim_blocks, lstrip_blocks, \
                     keep_trailing_newline)"
                ));
            }
        };
        *slot = match value.trim() {
            "True" => true,
            "False" => false,
            other => {
                return Err(format!(
                    "`#jinja2:` option `{}` must be True or False, not `{other}`",
                    key.trim()
                ));
            }
        };
    }
    Ok((ws, body))
}

/// Ansible's `preserve_trailing_newlines`: the output ends in at least as many newlines
/// as the template does. Jinja2 drops a template's final newline, and Ansible adds back
/// only what the output lacks: a template ending in `{{ x | to_nice_yaml }}` and a
/// newline ends in the YAML's own newline, not in two (keeping the template's newline
/// instead, as `keep_trailing_newline` would, writes one more).
pub(super) fn pad_newlines(template: &str, out: &mut String) {
    let trailing = |s: &str| s.len() - s.trim_end_matches('\n').len();
    let (want, have) = (trailing(template), trailing(out));
    if want > have {
        out.extend(std::iter::repeat_n('\n', want - have));
    }
}
