//! The role's templates that its templates include or import (`{% include 'x.j2' %}`,
//! `{% from 'macros.j2' import m %}`): copied to the module's `include/` under their
//! names in the role's `templates/`, where strata's templates find them as Ansible's did
//! (crate::render's loader), and never deployed themselves.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::LazyLock;

use regex::Regex;

use super::{Plan, note, tasks::role_file};
use crate::error::SiteError;

/// An `include`, `import` or `from` tag and the name it loads, when written as a string.
static LOADS: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r#"\{%[-+]?\s*(?:include|import|from)\s+(?:"([^"]*)"|'([^']*)'|(\S+))"#)
        .expect("a valid pattern")
});

/// Copies what the role's templates its tasks use (`plan.templates`) load from the role,
/// and what those load in turn; a name that is computed, or not in the role, is noted
/// with the role's file and line that names it.
pub(super) fn copy_included(role: &Path, dir: &str, plan: &mut Plan) -> Result<(), SiteError> {
    let mut queue = plan.templates.clone();
    let mut seen = BTreeSet::new();
    while let Some((file, text)) = queue.pop() {
        for cap in LOADS.captures_iter(&text) {
            let at = cap.get(0).map_or(0, |m| m.start());
            let line = Some(text[..at].matches('\n').count() + 1);
            let Some(name) = cap.get(1).or(cap.get(2)).map(|m| m.as_str().to_string()) else {
                let expr = cap.get(3).map_or("", |m| m.as_str());
                note(
                    plan,
                    &file,
                    line,
                    format!(
                        "loads a computed template name `{expr}`: copy what it loads to include/"
                    ),
                );
                continue;
            };
            if !seen.insert(name.clone()) {
                continue;
            }
            let Some(bytes) = role_file(role, "templates", &name)? else {
                note(
                    plan,
                    &file,
                    line,
                    format!("loads `{name}`, which is not in the role's templates/"),
                );
                continue;
            };
            let text = String::from_utf8_lossy(&bytes).into_owned();
            queue.push((format!("templates/{name}"), text));
            plan.files.insert(format!("{dir}/include/{name}"), bytes);
        }
    }
    Ok(())
}
