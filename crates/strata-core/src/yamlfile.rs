//! Parameter files in YAML (`params/common.yaml`, `params/env/<env>.yaml`), so that
//! Ansible's group_vars and Salt's pillar data come over as they are, null included.
//! Errors name the file, line and column; each leaf of a block mapping knows its line.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::error::SiteError;

/// A parameter file read: its mapping, and the line of each leaf (dotted key).
#[derive(Debug)]
pub(crate) struct YamlParams {
    pub values: Map<String, Value>,
    pub lines: BTreeMap<String, usize>,
}

/// Reads and parses `site/rel`.
pub(crate) fn load(site: &Path, rel: &str) -> Result<YamlParams, SiteError> {
    let text = strata_fs::read_to_string(&site.join(rel))
        .map_err(|e| SiteError::in_file(rel, format!("cannot read: {}", e.source)).caused_by(e))?;
    parse(rel, &text)
}

/// Parses `text` as the parameter file `rel`: a mapping, or nothing at all.
pub(crate) fn parse(rel: &str, text: &str) -> Result<YamlParams, SiteError> {
    let value: Value = serde_norway::from_str(text).map_err(|e| {
        let message = e.to_string();
        // The location is given apart; the message repeats it at its end.
        let message = match message.split_once(" at line ") {
            Some((m, _)) => m.to_string(),
            None => message,
        };
        let err = SiteError::in_file(rel, message);
        match e.location() {
            Some(l) => err.at(l.line(), l.column()),
            None => err,
        }
    })?;
    let values = match value {
        Value::Object(map) => map,
        Value::Null => Map::new(),
        other => {
            return Err(SiteError::in_file(
                rel,
                format!(
                    "parameters must be a mapping of names to values, not {}",
                    kind(&other)
                ),
            )
            .at(1, 1));
        }
    };
    let lines = leaf_lines(text);
    let mut values = values;
    yaml11_booleans(&mut values, "", &lines, text);
    Ok(YamlParams { values, lines })
}

/// YAML 1.1's booleans (`yes`, `no`, `on`, `off` in their three cases), which PyYAML, and
/// so Ansible and Salt, read as true and false where serde_norway (YAML 1.2) reads
/// strings: a value written plain, unquoted, as the whole value of a `key:` line, is made
/// the boolean. (In a flow collection or a list item it stays a string.)
fn yaml11_booleans(
    map: &mut Map<String, Value>,
    prefix: &str,
    lines: &BTreeMap<String, usize>,
    text: &str,
) {
    for (key, value) in map.iter_mut() {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(inner) => yaml11_booleans(inner, &path, lines, text),
            Value::String(s) => {
                let truth = match s.as_str() {
                    "yes" | "Yes" | "YES" | "on" | "On" | "ON" => true,
                    "no" | "No" | "NO" | "off" | "Off" | "OFF" => false,
                    _ => continue,
                };
                let written = lines
                    .get(&path)
                    .and_then(|l| text.lines().nth(l - 1))
                    .and_then(|line| split_key(line.trim_start()))
                    .map(|(_, rest)| rest.split(" #").next().unwrap_or("").trim().to_string());
                if written.as_deref() == Some(s.as_str()) {
                    *value = Value::Bool(truth);
                }
            }
            _ => {}
        }
    }
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

/// The line of each `key:` of a block mapping, by dotted path (keys nested by their
/// indentation). Keys in flow mappings (`{a: 1}`) are not found: their leaves are given
/// the file's name alone.
fn leaf_lines(text: &str) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    // (indentation, key) of the mappings the current line is inside.
    let mut stack: Vec<(usize, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let body = line.trim_start();
        let indent = line.len() - body.len();
        if body.is_empty() || body.starts_with('#') || body.starts_with("---") {
            continue;
        }
        if body.starts_with('-') || body.starts_with('{') || body.starts_with('[') {
            continue;
        }
        let Some((key, rest)) = split_key(body) else {
            continue;
        };
        while stack.last().is_some_and(|(d, _)| *d >= indent) {
            stack.pop();
        }
        let path = stack
            .iter()
            .map(|(_, k)| k.as_str())
            .chain([key.as_str()])
            .collect::<Vec<_>>()
            .join(".");
        out.insert(path, i + 1);
        let rest = rest.trim();
        if rest.is_empty() || rest.starts_with('#') {
            stack.push((indent, key));
        }
    }
    out
}

/// `key: rest` of a line, the key unquoted.
fn split_key(body: &str) -> Option<(String, &str)> {
    if let Some(q @ ('"' | '\'')) = body.chars().next() {
        let end = body[1..].find(q)? + 1;
        let rest = body[end + 1..].strip_prefix(':')?;
        return Some((body[1..end].to_string(), rest));
    }
    let i = body
        .find(": ")
        .or_else(|| body.ends_with(':').then(|| body.len() - 1))?;
    Some((body[..i].trim().to_string(), &body[i + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_group_vars_in_order_with_null_and_lines() {
        let text = "---\n# web servers\nnginx:\n  port: 8080\n  user: ~\n  sites:\n    - a\n    - b\nzeta: yes\n\"quoted key\": {x: 1}\nalpha: null\n";
        let p = parse("params/common.yaml", text).unwrap();
        assert_eq!(
            Value::Object(p.values.clone()),
            json!({"nginx": {"port": 8080, "user": null, "sites": ["a", "b"]}, "zeta": true,
                   "quoted key": {"x": 1}, "alpha": null})
        );
        let keys: Vec<&String> = p.values.keys().collect();
        assert_eq!(keys, ["nginx", "zeta", "quoted key", "alpha"]);
        assert_eq!(p.lines.get("nginx.port"), Some(&4));
        assert_eq!(p.lines.get("nginx.user"), Some(&5));
        assert_eq!(p.lines.get("nginx.sites"), Some(&6));
        assert_eq!(p.lines.get("alpha"), Some(&11));
    }

    /// Ansible reads `enabled: no` as false (YAML 1.1); serde_norway as the string "no".
    #[test]
    fn yaml_1_1_booleans_written_plain_are_booleans_as_in_ansible() {
        let text = "a: yes\nb: 'yes'\nc: Off  # comment\nd:\n  e: ON\n  f: \"no\"\ng: [yes]\nh: yesterday\n";
        let p = parse("p.yaml", text).unwrap();
        assert_eq!(
            Value::Object(p.values),
            json!({"a": true, "b": "yes", "c": false, "d": {"e": true, "f": "no"}, "g": ["yes"],
                   "h": "yesterday"})
        );
    }

    #[test]
    fn an_empty_file_is_no_parameters() {
        assert!(parse("p.yaml", "").unwrap().values.is_empty());
        assert!(parse("p.yaml", "# nothing\n").unwrap().values.is_empty());
    }

    #[test]
    fn bad_yaml_is_named_with_its_line() {
        let err = parse("params/env/prod.yaml", "a: 1\nb: [1, 2\nc: 3\n").unwrap_err();
        assert_eq!(err.file.as_deref(), Some("params/env/prod.yaml"));
        assert!(err.line.is_some_and(|l| l >= 2), "{err:?}");
        let err = parse("params/common.yaml", "- a\n- b\n").unwrap_err();
        assert_eq!(err.line, Some(1));
        assert_eq!(
            err.message,
            "parameters must be a mapping of names to values, not a list"
        );
    }
}
