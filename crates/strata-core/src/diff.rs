//! Diffs of a file's text, as a plan shows them: unified, three lines of context, none
//! for what is not text or is larger than [`DIFF_LIMIT`].

use std::borrow::Cow;

use strata_types::{ContentSource, Snapshot, TargetPath};

/// Diffs are shown for text up to this size.
pub const DIFF_LIMIT: usize = 1 << 20;

/// A unified diff between the old and new content of a file, when both are text. A new
/// file gets none here: its diff is its content, which the caller shows from the contents
/// it holds anyway ([`diff_text`] with nothing before), so that a plan of many new files
/// does not hold each of them twice.
pub(crate) fn diff_for(
    path: &TargetPath,
    before: &Snapshot,
    old: Option<&[u8]>,
    after: &Snapshot,
    contents: &dyn ContentSource,
) -> Option<String> {
    if before.hash().is_some() && before.hash() == after.hash() {
        return None;
    }
    let old: Cow<'_, [u8]> = match before {
        Snapshot::File { .. } => Cow::Borrowed(old?),
        Snapshot::Absent => return None,
        _ => Cow::Borrowed(&[]),
    };
    let new: Cow<'_, [u8]> = match after.hash() {
        Some(h) => contents.content(&h)?,
        None => Cow::Borrowed(&[]),
    };
    diff_text(path, &old, &new)
}

/// A unified diff between two contents of `path`, when both are text (and not too large).
pub fn diff_text(path: &TargetPath, old: &[u8], new: &[u8]) -> Option<String> {
    if old.is_empty() && new.is_empty() {
        return None;
    }
    let (old, new) = (text(old)?, text(new)?);
    let name = path.as_str();
    // (similar also ends a line at a lone `\r`: such texts take the long way.)
    if old.is_empty() && !new.contains('\r') {
        return Some(creation_diff(name, new));
    }
    let diff = similar::TextDiff::from_lines(old, new)
        .unified_diff()
        .context_radius(3)
        .header(name, name)
        .to_string();
    Some(diff)
}

/// The diff of a new file's text exactly as `similar` writes it (one hunk adding every
/// line), without diffing: a first apply of thousands of files shows one for each.
fn creation_diff(name: &str, new: &str) -> String {
    use std::fmt::Write;
    let lines = new.split_inclusive('\n');
    let n = new.bytes().filter(|&b| b == b'\n').count() + usize::from(!new.ends_with('\n'));
    let mut out = String::with_capacity(new.len() + n + 2 * name.len() + 64);
    let range = match n {
        1 => "1".to_string(),
        n => format!("1,{n}"),
    };
    let _ = write!(out, "--- {name}\n+++ {name}\n@@ -0,0 +{range} @@\n");
    for line in lines {
        out.push('+');
        out.push_str(line);
        if !line.ends_with('\n') {
            out.push_str("\n\\ No newline at end of file\n");
        }
    }
    out
}

fn text(bytes: &[u8]) -> Option<&str> {
    if bytes.len() > DIFF_LIMIT || bytes.contains(&0) {
        return None;
    }
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A new file's diff, written without diffing, is byte for byte what `similar` gives.
    #[test]
    fn a_new_files_diff_is_the_one_similar_writes() {
        let path = TargetPath::parse("/etc/x").unwrap();
        let long: String = (0..500).map(|i| format!("line {i}\n")).collect();
        for new in [
            "a\n",
            "a",
            "a\nb",
            "a\nb\n",
            "\n",
            "\n\n",
            "a\r\nb\r\n",
            "a\rb\n",
            "é\nü",
            &long,
        ] {
            let want = similar::TextDiff::from_lines("", new)
                .unified_diff()
                .context_radius(3)
                .header("/etc/x", "/etc/x")
                .to_string();
            let got = diff_text(&path, b"", new.as_bytes()).unwrap();
            assert_eq!(got, want, "{new:?}");
        }
    }
}
