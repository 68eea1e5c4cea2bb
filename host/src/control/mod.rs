//! Starting, stopping and upgrading a job — Spark's
//! `StreamingContext.start()` and `stop(stopGracefully = true)`, plus what
//! Spark cannot do: replacing the job's code while it runs.
//!
//! Files: this one ([`JobConfig`], [`JobError`], [`run_job`]), `version`
//! (one version of the code: load, `define`, validate, plan — the one path
//! for a start, an upgrade and a rollback), `job` ([`JobHandle`]: the job on
//! its own threads, its status, upgrades), `switch` (the batch loop's hooks:
//! checkpoints, the switch between versions, the probation and rollback),
//! `upgrade` (whether a new version may take over, by operator
//! names), `checkpointing` (checkpoints and the write-ahead log around the
//! batch loop).

mod checkpointing;
mod job;
mod switch;
mod upgrade;
mod version;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use job::{
    JobHandle, JobState, JobStatus, UpgradeError, UpgradeOutcome, UpgradeRequest, VersionEvent,
    VersionEventKind,
};

use crate::batching::{BlockStore, WalSync};
use crate::data::KeyGroups;
use crate::exec::scheduler::ScheduleError;
use crate::monitor::Summary;
use crate::monitor::logs::{self, JobLog};
use crate::plan::{BroadcastValue, JobGraph, PlanError};
use crate::sources::StopSignal;
use crate::wasm::{Broadcasts, CallError, WasmError};

/// Everything `sluice run` is told.
#[derive(Debug, Clone)]
pub struct JobConfig {
    /// The plugin component.
    pub plugin: PathBuf,
    /// `--arg KEY=VALUE` pairs, in order.
    pub args: Vec<(String, String)>,
    /// Time between batches.
    pub batch_interval: Duration,
    /// Time between blocks of a receiver: one partition each.
    pub block_interval: Duration,
    /// Worker threads, each with its own plugin instance.
    pub workers: usize,
    /// Stop after this many batches.
    pub max_batches: Option<u64>,
    /// Stop when every source has ended and all it sent is processed.
    pub until_sources_end: bool,
    /// Where Sluice keeps its files (compiled components).
    pub data_dir: Option<PathBuf>,
    /// Linear memory cap of one plugin instance, in bytes.
    pub memory_limit: usize,
    /// Time limit of one guest call.
    pub call_timeout: Duration,
    /// Retries of a task whose guest trapped.
    pub task_retries: u32,
    /// Bytes received but not yet processed above which receivers stop reading.
    pub max_pending_bytes: usize,
    /// Append one JSON line per batch to this file.
    pub metrics_json: Option<PathBuf>,
    /// Key groups N of every keyed operator, fixed for the life of the job
    /// (see `data::partitioner`).
    pub key_groups: KeyGroups,
    /// Where checkpoints and the write-ahead log go (a directory or an
    /// object store URL); none: no checkpoints.
    pub checkpoint: Option<String>,
    /// Time between checkpoints (see `control/checkpointing.rs`); default: the
    /// smallest multiple of the batch interval that is at least 10 s.
    pub checkpoint_interval: Option<Duration>,
    /// Checkpoints kept.
    pub checkpoint_retain: usize,
    /// Delete what the checkpoint location holds and start afresh.
    pub reset: bool,
    /// When the write-ahead log reaches the disk.
    pub wal_sync: WalSync,
    /// `--storage-option KEY=VALUE` pairs for every object store URL.
    pub storage_options: crate::storage::StorageOptions,
    /// Batches after an upgrade during which a failure rolls the job back
    /// to the version before.
    pub probation_batches: u32,
    /// When a worker replaces its instance with a fresh one; the growth
    /// limit is at most half the memory limit.
    pub recycle: crate::exec::Recycle,
    /// What the plugin's sandbox grants (`--allow-dir`, `--allow-net`,
    /// `--env`); default: nothing.
    pub grants: crate::wasm::Grants,
}

impl JobConfig {
    /// Defaults for `plugin`, as `sluice run` has them.
    pub fn new(plugin: PathBuf) -> JobConfig {
        JobConfig {
            plugin,
            args: Vec::new(),
            batch_interval: Duration::from_secs(1),
            block_interval: Duration::from_millis(200),
            workers: std::thread::available_parallelism().map_or(2, |n| n.get()),
            max_batches: None,
            until_sources_end: false,
            data_dir: None,
            memory_limit: 1 << 30,
            call_timeout: Duration::from_secs(60),
            task_retries: 4,
            max_pending_bytes: BlockStore::DEFAULT_BUDGET as usize,
            metrics_json: None,
            key_groups: KeyGroups::default(),
            checkpoint: None,
            checkpoint_interval: None,
            checkpoint_retain: 3,
            reset: false,
            wal_sync: WalSync::default(),
            storage_options: crate::storage::StorageOptions::default(),
            probation_batches: 10,
            recycle: crate::exec::Recycle {
                after_calls: None,
                growth_above: RECYCLE_ABOVE,
            },
            grants: crate::wasm::Grants::default(),
        }
    }
}

/// Why a job could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The plugin could not be loaded.
    #[error(transparent)]
    Wasm(#[from] WasmError),
    /// The plugin's `define` failed.
    #[error("the plugin's `define` failed: {0}")]
    Define(CallError),
    /// Two instances of the plugin defined different graphs.
    #[error(
        "plugin {plugin} is not deterministic: a second instance's `define` returned a \
         different graph than the first: {difference}; `define` must build the same graph in \
         every instance (no randomness, hash map iteration order or clock), since the host \
         calls functions by their number"
    )]
    UnstableDefine {
        /// The plugin file.
        plugin: PathBuf,
        /// The first difference.
        difference: String,
    },
    /// The graph or the timing is invalid.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// A batch or a source failed.
    #[error(transparent)]
    Schedule(#[from] ScheduleError),
    /// The metrics file could not be created.
    #[error("cannot create the metrics file {path}: {source}")]
    MetricsFile {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Threads could not be started.
    #[error("cannot start threads: {0}")]
    Threads(String),
    /// Checkpoints could not be read or written.
    #[error(transparent)]
    Checkpoint(#[from] crate::checkpoint::CheckpointError),
    /// The write-ahead log could not be opened, written or cleaned.
    #[error(transparent)]
    Wal(#[from] crate::batching::WalError),
    /// What windows keep could not be restored.
    #[error(transparent)]
    Windows(#[from] crate::exec::WindowsRestoreError),
    /// The checkpoint location holds the checkpoints of another plugin.
    #[error(
        "the checkpoints at {location} were made by plugin {} and this is plugin {}: to run the \
         new code with the old state, upgrade the running job (`sluice upgrade` of a job that \
         `sluice serve` runs, or `sluice run --watch`), or give a new --checkpoint location, or \
         --reset to start afresh there",
        &found[..found.len().min(12)],
        &now[..now.len().min(12)]
    )]
    OtherPlugin {
        /// The location.
        location: String,
        /// The digest the checkpoints were made by.
        found: String,
        /// This plugin's digest.
        now: String,
    },
    /// `--checkpoint-interval` is not a multiple of the batch interval.
    #[error(
        "--checkpoint-interval {interval} must be a positive multiple of the batch interval \
         ({batch}): checkpoints are taken between batches"
    )]
    CheckpointInterval {
        /// As given.
        interval: String,
        /// The batch interval.
        batch: String,
    },
    /// A setting that must not change for a job changed.
    #[error(
        "the checkpoints at {location} were made with {what} {was}, and this run has {is}: it \
         cannot change for a job with state ({flag} {was} resumes it; or give a new \
         --checkpoint location, or --reset)"
    )]
    ConfigChanged {
        /// The location.
        location: String,
        /// The setting.
        what: String,
        /// Its command line flag.
        flag: String,
        /// In the checkpoint.
        was: String,
        /// Now.
        is: String,
    },
    /// A broadcast value's file could not be read.
    #[error("cannot load the broadcast value `{name}`: {source}")]
    Broadcast {
        /// The broadcast's name.
        name: String,
        /// Why.
        source: crate::storage::StorageError,
    },
}

/// Runs a job until it ends (see [`JobConfig`]) or `stop` is signalled, then
/// stops gracefully: receivers stop reading, what they received is
/// processed, outputs are written.
pub fn run_job(config: &JobConfig, stop: StopSignal) -> Result<Summary, JobError> {
    JobHandle::start_with(
        "job",
        config.clone(),
        JobLog::new(logs::DEFAULT_CAPACITY),
        stop,
    )?
    .join()
}

/// The job's broadcast values: the bytes the plugin gave, and the files it
/// named, read now (through `object_store`: a path or a URL).
fn load_broadcasts(
    graph: &JobGraph,
    runtime: &tokio::runtime::Handle,
    options: &crate::storage::StorageOptions,
) -> Result<Broadcasts, JobError> {
    let mut values = std::collections::HashMap::new();
    for broadcast in &graph.broadcasts {
        let bytes: Arc<[u8]> = match &broadcast.value {
            BroadcastValue::Bytes(bytes) => bytes.as_slice().into(),
            BroadcastValue::File(location) => crate::storage::read(runtime, location, options)
                .map_err(|source| JobError::Broadcast {
                    name: broadcast.name.clone(),
                    source,
                })?
                .0
                .as_ref()
                .into(),
        };
        tracing::info!(
            job = %graph.name,
            "broadcast value `{}` loaded ({} bytes)",
            broadcast.name,
            bytes.len()
        );
        values.insert(broadcast.name.clone(), bytes);
    }
    Ok(Arc::new(values))
}

/// How long a receiver has to finish once told to stop: it only has to cut
/// and push its last block.
const RECEIVER_STOP: Duration = Duration::from_secs(5);

/// An instance whose linear memory grew more than this above its size after
/// `define` is replaced after its call (a fresh one costs about 150 µs):
/// linear memory never shrinks.
const RECYCLE_ABOVE: usize = 32 << 20;

fn cache_dir(data_dir: Option<&std::path::Path>) -> PathBuf {
    match data_dir {
        Some(dir) => dir.join("cache"),
        None => std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(std::env::temp_dir)
            .join("sluice"),
    }
}
