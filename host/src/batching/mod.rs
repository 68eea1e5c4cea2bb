//! Blocks, the batch clock, and the store that hands each batch its blocks.
//!
//! # Time, blocks and batches
//!
//! Time is milliseconds since the Unix epoch. Batch times are multiples of
//! the batch interval, and [`BatchClock::batch_for`] — the one place that
//! decides it — says that time `t` belongs to batch
//! `ceil(t / interval) * interval`.
//!
//! Each receiver (see [`crate::sources`]) is a tokio task. It cuts a
//! [`Block`] every block interval, at ticks aligned to multiples of the block
//! interval on the wall clock ([`BlockTicker`]); the block cut at tick `t`
//! belongs to batch `batch_for(t)`. A block is also cut early when it reaches
//! a size cap (4 MiB by default); it still belongs to the batch of the next
//! tick. After pushing the block of tick `t` (nothing if it is empty) the
//! receiver advances its **watermark** to `t`: no block it pushes later
//! belongs to a batch at or before `t`. A receiver that ends (a queue
//! exhausted, a socket closed with `--until-sources-end`) finishes: its
//! watermark becomes infinite.
//!
//! The batch loop (a plain thread, in `exec/`) calls
//! [`BlockStore::take_batch`]: it blocks until every live receiver's
//! watermark has reached the batch time, then takes the blocks of every
//! batch up to it, each block one partition, in cut order.
//!
//! ```text
//!  tick   200  400  600  800  1000 1200 ...      (block interval 200 ms)
//!  block   b1   b2   b3   b4   b5   b6
//!  batch  ───────── 1000 ──────────┤── 2000 ...  (batch interval 1 s)
//!  take_batch(1000) returns [b1..b5] once every watermark ≥ 1000
//! ```
//!
//! # Backpressure by construction
//!
//! Bytes pushed and not yet released count against one shared budget
//! (16 MiB by default). Over budget, a receiver stops *reading* its source
//! — a TCP sender then blocks — but keeps ticking, cutting blocks and
//! advancing its watermark, so the batch loop never waits for a receiver
//! that waits for budget. [`BlockStore::release`], called when a batch is
//! done, wakes the receivers.
//!
//! ```
//! use std::time::Duration;
//! use sluice::batching::{BatchClock, BatchTime, Block, BlockStore};
//!
//! let clock = BatchClock::new(Duration::from_secs(1));
//! let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
//! let receiver = store.register(0, "queue".into());
//! receiver.push(Block::new(clock.batch_for(400), ["x"].into_iter().collect()));
//! receiver.finish();
//! let input = store.take_batch(BatchTime(1_000)).unwrap();
//! assert_eq!(input.records, 1);
//! store.release(input.unreleased_bytes);
//! ```

mod clock;
mod store;
pub mod wal;

pub use clock::{BatchClock, BatchTime, BlockTicker, now_ms};
pub use store::{
    BatchInput, Block, BlockStore, EarlyBlock, ReceiverHandle, ReceiverStatus, SourceError,
    rows_bytes,
};
pub use wal::{Wal, WalError, WalSync};
