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
//!
//! Records can also move as their encodings ([`Sink::push_encoded`]): the
//! partition enters the first stage that way, and a `flat_map_str` stage
//! (`emit.rs`) passes on what its function emits as borrowed views that
//! way. A stage that works on encodings takes them as they are — the
//! combine merges a pair by its key's bytes, the encoder appends them,
//! `flat_map_str` hands its function a `&str` of the input — and any other
//! decodes them. So no word of a word count is copied into a value of its
//! own before the combine.
//!
//! The stages are in `narrow.rs` (the narrow operators), `emit.rs`
//! (`flat_map_str` and what its function emits into) and `combine.rs` (the
//! map-side combine and `reduce-groups` of `reduce_by_key`).

mod combine;
mod emit;
mod narrow;
mod table;

pub(crate) use combine::{KeyReducer, KeyReducerFn, PairBatch};
pub use emit::{Emit, Emitter};
pub(crate) use narrow::NarrowFn;

use std::any::Any;
use std::cell::Cell;
use std::marker::PhantomData;
use std::rc::Rc;

use crate::bindings::sluice::plugin::types::Rows;
use crate::codec::Data;
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
pub(crate) trait Sink<T: Data> {
    /// Takes one record (and pushes whatever it produces downstream).
    fn push(&mut self, item: T) -> Result<(), String>;
    /// Takes the records of `batch`, given as their encodings. Same as
    /// pushing them decoded, which is what it does unless the stage can
    /// work on encodings.
    fn push_encoded(&mut self, batch: EncodedBatch<'_>) -> Result<(), String> {
        let mut items = Vec::with_capacity(batch.len());
        for (i, record) in batch.records() {
            let record = record?;
            items.push(T::decode(record).map_err(|e| batch.decode_error::<T>(i, e))?);
        }
        self.push_batch(&mut items)
    }
    /// Takes every record of `items`, in order, and leaves `items` empty
    /// (its capacity is the caller's to reuse). Same as pushing them one by
    /// one; stages override it to loop without a dynamic call per record.
    fn push_batch(&mut self, items: &mut Vec<T>) -> Result<(), String> {
        for item in items.drain(..) {
            self.push(item)?;
        }
        Ok(())
    }
    /// Whether the stage takes pairs in a [`PairBatch`]
    /// ([`push_pair_batch`](Sink::push_pair_batch)): a combine that
    /// compares keys by their bytes.
    fn takes_pair_batches(&self) -> bool {
        false
    }
    /// Takes the pairs of `batch`, a [`PairBatch`] of the stage's value
    /// type, and leaves it empty. Called only if the stage
    /// [`takes_pair_batches`](Sink::takes_pair_batches).
    fn push_pair_batch(&mut self, _batch: &mut dyn Any) -> Result<(), String> {
        Err("this stage does not take pair batches".to_string())
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

fn erase<T: Data>(sink: Box<dyn Sink<T>>) -> ErasedSink {
    Box::new(sink)
}

fn unerase<T: Data>(sink: ErasedSink) -> Option<Box<dyn Sink<T>>> {
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
    /// This stage's sink as the last stage of the chain: it leaves the
    /// chain's output rows in `slot` when it finishes. `input` is the
    /// partition the chain runs over, to size the output buffers.
    fn compose_last(&self, slot: OutputSlot, input: &Rows, stage: usize) -> ErasedSink;
    /// Pushes the records of `input` into `head` (a `Box<dyn Sink<In>>`, as
    /// returned by [`compose`](ChainFn::compose) with `stage` 0) as
    /// encodings, in batches of [`BATCH`], and finishes it. Errors name
    /// `node`.
    fn feed(&self, input: &Rows, head: ErasedSink, node: &str) -> Result<(), String>;
}

/// Runs a chain of stages (each with its node's name) over `input`: builds
/// the pipeline of sinks from the last stage back to the first, then feeds
/// the input's records into it, and returns what the last stage wrote.
pub(crate) fn run_pipeline(chain: &[(&str, &dyn ChainFn)], input: Rows) -> Result<Rows, String> {
    let output: OutputSlot = Rc::new(Cell::new(None));
    let last = chain.len() - 1;
    let mut sink = chain[last].1.compose_last(Rc::clone(&output), &input, last);
    for (stage, (_, function)) in chain.iter().enumerate().rev().skip(1) {
        sink = function.compose(sink, stage).ok_or_else(|| {
            let (next, next_function) = chain[stage + 1];
            format!(
                "{next}: the previous stage of the chain does not produce {} records; \
                 the host chained functions of streams that do not follow each other",
                next_function.input_codec()
            )
        })?;
    }
    let (first_name, first) = chain[0];
    first.feed(&input, sink, first_name)?;
    drop(input);
    Ok(output
        .take()
        .expect("a finished pipeline leaves its output in the slot"))
}

/// [`ChainFn::feed`] for input records of type `T`.
fn feed<T: Data>(input: &Rows, head: ErasedSink, node: &str) -> Result<(), String> {
    let mut head = unerase::<T>(head).ok_or_else(|| {
        format!(
            "{node}: the pipeline does not start with a sink of {} records",
            T::codec()
        )
    })?;
    let mut start = 0;
    for (chunk, ends) in input.ends.chunks(BATCH).enumerate() {
        // The first stage's codec: a panic in a hand-written decoder is
        // reported as that stage's.
        enter_stage(0);
        head.push_encoded(EncodedBatch {
            data: &input.data,
            start,
            ends,
            first_index: chunk * BATCH,
            node,
            from_sdk: false,
        })?;
        start = ends[ends.len() - 1] as usize;
    }
    head.finish()
}

/// Records given as their encodings: record `i` of the batch is
/// `data[ends[i - 1]..ends[i]]`, the first one starting at `start`. What a
/// stage reports about them names `node` (the stage that produced them, or
/// the chain's first stage for its input) and their index in the
/// partition, `first_index + i`.
#[derive(Clone, Copy)]
pub(crate) struct EncodedBatch<'a> {
    pub(crate) data: &'a [u8],
    pub(crate) start: usize,
    pub(crate) ends: &'a [u32],
    pub(crate) first_index: usize,
    pub(crate) node: &'a str,
    /// Whether this SDK encoded the records from values of their type (an
    /// emitter), so that they need no checking; not for the host's input.
    pub(crate) from_sdk: bool,
}

impl<'a> EncodedBatch<'a> {
    /// How many records there are.
    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// Each record's index in the partition and its bytes; offsets that go
    /// backwards or past the data are an error naming the node and the
    /// record.
    pub(crate) fn records(self) -> impl Iterator<Item = (usize, Result<&'a [u8], String>)> {
        let mut start = self.start;
        self.ends.iter().enumerate().map(move |(i, &end)| {
            let index = self.first_index + i;
            let end = end as usize;
            match self.data.get(start..end) {
                Some(record) => {
                    start = end;
                    (index, Ok(record))
                }
                None => (
                    index,
                    Err(format!(
                        "{}: malformed input rows: record {index} ends at {end}, after {start}, in {} bytes",
                        self.node,
                        self.data.len()
                    )),
                ),
            }
        })
    }

    /// The error for record `index` that does not decode as `T`.
    pub(crate) fn decode_error<T: Data>(&self, index: usize, e: impl std::fmt::Display) -> String {
        decode_error::<T>(self.node, index, e)
    }
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

/// The 16 bytes of `within` from where `piece` starts, if `piece` lies in
/// `within` and 16 bytes follow its start there: a short key or word read
/// with one fixed-width load (then cut to its length) instead of a copy of
/// its own length.
#[inline]
fn window16<'a>(piece: &[u8], within: &'a [u8]) -> Option<&'a [u8; 16]> {
    let at = piece.as_ptr().addr().wrapping_sub(within.as_ptr().addr());
    let window = within.get(at..at.checked_add(16)?)?;
    Some(window.try_into().expect("16 bytes"))
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

    /// Copies the records' bytes at once (they lie back to back), not a
    /// copy per record (a call out of the guest's code, `memory.copy`, each).
    fn push_encoded(&mut self, batch: EncodedBatch<'_>) -> Result<(), String> {
        self.reserve();
        let (data, start) = (batch.data, batch.start);
        let mut end = start;
        for (_, record) in batch.records() {
            end += record?.len();
        }
        let base = self.rows.data.len();
        self.rows.data.extend_from_slice(&data[start..end]);
        // Every moved end is at most the new length, checked to fit a u32.
        let total = end_offset(&self.rows.data);
        let moved = |record_end: &u32| {
            let moved = base + *record_end as usize - start;
            debug_assert!(moved <= total as usize);
            moved as u32
        };
        self.rows.ends.extend(batch.ends.iter().map(moved));
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
