//! `strata generations`.

use clap::Args;

use crate::cli::RootArg;
use crate::command_error::CommandResult;
use crate::deferred::Recovery;
use crate::printer::{Printer, Style, clean};
use crate::show;

/// List the generations recorded on a root, the size of its store and the generations
/// pruned.
#[derive(Debug, Args)]
pub struct GenerationsArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &GenerationsArgs, printer: &Printer) -> CommandResult {
    let root = crate::cli::absolute(&args.root.root)?;
    let recovery = Recovery::open(printer, &root)?;
    recovery.end(list(args, &root, printer))
}

fn list(args: &GenerationsArgs, root: &std::path::Path, printer: &Printer) -> CommandResult {
    let history = strata_engine::generations(root)?;
    if args.json {
        printer.json(&history)?;
        return Ok(());
    }
    if history.generations.is_empty() {
        printer.note("no generation recorded on this root yet");
        return Ok(());
    }
    let mut out = String::new();
    for g in &history.generations {
        let kind = match (g.kind, g.replayed) {
            (strata_types::GenerationKind::Rollback, Some(n)) => format!("rollback to {n}"),
            _ => "apply".to_string(),
        };
        let mark = if g.current {
            printer.paint(Style::Bold, " (current)")
        } else {
            String::new()
        };
        let failed = g.commands.iter().filter(|c| !c.succeeded()).count();
        let commands = match (g.commands.len(), failed) {
            (0, _) => String::new(),
            (n, 0) => format!(", {n} command{}", if n == 1 { "" } else { "s" }),
            (n, f) => printer.paint(
                Style::Red,
                &format!(
                    ", {n} command{} ({f} failed)",
                    if n == 1 { "" } else { "s" }
                ),
            ),
        };
        out.push_str(&format!(
            "{:>4}  {}  {:<16} {:>6} paths  {}{commands}{mark}\n",
            g.number,
            g.time,
            kind,
            g.paths,
            clean(&revision_text(g.revision.as_deref(), g.dirty))
        ));
    }
    let pruned = match history.pruned.as_slice() {
        [] => String::new(),
        [[a, b]] if a == b => format!("; generation {a} pruned"),
        ranges => format!("; generations {} pruned", show::ranges_text(ranges)),
    };
    out.push_str(&printer.paint(
        Style::Dim,
        &format!("store: {}{pruned}", show::store_text(&history.store)),
    ));
    out.push('\n');
    printer.out(&out)?;
    Ok(())
}

/// A revision as a person reads it: `rev 3f2a9c1e0b7d`, `rev 3f2a9c1e0b7d+dirty`,
/// `rev blake3:5e0c41aa9f3b` (a snapshot of a site that is no git checkout), `rev none`.
pub fn revision_text(revision: Option<&str>, dirty: bool) -> String {
    let id = revision.unwrap_or("none");
    let short = match id.strip_prefix("blake3:") {
        Some(h) => format!("blake3:{}", &h[..h.len().min(12)]),
        None => id.chars().take(12).collect(),
    };
    format!("rev {short}{}", if dirty { "+dirty" } else { "" })
}
