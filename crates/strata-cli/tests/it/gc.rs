//! `strata gc` and the retention each apply runs (`[state] keep_generations`): old
//! generations go with what only they used, and every kept generation can still be rolled
//! back to, with every path still taken back.

use serde_json::Value;
use strata_test::TestEnv;

use crate::{assert_output, env};

pub const NODE: &str = "gc.test";
/// Files of the scenario site.
pub const FILES: usize = 40;

/// A file's content at a version: about 300 bytes, different for every file and version.
fn content(i: usize, v: u32) -> String {
    format!("f{i:02} v{v}\n{}\n", "x".repeat(300))
}

/// The site: its node gets one module with a file under /srv/gc for each version (file
/// `i` at `versions[i]`) and /etc/motd (whose original strata keeps when the root has one).
pub fn site(env: &TestEnv, versions: &[u32], keep: Option<u64>) {
    let _ = std::fs::remove_dir_all(env.site());
    let state = keep.map_or(String::new(), |k| {
        format!("[state]\nkeep_generations = {k}\n")
    });
    env.write("strata.toml", &format!("[site]\nname = \"gc\"\n{state}"));
    env.write(&format!("nodes/{NODE}.toml"), "modules = [\"files\"]\n");
    env.write("modules/files/module.toml", "description = \"files\"\n");
    env.write("modules/files/files/etc/motd", "managed by strata\n");
    for (i, v) in versions.iter().enumerate() {
        env.write(
            &format!("modules/files/files/srv/gc/f{i:02}"),
            &content(i, *v),
        );
    }
}

/// The node declares nothing any more: everything strata manages is taken back.
fn release_all(env: &TestEnv) {
    env.write(&format!("nodes/{NODE}.toml"), "modules = []\n");
    env.run(&["apply", "--node", NODE]).code(0);
}

/// The versions of the files at the end of [`scenario`].
pub const LAST: [u32; FILES] = {
    let mut v = [1; FILES];
    let mut i = 0;
    while i < 30 {
        v[i] = 4;
        i += 1;
    }
    v[0] = 5;
    v[1] = 5;
    v[2] = 6;
    v
};

/// Six generations whose objects end up every way a gc can meet them once the newest
/// two are kept: generation 1's pack (41 contents and motd's original) still needed for
/// a quarter of it, generation 2's pack needed for nothing, generation 3's loose objects
/// needed for nothing, generation 4's pack needed for 28 of 30 contents, generations 5
/// and 6 loose and needed. Returns the tree of the pristine root, then after each apply.
pub fn scenario(env: &TestEnv) -> Vec<String> {
    env.write_root("etc/motd", "Debian's own motd\n", 0o644);
    // strata's own state lives below /var/lib.
    std::fs::create_dir_all(env.root().join("var/lib")).unwrap();
    let mut trees = vec![env.tree()];
    let mut versions = [1u32; FILES];
    let steps: [(std::ops::Range<usize>, u32); 6] = [
        (0..0, 1),
        (0..30, 2),
        (0..4, 3),
        (0..30, 4),
        (0..2, 5),
        (2..3, 6),
    ];
    for (files, v) in steps {
        for f in files {
            versions[f] = v;
        }
        site(env, &versions, None);
        env.run(&["apply", "--node", NODE]).code(0);
        trees.push(env.tree());
    }
    assert_eq!(versions, LAST);
    trees
}

/// `generations --json`.
pub fn history(env: &TestEnv) -> Value {
    serde_json::from_str(&env.run(&["generations", "--json"]).code(0).stdout).unwrap()
}

/// The numbers of the generations listed.
pub fn listed(env: &TestEnv) -> Vec<u64> {
    history(env)["generations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["number"].as_u64().unwrap())
        .collect()
}

/// The store's size as `generations --json` reports it: (objects, bytes).
pub fn store_size(env: &TestEnv) -> (u64, u64) {
    let h = history(env);
    (
        h["store"]["objects"].as_u64().unwrap(),
        h["store"]["bytes"].as_u64().unwrap(),
    )
}

/// Whether the store holds this content, loose or in a pack, read from the disk.
pub fn store_holds(env: &TestEnv, content: &str) -> bool {
    let hash = blake3::hash(content.as_bytes());
    let hex = hash.to_hex();
    let store = env.root().join("var/lib/strata/store");
    if store.join(&hex[..2]).join(hex.as_str()).exists() {
        return true;
    }
    let Ok(packs) = std::fs::read_dir(store.join("packs")) else {
        return false;
    };
    packs
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().ends_with(".idx"))
        // The hash anywhere in an index (a record's first field, after the header line).
        .any(|e| (std::fs::read(e.path()).unwrap().windows(32)).any(|w| w == hash.as_bytes()))
}

/// Every file under the store, with its size, summed: what `du --apparent-size` says.
fn store_bytes_on_disk(env: &TestEnv) -> u64 {
    walkdir::WalkDir::new(env.root().join("var/lib/strata/store"))
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Removes what the module manages under /srv, so that a rollback must take every
/// content of the generation it goes back to from the store.
pub fn wipe_srv(env: &TestEnv) {
    std::fs::remove_dir_all(env.root().join("srv")).unwrap();
}

#[test]
fn retention_keeps_exactly_n_generations_and_what_only_older_ones_used_goes() {
    const KEEP: u64 = 3;
    let (kept, all) = (env(), env());
    // Each apply changes file 0 only: a new 300-byte content per generation. Few files,
    // so that every content is stored loose (packs are for the test below).
    let mut versions = [1u32; 4];
    let mut sizes = Vec::new();
    for v in 1..=7 {
        versions[0] = v;
        site(&kept, &versions, Some(KEEP));
        let run = kept.run(&["apply", "--node", NODE]).code(0);
        if v == 4 {
            assert_output!(run.stdout, @r#"
                modify    /srv/gc/f00  file content 2acae8cc → 2003d43c  (files)
                --- /srv/gc/f00
                +++ /srv/gc/f00
                @@ -1,2 +1,2 @@
                -f00 v3
                +f00 v4
                 xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx
                Applied to gc.test (production): 0 create, 1 modify, 0 remove, 0 restore, 7 unchanged; generation 4 recorded.
                Pruned generation 1; kept 2-4 (the newest 3).
                Store: 7 objects, 1.8 KiB (1866 bytes); removed 1 object, 308 B.
                "#);
        }
        site(&all, &versions, None);
        all.run(&["apply", "--node", NODE]).code(0);
        sizes.push(store_size(&kept));
    }
    assert_eq!(listed(&kept), [5, 6, 7]);
    assert_eq!(history(&kept)["pruned"], serde_json::json!([[1, 4]]));
    assert_eq!(listed(&all), [1, 2, 3, 4, 5, 6, 7], "the default keeps 50");
    for v in 1..=7 {
        assert_eq!(
            store_holds(&kept, &content(0, v)),
            v >= 5,
            "file 0 at version {v}"
        );
        assert!(store_holds(&all, &content(0, v)));
    }
    // Measured: exactly the four contents only generations 1 to 4 used are gone.
    let ((objects, bytes), (all_objects, all_bytes)) = (store_size(&kept), store_size(&all));
    assert_eq!(all_objects - objects, 4);
    let gone: u64 = (1..=4).map(|v| content(0, v).len() as u64).sum();
    assert_eq!(
        all_bytes - bytes,
        gone,
        "store bytes {bytes} against {all_bytes}"
    );
    assert_eq!(bytes, store_bytes_on_disk(&kept));
    // Once three generations are recorded, every apply leaves the store as big as it was.
    assert!(sizes[3..].iter().all(|s| *s == sizes[2]), "{sizes:?}");
    // Keeping one: the store shrinks by the two contents generations 5 and 6 had alone.
    kept.run(&["gc", "--keep", "1"]).code(0);
    let shrunk = store_size(&kept);
    assert_eq!(shrunk.0, objects - 2);
    assert_eq!(bytes - shrunk.1, 2 * content(0, 5).len() as u64);
    assert!(!store_holds(&kept, &content(0, 6)) && store_holds(&kept, &content(0, 7)));
}

#[test]
fn gc_keeps_what_a_rollback_to_the_oldest_kept_generation_needs() {
    let env = env();
    let trees = scenario(&env);
    let before = store_size(&env);
    let gc = env.run(&["gc", "--keep", "3", "--json"]).code(0);
    let gc: Value = serde_json::from_str(&gc.stdout).unwrap();
    assert_eq!(gc["kept"], serde_json::json!([4, 5, 6]));
    assert_eq!(gc["pruned"], serde_json::json!([1, 2, 3]));
    let after = store_size(&env);
    assert!(
        after.0 < before.0 && after.1 < before.1,
        "{before:?} -> {after:?}"
    );
    assert_eq!(gc["store"]["objects"], after.0);
    assert_eq!(gc["removed"]["objects"], before.0 - after.0);
    assert_eq!(listed(&env), [4, 5, 6]);

    // Every content of generation 4 comes from the store.
    wipe_srv(&env);
    env.run(&["rollback", "--to", "4"]).code(0);
    assert_eq!(env.tree(), trees[4], "the root as it was at generation 4");
    env.run(&["rollback", "--to", "6"]).code(0);
    assert_eq!(env.tree(), trees[6]);
    // motd's original was recorded by generation 1, which is gone: still taken back.
    release_all(&env);
    assert_eq!(env.tree(), trees[0], "the root as strata found it");
}

#[test]
fn rollback_to_a_pruned_generation_says_so_and_changes_nothing() {
    let env = env();
    scenario(&env);
    env.run(&["gc", "--keep", "2"]).code(0);
    let whole = || strata_test::tree(&env.root(), &[]);
    let before = whole();

    let run = env.run(&["rollback", "--to", "3"]).code(1);
    assert_output!(run.stderr, @"error: cannot roll back: generation 3 was pruned from this root (by `strata gc` or the site's `[state] keep_generations`); the oldest generation kept is 5; nothing was changed");
    assert_eq!(whole(), before, "the root and strata's state are unchanged");
    let run = env.run(&["report", "1"]).code(1);
    assert_output!(run.stderr, @"error: generation 1 was pruned from this root (by `strata gc` or the site's `[state] keep_generations`); the oldest generation kept is 5");
    let run = env.run(&["rollback", "--to", "9"]).code(1);
    assert_output!(run.stderr, @"error: no generation 9 on this root");

    // With only the current generation kept, there is nothing before it.
    env.run(&["gc", "--keep", "1"]).code(0);
    let before = whole();
    let run = env.run(&["rollback"]).code(1);
    assert_output!(run.stderr, @"error: generation 6 is the oldest one kept: those before it were pruned (by `strata gc` or the site's `[state] keep_generations`); nothing was changed");
    assert_eq!(whole(), before);
    let listed = env.run(&["generations"]).code(0);
    assert_output!(listed.stdout, @r#"
           6  2024-05-01T12:00:00Z  apply                43 paths  rev none (current)
        store: 45 objects, 15.0 KiB (15360 bytes); generations 1-5 pruned
        "#);
}

#[test]
fn generations_reports_the_store_size_in_objects_and_bytes() {
    let env = env();
    site(&env, &[1; FILES], None);
    env.write_root("etc/motd", "Debian's own motd\n", 0o644);
    env.run(&["apply", "--node", NODE]).code(0);
    // 40 files, the managed motd and motd's original.
    let (objects, bytes) = store_size(&env);
    assert_eq!(objects, FILES as u64 + 2);
    assert_eq!(bytes, store_bytes_on_disk(&env));
    let text = env.run(&["generations"]).code(0).stdout;
    let kib = bytes as f64 / 1024.0;
    assert!(
        text.ends_with(&format!(
            "store: {objects} objects, {kib:.1} KiB ({bytes} bytes)\n"
        )),
        "{text}"
    );
    assert_output!(text, @r#"
           1  2024-05-01T12:00:00Z  apply                43 paths  rev none (current)
        store: 42 objects, 14.1 KiB (14404 bytes)
        "#);
}

#[test]
fn a_pack_mostly_unused_is_rewritten_and_one_mostly_used_stays_whole() {
    let env = env();
    scenario(&env);
    let (objects, bytes) = store_size(&env);
    let gc = env.run(&["gc", "--keep", "2"]).code(0);
    assert!(
        gc.stdout
            .starts_with("Pruned generations 1-4; kept 5-6 (the newest 2).\n"),
        "{}",
        gc.stdout
    );
    assert!(
        gc.stdout.contains("1 pack rewritten, 1 pack removed"),
        "{}",
        gc.stdout
    );
    // Needed by 5 and 6: files 30-39 at version 1, 2-29 at 4, 0-1 at 5, 2 at 6, the
    // managed motd and its original.
    let needed = 10 + 28 + 2 + 1 + 2;
    // Generation 4's pack stays whole (28 of its 30 contents are needed): its contents
    // of files 0 and 1, which generation 5 replaced, stay with it.
    assert_eq!(store_size(&env).0, needed + 2);
    assert!(store_holds(&env, &content(0, 4)) && store_holds(&env, &content(1, 4)));
    for (file, v) in [(30, 1), (29, 4), (0, 5), (2, 6)] {
        assert!(store_holds(&env, &content(file, v)), "file {file} at {v}");
    }
    for (file, v) in [(0, 1), (0, 2), (29, 2), (3, 3)] {
        assert!(!store_holds(&env, &content(file, v)), "file {file} at {v}");
    }
    let after = store_size(&env).1;
    assert!(
        after < bytes / 2,
        "{objects} objects, {bytes} bytes -> {after} bytes"
    );
    assert_eq!(after, store_bytes_on_disk(&env));
    // A second gc finds nothing more to do.
    let again = env.run(&["gc", "--keep", "2", "--json"]).code(0);
    let again: Value = serde_json::from_str(&again.stdout).unwrap();
    assert_eq!(again["removed"]["objects"], 0);
    assert_eq!(again["removed"]["bytes"], 0);
}

/// Which generation last named each object is cached (`refs`); a cache that is lost or
/// torn is rebuilt from the generation files, and the gc ends as one with the cache.
#[test]
fn a_lost_or_torn_cache_of_what_generations_use_is_rebuilt() {
    let reference = env();
    scenario(&reference);
    reference.run(&["gc", "--keep", "4"]).code(0);
    reference.run(&["gc", "--keep", "2"]).code(0);
    let done = store_size(&reference);
    let refs = |env: &TestEnv| env.root().join("var/lib/strata/refs");
    for damage in ["lost", "torn", "zeroed"] {
        let env = env();
        let trees = scenario(&env);
        env.run(&["gc", "--keep", "4"]).code(0);
        let cache = std::fs::read(refs(&env)).unwrap();
        match damage {
            "lost" => std::fs::remove_file(refs(&env)).unwrap(),
            "torn" => std::fs::write(refs(&env), &cache[..cache.len() / 2]).unwrap(),
            _ => std::fs::write(refs(&env), vec![0; cache.len()]).unwrap(),
        }
        env.run(&["gc", "--keep", "2"]).code(0);
        assert_eq!(store_size(&env), done, "{damage}");
        assert_eq!(
            std::fs::read(refs(&reference)).unwrap().len(),
            std::fs::read(refs(&env)).unwrap().len()
        );
        wipe_srv(&env);
        env.run(&["rollback", "--to", "5"]).code(0);
        assert_eq!(env.tree(), trees[5], "{damage}");
        release_all(&env);
        assert_eq!(env.tree(), trees[0], "{damage}");
    }
}

#[test]
fn gc_without_keep_goes_by_what_the_last_apply_recorded() {
    let env = env();
    let mut versions = [1u32; FILES];
    for v in 1..=4 {
        versions[0] = v;
        site(&env, &versions, None);
        env.run(&["apply", "--node", NODE]).code(0);
    }
    // Lowered: the next apply prunes at once, even one that changes nothing.
    site(&env, &versions, Some(2));
    let run = env.run(&["apply", "--node", NODE]).code(0);
    assert!(
        run.stdout
            .contains("Pruned generations 1-2; kept 3-4 (the newest 2)."),
        "{}",
        run.stdout
    );
    versions[0] = 5;
    site(&env, &versions, Some(3));
    env.run(&["apply", "--node", NODE]).code(0);
    assert_eq!(listed(&env), [3, 4, 5]);
    // Generation 5 recorded 3: a gc without --keep keeps 3, one with --keep as told.
    let gc = env.run(&["gc"]).code(0);
    assert!(
        gc.stdout
            .starts_with("Nothing to prune: 3 generations kept (up to 3).\n"),
        "{}",
        gc.stdout
    );
    env.run(&["gc", "--keep", "1"]).code(0);
    assert_eq!(listed(&env), [5]);
    let run = env.run(&["gc", "--keep", "0"]).code(1);
    assert!(run.stderr.contains("--keep"), "{}", run.stderr);
}

#[test]
fn keep_generations_below_one_is_refused_naming_strata_toml() {
    let env = env();
    site(&env, &[1; FILES], Some(1));
    env.write(
        "strata.toml",
        "[site]\nname = \"gc\"\n[state]\nkeep_generations = 0\n",
    );
    let run = env.run(&["apply", "--node", NODE]).code(1);
    assert!(
        run.stderr.contains("strata.toml:4:")
            && run
                .stderr
                .contains("keep at least 1 generation (the current one)"),
        "{}",
        run.stderr
    );
    assert_eq!(env.tree(), "", "nothing was applied");
}

/// Runs `args` stopped at the failpoint `point` as `kill -9` would stop it (`abort()`).
#[cfg(feature = "failpoints")]
fn stopped(env: &TestEnv, args: &[&str], point: &str) {
    use std::os::unix::process::ExitStatusExt;
    let out = env
        .cmd(args)
        .env("FAILPOINTS", format!("{point}=return"))
        .output()
        .unwrap();
    assert_eq!(
        out.status.signal(),
        Some(libc::SIGABRT),
        "{point}: {args:?} was not stopped there\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// No leftover of an interrupted write in the store, and no pack without its index.
#[cfg(feature = "failpoints")]
fn assert_store_tidy(env: &TestEnv, point: &str) {
    let store = env.root().join("var/lib/strata/store");
    for e in walkdir::WalkDir::new(&store).into_iter().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        assert!(!name.ends_with(".tmp"), "{point}: {name} left");
        if let Some(stem) = name.strip_suffix(".pack") {
            assert!(
                e.path().with_file_name(format!("{stem}.idx")).exists(),
                "{point}: {name} left without its index"
            );
        }
    }
}

/// A gc stopped at each of its crash points: the next command sees exactly the kept
/// generations, each can be rolled back to with every content from the store, every path
/// is still taken back, and the next gc leaves the store as an uninterrupted one did.
#[cfg(feature = "failpoints")]
#[test]
fn gc_stopped_at_any_point_loses_nothing_a_kept_generation_needs() {
    let reference = env();
    scenario(&reference);
    reference.run(&["gc", "--keep", "2"]).code(0);
    let done = store_size(&reference);
    for point in [
        "gc-after-record",
        "gc-mid-generations",
        "gc-mid-sweep",
        "gc-repack-written",
        "gc-pack-index-removed",
    ] {
        let env = env();
        let trees = scenario(&env);
        stopped(&env, &["gc", "--keep", "2"], point);
        assert_eq!(listed(&env), [5, 6], "{point}");
        let run = env.run(&["rollback", "--to", "4"]).code(1);
        assert!(
            run.stderr.contains("generation 4 was pruned"),
            "{point}: {}",
            run.stderr
        );
        for n in [5, 6] {
            wipe_srv(&env);
            env.run(&["rollback", "--to", &n.to_string()]).code(0);
            assert_eq!(env.tree(), trees[n], "{point}: rolled back to {n}");
        }
        env.run(&["gc", "--keep", "4"]).code(0);
        assert_eq!(store_size(&env), done, "{point}");
        assert_store_tidy(&env, point);
        release_all(&env);
        assert_eq!(env.tree(), trees[0], "{point}: the root as strata found it");
    }
}

/// The retention runs once the apply's commit is done: stopped there, the apply's
/// generation stands, and nothing a kept generation needs is lost.
#[cfg(feature = "failpoints")]
#[test]
fn an_apply_whose_retention_is_stopped_keeps_its_generation() {
    let env = env();
    let trees = scenario(&env);
    let mut versions = LAST;
    versions[3] = 7;
    site(&env, &versions, Some(2));
    stopped(&env, &["apply", "--node", NODE], "gc-mid-sweep");
    let seventh = env.tree();
    assert_ne!(seventh, trees[6]);
    assert_eq!(listed(&env), [6, 7]);
    env.run(&["plan", "--node", NODE]).code(0);
    wipe_srv(&env);
    env.run(&["rollback", "--to", "6"]).code(0);
    assert_eq!(env.tree(), trees[6]);
    wipe_srv(&env);
    env.run(&["rollback", "--to", "7"]).code(0);
    assert_eq!(env.tree(), seventh);
    release_all(&env);
    assert_eq!(env.tree(), trees[0]);
}
