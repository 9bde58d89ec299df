//! `strata operators`: the people who read the dashboard and its JSON (`strata serve`'s
//! `/` and `/api/`). Run on the server's machine: it writes the inventory directly.

use clap::{Args, Subcommand};

use crate::command_error::CommandResult;
use crate::commands::nodes::DbArgs;
use crate::printer::Printer;

/// Manage the operators who may read `strata serve`'s dashboard and `/api/`.
#[derive(Debug, Subcommand)]
pub enum OperatorsCommand {
    /// Make an operator's bearer token (128 random bits, stored hashed) and print it
    /// once; adding a name again replaces its token. With --cert, bind a client
    /// certificate to the operator instead (its token, if any, stays).
    Add(AddArgs),
    /// Make a single-use browser sign-in code, valid 5 minutes: open
    /// `https://SERVER/?token=CODE` and the server sets a session cookie (reads only).
    Login(LoginArgs),
}

/// `operators login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// The operator's name, as added.
    pub name: String,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `operators add`.
#[derive(Debug, Args)]
pub struct AddArgs {
    /// The operator's name (letters, digits, `.`, `_`, `-`; at most 64).
    pub name: String,
    /// A client certificate (PEM) the operator shows over TLS, issued by `strata serve
    /// --operator-ca`: bound by its SHA-256 fingerprint, printed.
    #[arg(long, value_name = "FILE")]
    pub cert: Option<std::path::PathBuf>,
    #[command(flatten)]
    pub db: DbArgs,
}

/// The prefix of an operator's token.
pub const TOKEN_PREFIX: &str = "strataop1";

pub fn run(cmd: &OperatorsCommand, printer: &Printer) -> CommandResult {
    match cmd {
        OperatorsCommand::Add(a) => add(a, printer),
        OperatorsCommand::Login(a) => login(a, printer),
    }
}

fn add(a: &AddArgs, printer: &Printer) -> CommandResult {
    let valid = !a.name.is_empty()
        && a.name.len() <= 64
        && a.name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !valid {
        return Err(anyhow::anyhow!(
            "operator name {:?}: use letters, digits, `.`, `_` and `-` (at most 64)",
            a.name
        )
        .into());
    }
    if let Some(file) = &a.cert {
        let pem = strata_fs::read(file)?;
        let der = strata_server::listen::pem_certificate(&pem)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let fingerprint = strata_server::listen::fingerprint(&der);
        a.db.open()?
            .add_operator_cert(&a.name, &fingerprint, strata_snapshot::now())?;
        printer.out(&format!("sha256:{fingerprint}\n"))?;
        printer.note(&format!(
            "operator {}: this certificate, checked against serve's --operator-ca, signs \
             them in",
            a.name
        ));
        return Ok(());
    }
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let token = format!("{TOKEN_PREFIX}.{}", strata_types::hex(&secret));
    a.db.open()?.add_operator(
        &a.name,
        &strata_server::app::token_hash(&token),
        strata_snapshot::now(),
    )?;
    printer.out(&format!("{token}\n"))?;
    printer.note(&format!(
        "operator {}: send it as `Authorization: Bearer TOKEN`; it is not shown again",
        a.name
    ));
    Ok(())
}

fn login(a: &LoginArgs, printer: &Printer) -> CommandResult {
    let mut secret = [0u8; 16];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let code = strata_types::hex(&secret);
    let expires = strata_snapshot::now() + strata_server::dashboard::LOGIN_TTL;
    let added = a.db.open()?.add_operator_code(
        &strata_server::app::token_hash(&code),
        &a.name,
        false,
        expires,
    )?;
    if !added {
        return Err(anyhow::anyhow!(
            "no operator {:?}; add one with `strata operators add {}`",
            a.name,
            a.name
        )
        .into());
    }
    printer.out(&format!("/?token={code}\n"))?;
    printer.note("open it on the server within 5 minutes (single use); it signs this browser in");
    Ok(())
}
