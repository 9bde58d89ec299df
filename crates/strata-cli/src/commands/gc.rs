//! `strata gc`.

use clap::Args;

use crate::cli::RootArg;
use crate::command_error::CommandResult;
use crate::deferred::Recovery;
use crate::printer::Printer;
use crate::show;

/// Prune old generations and the store objects only they use.
///
/// Keeps the current generation and the newest others, N in all; a kept generation can
/// still be rolled back to, and every path it manages still taken back. Also removes
/// what interrupted commits and gcs left in the store. Safe to interrupt.
#[derive(Debug, Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// How many generations to keep, the current one included [default: the site's
    /// `[state] keep_generations` as the last apply recorded it, else 50].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub keep: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &GcArgs, printer: &Printer) -> CommandResult {
    let root = crate::cli::absolute(&args.root.root)?;
    let recovery = Recovery::open(printer, &root)?;
    let result = (|| {
        let pruned = strata_engine::gc(&root, args.keep)?;
        if args.json {
            printer.json(&pruned)?;
        } else {
            printer.out(&show::pruned_text(printer, &pruned))?;
        }
        Ok(())
    })();
    recovery.end(result)
}
