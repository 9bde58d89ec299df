//! How plans and reports look: the human text and the JSON documents.

use std::io::Write;
use std::path::Path;

use strata_engine::{Outcome, Pending};
use strata_types::{Action, Change, Report, Snapshot, Step, StepMetrics};

use crate::deferred::{Recovery, argv_text, ran_text};
use crate::printer::{Printer, Style, clean, clean_lines};

fn style(action: Action) -> Style {
    match action {
        Action::Create => Style::Green,
        Action::Modify => Style::Yellow,
        Action::Remove => Style::Red,
        Action::Restore => Style::Cyan,
        Action::Keep | Action::Unchanged => Style::Dim,
    }
}

/// Prints an outcome of `verb` (`plan`, `apply`, `rollback`) as JSON or as text; the
/// JSON also says what finishing an interrupted commit ran (`recovered`).
pub fn outcome(
    p: &Printer,
    o: &Outcome,
    root: &Path,
    json: bool,
    verb: &str,
    recovery: &Recovery,
) -> std::io::Result<()> {
    if json {
        let mut v = plan_json(o, root);
        if let Some(r) = recovery.json() {
            v["recovered"] = r;
        }
        match &o.pruned {
            Some(Ok(g)) => v["pruned"] = serde_json::to_value(g).map_err(std::io::Error::other)?,
            Some(Err(e)) => v["pruned"] = serde_json::json!({ "error": e.to_string() }),
            None => {}
        }
        retention(p, o, &mut std::io::sink())?;
        p.json(&v)
    } else {
        let mut out = std::io::BufWriter::new(std::io::stdout().lock());
        plan_text(p, o, verb, &mut out)?;
        out.flush()
    }
}

/// Lets go of a shown outcome without freeing it: the one place strata leaks on purpose.
/// The command ends next, and the process's memory goes back to the system whole at exit,
/// where freeing a plan of 10,000 files piece by piece (each change, diff, content and
/// owner name) costs milliseconds. Every verb that shows an outcome ends with this; only
/// a process about to exit may do it (the engine, an agent or a server drop theirs).
pub fn release(o: Outcome) {
    std::mem::forget(o);
}

/// The plan as a person reads it: one line per path, its attributes before → after, and
/// a unified diff under each changed text file; then what ran and a summary line.
pub fn plan_text(p: &Printer, o: &Outcome, verb: &str, w: &mut dyn Write) -> std::io::Result<()> {
    changes_text(p, &o.pending(), w)?;
    tail_text(p, o, verb, w)
}

/// What the scripts printed, then one line per path (with its diff). Written as it goes:
/// a plan of many new files is never held twice in memory.
pub fn changes_text(p: &Printer, o: &Pending<'_>, w: &mut dyn Write) -> std::io::Result<()> {
    let mut out = runs_text(p, o.runs);
    let shown = |c: &&Change| c.action != Action::Unchanged || p.verbose;
    let width = o
        .changes
        .iter()
        .filter(shown)
        .map(|c| clean(&c.path.shown()).chars().count())
        .max()
        .unwrap_or(0)
        .min(40);
    for c in o.changes.iter().filter(shown) {
        let action = p.paint(style(c.action), &format!("{:<9}", c.action.as_str()));
        let module = c
            .module
            .as_deref()
            .map(|m| format!("  ({})", clean(m)))
            .unwrap_or_default();
        out.push_str(&format!(
            "{action} {:<width$}  {}{}\n",
            clean(&c.path.shown()),
            clean(&describe(o.users, c)),
            p.paint(Style::Dim, &module)
        ));
        if let Some(note) = &c.note {
            out.push_str(&format!(
                "          {}\n",
                p.paint(Style::Dim, &clean_lines(note))
            ));
        }
        if let Some(diff) = o.diff(c) {
            paint_diff(p, &diff, &mut out);
        }
        w.write_all(out.as_bytes())?;
        out.clear();
    }
    w.write_all(out.as_bytes())
}

/// After the changes: the commands a plan would run or an apply ran, and the summary.
pub fn tail_text(p: &Printer, o: &Outcome, verb: &str, w: &mut dyn Write) -> std::io::Result<()> {
    let mut out = String::new();
    if verb == "plan" {
        for c in &o.calls {
            out.push_str(&format!(
                "{} {}  {}\n",
                p.paint(Style::Magenta, "would run"),
                argv_text(&c.argv),
                p.paint(Style::Dim, &clean(&format!("({} {})", c.module, c.program)))
            ));
        }
    }
    for a in &o.activations {
        ran_text(p, a, &mut out);
    }
    if verb == "plan" {
        for h in &o.would_run_hooks {
            out.push_str(&format!(
                "{} {}\n",
                p.paint(Style::Magenta, "would run hook"),
                clean(h)
            ));
        }
    }
    for h in &o.hooks {
        hook_text(p, h, &mut out);
    }
    let s = o.plan.summary();
    let mut parts = vec![
        format!("{} to create", s.create),
        format!("{} to modify", s.modify),
        format!("{} to remove", s.remove),
        format!("{} to restore", s.restore),
    ];
    if s.keep > 0 {
        parts.push(format!("{} released but kept", s.keep));
    }
    parts.push(format!("{} unchanged", s.unchanged));
    if !o.calls.is_empty() {
        parts.push(format!(
            "{} command{} {}",
            o.calls.len(),
            if o.calls.len() == 1 { "" } else { "s" },
            if verb == "plan" { "to run" } else { "run" }
        ));
    }
    let head = match verb {
        "plan" => format!(
            "Plan for {} ({}): {}.",
            o.node,
            o.environment,
            parts.join(", ")
        ),
        _ => {
            let parts = parts.join(", ").replace(" to ", " ");
            match o.generation {
                Some(n) => format!(
                    "Applied to {} ({}): {parts}; generation {n} recorded.",
                    o.node, o.environment
                ),
                None => format!(
                    "Nothing to do for {} ({}): {} paths already as declared.",
                    o.node, o.environment, s.unchanged
                ),
            }
        }
    };
    out.push_str(&p.paint(Style::Bold, &head));
    out.push('\n');
    w.write_all(out.as_bytes())
}

/// `file 0644 root:root 3f2a9c1e`, or for a change only what differs, `before → after`.
/// (Long: one small closure per attribute, then the match that uses them.)
pub fn describe(users: &strata_types::UserDb, c: &Change) -> String {
    let owner = |s: &Snapshot| {
        s.owner()
            .map(|(u, g)| format!("{}:{}", users.user_name(u), users.group_name(g)))
    };
    let hash = |s: &Snapshot| {
        if c.sensitive {
            s.hash().map(|_| "(sensitive)".to_string())
        } else {
            s.hash().map(|h| h.short())
        }
    };
    let target = |s: &Snapshot| match s {
        Snapshot::Link { target, .. } => Some(format!("-> {target}")),
        _ => None,
    };
    // `user.a=0x6869 security.capability=(none)`: values shortened.
    let xattrs = |s: &Snapshot| {
        (!s.xattrs().is_empty()).then(|| {
            s.xattrs()
                .iter()
                .map(|(k, v)| match v {
                    Some(v) if v.len() > 16 => format!("{k}=0x{}…", &v[..16]),
                    Some(v) => format!("{k}=0x{v}"),
                    None => format!("{k}=(none)"),
                })
                .collect::<Vec<_>>()
                .join(" ")
        })
    };
    let full = |s: &Snapshot| {
        let mut parts = vec![s.kind().to_string()];
        parts.extend(s.mode().map(|m| format!("{m:04o}")));
        if !matches!(s, Snapshot::Link { .. }) {
            parts.extend(owner(s));
        }
        parts.extend(hash(s));
        parts.extend(target(s));
        parts.extend(xattrs(s));
        parts.join(" ")
    };
    match c.action {
        Action::Create => full(&c.after),
        Action::Remove | Action::Keep | Action::Unchanged => full(&c.before),
        Action::Modify | Action::Restore => {
            let (b, a) = (&c.before, &c.after);
            if b.kind() != a.kind() {
                return format!("{} → {}", full(b), full(a));
            }
            let mut parts = Vec::new();
            let mut diff = |name: &str, x: Option<String>, y: Option<String>| {
                if x != y {
                    parts.push(format!(
                        "{name} {} → {}",
                        x.unwrap_or_default(),
                        y.unwrap_or_default()
                    ));
                }
            };
            if c.sensitive && b.hash() != a.hash() {
                diff(
                    "content",
                    Some("(sensitive)".into()),
                    Some("(changed)".into()),
                );
            } else {
                diff("content", hash(b), hash(a));
            }
            diff(
                "mode",
                b.mode().map(|m| format!("{m:04o}")),
                a.mode().map(|m| format!("{m:04o}")),
            );
            if !matches!(a, Snapshot::Link { .. }) {
                diff("owner", owner(b), owner(a));
            }
            diff("xattrs", xattrs(b), xattrs(a));
            diff(
                "target",
                target(b).map(|t| t[3..].to_string()),
                target(a).map(|t| t[3..].to_string()),
            );
            format!("{} {}", a.kind(), parts.join(", "))
        }
    }
}

/// Appends `diff` to `out`, each line in the colour of its kind (as it is without colour).
pub fn paint_diff(p: &Printer, diff: &str, out: &mut String) {
    // Without colour and without control characters each line goes out as it is (`lines`
    // would also turn CRLF into LF); otherwise each is cleaned (a `\r` shows as `\r`).
    let diff = clean_lines(diff);
    if !p.color && diff.ends_with('\n') {
        out.push_str(&diff);
        return;
    }
    for line in diff.lines() {
        let style = if line.starts_with("+++") || line.starts_with("---") {
            Some(Style::Bold)
        } else if line.starts_with('+') {
            Some(Style::Green)
        } else if line.starts_with('-') {
            Some(Style::Red)
        } else if line.starts_with("@@") {
            Some(Style::Cyan)
        } else {
            None
        };
        match style {
            Some(style) => p.paint_into(out, style, line),
            None => out.push_str(line),
        }
        out.push('\n');
    }
}

/// The plan as JSON (documented in docs/json.md).
pub fn plan_json(o: &Outcome, root: &Path) -> serde_json::Value {
    let changes: Vec<serde_json::Value> = o
        .plan
        .changes
        .iter()
        .map(|c| {
            let mut v = serde_json::to_value(c).expect("a change serialises");
            if let Some(d) = o.diff(c).filter(|_| c.diff.is_none()) {
                v["diff"] = d.into_owned().into();
            }
            if c.sensitive {
                for side in ["before", "after"] {
                    if let Some(h) = v[side].get_mut("hash") {
                        *h = serde_json::Value::Null;
                    }
                }
            }
            for side in ["before", "after"] {
                let s = if side == "before" {
                    &c.before
                } else {
                    &c.after
                };
                if let Some((u, g)) = s.owner() {
                    v[side]["owner"] = o.users.user_name(u).into();
                    v[side]["group"] = o.users.group_name(g).into();
                }
                if let Some(m) = s.mode() {
                    v[side]["mode"] = format!("{m:04o}").into();
                }
            }
            v
        })
        .collect();
    serde_json::json!({
        "node": o.node,
        "environment": o.environment,
        "root": root.display().to_string(),
        "changes": changes,
        "summary": o.plan.summary(),
        "generation": o.generation,
        "scripts": o.runs.iter().map(|r| serde_json::json!({
            "module": r.module,
            "program": r.program,
            "exit": r.metrics.exit,
            "stdout": r.stdout,
            "stderr": r.stderr,
        })).collect::<Vec<_>>(),
        "calls": o.calls,
        "activations": o.activations,
        "hooks": o.hooks,
        "would_run_hooks": o.would_run_hooks,
    })
}

/// What the scripts printed, each line prefixed with module and script.
pub fn runs_text(p: &Printer, runs: &[strata_types::ProgramRun]) -> String {
    let mut out = String::new();
    for r in runs {
        let prefix = clean(&format!("{} {}:", r.module, r.program)).into_owned();
        for line in r.stdout.lines() {
            out.push_str(&format!(
                "{} {}\n",
                p.paint(Style::Dim, &prefix),
                clean(line)
            ));
        }
        for line in r.stderr.lines() {
            out.push_str(&format!(
                "{} {}\n",
                p.paint(Style::Yellow, &prefix),
                clean(line)
            ));
        }
    }
    out
}

/// The steps of a run as a tree, as disco's report showed them. Step names are never cut:
/// the column is as wide as the longest.
pub fn report_text(p: &Printer, n: u64, report: &Report) -> String {
    fn names(out: &mut Vec<(String, StepMetrics)>, steps: &[Step], depth: usize) {
        for s in steps {
            out.push((
                format!("{}{}", "  ".repeat(depth), clean(&s.name)),
                s.metrics.clone(),
            ));
            names(out, &s.steps, depth + 1);
        }
    }
    let mut rows = Vec::new();
    names(&mut rows, &report.steps, 0);
    let w = rows
        .iter()
        .map(|(name, _)| name.chars().count())
        .max()
        .unwrap_or(0)
        .max(44);
    let revision =
        crate::commands::generations::revision_text(report.revision.as_deref(), report.dirty);
    let mut out = format!(
        "generation {n}, site {revision}\n{:<w$} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10}\n",
        "step", "wall", "user", "sys", "max rss", "faults", "read", "written"
    );
    for (name, m) in &rows {
        out.push_str(&format!(
            "{name:<w$} {:>10} {:>10} {:>10} {:>10} {:>12} {:>10} {:>10}\n",
            secs(m.wall),
            secs(m.user),
            secs(m.sys),
            bytes(m.max_rss),
            format!("{}/{}", m.major_faults, m.minor_faults),
            bytes(m.read_bytes),
            bytes(m.write_bytes)
        ));
    }
    if !report.programs.is_empty() {
        out.push('\n');
        out.push_str(&runs_text(p, &report.programs));
    }
    if !report.activations.is_empty() {
        out.push('\n');
    }
    for a in &report.activations {
        ran_text(p, a, &mut out);
    }
    out
}

fn secs(s: f64) -> String {
    if s < 1.0 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{s:.2} s")
    }
}

/// `1-4, 7`: generation numbers, runs of consecutive ones as ranges.
pub fn numbers_text(numbers: &[u64]) -> String {
    let mut ranges: Vec<[u64; 2]> = Vec::new();
    for n in numbers {
        match ranges.last_mut() {
            Some(r) if r[1] + 1 == *n => r[1] = *n,
            _ => ranges.push([*n, *n]),
        }
    }
    ranges_text(&ranges)
}

/// `1-4, 7` from inclusive ranges.
pub fn ranges_text(ranges: &[[u64; 2]]) -> String {
    (ranges.iter())
        .map(|[a, b]| match a == b {
            true => a.to_string(),
            false => format!("{a}-{b}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `21 objects, 45.2 KiB (46284 bytes)`.
pub fn store_text(s: &strata_state::StoreSize) -> String {
    let exact = match s.bytes < 1024 {
        true => String::new(),
        false => format!(" ({} bytes)", s.bytes),
    };
    format!(
        "{} object{}, {}{exact}",
        s.objects,
        if s.objects == 1 { "" } else { "s" },
        bytes(s.bytes),
    )
}

/// After an apply: what its retention pruned (nothing when it pruned nothing); a
/// retention that failed is a warning on stderr, since the apply stands.
pub fn retention(p: &Printer, o: &Outcome, w: &mut dyn Write) -> std::io::Result<()> {
    match &o.pruned {
        Some(Ok(g)) if !g.pruned.is_empty() => w.write_all(pruned_text(p, g).as_bytes()),
        Some(Err(e)) => {
            p.note(&format!(
                "warning: the apply stands, but pruning old generations failed: {e} \
                 (`strata gc` tries again)"
            ));
            Ok(())
        }
        _ => Ok(()),
    }
}

/// What a gc or an apply's retention pruned, one or two lines.
pub fn pruned_text(p: &Printer, g: &strata_state::Pruned) -> String {
    let mut out = if g.kept.is_empty() {
        "No generation recorded on this root: nothing to prune.\n".to_string()
    } else if g.pruned.is_empty() {
        format!(
            "Nothing to prune: {} generation{} kept (up to {}).\n",
            g.kept.len(),
            if g.kept.len() == 1 { "" } else { "s" },
            g.keep
        )
    } else {
        format!(
            "Pruned generation{} {}; kept {} (the newest {}).\n",
            if g.pruned.len() == 1 { "" } else { "s" },
            numbers_text(&g.pruned),
            numbers_text(&g.kept),
            g.keep
        )
    };
    if let (Some(store), Some(removed)) = (&g.store, &g.removed) {
        let mut packs = Vec::new();
        for (n, what) in [
            (g.packs_rewritten, "rewritten"),
            (g.packs_removed, "removed"),
        ] {
            if n > 0 {
                packs.push(format!("{n} pack{} {what}", if n == 1 { "" } else { "s" }));
            }
        }
        let packs = match packs.is_empty() {
            true => String::new(),
            false => format!("; {}", packs.join(", ")),
        };
        out.push_str(&format!(
            "Store: {}; removed {}{packs}.\n",
            store_text(store),
            store_text(removed)
        ));
    }
    p.paint(Style::Bold, out.trim_end()) + "\n"
}

fn bytes(b: u64) -> String {
    match b {
        0..1024 => format!("{b} B"),
        1024..1_048_576 => format!("{:.1} KiB", b as f64 / 1024.0),
        _ => format!("{:.1} MiB", b as f64 / 1_048_576.0),
    }
}

/// A hook that ran, how it ended and what it printed.
pub fn hook_text(p: &Printer, a: &strata_types::Activation, out: &mut String) {
    let style = match a.succeeded() {
        true => Style::Magenta,
        false => Style::Red,
    };
    out.push_str(&format!(
        "{} {}  {}\n",
        p.paint(style, "hook"),
        clean(&a.command.program),
        p.paint(Style::Dim, &clean(&format!("({})", a.describe())))
    ));
    for line in a.output.lines() {
        out.push_str(&format!("          {}\n", clean(line)));
    }
}

/// The error for hooks that ran after a commit and did not all succeed, naming each with
/// how it ended; none when they all succeeded.
pub fn hook_failures(
    generation: Option<u64>,
    hooks: &[strata_types::Activation],
) -> Option<String> {
    let failed: Vec<_> = hooks.iter().filter(|a| !a.succeeded()).collect();
    if failed.is_empty() {
        return None;
    }
    let generation = generation.map_or("the generation".into(), |n| format!("generation {n}"));
    let mut text = format!("{generation} committed; a hook run after the commit failed:");
    for a in failed {
        text.push_str(&format!("\n  {}: {}", a.command.program, a.describe()));
    }
    Some(text)
}
