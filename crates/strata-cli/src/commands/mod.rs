//! One file per verb: its arguments (the doc comment is the help) and its `run`.

pub mod agent;
pub mod apply;
pub mod capture;
pub mod check;
pub mod classify;
pub mod diff;
pub mod drift;
pub mod export;
pub mod facts;
pub mod gc;
pub mod generate_assets;
pub mod generations;
pub mod import;
pub mod keys;
pub mod new;
pub mod params;
pub mod plan;
pub mod pools;
pub mod publish;
pub mod push;
pub mod receive;
pub mod report;
pub mod rollback;
pub mod secret;
pub mod self_check;
pub mod shell;
