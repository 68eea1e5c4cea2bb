//! [`BlockGenerator`]: what every wall-clock receiver shares (Spark's
//! `BlockGenerator`): the current block, the block ticks, the cut at a tick
//! or at the size cap, the watermark, the byte budget and the last block on
//! stop.

use tokio::sync::watch;
use tracing::warn;

use super::lines::{BadLine, LineSink};
use super::{MAX_BLOCK_BYTES, ReceiverContext};
use crate::batching::{BatchClock, Block, BlockTicker, ReceiverHandle, now_ms, rows_bytes};
use crate::data::Rows;

/// Invalid lines logged one by one per block; the rest are summed up.
const LOGGED_PER_BLOCK: u64 = 3;

/// The block a receiver is filling, and when to cut it.
pub(crate) struct BlockGenerator {
    handle: ReceiverHandle,
    name: String,
    clock: BatchClock,
    ticker: BlockTicker,
    rows: Rows,
    invalid: u64,
    max_block_bytes: usize,
    released: watch::Receiver<u64>,
    /// Prefix of invalid-line warnings after the source name
    /// (`"file a.txt: "`), set by the receiver.
    origin: String,
}

impl BlockGenerator {
    pub(crate) fn new(handle: ReceiverHandle, ctx: &ReceiverContext) -> Self {
        let released = handle.budget_released();
        Self {
            handle,
            name: ctx.name.clone(),
            clock: ctx.clock,
            ticker: BlockTicker::new(ctx.block_interval, now_ms()),
            rows: Rows::new(),
            invalid: 0,
            max_block_bytes: MAX_BLOCK_BYTES,
            released,
            origin: String::new(),
        }
    }

    /// The source's name, for logs.
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The maximum size of a block (and of a line).
    pub(crate) fn max_block_bytes(&self) -> usize {
        self.max_block_bytes
    }

    /// The current block's records.
    pub(crate) fn rows(&mut self) -> &mut Rows {
        &mut self.rows
    }

    /// Says where the next invalid lines come from, for warnings.
    pub(crate) fn set_origin(&mut self, origin: String) {
        self.origin = origin;
    }

    /// When the next tick is due.
    pub(crate) fn deadline(&self) -> tokio::time::Instant {
        tokio::time::Instant::now() + self.ticker.wait(now_ms())
    }

    /// The tick that is due next (ms).
    pub(crate) fn due(&self) -> u64 {
        self.ticker.due()
    }

    fn cut(&mut self, tick: u64) {
        // The next block is likely the size of this one.
        let next = Rows::with_capacity(self.rows.len(), self.rows.byte_len());
        let rows = std::mem::replace(&mut self.rows, next);
        if self.invalid > LOGGED_PER_BLOCK {
            warn!(
                "source {}: {} more invalid lines skipped in this block",
                self.name,
                self.invalid - LOGGED_PER_BLOCK
            );
        }
        self.handle.push(Block {
            batch: self.clock.batch_for(tick),
            rows,
            invalid_records: std::mem::take(&mut self.invalid),
        });
    }

    /// The due tick has come: cuts the block, pushes it and advances the
    /// watermark to the tick. Returns the tick.
    pub(crate) fn tick(&mut self) -> u64 {
        let tick = self.ticker.advance(now_ms());
        self.cut(tick);
        self.handle.advance(tick);
        tick
    }

    /// Cuts the block early when it has reached the size cap; it belongs to
    /// the batch of the next tick.
    pub(crate) fn cut_if_full(&mut self) {
        if rows_bytes(&self.rows) >= self.max_block_bytes as u64 {
            self.cut(self.ticker.due());
        }
    }

    /// True when the receiver should stop reading: the budget is used up.
    /// Marks the budget watch seen first, so [`BlockGenerator::budget_released`]
    /// wakes on any release after this check.
    pub(crate) fn over_budget(&mut self) -> bool {
        self.released.borrow_and_update();
        self.handle.over_budget(rows_bytes(&self.rows))
    }

    /// Resolves when budget is released (after [`BlockGenerator::over_budget`]).
    pub(crate) async fn budget_released(&mut self) {
        if self.released.changed().await.is_err() {
            // The store is gone; nothing will be released.
            std::future::pending::<()>().await;
        }
    }

    /// The receiver ends: cuts its last block (for the batch of the next
    /// tick), pushes it and finishes.
    pub(crate) fn finish(mut self) {
        let due = self.ticker.due();
        self.cut(due);
        self.handle.finish();
    }

    /// The receiver cannot go on.
    pub(crate) fn fail(self, message: impl Into<String>) {
        let message = message.into();
        warn!("source {}: {message}", self.name);
        self.handle.fail(message);
    }
}

impl LineSink for BlockGenerator {
    fn line(&mut self, line: &[u8]) {
        self.rows.push(line);
    }

    fn bad_line(&mut self, offset: u64, why: BadLine) {
        self.invalid += 1;
        if self.invalid <= LOGGED_PER_BLOCK {
            match why {
                BadLine::Utf8 => warn!(
                    "source {}: {}invalid UTF-8 at byte {offset} (line skipped)",
                    self.name, self.origin
                ),
                BadLine::TooLong => warn!(
                    "source {}: {}line at byte {offset} is longer than {} bytes (line skipped)",
                    self.name, self.origin, self.max_block_bytes
                ),
            }
        }
    }
}
