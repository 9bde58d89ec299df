//! `strata secret`: a site's secrets, encrypted to the nodes they are for and to the
//! admins (docs/secrets.md).

use std::io::{IsTerminal, Read, Write};
use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_core::Site;
use strata_secrets::{SecretFiles, SecretMeta};

use crate::cli::SiteArg;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Manage the site's secrets: `secrets/NAME.age`, readable only by the nodes it is for
/// and the admins (`[secrets] admins`), and `secrets/NAME.toml`, who that is.
#[derive(Debug, Subcommand)]
pub enum SecretCommand {
    /// Encrypt a value (read from stdin, or --file) to the nodes --to selects and the
    /// admins. Every node selected needs its age key in its file (`[keys] age`, printed
    /// by `strata keys node` on it).
    Set(SetArgs),
    /// List the site's secrets, who they are for, and which have stale recipients.
    List(ListArgs),
    /// Decrypt a secret with an admin's age identity and print its value.
    Show(ShowArgs),
    /// Re-encrypt secrets whose recipients changed (a node joined or left a group, a
    /// node's key or the admins changed), after showing the difference. Decrypts first
    /// with an admin's age identity.
    Rekey(RekeyArgs),
}

/// `secret set`.
#[derive(Debug, Args)]
pub struct SetArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The secret's name: letters, digits and `_` (scripts read it as
    /// STRATA_SECRET_<NAME>).
    pub name: String,
    /// Who it is for: NODE, group:GROUP, role:ROLE or env:ENVIRONMENT (repeatable).
    #[arg(long, value_name = "SELECTOR", required = true)]
    pub to: Vec<String>,
    /// Read the value from this file rather than stdin (byte for byte: no newline is
    /// removed).
    #[arg(long, value_name = "FILE")]
    pub file: Option<PathBuf>,
}

/// `secret list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// An admin's age identity file.
#[derive(Debug, Clone, Args)]
pub struct IdentityArg {
    /// An admin's age identity file (AGE-SECRET-KEY-1…, as `age-keygen` writes)
    /// [default: $XDG_CONFIG_HOME/strata/keys/age.key, else ~/.config/strata/keys/age.key].
    #[arg(long, value_name = "FILE")]
    pub identity: Option<PathBuf>,
}

impl IdentityArg {
    fn path(&self) -> anyhow::Result<PathBuf> {
        if let Some(p) = &self.identity {
            return Ok(p.clone());
        }
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => {
                PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config")
            }
        };
        Ok(base.join("strata/keys/age.key"))
    }
}

/// `secret show`.
#[derive(Debug, Args)]
pub struct ShowArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The secret.
    pub name: String,
    #[command(flatten)]
    pub identity: IdentityArg,
}

/// `secret rekey`.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// Only this secret [default: every secret whose recipients are stale].
    pub name: Option<String>,
    /// Do not ask (needed when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
    #[command(flatten)]
    pub identity: IdentityArg,
}

pub fn run(cmd: &SecretCommand, printer: &Printer) -> CommandResult {
    match cmd {
        SecretCommand::Set(a) => set(a, printer),
        SecretCommand::List(a) => list(a, printer),
        SecretCommand::Show(a) => show(a, printer),
        SecretCommand::Rekey(a) => rekey(a, printer),
    }
}

/// The most a secret's value may be.
const VALUE_LIMIT: u64 = 1 << 20;

fn set(a: &SetArgs, printer: &Printer) -> CommandResult {
    strata_secrets::secret_name(&a.name)?;
    let site = Site::open(&a.site.site)?;
    let recipients = strata_secrets::resolve(&site, &a.to)?;
    let value = match &a.file {
        Some(f) => strata_fs::read(f)?,
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                printer.note("reading the value from stdin (end it with Ctrl-D)");
            }
            let mut buf = Vec::new();
            stdin
                .lock()
                .take(VALUE_LIMIT + 1)
                .read_to_end(&mut buf)
                .context("cannot read the value from stdin")?;
            buf
        }
    };
    if value.len() as u64 > VALUE_LIMIT {
        return Err(anyhow::anyhow!("secret `{}` is larger than 1 MiB", a.name).into());
    }
    if std::str::from_utf8(&value).is_err() {
        return Err(strata_secrets::SecretError::NotText(a.name.clone()).into());
    }
    let ciphertext = SecretFiles::encrypt(&a.name, &value, &recipients.keys()?)?;
    let files = SecretFiles::of(&site.dir);
    files.write(&a.name, &ciphertext, &recipients.meta(&a.to))?;
    printer.out(&format!(
        "secret {}: encrypted to {} ({}) and {} admin(s) in {}\n",
        a.name,
        plural(recipients.nodes.len(), "node"),
        recipients
            .nodes
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", "),
        recipients.admins.len(),
        SecretFiles::rel(&a.name, "age"),
    ))?;
    Ok(())
}

fn plural(n: usize, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        _ => format!("{n} {what}s"),
    }
}

/// One secret as `list` shows it.
#[derive(Debug, serde::Serialize)]
struct Listed {
    name: String,
    to: Vec<String>,
    recipients: Vec<String>,
    /// `+web9 −web3`, when stale; or why it cannot be resolved.
    stale: Option<String>,
}

fn list(a: &ListArgs, printer: &Printer) -> CommandResult {
    let site = Site::open(&a.site.site)?;
    let files = SecretFiles::of(&site.dir);
    let mut out = Vec::new();
    for name in files.list()? {
        let meta = files.meta(&name)?;
        let stale = match strata_secrets::resolve(&site, &meta.to) {
            Ok(now) => Some(strata_secrets::stale(&meta, &now).to_string()),
            Err(e) => Some(e.to_string()),
        }
        .filter(|s| !s.is_empty());
        out.push(Listed {
            name,
            to: meta.to,
            recipients: meta.recipients.into_keys().collect(),
            stale,
        });
    }
    if a.json {
        printer.json(&out)?;
        return Ok(());
    }
    let mut text = String::new();
    for l in &out {
        text.push_str(&format!(
            "{}  to {}  nodes {}{}\n",
            l.name,
            l.to.join(" "),
            l.recipients.join(", "),
            l.stale
                .as_deref()
                .map(|s| format!("  stale: {s}"))
                .unwrap_or_default()
        ));
    }
    printer.out(&crate::printer::clean_lines(&text))?;
    Ok(())
}

fn show(a: &ShowArgs, printer: &Printer) -> CommandResult {
    strata_secrets::secret_name(&a.name)?;
    let site = Site::open(&a.site.site)?;
    let path = a.identity.path()?;
    let identity = strata_secrets::load_identity(&path)?;
    let value = SecretFiles::of(&site.dir).decrypt(
        &a.name,
        &identity,
        &format!("the identity {}", path.display()),
    )?;
    // The one place a value is printed: the admin asked for it.
    printer.out(value.expose())?;
    Ok(())
}

fn rekey(a: &RekeyArgs, printer: &Printer) -> CommandResult {
    let site = Site::open(&a.site.site)?;
    let files = SecretFiles::of(&site.dir);
    let names = match &a.name {
        Some(n) => {
            strata_secrets::secret_name(n)?;
            vec![n.clone()]
        }
        None => files.list()?,
    };
    let mut todo: Vec<(String, SecretMeta, strata_secrets::Recipients)> = Vec::new();
    let mut text = String::new();
    for name in names {
        let meta = files.meta(&name)?;
        let now = strata_secrets::resolve(&site, &meta.to)?;
        let diff = strata_secrets::stale(&meta, &now);
        if diff.is_empty() {
            if a.name.is_some() {
                text.push_str(&format!("secret {name}: recipients unchanged\n"));
            }
            continue;
        }
        text.push_str(&format!("secret {name}: {diff}\n"));
        todo.push((name, meta, now));
    }
    printer.out(&crate::printer::clean_lines(&text))?;
    if todo.is_empty() {
        if a.name.is_none() {
            printer.out("every secret's recipients are up to date\n")?;
        }
        return Ok(());
    }
    if !a.yes && !confirm(&format!("re-encrypt {}?", plural(todo.len(), "secret")))? {
        return Err(anyhow::anyhow!("nothing re-encrypted").into());
    }
    let path = a.identity.path()?;
    let identity = strata_secrets::load_identity(&path)
        .context("rekey decrypts each secret with an admin's identity first")?;
    for (name, meta, now) in todo {
        let key = format!("the identity {}", path.display());
        let value = files.decrypt(&name, &identity, &key)?;
        let ciphertext = SecretFiles::encrypt(&name, value.expose().as_bytes(), &now.keys()?)?;
        files.write(&name, &ciphertext, &now.meta(&meta.to))?;
        printer.out(&format!(
            "secret {name}: re-encrypted to {}\n",
            plural(now.nodes.len(), "node")
        ))?;
    }
    Ok(())
}

/// Asks on the terminal; refuses when stdin is not one.
fn confirm(question: &str) -> anyhow::Result<bool> {
    let stdin = std::io::stdin();
    if !stdin.is_terminal() {
        return Err(anyhow::anyhow!(
            "stdin is not a terminal: pass --yes to re-encrypt without asking"
        ));
    }
    let mut err = std::io::stderr().lock();
    write!(err, "{question} [y/N] ")?;
    err.flush()?;
    let mut answer = String::new();
    stdin.read_line(&mut answer)?;
    Ok(matches!(answer.trim(), "y" | "Y" | "yes"))
}
