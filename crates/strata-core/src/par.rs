//! Spreading independent work over the machine's cores, keeping its order.

use std::sync::OnceLock;

/// Below this many items the work is done on the calling thread.
const MIN_ITEMS: usize = 64;

pub(crate) fn threads() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get().min(8)))
}

/// `items.iter().map(f).collect()`, with contiguous slices of `items` on scoped threads
/// (one per core). A panic in `f` is propagated.
pub(crate) fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let n = threads();
    if n < 2 || items.len() < MIN_ITEMS {
        return items.iter().map(f).collect();
    }
    let mut chunks = items.chunks(items.len().div_ceil(n));
    let first = chunks.next().unwrap_or_default();
    std::thread::scope(|s| {
        let f = &f;
        let others: Vec<_> = chunks
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = first.iter().map(f).collect();
        for h in others {
            out.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
        }
        out
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn order_is_kept() {
        let items: Vec<u32> = (0..1000).collect();
        let out = super::map(&items, |i| i * 2);
        assert_eq!(out, (0..1000).map(|i| i * 2).collect::<Vec<_>>());
        assert_eq!(super::map(&items[..3], |i| i + 1), vec![1, 2, 3]);
    }
}
