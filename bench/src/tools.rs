//! The same workload for the other tools (issue 6): each gets its idiomatic fast form in
//! its own language, writing into its own target directory, and must produce exactly the
//! bytes strata does (the floor's `check` against the shared manifest proves it).
//!
//! - Ansible: one `copy` of the static tree and a looped `template`, local connection,
//!   no fact gathering, pipelining.
//! - pyinfra: `files.sync` of the static tree and `files.template` per file, `@local`.
//! - Salt (masterless `salt-call --local`): `file.recurse` and `file.managed` with Jinja.
//! - Puppet (`puppet apply`): a recursive `file` with `source`, and `inline_epp` content.
//! - CFEngine (`cf-agent`): `copy_from` with digest compare and mustache `edit_template`.
//!
//! Jinja templates are written so that they render the same with or without
//! `trim_blocks` (block tags never end a line), since each tool sets it differently.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::Expected;

/// A tool under comparison.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Ansible,
    Pyinfra,
    Salt,
    Puppet,
    Cfengine,
}

impl Tool {
    pub const ALL: [Tool; 5] = [
        Tool::Cfengine,
        Tool::Puppet,
        Tool::Salt,
        Tool::Pyinfra,
        Tool::Ansible,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Tool::Ansible => "ansible",
            Tool::Pyinfra => "pyinfra",
            Tool::Salt => "salt",
            Tool::Puppet => "puppet",
            Tool::Cfengine => "cfengine",
        }
    }

    pub fn parse(s: &str) -> Option<Tool> {
        Tool::ALL.into_iter().find(|t| t.name() == s)
    }

    /// Its version, as it prints it.
    pub fn version(self, venv: &Path) -> String {
        let (prog, arg) = match self {
            Tool::Ansible => (venv.join("ansible-playbook"), "--version"),
            Tool::Pyinfra => (venv.join("pyinfra"), "--version"),
            Tool::Salt => (venv.join("salt-call"), "--version"),
            Tool::Puppet => (PathBuf::from("puppet"), "--version"),
            Tool::Cfengine => (PathBuf::from("cf-agent"), "--version"),
        };
        Command::new(prog)
            .arg(arg)
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .next()
                    .unwrap_or("")
                    .trim()
                    .to_string()
            })
            .unwrap_or_else(|e| format!("not available: {e}"))
    }
}

/// The workload's variables (the host name changes for the dry run).
#[derive(Debug)]
pub struct Vars<'a> {
    pub host: &'a str,
}

const UPSTREAMS: [&str; 3] = ["10.0.0.1:8080", "10.0.0.2:8080", "10.0.0.3:8080"];

/// The body of a templated file after its first line and before its padding, as a Jinja2
/// template that renders the same with and without `trim_blocks`.
fn jinja_body() -> &'static str {
    "server_name {{ gen.host_name }};\nlisten {{ gen.port }};\nlog_level {{ gen.log_level }};\n{% for u in gen.upstreams %}upstream {{ u }};\n{% endfor %}{% if gen.tls %}ssl on;\n{% endif %}"
}

fn epp_body() -> &'static str {
    "server_name <%= $host_name %>;\nlisten <%= $port %>;\nlog_level <%= $log_level %>;\n<% $upstreams.each |$u| { -%>\nupstream <%= $u %>;\n<% } -%>\n<% if $tls { -%>\nssl on;\n<% } -%>\n"
}

fn mustache_body() -> &'static str {
    "server_name {{{gen.host_name}}};\nlisten {{gen.port}};\nlog_level {{{gen.log_level}}};\n{{#gen.upstreams}}\nupstream {{{.}}};\n{{/gen.upstreams}}\n{{#gen.tls}}\nssl on;\n{{/gen.tls}}\n"
}

/// Splits a templated file's expected content into its first line and its padding.
fn parts(e: &Expected) -> (String, String) {
    let text = String::from_utf8_lossy(&e.content);
    let first = text.lines().next().unwrap_or("").to_string();
    let pad = text
        .find("# padding")
        .map(|i| text[i..].to_string())
        .unwrap_or_default();
    (first, pad)
}

/// Whether a workload file is rendered from a template (the odd ones), not copied.
pub fn templated(e: &Expected) -> bool {
    e.content.starts_with(b"# templated")
}

fn write(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::create_dir_all(path.parent().expect("a parent"))?;
    std::fs::write(path, text)
}

/// Writes the tool's configuration for `files` into `dir` (its static source tree, its
/// templates, its policy), targeting `root`.
pub fn generate(
    tool: Tool,
    dir: &Path,
    root: &Path,
    files: &[Expected],
    v: &Vars<'_>,
) -> std::io::Result<()> {
    let src = dir.join("src");
    for e in files.iter().filter(|e| !templated(e)) {
        let p = src.join(&e.path);
        if !p.exists() {
            std::fs::create_dir_all(p.parent().expect("a parent"))?;
            std::fs::write(p, &e.content)?;
        }
    }
    let tpl = dir.join("templates");
    let (ext, body) = match tool {
        Tool::Puppet => ("epp", epp_body()),
        Tool::Cfengine => ("mustache", mustache_body()),
        _ => ("j2", jinja_body()),
    };
    let mut rels = Vec::new();
    for e in files.iter().filter(|e| templated(e)) {
        let (first, pad) = parts(e);
        let p = tpl.join(format!("{}.{ext}", e.path));
        if !p.exists() {
            write(&p, &format!("{first}\n{body}{pad}"))?;
        }
        rels.push(e.path.clone());
    }
    let root = root.display();
    let src = src.display();
    let tpl = tpl.display();
    let ups_json = UPSTREAMS
        .iter()
        .map(|u| format!("\"{u}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let host = v.host;
    match tool {
        Tool::Ansible => {
            let list = rels
                .iter()
                .map(|r| format!("        - {r}\n"))
                .collect::<String>();
            write(
                &dir.join("playbook.yml"),
                &format!(
                    "- hosts: localhost\n  connection: local\n  gather_facts: false\n  vars:\n    gen: {{host_name: \"{host}\", port: 8443, log_level: info, upstreams: [{ups_json}], tls: true}}\n  tasks:\n    - name: static files\n      copy:\n        src: \"{src}/\"\n        dest: \"{root}/\"\n        mode: \"0644\"\n        directory_mode: \"0755\"\n    - name: templated files\n      template:\n        src: \"{tpl}/{{{{ item }}}}.j2\"\n        dest: \"{root}/{{{{ item }}}}\"\n        mode: \"0644\"\n      loop:\n{list}"
                ),
            )?;
        }
        Tool::Pyinfra => {
            let list = rels
                .iter()
                .map(|r| format!("    \"{r}\",\n"))
                .collect::<String>();
            write(
                &dir.join("deploy.py"),
                &format!(
                    "from pyinfra.operations import files\n\ngen = {{\"host_name\": \"{host}\", \"port\": 8443, \"log_level\": \"info\", \"upstreams\": [{ups_json}], \"tls\": True}}\n\nfiles.sync(name=\"static files\", src=\"{src}/srv/bench\", dest=\"{root}/srv/bench\", mode=\"644\", dir_mode=\"755\")\n\nfor rel in [\n{list}]:\n    files.template(name=rel, src=\"{tpl}/\" + rel + \".j2\", dest=\"{root}/\" + rel, mode=\"644\", gen=gen)\n"
                ),
            )?;
        }
        Tool::Salt => {
            let d = dir.display();
            write(
                &dir.join("conf/minion"),
                &format!(
                    "file_client: local\nroot_dir: {d}/state\nfile_roots:\n  base:\n    - {d}/states\n    - {d}\nlog_level: quiet\n"
                ),
            )?;
            let mut sls = format!(
                "static:\n  file.recurse:\n    - name: {root}/srv/bench\n    - source: salt://src/srv/bench\n    - file_mode: '0644'\n    - dir_mode: '0755'\n    - makedirs: true\n"
            );
            for (i, r) in rels.iter().enumerate() {
                sls.push_str(&format!(
                    "t{i}:\n  file.managed:\n    - name: {root}/{r}\n    - source: salt://templates/{r}.j2\n    - template: jinja\n    - mode: '0644'\n    - makedirs: true\n    - require:\n      - file: static\n    - context:\n        gen: {{host_name: \"{host}\", port: 8443, log_level: info, upstreams: [{ups_json}], tls: true}}\n"
                ));
            }
            write(&dir.join("states/bench.sls"), &sls)?;
        }
        Tool::Puppet => {
            let ups = UPSTREAMS
                .iter()
                .map(|u| format!("'{u}'"))
                .collect::<Vec<_>>()
                .join(", ");
            let mut pp = format!(
                "$vars = {{ 'host_name' => '{host}', 'port' => 8443, 'log_level' => 'info', 'upstreams' => [{ups}], 'tls' => true }}\nfile {{ '{root}/srv': ensure => directory, mode => '0755' }}\nfile {{ '{root}/srv/bench':\n  ensure => directory, recurse => true, source => 'file://{src}/srv/bench', mode => '0644', backup => false,\n}}\n"
            );
            for r in &rels {
                pp.push_str(&format!(
                    "file {{ '{root}/{r}': ensure => file, mode => '0644', backup => false, content => inline_epp(file('{tpl}/{r}.epp'), $vars) }}\n"
                ));
            }
            write(&dir.join("site.pp"), &pp)?;
        }
        Tool::Cfengine => {
            let mut cf = format!(
                "body common control\n{{\n  bundlesequence => {{ \"bench\" }};\n}}\n\nbody copy_from digest_copy(from)\n{{\n  source => \"$(from)\";\n  compare => \"digest\";\n}}\n\nbody depth_search all\n{{\n  depth => \"inf\";\n}}\n\nbody perms mode(m)\n{{\n  mode => \"$(m)\";\n}}\n\nbundle agent bench\n{{\n  vars:\n      \"data\" data => parsejson('{{\"gen\": {{\"host_name\": \"{host}\", \"port\": 8443, \"log_level\": \"info\", \"upstreams\": [{ups_json}], \"tls\": true}}}}');\n\n  files:\n      \"{root}/srv/bench/.\"\n        create => \"true\",\n        perms => mode(\"755\");\n      \"{root}/srv/bench\"\n        copy_from => digest_copy(\"{src}/srv/bench\"),\n        depth_search => all,\n        file_select => plain_files,\n        perms => mode(\"644\");\n"
            );
            for r in &rels {
                cf.push_str(&format!(
                    "      \"{root}/{r}\"\n        create => \"true\",\n        perms => mode(\"644\"),\n        template_method => \"mustache\",\n        template_data => @(data),\n        edit_template => \"{tpl}/{r}.mustache\";\n"
                ));
            }
            cf.push_str("}\n\nbody file_select plain_files\n{\n  file_types => { \"plain\" };\n  file_result => \"file_types\";\n}\n");
            write(&dir.join("policy.cf"), &cf)?;
        }
    }
    Ok(())
}

/// The command that applies (`dry`: shows with diffs what it would change) the tool's
/// configuration in `dir`.
/// An Ansible playbook for the scripts comparison: K `shell` tasks, each doing what
/// script `i` of [`crate::sandbox::site`] does, to `<root>/etc/bench/conf<i>`.
pub fn ansible_shell_playbook(dir: &Path, root: &Path, k: usize) -> std::io::Result<()> {
    let mut yml =
        String::from("- hosts: localhost\n  connection: local\n  gather_facts: false\n  tasks:\n");
    for i in 0..k {
        let f = root.join(format!("etc/bench/conf{i}"));
        let f = f.display();
        yml.push_str(&format!(
            "    - name: edit {i}\n      shell: \"sed -i 's/listen .*/listen 8080/' {f} && echo 'log_level = info' >> {f}\"\n"
        ));
    }
    write(&dir.join("playbook.yml"), &yml)
}

pub fn command(tool: Tool, dir: &Path, venv: &Path, dry: bool) -> Command {
    match tool {
        Tool::Ansible => {
            let mut c = Command::new(venv.join("ansible-playbook"));
            c.args(["-i", "localhost,", "-c", "local", "-e"])
                .arg(format!(
                    "ansible_python_interpreter={}",
                    venv.join("python").display()
                ))
                .arg(dir.join("playbook.yml"))
                .env("ANSIBLE_PIPELINING", "1")
                .env("ANSIBLE_NOCOLOR", "1")
                .env("ANSIBLE_HOME", dir.join("home"))
                .env("ANSIBLE_LOCAL_TEMP", dir.join("tmp"));
            if dry {
                c.args(["--check", "--diff"]);
            }
            c
        }
        Tool::Pyinfra => {
            let mut c = Command::new(venv.join("pyinfra"));
            c.arg("-y");
            if dry {
                c.args(["--dry", "--diff"]);
            }
            c.arg("@local").arg(dir.join("deploy.py")).current_dir(dir);
            c
        }
        Tool::Salt => {
            let mut c = Command::new(venv.join("salt-call"));
            c.arg("--local").arg("-c").arg(dir.join("conf")).args([
                "--retcode-passthrough",
                "state.apply",
                "bench",
            ]);
            if dry {
                c.arg("test=True");
            }
            c
        }
        Tool::Puppet => {
            let mut c = Command::new("puppet");
            c.arg("apply")
                .arg("--confdir")
                .arg(dir.join("conf"))
                .arg("--vardir")
                .arg(dir.join("var"))
                .arg("--codedir")
                .arg(dir.join("code"))
                .args(["--color", "false", "--detailed-exitcodes"]);
            if dry {
                c.args(["--noop", "--show_diff"]);
            }
            c.arg(dir.join("site.pp"));
            c
        }
        Tool::Cfengine => {
            let mut c = Command::new("cf-agent");
            c.arg("-K").arg("-f").arg(dir.join("policy.cf"));
            if dry {
                c.arg("--simulate=diff");
            }
            c
        }
    }
}

/// Whether an exit status means success for the tool (Puppet's detailed exit codes: 2
/// means "changes made").
pub fn succeeded(tool: Tool, code: i32) -> bool {
    match tool {
        Tool::Puppet => code == 0 || code == 2,
        _ => code == 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The Jinja template renders to the expected bytes with and without `trim_blocks`
    /// (Ansible sets it, Salt and pyinfra do not).
    #[test]
    fn jinja_templates_render_the_expected_bytes_whatever_trim_blocks_says() {
        let dir = tempfile::tempdir().expect("tmp");
        let files = crate::generate(&dir.path().join("site"), 4, "h.example").expect("generate");
        generate(
            Tool::Salt,
            &dir.path().join("salt"),
            &dir.path().join("root"),
            &files,
            &Vars { host: "h.example" },
        )
        .expect("tool config");
        let ctx = serde_json::json!({"gen": {"host_name": "h.example", "port": 8443, "log_level": "info", "upstreams": UPSTREAMS, "tls": true}});
        for e in files.iter().filter(|e| templated(e)) {
            let text =
                std::fs::read_to_string(dir.path().join(format!("salt/templates/{}.j2", e.path)))
                    .expect("template");
            for trim in [false, true] {
                let mut env = minijinja::Environment::new();
                let syntax = minijinja::syntax::SyntaxConfig::builder()
                    .trim_blocks(trim)
                    .keep_trailing_newline(true)
                    .build()
                    .expect("syntax");
                env.set_syntax(syntax);
                let ctx = minijinja::Value::from(minijinja::value::Serde(&ctx));
                let out = env.render_str(&text, ctx).expect("render");
                assert_eq!(out.as_bytes(), &e.content[..], "trim_blocks = {trim}");
            }
        }
    }
}
