//! `strata capture`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use strata_core::capture::{self, Captured, ModuleText};
use strata_fs::Root;
use strata_secrets::SecretFiles;
use strata_transport::ssh::{Connection, Endpoint, SshOptions, quote};
use strata_types::{TargetPath, UserDb};

use crate::cli::{RootArg, SiteArg};
use crate::command_error::{CommandError, CommandResult};
use crate::printer::{Printer, Style, clean};

/// Read paths of a live host (or of this machine, or a tree with --root) into a module:
/// files/ with their contents, `[[file]]`/`[[dir]]`/`[[link]]` entries for modes, owners
/// and links; what it cannot take (sockets, devices, unreadable files, links leading out
/// of the root) is listed as skipped.
///
/// Secret-looking files (`*.key`, shadow files, private keys) are refused unless
/// --include-secrets, which stores each as a secret (`strata secret set`, to --to),
/// never in clear. A module that exists is replaced only with --update, which shows the
/// diff.
#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Absolute paths, each `PATH` (this machine, or the tree --root names) or
    /// `[USER@]HOST:PATH` (over the system ssh); all from the same place.
    #[arg(value_name = "[USER@HOST:]PATH", required = true)]
    pub paths: Vec<String>,
    /// The module to write (`modules/NAME`).
    #[arg(long, value_name = "NAME")]
    pub module: String,
    #[command(flatten)]
    pub site: SiteArg,
    #[command(flatten)]
    pub root: RootArg,
    /// Replace the module when it exists, showing what changed.
    #[arg(long)]
    pub update: bool,
    /// Take secret-looking files, each stored as an encrypted secret.
    #[arg(long)]
    pub include_secrets: bool,
    /// With --include-secrets: who may read them (as `strata secret set --to`:
    /// NODE, group:G, role:R, env:E; repeatable).
    #[arg(long = "to", value_name = "SELECTOR", requires = "include_secrets")]
    pub to: Vec<String>,
    /// `ssh -F FILE` for remote paths.
    #[arg(long, value_name = "FILE")]
    pub ssh_config: Option<PathBuf>,
}

pub fn run(args: &CaptureArgs, printer: &Printer) -> CommandResult {
    let site = crate::cli::absolute(&args.site.site)?;
    let name = &args.module;
    if name.is_empty()
        || !(name.bytes())
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
    {
        return Err(anyhow!(
            "module name `{name}`: names are lowercase letters, digits, '-' and '_'"
        )
        .into());
    }
    if !strata_fs::exists(&site.join("strata.toml")) {
        return Err(anyhow!(
            "{}: not a strata site: strata.toml is missing",
            site.display()
        )
        .into());
    }
    let existing = capture::module_dir(&site, name);
    if existing.is_some() && !args.update {
        return Err(CommandError::from(anyhow!(
            "module {name} exists (modules/{name}); nothing was written"
        ))
        .hinted("pass --update to replace it with this capture and see what changed"));
    }
    let (host, paths) = split_host(&args.paths)?;
    let scratch = tempfile::Builder::new()
        .prefix("strata-capture")
        .tempdir()?;
    let mut sockets = Vec::new();
    let (root, from) = match &host {
        None => (crate::cli::absolute(&args.root.root)?, join_paths(&paths)),
        Some(h) => {
            sockets = fetch(h, &paths, scratch.path(), args.ssh_config.as_deref())?;
            (
                scratch.path().to_path_buf(),
                format!("{h}:{}", join_paths(&paths)),
            )
        }
    };
    let root = Root::open(&root)?;
    let targets = (paths.iter())
        .map(|p| TargetPath::parse(p).with_context(|| format!("{p}: not an absolute path")))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut captured = capture::capture(&root, &targets)?;
    captured.skipped.extend(sockets);
    refuse_claimed(&site, name, &captured)?;
    let secrets = secrets(args, &captured)?;
    let users = UserDb::load(&root)?;
    let files = capture::module_files(
        &captured,
        &ModuleText {
            from: &from,
            users: &users,
            secrets: &secrets,
        },
    );
    let dir = site.join("modules").join(name);
    let mut out = String::new();
    if let Some(old) = &existing {
        changes(printer, old, &files, &mut out)?;
        strata_fs::remove_dir_all(old)?;
    }
    for (rel, content, exec) in &files {
        strata_fs::write_site_file_as(&dir.join(rel), content, *exec)?;
    }
    // Encrypted last: a capture refused above leaves no secret behind.
    write_secrets(args, &site, &captured, &secrets)?;
    summary(printer, name, &captured, &secrets, &mut out);
    printer.out(&out)?;
    Ok(())
}

/// The host all paths name (none: local) and the paths.
fn split_host(args: &[String]) -> anyhow::Result<(Option<String>, Vec<String>)> {
    let mut host = None;
    let mut paths = Vec::new();
    for a in args {
        let (h, p) = match a.split_once(':') {
            Some((h, p)) if !a.starts_with('/') => (Some(h.to_string()), p.to_string()),
            _ => (None, a.clone()),
        };
        if paths.is_empty() {
            host = h.clone();
        } else if host != h {
            bail!("{a}: every path of one capture comes from the same place");
        }
        if !p.starts_with('/') {
            bail!("{a}: paths are absolute");
        }
        paths.push(p);
    }
    Ok((host, paths))
}

fn join_paths(paths: &[String]) -> String {
    paths.join(" ")
}

/// Copies `paths` of `host` into `into` with tar over ssh, owners and modes kept.
/// Sockets tar leaves out are named by it; they are listed with the skipped paths.
fn fetch(
    host: &str,
    paths: &[String],
    into: &Path,
    config: Option<&Path>,
) -> anyhow::Result<Vec<(TargetPath, String)>> {
    let (user, name) = match host.split_once('@') {
        Some((u, h)) => (Some(u.to_string()), h.to_string()),
        None => (None, host.to_string()),
    };
    let control = tempfile::Builder::new().prefix("strata-ssh").tempdir()?;
    let options = SshOptions {
        config: config.map(Path::to_path_buf),
        control_dir: control.path().to_path_buf(),
        connect_timeout: Duration::from_secs(10),
    };
    let endpoint = Endpoint {
        name,
        host: None,
        port: None,
        user,
        sudo: false,
    };
    let conn =
        Connection::open(&endpoint, &options).with_context(|| format!("cannot reach {host}"))?;
    let rels: Vec<String> = paths
        .iter()
        .map(|p| quote(p.trim_start_matches('/')))
        .collect();
    // Paths that do not exist are found by the capture itself, from the copy; tar
    // leaves sockets out, and says so.
    let remote = format!("cd / && tar -cf - --numeric-owner -- {}", rels.join(" "));
    let out = conn.run(&remote, &[])?;
    conn.close();
    if out.stdout.is_empty() {
        bail!(
            "{host}: tar failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let sockets = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("tar: ")?.strip_suffix(": socket ignored"))
        .filter_map(|p| TargetPath::parse(&format!("/{p}")).ok())
        .map(|p| (p, "a socket".to_string()))
        .collect();
    let mut untar = std::process::Command::new("tar")
        .arg("-C")
        .arg(into)
        .args(["-xpf", "-", "--numeric-owner", "--same-owner"])
        .stdin(std::process::Stdio::piped())
        .spawn()
        .context("cannot run tar")?;
    std::io::Write::write_all(&mut untar.stdin.take().expect("piped"), &out.stdout)?;
    if !untar.wait()?.success() {
        bail!("{host}: cannot unpack what tar sent");
    }
    Ok(sockets)
}

/// Refuses paths another module declares, naming it.
fn refuse_claimed(site: &Path, name: &str, c: &Captured) -> anyhow::Result<()> {
    let mut paths: Vec<TargetPath> = c.files.iter().map(|f| f.path.clone()).collect();
    paths.extend(c.links.iter().map(|(p, _)| p.clone()));
    let claimed = capture::claimed(site, name, &paths)?;
    if let Some((p, module)) = claimed.first() {
        let more = match claimed.len() {
            1 => String::new(),
            n => format!(" (and {} more)", n - 1),
        };
        bail!(
            "{p} is managed by module {module}{more}; capture it into that module \
             (--module {module} --update) or leave it out; nothing was written"
        );
    }
    Ok(())
}

/// The secret each secret-looking file becomes; refuses them without --include-secrets.
fn secrets(args: &CaptureArgs, c: &Captured) -> Result<BTreeMap<TargetPath, String>, CommandError> {
    let found: Vec<_> = c.files.iter().filter(|f| f.secret.is_some()).collect();
    if found.is_empty() {
        return Ok(BTreeMap::new());
    }
    if !args.include_secrets {
        let list: Vec<String> = (found.iter())
            .map(|f| format!("  {} ({})", f.path, f.secret.unwrap_or_default()))
            .collect();
        return Err(CommandError::from(anyhow!(
            "these look like secrets; nothing was written:\n{}",
            list.join("\n")
        ))
        .hinted(
            "pass --include-secrets --to NODE (or group:G, role:R, env:E) to store each as \
             an encrypted secret",
        ));
    }
    if args.to.is_empty() {
        return Err(anyhow!("--include-secrets needs --to: who may read the secrets").into());
    }
    let mut out = BTreeMap::new();
    for f in found {
        let mut name: String = format!("{}_{}", args.module, f.path.as_str())
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        while name.contains("__") {
            name = name.replace("__", "_");
        }
        let name = name.trim_matches('_').to_string();
        let name = if name.starts_with(|c: char| c.is_ascii_alphabetic()) {
            name
        } else {
            format!("c_{name}")
        };
        if std::str::from_utf8(&f.content).is_err() {
            return Err(anyhow!(
                "{}: a secret must be text, and this is binary; nothing was written",
                f.path
            )
            .into());
        }
        out.insert(f.path.clone(), name);
    }
    Ok(out)
}

/// Encrypts each secret file to `--to` and the admins, as `strata secret set` does.
fn write_secrets(
    args: &CaptureArgs,
    site: &Path,
    c: &Captured,
    names: &BTreeMap<TargetPath, String>,
) -> anyhow::Result<()> {
    if names.is_empty() {
        return Ok(());
    }
    let s = strata_core::Site::open(site)?;
    let recipients = strata_secrets::resolve(&s, &args.to)?;
    let keys = recipients.keys()?;
    let files = SecretFiles::of(site);
    for f in &c.files {
        if let Some(name) = names.get(&f.path) {
            let ciphertext = SecretFiles::encrypt(name, &f.content, &keys)?;
            files.write(name, &ciphertext, &recipients.meta(&args.to))?;
        }
    }
    Ok(())
}

/// What changed in the module's files, as unified diffs (none shown for secrets' files:
/// their templates hold only the secret's name).
fn changes(
    printer: &Printer,
    old: &Path,
    new: &[(String, Vec<u8>, bool)],
    out: &mut String,
) -> anyhow::Result<()> {
    let mut before: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    for f in strata_fs::walk_files(old)? {
        before.insert(f.rel.clone(), strata_fs::read(&f.path)?);
    }
    let after: BTreeMap<&str, &[u8]> = new.iter().map(|(r, c, _)| (r.as_str(), &c[..])).collect();
    let mut changed = 0;
    for (rel, content) in &after {
        let old = before.get(*rel).map(Vec::as_slice);
        if old == Some(*content) {
            continue;
        }
        changed += 1;
        let word = if old.is_none() { "added" } else { "changed" };
        out.push_str(&format!(
            "{} {}\n",
            printer.paint(Style::Yellow, &format!("{word:<9}")),
            clean(rel)
        ));
        if let Ok(p) = TargetPath::parse(&format!("/{rel}"))
            && let Some(d) = strata_core::diff_text(&p, old.unwrap_or_default(), content)
        {
            crate::show::paint_diff(printer, &d, out);
        }
    }
    for rel in before.keys().filter(|r| !after.contains_key(r.as_str())) {
        changed += 1;
        out.push_str(&format!(
            "{} {}\n",
            printer.paint(Style::Red, "removed  "),
            clean(rel)
        ));
    }
    if changed == 0 {
        out.push_str("no change to the module since the last capture\n");
    }
    Ok(())
}

/// One line per path taken or skipped, then the count.
fn summary(
    printer: &Printer,
    name: &str,
    c: &Captured,
    secrets: &BTreeMap<TargetPath, String>,
    out: &mut String,
) {
    for f in &c.files {
        let what = match secrets.get(&f.path) {
            Some(s) => format!("secret {s} (sensitive)"),
            None => format!(
                "file {:04o} {}:{} {} bytes",
                f.mode,
                f.uid,
                f.gid,
                f.content.len()
            ),
        };
        out.push_str(&format!(
            "captured {}  {}\n",
            clean(&f.path.shown()),
            clean(&what)
        ));
    }
    for (p, t) in &c.links {
        out.push_str(&format!(
            "captured {}  link -> {}\n",
            clean(&p.shown()),
            clean(t)
        ));
    }
    for (p, why) in &c.skipped {
        out.push_str(&format!(
            "{} {}  {}\n",
            printer.paint(Style::Red, "skipped "),
            clean(&p.shown()),
            clean(why)
        ));
    }
    out.push_str(&printer.paint(
        Style::Bold,
        &format!(
            "Module {name}: {} files, {} links, {} directories, {} secrets; {} skipped.",
            c.files.len(),
            c.links.len(),
            c.dirs.len(),
            secrets.len(),
            c.skipped.len()
        ),
    ));
    out.push('\n');
}
