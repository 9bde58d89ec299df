//! `strata import`.

use std::path::PathBuf;

use clap::Subcommand;

use crate::cli::SiteArg;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Bring what another tool manages over as a module.
#[derive(Debug, Subcommand)]
pub enum ImportCommand {
    /// An Ansible role as a module: templates and files where its tasks put them, its
    /// defaults as the site's common parameters, its handlers' service restarts; lists
    /// what it could not translate, with the role's file and line.
    AnsibleRole {
        /// The role's directory (tasks/, templates/, files/, defaults/, handlers/).
        dir: PathBuf,
        /// The module to create (lowercase letters, digits, '-' and '_').
        #[arg(long, value_name = "NAME")]
        module: String,
        #[command(flatten)]
        site: SiteArg,
        /// Print JSON: {"written": [...], "untranslated": [{"file", "line", "what"}]}.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: &ImportCommand, printer: &Printer) -> CommandResult {
    let ImportCommand::AnsibleRole {
        dir,
        module,
        site,
        json,
    } = cmd;
    let imported = strata_core::import::import_ansible_role(dir, &site.site, module)?;
    if *json {
        printer.json(&imported)?;
        return Ok(());
    }
    let mut out = String::new();
    for f in &imported.written {
        out.push_str(&format!("created {}\n", site.site.join(f).display()));
    }
    printer.out(&out)?;
    for u in &imported.untranslated {
        let at = match u.line {
            Some(l) => format!("{}:{l}", dir.join(&u.file).display()),
            None => dir.join(&u.file).display().to_string(),
        };
        printer.note(&format!("not translated: {at}: {}", u.what));
    }
    printer.note(&format!(
        "next: add \"{module}\" to a node's modules, then strata plan --site {} --node NODE",
        site.site.display()
    ));
    Ok(())
}
