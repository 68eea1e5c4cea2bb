//! Receivers: the tokio tasks that read a source and leave its records, block
//! by block, in the [`BlockStore`].
//!
//! One file per kind of source, one entry point, [`spawn`]: adding a source
//! is one file and one match arm.
//!
//! | source | file | ends by itself |
//! |---|---|---|
//! | `socket_text_stream(host, port)` | `socket.rs` | when the peer closes, with `--until-sources-end` (otherwise it reconnects) |
//! | `text_file_stream(dir)` | `file.rs` | never |
//! | `queue_stream(batches)`, `lines_file(path, n)` | `queue.rs` | when exhausted |
//! | `rate(records_per_second)` | `rate.rs` | never |
//!
//! # The receiver contract
//!
//! Time is milliseconds since the Unix epoch; see [`crate::batching`] for
//! batch times and [`BatchClock::batch_for`]. Every wall-clock receiver
//! (socket, file, rate):
//!
//! - cuts a block every block interval, at ticks aligned to multiples of the
//!   block interval; the block cut at tick `t` belongs to batch
//!   `batch_for(t)`. After pushing it (nothing when it is empty) it advances
//!   its watermark to `t`. A block that reaches the size cap
//!   ([`MAX_BLOCK_BYTES`], 4 MiB) is cut early and
//!   belongs to the batch of the next tick.
//! - stops *reading* while the store's byte budget is used up, but keeps
//!   ticking, so the batch loop is never blocked by a receiver waiting for
//!   budget (backpressure by construction: TCP pushes back on the sender).
//! - on stop ([`StopSignal::stop`]) stops reading, cuts its last block, pushes it and finishes.
//! - reports a source it cannot read through [`ReceiverHandle::fail`]; the
//!   batch loop gets it from [`BlockStore::take_batch`] as a
//!   [`SourceError`](crate::batching::SourceError) naming the source.
//!
//! Queue sources do not follow the wall clock: entry `i` is the block of
//! the `i`-th batch from the first one the batch loop asks for
//! ([`BlockStore::first_batch`]), whatever the block interval, so a job fed
//! by queues gives the same batches on every run. Their watermark runs ahead
//! of the wall clock (they push every entry at once and finish); whether the
//! batch loop then waits for each batch's time is the loop's decision.
//!
//! Text sources produce `string` records: one per line, without its `\n` or
//! `\r\n`; a line that is not UTF-8 is skipped, counted in the block's
//! `invalid_records`, and logged with its byte offset (a few per block, then
//! a count).
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::Duration;
//! use sluice::batching::{BatchClock, BlockStore, now_ms};
//! use sluice::plan::SourceSpec;
//! use sluice::sources::{self, ReceiverContext, StopSignal};
//!
//! let runtime = tokio::runtime::Runtime::new().unwrap();
//! let clock = BatchClock::new(Duration::from_secs(1));
//! let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
//! let stop = StopSignal::new();
//! let spec = SourceSpec::SocketText { host: "localhost".into(), port: 9999 };
//! sources::spawn(spec, ReceiverContext {
//!     node: 0,
//!     name: "socket localhost:9999".into(),
//!     block_interval: Duration::from_millis(200),
//!     clock,
//!     store: Arc::clone(&store),
//!     stop: stop.clone(),
//!     until_end: false,
//!     runtime: runtime.handle().clone(),
//!     positions: Default::default(),
//! });
//! // The batch loop, on its own thread:
//! for time in clock.times_from(clock.batch_for(now_ms())).take(3) {
//!     let input = store.take_batch(time).unwrap();
//!     // ... run the batch ...
//!     store.release(input.unreleased_bytes);
//! }
//! stop.stop();
//! ```

mod file;
mod generator;
mod lines;
mod queue;
mod rate;
mod socket;

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::batching::{BatchClock, BlockStore, ReceiverHandle};
use crate::plan::{NodeId, SourceSpec};

/// The size cap of a block: 4 MiB. Small blocks keep a plugin instance's
/// memory small (it holds one block and its output at a time) and spread a
/// burst over the workers; a guest call costs about a microsecond, so many
/// blocks cost little.
pub const MAX_BLOCK_BYTES: usize = 4 << 20;

/// The longest line a text source takes: 16 MiB. A longer one is skipped and
/// counted as invalid.
pub const MAX_LINE_BYTES: usize = 16 << 20;

/// Everything a receiver needs besides its [`SourceSpec`].
#[derive(Debug, Clone)]
pub struct ReceiverContext {
    /// The source node.
    pub node: NodeId,
    /// The source's name, for logs and errors (`"socket localhost:9999"`).
    pub name: String,
    /// How often blocks are cut; the batch interval should be a multiple.
    pub block_interval: Duration,
    /// The batch clock.
    pub clock: BatchClock,
    /// Where blocks go.
    pub store: Arc<BlockStore>,
    /// Stops the receiver.
    pub stop: StopSignal,
    /// `--until-sources-end`: a socket closed by its peer ends the source
    /// instead of reconnecting.
    pub until_end: bool,
    /// The runtime the receiver task runs on.
    pub runtime: tokio::runtime::Handle,
    /// Where the receiver publishes its position for checkpoints, and finds
    /// the one it resumes from.
    pub positions: Positions,
}

/// A source's position as a checkpoint keeps it: plain JSON, its shape the
/// receiver's (a file stream: the files selected for the batches the
/// checkpoint covers).
type Position = serde_json::Value;

/// What each receiver reports of its position, as of the end of a given
/// batch, for checkpoints; and the positions a restarted job resumes from.
/// Shared by the job's receivers and its checkpoints.
#[derive(Clone, Default)]
pub struct Positions {
    current: Arc<std::sync::Mutex<std::collections::BTreeMap<NodeId, PositionFn>>>,
    restored: Arc<std::collections::BTreeMap<NodeId, Position>>,
}

type PositionFn = Arc<dyn Fn(crate::batching::BatchTime) -> Position + Send + Sync>;

impl std::fmt::Debug for Positions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Positions")
            .field("restored", &self.restored)
            .finish_non_exhaustive()
    }
}

impl Positions {
    /// Positions to resume from, by source node (a checkpoint's).
    pub fn resuming(positions: std::collections::BTreeMap<NodeId, Position>) -> Positions {
        Positions {
            current: Arc::default(),
            restored: Arc::new(positions),
        }
    }

    /// The position source `node` resumes from, if the job resumed.
    pub fn restored_for(&self, node: NodeId) -> Option<&Position> {
        self.restored.get(&node)
    }

    /// Receiver `node` reports its position through `position(done)`: where
    /// it is once every batch up to `done` is complete.
    pub(crate) fn publish(
        &self,
        node: NodeId,
        position: impl Fn(crate::batching::BatchTime) -> Position + Send + Sync + 'static,
    ) {
        self.current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(node, Arc::new(position));
    }

    /// Every receiver's position once every batch up to `done` is complete.
    pub fn snapshot(
        &self,
        done: crate::batching::BatchTime,
    ) -> std::collections::BTreeMap<NodeId, Position> {
        let current = self
            .current
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut positions: std::collections::BTreeMap<NodeId, Position> = current
            .into_iter()
            .map(|(node, position)| (node, position(done)))
            .collect();
        // A receiver that has not started yet keeps the one it resumed from.
        for (node, position) in self.restored.iter() {
            positions.entry(*node).or_insert_with(|| position.clone());
        }
        positions
    }
}

/// The stop signal shared by all receivers of a job (and by Ctrl-C): once
/// [`StopSignal::stop`] is called, every receiver stops reading, cuts its
/// last block, pushes it and finishes. Dropping every clone stops them too.
#[derive(Debug, Clone)]
pub struct StopSignal(watch::Sender<bool>);

impl StopSignal {
    /// A signal not yet given.
    pub fn new() -> Self {
        Self(watch::channel(false).0)
    }

    /// Gives the signal.
    pub fn stop(&self) {
        self.0.send_replace(true);
    }

    /// True once the signal is given.
    pub fn is_stopped(&self) -> bool {
        *self.0.borrow()
    }

    /// A receiver of the signal, for `select!`.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

impl Default for StopSignal {
    fn default() -> Self {
        Self::new()
    }
}

/// Registers a receiver for `spec` in the context's store (before
/// returning, so the batch loop waits for it) and starts it as a task on the
/// context's runtime. The task ends when the receiver has finished or failed.
pub fn spawn(spec: SourceSpec, ctx: ReceiverContext) -> JoinHandle<()> {
    let handle = ctx.store.register(ctx.node, ctx.name.clone());
    let runtime = ctx.runtime.clone();
    runtime.spawn(run(spec, ctx, handle))
}

async fn run(spec: SourceSpec, ctx: ReceiverContext, handle: ReceiverHandle) {
    match spec {
        SourceSpec::SocketText { host, port } => socket::run(host, port, ctx, handle).await,
        SourceSpec::TextFile { directory } => file::run(directory, ctx, handle).await,
        SourceSpec::Queue(entries) => queue::run_entries(entries, ctx, handle).await,
        SourceSpec::LinesFile {
            path,
            lines_per_batch,
        } => queue::run_lines_file(path, lines_per_batch, ctx, handle).await,
        SourceSpec::Rate { records_per_second } => rate::run(records_per_second, ctx, handle).await,
    }
}

/// Resolves once stop is requested (or its sender is gone).
pub(crate) async fn stop_requested(stop: &mut watch::Receiver<bool>) {
    // `wait_for` fails only when the sender is dropped: stop then too.
    let _ = stop.wait_for(|stopped| *stopped).await;
}

#[cfg(test)]
pub(crate) mod testing {
    //! A batch loop for receiver tests.

    use super::*;
    use crate::batching::{BatchInput, BatchTime, now_ms};

    /// A context for a test receiver (node 1), and its stop signal.
    pub(crate) fn context(
        store: &Arc<BlockStore>,
        block_ms: u64,
        batch_ms: u64,
        until_end: bool,
    ) -> (ReceiverContext, StopSignal) {
        let stop = StopSignal::new();
        let ctx = ReceiverContext {
            node: 1,
            name: "test".into(),
            block_interval: Duration::from_millis(block_ms),
            clock: BatchClock::new(Duration::from_millis(batch_ms)),
            store: Arc::clone(store),
            stop: stop.clone(),
            until_end,
            runtime: tokio::runtime::Handle::current(),
            positions: Positions::default(),
        };
        (ctx, stop)
    }

    /// The records of each block of a batch, as strings.
    pub(crate) fn lines(input: &BatchInput) -> Vec<String> {
        input
            .blocks
            .values()
            .flatten()
            .flat_map(|rows| rows.iter())
            .map(|r| String::from_utf8(r.to_vec()).expect("test lines are UTF-8"))
            .collect()
    }

    /// Takes batches from now on, on a blocking thread, releasing each,
    /// until `done` says so or every receiver has finished; fails the test
    /// after 60 s without progress.
    pub(crate) async fn run_batches(
        store: &Arc<BlockStore>,
        ctx: &ReceiverContext,
        mut done: impl FnMut(&BatchInput) -> bool + Send + 'static,
    ) -> Vec<BatchInput> {
        let store = Arc::clone(store);
        let clock = ctx.clock;
        let start = BatchTime(now_ms());
        tokio::task::spawn_blocking(move || {
            let mut batches = Vec::new();
            for time in clock.times_from(start) {
                let ready = store
                    .wait_until(time, Duration::from_secs(60))
                    .expect("no source fails");
                assert!(ready, "batch {time} not ready after 60 s");
                let input = store.take_batch(time).expect("no source fails");
                store.release(input.unreleased_bytes);
                let stop = done(&input);
                batches.push(input);
                if stop || store.all_finished() {
                    break;
                }
            }
            batches
        })
        .await
        .expect("the batch loop does not panic")
    }
}
