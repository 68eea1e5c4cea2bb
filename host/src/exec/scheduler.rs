//! The batch loop: batches run one after another, in time order. For each
//! batch time it waits for the wall clock to reach it and for every receiver
//! to have cut its blocks up to it, runs the plan over them, records the
//! batch's metrics, and frees the blocks' bytes so receivers may read again.
//!
//! It stops after `max_batches`; or, when the sources have ended (with
//! `until_sources_end`) or were stopped (Ctrl-C), once everything received is
//! processed — then it does not wait for the wall clock any more. Otherwise,
//! like Spark, it goes on running (empty) batches after its sources end.
//!
//! With windows, "processed" includes the windows of the batch `E` in which
//! the sources ended: the loop runs further (empty) batches up to the first
//! multiple of each window's slide at or after `E` (for the windows that
//! cover `E`), and no window is produced after its own one
//! ([`Executor::end_windows_at`]).
//!
//! Around each batch it calls the job's [`Hooks`]: checkpoints after a
//! batch, and an upgrade's switch to another executor before one.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::batching::{BatchClock, BatchTime, BlockStore, SourceError};
use crate::data::Rows;
use crate::exec::{BatchOutcome, ExecError, Executor};
use crate::monitor::{BatchInfo, Metrics};
use crate::plan::NodeId;
use crate::sources::StopSignal;

/// How often the loop looks for new blocks to start early chains on.
const EARLY_POLL: Duration = Duration::from_millis(5);

/// When the loop ends.
#[derive(Debug, Clone, Default)]
pub struct Limits {
    /// Stop after this many batches.
    pub max_batches: Option<u64>,
    /// Stop once every source has ended and its input is processed.
    pub until_sources_end: bool,
    /// Stop requested (graceful): finish what was received, then stop.
    pub stop: StopSignal,
}

/// Why the loop stopped early.
#[derive(Debug, thiserror::Error)]
pub enum ScheduleError {
    /// A batch failed.
    #[error(transparent)]
    Exec(#[from] ExecError),
    /// A source failed for good.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The metrics file could not be written.
    #[error("cannot write metrics: {0}")]
    Metrics(#[from] std::io::Error),
    /// What runs around batches (a checkpoint, an upgrade's switch) failed.
    #[error(transparent)]
    Hook(HookError),
}

/// An error of a [`Hooks`] method.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// What the job's control does around batches: checkpoints, and the
/// switch between two versions of the job's code (a hot upgrade and its
/// rollback). Every method has a default that does nothing.
pub trait Hooks {
    /// Whether the loop may hand blocks to early chains now (not while an
    /// upgrade waits for its switch or keeps the raw input of its batches).
    fn early_chains(&self) -> bool {
        true
    }

    /// Before batch `time` takes its input: may replace the executor (the
    /// switch to another version).
    fn before(
        &mut self,
        _time: BatchTime,
        _executor: &mut Arc<Executor>,
        _metrics: &Metrics,
    ) -> Result<(), HookError> {
        Ok(())
    }

    /// The input of batch `time`, before it runs.
    fn input(&mut self, _time: BatchTime, _blocks: &HashMap<NodeId, Vec<Rows>>) {}

    /// After batch `time` ran and its metrics were recorded.
    fn after(
        &mut self,
        _time: BatchTime,
        _executor: &Executor,
        _metrics: &Metrics,
    ) -> Result<(), HookError> {
        Ok(())
    }

    /// Batch `time` failed with `error`. Returns the error to end the loop,
    /// or the outcome of running it again some other way (an upgrade rolled
    /// back to the version before it, with `executor` replaced).
    fn failed(
        &mut self,
        _time: BatchTime,
        error: ExecError,
        _executor: &mut Arc<Executor>,
        _metrics: &mut Metrics,
    ) -> Result<BatchOutcome, ScheduleError> {
        Err(error.into())
    }

    /// Whether to stop now, before the next batch, leaving what was
    /// received to the write-ahead log (`sluice stop --now`).
    fn abort(&self) -> bool {
        false
    }
}

/// No hooks.
pub struct NoHooks;

impl Hooks for NoHooks {}

/// Runs batches from `start` (default: the batch of the current time)
/// until the limits or the sources say stop, calling `hooks` around each.
/// Returns the time of the last batch run. Batches whose time has passed
/// (a job resuming from a checkpoint) run without waiting.
pub fn run_batches(
    executor: &mut Arc<Executor>,
    store: &Arc<BlockStore>,
    clock: &BatchClock,
    metrics: &mut Metrics,
    limits: Limits,
    start: Option<BatchTime>,
    hooks: &mut dyn Hooks,
) -> Result<Option<BatchTime>, ScheduleError> {
    let mut time = start.unwrap_or_else(|| clock.batch_for(now_millis()));
    let mut batches = 0u64;
    let mut last_run = None;
    // Once the sources have ended: the last batch to run.
    let mut last_batch: Option<BatchTime> = None;
    loop {
        if hooks.abort() {
            return Ok(last_run);
        }
        hooks
            .before(time, executor, metrics)
            .map_err(ScheduleError::Hook)?;
        let early_sources = if hooks.early_chains() {
            executor.early_sources()
        } else {
            Vec::new()
        };
        if !early_sources.is_empty() {
            // Hand blocks to their early chains as they are cut, until the
            // batch's input is complete.
            while !store.wait_until(time, EARLY_POLL)? {
                for block in store.take_early(&early_sources) {
                    executor.ingest(block, store);
                }
            }
            for block in store.take_early(&early_sources) {
                executor.ingest(block, store);
            }
        }
        let draining = limits.stop.is_stopped()
            || (limits.until_sources_end && store.receivers().iter().all(|r| r.finished));
        if !draining {
            wait_for_clock(time, &limits.stop);
        }
        let input = store.take_batch(time)?;
        let started = SystemTime::now();
        let scheduling_delay = since(time, started);
        let records = input.records;
        let invalid_records = input.invalid_records;
        let bytes = input.bytes;
        hooks.input(time, &input.blocks);
        let result = executor.run_batch(time, input.blocks);
        let early_bytes = result.as_ref().map_or(0, |outcome| outcome.early_bytes);
        store.release(input.unreleased_bytes + early_bytes);
        let outcome = match result {
            Ok(outcome) => outcome,
            Err(error) => hooks.failed(time, error, executor, metrics)?,
        };
        let processing = started.elapsed().unwrap_or_default();
        metrics.record(&BatchInfo {
            batch_time_ms: time.as_millis(),
            records,
            invalid_records,
            bytes,
            processing,
            scheduling_delay,
            total_delay: scheduling_delay + processing,
            done_ms: now_millis(),
            accumulators: outcome.accumulators,
        })?;
        batches += 1;
        last_run = Some(time);
        hooks
            .after(time, executor, metrics)
            .map_err(ScheduleError::Hook)?;
        let ended = (limits.until_sources_end || limits.stop.is_stopped()) && store.all_finished();
        if ended && last_batch.is_none() {
            last_batch = Some(executor.end_windows_at(time));
        }
        let done = last_batch.is_some_and(|last| time >= last);
        if limits.max_batches.is_some_and(|max| batches >= max) || done {
            return Ok(Some(time));
        }
        time = clock.next(time);
    }
}

/// Sleeps until the wall clock reaches `time`, or until a stop is requested.
fn wait_for_clock(time: BatchTime, stop: &StopSignal) {
    loop {
        let now = now_millis();
        if now >= time.as_millis() || stop.is_stopped() {
            return;
        }
        std::thread::sleep(Duration::from_millis((time.as_millis() - now).min(50)));
    }
}

fn now_millis() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("the clock is past 1970")
        .as_millis() as u64
}

fn since(time: BatchTime, now: SystemTime) -> Duration {
    let at = SystemTime::UNIX_EPOCH + Duration::from_millis(time.as_millis());
    now.duration_since(at).unwrap_or_default()
}
