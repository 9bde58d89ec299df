//! `strata apply`.

use std::io::Write;

use clap::Args;

use crate::cli::NodeArgs;
use crate::command_error::{CommandError, CommandResult};
use crate::deferred::{self, Recovery};
use crate::printer::Printer;
use crate::show;

/// Apply the site to a node, all or nothing, and record a generation.
///
/// On error nothing on the target changes (exit 1). With nothing to change, nothing is
/// written. Exit 3: committed, but a command run after the commit (an intercepted call
/// of a script, a restart) failed, timed out or could not start. Then generations beyond
/// the site's `[state] keep_generations` (default 50) are pruned, as `strata gc` does.
#[derive(Debug, Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub node: NodeArgs,
}

pub fn run(args: &ApplyArgs, printer: &Printer) -> CommandResult {
    let req = args.node.request()?;
    let recovery = Recovery::open(printer, &req.root)?;
    let result = apply(args, &req, printer, &recovery);
    recovery.end(result)
}

fn apply(
    args: &ApplyArgs,
    req: &strata_engine::Request,
    printer: &Printer,
    recovery: &Recovery,
) -> CommandResult {
    let clock = crate::machine::clock()?;
    if args.node.json {
        let (outcome, ()) = strata_engine::apply_showing_by(req, clock, |_| ())
            .map_err(|e| failed(printer, req, e))?;
        show::outcome(printer, &outcome, &req.root, true, "apply", recovery)?;
        return finished(outcome);
    }
    // The changes are printed while they are committed; the last line says how it ended
    // (a failure is reported after them, and the target is as it was).
    let (outcome, shown) = strata_engine::apply_showing_by(req, clock, |pending| {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        show::changes_text(printer, pending, &mut out).and_then(|()| out.flush())
    })
    .map_err(|e| failed(printer, req, e))?;
    shown?;
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    show::tail_text(printer, &outcome, "apply", &mut out)?;
    show::retention(printer, &outcome, &mut out)?;
    out.flush()?;
    finished(outcome)
}

/// Runs the site's on-failure hooks after a failed apply (how each went on stderr), and
/// returns the apply's error.
fn failed(
    printer: &Printer,
    req: &strata_engine::Request,
    e: strata_engine::EngineError,
) -> CommandError {
    // Another strata holding the root is not a failure of this node's configuration.
    if crate::node::lock_held(&e).is_some() {
        return CommandError::from(e);
    }
    let mut out = String::new();
    let hooks = strata_engine::on_failure(req, &e);
    let error = CommandError::from(e);
    for h in hooks {
        show::hook_text(printer, &h, &mut out);
    }
    if !out.is_empty() {
        printer.note(out.trim_end());
    }
    error
}

/// Exit 3 when a command or a hook run after the commit did not succeed.
fn finished(outcome: strata_engine::Outcome) -> CommandResult {
    let failed = deferred::failures(outcome.generation, &outcome.activations, "")
        .or_else(|| show::hook_failures(outcome.generation, &outcome.hooks));
    show::release(outcome);
    match failed {
        Some(text) => Err(CommandError::commands_failed(text)),
        None => Ok(()),
    }
}
