//! Salt's execution functions that templates call, as `salt['pillar.get']`: reading
//! parameters (the site's parameters are the pillar) and grains (a node's facts, see
//! crate::ansible::grains), and `grains.filter_by`, which every formula's `map.jinja`
//! uses to choose its settings by operating system.

use minijinja::value::{Kwargs, Rest, ValueKind};
use minijinja::{Error, State, Value};

use super::{dicts, fail};

/// Salt's `traverse_dict_and_list`: `key`'s parts, split on `delimiter`, walk mappings
/// by key and lists by index; `None` where the path leads nowhere.
fn traverse(root: Value, key: &str, delimiter: &str) -> Option<Value> {
    let mut value = root;
    for part in key.split(delimiter) {
        value = match value.kind() {
            ValueKind::Map => value.get_item(&Value::from(part)).ok()?,
            ValueKind::Seq => {
                let i: usize = part.parse().ok()?;
                value.get_item(&Value::from(i)).ok()?
            }
            _ => return None,
        };
        if value.is_undefined() {
            return None;
        }
    }
    Some(value)
}

/// `default` (positional or by name; `''` when none is given) and `delimiter`.
fn default_and_delimiter(
    default: Option<Value>,
    kwargs: &Kwargs,
) -> Result<(Value, String), Error> {
    let default = match default {
        Some(d) => d,
        None => kwargs
            .get::<Option<Value>>("default")?
            .unwrap_or(Value::from("")),
    };
    let delimiter = kwargs
        .get::<Option<String>>("delimiter")?
        .unwrap_or(":".into());
    if delimiter.is_empty() {
        return Err(fail("the delimiter must not be empty"));
    }
    Ok((default, delimiter))
}

/// `key` in the pillar: the `pillar` variable a Salt module's templates have, else (a
/// template of Ansible's dialect) the context's parameters, by name.
fn in_pillar(state: &State, key: &str, delimiter: &str) -> Option<Value> {
    if let Some(p) = state
        .lookup("pillar")
        .filter(|p| p.kind() == ValueKind::Map)
    {
        return traverse(p, key, delimiter);
    }
    let (first, rest) = match key.split_once(delimiter) {
        Some((first, rest)) => (first, Some(rest)),
        None => (key, None),
    };
    let top = state.lookup(first).filter(|v| !v.is_undefined())?;
    match rest {
        Some(rest) => traverse(top, rest, delimiter),
        None => Some(top),
    }
}

/// `salt['pillar.get'](key, default='', merge=False, delimiter=':')` (and
/// `config.get`). With `merge`, a mapping default is merged under the pillar's mapping
/// (recursively, Salt's `dictupdate.update`), a list default followed by the pillar's
/// items it lacks; any other pairing skips the merge, as Salt does.
fn pillar_get(
    state: &State,
    key: String,
    default: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let (default, delimiter) = default_and_delimiter(default, &kwargs)?;
    let merge = kwargs.get::<Option<bool>>("merge")?.unwrap_or(false);
    if kwargs.get::<Option<bool>>("merge_nested_lists")? == Some(true) {
        return Err(fail(
            "pillar.get: merge_nested_lists is not supported here; merge the lists with \
             `combine(…, list_merge='append_rp')`",
        ));
    }
    kwargs.assert_all_used()?;
    let found = in_pillar(state, &key, &delimiter);
    if merge {
        match (default.kind(), found.as_ref().map(Value::kind)) {
            (ValueKind::Map, Some(ValueKind::Map)) => {
                return dicts::merge(
                    &default,
                    found.as_ref().unwrap_or(&default),
                    true,
                    "replace",
                );
            }
            (ValueKind::Seq, Some(ValueKind::Seq)) => {
                let mut out: Vec<Value> = default.try_iter()?.collect();
                for v in found
                    .iter()
                    .flat_map(|f| f.try_iter().into_iter().flatten())
                {
                    if !out.contains(&v) {
                        out.push(v);
                    }
                }
                return Ok(Value::from(out));
            }
            _ => {}
        }
    }
    Ok(found.unwrap_or(default))
}

/// The node's grains (`{}` when the template has none).
fn grains(state: &State) -> Value {
    match state.lookup("grains") {
        Some(g) if g.kind() == ValueKind::Map => g,
        _ => Value::from_pairs(Vec::<(Value, Value)>::new()),
    }
}

/// `salt['grains.get'](key, default='', delimiter=':')`.
fn grains_get(
    state: &State,
    key: String,
    default: Option<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    let (default, delimiter) = default_and_delimiter(default, &kwargs)?;
    kwargs.assert_all_used()?;
    Ok(traverse(grains(state), &key, &delimiter).unwrap_or(default))
}

/// Python's `fnmatch.fnmatchcase`: `*`, `?`, `[abc]`, `[a-z]`, `[!abc]`; anything else
/// (an unclosed `[` too) stands for itself.
pub(super) fn fnmatch(text: &str, pattern: &str) -> bool {
    let (t, p): (Vec<char>, Vec<char>) = (text.chars().collect(), pattern.chars().collect());
    // Iterative matching with backtracking to the last `*`.
    let (mut ti, mut pi) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some('*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some('?') => Some(pi + 1),
            Some('[') => match class(&p[pi..], t[ti]) {
                Some((true, len)) => Some(pi + len),
                Some((false, _)) => None,
                None => (t[ti] == '[').then_some(pi + 1),
            },
            Some(&c) if c == t[ti] => Some(pi + 1),
            _ => None,
        };
        match (step, star) {
            (Some(next), _) => {
                pi = next;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// A `[…]` class at the start of `p` against `c`: whether it matches, and the class's
/// length; `None` when the `[` is not closed (it is then a plain character).
fn class(p: &[char], c: char) -> Option<(bool, usize)> {
    let mut i = 1;
    let negated = matches!(p.get(i), Some('!'));
    if negated {
        i += 1;
    }
    // A `]` right after `[` or `[!` is a member.
    let start = i;
    let mut found = false;
    while let Some(&ch) = p.get(i) {
        if ch == ']' && i > start {
            return Some((found != negated, i + 1));
        }
        if p.get(i + 1) == Some(&'-') && p.get(i + 2).is_some_and(|&e| e != ']') {
            if (ch..=p[i + 2]).contains(&c) {
                found = true;
            }
            i += 3;
        } else {
            if ch == c {
                found = true;
            }
            i += 1;
        }
    }
    None
}

/// Python's `str()` of a grain's value, as `filter_by` compares it.
fn py_str(v: &Value) -> String {
    match v.kind() {
        ValueKind::Bool if v.is_true() => "True".into(),
        ValueKind::Bool => "False".into(),
        ValueKind::None | ValueKind::Undefined => "None".into(),
        _ => v.to_string(),
    }
}

/// `salt['grains.filter_by'](lookup_dict, grain='os_family', merge=None,
/// default='default', base=None)`, as Salt's `salt.utils.data.filter_by`: the value of
/// the first key of `lookup_dict` that the grain's value (each, for a list) matches as a
/// glob; else the `default` key's; merged over the `base` key's, then under `merge`,
/// recursively (Salt's `dictupdate.update`).
fn filter_by(
    state: &State,
    lookup: Value,
    args: Rest<Value>,
    kwargs: Kwargs,
) -> Result<Value, Error> {
    if args.len() > 4 {
        return Err(fail(
            "grains.filter_by takes at most five arguments: lookup_dict, grain, merge, \
             default, base",
        ));
    }
    // Each argument by position, else by name.
    let arg = |i: usize, name: &str| -> Result<Option<Value>, Error> {
        match args.get(i) {
            Some(v) => Ok(Some(v.clone())),
            None => kwargs.get::<Option<Value>>(name),
        }
    };
    let text = |v: Option<Value>, or: &str| {
        v.filter(|v| !v.is_none())
            .map_or(or.to_string(), |v| py_str(&v))
    };
    let grain = text(arg(0, "grain")?, "os_family");
    let merge = arg(1, "merge")?;
    let default = text(arg(2, "default")?, "default");
    let base = arg(3, "base")?.filter(|b| !b.is_none()).map(|b| py_str(&b));
    kwargs.assert_all_used()?;
    if lookup.kind() != ValueKind::Map {
        return Err(fail(format!(
            "grains.filter_by expects a dictionary to look up in, got {}",
            lookup.kind()
        )));
    }
    let keys: Vec<Value> = lookup.try_iter()?.collect();
    let found = traverse(grains(state), &grain, ":").unwrap_or(Value::from(Vec::<Value>::new()));
    let each: Vec<Value> = match found.kind() {
        ValueKind::Seq => found.try_iter()?.collect(),
        _ => vec![found],
    };
    let mut ret = each.iter().find_map(|v| {
        let text = py_str(v);
        keys.iter()
            .find(|k| fnmatch(&text, &py_str(k)))
            .and_then(|k| lookup.get_item(k).ok())
    });
    if ret.is_none() {
        ret = lookup
            .get_item(&Value::from(default))
            .ok()
            .filter(|v| !v.is_undefined());
    }
    let base = base.and_then(|b| lookup.get_item(&Value::from(b)).ok());
    if let Some(b) = base.filter(|v| !v.is_undefined()) {
        ret = Some(match ret {
            None => b,
            Some(r) if b.kind() == ValueKind::Map => {
                if r.kind() != ValueKind::Map {
                    return Err(fail(
                        "filter_by default and look-up values must both be dictionaries.",
                    ));
                }
                dicts::merge(&b, &r, true, "replace")?
            }
            Some(r) => r,
        });
    }
    if let Some(merge) = merge.filter(Value::is_true) {
        if merge.kind() != ValueKind::Map {
            return Err(fail("filter_by merge argument must be a dictionary."));
        }
        ret = Some(match ret {
            None => merge,
            Some(r) if r.kind() == ValueKind::Map => dicts::merge(&r, &merge, true, "replace")?,
            Some(_) => {
                return Err(fail(
                    "Cannot update using non-dict types in dictupdate.update()",
                ));
            }
        });
    }
    Ok(ret.unwrap_or(Value::from(())))
}

/// The `salt` global: its execution functions that read parameters and grains.
pub(super) fn global() -> Value {
    Value::from_pairs([
        ("pillar.get", Value::from_function(pillar_get)),
        ("config.get", Value::from_function(pillar_get)),
        ("grains.get", Value::from_function(grains_get)),
        ("grains.filter_by", Value::from_function(filter_by)),
    ])
}

#[cfg(test)]
mod tests {
    use super::fnmatch;
    use crate::ansible::testing::{render, try_render};
    use serde_json::json;

    #[test]
    fn pillar_get_reads_a_parameter_by_its_colon_path() {
        let ctx = json!({"nginx": {"server": {"port": 8080, "names": ["a", "b"]}}});
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(t("{{ salt['pillar.get']('nginx:server:port') }}"), "8080");
        assert_eq!(t("{{ salt['pillar.get']('nginx:server:nope', 80) }}"), "80");
        assert_eq!(t("{{ salt['pillar.get']('absent') }}|"), "|");
        assert_eq!(t("{{ salt['pillar.get']('absent:x', default={}) }}"), "{}");
        assert_eq!(
            t("{{ salt['config.get']('nginx/server/names', delimiter='/') }}"),
            "['a', 'b']"
        );
        // A list is walked by index, as Salt's traverse_dict_and_list does.
        assert_eq!(t("{{ salt['pillar.get']('nginx:server:names:1') }}"), "b");
        assert_eq!(
            t("{{ salt['pillar.get']('nginx:server:names:9', 'none') }}"),
            "none"
        );
        assert_eq!(
            t("{{ salt['pillar.get']('nginx:server:port:x', 'leaf') }}"),
            "leaf"
        );
        assert_eq!(
            t("{% for k, v in salt['pillar.get']('nginx', {}).items() %}{{ k }}{% endfor %}"),
            "server"
        );
        let err = try_render("{{ salt['pillar.get']('a', delimiter='') }}", ctx.clone());
        assert!(err.unwrap_err().contains("delimiter"));
    }

    /// In Salt's dialect the pillar is the `pillar` variable, not the whole context.
    #[test]
    fn pillar_get_reads_the_pillar_when_there_is_one() {
        let ctx = json!({"pillar": {"a": {"b": 1}}, "facts": {"x": 2}, "a": {"b": 3}});
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(t("{{ salt['pillar.get']('a:b') }}"), "1");
        assert_eq!(
            t("{{ salt['pillar.get']('facts:x', 'not a pillar') }}"),
            "not a pillar"
        );
        assert_eq!(t("{{ pillar.a.b }}"), "1");
    }

    /// salt/modules/pillar.py's `get` with `merge=True` (the values Salt 3008.4's own
    /// returns for the same pillar and calls).
    #[test]
    fn pillar_get_merges_into_its_default() {
        let ctx =
            json!({"pillar": {"v": {"ng": {"config": {"a": 2, "c": 3}, "l": [2, 3]}}, "s": "x"}});
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(
            t(
                "{{ salt['pillar.get']('v:ng', default={'config': {'a': 1, 'b': 1}, 'pkg': 'v'}, merge=True) }}"
            ),
            "{'config': {'a': 2, 'b': 1, 'c': 3}, 'pkg': 'v', 'l': [2, 3]}"
        );
        assert_eq!(
            t("{{ salt['pillar.get']('v:ng:l', [1, 2], merge=True) }}"),
            "[1, 2, 3]"
        );
        // Nothing in the pillar: the default.
        assert_eq!(
            t("{{ salt['pillar.get']('v:nope', {'a': 1}, merge=True) }}"),
            "{'a': 1}"
        );
        // A pairing that cannot merge: Salt logs and returns the pillar's value.
        assert_eq!(
            t("{{ salt['pillar.get']('s', {'a': 1}, merge=True) }}"),
            "x"
        );
        assert!(
            try_render(
                "{{ salt['pillar.get']('v', {}, merge=True, merge_nested_lists=True) }}",
                ctx
            )
            .is_err()
        );
    }

    #[test]
    fn grains_get_walks_the_grains() {
        let ctx = json!({"grains": {"os": "Debian", "ip4_interfaces": {"eth0": ["10.0.0.5"]}}});
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(t("{{ salt['grains.get']('os') }}"), "Debian");
        assert_eq!(
            t("{{ salt['grains.get']('ip4_interfaces:eth0:0') }}"),
            "10.0.0.5"
        );
        assert_eq!(t("{{ salt['grains.get']('nope') }}|"), "|");
        assert_eq!(t("{{ salt['grains.get']('nope', 'x') }}"), "x");
        assert_eq!(
            t("{{ salt['grains.get']('ip4_interfaces.eth0', delimiter='.') }}"),
            "['10.0.0.5']"
        );
        // No grains at all: the default.
        assert_eq!(
            render("{{ salt['grains.get']('os', 'none') }}", json!({})),
            "none"
        );
    }

    /// salt.utils.data.filter_by, as its documentation and source have it (each value
    /// here is what Salt 3008.4's own `grains.filter_by` returns for the same call).
    #[test]
    fn filter_by_chooses_by_grain_with_default_base_and_merge() {
        let ctx = json!({
            "grains": {"os_family": "Debian", "os": "Ubuntu", "osmajorrelease": 22,
                       "roles": ["web", "db"]},
            "lookup": {
                "Debian": {"pkg": "apache2", "conf": {"port": 80, "user": "www-data"}},
                "RedHat": {"pkg": "httpd"},
                "default": {"pkg": "apache"},
            },
        });
        let t = |src: &str| render(src, ctx.clone());
        assert_eq!(t("{{ salt['grains.filter_by'](lookup).pkg }}"), "apache2");
        assert_eq!(
            t("{{ salt['grains.filter_by'](lookup, grain='os').pkg }}"),
            "apache"
        );
        assert_eq!(
            t("{{ salt['grains.filter_by'](lookup, 'os', default='RedHat').pkg }}"),
            "httpd"
        );
        // Nothing matched and no default key: none.
        assert_eq!(t("{{ salt['grains.filter_by']({'RedHat': 1}) }}"), "None");
        // Keys are globs; the grain's value is compared as Python's str().
        assert_eq!(
            t("{{ salt['grains.filter_by']({'Ub*': 1, 'Ubuntu': 2}, grain='os') }}"),
            "1"
        );
        assert_eq!(
            t(
                "{{ salt['grains.filter_by']({'2[0-9]': 'new', '1?': 'old'}, grain='osmajorrelease') }}"
            ),
            "new"
        );
        // A list grain: the first of its values that matches a key.
        assert_eq!(
            t("{{ salt['grains.filter_by']({'db': 'D', 'web': 'W'}, grain='roles') }}"),
            "W"
        );
        // merge: recursively over the chosen value; a new key comes last.
        assert_eq!(
            t(
                "{{ salt['grains.filter_by'](lookup, merge={'conf': {'port': 8080, 'tls': True}}) }}"
            ),
            "{'pkg': 'apache2', 'conf': {'port': 8080, 'user': 'www-data', 'tls': True}}"
        );
        // merge of a falsy value (pillar.get's '' default) is no merge.
        assert_eq!(
            t("{{ salt['grains.filter_by'](lookup, merge='').pkg }}"),
            "apache2"
        );
        assert_eq!(
            t("{{ salt['grains.filter_by']({'RedHat': 1}, merge={'a': 1}) }}"),
            "{'a': 1}"
        );
        // base: the chosen value merged over the base's.
        assert_eq!(
            t(
                "{{ salt['grains.filter_by']({'common': {'a': 1, 'b': {'c': 2}}, 'Debian': {'b': {'d': 3}}}, base='common') }}"
            ),
            "{'a': 1, 'b': {'c': 2, 'd': 3}}"
        );
        assert_eq!(
            t("{{ salt['grains.filter_by']({'common': {'a': 1}}, base='common') }}"),
            "{'a': 1}"
        );
        for (src, says) in [
            (
                "{{ salt['grains.filter_by'](lookup, merge=[1]) }}",
                "merge argument must be a dictionary",
            ),
            (
                "{{ salt['grains.filter_by']({'base': {'a': 1}, 'Debian': 2}, base='base') }}",
                "must both be dictionaries",
            ),
            (
                "{{ salt['grains.filter_by']([1]) }}",
                "expects a dictionary",
            ),
            (
                "{{ salt['grains.filter_by'](lookup, 'a', {}, 'b', 'c', 'd') }}",
                "at most five",
            ),
        ] {
            let err = try_render(src, ctx.clone()).unwrap_err();
            assert!(err.contains(says), "{src}: {err}");
        }
    }

    /// Python's fnmatch.fnmatchcase.
    #[test]
    fn fnmatch_is_pythons() {
        for (text, pattern, want) in [
            ("Debian", "Debian", true),
            ("Debian", "debian", false),
            ("Debian", "Deb*", true),
            ("Debian", "*", true),
            ("", "*", true),
            ("Debian", "D?bian", true),
            ("Debian", "*an", true),
            ("Debian", "*x*", false),
            ("a/b", "a*", true),
            ("12", "1[0-9]", true),
            ("1a", "1[!0-9]", true),
            ("15", "1[!0-9]", false),
            ("]", "[]]", true),
            ("[x", "[x", true),
            ("Deb", "Debian", false),
            ("aXbXc", "a*b*c", true),
            ("abc", "a*b*c*d", false),
        ] {
            assert_eq!(fnmatch(text, pattern), want, "{text} ~ {pattern}");
        }
    }
}
