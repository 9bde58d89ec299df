//! A pack's index (`store/packs/<name>.idx`): where each object of `<name>.pack` lies, one
//! record of hash, offset and length per object, in the record format of strata's other
//! files ([`strata_types::Records`]: a header, the records, their count), so that a torn
//! index is told from a whole one. Indexes written before it (bare 48-byte records, no
//! header) are still read.

use strata_types::{Hash, RecordReader, Records};

/// The first line of an index.
const HEADER: &str = "strata pack index 1";

/// The size of a record in an index without a header.
const BARE: usize = 32 + 8 + 8;

/// One object of a pack: its hash, and where its bytes lie in the pack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PackRecord {
    /// The object's hash.
    pub hash: Hash,
    /// Where its bytes start in the pack.
    pub offset: u64,
    /// How many bytes it has.
    pub len: u64,
}

/// An index being written: objects are added in the order of their bytes in the pack.
#[derive(Debug)]
pub(crate) struct IndexWriter {
    records: Records,
    offset: u64,
}

impl IndexWriter {
    /// An index of about `count` objects.
    pub fn new(count: usize) -> IndexWriter {
        IndexWriter {
            records: Records::new(HEADER, count * BARE),
            offset: 0,
        }
    }

    /// Adds the next object of the pack: `len` bytes with this hash.
    pub fn push(&mut self, hash: &Hash, len: u64) {
        self.records.hash(hash);
        self.records.u64(self.offset);
        self.records.u64(len);
        self.records.end_record();
        self.offset += len;
    }

    /// The index file.
    pub fn finish(self) -> Vec<u8> {
        self.records.finish()
    }
}

/// The records of an index file; `None` when it is torn or not an index. An empty file
/// (or none) has no records.
pub(crate) fn parse_index(bytes: &[u8]) -> Option<Vec<PackRecord>> {
    if let Some((mut r, count)) = RecordReader::open(bytes, HEADER) {
        let mut out = Vec::with_capacity(usize::try_from(count).ok()?.min(bytes.len() / BARE));
        while !r.is_empty() {
            let (hash, offset, len) = (r.hash()?, r.u64()?, r.u64()?);
            out.push(PackRecord { hash, offset, len });
        }
        return (out.len() as u64 == count).then_some(out);
    }
    if bytes.starts_with(HEADER.as_bytes()) || !bytes.len().is_multiple_of(BARE) {
        return None;
    }
    let bare = bytes.chunks_exact(BARE).map(|rec| {
        let (hash, rest) = rec.split_first_chunk::<32>().expect("32 bytes");
        let (offset, len) = rest.split_at(8);
        PackRecord {
            hash: Hash::from_bytes(*hash),
            offset: u64::from_le_bytes(offset.try_into().expect("8 bytes")),
            len: u64::from_le_bytes(len.try_into().expect("8 bytes")),
        }
    });
    Some(bare.collect())
}

/// The size of the index of `count` objects, for tests that measure a store.
#[cfg(test)]
pub(crate) fn index_size(count: usize) -> u64 {
    (HEADER.len() + 1 + count * BARE + 4 + 8) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records() -> Vec<PackRecord> {
        let mut offset = 0;
        (0..3u64)
            .map(|i| {
                let r = PackRecord {
                    hash: Hash::of(&i.to_le_bytes()),
                    offset,
                    len: 10 + i,
                };
                offset += r.len;
                r
            })
            .collect()
    }

    #[test]
    fn an_index_survives_a_round_trip_and_a_torn_one_is_refused() {
        let mut w = IndexWriter::new(3);
        for r in records() {
            w.push(&r.hash, r.len);
        }
        let bytes = w.finish();
        assert_eq!(bytes.len() as u64, index_size(3));
        assert_eq!(parse_index(&bytes), Some(records()));
        for cut in [5, HEADER.len() + 1 + BARE, bytes.len() - 1] {
            assert_eq!(parse_index(&bytes[..cut]), None, "cut at {cut}");
        }
        let mut zeroed = bytes;
        zeroed[HEADER.len() + 1..].fill(0);
        assert_eq!(parse_index(&zeroed), None);
        assert_eq!(parse_index(b""), Some(Vec::new()));
    }

    /// Stores written before the record format keep their packs readable.
    #[test]
    fn an_index_of_bare_records_is_still_read() {
        let mut bare = Vec::new();
        for r in records() {
            bare.extend(r.hash.as_bytes());
            bare.extend(r.offset.to_le_bytes());
            bare.extend(r.len.to_le_bytes());
        }
        assert_eq!(parse_index(&bare), Some(records()));
        assert_eq!(parse_index(&bare[..bare.len() - 1]), None);
    }
}
