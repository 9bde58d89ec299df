//! `strata facts`.

use clap::Args;

use crate::cli::RootArg;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Show this machine's facts: CPU, memory, disks, NICs, PCI devices, DMI and OS.
///
/// Sources that are missing (no DMI in a VM, say) are warnings on stderr.
#[derive(Debug, Args)]
pub struct FactsArgs {
    /// Read the facts of the tree at DIR (its /proc, /sys and /etc) instead of this machine's.
    #[command(flatten)]
    pub root: RootArg,
    /// Print JSON.
    #[arg(long, conflicts_with = "tuples")]
    pub json: bool,
    /// Print a JSON array of [category, item, attribute, value] (eDeploy's form).
    #[arg(long)]
    pub tuples: bool,
}

pub fn run(args: &FactsArgs, printer: &Printer) -> CommandResult {
    let (facts, warnings) = strata_facts::gather(&args.root.root);
    for w in &warnings {
        printer.note(&format!("warning: {w}"));
    }
    if args.tuples {
        printer.json(&strata_facts::to_tuples(&facts))?;
    } else if args.json {
        printer.json(&facts)?;
    } else {
        let mut out = String::new();
        for [c, i, a, v] in strata_facts::to_tuples(&facts) {
            out.push_str(&format!("{c:<8} {i:<14} {a:<18} {v}\n"));
        }
        printer.out(&out)?;
    }
    Ok(())
}
