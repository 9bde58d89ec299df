//! Symlinks in the target never lead strata outside the root, and a symlink standing
//! where a managed file goes is replaced, never written through.

use crate::{WEB1, example};

#[test]
fn a_symlink_at_a_managed_path_is_replaced_not_followed() {
    let env = example();
    let outside = tempfile::tempdir().unwrap();
    let victim = outside.path().join("victim");
    std::fs::write(&victim, "host file\n").unwrap();
    std::fs::create_dir_all(env.root().join("etc")).unwrap();
    std::os::unix::fs::symlink(&victim, env.root().join("etc/motd")).unwrap();

    let plan = env.run(&["plan", "--node", WEB1]).code(2);
    let line = plan
        .stdout
        .lines()
        .find(|l| l.starts_with("modify    /etc/motd "))
        .expect("a line for /etc/motd");
    assert!(
        line.contains(&format!(
            "link -> {} → file 0644 root:root",
            victim.display()
        )),
        "{line}"
    );
    env.run(&["apply", "--node", WEB1]).code(0);
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file\n");
    assert!(
        env.root()
            .join("etc/motd")
            .symlink_metadata()
            .unwrap()
            .is_file()
    );

    // Taken back: the link is restored as it was.
    env.write(
        "nodes/web1.example.com.toml",
        "environment = \"production\"\n",
    );
    env.write("groups/webservers.toml", "nodes = []\n");
    env.run(&["apply", "--node", WEB1]).code(0);
    assert_eq!(
        std::fs::read_link(env.root().join("etc/motd")).unwrap(),
        victim
    );
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "host file\n");
}

#[test]
fn a_directory_symlink_is_resolved_inside_the_root() {
    let env = example();
    let outside = tempfile::tempdir().unwrap();
    // /etc -> <host dir>: an absolute link, read as if chrooted, lands inside the root.
    std::fs::create_dir_all(env.root().join(outside.path().strip_prefix("/").unwrap())).unwrap();
    std::os::unix::fs::symlink(outside.path(), env.root().join("etc")).unwrap();
    env.run(&["apply", "--node", WEB1]).code(0);
    assert_eq!(
        std::fs::read_dir(outside.path()).unwrap().count(),
        0,
        "strata wrote outside the root"
    );
    let inside = env
        .root()
        .join(outside.path().strip_prefix("/").unwrap())
        .join("motd");
    assert!(
        std::fs::read_to_string(inside)
            .unwrap()
            .starts_with("Welcome to acme")
    );
}

#[test]
fn a_dangling_directory_symlink_is_an_error_and_nothing_is_written() {
    let env = example();
    let outside = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(outside.path(), env.root().join("etc")).unwrap();
    let before = env.tree();
    let run = env.run(&["apply", "--node", WEB1]).code(1);
    assert!(
        run.stderr
            .contains("/etc: a link stands where a directory is declared"),
        "{}",
        run.stderr
    );
    assert_eq!(env.tree(), before);
    assert_eq!(std::fs::read_dir(outside.path()).unwrap().count(), 0);
}
