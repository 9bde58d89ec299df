//! The maintainer script of a module's package, and the program it runs.
//!
//! dpkg does most of the "down" itself: on an upgrade it removes the files the new
//! version no longer has, on removal every file but the conffiles, on purge those too.
//! The conffiles a new version dropped it keeps (as "obsolete") until purge; `postinst`
//! removes those still as installed, so that an upgrade takes away what the new version
//! lacks, and keeps an edited one (dpkg then removes it on purge), as strata keeps an
//! edited add-only file.

/// Quotes `s` for `sh`.
pub(crate) fn quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// An owner or mode dpkg cannot give from the package (it unpacks everything as
/// root:root): set by `postinst`, names resolved on the machine.
#[derive(Debug, Clone)]
pub(crate) struct Owner {
    pub path: String,
    pub owner: String,
    pub group: String,
    pub mode: u32,
}

const HEADER: &str = "#!/bin/sh\n# Made by `strata export deb` (docs/packaging.md).\nset -e\n";

/// `postinst`: on `configure`, removes the obsolete conffiles still as installed (and
/// the directories they leave empty that no package has), gives owners and modes, then
/// runs the module's scripts.
pub(crate) fn postinst(package: &str, owners: &[Owner], runner: Option<&str>) -> String {
    let mut body = String::from(OBSOLETE);
    for o in owners {
        let path = quote(&o.path);
        body.push_str(&format!(
            "\tchown {} {path}\n\tchmod {:04o} {path}\n",
            quote(&format!("{}:{}", o.owner, o.group)),
            o.mode
        ));
    }
    if let Some(runner) = runner {
        body.push_str(&format!("\t{}\n", quote(runner)));
    }
    format!(
        "{HEADER}pkg={}\nif [ \"$1\" = configure ]; then\n{body}fi\n",
        quote(package)
    )
}

/// The conffiles dpkg lists as obsolete, removed when unmodified, then each directory
/// they leave that is empty and no package's.
const OBSOLETE: &str = r#"	dpkg-query -W -f='${Conffiles}\n' "$pkg" | while read -r path sum flag; do
		[ "$flag" = obsolete ] && [ -f "$path" ] || continue
		[ "$(md5sum < "$path" | cut -d' ' -f1)" = "$sum" ] || continue
		rm -f "$path"
		dir=${path%/*}
		while [ -n "$dir" ] && ! dpkg-query -S "$dir" >/dev/null 2>&1 && rmdir "$dir" 2>/dev/null; do
			dir=${dir%/*}
		done
	done
"#;

/// The program `postinst` runs: the module's scripts in order, each with what strata
/// gives a script (`STRATA_PARAMS`, `STRATA_P_*`, `STRATA_NODE`, …; `STRATA_ROOT` is
/// `/` and `STRATA_NOOP` 0). A parameter whose name is not a shell variable's is left
/// out of `STRATA_P_*` (it is in `STRATA_PARAMS`).
pub(crate) fn runner(vars: &[(String, String)], scripts: &[(String, String)]) -> String {
    let mut out = format!("{HEADER}cd /\n");
    for (k, v) in vars.iter().filter(|(k, _)| is_shell_name(k)) {
        out.push_str(&format!("export {k}={}\n", quote(v)));
    }
    for (name, path) in scripts {
        out.push_str(&format!("STRATA_SCRIPT={} {}\n", quote(name), quote(path)));
    }
    out
}

fn is_shell_name(s: &str) -> bool {
    s.starts_with(|c: char| c.is_ascii_alphabetic() || c == '_')
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_survives_a_single_quote() {
        assert_eq!(quote("it's"), r"'it'\''s'");
    }

    #[test]
    fn the_runner_exports_variables_and_runs_scripts_in_order() {
        let text = runner(
            &[
                ("STRATA_P_app_port".into(), "8080".into()),
                ("STRATA_P_bad name".into(), "x".into()),
            ],
            &[
                ("scripts/10-a".into(), "/usr/lib/p/scripts/10-a".into()),
                ("scripts/20-b".into(), "/usr/lib/p/scripts/20-b".into()),
            ],
        );
        assert!(text.contains("export STRATA_P_app_port='8080'\n"), "{text}");
        assert!(!text.contains("bad name"), "{text}");
        let a = text.find("10-a").unwrap();
        let b = text.find("20-b").unwrap();
        assert!(a < b, "{text}");
    }

    #[test]
    fn postinst_parses_as_shell() {
        let owners = [Owner {
            path: "/var/www".into(),
            owner: "www-data".into(),
            group: "www-data".into(),
            mode: 0o750,
        }];
        let text = postinst(
            "strata-acme-app",
            &owners,
            Some("/usr/lib/strata-acme-app/run"),
        );
        let status = std::process::Command::new("sh")
            .args(["-n", "-c", &text])
            .status()
            .unwrap();
        assert!(status.success(), "{text}");
    }
}
