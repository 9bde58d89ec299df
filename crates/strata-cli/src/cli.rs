//! The command line: one clap struct per verb (in `commands/`), one dispatch.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::commands;
use crate::printer::Printer;

/// Configuration management for Linux fleets: plan exactly, apply all or nothing, take
/// back what the site no longer declares.
#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    propagate_version = true,
    max_term_width = 100
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Also show unchanged paths.
    #[arg(short, long, global = true)]
    verbose: bool,
}

#[derive(Debug, Subcommand)]
enum Command {
    Check(commands::check::CheckArgs),
    Params(commands::params::ParamsArgs),
    Plan(commands::plan::PlanArgs),
    Apply(commands::apply::ApplyArgs),
    Shell(commands::shell::ShellArgs),
    Capture(commands::capture::CaptureArgs),
    Drift(commands::drift::DriftArgs),
    Diff(commands::diff::DiffArgs),
    Generations(commands::generations::GenerationsArgs),
    Rollback(commands::rollback::RollbackArgs),
    Gc(commands::gc::GcArgs),
    Report(commands::report::ReportArgs),
    Facts(commands::facts::FactsArgs),
    Classify(commands::classify::ClassifyArgs),
    Provision(commands::provision::ProvisionArgs),
    #[command(subcommand)]
    Netboot(commands::netboot::NetbootCommand),
    #[command(subcommand)]
    Pools(commands::pools::PoolsCommand),
    #[command(subcommand)]
    New(commands::new::NewCommand),
    #[command(subcommand)]
    Import(commands::import::ImportCommand),
    Push(commands::push::PushArgs),
    Rebuild(commands::rebuild::RebuildArgs),
    Publish(commands::publish::PublishArgs),
    #[command(subcommand)]
    Export(commands::export::ExportCommand),
    Agent(commands::agent::AgentArgs),
    Serve(commands::serve::ServeArgs),
    Enroll(commands::enroll::EnrollArgs),
    Nodes(commands::nodes::NodesArgs),
    #[command(subcommand)]
    Operators(commands::operators::OperatorsCommand),
    Runs(commands::runs::RunsArgs),
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    #[command(subcommand)]
    Secret(commands::secret::SecretCommand),
    #[command(hide = true)]
    Receive(commands::receive::ReceiveArgs),
    #[command(hide = true)]
    SelfCheck(commands::self_check::SelfCheckArgs),
    #[command(hide = true)]
    GenerateAssets(commands::generate_assets::GenerateAssetsArgs),
}

/// `--site DIR`: the site, from the flag, `STRATA_SITE`, or the current directory.
#[derive(Debug, Clone, Args)]
pub struct SiteArg {
    /// The site directory [default: $STRATA_SITE, else the current directory].
    #[arg(
        long,
        env = "STRATA_SITE",
        value_name = "DIR",
        default_value = ".",
        hide_default_value = true
    )]
    pub site: PathBuf,
}

/// `--root DIR`: the directory acting as the node's `/`.
#[derive(Debug, Clone, Args)]
pub struct RootArg {
    /// The directory acting as the node's `/` (a tree being provisioned carries its own
    /// state under DIR/var/lib/strata).
    #[arg(long, value_name = "DIR", default_value = "/")]
    pub root: PathBuf,
}

/// How `publish` and `agent` reach object storage (`s3://`): credentials, region and
/// endpoint from the standard `AWS_*` variables (those object_store's
/// `AmazonS3Builder::from_env` reads), the endpoint also from this flag.
#[derive(Debug, Clone, Args)]
pub struct S3Arg {
    /// An S3-compatible server's URL for s3:// (over AWS_ENDPOINT_URL); plain http://
    /// only to a loopback address.
    #[arg(long, value_name = "URL")]
    pub s3_endpoint: Option<String>,
}

impl S3Arg {
    /// The flag and the environment's `AWS_*` variables, for strata-bucket.
    pub fn settings(&self) -> strata_bucket::S3Settings {
        strata_bucket::S3Settings {
            env: std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
                .filter(|(k, _)| k.starts_with("AWS_"))
                .collect(),
            endpoint: self.s3_endpoint.clone(),
        }
    }
}

/// What plan and apply share.
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The node to compile [default: this machine's host name].
    #[arg(long, value_name = "NODE")]
    pub node: Option<String>,
    #[command(flatten)]
    pub root: RootArg,
    /// Print JSON (schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
    /// Set a parameter, above every layer of the site (repeatable; VALUE is TOML or a string).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_set)]
    pub sets: Vec<(String, String)>,
    /// The node's saved facts (`strata facts --json` or `--tuples`), for hardware profiles
    /// [default: live facts when the node is this machine].
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
    /// The hardware allocation database: a SQLite file or a postgres:// URL
    /// [default: SITE/.strata/state.db].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Read and compare every file, of the site and of the target, trusting no metadata
    /// (by default files whose inode, size, mtime and ctime are unchanged since strata last
    /// read them are not read again: docs/state.md).
    #[arg(long)]
    pub checksum: bool,
}

/// Parses `KEY=VALUE`.
pub fn parse_set(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.trim().to_string(), v.to_string()))
        .ok_or_else(|| format!("expected KEY=VALUE, got `{s}`"))
}

impl NodeArgs {
    /// The request the engine takes.
    pub fn request(&self) -> anyhow::Result<strata_engine::Request> {
        let host = crate::machine::host_name();
        let node = self.node.clone().unwrap_or_else(|| host.clone());
        Ok(strata_engine::Request {
            site: absolute(&self.site.site)?,
            root: absolute(&self.root.root)?,
            sets: self.sets.clone(),
            facts: self.facts.as_deref().map(absolute).transpose()?,
            local: node == host,
            db: self.db.clone(),
            helper: std::env::current_exe().ok(),
            checksum: self.checksum,
            cache: cache_dir(),
            terminal: std::env::var("TERM").ok(),
            classify: strata_engine::Classify::Here,
            node,
        })
    }
}

/// strata's cache directory on this machine: `$STRATA_CACHE_DIR`, else
/// `/var/cache/strata` for root, else `~/.cache/strata`.
pub fn cache_dir() -> PathBuf {
    match std::env::var_os("STRATA_CACHE_DIR") {
        Some(d) => PathBuf::from(d),
        None if rustix::process::geteuid().is_root() => PathBuf::from("/var/cache/strata"),
        None => match std::env::var_os("HOME") {
            Some(h) => PathBuf::from(h).join(".cache/strata"),
            None => std::env::temp_dir().join("strata-cache"),
        },
    }
}

/// Makes a path absolute against the current directory.
pub fn absolute(p: &std::path::Path) -> anyhow::Result<PathBuf> {
    Ok(std::path::absolute(p)?)
}

pub fn main() -> ExitCode {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == strata_sandbox::HELPER_ARG) {
        let code = strata_sandbox::helper_main(&args[2..]);
        return ExitCode::from(code.clamp(0, 255) as u8);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            // The contract keeps exit 2 for "plan: changes pending"; usage errors are errors.
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    let no_color = std::env::var_os("NO_COLOR").is_some_and(|v| !v.is_empty());
    let printer = Printer {
        color: !no_color && std::io::stdout().is_terminal(),
        color_err: !no_color && std::io::stderr().is_terminal(),
        verbose: cli.verbose,
    };
    let result = match &cli.command {
        Command::Check(a) => commands::check::run(a, &printer),
        Command::Params(a) => commands::params::run(a, &printer),
        Command::Plan(a) => commands::plan::run(a, &printer),
        Command::Apply(a) => commands::apply::run(a, &printer),
        Command::Shell(a) => commands::shell::run(a, &printer),
        Command::Capture(a) => commands::capture::run(a, &printer),
        Command::Drift(a) => commands::drift::run(a, &printer),
        Command::Diff(a) => commands::diff::run(a, &printer),
        Command::Generations(a) => commands::generations::run(a, &printer),
        Command::Rollback(a) => commands::rollback::run(a, &printer),
        Command::Gc(a) => commands::gc::run(a, &printer),
        Command::Report(a) => commands::report::run(a, &printer),
        Command::Facts(a) => commands::facts::run(a, &printer),
        Command::Classify(a) => commands::classify::run(a, &printer),
        Command::Provision(a) => commands::provision::run(a, &printer),
        Command::Netboot(a) => commands::netboot::run(a, &printer),
        Command::Pools(a) => commands::pools::run(a, &printer),
        Command::New(a) => commands::new::run(a, &printer),
        Command::Secret(a) => commands::secret::run(a, &printer),
        Command::Import(a) => commands::import::run(a, &printer),
        Command::Push(a) => commands::push::run(a, &printer),
        Command::Rebuild(a) => commands::rebuild::run(a, &printer),
        Command::Publish(a) => commands::publish::run(a, &printer),
        Command::Export(a) => commands::export::run(a, &printer),
        Command::Agent(a) => commands::agent::run(a, &printer),
        Command::Serve(a) => commands::serve::run(a, &printer),
        Command::Enroll(a) => commands::enroll::run(a, &printer),
        Command::Nodes(a) => commands::nodes::run(a, &printer),
        Command::Operators(a) => commands::operators::run(a, &printer),
        Command::Runs(a) => commands::runs::run(a, &printer),
        Command::Keys(a) => commands::keys::run(a, &printer),
        Command::Receive(a) => commands::receive::run(a, &printer),
        Command::SelfCheck(a) => commands::self_check::run(a, &printer),
        Command::GenerateAssets(a) => commands::generate_assets::run(a, &printer),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => ExitCode::from(e.report(&printer)),
    }
}
