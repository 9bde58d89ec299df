//! `strata provision`.

use std::path::PathBuf;

use clap::Args;

use crate::cli::SiteArg;
use crate::command_error::CommandResult;
use crate::printer::Printer;

/// Make a disk (a block device, or an image file made beforehand with its size) into a
/// node: partitions and file systems from the site's layout, the base OS, the node's
/// catalog applied to the new tree, GRUB, `fstab` by UUID, and generation 1 recorded
/// inside, so the machine boots already managed (docs/provision.md).
///
/// Nothing is written to the disk until the new tree is complete; the partition table
/// and the boot code are written last, so a provisioning stopped halfway leaves a disk
/// that does not boot, which the next provisioning takes over from scratch.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    #[command(flatten)]
    pub site: SiteArg,
    /// The node to make.
    #[arg(long, value_name = "NODE")]
    pub node: String,
    /// The disk: a block device or an image file (everything on it is replaced).
    #[arg(long, value_name = "PATH")]
    pub disk: PathBuf,
    /// The machine's saved facts (`strata facts --json` or `--tuples`), for hardware
    /// profiles [default: live facts when the node is this machine].
    #[arg(long, value_name = "FILE")]
    pub facts: Option<PathBuf>,
    /// The hardware allocation database: a SQLite file or a postgres:// URL
    /// [default: SITE/.strata/state.db].
    #[arg(long, value_name = "URL")]
    pub db: Option<String>,
}

pub fn run(args: &ProvisionArgs, printer: &Printer) -> CommandResult {
    let site = crate::cli::absolute(&args.site.site)?;
    let disk = crate::cli::absolute(&args.disk)?;
    let facts = args
        .facts
        .as_deref()
        .map(crate::cli::absolute)
        .transpose()?;
    let cache = crate::cli::cache_dir();
    let host = crate::machine::host_name();
    let job = strata_provision::Job {
        site: &site,
        node: &args.node,
        disk: &disk,
        cache: &cache,
        base: None,
    };
    let mut changes = 0usize;
    let mut apply = |root: &std::path::Path| {
        let req = strata_engine::Request {
            site: site.clone(),
            node: args.node.clone(),
            root: root.to_path_buf(),
            sets: Vec::new(),
            facts: facts.clone(),
            local: args.node == host,
            db: args.db.clone(),
            helper: std::env::current_exe().ok(),
            checksum: false,
            cache: cache.clone(),
            terminal: None,
            classify: strata_engine::Classify::Here,
        };
        let outcome = strata_engine::apply(&req).map_err(|e| with_causes(&e))?;
        changes = outcome.plan.changes.len();
        Ok(outcome.generation)
    };
    let mut progress = |stage: &str| printer.note(stage);
    let done = strata_provision::provision(&job, &mut apply, &mut progress)?;
    let mut out = format!(
        "provisioned {} as {}: {changes} changes from the catalog, {}\n",
        disk.display(),
        args.node,
        done.generation.map_or_else(
            || "no generation (nothing to apply)".to_string(),
            |g| format!("generation {g}")
        ),
    );
    for m in &done.made {
        out.push_str(&format!(
            "  {:<12} {:<5} UUID={} at {} ({})\n",
            m.mount,
            m.fs,
            m.uuid,
            m.offset,
            strata_provision::gpt::human(m.bytes)
        ));
    }
    let times: Vec<String> = done
        .times
        .iter()
        .map(|(stage, t)| format!("{stage} {:.1}s", t.as_secs_f64()))
        .collect();
    out.push_str(&format!("  took {}\n", times.join(", ")));
    printer.out(&out)?;
    Ok(())
}

/// An error and its causes, each once.
fn with_causes(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        let t = c.to_string();
        if !text.contains(&t) {
            text.push_str(": ");
            text.push_str(&t);
        }
        cause = c.source();
    }
    text
}
