//! Bad sites: a clear message naming file, line and what is wrong; the target untouched.

use crate::{WEB1, assert_output, example};

/// Runs plan and apply on a broken site: both fail saying the same, which is returned, and
/// the target stays as it was; `check` fails too.
fn fails(env: &strata_test::TestEnv) -> String {
    let stderr = fails_on_target(env);
    env.run(&["check"]).code(1);
    stderr
}

/// Like [`fails`], for errors only the target reveals (`check` has no target).
fn fails_on_target(env: &strata_test::TestEnv) -> String {
    let before = env.tree();
    let plan = env.run(&["plan", "--node", WEB1]).code(1);
    assert_eq!(env.tree(), before, "plan changed the target");
    let apply = env.run(&["apply", "--node", WEB1]).code(1);
    assert_eq!(
        apply.stderr, plan.stderr,
        "apply and plan say different things"
    );
    assert_eq!(env.tree(), before, "apply changed the target");
    plan.stderr
}

#[test]
fn malformed_toml_is_located() {
    let env = example();
    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver\"\nmodules = []\n",
    );
    assert_output!(fails(&env), @"error: nodes/web1.example.com.toml:2:1: missing comma between array elements, expected `,`");
}

#[test]
fn a_misspelt_key_gets_a_suggestion() {
    let env = example();
    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver\"]\nmodles = [\"ntp\"]\n",
    );
    assert_output!(fails(&env), @r#"
        error: nodes/web1.example.com.toml:2:1: unknown field `modles`, expected one of `environment`, `roles`, `modules`, `params`, `ssh`, `keys`
        hint: did you mean `modules`?
        "#);
}

#[test]
fn a_missing_module_role_or_version_is_named() {
    let env = example();
    env.write(
        "roles/webserver/2.0.toml",
        "modules = [\"app@2.0\", \"ntpd\"]\n",
    );
    assert_output!(fails(&env), @"error: roles/webserver/2.0.toml:1:23: unknown module `ntpd` (did you mean `ntp`?)");
    env.write("roles/webserver/2.0.toml", "modules = [\"app@3\"]\n");
    assert_output!(fails(&env), @"error: roles/webserver/2.0.toml:1:12: module `app` has no version 3 (available: 1.0, 2.0)");
    env.write("nodes/web1.example.com.toml", "roles = [\"webserver@7\"]\n");
    assert_output!(fails(&env), @"error: nodes/web1.example.com.toml:1:10: role `webserver` has no version 7 (available: 1.0, 2.0)");
}

#[test]
fn a_dependency_cycle_is_printed_whole() {
    let env = example();
    env.write("modules/base/module.toml", "requires = [\"ntp\"]\n");
    assert_output!(fails(&env), @"error: modules/base/module.toml: dependency cycle: base -> ntp -> base");
}

#[test]
fn two_modules_claiming_one_path_are_both_named() {
    let env = example();
    env.write("modules/extra/files/etc/motd", "mine\n");
    env.write(
        "nodes/web1.example.com.toml",
        "roles = [\"webserver\"]\nmodules = [\"extra\"]\n",
    );
    assert_output!(fails(&env), @"error: /etc/motd is declared by both base (modules/base/templates/etc/motd.j2) and extra (modules/extra/files/etc/motd)");
}

#[test]
fn template_errors_name_the_template_and_line() {
    let env = example();
    env.write(
        "modules/ntp/templates/etc/ntp.conf.j2",
        "# ok\n{% for s in ntp.servers %}\nserver {{ s }\n{% endfor %}\n",
    );
    assert_output!(fails(&env), @"error: modules/ntp/templates/etc/ntp.conf.j2:3:13: template syntax error: unexpected `}`, expected end of variable block");
    env.write(
        "modules/ntp/templates/etc/ntp.conf.j2",
        "# ok\n\nserver {{ ntp.sever }}\n",
    );
    assert_output!(fails(&env), @"error: modules/ntp/templates/etc/ntp.conf.j2:3:11: undefined variable `ntp.sever`");
}

/// Issue 16: three nested loops of 100,000 in a template ran past 180 s and 2 GiB.
/// Every path that renders (plan, apply, check) stops a template at its limits, with the
/// template named, and the target untouched.
#[test]
fn a_template_past_its_limits_fails_naming_it() {
    let env = example();
    env.write(
        "modules/ntp/templates/etc/ntp.conf.j2",
        "# ok\n{% for a in range(100000) %}{% for b in range(100000) %}\
         {% for c in range(100000) %}server {{ c }}\n{% endfor %}{% endfor %}{% endfor %}\n",
    );
    assert_output!(fails(&env), @r#"error: modules/ntp/templates/etc/ntp.conf.j2:2:85: the template does more work than a template may (5000000 units of minijinja fuel: 5 million steps, or 305 MiB of text and lists made); a loop far too large, or one that builds a value without end? (docs/decisions.md, "Templates")"#);
    env.write(
        "modules/ntp/templates/etc/ntp.conf.j2",
        "{% set ns = namespace(s=\"x\") %}\n{% for i in range(60) %}\
         {% set ns.s = ns.s ~ ns.s %}{% endfor %}\n",
    );
    assert_output!(fails(&env), @r#"error: modules/ntp/templates/etc/ntp.conf.j2:2:39: the template does more work than a template may (5000000 units of minijinja fuel: 5 million steps, or 305 MiB of text and lists made); a loop far too large, or one that builds a value without end? (docs/decisions.md, "Templates")"#);
    env.write(
        "modules/ntp/templates/etc/ntp.conf.j2",
        "{% for i in range(100000) %}{{ \"x\" * 1000 }}{% endfor %}\n",
    );
    assert_output!(fails(&env), @r#"error: modules/ntp/templates/etc/ntp.conf.j2: the template renders more than 64 MiB, the most a template may write (docs/decisions.md, "Templates")"#);
}

/// A list built by doubling is what minijinja's fuel does not pay for: the memory
/// backstop (1 GiB held by one render) ends the run, naming the template, before anything
/// is written. (About 45 s in a debug build: it takes that long to build 1 GiB of list.)
#[test]
fn a_template_past_its_memory_ends_the_run_naming_it() {
    let env = example();
    env.write(
        "modules/ntp/templates/etc/ntp.conf.j2",
        "{% set ns = namespace(l=[1]) %}{% for i in range(40) %}\
         {% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}\n",
    );
    let before = env.tree();
    let run = env.run(&["apply", "--node", WEB1]).code(1);
    assert_output!(run.stderr, @r#"error: modules/ntp/templates/etc/ntp.conf.j2: the template holds more than 1024 MiB of memory, the most a template may take (docs/decisions.md, "Templates"); nothing was written"#);
    assert_eq!(env.tree(), before, "the apply changed the target");
}

#[test]
fn dot_dot_and_bad_modes_are_refused() {
    let env = example();
    env.write(
        "modules/base/module.toml",
        "[[dir]]\npath = \"/var/../etc/x\"\n",
    );
    assert_output!(fails(&env), @r#"
        error: modules/base/templates/etc/motd.j2:6:15: undefined variable `base.admin`
        error: modules/base/module.toml:2:8: invalid target path "/var/../etc/x": '..' components are not allowed
        "#);
    env.write(
        "modules/base/module.toml",
        "[[dir]]\npath = \"/var/x\"\nmode = \"0999\"\n",
    );
    assert_output!(fails(&env), @r#"
        error: modules/base/templates/etc/motd.j2:6:15: undefined variable `base.admin`
        error: modules/base/module.toml:3:8: bad mode `0999`: expected octal digits such as "0644"
        "#);
}

#[test]
fn an_owner_the_target_does_not_know_is_an_error() {
    let env = example();
    let base = std::fs::read_to_string(env.site().join("modules/base/module.toml")).unwrap();
    env.write(
        "modules/base/module.toml",
        &format!("{base}\n[[dir]]\npath = \"/var/www\"\nowner = \"www-data\"\n"),
    );
    assert_output!(fails_on_target(&env), @"error: modules/base/module.toml:12: user `www-data` (for /var/www, module base) does not exist on the target: not in its /etc/passwd");
    // Once the target has the user, the same site applies, with the target's uid.
    env.write_root(
        "etc/passwd",
        "root:x:0:0::/root:/bin/sh\nwww-data:x:33:33::/var/www:/bin/false\n",
        0o644,
    );
    env.run(&["apply", "--node", WEB1]).code(0);
    assert!(
        env.tree().contains("/var/www dir 0755 33:0\n"),
        "{}",
        env.tree()
    );
}

#[test]
fn check_reports_every_error_of_every_node() {
    let env = example();
    env.write("nodes/web1.example.com.toml", "roles = [\"nope\"]\n");
    env.write(
        "nodes/web2.example.com.toml",
        "modules = [\"ntp\", \"nada\"]\n",
    );
    let run = env.run(&["check"]).code(1);
    assert_output!(run.stderr, @r#"
        error: node web1.example.com: nodes/web1.example.com.toml:1:10: unknown role `nope`
        error: node web2.example.com: nodes/web2.example.com.toml:1:19: unknown module `nada`
        error: 2 of 2 nodes do not compile
        "#);
    assert_output!(run.stdout, @r#"
        failed  web1.example.com (1 errors)
        failed  web2.example.com (1 errors)
        "#);
}

#[test]
fn an_unknown_node_and_a_missing_site_are_explained() {
    let env = example();
    let run = env.run(&["plan", "--node", "web3.example.com"]).code(1);
    assert_output!(run.stderr, @"error: unknown node `web3.example.com`: no nodes/web3.example.com.toml and no group lists it (did you mean `web2.example.com`?)");
    std::fs::remove_file(env.site().join("strata.toml")).unwrap();
    let run = env.run(&["plan", "--node", WEB1]).code(1);
    assert_output!(run.stderr, @r#"
        error: [SITE]/strata.toml: not a strata site: strata.toml is missing
        hint: pass --site DIR, set STRATA_SITE, or run from the site directory
        "#);
}

#[test]
fn a_second_writer_is_told_who_holds_the_lock() {
    use std::os::fd::AsRawFd;
    let env = example();
    env.run(&["apply", "--node", WEB1]).code(0);
    let lock = std::fs::File::open(env.root()).unwrap();
    // SAFETY: flock on a file descriptor we own.
    assert_eq!(unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) }, 0);
    let run = env
        .run(&["apply", "--node", WEB1, "--set", "app.port=1"])
        .code(1);
    // The holder is this test's own process, named by its pid and command line.
    let pid = format!("(pid {}: ", std::process::id());
    assert!(run.stderr.contains(&pid), "{}", run.stderr);
    let mut filters = crate::filters();
    // After the pid filter: its command line (the test binary, its arguments).
    filters.add_filter(r"\(pid \[PID\]: [^)\n]*\)", "(pid [PID]: [COMMAND])");
    filters.bind(|| {
        insta::assert_snapshot!(run.stderr, @r#"
        error: [ROOT] is locked by another strata process (pid [PID]: [COMMAND])
        hint: wait for it to finish; the lock goes away with its holder
        "#);
    });
    drop(lock);
    env.run(&["apply", "--node", WEB1, "--set", "app.port=1"])
        .code(0);
}

#[test]
fn a_file_declared_where_a_directory_must_be_is_refused() {
    let env = example();
    env.write("modules/base/files/etc/motd/README", "below a file\n");
    assert_output!(fails(&env), @"error: /etc/motd is declared as a file by base (modules/base/templates/etc/motd.j2), but /etc/motd/README (base, modules/base/files/etc/motd/README) needs it to be a directory");
}

#[test]
fn a_file_and_a_template_for_one_path_name_both() {
    let env = example();
    env.write("modules/base/files/etc/twice.conf", "static\n");
    env.write("modules/base/templates/etc/twice.conf.j2", "rendered\n");
    assert_output!(fails(&env), @"error: modules/base/templates/etc/twice.conf.j2: /etc/twice.conf also comes from modules/base/files/etc/twice.conf");
}
