//! A built-in reducer's total per key: the table that a chain's map-side
//! combine (`sum_by_key()` and the like: every pair of a block, answer by
//! answer through
//! [`Builtin::add_pairs`](super::super::shuffle::Builtin::add_pairs)), the
//! merges of its early outputs (through
//! [`Builtin::combine`](super::super::shuffle::Builtin::combine)) and the
//! slides of a window with a built-in reducer go through.
//!
//! The [`Grouper`](super::Grouper)'s layout, for a number per key instead of
//! a list of values: an [`Index`] of the keys by 32 bits of their hash, a
//! key's first 16 bytes compared as one number (no `memcmp` call for a key
//! of up to 16 bytes), one cache line per key, and lookups asked for ahead
//! once the keys outgrow the cache. Keys come out in order of first
//! appearance.

use super::index::{Index, prefetch};
use super::{AHEAD, AHEAD_FROM, Keep, key_hash, next_number, same_key, short_of};
use crate::data::Number;
use crate::exec::shuffle::ShuffleError;

/// A key and its total: one cache line.
#[repr(align(64))]
struct Total<'a> {
    /// The key's first 16 bytes, zero-padded ([`short_of`]).
    short: u128,
    key: &'a [u8],
    total: Number,
}

const _: () = assert!(std::mem::size_of::<Total<'_>>() == 64);

/// The totals of the keys of some pairs.
pub(in crate::exec) struct Totals<'a> {
    hasher: foldhash::fast::FixedState,
    /// Numbers of `totals`, by key hash.
    index: Index,
    totals: Vec<Total<'a>>,
    /// [`AHEAD_FROM`], or another threshold in tests.
    ahead_from: usize,
    /// Bits of each key hash kept: all but in tests, which make keys
    /// collide.
    #[cfg(test)]
    hash_mask: u32,
}

impl<'a> Totals<'a> {
    /// No keys, with room for `keys` of them.
    pub fn with_capacity(keys: usize) -> Self {
        let mut index = Index::default();
        index.reserve(keys);
        Self {
            hasher: foldhash::fast::FixedState::with_seed(0x5111_ce02),
            index,
            totals: Vec::with_capacity(keys),
            ahead_from: AHEAD_FROM,
            #[cfg(test)]
            hash_mask: u32::MAX,
        }
    }

    /// The number of keys.
    pub fn len(&self) -> usize {
        self.totals.len()
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.totals.is_empty()
    }

    /// Room for `keys` more keys without growing.
    pub fn reserve(&mut self, keys: usize) {
        self.index.reserve(keys);
        self.totals.reserve(keys);
    }

    /// Adds each record's value to its key's total with `merge` (the first
    /// value of a key is its total), in order. The keys lie in `buffer`;
    /// a new key is kept by `keep`. Once the keys outgrow the cache, reads
    /// [`AHEAD`] records at a time, asking for their index slots, then for
    /// the keys in those slots, before the first lookup.
    pub fn add_all<'b>(
        &mut self,
        buffer: &[u8],
        records: impl Iterator<Item = Result<(&'b [u8], Number), ShuffleError>>,
        keep: impl Keep<'b, 'a>,
        merge: impl Fn(Number, Number) -> Number,
    ) -> Result<(), ShuffleError> {
        let mut records = records.peekable();
        let mut ahead: Vec<(&'b [u8], u128, u32, Number)> = Vec::with_capacity(AHEAD);
        while records.peek().is_some() {
            let asked = self.totals.len() >= self.ahead_from;
            for record in records.by_ref().take(AHEAD) {
                let (key, value) = record?;
                let short = short_of(key, buffer);
                let hash = key_hash(&self.hasher, key, short);
                #[cfg(test)]
                let hash = hash & self.hash_mask;
                if asked {
                    self.index.prefetch(hash);
                }
                ahead.push((key, short, hash, value));
            }
            if asked {
                for &(_, _, hash, _) in &ahead {
                    if let Some(at) = self.index.at_home(hash) {
                        prefetch(&self.totals[at as usize]);
                    }
                }
            }
            for (key, short, hash, value) in ahead.drain(..) {
                self.add(key, short, hash, value, keep, &merge)?;
            }
        }
        Ok(())
    }

    /// Adds `value` to the total of `key` (its first 16 bytes `short`, its
    /// hash `hash`), keeping `key` by `keep` if it is new.
    #[inline]
    fn add<'b>(
        &mut self,
        key: &'b [u8],
        short: u128,
        hash: u32,
        value: Number,
        keep: impl Keep<'b, 'a>,
        merge: impl Fn(Number, Number) -> Number,
    ) -> Result<(), ShuffleError> {
        let totals = &self.totals;
        let eq = |at: u32| {
            let total = &totals[at as usize];
            same_key((total.short, total.key), (short, key))
        };
        let next = next_number(totals.len())?;
        match self.index.find_or_insert(hash, eq, next) {
            Some(at) => {
                let total = &mut self.totals[at as usize];
                total.total = merge(total.total, value);
            }
            None => self.totals.push(Total {
                short,
                key: keep.keep(key),
                total: value,
            }),
        }
        Ok(())
    }

    /// Each key with its total, in order of first appearance.
    pub fn iter(&self) -> impl Iterator<Item = (&'a [u8], Number)> + '_ {
        self.totals.iter().map(|total| (total.key, total.total))
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use bumpalo::Bump;
    use proptest::prelude::*;

    use super::super::InPlace;
    use super::*;

    /// The keys of `items` back to back.
    fn keys_of(items: &[(String, i128)]) -> Vec<u8> {
        items.iter().flat_map(|(k, _)| k.bytes()).collect()
    }

    /// Each item's key, where it lies in `buffer` ([`keys_of`] the items),
    /// with its value.
    fn records_in<'b>(buffer: &'b [u8], items: &[(String, i128)]) -> Vec<(&'b [u8], Number)> {
        let mut at = 0;
        items
            .iter()
            .map(|(k, v)| {
                let key = &buffer[at..at + k.len()];
                at += k.len();
                (key, Number::Int(*v))
            })
            .collect()
    }

    proptest! {
        /// Any keys (empty, short, longer than 16 bytes, sharing their
        /// first 16, not ASCII), with and without asking ahead, with key
        /// hashes of 32 bits or of 2 (most keys share one) or 0 (all do):
        /// each key's total is the fold of its values, and the keys come in
        /// order of first appearance; the same when the records come in
        /// inputs of any size whose keys are kept in an arena.
        #[test]
        fn totals_fold_each_keys_values(
            items in proptest::collection::vec(
                (
                    prop_oneof!["[a-c]{0,3}", "[a-b]{15,18}", "x{16}[a-b]{1,3}", "[é\\x00a]{0,6}"],
                    -1000i128..1000,
                ),
                0..300,
            ),
            ahead_from in prop_oneof![Just(0usize), Just(usize::MAX)],
            hash_mask in prop_oneof![Just(u32::MAX), Just(3u32), Just(0u32)],
            chunk in 1usize..40,
        ) {
            // The keys back to back in one buffer, as in a partition.
            let buffer = keys_of(&items);
            let records = records_in(&buffer, &items);
            let mut totals = Totals::with_capacity(0);
            totals.ahead_from = ahead_from;
            totals.hash_mask = hash_mask;
            let sum = |a: Number, b: Number| match (a, b) {
                (Number::Int(a), Number::Int(b)) => Number::Int(a + b),
                _ => unreachable!("integers"),
            };
            totals.add_all(&buffer, records.into_iter().map(Ok), InPlace, sum).unwrap();
            let mut expected: BTreeMap<&str, i128> = BTreeMap::new();
            let mut order = Vec::new();
            for (k, v) in &items {
                *expected.entry(k.as_str()).or_insert_with(|| {
                    order.push(k.as_bytes());
                    0
                }) += v;
            }
            // The same records added `chunk` at a time, each chunk's keys
            // in a buffer of their own dropped once added, the new keys
            // kept in an arena.
            let arena = Bump::new();
            let mut kept = Totals::with_capacity(0);
            kept.ahead_from = ahead_from;
            kept.hash_mask = hash_mask;
            for chunk in items.chunks(chunk) {
                let input = keys_of(chunk);
                let records = records_in(&input, chunk);
                kept.add_all(&input, records.into_iter().map(Ok), &arena, sum).unwrap();
            }
            for totals in [&totals, &kept] {
                let got: Vec<(&[u8], Number)> = totals.iter().collect();
                prop_assert_eq!(got.len(), expected.len());
                prop_assert_eq!(totals.len(), expected.len());
                for ((key, total), first) in got.iter().zip(&order) {
                    prop_assert_eq!(key, first);
                    let want = expected[std::str::from_utf8(key).unwrap()];
                    prop_assert!(matches!(total, Number::Int(t) if *t == want));
                }
            }
        }
    }
}
