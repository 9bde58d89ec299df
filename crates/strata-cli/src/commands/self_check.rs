//! `strata self-check HASH` (hidden): run by push on a freshly copied strata before it
//! is installed, to prove the copy is whole and runs on the node.

use clap::Args;

use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Check that this executable's blake3 is HASH (used by push; not for people).
#[derive(Debug, Args)]
pub struct SelfCheckArgs {
    /// The expected blake3, hex.
    pub hash: String,
}

pub fn run(args: &SelfCheckArgs, _printer: &Printer) -> CommandResult {
    let exe = std::env::current_exe()?;
    let bytes = strata_fs::read(&exe)?;
    let got = blake3::hash(&bytes).to_hex();
    if got.as_str() != args.hash {
        return Err(anyhow::anyhow!(
            "{} is {got}, not {}: the copy is damaged",
            exe.display(),
            args.hash
        )
        .into());
    }
    Ok(())
}
