//! [`StreamingContext`], where a job creates its input streams, and the
//! [`Job`] trait a plugin implements.
//!
//! ```
//! use sluice_guest::prelude::*;
//!
//! struct Squares;
//! impl Job for Squares {
//!     fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
//!         ctx.queue_stream(vec![vec![1i64, 2, 3], vec![4]])
//!             .map(|x| x * x)
//!             .print();
//!         Ok(())
//!     }
//! }
//! # let mut ctx = StreamingContext::new("Squares");
//! # Squares::define(&mut ctx, &Args::default()).unwrap();
//! ```

use std::cell::RefCell;
use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

use crate::args::Args;
use crate::bindings::sluice::plugin::types::{
    BroadcastValue, LinesFile, NodeKind, QueueSource, RateSource, SocketTextSource, Source,
    TextFileSource,
};
use crate::codec::Data;
use crate::dstream::DStream;
use crate::graph::{Graph, node_name};
use crate::rows::encode_all;
use crate::shared::{Broadcast, DoubleAccumulator, LongAccumulator, declare_broadcast};
use crate::time::duration_ms;

/// A streaming job: its [`define`](Job::define) builds the DStream graph, as
/// the driver program of a Spark Streaming application does. Export it with
/// [`export_job!`](crate::export_job).
pub trait Job {
    /// Creates the job's input streams on `ctx`, transforms them and registers
    /// output operations. `args` are the `--arg KEY=VALUE` pairs of
    /// `sluice run`. An `Err` stops the job before it starts, with its message.
    ///
    /// The host calls this once in every instance of the plugin, so it must
    /// build the same graph each time for the same arguments.
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String>;
}

/// The entry point of a job's definition: creates input DStreams (Spark's
/// `StreamingContext`). The batch interval, parallelism and limits are the
/// host's settings, not the job's.
pub struct StreamingContext {
    pub(crate) graph: Rc<RefCell<Graph>>,
}

impl StreamingContext {
    /// A context for a job called `name` (the name the host shows). The SDK
    /// creates one for each `define` call; create one yourself only to test
    /// a job's definition.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            graph: Rc::new(RefCell::new(Graph::new(name.into()))),
        }
    }

    #[track_caller]
    fn source<T: Data>(&self, op: &str, source: Source) -> DStream<T> {
        self.named_source(&node_name(op, Location::caller()), source)
    }

    fn named_source<T: Data>(&self, name: &Rc<str>, source: Source) -> DStream<T> {
        let id = self.graph.borrow_mut().add_node(
            name,
            NodeKind::Source(source),
            Vec::new(),
            T::codec(),
        );
        DStream::new(Rc::clone(&self.graph), id)
    }

    /// Lines of UTF-8 text read from a TCP server (Spark's
    /// `socketTextStream`), e.g. one started with `nc -lk 9999`.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # fn define(ctx: &mut StreamingContext) {
    /// let lines: DStream<String> = ctx.socket_text_stream("localhost", 9999);
    /// # }
    /// ```
    #[track_caller]
    pub fn socket_text_stream(&self, host: impl Into<String>, port: u16) -> DStream<String> {
        self.source(
            "socket_text_stream",
            Source::SocketText(SocketTextSource {
                host: host.into(),
                port,
            }),
        )
    }

    /// Lines of the files that appear in `directory` (Spark's
    /// `textFileStream`). Files must be moved in atomically; names starting
    /// with `.` or `_` and nested directories are ignored. As in Spark, a
    /// file belongs to the batch of its modification time (one found late,
    /// to the first batch still open), and it is read whole into that batch;
    /// after a restart from a checkpoint, each file is still counted once.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # fn define(ctx: &mut StreamingContext) {
    /// let lines = ctx.text_file_stream("/data/incoming");
    /// # }
    /// ```
    #[track_caller]
    pub fn text_file_stream(&self, directory: impl Into<String>) -> DStream<String> {
        self.source(
            "text_file_stream",
            Source::TextFile(TextFileSource {
                directory: directory.into(),
            }),
        )
    }

    /// A stream of records known in advance: each item of `batches` is the
    /// whole input of one batch (Spark's `queueStream` with `oneAtATime`).
    /// The batches are encoded into the graph, so keep them small.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # fn define(ctx: &mut StreamingContext) {
    /// let numbers: DStream<i64> = ctx.queue_stream(vec![vec![1, 2], vec![3]]);
    /// # }
    /// ```
    #[track_caller]
    pub fn queue_stream<T: Data>(&self, batches: impl IntoIterator<Item = Vec<T>>) -> DStream<T> {
        let batches = batches.into_iter().map(|b| encode_all(&b)).collect();
        self.source("queue_stream", Source::Queue(QueueSource::Batches(batches)))
    }

    /// The lines of a UTF-8 text file read by the host, `lines_per_batch`
    /// lines per batch: a queue stream too big to put in the graph.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # fn define(ctx: &mut StreamingContext) {
    /// let lines = ctx.queue_stream_from_lines_file("input.txt", 100);
    /// # }
    /// ```
    #[track_caller]
    pub fn queue_stream_from_lines_file(
        &self,
        path: impl Into<String>,
        lines_per_batch: u32,
    ) -> DStream<String> {
        let name = node_name("queue_stream_from_lines_file", Location::caller());
        let stream = self.named_source(
            &name,
            Source::Queue(QueueSource::LinesFile(LinesFile {
                path: path.into(),
                lines_per_batch,
            })),
        );
        if lines_per_batch == 0 {
            self.graph
                .borrow_mut()
                .error(format!("{name}: lines_per_batch must be at least 1"));
        }
        stream
    }

    /// `(timestamp_ms, counter)` records generated at a fixed rate, like
    /// Structured Streaming's rate source; the counter starts at 0.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # fn define(ctx: &mut StreamingContext) {
    /// let ticks: DStream<(i64, i64)> = ctx.rate_stream(1000);
    /// # }
    /// ```
    #[track_caller]
    pub fn rate_stream(&self, records_per_second: u64) -> DStream<(i64, i64)> {
        self.source(
            "rate_stream",
            Source::Rate(RateSource { records_per_second }),
        )
    }

    /// The records of all `streams` (Spark's `StreamingContext.union`). At
    /// least one stream is needed.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # fn define(ctx: &mut StreamingContext) {
    /// let a = ctx.socket_text_stream("localhost", 9999);
    /// let b = ctx.socket_text_stream("localhost", 9998);
    /// let both = ctx.union(vec![a, b]);
    /// # }
    /// ```
    #[track_caller]
    pub fn union<T: Data>(&self, streams: impl IntoIterator<Item = DStream<T>>) -> DStream<T> {
        let name = node_name("union", Location::caller());
        let streams: Vec<DStream<T>> = streams.into_iter().collect();
        let mut graph = self.graph.borrow_mut();
        if streams.is_empty() {
            graph.error(format!("{name}: needs at least one stream"));
        }
        if streams.iter().any(|s| !Rc::ptr_eq(&s.graph, &self.graph)) {
            graph.error(format!(
                "{name}: a stream comes from another StreamingContext"
            ));
        }
        let inputs = streams.iter().map(|s| s.id).collect();
        let id = graph.add_node(&name, NodeKind::Union, inputs, T::codec());
        drop(graph);
        DStream::new(Rc::clone(&self.graph), id)
    }
}

/// Job-wide settings and shared values.
impl StreamingContext {
    /// Keeps every stream's batches at least `duration` (Spark's
    /// `remember`), e.g. for a `transform` that looks back; windows keep
    /// theirs for their length anyway.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// ctx.remember(Duration::from_secs(120));
    /// ```
    #[track_caller]
    pub fn remember(&self, duration: Duration) {
        let at = Location::caller();
        let mut graph = self.graph.borrow_mut();
        match duration_ms(duration) {
            Ok(ms) => graph.remember(ms),
            Err(e) => graph.error(format!("remember at {at}: {e}")),
        }
    }

    /// A named integer sum that user functions add to (Spark's
    /// `longAccumulator`). The host sums each batch's additions once, even
    /// when a task is retried, and shows the totals.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let dropped = ctx.long_accumulator("dropped");
    /// let kept = ctx.socket_text_stream("localhost", 9999).filter(move |l| {
    ///     let keep = !l.is_empty();
    ///     if !keep {
    ///         dropped.add(1);
    ///     }
    ///     keep
    /// });
    /// ```
    pub fn long_accumulator(&self, name: &str) -> LongAccumulator {
        LongAccumulator::new(name)
    }

    /// A named float sum that user functions add to (Spark's
    /// `doubleAccumulator`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let seconds = ctx.double_accumulator("seconds");
    /// seconds.add(0.5);
    /// ```
    pub fn double_accumulator(&self, name: &str) -> DoubleAccumulator {
        DoubleAccumulator::new(name)
    }

    /// A named, immutable value every user function can read (Spark's
    /// `broadcast`): encoded into the graph now, handed to every instance by
    /// the host, read with [`Broadcast::value`]. Names are unique.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let blacklist = ctx.broadcast("blacklist", vec!["spam".to_string()]);
    /// let clean = ctx.socket_text_stream("localhost", 9999)
    ///     .filter(move |w| !blacklist.value().contains(w));
    /// ```
    #[track_caller]
    pub fn broadcast<T: Data>(&self, name: &str, value: T) -> Broadcast<T> {
        let at = Location::caller();
        let mut bytes = Vec::with_capacity(value.encoded_size_hint());
        value.encode(&mut bytes);
        declare_broadcast(name, Some(bytes.clone()));
        self.graph
            .borrow_mut()
            .add_broadcast(name, BroadcastValue::Bytes(bytes), &at.to_string());
        Broadcast::new(name)
    }

    /// A broadcast value holding the whole content of a file (a local path
    /// or an object store URL), read by the host at start; the file must be
    /// UTF-8 text.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let blacklist = ctx.broadcast_file("blacklist", "/etc/sluice/blacklist.txt");
    /// let clean = ctx.socket_text_stream("localhost", 9999)
    ///     .filter(move |w| !blacklist.value().lines().any(|b| b == w));
    /// ```
    #[track_caller]
    pub fn broadcast_file(&self, name: &str, path: impl Into<String>) -> Broadcast<String> {
        let at = Location::caller();
        declare_broadcast(name, None);
        self.graph.borrow_mut().add_broadcast(
            name,
            BroadcastValue::File(path.into()),
            &at.to_string(),
        );
        Broadcast::new(name)
    }
}

impl std::fmt::Debug for StreamingContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamingContext").finish_non_exhaustive()
    }
}
