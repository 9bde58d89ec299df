//! `strata export deb`: a site's modules and roles as Debian packages (strata-deb).

use std::path::PathBuf;

use clap::{Args, Subcommand};
use strata_deb::{ExportError, Scope};

use crate::cli::{SiteArg, absolute};
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Export a site's modules and roles as packages other tools install.
#[derive(Debug, Subcommand)]
pub enum ExportCommand {
    Deb(DebArgs),
}

/// Build Debian packages of a module or a role: one per module version (its files,
/// rendered templates, directories and links; owners and its scripts from postinst;
/// Depends: from requires), and for a role a metapackage depending on its modules' exact
/// versions.
///
/// Prints one line per package: name, version, file.
#[derive(Debug, Args)]
pub struct DebArgs {
    /// MODULE[@VERSION] or ROLE[@VERSION] (module:NAME or role:NAME when a module and a
    /// role share the name).
    #[arg(value_name = "MODULE|ROLE")]
    pub what: String,
    #[command(flatten)]
    pub site: SiteArg,
    /// Render for this node: its environment, groups and parameters.
    #[arg(long, value_name = "NODE", conflicts_with = "env")]
    pub node: Option<String>,
    /// Render for this environment, with no group's or node's parameters [default: the
    /// site's default_environment].
    #[arg(long, value_name = "ENV")]
    pub env: Option<String>,
    /// Where to write the .deb files.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// The packages' Maintainer field.
    #[arg(
        long,
        value_name = "NAME <EMAIL>",
        default_value = "strata export <root@localhost>"
    )]
    pub maintainer: String,
    /// Print JSON: {"packages": [{name, version, path, source, depends, paths}]}.
    #[arg(long)]
    pub json: bool,
}

pub fn run(cmd: &ExportCommand, printer: &Printer) -> CommandResult {
    let ExportCommand::Deb(args) = cmd;
    let req = strata_deb::Request {
        site: absolute(&args.site.site)?,
        what: args.what.clone(),
        scope: match &args.node {
            Some(n) => Scope::Node(n.clone()),
            None => Scope::Environment(args.env.clone()),
        },
        out: absolute(&args.out)?,
        maintainer: args.maintainer.clone(),
    };
    let packages = strata_deb::export(&req).map_err(|e| match e {
        // Shown as every other command shows a site's errors: each with its hint.
        ExportError::Site(errors) => anyhow::Error::from(strata_engine::EngineError::Site(errors)),
        other => other.into(),
    })?;
    if args.json {
        printer.json(&serde_json::json!({ "packages": packages }))?;
        return Ok(());
    }
    let mut out = String::new();
    for p in &packages {
        out.push_str(&format!("{} {} {}\n", p.name, p.version, p.path.display()));
    }
    printer.out(&crate::printer::clean_lines(&out))?;
    Ok(())
}
