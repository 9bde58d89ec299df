//! The maintainer scripts of a module's package, and the program its `postinst` runs.
//!
//! dpkg does the rest of the "down": on an upgrade it removes the files the new version
//! no longer has, and on removal every file. Conffiles it keeps; so the scripts take away
//! the conffiles a new version dropped, as `dpkg-maintscript-helper rm_conffile` does
//! (unmodified: removed; modified: kept as `FILE.dpkg-bak`), with the list of those
//! computed when the package is installed, since an export knows no earlier version.

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

/// For every conffile of the installed version dpkg lists, the lines between `do` and
/// `done` run with `$path`, `$sum` and `$flag`.
fn each_conffile(body: &str) -> String {
    format!(
        "\tdpkg-query -W -f='${{Conffiles}}\\n' \"$pkg\" 2>/dev/null | \
         while read -r path sum flag; do\n\t\t[ -n \"$path\" ] || continue\n{body}\tdone\n"
    )
}

/// `preinst`: on an upgrade (or a downgrade, or an install over a removed version's
/// conffiles), sets aside each conffile the installed version has and this one has not.
pub(crate) fn preinst(package: &str, conffiles: &[String]) -> String {
    let keep: String = conffiles.iter().map(|c| format!("{c}\n")).collect();
    format!(
        "{HEADER}pkg={}\nkeep='\n{keep}'\n\
         if {{ [ \"$1\" = install ] || [ \"$1\" = upgrade ]; }} && [ -n \"$2\" ]; then\n{}fi\n",
        quote(package),
        each_conffile(
            "\t\t[ \"$flag\" != obsolete ] || continue\n\
             \t\tcase \"$keep\" in *\"\n$path\n\"*) continue ;; esac\n\
             \t\tdpkg-maintscript-helper rm_conffile \"$path\" \"$2\" \"$pkg\" -- \"$@\"\n"
        )
    )
}

/// `postinst`: on `configure`, removes the conffiles set aside (and the directories they
/// leave empty that no package has), gives owners and modes, then runs the module's
/// scripts.
pub(crate) fn postinst(package: &str, owners: &[Owner], runner: Option<&str>) -> String {
    let mut body = String::from("\tif [ -n \"$2\" ]; then\n");
    body.push_str(&each_conffile(
        "\t\t[ \"$flag\" = obsolete ] || continue\n\
         \t\tdpkg-maintscript-helper rm_conffile \"$path\" \"$2\" \"$pkg\" -- \"$@\"\n\
         \t\tdir=${path%/*}\n\
         \t\twhile [ -n \"$dir\" ] && ! dpkg-query -S \"$dir\" >/dev/null 2>&1 && \
         rmdir \"$dir\" 2>/dev/null; do\n\t\t\tdir=${dir%/*}\n\t\tdone\n",
    ));
    body.push_str("\tfi\n");
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

/// `postrm`: when an install or upgrade fails, puts back what `preinst` set aside.
pub(crate) fn postrm(package: &str) -> String {
    format!(
        "{HEADER}pkg={}\n\
         if {{ [ \"$1\" = abort-install ] || [ \"$1\" = abort-upgrade ]; }} && [ -n \"$2\" ]; then\n{}fi\n",
        quote(package),
        each_conffile(
            "\t\tdpkg-maintscript-helper rm_conffile \"$path\" \"$2\" \"$pkg\" -- \"$@\"\n"
        )
    )
}

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
    fn scripts_parse_as_shell() {
        let owners = [Owner {
            path: "/var/www".into(),
            owner: "www-data".into(),
            group: "www-data".into(),
            mode: 0o750,
        }];
        for text in [
            preinst("strata-acme-app", &["/etc/app/app.conf".into()]),
            postinst(
                "strata-acme-app",
                &owners,
                Some("/usr/lib/strata-acme-app/run"),
            ),
            postrm("strata-acme-app"),
        ] {
            let status = std::process::Command::new("sh")
                .args(["-n", "-c", &text])
                .status()
                .unwrap();
            assert!(status.success(), "{text}");
        }
    }
}
