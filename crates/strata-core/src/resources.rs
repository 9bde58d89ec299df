//! The resources a module declares that strata brings about with the target's own tools,
//! inside the sandbox: packages, groups, users, services and lines. Their "down" is the
//! file-level one: every file their tools changed is restored when they are undeclared.

use std::collections::BTreeMap;

use regex::Regex;
use serde::{Deserialize, Serialize};
use strata_types::TargetPath;
use toml::Spanned;

use crate::error::SiteError;
use crate::tomlfile::TomlFile;

/// `[[package]]`: installed through the target's package manager.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Package {
    /// The package name.
    pub name: String,
    /// An exact version; any installed version satisfies a package without one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
}

/// `[[group]]`: made with `groupadd`, changed with `groupmod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Group {
    /// The group name.
    pub name: String,
    /// Its id (the tools pick one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gid: Option<u32>,
    /// A system group (an id from the system range).
    #[serde(default)]
    pub system: bool,
}

/// `[[user]]`: made with `useradd`, changed with `usermod`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct User {
    /// The login name.
    pub name: String,
    /// Its id (the tools pick one when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<u32>,
    /// Primary group (default: a group of the user's name, as `useradd` does).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// Supplementary groups: exactly these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
    /// Login shell.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<String>,
    /// Home directory (default `/home/NAME`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub home: Option<String>,
    /// The GECOS comment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// A system account: an id from the system range and no home directory made.
    #[serde(default)]
    pub system: bool,
}

/// `[[service]]`: enabled or disabled, restarted after commits that change its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// The unit (`nginx` means `nginx.service`).
    pub name: String,
    /// Enabled at boot (default), or disabled.
    #[serde(default = "yes")]
    pub enable: bool,
    /// Globs: a commit that changed a matching path restarts the service after it.
    #[serde(default)]
    pub restart_on: Vec<String>,
    /// Globs: a commit that changed a matching path reloads the service after it.
    #[serde(default)]
    pub reload_on: Vec<String>,
}

fn yes() -> bool {
    true
}

/// `[[line]]`: a line present in a file, or replacing the line `match` finds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    /// The file.
    pub path: String,
    /// The line.
    pub line: String,
    /// A regular expression: the one line it matches is replaced.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
}

/// Everything of this kind one module declares, validated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Declared {
    /// Packages, in declaration order.
    pub packages: Vec<Package>,
    /// Groups.
    pub groups: Vec<Group>,
    /// Users.
    pub users: Vec<User>,
    /// Services.
    pub services: Vec<Service>,
    /// Lines.
    pub lines: Vec<Line>,
}

impl Declared {
    /// Whether the module declares none of them.
    pub fn is_empty(&self) -> bool {
        self.packages.is_empty()
            && self.groups.is_empty()
            && self.users.is_empty()
            && self.services.is_empty()
            && self.lines.is_empty()
    }
}

/// Checks each declaration of a module; every error is located in its `module.toml`.
pub(crate) fn validate<T>(
    file: &TomlFile<T>,
    packages: &[Spanned<Package>],
    groups: &[Spanned<Group>],
    users: &[Spanned<User>],
    services: &[Spanned<Service>],
    lines: &[Spanned<Line>],
) -> Result<Declared, Vec<SiteError>> {
    let mut errors = Vec::new();
    let mut check = |span: std::ops::Range<usize>, problems: Vec<String>| {
        errors.extend(problems.into_iter().map(|p| file.error_at(span.start, p)));
    };
    for p in packages {
        check(p.span(), p.get_ref().problems());
    }
    for g in groups {
        check(g.span(), g.get_ref().problems());
    }
    for u in users {
        check(u.span(), u.get_ref().problems());
    }
    for s in services {
        check(s.span(), s.get_ref().problems());
    }
    for l in lines {
        check(l.span(), l.get_ref().problems());
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Declared {
        packages: plain(packages),
        groups: plain(groups),
        users: plain(users),
        services: plain(services),
        lines: plain(lines),
    })
}

impl Package {
    /// What is wrong with the declaration, if anything.
    fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = bad_name("package", &self.name, package_name)
            .into_iter()
            .collect();
        if let Some(version) = &self.version
            && !(version.chars().next().is_some_and(|c| c.is_ascii_digit())
                && version
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || ".+~:-".contains(c)))
        {
            out.push(format!(
                "invalid version `{version}` for package `{}`",
                self.name
            ));
        }
        out
    }
}

impl Group {
    /// What is wrong with the declaration, if anything.
    fn problems(&self) -> Vec<String> {
        let gid = self.gid.and_then(|id| bad_id("gid", &id.to_string()));
        bad_name("group", &self.name, account_name)
            .into_iter()
            .chain(gid)
            .collect()
    }
}

impl User {
    /// What is wrong with the declaration, if anything.
    fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = bad_name("user", &self.name, account_name)
            .into_iter()
            .chain(self.uid.and_then(|id| bad_id("uid", &id.to_string())))
            .collect();
        for g in self.group.iter().chain(self.groups.iter().flatten()) {
            out.extend(bad_name("group", g, account_name));
        }
        for (what, path) in [("shell", &self.shell), ("home", &self.home)] {
            if let Some(p) = path
                && (!p.starts_with('/') || p.contains([':', '\n']))
            {
                out.push(format!(
                    "user `{}`: {what} `{p}` must be an absolute path",
                    self.name
                ));
            }
        }
        if let Some(c) = &self.comment
            && c.contains([':', '\n'])
        {
            out.push(format!(
                "user `{}`: a comment cannot hold `:` or a newline",
                self.name
            ));
        }
        out
    }
}

impl Service {
    /// What is wrong with the declaration, if anything.
    fn problems(&self) -> Vec<String> {
        let mut out: Vec<String> = bad_name("service", &self.name, service_name)
            .into_iter()
            .collect();
        for g in self.restart_on.iter().chain(&self.reload_on) {
            if let Err(e) = globset::Glob::new(g) {
                out.push(format!("service `{}`: bad glob `{g}`: {e}", self.name));
            }
        }
        out
    }
}

impl Line {
    /// What is wrong with the declaration, if anything.
    fn problems(&self) -> Vec<String> {
        let mut out = Vec::new();
        if let Err(e) = TargetPath::parse(&self.path) {
            out.push(format!("[[line]] path `{}`: {e}", self.path));
        }
        if self.line.contains(['\n', '\r']) {
            out.push("[[line]] line cannot hold a newline".to_string());
        }
        if let Some(p) = &self.pattern
            && let Err(e) = Regex::new(p)
        {
            out.push(format!(
                "[[line]] match `{p}` is not a valid regular expression: {e}"
            ));
        }
        out
    }
}

fn plain<T: Clone>(v: &[Spanned<T>]) -> Vec<T> {
    v.iter().map(|x| x.get_ref().clone()).collect()
}

/// Why a numeric owner, group or id (`what`) cannot be used, if it cannot: 4294967295 is
/// `(uid_t)-1`, which chown takes as "leave unchanged", so a path declared with it would
/// never get it and show as drift on every plan; and ids from `strata_fs::PENDING` up are
/// what strata stands in with for users and groups the site makes.
pub(crate) fn bad_id(what: &str, value: &str) -> Option<String> {
    let id: u32 = value.parse().ok()?;
    if id == u32::MAX {
        Some(format!(
            "{what} `{value}` is the id -1, which chown takes as \"leave unchanged\": name \
             the user or group, or give a real id"
        ))
    } else if id >= strata_fs::PENDING {
        Some(format!(
            "{what} `{value}`: ids from {} up are reserved for the users and groups a site \
             makes",
            strata_fs::PENDING
        ))
    } else {
        None
    }
}

fn bad_name(kind: &str, name: &str, ok: fn(&str) -> bool) -> Option<String> {
    (!ok(name)).then(|| format!("invalid {kind} name `{name}`"))
}

/// Debian policy: lowercase letters, digits, `+`, `-`, `.`; at least two, a letter or
/// digit first.
fn package_name(n: &str) -> bool {
    n.len() >= 2
        && n.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && n.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.".contains(c))
}

/// What `useradd` accepts by default: a lowercase letter or `_` first, then lowercase
/// letters, digits, `_` and `-` (a final `$` for machine accounts), at most 32.
fn account_name(n: &str) -> bool {
    let body = n.strip_suffix('$').unwrap_or(n);
    !body.is_empty()
        && n.len() <= 32
        && body.starts_with(|c: char| c.is_ascii_lowercase() || c == '_')
        && body
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "_-".contains(c))
}

/// A systemd unit name.
fn service_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 255
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || ":_.@-\\".contains(c))
}

/// The same package, group, user or service declared by several modules is one resource
/// when the declarations agree; lines in one file must differ. Errors name both modules.
pub(crate) fn conflicts(modules: &[(String, &Declared)]) -> Vec<SiteError> {
    let mut errors = Vec::new();
    let mut seen: BTreeMap<(String, String), (String, String)> = BTreeMap::new();
    let mut same = |kind: &str, key: String, what: String, module: &str| match seen
        .get(&(kind.to_string(), key.clone()))
    {
        Some((other, was)) if *was != what => errors.push(SiteError::new(format!(
            "{kind} `{key}` is declared differently by modules {other} and {module}"
        ))),
        Some((other, _)) if kind == "line" => errors.push(SiteError::new(format!(
            "{key} is managed by both modules {other} and {module}"
        ))),
        Some(_) => {}
        None => {
            seen.insert((kind.to_string(), key), (module.to_string(), what));
        }
    };
    for (module, d) in modules {
        for p in &d.packages {
            same("package", p.name.clone(), json(p), module);
        }
        for g in &d.groups {
            same("group", g.name.clone(), json(g), module);
        }
        for u in &d.users {
            same("user", u.name.clone(), json(u), module);
        }
        for s in &d.services {
            same("service", s.name.clone(), json(s), module);
        }
        for l in &d.lines {
            same(
                "line",
                format!("the line `{}` in {}", l.line, l.path),
                String::new(),
                module,
            );
            if let Some(p) = &l.pattern {
                same(
                    "line",
                    format!("the line matching `{p}` in {}", l.path),
                    String::new(),
                    module,
                );
            }
        }
    }
    errors
}

/// A declaration as JSON, to compare two of them.
fn json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(account_name("deploy") && account_name("_apt") && account_name("host$"));
        assert!(!account_name("Deploy") && !account_name("1abc") && !account_name("a b"));
        assert!(!account_name(&"a".repeat(33)));
        assert!(package_name("nginx") && package_name("libc6") && package_name("g++"));
        assert!(!package_name("Nginx") && !package_name("x") && !package_name("a;b"));
        assert!(service_name("nginx") && service_name("getty@tty1.service"));
        assert!(!service_name("a b") && !service_name(""));
    }

    #[test]
    fn conflicting_declarations_name_both_modules() {
        let a = Declared {
            packages: vec![Package {
                name: "nginx".into(),
                version: None,
            }],
            lines: vec![Line {
                path: "/etc/hosts".into(),
                line: "10.0.0.5 db".into(),
                pattern: None,
            }],
            ..Declared::default()
        };
        let mut b = a.clone();
        assert!(
            conflicts(&[("a".into(), &a), ("b".into(), &b.clone())])
                .iter()
                .any(|e| e.message.contains("managed by both modules a and b"))
        );
        b.lines.clear();
        assert!(conflicts(&[("a".into(), &a), ("b".into(), &b)]).is_empty());
        b.packages[0].version = Some("1.0".into());
        let e = conflicts(&[("a".into(), &a), ("b".into(), &b)]);
        assert_eq!(e.len(), 1);
        assert!(
            e[0].message
                .contains("package `nginx` is declared differently by modules a and b")
        );
    }
}
