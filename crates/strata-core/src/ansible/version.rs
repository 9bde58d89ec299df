//! Ansible's `version` test (`version_compare`): `x is version('2.9', '>=')`, with every
//! operator Ansible names and its three kinds of version: loose (the default, Python's
//! `LooseVersion`), strict (`strict=True` or `version_type='strict'`) and semantic
//! (`version_type='semver'`).

use std::cmp::Ordering;
use std::sync::LazyLock;

use minijinja::value::Kwargs;
use minijinja::{Error, Value};
use regex::Regex;

use super::fail;

/// A component of a loose version: a number, or any other run of text.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Num(u128),
    Text(String),
}

fn loose(v: &str) -> Vec<Part> {
    static SPLIT: LazyLock<Regex> =
        LazyLock::new(|| Regex::new(r"\d+|[a-z]+|\.").expect("a valid pattern"));
    let mut out = Vec::new();
    let mut last = 0;
    let mut push = |s: &str| {
        if !s.is_empty() && s != "." {
            out.push(match s.parse() {
                Ok(n) if s.bytes().all(|b| b.is_ascii_digit()) => Part::Num(n),
                _ => Part::Text(s.to_string()),
            });
        }
    };
    for m in SPLIT.find_iter(v) {
        push(&v[last..m.start()]);
        push(m.as_str());
        last = m.end();
    }
    push(&v[last..]);
    out
}

/// Python's list comparison of loose versions; a number against text cannot be ordered.
fn cmp_loose(a: &[Part], b: &[Part]) -> Result<Ordering, String> {
    for (x, y) in a.iter().zip(b) {
        let o = match (x, y) {
            (Part::Num(x), Part::Num(y)) => x.cmp(y),
            (Part::Text(x), Part::Text(y)) => x.cmp(y),
            _ => {
                return Err("'<' not supported between instances of 'int' and 'str'".into());
            }
        };
        if o != Ordering::Equal {
            return Ok(o);
        }
    }
    Ok(a.len().cmp(&b.len()))
}

/// `(major, minor, patch, pre)` of a strict version; no pre-release sorts last.
/// A strict version: major, minor, patch and the pre-release (`a1`, `b2`).
type Strict = (u64, u64, u64, Option<(char, u64)>);

fn strict(v: &str) -> Result<Strict, String> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^(\d+)\.(\d+)(?:\.(\d+))?(?:([ab])(\d+))?$").expect("a valid pattern")
    });
    let c = RE
        .captures(v)
        .ok_or_else(|| format!("invalid version number '{v}'"))?;
    let n = |i: usize| c.get(i).map_or(Ok(0), |m| m.as_str().parse::<u64>());
    let pre = match c.get(4) {
        Some(l) => Some((
            l.as_str().chars().next().unwrap_or('a'),
            n(5).map_err(|e| e.to_string())?,
        )),
        None => None,
    };
    Ok((
        n(1).map_err(|e| e.to_string())?,
        n(2).map_err(|e| e.to_string())?,
        n(3).map_err(|e| e.to_string())?,
        pre,
    ))
}

fn cmp_strict(a: &str, b: &str) -> Result<Ordering, String> {
    let (a, b) = (strict(a)?, strict(b)?);
    Ok((a.0, a.1, a.2)
        .cmp(&(b.0, b.1, b.2))
        .then(match (a.3, b.3) {
            (None, None) => Ordering::Equal,
            (None, Some(_)) => Ordering::Greater,
            (Some(_), None) => Ordering::Less,
            (Some(x), Some(y)) => x.cmp(&y),
        }))
}

fn semver(v: &str) -> Result<(Vec<u64>, Vec<&str>), String> {
    static RE: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(concat!(
            r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)",
            r"(?:-((?:0|[1-9]\d*|\d*[a-zA-Z-][a-zA-Z0-9-]*)(?:\.(?:0|[1-9]\d*|\d*[a-zA-Z-][a-zA-Z0-9-]*))*))?",
            r"(?:\+([0-9a-zA-Z-]+(?:\.[0-9a-zA-Z-]+)*))?$"
        ))
        .expect("a valid pattern")
    });
    let c = RE
        .captures(v)
        .ok_or_else(|| format!("invalid semantic version '{v}'"))?;
    let core = (1..=3)
        .map(|i| c[i].parse::<u64>().map_err(|e| e.to_string()))
        .collect::<Result<_, _>>()?;
    let pre = c
        .get(4)
        .map_or(Vec::new(), |m| m.as_str().split('.').collect());
    Ok((core, pre))
}

fn cmp_semver(a: &str, b: &str) -> Result<Ordering, String> {
    let ((ac, ap), (bc, bp)) = (semver(a)?, semver(b)?);
    let pre = |x: &[&str], y: &[&str]| -> Ordering {
        match (x.is_empty(), y.is_empty()) {
            (true, true) => return Ordering::Equal,
            (true, false) => return Ordering::Greater,
            (false, true) => return Ordering::Less,
            _ => {}
        }
        for (p, q) in x.iter().zip(y) {
            let o = match (p.parse::<u64>(), q.parse::<u64>()) {
                (Ok(p), Ok(q)) => p.cmp(&q),
                (Ok(_), Err(_)) => Ordering::Less,
                (Err(_), Ok(_)) => Ordering::Greater,
                _ => p.cmp(q),
            };
            if o != Ordering::Equal {
                return o;
            }
        }
        x.len().cmp(&y.len())
    };
    Ok(ac.cmp(&bc).then_with(|| pre(&ap, &bp)))
}

/// `value is version(other, operator='eq', strict=False, version_type=None)`.
pub(super) fn version(
    value: Value,
    other: Value,
    operator: Option<String>,
    strict_arg: Option<bool>,
    kwargs: Kwargs,
) -> Result<bool, Error> {
    let operator = match operator {
        Some(o) => o,
        None => kwargs
            .get::<Option<String>>("operator")?
            .unwrap_or("eq".into()),
    };
    let strict_kw = strict_arg.or(kwargs.get::<Option<bool>>("strict")?);
    let kind = kwargs.get::<Option<String>>("version_type")?;
    kwargs.assert_all_used()?;
    let kind = match (strict_kw, kind) {
        (Some(_), Some(_)) => return Err(fail("Cannot specify both 'strict' and 'version_type'")),
        (Some(true), None) => "strict".to_string(),
        (_, Some(k)) => k,
        _ => "loose".to_string(),
    };
    let (a, b) = (value.to_string(), other.to_string());
    if value.is_none() || value.is_undefined() || a.is_empty() {
        return Err(fail("Input version value cannot be empty"));
    }
    if b.is_empty() {
        return Err(fail("Version parameter to compare against cannot be empty"));
    }
    let order = match kind.as_str() {
        "loose" => {
            let (x, y) = (loose(&a), loose(&b));
            if matches!(operator.as_str(), "==" | "=" | "eq" | "!=" | "<>" | "ne") {
                Ok(if x == y {
                    Ordering::Equal
                } else {
                    Ordering::Less
                })
            } else {
                cmp_loose(&x, &y)
            }
        }
        "strict" => cmp_strict(&a, &b),
        "semver" | "semantic" => cmp_semver(&a, &b),
        other => {
            return Err(fail(format!(
                "Invalid version type ({other}). Must be one of loose, strict, semver, semantic"
            )));
        }
    }
    .map_err(|e| fail(format!("Version comparison failed: {e}")))?;
    Ok(match operator.as_str() {
        "==" | "=" | "eq" => order.is_eq(),
        "!=" | "<>" | "ne" => order.is_ne(),
        "<" | "lt" => order.is_lt(),
        "<=" | "le" => order.is_le(),
        ">" | "gt" => order.is_gt(),
        ">=" | "ge" => order.is_ge(),
        other => {
            return Err(fail(format!(
                "Invalid operator type ({other}). Must be one of ==, =, eq, <, lt, <=, le, \
                 >, gt, >=, ge, !=, <>, ne"
            )));
        }
    })
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, try_render};

    fn t(src: &str) -> bool {
        match r(&format!("{{{{ {src} }}}}")).as_str() {
            "True" | "true" => true,
            "False" | "false" => false,
            other => panic!("{src}: {other}"),
        }
    }

    #[test]
    fn every_operator() {
        for (op, lt, eq, gt) in [
            ("==", false, true, false),
            ("=", false, true, false),
            ("eq", false, true, false),
            ("!=", true, false, true),
            ("<>", true, false, true),
            ("ne", true, false, true),
            ("<", true, false, false),
            ("lt", true, false, false),
            ("<=", true, true, false),
            ("le", true, true, false),
            (">", false, false, true),
            ("gt", false, false, true),
            (">=", false, true, true),
            ("ge", false, true, true),
        ] {
            assert_eq!(
                t(&format!("'1.9' is version('1.10', '{op}')")),
                lt,
                "1.9 {op} 1.10"
            );
            assert_eq!(
                t(&format!("'2.0' is version('2.0', '{op}')")),
                eq,
                "2.0 {op} 2.0"
            );
            assert_eq!(
                t(&format!(
                    "'2.10.1' is ansible.builtin.version('2.9', '{op}')"
                )),
                gt,
                "2.10.1 {op} 2.9"
            );
        }
        assert!(t("'1.0' is version('1.0')"));
        assert!(t("3.8 is version('3.10', operator='lt')"));
        assert!(t("'12' is version_compare('9', '>')"));
    }

    #[test]
    fn loose_versions_compare_as_python_s_looseversion() {
        assert!(t("'1.2' is version('1.2.0', '<')"));
        assert!(t("'1.0rc1' is version('1.0', '>')"));
        assert!(t("'2.4.0-beta' is version('2.4.0', '>')"));
        assert!(t("'1.2.3' is version('1.2.3a', '!=')"));
        // A number against a word cannot be ordered, as in Python 3.
        let err =
            try_render("{{ '1.a' is version('1.1', '<') }}", serde_json::json!({})).unwrap_err();
        assert!(err.contains("Version comparison failed"), "{err}");
    }

    #[test]
    fn strict_and_semver() {
        assert!(t("'1.0a1' is version('1.0', '<', strict=true)"));
        assert!(t("'1.0b1' is version('1.0a2', '>', true)"));
        assert!(t("'1.0' is version('1.0.0', '==', version_type='strict')"));
        let err = try_render(
            "{{ '1.0.0.0' is version('1.0', strict=true) }}",
            serde_json::json!({}),
        )
        .unwrap_err();
        assert!(err.contains("invalid version number '1.0.0.0'"), "{err}");
        assert!(t(
            "'1.0.0-alpha' is version('1.0.0', '<', version_type='semver')"
        ));
        assert!(t(
            "'1.0.0-alpha.1' is version('1.0.0-alpha.beta', '<', version_type='semver')"
        ));
        assert!(t(
            "'1.0.0-beta.11' is version('1.0.0-beta.2', '>', version_type='semantic')"
        ));
        assert!(t(
            "'1.0.0+build1' is version('1.0.0+build2', '==', version_type='semver')"
        ));
        let err = try_render(
            "{{ '1.0' is version('1.0.0', version_type='semver') }}",
            serde_json::json!({}),
        )
        .unwrap_err();
        assert!(err.contains("invalid semantic version '1.0'"), "{err}");
    }

    #[test]
    fn bad_operator_type_or_empty_is_an_error() {
        for src in [
            "'1' is version('2', '~=')",
            "'1' is version('2', version_type='pep9')",
            "'1' is version('2', strict=true, version_type='semver')",
            "'' is version('2')",
        ] {
            assert!(
                try_render(&format!("{{{{ {src} }}}}"), serde_json::json!({})).is_err(),
                "{src}"
            );
        }
    }
}
