//! `strata`: configuration management whose dry run can be trusted.

mod assign;
mod branch;
mod cli;
mod command_error;
mod commands;
mod deferred;
mod machine;
mod node;
mod printer;
mod revision;
mod show;
mod source;
mod watch;

/// The system allocator, with the memory a template render holds counted: past 1 GiB the
/// process ends naming the template (strata_core::RenderAllocator).
#[global_allocator]
static ALLOCATOR: strata_core::RenderAllocator = strata_core::RenderAllocator;

fn main() -> std::process::ExitCode {
    #[cfg(feature = "failpoints")]
    let _scenario = fail::FailScenario::setup();
    cli::main()
}
