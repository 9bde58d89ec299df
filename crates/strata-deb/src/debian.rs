//! Debian's rules for names, versions and the control file.

use crate::ExportError;

/// The prefix of every package of a site: `strata-` and the site's name, lowercased,
/// each character Debian refuses in a name written `-`.
pub(crate) fn site_prefix(site: &str) -> Result<String, ExportError> {
    let name: String = site
        .to_lowercase()
        .chars()
        .map(|c| match c {
            'a'..='z' | '0'..='9' | '+' | '.' | '-' => c,
            _ => '-',
        })
        .collect();
    let name = name.trim_matches('-');
    if name.is_empty() {
        return Err(ExportError::Invalid(format!(
            "the site's name `{site}` has nothing Debian takes in a package name \
             (a-z, 0-9, +, ., -)"
        )));
    }
    Ok(format!("strata-{name}"))
}

/// A module's or role's package name: module and role names are lowercase letters,
/// digits, `-` and `_`, and Debian's names take no `_`.
pub(crate) fn package_name(prefix: &str, kind: Option<&str>, name: &str) -> String {
    let name = name.replace('_', "-");
    match kind {
        Some(k) => format!("{prefix}-{k}-{name}"),
        None => format!("{prefix}-{name}"),
    }
}

/// A module's or role's Debian version: its own, or `0` when it has none. Debian's
/// version must start with a digit and hold only alphanumerics and `.+~-`.
pub(crate) fn version(what: &str, version: Option<&str>) -> Result<String, ExportError> {
    let Some(v) = version else {
        return Ok("0".to_string());
    };
    let valid = v.starts_with(|c: char| c.is_ascii_digit())
        && v.chars()
            .all(|c| c.is_ascii_alphanumeric() || ".+~-".contains(c));
    if !valid {
        return Err(ExportError::Invalid(format!(
            "{what}: version `{v}` is not a Debian version (it must start with a digit and \
             hold only letters, digits and . + ~ -)"
        )));
    }
    Ok(v.to_string())
}

/// Splits `name@version` (a catalog's module or role id).
pub(crate) fn split_id(id: &str) -> (&str, Option<&str>) {
    match id.split_once('@') {
        Some((n, v)) => (n, Some(v)),
        None => (id, None),
    }
}

/// The fields of a binary package's `DEBIAN/control`.
#[derive(Debug)]
pub(crate) struct Control<'a> {
    pub package: &'a str,
    pub version: &'a str,
    pub maintainer: &'a str,
    pub installed_kib: u64,
    pub depends: &'a [String],
    pub summary: &'a str,
    pub description: &'a str,
}

impl Control<'_> {
    /// The control file: one line per field, the long description folded below the
    /// summary (an empty line is ` .`).
    pub fn text(&self) -> String {
        let mut out = format!(
            "Package: {}\nVersion: {}\nArchitecture: all\nMaintainer: {}\n\
             Installed-Size: {}\nSection: admin\nPriority: optional\n",
            self.package,
            self.version,
            one_line(self.maintainer),
            self.installed_kib
        );
        if !self.depends.is_empty() {
            out.push_str(&format!("Depends: {}\n", self.depends.join(", ")));
        }
        out.push_str(&format!("Description: {}\n", one_line(self.summary)));
        for line in self.description.lines() {
            let line = line.trim_end();
            if line.is_empty() {
                out.push_str(" .\n");
            } else {
                out.push_str(&format!(" {line}\n"));
            }
        }
        out
    }
}

/// A field's value on one line (a newline would start another field).
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_lowercase_and_prefixed_with_the_site() {
        assert_eq!(site_prefix("Acme_Corp").unwrap(), "strata-acme-corp");
        assert_eq!(
            package_name("strata-acme", None, "nginx_conf"),
            "strata-acme-nginx-conf"
        );
        assert_eq!(
            package_name("strata-acme", Some("role"), "web"),
            "strata-acme-role-web"
        );
        assert!(site_prefix("___").is_err());
    }

    #[test]
    fn versions_are_debians_or_refused() {
        assert_eq!(version("module a", Some("1.10")).unwrap(), "1.10");
        assert_eq!(version("module a", None).unwrap(), "0");
        let err = version("module a@v2", Some("v2")).unwrap_err().to_string();
        assert!(err.contains("not a Debian version"), "{err}");
        assert!(version("module a", Some("1 2")).is_err());
    }

    #[test]
    fn a_control_file_folds_its_description_and_keeps_fields_on_one_line() {
        let text = Control {
            package: "strata-acme-app",
            version: "2.0",
            maintainer: "Ops\n<ops@acme>",
            installed_kib: 4,
            depends: &["strata-acme-base (= 0)".to_string(), "nginx".to_string()],
            summary: "module app 2.0",
            description: "first\n\nsecond",
        }
        .text();
        assert_eq!(
            text,
            "Package: strata-acme-app\nVersion: 2.0\nArchitecture: all\n\
             Maintainer: Ops <ops@acme>\nInstalled-Size: 4\nSection: admin\n\
             Priority: optional\nDepends: strata-acme-base (= 0), nginx\n\
             Description: module app 2.0\n first\n .\n second\n"
        );
    }
}
