//! Ansible's string encodings: `b64encode`, `b64decode` (UTF-8 text) and `quote`
//! (Python's `shlex.quote`, for a shell).

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use minijinja::Error;
use minijinja::value::Kwargs;

use super::fail;

/// `s | b64encode`.
pub(super) fn b64encode(text: String, kwargs: Kwargs) -> Result<String, Error> {
    let _ = kwargs.get::<Option<String>>("encoding")?;
    kwargs.assert_all_used()?;
    Ok(STANDARD.encode(text))
}

/// `s | b64decode`: the decoded bytes as UTF-8 text.
pub(super) fn b64decode(text: String, kwargs: Kwargs) -> Result<String, Error> {
    let _ = kwargs.get::<Option<String>>("encoding")?;
    kwargs.assert_all_used()?;
    let bytes = STANDARD
        .decode(text.trim())
        .map_err(|e| fail(format!("b64decode: invalid base64: {e}")))?;
    String::from_utf8(bytes).map_err(|_| fail("b64decode: the decoded bytes are not UTF-8 text"))
}

/// `s | quote`: the string as one shell word.
pub(super) fn quote(text: String) -> String {
    if text.is_empty() {
        return "''".into();
    }
    let safe = |c: char| c.is_ascii_alphanumeric() || "_@%+=:,./-".contains(c);
    if text.chars().all(safe) {
        return text;
    }
    format!("'{}'", text.replace('\'', "'\"'\"'"))
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, try_render};

    #[test]
    fn base64_round_trips_and_refuses_garbage() {
        assert_eq!(r("{{ 'Ansible' | b64encode }}"), "QW5zaWJsZQ==");
        assert_eq!(
            r("{{ 'QW5zaWJsZQ==' | ansible.builtin.b64decode }}"),
            "Ansible"
        );
        assert_eq!(r("{{ 'é' | b64encode | b64decode }}"), "é");
        assert!(try_render("{{ '%%' | b64decode }}", serde_json::json!({})).is_err());
    }

    #[test]
    fn quote_as_shlex() {
        assert_eq!(r("{{ 'abc/d-e.f' | quote }}"), "abc/d-e.f");
        assert_eq!(r("{{ '' | quote }}"), "''");
        assert_eq!(r("{{ 'a b' | quote }}"), "'a b'");
        assert_eq!(r("{{ \"it's\" | quote }}"), "'it'\"'\"'s'");
        assert_eq!(r("{{ '$HOME' | quote }}"), "'$HOME'");
    }
}
