//! The map-side combine of `reduce_by_key` (a stage of a chain) and its
//! `reduce-groups`.

use std::any::Any;
use std::cell::Cell;
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::rc::Rc;

use super::table::{Found, KeyRepr, KeyTable, SHORT_KEY, to_u32};
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

/// How many short keys the combine takes before it looks them up: their
/// slots are touched one after the other first, so that their cache misses
/// overlap, and the lookups then find them in L1 (or L2). Touching each
/// slot as its key comes in does not: the miss stalls the work after it
/// before the next key's touch is reached.
const AHEAD: usize = 16;

/// Pairs emitted with borrowed keys (by the emitter of a `flat_map_str`
/// stage), on their way to a combine that compares keys by their bytes: each
/// key as its [`KeyRepr`] (a short one inline, a longer one at its place in
/// `long`) with its value, not encoded. The emitter fills a batch and passes
/// it whole ([`Sink::push_pair_batch`]), so that a pair costs neither a
/// dynamic call nor encoding and decoding its value.
pub(crate) struct PairBatch<V> {
    pairs: Vec<(KeyRepr, V)>,
    /// The keys of more than [`SHORT_KEY`] bytes, back to back.
    pub(super) long: Vec<u8>,
}

impl<V> PairBatch<V> {
    /// How many pairs a batch holds before it is passed on.
    const CAPACITY: usize = 128;

    pub(crate) fn new() -> Self {
        Self {
            pairs: Vec::with_capacity(Self::CAPACITY),
            long: Vec::new(),
        }
    }
}

impl<V: Data> PairBatch<V> {
    /// Empties the batch (dropping any pairs the next stage left) and
    /// returns where pairs are written into it: its buffer's start and
    /// end. An emitter writes them there itself (`emit.rs`), then counts
    /// them with [`set_written`](Self::set_written).
    pub(crate) fn open(batch: &mut dyn Any) -> (*mut u8, *mut u8) {
        let batch = batch
            .downcast_mut::<Self>()
            .expect("a PairBatch of the emitter's value type");
        batch.pairs.clear();
        batch.long.clear();
        let start = batch.pairs.as_mut_ptr();
        (
            start.cast(),
            start.wrapping_add(batch.pairs.capacity()).cast(),
        )
    }

    /// Counts the pairs written into the buffer since
    /// [`open`](Self::open): the first `bytes` of it.
    ///
    /// # Safety
    ///
    /// Since `batch` was last opened, nothing but the caller wrote it, and
    /// the caller wrote a `(KeyRepr, V)` into each of the first
    /// `bytes / size_of::<(KeyRepr, V)>()` places of the buffer `open`
    /// gave.
    #[allow(unsafe_code)]
    pub(crate) unsafe fn set_written(batch: &mut dyn Any, bytes: usize) {
        let batch = batch
            .downcast_mut::<Self>()
            .expect("a PairBatch of the emitter's value type");
        let len = bytes / size_of::<(KeyRepr, V)>();
        assert!(len <= batch.pairs.capacity(), "pairs within the buffer");
        // SAFETY: the first `len` places are initialized (the caller's
        // promise), within the capacity (checked).
        unsafe { batch.pairs.set_len(len) };
    }
}

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
    /// The distinct keys and the bytes of long keys of the last call (of
    /// any kind: a block's chain, a merge's piece), to size the next one's
    /// table. A call's storage is made when it starts and freed when it
    /// ends: the instance's memory then holds a call's input, table and
    /// output in the order they come, with no table kept from an earlier
    /// call between them to split its free space (a kept table grew the
    /// windowed word count's instances from 9 to 13.3 MiB).
    last: Cell<Room>,
    /// The pairs' types, which no field holds.
    pairs: PhantomData<fn(K, V)>,
}

/// Room for the keys of a call.
#[derive(Clone, Copy, Default)]
struct Room {
    keys: usize,
    long_bytes: usize,
}

/// The distinct keys of a partition and their merged values.
///
/// Keys compared by their encodings are kept as encodings only (in the
/// table's entries, or in `long_keys`): a key pushed into the combine is
/// dropped as soon as it is merged, and the output is written from the
/// encodings. Keys compared with `Eq` are kept whole, in `keys`.
struct CombineStorage<K, V> {
    /// One entry per distinct key.
    table: KeyTable<V>,
    /// The distinct keys, in order of first appearance (by `Eq`).
    keys: Vec<K>,
    /// The encodings of more than [`SHORT_KEY`] bytes, back to back.
    long_keys: Vec<u8>,
    /// Where a key that is not a string is encoded.
    scratch: Vec<u8>,
    /// Short keys taken but not looked up yet, in order, with their hashes
    /// and values (see [`AHEAD`]).
    ahead: Vec<(KeyRepr, u64, V)>,
    /// The bytes of the distinct keys' encodings (for keys compared by
    /// their bytes), to size the output.
    key_bytes: usize,
}

impl<K, V> CombineStorage<K, V> {
    /// Storage with `room` (keys compared with `Eq` when `by_eq`).
    fn with_room(room: Room, by_eq: bool) -> Self {
        Self {
            table: KeyTable::with_capacity(room.keys),
            keys: Vec::with_capacity(if by_eq { room.keys } else { 0 }),
            long_keys: Vec::with_capacity(room.long_bytes),
            scratch: Vec::new(),
            ahead: Vec::with_capacity(AHEAD),
            key_bytes: 0,
        }
    }
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
                last: Cell::new(Room::default()),
                pairs: PhantomData,
            }),
        }
    }

    /// The map-side combine, as a sink pushing into `out`.
    fn combine_sink(&self, out: CombineOut<K, V>, stage: usize) -> CombineSink<K, V, F, S> {
        let storage = CombineStorage::with_room(self.shared.last.get(), !self.shared.by_bytes);
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
        // A short string key of ASCII bytes needs no other check.
        let string_keys = K::codec() == "string";
        let data = batch.data;
        for (i, record) in batch.records() {
            let fail = |e: DecodeError| batch.decode_error::<(K, V)>(i, e);
            let (key, value) = split_pair(record?).map_err(fail)?;
            let short = (key.len() <= SHORT_KEY).then(|| KeyRepr::short_within(key, data));
            let checked = batch.from_sdk || string_keys && short.is_some_and(KeyRepr::is_ascii);
            if !checked {
                K::check(key)
                    .map_err(|e| fail(DecodeError::new(format!("tuple element 0: {e}"))))?;
            }
            let value = V::decode(value)
                .map_err(|e| fail(DecodeError::new(format!("tuple element 1: {e}"))))?;
            match short {
                Some(repr) => self.take_short(repr, value),
                None => {
                    self.look_up_ahead();
                    self.merge_long(key, value);
                }
            }
        }
        Ok(())
    }

    fn takes_pair_batches(&self) -> bool {
        self.combiner.by_bytes
    }

    fn push_pair_batch(&mut self, batch: &mut dyn Any) -> Result<(), String> {
        enter_stage(self.stage);
        let PairBatch { pairs, long } = batch
            .downcast_mut::<PairBatch<V>>()
            .ok_or("a pair batch of another value type")?;
        for (repr, value) in pairs.drain(..) {
            if repr.is_long() {
                self.look_up_ahead();
                self.merge_long(repr.long_key(long), value);
            } else {
                self.take_short(repr, value);
            }
        }
        long.clear();
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        enter_stage(self.stage);
        self.look_up_ahead();
        let CombineStorage {
            table,
            keys,
            long_keys,
            key_bytes,
            ..
        } = &mut self.storage;
        // The output's size: exact for values encoded at their size in
        // memory (numbers), a first guess for others.
        let distinct = table.len();
        let bytes = distinct * (4 + size_of::<V>()) + *key_bytes;
        self.combiner.last.set(Room {
            keys: distinct,
            long_bytes: long_keys.len(),
        });
        match &mut self.out {
            CombineOut::Rows(slot) => {
                let mut rows = Rows {
                    // A short key is written as 16 bytes, then cut.
                    data: Vec::with_capacity(bytes + 16),
                    ends: Vec::with_capacity(distinct),
                };
                table.drain(|_, repr, value| {
                    if repr.is_long() {
                        let key = repr.long_key(long_keys);
                        rows.data.extend_from_slice(&end_offset(key).to_le_bytes());
                        rows.data.extend_from_slice(key);
                    } else {
                        // Sixteen bytes at once: a copy of the key's length
                        // would be a call (`memory.copy`) per key.
                        let len = repr.encoded_len().expect("a short key's");
                        rows.data.extend_from_slice(&to_u32(len).to_le_bytes());
                        let at = rows.data.len();
                        rows.data.extend_from_slice(&repr.as_u128().to_le_bytes());
                        rows.data.truncate(at + len);
                    }
                    value.encode(&mut rows.data);
                    rows.ends.push(end_offset(&rows.data));
                });
                slot.set(Some(rows));
                Ok(())
            }
            CombineOut::Sink(down) => {
                down.size_hint(distinct, bytes);
                let mut batch = Vec::with_capacity(BATCH.min(distinct));
                // Keys compared with `Eq` are in `keys`, in the same order.
                let mut keys = keys.drain(..);
                let mut short = [0u8; 16];
                let mut failed = None;
                table.drain(|_, repr, value| {
                    if failed.is_some() {
                        return;
                    }
                    let key = match keys.next() {
                        Some(key) => key,
                        None => match K::decode(repr.bytes(long_keys, &mut short)) {
                            Ok(key) => key,
                            Err(e) => {
                                failed = Some(format!("a combined key does not decode: {e}"));
                                return;
                            }
                        },
                    };
                    batch.push((key, value));
                    if batch.len() == BATCH
                        && let Err(e) = down.push_batch(&mut batch)
                    {
                        failed = Some(e);
                    }
                });
                if let Some(e) = failed {
                    return Err(e);
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

    /// Adds one pair to the table, the key given as its encoding: a short
    /// one after [`AHEAD`] more, a long one at once (after the short ones
    /// before it, so keys keep their order of first appearance).
    #[inline]
    fn merge_encoded(&mut self, bytes: &[u8], value: V) {
        if bytes.len() > SHORT_KEY {
            self.look_up_ahead();
            return self.merge_long(bytes, value);
        }
        self.take_short(KeyRepr::short(bytes), value);
    }

    /// Takes one pair of a short key, to look up with [`AHEAD`] more.
    #[inline(always)]
    fn take_short(&mut self, repr: KeyRepr, value: V) {
        let hash = self.combiner.hasher.hash_one(repr.as_u128());
        self.storage.ahead.push((repr, hash, value));
        if self.storage.ahead.len() == AHEAD {
            self.look_up_ahead();
        }
    }

    /// Looks up the short keys taken and not looked up yet: touches their
    /// slots, then merges them in order.
    ///
    /// Inlined into its callers, with [`merge_short`](Self::merge_short):
    /// as a function of its own, called every [`AHEAD`] keys, it made the
    /// merges of early outputs (`push_encoded`) 15-17% slower in process,
    /// and the chain (`push_pair_batch`) no faster (BENCHMARKS, sixteenth
    /// part).
    #[inline(always)]
    fn look_up_ahead(&mut self) {
        let mut ahead = std::mem::take(&mut self.storage.ahead);
        for (_, hash, _) in &ahead {
            self.storage.table.touch(*hash);
        }
        for (repr, hash, value) in ahead.drain(..) {
            self.merge_short(repr, hash, value);
        }
        self.storage.ahead = ahead;
    }

    /// Adds one pair of a short key to the table. Inlined into
    /// [`look_up_ahead`](Self::look_up_ahead)'s loop, which LLVM otherwise
    /// leaves calling it once a key.
    #[inline(always)]
    fn merge_short(&mut self, repr: KeyRepr, hash: u64, value: V) {
        let table = &mut self.storage.table;
        match table.find(hash, |key| key == repr) {
            Found::At(at) => table.update(at, |acc| (self.combiner.f)(acc, value)),
            Found::Vacant(at) => {
                self.storage.key_bytes += repr.encoded_len().expect("a short key's");
                table.insert(at, hash, repr, value);
            }
        }
    }

    /// Adds one pair of a key of more than [`SHORT_KEY`] bytes to the table.
    fn merge_long(&mut self, bytes: &[u8], value: V) {
        let hash = self.combiner.hasher.hash_one(bytes);
        let CombineStorage {
            table,
            long_keys,
            key_bytes,
            ..
        } = &mut self.storage;
        match table.find(hash, |key| {
            key.is_long() && key.long_key(long_keys) == bytes
        }) {
            Found::At(at) => table.update(at, |acc| (self.combiner.f)(acc, value)),
            Found::Vacant(at) => {
                let repr = KeyRepr::long(long_keys.len(), bytes.len());
                long_keys.extend_from_slice(bytes);
                *key_bytes += bytes.len();
                table.insert(at, hash, repr, value);
            }
        }
    }

    /// Adds one pair to the table, the key compared with `Eq`.
    fn merge_by_eq(&mut self, key: K, value: V) {
        let hash = self.combiner.hasher.hash_one(&key);
        let CombineStorage {
            table,
            keys,
            key_bytes,
            ..
        } = &mut self.storage;
        match table.find(hash, |k| keys[k.eq_index()] == key) {
            Found::At(at) => table.update(at, |acc| (self.combiner.f)(acc, value)),
            Found::Vacant(at) => {
                let repr = KeyRepr::by_eq(keys.len());
                *key_bytes += key.encoded_size_hint();
                table.insert(at, hash, repr, value);
                keys.push(key);
            }
        }
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
    /// Folds each `tuple<k,list<v>>` group and writes its `(k, v)` as it
    /// goes. The key's bytes are copied to the output as they are: the host
    /// grouped by them, so they need no decoding. The output is sized
    /// first from the keys (exact for values encoded at their size in
    /// memory, numbers), so that the call holds its input and its answer
    /// and nothing more.
    fn reduce_groups(&self, groups: &Rows, node: &str) -> Result<Rows, String> {
        let f = &self.shared.f;
        let keys: usize = records(groups)
            .filter_map(|record| split_pair(record.ok()?).ok())
            .map(|(key, _)| 4 + key.len())
            .sum();
        let mut out = Rows {
            data: Vec::with_capacity(keys + groups.ends.len() * size_of::<V>()),
            ends: Vec::with_capacity(groups.ends.len()),
        };
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
                out.data.extend_from_slice(&end_offset(key).to_le_bytes());
                out.data.extend_from_slice(key);
                acc.encode(&mut out.data);
                out.ends.push(end_offset(&out.data));
            }
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
    use std::cell::{Cell, RefCell};

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
        fn combine_matches_a_reference_and_sizes_its_table_from_the_last_call(
            partitions in vec(vec(("[a-e]{0,2}|[a-e]{16,20}", any::<i64>()), 0..60), 1..4)
        ) {
            let reducer = reducer();
            for pairs in partitions {
                let expected = reference(&pairs);
                prop_assert_eq!(combine(&reducer, pairs.clone()), expected.clone());
                let room = reducer.shared.last.get();
                prop_assert_eq!(room.keys, expected.len(), "room for this call's keys");
                let long_bytes: usize = expected
                    .iter()
                    .map(|(k, _)| k.len())
                    .filter(|&len| len > SHORT_KEY)
                    .sum();
                prop_assert_eq!(room.long_bytes, long_bytes, "and for its long keys");
                let next = reducer.combine_sink(CombineOut::Sink(Box::new(Collect(Rc::default()))), 0);
                prop_assert!(next.storage.table.slots() * 3 >= room.keys * 4, "the next table holds them");
                prop_assert!(next.storage.long_keys.capacity() >= room.long_bytes);
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
