//! The function table's entries: user closures behind type-erased
//! interfaces.
//!
//! A closure is registered with its types when the job is defined; the host
//! later calls it by id with encoded partitions.
//!
//! A chain of narrow stages runs as a push-based pipeline built for the
//! call: every stage is a [`Sink`] of its input type that pushes its results
//! into the next stage's sink, and the last stage pushes into an encoder that
//! appends each record to the output buffer. The input is decoded one record
//! at a time and pushed into the first stage, so no stage materializes its
//! partition, except `map_partitions` (its function takes the whole
//! partition) and the combine of `reduce_by_key` (its table of keys). The
//! pipeline is type-erased per stage and typed per record: building it
//! downcasts each sink once (`Box<dyn Sink<T>>` in a `Box<dyn Any>`).
//!
//! Records move between stages in small batches ([`Sink::push_batch`], at
//! most [`BATCH`] records in a reused buffer): a stage runs its loop over a
//! batch with its function inlined, and the dynamic call into the next stage
//! is paid once per batch rather than once per record.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::rc::Rc;

use hashbrown::HashTable;
use hashbrown::hash_table::Entry::{Occupied, Vacant};

use crate::bindings::sluice::plugin::types::Rows;
use crate::codec::{Data, DecodeError, for_each_list_element, split_pair};
use crate::output::IdempotencyKey;
use crate::rows::{decode_all, decode_error, encode_all, end_offset, records};
use crate::runtime::enter_stage;

/// One entry of the function table.
pub(crate) struct Entry {
    /// The name of the node that registered it, e.g. `"map at src/lib.rs:3:9"`.
    pub(crate) name: Rc<str>,
    pub(crate) function: Function,
}

/// What a registered function can be called as.
pub(crate) enum Function {
    /// `map`, `flat_map`, `filter`, `map_partitions`: a `stage::apply`.
    Narrow(Box<dyn ChainFn>),
    /// The reducer of `reduce_by_key`: a `stage::combine` and `reduce-groups`.
    KeyReducer(Box<dyn KeyReducerFn>),
    /// The reducer of `reduce`: `reduce-all`.
    Reducer(Box<dyn ReduceAllFn>),
    /// The function of `foreach_partition`.
    Output(Box<dyn OutputFn>),
    /// The function of `update_state_by_key`: `update-state`.
    UpdateState(Box<dyn BatchFn>),
    /// The function of `map_with_state`: `map-with-state`.
    MapWithState(Box<dyn BatchFn>),
    /// The function of `transform`: `transform`.
    Transform(Box<dyn BatchFn>),
}

impl Function {
    /// What the function is, for messages about misuse by the host.
    pub(crate) fn what(&self) -> &'static str {
        match self {
            Function::Narrow(_) => "a narrow operator's function",
            Function::KeyReducer(_) => "a reduce_by_key reducer",
            Function::Reducer(_) => "a reduce reducer",
            Function::Output(_) => "a foreach_partition function",
            Function::UpdateState(_) => "an update_state_by_key function",
            Function::MapWithState(_) => "a map_with_state function",
            Function::Transform(_) => "a transform function",
        }
    }
}

/// How many records a stage passes on at once, at most (except
/// `map_partitions`, which passes on everything its function returns).
pub(crate) const BATCH: usize = 256;

/// A stage of a pipeline: takes records one at a time, or a batch at a
/// time.
pub(crate) trait Sink<T> {
    /// Takes one record (and pushes whatever it produces downstream).
    fn push(&mut self, item: T) -> Result<(), String>;
    /// Takes every record of `items`, in order, and leaves `items` empty
    /// (its capacity is the caller's to reuse). Same as pushing them one by
    /// one; stages override it to loop without a dynamic call per record.
    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        for item in items.drain(..) {
            self.push(item)?;
        }
        Ok(())
    }
    /// The partition has ended: pushes what the stage still holds, then
    /// finishes downstream.
    fn finish(&mut self) -> Result<(), String>;
    /// `records` records of about `bytes` encoded bytes (0: unknown) are
    /// about to be pushed, all at once. Only the encoder uses it, to size its
    /// buffers.
    fn size_hint(&mut self, _records: usize, _bytes: usize) {}
}

/// A `Box<dyn Sink<T>>` in a `Box<dyn Any>`, while a pipeline is built.
pub(crate) type ErasedSink = Box<dyn Any>;

/// Where the encoder at the end of a pipeline leaves the output when it
/// finishes.
pub(crate) type OutputSlot = Rc<Cell<Option<Rows>>>;

fn erase<T: 'static>(sink: Box<dyn Sink<T>>) -> ErasedSink {
    Box::new(sink)
}

fn unerase<T: 'static>(sink: ErasedSink) -> Option<Box<dyn Sink<T>>> {
    sink.downcast::<Box<dyn Sink<T>>>().ok().map(|sink| *sink)
}

/// A stage of a fused chain, from `In` records to `Out` records.
/// `stage` is the stage's index in the chain: what it passes to
/// [`enter_stage`] before running user code, for the panic hook.
pub(crate) trait ChainFn {
    /// The codec of the stage's input, for messages.
    fn input_codec(&self) -> String;
    /// Wraps `downstream` (a `Box<dyn Sink<Out>>`) into this stage's sink, a
    /// `Box<dyn Sink<In>>`. `None` if `downstream` does not take `Out`: the
    /// caller names the downstream stage in its error.
    fn compose(&self, downstream: ErasedSink, stage: usize) -> Option<ErasedSink>;
    /// The sink that encodes `Out` records into the output rows and leaves
    /// them in `slot` when it finishes. `input` is the partition the chain
    /// runs over, to size the output buffers.
    fn encoder(&self, slot: OutputSlot, input: &Rows) -> ErasedSink;
    /// Decodes `input` with the `In` codec one record at a time, pushes the
    /// records into `head` (a `Box<dyn Sink<In>>`, as returned by
    /// [`compose`](ChainFn::compose) with `stage` 0) in batches of
    /// [`BATCH`], and finishes it. Errors name `node`.
    fn feed(&self, input: &Rows, head: ErasedSink, node: &str) -> Result<(), String>;
}

/// [`ChainFn::feed`] for input records of type `T`.
fn feed<T: Data>(input: &Rows, head: ErasedSink, node: &str) -> Result<(), String> {
    let mut head = unerase::<T>(head).ok_or_else(|| {
        format!(
            "{node}: the pipeline does not start with a sink of {} records",
            T::codec()
        )
    })?;
    let mut batch = Vec::with_capacity(BATCH.min(input.ends.len()));
    for (i, record) in records(input).enumerate() {
        let record = record.map_err(|e| format!("{node}: {e}"))?;
        // The first stage's codec: a panic in a hand-written decoder is
        // reported as that stage's.
        enter_stage(0);
        batch.push(T::decode(record).map_err(|e| decode_error::<T>(node, i, e))?);
        if batch.len() == BATCH {
            head.push_batch(&mut batch)?;
        }
    }
    if !batch.is_empty() {
        head.push_batch(&mut batch)?;
    }
    head.finish()
}

/// The end of every pipeline: appends each record to one buffer and its end
/// offset to the offset list.
struct Encoder<T> {
    rows: Rows,
    /// What to reserve at the first record unless a size hint came first:
    /// `(bytes, records)` of the input.
    reserve: Option<(usize, usize)>,
    slot: OutputSlot,
    types: PhantomData<fn(T)>,
}

fn encoder<T: Data>(slot: OutputSlot, input: &Rows) -> ErasedSink {
    erase::<T>(Box::new(Encoder {
        rows: empty_rows(),
        reserve: Some((input.data.len(), input.ends.len())),
        slot,
        types: PhantomData,
    }))
}

fn empty_rows() -> Rows {
    Rows {
        data: Vec::new(),
        ends: Vec::new(),
    }
}

impl<T: Data> Encoder<T> {
    fn reserve(&mut self) {
        if let Some((bytes, records)) = self.reserve.take() {
            self.rows.data.reserve(bytes);
            self.rows.ends.reserve(records);
        }
    }

    #[inline]
    fn encode(&mut self, item: T) {
        item.encode(&mut self.rows.data);
        self.rows.ends.push(end_offset(&self.rows.data));
    }
}

impl<T: Data> Sink<T> for Encoder<T> {
    fn push(&mut self, item: T) -> Result<(), String> {
        self.reserve();
        self.encode(item);
        Ok(())
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        self.reserve();
        for item in items.drain(..) {
            self.encode(item);
        }
        Ok(())
    }

    fn size_hint(&mut self, records: usize, bytes: usize) {
        self.rows.ends.reserve(records);
        if bytes > 0 {
            self.rows.data.reserve(bytes);
            self.reserve = None;
        } else if let Some((_, input_records)) = &mut self.reserve {
            *input_records = 0;
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        let mut rows = std::mem::replace(&mut self.rows, empty_rows());
        // The bindings would shrink them when they return them anyway.
        rows.data.shrink_to_fit();
        rows.ends.shrink_to_fit();
        self.slot.set(Some(rows));
        Ok(())
    }
}

/// Makes a stage's sink from its downstream sink and its index in the chain.
type MakeSink<T, U> = dyn Fn(Box<dyn Sink<U>>, usize) -> Box<dyn Sink<T>>;

/// A narrow operator (`map`, `flat_map`, `filter`, `map_partitions`): how
/// to make its sink for a pipeline.
pub(crate) struct NarrowFn<T, U> {
    make: Box<MakeSink<T, U>>,
}

impl<T: Data, U: Data> NarrowFn<T, U> {
    fn boxed(make: impl Fn(Box<dyn Sink<U>>, usize) -> Box<dyn Sink<T>> + 'static) -> Function {
        Function::Narrow(Box::new(Self {
            make: Box::new(make),
        }))
    }

    /// One record out per record in.
    pub(crate) fn map(f: impl Fn(T) -> U + 'static) -> Function {
        let f = Rc::new(f);
        Self::boxed(move |down, stage| {
            Box::new(MapSink {
                f: Rc::clone(&f),
                out: Vec::new(),
                down,
                stage,
            })
        })
    }

    /// Any number of records out per record in.
    pub(crate) fn flat_map<I>(f: impl Fn(T) -> I + 'static) -> Function
    where
        I: IntoIterator<Item = U>,
    {
        let f = Rc::new(f);
        Self::boxed(move |down, stage| {
            Box::new(FlatMapSink {
                f: Rc::clone(&f),
                out: Vec::new(),
                down,
                stage,
            })
        })
    }

    /// The whole partition at once.
    pub(crate) fn map_partitions(f: impl Fn(Vec<T>) -> Vec<U> + 'static) -> Function {
        let f = Rc::new(f);
        Self::boxed(move |down, stage| {
            Box::new(MapPartitionsSink {
                f: Rc::clone(&f),
                buffer: Vec::new(),
                down,
                stage,
            })
        })
    }
}

impl<T: Data> NarrowFn<T, T> {
    /// The records for which `f` is true.
    pub(crate) fn filter(f: impl Fn(&T) -> bool + 'static) -> Function {
        let f = Rc::new(f);
        Self::boxed(move |down, stage| {
            Box::new(FilterSink {
                f: Rc::clone(&f),
                down,
                stage,
            })
        })
    }
}

impl<T: Data, U: Data> ChainFn for NarrowFn<T, U> {
    fn input_codec(&self) -> String {
        T::codec()
    }

    fn compose(&self, downstream: ErasedSink, stage: usize) -> Option<ErasedSink> {
        let downstream = unerase::<U>(downstream)?;
        Some(erase((self.make)(downstream, stage)))
    }

    fn encoder(&self, slot: OutputSlot, input: &Rows) -> ErasedSink {
        encoder::<U>(slot, input)
    }

    fn feed(&self, input: &Rows, head: ErasedSink, node: &str) -> Result<(), String> {
        feed::<T>(input, head, node)
    }
}

struct MapSink<F, U> {
    f: Rc<F>,
    /// The batch being passed on.
    out: Vec<U>,
    down: Box<dyn Sink<U>>,
    stage: usize,
}

impl<T, U, F: Fn(T) -> U> Sink<T> for MapSink<F, U> {
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        let out = (self.f)(item);
        self.down.push(out)
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        enter_stage(self.stage);
        self.out.extend(items.drain(..).map(&*self.f));
        self.down.push_batch(&mut self.out)
    }

    fn finish(&mut self) -> Result<(), String> {
        self.down.finish()
    }
}

struct FlatMapSink<F, U> {
    f: Rc<F>,
    /// The batch being filled.
    out: Vec<U>,
    down: Box<dyn Sink<U>>,
    stage: usize,
}

impl<T, U, I, F> Sink<T> for FlatMapSink<F, U>
where
    F: Fn(T) -> I,
    I: IntoIterator<Item = U>,
{
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        for out in (self.f)(item) {
            self.down.push(out)?;
            // The iterator may run user code too.
            enter_stage(self.stage);
        }
        Ok(())
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        enter_stage(self.stage);
        for item in items.drain(..) {
            for out in (self.f)(item) {
                self.out.push(out);
                if self.out.len() == BATCH {
                    self.down.push_batch(&mut self.out)?;
                    // The iterator may run user code too.
                    enter_stage(self.stage);
                }
            }
        }
        if self.out.is_empty() {
            Ok(())
        } else {
            self.down.push_batch(&mut self.out)
        }
    }

    fn finish(&mut self) -> Result<(), String> {
        self.down.finish()
    }
}

struct FilterSink<F, T> {
    f: Rc<F>,
    down: Box<dyn Sink<T>>,
    stage: usize,
}

impl<T, F: Fn(&T) -> bool> Sink<T> for FilterSink<F, T> {
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        if (self.f)(&item) {
            self.down.push(item)
        } else {
            Ok(())
        }
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        enter_stage(self.stage);
        items.retain(&*self.f);
        self.down.push_batch(items)
    }

    fn finish(&mut self) -> Result<(), String> {
        self.down.finish()
    }
}

struct MapPartitionsSink<F, T, U> {
    f: Rc<F>,
    buffer: Vec<T>,
    down: Box<dyn Sink<U>>,
    stage: usize,
}

impl<T, U: Data, F: Fn(Vec<T>) -> Vec<U>> Sink<T> for MapPartitionsSink<F, T, U> {
    fn push(&mut self, item: T) -> Result<(), String> {
        self.buffer.push(item);
        Ok(())
    }

    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        self.buffer.append(items);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        enter_stage(self.stage);
        let mut out = (self.f)(std::mem::take(&mut self.buffer));
        let bytes = out.iter().map(Data::encoded_size_hint).sum();
        self.down.size_hint(out.len(), bytes);
        self.down.push_batch(&mut out)?;
        self.down.finish()
    }
}

/// The hasher of the map-side combine's table.
type KeyHasher = foldhash::fast::RandomState;

/// The reducer of `reduce_by_key`.
pub(crate) struct KeyReducer<K, V, F> {
    shared: Rc<Combiner<K, V, F>>,
}

/// What the combine sinks of a `reduce_by_key` reducer share.
struct Combiner<K, V, F> {
    f: F,
    hasher: KeyHasher,
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
struct CombineStorage<K, V> {
    /// One entry per distinct key.
    table: HashTable<Slot<V>>,
    /// The distinct keys, in order of first appearance.
    keys: Vec<K>,
    /// The encodings of more than [`SHORT_KEY`] bytes, back to back.
    long_keys: Vec<u8>,
    /// Where a key that is not a string is encoded.
    scratch: Vec<u8>,
    /// The merged values in the order of `keys`, while they are pushed on.
    values: Vec<Option<V>>,
}

impl<K, V> Default for CombineStorage<K, V> {
    fn default() -> Self {
        Self {
            table: HashTable::new(),
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
        self.keys.clear();
        self.long_keys.clear();
        self.values.clear();
    }
}

/// An entry of the combine's table: the key as the table compares it, its
/// index in `keys`, and its merged value. Finding a key with a short
/// encoding (every word of a word count) reads this entry and nothing else.
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

    fn new(f: F) -> Self {
        Self {
            shared: Rc::new(Combiner {
                f,
                hasher: KeyHasher::default(),
                by_bytes: !K::codec().contains("json"),
                storage: RefCell::new(CombineStorage::default()),
            }),
        }
    }

    /// The map-side combine, as a sink pushing into `down`.
    fn combine_sink(&self, down: Box<dyn Sink<(K, V)>>, stage: usize) -> CombineSink<K, V, F> {
        let mut storage = self.shared.storage.take();
        storage.clear();
        CombineSink {
            combiner: Rc::clone(&self.shared),
            storage,
            down,
            stage,
        }
    }
}

/// The map-side combine: merges the values of equal keys. Keys leave in the
/// order of their first appearance, so the output does not depend on the
/// hasher.
struct CombineSink<K, V, F> {
    combiner: Rc<Combiner<K, V, F>>,
    storage: CombineStorage<K, V>,
    down: Box<dyn Sink<(K, V)>>,
    stage: usize,
}

impl<K, V, F> Sink<(K, V)> for CombineSink<K, V, F>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V,
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

    fn finish(&mut self) -> Result<(), String> {
        enter_stage(self.stage);
        let CombineStorage {
            table,
            keys,
            values,
            ..
        } = &mut self.storage;
        // The merged values in the keys' order, and the output's size.
        values.clear();
        values.resize_with(keys.len(), || None);
        let mut bytes = 0;
        for slot in table.drain() {
            let key = match slot.key.encoded_len() {
                Some(len) => len,
                None => keys[slot.index as usize].encoded_size_hint(),
            };
            bytes += 4 + key + slot.value.as_ref().map_or(0, Data::encoded_size_hint);
            values[slot.index as usize] = slot.value;
        }
        self.down.size_hint(keys.len(), bytes);
        let mut batch = Vec::with_capacity(BATCH.min(keys.len()));
        for (key, value) in keys.drain(..).zip(values.drain(..)) {
            batch.push((key, value.expect("a merged value is always present")));
            if batch.len() == BATCH {
                self.down.push_batch(&mut batch)?;
            }
        }
        if !batch.is_empty() {
            self.down.push_batch(&mut batch)?;
        }
        self.down.finish()
    }
}

impl<K, V, F> CombineSink<K, V, F>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V,
{
    /// Adds one pair to the table.
    #[inline]
    fn merge(&mut self, (key, value): (K, V)) {
        let combiner = &*self.combiner;
        let hasher = &combiner.hasher;
        let CombineStorage {
            table,
            keys,
            long_keys,
            scratch,
            ..
        } = &mut self.storage;
        let rehash = |slot: &Slot<V>| match slot.key.0[1] & TAG {
            LONG => hasher.hash_one(slot.key.long_key(long_keys)),
            BY_EQ => hasher.hash_one(&keys[slot.index as usize]),
            _ => hasher.hash_one(slot.key.as_u128()),
        };
        let (entry, repr) = if !combiner.by_bytes {
            let hash = hasher.hash_one(&key);
            let entry = table.entry(hash, |slot| keys[slot.index as usize] == key, rehash);
            (entry, KeyRepr([0, BY_EQ]))
        } else {
            let bytes = key_bytes(&key, scratch);
            if bytes.len() <= SHORT_KEY {
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
            }
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
                    index: to_u32(keys.len()),
                    value: Some(value),
                });
                keys.push(key);
            }
        }
    }
}

impl<K, V, F> Drop for CombineSink<K, V, F> {
    fn drop(&mut self) {
        let mut storage = std::mem::take(&mut self.storage);
        storage.clear();
        self.combiner.storage.replace(storage);
    }
}

impl<K, V, F> ChainFn for KeyReducer<K, V, F>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V + 'static,
{
    fn input_codec(&self) -> String {
        <(K, V)>::codec()
    }

    fn compose(&self, downstream: ErasedSink, stage: usize) -> Option<ErasedSink> {
        let downstream = unerase::<(K, V)>(downstream)?;
        Some(erase::<(K, V)>(Box::new(
            self.combine_sink(downstream, stage),
        )))
    }

    fn encoder(&self, slot: OutputSlot, input: &Rows) -> ErasedSink {
        encoder::<(K, V)>(slot, input)
    }

    fn feed(&self, input: &Rows, head: ErasedSink, node: &str) -> Result<(), String> {
        feed::<(K, V)>(input, head, node)
    }
}

impl<K, V, F> KeyReducerFn for KeyReducer<K, V, F>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V + 'static,
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

/// A `reduce` reducer.
pub(crate) trait ReduceAllFn {
    fn reduce_all(&self, input: &Rows, node: &str) -> Result<Rows, String>;
}

/// A `foreach_partition` function.
pub(crate) trait OutputFn {
    fn foreach_partition(
        &self,
        key: &IdempotencyKey,
        input: &Rows,
        node: &str,
    ) -> Result<(), String>;
}

/// The reducer of `reduce`.
pub(crate) struct Reducer<T, F> {
    f: F,
    types: PhantomData<fn(T, T) -> T>,
}

impl<T, F> Reducer<T, F>
where
    T: Data,
    F: Fn(T, T) -> T + 'static,
{
    pub(crate) fn boxed(f: F) -> Function {
        Function::Reducer(Box::new(Self {
            f,
            types: PhantomData,
        }))
    }
}

impl<T, F> ReduceAllFn for Reducer<T, F>
where
    T: Data,
    F: Fn(T, T) -> T + 'static,
{
    fn reduce_all(&self, input: &Rows, node: &str) -> Result<Rows, String> {
        let mut acc: Option<T> = None;
        for (i, record) in records(input).enumerate() {
            let record = record.map_err(|e| format!("{node}: {e}"))?;
            let value = T::decode(record).map_err(|e| decode_error::<T>(node, i, e))?;
            acc = Some(match acc.take() {
                None => value,
                Some(acc) => (self.f)(acc, value),
            });
        }
        Ok(encode_all(acc.as_slice()))
    }
}

/// A function called with a batch time over encoded records, returning
/// encoded records: `update-state`, `map-with-state`, `transform`.
pub(crate) trait BatchFn {
    fn call(&self, batch_time_ms: u64, input: &Rows, node: &str) -> Result<Rows, String>;
}

/// The function of `foreach_partition`.
pub(crate) struct Output<T, F> {
    f: F,
    types: PhantomData<fn(Vec<T>)>,
}

impl<T, F> Output<T, F>
where
    T: Data,
    F: Fn(&IdempotencyKey, Vec<T>) -> Result<(), String> + 'static,
{
    pub(crate) fn boxed(f: F) -> Function {
        Function::Output(Box::new(Self {
            f,
            types: PhantomData,
        }))
    }
}

impl<T, F> OutputFn for Output<T, F>
where
    T: Data,
    F: Fn(&IdempotencyKey, Vec<T>) -> Result<(), String> + 'static,
{
    fn foreach_partition(
        &self,
        key: &IdempotencyKey,
        input: &Rows,
        node: &str,
    ) -> Result<(), String> {
        let records = decode_all::<T>(input, node)?;
        (self.f)(key, records).map_err(|e| format!("{node}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Json;
    use proptest::collection::vec;
    use proptest::prelude::*;

    type Add = fn(i64, i64) -> i64;

    fn reducer() -> KeyReducer<String, i64, Add> {
        KeyReducer::new(i64::wrapping_add)
    }

    /// Collects what a pipeline pushes into it.
    struct Collect<T>(Rc<RefCell<(Vec<T>, bool)>>);

    impl<T> Sink<T> for Collect<T> {
        fn push(&mut self, item: T) -> Result<(), String> {
            self.0.borrow_mut().0.push(item);
            Ok(())
        }
        fn finish(&mut self) -> Result<(), String> {
            self.0.borrow_mut().1 = true;
            Ok(())
        }
    }

    /// Runs the combine sink over `pairs`.
    fn combine<K: Data + Hash + Eq>(
        reducer: &KeyReducer<K, i64, Add>,
        pairs: Vec<(K, i64)>,
    ) -> Vec<(K, i64)> {
        let out = Rc::new(RefCell::new((Vec::new(), false)));
        let mut sink = reducer.combine_sink(Box::new(Collect(Rc::clone(&out))), 0);
        for pair in pairs {
            sink.push(pair).unwrap();
        }
        sink.finish().unwrap();
        drop(sink);
        let (records, finished) = out.take();
        assert!(finished, "finish reaches downstream");
        records
    }

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
                prop_assert!(storage.keys.is_empty() && storage.long_keys.is_empty());
            }
        }

        #[test]
        fn combine_finds_keys_of_any_length_and_codec(
            partitions in vec(vec((key(), -3i64..3), 0..80), 1..3)
        ) {
            let strings = reducer();
            let tuples = KeyReducer::<(String, u8), i64, Add>::new(i64::wrapping_add);
            let numbers = KeyReducer::<i64, i64, Add>::new(i64::wrapping_add);
            let json = KeyReducer::<Json<String>, i64, Add>::new(i64::wrapping_add);
            prop_assert!(!json.shared.by_bytes);
            for pairs in partitions {
                prop_assert_eq!(combine(&strings, pairs.clone()), reference(&pairs));
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
