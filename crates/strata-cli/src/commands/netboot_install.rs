//! `strata netboot provision`: what the netboot initrd runs once the machine enrolled
//! (docs/provision.md, "Provisioning from the initrd"). The node fetches its signed
//! snapshot and assignment exactly as its agent does (the agent's fetch and checks, the
//! node's enrolled key and pinned root), then `strata provision`'s code makes its disk
//! from that snapshot, with the base OS streamed from the server and checked against the
//! hash pinned in the initrd. The installed root gets the node's identity (its keys,
//! enrollment and trust state under /var/lib/strata), strata itself and the agent's units,
//! so that its first boot runs the agent, which reports to the server.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;
use strata_snapshot::{BlobStore, Trust};
use strata_transport::wire::NodeEvent;

use crate::cli::{RootArg, absolute};
use crate::command_error::CommandResult;
use crate::commands::agent::{FIRST_BOOT, fetch};
use crate::node::{self, NodeRun, Refusal};
use crate::printer::Printer;
use crate::source::{Enrollment, ServerSource, Source};

/// Where `netboot build` pins the base's hash inside the initrd.
pub const BASE_HASH: &str = "/etc/strata-netboot/base.blake3";

/// Where the installed root gets strata (the path the Debian package uses).
const INSTALLED_BIN: &str = "usr/bin/strata";

/// Install this enrolled machine onto its disk from its server (the netboot initrd runs
/// it after `strata enroll`): its snapshot and assignment fetched and verified as the
/// agent does, the base OS from the server's /boot/base.tar (checked against the hash
/// pinned in the initrd), the node's catalog applied, the disk written as by `strata
/// provision`, and the node's identity and agent installed on it. Everything on the disk
/// is replaced.
#[derive(Debug, Args)]
pub struct ProvisionArgs {
    /// The disk to install onto [default: the first disk the machine's facts list].
    #[arg(long, value_name = "DEV")]
    pub disk: Option<PathBuf>,
    /// The file holding the base's blake3 (hex) [default: the one `netboot build` pinned
    /// in the initrd].
    #[arg(long, value_name = "FILE", default_value = BASE_HASH)]
    pub base_hash: PathBuf,
    #[command(flatten)]
    pub root: RootArg,
}

pub fn run(args: &ProvisionArgs, printer: &Printer) -> CommandResult {
    let root = absolute(&args.root.root)?;
    let state = root.join("var/lib/strata");
    let (enrolled, key) = Enrollment::load(&state.join("keys"))?;
    let node = enrolled.node.clone();
    let key_id = key.id();
    let source = ServerSource {
        client: enrolled.client(&enrolled.server, key)?,
        node: node.clone(),
        key_id,
        cache: state.join("agent"),
    };
    let trust = Trust::open(&state);
    let blobs = BlobStore::open(&state);
    printer.note(&format!(
        "fetching {node}'s snapshot and assignment from {}",
        enrolled.server
    ));
    let (verified, assignment, _) = fetch(
        &node,
        enrolled.root_key.as_deref(),
        &trust,
        &blobs,
        &source,
        None,
    )
    .map_err(|Refusal(e)| anyhow!("{}", e.message))?;
    let site = blobs.materialize(&verified.manifest)?.dir;
    if !has_provision(&site)? {
        return Err(anyhow!(
            "{node} is enrolled, but its site has no [provision] in strata.toml: nothing to \
             install"
        )
        .into());
    }
    let disk = match &args.disk {
        Some(d) => absolute(d)?,
        None => first_disk(&root)?,
    };
    let pinned = pinned_hash(&args.base_hash)?;
    let url = format!("{}/boot/base.tar", enrolled.server.trim_end_matches('/'));
    let open = || -> Result<Box<dyn Read>, String> {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_connect(Some(Duration::from_secs(30)))
            .build()
            .into();
        let answer = agent.get(&url).call().map_err(|e| e.to_string())?;
        Ok(Box::new(answer.into_body().into_reader()))
    };
    let streamed = strata_provision::Streamed {
        from: url.clone(),
        open: &open,
        blake3: pinned,
    };
    let cache = crate::cli::cache_dir();
    let job = strata_provision::Job {
        site: &site,
        node: &node,
        disk: &disk,
        cache: &cache,
        base: Some(&streamed),
    };
    let mut changes = 0usize;
    let mut paths = Vec::new();
    let mut steps = Vec::new();
    let mut apply = |tree: &Path| -> Result<Option<u64>, String> {
        // The node's identity and what it fetched, first: the catalog is applied from
        // the tree's own state, as the installed agent will apply it again. strata and
        // its agent too, while the tree is still the base (checked against its pinned
        // hash): once the catalog ran, the tree is the site's, and nothing is written
        // into it through a link it could have put there.
        copy_state(&state, &tree.join("var/lib/strata"))?;
        install_agent(tree, printer).map_err(|e| format!("{e:#}"))?;
        let tstate = tree.join("var/lib/strata");
        let (ttrust, tblobs) = (Trust::open(&tstate), BlobStore::open(&tstate));
        let run = NodeRun {
            root: tree,
            node: &node,
            noop: false,
            sets: &[],
        };
        let (event, result) = node::apply_verified(
            &run,
            &ttrust,
            &tblobs,
            (&verified, assignment.as_ref()),
            true,
            &mut |_| {},
        )
        .map_err(|Refusal(e)| e.message)?;
        result.map_err(|e| format!("{:#}", e.error))?;
        let NodeEvent::Result {
            generation,
            changes: c,
            paths: p,
            steps: s,
            ..
        } = event
        else {
            return Err("the apply gave no result".into());
        };
        (changes, paths, steps) = (c, p, s);
        Ok(generation)
    };
    let mut progress = |stage: &str| printer.note(stage);
    let done = strata_provision::provision(&job, &mut apply, &mut progress)?;
    // The server learns the machine is installed: its next netboot boots the disk.
    let (roles, groups) = crate::commands::agent::node_labels(
        strata_core::Site::open(&site).ok().as_ref(),
        assignment.as_ref(),
        &node,
    );
    let report = strata_server::inventory::RunReport {
        id: 0,
        node: String::new(),
        time: strata_snapshot::now(),
        environment: verified.manifest.environment.clone(),
        version: verified.manifest.version,
        revision: verified.manifest.revision.clone(),
        generation: done.generation,
        result: "changed".into(),
        changes,
        paths,
        truncated: 0,
        drift: false,
        error: None,
        note: Some(format!(
            "provisioned {} from the netboot initrd",
            disk.display()
        )),
        steps,
        roles,
        groups,
    };
    source.report(&report).map_err(|Refusal(e)| {
        anyhow!("provisioned, but the report was not posted: {}", e.message)
    })?;
    let times: Vec<String> = done
        .times
        .iter()
        .map(|(stage, t)| format!("{stage} {:.1}s", t.as_secs_f64()))
        .collect();
    printer.out(&format!(
        "provisioned {} as {node}: {changes} changes from the catalog, generation {}; took {}\n",
        disk.display(),
        done.generation.unwrap_or(0),
        times.join(", ")
    ))?;
    Ok(())
}

/// Whether the site's strata.toml has a `[provision]` table.
fn has_provision(site: &Path) -> anyhow::Result<bool> {
    let text = strata_fs::read_to_string(&site.join("strata.toml"))?;
    let table: toml::Table = toml::from_str(&text).context("the site's strata.toml")?;
    Ok(table.contains_key("provision"))
}

/// The first disk the machine's facts list (none empty).
fn first_disk(root: &Path) -> anyhow::Result<PathBuf> {
    let (facts, _) = strata_facts::gather(root);
    facts
        .disks
        .iter()
        .find(|d| d.size > 0)
        .map(|d| PathBuf::from("/dev").join(&d.name))
        .ok_or_else(|| anyhow!("this machine has no disk to install onto"))
}

/// The base's pinned blake3, 64 hex digits.
fn pinned_hash(file: &Path) -> anyhow::Result<String> {
    let text = strata_fs::read_sized_file(file, 256).with_context(|| {
        format!(
            "{}: no pinned base (`netboot build` writes it)",
            file.display()
        )
    })?;
    let hash = String::from_utf8_lossy(&text).trim().to_string();
    if hash.len() != 64 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!("{}: not a blake3 hash", file.display());
    }
    Ok(hash.to_ascii_lowercase())
}

/// Copies the node's state (keys 0600, enrollment, blobs, the agent's cache) into the
/// tree's, modes kept.
fn copy_state(from: &Path, to: &Path) -> Result<(), String> {
    strata_fs::create_dir_all(to).map_err(|e| e.to_string())?;
    let out = Command::new("cp")
        .arg("-a")
        .arg(format!("{}/.", from.display()))
        .arg(to)
        .output()
        .map_err(|e| format!("cp: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "copying the node's state: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(())
}

/// strata itself, its agent's units (as `strata agent install --root TREE`) and the
/// first-boot run: the agent runs at each boot and then on its timer, and its first run
/// reports even when it changes nothing.
fn install_agent(tree: &Path, printer: &Printer) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot tell where this strata binary is")?;
    let bin = tree.join(INSTALLED_BIN);
    strata_fs::replace_site_file(&bin, &strata_fs::read(&exe)?)?;
    strata_fs::set_mode(&bin, 0o755)?;
    let install = crate::commands::agent_install::InstallArgs {
        from: None,
        s3_endpoint: None,
        server: None,
        root_key: None,
        node: None,
        env: None,
        root: RootArg {
            root: tree.to_path_buf(),
        },
        noop: false,
        interval: Duration::from_secs(30 * 60),
        splay: Duration::from_secs(5 * 60),
        bin: Some(Path::new("/").join(INSTALLED_BIN)),
        force: true,
    };
    crate::commands::agent_install::run(&install, printer).map_err(|e| e.error)?;
    let wants = tree.join("etc/systemd/system/multi-user.target.wants");
    strata_fs::create_dir_all(&wants)?;
    let link = wants.join("strata-agent.service");
    if strata_fs::exists(&link) || strata_fs::is_link(&link) {
        strata_fs::remove_file(&link)?;
    }
    std::os::unix::fs::symlink("/etc/systemd/system/strata-agent.service", &link)
        .with_context(|| format!("cannot create {}", link.display()))?;
    strata_fs::create_dir_all(&tree.join("var/lib/strata/agent"))?;
    strata_fs::write_atomic(&tree.join(FIRST_BOOT), b"")?;
    Ok(())
}
