//! Loading a commit's contents ahead of it: while one core writes, another reads (and
//! renders) what the commit writes next, in the order it writes them.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};

use strata_types::{ContentSource, Hash};

/// Where a commit finds the contents it writes, and which of them are worth loading
/// ahead of it on another core.
#[derive(Clone, Copy)]
pub struct Prefetching<'a> {
    source: &'a dyn ContentSource,
    keeper: Option<&'a (dyn ContentSource + Sync)>,
}

impl std::fmt::Debug for Prefetching<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Prefetching")
            .field("ahead", &self.keeper.is_some())
            .finish_non_exhaustive()
    }
}

impl<'a> Prefetching<'a> {
    /// Contents found in `source`, none loaded ahead.
    pub fn plain(source: &'a dyn ContentSource) -> Prefetching<'a> {
        Prefetching {
            source,
            keeper: None,
        }
    }

    /// Contents found in `source`, where those `keeper` holds are loaded ahead, in the
    /// order the commit writes them. `keeper` must keep what it loads once asked (the
    /// catalog keeps each site file it reads and renders), or loading it ahead would
    /// load it twice; `source` looks in it too.
    pub fn new(
        source: &'a dyn ContentSource,
        keeper: &'a (dyn ContentSource + Sync),
    ) -> Prefetching<'a> {
        Prefetching {
            source,
            keeper: Some(keeper),
        }
    }

    /// Runs `then` while the contents in `order` are loaded ahead of it on another
    /// thread, when there is a keeper and a second core to load them on. What is not
    /// loaded yet when asked for is loaded by the asker.
    pub(crate) fn ahead<R>(&self, order: &[Hash], then: impl FnOnce() -> R) -> R {
        self.ahead_if(cores() > 1, order, then)
    }

    /// [`Prefetching::ahead`], on another thread only if `threads` says so.
    fn ahead_if<R>(&self, threads: bool, order: &[Hash], then: impl FnOnce() -> R) -> R {
        let Some(keeper) = self.keeper.filter(|_| threads && !order.is_empty()) else {
            return then();
        };
        let done = AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for hash in order {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    drop(keeper.content(hash));
                }
            });
            // Set when `then` ends, a panic included: the loader stops at its next hash.
            let _stop = Stop(&done);
            then()
        })
    }
}

impl ContentSource for Prefetching<'_> {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        self.source.content(hash)
    }
}

/// Sets its flag when dropped.
struct Stop<'f>(&'f AtomicBool);

impl Drop for Stop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// How many threads run at once here.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::sync::OnceLock;
    use std::sync::atomic::AtomicUsize;
    use std::time::{Duration, Instant};

    use super::*;

    /// A source that loads each content once, when first asked, and counts the loads.
    #[derive(Default)]
    struct Keeper {
        contents: HashMap<Hash, (Vec<u8>, OnceLock<Vec<u8>>)>,
        loads: AtomicUsize,
    }

    impl Keeper {
        fn of(texts: &[&str]) -> (Keeper, Vec<Hash>) {
            let mut k = Keeper::default();
            let hashes = texts
                .iter()
                .map(|t| {
                    let hash = Hash::of(t.as_bytes());
                    k.contents
                        .insert(hash, (t.as_bytes().to_vec(), OnceLock::new()));
                    hash
                })
                .collect();
            (k, hashes)
        }

        fn loaded(&self) -> usize {
            self.contents
                .values()
                .filter(|(_, l)| l.get().is_some())
                .count()
        }
    }

    impl ContentSource for Keeper {
        fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
            let (bytes, loaded) = self.contents.get(hash)?;
            let bytes = loaded.get_or_init(|| {
                self.loads.fetch_add(1, Ordering::Relaxed);
                bytes.clone()
            });
            Some(Cow::Borrowed(bytes))
        }
    }

    /// (On one core too: the loading thread runs while this one yields.)
    #[test]
    fn contents_in_order_are_loaded_while_the_commit_works() {
        let (keeper, hashes) = Keeper::of(&["a", "b", "c"]);
        let missing = Hash::of(b"nobody has it");
        let mut order = hashes.clone();
        order.insert(1, missing);
        let source = Prefetching::new(&keeper, &keeper);
        let got = source.ahead_if(true, &order, || {
            // Nobody asks for them here: the other thread loads all three.
            let deadline = Instant::now() + Duration::from_secs(10);
            while keeper.loaded() < 3 {
                assert!(Instant::now() < deadline, "not loaded ahead");
                std::thread::yield_now();
            }
            hashes
                .iter()
                .filter(|h| source.content(h).is_some())
                .count()
        });
        assert_eq!(got, 3);
        assert_eq!(keeper.loads.load(Ordering::Relaxed), 3, "each loaded once");
        assert!(source.content(&missing).is_none());
    }

    #[test]
    fn a_plain_source_loads_nothing_ahead_and_what_is_asked_for_is_found() {
        let (keeper, hashes) = Keeper::of(&["a", "b"]);
        let source = Prefetching::plain(&keeper);
        let seen = source.ahead_if(true, &hashes, || keeper.loaded());
        assert_eq!(seen, 0);
        assert_eq!(source.content(&hashes[1]).as_deref(), Some(&b"b"[..]));
        assert_eq!(keeper.loaded(), 1);
    }
}
