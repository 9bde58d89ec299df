//! The stamps file (`<root>/var/lib/strata/stamps`): per managed file its metadata, hash
//! and path, in the record format of [`strata_types::Records`]. A cache: torn or
//! missing, it is ignored and the files are read.

use strata_fs::{Stamp, Stamps};
use strata_types::{Records, TargetPath, read_map};

const HEADER: &str = "strata stamps 2";

/// The stamps file: per file its metadata, hash and path ([`Records`]).
pub(crate) fn write_stamps(stamps: &Stamps) -> Vec<u8> {
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
    use strata_types::{Hash, StatKey};

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
