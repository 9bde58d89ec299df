//! `strata shell`.

use clap::Args;

use crate::cli::NodeArgs;
use crate::command_error::CommandResult;
use crate::deferred::Recovery;
use crate::printer::Printer;
use crate::show;

/// Open a shell in the plan's sandbox: the node's modules are laid in and their scripts
/// have run; on exit, shows everything the plan and the session would change. Nothing is
/// committed.
#[derive(Debug, Args)]
pub struct ShellArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: &ShellArgs, printer: &Printer) -> CommandResult {
    let req = args.node.request()?;
    let recovery = Recovery::open(printer, &req.root)?;
    let result = (|| {
        let outcome = strata_engine::shell(&req)?;
        show::outcome(
            printer,
            &outcome,
            &req.root,
            args.node.json,
            "plan",
            &recovery,
        )?;
        show::release(outcome);
        Ok(())
    })();
    recovery.end(result)
}
