//! `strata runs`: the reports agents posted to the server (FLEET.md, "Runs and
//! reports"): what changed, failed or drifted, by path and kind, never contents.

use std::time::Duration;

use clap::Args;

use crate::command_error::CommandResult;
use crate::commands::nodes::DbArgs;
use crate::printer::{Printer, clean};

/// List the runs agents reported, oldest first: every run that changed something,
/// failed, found drift, or could only re-apply stale metadata.
#[derive(Debug, Args)]
pub struct RunsArgs {
    /// Only this node's.
    pub node: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &RunsArgs, printer: &Printer) -> CommandResult {
    let site = crate::cli::absolute(&args.db.site.site)?;
    let db = crate::commands::serve::db_url(&site, args.db.db.as_deref());
    let runs = strata_server::inventory::open(&db)?.reports(args.node.as_deref())?;
    if args.json {
        printer.json(&runs)?;
        return Ok(());
    }
    let mut out = String::new();
    for r in &runs {
        let time =
            humantime::format_rfc3339_seconds(std::time::UNIX_EPOCH + Duration::from_secs(r.time));
        let generation = r.generation.map_or("-".to_string(), |g| g.to_string());
        out.push_str(&format!(
            "{:>5} {} {} {} {} version {} (revision {}) generation {generation}, {} changes{}\n",
            r.id,
            time,
            clean(&r.node),
            r.result,
            clean(&r.environment),
            r.version,
            clean(&r.revision),
            r.changes,
            if r.drift { ", drift" } else { "" }
        ));
        for p in &r.paths {
            out.push_str(&format!("        {:<8} {}\n", p.kind, clean(&p.path)));
        }
        if r.truncated > 0 {
            out.push_str(&format!("        ({} more paths)\n", r.truncated));
        }
        for text in r.error.iter().chain(&r.note) {
            out.push_str(&format!("        {}\n", clean(text)));
        }
    }
    printer.out(&out)?;
    Ok(())
}
