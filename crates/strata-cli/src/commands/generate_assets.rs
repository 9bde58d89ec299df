//! `strata generate-assets DIR` (hidden): the man pages and shell completions, made from
//! the clap definition itself so that they never drift from `--help`. `scripts/package`
//! runs it before cargo-deb packs what it wrote.

use std::path::{Path, PathBuf};

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Write man pages (DIR/man/strata*.1) and completions for bash, zsh and fish
/// (DIR/completions/) (used by scripts/package; not for people).
#[derive(Debug, Args)]
pub struct GenerateAssetsArgs {
    /// Where to write them.
    pub dir: PathBuf,
}

pub fn run(args: &GenerateAssetsArgs, printer: &Printer) -> CommandResult {
    let mut written = Vec::new();
    let cli = crate::cli::Cli::command();
    let mut pages = cli.clone().disable_help_subcommand(true);
    // Sets each subcommand's display name (`strata-plan`), which names its page.
    pages.build();
    man_pages(&pages, &args.dir.join("man"), &mut written)?;
    let completions = args.dir.join("completions");
    let mut cmd = without_hidden(&cli);
    for (shell, name) in [
        (Shell::Bash, "strata"),
        (Shell::Zsh, "_strata"),
        (Shell::Fish, "strata.fish"),
    ] {
        let mut text = Vec::new();
        clap_complete::generate(shell, &mut cmd, "strata", &mut text);
        written.push(write(&completions.join(name), &text)?);
    }
    let list: String = written
        .iter()
        .map(|p| format!("{}\n", p.display()))
        .collect();
    printer.out(&list)?;
    Ok(())
}

/// `cmd` without its hidden subcommands, which clap_complete would offer.
fn without_hidden(cmd: &clap::Command) -> clap::Command {
    clap::Command::new("strata")
        .version(env!("CARGO_PKG_VERSION"))
        .propagate_version(true)
        .disable_help_subcommand(true)
        .args(cmd.get_arguments().filter(|a| !a.is_hide_set()).cloned())
        .subcommands(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned())
}

/// One page for `cmd` and one for each visible subcommand, recursively.
fn man_pages(cmd: &clap::Command, dir: &Path, written: &mut Vec<PathBuf>) -> anyhow::Result<()> {
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, dir, written)?;
    }
    let man = clap_mangen::Man::new(cmd.clone());
    let mut page = Vec::new();
    man.render(&mut page)?;
    written.push(write(&dir.join(man.get_filename()), &page)?);
    Ok(())
}

fn write(path: &Path, content: &[u8]) -> anyhow::Result<PathBuf> {
    if let Some(parent) = path.parent() {
        strata_fs::create_dir_all(parent)?;
    }
    strata_fs::write_atomic(path, content)?;
    Ok(path.to_path_buf())
}
