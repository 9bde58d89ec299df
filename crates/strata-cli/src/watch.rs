//! `strata agent --watch`: the directories holding the current generation's managed
//! paths watched with inotify (the `notify` crate), and `drift` run again a moment after
//! anything changes there; new drift is reported, the site's `on-drift` hooks run, and
//! with `--correct` an ordinary apply puts the managed state back (docs/drift.md).

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use notify::{RecommendedWatcher, RecursiveMode, Watcher};
use strata_engine::{Classify, Drift, Request};

use crate::command_error::{CommandError, CommandResult};
use crate::commands::drift as show_drift;
use crate::printer::Printer;
use crate::show;

/// How long events are gathered after the first before drift is checked: an editor's
/// save is a few events (write, rename, chmod) that one check covers.
const SETTLE: Duration = Duration::from_millis(250);

/// How often drift is checked even when no event came (a watch lost to a directory made
/// again, an edit below a directory not watched yet).
const RESCAN: Duration = Duration::from_secs(60);

/// What `--watch` does.
#[derive(Debug)]
pub struct Watch<'a> {
    /// The node's root.
    pub root: &'a Path,
    /// Put drift back with an ordinary apply.
    pub correct: bool,
    /// Stop after this long (none: watch until killed).
    pub for_: Option<Duration>,
}

/// Watches until `for_` passed (or forever). Exit 0 when the root ends without drift, 2
/// when drift found is still there at the end.
pub fn run(w: &Watch<'_>, printer: &Printer) -> CommandResult {
    let started = Instant::now();
    let (tx, rx) = channel();
    let mut watcher = notify::recommended_watcher(tx).map_err(anyhow::Error::from)?;
    let mut watched = BTreeSet::new();
    let mut reported = BTreeSet::new();
    let mut generation = None;
    loop {
        let drift = check(w, printer, &mut reported)?;
        if drift.generation != generation {
            generation = drift.generation;
            rewatch(&mut watcher, w.root, &drift, &mut watched);
            printer.note(&format!(
                "agent: watching {} managed paths in {} directories (generation {})",
                drift.managed,
                watched.len(),
                generation.map_or("none".into(), |n| n.to_string())
            ));
        }
        let left = w.for_.map(|f| f.saturating_sub(started.elapsed()));
        if left.is_some_and(|l| l.is_zero()) {
            return show_drift::verdict(&drift);
        }
        if !wait(&rx, left.map_or(RESCAN, |l| l.min(RESCAN))) {
            // The watcher is gone: nothing more will come.
            return Err(CommandError::from(anyhow::anyhow!(
                "agent: the file system watch ended"
            )));
        }
    }
}

/// Waits for an event (then gathers those following it for [`SETTLE`]) or `timeout`;
/// false when the watcher hung up.
fn wait(rx: &Receiver<notify::Result<notify::Event>>, timeout: Duration) -> bool {
    match rx.recv_timeout(timeout) {
        Ok(_) => {
            let until = Instant::now() + SETTLE;
            while let Some(left) = until.checked_duration_since(Instant::now()) {
                if let Err(RecvTimeoutError::Disconnected) = rx.recv_timeout(left) {
                    return false;
                }
            }
            true
        }
        Err(RecvTimeoutError::Timeout) => true,
        Err(RecvTimeoutError::Disconnected) => false,
    }
}

/// Runs drift; reports what is newly drifted (with the on-drift hooks), and corrects it
/// when asked. Returns what is left.
fn check(
    w: &Watch<'_>,
    printer: &Printer,
    reported: &mut BTreeSet<(String, String)>,
) -> Result<Drift, CommandError> {
    let drift = strata_engine::drift(w.root)?;
    let now: BTreeSet<(String, String)> = (drift.paths.iter())
        .map(|x| (x.path.to_string(), x.kind.as_str().to_string()))
        .collect();
    if now.is_empty() || now == *reported {
        *reported = now;
        return Ok(drift);
    }
    *reported = now;
    let time = humantime::format_rfc3339_seconds(std::time::SystemTime::now());
    printer.note(&format!("agent: drift found at {time}"));
    printer.out(&show_drift::text(printer, &drift))?;
    let mut summary = show_drift::json(&drift);
    summary["result"] = "drift".into();
    let mut out = String::new();
    for h in strata_engine::on_drift(w.root, &drift, summary) {
        show::hook_text(printer, &h, &mut out);
    }
    printer.out(&out)?;
    if !w.correct {
        return Ok(drift);
    }
    correct(w.root, &drift, printer)?;
    reported.clear();
    Ok(strata_engine::drift(w.root)?)
}

/// Puts the managed state back: an ordinary apply of the site and node the current
/// generation was applied from. Its failure is reported; the watch goes on.
fn correct(root: &Path, drift: &Drift, printer: &Printer) -> CommandResult {
    let (Some(site), Some(node)) = (&drift.site, &drift.node) else {
        printer.note("agent: cannot correct: the current generation records no site");
        return Ok(());
    };
    printer.note(&format!("agent: correcting: apply of {site} to {node}"));
    let snapshot = Path::new(site).starts_with(root.join("var/lib/strata/snapshot"));
    let req = Request {
        site: PathBuf::from(site),
        node: node.clone(),
        root: root.to_path_buf(),
        sets: Vec::new(),
        facts: None,
        local: *node == crate::machine::host_name(),
        db: None,
        helper: std::env::current_exe().ok(),
        checksum: false,
        cache: crate::cli::cache_dir(),
        terminal: None,
        // A node's copy of a pushed or pulled snapshot is never classified here.
        classify: match snapshot {
            true => Classify::Assigned(None),
            false => Classify::Here,
        },
    };
    let clock = crate::machine::clock()?;
    match strata_engine::apply_showing_by(&req, clock, |_| ()) {
        Ok((outcome, ())) => {
            let mut text = Vec::new();
            show::plan_text(printer, &outcome, "apply", &mut text)?;
            printer.out(&String::from_utf8_lossy(&text))?;
        }
        Err(e) => {
            let mut out = String::new();
            let hooks = match crate::node::lock_held(&e) {
                Some(_) => Vec::new(),
                None => strata_engine::on_failure(&req, &e),
            };
            for h in hooks {
                show::hook_text(printer, &h, &mut out);
            }
            printer.note(format!("agent: correcting failed: {e}\n{out}").trim_end());
        }
    }
    Ok(())
}

/// Watches the directories of the paths `drift`'s generation manages (and the root),
/// and stops watching the others.
fn rewatch(
    watcher: &mut RecommendedWatcher,
    root: &Path,
    drift: &Drift,
    watched: &mut BTreeSet<PathBuf>,
) {
    let mut want: BTreeSet<PathBuf> = BTreeSet::from([root.to_path_buf()]);
    for p in &drift.all {
        let host = root.join(p.as_str().trim_start_matches('/'));
        want.extend(host.parent().map(Path::to_path_buf));
    }
    for gone in watched.difference(&want).cloned().collect::<Vec<_>>() {
        let _ = watcher.unwatch(&gone);
        watched.remove(&gone);
    }
    for dir in want {
        if !watched.contains(&dir) && watcher.watch(&dir, RecursiveMode::NonRecursive).is_ok() {
            watched.insert(dir);
        }
    }
}
