//! `strata classify`.

use std::path::{Path, PathBuf};

use clap::Args;

use crate::cli::SiteArg;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Match a machine's facts against the site's hardware profiles and allocate its pool
/// entries (once: the same machine gets the same entries back).
#[derive(Debug, Args)]
pub struct ClassifyArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The facts: the output of `strata facts --json` or `strata facts --tuples`.
    #[arg(long, value_name = "FILE")]
    pub facts: PathBuf,
    /// The allocation database: a SQLite file [default: SITE/.strata/state.db].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Show, per profile, why it did or did not match.
    #[arg(long)]
    pub explain: bool,
    /// Print JSON: {"machine", "profile", "role", "params": {"hw": {...}}, "explain"}.
    #[arg(long)]
    pub json: bool,
}

/// Opens the allocation store named by `--db`: a `postgres://` URL or a SQLite file.
pub fn open_store(
    site: &Path,
    db: Option<&str>,
) -> anyhow::Result<Box<dyn strata_hardware::Store>> {
    let default = site.join(".strata/state.db");
    Ok(strata_hardware::open(
        db.unwrap_or(&default.to_string_lossy()),
    )?)
}

pub fn load_hardware(site: &Path) -> anyhow::Result<strata_hardware::Hardware> {
    strata_hardware::Hardware::load(site).map_err(|errors| anyhow::anyhow!("{}", errors.join("\n")))
}

pub fn run(args: &ClassifyArgs, printer: &Printer) -> CommandResult {
    let site = crate::cli::absolute(&args.site.site)?;
    let hw = load_hardware(&site)?;
    let tuples = strata_facts::read_file(&args.facts)?;
    let mut store = open_store(&site, args.db.as_deref())?;
    let (c, _) = strata_hardware::classify(
        &hw,
        &tuples,
        store.as_mut(),
        strata_hardware::Allocate::Commit,
    )?;
    if args.json {
        let mut v = serde_json::json!({
            "machine": c.machine,
            "profile": c.profile,
            "role": c.role,
            "params": { "hw": c.hw_params() },
        });
        if args.explain {
            v["explain"] = serde_json::to_value(strata_hardware::explain(&hw, &tuples))?;
        }
        printer.json(&v)?;
        return Ok(());
    }
    let mut out = format!("profile {} (machine {})\n", c.profile, c.machine);
    if let Some(role) = &c.role {
        out.push_str(&format!("role    {role}\n"));
    }
    for (k, v) in c.hw_params() {
        out.push_str(&format!("hw.{k} = {v}\n"));
    }
    if args.explain {
        for e in strata_hardware::explain(&hw, &tuples) {
            out.push_str(&format!("  {}: {}\n", e.profile, e.verdict));
        }
    }
    printer.out(&out)?;
    Ok(())
}
