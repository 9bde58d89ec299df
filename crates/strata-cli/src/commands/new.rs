//! `strata new`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::cli::SiteArg;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Create a working, commented skeleton.
#[derive(Debug, Subcommand)]
pub enum NewCommand {
    /// A new site in DIR: strata.toml, a node, a group, a role, a module, parameters.
    Site {
        /// Where to create it.
        dir: PathBuf,
    },
    /// A new module in the site.
    Module {
        /// The module's name (lowercase letters, digits, '-' and '_').
        name: String,
        #[command(flatten)]
        site: SiteArg,
    },
}

pub fn run(cmd: &NewCommand, printer: &Printer) -> CommandResult {
    let (dir, made) = match cmd {
        NewCommand::Site { dir } => (dir, strata_core::scaffold::new_site(dir)?),
        NewCommand::Module { name, site } => (
            &site.site,
            strata_core::scaffold::new_module(&site.site, name)?,
        ),
    };
    let mut out = String::new();
    for f in made {
        out.push_str(&format!("created {}\n", dir.join(f).display()));
    }
    printer.out(&out)?;
    if let NewCommand::Site { dir } = cmd {
        printer.note(&format!("next: strata check --site {0} && strata plan --site {0} --node node1.example.com --root /tmp/scratch", dir.display()));
    }
    Ok(())
}
