//! `strata serve`: the pull server. It serves what `publish` sent it to the nodes that
//! enrolled, signing each environment's timestamp and each classified node's assignment
//! with its online key; it reads the site only for its root chain, its nodes'
//! environments and its hardware profiles and pools.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use anyhow::Context;
use clap::Args;
use strata_hardware::{Allocate, ClassifyError};
use strata_server::app::Classify;
use strata_server::published::Published;
use strata_server::{Limits, Server};
use strata_snapshot::Classified;
use strata_snapshot::{KeyPair, Role};

use crate::cli::{S3Arg, SiteArg, absolute};
use crate::command_error::CommandResult;
use crate::commands::keys::{KeysDir, site_root};
use crate::printer::Printer;

/// Serve published snapshots to enrolled nodes, and take their enrollments and reports.
///
/// HTTPS with --tls-cert and --tls-key (TLS 1.2 or 1.3); plain HTTP only on a loopback
/// address. The server holds only its online key (`strata keys init` makes it; `strata
/// keys online` for a site made before) and refuses to start when it can read the
/// site's root key or a signing key.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The address to listen on (port 0: any free port, printed on start).
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:8443")]
    pub listen: SocketAddr,
    /// The inventory: a SQLite file or a postgres:// URL [default: SITE/.strata/state.db].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// The server's certificate chain (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The CA (PEM) whose client certificates operators may show instead of a bearer
    /// token (each bound with `strata operators add NAME --cert FILE`); needs --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub operator_ca: Option<PathBuf>,
    /// The online key [default: online.key in the key directory].
    #[arg(long, value_name = "FILE", env = "STRATA_ONLINE_KEY")]
    pub key: Option<PathBuf>,
    #[command(flatten)]
    pub keys: KeysDir,
    /// Where published snapshots are kept [default: SITE/.strata/serve].
    #[arg(long, value_name = "DIR")]
    pub store: Option<PathBuf>,
    /// A replica: serve what `publish --to URL` wrote there (s3://BUCKET/PREFIX or
    /// file:///DIR, shared by every replica), read only; publish to the bucket, not here.
    #[arg(long, value_name = "URL", conflicts_with = "store")]
    pub published: Option<String>,
    #[command(flatten)]
    pub s3: S3Arg,
    /// Requests handled at once; past that the server answers 429.
    #[arg(long, value_name = "N", default_value_t = 256)]
    pub max_requests: usize,
    /// Requests a second one client address may make (a burst of ten times that); past
    /// that it is answered 429. 0: no limit.
    #[arg(long, value_name = "N", default_value_t = strata_server::limits::DEFAULT_RATE)]
    pub per_address_rate: u32,
    #[command(flatten)]
    pub netboot: crate::commands::netboot::ServeNetbootArgs,
}

/// The inventory's location: `--db`, else `SITE/.strata/state.db`.
pub fn db_url(site: &Path, db: Option<&str>) -> String {
    db.map_or_else(
        || site.join(".strata/state.db").display().to_string(),
        str::to_string,
    )
}

/// Refuses to run where a root or signing key can be read: in the online key's
/// directory, in the operator's key directory, or `$STRATA_SIGNING_KEY`.
fn refuse_other_keys(dirs: &[PathBuf]) -> anyhow::Result<()> {
    let mut files: Vec<PathBuf> = std::env::var_os("STRATA_SIGNING_KEY")
        .map(PathBuf::from)
        .into_iter()
        .collect();
    for d in dirs {
        for name in strata_fs::list_dir(d).unwrap_or_default() {
            files.push(d.join(name));
        }
    }
    for f in files {
        if let Some(role @ (Role::Root | Role::Signing)) = strata_snapshot::readable_key_role(&f) {
            return Err(anyhow::anyhow!(
                "{} is a {} key this process can read: serve holds only its online key; \
                 move that key off this machine (or out of reach of serve's user)",
                f.display(),
                role.name()
            ));
        }
    }
    Ok(())
}

/// How a node is classified when it is accepted: against the site's hardware profiles,
/// its pool entries allocated in the store it is given (inside the inventory's
/// transaction). A site without profiles classifies nothing; a node no profile takes is
/// accepted without a classification (its own engine refuses it if only a profile
/// would describe it); a pool exhausted or a machine without identity refuses it.
pub fn classifier(site: &Path) -> anyhow::Result<Box<Classify>> {
    let hw = crate::commands::classify::load_hardware(site)?;
    Ok(Box::new(move |store, _node, facts| {
        if hw.profiles.is_empty() {
            return Ok(None);
        }
        let tuples: Vec<[String; 4]> = serde_json::from_str(facts)
            .map_err(|e| format!("the node's facts are not `strata facts --tuples`: {e}"))?;
        match strata_hardware::classify(&hw, &tuples, store, Allocate::Commit) {
            Ok((c, _)) => {
                let c = Classified {
                    machine: c.machine,
                    profile: c.profile,
                    role: c.role,
                    vars: c.vars,
                    pools: c.pools,
                };
                Ok(Some(
                    serde_json::to_string(&c).expect("a classification serializes"),
                ))
            }
            Err(ClassifyError::NoProfile(_)) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }))
}

pub fn run(args: &ServeArgs, printer: &Printer) -> CommandResult {
    let site_dir = absolute(&args.site.site)?;
    let site = strata_core::Site::open(&site_dir)?;
    let (root, roots) = site_root(&site_dir)?;
    let keys_dir = args.keys.resolve(&site.name)?;
    let key_path = args
        .key
        .clone()
        .unwrap_or_else(|| keys_dir.join("online.key"));
    let online = KeyPair::load(&key_path, Role::Online).context(
        "the online key (`strata keys init` makes one; `strata keys online` for an older site)",
    )?;
    if !root
        .keys
        .iter()
        .any(|k| k.id == online.id() && k.role == Role::Online)
    {
        return Err(anyhow::anyhow!(
            "{} is not an online key of the site's root ({}); run `strata keys online`",
            key_path.display(),
            root.fingerprint()
        )
        .into());
    }
    let key_dir = absolute(key_path.parent().unwrap_or(Path::new(".")))?;
    refuse_other_keys(&[key_dir, keys_dir])?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(strata_server::listen::tls_config(
            c,
            k,
            args.operator_ca.as_deref(),
        )?),
        _ => None,
    };
    strata_server::listen::check_plain(args.listen, tls.is_some())?;
    let published = match &args.published {
        Some(url) => {
            let bucket = strata_bucket::open(url, &args.s3.settings())?;
            // Its own connection (reopened if the database drops it): the newest version
            // served of each environment.
            let inventory =
                strata_server::inventory::Pool::open(&db_url(&site_dir, args.db.as_deref()), 1)?;
            let served: strata_server::published::ServedReleases =
                Box::new(move |env, version| inventory.lock()?.served_release(env, version));
            Published::mirror(bucket, roots, served, Box::new(log_line))?
        }
        None => {
            let store = match &args.store {
                Some(s) => absolute(s)?,
                None => site_dir.join(".strata/serve"),
            };
            Published::open(&store, roots, &online, strata_snapshot::now())?
        }
    };
    let inventory = strata_server::inventory::Pool::open(
        &db_url(&site_dir, args.db.as_deref()),
        strata_server::inventory::POOL_SIZE,
    )?;
    let default_env = site.default_environment.clone();
    let env_site = site_dir.clone();
    let server = Arc::new(Server {
        published: RwLock::new(published),
        inventory,
        online,
        environment_of: Box::new(move |node| {
            strata_core::Site::open(&env_site)
                .ok()
                .and_then(|s| s.node_reach(node).ok())
                .map_or_else(|| default_env.clone(), |r| r.environment)
        }),
        clock: Box::new(strata_snapshot::now),
        classify: classifier(&site_dir)?,
        assignments: Mutex::new(std::collections::HashMap::new()),
        netboot: args.netboot.load()?,
        log: Box::new(log_line),
    });
    let limits = Limits {
        concurrency: args.max_requests,
        per_address: (args.per_address_rate > 0)
            .then(|| strata_server::limits::Rate::per_second(args.per_address_rate)),
        ..Limits::default()
    };
    let app = strata_server::app(server, &limits);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let addr = listener.local_addr()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        printer.out(&format!(
            "strata serve: site {} on {scheme}://{addr}\n",
            site.name
        ))?;
        strata_server::listen::serve(listener, app, tls).await?;
        Ok::<(), anyhow::Error>(())
    })?;
    Ok(())
}

/// A line of the server's log, on stderr.
fn log_line(line: &str) {
    let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    let _ = writeln!(
        std::io::stderr().lock(),
        "{now} {}",
        crate::printer::clean(line)
    );
}
