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
//! One key group is an arena of entries `[u32 key length][u32 value
//! length][key][value]` and a `hashbrown::HashTable` of their offsets, behind
//! its own `Mutex`: the partitions of a step own disjoint key groups
//! (partition `p` of `P` owns the groups `g mod P = p`), so their tasks never
//! wait for each other.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard, RwLock};

use hashbrown::HashTable;

use crate::data::KeyGroups;

/// The hasher of the in-memory tables (placement is the partitioner's).
fn hash(key: &[u8]) -> u64 {
    foldhash::fast::FixedState::with_seed(0x5_7a7e).hash_one(key)
}

/// Bytes before an entry's key in the arena: its key length and its value
/// length, `u32` little-endian each.
const HEADER: usize = 8;

/// Garbage below this many bytes is never compacted away.
const MIN_COMPACTION: usize = 4096;

fn u32_at(data: &[u8], at: usize) -> usize {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes")) as usize
}

/// The key and value of the entry at `at`.
fn entry(data: &[u8], at: usize) -> (&[u8], &[u8]) {
    let (key_len, value_len) = (u32_at(data, at), u32_at(data, at + 4));
    let key = at + HEADER;
    (
        &data[key..key + key_len],
        &data[key + key_len..key + key_len + value_len],
    )
}

fn entry_len(data: &[u8], at: usize) -> usize {
    HEADER + u32_at(data, at) + u32_at(data, at + 4)
}

/// The keys and values of one operator in one key group: entries
/// `[u32 key length][u32 value length][key][value]` back to back in an
/// arena, and a table of their offsets. A value rewritten at its width is
/// overwritten in place; otherwise (or when a key is removed) the old entry
/// becomes garbage, compacted away once it is half the arena.
#[derive(Default, Clone)]
pub struct KeyGroupState {
    table: HashTable<usize>,
    arena: Vec<u8>,
    /// Bytes of the live keys and values.
    bytes: usize,
    /// Bytes of dead entries in the arena.
    garbage: usize,
    changed: bool,
}

impl KeyGroupState {
    /// The value of `key`.
    pub fn get(&self, key: &[u8]) -> Option<&[u8]> {
        self.table
            .find(hash(key), |&at| entry(&self.arena, at).0 == key)
            .map(|&at| entry(&self.arena, at).1)
    }

    /// Appends an entry; returns its offset.
    fn append(&mut self, key: &[u8], value: &[u8]) -> usize {
        let at = self.arena.len();
        let len = |bytes: &[u8]| {
            u32::try_from(bytes.len())
                .expect("keys and states are below 4 GiB (their u32 length prefixes)")
        };
        self.arena.extend_from_slice(&len(key).to_le_bytes());
        self.arena.extend_from_slice(&len(value).to_le_bytes());
        self.arena.extend_from_slice(key);
        self.arena.extend_from_slice(value);
        at
    }

    /// Sets the value of `key`. Setting the value it has leaves the group
    /// unchanged (a checkpoint need not write it again).
    pub fn insert(&mut self, key: &[u8], value: &[u8]) {
        let h = hash(key);
        let arena = &self.arena;
        match self.table.find(h, |&at| entry(arena, at).0 == key).copied() {
            Some(at) => {
                let old = u32_at(&self.arena, at + 4);
                if old == value.len() {
                    let start = at + HEADER + key.len();
                    let slot = &mut self.arena[start..start + old];
                    if slot != value {
                        slot.copy_from_slice(value);
                        self.changed = true;
                    }
                    return;
                }
                self.changed = true;
                self.garbage += HEADER + key.len() + old;
                self.bytes = self.bytes - old + value.len();
                let new = self.append(key, value);
                let arena = &self.arena;
                let slot = self
                    .table
                    .find_mut(h, |&at| entry(arena, at).0 == key)
                    .expect("found above");
                *slot = new;
                self.compact_if_wasteful();
            }
            None => {
                self.changed = true;
                let at = self.append(key, value);
                let arena = &self.arena;
                self.table
                    .insert_unique(h, at, |&at| hash(entry(arena, at).0));
                self.bytes += key.len() + value.len();
            }
        }
    }

    /// Removes `key`; true when it was there.
    pub fn remove(&mut self, key: &[u8]) -> bool {
        let arena = &self.arena;
        match self
            .table
            .find_entry(hash(key), |&at| entry(arena, at).0 == key)
        {
            Ok(found) => {
                let (at, _) = found.remove();
                let len = entry_len(&self.arena, at);
                self.garbage += len;
                self.bytes -= len - HEADER;
                self.changed = true;
                self.compact_if_wasteful();
                true
            }
            Err(_) => false,
        }
    }

    /// Rewrites the arena without its dead entries once they are half of it.
    fn compact_if_wasteful(&mut self) {
        if self.garbage < MIN_COMPACTION || self.garbage * 2 < self.arena.len() {
            return;
        }
        let mut arena = Vec::with_capacity(self.arena.len() - self.garbage);
        for at in self.table.iter_mut() {
            let len = entry_len(&self.arena, *at);
            let new = arena.len();
            arena.extend_from_slice(&self.arena[*at..*at + len]);
            *at = new;
        }
        self.arena = arena;
        self.garbage = 0;
    }

    /// Every key and its value, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.table.iter().map(|&at| entry(&self.arena, at))
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True when no key has a value.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Bytes of the keys and values held (not counting the table).
    pub fn bytes(&self) -> usize {
        self.bytes
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

    /// Removes every key.
    pub fn clear(&mut self) {
        if !self.is_empty() {
            self.changed = true;
        }
        self.table.clear();
        self.arena.clear();
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
            proptest::prop_assert!(
                group.arena.len() <= 2 * (live + HEADER * reference.len()) + MIN_COMPACTION + 8 + 40 + 8,
                "arena {} for {} live bytes", group.arena.len(), live
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
