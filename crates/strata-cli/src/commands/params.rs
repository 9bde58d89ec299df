//! `strata params`.

use clap::Args;

use crate::cli::SiteArg;
use crate::command_error::CommandResult;
use crate::printer::{Printer, Style, clean};

/// Show a node's resolved parameters and where each value was set.
#[derive(Debug, Args)]
pub struct ParamsArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The node.
    pub node: String,
    /// Only this key (dotted), or the keys below it.
    pub key: Option<String>,
    /// Set a parameter, as plan and apply do.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = crate::cli::parse_set)]
    pub sets: Vec<(String, String)>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ParamsArgs, printer: &Printer) -> CommandResult {
    let site = crate::cli::absolute(&args.site.site)?;
    let tree = strata_engine::params(&site, &args.node, &args.sets)?;
    let below = args.key.as_ref().map(|k| format!("{k}."));
    let leaves: Vec<(String, serde_json::Value)> = tree
        .leaves()
        .into_iter()
        .filter(|(k, _)| match (&args.key, &below) {
            (Some(key), Some(below)) => k == key || k.starts_with(below),
            _ => true,
        })
        .collect();
    if let Some(key) = &args.key
        && leaves.is_empty()
    {
        return Err(anyhow::anyhow!("node {} has no parameter `{key}`", args.node).into());
    }
    if args.json {
        let list: Vec<_> = leaves
            .iter()
            .map(
                |(k, v)| serde_json::json!({ "key": k, "value": v, "source": tree.sources.get(k) }),
            )
            .collect();
        printer.json(&list)?;
        return Ok(());
    }
    let width = leaves
        .iter()
        .map(|(k, v)| k.len() + v.to_string().len() + 3)
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for (k, v) in &leaves {
        let assignment = format!("{k} = {v}");
        let source = match tree.sources.get(k) {
            Some(s) => match (&s.file, s.line) {
                (Some(f), Some(l)) => format!("# {f}:{l} ({})", s.layer),
                (Some(f), None) => format!("# {f} ({})", s.layer),
                _ => format!("# {}", s.layer),
            },
            None => String::new(),
        };
        out.push_str(&format!(
            "{:<width$}  {}\n",
            clean(&assignment),
            printer.paint(Style::Dim, &clean(&source))
        ));
    }
    printer.out(&out)?;
    Ok(())
}
