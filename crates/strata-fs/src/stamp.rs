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

/// The stamps of a root's managed files, by path.
pub type Stamps = HashMap<TargetPath, Stamp>;

/// A file of binary records (the stamps, the compile cache): a header line naming the
/// format, the records, then `end` and their count, so that a torn or zero-filled file is
/// recognised and ignored. Numbers are little-endian. Both files are caches that strata
/// reads whole on every run: fixed-width fields cost a few instructions each, where the
/// text form they replace cost thousands a line.
#[derive(Debug)]
pub struct Records {
    buf: Vec<u8>,
    count: u64,
}

const TRAILER: &[u8; 4] = b"\nend";

impl Records {
    /// An empty file of the format named by `header` (one line, no newline).
    pub fn new(header: &str, capacity: usize) -> Records {
        let mut buf = Vec::with_capacity(header.len() + 1 + capacity + TRAILER.len() + 8);
        buf.extend_from_slice(header.as_bytes());
        buf.push(b'\n');
        Records { buf, count: 0 }
    }

    /// Ends a record.
    pub fn end_record(&mut self) {
        self.count += 1;
    }

    /// A number.
    pub fn u64(&mut self, n: u64) {
        self.buf.extend_from_slice(&n.to_le_bytes());
    }

    /// A file's metadata.
    pub fn key(&mut self, k: &StatKey) {
        for n in [k.dev, k.ino, k.size] {
            self.u64(n);
        }
        for (s, ns) in [k.mtime, k.ctime] {
            self.buf.extend_from_slice(&s.to_le_bytes());
            self.buf.extend_from_slice(&ns.to_le_bytes());
        }
    }

    /// A hash.
    pub fn hash(&mut self, h: &Hash) {
        self.buf.extend_from_slice(h.as_bytes());
    }

    /// A string, after its length.
    pub fn str(&mut self, s: &str) {
        self.u64(s.len() as u64);
        self.buf.extend_from_slice(s.as_bytes());
    }

    /// The whole file.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(TRAILER);
        let count = self.count;
        self.u64(count);
        self.buf
    }
}

/// Reads what [`Records`] wrote, field by field; every read is `None` past the end.
#[derive(Debug)]
pub struct RecordReader<'a> {
    rest: &'a [u8],
}

impl<'a> RecordReader<'a> {
    /// The records of `bytes` and their count, when it is a whole file of the format
    /// `header` names.
    pub fn open(bytes: &'a [u8], header: &str) -> Option<(RecordReader<'a>, u64)> {
        let body = bytes.strip_prefix(header.as_bytes())?.strip_prefix(b"\n")?;
        let (body, count) = body.split_at_checked(body.len().checked_sub(8)?)?;
        let body = body.strip_suffix(TRAILER)?;
        let count = u64::from_le_bytes(count.try_into().ok()?);
        Some((RecordReader { rest: body }, count))
    }

    /// Whether every record was read.
    pub fn is_empty(&self) -> bool {
        self.rest.is_empty()
    }

    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.rest.split_first_chunk::<N>()?;
        self.rest = rest;
        Some(*head)
    }

    /// A number.
    pub fn u64(&mut self) -> Option<u64> {
        self.take().map(u64::from_le_bytes)
    }

    /// A file's metadata.
    pub fn key(&mut self) -> Option<StatKey> {
        let (dev, ino, size) = (self.u64()?, self.u64()?, self.u64()?);
        let mut time = || {
            let s = i64::from_le_bytes(self.take()?);
            Some((s, u32::from_le_bytes(self.take()?)))
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

    /// A hash.
    pub fn hash(&mut self) -> Option<Hash> {
        self.take().map(Hash::from_bytes)
    }

    /// A string.
    pub fn str(&mut self) -> Option<&'a str> {
        let len = usize::try_from(self.u64()?).ok()?;
        let (s, rest) = self.rest.split_at_checked(len)?;
        self.rest = rest;
        std::str::from_utf8(s).ok()
    }
}

/// Reads a whole file of `header`'s format, one entry per record (`one` reads a record);
/// `None` when it is not one, torn, or holds another number of records than it says.
pub fn read_map<K: std::hash::Hash + Eq, V>(
    bytes: &[u8],
    header: &str,
    mut one: impl FnMut(&mut RecordReader<'_>) -> Option<(K, V)>,
) -> Option<HashMap<K, V>> {
    let (mut r, count) = RecordReader::open(bytes, header)?;
    let mut out = HashMap::with_capacity(usize::try_from(count).ok()?.min(bytes.len() / 100));
    while !r.is_empty() {
        let (k, v) = one(&mut r)?;
        out.insert(k, v);
    }
    (out.len() as u64 == count).then_some(out)
}

const HEADER: &str = "strata stamps 2";

/// The stamps file: per file its metadata, hash and path ([`Records`]).
pub fn write_stamps(stamps: &Stamps) -> Vec<u8> {
    let mut r = Records::new(HEADER, stamps.len() * 120);
    for (path, s) in stamps {
        r.key(&s.key);
        r.hash(&s.hash);
        r.str(path.as_str());
        r.end_record();
    }
    r.finish()
}

/// Reads a stamps file; `None` when it is not one, or torn.
pub fn parse_stamps(bytes: &[u8]) -> Option<Stamps> {
    read_map(bytes, HEADER, |r| {
        let key = r.key()?;
        let hash = r.hash()?;
        let path = TargetPath::parse(r.str()?).ok()?;
        Some((path, Stamp { key, hash }))
    })
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
        let text = write_stamps(&s);
        assert_eq!(parse_stamps(&text), Some(s));
        // Cut anywhere before the trailer: not a stamps file.
        for cut in [0, 10, text.len() / 2, text.len() - 3] {
            assert_eq!(parse_stamps(&text[..cut]), None, "cut at {cut}");
        }
        // Zeros where the records were (a file torn by a crash) or a count that does not
        // match: not one either.
        let mut zeroed = text.clone();
        zeroed[HEADER.len() + 1..text.len() - 12].fill(0);
        assert_eq!(parse_stamps(&zeroed), None);
        let mut miscounted = text;
        *miscounted.last_mut().unwrap() = 1;
        assert_eq!(parse_stamps(&miscounted), None);
        // The text form of earlier versions is simply not trusted.
        assert_eq!(parse_stamps(b"strata stamps 1\nend 0\n"), None);
    }
}
