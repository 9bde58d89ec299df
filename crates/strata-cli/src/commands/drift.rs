//! `strata drift`.

use clap::Args;
use strata_engine::{Drift, Drifted};
use strata_types::{Action, Change};

use crate::cli::RootArg;
use crate::command_error::{CommandError, CommandResult};
use crate::deferred::Recovery;
use crate::printer::{Printer, Style, clean};
use crate::show;

/// List every managed path that no longer stands as the current generation recorded it
/// (hand edits), with diffs; writes nothing.
///
/// Sensitive files (rendered from a secret, or not readable by others) show only that
/// they changed: no diff, no hash. Exit status: 0 no drift, 2 drift found, 1 error.
#[derive(Debug, Args)]
pub struct DriftArgs {
    #[command(flatten)]
    pub root: RootArg,
    /// Print JSON (schema: docs/json.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &DriftArgs, printer: &Printer) -> CommandResult {
    let root = crate::cli::absolute(&args.root.root)?;
    let recovery = Recovery::open(printer, &root)?;
    let result = (|| {
        let drift = strata_engine::drift(&root)?;
        match args.json {
            true => printer.json(&json(&drift))?,
            false => printer.out(&text(printer, &drift))?,
        }
        verdict(&drift)
    })();
    recovery.end(result)
}

/// Exit 2 when something drifted.
pub fn verdict(drift: &Drift) -> CommandResult {
    match drift.paths.is_empty() {
        true => Ok(()),
        false => Err(CommandError::changes_pending()),
    }
}

/// One line per drifted path, its diff under it, then a summary line.
pub fn text(p: &Printer, d: &Drift) -> String {
    let mut out = String::new();
    let Some(n) = d.generation else {
        out.push_str("No generation recorded on this root: nothing is managed.\n");
        return out;
    };
    let width = (d.paths.iter())
        .map(|x| clean(&x.path.shown()).chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    for x in &d.paths {
        let module = (x.module.as_deref())
            .map(|m| format!("  ({})", clean(m)))
            .unwrap_or_default();
        out.push_str(&format!(
            "{} {:<width$}  {}{}\n",
            p.paint(Style::Yellow, &format!("{:<9}", x.kind.as_str())),
            clean(&x.path.shown()),
            clean(&show::describe(&d.users, &as_change(x))),
            p.paint(Style::Dim, &module)
        ));
        if let Some(diff) = &x.diff {
            show::paint_diff(p, diff, &mut out);
        }
    }
    let node = d.node.as_deref().unwrap_or("?");
    let head = match d.paths.len() {
        0 => format!(
            "No drift on {node} (generation {n}): all {} managed paths as recorded.",
            d.managed
        ),
        k => format!(
            "Drift on {node} (generation {n}): {k} of {} managed paths differ.",
            d.managed
        ),
    };
    out.push_str(&p.paint(Style::Bold, &clean(&head)));
    out.push('\n');
    out
}

/// A drifted path as a change from what was recorded to what was found, to describe it
/// as plans do.
fn as_change(x: &Drifted) -> Change {
    Change {
        path: x.path.clone(),
        action: Action::Modify,
        before: x.recorded.clone(),
        after: x.found.clone(),
        module: x.module.clone(),
        sensitive: x.sensitive,
        diff: None,
        note: None,
    }
}

/// The JSON document (docs/json.md): no hash of a sensitive file, modes in octal, owners
/// by name.
pub fn json(d: &Drift) -> serde_json::Value {
    let mut v = serde_json::to_value(d).expect("drift serialises");
    let paths = v["paths"].as_array_mut().expect("paths");
    for (x, j) in d.paths.iter().zip(paths) {
        for (side, s) in [("recorded", &x.recorded), ("found", &x.found)] {
            if x.sensitive
                && let Some(h) = j[side].get_mut("hash")
            {
                *h = serde_json::Value::Null;
            }
            if let Some((u, g)) = s.owner() {
                j[side]["owner"] = d.users.user_name(u).into();
                j[side]["group"] = d.users.group_name(g).into();
            }
            if let Some(m) = s.mode() {
                j[side]["mode"] = format!("{m:04o}").into();
            }
        }
    }
    v["drift"] = (!d.paths.is_empty()).into();
    v
}
