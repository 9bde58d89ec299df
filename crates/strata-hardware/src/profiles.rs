//! `hardware/profiles.toml` and `hardware/pools/*.toml`, read and checked.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use crate::matcher::Element;
use crate::pools::{self, PoolEntry};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfilesToml {
    #[serde(default)]
    profile: Vec<ProfileToml>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProfileToml {
    name: Spanned<String>,
    role: Option<String>,
    max: Option<u32>,
    #[serde(default)]
    pools: Vec<Spanned<String>>,
    spec: Vec<Spanned<Vec<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PoolToml {
    #[serde(default)]
    generate: Vec<BTreeMap<String, toml::Value>>,
    #[serde(default)]
    entries: Vec<BTreeMap<String, toml::Value>>,
}

/// A profile, parsed.
#[derive(Debug)]
pub struct Profile {
    /// Its name.
    pub name: String,
    /// The role machines of this profile get (`name@version`).
    pub role: Option<String>,
    /// At most this many machines hold it.
    pub max: Option<u32>,
    /// Pools each machine of this profile takes one entry from.
    pub pools: Vec<String>,
    /// The spec, parsed.
    pub spec: Vec<[Element; 4]>,
    /// The spec as written, for explanations.
    pub text: Vec<[String; 4]>,
}

/// A site's hardware classification data.
#[derive(Debug, Default)]
pub struct Hardware {
    /// Profiles, in order: the first that matches wins.
    pub profiles: Vec<Profile>,
    /// Pools by name.
    pub pools: BTreeMap<String, Vec<PoolEntry>>,
}

fn line(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

fn to_string(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

impl Hardware {
    /// Reads `site/hardware/`; a site without one has no profiles. Errors are
    /// `file:line: message`, every one found.
    pub fn load(site: &Path) -> Result<Hardware, Vec<String>> {
        let mut errors = Vec::new();
        let mut hw = Hardware {
            pools: load_pools(site, &mut errors),
            profiles: Vec::new(),
        };
        let rel = "hardware/profiles.toml";
        let path = site.join(rel);
        if strata_fs::exists(&path) {
            let text = strata_fs::read_to_string(&path)
                .map_err(|e| vec![format!("{rel}: cannot read: {}", e.source)])?;
            let parsed: ProfilesToml = toml::from_str(&text).map_err(|e| {
                let at = e
                    .span()
                    .map(|s| format!(":{}", line(&text, s.start)))
                    .unwrap_or_default();
                vec![format!("{rel}{at}: {}", e.message().trim())]
            })?;
            for p in parsed.profile {
                let at = |off: usize| {
                    format!("{rel}:{}: profile `{}`", line(&text, off), p.name.get_ref())
                };
                let profile = profile(&p, &hw.pools, at, &mut errors);
                hw.profiles.push(profile);
            }
        }
        if errors.is_empty() {
            Ok(hw)
        } else {
            Err(errors)
        }
    }
}

/// Every `hardware/pools/*.toml` by pool name; those that do not load are left out, with
/// an error in `errors`.
fn load_pools(site: &Path, errors: &mut Vec<String>) -> BTreeMap<String, Vec<PoolEntry>> {
    let mut pools = BTreeMap::new();
    let pools_dir = site.join("hardware/pools");
    for name in strata_fs::list_dir(&pools_dir).unwrap_or_default() {
        let Some(pool) = name.strip_suffix(".toml") else {
            continue;
        };
        let rel = format!("hardware/pools/{name}");
        match load_pool(&site.join(&rel)) {
            Ok(entries) => {
                pools.insert(pool.to_string(), entries);
            }
            Err(e) => errors.push(format!("{rel}: {e}")),
        }
    }
    pools
}

/// One `[[profile]]`, checked against the pools; what is wrong goes to `errors`, each
/// message starting with `at(offset)` (the file, line and profile).
fn profile(
    p: &ProfileToml,
    pools: &BTreeMap<String, Vec<PoolEntry>>,
    at: impl Fn(usize) -> String,
    errors: &mut Vec<String>,
) -> Profile {
    for pool in &p.pools {
        if !pools.contains_key(pool.get_ref()) {
            errors.push(format!(
                "{}: unknown pool `{}` (no hardware/pools/{}.toml)",
                at(pool.span().start),
                pool.get_ref(),
                pool.get_ref()
            ));
        }
    }
    let mut spec = Vec::new();
    let mut texts = Vec::new();
    for (i, entry) in p.spec.iter().enumerate() {
        let Ok(words) = <[String; 4]>::try_from(entry.get_ref().clone()) else {
            errors.push(format!(
                "{}: spec entry {} must have 4 elements",
                at(entry.span().start),
                i + 1
            ));
            continue;
        };
        match words
            .iter()
            .map(|w| Element::parse(w))
            .collect::<Result<Vec<_>, _>>()
        {
            Ok(els) => {
                spec.push(<[Element; 4]>::try_from(els).expect("four"));
                texts.push(words);
            }
            Err(e) => errors.push(format!(
                "{}: spec entry {}: {e}",
                at(entry.span().start),
                i + 1
            )),
        }
    }
    Profile {
        name: p.name.get_ref().clone(),
        role: p.role.clone(),
        max: p.max,
        pools: p.pools.iter().map(|s| s.get_ref().clone()).collect(),
        spec,
        text: texts,
    }
}

fn load_pool(path: &Path) -> Result<Vec<PoolEntry>, String> {
    let text = strata_fs::read_to_string(path).map_err(|e| format!("cannot read: {}", e.source))?;
    let parsed: PoolToml = toml::from_str(&text).map_err(|e| {
        let at = e
            .span()
            .map(|s| format!("line {}: ", line(&text, s.start)))
            .unwrap_or_default();
        format!("{at}{}", e.message().trim())
    })?;
    let mut out = Vec::new();
    for (i, g) in parsed.generate.iter().enumerate() {
        let table: BTreeMap<String, String> =
            g.iter().map(|(k, v)| (k.clone(), to_string(v))).collect();
        out.extend(pools::generate(&table).map_err(|e| format!("generate entry {}: {e}", i + 1))?);
    }
    out.extend(parsed.entries.iter().map(|e| {
        e.iter()
            .map(|(k, v)| (k.clone(), to_string(v)))
            .collect::<PoolEntry>()
    }));
    Ok(out)
}
