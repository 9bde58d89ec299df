//! `strata keys`: the site's root of trust and the operator's signing key.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use strata_snapshot::{KeyPair, Role, Root, RootSet};

use crate::cli::SiteArg;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Manage the keys that sign what push and publish send (FLEET.md, "Keys and their roles").
#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make the site's root key and a signing key: the root key signs
    /// SITE/.strata/keys/root/1.json (public keys and roles only, to commit with the
    /// site); both private keys stay outside the site (0600).
    Init(InitArgs),
    /// Print the fingerprint of the site's root key (what nodes pin).
    Fingerprint(SiteOnly),
    /// Make this node's age key once (ROOT/var/lib/strata/keys/age.key, 0600; never
    /// printed) and print its public key, to record in the node's file as
    /// `[keys] age = "age1…"` so that secrets can be encrypted to it.
    Node(NodeKeyArgs),
}

/// `keys node`.
#[derive(Debug, Args)]
pub struct NodeKeyArgs {
    #[command(flatten)]
    pub root: crate::cli::RootArg,
}

/// `keys init`.
#[derive(Debug, Args)]
pub struct InitArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// Where to write the root key [default: the key directory's root.key]. Keep it
    /// offline: it is needed only to rotate keys.
    #[arg(long, value_name = "PATH")]
    pub root_out: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeysDir,
}

/// `--keys DIR`.
#[derive(Debug, Clone, Args)]
pub struct KeysDir {
    /// The operator's key directory [default: $XDG_CONFIG_HOME/strata/keys/SITE, else
    /// ~/.config/strata/keys/SITE].
    #[arg(long = "keys", value_name = "DIR", env = "STRATA_KEYS")]
    pub dir: Option<PathBuf>,
}

impl KeysDir {
    /// The directory for `site`.
    pub fn resolve(&self, site: &str) -> anyhow::Result<PathBuf> {
        if let Some(d) = &self.dir {
            return Ok(d.clone());
        }
        let base = match std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
            Some(x) => PathBuf::from(x),
            None => {
                PathBuf::from(std::env::var_os("HOME").context("HOME is not set")?).join(".config")
            }
        };
        Ok(base.join("strata/keys").join(site))
    }
}

/// Only `--site`.
#[derive(Debug, Args)]
pub struct SiteOnly {
    #[command(flatten)]
    pub site: SiteArg,
}

pub fn run(cmd: &KeysCommand, printer: &Printer) -> CommandResult {
    match cmd {
        KeysCommand::Init(a) => init(a, printer),
        KeysCommand::Node(a) => {
            let root = crate::cli::absolute(&a.root.root)?;
            let key = strata_secrets::NodeKey::ensure(&root)?;
            if key.created {
                printer.note(&format!(
                    "made {}",
                    strata_secrets::node_key_path(&root).display()
                ));
            }
            printer.out(&format!("{}\n", key.public))?;
            Ok(())
        }
        KeysCommand::Fingerprint(a) => {
            let (root, _) = site_root(&a.site.site)?;
            printer.out(&format!("{}\n", root.fingerprint()))?;
            Ok(())
        }
    }
}

/// The site's trusted root (the newest of its chain) and the chain.
pub fn site_root(site: &Path) -> anyhow::Result<(Root, RootSet)> {
    let dir = site.join(".strata/keys");
    let set = RootSet::load(&dir)?;
    if set.0.is_empty() {
        return Err(anyhow::anyhow!(
            "{} has no root of trust yet; run `strata keys init` once for the site",
            dir.join("root/1.json").display()
        ));
    }
    let (root, _) = set.verify(None)?;
    Ok((root, set))
}

/// The operator's signing key (`--key FILE`, else `signing.key` in the key directory),
/// checked to be certified by the site's root, and the site's root chain.
pub fn signing_key(
    site_dir: &Path,
    site_name: &str,
    key: Option<&Path>,
    keys: &KeysDir,
) -> anyhow::Result<(KeyPair, RootSet)> {
    let (root, roots) = site_root(site_dir)?;
    let path = match key {
        Some(k) => k.to_path_buf(),
        None => keys.resolve(site_name)?.join("signing.key"),
    };
    let key = KeyPair::load(&path, Role::Signing)
        .context("the signing key (run `strata keys init`, or pass --key)")?;
    if !root
        .keys
        .iter()
        .any(|k| k.id == key.id() && k.role == Role::Signing)
    {
        return Err(anyhow::anyhow!(
            "{} is not a signing key of the site's root ({})",
            path.display(),
            root.fingerprint()
        ));
    }
    Ok((key, roots))
}

fn init(a: &InitArgs, printer: &Printer) -> CommandResult {
    let site = strata_core::Site::open(&a.site.site)?;
    let root_dir = a.site.site.join(".strata/keys");
    if strata_fs::exists(&root_dir.join("root/1.json")) {
        let (root, _) = site_root(&a.site.site)?;
        return Err(anyhow::anyhow!(
            "the site already has a root of trust (fingerprint {}); its keys are in place",
            root.fingerprint()
        )
        .into());
    }
    let dir = a.keys.resolve(&site.name)?;
    let root_path = a.root_out.clone().unwrap_or_else(|| dir.join("root.key"));
    let signing_path = dir.join("signing.key");
    for p in [&root_path, &signing_path] {
        if strata_fs::exists(p) {
            return Err(anyhow::anyhow!(
                "{} already exists; move it away or pass --keys DIR",
                p.display()
            )
            .into());
        }
    }
    let root_key = KeyPair::generate(Role::Root)?;
    let signing = KeyPair::generate(Role::Signing)?;
    root_key.save(&root_path)?;
    signing.save(&signing_path)?;
    let root = Root::new(&site.name, strata_snapshot::now(), &[&root_key, &signing]);
    let sealed = root.seal(&[&root_key]);
    strata_fs::create_dir_all(&root_dir.join("root"))?;
    strata_fs::write_atomic(&root_dir.join("root/1.json"), &sealed)?;
    strata_fs::write_atomic(&root_dir.join("root.json"), &sealed)?;
    printer.out(&format!(
        "Root of trust for site {}: fingerprint {}\n  root key     {} (keep it offline)\n  \
         signing key  {}\n  certified in {}\n",
        site.name,
        root.fingerprint(),
        root_path.display(),
        signing_path.display(),
        root_dir.join("root/1.json").display(),
    ))?;
    Ok(())
}
