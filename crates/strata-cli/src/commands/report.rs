//! `strata report`.

use clap::Args;

use crate::cli::RootArg;
use crate::command_error::CommandResult;
use crate::deferred::Recovery;
use crate::printer::Printer;
use crate::show;

/// Show what each step of a run cost: wall time, CPU, peak memory, page faults and I/O.
#[derive(Debug, Args)]
pub struct ReportArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// The generation [default: the current one].
    pub generation: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ReportArgs, printer: &Printer) -> CommandResult {
    let root = crate::cli::absolute(&args.root.root)?;
    let recovery = Recovery::open(printer, &root)?;
    let result = (|| {
        let (n, report) = strata_engine::report(&root, args.generation)?;
        if args.json {
            printer.json(&serde_json::json!({
                "generation": n,
                "revision": report.revision,
                "dirty": report.dirty,
                "steps": report.steps,
                "activations": report.activations,
                "programs": report.programs,
            }))?;
        } else {
            printer.out(&show::report_text(printer, n, &report))?;
        }
        Ok(())
    })();
    recovery.end(result)
}
