//! `peak` reports a command's own peak memory, not its parent's (the bug it fixes: every
//! process started straight from the harness showed the harness's size), its wall time and
//! its exit code.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

fn peak(args: &[&str]) -> (f64, u64, i32) {
    let (secs, rss, code, _, _) = peak_cpu(args);
    (secs, rss, code)
}

fn peak_cpu(args: &[&str]) -> (f64, u64, i32, f64, f64) {
    let out = Command::new(env!("CARGO_BIN_EXE_peak"))
        .args(args)
        .output()
        .expect("run peak");
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).unwrap();
    let f: Vec<&str> = text.split_whitespace().collect();
    (
        f[0].parse().unwrap(),
        f[1].parse().unwrap(),
        f[2].parse().unwrap(),
        f[3].parse().unwrap(),
        f[4].parse().unwrap(),
    )
}

#[test]
fn a_small_command_is_not_charged_its_parents_memory() {
    // This process holds 96 MiB, touched, while it starts `peak`.
    let big = vec![1u8; 96 << 20];
    let (secs, rss, code) = peak(&["true"]);
    assert!(rss < 16 << 20, "true was charged {} MiB", rss >> 20);
    assert!(secs > 0.0 && secs < 10.0);
    assert_eq!(code, 0);
    assert_eq!(big.iter().map(|b| *b as usize).sum::<usize>(), 96 << 20);
}

#[test]
fn a_command_that_grows_is_charged_its_growth_and_its_exit_code_comes_through() {
    // sort holds its whole input: one 48 MiB line.
    let (_, rss, code) = peak(&[
        "sh",
        "-c",
        "head -c 48M /dev/zero | tr '\\0' a | sort >/dev/null; exit 3",
    ]);
    assert!(rss >= 48 << 20, "only {} MiB", rss >> 20);
    assert_eq!(code, 3);
}

#[test]
fn the_cpu_of_waited_for_descendants_is_counted_and_told_apart_and_stdout_can_go_to_a_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    // The busy loop runs in a subshell: a child of the command, which waits for it.
    let (secs, _, code, cpu, children) = peak_cpu(&[
        "--stdout",
        out.to_str().unwrap(),
        "sh",
        "-c",
        "(i=0; while [ $i -lt 300000 ]; do i=$((i+1)); done); echo done",
    ]);
    assert_eq!(code, 0);
    assert!(
        cpu > 0.05 && cpu <= secs * 2.0 + 0.05,
        "cpu {cpu} s in {secs} s"
    );
    // Nearly all of it in the subshell, the command's child (to a clock tick or two).
    assert!(
        children > 0.0 && children <= cpu + 0.02 && cpu - children < 0.03,
        "{children} of {cpu}"
    );
    assert_eq!(std::fs::read_to_string(&out).unwrap(), "done\n");
}
