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
    /// Restore files rendered from secrets with their old content even when one of the
    /// node's secrets changed since that generation (by default they keep their current
    /// content, so that a rotated secret does not come back).
    #[arg(long)]
    pub with_old_secrets: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &RollbackArgs, printer: &Printer) -> CommandResult {
    let root = crate::cli::absolute(&args.root.root)?;
    let recovery = Recovery::open(printer, &root)?;
    let result = (|| {
        let outcome = strata_engine::rollback(
            &root,
            args.to,
            args.with_old_secrets,
            crate::machine::clock()?,
        )?;
        show::outcome(printer, &outcome, &root, args.json, "rollback", &recovery)?;
        show::release(outcome);
        Ok(())
    })();
    recovery.end(result)
}
