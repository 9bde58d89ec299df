//! Issue 25: real templates from public Ansible roles and Salt formulas (tests/corpus,
//! sources and licences in its README), each rendered by strata and by Python's Jinja2
//! configured as Ansible (or Salt) configures it, compared byte for byte. The reference
//! is made at test time, so a template added to the corpus needs no recorded output.

use std::path::{Path, PathBuf};
use std::process::Command;

use strata_core::Dialect;

fn corpus() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/corpus")
}

/// Jinja2's output, or a failure that says how to get Jinja2.
fn reference(template: &Path, vars: &Path, dialect: Dialect) -> String {
    let script = corpus().join("reference.py");
    let out = Command::new("python3")
        .arg(&script)
        .arg(template)
        .arg(vars)
        .args((dialect == Dialect::Salt).then_some("--salt"))
        .output()
        .unwrap_or_else(|e| {
            panic!("the corpus test needs python3 with Jinja2 and PyYAML: {e} (run scripts/test, which installs them)")
        });
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("ModuleNotFoundError") {
        panic!(
            "the corpus test needs Python's Jinja2 and PyYAML (`python3 -m pip install jinja2 \
             pyyaml`, or scripts/test, which installs them): {stderr}"
        );
    }
    assert!(
        out.status.success(),
        "Jinja2 failed on {}: {stderr}",
        template.display()
    );
    String::from_utf8(out.stdout).expect("Jinja2 writes UTF-8")
}

/// A case's dialect: Salt's when its directory holds a file `salt` (a formula's
/// template), else Ansible's.
fn dialect(dir: &Path) -> Dialect {
    if strata_fs::exists(&dir.join("salt")) {
        Dialect::Salt
    } else {
        Dialect::Ansible
    }
}

/// Each case of the corpus: a directory with `template.j2` and `vars.json`.
fn cases() -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = strata_fs::list_dir(&corpus())
        .expect("tests/corpus is readable")
        .into_iter()
        .map(|n| corpus().join(n))
        .filter(|d| strata_fs::exists(&d.join("template.j2")))
        .collect();
    dirs.sort();
    dirs
}

#[test]
fn real_templates_render_byte_for_byte_as_ansible_and_salt_render_them() {
    let cases = cases();
    assert!(cases.len() >= 32, "the corpus lost cases: {cases:?}");
    let mut failed = Vec::new();
    for dir in &cases {
        let name = dir.file_name().unwrap().to_string_lossy().to_string();
        let (template, vars) = (dir.join("template.j2"), dir.join("vars.json"));
        let source = strata_fs::read_to_string(&template).expect("readable template");
        let vars_text = strata_fs::read_to_string(&vars).expect("readable vars");
        let vars: serde_json::Value = serde_json::from_str(&vars_text).expect("vars are JSON");
        let dialect = dialect(dir);
        let want = reference(&template, &dir.join("vars.json"), dialect);
        // The templates it imports or includes, as a module's include/.
        let include = dir.join("include");
        let setup = strata_core::Setup {
            dialect,
            includes: strata_fs::is_dir(&include)
                .then(|| std::sync::Arc::new(strata_core::Includes::of_dir(&include))),
        };
        match strata_core::render_template_with(&name, &source, &vars, &setup) {
            Ok(got) if got == want => {}
            Ok(got) => {
                let diff = similar::TextDiff::from_lines(&want, &got)
                    .unified_diff()
                    .header("jinja2", "strata")
                    .to_string();
                failed.push(format!("{name}: differs\n{diff}"));
            }
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    assert!(failed.is_empty(), "{}", failed.join("\n"));
}
