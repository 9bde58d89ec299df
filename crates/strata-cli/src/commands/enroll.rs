//! `strata enroll`: a node asks a server to serve it. Its key is made here and never
//! leaves it; the site's root fingerprint it will pin comes from the token (as kubeadm's
//! discovery hash does) or `--root-key`, never from the server.

use std::path::PathBuf;

use clap::Args;
use strata_server::app::EnrollBody;
use strata_server::client::Client;
use strata_snapshot::{KeyPair, Role};

use crate::cli::{RootArg, absolute};
use crate::command_error::{CommandError, CommandResult};
use crate::commands::nodes::TOKEN_PREFIX;
use crate::printer::Printer;
use crate::source::Enrollment;

/// Enroll this node with a server (`strata serve`), for `strata agent --server`.
///
/// Makes the node's key under ROOT/var/lib/strata/keys/ (0600) and sends it with the
/// node's facts. With a valid token the node is accepted at once; without one it waits
/// for `strata nodes accept NODE` on the server, and enroll exits 2.
#[derive(Debug, Args)]
pub struct EnrollArgs {
    /// The server: https://HOST[:PORT] (http:// on loopback only).
    #[arg(long, value_name = "URL")]
    pub server: String,
    /// A file holding the token from `strata nodes token` (never given in argv).
    #[arg(long, value_name = "FILE")]
    pub token_file: Option<PathBuf>,
    /// The site's root fingerprint, when the token does not carry one.
    #[arg(long, value_name = "FINGERPRINT")]
    pub root_key: Option<String>,
    /// Trust whatever root the server first serves (no fingerprint to check it against).
    #[arg(long)]
    pub insecure_tofu: bool,
    /// This node's name [default: the host name].
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    #[command(flatten)]
    pub root: RootArg,
    /// The CA certificate (PEM) that checks the server's [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Allow plain http:// to a server off loopback: the netboot initrd on a
    /// provisioning network only (the token and facts cross it in clear).
    #[arg(long, conflicts_with = "ca")]
    pub plain_http: bool,
    /// Fail (exit 1) unless the server classified the node into a hardware profile.
    #[arg(long)]
    pub require_profile: bool,
}

/// A token's root fingerprint and secret.
fn read_token(path: &std::path::Path) -> anyhow::Result<(String, String)> {
    let text = strata_fs::read_sized_file(path, 4096)?;
    let text = String::from_utf8_lossy(&text);
    let parts: Vec<&str> = text.trim().split('.').collect();
    match parts.as_slice() {
        [TOKEN_PREFIX, fp, secret]
            if fp.len() == 64
                && secret.len() == 32
                && fp
                    .chars()
                    .chain(secret.chars())
                    .all(|c| c.is_ascii_hexdigit()) =>
        {
            Ok((fp.to_string(), secret.to_string()))
        }
        _ => Err(anyhow::anyhow!(
            "{} is not a token from `strata nodes token`",
            path.display()
        )),
    }
}

pub fn run(args: &EnrollArgs, printer: &Printer) -> CommandResult {
    let root = absolute(&args.root.root)?;
    let token = match &args.token_file {
        Some(f) => Some(read_token(&absolute(f)?)?),
        None => None,
    };
    let root_key = match (&args.root_key, &token) {
        (Some(k), Some((fp, _))) if k != fp => {
            return Err(anyhow::anyhow!(
                "--root-key {k} differs from the token's root fingerprint {fp}"
            )
            .into());
        }
        (Some(k), _) => Some(k.clone()),
        (None, Some((fp, _))) => Some(fp.clone()),
        (None, None) if args.insecure_tofu => None,
        (None, None) => {
            return Err(CommandError::from(anyhow::anyhow!(
                "no root fingerprint to pin: give a token (--token-file) or --root-key"
            ))
            .hinted(
                "`strata keys fingerprint` on the operator's machine prints it; \
                     --insecure-tofu trusts whatever root the server serves first",
            ));
        }
    };
    let node = args.node.clone().unwrap_or_else(crate::machine::host_name);
    strata_types::NodeName::parse(&node)?;
    let keys = root.join("var/lib/strata/keys");
    let key_path = keys.join("node.key");
    let key = if strata_fs::exists(&key_path) {
        KeyPair::load(&key_path, Role::Node)?
    } else {
        let k = KeyPair::generate(Role::Node)?;
        k.save(&key_path)?;
        k
    };
    let ca = args.ca.as_deref().map(absolute).transpose()?;
    // Its age key too (FLEET.md: "ed25519 and age X25519"), so that the operator can
    // encrypt secrets to it once it is accepted (`strata nodes --json` shows it).
    let age = strata_secrets::NodeKey::ensure(&root)?.public;
    let (facts, _) = strata_facts::gather(&root);
    let body = EnrollBody {
        node: node.clone(),
        public: strata_types::hex(key.public().as_bytes()),
        age: Some(age),
        facts: serde_json::to_value(strata_facts::to_tuples(&facts))
            .map_err(anyhow::Error::from)?,
        token: token.map(|(_, secret)| secret),
    };
    let client = if args.plain_http {
        Client::new_plain_http(&args.server, key)?
    } else {
        Client::new(&args.server, key, ca.as_deref())?
    };
    let answer = client.enroll(&body)?;
    let enrollment = Enrollment {
        server: client.base().to_string(),
        node: node.clone(),
        root_key,
        ca,
        plain_http: args.plain_http,
    };
    let mut text = serde_json::to_vec_pretty(&enrollment).map_err(anyhow::Error::from)?;
    text.push(b'\n');
    strata_fs::write_private(&keys.join("enrollment.json"), &text)?;
    if answer.state == "accepted" {
        if args.require_profile {
            crate::commands::netboot::require_profile(&client, &node)?;
        }
        printer.out(&format!(
            "Enrolled {node} with {}: accepted, environment {}\n",
            client.base(),
            answer.environment
        ))?;
        Ok(())
    } else {
        printer.out(&format!(
            "Enrolled {node} with {}: pending; on the server, run `strata nodes accept {node}`\n",
            client.base()
        ))?;
        Err(CommandError::changes_pending())
    }
}
