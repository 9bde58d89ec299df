//! `peak` reports a command's own peak memory, not its parent's (the bug it fixes: every
//! process started straight from the harness showed the harness's size), its wall time and
//! its exit code.
#![allow(clippy::disallowed_methods)]

use std::process::Command;

fn peak(args: &[&str]) -> (f64, u64, i32) {
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
