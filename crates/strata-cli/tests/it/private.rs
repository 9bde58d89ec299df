//! Nothing strata keeps leaks to the target's other users (issue 16): its state under
//! `/var/lib/strata` (reports with what scripts printed, originals of files such as
//! `/etc/shadow` in the store, generations, the journal) and its cache (downloads, what
//! compiles learnt of the site) are root's alone: files 0600, directories 0700.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use strata_test::{TestEnv, require_busybox_root};

use crate::env;

/// Every file below `dir` that others (or the group) could read or enter, with its mode.
fn open_to_others(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in walkdir::WalkDir::new(dir) {
        let entry = entry.expect("walk");
        let md = entry.path().symlink_metadata().expect("stat");
        if md.file_type().is_symlink() {
            continue;
        }
        let mode = md.permissions().mode() & 0o7777;
        let want = if md.is_dir() { 0o700 } else { 0o600 };
        if mode != want {
            out.push(format!("{} {mode:o}", entry.path().display()));
        }
    }
    out
}

fn mode(p: &Path) -> u32 {
    p.symlink_metadata().expect("stat").permissions().mode() & 0o7777
}

/// A node `n1` whose module `app` renders a parameter into a file and replaces a private
/// file of the target (so that its original goes into the store).
fn site(e: &TestEnv) {
    e.write("strata.toml", "[site]\nname = \"t\"\n")
        .write(
            "nodes/n1.toml",
            "modules = [\"app\"]\n[params]\napp.token = \"s3cret-token\"\n",
        )
        .write(
            "modules/app/module.toml",
            "[params]\ntoken = \"\"\n\n[[file]]\npath = \"/etc/shadow\"\nmode = \"0600\"\n",
        )
        .write(
            "modules/app/templates/etc/app.conf.j2",
            "token {{ app.token }}\n",
        )
        .write("modules/app/files/etc/shadow", "root:new:1::::::\n")
        .write_root("etc/shadow", "root:$6$original-hash:1::::::\n", 0o600);
}

#[test]
fn the_state_and_cache_of_an_apply_are_root_s_alone() {
    let e = env();
    site(&e);
    std::fs::create_dir_all(e.root().join("var/lib")).expect("var/lib");
    // A site file changed within the file system's current clock tick is never cached
    // (docs/state.md): let the tick pass, so that the compile cache is written.
    std::thread::sleep(std::time::Duration::from_millis(100));
    let cache = e.cache();
    e.run(&["apply", "--node", "n1"]).code(0);
    let state = e.root().join("var/lib/strata");
    assert_eq!(mode(&state), 0o700, "the state directory");
    // What the test relies on is there: the report, a generation, the original of the
    // shadow file in the store.
    assert!(state.join("reports/1.json").is_file());
    assert!(state.join("generations/1.json").is_file());
    let originals = walkdir::WalkDir::new(state.join("store"))
        .into_iter()
        .filter_map(Result::ok)
        .filter(|f| f.file_type().is_file())
        .filter(|f| {
            std::fs::read(f.path())
                .unwrap_or_default()
                .windows(8)
                .any(|w| w == b"original")
        })
        .count();
    assert_eq!(originals, 1, "the original /etc/shadow is in the store");
    assert_eq!(open_to_others(&state), Vec::<String>::new());
    // The compile cache knows the rendered file's hash: private too.
    assert!(cache.join("compiled").is_dir());
    assert_eq!(
        open_to_others(&cache.join("compiled")),
        Vec::<String>::new()
    );
    // The system directories strata made on the way stay open, as they always are.
    assert_eq!(mode(&e.root().join("var/lib")), 0o755);
}

#[test]
fn a_state_directory_left_open_by_an_older_strata_is_closed() {
    let e = env();
    site(&e);
    let state = e.root().join("var/lib/strata");
    std::fs::create_dir_all(&state).expect("mkdir");
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    e.run(&["apply", "--node", "n1"]).code(0);
    assert_eq!(mode(&state), 0o700);
    assert_eq!(open_to_others(&state), Vec::<String>::new());
}

#[test]
#[cfg_attr(
    not(feature = "host-tests"),
    ignore = "needs root and /bin/busybox: scripts/test provides them (feature host-tests)"
)]
fn the_report_of_a_script_s_output_is_root_s_alone() {
    let e = env();
    require_busybox_root!(e);
    site(&e);
    std::fs::create_dir_all(e.root().join("var/lib")).expect("var/lib");
    let script = e.site().join("modules/app/scripts/10-show.sh");
    strata_test::write(
        &script,
        "#!/bin/sh\necho \"token is $STRATA_P_app_token\"\ntouch /etc/app.stamp\n",
    );
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    e.run(&["apply", "--node", "n1"]).code(0);
    let state = e.root().join("var/lib/strata");
    let report = std::fs::read_to_string(state.join("reports/1.json")).expect("report");
    assert!(report.contains("token is s3cret-token"), "{report}");
    assert_eq!(mode(&state.join("reports/1.json")), 0o600);
    assert_eq!(open_to_others(&state), Vec::<String>::new());
}
