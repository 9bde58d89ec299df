//! `strata capture`: paths of a live tree read into a module (files/ plus `[[file]]`,
//! `[[dir]]` and `[[link]]` entries for what is not a default), so that a hand-configured
//! host becomes a site. This module reads the tree and writes the module; the CLI
//! fetches a remote tree, refuses or encrypts secrets and shows what changed.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use strata_fs::{FsError, Root};
use strata_types::{Snapshot, TargetPath, UserDb};

/// What was read of a tree.
#[derive(Debug, Default)]
pub struct Captured {
    /// Regular files: path, content, mode, owner and group ids.
    pub files: Vec<CapturedFile>,
    /// Directories: path, mode, owner, group, and whether it holds nothing captured.
    pub dirs: Vec<(TargetPath, u32, u32, u32, bool)>,
    /// Symbolic links: path, target as written.
    pub links: Vec<(TargetPath, String)>,
    /// What was left out, and why.
    pub skipped: Vec<(TargetPath, String)>,
}

/// A regular file read for a module.
#[derive(Debug, Clone)]
pub struct CapturedFile {
    /// Where it is.
    pub path: TargetPath,
    /// Its content.
    pub content: Vec<u8>,
    /// Permission bits.
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Why it looks like a secret (`a *.key file`), if it does.
    pub secret: Option<&'static str>,
}

/// Why a capture stopped.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    /// The tree could not be read.
    #[error(transparent)]
    Fs(#[from] FsError),
    /// A path given does not exist.
    #[error("{0}: no such file or directory")]
    Missing(TargetPath),
}

/// Reads `paths` (files, links, and directories whole) from `root`. Sockets, devices and
/// FIFOs, unreadable files, and links whose target climbs out of the root are listed in
/// `skipped`, never silently dropped; a path given that does not exist is an error.
pub fn capture(root: &Root, paths: &[TargetPath]) -> Result<Captured, CaptureError> {
    let mut out = Captured::default();
    for p in paths {
        if matches!(root.inspect(p)?, Snapshot::Absent) {
            return Err(CaptureError::Missing(p.clone()));
        }
        walk(root, p, &mut out)?;
    }
    out.files.sort_by(|a, b| a.path.cmp(&b.path));
    out.files.dedup_by(|a, b| a.path == b.path);
    out.dirs.sort_by(|a, b| a.0.cmp(&b.0));
    out.dirs.dedup_by(|a, b| a.0 == b.0);
    out.links.sort();
    out.links.dedup();
    Ok(out)
}

/// Reads one path, and below it when it is a directory.
fn walk(root: &Root, p: &TargetPath, out: &mut Captured) -> Result<(), CaptureError> {
    match root.inspect(p)? {
        Snapshot::File { mode, uid, gid, .. } => match root.read(p) {
            Ok(Some(content)) => out.files.push(CapturedFile {
                secret: secret_like(p, &content),
                path: p.clone(),
                content,
                mode,
                uid,
                gid,
            }),
            Ok(None) => out.skipped.push((p.clone(), "vanished while read".into())),
            Err(e) => out
                .skipped
                .push((p.clone(), format!("unreadable: {}", e.source))),
        },
        Snapshot::Dir { mode, uid, gid, .. } => {
            let entries = root.list(p)?;
            out.dirs
                .push((p.clone(), mode, uid, gid, entries.is_empty()));
            for (name, _) in entries {
                match p.join(&name) {
                    Ok(child) => walk(root, &child, out)?,
                    Err(e) => out
                        .skipped
                        .push((p.clone(), format!("an entry strata cannot name: {e}"))),
                }
            }
        }
        Snapshot::Link { target, .. } => match leaves_root(p, &target) {
            true => out.skipped.push((
                p.clone(),
                format!("a symbolic link leading out of the root (-> {target})"),
            )),
            false => out.links.push((p.clone(), target)),
        },
        Snapshot::Fifo { .. } => out.skipped.push((p.clone(), "a FIFO".into())),
        Snapshot::Other { kind } => out.skipped.push((p.clone(), format!("a {kind}"))),
        Snapshot::Absent => out.skipped.push((p.clone(), "vanished while read".into())),
    }
    Ok(())
}

/// Whether a link at `p` to `target` climbs above the root (`../../..` past `/`).
fn leaves_root(p: &TargetPath, target: &str) -> bool {
    if target.starts_with('/') {
        return target
            .split('/')
            .filter(|c| !c.is_empty())
            .try_fold(0i64, step)
            .is_none();
    }
    let dir = p.parent_str().unwrap_or("/");
    (dir.split('/').filter(|c| !c.is_empty()))
        .chain(target.split('/'))
        .filter(|c| !c.is_empty())
        .try_fold(0i64, step)
        .is_none()
}

/// One component of a walk down from the root: its depth after it, none above the root.
fn step(depth: i64, c: &str) -> Option<i64> {
    match c {
        "." => Some(depth),
        ".." => (depth > 0).then(|| depth - 1),
        _ => Some(depth + 1),
    }
}

/// Why a file looks like a secret: its name (`*.key`, shadow files, SSH private keys) or
/// a PEM private key in it.
pub fn secret_like(p: &TargetPath, content: &[u8]) -> Option<&'static str> {
    let name = p.as_str().rsplit('/').next().unwrap_or_default();
    if name.ends_with(".key") || name.ends_with("_key") {
        return Some("a *.key file");
    }
    if matches!(name, "shadow" | "gshadow" | "shadow-" | "gshadow-") {
        return Some("a shadow password file");
    }
    if matches!(name, "id_rsa" | "id_dsa" | "id_ecdsa" | "id_ed25519") {
        return Some("an SSH private key");
    }
    let text = String::from_utf8_lossy(&content[..content.len().min(1 << 20)]);
    if text.contains("PRIVATE KEY-----") {
        return Some("it holds a private key");
    }
    None
}

/// What a capture writes into a module, besides its files: `secrets` maps a secret file's
/// path to the secret's name (its template then reads it).
#[derive(Debug)]
pub struct ModuleText<'a> {
    /// Where the paths were read (`db1:/etc/postgresql`).
    pub from: &'a str,
    /// The tree's users and groups, to write owners by name.
    pub users: &'a UserDb,
    /// Secret files and the names of their secrets.
    pub secrets: &'a BTreeMap<TargetPath, String>,
}

/// The module's files, relative to its directory, with their content and whether each
/// is executable: `module.toml`, `files/…` and, for secrets, `templates/….j2`.
pub fn module_files(c: &Captured, m: &ModuleText<'_>) -> Vec<(String, Vec<u8>, bool)> {
    let mut toml = format!(
        "# Captured by `strata capture` from {}.\ndescription = \"captured from {}\"\n",
        m.from.replace(['"', '\\', '\n'], "_"),
        m.from.replace(['"', '\\', '\n'], "_"),
    );
    let mut out = Vec::new();
    let owner = |uid: u32, gid: u32, t: &mut String| {
        if uid != 0 {
            let _ = writeln!(t, "owner = {}", quote(&m.users.user_name(uid)));
        }
        if gid != 0 {
            let _ = writeln!(t, "group = {}", quote(&m.users.group_name(gid)));
        }
    };
    for (p, mode, uid, gid, empty) in &c.dirs {
        if *empty || *mode != 0o755 || *uid != 0 || *gid != 0 {
            let _ = writeln!(toml, "\n[[dir]]\npath = {}", quote(p.as_str()));
            if *mode != 0o755 {
                let _ = writeln!(toml, "mode = \"{mode:04o}\"");
            }
            owner(*uid, *gid, &mut toml);
        }
    }
    for f in &c.files {
        let rel = f.path.as_str().trim_start_matches('/');
        let exec = f.mode & 0o111 != 0;
        let default = if exec { 0o755 } else { 0o644 };
        if f.mode != default || f.uid != 0 || f.gid != 0 {
            let _ = writeln!(toml, "\n[[file]]\npath = {}", quote(f.path.as_str()));
            if f.mode != default {
                let _ = writeln!(toml, "mode = \"{:04o}\"", f.mode);
            }
            owner(f.uid, f.gid, &mut toml);
        }
        match m.secrets.get(&f.path) {
            Some(name) => out.push((
                format!("templates/{rel}.j2"),
                format!("{{{{ secret(\"{name}\") }}}}").into_bytes(),
                exec,
            )),
            None => out.push((format!("files/{rel}"), f.content.clone(), exec)),
        }
    }
    for (p, target) in &c.links {
        let _ = writeln!(
            toml,
            "\n[[link]]\npath = {}\ntarget = {}",
            quote(p.as_str()),
            quote(target)
        );
    }
    out.push(("module.toml".into(), toml.into_bytes(), false));
    out.sort();
    out
}

/// A TOML basic string.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_string()).to_string()
}

/// The module directory of `name` in the site, if it exists.
pub fn module_dir(site: &Path, name: &str) -> Option<std::path::PathBuf> {
    let dir = site.join("modules").join(name);
    strata_fs::is_dir(&dir).then_some(dir)
}

/// Which module other than `except` declares each of `paths` in its files/ or
/// templates/ (any version, any environment overlay) or as a `[[link]]`: a capture must
/// not take a path another module manages.
pub fn claimed(
    site: &Path,
    except: &str,
    paths: &[TargetPath],
) -> Result<Vec<(TargetPath, String)>, FsError> {
    let wanted: BTreeMap<&str, &TargetPath> = paths.iter().map(|p| (p.as_str(), p)).collect();
    let mut out = Vec::new();
    for f in strata_fs::walk_files(&site.join("modules"))? {
        let mut parts = f.rel.split('/');
        let Some(module) = parts.next() else { continue };
        if module == except {
            continue;
        }
        let rest: Vec<&str> = parts.collect();
        let Some(i) = rest.iter().position(|c| *c == "files" || *c == "templates") else {
            if f.rel.ends_with("module.toml") {
                let text = strata_fs::read_to_string(&f.path)?;
                for (path, p) in &wanted {
                    if text.contains(&format!("\"{path}\"")) && text.contains("[[link]]") {
                        out.push(((*p).clone(), module.to_string()));
                    }
                }
            }
            continue;
        };
        let target = format!("/{}", rest[i + 1..].join("/"));
        let target = target.strip_suffix(".j2").unwrap_or(&target);
        let target = target.strip_suffix(".sh-template").unwrap_or(target);
        if let Some(p) = wanted.get(target) {
            out.push(((*p).clone(), module.to_string()));
        }
    }
    out.sort();
    out.dedup();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> TargetPath {
        TargetPath::parse(s).unwrap()
    }

    #[test]
    fn links_that_climb_out_of_the_root_are_told_apart() {
        assert!(leaves_root(&p("/etc/x"), "../../../outside"));
        assert!(leaves_root(&p("/etc/x"), "/../outside"));
        assert!(!leaves_root(&p("/etc/x"), "../usr/share/x"));
        assert!(!leaves_root(&p("/etc/x"), "/usr/share/x"));
        assert!(!leaves_root(&p("/etc/x"), "y"));
    }

    #[test]
    fn secrets_are_known_by_name_or_by_a_private_key_inside() {
        assert!(secret_like(&p("/etc/ssl/private/db.key"), b"x").is_some());
        assert!(secret_like(&p("/etc/shadow"), b"x").is_some());
        assert!(secret_like(&p("/etc/ssh/ssh_host_ed25519_key"), b"x").is_some());
        assert!(secret_like(&p("/etc/x.pem"), b"-----BEGIN RSA PRIVATE KEY-----").is_some());
        assert!(secret_like(&p("/etc/x.pem"), b"-----BEGIN CERTIFICATE-----").is_none());
        assert!(secret_like(&p("/etc/motd"), b"hello").is_none());
    }
}
