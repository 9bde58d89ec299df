//! `strata rebuild`.

use std::path::PathBuf;

use anyhow::{Context, anyhow};
use clap::Args;

use crate::cli::SiteArg;
use crate::command_error::{CommandError, CommandResult};
use crate::commands::keys::KeysDir;
use crate::commands::push::{self, PushArgs};
use crate::printer::Printer;

/// Make a fresh host what another node is: its node file copied (roles, modules,
/// environment, parameters; not its [ssh] and [keys]), the new node added to every
/// group the old one is in, then pushed, with the site's hooks around its apply.
#[derive(Debug, Args)]
pub struct RebuildArgs {
    /// The new node's name.
    #[arg(value_name = "NEWHOST")]
    pub new: String,
    /// The node to copy.
    #[arg(long, value_name = "OLD")]
    pub like: String,
    #[command(flatten)]
    pub site: SiteArg,
    /// The new node's address (`[ssh] host`) [default: its name].
    #[arg(long, value_name = "ADDR")]
    pub ssh_host: Option<String>,
    /// The new node's ssh port (`[ssh] port`).
    #[arg(long, value_name = "PORT")]
    pub ssh_port: Option<u16>,
    /// The new node's ssh user (`[ssh] user`).
    #[arg(long, value_name = "USER")]
    pub ssh_user: Option<String>,
    /// Show what the new node would get; change nothing on it (the node file and groups
    /// are written all the same).
    #[arg(long)]
    pub noop: bool,
    /// Print JSON Lines, as push does.
    #[arg(long)]
    pub json: bool,
    /// Read this ssh configuration instead of ~/.ssh/config (`ssh -F`).
    #[arg(long, value_name = "FILE", env = "STRATA_SSH_CONFIG")]
    pub ssh_config: Option<PathBuf>,
    /// The signing key [default: signing.key in the key directory].
    #[arg(long, value_name = "FILE", env = "STRATA_SIGNING_KEY")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeysDir,
}

pub fn run(args: &RebuildArgs, printer: &Printer) -> CommandResult {
    let site = crate::cli::absolute(&args.site.site)?;
    strata_types::NodeName::parse(&args.new).map_err(|e| anyhow!("{}: {e}", args.new))?;
    let old_file = site.join("nodes").join(format!("{}.toml", args.like));
    let old = strata_fs::read_to_string(&old_file)
        .with_context(|| format!("{}: no node file for {}", old_file.display(), args.like))?;
    let text = node_file(args, &old)?;
    let new_file = site.join("nodes").join(format!("{}.toml", args.new));
    match strata_fs::read_to_string(&new_file) {
        Ok(existing) if same_but_keys(&existing, &text) => {}
        Ok(_) => {
            return Err(CommandError::from(anyhow!(
                "nodes/{}.toml exists and is not what rebuild would write; nothing was changed",
                args.new
            ))
            .hinted("remove it to rebuild the node like the old one, or push it as it is"));
        }
        Err(_) => strata_fs::write_site_file(&new_file, text.as_bytes())?,
    }
    for group in join_groups(&site, &args.like, &args.new)? {
        printer.note(&format!("rebuild: {} added to group {group}", args.new));
    }
    printer.note(&format!(
        "rebuild: nodes/{}.toml written like {}; pushing",
        args.new, args.like
    ));
    let push = PushArgs {
        targets: vec![args.new.clone()],
        site: SiteArg { site },
        noop: args.noop,
        forks: None,
        serial: false,
        max_failures: None,
        sets: Vec::new(),
        json: args.json,
        allow_downgrade: false,
        ssh_config: args.ssh_config.clone(),
        key: args.key.clone(),
        keys: KeysDir {
            dir: args.keys.dir.clone(),
        },
    };
    push::run(&push, printer)
}

/// The old node's file without its `[ssh]` and `[keys]` (the host's own), with the new
/// node's `[ssh]`.
fn node_file(args: &RebuildArgs, old: &str) -> anyhow::Result<String> {
    let mut table: toml::Table = toml::from_str(old).context("the old node's file")?;
    table.remove("ssh");
    table.remove("keys");
    let mut ssh = toml::Table::new();
    if let Some(h) = &args.ssh_host {
        ssh.insert("host".into(), h.clone().into());
    }
    if let Some(p) = args.ssh_port {
        ssh.insert("port".into(), i64::from(p).into());
    }
    if let Some(u) = &args.ssh_user {
        ssh.insert("user".into(), u.clone().into());
    }
    if !ssh.is_empty() {
        table.insert("ssh".into(), ssh.into());
    }
    Ok(format!(
        "# Rebuilt like {} by `strata rebuild`.\n{}",
        args.like,
        toml::to_string(&table)?
    ))
}

/// Whether the node file `existing` says what `text` does, but for the `[keys]` the host
/// gave it since (its first push records its age key there).
fn same_but_keys(existing: &str, text: &str) -> bool {
    let table = |t: &str| {
        toml::from_str::<toml::Table>(t).map(|mut t| {
            t.remove("keys");
            t
        })
    };
    matches!((table(existing), table(text)), (Ok(a), Ok(b)) if a == b)
}

/// Adds `new` after `old` in the `nodes` list of every group that lists `old` (an edit of
/// the list's text: the file's comments stay). The groups changed.
fn join_groups(site: &std::path::Path, old: &str, new: &str) -> anyhow::Result<Vec<String>> {
    let mut changed = Vec::new();
    for name in strata_fs::list_dir(&site.join("groups"))? {
        let Some(group) = name.strip_suffix(".toml") else {
            continue;
        };
        let path = site.join("groups").join(&name);
        let text = strata_fs::read_to_string(&path)?;
        let parsed: toml::Table =
            toml::from_str(&text).with_context(|| format!("groups/{name}"))?;
        let nodes = parsed.get("nodes").and_then(|v| v.as_array());
        let listed = |n: &str| nodes.is_some_and(|a| a.iter().any(|v| v.as_str() == Some(n)));
        if !listed(old) || listed(new) {
            continue;
        }
        let quoted = format!("\"{old}\"");
        let Some(at) = text.find(&quoted) else {
            return Err(anyhow!(
                "groups/{name}: {old} is listed in a form rebuild does not edit; add {new} \
                 to it by hand"
            ));
        };
        let end = at + quoted.len();
        let edited = format!("{}, \"{new}\"{}", &text[..end], &text[end..]);
        let check: toml::Table =
            toml::from_str(&edited).with_context(|| format!("groups/{name}"))?;
        if check.get("nodes") == parsed.get("nodes") {
            return Err(anyhow!("groups/{name}: cannot add {new}; add it by hand"));
        }
        strata_fs::replace_site_file(&path, edited.as_bytes())?;
        changed.push(group.to_string());
    }
    Ok(changed)
}
