//! `strata check`.

use clap::Args;

use crate::cli::SiteArg;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Validate the whole site: compile every node and report every error found.
///
/// Exit status: 0 valid, 1 not.
#[derive(Debug, Args)]
pub struct CheckArgs {
    #[command(flatten)]
    pub site: SiteArg,
}

pub fn run(args: &CheckArgs, printer: &Printer) -> CommandResult {
    let site = crate::cli::absolute(&args.site.site)?;
    let nodes = strata_engine::check(&site)?;
    let mut failed = 0;
    let mut out = String::new();
    for n in &nodes {
        match &n.result {
            Ok(paths) => out.push_str(&format!("ok      {} ({paths} paths)\n", n.node)),
            Err(errors) => {
                failed += 1;
                out.push_str(&format!("failed  {} ({} errors)\n", n.node, errors.0.len()));
                for e in &errors.0 {
                    printer.error(
                        &format!("node {}: {e}", n.node),
                        &e.hint.iter().cloned().collect::<Vec<_>>(),
                    );
                }
            }
        }
    }
    // A site that can provision machines has its layouts checked too (docs/provision.md).
    if strata_fs::exists(&site.join("hardware/layouts")) {
        match strata_provision::check(&site) {
            Ok(_) => out.push_str("ok      provisioning settings and layout\n"),
            Err(e) => {
                printer.out(&crate::printer::clean_lines(&out))?;
                return Err(anyhow::anyhow!("provisioning: {e}").into());
            }
        }
    }
    printer.out(&crate::printer::clean_lines(&out))?;
    if failed > 0 {
        return Err(anyhow::anyhow!("{failed} of {} nodes do not compile", nodes.len()).into());
    }
    Ok(())
}
