//! A binary file of records, for the caches strata reads whole on every run (the stamps,
//! the compile cache, the pack indexes): a header line naming the format, the records,
//! then `end` and their count, so that a torn or zero-filled file is recognised. Numbers
//! are little-endian. Fixed-width fields cost a few instructions each to read, where
//! the text form they replaced cost thousands a line. Also the file metadata such
//! caches are keyed by.

use std::collections::HashMap;

use crate::Hash;

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
    /// The key of metadata the standard library read.
    pub fn of_metadata(md: &std::fs::Metadata) -> StatKey {
        use std::os::unix::fs::MetadataExt;
        StatKey {
            dev: md.dev(),
            ino: md.ino(),
            size: md.size(),
            mtime: (md.mtime(), md.mtime_nsec() as u32),
            ctime: (md.ctime(), md.ctime_nsec() as u32),
        }
    }
}

/// A file of records being written (see the module documentation).
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

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "strata test 1";

    fn file() -> Vec<u8> {
        let mut r = Records::new(HEADER, 0);
        for (n, s) in [(1u64, "a"), (2, "b c")] {
            r.u64(n);
            r.str(s);
            r.hash(&Hash::of(s.as_bytes()));
            r.end_record();
        }
        r.finish()
    }

    fn read(bytes: &[u8]) -> Option<HashMap<u64, (String, Hash)>> {
        read_map(bytes, HEADER, |r| {
            Some((r.u64()?, (r.str()?.to_string(), r.hash()?)))
        })
    }

    #[test]
    fn records_survive_a_round_trip_and_a_torn_or_miscounted_file_is_refused() {
        let bytes = file();
        let map = read(&bytes).expect("a whole file");
        assert_eq!(map[&2], ("b c".to_string(), Hash::of(b"b c")));
        for cut in [0, 5, bytes.len() / 2, bytes.len() - 1] {
            assert_eq!(read(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut miscounted = bytes.clone();
        *miscounted.last_mut().unwrap() = 3;
        assert_eq!(read(&miscounted), None);
        assert_eq!(read_map(&bytes, "strata other 1", |_| Some((0, 0))), None);
    }
}
