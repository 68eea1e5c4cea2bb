//! A job's checkpoints and write-ahead log, as `run_job` drives them (the
//! guide's `StreamingContext.getOrCreate`): at start, resume from the
//! newest checkpoint of the location or create one; after every batch at a
//! multiple of the checkpoint interval, and once more on a graceful stop,
//! write one; after each, delete the log records it made useless.
//!
//! A job that starts afresh writes a first checkpoint before its first
//! batch (nothing done, its first batch time), so that a job killed before
//! its first periodic checkpoint comes back with the same batch times.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use super::{JobConfig, JobError};
use crate::batching::{BatchClock, BatchTime, BlockStore, Wal, now_ms};
use crate::checkpoint::{Checkpoints, Metadata, Restored};
use crate::exec::Executor;
use crate::monitor::{Accumulators, Metrics};
use crate::plan::JobGraph;
use crate::sources::Positions;

/// The default checkpoint interval is the smallest multiple of the batch
/// interval that is at least this (Spark's rule).
const DEFAULT_INTERVAL: Duration = Duration::from_secs(10);

/// The name of the blob that holds what windows keep.
const WINDOWS_BLOB: &str = "windows";

/// Where a job starts.
pub(super) struct Start {
    /// The job's first batch ever.
    pub first: BatchTime,
    /// The last batch the checkpoint covers (the one before `first` on a
    /// fresh start).
    pub done: BatchTime,
    /// The checkpoint to restore, when resuming.
    pub restored: Option<Restored>,
}

/// A running job's checkpoints.
pub(super) struct Checkpointing {
    checkpoints: Checkpoints,
    wal: Arc<Wal>,
    interval_ms: u64,
    base: Metadata,
    positions: Positions,
    /// The batch of the last checkpoint written or restored.
    last: BatchTime,
}

impl Checkpointing {
    /// Opens the checkpoint location of `config` for `graph` (the plugin's
    /// digest `digest`, `partitions` default partitions) and says where the
    /// job starts: from its newest checkpoint, or afresh (`--reset` deletes
    /// what the location held first).
    pub(super) fn open(
        config: &JobConfig,
        location: &str,
        graph: &JobGraph,
        digest: &str,
        partitions: u32,
        runtime: tokio::runtime::Handle,
    ) -> Result<(Checkpointing, Start), JobError> {
        // The log first: on a local location it holds the lock that keeps a
        // second process away.
        let open_wal = || {
            Wal::open(
                location,
                &config.storage_options,
                config.wal_sync,
                runtime.clone(),
            )
        };
        let mut wal = open_wal()?;
        let mut checkpoints = Checkpoints::open(
            location,
            &config.storage_options,
            config.checkpoint_retain,
            runtime.clone(),
        )?;
        if config.reset {
            checkpoints.reset()?;
            // The reset deleted the lock file too: take a new one.
            drop(wal);
            wal = open_wal()?;
            tracing::warn!(
                job = %graph.name,
                "--reset: deleted every checkpoint and log record at {location}; starting afresh"
            );
        }
        let interval_ms = checkpoint_interval(config, graph)?;
        let clock = BatchClock::new(config.batch_interval);
        let base = Metadata {
            job: graph.name.clone(),
            plugin_digest: digest.to_string(),
            graph: describe(graph),
            batch_interval_ms: clock.interval_ms(),
            key_groups: config.key_groups.get(),
            partitions,
            batch_time_ms: 0,
            first_batch_ms: 0,
            sources: BTreeMap::new(),
            accumulators: serde_json::Value::Null,
        };
        let restored = checkpoints.latest()?;
        let start = match restored {
            Some(restored) => {
                check_compatible(location, &restored.metadata, &base)?;
                tracing::info!(
                    job = %graph.name,
                    "resuming from the checkpoint of batch {} ms at {location} ({} keys of state)",
                    restored.metadata.batch_time_ms,
                    restored.keys()
                );
                Start {
                    first: BatchTime(restored.metadata.first_batch_ms),
                    done: BatchTime(restored.metadata.batch_time_ms),
                    restored: Some(restored),
                }
            }
            None => {
                // Every block a receiver cuts from now on belongs to this
                // batch or a later one.
                let first = clock.batch_for(now_ms());
                Start {
                    first,
                    done: BatchTime(first.as_millis() - clock.interval_ms()),
                    restored: None,
                }
            }
        };
        let mut base = base;
        base.first_batch_ms = start.first.as_millis();
        tracing::info!(
            job = %graph.name,
            "checkpoints every {} at {location}, keeping {}; write-ahead log sync: {:?}",
            humantime::format_duration(Duration::from_millis(interval_ms)),
            config.checkpoint_retain,
            config.wal_sync
        );
        Ok((
            Checkpointing {
                checkpoints,
                wal: Arc::new(wal),
                interval_ms,
                base,
                positions: match &start.restored {
                    Some(restored) => Positions::resuming(
                        restored
                            .metadata
                            .sources
                            .iter()
                            .filter_map(|(node, position)| {
                                Some((node.parse().ok()?, position.clone()))
                            })
                            .collect(),
                    ),
                    None => Positions::default(),
                },
                last: start.done,
            },
            start,
        ))
    }

    /// The positions receivers publish and resume from.
    pub(super) fn positions(&self) -> &Positions {
        &self.positions
    }

    /// Prepares the store for receivers: their log, and where they resume.
    pub(super) fn prepare(&self, store: &BlockStore, start: &Start) {
        store.attach_wal(Arc::clone(&self.wal));
        store.resume(start.first, start.done);
    }

    /// Restores the checkpoint's state, windows and accumulator totals (on a
    /// fresh start, writes the first checkpoint instead).
    pub(super) fn restore(
        &mut self,
        start: &Start,
        executor: &Executor,
        metrics: &mut Metrics,
    ) -> Result<(), JobError> {
        let Some(restored) = &start.restored else {
            return self.write(start.done, executor, metrics);
        };
        restored.restore_state(executor.state())?;
        if let Some(windows) = restored.blobs.get(WINDOWS_BLOB) {
            executor.restore_windows(windows)?;
        }
        let accumulators: Accumulators =
            serde_json::from_value(restored.metadata.accumulators.clone()).unwrap_or_default();
        metrics.restore_accumulators(accumulators);
        Ok(())
    }

    /// After batch `time`: a checkpoint when `time` is a multiple of the
    /// interval.
    pub(super) fn after_batch(
        &mut self,
        time: BatchTime,
        executor: &Executor,
        metrics: &Metrics,
    ) -> Result<(), JobError> {
        if time.as_millis().is_multiple_of(self.interval_ms) {
            self.write(time, executor, metrics)?;
        }
        Ok(())
    }

    /// On a graceful stop: a checkpoint of the last batch run, unless one
    /// exists.
    pub(super) fn finish(
        &mut self,
        time: BatchTime,
        executor: &Executor,
        metrics: &Metrics,
    ) -> Result<(), JobError> {
        if time > self.last {
            self.write(time, executor, metrics)?;
        }
        Ok(())
    }

    /// Checkpoints from now on name `digest` and `graph` (an upgrade's
    /// switch, or its rollback).
    pub(super) fn set_version(&mut self, digest: String, graph: &JobGraph) {
        self.base.plugin_digest = digest;
        self.base.graph = describe(graph);
    }

    /// A checkpoint of batch `time` now, whatever the interval says.
    pub(super) fn write_now(
        &mut self,
        time: BatchTime,
        executor: &Executor,
        metrics: &Metrics,
    ) -> Result<(), JobError> {
        self.write(time, executor, metrics)
    }

    fn write(
        &mut self,
        time: BatchTime,
        executor: &Executor,
        metrics: &Metrics,
    ) -> Result<(), JobError> {
        let mut metadata = self.base.clone();
        metadata.batch_time_ms = time.as_millis();
        metadata.sources = self
            .positions
            .snapshot(time)
            .into_iter()
            .map(|(node, position)| (node.to_string(), position))
            .collect();
        metadata.accumulators =
            serde_json::to_value(metrics.accumulator_totals()).unwrap_or_default();
        let blobs = [(WINDOWS_BLOB.to_string(), executor.windows_snapshot())];
        let written = self
            .checkpoints
            .write(&metadata, executor.state(), &blobs)?;
        self.last = time;
        let deleted = self
            .wal
            .delete_through(BatchTime(written.oldest_retained_ms))?;
        tracing::info!(
            batch = time.as_millis(),
            files = written.files,
            bytes = written.bytes,
            groups_written = written.groups_written,
            groups_referred = written.groups_referred,
            log_records_deleted = deleted,
            "checkpoint written"
        );
        Ok(())
    }
}

/// The job's checkpoint interval: `--checkpoint-interval`, or the smallest
/// multiple of the batch interval at least 10 s; shortened to the shortest
/// a stream asks for (`.checkpoint(..)`). Milliseconds.
fn checkpoint_interval(config: &JobConfig, graph: &JobGraph) -> Result<u64, JobError> {
    let batch = (config.batch_interval.as_millis() as u64).max(1);
    let default = DEFAULT_INTERVAL.as_millis() as u64;
    let job = match config.checkpoint_interval {
        None => default.div_ceil(batch) * batch,
        Some(d) => {
            let ms = d.as_millis() as u64;
            if ms == 0 || !ms.is_multiple_of(batch) || d.subsec_nanos() % 1_000_000 != 0 {
                return Err(JobError::CheckpointInterval {
                    interval: humantime::format_duration(d).to_string(),
                    batch: humantime::format_duration(config.batch_interval).to_string(),
                });
            }
            ms
        }
    };
    // Validation made every stream's a multiple of its slide, which is a
    // multiple of the batch interval.
    Ok(graph
        .nodes
        .iter()
        .filter_map(|n| n.checkpoint)
        .map(|d| d.as_millis() as u64)
        .fold(job, u64::min)
        .max(batch))
}

/// The graph as a checkpoint shows it: each node's index, name, operator,
/// inputs and codec.
fn describe(graph: &JobGraph) -> serde_json::Value {
    serde_json::Value::Array(
        graph
            .nodes
            .iter()
            .enumerate()
            .map(|(i, node)| {
                serde_json::json!({
                    "node": i,
                    "name": node.display(),
                    "operator": node.kind.label(),
                    "inputs": node.inputs,
                    "codec": node.codec,
                })
            })
            .collect(),
    )
}

/// A checkpoint resumes only the job that made it: the same plugin, batch
/// interval, key groups and partitions.
fn check_compatible(location: &str, found: &Metadata, now: &Metadata) -> Result<(), JobError> {
    if found.plugin_digest != now.plugin_digest {
        return Err(JobError::OtherPlugin {
            location: location.to_string(),
            found: found.plugin_digest.clone(),
            now: now.plugin_digest.clone(),
        });
    }
    let changed = |what: &str, flag: &str, was: String, is: String| JobError::ConfigChanged {
        location: location.to_string(),
        what: what.to_string(),
        flag: flag.to_string(),
        was,
        is,
    };
    let ms = |ms: u64| humantime::format_duration(Duration::from_millis(ms)).to_string();
    if found.batch_interval_ms != now.batch_interval_ms {
        return Err(changed(
            "batch interval",
            "--batch-interval",
            ms(found.batch_interval_ms),
            ms(now.batch_interval_ms),
        ));
    }
    if found.key_groups != now.key_groups {
        return Err(changed(
            "key groups",
            "--key-groups",
            found.key_groups.to_string(),
            now.key_groups.to_string(),
        ));
    }
    if found.partitions != now.partitions {
        return Err(changed(
            "partition count",
            "--workers",
            found.partitions.to_string(),
            now.partitions.to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::NodeKind;
    use crate::plan::graph::{test_node, test_socket};

    fn graph(checkpoint: Option<Duration>) -> JobGraph {
        let mut mapped = test_node("map at a", NodeKind::Map(0), &[0], "string");
        mapped.checkpoint = checkpoint;
        JobGraph {
            name: "test".into(),
            nodes: vec![test_socket(), mapped],
            broadcasts: Vec::new(),
            remember: None,
        }
    }

    fn config(batch_ms: u64, interval_ms: Option<u64>) -> JobConfig {
        let mut config = JobConfig::new("job.wasm".into());
        config.batch_interval = Duration::from_millis(batch_ms);
        config.checkpoint_interval = interval_ms.map(Duration::from_millis);
        config
    }

    #[test]
    fn the_interval_defaults_to_the_first_multiple_of_the_batch_interval_from_10_s() {
        let interval = |batch, job, stream: Option<u64>| {
            checkpoint_interval(
                &config(batch, job),
                &graph(stream.map(Duration::from_millis)),
            )
        };
        assert_eq!(interval(1_000, None, None).unwrap(), 10_000);
        assert_eq!(interval(3_000, None, None).unwrap(), 12_000);
        assert_eq!(interval(250, None, None).unwrap(), 10_000);
        assert_eq!(interval(1_000, Some(2_000), None).unwrap(), 2_000);
        // A stream asking for more often wins; asking for less does not.
        assert_eq!(interval(1_000, None, Some(5_000)).unwrap(), 5_000);
        assert_eq!(interval(1_000, Some(2_000), Some(5_000)).unwrap(), 2_000);
        for bad in [0, 1_500] {
            let e = interval(1_000, Some(bad), None).unwrap_err().to_string();
            assert!(
                e.contains("must be a positive multiple of the batch interval (1s)"),
                "{e}"
            );
        }
    }
}
