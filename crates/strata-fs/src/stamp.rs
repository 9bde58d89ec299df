//! Stamps: what a managed file's metadata says about its content, so that a plan reads
//! only files whose metadata changed since strata last verified them (git's index does the
//! same).
//!
//! A stamp binds a file's device, inode, size, mtime and ctime to the hash of the content
//! strata read back from it. Any write to a file, a `chmod`, `chown`, `setfattr`, rename or
//! replacement changes its ctime, which no program can set back. The one trap is a write in
//! the same clock tick as the reading (timestamps are coarse): a stamp is therefore only
//! taken when the file's ctime is strictly older than `now`, a timestamp of the same file
//! system taken *before* the file was read. Any later write then gets a ctime of at least
//! `now`, so it cannot look like the stamp. Files changed in the last tick before a commit
//! ended are simply not stamped and are read in full, as before.

use std::collections::HashMap;

use rustix::fs::Stat;
use strata_types::{Hash, TargetPath};

/// One file's stamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp {
    /// The metadata it was read with.
    pub key: StatKey,
    /// The hash of its content.
    pub hash: Hash,
}

/// The metadata that changes whenever a file's content might have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct StatKey {
    /// Device.
    pub dev: u64,
    /// Inode.
    pub ino: u64,
    /// Size in bytes.
    pub size: u64,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, u32),
    /// Inode change time (seconds, nanoseconds).
    pub ctime: (i64, u32),
}

impl StatKey {
    /// The key of a `stat` result.
    pub(crate) fn of(st: &Stat) -> StatKey {
        StatKey {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mtime: (st.st_mtime, st.st_mtime_nsec as u32),
            ctime: (st.st_ctime, st.st_ctime_nsec as u32),
        }
    }
}

/// As written in the stamps files: `dev ino size mtime ctime` (times as `s.ns`).
impl std::fmt::Display for StatKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} {} {}.{:09} {}.{:09}",
            self.dev, self.ino, self.size, self.mtime.0, self.mtime.1, self.ctime.0, self.ctime.1
        )
    }
}

impl StatKey {
    /// Reads the five fields its `Display` writes, from a line's fields.
    pub fn parse<'a>(f: &mut impl Iterator<Item = &'a str>) -> Option<StatKey> {
        let mut num = || f.next()?.parse::<u64>().ok();
        let (dev, ino, size) = (num()?, num()?, num()?);
        let mut time = || {
            let (s, ns) = f.next()?.split_once('.')?;
            Some((s.parse().ok()?, ns.parse().ok()?))
        };
        let (mtime, ctime) = (time()?, time()?);
        Some(StatKey {
            dev,
            ino,
            size,
            mtime,
            ctime,
        })
    }
}

/// The stamps of a root's managed files, by path.
pub type Stamps = HashMap<TargetPath, Stamp>;

const HEADER: &str = "strata stamps 1";

/// Writes the stamps file: a header, one line a file (`dev ino size mtime ctime hash
/// path`), and a trailer with the count, so that a torn file is recognised and ignored.
pub fn write_stamps(stamps: &Stamps, w: &mut dyn std::io::Write) -> std::io::Result<()> {
    let mut sorted: Vec<_> = stamps.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    writeln!(w, "{HEADER}")?;
    let mut n = 0;
    for (path, s) in sorted {
        if path.as_str().contains('\n') {
            continue;
        }
        writeln!(w, "{} {} {path}", s.key, s.hash)?;
        n += 1;
    }
    writeln!(w, "end {n}")
}

/// Reads a stamps file; `None` when it is not one, or torn.
pub fn parse_stamps(text: &str) -> Option<Stamps> {
    let mut lines = text.lines();
    if lines.next()? != HEADER {
        return None;
    }
    let mut out = Stamps::with_capacity(text.len() / 160);
    for line in lines {
        if let Some(n) = line.strip_prefix("end ") {
            return (n.parse::<usize>().ok()? == out.len()).then_some(out);
        }
        let mut f = line.splitn(7, ' ');
        let key = StatKey::parse(&mut f)?;
        let hash = Hash::parse(f.next()?).ok()?;
        let path = TargetPath::parse(f.next()?).ok()?;
        out.insert(path, Stamp { key, hash });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_survive_a_round_trip_and_torn_files_are_refused() {
        let mut s = Stamps::new();
        s.insert(
            TargetPath::parse("/etc/a b.conf").unwrap(),
            Stamp {
                key: StatKey {
                    dev: 2049,
                    ino: 12,
                    size: 5,
                    mtime: (1_700_000_000, 5),
                    ctime: (-1, 999_999_999),
                },
                hash: Hash::of(b"hello"),
            },
        );
        let mut text = Vec::new();
        write_stamps(&s, &mut text).unwrap();
        let text = String::from_utf8(text).unwrap();
        assert_eq!(parse_stamps(&text), Some(s));
        // Cut anywhere before the trailer: not a stamps file.
        for cut in [0, 10, text.len() / 2, text.len() - 3] {
            assert_eq!(parse_stamps(&text[..cut]), None, "cut at {cut}");
        }
    }
}
