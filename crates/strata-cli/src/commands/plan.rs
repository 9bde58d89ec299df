//! `strata plan`.

use clap::Args;

use crate::cli::NodeArgs;
use crate::command_error::{CommandError, CommandResult};
use crate::deferred::Recovery;
use crate::printer::Printer;
use crate::show;

/// Show what an apply would change, with diffs; writes nothing.
///
/// Exit status: 0 nothing to change, 2 changes pending, 1 error; 3 when it finished a
/// commit an earlier run left interrupted and a command run after that commit failed.
#[derive(Debug, Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: &PlanArgs, printer: &Printer) -> CommandResult {
    let req = args.node.request()?;
    let recovery = Recovery::open(printer, &req.root)?;
    let result = (|| {
        let outcome = strata_engine::plan(&req)?;
        show::outcome(
            printer,
            &outcome,
            &req.root,
            args.node.json,
            "plan",
            &recovery,
        )?;
        let pending = outcome.has_changes();
        show::release(outcome);
        if pending {
            Err(CommandError::changes_pending())
        } else {
            Ok(())
        }
    })();
    recovery.end(result)
}
