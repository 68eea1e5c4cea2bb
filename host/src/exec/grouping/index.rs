//! The index of a [`Grouper`](super::Grouper)'s groups by key hash (and of
//! the first pair of each key in [`take_singles`](super::super::shuffle::take_singles)): open
//! addressing with linear probing over 8-byte slots, each a key's 32-bit
//! hash and its group's number, at most three quarters full (a probe
//! mostly stays in its home slot's cache line: the hashes in the slots
//! spare comparing keys).
//!
//! Unlike a general-purpose table it shows where a hash's lookup will
//! read, so that the grouper can ask for those lines some records ahead
//! ([`Index::prefetch`], [`Index::at_home`]): a block's keys are mostly
//! new to a table of megabytes, and a lookup that waits for memory twice
//! (slot, then group) was 23-30% of the stateful word count's profile
//! (BENCHMARKS, issue 15's fifth and seventh parts).
//! Prefetches are hints: the lookup that follows is a plain one.

/// A free slot. A used slot is `hash << 32 | group`, and group numbers stay
/// below `u32::MAX`, so no used slot is `EMPTY`.
const EMPTY: u64 = u64::MAX;

/// The fewest slots an index has.
const MIN_SLOTS: usize = 16;

/// Whether `len` groups fit in `slots` slots.
fn fits(len: usize, slots: usize) -> bool {
    len.saturating_mul(4) <= slots.saturating_mul(3)
}

pub(in crate::exec) struct Index {
    slots: Vec<u64>,
    /// `64 - log2(slots.len())`: a hash's home slot is the top bits of its
    /// product with an odd constant.
    shift: u32,
    len: usize,
}

impl Default for Index {
    fn default() -> Self {
        Self::with_slots(MIN_SLOTS)
    }
}

impl Index {
    fn with_slots(slots: usize) -> Self {
        debug_assert!(slots.is_power_of_two());
        Self {
            slots: vec![EMPTY; slots],
            shift: 64 - slots.trailing_zeros(),
            len: 0,
        }
    }

    #[inline]
    fn home(&self, hash: u32) -> usize {
        (u64::from(hash).wrapping_mul(0x9e37_79b9_7f4a_7c15) >> self.shift) as usize
    }

    /// The slots from `hash`'s home on, wrapping around (never all full).
    #[inline]
    fn probe(&self, hash: u32) -> impl Iterator<Item = (usize, u64)> + '_ {
        let mask = self.slots.len() - 1;
        let home = self.home(hash);
        (0..self.slots.len()).map(move |i| {
            let at = (home + i) & mask;
            (at, self.slots[at])
        })
    }

    /// Room for `more` more groups without growing.
    pub fn reserve(&mut self, more: usize) {
        let len = self.len.saturating_add(more);
        if !fits(len, self.slots.len()) {
            let mut slots = self.slots.len();
            while !fits(len, slots) {
                slots *= 2;
            }
            self.resize(slots);
        }
    }

    /// Asks for the line of `hash`'s home slot.
    #[inline]
    pub fn prefetch(&self, hash: u32) {
        prefetch(&self.slots[self.home(hash)]);
    }

    /// The group in `hash`'s home slot, if any: the one a lookup of `hash`
    /// most likely compares with (its key's hash may differ).
    #[inline]
    pub fn at_home(&self, hash: u32) -> Option<u32> {
        let slot = self.slots[self.home(hash)];
        (slot != EMPTY).then_some(slot as u32)
    }

    /// The group whose key has `hash` and for which `eq` holds.
    #[inline]
    pub fn find(&self, hash: u32, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        for (_, slot) in self.probe(hash) {
            if slot == EMPTY {
                return None;
            }
            if (slot >> 32) as u32 == hash && eq(slot as u32) {
                return Some(slot as u32);
            }
        }
        None
    }

    /// The group whose key has `hash` and for which `eq` holds or, when
    /// there is none, `None` after indexing `group` (below `u32::MAX`) as
    /// that key's.
    #[inline]
    pub fn find_or_insert(
        &mut self,
        hash: u32,
        mut eq: impl FnMut(u32) -> bool,
        group: u32,
    ) -> Option<u32> {
        debug_assert!(group != u32::MAX);
        let mut free = None;
        for (at, slot) in self.probe(hash) {
            if slot == EMPTY {
                free = Some(at);
                break;
            }
            if (slot >> 32) as u32 == hash && eq(slot as u32) {
                return Some(slot as u32);
            }
        }
        let entry = u64::from(hash) << 32 | u64::from(group);
        if !fits(self.len + 1, self.slots.len()) {
            self.resize(self.slots.len() * 2);
            self.place(entry);
        } else {
            self.slots[free.expect("an index is never full")] = entry;
        }
        self.len += 1;
        None
    }

    fn resize(&mut self, slots: usize) {
        let old = std::mem::replace(self, Self::with_slots(slots.max(MIN_SLOTS)));
        for slot in old.slots.into_iter().filter(|&s| s != EMPTY) {
            self.place(slot);
        }
        self.len = old.len;
    }

    /// Puts a used slot's entry in the first free slot of its probe.
    fn place(&mut self, entry: u64) {
        let (at, _) = self
            .probe((entry >> 32) as u32)
            .find(|&(_, slot)| slot == EMPTY)
            .expect("an index is never full");
        self.slots[at] = entry;
    }
}

/// Asks for the cache line of `value`, not waiting for it.
#[inline]
pub(super) fn prefetch<T>(value: &T) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing and cannot fault; `value` is a live
    // reference besides.
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(std::ptr::from_ref(value).cast());
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = value;
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    proptest! {
        /// Keys indexed one by one, then looked up, against a map; hashes
        /// from a small set, so that many keys share one (and a home slot,
        /// a probe that wraps around, a growth that moves them).
        #[test]
        fn lookups_find_what_was_indexed_under_colliding_hashes(
            keys in proptest::collection::vec((0u32..40, 0u32..6), 0..300),
            absent in proptest::collection::vec((0u32..40, 0u32..6), 0..20),
            reserve in 0usize..100,
        ) {
            // Key `(k, h)` has hash `h` (scaled, so homes also differ).
            let hash = |&(_, h): &(u32, u32)| h.wrapping_mul(0x2545_f491);
            let mut index = Index::default();
            index.reserve(reserve);
            let mut groups: Vec<(u32, u32)> = Vec::new();
            let mut model: HashMap<(u32, u32), u32> = HashMap::new();
            for key in &keys {
                let next = groups.len() as u32;
                let found = index.find_or_insert(hash(key), |g| groups[g as usize] == *key, next);
                match model.get(key) {
                    Some(&g) => prop_assert_eq!(found, Some(g)),
                    None => {
                        prop_assert_eq!(found, None);
                        model.insert(*key, next);
                        groups.push(*key);
                    }
                }
                prop_assert!(fits(index.len, index.slots.len()));
            }
            for key in keys.iter().chain(&absent) {
                let found = index.find(hash(key), |g| groups[g as usize] == *key);
                prop_assert_eq!(found, model.get(key).copied());
                if found.is_some() {
                    prop_assert!(index.at_home(hash(key)).is_some());
                }
            }
            prop_assert_eq!(index.len, model.len());
        }
    }
}
