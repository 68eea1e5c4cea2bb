//! Batch metrics, as the Spark UI's Streaming tab shows them: for each batch
//! the records received, the processing time, the scheduling delay (how long
//! the batch waited for the previous ones) and the total delay; and a summary
//! of the run. [`Metrics`] logs each batch with `tracing`, optionally appends
//! it as a JSON line to a file (`--metrics-json`), and keeps the totals.
//!
//! Each batch also carries its [`Accumulators`]: what the guests added in
//! that batch, and the job's running totals.
//!
//! Later: the web UI, REST and Prometheus read the same [`BatchInfo`] events.

mod accumulators;
pub mod logs;

pub use accumulators::{AccumulatorValue, Accumulators, KindMismatch};

use std::fmt;
use std::io::{BufWriter, Write};
use std::time::{Duration, Instant};

use serde::Serialize;

/// What happened in one batch.
#[derive(Debug, Clone, Serialize)]
pub struct BatchInfo {
    /// The batch time, ms since the Unix epoch.
    pub batch_time_ms: u64,
    /// Records received for the batch, over all sources.
    pub records: u64,
    /// Records the sources skipped (for instance invalid UTF-8 lines).
    pub invalid_records: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Time from the start of processing to its end.
    #[serde(rename = "processing_ms", serialize_with = "millis")]
    pub processing: Duration,
    /// Time from the batch time to the start of processing.
    #[serde(rename = "scheduling_delay_ms", serialize_with = "millis")]
    pub scheduling_delay: Duration,
    /// Scheduling delay plus processing time.
    #[serde(rename = "total_delay_ms", serialize_with = "millis")]
    pub total_delay: Duration,
    /// When processing ended, ms since the Unix epoch. Not always the batch
    /// time plus the total delay: the last batch of a job whose sources
    /// have ended runs at once, before its batch time (its scheduling delay
    /// is then 0).
    pub done_ms: u64,
    /// What the batch's tasks added to accumulators (each successful task
    /// once, however often it was tried).
    pub accumulators: Accumulators,
}

/// A line of `--metrics-json`: the batch and the accumulators' totals after
/// it.
#[derive(Serialize)]
struct JsonLine<'a> {
    #[serde(flatten)]
    batch: &'a BatchInfo,
    accumulator_totals: &'a Accumulators,
}

fn millis<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// Collects [`BatchInfo`]s.
pub struct Metrics {
    json: Option<BufWriter<std::fs::File>>,
    started: Instant,
    batches: u64,
    records: u64,
    invalid_records: u64,
    bytes: u64,
    processing: Duration,
    max_processing: Duration,
    max_scheduling_delay: Duration,
    accumulators: Accumulators,
    /// The last [`RECENT`] batches, oldest first.
    recent: std::collections::VecDeque<BatchInfo>,
}

/// Batches [`Metrics::recent`] keeps.
pub const RECENT: usize = 20;

impl Metrics {
    /// A collector; with `json`, each batch is also appended to that file as
    /// one JSON object per line.
    pub fn new(json: Option<std::fs::File>) -> Metrics {
        Metrics {
            json: json.map(BufWriter::new),
            started: Instant::now(),
            batches: 0,
            records: 0,
            invalid_records: 0,
            bytes: 0,
            processing: Duration::ZERO,
            max_processing: Duration::ZERO,
            max_scheduling_delay: Duration::ZERO,
            accumulators: Accumulators::default(),
            recent: std::collections::VecDeque::with_capacity(RECENT),
        }
    }

    /// The last batches recorded, oldest first.
    pub fn recent(&self) -> impl Iterator<Item = &BatchInfo> {
        self.recent.iter()
    }

    /// Adds what a re-run batch added to accumulators (a batch run again
    /// after a rollback, whose first run's additions were undone).
    pub fn add_replayed(&mut self, accumulators: &Accumulators) {
        if let Err(e) = self.accumulators.merge(accumulators) {
            tracing::error!("{e}");
        }
    }

    /// The accumulators' totals so far.
    pub fn accumulator_totals(&self) -> &Accumulators {
        &self.accumulators
    }

    /// Starts the totals from a checkpoint's (a restarted job).
    pub fn restore_accumulators(&mut self, totals: Accumulators) {
        self.accumulators = totals;
    }

    /// Records one batch. Accumulators of a kind other than the totals' so
    /// far (a guest adding a float to an integer sum across batches) are
    /// logged and left out of the totals.
    pub fn record(&mut self, info: &BatchInfo) -> std::io::Result<()> {
        if let Err(e) = self.accumulators.merge(&info.accumulators) {
            tracing::error!(batch = info.batch_time_ms, "{e}");
        }
        if !self.accumulators.is_empty() {
            tracing::info!(
                batch = info.batch_time_ms,
                added = %info.accumulators,
                totals = %self.accumulators,
                "accumulators"
            );
        }
        tracing::info!(
            batch = info.batch_time_ms,
            records = info.records,
            invalid = info.invalid_records,
            processing_ms = info.processing.as_millis() as u64,
            scheduling_delay_ms = info.scheduling_delay.as_millis() as u64,
            total_delay_ms = info.total_delay.as_millis() as u64,
            "batch done"
        );
        self.batches += 1;
        self.records += info.records;
        self.invalid_records += info.invalid_records;
        self.bytes += info.bytes;
        self.processing += info.processing;
        self.max_processing = self.max_processing.max(info.processing);
        self.max_scheduling_delay = self.max_scheduling_delay.max(info.scheduling_delay);
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(info.clone());
        if let Some(json) = &mut self.json {
            let line = JsonLine {
                batch: info,
                accumulator_totals: &self.accumulators,
            };
            serde_json::to_writer(&mut *json, &line)?;
            json.write_all(b"\n")?;
            json.flush()?;
        }
        Ok(())
    }

    /// The totals so far.
    pub fn summary(&self) -> Summary {
        Summary {
            batches: self.batches,
            records: self.records,
            invalid_records: self.invalid_records,
            bytes: self.bytes,
            elapsed: self.started.elapsed(),
            processing: self.processing,
            max_processing: self.max_processing,
            max_scheduling_delay: self.max_scheduling_delay,
            accumulators: self.accumulators.clone(),
        }
    }
}

/// Totals of a run.
#[derive(Debug, Clone)]
pub struct Summary {
    /// Batches run.
    pub batches: u64,
    /// Records received.
    pub records: u64,
    /// Records skipped by sources.
    pub invalid_records: u64,
    /// Bytes received.
    pub bytes: u64,
    /// Wall time since the job started.
    pub elapsed: Duration,
    /// Sum of processing times.
    pub processing: Duration,
    /// Longest processing time.
    pub max_processing: Duration,
    /// Longest scheduling delay.
    pub max_scheduling_delay: Duration,
    /// The accumulators' totals.
    pub accumulators: Accumulators,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mean = if self.batches > 0 {
            self.processing / self.batches as u32
        } else {
            Duration::ZERO
        };
        write!(
            f,
            "{} batches, {} records ({} skipped), {:.1} MB in {:.1?}; processing mean {:.1?}, max {:.1?}; max scheduling delay {:.1?}",
            self.batches,
            self.records,
            self.invalid_records,
            self.bytes as f64 / 1e6,
            self.elapsed,
            mean,
            self.max_processing,
            self.max_scheduling_delay
        )?;
        if !self.accumulators.is_empty() {
            write!(f, "; accumulators: {}", self.accumulators)?;
        }
        Ok(())
    }
}
