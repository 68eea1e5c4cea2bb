//! The batch clock and the per-batch metrics line shared by every system in
//! the benchmark.
//!
//! As in Spark Streaming, batch times are multiples of the batch interval in
//! milliseconds since the Unix epoch; batch `T` holds what arrived in
//! `[T - interval, T)`. Each finished batch is one JSON line:
//!
//! ```
//! use sluice_bench::batch::BatchMetrics;
//!
//! let line = BatchMetrics {
//!     batch_time_ms: 2_000,
//!     records: 10,
//!     processing_ms: 3,
//!     scheduling_delay_ms: 1,
//!     total_delay_ms: 4,
//!     busy_ms: 250,
//! }
//! .to_json();
//! assert_eq!(
//!     line,
//!     r#"{"batch_time_ms":2000,"records":10,"processing_ms":3,"scheduling_delay_ms":1,"total_delay_ms":4,"busy_ms":250}"#
//! );
//! ```

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    u64::try_from(now_since_epoch().as_millis()).expect("epoch milliseconds fit in u64")
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    u64::try_from(now_since_epoch().as_nanos()).expect("epoch nanoseconds fit in u64 until 2554")
}

fn now_since_epoch() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
}

/// The first batch time strictly after `now_ms`.
///
/// ```
/// assert_eq!(sluice_bench::batch::next_batch_time(1_999, 1_000), 2_000);
/// assert_eq!(sluice_bench::batch::next_batch_time(2_000, 1_000), 3_000);
/// ```
pub fn next_batch_time(now_ms: u64, interval_ms: u64) -> u64 {
    (now_ms / interval_ms + 1) * interval_ms
}

/// One finished batch, in the format of `sluice run --metrics-json` (plus
/// `busy_ms`, which only the native baseline reports).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchMetrics {
    /// The batch time: the end of the interval whose input the batch holds.
    pub batch_time_ms: u64,
    /// Input records (lines) in the batch.
    pub records: u64,
    /// From the start of the batch's processing to its end.
    pub processing_ms: u64,
    /// From the batch time to the start of its processing.
    pub scheduling_delay_ms: u64,
    /// From the batch time to the end of its processing.
    pub total_delay_ms: u64,
    /// Time spent counting this batch's input while it arrived (before the
    /// batch time): the native baseline works as the bytes come in.
    pub busy_ms: u64,
}

impl BatchMetrics {
    /// The JSON line (without the newline).
    pub fn to_json(&self) -> String {
        format!(
            r#"{{"batch_time_ms":{},"records":{},"processing_ms":{},"scheduling_delay_ms":{},"total_delay_ms":{},"busy_ms":{}}}"#,
            self.batch_time_ms,
            self.records,
            self.processing_ms,
            self.scheduling_delay_ms,
            self.total_delay_ms,
            self.busy_ms
        )
    }
}
