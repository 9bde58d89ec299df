//! One parameter tree built from layers, remembering where each value came from: the
//! tree and its merge, then the layers of a node in their order of precedence (modules'
//! defaults, `params/common`, `params/env/<env>`, roles, groups, a hardware profile, the
//! node, `--set`).

use std::collections::BTreeMap;
use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::compile::{CompileOptions, NodeParts};
use crate::error::{SiteError, SiteErrors};
use crate::site::{NodeToml, RoleToml, Site};
use crate::tomlfile::{self, TomlFile, leaf_lines};

/// Where a parameter's value was set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Source {
    /// The layer (`module nginx`, `common`, `env production`, `role webserver`, `group web`,
    /// `node`, `--set`).
    pub layer: String,
    /// The file, relative to the site; none for `--set`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    /// The 1-based line in that file.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// The resolved parameters and the source of every leaf (dotted key).
#[derive(Debug, Clone, Default)]
pub struct ParamTree {
    /// The tree.
    pub values: Map<String, Value>,
    /// Dotted key of each leaf → where it was set.
    pub sources: BTreeMap<String, Source>,
}

impl ParamTree {
    /// Lays `layer` over the tree under `prefix` (empty for the top): tables merge key by
    /// key, any other value replaces the lower one. `lines` gives the line of each leaf
    /// (dotted, relative to `layer`).
    pub fn merge(
        &mut self,
        prefix: &[&str],
        layer: &Map<String, Value>,
        source: &Source,
        lines: &BTreeMap<String, usize>,
    ) {
        let mut target = &mut self.values;
        for key in prefix {
            let slot = target
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
                remove_below(&mut self.sources, &prefix.join("."));
                return self.merge(prefix, layer, source, lines);
            }
            target = slot.as_object_mut().expect("just made an object");
        }
        merge_into(
            target,
            layer,
            &prefix.join("."),
            "",
            source,
            lines,
            &mut self.sources,
        );
    }

    /// The value at a dotted key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        let mut parts = key.split('.');
        let mut cur = self.values.get(parts.next()?)?;
        for part in parts {
            cur = cur.as_object()?.get(part)?;
        }
        Some(cur)
    }

    /// Every leaf as (dotted key, value), in key order.
    pub fn leaves(&self) -> Vec<(String, Value)> {
        let mut out = Vec::new();
        flatten(&self.values, "", &mut out);
        out
    }
}

fn join(a: &str, b: &str) -> String {
    if a.is_empty() {
        b.to_string()
    } else {
        format!("{a}.{b}")
    }
}

fn remove_below(sources: &mut BTreeMap<String, Source>, key: &str) {
    let below = format!("{key}.");
    sources.retain(|k, _| k != key && !k.starts_with(&below));
}

fn merge_into(
    target: &mut Map<String, Value>,
    layer: &Map<String, Value>,
    abs: &str,
    rel: &str,
    source: &Source,
    lines: &BTreeMap<String, usize>,
    sources: &mut BTreeMap<String, Source>,
) {
    for (key, value) in layer {
        let (abs_key, rel_key) = (join(abs, key), join(rel, key));
        match (target.get_mut(key), value) {
            (Some(Value::Object(lower)), Value::Object(upper)) => {
                merge_into(lower, upper, &abs_key, &rel_key, source, lines, sources);
            }
            _ => {
                remove_below(sources, &abs_key);
                target.insert(key.clone(), value.clone());
                record(value, &abs_key, &rel_key, source, lines, sources);
            }
        }
    }
}

fn record(
    value: &Value,
    abs: &str,
    rel: &str,
    source: &Source,
    lines: &BTreeMap<String, usize>,
    sources: &mut BTreeMap<String, Source>,
) {
    match value {
        Value::Object(map) if !map.is_empty() => {
            for (k, v) in map {
                record(v, &join(abs, k), &join(rel, k), source, lines, sources);
            }
        }
        _ => {
            let line = lines.get(rel).copied().or(source.line);
            sources.insert(
                abs.to_string(),
                Source {
                    line,
                    ..source.clone()
                },
            );
        }
    }
}

fn flatten(map: &Map<String, Value>, prefix: &str, out: &mut Vec<(String, Value)>) {
    for (k, v) in map {
        match v {
            Value::Object(inner) if !inner.is_empty() => flatten(inner, &join(prefix, k), out),
            _ => out.push((join(prefix, k), v.clone())),
        }
    }
}

/// Turns a TOML table into a JSON map (dates become strings).
pub(crate) fn toml_to_json(table: &toml::Table) -> Map<String, Value> {
    match serde_json::to_value(table) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    }
}

/// A parameter file read: its values and the line of each leaf.
struct ParamFile {
    /// Its path, relative to the site.
    rel: String,
    values: Map<String, Value>,
    lines: BTreeMap<String, usize>,
}

/// A parameter file under `params/` (`stem` without its extension): TOML, or YAML
/// (`.yaml` or `.yml`); none if there is none, an error naming both if there are two.
fn param_file(dir: &Path, stem: &str) -> Result<Option<ParamFile>, SiteError> {
    let found: Vec<String> = ["toml", "yaml", "yml"]
        .iter()
        .map(|ext| format!("{stem}.{ext}"))
        .filter(|rel| strata_fs::exists(&dir.join(rel)))
        .collect();
    let rel = match found.as_slice() {
        [] => return Ok(None),
        [one] => one.clone(),
        [a, b, ..] => {
            return Err(SiteError::in_file(
                b.as_str(),
                format!("{a} and {b} both hold these parameters: keep one"),
            ));
        }
    };
    if rel.ends_with(".toml") {
        let f = tomlfile::load::<toml::Table>(dir, &rel)?;
        let lines = leaf_lines(&f.text, &[]);
        Ok(Some(ParamFile {
            values: toml_to_json(&f.value),
            rel,
            lines,
        }))
    } else {
        let f = crate::yamlfile::load(dir, &rel)?;
        Ok(Some(ParamFile {
            rel,
            values: f.values,
            lines: f.lines,
        }))
    }
}

/// Layers a node's parameters, lowest first: each module's defaults (under its key),
/// `params/common`, `params/env/<environment>`, the roles, the groups (outermost first), the
/// hardware profile's `hw.*`, the node's own, then each `--set`.
pub(crate) fn layer(
    site: &Site,
    parts: &NodeParts,
    opts: &CompileOptions,
) -> Result<ParamTree, SiteErrors> {
    let mut tree = ParamTree::default();
    for m in &parts.modules {
        let lines = leaf_lines(&m.toml.text, &["params"]);
        let key = m.param_key();
        tree.merge(
            &[&key],
            &toml_to_json(&m.toml.value.params),
            &from_file(format!("module {}", m.id()), &m.toml.rel),
            &lines,
        );
    }
    let environment = &parts.environment;
    for (stem, layer) in [
        ("params/common".to_string(), "common".to_string()),
        (
            format!("params/env/{environment}"),
            format!("env {environment}"),
        ),
    ] {
        if let Some(f) = param_file(&site.dir, &stem)? {
            tree.merge(&[], &f.values, &from_file(layer, &f.rel), &f.lines);
        }
    }
    for (id, role) in &parts.roles {
        tree.merge_file(format!("role {id}"), role, |r: &RoleToml| &r.params);
    }
    for g in &parts.groups {
        tree.merge_file(format!("group {g}"), &site.groups[g], |g| &g.params);
    }
    if let Some(hw) = &opts.hardware {
        let source = from_file(
            format!("hardware profile {}", hw.profile),
            "hardware/profiles.toml",
        );
        tree.merge(&["hw"], &hw.params, &source, &BTreeMap::new());
    }
    if let Some(f) = &parts.file {
        tree.merge_file("node".into(), f, |n: &NodeToml| &n.params);
    }
    for (key, raw) in &opts.sets {
        tree.merge_set(key, raw)?;
    }
    Ok(tree)
}

/// A layer read from a site file.
fn from_file(layer: String, file: &str) -> Source {
    Source {
        layer,
        file: Some(file.to_string()),
        line: None,
    }
}

impl ParamTree {
    /// Lays the `[params]` table of a role, group or node file over the tree.
    fn merge_file<T>(&mut self, layer: String, f: &TomlFile<T>, params: fn(&T) -> &toml::Table) {
        self.merge(
            &[],
            &toml_to_json(params(&f.value)),
            &from_file(layer, &f.rel),
            &leaf_lines(&f.text, &["params"]),
        );
    }

    /// Lays one `--set key=value` over the tree.
    fn merge_set(&mut self, key: &str, raw: &str) -> Result<(), SiteError> {
        let parts: Vec<&str> = key.split('.').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Err(SiteError::new(format!(
                "--set {key}={raw}: bad key `{key}`"
            )));
        }
        let (last, prefix) = parts.split_last().expect("split gives one part");
        let value = parse_set_value(raw);
        let layer = Map::from_iter([(last.to_string(), value)]);
        let source = Source {
            layer: "--set".into(),
            file: None,
            line: None,
        };
        self.merge(prefix, &layer, &source, &BTreeMap::new());
        Ok(())
    }
}

/// A `--set` value is TOML when it parses as a TOML value (`8080`, `true`, `"x"`, `[1]`),
/// else a plain string.
fn parse_set_value(raw: &str) -> Value {
    match toml::from_str::<toml::Table>(&format!("v = {raw}")) {
        Ok(t) => serde_json::to_value(&t["v"]).unwrap_or(Value::String(raw.to_string())),
        Err(_) => Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn src(layer: &str) -> Source {
        Source {
            layer: layer.into(),
            file: Some(format!("{layer}.toml")),
            line: None,
        }
    }

    fn obj(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => panic!("not an object"),
        }
    }

    #[test]
    fn set_values_are_toml_or_strings() {
        assert_eq!(parse_set_value("8080"), json!(8080));
        assert_eq!(parse_set_value("true"), json!(true));
        assert_eq!(parse_set_value("hello world"), json!("hello world"));
        assert_eq!(parse_set_value("[1, 2]"), json!([1, 2]));
    }

    #[test]
    fn tables_merge_and_scalars_replace() {
        let mut t = ParamTree::default();
        let lines = BTreeMap::from([("port".to_string(), 3)]);
        t.merge(
            &["nginx"],
            &obj(json!({"port": 80, "workers": 2})),
            &src("module"),
            &lines,
        );
        t.merge(
            &[],
            &obj(json!({"nginx": {"port": 8080}})),
            &src("node"),
            &BTreeMap::new(),
        );
        assert_eq!(t.get("nginx.port"), Some(&json!(8080)));
        assert_eq!(t.get("nginx.workers"), Some(&json!(2)));
        assert_eq!(t.sources["nginx.port"].layer, "node");
        assert_eq!(t.sources["nginx.workers"].layer, "module");
        assert_eq!(
            t.sources["nginx.workers"].file.as_deref(),
            Some("module.toml")
        );
    }

    #[test]
    fn a_scalar_over_a_table_drops_the_table_sources() {
        let mut t = ParamTree::default();
        t.merge(
            &[],
            &obj(json!({"a": {"b": 1, "c": 2}})),
            &src("common"),
            &BTreeMap::new(),
        );
        t.merge(&[], &obj(json!({"a": 5})), &src("node"), &BTreeMap::new());
        assert_eq!(t.get("a"), Some(&json!(5)));
        assert!(!t.sources.contains_key("a.b"));
        assert_eq!(t.sources["a"].layer, "node");
        assert_eq!(t.leaves(), vec![("a".to_string(), json!(5))]);
    }

    /// Issue 25: Ansible iterates a mapping in the order it was written; strata sorted.
    #[test]
    fn a_mapping_keeps_the_order_it_was_written_in_through_every_layer() {
        let table: toml::Table =
            toml::from_str("zeta = 1\nalpha = 2\n[mid]\ny = 1\nb = 2\n").unwrap();
        let mut t = ParamTree::default();
        t.merge(
            &["m"],
            &toml_to_json(&table),
            &src("module"),
            &BTreeMap::new(),
        );
        t.merge(
            &[],
            &obj(json!({"m": {"alpha": 3, "new": 4}})),
            &src("node"),
            &BTreeMap::new(),
        );
        let keys: Vec<String> = t.leaves().into_iter().map(|(k, _)| k).collect();
        assert_eq!(keys, ["m.zeta", "m.alpha", "m.mid.y", "m.mid.b", "m.new"]);
        assert_eq!(t.get("m.alpha"), Some(&json!(3)));
        let ctx = minijinja::Value::from(minijinja::value::Serde(&t.values));
        let out = crate::render::Renderer::new()
            .render(
                "t.j2",
                "{% for k, v in m.items() %}{{ k }} {% endfor %}",
                &ctx,
            )
            .unwrap();
        assert_eq!(out, "zeta alpha mid new ");
    }
}
