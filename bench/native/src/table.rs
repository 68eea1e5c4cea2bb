//! The native baseline's hash table: counts per word, open addressing with
//! linear probing, keys of up to 16 bytes held inline in the slot.
//!
//! A slot is 32 bytes, two to a cache line:
//!
//! | field   | short key (0 to 16 bytes)          | long key (17 bytes or more)        |
//! |---------|------------------------------------|------------------------------------|
//! | `lo`    | bytes 0..8, little-endian, zero-padded | offset of the word in the arena |
//! | `hi`    | bytes 8..16, the same              | the word's full 64-bit hash        |
//! | `meta`  | length + 1 (1 to 17)               | length + 1 (18 or more)            |
//! | `count` | the count                          | the count                          |
//!
//! `meta == 0` marks an empty slot, so an empty word (`meta == 1`) is a key
//! like any other. Finding a short word is one hash (one multiply, folded), one
//! slot load and one three-word compare; a long word compares its hash and
//! length first and its bytes in the arena (a `Vec<u8>` holding every long
//! key back to back) only then.
//!
//! The table grows (doubling, rehashing) when it would be more than half full,
//! so a probe always ends at an empty slot. It remembers which slots it filled,
//! in insertion order: [`WordTable::clear`] empties only those (or sweeps the
//! whole array when more than an eighth of it is in use, which is then
//! faster) and keeps its memory, and iteration and merging visit the words in
//! that order, never in slot order (merging one table into another in slot
//! order would insert the keys in hash order and build long runs of probes).
//!
//! The slots of a large table are on huge pages where the kernel allows
//! ([`ZeroedArray`]): the words a text hits most are spread over the whole
//! array, and on 4 KiB pages most lookups would miss the TLB too.
//!
//! The hash is a [`WordHash`], injectable so that tests can make every key
//! collide; the default is [`FoldHash`].
//!
//! ```
//! use sluice_bench::table::WordTable;
//!
//! let mut table: WordTable = WordTable::with_capacity(16);
//! table.add(b"to", 1);
//! table.add(b"be", 2);
//! table.add(b"to", 1);
//! table.add(b"a-word-longer-than-sixteen-bytes", 5);
//! assert_eq!(table.get(b"to"), Some(2));
//! assert_eq!(table.get(b"a-word-longer-than-sixteen-bytes"), Some(5));
//! assert_eq!(table.get(b"or"), None);
//! assert_eq!((table.len(), table.total()), (3, 9));
//! ```

use crate::zeroed::{Zeroable, ZeroedArray};

/// The longest word whose bytes are kept in its slot.
pub const INLINE: usize = 16;

/// `meta` of an empty slot.
const EMPTY: u64 = 0;

/// The smallest number of slots.
const MIN_SLOTS: usize = 8;

/// Hashes words for a [`WordTable`]. A short word (up to [`INLINE`] bytes) is
/// hashed from its two zero-padded little-endian halves and its length; a
/// long one from its bytes. The table takes its slot from the hash's top bits.
pub trait WordHash: Clone {
    /// The hash of a word of `len <= 16` bytes whose bytes are `lo` and `hi`.
    fn short(&self, lo: u64, hi: u64, len: usize) -> u64;
    /// The hash of a word of more than 16 bytes.
    fn long(&self, word: &[u8]) -> u64;
}

/// The default hash: foldhash's folded multiply (the full 128-bit product of
/// two 64-bit words, its halves XORed), once for a short word.
#[derive(Debug, Clone, Copy, Default)]
pub struct FoldHash;

/// Two constants from the digits of pi, as foldhash uses them.
const SEED_LO: u64 = 0x243f_6a88_85a3_08d3;
const SEED_HI: u64 = 0x1319_8a2e_0370_7344;

/// The 128-bit product of `a` and `b`, its two halves XORed.
#[inline(always)]
pub fn folded_multiply(a: u64, b: u64) -> u64 {
    let full = u128::from(a) * u128::from(b);
    (full as u64) ^ ((full >> 64) as u64)
}

impl WordHash for FoldHash {
    #[inline(always)]
    fn short(&self, lo: u64, hi: u64, len: usize) -> u64 {
        folded_multiply(lo ^ SEED_LO, hi ^ SEED_HI ^ len as u64)
    }

    fn long(&self, word: &[u8]) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::with_seed(SEED_LO).hash_one(word)
    }
}

/// One slot (see the module's table).
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(32))]
struct Slot {
    lo: u64,
    hi: u64,
    meta: u64,
    count: u64,
}

// SAFETY: four `u64`s, `repr(C)`: all-zero bytes are a valid slot, the
// default one (empty).
unsafe impl Zeroable for Slot {}

impl Slot {
    /// The key of a filled slot of a short word.
    fn short_key(&self) -> ShortKey {
        ShortKey {
            lo: self.lo,
            hi: self.hi,
            meta: self.meta,
        }
    }
}

/// A short word as the table keys it: its zero-padded bytes and `len + 1`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShortKey {
    /// Bytes 0..8, little-endian, zero past the word's end.
    pub lo: u64,
    /// Bytes 8..16, the same.
    pub hi: u64,
    /// The word's length + 1.
    pub meta: u64,
}

/// `MASKS[len]` keeps the first `len` bytes of a little-endian pair of words.
const MASKS: [[u64; 2]; INLINE + 1] = {
    let mut masks = [[0u64; 2]; INLINE + 1];
    let mut len = 0;
    while len <= INLINE {
        let lo = if len >= 8 {
            u64::MAX
        } else {
            (1u64 << (len * 8)) - 1
        };
        let hi = if len >= 16 {
            u64::MAX
        } else if len <= 8 {
            0
        } else {
            (1u64 << ((len - 8) * 8)) - 1
        };
        masks[len] = [lo, hi];
        len += 1;
    }
    masks
};

impl ShortKey {
    /// The key of `word`, which must have at most [`INLINE`] bytes.
    #[inline]
    pub fn new(word: &[u8]) -> Self {
        debug_assert!(word.len() <= INLINE);
        let mut bytes = [0u8; INLINE];
        bytes[..word.len()].copy_from_slice(word);
        Self {
            lo: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")),
            hi: u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes")),
            meta: word.len() as u64 + 1,
        }
    }

    /// The key of `text[start..start + len]` (`len <= 16`), from two 8-byte
    /// loads when `text` has 16 bytes from `start`.
    #[inline(always)]
    pub fn at(text: &[u8], start: usize, len: usize) -> Self {
        debug_assert!(len <= INLINE && start + len <= text.len());
        match text.get(start..start + INLINE) {
            Some(bytes) => {
                let [mask_lo, mask_hi] = MASKS[len];
                Self {
                    lo: u64::from_le_bytes(bytes[..8].try_into().expect("8 bytes")) & mask_lo,
                    hi: u64::from_le_bytes(bytes[8..].try_into().expect("8 bytes")) & mask_hi,
                    meta: len as u64 + 1,
                }
            }
            None => Self::new(&text[start..start + len]),
        }
    }

    /// The word's length.
    #[inline]
    pub fn len(&self) -> usize {
        (self.meta - 1) as usize
    }

    /// True for the empty word.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.meta == 1
    }

    /// The word's bytes: the first [`ShortKey::len`] of the array.
    #[inline]
    pub fn bytes(&self) -> [u8; INLINE] {
        let mut bytes = [0u8; INLINE];
        bytes[..8].copy_from_slice(&self.lo.to_le_bytes());
        bytes[8..].copy_from_slice(&self.hi.to_le_bytes());
        bytes
    }

    /// Its hash under `hasher`.
    #[inline(always)]
    pub fn hash<H: WordHash>(&self, hasher: &H) -> u64 {
        hasher.short(self.lo, self.hi, self.len())
    }
}

/// Counts per word (see the module's documentation).
#[derive(Debug, Clone)]
pub struct WordTable<H = FoldHash> {
    /// A power of two of them, at most half full.
    slots: ZeroedArray<Slot>,
    /// `64 - log2(slots.len())`: a hash's slot is `hash >> shift`.
    shift: u32,
    /// The filled slots, in insertion order.
    filled: Vec<u32>,
    /// The bytes of every long key, back to back.
    arena: Vec<u8>,
    hasher: H,
}

impl<H: WordHash + Default> Default for WordTable<H> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<H: WordHash + Default> WordTable<H> {
    /// An empty table with room for `words` distinct words before it grows.
    pub fn with_capacity(words: usize) -> Self {
        Self::with_capacity_and_hasher(words, H::default())
    }
}

impl<H: WordHash> WordTable<H> {
    /// An empty table with room for `words` distinct words, hashing with `hasher`.
    pub fn with_capacity_and_hasher(words: usize, hasher: H) -> Self {
        let slots = (words * 2 + 1).next_power_of_two().max(MIN_SLOTS);
        Self {
            slots: ZeroedArray::new(slots),
            shift: 64 - slots.trailing_zeros(),
            filled: Vec::with_capacity(words),
            arena: Vec::new(),
            hasher,
        }
    }

    /// The table's hasher.
    #[inline(always)]
    pub fn hasher(&self) -> &H {
        &self.hasher
    }

    /// Distinct words.
    #[inline]
    pub fn len(&self) -> usize {
        self.filled.len()
    }

    /// True if no word was counted.
    #[inline]
    pub fn is_empty(&self) -> bool {
        self.filled.is_empty()
    }

    /// The number of slots (twice the words it holds before growing).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The first slot a hash probes.
    #[inline(always)]
    fn home(&self, hash: u64) -> usize {
        (hash >> self.shift) as usize
    }

    /// Asks the CPU to bring the slot of `hash` into the cache, so that a
    /// lookup of that hash a few words later finds it there. WebAssembly has
    /// no prefetch: on wasm32 this loads the slot's `meta` and drops it (the
    /// nearest thing, as Sluice's guest SDK does), a load that must complete
    /// where a prefetch is only a hint. A no-op elsewhere.
    #[inline(always)]
    pub fn prefetch(&self, hash: u64) {
        #[cfg(target_arch = "wasm32")]
        {
            let slot = &self.slots[self.home(hash)];
            // SAFETY: a pointer made from a reference, so valid and aligned.
            // A volatile load, so that the compiler keeps it.
            unsafe { std::ptr::read_volatile(&raw const slot.meta) };
        }
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
            let slot = self.slots.as_ptr().wrapping_add(self.home(hash));
            // SAFETY: `home` is below `slots.len()`, so the pointer is inside
            // the allocation; a prefetch never faults and reads nothing anyway.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(slot.cast::<i8>()) };
        }
        #[cfg(not(any(target_arch = "x86_64", target_arch = "wasm32")))]
        let _ = hash;
    }

    /// Adds `n` to the count of `word`.
    #[inline]
    pub fn add(&mut self, word: &[u8], n: u64) {
        if word.len() <= INLINE {
            let key = ShortKey::new(word);
            let hash = key.hash(&self.hasher);
            self.add_short(key, hash, n);
        } else {
            let hash = self.hasher.long(word);
            self.add_long(word, hash, n);
        }
    }

    /// Adds `n` to the count of the short word `key` (`key.meta <= 17`),
    /// whose hash is `hash`.
    #[inline(always)]
    pub fn add_short(&mut self, key: ShortKey, hash: u64, n: u64) {
        debug_assert!((1..=INLINE as u64 + 1).contains(&key.meta));
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            // SAFETY: `i` is `home` (below `slots.len()`) or masked by
            // `slots.len() - 1`, and `slots.len()` is a power of two.
            let slot = unsafe { self.slots.get_unchecked_mut(i) };
            if (slot.lo ^ key.lo) | (slot.hi ^ key.hi) | (slot.meta ^ key.meta) == 0 {
                slot.count += n;
                return;
            }
            if slot.meta == EMPTY {
                *slot = Slot {
                    lo: key.lo,
                    hi: key.hi,
                    meta: key.meta,
                    count: n,
                };
                self.filled_slot(i);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Adds `n` to the count of the long word `word`, whose hash is `hash`.
    #[inline(never)]
    pub fn add_long(&mut self, word: &[u8], hash: u64, n: u64) {
        debug_assert!(word.len() > INLINE);
        let meta = word.len() as u64 + 1;
        let mask = self.slots.len() - 1;
        let mut i = self.home(hash);
        loop {
            let slot = &mut self.slots[i];
            if slot.meta == meta
                && slot.hi == hash
                && &self.arena[slot.lo as usize..slot.lo as usize + word.len()] == word
            {
                slot.count += n;
                return;
            }
            if slot.meta == EMPTY {
                *slot = Slot {
                    lo: self.arena.len() as u64,
                    hi: hash,
                    meta,
                    count: n,
                };
                self.arena.extend_from_slice(word);
                self.filled_slot(i);
                return;
            }
            i = (i + 1) & mask;
        }
    }

    /// Records that slot `i` was just filled; grows the table if it is now
    /// more than half full.
    #[inline(always)]
    fn filled_slot(&mut self, i: usize) {
        self.filled.push(i as u32);
        if self.filled.len() * 2 > self.slots.len() {
            self.grow();
        }
    }

    /// Doubles the slots and moves every word to its place in them.
    #[cold]
    #[inline(never)]
    fn grow(&mut self) {
        let bigger = ZeroedArray::new(self.slots.len() * 2);
        let old = std::mem::replace(&mut self.slots, bigger);
        self.shift -= 1;
        let mask = self.slots.len() - 1;
        for index in &mut self.filled {
            let slot = old[*index as usize];
            let hash = if slot.meta as usize > INLINE + 1 {
                slot.hi
            } else {
                self.hasher
                    .short(slot.lo, slot.hi, (slot.meta - 1) as usize)
            };
            let mut i = (hash >> self.shift) as usize;
            while self.slots[i].meta != EMPTY {
                i = (i + 1) & mask;
            }
            self.slots[i] = slot;
            *index = i as u32;
        }
    }

    /// The count of `word`, if it was seen.
    pub fn get(&self, word: &[u8]) -> Option<u64> {
        let mask = self.slots.len() - 1;
        let (mut i, key, hash) = if word.len() <= INLINE {
            let key = ShortKey::new(word);
            let hash = key.hash(&self.hasher);
            (self.home(hash), key, hash)
        } else {
            let hash = self.hasher.long(word);
            (
                self.home(hash),
                ShortKey {
                    lo: 0,
                    hi: hash,
                    meta: word.len() as u64 + 1,
                },
                hash,
            )
        };
        loop {
            let slot = &self.slots[i];
            if slot.meta == EMPTY {
                return None;
            }
            let found = if word.len() <= INLINE {
                slot.lo == key.lo && slot.hi == key.hi && slot.meta == key.meta
            } else {
                slot.meta == key.meta
                    && slot.hi == hash
                    && &self.arena[slot.lo as usize..slot.lo as usize + word.len()] == word
            };
            if found {
                return Some(slot.count);
            }
            i = (i + 1) & mask;
        }
    }

    /// Calls `f(word, count)` for every word, in the order they were first added.
    pub fn for_each(&self, mut f: impl FnMut(&[u8], u64)) {
        for &i in &self.filled {
            let slot = &self.slots[i as usize];
            let len = (slot.meta - 1) as usize;
            if len <= INLINE {
                f(&slot.short_key().bytes()[..len], slot.count);
            } else {
                f(
                    &self.arena[slot.lo as usize..slot.lo as usize + len],
                    slot.count,
                );
            }
        }
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.filled
            .iter()
            .map(|&i| self.slots[i as usize].count)
            .sum()
    }

    /// Adds every count of `other` to this table (a reduce by key). Both
    /// tables must hash alike, as tables of one type with default hashers do.
    pub fn merge(&mut self, other: &WordTable<H>) {
        for &i in &other.filled {
            let slot = other.slots[i as usize];
            let len = (slot.meta - 1) as usize;
            if len <= INLINE {
                let key = slot.short_key();
                let hash = key.hash(&self.hasher);
                self.add_short(key, hash, slot.count);
            } else {
                let word = &other.arena[slot.lo as usize..slot.lo as usize + len];
                self.add_long(word, slot.hi, slot.count);
            }
        }
    }

    /// Empties the table, keeping its memory: only the filled slots are reset.
    pub fn clear(&mut self) {
        if self.filled.len() * 8 > self.slots.len() {
            self.slots.fill(Slot::default());
        } else {
            for &i in &self.filled {
                self.slots[i as usize] = Slot::default();
            }
        }
        self.filled.clear();
        self.arena.clear();
    }
}
