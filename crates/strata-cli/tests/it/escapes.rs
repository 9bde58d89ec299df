//! Strings that come from a site, a target or a script never drive the terminal: control
//! characters are escaped in text output (JSON escapes them already); and step names in
//! `strata report` are never cut.

use std::os::unix::fs::PermissionsExt;

use strata_test::require_busybox_root;

use crate::env;

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn escape_sequences_from_site_target_and_scripts_are_shown_escaped() {
    let e = env();
    require_busybox_root!(e);
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", "modules = [\"app\"]\n")
        .write("modules/app/module.toml", "")
        // A file name, a new content and an old content holding escape sequences.
        .write("modules/app/files/etc/evil\x1b]0;owned\x07name", "x\n")
        .write(
            "modules/app/files/etc/motd",
            "hello \x1b[2J\x1b[1;1H world\n",
        )
        .write_root("etc/motd", "old \x1b[31m red\n", 0o644);
    let script = e.site().join("modules/app/scripts/10-x.sh");
    strata_test::write(
        &script,
        "#!/bin/sh\nprintf 'out \\033[2K\\033[1A hidden\\n'\nprintf 'err \\033]0;title\\007\\n' >&2\nsystemctl restart \"$(printf 'a\\033[2Kb')\"\n",
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    for args in [
        &["plan", "--node", "n1"][..],
        &["apply", "--node", "n1"][..],
        &["report"][..],
    ] {
        let run = e.cmd(args).output().expect("run strata");
        let (out, err) = (&run.stdout, &run.stderr);
        assert!(
            !out.contains(&0x1b) && !err.contains(&0x1b) && !out.contains(&0x07),
            "{args:?} printed a raw escape:\n{}\n{}",
            String::from_utf8_lossy(out),
            String::from_utf8_lossy(err)
        );
        if args[0] == "plan" {
            let text = String::from_utf8_lossy(out);
            for shown in [
                "/etc/evil\\u{1b}]0;owned\\u{7}name",
                "hello \\u{1b}[2J",
                "out \\u{1b}[2K",
                "would run systemctl restart a\\u{1b}[2Kb",
            ] {
                assert!(text.contains(shown), "{shown} not in:\n{text}");
            }
        }
    }
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn report_never_cuts_a_step_name() {
    let e = env();
    require_busybox_root!(e);
    let name = "10-restart-the-service-after-its-configuration-changed.sh";
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", "modules = [\"app\"]\n")
        .write("modules/app/module.toml", "");
    let script = e.site().join("modules/app/scripts").join(name);
    strata_test::write(&script, "#!/bin/sh\nmkdir -p /etc\necho hi > /etc/hi\n");
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    e.run(&["apply", "--node", "n1"]).code(0);
    let report = e.run(&["report"]).code(0);
    assert!(
        report.stdout.contains(&format!("run app scripts/{name}")),
        "{}",
        report.stdout
    );
}
