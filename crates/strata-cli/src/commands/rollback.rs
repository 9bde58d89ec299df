//! `strata rollback`.

use clap::Args;

use crate::cli::RootArg;
use crate::command_error::CommandResult;
use crate::deferred::Recovery;
use crate::printer::Printer;
use crate::show;

/// Go back to an earlier generation's state, without the site; the result is a new
/// generation.
#[derive(Debug, Args)]
pub struct RollbackArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// The generation to go back to [default: the one before the current].
    #[arg(long, value_name = "N")]
    pub to: Option<u64>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &RollbackArgs, printer: &Printer) -> CommandResult {
    let root = crate::cli::absolute(&args.root.root)?;
    let recovery = Recovery::open(printer, &root)?;
    let result = (|| {
        let outcome = strata_engine::rollback(&root, args.to, crate::machine::clock()?)?;
        show::outcome(printer, &outcome, &root, args.json, "rollback", &recovery)?;
        show::release(outcome);
        Ok(())
    })();
    recovery.end(result)
}
