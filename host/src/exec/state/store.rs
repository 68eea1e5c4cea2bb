//! [`StateStore`]: the state of every stateful operator, by operator name and
//! key group, as codec bytes.
//!
//! Layout (what checkpoints will write and an upgrade carries by name):
//!
//! ```text
//! StateStore
//!   operator name (the node's uid, or `<operator>#<node index>`)
//!     key group g in 0..N (N: the job's key groups; g = murmur2(key) mod N)
//!       key bytes → value bytes, and a "changed since last checkpoint" mark
//! ```
//!
//! Keys are the codec bytes of the key of a `tuple<k, v>` (without the length
//! prefix); values are whatever the operator keeps: for `update_state_by_key`
//! the state's codec bytes, for `map_with_state` an 8-byte little-endian
//! `u64` (the batch time, in ms, at which the key last had new values) and
//! then the state's codec bytes.
//!
//! One key group is an arena of entries `[key length][value length][key]
//! [value]`, the lengths as LEB128 varints (one byte each below 128), in
//! chunks of 16 KiB (the first grown by a quarter up to that, an entry above
//! 2 KiB in a chunk of its own), and a `hashbrown::HashTable` of their
//! addresses (chunk index and place in the chunk, in a `u32`; in a `u64`
//! past 2^18 chunks, 4 GiB of small entries), behind its own `Mutex`: the
//! partitions of a step own disjoint key groups (partition `p` of `P` owns
//! the groups `g mod P = p`), so their tasks never wait for each other. A
//! value rewritten at its width is overwritten in place; other writes and
//! removals leave dead entries, and once those are half the arena, the live
//! ones are copied to new chunks and the table is rebuilt at their number.
//! One million `word123456` keys with `i64` states (18 bytes a key) allocate
//! 31.5 bytes a key (`cargo bench -p sluice --bench state`).

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use hashbrown::HashTable;

use crate::data::KeyGroups;

/// The hasher of the in-memory tables (placement is the partitioner's).
fn hash(key: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x5_7a7e).hash_one(key)
}

/// Garbage below this many bytes is never compacted away.
const MIN_COMPACTION: usize = 4096;

/// Bits of an entry's place in its chunk, in its address. (Fewer in unit
/// tests, so that small groups take several chunks.)
const CHUNK_BITS: u32 = if cfg!(test) { 10 } else { 14 };

/// The size of a chunk of small entries: 16 KiB (1 KiB in unit tests).
const CHUNK: usize = 1 << CHUNK_BITS;

/// An entry larger than this has a chunk of its own, of its size, so that
/// what is left at the end of a chunk is at most this.
const BIG: usize = CHUNK / 8;

/// The first capacity of a key group's first chunk.
const MIN_CHUNK: usize = 64;

/// The largest address a `u32` table holds (in chunk `2^18 - 1`: 4 GiB of
/// small entries): past it, a key group's table holds `u64` addresses.
/// (Lower in unit tests, so that they go through both widths.)
const NARROW_MAX: usize = if cfg!(test) {
    8 << 10
} else {
    u32::MAX as usize
};

/// Appends `n` as a LEB128 varint.
fn put_varint(out: &mut Vec<u8>, mut n: u32) {
    while n >= 0x80 {
        out.push(n as u8 | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

/// Bytes of `n` as a LEB128 varint.
fn varint_len(n: u32) -> usize {
    // 1 for 0..=127, 2 up to 2^14 - 1, …, 5 from 2^28.
    (32 - (n | 1).leading_zeros() as usize).div_ceil(7)
}

/// The varint at `at` (written by [`put_varint`]) and its length.
#[inline]
fn varint(data: &[u8], at: usize) -> (usize, usize) {
    let first = data[at];
    if first < 0x80 {
        return (usize::from(first), 1);
    }
    let mut value = usize::from(first & 0x7f);
    let mut i = 1;
    loop {
        let byte = data[at + i];
        value |= usize::from(byte & 0x7f) << (7 * i);
        i += 1;
        if byte < 0x80 {
            return (value, i);
        }
    }
}

/// A key or value length, which the entries' headers hold in a `u32`.
fn length(bytes: &[u8]) -> u32 {
    // Keys and states come from `Rows`, whose offsets are `u32` too.
    u32::try_from(bytes.len()).expect("keys and states are below 4 GiB (their u32 lengths)")
}

/// Bytes of the entry of `key` and `value`.
fn entry_size(key: &[u8], value: &[u8]) -> usize {
    varint_len(length(key)) + varint_len(length(value)) + key.len() + value.len()
}

/// The entry at `at` of `chunk`: where its key starts, its key length and
/// its value length (the value follows the key).
#[inline]
fn header(chunk: &[u8], at: usize) -> (usize, usize, usize) {
    let (key_len, a) = varint(chunk, at);
    let (value_len, b) = varint(chunk, at + a);
    (at + a + b, key_len, value_len)
}

/// Entries back to back in chunks; an entry's address is its chunk's index
/// and its place in that chunk, `chunk << CHUNK_BITS | place`. Small entries
/// go to the current chunk: the first one grows by a quarter up to
/// [`CHUNK`], the next ones are allocated whole. No chunk moves an entry,
/// and none but the first is reallocated.
#[derive(Default, Clone)]
struct Arena {
    chunks: Vec<Vec<u8>>,
    /// The chunk small entries go to, if any.
    current: Option<usize>,
    /// Bytes of the entries, live and dead.
    used: usize,
}

impl Arena {
    /// The chunk of `address` and the entry's place in it.
    #[inline]
    fn locate(&self, address: usize) -> (&[u8], usize) {
        (&self.chunks[address >> CHUNK_BITS], address & (CHUNK - 1))
    }

    /// The key and value at `address`.
    #[inline]
    fn entry(&self, address: usize) -> (&[u8], &[u8]) {
        let (chunk, at) = self.locate(address);
        let (key, key_len, value_len) = header(chunk, at);
        let value = key + key_len;
        (&chunk[key..value], &chunk[value..value + value_len])
    }

    /// The key at `address`.
    #[inline]
    fn key(&self, address: usize) -> &[u8] {
        self.entry(address).0
    }

    /// Bytes of the entry at `address`, and of its key and value.
    fn sizes(&self, address: usize) -> (usize, usize) {
        let (chunk, at) = self.locate(address);
        let (key, key_len, value_len) = header(chunk, at);
        (key - at + key_len + value_len, key_len + value_len)
    }

    /// The value at `address`, to overwrite in place.
    fn value_mut(&mut self, address: usize) -> &mut [u8] {
        let at = address & (CHUNK - 1);
        let chunk = &mut self.chunks[address >> CHUNK_BITS];
        let (key, key_len, value_len) = header(chunk, at);
        &mut chunk[key + key_len..key + key_len + value_len]
    }

    /// Appends an entry; returns its address.
    fn append(&mut self, key: &[u8], value: &[u8]) -> usize {
        let size = entry_size(key, value);
        let index = if size > BIG {
            self.chunks.push(Vec::with_capacity(size));
            self.chunks.len() - 1
        } else {
            self.room_for(size)
        };
        let chunk = &mut self.chunks[index];
        let at = chunk.len();
        put_varint(chunk, length(key));
        put_varint(chunk, length(value));
        chunk.extend_from_slice(key);
        chunk.extend_from_slice(value);
        debug_assert!(at + size <= CHUNK || at == 0);
        self.used += size;
        index << CHUNK_BITS | at
    }

    /// The chunk with room for a small entry of `size` bytes.
    fn room_for(&mut self, size: usize) -> usize {
        if let Some(index) = self.current {
            let chunk = &mut self.chunks[index];
            let (len, capacity) = (chunk.len(), chunk.capacity());
            // Places in a chunk stay below CHUNK, whatever its capacity.
            if len + size <= CHUNK {
                if capacity - len < size {
                    let grown = (len + size).max(capacity + capacity / 4).min(CHUNK);
                    chunk.reserve_exact(grown - len);
                }
                return index;
            }
            self.chunks.push(Vec::with_capacity(CHUNK));
        } else {
            self.chunks.push(Vec::with_capacity(size.max(MIN_CHUNK)));
        }
        let index = self.chunks.len() - 1;
        self.current = Some(index);
        index
    }

    /// Gives back the room left in the current chunk.
    fn shrink_to_fit(&mut self) {
        if let Some(index) = self.current {
            self.chunks[index].shrink_to_fit();
        }
    }

    /// Bytes allocated for chunks.
    fn allocated(&self) -> usize {
        self.chunks.capacity() * size_of::<Vec<u8>>()
            + self.chunks.iter().map(Vec::capacity).sum::<usize>()
    }
}

/// An entry's address in a table.
trait Address: Copy {
    /// `address`, which the table's width holds (checked before).
    fn new(address: usize) -> Self;
    fn get(self) -> usize;
}

impl Address for u32 {
    fn new(address: usize) -> u32 {
        debug_assert!(address <= NARROW_MAX, "a narrow table's address");
        u32::try_from(address).expect("a narrow table's addresses are u32 (widened before)")
    }

    fn get(self) -> usize {
        self as usize
    }
}

impl Address for u64 {
    fn new(address: usize) -> u64 {
        address as u64
    }

    fn get(self) -> usize {
        self as usize
    }
}

/// The table of a key group's entry addresses: 4 bytes a key while every
/// address is at most [`NARROW_MAX`] (4 GiB of small entries), 8 past it (a
/// key group holds a share of an operator's state, all of it with
/// `--key-groups 1`).
#[derive(Clone)]
enum Addresses {
    Narrow(HashTable<u32>),
    Wide(HashTable<u64>),
}

impl Default for Addresses {
    fn default() -> Addresses {
        Addresses::Narrow(HashTable::new())
    }
}

/// Runs `$body` with `$table` bound to the table, whichever its width.
macro_rules! with_table {
    ($addresses:expr, $table:ident => $body:expr) => {
        match $addresses {
            Addresses::Narrow($table) => $body,
            Addresses::Wide($table) => $body,
        }
    };
}

/// The addresses of a table, whichever its width.
enum AddressIter<'a> {
    Narrow(hashbrown::hash_table::Iter<'a, u32>),
    Wide(hashbrown::hash_table::Iter<'a, u64>),
}

/// Runs `$body` with `$iter` bound to the iterator, whichever its width.
macro_rules! with_iter {
    ($iter:expr, $i:ident => $body:expr) => {
        match $iter {
            AddressIter::Narrow($i) => $body,
            AddressIter::Wide($i) => $body,
        }
    };
}

impl Iterator for AddressIter<'_> {
    type Item = usize;

    #[inline]
    fn next(&mut self) -> Option<usize> {
        with_iter!(self, i => i.next().map(|&at| at.get()))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        with_iter!(self, i => i.size_hint())
    }
}

impl Addresses {
    /// An empty table with room for `capacity` addresses, `u64` ones if
    /// `wide`.
    fn with_capacity(wide: bool, capacity: usize) -> Addresses {
        if wide {
            Addresses::Wide(HashTable::with_capacity(capacity))
        } else {
            Addresses::Narrow(HashTable::with_capacity(capacity))
        }
    }

    fn is_wide(&self) -> bool {
        matches!(self, Addresses::Wide(_))
    }

    fn len(&self) -> usize {
        with_table!(self, t => t.len())
    }

    fn allocation_size(&self) -> usize {
        with_table!(self, t => t.allocation_size())
    }

    /// The address of `key` (hashed `h`).
    #[inline]
    fn find(&self, arena: &Arena, h: u64, key: &[u8]) -> Option<usize> {
        with_table!(self, t => t
            .find(h, |&at| arena.key(at.get()) == key)
            .map(|&at| at.get()))
    }

    /// Every address.
    fn iter(&self) -> AddressIter<'_> {
        match self {
            Addresses::Narrow(t) => AddressIter::Narrow(t.iter()),
            Addresses::Wide(t) => AddressIter::Wide(t.iter()),
        }
    }

    /// Adds the entry at `address`, whose key (hashed `h`) is not in the
    /// table.
    fn insert_new(&mut self, arena: &Arena, h: u64, address: usize) {
        let rehash = |at: usize| hash(arena.key(at));
        with_table!(self, t => {
            t.insert_unique(h, Address::new(address), |&at| rehash(at.get()));
        })
    }

    /// Moves `key` (hashed `h`, in the table) to the entry at `address`.
    fn relocate(&mut self, arena: &Arena, h: u64, key: &[u8], address: usize) {
        with_table!(self, t => {
            let slot = t
                .find_mut(h, |&at| arena.key(at.get()) == key)
                .expect("the key is in the table");
            *slot = Address::new(address);
        })
    }

    /// Removes `key` (hashed `h`); returns its address.
    fn remove(&mut self, arena: &Arena, h: u64, key: &[u8]) -> Option<usize> {
        with_table!(self, t => t
            .find_entry(h, |&at| arena.key(at.get()) == key)
            .ok()
            .map(|found| found.remove().0.get()))
    }

    /// The same addresses in a table of `u64` addresses if `wide`, else
    /// `u32`, sized for them.
    fn rebuilt(&self, arena: &Arena, wide: bool) -> Addresses {
        let mut table = Addresses::with_capacity(wide, self.len());
        for at in self.iter() {
            table.insert_new(arena, hash(arena.key(at)), at);
        }
        table
    }

    /// Makes room for `additional` more addresses.
    fn reserve(&mut self, arena: &Arena, additional: usize) {
        with_table!(self, t => t.reserve(additional, |&at| hash(arena.key(at.get()))))
    }

    /// Frees what the table has no use for.
    fn shrink_to_fit(&mut self, arena: &Arena) {
        with_table!(self, t => t.shrink_to_fit(|&at| hash(arena.key(at.get()))))
    }
}

/// The keys and values of one operator in one key group: entries
/// `[key length][value length][key][value]` (varint lengths) back to back
/// in the chunks of an arena, and a table of their addresses. A value
/// rewritten at its width is overwritten in place; otherwise (or when a key
/// is removed) the old entry becomes garbage, compacted away once it is half
/// the arena.
#[derive(Default, Clone)]
pub struct KeyGroupState {
    addresses: Addresses,
    arena: Arena,
    /// Bytes of the live keys and values.
    bytes: usize,
    /// Bytes of dead entries in the arena.
    garbage: usize,
    changed: bool,
}

impl KeyGroupState {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        let at = self.addresses.find(&self.arena, hash(key), key)?;
        Some(self.arena.entry(at).1)
    }

    /// Appends an entry; returns its address, which the table can hold.
    fn append(&mut self, key: &[u8], value: &[u8]) -> usize {
        let at = self.arena.append(key, value);
        if at > NARROW_MAX && !self.addresses.is_wide() {
            self.addresses = self.addresses.rebuilt(&self.arena, true);
        }
        at
    }

    /// Sets the value of `key`. Setting the value it has leaves the group
    /// unchanged (a checkpoint need not write it again).
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        let h = hash(key);
        match self.addresses.find(&self.arena, h, key) {
            Some(at) => {
                let slot = self.arena.value_mut(at);
                let old = slot.len();
                if old == value.len() {
                    if slot != value {
                        slot.copy_from_slice(value);
                        self.changed = true;
                    }
                    return;
                }
                self.changed = true;
                self.garbage += self.arena.sizes(at).0;
                self.bytes = self.bytes - old + value.len();
                let new = self.append(key, value);
                self.addresses.relocate(&self.arena, h, key, new);
                self.compact_if_wasteful();
            }
            None => {
                self.changed = true;
                let at = self.append(key, value);
                self.addresses.insert_new(&self.arena, h, at);
                self.bytes += key.len() + value.len();
            }
        }
    }

    /// Removes `key`; true when it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        match self.addresses.remove(&self.arena, hash(key), key) {
            Some(at) => {
                let (entry, bytes) = self.arena.sizes(at);
                self.garbage += entry;
                self.bytes -= bytes;
                self.changed = true;
                self.compact_if_wasteful();
                true
            }
            None => false,
        }
    }

    /// Compacts the arena once its dead entries are half of it.
    fn compact_if_wasteful(&mut self) {
        if self.garbage >= MIN_COMPACTION && self.garbage * 2 >= self.arena.used {
            self.compact();
        }
    }

    /// Copies the live entries to a new arena (its current chunk left
    /// without room to spare) and rebuilds the table at their number, with
    /// the width their addresses need.
    fn compact(&mut self) {
        let mut arena = Arena::default();
        let moved: Vec<usize> = self
            .addresses
            .iter()
            .map(|at| {
                let (key, value) = self.arena.entry(at);
                arena.append(key, value)
            })
            .collect();
        arena.shrink_to_fit();
        let wide = moved.iter().any(|&at| at > NARROW_MAX);
        let mut addresses = Addresses::with_capacity(wide, moved.len());
        for at in moved {
            addresses.insert_new(&arena, hash(arena.key(at)), at);
        }
        debug_assert_eq!(arena.used, self.arena.used - self.garbage);
        self.addresses = addresses;
        self.arena = arena;
        self.garbage = 0;
    }

    /// Makes room in the table for `keys` more keys, so that filling a key
    /// group of known size (a restore) sizes it once.
    pub fn reserve(&mut self, keys: usize) {
        self.addresses.reserve(&self.arena, keys);
    }

    /// Frees the room left in the arena's current chunk and what the table
    /// has no use for (the dead entries stay until a compaction).
    pub fn shrink_to_fit(&mut self) {
        self.arena.shrink_to_fit();
        self.addresses.shrink_to_fit(&self.arena);
    }

    /// Every key and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.addresses.iter().map(|at| self.arena.entry(at))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.addresses.len()
    }

    /// True when no key has a value.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes of the keys and values held (not counting the table).
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Bytes allocated: the arena's chunks and the table.
    pub fn allocated(&self) -> usize {
        self.arena.allocated() + self.addresses.allocation_size()
    }

    /// True when a key was set or removed since [`KeyGroupState::mark_unchanged`]
    /// (a checkpoint writes only the changed key groups).
    pub fn is_changed(&self) -> bool {
        self.changed
    }

    /// Clears the changed mark (after a checkpoint wrote this key group).
    pub fn mark_unchanged(&mut self) {
        self.changed = false;
    }

    /// Removes every key, and frees the arena and the table.
    pub fn clear(&mut self) {
        if !self.is_empty() {
            self.changed = true;
        }
        self.addresses = Addresses::default();
        self.arena = Arena::default();
        self.bytes = 0;
        self.garbage = 0;
    }
}

/// The key groups that partition `p` of `P` owns (`g mod P = p`), locked:
/// what one partition's task of a keyed step reads and writes, as one map.
pub struct OwnedGroups<'a> {
    key_groups: KeyGroups,
    partitions: usize,
    owner: usize,
    /// Key group `p + i * P` at index `i`.
    groups: Vec<MutexGuard<'a, KeyGroupState>>,
}

impl OwnedGroups<'_> {
    /// The group of `key`, which partition `p` owns by construction: keys
    /// reach a partition through the partitioner.
    fn slot(&self, key: &[u8]) -> usize {
        let group = self.key_groups.of(key) as usize;
        debug_assert_eq!(
            group % self.partitions,
            self.owner,
            "a key reached a partition that does not own its key group"
        );
        group / self.partitions
    }

    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.groups[self.slot(key)].get(key)
    }

    /// Whether `key` has a value.
    pub fn contains_key(&self, key: &[u8]) -> bool {
        self.get(key).is_some()
    }

    /// Sets the value of `key`.
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        let slot = self.slot(key);
        self.groups[slot].insert(key, value);
    }

    /// Keeps the keys for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&[u8], &[u8]) -> bool) {
        for group in &mut self.groups {
            let dropped: Vec<Vec<u8>> = group
                .iter()
                .filter(|(k, v)| !keep(k, v))
                .map(|(k, _)| k.to_vec())
                .collect();
            for key in dropped {
                group.remove(&key);
            }
        }
    }

    /// Removes every key.
    pub fn clear(&mut self) {
        self.groups.iter_mut().for_each(|g| g.clear());
    }

    /// Every key and its value, group by group.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.groups.iter().flat_map(|g| g.iter())
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.groups.iter().map(|g| g.len()).sum()
    }

    /// True when no key has a value.
    pub fn is_empty(&self) -> bool {
        self.groups.iter().all(|g| g.is_empty())
    }
}

/// The state of one operator: one [`KeyGroupState`] per key group.
pub struct OperatorState {
    key_groups: KeyGroups,
    groups: Box<[Mutex<KeyGroupState>]>,
}

impl OperatorState {
    fn new(key_groups: KeyGroups) -> OperatorState {
        OperatorState {
            key_groups,
            groups: (0..key_groups.get())
                .map(|_| Mutex::new(KeyGroupState::default()))
                .collect(),
        }
    }

    /// Key group `group` (in `0..N`), locked. A panic while it was held
    /// (a bug) leaves it as it was at that moment.
    pub fn group(&self, group: u32) -> MutexGuard<'_, KeyGroupState> {
        self.groups[group as usize]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The key group of `key`, locked.
    pub fn group_of(&self, key: &[u8]) -> MutexGuard<'_, KeyGroupState> {
        self.group(self.key_groups.of(key))
    }

    /// The key groups partition `p` of `partitions` owns, locked, as one map
    /// (`partitions` is at most the key groups, as validation ensures).
    pub fn owned_by(&self, p: usize, partitions: usize) -> OwnedGroups<'_> {
        OwnedGroups {
            key_groups: self.key_groups,
            partitions,
            owner: p,
            groups: (p..self.key_groups.get() as usize)
                .step_by(partitions.max(1))
                .map(|g| self.group(g as u32))
                .collect(),
        }
    }

    /// Keys and bytes over all key groups.
    pub fn stats(&self) -> StateStats {
        let mut stats = StateStats::default();
        for g in 0..self.key_groups.get() {
            let group = self.group(g);
            stats.keys += group.len() as u64;
            stats.bytes += group.bytes() as u64;
        }
        stats
    }
}

/// How much state an operator holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateStats {
    /// Number of keys.
    pub keys: u64,
    /// Bytes of keys and values (not counting the tables' overhead).
    pub bytes: u64,
}

/// The state of every stateful operator of a job, by operator name and key
/// group (see the module's documentation for the layout).
pub struct StateStore {
    key_groups: KeyGroups,
    operators: RwLock<BTreeMap<String, Arc<OperatorState>>>,
}

impl Default for StateStore {
    fn default() -> StateStore {
        StateStore::new(KeyGroups::default())
    }
}

impl StateStore {
    /// An empty store for a job with `key_groups` key groups.
    pub fn new(key_groups: KeyGroups) -> StateStore {
        StateStore {
            key_groups,
            operators: RwLock::new(BTreeMap::new()),
        }
    }

    /// The job's key groups, `N`.
    pub fn key_groups(&self) -> KeyGroups {
        self.key_groups
    }

    /// The state kept under `name`, created empty on first use.
    pub fn operator(&self, name: &str) -> Arc<OperatorState> {
        if let Some(op) = self
            .operators
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .get(name)
        {
            return op.clone();
        }
        self.operators
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(OperatorState::new(self.key_groups)))
            .clone()
    }

    /// The value of `key` under `name`.
    pub fn get(&self, name: &str, key: &[u8]) -> Option<Vec<u8>> {
        self.operator(name)
            .group_of(key)
            .get(key)
            .map(<[u8]>::to_vec)
    }

    /// Sets the value of `key` under `name`.
    pub fn insert(&self, name: &str, key: &[u8], value: &[u8]) {
        self.operator(name).group_of(key).insert(key, value)
    }

    /// Removes `key` under `name`; true when it was there.
    pub fn remove(&self, name: &str, key: &[u8]) -> bool {
        self.operator(name).group_of(key).remove(key)
    }

    /// The names that hold state, in order.
    pub fn names(&self) -> Vec<String> {
        self.operators
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .keys()
            .cloned()
            .collect()
    }

    /// Removes and returns the state kept under `name` (an upgrade moves it
    /// to the new version's store).
    pub fn take(&self, name: &str) -> Option<Arc<OperatorState>> {
        self.operators
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .remove(name)
    }

    /// Keeps `state` under `name`, replacing what was there.
    pub fn put(&self, name: &str, state: Arc<OperatorState>) {
        self.operators
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .insert(name.to_string(), state);
    }

    /// A copy of every operator's state (kept to roll an upgrade back),
    /// with every key group marked changed: whatever checkpoint is written
    /// after it is restored writes all of it.
    pub fn deep_copy(&self) -> StateStore {
        let operators = self
            .operators
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(name, op)| {
                let groups = (0..op.key_groups.get())
                    .map(|g| {
                        let mut group = op.group(g).clone();
                        group.changed = true;
                        Mutex::new(group)
                    })
                    .collect();
                let copy = OperatorState {
                    key_groups: op.key_groups,
                    groups,
                };
                (name.clone(), Arc::new(copy))
            })
            .collect();
        StateStore {
            key_groups: self.key_groups,
            operators: RwLock::new(operators),
        }
    }

    /// Keys and bytes of every operator, by name (for logs and metrics).
    pub fn stats(&self) -> Vec<(String, StateStats)> {
        let operators: Vec<(String, Arc<OperatorState>)> = self
            .operators
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .iter()
            .map(|(name, op)| (name.clone(), op.clone()))
            .collect();
        operators
            .into_iter()
            .map(|(name, op)| (name, op.stats()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Partitioner;

    #[test]
    fn values_are_kept_per_name_and_in_the_key_group_of_their_key() {
        let groups = KeyGroups::new(16).unwrap();
        let store = StateStore::new(groups);
        store.insert("a", b"foobar", b"1");
        store.insert("b", b"foobar", b"2");
        assert_eq!(store.get("a", b"foobar").as_deref(), Some(&b"1"[..]));
        assert_eq!(store.get("b", b"foobar").as_deref(), Some(&b"2"[..]));
        let op = store.operator("a");
        for g in 0..16 {
            let expected = usize::from(g == groups.of(b"foobar"));
            assert_eq!(op.group(g).len(), expected, "key group {g}");
        }
        assert!(op.group(groups.of(b"foobar")).is_changed());
        assert_eq!(store.names(), ["a", "b"]);
    }

    #[test]
    fn insert_replace_and_remove_keep_counts_and_bytes() {
        let store = StateStore::new(KeyGroups::new(4).unwrap());
        store.insert("s", b"key", b"12345678");
        store.insert("s", b"key", b"87654321"); // same width: in place
        store.insert("s", b"other", b"x");
        assert_eq!(
            store.operator("s").stats(),
            StateStats {
                keys: 2,
                bytes: 3 + 8 + 5 + 1
            }
        );
        store.insert("s", b"other", b"longer"); // another width
        assert_eq!(store.get("s", b"key").as_deref(), Some(&b"87654321"[..]));
        assert_eq!(store.get("s", b"other").as_deref(), Some(&b"longer"[..]));
        assert_eq!(store.operator("s").stats().bytes, 3 + 8 + 5 + 6);
        assert!(store.remove("s", b"key"));
        assert!(!store.remove("s", b"key"));
        assert_eq!(store.get("s", b"key"), None);
        assert_eq!(
            store.stats(),
            [(
                "s".to_string(),
                StateStats {
                    keys: 1,
                    bytes: 5 + 6
                }
            )]
        );
    }

    #[test]
    fn the_changed_mark_is_set_by_writes_and_cleared_by_a_checkpoint() {
        let store = StateStore::new(KeyGroups::new(1).unwrap());
        let op = store.operator("s");
        assert!(!op.group(0).is_changed());
        op.group(0).insert(b"k", b"v");
        op.group(0).mark_unchanged();
        assert!(!op.group(0).remove(b"absent"));
        assert!(
            !op.group(0).is_changed(),
            "removing nothing changes nothing"
        );
        assert!(op.group(0).remove(b"k"));
        assert!(op.group(0).is_changed());
        op.group(0).insert(b"k", b"v1");
        op.group(0).mark_unchanged();
        op.group(0).insert(b"k", b"v1");
        assert!(
            !op.group(0).is_changed(),
            "writing the same value changes nothing"
        );
        op.group(0).insert(b"k", b"v2");
        assert!(op.group(0).is_changed(), "a new value of the same width");
        op.group(0).mark_unchanged();
        op.group(0).insert(b"k", b"v10");
        assert!(op.group(0).is_changed(), "a new value of another width");
    }

    proptest::proptest! {
        #[test]
        fn a_key_group_holds_what_a_btreemap_holds_through_rewrites_and_compactions(
            ops in proptest::collection::vec(
                (0u16..300, proptest::option::of(proptest::collection::vec(0u8..=255, 0..40))),
                0..3000,
            ),
        ) {
            let mut group = KeyGroupState::default();
            let mut reference = BTreeMap::new();
            for (key, value) in ops {
                let key = format!("key{key}").into_bytes();
                match value {
                    Some(value) => {
                        group.insert(&key, &value);
                        reference.insert(key, value);
                    }
                    None => {
                        proptest::prop_assert_eq!(group.remove(&key), reference.remove(&key).is_some());
                    }
                }
            }
            let held: BTreeMap<Vec<u8>, Vec<u8>> =
                group.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
            proptest::prop_assert_eq!(&held, &reference);
            for (k, v) in &reference {
                proptest::prop_assert_eq!(group.get(k), Some(&v[..]));
            }
            let live: usize = reference.iter().map(|(k, v)| k.len() + v.len()).sum();
            proptest::prop_assert_eq!(group.bytes(), live);
            // Dead entries never outweigh the live ones for long.
            let entries: usize = reference.iter().map(|(k, v)| entry_size(k, v)).sum();
            proptest::prop_assert!(
                group.arena.used <= 2 * entries + MIN_COMPACTION + 2 + 8 + 40,
                "arena {} for {} bytes of live entries", group.arena.used, entries
            );
        }
    }

    /// The keys of [`a_key_group_is_a_btreemap_of_bytes`]: lengths around
    /// the varints' steps (128, 16384), four keys of each length but the
    /// empty one.
    fn key_of(i: u8) -> Vec<u8> {
        const LENGTHS: [usize; 8] = [0, 1, 8, 10, 127, 128, 300, 16384];
        let len = LENGTHS[usize::from(i) % LENGTHS.len()];
        let mut key = vec![b'k'; len];
        if let Some(last) = key.last_mut() {
            *last = i;
        }
        key
    }

    #[derive(Debug, Clone)]
    enum Op {
        /// Sets a key (by index into [`key_of`]'s keys) to a value.
        Put(u8, Vec<u8>),
        /// Sets a key to another value of the width of its value (or sets it
        /// to that value when it has none).
        Rewrite(u8, u8),
        Remove(u8),
        Compact,
        ShrinkToFit,
        MarkUnchanged,
        Clear,
    }

    fn op() -> impl proptest::strategy::Strategy<Value = Op> {
        use proptest::prelude::*;
        let value = prop_oneof![
            2 => Just(Vec::new()),
            8 => proptest::collection::vec(any::<u8>(), 1..16),
            8 => proptest::collection::vec(any::<u8>(), 8..=8),
            4 => proptest::collection::vec(any::<u8>(), 120..400),
            1 => proptest::collection::vec(any::<u8>(), 16380..16400),
        ];
        let key = 0u8..32;
        prop_oneof![
            12 => (key.clone(), value).prop_map(|(k, v)| Op::Put(k, v)),
            10 => (key.clone(), any::<u8>()).prop_map(|(k, b)| Op::Rewrite(k, b)),
            6 => key.prop_map(Op::Remove),
            1 => Just(Op::Compact),
            1 => Just(Op::ShrinkToFit),
            2 => Just(Op::MarkUnchanged),
            1 => Just(Op::Clear),
        ]
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]
        /// Against a `BTreeMap`, after every operation: every key's value,
        /// the iteration, the counts of keys and bytes, the changed mark,
        /// and what the arena and the table hold and allocate.
        #[test]
        fn a_key_group_is_a_btreemap_of_bytes(
            ops in proptest::collection::vec(op(), 0..400),
        ) {
            let keys: Vec<Vec<u8>> = (0..32).map(key_of).collect();
            let mut group = KeyGroupState::default();
            let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
            let mut changed = false;
            for op in ops {
                match op {
                    Op::Put(k, value) => {
                        let key = keys[usize::from(k)].clone();
                        changed |= model.get(&key) != Some(&value);
                        group.insert(&key, &value);
                        model.insert(key, value);
                    }
                    Op::Rewrite(k, byte) => {
                        let key = keys[usize::from(k)].clone();
                        let value = match model.get(&key) {
                            Some(old) => old.iter().map(|b| b.wrapping_add(byte)).collect(),
                            None => vec![byte; 8],
                        };
                        changed |= model.get(&key) != Some(&value);
                        let before = (group.arena.used, group.allocated());
                        let in_place = model.contains_key(&key);
                        group.insert(&key, &value);
                        if in_place {
                            proptest::prop_assert_eq!(
                                (group.arena.used, group.allocated()), before, "rewritten in place"
                            );
                        }
                        model.insert(key, value);
                    }
                    Op::Remove(k) => {
                        let key = keys[usize::from(k)].clone();
                        let was = model.remove(&key).is_some();
                        changed |= was;
                        proptest::prop_assert_eq!(group.remove(&key), was);
                    }
                    Op::Compact => {
                        group.compact();
                        proptest::prop_assert_eq!(group.garbage, 0);
                        if let Some(current) = group.arena.current {
                            let chunk = &group.arena.chunks[current];
                            proptest::prop_assert_eq!(chunk.capacity(), chunk.len());
                        }
                    }
                    Op::ShrinkToFit => group.shrink_to_fit(),
                    Op::MarkUnchanged => {
                        group.mark_unchanged();
                        changed = false;
                    }
                    Op::Clear => {
                        changed |= !model.is_empty();
                        group.clear();
                        model.clear();
                        proptest::prop_assert_eq!(group.allocated(), 0);
                    }
                }
                // Every key, held or not.
                for key in &keys {
                    proptest::prop_assert_eq!(group.get(key), model.get(key).map(|v| &v[..]));
                }
                let mut held: Vec<(Vec<u8>, Vec<u8>)> =
                    group.iter().map(|(k, v)| (k.to_vec(), v.to_vec())).collect();
                held.sort();
                let expected: Vec<(Vec<u8>, Vec<u8>)> = model.clone().into_iter().collect();
                proptest::prop_assert_eq!(held, expected);
                proptest::prop_assert_eq!(group.len(), model.len());
                proptest::prop_assert_eq!(group.is_empty(), model.is_empty());
                proptest::prop_assert_eq!(group.is_changed(), changed);
                let live: usize = model.iter().map(|(k, v)| k.len() + v.len()).sum();
                proptest::prop_assert_eq!(group.bytes(), live);
                // The arena: the live entries and the garbage, no more;
                // garbage is compacted away once it is half the arena.
                let entries: usize = model.iter().map(|(k, v)| entry_size(k, v)).sum();
                let arena = &group.arena;
                proptest::prop_assert_eq!(arena.used, entries + group.garbage);
                proptest::prop_assert_eq!(
                    arena.used,
                    arena.chunks.iter().map(Vec::len).sum::<usize>()
                );
                proptest::prop_assert!(
                    group.garbage < MIN_COMPACTION || group.garbage * 2 < arena.used
                );
                // Room to spare: less than a small entry at the end of a
                // chunk, and in the current one, a quarter grown (the first
                // chunk) or what is left of a whole one.
                for (i, chunk) in arena.chunks.iter().enumerate() {
                    let (len, capacity) = (chunk.len(), chunk.capacity());
                    if Some(i) == arena.current {
                        proptest::prop_assert!(
                            capacity <= (len + len / 4).max(MIN_CHUNK) || capacity == CHUNK,
                            "current chunk: capacity {} for {} bytes", capacity, len
                        );
                    } else {
                        proptest::prop_assert!(capacity - len <= BIG, "{} {}", capacity, len);
                    }
                    proptest::prop_assert!(capacity <= CHUNK || len == capacity);
                }
                // Addresses are u32 until one is past the limit.
                let wide = group.addresses.iter().any(|at| at > NARROW_MAX);
                if !group.addresses.is_wide() {
                    proptest::prop_assert!(!wide);
                }
            }
        }
    }

    #[test]
    fn varints_take_one_byte_below_128_and_five_at_most() {
        for (n, len) in [
            (0, 1),
            (1, 1),
            (127, 1),
            (128, 2),
            (16383, 2),
            (16384, 3),
            ((1 << 21) - 1, 3),
            (1 << 21, 4),
            ((1 << 28) - 1, 4),
            (1 << 28, 5),
            (u32::MAX, 5),
        ] {
            let mut out = vec![0xff];
            put_varint(&mut out, n);
            assert_eq!(out.len(), 1 + len, "{n}");
            assert_eq!(varint_len(n), len, "{n}");
            assert_eq!(varint(&out, 1), (n as usize, len), "{n}");
        }
    }

    #[test]
    fn a_group_past_u32_addresses_widens_them_and_narrows_them_when_compacted() {
        let mut group = KeyGroupState::default();
        let value = [7u8; 100];
        let keys: Vec<Vec<u8>> = (0..2 * NARROW_MAX / 100)
            .map(|i| format!("key{i}").into_bytes())
            .collect();
        for key in &keys {
            group.insert(key, &value);
        }
        assert!(group.addresses.is_wide());
        for key in &keys {
            assert_eq!(group.get(key), Some(&value[..]));
        }
        // Removing most keys compacts the arena below the limit.
        for key in &keys[10..] {
            assert!(group.remove(key));
        }
        assert!(!group.addresses.is_wide());
        assert_eq!(group.len(), 10);
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(group.get(key).is_some(), i < 10);
        }
        // And the table shrank with them.
        let Addresses::Narrow(table) = &group.addresses else {
            unreachable!()
        };
        assert!(table.capacity() < 64, "{}", table.capacity());
    }

    #[test]
    fn a_reserved_group_fills_its_table_without_growing_it_and_shrinks_to_fit() {
        let mut group = KeyGroupState::default();
        group.reserve(300);
        let table = group.addresses.allocation_size();
        for i in 0..300i64 {
            group.insert(format!("word{i:06}").as_bytes(), &i.to_le_bytes());
        }
        assert!(!group.addresses.is_wide());
        assert_eq!(group.addresses.allocation_size(), table);
        group.shrink_to_fit();
        let current = &group.arena.chunks[group.arena.current.unwrap()];
        assert_eq!(current.capacity(), current.len());
        assert_eq!(group.arena.used, 300 * 20);
        for i in 0..300i64 {
            assert_eq!(
                group.get(format!("word{i:06}").as_bytes()),
                Some(&i.to_le_bytes()[..])
            );
        }
    }

    #[test]
    fn partitions_write_their_own_key_groups_in_parallel() {
        let groups = KeyGroups::new(32).unwrap();
        let store = StateStore::new(groups);
        let op = store.operator("s");
        let partitioner = Partitioner::new(groups, 4);
        let keys: Vec<String> = (0..2000).map(|i| format!("word{i}")).collect();
        std::thread::scope(|s| {
            for p in 0..4 {
                let (op, keys) = (&op, &keys);
                s.spawn(move || {
                    for key in keys
                        .iter()
                        .filter(|k| partitioner.partition_of(k.as_bytes()) == p)
                    {
                        op.group_of(key.as_bytes())
                            .insert(key.as_bytes(), &(p as u64).to_le_bytes());
                    }
                });
            }
        });
        assert_eq!(op.stats().keys, 2000);
        for g in 0..32 {
            for (key, value) in op.group(g).iter() {
                assert_eq!(groups.of(key), g);
                let p = u64::from_le_bytes(value.try_into().unwrap());
                assert_eq!(p as usize, partitioner.partition_of_group(g));
            }
        }
    }
}
