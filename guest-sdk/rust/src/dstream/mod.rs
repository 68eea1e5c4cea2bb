//! [`DStream`]: a typed stream of batches and its operators, as in Spark
//! Streaming.
//!
//! Transformations return a new stream; output operations (`print`,
//! `save_as_text_files`, `foreach_partition`) end a branch of the graph.
//! Nothing runs while the job is defined: every closure is registered in the
//! plugin's function table and the host calls it later, once per partition
//! per batch, with consecutive narrow operators (`map`, `flat_map`, `filter`,
//! `map_partitions`) fused into one call.
//!
//! ```
//! use sluice_guest::prelude::*;
//! # let ctx = StreamingContext::new("doc");
//!
//! let lines = ctx.socket_text_stream("localhost", 9999);
//! let counts = lines
//!     .flat_map(|l: String| l.split(' ').map(String::from).collect::<Vec<_>>())
//!     .map(|w| (w, 1i64))
//!     .reduce_by_key(|a, b| a + b);
//! counts.print();
//! ```
//!
//! Every node is named after the operator and where it was called, e.g.
//! `"map at src/lib.rs:12:10"`; the host uses that name in its messages.
//! Operators on pairs `(K, V)` need `K: Hash + Eq` and group keys by their
//! encoded bytes (see [`codec`](crate::codec)).

mod join;
mod state;
mod window;

pub use state::MapWithStateDStream;

use std::cell::RefCell;
use std::hash::Hash;
use std::marker::PhantomData;
use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

use crate::bindings::sluice::plugin::types::{
    self, FunctionId, NodeId, NodeKind, ReduceByKey, SaveAsTextFiles, SaveToSqlite,
};
use crate::codec::{Bytes, Data, Numeric};
use crate::function::{Emitter, Function, KeyReducer, NarrowFn, Output, Reducer};
use crate::graph::{Graph, node_name};
use crate::output::IdempotencyKey;
use crate::state::Transform;

/// A discretized stream: a sequence of batches of records of type `T`
/// (Spark's `DStream[T]`). Cheap to clone: clones are the same stream.
#[must_use = "a DStream computes nothing until an output operation (print, save_as_text_files, foreach_partition) uses it"]
pub struct DStream<T> {
    pub(crate) graph: Rc<RefCell<Graph>>,
    pub(crate) id: NodeId,
    records: PhantomData<fn() -> T>,
}

impl<T> Clone for DStream<T> {
    fn clone(&self) -> Self {
        Self::new(Rc::clone(&self.graph), self.id)
    }
}

impl<T> std::fmt::Debug for DStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let graph = self.graph.borrow();
        f.debug_struct("DStream")
            .field("node", &graph.node_name(self.id))
            .finish()
    }
}

impl<T> DStream<T> {
    pub(crate) fn new(graph: Rc<RefCell<Graph>>, id: NodeId) -> Self {
        Self {
            graph,
            id,
            records: PhantomData,
        }
    }
}

/// Plumbing shared by the operators.
impl<T: Data> DStream<T> {
    /// A node reading this stream.
    fn child<U: Data>(&self, name: &Rc<str>, kind: NodeKind) -> DStream<U> {
        let id = self
            .graph
            .borrow_mut()
            .add_node(name, kind, vec![self.id], U::codec());
        DStream::new(Rc::clone(&self.graph), id)
    }

    /// A node reading this stream that calls a user function.
    fn child_with_function<U: Data>(
        &self,
        name: &Rc<str>,
        function: Function,
        kind: impl FnOnce(FunctionId) -> NodeKind,
    ) -> DStream<U> {
        let function = self.graph.borrow_mut().add_function(name, function);
        self.child(name, kind(function))
    }

    /// An output node reading this stream.
    fn output(&self, name: &Rc<str>, kind: NodeKind) {
        self.graph
            .borrow_mut()
            .add_node(name, kind, vec![self.id], String::new());
    }

    fn check_partitions(&self, name: &Rc<str>, partitions: Option<u32>) {
        if partitions == Some(0) {
            self.graph.borrow_mut().error(format!(
                "{name}: the number of partitions must be at least 1"
            ));
        }
    }
}

/// Transformations and outputs of any stream.
impl<T: Data> DStream<T> {
    /// Names the operator that makes this stream (Flink's `uid`) and returns
    /// the stream. A stateful operator's state is kept under its name, so
    /// name every stateful operator: an unnamed one gets a name from its
    /// place in the graph, which changes when the code around it changes.
    /// Names are unique in a job.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let running = words
    ///     .map(|w| (w, 1i64))
    ///     .update_state_by_key(|new: Vec<i64>, n: Option<i64>| Some(n.unwrap_or(0) + new.len() as i64))
    ///     .name("running-counts");
    /// ```
    pub fn name(&self, name: &str) -> DStream<T> {
        self.graph.borrow_mut().set_uid(self.id, name);
        self.clone()
    }

    /// Checkpoints the job at least every `interval` (Spark's
    /// `DStream.checkpoint`), which must be a multiple of this stream's
    /// slide. A checkpoint is always of the whole job, so that state and
    /// source positions agree; the job checkpoints at the shortest interval
    /// asked for (`--checkpoint-interval` or a stream's), and only when run
    /// with `--checkpoint`.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # use std::time::Duration;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let running = words
    ///     .map(|w| (w, 1i64))
    ///     .update_state_by_key(|new: Vec<i64>, n: Option<i64>| Some(n.unwrap_or(0) + new.len() as i64))
    ///     .name("running-counts")
    ///     .checkpoint(Duration::from_secs(5));
    /// ```
    pub fn checkpoint(&self, interval: Duration) -> DStream<T> {
        self.graph.borrow_mut().set_checkpoint(self.id, interval);
        self.clone()
    }

    /// Applies `f` to a whole batch, every partition at once, in one call
    /// (Spark's `transform`): for operations that need the whole batch, such
    /// as sorting it.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let sorted = words.transform(|mut batch: Vec<String>| {
    ///     batch.sort();
    ///     batch
    /// });
    /// ```
    #[track_caller]
    pub fn transform<U: Data>(&self, f: impl Fn(Vec<T>) -> Vec<U> + 'static) -> DStream<U> {
        let name = node_name("transform", Location::caller());
        let f = Transform::new(move |_time: u64, records: Vec<T>| f(records));
        self.child_with_function(&name, Function::Transform(Box::new(f)), NodeKind::Transform)
    }

    /// [`transform`](DStream::transform) that also gets the batch time, in
    /// milliseconds since the Unix epoch (Spark's `transform((rdd, time) => ...)`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let stamped: DStream<(u64, String)> = words.transform_with_time(|time, batch: Vec<String>| {
    ///     batch.into_iter().map(|w| (time, w)).collect()
    /// });
    /// ```
    #[track_caller]
    pub fn transform_with_time<U: Data>(
        &self,
        f: impl Fn(u64, Vec<T>) -> Vec<U> + 'static,
    ) -> DStream<U> {
        let name = node_name("transform_with_time", Location::caller());
        let f = Transform::new(f);
        self.child_with_function(&name, Function::Transform(Box::new(f)), NodeKind::Transform)
    }

    /// Applies `f` to every record (Spark's `map`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// let lengths: DStream<u64> = lines.map(|l| l.len() as u64);
    /// ```
    #[track_caller]
    pub fn map<U: Data>(&self, f: impl Fn(T) -> U + 'static) -> DStream<U> {
        let name = node_name("map", Location::caller());
        self.child_with_function(&name, NarrowFn::map(f), NodeKind::Map)
    }

    /// Applies `f` to every record and flattens the results: each record
    /// becomes zero or more (Spark's `flatMap`). `f` returns any iterable.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// let words = lines.flat_map(|l| l.split(' ').map(String::from).collect::<Vec<_>>());
    /// ```
    #[track_caller]
    pub fn flat_map<U, I>(&self, f: impl Fn(T) -> I + 'static) -> DStream<U>
    where
        U: Data,
        I: IntoIterator<Item = U>,
    {
        let name = node_name("flat_map", Location::caller());
        self.child_with_function(&name, NarrowFn::flat_map(f), NodeKind::FlatMap)
    }

    /// Keeps the records for which `f` is true (Spark's `filter`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// let errors = lines.filter(|l| l.starts_with("ERROR"));
    /// ```
    #[track_caller]
    pub fn filter(&self, f: impl Fn(&T) -> bool + 'static) -> DStream<T> {
        let name = node_name("filter", Location::caller());
        self.child_with_function(&name, NarrowFn::filter(f), NodeKind::Filter)
    }

    /// Applies `f` to all the records of a partition at once (Spark's
    /// `mapPartitions`), e.g. to set something up once per partition.
    /// Partitioning is the host's choice: do not rely on where a partition
    /// starts or ends.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// let numbered: DStream<(u64, String)> = lines.map_partitions(|lines| {
    ///     (0u64..).zip(lines).collect()
    /// });
    /// ```
    #[track_caller]
    pub fn map_partitions<U: Data>(&self, f: impl Fn(Vec<T>) -> Vec<U> + 'static) -> DStream<U> {
        let name = node_name("map_partitions", Location::caller());
        self.child_with_function(&name, NarrowFn::map_partitions(f), NodeKind::MapPartitions)
    }

    /// Redistributes the records round-robin over `partitions` partitions
    /// (Spark's `repartition`), to spread later work over more workers.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999).repartition(8);
    /// ```
    #[track_caller]
    pub fn repartition(&self, partitions: u32) -> DStream<T> {
        let name = node_name("repartition", Location::caller());
        self.check_partitions(&name, Some(partitions));
        self.child(&name, NodeKind::Repartition(partitions))
    }

    /// The records of this stream and of `other` (Spark's `union`). See
    /// [`StreamingContext::union`](crate::StreamingContext::union) for more
    /// than two.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let a = ctx.socket_text_stream("localhost", 9999);
    /// let b = ctx.text_file_stream("/data/incoming");
    /// let both = a.union(&b);
    /// ```
    #[track_caller]
    pub fn union(&self, other: &DStream<T>) -> DStream<T> {
        let name = node_name("union", Location::caller());
        let mut graph = self.graph.borrow_mut();
        if !Rc::ptr_eq(&self.graph, &other.graph) {
            graph.error(format!(
                "{name}: the other stream comes from another StreamingContext"
            ));
        }
        let id = graph.add_node(&name, NodeKind::Union, vec![self.id, other.id], T::codec());
        drop(graph);
        DStream::new(Rc::clone(&self.graph), id)
    }

    /// One record per batch: the number of records in it (Spark's `count`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// lines.count().print();
    /// ```
    #[track_caller]
    pub fn count(&self) -> DStream<i64> {
        let name = node_name("count", Location::caller());
        self.child(&name, NodeKind::Count)
    }

    /// One record per batch: all its records combined with `f` (Spark's
    /// `reduce`); no record for an empty batch. `f` must be associative and
    /// commutative: the host reduces partitions separately, then the partial
    /// results.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let numbers: DStream<i64> = ctx.queue_stream(vec![vec![3, 9, 4]]);
    /// let largest = numbers.reduce(|a, b| a.max(b));
    /// ```
    #[track_caller]
    pub fn reduce(&self, f: impl Fn(T, T) -> T + 'static) -> DStream<T> {
        let name = node_name("reduce", Location::caller());
        self.child_with_function(&name, Reducer::boxed(f), |id| {
            NodeKind::Reduce(types::Reducer::Function(id))
        })
    }

    /// How many times each distinct record occurs in a batch (Spark's
    /// `countByValue`). Counted by the host: no reducer runs in the plugin.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let counts: DStream<(String, i64)> = words.count_by_value();
    /// ```
    #[track_caller]
    pub fn count_by_value(&self) -> DStream<(T, i64)> {
        let name = node_name("count_by_value", Location::caller());
        let function = NarrowFn::map(|r: T| (r, ()));
        let pairs: DStream<(T, ())> = self.child_with_function(&name, function, NodeKind::Map);
        pairs.child(&name, builtin_by_key(types::Reducer::Count, None))
    }

    /// Prints the first 10 records of every batch to the host's standard
    /// output (Spark's `print()`). It is **at least once**: a batch that
    /// runs again after a restart from a checkpoint is printed again.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// ctx.socket_text_stream("localhost", 9999).print();
    /// ```
    #[track_caller]
    pub fn print(&self) {
        let name = node_name("print", Location::caller());
        self.output(&name, NodeKind::Print(10));
    }

    /// Prints the first `n` records of every batch (Spark's `print(num)`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// ctx.socket_text_stream("localhost", 9999).print_n(3);
    /// ```
    #[track_caller]
    pub fn print_n(&self, n: u32) {
        let name = node_name("print_n", Location::caller());
        self.output(&name, NodeKind::Print(n));
    }

    /// Writes every batch as text files, one record per line, into a
    /// directory named `prefix-<batch time in ms>[.suffix]` (Spark's
    /// `saveAsTextFiles`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// lines.save_as_text_files("out/lines", None);
    /// lines.save_as_text_files("out/lines", Some("txt"));
    /// ```
    #[track_caller]
    pub fn save_as_text_files(&self, prefix: impl Into<String>, suffix: Option<&str>) {
        let name = node_name("save_as_text_files", Location::caller());
        let kind = NodeKind::SaveAsTextFiles(SaveAsTextFiles {
            prefix: prefix.into(),
            suffix: suffix.map(String::from),
        });
        self.output(&name, kind);
    }

    /// Writes every batch to table `table` of the SQLite database at `path`
    /// (a local file; both are created if missing), **exactly once**: a
    /// batch's rows and its batch time commit in one transaction, and a
    /// batch already committed is skipped, so a batch re-run after a
    /// restart writes nothing twice (the guide's transactional output,
    /// built in). The table's columns are `batch_time`, then `key` and
    /// `value` for a stream of pairs, or `value` (see `wit/sluice.wit`,
    /// "Outputs and recovery").
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// lines
    ///     .map(|w| (w, 1i64))
    ///     .reduce_by_key(|a, b| a + b)
    ///     .save_to_sqlite("counts.db", "word_counts");
    /// ```
    #[track_caller]
    pub fn save_to_sqlite(&self, path: impl Into<String>, table: impl Into<String>) {
        let name = node_name("save_to_sqlite", Location::caller());
        let kind = NodeKind::SaveToSqlite(SaveToSqlite {
            path: path.into(),
            table: table.into(),
        });
        self.output(&name, kind);
    }

    /// Calls `f(key, records)` for every partition of every batch (Spark's
    /// `foreachRDD` + `foreachPartition`). An `Err` fails the batch with its
    /// message.
    ///
    /// It is **at least once**: a partition whose task is retried, or whose
    /// batch runs again after a restart from a checkpoint, is handed over
    /// again, with the same records and the same [`IdempotencyKey`] (job
    /// name, batch time, partition: partitions keep their numbers across
    /// restarts). To write each partition once, key what you write by it:
    /// in one transaction, skip a key your store already has, else write the
    /// records and the key (what [`DStream::save_to_sqlite`] does for you).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// ctx.socket_text_stream("localhost", 9999).foreach_partition(|key, lines| {
    ///     eprintln!("{key}: {} lines", lines.len()); // "MyJob/1700000000000/0: 3 lines"
    ///     Ok(())
    /// });
    /// ```
    #[track_caller]
    pub fn foreach_partition(
        &self,
        f: impl Fn(&IdempotencyKey, Vec<T>) -> Result<(), String> + 'static,
    ) {
        let name = node_name("foreach_partition", Location::caller());
        let function = self
            .graph
            .borrow_mut()
            .add_function(&name, Output::boxed(f));
        self.output(&name, NodeKind::ForeachPartition(function));
    }
}

fn builtin_by_key(reducer: types::Reducer, partitions: Option<u32>) -> NodeKind {
    NodeKind::ReduceByKey(ReduceByKey {
        reducer,
        partitions,
    })
}

/// Operators on key-value pairs (Spark's `PairDStreamFunctions`).
///
/// The `_with_partitions` variants set the number of partitions of the
/// shuffle; the others leave it to the host.
/// `flat_map` over borrowed lines: no copy of the input, nor of what is
/// emitted borrowed.
impl DStream<String> {
    /// Like [`flat_map`](DStream::flat_map), with `f` taking each record as
    /// a `&str` (a view of the partition's bytes, no copy) and emitting its
    /// outputs into an [`Emitter`]: `U` records, or borrowed forms of them
    /// — a `&str` as a `String`, a `(&str, v)` pair as a `(String, V)` —
    /// which the next stage takes as encodings. Followed by `reduce_by_key`,
    /// the words of a word count are merged by their bytes and never
    /// allocated:
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// let counts = lines
    ///     .flat_map_str(|line, out| {
    ///         for word in line.split(' ') {
    ///             out.emit((word, 1i64));
    ///         }
    ///     })
    ///     .reduce_by_key(|a, b| a + b);
    /// // Or words alone, with `extend`:
    /// let words: DStream<String> = lines.flat_map_str(|line, out| out.extend(line.split(' ')));
    /// ```
    ///
    /// In the job graph it is a `flat_map`.
    #[track_caller]
    pub fn flat_map_str<U: Data>(&self, f: impl Fn(&str, &mut Emitter<U>) + 'static) -> DStream<U> {
        let name = node_name("flat_map_str", Location::caller());
        self.child_with_function(
            &name,
            NarrowFn::<String, U>::flat_map_view(&name, f),
            NodeKind::FlatMap,
        )
    }
}

/// `flat_map` over borrowed byte records.
impl DStream<Bytes> {
    /// [`flat_map_str`](DStream::flat_map_str) for [`Bytes`] records: `f`
    /// takes each as a `&[u8]`, and emits `U` records, `&[u8]` as [`Bytes`]
    /// or `(&[u8], v)` pairs as `(Bytes, V)`.
    #[track_caller]
    pub fn flat_map_bytes<U: Data>(
        &self,
        f: impl Fn(&[u8], &mut Emitter<U>) + 'static,
    ) -> DStream<U> {
        let name = node_name("flat_map_bytes", Location::caller());
        self.child_with_function(
            &name,
            NarrowFn::<Bytes, U>::flat_map_view(&name, f),
            NodeKind::FlatMap,
        )
    }
}

impl<K, V> DStream<(K, V)>
where
    K: Data + Hash + Eq,
    V: Data,
{
    #[track_caller]
    fn reduce_by_key_impl(
        &self,
        op: &str,
        f: impl Fn(V, V) -> V + 'static,
        partitions: Option<u32>,
    ) -> DStream<(K, V)> {
        let name = node_name(op, Location::caller());
        self.check_partitions(&name, partitions);
        self.child_with_function(&name, KeyReducer::<K, V, _>::boxed(f), |function| {
            builtin_by_key(types::Reducer::Function(function), partitions)
        })
    }

    #[track_caller]
    fn builtin<W: Data>(
        &self,
        op: &str,
        reducer: types::Reducer,
        partitions: Option<u32>,
    ) -> DStream<(K, W)> {
        let name = node_name(op, Location::caller());
        self.check_partitions(&name, partitions);
        self.child(&name, builtin_by_key(reducer, partitions))
    }

    #[track_caller]
    fn group_by_key_impl(&self, op: &str, partitions: Option<u32>) -> DStream<(K, Vec<V>)> {
        let name = node_name(op, Location::caller());
        self.check_partitions(&name, partitions);
        self.child(&name, NodeKind::GroupByKey(partitions))
    }

    /// Combines the values of each key with `f` (Spark's `reduceByKey`).
    /// `f` must be associative and commutative: values are combined within
    /// each partition first (a map-side combine), then across partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let counts = words.map(|w| (w, 1i64)).reduce_by_key(|a, b| a + b);
    /// ```
    #[track_caller]
    pub fn reduce_by_key(&self, f: impl Fn(V, V) -> V + 'static) -> DStream<(K, V)> {
        self.reduce_by_key_impl("reduce_by_key", f, None)
    }

    /// [`reduce_by_key`](DStream::reduce_by_key) into `partitions` partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let counts = words.map(|w| (w, 1i64)).reduce_by_key_with_partitions(|a, b| a + b, 4);
    /// ```
    #[track_caller]
    pub fn reduce_by_key_with_partitions(
        &self,
        f: impl Fn(V, V) -> V + 'static,
        partitions: u32,
    ) -> DStream<(K, V)> {
        self.reduce_by_key_impl("reduce_by_key_with_partitions", f, Some(partitions))
    }

    /// All the values of each key in a batch (Spark's `groupByKey`), in no
    /// particular order. Prefer [`reduce_by_key`](DStream::reduce_by_key)
    /// when the values are combined anyway: it shuffles less.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let by_first_letter: DStream<(String, Vec<String>)> = words
    ///     .map(|w| (w.chars().take(1).collect::<String>(), w))
    ///     .group_by_key();
    /// ```
    #[track_caller]
    pub fn group_by_key(&self) -> DStream<(K, Vec<V>)> {
        self.group_by_key_impl("group_by_key", None)
    }

    /// [`group_by_key`](DStream::group_by_key) into `partitions` partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![vec![("a".into(), 1)]]);
    /// let groups = pairs.group_by_key_with_partitions(2);
    /// ```
    #[track_caller]
    pub fn group_by_key_with_partitions(&self, partitions: u32) -> DStream<(K, Vec<V>)> {
        self.group_by_key_impl("group_by_key_with_partitions", Some(partitions))
    }

    /// Applies `f` to the value of every pair, keeping its key (Spark's
    /// `mapValues`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![vec![("a".into(), 1)]]);
    /// let doubled = pairs.map_values(|v| v * 2);
    /// ```
    #[track_caller]
    pub fn map_values<W: Data>(&self, f: impl Fn(V) -> W + 'static) -> DStream<(K, W)> {
        let name = node_name("map_values", Location::caller());
        let function = NarrowFn::map(move |(k, v): (K, V)| (k, f(v)));
        self.child_with_function(&name, function, NodeKind::Map)
    }

    /// Applies `f` to the value of every pair and pairs each result with the
    /// key (Spark's `flatMapValues`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, String)> =
    ///     ctx.queue_stream(vec![vec![("k".into(), "a b".into())]]);
    /// let words = pairs.flat_map_values(|v| v.split(' ').map(String::from).collect::<Vec<_>>());
    /// ```
    #[track_caller]
    pub fn flat_map_values<W, I>(&self, f: impl Fn(V) -> I + 'static) -> DStream<(K, W)>
    where
        K: Clone,
        W: Data,
        I: IntoIterator<Item = W>,
    {
        let name = node_name("flat_map_values", Location::caller());
        let function =
            NarrowFn::flat_map(move |(k, v): (K, V)| f(v).into_iter().map(move |w| (k.clone(), w)));
        self.child_with_function(&name, function, NodeKind::FlatMap)
    }

    /// The number of pairs of each key in a batch. Counted by the host: no
    /// plugin call.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, String)> = ctx.queue_stream(vec![vec![("k".into(), "v".into())]]);
    /// let counts: DStream<(String, i64)> = pairs.count_by_key();
    /// ```
    #[track_caller]
    pub fn count_by_key(&self) -> DStream<(K, i64)> {
        self.builtin("count_by_key", types::Reducer::Count, None)
    }

    /// [`count_by_key`](DStream::count_by_key) into `partitions` partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, ())> = ctx.queue_stream(vec![vec![("k".into(), ())]]);
    /// let counts = pairs.count_by_key_with_partitions(4);
    /// ```
    #[track_caller]
    pub fn count_by_key_with_partitions(&self, partitions: u32) -> DStream<(K, i64)> {
        self.builtin(
            "count_by_key_with_partitions",
            types::Reducer::Count,
            Some(partitions),
        )
    }
}

/// Built-in reducers over numeric values, run natively by the host with no
/// plugin call: faster than the equivalent
/// [`reduce_by_key`](DStream::reduce_by_key) closure.
impl<K, V> DStream<(K, V)>
where
    K: Data + Hash + Eq,
    V: Numeric,
{
    /// The sum of the values of each key.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let counts = words.map(|w| (w, 1i64)).sum_by_key();
    /// ```
    #[track_caller]
    pub fn sum_by_key(&self) -> DStream<(K, V)> {
        self.builtin("sum_by_key", types::Reducer::Sum, None)
    }

    /// [`sum_by_key`](DStream::sum_by_key) into `partitions` partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, f64)> = ctx.queue_stream(vec![vec![("k".into(), 0.5)]]);
    /// let sums = pairs.sum_by_key_with_partitions(4);
    /// ```
    #[track_caller]
    pub fn sum_by_key_with_partitions(&self, partitions: u32) -> DStream<(K, V)> {
        self.builtin(
            "sum_by_key_with_partitions",
            types::Reducer::Sum,
            Some(partitions),
        )
    }

    /// The smallest value of each key.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, u32)> = ctx.queue_stream(vec![vec![("k".into(), 3)]]);
    /// let minima = pairs.min_by_key();
    /// ```
    #[track_caller]
    pub fn min_by_key(&self) -> DStream<(K, V)> {
        self.builtin("min_by_key", types::Reducer::Min, None)
    }

    /// [`min_by_key`](DStream::min_by_key) into `partitions` partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, u32)> = ctx.queue_stream(vec![vec![("k".into(), 3)]]);
    /// let minima = pairs.min_by_key_with_partitions(4);
    /// ```
    #[track_caller]
    pub fn min_by_key_with_partitions(&self, partitions: u32) -> DStream<(K, V)> {
        self.builtin(
            "min_by_key_with_partitions",
            types::Reducer::Min,
            Some(partitions),
        )
    }

    /// The largest value of each key.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, f64)> = ctx.queue_stream(vec![vec![("k".into(), 2.5)]]);
    /// let maxima = pairs.max_by_key();
    /// ```
    #[track_caller]
    pub fn max_by_key(&self) -> DStream<(K, V)> {
        self.builtin("max_by_key", types::Reducer::Max, None)
    }

    /// [`max_by_key`](DStream::max_by_key) into `partitions` partitions.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, f64)> = ctx.queue_stream(vec![vec![("k".into(), 2.5)]]);
    /// let maxima = pairs.max_by_key_with_partitions(4);
    /// ```
    #[track_caller]
    pub fn max_by_key_with_partitions(&self, partitions: u32) -> DStream<(K, V)> {
        self.builtin(
            "max_by_key_with_partitions",
            types::Reducer::Max,
            Some(partitions),
        )
    }
}
