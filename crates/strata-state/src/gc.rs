//! Pruning: old generations go, with every store object only they use (`strata gc`, and
//! the retention each apply runs, `[state] keep_generations`).
//!
//! What a kept generation needs is named in its own file: a rollback to it writes its
//! entries' contents and takes back what the current generation manages with the current
//! generation's originals, and every generation records the original of each path it
//! manages (carried over from the generation before, however old the one that first
//! changed it). So an object goes only when no generation from the oldest kept one on
//! names it, in its entries or in its originals, and no journal does. Which generation
//! last named each object is cached in `refs`, so that a gc reads only the generations
//! recorded since the last one, not every generation kept.
//!
//! Stopped anywhere (`kill -9`), a gc leaves garbage, never a missing object: the
//! generations to prune are first recorded in `pruned` (written atomically and flushed),
//! and from then on count as gone even while their files are still there; the files go
//! next, then the objects. A pack is rewritten only once the new one is durable, under
//! its final name, and the old one's index goes before the old pack.

use std::collections::{BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use strata_fs::{RecordReader, Records};
use strata_types::{Hash, TargetPath};

use crate::commit::Journal;
use crate::pack::PackRecord;
use crate::state::state_path;
use crate::store::StoreFile;
use crate::{State, StateError, StoreSize, crashpoint};

/// How many generations a root keeps when the site does not say (docs/state.md says why).
pub const DEFAULT_KEEP: u64 = 50;

/// When a gc looks for objects no kept generation needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sweep {
    /// Every time (`strata gc`): what an interrupted commit or gc left goes too.
    Always,
    /// Only when it prunes a generation (the retention after each apply, which then costs
    /// one directory listing when there is nothing to prune).
    AfterPruning,
}

/// What a gc did.
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    /// How many generations it keeps at most.
    pub keep: u64,
    /// The generations kept, ascending.
    pub kept: Vec<u64>,
    /// The generations pruned now (with those an interrupted gc had recorded), ascending.
    pub pruned: Vec<u64>,
    /// What left the store, when it was swept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub removed: Option<StoreSize>,
    /// The store afterwards, when it was swept.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub store: Option<StoreSize>,
    /// Packs rewritten with only the objects still needed.
    pub packs_rewritten: u64,
    /// Packs removed whole.
    pub packs_removed: u64,
}

/// `var/lib/strata/pruned`: every generation pruned so far, as inclusive ranges.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct PrunedRecord {
    generations: Vec<[u64; 2]>,
}

impl PrunedRecord {
    /// Whether generation `n` was pruned.
    pub fn contains(&self, n: u64) -> bool {
        self.generations.iter().any(|[a, b]| (*a..=*b).contains(&n))
    }

    /// The newest generation pruned.
    pub fn last(&self) -> Option<u64> {
        self.generations.iter().map(|r| r[1]).max()
    }

    /// The ranges, ascending.
    pub fn ranges(&self) -> Vec<[u64; 2]> {
        self.generations.clone()
    }

    /// Adds generations, merging ranges that touch (an agent pruning one generation per
    /// apply keeps one range, not one line per generation).
    fn add(&mut self, numbers: &[u64]) {
        let mut all: Vec<[u64; 2]> = (self.generations.iter().copied())
            .chain(numbers.iter().map(|n| [*n, *n]))
            .collect();
        all.sort_unstable();
        let mut merged: Vec<[u64; 2]> = Vec::with_capacity(all.len());
        for [a, b] in all {
            match merged.last_mut() {
                Some(last) if a <= last[1].saturating_add(1) => last[1] = last[1].max(b),
                _ => merged.push([a, b]),
            }
        }
        self.generations = merged;
    }
}

/// The generations to keep: the current one, then the newest others not pruned yet, up
/// to `keep` in all.
fn to_keep(listed: &[u64], record: &PrunedRecord, current: Option<u64>, keep: u64) -> Vec<u64> {
    let mut kept: BTreeSet<u64> = current.into_iter().collect();
    for n in listed.iter().rev().filter(|n| !record.contains(**n)) {
        if kept.len() as u64 >= keep {
            break;
        }
        kept.insert(*n);
    }
    kept.into_iter().collect()
}

impl State<'_> {
    /// The generations pruned so far.
    pub(crate) fn pruned(&self) -> Result<PrunedRecord, StateError> {
        let path = state_path("pruned");
        let Some(bytes) = self.root.read(&path)? else {
            return Ok(PrunedRecord::default());
        };
        serde_json::from_slice(&bytes).map_err(|e| StateError::Corrupt {
            path: self.root.host_path(&path).display().to_string(),
            message: e.to_string(),
        })
    }

    /// Keeps the current generation and the newest others, `keep` in all (at least 1),
    /// prunes the rest, then removes every store object no kept generation names (per
    /// `sweep`). Needs the root's lock ([`State::open_for_commit`]). Everything a kept
    /// generation needs is read before anything is removed, so an error there changes
    /// nothing; stopped later, the next gc finishes the work.
    pub fn gc(&self, keep: u64, sweep: Sweep) -> Result<Pruned, StateError> {
        assert!(self.lock.is_some(), "gc needs the root's lock");
        let keep = keep.max(1);
        let mut record = self.pruned()?;
        let listed = self.listed_numbers()?;
        let kept = to_keep(&listed, &record, self.current_number()?, keep);
        let pruned: Vec<u64> = (listed.iter().copied())
            .filter(|n| kept.binary_search(n).is_err())
            .collect();
        let mut out = Pruned {
            keep,
            kept,
            pruned,
            removed: None,
            store: None,
            packs_rewritten: 0,
            packs_removed: 0,
        };
        if out.pruned.is_empty() && sweep == Sweep::AfterPruning {
            return Ok(out);
        }
        let live = self.live(&out.kept, &listed)?;
        let before = self.store().size()?;
        let newly: Vec<u64> = (out.pruned.iter().copied())
            .filter(|n| !record.contains(*n))
            .collect();
        if !newly.is_empty() {
            record.add(&newly);
            self.root.write_atomic_with(&state_path("pruned"), |w| {
                serde_json::to_writer(w, &record).map_err(std::io::Error::other)
            })?;
        }
        crashpoint!("gc-after-record");
        self.remove_generations(&out.pruned)?;
        (out.packs_rewritten, out.packs_removed) = self.sweep(&live)?;
        let after = self.store().size()?;
        out.removed = Some(StoreSize {
            objects: before.objects.saturating_sub(after.objects),
            bytes: before.bytes.saturating_sub(after.bytes),
        });
        out.store = Some(after);
        Ok(out)
    }

    /// Every object a generation from the oldest kept one on names (its entries and its
    /// originals), and those of a journal, were one there. Which generation last named
    /// each object is kept in `refs` (see [`LastUse`]): only the generations recorded
    /// since the last gc are read, not all those kept.
    fn live(&self, kept: &[u64], listed: &[u64]) -> Result<Live, StateError> {
        let Some(&oldest) = kept.first() else {
            return Ok(Live::default());
        };
        let newest = listed.last().copied().unwrap_or(oldest);
        let mut uses = (self.last_use())
            .filter(|u| u.from <= oldest && u.to <= newest)
            .unwrap_or_default();
        for &n in listed.iter().filter(|n| **n > uses.to && **n >= oldest) {
            let path = state_path(&format!("generations/{n}.json"));
            let bytes = self.root.read(&path)?.ok_or(StateError::NoGeneration(n))?;
            named_hashes(&bytes, &mut |h| {
                let last = uses.last.entry(h).or_insert(n);
                *last = (*last).max(n);
            })
            .map_err(|message| StateError::Corrupt {
                path: self.root.host_path(&path).display().to_string(),
                message,
            })?;
        }
        uses.last.retain(|_, n| *n >= oldest);
        (uses.from, uses.to) = (oldest, newest);
        // A cache: a failure to save it costs the next gc a full read.
        let _ = self.save_last_use(&uses);
        let mut live = Live {
            objects: uses.last,
            packs: HashSet::new(),
        };
        if let Some(journal) = Journal::read(self.root)? {
            live.objects.extend(journal.hashes().map(|h| (h, u64::MAX)));
            live.packs.extend(journal.pack().map(str::to_string));
        }
        Ok(live)
    }

    /// The cache of which generation last named each object; none when it is missing,
    /// torn or foreign.
    fn last_use(&self) -> Option<LastUse> {
        let bytes = self.root.read(&state_path("refs")).ok()??;
        let (mut r, count) = RecordReader::open(&bytes, REFS_HEADER)?;
        let (from, to) = (r.u64()?, r.u64()?);
        let mut last = HashMap::with_capacity(usize::try_from(count).ok()?.min(bytes.len() / 40));
        while !r.is_empty() {
            last.insert(r.hash()?, r.u64()?);
        }
        (last.len() as u64 == count).then_some(LastUse { from, to, last })
    }

    /// Saves the cache, whole but not flushed: one a crash tears is refused and rebuilt,
    /// and an older one is still right for the generations it names.
    fn save_last_use(&self, uses: &LastUse) -> Result<(), StateError> {
        let mut r = Records::new(REFS_HEADER, 16 + uses.last.len() * 40);
        r.u64(uses.from);
        r.u64(uses.to);
        for (hash, n) in &uses.last {
            r.hash(hash);
            r.u64(*n);
            r.end_record();
        }
        let bytes = r.finish();
        self.root
            .replace_with(&state_path("refs"), 0o600, |w| w.write_all(&bytes))?;
        Ok(())
    }

    /// Removes the files of pruned generations and their reports. Not flushed: they are
    /// recorded as pruned already, so one that a power loss brings back counts as gone
    /// and goes at the next gc.
    fn remove_generations(&self, numbers: &[u64]) -> Result<(), StateError> {
        for (i, n) in numbers.iter().enumerate() {
            if i == numbers.len() / 2 {
                crashpoint!("gc-mid-generations");
            }
            self.root
                .remove(&state_path(&format!("generations/{n}.json")))?;
            self.root
                .remove(&state_path(&format!("reports/{n}.json")))?;
        }
        Ok(())
    }

    /// Removes loose objects nobody needs and leftovers of interrupted writes, then
    /// goes through the packs: one with no needed object goes, one less than half of
    /// whose bytes are needed is rewritten with those only, the others stay whole.
    /// Returns how many packs were rewritten and removed.
    fn sweep(&self, live: &Live) -> Result<(u64, u64), StateError> {
        let store = self.store();
        let files = store.files()?;
        let dead: Vec<&TargetPath> = (files.iter())
            .filter(|(f, ..)| match f {
                StoreFile::Loose(h) => !live.objects.contains_key(h),
                StoreFile::Other => live.packs.is_empty(),
                StoreFile::Index(_) | StoreFile::Pack(_) => false,
            })
            .map(|(_, path, _)| path)
            .collect();
        let mut emptied = BTreeSet::new();
        for (i, path) in dead.iter().enumerate() {
            if i == dead.len() / 2 {
                crashpoint!("gc-mid-sweep");
            }
            self.root.remove(path)?;
            emptied.extend(path.parent());
        }
        for dir in emptied {
            // Fails while the directory holds anything: then it stays.
            let _ = self.root.remove_dir(&dir);
        }
        // An object needed and already kept elsewhere counts as unneeded in a pack (an
        // interrupted rewrite leaves it in two).
        let mut have: HashSet<Hash> = (files.iter())
            .filter_map(|(f, ..)| match f {
                StoreFile::Loose(h) if live.objects.contains_key(h) => Some(*h),
                _ => None,
            })
            .collect();
        let sizes: HashMap<&str, u64> = (files.iter())
            .filter_map(|(f, _, size)| match f {
                StoreFile::Pack(stem) => Some((stem.as_str(), *size)),
                _ => None,
            })
            .collect();
        let (mut rewritten, mut removed) = (0, 0);
        for stem in store.pack_names()? {
            if live.packs.contains(&stem) {
                continue;
            }
            let needed: Vec<PackRecord> = (store.read_index(&stem)?.into_iter())
                .filter(|r| live.objects.contains_key(&r.hash) && have.insert(r.hash))
                .collect();
            let needed_bytes: u64 = needed.iter().map(|r| r.len).sum();
            if needed.is_empty() {
                self.remove_pack(&stem)?;
                removed += 1;
            } else if needed_bytes * 2 < sizes.get(stem.as_str()).copied().unwrap_or(0) {
                let new = store.rewritten_name(&stem)?;
                store.repack(&stem, &needed, &new)?;
                crashpoint!("gc-repack-written");
                self.remove_pack(&stem)?;
                rewritten += 1;
            }
        }
        // A pack whose index an interrupted gc removed.
        let indexed: HashSet<&str> = (files.iter())
            .filter_map(|(f, ..)| match f {
                StoreFile::Index(stem) => Some(stem.as_str()),
                _ => None,
            })
            .collect();
        for (f, path, _) in &files {
            if let StoreFile::Pack(stem) = f
                && !indexed.contains(stem.as_str())
                && !live.packs.contains(stem)
            {
                self.root.remove(path)?;
            }
        }
        Ok((rewritten, removed))
    }

    /// Removes a pack: its index first, so that a pack left alone is known unused.
    fn remove_pack(&self, stem: &str) -> Result<(), StateError> {
        let dir = state_path("store/packs");
        self.root
            .remove(&dir.join(&format!("{stem}.idx")).expect("a plain name"))?;
        crashpoint!("gc-pack-index-removed");
        self.root
            .remove(&dir.join(&format!("{stem}.pack")).expect("a plain name"))?;
        Ok(())
    }
}

/// Adds every content a generation file names: each `"hash"` whose value is a hash,
/// which is how a file's snapshot records its content, in the entries and in the
/// originals. The JSON is walked (and so checked whole: a torn file is refused) without
/// building the generation: about 3.5 ms for a generation of 10,000 files where parsing
/// it takes 11, and a root keeps 50 of them. A key of that name elsewhere could only keep
/// an object longer.
fn named_hashes(bytes: &[u8], found: &mut dyn FnMut(Hash)) -> Result<(), String> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let collect = Collect {
        found,
        named: false,
    };
    serde::de::DeserializeSeed::deserialize(collect, &mut de).map_err(|e| e.to_string())?;
    de.end().map_err(|e| e.to_string())
}

/// Walks any JSON value, giving `found` each string under a `"hash"` key that is one.
struct Collect<'a> {
    found: &'a mut dyn FnMut(Hash),
    /// Whether this value is under a `"hash"` key.
    named: bool,
}

impl<'de> serde::de::DeserializeSeed<'de> for Collect<'_> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for Collect<'_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }

    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }

    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }

    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }

    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }

    fn visit_str<E>(self, v: &str) -> Result<(), E> {
        if self.named
            && let Ok(hash) = Hash::parse(v)
        {
            (self.found)(hash);
        }
        Ok(())
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        let found = self.found;
        while seq
            .next_element_seed(Collect {
                found: &mut *found,
                named: false,
            })?
            .is_some()
        {}
        Ok(())
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let found = self.found;
        while let Some(named) = map.next_key_seed(IsHashKey)? {
            map.next_value_seed(Collect {
                found: &mut *found,
                named,
            })?;
        }
        Ok(())
    }
}

/// Reads a key of a JSON object: whether it is `"hash"`.
struct IsHashKey;

impl<'de> serde::de::DeserializeSeed<'de> for IsHashKey {
    type Value = bool;

    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<bool, D::Error> {
        d.deserialize_str(self)
    }
}

impl serde::de::Visitor<'_> for IsHashKey {
    type Value = bool;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a key")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == "hash")
    }
}

const REFS_HEADER: &str = "strata refs 1";

/// `var/lib/strata/refs`, a cache: for each object, the newest generation that names it,
/// over the generations `from..=to`. Generation files never change once recorded, and
/// numbers are never given twice, so what it says of those generations stays true: an
/// object is needed when a generation from the oldest kept one on names it. Missing,
/// torn, or not covering the oldest kept generation, it is rebuilt from the files.
#[derive(Debug, Default)]
struct LastUse {
    from: u64,
    to: u64,
    last: HashMap<Hash, u64>,
}

/// What must stay in the store.
#[derive(Debug, Default)]
struct Live {
    /// Objects a kept generation or a journal names (with the newest generation naming
    /// each).
    objects: HashMap<Hash, u64>,
    /// The pack an interrupted commit's journal names (left whole, with any file an
    /// interrupted write left).
    packs: HashSet<String>,
}

#[cfg(test)]
mod tests {
    use strata_types::{Entry, Generation, GenerationKind, Snapshot};

    use super::*;

    fn generation() -> Generation {
        let file = |content: &str| Snapshot::File {
            hash: Hash::of(content.as_bytes()),
            size: content.len() as u64,
            mode: 0o644,
            uid: 0,
            gid: 0,
            xattrs: Default::default(),
        };
        let entry = |path: &str, state: Snapshot| Entry {
            path: TargetPath::parse(path).unwrap(),
            state,
            replace: true,
            implicit: false,
            sensitive: false,
            observed: false,
            module: Some("m".into()),
            // A path that looks like a key names no content.
            source: Some(format!("files/\"hash\": \"{}\"", Hash::of(b"no"))),
        };
        let link = Snapshot::Link {
            target: "x".into(),
            uid: 0,
            gid: 0,
        };
        Generation {
            number: 3,
            time: "2026-01-01T00:00:00Z".into(),
            kind: GenerationKind::Apply,
            replayed: None,
            node: "n".into(),
            environment: "production".into(),
            site: None,
            revision: None,
            dirty: false,
            entries: vec![
                entry("/etc/a", file("a")),
                entry("/etc/b", file("b")),
                entry("/etc/l", link),
            ],
            originals: [("/etc/a", file("original a")), ("/etc/b", Snapshot::Absent)]
                .into_iter()
                .map(|(p, s)| (TargetPath::parse(p).unwrap(), s))
                .collect(),
            modules: Default::default(),
            commands: Vec::new(),
            keep_generations: None,
            secrets: Default::default(),
            report: Default::default(),
        }
    }

    #[test]
    fn a_generation_file_names_exactly_the_contents_of_its_entries_and_originals() {
        let g = generation();
        let want: HashSet<Hash> = (g.entries.iter().filter_map(|e| e.state.hash()))
            .chain(g.originals.values().filter_map(Snapshot::hash))
            .collect();
        assert_eq!(want.len(), 3);
        for text in [
            serde_json::to_vec(&g).unwrap(),
            serde_json::to_vec_pretty(&g).unwrap(),
        ] {
            let mut found = HashSet::new();
            named_hashes(&text, &mut |h| {
                found.insert(h);
            })
            .unwrap();
            assert_eq!(found, want);
            let torn = &text[..text.len() - 2];
            assert!(named_hashes(torn, &mut |_| ()).is_err());
        }
    }

    #[test]
    fn pruned_generations_merge_into_ranges() {
        let mut r = PrunedRecord::default();
        r.add(&[1, 2, 3]);
        r.add(&[5]);
        assert_eq!(r.ranges(), [[1, 3], [5, 5]]);
        r.add(&[4, 7]);
        assert_eq!(r.ranges(), [[1, 5], [7, 7]]);
        assert!(r.contains(5) && !r.contains(6) && r.contains(7));
        assert_eq!(r.last(), Some(7));
    }

    #[test]
    fn the_current_generation_is_kept_with_the_newest_others() {
        let none = PrunedRecord::default();
        assert_eq!(to_keep(&[1, 2, 3, 4, 5], &none, Some(5), 2), [4, 5]);
        // A current generation that is not the newest (it never is, but if it were).
        assert_eq!(to_keep(&[1, 2, 3, 4, 5], &none, Some(2), 2), [2, 5]);
        assert_eq!(to_keep(&[1, 2, 3], &none, Some(3), 10), [1, 2, 3]);
        let mut gone = PrunedRecord::default();
        gone.add(&[3]);
        assert_eq!(to_keep(&[1, 2, 3, 4], &gone, Some(4), 3), [1, 2, 4]);
    }
}
