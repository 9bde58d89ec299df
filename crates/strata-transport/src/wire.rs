//! What crosses one push session. Operator → node: frames, a header line
//! `TAG LEN [ARG]\n` then LEN bytes (`root`, `manifest`, `end`; then `blob LEN HASH`…,
//! `end`). Node → operator: JSON lines, one [`NodeEvent`] each.

use std::io::{self, BufRead, Read, Write};

use serde::{Deserialize, Serialize};

/// The longest header line accepted.
const MAX_HEADER: usize = 200;

/// One frame's header; its body (`len` bytes) follows on the stream.
#[derive(Debug, PartialEq, Eq)]
pub struct Frame {
    /// `root`, `manifest`, `blob` or `end`.
    pub tag: String,
    /// The body's length.
    pub len: u64,
    /// The blob's hash, for `blob`.
    pub arg: String,
}

/// Writes a frame.
pub fn write_frame(w: &mut impl Write, tag: &str, arg: &str, body: &[u8]) -> io::Result<()> {
    if arg.is_empty() {
        writeln!(w, "{tag} {}", body.len())?;
    } else {
        writeln!(w, "{tag} {} {arg}", body.len())?;
    }
    w.write_all(body)
}

/// Reads a frame's header; `None` at the end of the stream. A header over 200 bytes, or
/// one that is not `TAG LEN [ARG]`, is an error (the stream is not a push session).
pub fn read_frame(r: &mut impl BufRead) -> io::Result<Option<Frame>> {
    let mut line = Vec::new();
    r.by_ref()
        .take(MAX_HEADER as u64 + 1)
        .read_until(b'\n', &mut line)?;
    if line.is_empty() {
        return Ok(None);
    }
    let bad = || io::Error::new(io::ErrorKind::InvalidData, "not a push frame header");
    if line.pop() != Some(b'\n') {
        return Err(bad());
    }
    let text = std::str::from_utf8(&line).map_err(|_| bad())?;
    let mut parts = text.split(' ');
    let tag = parts.next().filter(|t| !t.is_empty()).ok_or_else(bad)?;
    let len = parts.next().and_then(|l| l.parse().ok()).ok_or_else(bad)?;
    let arg = parts.next().unwrap_or_default();
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(Some(Frame {
        tag: tag.to_string(),
        len,
        arg: arg.to_string(),
    }))
}

/// A path a node changed (or would), never its content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PathChange {
    /// The path on the node.
    pub path: String,
    /// What happened to it: `create`, `modify`, `remove`, `restore`…
    pub kind: String,
    /// Whether its content is secret.
    pub sensitive: bool,
}

/// What one top-level step of a run cost (`load`, `compile`, `plan`, `commit`…), as a
/// report carries it: [`strata_types::Step`] without its sub-steps, CPU or I/O.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StepTime {
    /// The step's name.
    pub name: String,
    /// Its wall time, in microseconds.
    pub wall_us: u64,
    /// The peak resident set size of the process doing it, in bytes, at its end.
    pub max_rss: u64,
}

impl StepTime {
    /// The top-level steps of a run's metrics, in order.
    pub fn of(steps: &[strata_types::Step]) -> Vec<StepTime> {
        steps
            .iter()
            .map(|s| StepTime {
                name: s.name.clone(),
                // Saturating: a negative or NaN wall (never measured so) reads as 0.
                wall_us: (s.metrics.wall * 1e6).round().clamp(0.0, u64::MAX as f64) as u64,
                max_rss: s.metrics.max_rss,
            })
            .collect()
    }
}

/// Why a node failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorInfo {
    /// A word to sort by: `unreachable`, `auth`, `host_key`, `platform`, `refused`,
    /// `apply`, `busy`, `lost`, `commands`…
    pub kind: String,
    /// What happened, for a person.
    pub message: String,
}

impl ErrorInfo {
    /// An error of `kind`.
    pub fn new(kind: &str, message: impl Into<String>) -> ErrorInfo {
        ErrorInfo {
            kind: kind.to_string(),
            message: message.into(),
        }
    }
}

/// What a node says during a push, one JSON line each.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum NodeEvent {
    /// The manifest verified; these blobs are missing.
    Need {
        /// Their hashes.
        blobs: Vec<String>,
    },
    /// The node's age public key (made at its first push when it had none), for its
    /// node file's `[keys] age`.
    Key {
        /// `age1…`.
        age: String,
    },
    /// A step began (`sync`, `plan`, `commit`…).
    Stage {
        /// Which.
        stage: String,
    },
    /// How it ended.
    Result {
        /// `changed`, `unchanged`, `would_change`, `failed` or `busy`.
        result: String,
        /// How many paths changed (or would).
        changes: usize,
        /// Those paths.
        paths: Vec<PathChange>,
        /// The generation recorded.
        generation: Option<u64>,
        /// The plan or apply as `strata plan`/`apply` print it, without colour.
        text: String,
        /// Why it failed, or which commands failed after the commit (`commands`).
        error: Option<ErrorInfo>,
        /// What each top-level step cost (none from a node before this field existed).
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        steps: Vec<StepTime>,
    },
}

/// Writes an event as one JSON line.
pub fn write_event(w: &mut impl Write, e: &NodeEvent) -> io::Result<()> {
    let mut line = serde_json::to_vec(e).map_err(io::Error::other)?;
    line.push(b'\n');
    w.write_all(&line)?;
    w.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_garbage_is_refused() {
        let mut buf = Vec::new();
        write_frame(&mut buf, "blob", "abc", b"hello").unwrap();
        write_frame(&mut buf, "end", "", b"").unwrap();
        let mut r = io::Cursor::new(buf);
        let f = read_frame(&mut r).unwrap().unwrap();
        assert_eq!((f.tag.as_str(), f.len, f.arg.as_str()), ("blob", 5, "abc"));
        let mut body = [0u8; 5];
        io::Read::read_exact(&mut r, &mut body).unwrap();
        assert_eq!(&body, b"hello");
        assert_eq!(read_frame(&mut r).unwrap().unwrap().tag, "end");
        assert!(read_frame(&mut r).unwrap().is_none());
        for bad in [
            &b"blob\n"[..],
            b"blob x\n",
            b"a 1 b c\n",
            &[b'x'; 300][..],
            b"blob 1",
        ] {
            assert!(read_frame(&mut io::Cursor::new(bad)).is_err(), "{bad:?}");
        }
    }
}
