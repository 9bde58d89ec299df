//! The role's tasks and handlers, read as Ansible runs them: each task that puts a file
//! in place, installs packages or starts a service becomes part of the module's plan;
//! includes are followed; a handler that restarts or reloads a service ties that service
//! to the files whose tasks notify it. What has no translation is noted with its line.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use super::{FileMeta, Plan, note, read, unreadable};
use crate::error::SiteError;

/// The actions that put a file in place.
const TEMPLATE: &[&str] = &["template", "ansible.builtin.template"];
const COPY: &[&str] = &["copy", "ansible.builtin.copy"];
const INCLUDE: &[&str] = &[
    "include_tasks",
    "import_tasks",
    "include",
    "ansible.builtin.include_tasks",
    "ansible.builtin.import_tasks",
];
const PACKAGE: &[&str] = &[
    "package",
    "apt",
    "dnf",
    "yum",
    "ansible.builtin.package",
    "ansible.builtin.apt",
    "ansible.builtin.dnf",
    "ansible.builtin.yum",
];
const SERVICE: &[&str] = &[
    "service",
    "systemd",
    "systemd_service",
    "ansible.builtin.service",
    "ansible.builtin.systemd",
    "ansible.builtin.systemd_service",
];
/// Task keywords that are not the action.
const KEYWORDS: &[&str] = &[
    "name",
    "when",
    "notify",
    "tags",
    "become",
    "become_user",
    "register",
    "vars",
    "listen",
    "changed_when",
    "failed_when",
    "ignore_errors",
    "no_log",
    "check_mode",
    "loop",
    "with_items",
    "loop_control",
    "delegate_to",
    "run_once",
    "environment",
    "args",
];

/// Walks the role's `tasks/main.yml` and what it includes, gathering into `plan`.
pub(super) fn walk(role: &Path, vars: &Value, dir: &str, plan: &mut Plan) -> Result<(), SiteError> {
    Walk {
        role,
        vars,
        dir,
        plan,
    }
    .tasks("tasks/main.yml", 0)
}

/// A walk through the role's task files, gathering into `plan`.
struct Walk<'a> {
    role: &'a Path,
    /// The role's variables, which a `dest` is rendered with.
    vars: &'a Value,
    /// The module's directory in the site (`modules/NAME`).
    dir: &'a str,
    plan: &'a mut Plan,
}

/// Where a task is: its file, line and name, for what is noted of it.
#[derive(Clone, Copy)]
struct At<'t> {
    rel: &'t str,
    line: Option<usize>,
    name: &'t str,
}

impl Walk<'_> {
    /// Walks the task file `rel` (included `depth` deep).
    fn tasks(&mut self, rel: &str, depth: usize) -> Result<(), SiteError> {
        let Some(text) = read(self.role, rel)? else {
            if depth > 0 {
                note(
                    self.plan,
                    rel,
                    None,
                    "included, but the role has no such file",
                );
            }
            return Ok(());
        };
        let tasks: Value = serde_norway::from_str(&text).map_err(|e| {
            let err = SiteError::in_file(rel, e.to_string());
            match e.location() {
                Some(l) => err.at(l.line(), l.column()),
                None => err,
            }
        })?;
        let lines = item_lines(&text);
        let Some(tasks) = tasks.as_array() else {
            return Ok(());
        };
        for (i, task) in tasks.iter().enumerate() {
            self.task(rel, lines.get(i).copied(), task, depth)?;
        }
        Ok(())
    }

    /// Translates one task (a block's tasks each), or notes why it cannot.
    fn task(
        &mut self,
        rel: &str,
        line: Option<usize>,
        task: &Value,
        depth: usize,
    ) -> Result<(), SiteError> {
        let Some(t) = task.as_object() else {
            note(self.plan, rel, line, "not a task");
            return Ok(());
        };
        let name = t.get("name").and_then(Value::as_str).unwrap_or("(unnamed)");
        let at = At { rel, line, name };
        if let Some(Value::Array(block)) = t.get("block") {
            for inner in block {
                self.task(rel, line, inner, depth)?;
            }
            if t.contains_key("rescue") || t.contains_key("always") {
                self.note(
                    at,
                    format!("task `{name}`: rescue/always are not translated"),
                );
            }
            return Ok(());
        }
        let Some((action, args)) = t.iter().find(|(k, _)| !KEYWORDS.contains(&k.as_str())) else {
            self.note(at, format!("task `{name}` has no action"));
            return Ok(());
        };
        let action = action.as_str();
        if INCLUDE.contains(&action) {
            self.include(at, action, args, depth)
        } else if SERVICE.contains(&action) {
            self.service(at, action, args, t);
            Ok(())
        } else if PACKAGE.contains(&action) {
            self.package(at, action, args, t);
            Ok(())
        } else if TEMPLATE.contains(&action) {
            self.file(at, action, "templates", &arguments(args), t)
        } else if COPY.contains(&action) {
            self.file(at, action, "files", &arguments(args), t)
        } else {
            self.note(at, format!("task `{name}` (`{action}`) is not translated"));
            Ok(())
        }
    }

    /// Notes what of the task at `at` is not translated.
    fn note(&mut self, at: At<'_>, what: String) {
        note(self.plan, at.rel, at.line, what);
    }

    /// An `include_tasks` (or `import_tasks`): the file it names is walked, unless that
    /// is computed or the includes go too deep.
    fn include(
        &mut self,
        at: At<'_>,
        action: &str,
        args: &Value,
        depth: usize,
    ) -> Result<(), SiteError> {
        let file = args
            .as_str()
            .or_else(|| args.get("file").and_then(Value::as_str))
            .unwrap_or_default();
        if file.contains("{{") || file.is_empty() || depth > 8 {
            let name = at.name;
            self.note(
                at,
                format!("task `{name}`: `{action}: {file}` is not followed"),
            );
            Ok(())
        } else {
            self.tasks(&format!("tasks/{file}"), depth + 1)
        }
    }

    /// A service task: `[[service]]` for a service started and enabled.
    fn service(&mut self, at: At<'_>, action: &str, args: &Value, task: &Map<String, Value>) {
        let a = arguments(args);
        let unit = a.get("name").filter(|n| !n.contains("{{"));
        let state = a.get("state").map_or("started", String::as_str);
        let enabled = a
            .get("enabled")
            .is_none_or(|e| matches!(e.as_str(), "yes" | "true" | "True"));
        match unit {
            Some(unit) if state == "started" && enabled && !task.contains_key("when") => {
                self.plan.services.push(unit.clone());
            }
            _ => self.note(
                at,
                format!(
                    "task `{}` (`{action}`) is not translated: only a service started and enabled is",
                    at.name
                ),
            ),
        }
    }

    /// A package task: `[[package]]` for the names it installs.
    fn package(&mut self, at: At<'_>, action: &str, args: &Value, task: &Map<String, Value>) {
        let names: Vec<String> = match args.get("name").or(args.get("pkg")) {
            Some(Value::String(s)) => s.split(',').map(|p| p.trim().to_string()).collect(),
            Some(Value::Array(a)) => a
                .iter()
                .map(|v| v.as_str().unwrap_or("{{").to_string())
                .collect(),
            _ => match arguments(args).get("name") {
                Some(s) => s.split(',').map(|p| p.trim().to_string()).collect(),
                None => Vec::new(),
            },
        };
        let state = arguments(args)
            .get("state")
            .cloned()
            .unwrap_or("present".into());
        let plain = !names.is_empty() && names.iter().all(|n| !n.contains("{{") && !n.is_empty());
        let name = at.name;
        if !plain
            || !matches!(state.as_str(), "present" | "installed" | "latest")
            || task.contains_key("loop")
            || task.contains_key("with_items")
        {
            self.note(
                at,
                format!(
                    "task `{name}` (`{action}`, state {state}) is not translated: only named packages to install are"
                ),
            );
            return;
        }
        if task.contains_key("when") {
            self.note(
                at,
                format!("task `{name}`: its `when` is dropped: the packages are always installed"),
            );
        }
        self.plan.packages.extend(names);
    }

    /// A `template` or `copy` task: the role's file from `base` (`templates` or `files`)
    /// goes where its `dest` says, with its mode, owner and group, and the handlers it
    /// notifies learn that path.
    fn file(
        &mut self,
        at: At<'_>,
        action: &str,
        base: &str,
        args: &BTreeMap<String, String>,
        task: &Map<String, Value>,
    ) -> Result<(), SiteError> {
        let name = at.name;
        let (Some(src), Some(dest)) = (args.get("src"), args.get("dest")) else {
            self.note(
                at,
                format!("task `{name}` (`{action}`) has no src and dest"),
            );
            return Ok(());
        };
        let dest = match crate::render::render_template(at.rel, dest, self.vars) {
            Ok(d) if d.starts_with('/') && !d.ends_with('/') => d,
            Ok(d) => {
                self.note(
                    at,
                    format!("task `{name}`: dest `{d}` is not a file's absolute path"),
                );
                return Ok(());
            }
            Err(e) => {
                self.note(at, format!("task `{name}`: dest: {}", e.message));
                return Ok(());
            }
        };
        if src.contains("{{") || task.contains_key("loop") || task.contains_key("with_items") {
            self.note(
                at,
                format!("task `{name}`: a computed src or a loop is not translated"),
            );
            return Ok(());
        }
        let Some(content) = role_file(self.role, base, src)? else {
            self.note(
                at,
                format!("task `{name}`: {base}/{src} is not in the role"),
            );
            return Ok(());
        };
        if base == "templates" {
            let text = String::from_utf8_lossy(&content).into_owned();
            self.plan.templates.push((format!("templates/{src}"), text));
        }
        let suffix = if base == "templates" { ".j2" } else { "" };
        let dir = self.dir;
        self.plan
            .files
            .insert(format!("{dir}/{base}{dest}{suffix}"), content);
        if task.contains_key("when") {
            self.note(
                at,
                format!("task `{name}`: its `when` is dropped: {dest} is always put in place"),
            );
        }
        let (mode, owner, group) = (args.get("mode"), args.get("owner"), args.get("group"));
        if mode.is_some() || owner.is_some() || group.is_some() {
            self.plan.meta.push(FileMeta {
                path: dest.clone(),
                mode: mode.cloned(),
                owner: owner.cloned(),
                group: group.cloned(),
            });
        }
        for handler in notified(task) {
            self.plan
                .notified
                .entry(handler)
                .or_default()
                .push(dest.clone());
        }
        Ok(())
    }
}

/// The handlers a task notifies.
fn notified(task: &Map<String, Value>) -> Vec<String> {
    match task.get("notify") {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        _ => Vec::new(),
    }
}

/// A task's arguments, as a mapping or Ansible's `k=v` string, as strings.
fn arguments(args: &Value) -> BTreeMap<String, String> {
    let text = |v: &Value| match v {
        Value::String(s) => s.clone(),
        // A mode written 0644 in YAML 1.2 reads as the number 644.
        Value::Number(n) => format!("0{n}"),
        other => other.to_string(),
    };
    match args {
        Value::Object(m) => m.iter().map(|(k, v)| (k.clone(), text(v))).collect(),
        Value::String(s) => s
            .split_whitespace()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| (k.to_string(), v.trim_matches(['"', '\'']).to_string()))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// A file of the role's `templates/` or `files/`, refusing paths that leave it.
pub(super) fn role_file(role: &Path, base: &str, src: &str) -> Result<Option<Vec<u8>>, SiteError> {
    if src.starts_with('/') || src.split('/').any(|p| p == "..") {
        return Ok(None);
    }
    let path = role.join(base).join(src);
    if !strata_fs::exists(&path) {
        return Ok(None);
    }
    strata_fs::read(&path)
        .map(Some)
        .map_err(|e| unreadable(&path, e))
}

/// Handler name → service, for handlers that restart or reload one.
pub(super) fn handlers(
    role: &Path,
    plan: &mut Plan,
) -> Result<BTreeMap<String, (String, bool)>, SiteError> {
    let rel = "handlers/main.yml";
    let mut out = BTreeMap::new();
    let Some(text) = read(role, rel)? else {
        return Ok(out);
    };
    let list: Value =
        serde_norway::from_str(&text).map_err(|e| SiteError::in_file(rel, e.to_string()))?;
    let lines = item_lines(&text);
    for (i, h) in list.as_array().into_iter().flatten().enumerate() {
        let line = lines.get(i).copied();
        let name = h.get("name").and_then(Value::as_str).unwrap_or_default();
        let service = h.as_object().and_then(|m| {
            m.iter()
                .find(|(k, _)| SERVICE.contains(&k.as_str()))
                .map(|(_, v)| arguments(v))
        });
        match service {
            Some(a)
                if matches!(
                    a.get("state").map(String::as_str),
                    Some("restarted" | "reloaded")
                ) && a.contains_key("name")
                    && !a["name"].contains("{{") =>
            {
                let reload = a["state"] == "reloaded";
                let entry = (a["name"].clone(), reload);
                for key in [Some(name), h.get("listen").and_then(Value::as_str)]
                    .into_iter()
                    .flatten()
                {
                    out.insert(key.to_string(), entry.clone());
                }
            }
            _ => note(
                plan,
                rel,
                line,
                format!(
                    "handler `{name}` is not translated (only a service's restart or reload is)"
                ),
            ),
        }
    }
    Ok(out)
}

/// The 1-based line of each top-level item (`- `) of a YAML list, in order.
fn item_lines(text: &str) -> Vec<usize> {
    let dash = |l: &str| l.trim_start().starts_with("- ") || l.trim_start() == "-";
    let indent = text
        .lines()
        .filter(|l| dash(l))
        .map(|l| l.len() - l.trim_start().len())
        .min()
        .unwrap_or(0);
    text.lines()
        .enumerate()
        .filter(|(_, l)| dash(l) && l.len() - l.trim_start().len() == indent)
        .map(|(i, _)| i + 1)
        .collect()
}
