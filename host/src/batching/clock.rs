//! Time: the one place that says which batch a moment belongs to.
//!
//! Time is milliseconds since the Unix epoch. Batch times are multiples of
//! the batch interval; the batch of time `t` is the first batch time at or
//! after `t`: `batch_for(t) = ceil(t / interval) * interval`. A batch at time
//! `T` therefore holds what was received in `(T - interval, T]`.
//!
//! Receivers cut blocks at ticks aligned to multiples of the block interval
//! ([`BlockTicker`]); the block cut at tick `t` belongs to batch
//! `batch_for(t)`.
//!
//! ```
//! use std::time::Duration;
//! use sluice::batching::{BatchClock, BatchTime};
//! let clock = BatchClock::new(Duration::from_secs(1));
//! assert_eq!(clock.batch_for(1_000), BatchTime(1_000));
//! assert_eq!(clock.batch_for(1_001), BatchTime(2_000));
//! let times: Vec<_> = clock.times_from(BatchTime(2_000)).take(2).collect();
//! assert_eq!(times, [BatchTime(2_000), BatchTime(3_000)]);
//! ```

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The time of a batch, in milliseconds since the Unix epoch; a multiple of
/// the batch interval.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct BatchTime(pub u64);

impl BatchTime {
    /// Milliseconds since the Unix epoch.
    pub fn as_millis(self) -> u64 {
        self.0
    }
}

impl fmt::Display for BatchTime {
    /// As Spark prints it: `1357008430000 ms`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ms", self.0)
    }
}

/// The current wall-clock time in milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Says which batch a time belongs to, and yields successive batch times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchClock {
    interval: u64,
}

impl BatchClock {
    /// A clock with batches every `interval` (rounded down to whole
    /// milliseconds).
    ///
    /// # Panics
    /// When `interval` is shorter than a millisecond; the CLI and the plan
    /// validation refuse such an interval first.
    pub fn new(interval: Duration) -> Self {
        let interval = u64::try_from(interval.as_millis()).unwrap_or(u64::MAX);
        assert!(interval > 0, "the batch interval is at least 1 ms");
        Self { interval }
    }

    /// The batch interval.
    pub fn interval(&self) -> Duration {
        Duration::from_millis(self.interval)
    }

    /// The batch interval in milliseconds.
    pub fn interval_ms(&self) -> u64 {
        self.interval
    }

    /// The batch that time `t` (ms) belongs to: `ceil(t / interval) * interval`.
    pub fn batch_for(&self, t: u64) -> BatchTime {
        BatchTime(t.div_ceil(self.interval).saturating_mul(self.interval))
    }

    /// The batch after `time`.
    pub fn next(&self, time: BatchTime) -> BatchTime {
        BatchTime(time.0.saturating_add(self.interval))
    }

    /// The `i`-th batch from `start` (`start` itself for `i = 0`).
    pub fn nth_from(&self, start: BatchTime, i: u64) -> BatchTime {
        BatchTime(start.0.saturating_add(i.saturating_mul(self.interval)))
    }

    /// Successive batch times, starting at `batch_for(start)`.
    pub fn times_from(&self, start: BatchTime) -> impl Iterator<Item = BatchTime> + use<> {
        let clock = *self;
        std::iter::successors(Some(self.batch_for(start.0)), move |t| Some(clock.next(*t)))
    }
}

/// The block ticks of one receiver: multiples of the block interval on the
/// wall clock. [`BlockTicker::due`] is the next tick; once the receiver has
/// cut the block of that tick it calls [`BlockTicker::advance`].
#[derive(Debug, Clone)]
pub struct BlockTicker {
    interval: u64,
    due: u64,
}

impl BlockTicker {
    /// Ticks every `block_interval` (at least 1 ms), the first one strictly
    /// after `now` (ms).
    pub fn new(block_interval: Duration, now: u64) -> Self {
        let interval = u64::try_from(block_interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        Self {
            interval,
            due: Self::aligned_after(interval, now),
        }
    }

    fn aligned_after(interval: u64, t: u64) -> u64 {
        (t / interval).saturating_add(1).saturating_mul(interval)
    }

    /// The next tick (ms since the epoch).
    pub fn due(&self) -> u64 {
        self.due
    }

    /// How long from `now` (ms) until the next tick.
    pub fn wait(&self, now: u64) -> Duration {
        Duration::from_millis(self.due.saturating_sub(now))
    }

    /// Moves past the due tick to the first tick after both it and `now`
    /// (ticks missed while the receiver was late are skipped), and returns
    /// the tick that was due.
    pub fn advance(&mut self, now: u64) -> u64 {
        let fired = self.due;
        self.due = Self::aligned_after(self.interval, fired.max(now));
        fired
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn batch_for_rounds_up_to_the_interval() {
        let clock = BatchClock::new(Duration::from_millis(500));
        assert_eq!(clock.batch_for(0), BatchTime(0));
        assert_eq!(clock.batch_for(1), BatchTime(500));
        assert_eq!(clock.batch_for(499), BatchTime(500));
        assert_eq!(clock.batch_for(500), BatchTime(500));
        assert_eq!(clock.batch_for(501), BatchTime(1_000));
        assert_eq!(clock.next(BatchTime(500)), BatchTime(1_000));
        assert_eq!(clock.nth_from(BatchTime(500), 3), BatchTime(2_000));
        let times: Vec<_> = clock.times_from(BatchTime(700)).take(3).collect();
        assert_eq!(
            times,
            [BatchTime(1_000), BatchTime(1_500), BatchTime(2_000)]
        );
        assert_eq!(BatchTime(1_500).to_string(), "1500 ms");
    }

    #[test]
    fn block_ticks_are_aligned_and_skip_missed_ones() {
        let mut ticker = BlockTicker::new(Duration::from_millis(200), 1_050);
        assert_eq!(ticker.due(), 1_200);
        assert_eq!(ticker.wait(1_050), Duration::from_millis(150));
        assert_eq!(ticker.advance(1_200), 1_200);
        assert_eq!(ticker.due(), 1_400);
        // Late by more than a tick: the missed ticks are skipped.
        assert_eq!(ticker.advance(1_900), 1_400);
        assert_eq!(ticker.due(), 2_000);
        // On time exactly at a tick: the next one follows.
        let ticker = BlockTicker::new(Duration::from_millis(200), 2_000);
        assert_eq!(ticker.due(), 2_200);
    }

    proptest! {
        #[test]
        fn batch_for_is_the_first_batch_time_at_or_after(t in 0u64..1 << 50, iv in 1u64..100_000) {
            let clock = BatchClock::new(Duration::from_millis(iv));
            let b = clock.batch_for(t).0;
            prop_assert_eq!(b % iv, 0);
            prop_assert!(b >= t);
            prop_assert!(b < t + iv);
        }

        #[test]
        fn a_block_belongs_to_a_batch_after_its_tick(now in 0u64..1 << 50, block in 1u64..10_000, iv in 1u64..100_000) {
            let clock = BatchClock::new(Duration::from_millis(iv));
            let mut ticker = BlockTicker::new(Duration::from_millis(block), now);
            let tick = ticker.advance(now);
            prop_assert!(tick > now);
            prop_assert_eq!(tick % block, 0);
            prop_assert!(clock.batch_for(tick).0 >= tick);
            prop_assert!(ticker.due() > tick);
        }
    }
}
