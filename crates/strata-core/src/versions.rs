//! How a site versions its roles and modules: the index of each one's versions on disk (a
//! single file or directory, or one per version), their numeric order, and the
//! `name[@version]` references that pick one.

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{SiteError, SiteErrors};
use crate::site::candidates;

/// Where the versions of a role or module live.
#[derive(Debug, Clone)]
pub(crate) enum Versions {
    /// One unversioned file or directory.
    Single(PathBuf),
    /// Version → file or directory.
    Many(Vec<(String, PathBuf)>),
}

/// What a module's directory holds: a directory of `modules/` holding none of these is
/// one of versions (`modules/<name>/<version>/`).
const MODULE_MARKERS: [&str; 6] = [
    "module.toml",
    "files",
    "templates",
    "include",
    "scripts",
    "env",
];

/// Looks a role or module up by name, then picks the version.
pub(crate) fn find(
    kind: &str,
    index: &BTreeMap<String, Versions>,
    name: &str,
    version: Option<&str>,
) -> Result<(PathBuf, Option<String>), String> {
    let versions = index.get(name).ok_or_else(|| {
        let known = index.keys().map(String::as_str);
        format!("unknown {kind} `{name}`{}", candidates(known, name))
    })?;
    pick(versions, version).map_err(|have| {
        format!(
            "{kind} `{name}` has no version {}{have}",
            version.unwrap_or("")
        )
    })
}

/// Picks `wanted` (the highest version it prefixes), else the highest version.
fn pick(versions: &Versions, wanted: Option<&str>) -> Result<(PathBuf, Option<String>), String> {
    match (versions, wanted) {
        (Versions::Single(p), None) => Ok((p.clone(), None)),
        (Versions::Single(p), Some(v)) => Ok((p.clone(), Some(v.to_string()))),
        (Versions::Many(list), None) => {
            let (v, p) = list.last().expect("a versioned directory has versions");
            Ok((p.clone(), Some(v.clone())))
        }
        (Versions::Many(list), Some(want)) => list
            .iter()
            .rev()
            .find(|(v, _)| v == want || v.starts_with(&format!("{want}.")))
            .map(|(v, p)| (p.clone(), Some(v.clone())))
            .ok_or_else(|| {
                let have: Vec<&str> = list.iter().map(|(v, _)| v.as_str()).collect();
                format!(" (available: {})", have.join(", "))
            }),
    }
}

/// Orders versions numerically part by part (`1.10` after `1.9`).
pub(crate) fn cmp_versions(a: &str, b: &str) -> Ordering {
    let mut pa = a.split('.');
    let mut pb = b.split('.');
    loop {
        match (pa.next(), pb.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => {
                let ord = match (x.parse::<u64>(), y.parse::<u64>()) {
                    (Ok(x), Ok(y)) => x.cmp(&y),
                    _ => x.cmp(y),
                };
                if ord != Ordering::Equal {
                    return ord;
                }
            }
        }
    }
}

/// The site's roles: `roles/<role>.toml` or `roles/<role>/<version>.toml`. A role that is
/// both, or a directory without versions, is an error pushed on `errors`.
pub(crate) fn index_roles(
    site: &Path,
    errors: &mut Vec<SiteError>,
) -> Result<BTreeMap<String, Versions>, SiteErrors> {
    let dir = site.join("roles");
    let mut out = BTreeMap::new();
    for name in strata_fs::list_dir(&dir)? {
        let path = dir.join(&name);
        if let Some(stem) = name.strip_suffix(".toml") {
            if strata_fs::is_dir(&dir.join(stem)) {
                errors.push(SiteError::in_file(
                    format!("roles/{name}"),
                    format!("role `{stem}` is both a file and a versioned directory roles/{stem}/"),
                ));
            }
            out.insert(stem.to_string(), Versions::Single(path));
        } else if strata_fs::is_dir(&path) {
            let mut versions: Vec<(String, PathBuf)> = strata_fs::list_dir(&path)?
                .into_iter()
                .filter_map(|f| {
                    f.strip_suffix(".toml")
                        .map(|v| (v.to_string(), path.join(&f)))
                })
                .collect();
            versions.sort_by(|a, b| cmp_versions(&a.0, &b.0));
            if versions.is_empty() {
                errors.push(SiteError::in_file(
                    format!("roles/{name}"),
                    "a role directory with no <version>.toml",
                ));
            } else {
                out.entry(name).or_insert(Versions::Many(versions));
            }
        }
    }
    Ok(out)
}

/// The site's modules: `modules/<module>/`, or `modules/<module>/<version>/` when the
/// module's directory holds none of [`MODULE_MARKERS`].
pub(crate) fn index_modules(site: &Path) -> Result<BTreeMap<String, Versions>, SiteErrors> {
    let dir = site.join("modules");
    let mut out = BTreeMap::new();
    for name in strata_fs::list_dir(&dir)? {
        let path = dir.join(&name);
        if !strata_fs::is_dir(&path) {
            continue;
        }
        let entries = strata_fs::list_dir(&path)?;
        if entries.iter().any(|e| MODULE_MARKERS.contains(&e.as_str())) || entries.is_empty() {
            out.insert(name, Versions::Single(path));
        } else {
            let mut versions: Vec<(String, PathBuf)> = entries
                .into_iter()
                .filter(|v| strata_fs::is_dir(&path.join(v)))
                .map(|v| (v.clone(), path.join(v)))
                .collect();
            versions.sort_by(|a, b| cmp_versions(&a.0, &b.0));
            out.insert(name, Versions::Many(versions));
        }
    }
    Ok(out)
}

/// A reference `name` or `name@version`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Ref {
    pub name: String,
    pub version: Option<String>,
}

impl Ref {
    /// Parses `name[@version]`; names are lowercase letters, digits, `-` and `_`.
    pub fn parse(s: &str) -> Result<Ref, String> {
        let (name, version) = match s.split_once('@') {
            Some((n, v)) if !v.is_empty() => (n, Some(v.to_string())),
            Some(_) => return Err(format!("`{s}`: empty version after '@'")),
            None => (s, None),
        };
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_')
        {
            return Err(format!(
                "`{s}`: names are lowercase letters, digits, '-' and '_'"
            ));
        }
        Ok(Ref {
            name: name.to_string(),
            version,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_order_numerically() {
        let mut v = vec!["1.10", "1.9", "2", "1.9.1"];
        v.sort_by(|a, b| cmp_versions(a, b));
        assert_eq!(v, ["1.9", "1.9.1", "1.10", "2"]);
    }

    #[test]
    fn refs_parse() {
        assert_eq!(
            Ref::parse("nginx@1.2").unwrap().version.as_deref(),
            Some("1.2")
        );
        assert!(Ref::parse("Nginx").is_err());
        assert!(Ref::parse("x@").is_err());
    }

    #[test]
    fn a_prefix_picks_the_highest_matching_version() {
        let v = Versions::Many(vec![
            ("1.9".into(), "a".into()),
            ("2.0".into(), "b".into()),
            ("2.1".into(), "c".into()),
            ("20".into(), "d".into()),
        ]);
        assert_eq!(pick(&v, Some("2")).unwrap().1.as_deref(), Some("2.1"));
        assert_eq!(pick(&v, None).unwrap().1.as_deref(), Some("20"));
        assert!(pick(&v, Some("3")).is_err());
    }
}
