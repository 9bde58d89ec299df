//! Ansible's `ternary`, `mandatory` and `bool` filters, and its `any` and `all` tests.

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

/// `x | bool`, as Ansible reads a word: `yes`, `on`, `1`, `true` (any case) and the
/// number 1 (or 1.0) are true, anything else false; a boolean or none is itself. (minijinja's
/// `bool` is the value's truth: `"no" | bool` would be true.)
pub(super) fn to_bool(value: Value) -> Value {
    if value.is_none() || value.kind() == minijinja::value::ValueKind::Bool {
        return value;
    }
    let truth = match value.as_str() {
        Some(s) => matches!(s.to_lowercase().as_str(), "yes" | "on" | "1" | "true"),
        // Python: `1.0 == 1`.
        None => f64::try_from(value).is_ok_and(|f| f == 1.0),
    };
    Value::from(truth)
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

/// `x is any` and `x is all`: Python's `any(x)` and `all(x)`, which Ansible registers as
/// tests: whether some (every) item of a list, key of a mapping or character of a string
/// is true. Not iterable is an error, as in Python.
fn truths(value: &Value, test: &str) -> Result<Vec<bool>, Error> {
    let items = value.try_iter().map_err(|_| {
        super::fail(format!(
            "`{test}` needs something to iterate over, not {}",
            value.kind()
        ))
    })?;
    Ok(items.map(|v| v.is_true()).collect())
}

/// `x is any`.
pub(super) fn is_any(value: &Value) -> Result<bool, Error> {
    Ok(truths(value, "any")?.into_iter().any(|t| t))
}

/// `x is all`.
pub(super) fn is_all(value: &Value) -> Result<bool, Error> {
    Ok(truths(value, "all")?.into_iter().all(|t| t))
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
    fn bool_reads_words_as_ansible_does() {
        let t = |v: serde_json::Value| render("{{ v | bool }}", json!({ "v": v }));
        for yes in [
            json!("yes"),
            json!("On"),
            json!("1"),
            json!("TRUE"),
            json!(1),
            json!(1.0),
            json!(true),
        ] {
            assert_eq!(t(yes.clone()), "True", "{yes}");
        }
        for no in [
            json!("no"),
            json!("off"),
            json!("0"),
            json!("false"),
            json!(""),
            json!("y"),
            json!(2),
            json!(0),
            json!(false),
            json!(1.5),
        ] {
            assert_eq!(t(no.clone()), "False", "{no}");
        }
        assert_eq!(t(json!(null)), "None");
        assert_eq!(
            render(
                "{% if v | ansible.builtin.bool %}on{% else %}off{% endif %}",
                json!({"v": "no"})
            ),
            "off"
        );
    }

    /// Python's `any()` and `all()`, including the empty cases (`any([])` is false,
    /// `all([])` true) and a mapping's keys.
    #[test]
    fn any_and_all_are_pythons() {
        let ctx = json!({"l": [0, "", 3], "z": [0, false, null, ""], "e": [], "d": {"a": 1},
                         "ok": [1, "x", [0]], "s": "ab"});
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(t("{{ l is any }} {{ l is all }}"), "True False");
        assert_eq!(
            t("{{ z is any }} {{ z is ansible.builtin.all }}"),
            "False False"
        );
        assert_eq!(t("{{ e is any }} {{ e is all }}"), "False True");
        assert_eq!(
            t("{{ ok is all }} {{ d is any }} {{ s is all }}"),
            "True True True"
        );
        assert_eq!(t("{{ '' is any }} {{ '' is all }}"), "False True");
        assert_eq!(
            t("{{ [[], [1]] | map('length') | select('gt', 0) | list is any }}"),
            "True"
        );
        let err = try_render("{{ 3 is any }}", json!({})).unwrap_err();
        assert!(
            err.contains("`any` needs something to iterate over"),
            "{err}"
        );
    }

    #[test]
    fn mandatory_passes_a_value_and_refuses_an_undefined_one() {
        assert_eq!(render("{{ a | mandatory }}", json!({"a": 0})), "0");
        assert_eq!(render("{{ a | mandatory }}", json!({"a": null})), "None");
        let err = try_render("{{ b | mandatory('b is needed') }}", json!({})).unwrap_err();
        assert!(err.contains("b"), "{err}");
    }
}
