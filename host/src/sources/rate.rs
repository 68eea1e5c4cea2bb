//! `rate(records_per_second)`: `(timestamp_ms, counter)` records at a fixed
//! rate, like Structured Streaming's rate source; codec `tuple<i64,i64>`
//! (`u32-le 8`, the `i64-le` timestamp, the `i64-le` counter).
//!
//! Record `k` (counting from 0) is due at `t0 + (k + 1) × 1000 / rate` ms, `t0`
//! being the receiver's start; at each block tick the receiver generates the
//! records due by then, which spreads the rate evenly over the ticks and
//! carries fractions exactly. A record's timestamp is the time it was due.
//! Over budget it generates nothing and catches up later, at most one
//! block's worth per tick. It never ends.
//!
//! Its position, for checkpoints, is `t0` and the number of records in the
//! batches a checkpoint covers; a restarted receiver goes on from there (the
//! records of the batches after the checkpoint come again, with the same
//! counters and due times, in the batches after the restart).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use tokio::time::sleep_until;

use super::generator::BlockGenerator;
use super::{ReceiverContext, stop_requested};
use crate::batching::{BatchTime, ReceiverHandle, now_ms};
use crate::data::codec::write_pair;

/// Bytes of one record (20) plus its offset (4).
const RECORD_BYTES: usize = 24;

pub(super) async fn run(records_per_second: u64, ctx: ReceiverContext, handle: ReceiverHandle) {
    let mut generator = BlockGenerator::new(handle, &ctx);
    let mut stop = ctx.stop.subscribe();
    let mut rate = Rate::new(records_per_second, now_ms());
    if let Some(position) = ctx.positions.restored_for(ctx.node) {
        match serde_json::from_value::<RatePosition>(position.clone()) {
            Ok(position) => {
                rate.start = position.start_ms;
                rate.next = position.records;
            }
            Err(e) => {
                generator.fail(format!(
                    "the checkpoint's position of the rate source is invalid: {e}"
                ));
                return;
            }
        }
    }
    // (batch, records generated up to its last block), for checkpoints.
    let history: Arc<Mutex<VecDeque<(BatchTime, u64)>>> = Arc::default();
    {
        let history = Arc::clone(&history);
        let (start, initial) = (rate.start, rate.next);
        ctx.positions.publish(ctx.node, move |done| {
            let mut history = history.lock().unwrap_or_else(|e| e.into_inner());
            let records = history
                .iter()
                .rev()
                .find(|(batch, _)| *batch <= done)
                .map_or(initial, |(_, records)| *records);
            // What a later checkpoint needs is kept.
            while history.len() > 1 && history[1].0 <= done {
                history.pop_front();
            }
            serde_json::to_value(RatePosition {
                start_ms: start,
                records,
            })
            .expect("a position serializes")
        });
    }
    // One `(timestamp, counter)` record, encoded.
    let mut record = Vec::with_capacity(20);
    let max_per_tick = (generator.max_block_bytes() / RECORD_BYTES).max(1) as u64;
    let tick = sleep_until(generator.deadline());
    tokio::pin!(tick);
    loop {
        tokio::select! {
            biased;
            () = stop_requested(&mut stop) => break,
            () = &mut tick => {
                if !generator.over_budget() {
                    let due = generator.due();
                    rate.generate(due, max_per_tick, |timestamp, counter| {
                        record.clear();
                        write_pair(&timestamp.to_le_bytes(), &counter.to_le_bytes(), &mut record)
                            .expect("an 8-byte key fits");
                        generator.rows().push(&record);
                    });
                }
                let tick_ms = generator.tick();
                let batch = ctx.clock.batch_for(tick_ms);
                let mut history = history.lock().unwrap_or_else(|e| e.into_inner());
                match history.back_mut() {
                    Some((last, records)) if *last == batch => *records = rate.next,
                    _ => history.push_back((batch, rate.next)),
                }
                drop(history);
                tick.as_mut().reset(generator.deadline());
            }
        }
    }
    generator.finish();
}

/// A rate source's position in a checkpoint.
#[derive(Debug, Serialize, Deserialize)]
struct RatePosition {
    /// `t0`, the time record 0 was due after.
    start_ms: u64,
    /// Records in the batches the checkpoint covers.
    records: u64,
}

/// Which records are due when.
struct Rate {
    per_second: u64,
    start: u64,
    /// Records generated so far.
    next: u64,
}

impl Rate {
    fn new(per_second: u64, start: u64) -> Self {
        Self {
            per_second,
            start,
            next: 0,
        }
    }

    /// Records due by time `t` (ms) since the start.
    fn due_by(&self, t: u64) -> u64 {
        let elapsed = u128::from(t.saturating_sub(self.start));
        u64::try_from(elapsed * u128::from(self.per_second) / 1000).unwrap_or(u64::MAX)
    }

    /// The time record `k` is due (ms).
    fn due_at(&self, k: u64) -> u64 {
        let offset = (u128::from(k) + 1) * 1000 / u128::from(self.per_second.max(1));
        self.start + u64::try_from(offset).unwrap_or(u64::MAX - self.start)
    }

    /// Calls `emit(timestamp, counter)` for the records due by `t`, at most
    /// `max` of them.
    fn generate(&mut self, t: u64, max: u64, mut emit: impl FnMut(i64, i64)) {
        let until = self.due_by(t).min(self.next.saturating_add(max));
        while self.next < until {
            emit(self.due_at(self.next) as i64, self.next as i64);
            self.next += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::spawn;
    use super::super::testing::{context, run_batches};
    use super::*;
    use crate::batching::BlockStore;
    use crate::data::Codec;
    use crate::plan::SourceSpec;

    #[test]
    fn rate_spreads_records_evenly_and_carries_fractions() {
        // 3 records per second over 100 ms ticks: 0.3 per tick.
        let mut rate = Rate::new(3, 10_000);
        let mut got = Vec::new();
        for tick in 1..=10 {
            rate.generate(10_000 + tick * 100, u64::MAX, |ts, n| {
                got.push((tick, ts, n))
            });
        }
        assert_eq!(got, [(4, 10_333, 0), (7, 10_666, 1), (10, 11_000, 2)]);
        // The cap defers records; they come later with their due times.
        let mut rate = Rate::new(1000, 0);
        let mut n = 0;
        rate.generate(100, 30, |_, _| n += 1);
        assert_eq!(n, 30);
        rate.generate(100, 1000, |_, _| n += 1);
        assert_eq!(n, 100);
    }

    /// Runs a rate source of 500 records/s on `store` until its batches
    /// hold at least `records`; returns them.
    async fn run_rate(
        store: &Arc<BlockStore>,
        ctx: &crate::sources::ReceiverContext,
        stop: &crate::sources::StopSignal,
        records: u64,
    ) -> Vec<crate::batching::BatchInput> {
        let spec = SourceSpec::Rate {
            records_per_second: 500,
        };
        let task = spawn(spec, ctx.clone());
        let mut seen = 0;
        let batches = tokio::time::timeout(
            Duration::from_secs(60),
            run_batches(store, ctx, move |input| {
                seen += input.records;
                seen >= records
            }),
        )
        .await
        .unwrap();
        stop.stop();
        task.await.unwrap();
        batches
    }

    /// The counters of a run's records, in order.
    fn counters(batches: &[crate::batching::BatchInput]) -> Vec<i64> {
        batches
            .iter()
            .flat_map(|b| b.blocks.values().flatten())
            .flat_map(|rows| rows.iter())
            .map(|record| i64::from_le_bytes(record[12..].try_into().unwrap()))
            .collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resumed_rate_source_goes_on_from_the_counter_of_its_checkpoint() {
        // A first run, and its position once its batches are done.
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, stop) = context(&store, 20, 40, false);
        let first = run_rate(&store, &ctx, &stop, 30).await;
        let done = first.last().unwrap().time;
        let position = ctx.positions.snapshot(done).remove(&ctx.node).unwrap();
        let before = counters(&first);
        assert_eq!(before, (0..before.len() as i64).collect::<Vec<_>>());

        // A restart from that position: the counter goes on, none twice.
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        store.resume(done, done);
        let (mut ctx, stop) = context(&store, 20, 40, false);
        ctx.positions =
            crate::sources::Positions::resuming([(ctx.node, position)].into_iter().collect());
        let after = counters(&run_rate(&store, &ctx, &stop, 30).await);
        let next = before.len() as i64;
        assert_eq!(after, (next..next + after.len() as i64).collect::<Vec<_>>());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn rate_source_counts_without_gaps_in_its_codec() {
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, stop) = context(&store, 20, 40, false);
        let batches = run_rate(&store, &ctx, &stop, 50).await;

        let codec: Codec = "tuple<i64,i64>".parse().unwrap();
        let mut expected = 0i64;
        let mut last_ts = 0;
        for rows in batches.iter().flat_map(|b| b.blocks.values().flatten()) {
            for record in rows {
                assert_eq!(record.len(), 20);
                assert_eq!(&record[..4], &8u32.to_le_bytes());
                let ts = i64::from_le_bytes(record[4..12].try_into().unwrap());
                let n = i64::from_le_bytes(record[12..].try_into().unwrap());
                assert_eq!(n, expected);
                assert!(ts >= last_ts);
                assert_eq!(codec.format(record).unwrap(), format!("({ts},{n})"));
                expected += 1;
                last_ts = ts;
            }
        }
        assert!(expected >= 50);
    }
}
