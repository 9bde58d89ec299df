//! strata's own sandbox steps for a module's packages, groups, users and services: small
//! shell programs that call the target's own tools (apt-get or dnf, groupadd, useradd,
//! systemctl), so a plan shows exactly what those tools change. Each checks first and
//! changes nothing when the target already agrees.

use std::path::{Path, PathBuf};

use globset::{Glob, GlobSetBuilder};
use strata_core::{Group, ModuleRun, Package, Service, User};
use strata_fs::Root;
use strata_sandbox::{LineEdit, Program};
use strata_types::{Change, Deferred, Hash, TargetPath};

use crate::EngineError;

/// The programs a module runs before its files are laid (packages, groups, users), those
/// it runs after (services), and its lines.
pub struct ModuleSteps {
    pub before: Vec<Program>,
    pub after: Vec<Program>,
    pub lines: Vec<LineEdit>,
}

/// Writes the module's step programs into `dir`.
pub fn module_steps(run: &ModuleRun, dir: &Path) -> Result<ModuleSteps, EngineError> {
    strata_fs::private_dir(dir)?;
    let d = &run.declared;
    let mut n = 0;
    let mut write = |name: String, script: String, network: bool| -> Result<Program, EngineError> {
        n += 1;
        let path = dir.join(format!("{}-{n}.sh", Hash::of(run.id.as_bytes()).short()));
        strata_fs::write_private(&path, script.as_bytes())?;
        Ok(Program {
            name,
            path,
            network,
        })
    };
    let mut before = Vec::new();
    for p in &d.packages {
        before.push(write(format!("package {}", p.name), package(p), true)?);
    }
    for g in &d.groups {
        before.push(write(format!("group {}", g.name), group(g), false)?);
    }
    for u in &d.users {
        before.push(write(format!("user {}", u.name), user(u), false)?);
    }
    let mut after = Vec::new();
    for s in &d.services {
        after.push(write(format!("service {}", s.name), service(s), false)?);
    }
    let lines = d
        .lines
        .iter()
        .filter_map(|l| {
            Some(LineEdit {
                name: format!("line {}", l.path),
                path: TargetPath::parse(&l.path).ok()?,
                line: l.line.clone(),
                pattern: l.pattern.clone(),
            })
        })
        .collect();
    Ok(ModuleSteps {
        before,
        after,
        lines,
    })
}

/// A shell word.
fn q(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn package(p: &Package) -> String {
    let version = p.version.as_deref().unwrap_or("");
    format!(
        r#"set -eu
name={name}; version={version}; cache={cache}
if command -v apt-get >/dev/null 2>&1; then
  status=$(dpkg-query -W -f='${{db:Status-Status}} ${{Version}}' "$name" 2>/dev/null || true)
  case "$status" in
    "installed $version") exit 0 ;;
    "installed "*) [ -n "$version" ] || exit 0 ;;
  esac
  export DEBIAN_FRONTEND=noninteractive
  lists="$cache/apt/lists"; archives="$cache/apt/archives"
  mkdir -p "$lists/partial" "$archives/partial"
  # Other strata runs share the cache, and apt does not wait for its locks: take turns.
  if command -v flock >/dev/null 2>&1; then exec 9>"$cache/apt/strata.lock"; flock 9; fi
  set -- -q -y -o "Dir::State::Lists=$lists" -o "Dir::Cache::Archives=$archives" \
    -o APT::Sandbox::User=root -o Dpkg::Use-Pty=0 \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold
  if [ -z "$(find "$lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null)" ]; then
    apt-get "$@" update >&2
  fi
  exec apt-get "$@" install "$name${{version:+=$version}}"
elif command -v dnf >/dev/null 2>&1; then
  rpm -q "$name${{version:+-$version}}" >/dev/null 2>&1 && exit 0
  exec dnf -y --setopt=cachedir="$cache/dnf" install "$name${{version:+-$version}}"
fi
echo "no package manager on the target: strata uses apt-get (Debian, Ubuntu) or dnf" >&2
exit 1
"#,
        name = q(&p.name),
        version = q(version),
        cache = strata_sandbox::CACHE,
    )
}

fn group(g: &Group) -> String {
    let gid = g.gid.map(|g| g.to_string()).unwrap_or_default();
    format!(
        r#"set -eu
name={name}; gid={gid}
if ent=$(getent group "$name"); then
  [ -z "$gid" ] || [ "$(echo "$ent" | cut -d: -f3)" = "$gid" ] || groupmod -g "$gid" "$name"
else
  groupadd ${{gid:+-g "$gid"}} {system} "$name"
fi
"#,
        name = q(&g.name),
        gid = q(&gid),
        system = if g.system { "-r" } else { "" },
    )
}

fn user(u: &User) -> String {
    // For an existing user: each declared attribute that differs becomes a usermod flag.
    let mut checks = String::new();
    let mut create = Vec::new();
    let mut field = |flag: &str, value: &str, current: &str| {
        checks.push_str(&format!(
            "  [ \"$({current})\" = {v} ] || set -- \"$@\" {flag} {v}\n",
            v = q(value)
        ));
        create.push(format!("{flag} {}", q(value)));
    };
    if let Some(uid) = u.uid {
        field("-u", &uid.to_string(), "f 3");
    }
    if let Some(g) = &u.group {
        field("-g", g, "getent group \"$(f 4)\" | cut -d: -f1");
    }
    if let Some(groups) = &u.groups {
        let mut sorted = groups.clone();
        sorted.sort();
        sorted.dedup();
        field("-G", &sorted.join(","), "supplementary");
    }
    if let Some(c) = &u.comment {
        field("-c", c, "f 5");
    }
    if let Some(h) = &u.home {
        field("-d", h, "f 6");
    }
    if let Some(s) = &u.shell {
        field("-s", s, "f 7");
    }
    if u.system {
        create.push("-r".into());
    } else {
        create.push("-m".into());
    }
    format!(
        r#"set -eu
name={name}
if ent=$(getent passwd "$name"); then
  f() {{ echo "$ent" | cut -d: -f"$1"; }}
  supplementary() {{
    getent group | awk -F: -v u="$name" '{{ n = split($4, m, ","); for (i = 1; i <= n; i++) if (m[i] == u) print $1 }}' | sort | paste -sd, -
  }}
  set --
{checks}  [ $# -eq 0 ] || usermod "$@" "$name"
else
  useradd {create} "$name"
fi
"#,
        name = q(&u.name),
        create = create.join(" "),
    )
}

fn service(s: &Service) -> String {
    let (verb, rc) = if s.enable {
        ("enable", "defaults")
    } else {
        ("disable", "disable")
    };
    format!(
        r#"set -eu
name={name}
if command -v systemctl >/dev/null 2>&1; then
  exec systemctl {verb} "$name"
elif command -v update-rc.d >/dev/null 2>&1; then
  exec update-rc.d "$name" {rc}
fi
echo "no init system tools on the target: strata uses systemctl, or update-rc.d" >&2
exit 1
"#,
        name = q(&s.name),
    )
}

/// The restarts and reloads a commit of `changes` calls for, after the commit, as
/// deferred commands of the declaring module. A target whose systemd is not running (a
/// root being provisioned) gets none: its services start as enabled when it boots.
pub fn restarts(
    root: &Root,
    runs: &[ModuleRun],
    changes: &[Change],
) -> Result<Vec<Deferred>, EngineError> {
    let booted = TargetPath::parse("/run/systemd/system").expect("a fixed path");
    if !matches!(root.inspect(&booted)?, strata_types::Snapshot::Dir { .. }) {
        return Ok(Vec::new());
    }
    let changed: Vec<&TargetPath> = changes
        .iter()
        .filter(|c| c.action.changes_target())
        .map(|c| &c.path)
        .collect();
    let mut out = Vec::new();
    // Changed unit files are loaded before anything restarts.
    let units = [
        "/etc/systemd/system/",
        "/lib/systemd/system/",
        "/usr/lib/systemd/system/",
    ];
    if let Some(c) = changes
        .iter()
        .find(|c| c.action.changes_target() && units.iter().any(|u| c.path.as_str().starts_with(u)))
    {
        out.push(Deferred {
            module: c.module.clone().unwrap_or_else(|| "strata".into()),
            program: "unit files changed".into(),
            argv: vec!["systemctl".into(), "daemon-reload".into()],
        });
    }
    for r in runs {
        for s in &r.declared.services {
            for (verb, globs) in [("restart", &s.restart_on), ("reload", &s.reload_on)] {
                let mut b = GlobSetBuilder::new();
                for g in globs {
                    // Checked at compile time.
                    if let Ok(g) = Glob::new(g) {
                        b.add(g);
                    }
                }
                let Ok(set) = b.build() else { continue };
                if !globs.is_empty() && changed.iter().any(|p| set.is_match(p.as_str())) {
                    out.push(Deferred {
                        module: r.id.clone(),
                        program: format!("service {}", s.name),
                        argv: vec!["systemctl".into(), verb.into(), s.name.clone()],
                    });
                    break;
                }
            }
        }
    }
    Ok(out)
}

/// Where strata keeps package lists and packages for this target, under the cache
/// directory `cache` of the machine running strata: one directory per distribution and
/// set of package sources.
pub fn cache_dir(root: &Root, cache: &Path) -> Result<PathBuf, EngineError> {
    let mut key = Vec::new();
    let mut add = |path: &TargetPath| -> Result<(), EngineError> {
        key.extend_from_slice(path.as_str().as_bytes());
        match root.inspect(path)? {
            strata_types::Snapshot::File { .. } => key.extend(root.read(path)?.unwrap_or_default()),
            strata_types::Snapshot::Link { target, .. } => key.extend_from_slice(target.as_bytes()),
            _ => {}
        }
        Ok(())
    };
    for p in [
        "/etc/os-release",
        "/usr/lib/os-release",
        "/etc/apt/sources.list",
        "/var/lib/dpkg/arch",
    ] {
        add(&TargetPath::parse(p).expect("a fixed path"))?;
    }
    let dir = TargetPath::parse("/etc/apt/sources.list.d").expect("a fixed path");
    for (name, _) in root.list(&dir)? {
        add(&dir.join(&name)?)?;
    }
    Ok(cache.join("packages").join(Hash::of(&key).short()))
}
