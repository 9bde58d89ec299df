//! Finding content by hash, wherever it is kept.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::Hash;

/// Where content is found by hash (a catalog's rendered files, the state store, …).
pub trait ContentSource {
    /// The bytes with this hash, if known.
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>>;
}

impl ContentSource for HashMap<Hash, Vec<u8>> {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        self.get(hash).map(|v| Cow::Borrowed(v.as_slice()))
    }
}

/// Looks in each source in turn.
impl<A: ContentSource, B: ContentSource> ContentSource for (A, B) {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        self.0.content(hash).or_else(|| self.1.content(hash))
    }
}

impl<T: ContentSource + ?Sized> ContentSource for &T {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        (**self).content(hash)
    }
}

/// A source that may be missing.
impl<T: ContentSource> ContentSource for Option<T> {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        self.as_ref()?.content(hash)
    }
}
