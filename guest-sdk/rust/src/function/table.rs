//! The combine's table: [`KeyRepr`], a key as the table compares it, and
//! [`KeyTable`], the distinct keys with their merged values.
//!
//! The table is the hot loop of a word count (a lookup per word), and a
//! 4 MiB block has 40-100 k distinct words, so its layout is chosen for few
//! cache misses per lookup, for misses that overlap, and for an output
//! written front to back:
//!
//! - The keys and values are entries in order of first appearance, each a
//!   key's repr (the encoding itself up to [`SHORT_KEY`] bytes) and its
//!   value: the table is emptied by reading them in order (no cache miss
//!   per key), and the frequent keys, which come first, share cache lines.
//! - An index finds them: open addressing with linear probing over 8-byte
//!   slots, each 32 bits of a key's hash and its entry's number, at most
//!   three quarters full (the host's grouping index has the same layout).
//!   A block's index is a few hundred KiB, so it mostly stays in L2, where
//!   slots holding the keys themselves took megabytes.
//! - [`KeyTable::touch`] loads a key's slot ahead of its lookup.
//!   WebAssembly has no prefetch instruction; a load whose value is not
//!   used is the nearest thing, and the combine touches the slots of a
//!   group of keys before it looks them up, so that the misses of the Zipf
//!   tail overlap. (Touching their entries too, in a second pass, measured
//!   no better.)

use super::window16;

/// The longest encoding a [`KeyRepr`] holds itself.
pub(super) const SHORT_KEY: usize = 15;
/// The top byte of a [`KeyRepr`] of a longer encoding.
pub(super) const LONG: u64 = 0xff << 56;
/// The top byte of a [`KeyRepr`] of a key compared with `Eq`.
pub(super) const BY_EQ: u64 = 0xfe << 56;
const TAG: u64 = 0xff << 56;

/// A key as the combine's table compares it: an encoding of up to
/// [`SHORT_KEY`] bytes itself (the bytes little-endian, the length in the top
/// byte), or the place of a longer one in the combine's `long_keys` (`LONG`
/// on top), or an index into its keys (`BY_EQ` on top: the key is compared
/// with `Eq`).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub(super) struct KeyRepr(pub(super) [u64; 2]);

impl KeyRepr {
    /// The repr of an encoding of at most [`SHORT_KEY`] bytes, read with a
    /// few loads rather than a copy.
    #[inline]
    pub(super) fn short(bytes: &[u8]) -> Self {
        let len = bytes.len();
        debug_assert!(len <= SHORT_KEY);
        let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
        let le32 = |b: &[u8]| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")));
        let (lo, hi) = if len >= 8 {
            // The last 8 bytes overlap the first 8: shift the overlap out.
            let hi = if len > 8 {
                le64(&bytes[len - 8..]) >> ((16 - len) * 8)
            } else {
                0
            };
            (le64(&bytes[..8]), hi)
        } else if len >= 4 {
            // Two overlapping loads; the overlapping bytes are equal.
            (
                le32(&bytes[..4]) | le32(&bytes[len - 4..]) << ((len - 4) * 8),
                0,
            )
        } else {
            let mut lo = 0;
            for (i, &b) in bytes.iter().enumerate() {
                lo |= u64::from(b) << (i * 8);
            }
            (lo, 0)
        };
        Self([lo, hi | (len as u64) << 56])
    }

    /// The repr of the encoding of `len` bytes (at most [`SHORT_KEY`]) at the
    /// start of `window`: the same as [`short`](Self::short) of them, but
    /// with two loads and masks, no branch on the length (whose mispredictions
    /// cost more than the loads when words of every length come in turn).
    #[inline]
    pub(super) fn short_in(window: &[u8; 16], len: usize) -> Self {
        debug_assert!(len <= SHORT_KEY);
        let lo = u64::from_le_bytes(window[..8].try_into().expect("8 bytes"));
        let hi = u64::from_le_bytes(window[8..].try_into().expect("8 bytes"));
        let lo_keep = if len >= 8 {
            u64::MAX
        } else {
            (1 << (len * 8)) - 1
        };
        let hi_keep = (1 << (len.saturating_sub(8) * 8)) - 1;
        Self([lo & lo_keep, hi & hi_keep | (len as u64) << 56])
    }

    /// The repr of `key`, an encoding of at most [`SHORT_KEY`] bytes: read
    /// with [`short_in`](Self::short_in) when it lies in `within` with 16
    /// bytes from its start (a key borrowed from a record, or from the
    /// partition's bytes), else with [`short`](Self::short).
    #[inline]
    pub(super) fn short_within(key: &[u8], within: &[u8]) -> Self {
        match window16(key, within) {
            Some(window) => Self::short_in(window, key.len()),
            None => Self::short(key),
        }
    }

    /// Whether a short repr's bytes are all ASCII (so a string key that
    /// needs no further UTF-8 check).
    #[inline]
    pub(super) fn is_ascii(self) -> bool {
        (self.0[0] | self.0[1] & !TAG) & 0x8080_8080_8080_8080 == 0
    }

    /// The repr of a longer encoding at `start` in `long_keys`.
    pub(super) fn long(start: usize, len: usize) -> Self {
        Self([
            u64::from(to_u32(start)) | u64::from(to_u32(len)) << 32,
            LONG,
        ])
    }

    /// The repr of the key at `index` of the keys compared with `Eq`.
    pub(super) fn by_eq(index: usize) -> Self {
        Self([u64::from(to_u32(index)), BY_EQ])
    }

    #[inline]
    pub(super) fn as_u128(self) -> u128 {
        u128::from(self.0[0]) | u128::from(self.0[1]) << 64
    }

    #[inline]
    pub(super) fn is_long(self) -> bool {
        self.0[1] & TAG == LONG
    }

    /// The index of a `BY_EQ` repr.
    pub(super) fn eq_index(self) -> usize {
        debug_assert_eq!(self.0[1] & TAG, BY_EQ);
        self.0[0] as usize
    }

    /// The bytes of a `LONG` repr in `long_keys`.
    #[inline]
    pub(super) fn long_key(self, long_keys: &[u8]) -> &[u8] {
        let start = (self.0[0] & 0xffff_ffff) as usize;
        &long_keys[start..start + (self.0[0] >> 32) as usize]
    }

    /// The encoding of a short or `LONG` repr: `short` holds a short one's
    /// bytes.
    pub(super) fn bytes<'a>(&self, long_keys: &'a [u8], short: &'a mut [u8; 16]) -> &'a [u8] {
        if self.is_long() {
            return self.long_key(long_keys);
        }
        *short = self.as_u128().to_le_bytes();
        &short[..(self.0[1] >> 56) as usize]
    }

    /// The length of the encoding, unless the key is compared with `Eq`.
    pub(super) fn encoded_len(self) -> Option<usize> {
        match self.0[1] & TAG {
            LONG => Some((self.0[0] >> 32) as usize),
            BY_EQ => None,
            len => Some((len >> 56) as usize),
        }
    }
}

#[inline]
pub(super) fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a partition is smaller than 4 GiB (wasm32 memory)")
}

/// A free slot of a [`KeyTable`]. A used slot is `hash << 32 | entry`, and
/// entry numbers stay below `u32::MAX`, so no used slot is `FREE`.
const FREE: u64 = u64::MAX;

/// The fewest slots of a table that holds a key.
const MIN_SLOTS: usize = 64;

/// A key and its merged value.
struct Entry<V> {
    key: KeyRepr,
    value: V,
}

/// The distinct keys of a partition with their merged values, in order of
/// first appearance, and an index of them by hash (see the module's doc).
pub(super) struct KeyTable<V> {
    /// A power of two of them, or none: [`FREE`], or 32 bits of a key's
    /// hash (a cheap first comparison, and where the key goes when the
    /// slots grow) and its entry's number.
    slots: Box<[u64]>,
    /// The keys and values, in order of first appearance: emptied in that
    /// order, front to back.
    entries: Vec<Entry<V>>,
    /// Whether an entry lost its value to a panic (see
    /// [`update`](Self::update)).
    poisoned: bool,
}

/// Where [`KeyTable::find`] found a key (its entry), or the free slot where
/// it goes.
pub(super) enum Found {
    At(usize),
    Vacant(usize),
}

impl<V> KeyTable<V> {
    /// A table with room for `keys` keys before its slots grow.
    pub(super) fn with_capacity(keys: usize) -> Self {
        Self {
            slots: if keys == 0 {
                Box::new([])
            } else {
                free_slots(slots_for(keys))
            },
            entries: Vec::with_capacity(keys),
            poisoned: false,
        }
    }

    /// The number of keys.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// The number of slots.
    #[cfg(test)]
    pub(super) fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The home slot of `hash`.
    #[inline]
    fn home(&self, hash: u64) -> Option<&u64> {
        self.slots
            .get(hash as u32 as usize & self.slots.len().wrapping_sub(1))
    }

    /// Loads the home slot of `hash`, so that a lookup of it shortly after
    /// finds the slot in cache.
    #[inline]
    #[allow(unsafe_code)]
    pub(super) fn touch(&self, hash: u64) {
        if let Some(slot) = self.home(hash) {
            // SAFETY: a pointer made from a reference, so valid and aligned.
            // A volatile load, so that the compiler keeps it.
            unsafe { std::ptr::read_volatile(slot) };
        }
    }

    /// The entry of the key of `hash` for which `eq` holds, or the free
    /// slot where it goes. Makes room for one more key first, so a vacant
    /// slot can be filled with [`insert`](Self::insert).
    #[inline]
    pub(super) fn find(&mut self, hash: u64, mut eq: impl FnMut(KeyRepr) -> bool) -> Found {
        if (self.entries.len() + 1) * 4 > self.slots.len() * 3 {
            self.grow();
        }
        let hash = hash & 0xffff_ffff;
        let mask = self.slots.len() - 1;
        let mut at = hash as usize & mask;
        loop {
            let slot = self.slots[at];
            if slot == FREE {
                return Found::Vacant(at);
            }
            if slot >> 32 == hash {
                let entry = slot as u32 as usize;
                if eq(self.entries[entry].key) {
                    return Found::At(entry);
                }
            }
            at = (at + 1) & mask;
        }
    }

    /// Fills the vacant slot `at` that [`find`](Self::find) gave for `hash`
    /// with a key that comes after those in the table.
    #[inline]
    pub(super) fn insert(&mut self, at: usize, hash: u64, key: KeyRepr, value: V) {
        debug_assert_eq!(self.slots[at], FREE, "a vacant slot");
        self.slots[at] = (hash & 0xffff_ffff) << 32 | u64::from(to_u32(self.entries.len()));
        self.entries.push(Entry { key, value });
    }

    /// Replaces the value of the entry `at` that [`find`](Self::find) found
    /// with `f(value)`. If `f` unwinds (a native test's panic: a plugin's
    /// panic aborts its call), the entry is left without a value, and the
    /// table leaks its values when it is emptied instead of dropping them.
    #[inline]
    #[allow(unsafe_code)]
    pub(super) fn update(&mut self, at: usize, f: impl FnOnce(V) -> V) {
        struct PoisonOnUnwind<'a>(&'a mut bool);
        impl Drop for PoisonOnUnwind<'_> {
            fn drop(&mut self) {
                *self.0 = true;
            }
        }
        let value = &raw mut self.entries[at].value;
        let poison = PoisonOnUnwind(&mut self.poisoned);
        // SAFETY: `value` points at an initialized value of an entry. It is
        // written again before anything else reads it; if `f` unwinds
        // instead, the table is poisoned, and a poisoned table never reads
        // or drops its values again.
        unsafe { value.write(f(value.read())) };
        std::mem::forget(poison);
    }

    /// Empties the table, handing every key's index, repr and value to
    /// `out`, in order of first appearance. A table serves one call: its
    /// slots and entries are freed, and it starts again from none.
    pub(super) fn drain(&mut self, mut out: impl FnMut(u32, KeyRepr, V)) {
        // Should `out` unwind, the entries not handed out yet are dropped
        // with `entries`, and the table is left empty.
        let entries = self.take_entries();
        for (index, Entry { key, value }) in entries.into_iter().enumerate() {
            out(to_u32(index), key, value);
        }
    }

    /// The entries, taken out of the table, which is left empty, without
    /// slots. A poisoned table's entries are given without their values,
    /// which it leaks (one was moved out).
    #[allow(unsafe_code)]
    fn take_entries(&mut self) -> Vec<Entry<V>> {
        let mut entries = std::mem::take(&mut self.entries);
        self.slots = Box::new([]);
        if std::mem::take(&mut self.poisoned) {
            // SAFETY: fewer elements (none), so no uninitialized one is
            // exposed; the values are leaked, not dropped.
            unsafe { entries.set_len(0) };
        }
        entries
    }

    /// Doubles the slots, placing every key again.
    #[cold]
    fn grow(&mut self) {
        let mut slots = free_slots((self.slots.len() * 2).max(MIN_SLOTS));
        let mask = slots.len() - 1;
        for &slot in self.slots.iter().filter(|&&slot| slot != FREE) {
            let mut at = (slot >> 32) as usize & mask;
            while slots[at] != FREE {
                at = (at + 1) & mask;
            }
            slots[at] = slot;
        }
        self.slots = slots;
    }
}

impl<V> Drop for KeyTable<V> {
    fn drop(&mut self) {
        if self.poisoned {
            drop(self.take_entries());
        }
    }
}

/// The number of slots that hold `len` keys at the table's load.
fn slots_for(len: usize) -> usize {
    (len * 4 / 3 + 1).next_power_of_two().max(MIN_SLOTS)
}

fn free_slots(n: usize) -> Box<[u64]> {
    vec![FREE; n].into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;
    use std::collections::HashMap;
    use std::rc::Rc;

    proptest! {
        /// `short_in` a window is `short` of the key at its start.
        #[test]
        fn a_key_in_a_window_is_the_same_repr(window in any::<[u8; 16]>(), len in 0..=SHORT_KEY) {
            let repr = KeyRepr::short(&window[..len]);
            prop_assert_eq!(KeyRepr::short_in(&window, len), repr);
            prop_assert_eq!(repr.is_ascii(), window[..len].is_ascii());
        }

        /// `short_within` a buffer is `short` of the key, wherever it is:
        /// with 16 bytes in the buffer from its start, near its end, or
        /// elsewhere.
        #[test]
        fn a_key_within_a_buffer_is_the_same_repr(
            buffer in vec(any::<u8>(), 0..40),
            start in 0usize..40,
            len in 0..=SHORT_KEY,
        ) {
            let start = start.min(buffer.len());
            let end = (start + len).min(buffer.len());
            let key = &buffer[start..end];
            prop_assert_eq!(KeyRepr::short_within(key, &buffer), KeyRepr::short(key));
            let copy = key.to_vec();
            prop_assert_eq!(KeyRepr::short_within(&copy, &buffer), KeyRepr::short(key));
        }
    }

    /// Counts per key with the table, hashing with `hash`.
    fn count(table: &mut KeyTable<Rc<i64>>, keys: &[u16], hash: impl Fn(u16) -> u64) {
        for &k in keys {
            let repr = KeyRepr::short(&k.to_le_bytes());
            let h = hash(k);
            table.touch(h);
            match table.find(h, |r| r == repr) {
                Found::At(at) => table.update(at, |v| Rc::new(*v + 1)),
                Found::Vacant(at) => table.insert(at, h, repr, Rc::new(1)),
            }
        }
    }

    proptest! {
        #[test]
        fn a_short_key_repr_is_the_bytes_and_the_length(bytes in vec(any::<u8>(), 0..=SHORT_KEY)) {
            let mut padded = [0u8; 16];
            padded[..bytes.len()].copy_from_slice(&bytes);
            padded[15] = bytes.len() as u8;
            prop_assert_eq!(KeyRepr::short(&bytes).as_u128(), u128::from_le_bytes(padded));
            prop_assert_eq!(KeyRepr::short(&bytes).encoded_len(), Some(bytes.len()));
        }

        /// Against a `HashMap`, with a spread hash and with hashes that
        /// collide (all, or modulo a few), one partition after another in
        /// the same table; values that need dropping are all dropped.
        #[test]
        fn counts_like_a_hash_map(
            partitions in vec(vec(0u16..300, 0..700), 1..4),
            colliding in 0u64..4,
        ) {
            let mut table = KeyTable::with_capacity(0);
            let witness = Rc::new(0);
            for keys in &partitions {
                let hash = |k: u16| match colliding {
                    0 => (u64::from(k)).wrapping_mul(0x9e37_79b9_7f4a_7c15),
                    n => u64::from(k) % n * 64,
                };
                count(&mut table, keys, hash);
                let mut expected: HashMap<u16, i64> = HashMap::new();
                let mut order = Vec::new();
                for &k in keys {
                    *expected.entry(k).or_insert_with(|| { order.push(k); 0 }) += 1;
                }
                prop_assert_eq!(table.len(), expected.len());
                let mut got = vec![None; order.len()];
                table.drain(|index, repr, value| {
                    got[index as usize] = Some((repr, *value));
                });
                for (index, k) in order.iter().enumerate() {
                    prop_assert_eq!(
                        got[index],
                        Some((KeyRepr::short(&k.to_le_bytes()), expected[k]))
                    );
                }
                prop_assert_eq!(table.len(), 0);
            }
            // Values left in a table are dropped with it.
            let keys: Vec<u16> = (0..100).collect();
            count(&mut table, &keys, u64::from);
            table.update(0, |_| Rc::clone(&witness));
            prop_assert_eq!(Rc::strong_count(&witness), 2);
            drop(table);
            prop_assert_eq!(Rc::strong_count(&witness), 1);
        }
    }

    #[test]
    fn a_panic_in_an_update_leaks_the_values_and_leaves_the_table_usable() {
        let mut table = KeyTable::<Rc<i64>>::with_capacity(0);
        let keys: Vec<u16> = (0..10).collect();
        let witness = Rc::new(0);
        count(&mut table, &keys, u64::from);
        table.update(3, |_| Rc::clone(&witness));
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            table.update(5, |_| panic!("a reducer's panic"))
        }));
        assert!(panicked.is_err());
        table.drain(|_, _, _| unreachable!("a poisoned table hands out no value"));
        assert_eq!(Rc::strong_count(&witness), 2, "leaked, not dropped");
        count(&mut table, &[1, 1, 2], u64::from);
        let mut got = Vec::new();
        table.drain(|index, _, value| got.push((index, *value)));
        got.sort();
        assert_eq!(got, [(0, 2), (1, 1)]);
    }

    /// A drain whose `out` unwinds drops the values not handed out, once,
    /// and leaves the table empty and usable.
    #[test]
    fn a_panic_while_draining_drops_every_value_once() {
        let witness = Rc::new(0);
        let mut table = KeyTable::<Rc<i64>>::with_capacity(0);
        count(&mut table, &(0..10).collect::<Vec<u16>>(), u64::from);
        for at in 0..10 {
            table.update(at, |_| Rc::clone(&witness));
        }
        assert_eq!(Rc::strong_count(&witness), 11);
        let mut handed = 0;
        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            table.drain(|_, _, value| {
                handed += 1;
                drop(value);
                assert!(handed < 4, "a sink's panic");
            })
        }));
        assert!(panicked.is_err());
        assert_eq!(
            Rc::strong_count(&witness),
            1,
            "four handed out and dropped, the rest dropped as the drain unwound"
        );
        assert_eq!(table.len(), 0);
        count(&mut table, &[4, 4, 9], u64::from);
        let mut got = Vec::new();
        table.drain(|index, _, value| got.push((index, *value)));
        assert_eq!(got, [(0, 2), (1, 1)], "the table is usable after");
    }

    #[test]
    fn a_table_with_room_for_its_keys_never_grows_its_slots() {
        for keys in [0usize, 1, 47, 48, 49, 10_000] {
            let mut table = KeyTable::<i64>::with_capacity(keys);
            let slots = table.slots();
            assert!(
                keys == 0 || slots >= MIN_SLOTS,
                "{keys} keys: {slots} slots"
            );
            for i in 0..keys {
                let repr = KeyRepr::short(&(i as u64).to_le_bytes());
                let h = (i as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                if let Found::Vacant(at) = table.find(h, |r| r == repr) {
                    table.insert(at, h, repr, 1);
                }
            }
            assert_eq!(table.len(), keys);
            if keys > 0 {
                assert_eq!(table.slots(), slots, "{keys} keys fit without a growth");
            }
            assert!(table.slots() * 3 >= keys * 4, "the load stays under 3/4");
        }
    }
}
