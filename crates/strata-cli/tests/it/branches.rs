//! Environments published from git branches (`[environments] production = "main"`):
//! a real repository with two branches and a dirty working tree; each environment gets
//! its branch's commit, and nothing of the working tree.

use std::path::Path;
use std::process::Command;

use strata_test::TestEnv;

use crate::env;

fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .env("GIT_AUTHOR_NAME", "t")
        .env("GIT_AUTHOR_EMAIL", "t@example.invalid")
        .env("GIT_COMMITTER_NAME", "t")
        .env("GIT_COMMITTER_EMAIL", "t@example.invalid")
        .output()
        .expect("run git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A site in a git repository: `main` says "main", `next` says "next"; n1 is in
/// production (main), n2 in staging (next). Keys made, the working tree then dirtied.
fn repo(environments: &str) -> (TestEnv, std::path::PathBuf, String, String) {
    let e = env();
    e.write(
        "strata.toml",
        &format!("[site]\nname = \"s\"\n[environments]\n{environments}"),
    )
    .write(".gitignore", ".strata/\n")
    .write("nodes/n1.toml", "modules = [\"m\"]\n")
    .write(
        "nodes/n2.toml",
        "environment = \"staging\"\nmodules = [\"m\"]\n",
    )
    .write("modules/m/files/etc/motd", "main\n");
    let site = e.site();
    git(&site, &["init", "-q", "-b", "main"]);
    git(&site, &["add", "-A"]);
    git(&site, &["commit", "-q", "-m", "main"]);
    let main = git(&site, &["rev-parse", "HEAD"]);
    git(&site, &["checkout", "-q", "-b", "next"]);
    e.write("modules/m/files/etc/motd", "next\n");
    git(&site, &["commit", "-q", "-am", "next"]);
    let next = git(&site, &["rev-parse", "HEAD"]);
    git(&site, &["checkout", "-q", "main"]);
    let keys = e.path().join("keys");
    let ok = e
        .cmd(&["keys", "init", "--site"])
        .arg(&site)
        .arg("--keys")
        .arg(&keys)
        .status()
        .unwrap();
    assert!(ok.success());
    // Hand edits and a new file, never committed: no environment may carry them.
    e.write("modules/m/files/etc/motd", "dirty\n")
        .write("modules/m/files/etc/untracked", "untracked\n");
    (e, keys, main, next)
}

fn publish(e: &TestEnv, keys: &Path, bucket: &Path) -> (i32, String, String) {
    let out = e
        .cmd(&["publish", "--site"])
        .arg(e.site())
        .arg("--keys")
        .arg(keys)
        .arg("--to")
        .arg(format!("file://{}", bucket.display()))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fingerprint(e: &TestEnv) -> String {
    let out = e
        .cmd(&["keys", "fingerprint", "--site"])
        .arg(e.site())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn each_environment_gets_its_branchs_commit_and_nothing_of_the_working_tree() {
    let (e, keys, main, next) = repo("production = \"main\"\nstaging = \"next\"\n");
    let bucket = e.path().join("bucket");
    let (code, out, err) = publish(&e, &keys, &bucket);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.contains("production version")
            && out.contains(&format!("(revision {main} from branch main)")),
        "{out}"
    );
    assert!(
        out.contains(&format!("(revision {next} from branch next)")),
        "{out}"
    );
    // The working tree and the user's index are as they were.
    assert_eq!(
        std::fs::read_to_string(e.site().join("modules/m/files/etc/motd")).unwrap(),
        "dirty\n"
    );
    let status = git(&e.site(), &["status", "--porcelain"]);
    assert_eq!(
        status, "M modules/m/files/etc/motd\n?? modules/m/files/etc/untracked",
        "{status}"
    );
    let fp = fingerprint(&e);
    for (node, env_name, want, commit) in [
        ("n1", "production", "main\n", &main),
        ("n2", "staging", "next\n", &next),
    ] {
        let root = e.path().join(format!("root-{node}"));
        let out = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args([
                "agent",
                "--once",
                "--node",
                node,
                "--env",
                env_name,
                "--root-key",
                &fp,
                "--from",
            ])
            .arg(format!("file://{}", bucket.display()))
            .arg("--root")
            .arg(&root)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{node}: {:?} {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            std::fs::read_to_string(root.join("etc/motd")).unwrap(),
            want,
            "{node}"
        );
        assert!(
            !root.join("etc/untracked").exists(),
            "{node}: the untracked file leaked"
        );
        let gens = Command::new(env!("CARGO_BIN_EXE_strata"))
            .args(["generations", "--root"])
            .arg(&root)
            .output()
            .unwrap();
        let gens = String::from_utf8_lossy(&gens.stdout);
        assert!(
            gens.contains(&commit[..12]) && !gens.contains("dirty"),
            "{node}: {gens}"
        );
    }
}

#[test]
fn a_missing_branch_names_the_environment_and_the_branch_and_publishes_nothing() {
    let (e, keys, _, _) = repo("production = \"main\"\nstaging = \"nope\"\n");
    let bucket = e.path().join("bucket");
    let (code, _, err) = publish(&e, &keys, &bucket);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("environment staging") && err.contains("\"nope\""),
        "{err}"
    );
    assert!(!bucket.exists(), "nothing written");
}

#[test]
fn a_branch_name_git_would_take_as_an_option_is_a_site_error() {
    let (e, keys, _, _) = repo("production = \"main\"\n");
    e.write(
        "strata.toml",
        "[site]\nname = \"s\"\n[environments]\nproduction = \"--upload-pack=evil\"\n",
    );
    let (code, _, err) = publish(&e, &keys, &e.path().join("bucket"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("strata.toml") && err.contains("not a git branch name"),
        "{err}"
    );
}

#[test]
fn a_site_outside_git_with_environments_is_refused_naming_the_environment() {
    let e = env();
    e.write(
        "strata.toml",
        "[site]\nname = \"s\"\n[environments]\nproduction = \"main\"\n",
    );
    let keys = e.path().join("keys");
    assert!(
        e.cmd(&["keys", "init", "--site"])
            .arg(e.site())
            .arg("--keys")
            .arg(&keys)
            .status()
            .unwrap()
            .success()
    );
    let (code, _, err) = publish(&e, &keys, &e.path().join("bucket"));
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("environment production") && err.contains("not in a git repository"),
        "{err}"
    );
}
