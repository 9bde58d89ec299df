//! `strata nodes`: the server's inventory of enrolled nodes, and the tokens that enroll
//! new ones. Run on the server's machine: it reads and writes the inventory directly.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand};
use strata_server::inventory::{self, NodeState, TokenRecord};

use crate::cli::{SiteArg, absolute};
use crate::command_error::CommandResult;
use crate::commands::keys::site_root;
use crate::commands::serve::db_url;
use crate::printer::Printer;

/// List the nodes enrolled with `strata serve`, or manage them and their tokens.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct NodesArgs {
    #[command(subcommand)]
    pub command: Option<NodesCommand>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `--site` and `--db`.
#[derive(Debug, Clone, Args)]
pub struct DbArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The inventory: a SQLite file or a postgres:// URL [default: SITE/.strata/state.db].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
}

impl DbArgs {
    pub(crate) fn open(&self) -> anyhow::Result<Box<dyn inventory::Inventory>> {
        let site = absolute(&self.site.site)?;
        Ok(inventory::open(&db_url(&site, self.db.as_deref()))?)
    }
}

#[derive(Debug, Subcommand)]
pub enum NodesCommand {
    /// Make a single-use enrollment token (128 random bits, stored hashed) carrying the
    /// site's root fingerprint; give it to a node as a file (`enroll --token-file`).
    Token(TokenArgs),
    /// Accept a pending node (or let a revoked one back).
    Accept(NodeArg),
    /// Serve a node nothing more; its name stays bound to its key.
    Revoke(NodeArg),
    /// Remove a node: its name is free for another key.
    Forget(NodeArg),
    /// Compare the age keys enrolled nodes sent with their node files' `[keys] age`;
    /// `--write` copies them in (then `strata secret rekey`).
    Keys(crate::commands::nodes_keys::KeysArgs),
}

/// `nodes token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Only this node name may enroll with it.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The environment the node is put in [default: its file's in the site, else the
    /// site's default].
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    /// How long it may be used.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// How many nodes may enroll with it (above 1: a provisioning token for netboot,
    /// which also lets a netboot node that never reported come back with a new key; keep
    /// it short-lived too).
    #[arg(long, value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub uses: u32,
    /// Write it to this file (0600) instead of printing it.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

/// A node's name.
#[derive(Debug, Args)]
pub struct NodeArg {
    /// The node.
    pub node: String,
    #[command(flatten)]
    pub db: DbArgs,
}

/// The prefix of a token's text.
pub const TOKEN_PREFIX: &str = "strata1";

pub fn run(args: &NodesArgs, printer: &Printer) -> CommandResult {
    match &args.command {
        None => list(&args.db, args.json, printer),
        Some(NodesCommand::Token(t)) => token(t, printer),
        Some(NodesCommand::Accept(n)) => set(n, Some(NodeState::Accepted), printer),
        Some(NodesCommand::Revoke(n)) => set(n, Some(NodeState::Revoked), printer),
        Some(NodesCommand::Forget(n)) => set(n, None, printer),
        Some(NodesCommand::Keys(k)) => crate::commands::nodes_keys::run(k, printer),
    }
}

fn list(db: &DbArgs, json: bool, printer: &Printer) -> CommandResult {
    let nodes = db.open()?.nodes(strata_snapshot::now())?;
    if json {
        printer.json(&nodes)?;
        return Ok(());
    }
    let mut out = format!(
        "{:<30} {:<9} {:<14} {:<16} ENROLLED\n",
        "NODE", "STATE", "ENVIRONMENT", "KEY"
    );
    let time =
        |t: u64| humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(t));
    for n in &nodes {
        out.push_str(&format!(
            "{:<30} {:<9} {:<14} {:<16} {}",
            crate::printer::clean(&n.name),
            n.state.as_str(),
            n.environment,
            &n.key_id[..16.min(n.key_id.len())],
            time(n.enrolled)
        ));
        // A new key took the name over (a netboot node reprovisioned before it reported).
        if let (Some(t), Some(old)) = (n.rekeyed, &n.old_key) {
            out.push_str(&format!(
                " (new key since {}, was {})",
                time(t),
                &old[..16.min(old.len())]
            ));
        }
        out.push('\n');
    }
    printer.out(&out)?;
    Ok(())
}

fn token(t: &TokenArgs, printer: &Printer) -> CommandResult {
    if let Some(n) = &t.node {
        strata_types::NodeName::parse(n)?;
    }
    let site = absolute(&t.db.site.site)?;
    let (root, _) = site_root(&site)?;
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let secret = strata_types::hex(&secret);
    let expires = strata_snapshot::now() + t.ttl.as_secs();
    t.db.open()?.add_token(&TokenRecord {
        hash: strata_server::app::token_hash(&secret),
        node: t.node.clone(),
        environment: t.env.clone(),
        expires,
        uses: t.uses,
        // A token for several machines is a provisioning token: it may also let a netboot
        // node that never reported come back with a new key (docs/provision.md).
        provisioning: t.uses > 1,
    })?;
    let uses = if t.uses == 1 {
        "single use".to_string()
    } else {
        format!("{} uses", t.uses)
    };
    let text = format!("{TOKEN_PREFIX}.{}.{secret}\n", root.fingerprint());
    let until =
        humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(expires));
    match &t.out {
        Some(path) => {
            strata_fs::write_private(&absolute(path)?, text.as_bytes())?;
            printer.out(&format!(
                "Token written to {} ({uses}, until {until})\n",
                path.display()
            ))?;
        }
        None => {
            printer.out(&text)?;
            printer.note(&format!("{uses}, until {until}"));
        }
    }
    Ok(())
}

fn set(n: &NodeArg, state: Option<NodeState>, printer: &Printer) -> CommandResult {
    let mut inv = n.db.open()?;
    if state == Some(NodeState::Accepted) {
        // Classified (and its pool entries allocated) in the same transaction.
        let site = absolute(&n.db.site.site)?;
        let classify = crate::commands::serve::classifier(&site)?;
        let node = inv
            .accept(
                &n.node,
                strata_snapshot::now(),
                &mut |store, name, facts| classify(store, name, facts),
            )?
            .map_err(|why| anyhow::anyhow!("{}: not accepted: {why}", n.node))?;
        let profile = node
            .classification
            .as_deref()
            .and_then(|c| serde_json::from_str::<strata_snapshot::Classified>(c).ok())
            .map(|c| format!(", hardware profile {}", c.profile))
            .unwrap_or_default();
        printer.out(&format!("{}: accepted{profile}\n", n.node))?;
        return Ok(());
    }
    let found = match state {
        Some(s) => inv.set_state(&n.node, s, strata_snapshot::now())?,
        None => inv.forget(&n.node)?,
    };
    if !found {
        return Err(anyhow::anyhow!("no node {} in the inventory", n.node).into());
    }
    let what = state.map_or("forgotten", NodeState::as_str);
    printer.out(&format!("{}: {what}\n", n.node))?;
    let site = absolute(&n.db.site.site)?;
    let readable = secrets_of(&site, &n.node, printer)?;
    if !readable.is_empty() {
        printer.out(&format!(
            "{} could decrypt {} secret{}: {}\n",
            n.node,
            readable.len(),
            if readable.len() == 1 { "" } else { "s" },
            readable.join(", ")
        ))?;
        printer.note(
            "it keeps what it already decrypted: set new values (strata secret set NAME), \
             and take it out of their recipients (strata secret rekey)",
        );
    }
    Ok(())
}

/// The site's secrets that are encrypted to `node`'s key, by name.
/// A secret whose recipients cannot be read is named (the node's state has changed
/// already).
fn secrets_of(
    site: &std::path::Path,
    node: &str,
    printer: &Printer,
) -> anyhow::Result<Vec<String>> {
    let files = strata_secrets::SecretFiles::of(site);
    let mut out = Vec::new();
    for name in files.list()? {
        match files.meta(&name) {
            Ok(meta) if meta.recipients.contains_key(node) => out.push(name),
            Ok(_) => {}
            Err(e) => printer.note(&format!(
                "warning: {e}: cannot tell whether {node} could decrypt it"
            )),
        }
    }
    Ok(out)
}
