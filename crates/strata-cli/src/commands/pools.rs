//! `strata pools`.

use clap::{Args, Subcommand};

use crate::cli::SiteArg;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// The machines enrolled by `strata classify` and the pool entries they hold.
#[derive(Debug, Subcommand)]
pub enum PoolsCommand {
    /// List every allocation.
    List(ListArgs),
    /// Give a machine's entries and profile slot back.
    Release(ReleaseArgs),
}

/// `strata pools list`.
#[derive(Debug, Args)]
pub struct ListArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The allocation database [default: SITE/.strata/state.db].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `strata pools release`.
#[derive(Debug, Args)]
pub struct ReleaseArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The allocation database [default: SITE/.strata/state.db].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
    /// The machine, as `strata classify` names it (`serial=…`, `mac=…`).
    pub machine: String,
}

pub fn run(cmd: &PoolsCommand, printer: &Printer) -> CommandResult {
    match cmd {
        PoolsCommand::List(a) => {
            let site = crate::cli::absolute(&a.site.site)?;
            let list = super::classify::open_store(&site, a.db.as_deref())?.list()?;
            if a.json {
                printer.json(&list)?;
                return Ok(());
            }
            let mut out = String::new();
            for alloc in list {
                let entries: Vec<String> = alloc
                    .entries
                    .iter()
                    .map(|(pool, (i, e))| {
                        format!(
                            "{pool}[{i}]={}",
                            serde_json::to_string(e).unwrap_or_default()
                        )
                    })
                    .collect();
                out.push_str(&format!(
                    "{}  {}  {}\n",
                    alloc.machine,
                    alloc.profile,
                    entries.join(" ")
                ));
            }
            printer.out(&out)?;
        }
        PoolsCommand::Release(a) => {
            let site = crate::cli::absolute(&a.site.site)?;
            if !super::classify::open_store(&site, a.db.as_deref())?.release(&a.machine)? {
                return Err(anyhow::anyhow!("machine {} holds no allocation", a.machine).into());
            }
            printer.note(&format!("released {}", a.machine));
        }
    }
    Ok(())
}
