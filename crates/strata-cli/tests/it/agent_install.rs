//! `strata agent install`: the agent's systemd service and timer written into a root
//! (as `--root` everywhere), checked by systemd's own tools (`systemctl --root`,
//! `systemd-analyze verify`): enabled, idempotent, arguments that cannot inject a
//! directive, and a unit it did not write kept.

use std::path::Path;
use std::process::Command;

use strata_snapshot::{KeyPair, Role};
use strata_test::TestEnv;

use crate::env;

const FP: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn install(e: &TestEnv, args: &[&str]) -> strata_test::Run {
    let root = e.root().display().to_string();
    let mut all = vec!["agent", "install", "--root", root.as_str()];
    all.extend_from_slice(args);
    e.run(&all)
}

fn units(e: &TestEnv) -> std::path::PathBuf {
    e.root().join("etc/systemd/system")
}

/// What `systemctl --root` says of strata's units: name and state.
fn states(root: &Path) -> Vec<(String, String)> {
    let out = Command::new("systemctl")
        .arg(format!("--root={}", root.display()))
        .args(["list-unit-files", "--no-legend", "strata-*"])
        .output()
        .expect("run systemctl");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| {
            let mut w = l.split_whitespace();
            (w.next().unwrap_or("").into(), w.next().unwrap_or("").into())
        })
        .collect()
}

fn read(e: &TestEnv, name: &str) -> String {
    std::fs::read_to_string(units(e).join(name)).unwrap_or_default()
}

#[test]
fn installs_enabled_units_systemd_accepts_and_runs_again_unchanged() {
    let e = env();
    let bin = e.path().join("strata bin$1");
    std::fs::copy(env!("CARGO_BIN_EXE_strata"), &bin).unwrap();
    let bin_arg = bin.display().to_string();
    let args = [
        "--from",
        "file:///srv/strata bucket",
        "--root-key",
        FP,
        "--node",
        "web1",
        "--interval",
        "10m",
        "--splay",
        "90s",
        "--bin",
        bin_arg.as_str(),
    ];
    let first = install(&e, &args).code(0);
    assert!(
        first
            .stdout
            .contains("written [ROOT]/etc/systemd/system/strata-agent.service"),
        "{}",
        first.stdout
    );
    assert!(
        first.stdout.contains("enabled strata-agent.timer"),
        "{}",
        first.stdout
    );
    let service = read(&e, "strata-agent.service");
    // The agent's command line, quoted as systemd reads it back (a space, a `$`).
    let want = format!(
        "\nExecStart=\"{bin_arg}\" agent --once --from \"file:///srv/strata bucket\" --root-key {FP} --node web1\n",
    );
    assert!(service.contains(&want), "{service}");
    // The packaged unit's own settings are there, not copied by hand.
    let packaged = include_str!("../../debian/strata-agent.service");
    for line in [
        "Type=oneshot",
        "TimeoutStartSec=1h",
        "After=network-online.target",
    ] {
        assert!(packaged.contains(line) && service.contains(line), "{line}");
    }
    let timer = read(&e, "strata-agent.timer");
    assert!(timer.contains("\nOnUnitInactiveSec=10min\n"), "{timer}");
    assert!(timer.contains("\nRandomizedDelaySec=90s\n"), "{timer}");
    assert!(timer.contains("\nWantedBy=timers.target\n"), "{timer}");

    // systemd: the timer enabled, the service started by it.
    assert_eq!(
        states(&e.root()),
        [
            ("strata-agent.service".to_string(), "static".to_string()),
            ("strata-agent.timer".to_string(), "enabled".to_string())
        ]
    );
    // systemd's own checker reads both units and finds the binary the service names
    // (the manual page it points to is not installed here: the package installs it).
    let verify = Command::new("systemd-analyze")
        .arg("verify")
        .arg(units(&e).join("strata-agent.service"))
        .arg(units(&e).join("strata-agent.timer"))
        .output()
        .expect("run systemd-analyze");
    let said = String::from_utf8_lossy(&verify.stderr);
    let complaints: Vec<&str> = said
        .lines()
        .filter(|l| l.contains("strata-agent") && !l.contains("'man strata-agent(1)'"))
        .collect();
    assert!(complaints.is_empty(), "systemd-analyze verify: {said}");
    let again = install(&e, &args).code(0);
    assert!(
        again
            .stdout
            .contains("unchanged [ROOT]/etc/systemd/system/strata-agent.service"),
        "{}",
        again.stdout
    );
    assert!(again.stdout.contains("already enabled"), "{}", again.stdout);
    assert_eq!(read(&e, "strata-agent.service"), service);

    // Run again with other settings: its own units are rewritten.
    install(
        &e,
        &[
            "--from",
            "s3://b/p",
            "--s3-endpoint",
            "http://127.0.0.1:9000",
            "--root-key",
            FP,
        ],
    )
    .code(0);
    let service = read(&e, "strata-agent.service");
    assert!(
        service.contains("--from s3://b/p --s3-endpoint http://127.0.0.1:9000 --root-key"),
        "{service}"
    );
    assert!(read(&e, "strata-agent.timer").contains("\nOnUnitInactiveSec=30min\n"));
}

#[test]
fn a_node_enrolled_with_a_server_polls_it_and_an_unenrolled_one_is_refused() {
    let e = env();
    let refused = install(&e, &[]).code(1);
    assert!(refused.stderr.contains("enroll"), "{}", refused.stderr);
    assert!(!units(&e).exists(), "nothing written");
    let keys = e.root().join("var/lib/strata/keys");
    std::fs::create_dir_all(&keys).unwrap();
    KeyPair::generate(Role::Node)
        .unwrap()
        .save(&keys.join("node.key"))
        .unwrap();
    std::fs::write(
        keys.join("enrollment.json"),
        format!(r#"{{"server":"https://strata.example:8443","node":"web1","root_key":"{FP}","ca":null}}"#),
    )
    .unwrap();
    install(&e, &[]).code(0);
    let service = read(&e, "strata-agent.service");
    assert!(
        service.contains(" agent --once --server https://strata.example:8443\n"),
        "{service}"
    );
    assert_eq!(states(&e.root())[1].1, "enabled");
}

#[test]
fn arguments_that_would_add_a_directive_are_refused_and_nothing_is_written() {
    let e = env();
    for args in [
        &[
            "--from",
            "file:///x\nExecStartPre=/bin/sh -c evil",
            "--root-key",
            FP,
        ][..],
        &["--from", "file:///x", "--root-key", "not-a-fingerprint"],
        &[
            "--from",
            "file:///x",
            "--root-key",
            FP,
            "--node",
            "web1\n[Service]",
        ],
        &["--from", "https://x", "--root-key", FP],
        &["--from", "file:///x", "--root-key", FP, "--interval", "1s"],
    ] {
        let out = install(&e, args).code(1);
        assert!(out.stderr.contains("error"), "{args:?}: {}", out.stderr);
        assert!(!units(&e).exists(), "{args:?}: nothing written");
    }
}

#[test]
fn a_unit_it_did_not_write_is_kept_unless_forced() {
    let e = env();
    e.write_root(
        "etc/systemd/system/strata-agent.timer",
        "[Timer]\nOnCalendar=daily\n",
        0o644,
    );
    let args = ["--from", "file:///srv/b", "--root-key", FP];
    let out = install(&e, &args).code(1);
    assert!(
        out.stderr.contains(
            "[ROOT]/etc/systemd/system/strata-agent.timer: not written by `strata agent install`"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(
        read(&e, "strata-agent.timer"),
        "[Timer]\nOnCalendar=daily\n"
    );
    assert!(
        !units(&e).join("strata-agent.service").exists(),
        "no half install"
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    install(&e, &forced).code(0);
    assert!(read(&e, "strata-agent.timer").contains("OnUnitInactiveSec=30min"));
    // A link in its place is replaced, never written through.
    let outside = e.path().join("outside.service");
    std::fs::write(&outside, "mine\n").unwrap();
    let service = units(&e).join("strata-agent.service");
    std::fs::remove_file(&service).unwrap();
    std::os::unix::fs::symlink(&outside, &service).unwrap();
    install(&e, &args).code(1);
    install(&e, &forced).code(0);
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "mine\n");
    assert!(!service.is_symlink());
}
