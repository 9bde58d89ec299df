//! `strata publish`: the release step (as `git push` is): each environment's snapshot
//! signed and written where agents pull it, in an order that never shows a reader half a
//! release.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use clap::Args;
use strata_bucket::{blob_key, manifest_key, timestamp_key};
use strata_snapshot::{MAX_MANIFEST, MAX_METADATA, SiteFiles, Timestamp};

use crate::cli::{S3Arg, SiteArg, absolute};
use crate::command_error::CommandResult;
use crate::commands::keys::{KeysDir, signing_key};
use crate::commands::publish_assign;
use crate::commands::push::DEFAULT_EXPIRES;
use crate::printer::Printer;

/// Sign the site's snapshot of each environment and publish it for agents to pull.
///
/// Writes blobs (create-only), then `env/E/VERSION.json` (create-only), then
/// `env/E/timestamp.json` last: a publish killed at any step leaves readers on the
/// previous version. The version is the remote one + 1, or the time in seconds when
/// that is higher. s3:// takes its credentials, region and endpoint from the AWS_*
/// variables (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL).
#[derive(Debug, Args)]
pub struct PublishArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// Where: a server running `strata serve` (https://HOST[:PORT]; http:// on loopback
    /// only), s3://BUCKET/PREFIX (credentials from AWS_*) or file:///DIR.
    #[arg(long, value_name = "URL")]
    pub to: String,
    #[command(flatten)]
    pub s3: S3Arg,
    /// The CA certificate (PEM) that checks the server's [default: the system's roots].
    #[arg(long, value_name = "FILE")]
    pub ca: Option<std::path::PathBuf>,
    /// Then delete the manifests beyond each environment's last 5 versions, and the
    /// blobs that no kept version lists (storage only: a server keeps its own).
    #[arg(long)]
    pub gc: bool,
    /// Only these environments [default: every environment a node of the site is in,
    /// and the default one].
    #[arg(long = "env", value_name = "ENV")]
    pub envs: Vec<String>,
    /// How long the release is trusted [default: [fleet] expires, else 30d].
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
    pub expires: Option<Duration>,
    /// The signing key [default: signing.key in the key directory].
    #[arg(long, value_name = "FILE", env = "STRATA_SIGNING_KEY")]
    pub key: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub keys: KeysDir,
    /// The inventory (a SQLite file or postgres:// URL) whose accepted nodes the site's
    /// hardware profiles classified: their signed assignments are written beside the
    /// snapshot (buckets only) [default: SITE/.strata/state.db when it exists].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
}

/// How many versions of each environment `--gc` keeps (FLEET.md).
const GC_KEEP: usize = 5;

/// A publish killed here (`FAILPOINTS=NAME=return`, feature `failpoints`), for the tests
/// of what readers see then.
macro_rules! crash_point {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name, |_| std::process::abort());
    };
}

pub fn run(args: &PublishArgs, printer: &Printer) -> CommandResult {
    let site_dir = absolute(&args.site.site)?;
    let site = strata_core::Site::open(&site_dir)?;
    let (key, roots) = signing_key(&site_dir, &site.name, args.key.as_deref(), &args.keys)?;
    let (root, _) = roots.verify(None)?;
    let envs: BTreeSet<String> = if args.envs.is_empty() {
        let mut e: BTreeSet<String> = [site.default_environment.clone()].into();
        for n in site.nodes()? {
            e.insert(site.node_reach(n.as_str())?.environment);
        }
        e.extend(site.environments.keys().cloned());
        e
    } else {
        args.envs.iter().cloned().collect()
    };
    // Each environment's files: its branch's commit when strata.toml maps it to one,
    // else the checkout as it is. Every one checked before anything is written.
    let sources = Sources::read(&site_dir, &site, &envs)?;
    let classified = publish_assign::classified(&site_dir, &args.to, args.db.as_deref())?;
    let store =
        crate::source::publish_target(&args.to, &key, args.ca.as_deref(), &args.s3.settings())?;
    let lifetime = args
        .expires
        .or(site.fleet.expires)
        .unwrap_or(DEFAULT_EXPIRES)
        .as_secs();
    // The root chain first: an agent that follows a rotation needs it before the rest.
    for (i, r) in roots.0.iter().enumerate() {
        let key = format!("root/{}.json", i + 1);
        if store.get(&key, MAX_METADATA as u64)?.as_deref() != Some(r.as_slice()) {
            store.put(&key, r)?;
        }
    }
    let mut new_blobs = 0;
    let mut seen = BTreeSet::new();
    for files in &sources.files {
        for (hash, path) in &files.paths {
            if !seen.insert(hash.clone()) || store.exists(&blob_key(hash))? {
                continue;
            }
            let content = strata_fs::read(path)?;
            if strata_types::Hash::of(&content).to_string() != *hash {
                return Err(anyhow::anyhow!("{} changed while publishing", path.display()).into());
            }
            new_blobs += usize::from(store.put_new(&blob_key(hash), &content)?);
        }
    }
    crash_point!("publish-after-blobs");
    let mut out = String::new();
    for env in &envs {
        let (files, from) = sources.of(env);
        let now = strata_snapshot::now();
        let remote = match store.get(&timestamp_key(env), MAX_METADATA as u64)? {
            Some(bytes) => Timestamp::open_signed(&root, &bytes)?.version,
            None => 0,
        };
        let mut version = (remote + 1).max(now);
        let manifest = loop {
            let m = files.manifest(&site.name, env, version, now, lifetime, &key);
            if m.len() > MAX_MANIFEST {
                return Err(anyhow::anyhow!("the manifest of {env} is over 64 MiB").into());
            }
            if store.put_new(&manifest_key(env, version), &m)? {
                break m;
            }
            // Another publisher took this version: the next one.
            version += 1;
        };
        crash_point!("publish-after-manifest");
        // Assignments after the manifest they name, before the release.
        let assigned = publish_assign::write(
            store.as_ref(),
            &classified,
            (&site.name, env),
            version,
            (now, lifetime),
            &key,
        )?;
        let ts = Timestamp {
            kind: "timestamp".into(),
            site: site.name.clone(),
            environment: env.clone(),
            version,
            manifest: strata_types::Hash::of(&manifest),
            created: now,
            expires: now + lifetime,
        };
        store.put(&timestamp_key(env), &ts.seal(&key))?;
        out.push_str(&format!(
            "Published {} {env} version {version} (revision {}{from}): {} files{}\n",
            site.name,
            files.revision,
            files.entries.len(),
            match assigned {
                0 => String::new(),
                1 => ", 1 assignment".into(),
                n => format!(", {n} assignments"),
            }
        ));
    }
    out.push_str(&format!("{new_blobs} new blobs written to {}\n", args.to));
    if args.gc {
        let gc = strata_bucket::collect(store.as_ref(), &root, GC_KEEP)?;
        out.push_str(&format!(
            "gc: kept the last {GC_KEEP} versions of each environment; deleted {} manifests and {} blobs\n",
            gc.manifests.len(),
            gc.blobs
        ));
    }
    printer.out(&out)?;
    Ok(())
}

/// The files each environment is published from, read once per source: the checkout as
/// it is, or a branch's commit.
struct Sources {
    files: Vec<SiteFiles>,
    /// Per environment: which of `files`, and the branch it came from.
    of: BTreeMap<String, (usize, Option<String>)>,
    /// The branches' checkouts, kept until the blobs are written.
    _checkouts: Vec<crate::branch::BranchSite>,
}

impl Sources {
    fn read(
        site_dir: &Path,
        site: &strata_core::Site,
        envs: &BTreeSet<String>,
    ) -> anyhow::Result<Sources> {
        let mut out = Sources {
            files: Vec::new(),
            of: BTreeMap::new(),
            _checkouts: Vec::new(),
        };
        let mut by_branch: BTreeMap<String, usize> = BTreeMap::new();
        let mut plain: Option<usize> = None;
        for env in envs {
            let Some(branch) = site.environments.get(env).map(|b| b.0.clone()) else {
                let i = match plain {
                    Some(i) => i,
                    None => {
                        check_secrets(site)?;
                        out.files.push(crate::revision::site_files(site_dir)?);
                        *plain.insert(out.files.len() - 1)
                    }
                };
                out.of.insert(env.clone(), (i, None));
                continue;
            };
            let i = match by_branch.get(&branch) {
                Some(i) => *i,
                None => {
                    let checkout = crate::branch::checkout(site_dir, env, &branch)?;
                    let theirs = strata_core::Site::open(&checkout.site)?;
                    if theirs.name != site.name {
                        anyhow::bail!(
                            "environment {env}: branch {branch:?} is site {:?}, not {:?}",
                            theirs.name,
                            site.name
                        );
                    }
                    check_secrets(&theirs)?;
                    let mut files = SiteFiles::read(&checkout.site)?;
                    files.revision.clone_from(&checkout.commit);
                    out.files.push(files);
                    out._checkouts.push(checkout);
                    by_branch.insert(branch.clone(), out.files.len() - 1);
                    out.files.len() - 1
                }
            };
            out.of.insert(env.clone(), (i, Some(branch)));
        }
        Ok(out)
    }

    /// An environment's files, and `" from branch B"` when they came from one.
    fn of(&self, env: &str) -> (&SiteFiles, String) {
        let (i, branch) = &self.of[env];
        let from = branch
            .as_ref()
            .map(|b| format!(" from branch {b}"))
            .unwrap_or_default();
        (&self.files[*i], from)
    }
}

/// Refuses a site whose secrets must be encrypted again first.
fn check_secrets(site: &strata_core::Site) -> anyhow::Result<()> {
    let stale = strata_engine::stale_secrets(site);
    if stale.is_empty() {
        Ok(())
    } else {
        Err(strata_core::SiteErrors(stale).into())
    }
}
