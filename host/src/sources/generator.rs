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
    /// Blocks go to the write-ahead log before they are pushed.
    log_blocks: bool,
    /// The watermark this generator last advanced to.
    watermark: u64,
}

impl BlockGenerator {
    pub(crate) fn new(handle: ReceiverHandle, ctx: &ReceiverContext) -> Self {
        let released = handle.budget_released();
        let handle_watermark = handle.watermark();
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
            log_blocks: false,
            watermark: handle_watermark,
        }
    }

    /// Appends every block to the job's write-ahead log (when it has one)
    /// before pushing it; a block that cannot be logged fails the source.
    pub(crate) fn logging_blocks(mut self) -> Self {
        self.log_blocks = true;
        self
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
        let next = self.handle.buffer(self.rows.len(), self.rows.byte_len());
        let rows = std::mem::replace(&mut self.rows, next);
        if self.invalid > LOGGED_PER_BLOCK {
            warn!(
                "source {}: {} more invalid lines skipped in this block",
                self.name,
                self.invalid - LOGGED_PER_BLOCK
            );
        }
        let block = Block {
            batch: self.clock.batch_for(tick),
            rows,
            invalid_records: std::mem::take(&mut self.invalid),
        };
        if !self.log_blocks {
            self.handle.push(block);
        } else if let Err(message) = self.handle.push_logged(block) {
            warn!("source {}: {message}", self.name);
            self.handle.fail_in_place(message);
        }
    }

    /// The due tick has come: cuts the block, pushes it and advances the
    /// watermark to the tick. Returns the tick.
    pub(crate) fn tick(&mut self) -> u64 {
        let tick = self.ticker.advance(now_ms());
        self.cut(tick);
        self.handle.advance(tick);
        self.watermark = self.watermark.max(tick);
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

    // For receivers that cut their blocks themselves (the file stream,
    // whose blocks follow files and batches rather than ticks):

    /// Moves past the due tick without cutting a block.
    pub(crate) fn skip_tick(&mut self) {
        self.ticker.advance(now_ms());
    }

    /// Advances the watermark to `tick` (never back).
    pub(crate) fn advance_to(&mut self, tick: u64) {
        if tick > self.watermark {
            self.watermark = tick;
            self.handle.advance(tick);
        }
    }

    /// The receiver's watermark (see [`BlockGenerator::advance_to`]).
    pub(crate) fn watermark(&self) -> u64 {
        self.watermark
    }

    /// The latest batch the batch loop has asked for.
    pub(crate) fn wanted(&self) -> Option<crate::batching::BatchTime> {
        self.handle.store().wanted()
    }

    /// The latest batch the batch loop has taken.
    pub(crate) fn taken(&self) -> crate::batching::BatchTime {
        self.handle.store().taken()
    }

    /// The current block has reached the size cap.
    pub(crate) fn is_full(&self) -> bool {
        rows_bytes(&self.rows) >= self.max_block_bytes as u64
    }

    /// Pushes the current block as a block of `batch`, after appending
    /// `provenance` (what the block is made of) to the write-ahead log.
    pub(crate) fn push_block_logged(
        &mut self,
        batch: crate::batching::BatchTime,
        provenance: &[u8],
    ) -> Result<(), String> {
        let next = self.handle.buffer(self.rows.len(), self.rows.byte_len());
        let block = Block {
            batch,
            rows: std::mem::replace(&mut self.rows, next),
            invalid_records: std::mem::take(&mut self.invalid),
        };
        if block.rows.is_empty() && block.invalid_records == 0 {
            return Ok(());
        }
        self.handle.log(batch, provenance)?;
        self.handle.push(block);
        Ok(())
    }

    /// Pushes a block rebuilt from the write-ahead log.
    pub(crate) fn push_replayed(&mut self, block: Block) {
        self.handle.push(block);
    }

    /// What this receiver logged after the checkpoint the job resumed from.
    pub(crate) fn logged(&self) -> Result<Vec<crate::batching::wal::WalRecord>, String> {
        self.handle.logged()
    }

    /// Fails the source, keeping the generator (which finishes later).
    pub(crate) fn fail_in_place(&self, message: String) {
        warn!("source {}: {message}", self.name);
        self.handle.fail_in_place(message);
    }

    /// The receiver ends, its blocks all pushed.
    pub(crate) fn finish_without_block(self) {
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
