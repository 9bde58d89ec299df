//! `strata diff`.

use clap::Args;
use strata_engine::{DriftKind, GenerationSide};
use strata_types::{Action, Change};

use crate::cli::RootArg;
use crate::command_error::CommandResult;
use crate::deferred::Recovery;
use crate::printer::{Printer, Style, clean};
use crate::show;

/// Show what changed between two generations of a root: every path whose recorded
/// state differs, with diffs of text from the store (none for sensitive files), and the
/// site revision each came from.
#[derive(Debug, Args)]
pub struct DiffArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// The generation to compare from.
    #[arg(value_name = "GEN1")]
    pub from: u64,
    /// The generation to compare to.
    #[arg(value_name = "GEN2")]
    pub to: u64,
    /// Print JSON (the paths as `drift --json` lists them).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DiffArgs, printer: &Printer) -> CommandResult {
    let root = crate::cli::absolute(&args.root.root)?;
    let recovery = Recovery::open(printer, &root)?;
    let result = (|| {
        let d = strata_engine::diff(&root, args.from, args.to)?;
        if args.json {
            let drift = strata_engine::Drift {
                generation: None,
                node: None,
                environment: None,
                site: None,
                revision: None,
                managed: 0,
                paths: d.paths,
                all: Vec::new(),
                users: d.users,
            };
            let paths = crate::commands::drift::json(&drift)["paths"].take();
            printer.json(&serde_json::json!({
                "from": d.from,
                "to": d.to,
                "paths": paths,
            }))?;
            return Ok(());
        }
        let mut out = format!("{} → {}\n", side_text(&d.from), side_text(&d.to));
        let width = (d.paths.iter())
            .map(|x| clean(&x.path.shown()).chars().count())
            .max()
            .unwrap_or(0)
            .min(40);
        for x in &d.paths {
            let (word, style, action) = match x.kind {
                DriftKind::Added => ("added", Style::Green, Action::Create),
                DriftKind::Missing => ("removed", Style::Red, Action::Remove),
                k => (k.as_str(), Style::Yellow, Action::Modify),
            };
            let change = Change {
                path: x.path.clone(),
                action,
                before: x.recorded.clone(),
                after: x.found.clone(),
                module: x.module.clone(),
                sensitive: x.sensitive,
                diff: None,
                note: None,
            };
            let module = (x.module.as_deref())
                .map(|m| format!("  ({})", clean(m)))
                .unwrap_or_default();
            out.push_str(&format!(
                "{} {:<width$}  {}{}\n",
                printer.paint(style, &format!("{word:<9}")),
                clean(&x.path.shown()),
                clean(&show::describe(&d.users, &change)),
                printer.paint(Style::Dim, &module)
            ));
            if let Some(diff) = &x.diff {
                show::paint_diff(printer, diff, &mut out);
            }
        }
        let n = d.paths.len();
        out.push_str(&printer.paint(
            Style::Bold,
            &format!("{n} path{} differ.", if n == 1 { "" } else { "s" }),
        ));
        out.push('\n');
        printer.out(&out)?;
        Ok(())
    })();
    recovery.end(result)
}

/// `generation 2 (2024-05-01T12:05:00Z, rev 3f2a9c1e0b7d+dirty)`.
fn side_text(s: &GenerationSide) -> String {
    let rev = crate::commands::generations::revision_text(s.revision.as_deref(), s.dirty);
    clean(&format!("generation {} ({}, {rev})", s.number, s.time)).into_owned()
}
