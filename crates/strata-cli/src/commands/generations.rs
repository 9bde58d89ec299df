//! `strata generations`.

use clap::Args;

use crate::cli::RootArg;
use crate::error::CliResult;
use crate::printer::{Printer, Style};

/// List the generations recorded on a root.
#[derive(Debug, Args)]
pub struct GenerationsArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &GenerationsArgs, printer: &Printer) -> CliResult {
    let root = crate::cli::absolute(&args.root.root)?;
    let list = strata_engine::generations(&root)?;
    if args.json {
        printer.json(&list)?;
        return Ok(());
    }
    if list.is_empty() {
        printer.note("no generation recorded on this root yet");
        return Ok(());
    }
    let mut out = String::new();
    for g in &list {
        let kind = match (g.kind, g.replayed) {
            (strata_types::GenerationKind::Rollback, Some(n)) => format!("rollback to {n}"),
            _ => "apply".to_string(),
        };
        let mark = if g.current {
            printer.paint(Style::Bold, " (current)")
        } else {
            String::new()
        };
        out.push_str(&format!(
            "{:>4}  {}  {:<16} {:>6} paths{mark}\n",
            g.number, g.time, kind, g.paths
        ));
    }
    printer.out(&out)?;
    Ok(())
}
