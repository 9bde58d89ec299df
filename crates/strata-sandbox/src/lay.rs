//! Laying what a module declares into the merged tree before its programs run: files,
//! links, directories and FIFOs as the plan wants them, and `[[line]]` edits.

use strata_fs::Root;
use strata_types::{Snapshot, TargetPath};

use crate::helper_error::{HelperError, Result};
use crate::{Lay, LineEdit};

/// Lays each of `lays`, in order.
pub fn lay_all(t: &Root, lays: &[Lay]) -> Result<()> {
    for l in lays {
        lay(t, l).map_err(laying(l))?;
    }
    Ok(())
}

/// Makes `l.path` in the merged tree what `l.state` says (parents must exist).
pub fn lay(t: &Root, l: &Lay) -> Result<()> {
    let p = &l.path;
    let dir = p.parent().unwrap_or_else(TargetPath::root);
    let have = t.inspect(p)?;
    match &l.state {
        Snapshot::Absent => match have {
            Snapshot::Absent => {}
            Snapshot::Dir { .. } => remove_tree(t, p)?,
            _ => t.remove(p)?,
        },
        Snapshot::File { .. } => {
            let meta = l.state.meta().expect("a file");
            let from = l.content.as_ref().ok_or("no content given")?;
            let bytes = std::fs::read(from).map_err(HelperError::io("read", from))?;
            if matches!(have, Snapshot::Dir { .. }) {
                remove_tree(t, p)?;
            }
            t.write_file_in(&dir, p.file_name(), &bytes, meta)?;
        }
        Snapshot::Link { target, uid, gid } => {
            if matches!(have, Snapshot::Dir { .. }) {
                remove_tree(t, p)?;
            }
            t.symlink_in(&dir, p.file_name(), target, *uid, *gid)?;
        }
        Snapshot::Dir { .. } => {
            let meta = l.state.meta().expect("a directory");
            if matches!(have, Snapshot::Dir { .. }) {
                t.set_meta(p, meta)
            } else {
                if !have.is_absent() {
                    t.remove(p)?;
                }
                t.mkdir(p, meta)
            }?;
        }
        Snapshot::Fifo { .. } => {
            if matches!(have, Snapshot::Dir { .. }) {
                remove_tree(t, p)?;
            }
            t.fifo_in(&dir, p.file_name(), l.state.meta().expect("a FIFO"))?;
        }
        Snapshot::Other { kind } => return Err(format!("cannot lay a {kind}").into()),
    }
    Ok(t.set_xattrs(p, l.state.xattrs())?)
}

/// Ensures a line: already there, or replacing the one line the pattern matches, or
/// appended.
pub fn line(t: &Root, l: &LineEdit) -> Result<()> {
    let meta = match t.inspect(&l.path)? {
        file @ Snapshot::File { .. } => file.meta().expect("a file"),
        // A missing file is made (0644, root), so its down removes it again.
        Snapshot::Absent => strata_types::Meta::root(0o644),
        other => {
            return Err(format!("{} is a {}, not a regular file", l.path, other.kind()).into());
        }
    };
    let bytes = t.read(&l.path)?.unwrap_or_default();
    let text = String::from_utf8(bytes).map_err(|_| format!("{} is not UTF-8 text", l.path))?;
    let mut lines: Vec<&str> = text.lines().collect();
    if lines.contains(&l.line.as_str()) {
        return Ok(());
    }
    let matching: Vec<usize> = match &l.pattern {
        Some(p) => {
            let re = regex::Regex::new(p).map_err(|e| format!("bad match pattern: {e}"))?;
            (0..lines.len())
                .filter(|i| re.is_match(lines[*i]))
                .collect()
        }
        None => Vec::new(),
    };
    match matching.as_slice() {
        [] => lines.push(&l.line),
        [i] => lines[*i] = &l.line,
        many => {
            return Err(format!(
                "{} lines of {} match `{}` (lines {}); a [[line]] replaces exactly one",
                many.len(),
                l.path,
                l.pattern.as_deref().unwrap_or_default(),
                many.iter()
                    .map(|i| (i + 1).to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            )
            .into());
        }
    }
    let mut out = lines.join("\n");
    out.push('\n');
    let dir = l.path.parent().unwrap_or_else(TargetPath::root);
    if !matches!(t.inspect(&dir)?, Snapshot::Dir { .. }) {
        return Err(format!("{dir} is not a directory").into());
    }
    t.write_file_in(&dir, l.path.file_name(), out.as_bytes(), meta)?;
    Ok(())
}

/// Removes a directory and everything in it, confined to the tree.
fn remove_tree(t: &Root, p: &TargetPath) -> Result<()> {
    Ok(t.remove_tree(p)?)
}

/// For `map_err`: laying `l` into the sandbox failed.
pub fn laying(l: &Lay) -> impl FnOnce(HelperError) -> HelperError {
    HelperError::inside(format!("laying {} into the sandbox", l.path))
}
