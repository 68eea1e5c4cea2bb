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
//! downcasts each sink once (`Box<dyn Sink<T>>` in a `Box<dyn Any>`), and a
//! record costs one dynamic call per stage.

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::hash::{BuildHasher, Hash};
use std::marker::PhantomData;
use std::rc::Rc;

use hashbrown::HashTable;

use crate::bindings::sluice::plugin::types::Rows;
use crate::codec::{Data, DecodeError, for_each_list_element, split_pair};
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
}

impl Function {
    /// What the function is, for messages about misuse by the host.
    pub(crate) fn what(&self) -> &'static str {
        match self {
            Function::Narrow(_) => "a narrow operator's function",
            Function::KeyReducer(_) => "a reduce_by_key reducer",
            Function::Reducer(_) => "a reduce reducer",
            Function::Output(_) => "a foreach_partition function",
        }
    }
}

/// A stage of a pipeline: takes records one at a time.
pub(crate) trait Sink<T> {
    /// Takes one record (and pushes whatever it produces downstream).
    fn push(&mut self, item: T) -> Result<(), String>;
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
    /// Decodes `input` with the `In` codec one record at a time, pushes
    /// every record into `head` (a `Box<dyn Sink<In>>`, as returned by
    /// [`compose`](ChainFn::compose) with `stage` 0) and finishes it.
    /// Errors name `node`.
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
    for (i, record) in records(input).enumerate() {
        let record = record.map_err(|e| format!("{node}: {e}"))?;
        // The first stage's codec: a panic in a hand-written decoder is
        // reported as that stage's.
        enter_stage(0);
        let item = T::decode(record).map_err(|e| decode_error::<T>(node, i, e))?;
        head.push(item)?;
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

impl<T: Data> Sink<T> for Encoder<T> {
    #[inline]
    fn push(&mut self, item: T) -> Result<(), String> {
        if let Some((bytes, records)) = self.reserve.take() {
            self.rows.data.reserve(bytes);
            self.rows.ends.reserve(records);
        }
        item.encode(&mut self.rows.data);
        self.rows.ends.push(end_offset(&self.rows.data));
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
    down: Box<dyn Sink<U>>,
    stage: usize,
}

impl<T, U, F: Fn(T) -> U> Sink<T> for MapSink<F, U> {
    #[inline]
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        let out = (self.f)(item);
        self.down.push(out)
    }

    fn finish(&mut self) -> Result<(), String> {
        self.down.finish()
    }
}

struct FlatMapSink<F, U> {
    f: Rc<F>,
    down: Box<dyn Sink<U>>,
    stage: usize,
}

impl<T, U, I, F> Sink<T> for FlatMapSink<F, U>
where
    F: Fn(T) -> I,
    I: IntoIterator<Item = U>,
{
    #[inline]
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        for out in (self.f)(item) {
            self.down.push(out)?;
            // The iterator may run user code too.
            enter_stage(self.stage);
        }
        Ok(())
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
    #[inline]
    fn push(&mut self, item: T) -> Result<(), String> {
        enter_stage(self.stage);
        if (self.f)(&item) {
            self.down.push(item)
        } else {
            Ok(())
        }
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
    #[inline]
    fn push(&mut self, item: T) -> Result<(), String> {
        self.buffer.push(item);
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        enter_stage(self.stage);
        let out = (self.f)(std::mem::take(&mut self.buffer));
        let bytes = out.iter().map(Data::encoded_size_hint).sum();
        self.down.size_hint(out.len(), bytes);
        for record in out {
            self.down.push(record)?;
        }
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
    /// The combine's hash table, `(hash, index into merged)`, and its list
    /// of keys and merged values in order of first appearance: kept between
    /// calls so that their capacity is reused. A sink takes them while it
    /// runs and gives them back, empty, when it is dropped.
    table: RefCell<HashTable<(u64, usize)>>,
    merged: RefCell<Vec<(K, Option<V>)>>,
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
                table: RefCell::new(HashTable::new()),
                merged: RefCell::new(Vec::new()),
            }),
        }
    }

    /// The map-side combine, as a sink pushing into `down`.
    fn combine_sink(&self, down: Box<dyn Sink<(K, V)>>, stage: usize) -> CombineSink<K, V, F> {
        let mut table = self.shared.table.take();
        table.clear();
        let mut merged = self.shared.merged.take();
        merged.clear();
        CombineSink {
            combiner: Rc::clone(&self.shared),
            table,
            merged,
            down,
            stage,
        }
    }
}

/// Merges the values of equal keys. Keys leave in the order of their first
/// appearance, so the output does not depend on the hasher.
struct CombineSink<K, V, F> {
    combiner: Rc<Combiner<K, V, F>>,
    table: HashTable<(u64, usize)>,
    /// `None` only while a value is handed to the user's reducer.
    merged: Vec<(K, Option<V>)>,
    down: Box<dyn Sink<(K, V)>>,
    stage: usize,
}

impl<K, V, F> Sink<(K, V)> for CombineSink<K, V, F>
where
    K: Data + Hash + Eq,
    V: Data,
    F: Fn(V, V) -> V,
{
    #[inline]
    fn push(&mut self, (key, value): (K, V)) -> Result<(), String> {
        enter_stage(self.stage);
        let hash = self.combiner.hasher.hash_one(&key);
        let merged = &mut self.merged;
        match self
            .table
            .find(hash, |&(h, i)| h == hash && merged[i].0 == key)
        {
            Some(&(_, i)) => {
                let slot = &mut merged[i].1;
                let acc = slot.take().expect("a merged value is always present");
                *slot = Some((self.combiner.f)(acc, value));
            }
            None => {
                self.table
                    .insert_unique(hash, (hash, merged.len()), |&(h, _)| h);
                merged.push((key, Some(value)));
            }
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), String> {
        enter_stage(self.stage);
        let bytes = self
            .merged
            .iter()
            .map(|(k, v)| 4 + k.encoded_size_hint() + v.as_ref().map_or(0, Data::encoded_size_hint))
            .sum();
        self.down.size_hint(self.merged.len(), bytes);
        for (key, value) in self.merged.drain(..) {
            let value = value.expect("a merged value is always present");
            self.down.push((key, value))?;
        }
        self.down.finish()
    }
}

impl<K, V, F> Drop for CombineSink<K, V, F> {
    fn drop(&mut self) {
        self.merged.clear();
        self.combiner
            .merged
            .replace(std::mem::take(&mut self.merged));
        self.combiner.table.replace(std::mem::take(&mut self.table));
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
        batch_time_ms: u64,
        partition: u32,
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

/// The function of `foreach_partition`.
pub(crate) struct Output<T, F> {
    f: F,
    types: PhantomData<fn(Vec<T>)>,
}

impl<T, F> Output<T, F>
where
    T: Data,
    F: Fn(u64, u32, Vec<T>) -> Result<(), String> + 'static,
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
    F: Fn(u64, u32, Vec<T>) -> Result<(), String> + 'static,
{
    fn foreach_partition(
        &self,
        batch_time_ms: u64,
        partition: u32,
        input: &Rows,
        node: &str,
    ) -> Result<(), String> {
        let records = decode_all::<T>(input, node)?;
        (self.f)(batch_time_ms, partition, records).map_err(|e| format!("{node}: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    fn reducer() -> KeyReducer<String, i64, fn(i64, i64) -> i64> {
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
    fn combine(
        reducer: &KeyReducer<String, i64, fn(i64, i64) -> i64>,
        pairs: Vec<(String, i64)>,
    ) -> Vec<(String, i64)> {
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
    fn reference(pairs: &[(String, i64)]) -> Vec<(String, i64)> {
        let mut out: Vec<(String, i64)> = Vec::new();
        for (k, v) in pairs {
            match out.iter_mut().find(|(key, _)| key == k) {
                Some((_, sum)) => *sum = sum.wrapping_add(*v),
                None => out.push((k.clone(), *v)),
            }
        }
        out
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
                let table = reducer.shared.table.borrow();
                prop_assert!(table.capacity() >= capacity, "the table is kept");
                capacity = table.capacity();
                prop_assert!(reducer.shared.merged.borrow().is_empty());
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
