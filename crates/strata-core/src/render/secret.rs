//! `secret("NAME")` in templates, and what marks a render that called it: its output is
//! sensitive, and its errors may not quote what minijinja says of the value.

use std::cell::Cell;

use minijinja::ErrorKind;

use crate::secret::SecretSource;

thread_local! {
    /// Set when a template being rendered on this thread called `secret()`.
    pub(super) static READ_SECRET: Cell<bool> = const { Cell::new(false) };
}

/// What `secret()`'s own errors start with (they name the secret, never a value).
pub(super) const SECRET_ERROR: &str = "strata secret: ";

/// `secret("NAME")`: the secret's value from the compile's source.
pub(super) fn secret(
    source: Option<&dyn SecretSource>,
    name: &str,
) -> Result<String, minijinja::Error> {
    READ_SECRET.with(|r| r.set(true));
    let fail = |m: String| {
        minijinja::Error::new(ErrorKind::InvalidOperation, format!("{SECRET_ERROR}{m}"))
    };
    if !crate::valid_secret_name(name) {
        return Err(fail(format!(
            "`{name}` is not a secret's name (letters, digits and `_`, starting with a letter)"
        )));
    }
    let Some(source) = source else {
        return Err(fail(format!(
            "secret `{name}` cannot be read here: this compile has no secrets"
        )));
    };
    source
        .secret(name)
        .map(|v| v.expose().to_string())
        .map_err(fail)
}

/// The message of an error in a template that read a secret: what minijinja says of a
/// failed filter or operation may quote the value, so only the kind of error is kept,
/// unless the message is one strata wrote without any value (undefined variables quote
/// the template's text, secret() names the secret, limits name themselves).
pub(super) fn hide_details(message: &str) -> String {
    let safe = [
        "undefined variable",
        "template syntax error",
        "secret(",
        "the template ",
    ];
    if safe.iter().any(|s| message.starts_with(s)) {
        return message.to_string();
    }
    let kind = message.split(':').next().unwrap_or(message);
    format!("{kind} (details not shown: this template reads a secret)")
}
