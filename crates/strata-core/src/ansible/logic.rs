//! Ansible's `ternary` and `mandatory` filters.

use minijinja::{Error, Value};

/// `cond | ternary(if_true, if_false, if_none)`: `if_none` when the value is none and it
/// is given, else by the value's truth.
pub(super) fn ternary(
    value: &Value,
    if_true: Value,
    if_false: Value,
    if_none: Option<Value>,
) -> Value {
    match if_none {
        Some(none) if value.is_none() && !none.is_none() => none,
        _ if value.is_true() => if_true,
        _ => if_false,
    }
}

/// `x | mandatory(msg)`: the value, or an error when it is undefined.
pub(super) fn mandatory(value: Value, msg: Option<String>) -> Result<Value, Error> {
    if value.is_undefined() {
        // An undefined error: the template's error then names the expression.
        return Err(Error::new(
            minijinja::ErrorKind::UndefinedError,
            format!(
                "{}{}",
                super::MANDATORY,
                msg.as_deref().unwrap_or("Mandatory variable not defined.")
            ),
        ));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{render, try_render};
    use serde_json::json;

    #[test]
    fn ternary_picks_by_truth_and_none() {
        let ctx = json!({"t": true, "f": false, "n": null, "e": "", "l": [1]});
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(t("{{ t | ternary('yes', 'no') }}"), "yes");
        assert_eq!(t("{{ f | ternary('yes', 'no') }}"), "no");
        assert_eq!(t("{{ e | ternary('yes', 'no') }}"), "no");
        assert_eq!(t("{{ l | ansible.builtin.ternary('yes', 'no') }}"), "yes");
        // None without a third choice is false; with one, that one.
        assert_eq!(t("{{ n | ternary('yes', 'no') }}"), "no");
        assert_eq!(t("{{ n | ternary('yes', 'no', 'unset') }}"), "unset");
        assert_eq!(t("{{ f | ternary('yes', 'no', 'unset') }}"), "no");
        assert_eq!(t("{{ (1 > 2) | ternary(1, 2) + 1 }}"), "3");
    }

    #[test]
    fn mandatory_passes_a_value_and_refuses_an_undefined_one() {
        assert_eq!(render("{{ a | mandatory }}", json!({"a": 0})), "0");
        assert_eq!(render("{{ a | mandatory }}", json!({"a": null})), "None");
        let err = try_render("{{ b | mandatory('b is needed') }}", json!({})).unwrap_err();
        assert!(err.contains("b"), "{err}");
    }
}
