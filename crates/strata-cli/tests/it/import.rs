//! `strata import ansible-role`: a role comes over as a module that plans and applies,
//! and what could not be translated is listed with the role's file and line.

use strata_test::write;

#[test]
fn an_ansible_role_comes_over_as_a_module_the_site_compiles_with() {
    let env = crate::env();
    env.write("strata.toml", "[site]\nname = \"t\"\n")
        .write("nodes/n1.toml", "modules = [\"ntp\"]\n");
    let role = env.path().join("role");
    write(
        &role.join("defaults/main.yml"),
        "---\nntp_servers:\n  - 0.pool.ntp.org iburst\n  - 1.pool.ntp.org iburst\nntp_managed: \"Ansible managed\"\n",
    );
    write(
        &role.join("tasks/main.yml"),
        "---\n- name: Install\n  package: name=ntp state=present\n\n- name: Configure\n  template:\n    src: ntp.conf.j2\n    dest: /etc/ntp.conf\n    mode: 0644\n  notify: restart ntp\n\n- name: Clock\n  command: hwclock --systohc\n",
    );
    write(
        &role.join("handlers/main.yml"),
        "- name: restart ntp\n  service: name=ntp state=restarted\n",
    );
    write(
        &role.join("templates/ntp.conf.j2"),
        "{{ ntp_managed | comment }}\n{% for s in ntp_servers %}\npool {{ s }}\n{% endfor %}\n",
    );
    let site = env.site();
    let run = env
        .run(&[
            "import",
            "ansible-role",
            role.to_str().unwrap(),
            "--module",
            "ntp",
            "--site",
            site.to_str().unwrap(),
        ])
        .code(0);
    assert!(
        run.stdout.contains("modules/ntp/templates/etc/ntp.conf.j2"),
        "{}",
        run.stdout
    );
    assert!(
        run.stderr
            .contains("tasks/main.yml:12: task `Clock` (`command`) is not translated"),
        "{}",
        run.stderr
    );
    let module = std::fs::read_to_string(site.join("modules/ntp/module.toml")).unwrap();
    assert!(
        module.contains("restart_on = [\"/etc/ntp.conf\"]"),
        "{module}"
    );
    // The site compiles with it, the role's defaults as its common parameters.
    let check = env.run(&["check"]).code(0);
    assert!(check.stdout.contains("ok      n1"), "{}", check.stdout);
    let params = env.run(&["params", "n1", "ntp_managed"]).code(0);
    assert!(
        params.stdout.contains("ntp_managed = \"Ansible managed\"")
            && params.stdout.contains("params/common.yaml:5"),
        "{}",
        params.stdout
    );
    let json = env
        .run(&[
            "import",
            "ansible-role",
            role.to_str().unwrap(),
            "--module",
            "ntp",
            "--site",
            site.to_str().unwrap(),
            "--json",
        ])
        .code(1);
    assert!(json.stderr.contains("already exists"), "{}", json.stderr);
}
