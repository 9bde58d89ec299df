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
    /// Make the site's root key, a signing key and an online key (for `strata serve`):
    /// the root key signs SITE/.strata/keys/root/1.json (public keys and roles only, to
    /// commit with the site); the private keys stay outside the site (0600).
    Init(InitArgs),
    /// Print the fingerprint of the site's root key (what nodes pin).
    Fingerprint(SiteOnly),
    /// Make this node's age key once (ROOT/var/lib/strata/keys/age.key, 0600; never
    /// printed) and print its public key, to record in the node's file as
    /// `[keys] age = "age1…"` so that secrets can be encrypted to it.
    Node(NodeKeyArgs),
    /// Make a new online key for `strata serve` and certify it, in place of any other,
    /// in a new root version signed by the root key (a site made before serve, or a
    /// rotation).
    Online(OnlineArgs),
}

/// `keys node`.
#[derive(Debug, Args)]
pub struct NodeKeyArgs {
    #[command(flatten)]
    pub root: crate::cli::RootArg,
}

/// `keys online`.
#[derive(Debug, Args)]
pub struct OnlineArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The root key [default: the key directory's root.key].
    #[arg(long, value_name = "PATH")]
    pub root_key: Option<PathBuf>,
    /// Where to write the online key [default: the key directory's online.key].
    #[arg(long, value_name = "PATH")]
    pub out: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeysDir,
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
    /// Where to write the online key [default: the key directory's online.key]. It
    /// belongs on the server alone, apart from the other two.
    #[arg(long, value_name = "PATH")]
    pub online_out: Option<PathBuf>,
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
        KeysCommand::Online(a) => online(a, printer),
    }
}

fn online(a: &OnlineArgs, printer: &Printer) -> CommandResult {
    let site = strata_core::Site::open(&a.site.site)?;
    let (root, roots) = site_root(&a.site.site)?;
    let dir = a.keys.resolve(&site.name)?;
    let root_path = a.root_key.clone().unwrap_or_else(|| dir.join("root.key"));
    let out = a.out.clone().unwrap_or_else(|| dir.join("online.key"));
    if strata_fs::exists(&out) {
        return Err(anyhow::anyhow!(
            "{} already exists; move it away or pass --out",
            out.display()
        )
        .into());
    }
    let root_key = KeyPair::load(&root_path, Role::Root).context("the root key (--root-key)")?;
    if !root
        .keys
        .iter()
        .any(|k| k.id == root_key.id() && k.role == Role::Root)
    {
        return Err(anyhow::anyhow!(
            "{} is not the site's root key ({})",
            root_path.display(),
            root.fingerprint()
        )
        .into());
    }
    let key = KeyPair::generate(Role::Online)?;
    let mut next = root.clone();
    next.version = root.version + 1;
    next.created = strata_snapshot::now();
    next.keys.retain(|k| k.role != Role::Online);
    next.keys.extend(Root::new(&site.name, 0, &[&key]).keys);
    // Signed by the root key of this version and of the previous one: the same key.
    let sealed = next.seal(&[&root_key]);
    let keys_dir = a.site.site.join(".strata/keys");
    let mut chain = roots;
    chain.0.push(sealed.clone());
    chain.verify(None)?;
    key.save(&out)?;
    strata_fs::write_atomic(
        &keys_dir.join(format!("root/{}.json", next.version)),
        &sealed,
    )?;
    strata_fs::write_atomic(&keys_dir.join("root.json"), &sealed)?;
    printer.out(&format!(
        "Online key {} for site {} written to {}\n  certified in {} (root version {})\n",
        key.id(),
        site.name,
        out.display(),
        keys_dir
            .join(format!("root/{}.json", next.version))
            .display(),
        next.version
    ))?;
    Ok(())
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
    let online_path = a
        .online_out
        .clone()
        .unwrap_or_else(|| dir.join("online.key"));
    for p in [&root_path, &signing_path, &online_path] {
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
    let online = KeyPair::generate(Role::Online)?;
    root_key.save(&root_path)?;
    signing.save(&signing_path)?;
    online.save(&online_path)?;
    let root = Root::new(
        &site.name,
        strata_snapshot::now(),
        &[&root_key, &signing, &online],
    );
    let sealed = root.seal(&[&root_key]);
    strata_fs::create_dir_all(&root_dir.join("root"))?;
    strata_fs::write_atomic(&root_dir.join("root/1.json"), &sealed)?;
    strata_fs::write_atomic(&root_dir.join("root.json"), &sealed)?;
    printer.out(&format!(
        "Root of trust for site {}: fingerprint {}\n  root key     {} (keep it offline)\n  \
         signing key  {}\n  online key   {} (for `strata serve` alone)\n  certified in {}\n",
        site.name,
        root.fingerprint(),
        root_path.display(),
        signing_path.display(),
        online_path.display(),
        root_dir.join("root/1.json").display(),
    ))?;
    Ok(())
}
