//! [`BlockStore`]: where receivers leave their blocks and the batch loop
//! takes each batch's input.
//!
//! Receivers live on tokio; the batch loop is a plain thread. They meet
//! here, behind one mutex: a receiver [`push`](ReceiverHandle::push)es
//! blocks and [`advance`](ReceiverHandle::advance)s its watermark;
//! [`BlockStore::take_batch`] blocks on a condition variable until every
//! live receiver's watermark has reached the batch time, then removes the
//! blocks of every batch up to it.
//!
//! The store also keeps the byte budget that bounds memory: bytes pushed and
//! not yet [`release`](BlockStore::release)d count against it, and a receiver
//! over budget stops reading its source (see [`ReceiverHandle::over_budget`]).
//!
//! ```
//! use std::time::Duration;
//! use sluice::batching::{BatchClock, BatchTime, Block, BlockStore};
//! use sluice::data::Rows;
//!
//! let clock = BatchClock::new(Duration::from_secs(1));
//! let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
//! let receiver = store.register(0, "socket localhost:9999".into());
//! let rows: Rows = ["a", "b"].into_iter().collect();
//! receiver.push(Block::new(clock.batch_for(1_200), rows));
//! receiver.advance(2_000);
//!
//! let input = store.take_batch(BatchTime(2_000)).unwrap();
//! assert_eq!(input.records, 2);
//! assert_eq!(input.blocks[&0].len(), 1);
//! store.release(input.unreleased_bytes);
//! receiver.finish();
//! assert!(store.all_finished());
//! ```

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use super::clock::BatchTime;
use super::wal::{Wal, WalRecord, decode_block, encode_block};
use crate::data::Rows;
use crate::plan::NodeId;

/// A block: the records a receiver got during one block interval (or fewer,
/// when it was cut at the size cap). It becomes one partition of its batch.
#[derive(Debug, Clone, Default)]
pub struct Block {
    /// The batch the block belongs to.
    pub batch: BatchTime,
    /// The records.
    pub rows: Rows,
    /// Records the receiver skipped while building this block (invalid
    /// UTF-8, a line over the size cap).
    pub invalid_records: u64,
}

impl Block {
    /// A block of `rows` for batch `batch`, with no invalid record.
    pub fn new(batch: BatchTime, rows: Rows) -> Self {
        Self {
            batch,
            rows,
            invalid_records: 0,
        }
    }

    /// The memory the block holds, as the byte budget counts it.
    pub fn bytes(&self) -> u64 {
        rows_bytes(&self.rows)
    }
}

/// The memory a partition holds, as the byte budget counts it: its record
/// bytes plus 4 bytes of offset per record (so that a flood of empty lines
/// is bounded too).
pub fn rows_bytes(rows: &Rows) -> u64 {
    rows.byte_len() as u64 + 4 * rows.len() as u64
}

/// The input of one batch, as [`BlockStore::take_batch`] hands it over.
#[derive(Debug, Default)]
pub struct BatchInput {
    /// The batch time.
    pub time: BatchTime,
    /// For each source node, its blocks in cut order; each block is one
    /// partition. A source with no record in this batch is absent.
    pub blocks: HashMap<NodeId, Vec<Rows>>,
    /// Records in all blocks.
    pub records: u64,
    /// Bytes of all blocks of the batch, as the budget counts them
    /// ([`rows_bytes`]), including blocks taken early.
    pub bytes: u64,
    /// Bytes of the blocks in [`BatchInput::blocks`]: pass it to
    /// [`BlockStore::release`] once the batch is done. (Whoever took blocks
    /// early with [`BlockStore::take_early`] releases those.)
    pub unreleased_bytes: u64,
    /// Records the receivers skipped for this batch.
    pub invalid_records: u64,
}

/// A receiver failed: its input cannot be read (a missing file, a file that
/// is not UTF-8, a directory that cannot be listed).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("source `{name}` failed: {message}")]
pub struct SourceError {
    /// The source node.
    pub node: NodeId,
    /// The source's name, as registered.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// What a receiver is doing, for monitoring.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiverStatus {
    /// The source node.
    pub node: NodeId,
    /// The source's name.
    pub name: String,
    /// The last tick whose block is pushed (ms); `u64::MAX` once finished.
    pub watermark: u64,
    /// The receiver has ended.
    pub finished: bool,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Records pushed since start.
    pub records: u64,
    /// Bytes pushed since start.
    pub bytes: u64,
    /// Records skipped since start.
    pub invalid_records: u64,
    /// Blocks pushed since start.
    pub blocks: u64,
}

/// The blocks of all receivers, waiting for their batch. Shared as an `Arc`.
pub struct BlockStore {
    state: Mutex<State>,
    /// Signalled when a watermark moves, a receiver finishes or fails.
    progress: Condvar,
    budget: u64,
    /// Bumped on every [`BlockStore::release`]; receivers over budget wait
    /// for it.
    released: watch::Sender<u64>,
    /// The first batch time the batch loop asked for.
    first: watch::Sender<Option<BatchTime>>,
    /// The write-ahead log, when the job checkpoints.
    wal: std::sync::OnceLock<Arc<Wal>>,
    /// Emptied block buffers, for receivers to fill again
    /// ([`BlockStore::buffer`], [`BlockStore::recycle`]).
    buffers: Mutex<Vec<Rows>>,
}

/// How many emptied block buffers the store keeps. A block buffer is a few
/// MiB that a receiver fills while the budget lets it; reusing it saves
/// mapping fresh memory (and a page fault per 4 KiB) for every block.
const KEPT_BUFFERS: usize = 2;

#[derive(Default)]
struct State {
    receivers: Vec<ReceiverState>,
    pending_bytes: u64,
    failure: Option<SourceError>,
    /// The latest batch taken.
    taken: BatchTime,
    /// What blocks taken early add to their batch's input.
    early: BTreeMap<BatchTime, EarlyTally>,
    /// The last batch of the checkpoint the job resumed from.
    resumed: Option<BatchTime>,
    /// The latest batch the loop asked for.
    wanted: Option<BatchTime>,
}

#[derive(Default)]
struct EarlyTally {
    records: u64,
    bytes: u64,
    invalid_records: u64,
}

/// A block handed out before its batch's time by [`BlockStore::take_early`].
#[derive(Debug)]
pub struct EarlyBlock {
    /// The source node.
    pub node: NodeId,
    /// The batch it belongs to.
    pub batch: BatchTime,
    /// Its records.
    pub rows: Rows,
    /// The bytes to [`release`](BlockStore::release) once it is processed.
    pub bytes: u64,
}

struct ReceiverState {
    node: NodeId,
    name: String,
    watermark: u64,
    finished: bool,
    error: Option<String>,
    blocks: VecDeque<Block>,
    /// The latest batch of a block pushed; once finished, the last batch
    /// with input from this receiver.
    last_batch: BatchTime,
    records: u64,
    bytes: u64,
    invalid_records: u64,
    blocks_pushed: u64,
}

impl BlockStore {
    /// The default byte budget: 16 MiB, about 0.2 s of input at the
    /// word count's full speed on two cores (`BENCHMARKS.md`), which keeps the
    /// workers busy and the host's peak memory under 100 MB.
    pub const DEFAULT_BUDGET: u64 = 16 << 20;

    /// An empty store whose receivers stop reading while more than `budget`
    /// bytes are pushed and not released.
    pub fn new(budget: u64) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State::default()),
            progress: Condvar::new(),
            budget,
            released: watch::channel(0).0,
            first: watch::channel(None).0,
            wal: std::sync::OnceLock::new(),
            buffers: Mutex::new(Vec::new()),
        })
    }

    /// An empty buffer for a block of about `records` records and `bytes`
    /// bytes: one a block gave back if there is one, else a new one.
    pub fn buffer(&self, records: usize, bytes: usize) -> Rows {
        let kept = self.buffers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        match kept {
            Some(mut rows) => {
                rows.reserve(records, bytes);
                rows
            }
            None => Rows::with_capacity(records, bytes),
        }
    }

    /// Takes back a block's buffer once its records are used, to hand it to
    /// a receiver again.
    pub fn recycle(&self, mut rows: Rows) {
        rows.clear();
        let mut buffers = self.buffers.lock().unwrap_or_else(|e| e.into_inner());
        if buffers.len() < KEPT_BUFFERS {
            buffers.push(rows);
        }
    }

    /// Logs what receivers get to `wal` from now on (register receivers
    /// after this).
    pub fn attach_wal(&self, wal: Arc<Wal>) {
        let _ = self.wal.set(wal);
    }

    /// The job resumes from a checkpoint: its first batch ever was `first`
    /// (queues number their entries from it) and every batch up to `done`
    /// is complete. Blocks for those batches are dropped when pushed, and
    /// the loop's first batch is the one after `done`. Call before the
    /// receivers start.
    pub fn resume(&self, first: BatchTime, done: BatchTime) {
        self.first.send_replace(Some(first));
        let mut state = self.lock();
        state.taken = done;
        state.resumed = Some(done);
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock leaves the state consistent (every
        // update is a few field writes), so a poisoned lock is still usable.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Adds a receiver for source node `source`. Its watermark starts at 0,
    /// so no batch is taken until it has ticked: register every receiver
    /// before the batch loop starts.
    pub fn register(self: &Arc<Self>, source: NodeId, name: String) -> ReceiverHandle {
        let mut state = self.lock();
        let watermark = state.resumed.map_or(0, BatchTime::as_millis);
        state.receivers.push(ReceiverState {
            node: source,
            name,
            watermark,
            finished: false,
            error: None,
            blocks: VecDeque::new(),
            last_batch: BatchTime(0),
            records: 0,
            bytes: 0,
            invalid_records: 0,
            blocks_pushed: 0,
        });
        ReceiverHandle {
            store: Arc::clone(self),
            index: state.receivers.len() - 1,
            ended: false,
            sequence: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The byte budget.
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// Bytes pushed and not yet released.
    pub fn pending_bytes(&self) -> u64 {
        self.lock().pending_bytes
    }

    /// True when the input of batch `time` is complete: every unfinished
    /// receiver's watermark is at least `time`.
    pub fn is_ready(&self, time: BatchTime) -> bool {
        Self::ready(&self.lock(), time)
    }

    fn ready(state: &State, time: BatchTime) -> bool {
        state
            .receivers
            .iter()
            .all(|r| r.finished || r.watermark >= time.0)
    }

    /// The first batch time the batch loop asked for (through
    /// [`take_batch`](BlockStore::take_batch),
    /// [`try_take_batch`](BlockStore::try_take_batch) or
    /// [`wait_until`](BlockStore::wait_until)): queue sources number their
    /// entries from it, so entry `i` is in the `i`-th batch whenever the
    /// loop starts.
    pub fn first_batch(&self) -> Option<BatchTime> {
        *self.first.borrow()
    }

    /// A watch of [`BlockStore::first_batch`], for receivers waiting for it.
    pub fn first_batch_watch(&self) -> watch::Receiver<Option<BatchTime>> {
        self.first.subscribe()
    }

    /// The latest batch taken (or, after a restart, the last batch of the
    /// checkpoint).
    pub fn taken(&self) -> BatchTime {
        self.lock().taken
    }

    /// The latest batch time the batch loop asked for (see
    /// [`BlockStore::first_batch`]).
    pub fn wanted(&self) -> Option<BatchTime> {
        self.lock().wanted
    }

    fn requested(&self, time: BatchTime) {
        {
            let mut state = self.lock();
            state.wanted = state.wanted.max(Some(time));
        }
        self.first.send_if_modified(|first| {
            let unset = first.is_none();
            first.get_or_insert(time);
            unset
        });
    }

    /// Waits (blocking the thread) until the input of batch `time` is
    /// complete or `timeout` has passed; says which. Fails as soon as a
    /// receiver has failed.
    pub fn wait_until(&self, time: BatchTime, timeout: Duration) -> Result<bool, SourceError> {
        self.requested(time);
        let deadline = Instant::now() + timeout;
        let mut state = self.lock();
        loop {
            if let Some(e) = &state.failure {
                return Err(e.clone());
            }
            if Self::ready(&state, time) {
                return Ok(true);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(false);
            }
            state = self
                .progress
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Waits (blocking the thread) until every unfinished receiver's
    /// watermark is at least `time`, then removes and returns the blocks of
    /// every batch up to `time`. Fails as soon as a receiver has failed.
    ///
    /// It never waits for the wall clock itself: a receiver that does not
    /// follow it (a queue) or that has finished lets batches be taken early.
    pub fn take_batch(&self, time: BatchTime) -> Result<BatchInput, SourceError> {
        self.requested(time);
        let mut state = self.lock();
        loop {
            if let Some(e) = &state.failure {
                return Err(e.clone());
            }
            if Self::ready(&state, time) {
                drop(state);
                self.sync_wal(time)?;
                return Ok(Self::take(&mut self.lock(), time));
            }
            state = self.progress.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// [`BlockStore::take_batch`] without waiting: `None` when the input of
    /// batch `time` is not complete yet.
    pub fn try_take_batch(&self, time: BatchTime) -> Result<Option<BatchInput>, SourceError> {
        self.requested(time);
        let state = self.lock();
        if let Some(e) = &state.failure {
            return Err(e.clone());
        }
        if !Self::ready(&state, time) {
            return Ok(None);
        }
        drop(state);
        self.sync_wal(time)?;
        Ok(Some(Self::take(&mut self.lock(), time)))
    }

    /// Makes the log of every batch up to `time` durable (`--wal-sync
    /// batch`) before the batch is handed out.
    fn sync_wal(&self, time: BatchTime) -> Result<(), SourceError> {
        let Some(wal) = self.wal.get() else {
            return Ok(());
        };
        wal.sync_through(time).map_err(|e| SourceError {
            node: 0,
            name: "write-ahead log".into(),
            message: e.to_string(),
        })
    }

    /// Removes the blocks pushed so far by the receivers of `nodes`, whatever
    /// their batch, in cut order: the executor runs their narrow stages as
    /// soon as they are cut, so a batch holds partial results rather than
    /// raw input when its time comes. Their records still count in their
    /// batch's [`BatchInput`]; their bytes are the caller's to release (the
    /// executor releases them once their chain has run and
    /// [`charge`](BlockStore::charge)s its output until the batch is done).
    pub fn take_early(&self, nodes: &[NodeId]) -> Vec<EarlyBlock> {
        let mut state = self.lock();
        let state = &mut *state;
        let mut early = Vec::new();
        for receiver in &mut state.receivers {
            if !nodes.contains(&receiver.node) {
                continue;
            }
            while let Some(block) = receiver.blocks.pop_front() {
                let bytes = block.bytes();
                let tally = state.early.entry(block.batch).or_default();
                tally.records += block.rows.len() as u64;
                tally.bytes += bytes;
                tally.invalid_records += block.invalid_records;
                if !block.rows.is_empty() {
                    early.push(EarlyBlock {
                        node: receiver.node,
                        batch: block.batch,
                        rows: block.rows,
                        bytes,
                    });
                } else {
                    state.pending_bytes = state.pending_bytes.saturating_sub(bytes);
                }
            }
        }
        early
    }

    fn take(state: &mut State, time: BatchTime) -> BatchInput {
        state.taken = state.taken.max(time);
        let mut input = BatchInput {
            time,
            ..BatchInput::default()
        };
        while let Some(entry) = state.early.first_entry() {
            if *entry.key() > time {
                break;
            }
            let tally = entry.remove();
            input.records += tally.records;
            input.bytes += tally.bytes;
            input.invalid_records += tally.invalid_records;
        }
        for receiver in &mut state.receivers {
            while receiver.blocks.front().is_some_and(|b| b.batch <= time) {
                let block = receiver.blocks.pop_front().expect("front checked");
                input.records += block.rows.len() as u64;
                input.bytes += block.bytes();
                input.unreleased_bytes += block.bytes();
                input.invalid_records += block.invalid_records;
                if !block.rows.is_empty() {
                    input
                        .blocks
                        .entry(receiver.node)
                        .or_default()
                        .push(block.rows);
                }
            }
        }
        input
    }

    /// Counts `bytes` more against the budget: memory that stands for
    /// received input, such as an early chain's output (see
    /// [`BlockStore::take_early`]), until it is released.
    pub fn charge(&self, bytes: u64) {
        self.lock().pending_bytes += bytes;
    }

    /// Gives back `bytes` of the budget (a batch's [`BatchInput::bytes`]
    /// once it is done), waking receivers that wait for budget.
    pub fn release(&self, bytes: u64) {
        {
            let mut state = self.lock();
            state.pending_bytes = state.pending_bytes.saturating_sub(bytes);
        }
        self.released.send_modify(|generation| *generation += 1);
    }

    /// True when every receiver has finished and every batch with input
    /// from them has been taken (including empty batches a queue asked for,
    /// see [`ReceiverHandle::finish_after`]).
    pub fn all_finished(&self) -> bool {
        let state = self.lock();
        state
            .receivers
            .iter()
            .all(|r| r.finished && r.blocks.is_empty() && state.taken >= r.last_batch)
    }

    /// Marks every receiver of node `source` failed with `message`; the next
    /// (or current) [`BlockStore::take_batch`] returns the error.
    pub fn fail(&self, source: NodeId, message: impl Into<String>) {
        let message = message.into();
        let mut state = self.lock();
        let indices: Vec<usize> = (0..state.receivers.len())
            .filter(|&i| state.receivers[i].node == source)
            .collect();
        for i in indices {
            Self::fail_index(&mut state, i, message.clone());
        }
        drop(state);
        self.progress.notify_all();
    }

    fn fail_index(state: &mut State, index: usize, message: String) {
        let receiver = &mut state.receivers[index];
        receiver.finished = true;
        receiver.watermark = u64::MAX;
        receiver.error = Some(message.clone());
        let error = SourceError {
            node: receiver.node,
            name: receiver.name.clone(),
            message,
        };
        state.failure.get_or_insert(error);
    }

    /// The state of every receiver, in registration order.
    pub fn receivers(&self) -> Vec<ReceiverStatus> {
        self.lock()
            .receivers
            .iter()
            .map(|r| ReceiverStatus {
                node: r.node,
                name: r.name.clone(),
                watermark: r.watermark,
                finished: r.finished,
                error: r.error.clone(),
                records: r.records,
                bytes: r.bytes,
                invalid_records: r.invalid_records,
                blocks: r.blocks_pushed,
            })
            .collect()
    }
}

impl std::fmt::Debug for BlockStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let state = self.lock();
        f.debug_struct("BlockStore")
            .field("receivers", &state.receivers.len())
            .field("pending_bytes", &state.pending_bytes)
            .field("budget", &self.budget)
            .finish()
    }
}

/// A receiver's side of the [`BlockStore`]. Dropping it without
/// [`finish`](ReceiverHandle::finish) or [`fail`](ReceiverHandle::fail)
/// (a receiver task that panicked) fails the source, so the batch loop is
/// never left waiting for a watermark that will not move.
pub struct ReceiverHandle {
    store: Arc<BlockStore>,
    index: usize,
    ended: bool,
    /// The sequence number of this receiver's next write-ahead log record.
    sequence: std::sync::atomic::AtomicU64,
}

impl ReceiverHandle {
    /// An empty buffer for this receiver's next block ([`BlockStore::buffer`]).
    pub fn buffer(&self, records: usize, bytes: usize) -> Rows {
        self.store.buffer(records, bytes)
    }

    /// Adds a block. Blocks of one receiver must come in cut order, each for
    /// a batch after the receiver's watermark; an empty block (no record, no
    /// invalid record) is dropped.
    pub fn push(&self, block: Block) {
        if block.rows.is_empty() && block.invalid_records == 0 {
            return;
        }
        let bytes = block.bytes();
        let mut state = self.store.lock();
        if state.resumed.is_some_and(|done| block.batch <= done) {
            // A batch the checkpoint the job resumed from already holds.
            return;
        }
        state.pending_bytes += bytes;
        let receiver = &mut state.receivers[self.index];
        debug_assert!(
            receiver
                .blocks
                .back()
                .is_none_or(|b| b.batch <= block.batch),
            "blocks are pushed in cut order"
        );
        receiver.records += block.rows.len() as u64;
        receiver.bytes += bytes;
        receiver.invalid_records += block.invalid_records;
        receiver.blocks_pushed += 1;
        receiver.last_batch = receiver.last_batch.max(block.batch);
        receiver.blocks.push_back(block);
    }

    /// [`ReceiverHandle::push`], after appending the block to the
    /// write-ahead log (when the job has one): a receiver whose source
    /// cannot replay what it sent (a socket) pushes this way. A block that
    /// cannot be logged fails the receiver.
    pub fn push_logged(&self, block: Block) -> Result<(), String> {
        if block.rows.is_empty() && block.invalid_records == 0 {
            return Ok(());
        }
        if self
            .store
            .lock()
            .resumed
            .is_some_and(|done| block.batch <= done)
        {
            // A batch the checkpoint covers: `push` would drop it too.
            return Ok(());
        }
        if self.store.wal.get().is_some() {
            // Encoded only for a log: a copy of the block otherwise wasted.
            self.log(
                block.batch,
                &encode_block(&block.rows, block.invalid_records),
            )?;
        }
        self.push(block);
        Ok(())
    }

    /// Appends a record of this receiver for batch `batch` to the
    /// write-ahead log; nothing without one.
    pub fn log(&self, batch: BatchTime, payload: &[u8]) -> Result<(), String> {
        let Some(wal) = self.store.wal.get() else {
            return Ok(());
        };
        let node = self.store.lock().receivers[self.index].node;
        let sequence = self
            .sequence
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        wal.append(node, batch, sequence, payload)
            .map_err(|e| e.to_string())
    }

    /// What this receiver logged for the batches after the checkpoint the
    /// job resumed from, in order (nothing on a fresh start). Sets the
    /// sequence of the next record after them.
    pub fn logged(&self) -> Result<Vec<WalRecord>, String> {
        let (node, resumed) = {
            let state = self.store.lock();
            (state.receivers[self.index].node, state.resumed)
        };
        let Some(wal) = self.store.wal.get() else {
            return Ok(Vec::new());
        };
        let next = wal.next_sequence(node).map_err(|e| e.to_string())?;
        self.sequence
            .fetch_max(next, std::sync::atomic::Ordering::Relaxed);
        match resumed {
            Some(done) => wal.replay(node, done).map_err(|e| e.to_string()),
            None => Ok(Vec::new()),
        }
    }

    /// Pushes the blocks this receiver logged after the checkpoint the job
    /// resumed from (see [`ReceiverHandle::logged`]): a restarted socket
    /// receiver's first act. Returns how many.
    pub fn replay_logged_blocks(&self) -> Result<usize, String> {
        let records = self.logged()?;
        let count = records.len();
        for record in records {
            let Some((rows, invalid_records)) = decode_block(&record.payload) else {
                return Err(format!(
                    "write-ahead log: record {} of batch {} is not a block",
                    record.sequence, record.batch
                ));
            };
            self.push(Block {
                batch: record.batch,
                rows,
                invalid_records,
            });
        }
        Ok(count)
    }

    /// Says that every block of ticks up to `tick` (ms) is pushed: no later
    /// block belongs to a batch at or before `tick`.
    pub fn advance(&self, tick: u64) {
        {
            let mut state = self.store.lock();
            let receiver = &mut state.receivers[self.index];
            receiver.watermark = receiver.watermark.max(tick);
        }
        self.store.progress.notify_all();
    }

    /// The receiver has ended: its watermark becomes infinite. The store is
    /// [all finished](BlockStore::all_finished) once the batch of its last
    /// block is taken.
    pub fn finish(self) {
        self.finish_after(BatchTime(0));
    }

    /// [`ReceiverHandle::finish`], saying that the receiver's input goes on
    /// (empty) up to batch `last`: the store is not all finished before that
    /// batch is taken. A queue whose last entries are empty uses it, so that
    /// every entry is a batch.
    pub fn finish_after(mut self, last: BatchTime) {
        self.ended = true;
        {
            let mut state = self.store.lock();
            let receiver = &mut state.receivers[self.index];
            receiver.finished = true;
            receiver.watermark = u64::MAX;
            receiver.last_batch = receiver.last_batch.max(last);
        }
        self.store.progress.notify_all();
    }

    /// The receiver cannot go on: [`BlockStore::take_batch`] returns
    /// `message` as a [`SourceError`].
    pub fn fail(mut self, message: impl Into<String>) {
        self.ended = true;
        self.fail_now(message.into());
    }

    /// [`ReceiverHandle::fail`] for a receiver that cannot give its handle
    /// up at that point; it should finish soon after.
    pub fn fail_in_place(&self, message: impl Into<String>) {
        self.fail_now(message.into());
    }

    fn fail_now(&self, message: String) {
        {
            let mut state = self.store.lock();
            BlockStore::fail_index(&mut state, self.index, message);
        }
        self.store.progress.notify_all();
    }

    /// True when the bytes pushed and not released, plus `unpushed` bytes the
    /// receiver holds in its current block, exceed the budget: the receiver
    /// should stop reading (but keep cutting blocks and advancing its
    /// watermark) until [`ReceiverHandle::budget_released`] wakes it.
    pub fn over_budget(&self, unpushed: u64) -> bool {
        self.store.lock().pending_bytes + unpushed > self.store.budget
    }

    /// A watch that changes whenever budget is released. Mark it seen
    /// (`borrow_and_update`) before checking [`ReceiverHandle::over_budget`],
    /// then wait for `changed()`, so no release is missed.
    pub fn budget_released(&self) -> watch::Receiver<u64> {
        self.store.released.subscribe()
    }

    /// This receiver's watermark (see [`ReceiverHandle::advance`]).
    pub fn watermark(&self) -> u64 {
        self.store.lock().receivers[self.index].watermark
    }

    /// The store this handle pushes to.
    pub fn store(&self) -> &Arc<BlockStore> {
        &self.store
    }
}

impl Drop for ReceiverHandle {
    fn drop(&mut self) {
        if !self.ended {
            self.fail_now("the receiver stopped without finishing (it panicked?)".into());
        }
    }
}

impl std::fmt::Debug for ReceiverHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReceiverHandle")
            .field("index", &self.index)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(items: &[&str]) -> Rows {
        items.iter().collect()
    }

    fn records(input: &BatchInput, node: NodeId) -> Vec<Vec<String>> {
        input.blocks.get(&node).map_or_else(Vec::new, |blocks| {
            blocks
                .iter()
                .map(|b| {
                    b.iter()
                        .map(|r| String::from_utf8(r.to_vec()).unwrap())
                        .collect()
                })
                .collect()
        })
    }

    #[test]
    fn take_batch_waits_for_every_watermark_and_keeps_cut_order() {
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let a = store.register(1, "a".into());
        let b = store.register(2, "b".into());
        a.push(Block::new(BatchTime(1_000), rows(&["a1"])));
        a.push(Block::new(BatchTime(1_000), rows(&["a2", "a3"])));
        a.push(Block::new(BatchTime(2_000), rows(&["a4"])));
        a.advance(1_200);
        assert!(store.try_take_batch(BatchTime(1_000)).unwrap().is_none());

        // The batch loop blocks in take_batch until `b` catches up.
        let (sent, got) = std::sync::mpsc::channel();
        let taker = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let input = store.take_batch(BatchTime(1_000)).unwrap();
                sent.send(()).unwrap();
                input
            })
        };
        assert!(
            !store
                .wait_until(BatchTime(1_000), Duration::from_millis(50))
                .unwrap()
        );
        assert!(
            got.try_recv().is_err(),
            "take_batch returned before b's watermark"
        );
        b.push(Block::new(BatchTime(1_000), rows(&["b1"])));
        b.advance(1_000);
        let input = taker.join().unwrap();

        assert_eq!(input.time, BatchTime(1_000));
        assert_eq!(records(&input, 1), [vec!["a1"], vec!["a2", "a3"]]);
        assert_eq!(records(&input, 2), [vec!["b1"]]);
        assert_eq!(input.records, 4);
        assert_eq!(input.bytes, 4 * 2 + 4 * 4);
        assert_eq!(store.pending_bytes(), input.bytes + 2 + 4);

        // The next batch waits for both again; a finished receiver is not
        // waited for.
        a.advance(2_000);
        assert!(store.try_take_batch(BatchTime(2_000)).unwrap().is_none());
        b.finish();
        let input = store.try_take_batch(BatchTime(2_000)).unwrap().unwrap();
        assert_eq!(records(&input, 1), [vec!["a4"]]);
        assert!(!input.blocks.contains_key(&2));
        assert!(!store.all_finished());
        a.finish();
        assert!(store.all_finished());
    }

    #[test]
    fn release_gives_budget_back_and_wakes_receivers() {
        let store = BlockStore::new(10);
        let a = store.register(0, "a".into());
        let mut released = a.budget_released();
        released.borrow_and_update();
        assert!(!a.over_budget(10));
        assert!(a.over_budget(11));
        a.push(Block::new(BatchTime(5), rows(&["12345678"]))); // 8 + 4 bytes
        assert!(a.over_budget(0));
        a.advance(5);
        let input = store.take_batch(BatchTime(5)).unwrap();
        assert!(a.over_budget(0), "taking a batch does not release it");
        assert!(!released.has_changed().unwrap());
        store.release(input.bytes);
        assert!(released.has_changed().unwrap());
        assert!(!a.over_budget(0));
        assert_eq!(store.pending_bytes(), 0);
        a.finish();
    }

    #[test]
    fn a_failure_is_returned_by_take_batch_with_the_source_name() {
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let a = store.register(3, "lines /nope.txt".into());
        let _b = store.register(4, "other".into());
        let taker = {
            let store = Arc::clone(&store);
            std::thread::spawn(move || store.take_batch(BatchTime(1_000)))
        };
        a.fail("cannot read /nope.txt: not found");
        let err = taker.join().unwrap().unwrap_err();
        assert_eq!(err.node, 3);
        assert_eq!(
            err.to_string(),
            "source `lines /nope.txt` failed: cannot read /nope.txt: not found"
        );
        assert!(
            store.take_batch(BatchTime(2_000)).is_err(),
            "the failure sticks"
        );
        store.fail(4, "also broken");
        assert_eq!(store.receivers()[1].error.as_deref(), Some("also broken"));
    }

    #[test]
    fn a_dropped_handle_fails_its_source() {
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        drop(store.register(7, "gone".into()));
        let err = store.take_batch(BatchTime(1_000)).unwrap_err();
        assert_eq!(err.node, 7);
        assert!(err.message.contains("without finishing"), "{err}");
    }

    #[test]
    fn empty_blocks_are_dropped_but_invalid_counts_kept() {
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let a = store.register(0, "a".into());
        a.push(Block::new(BatchTime(1), Rows::new()));
        a.push(Block {
            batch: BatchTime(1),
            rows: Rows::new(),
            invalid_records: 2,
        });
        a.finish();
        let input = store.take_batch(BatchTime(1)).unwrap();
        assert!(input.blocks.is_empty());
        assert_eq!(input.invalid_records, 2);
        assert!(store.all_finished());
        assert_eq!(store.receivers()[0].blocks, 1);
    }

    /// A block of `n` records `"rNNN"` (4 bytes each).
    fn numbered(n: usize) -> Rows {
        (0..n).map(|i| format!("r{:03}", i % 1000)).collect()
    }

    proptest::proptest! {
        /// The scheduler's accounting over any mix of blocks, with the
        /// blocks of the next batch already pushed: raw blocks of an early
        /// source taken with `take_early`, released by their taker and
        /// replaced by a `charge` for their output (half their records);
        /// other blocks taken with their batch; each batch's bytes released
        /// when it is done. After every batch the pending bytes are exactly
        /// those of the next batch's blocks and early outputs; after the last
        /// one, 0.
        #[test]
        fn after_every_batch_the_budget_holds_only_the_next_batch(
            blocks in proptest::collection::vec((0usize..2, 0u64..5, 0usize..20, 0u64..3), 0..40),
        ) {
            // (receiver: 0 early, 1 not; batch index; records; invalid records)
            let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
            let receivers = [store.register(1, "early".into()), store.register(2, "late".into())];
            let time = |b: u64| BatchTime(1_000 * (b + 1));
            // Every record is 4 bytes plus a 4-byte offset.
            let held_for = |b: u64| -> u64 {
                blocks
                    .iter()
                    .filter(|x| x.1 == b)
                    .map(|&(r, _, n, _)| if r == 0 { 8 * (n / 2) } else { 8 * n } as u64)
                    .sum()
            };
            let push = |b: u64| {
                for &(r, _, n, invalid) in blocks.iter().filter(|x| x.1 == b) {
                    receivers[r].push(Block { batch: time(b), rows: numbered(n), invalid_records: invalid });
                }
            };
            let mut charged: std::collections::BTreeMap<BatchTime, u64> = Default::default();
            push(0);
            for b in 0..5u64 {
                push(b + 1);
                receivers[0].advance(time(b).as_millis());
                receivers[1].advance(time(b).as_millis());
                for early in store.take_early(&[1]) {
                    let output = numbered(early.rows.len() / 2);
                    store.charge(rows_bytes(&output));
                    *charged.entry(early.batch).or_default() += rows_bytes(&output);
                    store.release(early.bytes);
                }
                let input = store.take_batch(time(b)).unwrap();
                let records: usize = blocks.iter().filter(|x| x.1 == b).map(|x| x.2).sum();
                proptest::prop_assert_eq!(input.records, records as u64);
                let early_bytes: u64 = charged.range(..=time(b)).map(|(_, v)| v).sum();
                charged.retain(|t, _| *t > time(b));
                store.release(input.unreleased_bytes + early_bytes);
                proptest::prop_assert_eq!(store.pending_bytes(), held_for(b + 1), "after batch {}", b);
            }
            proptest::prop_assert_eq!(store.pending_bytes(), 0);
            for r in receivers {
                r.finish();
            }
            proptest::prop_assert!(store.all_finished());
        }
    }

    #[test]
    fn pending_bytes_are_zero_once_early_blocks_charges_and_batches_are_released() {
        let store = BlockStore::new(1 << 20);
        let early = store.register(1, "early".into());
        let late = store.register(2, "late".into());
        early.push(Block::new(BatchTime(1_000), numbered(10)));
        late.push(Block::new(BatchTime(1_000), numbered(3)));
        early.push(Block::new(BatchTime(2_000), numbered(5)));
        early.advance(1_000);
        late.advance(1_000);
        assert_eq!(store.pending_bytes(), (10 + 3 + 5) * 8);
        // Both early blocks are handed out, whatever their batch.
        let taken = store.take_early(&[1]);
        assert_eq!(taken.iter().map(|b| b.bytes).collect::<Vec<_>>(), [80, 40]);
        // The taker releases each input once its chain ran and charges its
        // output (here 2 records of 4 bytes each) until the batch is done.
        for block in &taken {
            store.charge(16);
            store.release(block.bytes);
        }
        assert_eq!(store.pending_bytes(), 24 + 16 + 16);
        let first = store.take_batch(BatchTime(1_000)).unwrap();
        assert_eq!(first.records, 13);
        assert_eq!(first.unreleased_bytes, 24, "only the late block");
        store.release(first.unreleased_bytes + 16);
        assert_eq!(
            store.pending_bytes(),
            16,
            "the output of batch 2000's early block"
        );
        early.finish();
        late.finish();
        let second = store.take_batch(BatchTime(2_000)).unwrap();
        assert_eq!(second.records, 5);
        assert_eq!(second.unreleased_bytes, 0);
        store.release(second.unreleased_bytes + 16);
        assert_eq!(store.pending_bytes(), 0);
        assert!(store.all_finished());
    }
}
