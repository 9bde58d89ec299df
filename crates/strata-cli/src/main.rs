//! `strata`: configuration management whose dry run can be trusted.

mod cli;
mod commands;
mod deferred;
mod error;
mod printer;
mod show;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "failpoints")]
    let _scenario = fail::FailScenario::setup();
    cli::main()
}
