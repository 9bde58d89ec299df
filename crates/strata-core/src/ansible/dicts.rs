//! Ansible's dictionary filters: `combine`, `dict2items`, `items2dict`.

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Error, Value};

use super::fail;

type Map = Vec<(Value, Value)>;

fn entries(v: &Value, what: &str) -> Result<Map, Error> {
    if v.kind() != ValueKind::Map {
        return Err(fail(format!(
            "{what} expects a dictionary, got {}",
            v.kind()
        )));
    }
    v.try_iter()?
        .map(|k| Ok((k.clone(), v.get_item(&k)?)))
        .collect()
}

fn set(map: &mut Map, key: Value, value: Value) {
    match map.iter_mut().find(|(k, _)| *k == key) {
        Some(slot) => slot.1 = value,
        None => map.push((key, value)),
    }
}

pub(super) fn merge(
    lower: &Value,
    upper: &Value,
    recursive: bool,
    list_merge: &str,
) -> Result<Value, Error> {
    let mut out = entries(lower, "combine")?;
    for (k, v) in entries(upper, "combine")? {
        let old = out
            .iter()
            .find(|(key, _)| *key == k)
            .map(|(_, v)| v.clone());
        let new = match old {
            Some(old)
                if recursive && old.kind() == ValueKind::Map && v.kind() == ValueKind::Map =>
            {
                merge(&old, &v, recursive, list_merge)?
            }
            Some(old) if old.kind() == ValueKind::Seq && v.kind() == ValueKind::Seq => {
                let (o, n): (Vec<Value>, Vec<Value>) =
                    (old.try_iter()?.collect(), v.try_iter()?.collect());
                match list_merge {
                    "replace" => v,
                    "keep" => old,
                    "append" => Value::from(o.into_iter().chain(n).collect::<Vec<_>>()),
                    "prepend" => Value::from(n.into_iter().chain(o).collect::<Vec<_>>()),
                    "append_rp" => {
                        let kept = o.into_iter().filter(|x| !n.contains(x));
                        Value::from(kept.chain(n.iter().cloned()).collect::<Vec<_>>())
                    }
                    "prepend_rp" => {
                        let kept: Vec<_> = o.into_iter().filter(|x| !n.contains(x)).collect();
                        Value::from(n.into_iter().chain(kept).collect::<Vec<_>>())
                    }
                    other => return Err(fail(format!("combine: unknown list_merge `{other}`"))),
                }
            }
            _ => v,
        };
        set(&mut out, k, new);
    }
    Ok(Value::from_pairs(out))
}

/// `a | combine(b, c…, recursive=False, list_merge='replace')`: later keys win.
pub(super) fn combine(first: Value, rest: Rest<Value>, kwargs: Kwargs) -> Result<Value, Error> {
    let recursive = kwargs.get::<Option<bool>>("recursive")?.unwrap_or(false);
    let list_merge = kwargs
        .get::<Option<String>>("list_merge")?
        .unwrap_or("replace".into());
    kwargs.assert_all_used()?;
    let mut out = merge(&first, &Value::from_pairs(Map::new()), false, "replace")?;
    for next in rest.iter() {
        // `combine([a, b])` merges the dictionaries of a list.
        let layers: Vec<Value> = match next.kind() {
            ValueKind::Seq => next.try_iter()?.collect(),
            _ => vec![next.clone()],
        };
        for layer in layers {
            out = merge(&out, &layer, recursive, &list_merge)?;
        }
    }
    Ok(out)
}

/// `d | dict2items(key_name='key', value_name='value')`.
pub(super) fn dict2items(d: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let key = kwargs
        .get::<Option<String>>("key_name")?
        .unwrap_or("key".into());
    let value = kwargs
        .get::<Option<String>>("value_name")?
        .unwrap_or("value".into());
    kwargs.assert_all_used()?;
    Ok(entries(&d, "dict2items")?
        .into_iter()
        .map(|(k, v)| Value::from_pairs([(key.clone(), k), (value.clone(), v)]))
        .collect())
}

/// `list | items2dict(key_name='key', value_name='value')`.
pub(super) fn items2dict(list: Value, kwargs: Kwargs) -> Result<Value, Error> {
    let key = kwargs
        .get::<Option<String>>("key_name")?
        .unwrap_or("key".into());
    let value = kwargs
        .get::<Option<String>>("value_name")?
        .unwrap_or("value".into());
    kwargs.assert_all_used()?;
    let mut out = Map::new();
    for item in list.try_iter()? {
        let k = item.get_attr(&key)?;
        let v = item.get_attr(&value)?;
        if k.is_undefined() || v.is_undefined() {
            return Err(fail(format!(
                "items2dict: an item has no `{key}` or no `{value}`: {item}"
            )));
        }
        set(&mut out, k, v);
    }
    Ok(Value::from_pairs(out))
}

#[cfg(test)]
mod tests {
    use crate::ansible::testing::{r, try_render};

    #[test]
    fn combine_later_keys_win_and_recursive_merges() {
        assert_eq!(
            r("{{ {'a': 1, 'b': {'x': 1}} | combine({'b': {'y': 2}, 'c': 3}) }}"),
            "{'a': 1, 'b': {'y': 2}, 'c': 3}"
        );
        assert_eq!(
            r("{{ {'a': 1, 'b': {'x': 1}} | combine({'b': {'y': 2}}, recursive=true) }}"),
            "{'a': 1, 'b': {'x': 1, 'y': 2}}"
        );
        assert_eq!(
            r("{{ {'a': 1} | combine({'a': 2}, {'a': 3}) }}"),
            "{'a': 3}"
        );
        assert_eq!(
            r("{{ {'a': 1} | ansible.builtin.combine([{'b': 2}, {'a': 3}]) }}"),
            "{'a': 3, 'b': 2}"
        );
        assert_eq!(
            r("{{ {'l': [1, 2]} | combine({'l': [2, 3]}, list_merge='append_rp') }}"),
            "{'l': [1, 2, 3]}"
        );
        assert_eq!(
            r("{{ {'l': [1]} | combine({'l': [2]}, list_merge='prepend') }}"),
            "{'l': [2, 1]}"
        );
        assert!(try_render("{{ [1] | combine({}) }}", serde_json::json!({})).is_err());
    }

    #[test]
    fn dict2items_and_back() {
        assert_eq!(
            r("{{ {'a': 1, 'b': 2} | dict2items }}"),
            "[{'key': 'a', 'value': 1}, {'key': 'b', 'value': 2}]"
        );
        assert_eq!(
            r("{{ {'a': 1} | dict2items(key_name='k', value_name='v') }}"),
            "[{'k': 'a', 'v': 1}]"
        );
        assert_eq!(
            r("{{ [{'key': 'a', 'value': 1}, {'key': 'b', 'value': 2}] | items2dict }}"),
            "{'a': 1, 'b': 2}"
        );
        assert_eq!(
            r("{{ [{'n': 'a', 'v': 1}] | items2dict(key_name='n', value_name='v') }}"),
            "{'a': 1}"
        );
        assert!(try_render("{{ [{'x': 1}] | items2dict }}", serde_json::json!({})).is_err());
    }
}
