//! Skeletons for `strata new`: a working, commented site or module.

use std::path::Path;

use crate::error::SiteError;
use crate::versions::Ref;

/// The files of a new site, relative to its directory.
fn site_files(name: &str) -> Vec<(String, String)> {
    vec![
        ("strata.toml".into(), format!("# The site: what every node of the fleet should look like.\n[site]\nname = \"{name}\"\ndefault_environment = \"production\"\n")),
        ("params/common.toml".into(), "# Parameters for every node (layer 2 of 8; see `strata params NODE`).\n[motd]\nbanner = \"Managed by strata\"\n".into()),
        ("params/env/production.toml".into(), "# Parameters for nodes in the production environment (layer 3).\n".into()),
        ("nodes/node1.example.com.toml".into(), "# One file per node, named after it (normally its FQDN).\nenvironment = \"production\"\nroles = [\"base\"]       # \"name\" = highest version, \"name@1.2\" = that version\n\n[params]                # layer 7: this node only\n# motd.banner = \"node1\"\n".into()),
        ("groups/all.toml".into(), "# A named set of nodes: pushing to it reaches its members in this order.\nnodes = [\"node1.example.com\"]\n\n[params]                # layer 5: every member\n".into()),
        ("roles/base.toml".into(), "# A role: a named list of modules (and parameters, layer 4).\nmodules = [\"motd\"]\n".into()),
    ]
    .into_iter()
    .chain(module_files("motd"))
    .collect()
}

/// The files of a new module, relative to the site.
fn module_files(name: &str) -> Vec<(String, String)> {
    let key = name.replace('-', "_");
    let mut files = vec![
        (
            format!("modules/{name}/module.toml"),
            format!(
                "# Module {name}. Every table is optional.\ndescription = \"{name}\"\nrequires = []                  # modules applied before this one\n# template_dialect = \"salt\"  # templates as Salt renders them (docs/templates.md)\n\n[params]                       # defaults, seen in templates as {key}.*\nbanner = \"Managed by strata\"\n\n# [[file]]                     # metadata for paths from files/ and templates/ (globs)\n# path = \"/etc/{name}/*\"\n# mode = \"0640\"\n# owner = \"root\"\n# group = \"root\"\n\n# [[dir]]\n# path = \"/var/lib/{name}\"\n\n# [[link]]\n# path = \"/etc/{name}/current\"\n# target = \"{name}.conf\"\n\n# [[package]]                  # apt-get or dnf, inside the sandbox; removed when undeclared\n# name = \"{name}\"\n\n# [[user]]                     # useradd/usermod; also [[group]]\n# name = \"{name}\"\n# system = true\n\n# [[service]]                  # systemctl enable; restarted after commits touching these\n# name = \"{name}\"\n# restart_on = [\"/etc/{name}/**\"]\n\n# [[line]]                     # a line in a file no module declares whole\n# path = \"/etc/hosts\"\n# line = \"127.0.1.1 {name}\"\n\n# [[download]]                 # fetched by strata, checked against its sha256\n# url = \"https://example.org/{name}.tar.gz\"\n# sha256 = \"<64 hex digits>\"\n# path = \"/opt/{name}.tar.gz\"\n\n# Executables in scripts/ run after this module's files, in lexical order, inside a\n# sandbox that a plan observes (needs root). templates/**/*.sh-template print a file.\n# timeout = \"10m\"              # per script\n# plan_network = false          # scripts get only loopback in a plan\n"
            ),
        ),
        (
            format!("modules/{name}/files/usr/share/doc/strata-{name}/README"),
            format!(
                "Files under files/ are copied as they are: this one goes to /usr/share/doc/strata-{name}/README.\n"
            ),
        ),
    ];
    let template = if name == "motd" {
        (
            "modules/motd/templates/etc/motd.j2".to_string(),
            "{{ motd.banner }}\nThis is {{ node.name }} ({{ node.environment }}).\n".to_string(),
        )
    } else {
        (
            format!("modules/{name}/templates/etc/{name}/{name}.conf.j2"),
            format!(
                "# Rendered by strata for {{{{ node.name }}}}.\nbanner = \"{{{{ {key}.banner }}}}\"\n"
            ),
        )
    };
    files.push(template);
    files
}

fn write_all(dir: &Path, files: &[(String, String)]) -> Result<Vec<String>, SiteError> {
    for (rel, _) in files {
        if strata_fs::exists(&dir.join(rel)) {
            return Err(SiteError::in_file(
                dir.join(rel).display().to_string(),
                "already exists; nothing was written",
            ));
        }
    }
    for (rel, text) in files {
        strata_fs::write_site_file(&dir.join(rel), text.as_bytes()).map_err(|e| {
            SiteError::in_file(dir.join(rel).display().to_string(), e.source.to_string())
                .caused_by(e)
        })?;
    }
    Ok(files.iter().map(|(rel, _)| rel.clone()).collect())
}

/// Creates a new site in `dir` (which must not hold a site yet); returns the files made.
pub fn new_site(dir: &Path) -> Result<Vec<String>, SiteError> {
    let name = dir
        .file_name()
        .map_or("site".into(), |n| n.to_string_lossy().into_owned());
    write_all(dir, &site_files(&name))
}

/// Creates a new module in the site `dir`; returns the files made.
pub fn new_module(dir: &Path, name: &str) -> Result<Vec<String>, SiteError> {
    let r = Ref::parse(name).map_err(|e| SiteError::new(format!("bad module name {e}")))?;
    if r.version.is_some() {
        return Err(SiteError::new(format!(
            "`{name}`: give the module's name only; versions are directories (modules/NAME/VERSION/)"
        )));
    }
    if !strata_fs::exists(&dir.join("strata.toml")) {
        return Err(SiteError::in_file(
            dir.join("strata.toml").display().to_string(),
            "not a strata site: strata.toml is missing",
        )
        .hint("pass --site DIR or run `strata new site DIR` first"));
    }
    write_all(dir, &module_files(name))
}
