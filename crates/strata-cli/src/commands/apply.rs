//! `strata apply`.

use clap::Args;

use crate::cli::NodeArgs;
use crate::error::CliResult;
use crate::printer::Printer;
use crate::show;

/// Apply the site to a node, all or nothing, and record a generation.
///
/// On error nothing on the target changes (exit 1). With nothing to change, nothing is
/// written.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: &ApplyArgs, printer: &Printer) -> CliResult {
    let req = args.node.request()?;
    let outcome = strata_engine::apply(&req)?;
    show::outcome(printer, &outcome, &req.root, args.node.json, "apply")?;
    Ok(())
}
