//! `strata agent install`: writes the agent's systemd service and timer with this
//! node's source, and enables the timer. The units are the ones the Debian package ships
//! (`debian/strata-agent.service`, `.timer`), their text taken from there, with the
//! agent's own command line and schedule put in.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use clap::Args;

use crate::cli::{RootArg, absolute};
use crate::command_error::CommandResult;
use crate::printer::Printer;
use crate::source::Enrollment;

/// The packaged units: the one text both the package and `agent install` use.
const SERVICE: &str = include_str!("../../debian/strata-agent.service");
const TIMER: &str = include_str!("../../debian/strata-agent.timer");

/// The first line of every unit `agent install` writes: how it knows its own.
pub const MARK: &str = "# Written by `strata agent install`";

/// Where units go, below the root.
const UNIT_DIR: &str = "etc/systemd/system";

/// Write and enable the systemd service and timer that run `strata agent --once` every
/// interval (in <root>/etc/systemd/system, overriding the packaged units).
///
/// Without --from or --server, the server this node enrolled with. Run again with other
/// options, it rewrites its units; a unit it did not write is kept unless --force.
#[derive(Debug, Args)]
pub struct InstallArgs {
    /// Where `publish` writes: s3://BUCKET/PREFIX or file:///DIR (needs --root-key).
    #[arg(long, value_name = "URL", requires = "root_key")]
    pub from: Option<String>,
    /// An S3-compatible server's URL for s3://, passed to the agent.
    #[arg(long, value_name = "URL", requires = "from")]
    pub s3_endpoint: Option<String>,
    /// The server this node enrolled with [default: the enrollment's].
    #[arg(long, value_name = "URL", conflicts_with_all = ["from", "root_key"])]
    pub server: Option<String>,
    /// The fingerprint of the site's root key (`strata keys fingerprint`), with --from.
    #[arg(long, value_name = "FINGERPRINT")]
    pub root_key: Option<String>,
    /// This node's name, passed to the agent.
    #[arg(long, value_name = "NAME")]
    pub node: Option<String>,
    /// The environment to start from, passed to the agent.
    #[arg(long = "env", value_name = "ENV")]
    pub env: Option<String>,
    #[command(flatten)]
    pub root: RootArg,
    /// Plan instead of applying, on every run.
    #[arg(long)]
    pub noop: bool,
    /// Time between the end of one run and the start of the next.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// At most this much more, fixed per machine, so a fleet does not poll at once.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub splay: Duration,
    /// The strata binary the service runs [default: this one].
    #[arg(long, value_name = "PATH")]
    pub bin: Option<PathBuf>,
    /// Replace units of these names that `agent install` did not write.
    #[arg(long)]
    pub force: bool,
}

pub fn run(args: &InstallArgs, printer: &Printer) -> CommandResult {
    let root = absolute(&args.root.root)?;
    let command = agent_command(args, &root)?;
    let service = service_text(&command)?;
    let timer = timer_text(args.interval, args.splay)?;
    let dir = root.join(UNIT_DIR);
    let units = [
        (dir.join("strata-agent.service"), service),
        (dir.join("strata-agent.timer"), timer),
    ];
    // Every check before the first write: a refused install changes nothing.
    for (path, _) in &units {
        refuse_foreign(path, args.force)?;
    }
    for (path, text) in &units {
        let same =
            !strata_fs::is_link(path) && strata_fs::read(path).is_ok_and(|b| b == text.as_bytes());
        let state = if same {
            "unchanged"
        } else {
            // Written beside it (0644), then renamed over it: a link there is replaced,
            // never followed.
            strata_fs::replace_site_file(path, text.as_bytes())?;
            "written"
        };
        printer.out(&format!("{state} {}\n", path.display()))?;
    }
    let enabled = enable(&dir)?;
    printer.out(&format!(
        "{} strata-agent.timer: `{command}` every {} plus up to {}\n",
        if enabled {
            "enabled"
        } else {
            "already enabled"
        },
        humantime::format_duration(args.interval),
        humantime::format_duration(args.splay),
    ))?;
    if root == Path::new("/") {
        start_timer(printer)?;
    }
    Ok(())
}

/// The agent's command line, each argument quoted for systemd.
fn agent_command(args: &InstallArgs, root: &Path) -> anyhow::Result<String> {
    let bin = match &args.bin {
        Some(b) => absolute(b)?,
        None => std::env::current_exe().context("cannot tell where this strata binary is")?,
    };
    let bin = bin
        .to_str()
        .ok_or_else(|| anyhow!("the binary's path {} is not UTF-8", bin.display()))?
        .to_string();
    let mut argv = vec![bin, "agent".into(), "--once".into()];
    if let Some(from) = &args.from {
        if !(from.starts_with("s3://") || from.starts_with("file:///")) {
            bail!("--from {from:?}: expected s3://BUCKET/PREFIX or file:///DIR");
        }
        argv.extend(["--from".into(), from.clone()]);
        if let Some(e) = &args.s3_endpoint {
            argv.extend(["--s3-endpoint".into(), e.clone()]);
        }
        let fp = args.root_key.clone().unwrap_or_default();
        if fp.len() != 64 || !fp.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            bail!(
                "--root-key {fp:?} is not a root key's fingerprint (64 hex digits, `strata keys fingerprint`)"
            );
        }
        argv.extend(["--root-key".into(), fp]);
    } else {
        let keys = root.join("var/lib/strata/keys");
        let (enrolled, _) = Enrollment::load(&keys).with_context(|| {
            "agent install: without --from, the node must have enrolled with a server (`strata enroll`)"
        })?;
        let server = args.server.clone().unwrap_or(enrolled.server);
        if !(server.starts_with("https://") || server.starts_with("http://")) {
            bail!("--server {server:?}: expected an https:// URL");
        }
        argv.extend(["--server".into(), server]);
    }
    if let Some(n) = &args.node {
        argv.extend(["--node".into(), n.clone()]);
    }
    if let Some(e) = &args.env {
        argv.extend(["--env".into(), e.clone()]);
    }
    if args.noop {
        argv.push("--noop".into());
    }
    let quoted: Vec<String> = argv
        .iter()
        .enumerate()
        .map(|(i, a)| quote(a, i > 0))
        .collect::<anyhow::Result<_>>()?;
    Ok(quoted.join(" "))
}

/// One argument as systemd's `ExecStart=` reads it back: control characters refused
/// (a newline would start another directive), quoted when it needs it, `%` doubled (no
/// specifier expands in it), and `$` in arguments (`variables`: not in the command's
/// path, where systemd expands none).
fn quote(arg: &str, variables: bool) -> anyhow::Result<String> {
    if arg.is_empty() || arg.chars().any(char::is_control) {
        bail!("agent install: the argument {arg:?} is empty or holds a control character");
    }
    let escaped = arg
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('%', "%%");
    let escaped = if variables {
        escaped.replace('$', "$$")
    } else {
        escaped
    };
    Ok(
        if escaped
            .chars()
            .any(|c| c.is_whitespace() || "\"'\\;".contains(c))
        {
            format!("\"{escaped}\"")
        } else {
            escaped
        },
    )
}

/// The packaged service with this agent's command line instead of the package's
/// settings file.
fn service_text(command: &str) -> anyhow::Result<String> {
    let mut out = format!(
        "{MARK}; run it again to change them.\n\
         # One poll of `strata agent` (exit 4: only the last verified snapshot could be\n\
         # applied again). Started by strata-agent.timer.\n"
    );
    let mut seen = 0;
    for line in body(SERVICE) {
        if line.starts_with("ExecStart=") {
            seen += 1;
            out.push_str(&format!("ExecStart={command}\n"));
        } else if let Some(file) = line.strip_prefix("EnvironmentFile=") {
            // Optional now (the command line is in the unit): AWS_* settings, if any.
            seen += 1;
            out.push_str(&format!(
                "EnvironmentFile=-{}\n",
                file.trim_start_matches('-')
            ));
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if seen != 2 {
        bail!("the packaged strata-agent.service has no ExecStart= or EnvironmentFile= line");
    }
    Ok(out)
}

/// The packaged timer with this interval and splay.
fn timer_text(interval: Duration, splay: Duration) -> anyhow::Result<String> {
    if interval < Duration::from_secs(60) {
        bail!(
            "--interval {}: at least 1m",
            humantime::format_duration(interval)
        );
    }
    let (i, s) = (secs(interval), secs(splay));
    let mut out = format!(
        "{MARK}; run it again to change them.\n\
         # Runs strata-agent.service every {i}, each machine at its own fixed offset of up\n\
         # to {s}, so that a fleet does not poll at once.\n"
    );
    let mut seen = 0;
    for line in body(TIMER) {
        let (key, _) = line.split_once('=').unwrap_or((line, ""));
        let replaced = match key {
            "Description" => format!("Description=Run strata agent every {i}"),
            "OnUnitInactiveSec" => format!("OnUnitInactiveSec={i}"),
            "RandomizedDelaySec" => format!("RandomizedDelaySec={s}"),
            _ => {
                out.push_str(line);
                out.push('\n');
                continue;
            }
        };
        seen += 1;
        out.push_str(&replaced);
        out.push('\n');
    }
    if seen != 3 {
        bail!(
            "the packaged strata-agent.timer lacks Description=, OnUnitInactiveSec= or RandomizedDelaySec="
        );
    }
    Ok(out)
}

/// A packaged unit without its opening comment (which speaks of the package's settings).
fn body(unit: &str) -> impl Iterator<Item = &str> {
    unit.lines().skip_while(|l| l.starts_with('#'))
}

/// A duration in systemd's syntax (`30min`, `90s`).
fn secs(d: Duration) -> String {
    let s = d.as_secs();
    if s.is_multiple_of(60) {
        format!("{}min", s / 60)
    } else {
        format!("{s}s")
    }
}

/// Refuses to replace a unit (or anything else) of that name that `agent install` did
/// not write.
fn refuse_foreign(path: &Path, force: bool) -> anyhow::Result<()> {
    if !strata_fs::exists(path) && !strata_fs::is_link(path) {
        return Ok(());
    }
    let ours = !strata_fs::is_link(path)
        && strata_fs::read_to_string(path).is_ok_and(|t| t.starts_with(MARK));
    if ours || force {
        return Ok(());
    }
    bail!(
        "{}: not written by `strata agent install`; kept (--force replaces it)",
        path.display()
    )
}

/// Enables the timer as `systemctl enable` does: a link in `timers.target.wants/` to
/// the unit's path on the machine. `false` when it was there already.
fn enable(dir: &Path) -> anyhow::Result<bool> {
    let wants = dir.join("timers.target.wants");
    let link = wants.join("strata-agent.timer");
    let target = Path::new("/").join(UNIT_DIR).join("strata-agent.timer");
    if strata_fs::read_link(&link).is_ok_and(|t| Path::new(&t) == target) {
        return Ok(false);
    }
    strata_fs::create_dir_all(&wants)?;
    if strata_fs::exists(&link) || strata_fs::is_link(&link) {
        strata_fs::remove_file(&link)?;
    }
    std::os::unix::fs::symlink(&target, &link)
        .with_context(|| format!("cannot create {}", link.display()))?;
    Ok(true)
}

/// On the running machine: systemd reads the units again and starts the timer.
fn start_timer(printer: &Printer) -> anyhow::Result<()> {
    if !Path::new("/run/systemd/system").exists() {
        printer
            .note("agent install: systemd is not running here; the timer starts at the next boot");
        return Ok(());
    }
    for args in [&["daemon-reload"][..], &["restart", "strata-agent.timer"]] {
        let status = std::process::Command::new("systemctl")
            .args(args)
            .status()
            .context("cannot run systemctl")?;
        if !status.success() {
            bail!("systemctl {} failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_cannot_add_directives_or_expand() {
        assert!(quote("file:///x\nExecStartPre=/bin/evil", true).is_err());
        assert!(quote("", true).is_err());
        assert_eq!(quote("a b", true).unwrap(), "\"a b\"");
        assert_eq!(quote("$HOME%n", true).unwrap(), "$$HOME%%n");
        assert_eq!(quote("/x$1", false).unwrap(), "/x$1");
        assert_eq!(quote("a\"b\\", true).unwrap(), "\"a\\\"b\\\\\"");
    }

    #[test]
    fn the_units_are_the_packaged_ones_with_the_agents_settings() {
        let s = service_text("/usr/bin/strata agent --once --server https://s").unwrap();
        assert!(s.starts_with(MARK));
        assert!(s.contains("\nExecStart=/usr/bin/strata agent --once --server https://s\n"));
        assert!(s.contains("\nEnvironmentFile=-/etc/default/strata-agent\n"));
        assert!(s.contains("\nType=oneshot\n"));
        let t = timer_text(Duration::from_secs(600), Duration::from_secs(90)).unwrap();
        assert!(t.contains("\nOnUnitInactiveSec=10min\n"));
        assert!(t.contains("\nRandomizedDelaySec=90s\n"));
        assert!(t.contains("\nFixedRandomDelay=true\n"));
        assert!(!t.contains("30"), "{t}");
    }
}
