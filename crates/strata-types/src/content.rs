//! Finding content by hash, wherever it is kept.

use std::borrow::Cow;
use std::collections::HashMap;

use crate::Hash;

/// Where content is found by hash (a catalog's rendered files, the state store, …).
pub trait ContentSource {
    /// The bytes with this hash, if known.
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>>;

    /// Runs `then`, while the contents in `order` are loaded ahead of it on another
    /// thread where the source can (reading and rendering on one core while `then` writes
    /// on the other). What is not loaded yet when asked for is loaded by the asker.
    fn ahead(&self, order: &[Hash], then: &mut dyn FnMut()) {
        let _ = order;
        then();
    }
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

    fn ahead(&self, order: &[Hash], then: &mut dyn FnMut()) {
        self.0.ahead(order, &mut || self.1.ahead(order, then));
    }
}

impl<T: ContentSource + ?Sized> ContentSource for &T {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        (**self).content(hash)
    }

    fn ahead(&self, order: &[Hash], then: &mut dyn FnMut()) {
        (**self).ahead(order, then);
    }
}

/// A source that may be missing.
impl<T: ContentSource> ContentSource for Option<T> {
    fn content(&self, hash: &Hash) -> Option<Cow<'_, [u8]>> {
        self.as_ref()?.content(hash)
    }

    fn ahead(&self, order: &[Hash], then: &mut dyn FnMut()) {
        match self {
            Some(s) => s.ahead(order, then),
            None => then(),
        }
    }
}
