//! Ansible's list filters: `flatten` and the set theory filters (`unique`, `union`,
//! `intersect`, `difference`, `symmetric_difference`), which keep the order of the
//! first list, as Ansible does for lists.

use minijinja::value::{Kwargs, ValueKind};
use minijinja::{Error, Value};

fn items(value: &Value) -> Result<Vec<Value>, Error> {
    Ok(value.try_iter()?.collect())
}

fn is_null(v: &Value) -> bool {
    v.is_none() || matches!(v.as_str(), Some("None" | "null"))
}

fn flatten_into(
    list: &Value,
    levels: Option<i64>,
    skip_nulls: bool,
    out: &mut Vec<Value>,
) -> Result<(), Error> {
    for item in list.try_iter()? {
        if skip_nulls && is_null(&item) {
            continue;
        }
        match (item.kind(), levels) {
            (ValueKind::Seq, None) => flatten_into(&item, None, skip_nulls, out)?,
            (ValueKind::Seq, Some(l)) if l >= 1 => {
                flatten_into(&item, Some(l - 1), skip_nulls, out)?;
            }
            _ => out.push(item),
        }
    }
    Ok(())
}

/// `list | flatten(levels=None, skip_nulls=True)`.
pub(super) fn flatten(list: Value, levels: Option<i64>, kwargs: Kwargs) -> Result<Value, Error> {
    let levels = match levels {
        Some(l) => Some(l),
        None => kwargs.get::<Option<i64>>("levels")?,
    };
    let skip_nulls = kwargs.get::<Option<bool>>("skip_nulls")?.unwrap_or(true);
    kwargs.assert_all_used()?;
    let mut out = Vec::new();
    flatten_into(&list, levels, skip_nulls, &mut out)?;
    Ok(Value::from(out))
}

fn dedup(list: impl IntoIterator<Item = Value>) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    for v in list {
        if !out.contains(&v) {
            out.push(v);
        }
    }
    out
}

/// `list | unique`: the first of each value, in order.
pub(super) fn unique(list: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let _ = kwargs.get::<Option<bool>>("case_sensitive")?;
    kwargs.assert_all_used()?;
    Ok(Value::from(dedup(items(&list)?)))
}

/// `a | union(b)`: `a` then what `b` adds, each once.
pub(super) fn union(a: Value, b: Value) -> Result<Value, Error> {
    Ok(Value::from(dedup(items(&a)?.into_iter().chain(items(&b)?))))
}

/// `a | intersect(b)`: what `a` has that `b` has too, each once.
pub(super) fn intersect(a: Value, b: Value) -> Result<Value, Error> {
    let b = items(&b)?;
    Ok(Value::from(dedup(
        items(&a)?.into_iter().filter(|x| b.contains(x)),
    )))
}

/// `a | difference(b)`: what `a` has and `b` has not, each once.
pub(super) fn difference(a: Value, b: Value) -> Result<Value, Error> {
    let b = items(&b)?;
    Ok(Value::from(dedup(
        items(&a)?.into_iter().filter(|x| !b.contains(x)),
    )))
}

/// `a | symmetric_difference(b)`: what only one of them has.
pub(super) fn symmetric_difference(a: Value, b: Value) -> Result<Value, Error> {
    let both = items(&intersect(a.clone(), b.clone())?)?;
    let all = items(&union(a, b)?)?;
    Ok(Value::from(
        all.into_iter()
            .filter(|x| !both.contains(x))
            .collect::<Vec<_>>(),
    ))
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::r;

    #[test]
    fn flatten_as_ansible_documents_it() {
        assert_eq!(
            r("{{ [1, [2, [3, [4]]], 5] | flatten }}"),
            "[1, 2, 3, 4, 5]"
        );
        assert_eq!(
            r("{{ [1, [2, [3, [4]]]] | flatten(1) }}"),
            "[1, 2, [3, [4]]]"
        );
        assert_eq!(r("{{ [1, [2, [3]]] | flatten(levels=2) }}"), "[1, 2, 3]");
        assert_eq!(
            r("{{ [1, none, 'None', 'null', [none]] | flatten }}"),
            "[1]"
        );
        assert_eq!(
            r("{{ [1, none, [none]] | ansible.builtin.flatten(skip_nulls=false) }}"),
            "[1, None, None]"
        );
    }

    #[test]
    fn set_theory_keeps_the_first_lists_order() {
        assert_eq!(r("{{ [3, 1, 3, 2] | unique }}"), "[3, 1, 2]");
        assert_eq!(
            r("{{ [3, 1, 2] | union([2, 5, 1, 4]) }}"),
            "[3, 1, 2, 5, 4]"
        );
        assert_eq!(r("{{ [3, 1, 2, 1] | intersect([2, 1]) }}"), "[1, 2]");
        assert_eq!(r("{{ [3, 1, 2, 3] | difference([2]) }}"), "[3, 1]");
        assert_eq!(
            r("{{ [1, 2, 3] | symmetric_difference([3, 4]) }}"),
            "[1, 2, 4]"
        );
        assert_eq!(r("{{ ['a'] | ansible.builtin.union([]) }}"), "['a']");
    }
}
