//! The map-side combine of `reduce_by_key` (a stage of a chain) and its
//! `reduce-groups`.

use std::any::Any;
use std::cell::RefCell;
use std::hash::{BuildHasher, Hash};
use std::rc::Rc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry::{Occupied, Vacant};

use super::{
    BATCH, ChainFn, EncodedBatch, ErasedSink, Function, OutputSlot, Sink, encoder, erase, feed,
    unerase,
};
use crate::bindings::sluice::plugin::types::Rows;
use crate::codec::{Data, DecodeError, for_each_list_element, split_pair};
use crate::rows::{decode_error, end_offset, records};
use crate::runtime::enter_stage;

/// The hasher of the map-side combine's table.
type KeyHasher = foldhash::fast::RandomState;

/// The reducer of `reduce_by_key`.
pub(crate) struct KeyReducer<K, V, F, S = KeyHasher> {
    shared: Rc<Combiner<K, V, F, S>>,
}

/// What the combine sinks of a `reduce_by_key` reducer share.
struct Combiner<K, V, F, S> {
    f: F,
    hasher: S,
    /// Whether the combine compares keys by their encodings, which is the
    /// same as comparing them with `Eq` (equal keys encode equally, and
    /// `decode(encode(k)) == k`) and how the host groups them: for every
    /// codec but `json`, whose encoding costs more than `Hash` and `Eq`.
    by_bytes: bool,
    /// The combine's storage, kept between calls so that its capacity is
    /// reused: a sink takes it while it runs and gives it back, empty, when
    /// it is dropped.
    storage: RefCell<CombineStorage<K, V>>,
}

/// The distinct keys of a partition and their merged values.
///
/// Keys compared by their encodings are kept as encodings only (in the
/// table's slots, or in `long_keys`): a key pushed into the combine is
/// dropped as soon as it is merged, and the output is written from the
/// encodings. Keys compared with `Eq` are kept whole, in `keys`.
struct CombineStorage<K, V> {
    /// One entry per distinct key.
    table: HashTable<Slot<V>>,
    /// The distinct keys' reprs, in order of first appearance (by bytes).
    reprs: Vec<KeyRepr>,
    /// The distinct keys, in order of first appearance (by `Eq`).
    keys: Vec<K>,
    /// The encodings of more than [`SHORT_KEY`] bytes, back to back.
    long_keys: Vec<u8>,
    /// Where a key that is not a string is encoded.
    scratch: Vec<u8>,
    /// The merged values in order of first appearance, while they are
    /// pushed on.
    values: Vec<Option<V>>,
}

impl<K, V> Default for CombineStorage<K, V> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
            reprs: Vec::new(),
            keys: Vec::new(),
            long_keys: Vec::new(),
            scratch: Vec::new(),
            values: Vec::new(),
        }
    }
}

impl<K, V> CombineStorage<K, V> {
    fn clear(&mut self) {
        self.table.clear();
        self.reprs.clear();
        self.keys.clear();
        self.long_keys.clear();
        self.values.clear();
    }
}

/// An entry of the combine's table: the key as the table compares it, its
/// index in order of first appearance, and its merged value. Finding a key
/// with a short encoding (every word of a word count) reads this entry and
/// nothing else.
struct Slot<V> {
    key: KeyRepr,
    index: u32,
    /// `None` only while the value is handed to the user's reducer.
    value: Option<V>,
}

/// The longest encoding a [`KeyRepr`] holds itself.
const SHORT_KEY: usize = 15;
/// The top byte of a [`KeyRepr`] of a longer encoding.
const LONG: u64 = 0xff << 56;
/// The top byte of a [`KeyRepr`] of a key compared with `Eq`.
const BY_EQ: u64 = 0xfe << 56;
const TAG: u64 = 0xff << 56;

/// A key as the combine's table compares it: an encoding of up to
/// [`SHORT_KEY`] bytes itself (the bytes little-endian, the length in the top
/// byte), or the place of a longer one in `long_keys` (`LONG` on top), or
/// nothing (`BY_EQ` on top: the key is compared with `Eq`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct KeyRepr([u64; 2]);

impl KeyRepr {
    /// The repr of an encoding of at most [`SHORT_KEY`] bytes, read with a
    /// few loads rather than a copy.
    #[inline]
    fn short(bytes: &[u8]) -> Self {
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

    fn long(start: usize, len: usize) -> Self {
        Self([
            u64::from(to_u32(start)) | u64::from(to_u32(len)) << 32,
            LONG,
        ])
    }

    #[inline]
    fn as_u128(self) -> u128 {
        u128::from(self.0[0]) | u128::from(self.0[1]) << 64
    }

    /// The bytes of a `LONG` repr in `long_keys`.
    fn long_key(self, long_keys: &[u8]) -> &[u8] {
        let start = (self.0[0] & 0xffff_ffff) as usize;
        &long_keys[start..start + (self.0[0] >> 32) as usize]
    }

    /// The encoding of a short or `LONG` repr: `short` holds a short one's
    /// bytes.
    fn bytes<'a>(&self, long_keys: &'a [u8], short: &'a mut [u8; 16]) -> &'a [u8] {
        if self.0[1] & TAG == LONG {
            return self.long_key(long_keys);
        }
        *short = self.as_u128().to_le_bytes();
        &short[..(self.0[1] >> 56) as usize]
    }

    /// The length of the encoding, unless the key is compared with `Eq`.
    fn encoded_len(self) -> Option<usize> {
        match self.0[1] & TAG {
            LONG => Some((self.0[0] >> 32) as usize),
            BY_EQ => None,
            len => Some((len >> 56) as usize),
        }
    }
}

fn to_u32(n: usize) -> u32 {
    u32::try_from(n).expect("a partition is smaller than 4 GiB (wasm32 memory)")
}

/// The encoding of `key`: a string's bytes as they are, anything else
/// encoded into `scratch`.
#[inline]
fn key_bytes<'a, K: Data>(key: &'a K, scratch: &'a mut Vec<u8>) -> &'a [u8] {
    let any: &dyn Any = key;
    if let Some(s) = any.downcast_ref::<String>() {
        return s.as_bytes();
    }
    scratch.clear();
    key.encode(scratch);
    scratch
}

impl<K, V, F> KeyReducer<K, V, F>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V + 'static,
{
    pub(crate) fn boxed(f: F) -> Function {
        Function::KeyReducer(Box::new(Self::new(f)))
    }
}

impl<K, V, F, S> KeyReducer<K, V, F, S>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V + 'static,
    S: BuildHasher + Default,
{
    pub(super) fn new(f: F) -> Self {
        Self {
            shared: Rc::new(Combiner {
                f,
                hasher: S::default(),
                by_bytes: !K::codec().contains("json"),
                storage: RefCell::new(CombineStorage::default()),
            }),
        }
    }

    /// The map-side combine, as a sink pushing into `out`.
    fn combine_sink(&self, out: CombineOut<K, V>, stage: usize) -> CombineSink<K, V, F, S> {
        let mut storage = self.shared.storage.take();
        storage.clear();
        CombineSink {
            combiner: Rc::clone(&self.shared),
            storage,
            out,
            stage,
        }
    }
}

/// Where the map-side combine sends its pairs when the partition ends.
enum CombineOut<K, V> {
    /// Into the next stage.
    Sink(Box<dyn Sink<(K, V)>>),
    /// Encoded into the chain's output, straight from the keys' encodings
    /// (the combine is the chain's last stage, and compares by bytes).
    Rows(OutputSlot),
}

/// The map-side combine: merges the values of equal keys. Keys leave in the
/// order of their first appearance, so the output does not depend on the
/// hasher.
struct CombineSink<K, V, F, S> {
    combiner: Rc<Combiner<K, V, F, S>>,
    storage: CombineStorage<K, V>,
    out: CombineOut<K, V>,
    stage: usize,
}

impl<K, V, F, S> Sink<(K, V)> for CombineSink<K, V, F, S>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V,
    S: BuildHasher,
{
    fn push(&mut self, item: (K, V)) -> Result<(), String> {
        enter_stage(self.stage);
        self.merge(item);
        Ok(())
    }

    fn push_batch(&mut self, items: &mut Vec<(K, V)>) -> Result<(), String> {
        enter_stage(self.stage);
        for item in items.drain(..) {
            self.merge(item);
        }
        Ok(())
    }

    /// Merges encoded pairs by their keys' bytes, without decoding the
    /// keys (when keys are compared by bytes).
    fn push_encoded(&mut self, batch: EncodedBatch<'_>) -> Result<(), String> {
        enter_stage(self.stage);
        if !self.combiner.by_bytes {
            let mut items = Vec::with_capacity(batch.len());
            for (i, record) in batch.records() {
                let pair =
                    <(K, V)>::decode(record?).map_err(|e| batch.decode_error::<(K, V)>(i, e))?;
                items.push(pair);
            }
            return self.push_batch(&mut items);
        }
        for (i, record) in batch.records() {
            let fail = |e: DecodeError| batch.decode_error::<(K, V)>(i, e);
            let (key, value) = split_pair(record?).map_err(fail)?;
            if !batch.from_sdk {
                K::check(key)
                    .map_err(|e| fail(DecodeError::new(format!("tuple element 0: {e}"))))?;
            }
            let value = V::decode(value)
                .map_err(|e| fail(DecodeError::new(format!("tuple element 1: {e}"))))?;
            self.merge_encoded(key, value);
        }
        Ok(())
    }

    fn takes_pair_parts(&self) -> bool {
        self.combiner.by_bytes
    }

    #[inline]
    fn push_pair_encoded(&mut self, key: &[u8], value: &[u8]) -> Result<(), String> {
        enter_stage(self.stage);
        let value = V::decode(value).map_err(|e| format!("a value does not decode: {e}"))?;
        self.merge_encoded(key, value);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        enter_stage(self.stage);
        let CombineStorage {
            table,
            reprs,
            keys,
            long_keys,
            values,
            ..
        } = &mut self.storage;
        // The merged values in order of first appearance, and the output's
        // size.
        let distinct = table.len();
        values.clear();
        values.resize_with(distinct, || None);
        let mut bytes = 0;
        for slot in table.drain() {
            let key = match slot.key.encoded_len() {
                Some(len) => len,
                None => keys[slot.index as usize].encoded_size_hint(),
            };
            bytes += 4 + key + slot.value.as_ref().map_or(0, Data::encoded_size_hint);
            values[slot.index as usize] = slot.value;
        }
        let values = values
            .drain(..)
            .map(|v| v.expect("a merged value is always present"));
        let mut short = [0u8; 16];
        match &mut self.out {
            CombineOut::Rows(slot) => {
                let mut rows = Rows {
                    data: Vec::with_capacity(bytes),
                    ends: Vec::with_capacity(distinct),
                };
                for (repr, value) in reprs.drain(..).zip(values) {
                    let key = repr.bytes(long_keys, &mut short);
                    rows.data.extend_from_slice(&end_offset(key).to_le_bytes());
                    rows.data.extend_from_slice(key);
                    value.encode(&mut rows.data);
                    rows.ends.push(end_offset(&rows.data));
                }
                slot.set(Some(rows));
                Ok(())
            }
            CombineOut::Sink(down) => {
                down.size_hint(distinct, bytes);
                let mut batch = Vec::with_capacity(BATCH.min(distinct));
                let mut keys = keys.drain(..);
                for (repr, value) in reprs.drain(..).zip(values) {
                    let key = match keys.next() {
                        Some(key) => key,
                        None => K::decode(repr.bytes(long_keys, &mut short))
                            .map_err(|e| format!("a combined key does not decode: {e}"))?,
                    };
                    batch.push((key, value));
                    if batch.len() == BATCH {
                        down.push_batch(&mut batch)?;
                    }
                }
                if !batch.is_empty() {
                    down.push_batch(&mut batch)?;
                }
                down.finish()
            }
        }
    }
}

impl<K, V, F, S> CombineSink<K, V, F, S>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V,
    S: BuildHasher,
{
    /// Adds one pair to the table.
    #[inline]
    fn merge(&mut self, (key, value): (K, V)) {
        if !self.combiner.by_bytes {
            return self.merge_by_eq(key, value);
        }
        let mut scratch = std::mem::take(&mut self.storage.scratch);
        self.merge_encoded(key_bytes(&key, &mut scratch), value);
        self.storage.scratch = scratch;
    }

    /// Adds one pair to the table, the key given as its encoding.
    #[inline]
    fn merge_encoded(&mut self, bytes: &[u8], value: V) {
        let combiner = &*self.combiner;
        let hasher = &combiner.hasher;
        let CombineStorage {
            table,
            reprs,
            long_keys,
            ..
        } = &mut self.storage;
        let rehash = |slot: &Slot<V>| match slot.key.0[1] & TAG {
            LONG => hasher.hash_one(slot.key.long_key(long_keys)),
            _ => hasher.hash_one(slot.key.as_u128()),
        };
        let (entry, repr) = if bytes.len() <= SHORT_KEY {
            let repr = KeyRepr::short(bytes);
            let hash = hasher.hash_one(repr.as_u128());
            (table.entry(hash, |slot| slot.key == repr, rehash), repr)
        } else {
            let hash = hasher.hash_one(bytes);
            let entry = table.entry(
                hash,
                |slot| slot.key.0[1] == LONG && slot.key.long_key(long_keys) == bytes,
                rehash,
            );
            let repr = match entry {
                // Unused: the key is in the table.
                Occupied(_) => KeyRepr([0, LONG]),
                Vacant(_) => {
                    let start = long_keys.len();
                    long_keys.extend_from_slice(bytes);
                    KeyRepr::long(start, bytes.len())
                }
            };
            (entry, repr)
        };
        match entry {
            Occupied(mut found) => {
                let merged = &mut found.get_mut().value;
                let acc = merged.take().expect("a merged value is always present");
                *merged = Some((combiner.f)(acc, value));
            }
            Vacant(vacant) => {
                vacant.insert(Slot {
                    key: repr,
                    index: to_u32(reprs.len()),
                    value: Some(value),
                });
                reprs.push(repr);
            }
        }
    }

    /// Adds one pair to the table, the key compared with `Eq`.
    fn merge_by_eq(&mut self, key: K, value: V) {
        let combiner = &*self.combiner;
        let hasher = &combiner.hasher;
        let CombineStorage {
            table, reprs, keys, ..
        } = &mut self.storage;
        let hash = hasher.hash_one(&key);
        let entry = table.entry(
            hash,
            |slot| keys[slot.index as usize] == key,
            |slot| hasher.hash_one(&keys[slot.index as usize]),
        );
        match entry {
            Occupied(mut found) => {
                let merged = &mut found.get_mut().value;
                let acc = merged.take().expect("a merged value is always present");
                *merged = Some((combiner.f)(acc, value));
            }
            Vacant(vacant) => {
                let repr = KeyRepr([0, BY_EQ]);
                vacant.insert(Slot {
                    key: repr,
                    index: to_u32(keys.len()),
                    value: Some(value),
                });
                reprs.push(repr);
                keys.push(key);
            }
        }
    }
}

impl<K, V, F, S> Drop for CombineSink<K, V, F, S> {
    fn drop(&mut self) {
        let mut storage = std::mem::take(&mut self.storage);
        storage.clear();
        self.combiner.storage.replace(storage);
    }
}

impl<K, V, F, S> ChainFn for KeyReducer<K, V, F, S>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V + 'static,
    S: BuildHasher + Default + 'static,
{
    fn input_codec(&self) -> String {
        <(K, V)>::codec()
    }

    fn compose(&self, downstream: ErasedSink, stage: usize) -> Option<ErasedSink> {
        let downstream = unerase::<(K, V)>(downstream)?;
        Some(erase::<(K, V)>(Box::new(
            self.combine_sink(CombineOut::Sink(downstream), stage),
        )))
    }

    fn compose_last(&self, slot: OutputSlot, input: &Rows, stage: usize) -> ErasedSink {
        let out = if self.shared.by_bytes {
            CombineOut::Rows(slot)
        } else {
            CombineOut::Sink(
                unerase::<(K, V)>(encoder::<(K, V)>(slot, input)).expect("an encoder of pairs"),
            )
        };
        erase::<(K, V)>(Box::new(self.combine_sink(out, stage)))
    }

    fn feed(&self, input: &Rows, head: ErasedSink, node: &str) -> Result<(), String> {
        feed::<(K, V)>(input, head, node)
    }
}

impl<K, V, F, S> KeyReducerFn for KeyReducer<K, V, F, S>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V + 'static,
    S: BuildHasher + Default + 'static,
{
    /// Folds each `tuple<k,list<v>>` group. The key's bytes are copied to the
    /// output as they are: the host grouped by them, so they need no decoding.
    fn reduce_groups(&self, groups: &Rows, node: &str) -> Result<Rows, String> {
        let f = &self.shared.f;
        let mut folded: Vec<(&[u8], V)> = Vec::with_capacity(groups.ends.len());
        for (i, record) in records(groups).enumerate() {
            let record = record.map_err(|e| format!("{node}: {e}"))?;
            let fail = |e: DecodeError| decode_error::<(K, Vec<V>)>(node, i, e);
            let (key, values) = split_pair(record).map_err(fail)?;
            let mut acc: Option<V> = None;
            for_each_list_element(values, |j, bytes| {
                let value = V::decode(bytes).map_err(|e| {
                    DecodeError::new(format!("tuple element 1: list element {j}: {e}"))
                })?;
                acc = Some(match acc.take() {
                    None => value,
                    Some(acc) => f(acc, value),
                });
                Ok(())
            })
            .map_err(fail)?;
            // A group always has a value; an empty one has nothing to reduce.
            if let Some(acc) = acc {
                folded.push((key, acc));
            }
        }
        let size = folded
            .iter()
            .map(|(k, v)| 4 + k.len() + v.encoded_size_hint())
            .sum();
        let mut out = Rows {
            data: Vec::with_capacity(size),
            ends: Vec::with_capacity(folded.len()),
        };
        for (key, value) in &folded {
            out.data.extend_from_slice(&end_offset(key).to_le_bytes());
            out.data.extend_from_slice(key);
            value.encode(&mut out.data);
            out.ends.push(end_offset(&out.data));
        }
        Ok(out)
    }
}

/// The reduce_by_key reducer's other export.
pub(crate) trait KeyReducerFn: ChainFn {
    fn reduce_groups(&self, groups: &Rows, node: &str) -> Result<Rows, String>;
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::codec::Json;
    use crate::rows::{decode_all, encode_all};
    use proptest::collection::vec;
    use proptest::prelude::*;
    use std::cell::Cell;

    type Add = fn(i64, i64) -> i64;

    fn reducer() -> KeyReducer<String, i64, Add> {
        KeyReducer::new(i64::wrapping_add)
    }

    /// Collects what a pipeline pushes into it.
    struct Collect<T>(Rc<RefCell<(Vec<T>, bool)>>);

    impl<T: Data> Sink<T> for Collect<T> {
        fn push(&mut self, item: T) -> Result<(), String> {
            self.0.borrow_mut().0.push(item);
            Ok(())
        }
        fn finish(&mut self) -> Result<(), String> {
            self.0.borrow_mut().1 = true;
            Ok(())
        }
    }

    /// Runs the combine sink over `pairs`, both as a middle stage (pushing
    /// into a sink) and as the last one (writing the rows from the keys'
    /// encodings), and checks that both give the same.
    fn combine<
        K: Data + Hash + Eq + Clone + std::fmt::Debug,
        S: BuildHasher + Default + 'static,
    >(
        reducer: &KeyReducer<K, i64, Add, S>,
        pairs: Vec<(K, i64)>,
    ) -> Vec<(K, i64)> {
        let out = Rc::new(RefCell::new((Vec::new(), false)));
        let mut sink =
            reducer.combine_sink(CombineOut::Sink(Box::new(Collect(Rc::clone(&out)))), 0);
        for pair in pairs.clone() {
            sink.push(pair).unwrap();
        }
        sink.finish().unwrap();
        drop(sink);
        let (records, finished) = out.take();
        assert!(finished, "finish reaches downstream");

        let slot: OutputSlot = Rc::new(Cell::new(None));
        let input = encode_all(&pairs);
        let mut last =
            unerase::<(K, i64)>(reducer.compose_last(Rc::clone(&slot), &input, 0)).unwrap();
        let mut pairs = pairs;
        last.push_batch(&mut pairs).unwrap();
        last.finish().unwrap();
        drop(last);
        let rows: Vec<(K, i64)> = decode_all(&slot.take().expect("the rows"), "n").unwrap();
        assert_eq!(
            rows, records,
            "the last stage writes what a middle stage pushes"
        );
        records
    }

    /// Every key hashes to the same value: every lookup probes past the
    /// others.
    #[derive(Default)]
    pub(in crate::function) struct Colliding;

    impl std::hash::Hasher for Colliding {
        fn finish(&self) -> u64 {
            7
        }
        fn write(&mut self, _: &[u8]) {}
    }

    pub(in crate::function) type CollidingState = std::hash::BuildHasherDefault<Colliding>;

    /// Sums per key, keys in order of first appearance.
    fn reference<K: Eq + Clone>(pairs: &[(K, i64)]) -> Vec<(K, i64)> {
        let mut out: Vec<(K, i64)> = Vec::new();
        for (k, v) in pairs {
            match out.iter_mut().find(|(key, _)| key == k) {
                Some((_, sum)) => *sum = sum.wrapping_add(*v),
                None => out.push((k.clone(), *v)),
            }
        }
        out
    }

    /// Keys around the longest encoding a `KeyRepr` holds.
    fn key() -> impl Strategy<Value = String> {
        prop_oneof!["[a-c]{0,2}", "[a-c]{14,17}", "[ab]{0,24}", "é{7,8}"]
    }

    proptest! {
        #[test]
        fn combine_matches_a_reference_and_reuses_its_table(
            partitions in vec(vec(("[a-e]{0,2}", any::<i64>()), 0..60), 1..4)
        ) {
            let reducer = reducer();
            let mut capacity = 0;
            for pairs in partitions {
                prop_assert_eq!(combine(&reducer, pairs.clone()), reference(&pairs));
                let storage = reducer.shared.storage.borrow();
                prop_assert!(storage.table.capacity() >= capacity, "the table is kept");
                capacity = storage.table.capacity();
                prop_assert!(storage.keys.is_empty() && storage.reprs.is_empty() && storage.long_keys.is_empty());
            }
        }

        #[test]
        fn combine_finds_keys_of_any_length_and_codec(
            partitions in vec(vec((key(), -3i64..3), 0..80), 1..3)
        ) {
            let strings = reducer();
            let colliding = KeyReducer::<String, i64, Add, CollidingState>::new(i64::wrapping_add);
            let tuples = KeyReducer::<(String, u8), i64, Add>::new(i64::wrapping_add);
            let numbers = KeyReducer::<i64, i64, Add>::new(i64::wrapping_add);
            let json = KeyReducer::<Json<String>, i64, Add>::new(i64::wrapping_add);
            prop_assert!(!json.shared.by_bytes);
            for pairs in partitions {
                prop_assert_eq!(combine(&strings, pairs.clone()), reference(&pairs));
                prop_assert_eq!(combine(&colliding, pairs.clone()), reference(&pairs));
                let tupled: Vec<_> = pairs.iter().map(|(k, v)| ((k.clone(), k.len() as u8 % 2), *v)).collect();
                prop_assert_eq!(combine(&tuples, tupled.clone()), reference(&tupled));
                let numbered: Vec<_> = pairs.iter().map(|(k, v)| (k.len() as i64 - 5, *v)).collect();
                prop_assert_eq!(combine(&numbers, numbered.clone()), reference(&numbered));
                let jsoned: Vec<_> = pairs.iter().map(|(k, v)| (Json(k.clone()), *v)).collect();
                prop_assert_eq!(combine(&json, jsoned.clone()), reference(&jsoned));
            }
        }

        #[test]
        fn a_short_key_repr_is_the_bytes_and_the_length(bytes in vec(any::<u8>(), 0..=SHORT_KEY)) {
            let mut padded = [0u8; 16];
            padded[..bytes.len()].copy_from_slice(&bytes);
            padded[15] = bytes.len() as u8;
            prop_assert_eq!(KeyRepr::short(&bytes).as_u128(), u128::from_le_bytes(padded));
            prop_assert_eq!(KeyRepr::short(&bytes).encoded_len(), Some(bytes.len()));
        }

        #[test]
        fn reduce_groups_matches_a_reference(
            groups in vec(("[a-z]{0,3}", vec(any::<i64>(), 1..5)), 0..20)
        ) {
            let out = reducer().reduce_groups(&encode_all(&groups), "n").unwrap();
            let out: Vec<(String, i64)> = decode_all(&out, "n").unwrap();
            let expected: Vec<(String, i64)> = groups
                .iter()
                .map(|(k, vs)| (k.clone(), vs.iter().fold(0i64, |a, &b| a.wrapping_add(b))))
                .collect();
            prop_assert_eq!(out, expected);
        }
    }
}
