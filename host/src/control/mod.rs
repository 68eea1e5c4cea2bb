//! Starting and stopping a job — Spark's `StreamingContext.start()` and
//! `stop(stopGracefully = true)`: load the plugin, ask it for its graph,
//! validate and plan it, start its receivers, run the batch loop, and stop
//! cleanly. Deploying, serving several jobs and hot upgrade will go through
//! this same path.

mod checkpointing;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::batching::{BatchClock, BlockStore, WalSync};
use crate::data::KeyGroups;
use crate::exec::scheduler::{self, Limits, ScheduleError};
use crate::exec::{Datasets, Executor, Workers, WorkersConfig};
use crate::monitor::{Metrics, Summary};
use crate::plan::{self, BroadcastValue, JobGraph, Plan, PlanError};
use crate::sinks::Sinks;
use crate::sources::{self, ReceiverContext, StopSignal};
use crate::wasm::{Broadcasts, CallError, Runtime, WasmConfig, WasmError};

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
    /// Time between checkpoints (see [`checkpointing`]); default: the
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
         new code with the old state use `sluice upgrade` (next: `sluice serve`), or give a new \
         --checkpoint location, or --reset to start afresh there",
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
    plan::check_timing(config.batch_interval, config.block_interval)?;
    let runtime = Runtime::new(WasmConfig {
        memory_limit: config.memory_limit,
        call_timeout: config.call_timeout,
        cache_dir: Some(cache_dir(config.data_dir.as_deref())),
        grants: config.grants.clone(),
    })?;
    let plugin = runtime.load(&config.plugin)?;
    let label = config
        .plugin
        .file_stem()
        .map_or_else(|| "job".to_string(), |s| s.to_string_lossy().into_owned());
    let define = || -> Result<JobGraph, JobError> {
        let mut instance = plugin.instantiate(&label)?;
        instance.set_task("define");
        instance.define(&config.args).map_err(JobError::Define)
    };
    let graph = define()?;
    // Every instance must define this graph; the workers check each fresh
    // one, and a second instance now refuses most offenders before the start.
    if let Some(difference) = graph.first_difference(&define()?) {
        return Err(JobError::UnstableDefine {
            plugin: config.plugin.clone(),
            difference,
        });
    }
    let validated = plan::validate(
        &graph,
        config.batch_interval,
        config.block_interval,
        config.key_groups,
    )?;
    for warning in &validated.warnings {
        tracing::warn!(job = %graph.name, "{warning}");
    }
    let plan = Plan::new(&graph, validated, config.key_groups, config.batch_interval);
    tracing::info!(
        job = %graph.name,
        plugin = %config.plugin.display(),
        digest = %&plugin.digest()[..12],
        steps = plan.steps.len(),
        "job defined"
    );

    let tokio = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("sluice-io")
        .enable_all()
        .build()
        .map_err(|e| JobError::Threads(e.to_string()))?;
    let broadcasts = load_broadcasts(&graph, tokio.handle(), &config.storage_options)?;
    let partitions = u32::try_from(config.workers).unwrap_or(u32::MAX);
    let mut checkpointing = match &config.checkpoint {
        Some(location) => Some(checkpointing::Checkpointing::open(
            config,
            location,
            &graph,
            plugin.digest(),
            partitions,
            tokio.handle().clone(),
        )?),
        None => None,
    };
    let workers = Workers::new(
        plugin.with_broadcasts(broadcasts),
        graph.clone(),
        config.args.clone(),
        WorkersConfig {
            threads: config.workers,
            retries: config.task_retries,
            recycle_above: (config.memory_limit / 2).min(RECYCLE_ABOVE),
        },
    )
    .map_err(|e| JobError::Threads(e.to_string()))?;
    let mut metrics = Metrics::new(match &config.metrics_json {
        Some(path) => {
            Some(
                std::fs::File::create(path).map_err(|source| JobError::MetricsFile {
                    path: path.clone(),
                    source,
                })?,
            )
        }
        None => None,
    });

    let clock = BatchClock::new(config.batch_interval);
    let store = BlockStore::new(config.max_pending_bytes as u64);
    let positions = match &checkpointing {
        Some((checkpointing, start)) => {
            checkpointing.prepare(&store, start);
            checkpointing.positions().clone()
        }
        None => sources::Positions::default(),
    };
    let mut receivers = Vec::with_capacity(plan.sources.len());
    for (node, name, spec) in &plan.sources {
        receivers.push(sources::spawn(
            spec.clone(),
            ReceiverContext {
                node: *node,
                name: name.clone(),
                block_interval: config.block_interval,
                clock,
                store: Arc::clone(&store),
                stop: stop.clone(),
                until_end: config.until_sources_end,
                runtime: tokio.handle().clone(),
                positions: positions.clone(),
            },
        ));
    }
    let executor = Arc::new(Executor::new(
        plan,
        workers,
        Sinks::new(tokio.handle().clone()).with_storage_options(config.storage_options.clone()),
        Datasets::new(tokio.handle().clone(), config.storage_options.clone()),
    ));
    let mut start = None;
    let result = (|| -> Result<(), JobError> {
        let mut after_batch: Box<scheduler::AfterBatch<'_>> = match &mut checkpointing {
            Some((checkpointing, first)) => {
                checkpointing.restore(first, &executor, &mut metrics)?;
                start = Some(clock.next(first.done));
                Box::new(|time, executor: &Executor, metrics: &Metrics| {
                    checkpointing
                        .after_batch(time, executor, metrics)
                        .map_err(|e| Box::new(e) as _)
                })
            }
            None => Box::new(|_, _: &Executor, _: &Metrics| Ok(())),
        };
        let last = scheduler::run_batches(
            &executor,
            &store,
            &clock,
            &mut metrics,
            Limits {
                max_batches: config.max_batches,
                until_sources_end: config.until_sources_end,
                stop: stop.clone(),
            },
            start,
            &mut *after_batch,
        )?;
        drop(after_batch);
        // A graceful end: a last checkpoint of the last batch run.
        if let (Some((checkpointing, _)), Some(last)) = (&mut checkpointing, last) {
            checkpointing.finish(last, &executor, &metrics)?;
        }
        Ok(())
    })();
    // Stop and join everything the job started before returning: the
    // receivers, the early chains and the worker threads, the I/O runtime.
    stop.stop();
    executor.shutdown();
    let joined = tokio.block_on(async {
        tokio::time::timeout(RECEIVER_STOP, futures::future::join_all(receivers)).await
    });
    if joined.is_err() {
        tracing::warn!(
            "a receiver did not stop within {RECEIVER_STOP:?} of the stop signal; dropping it"
        );
    }
    tokio.shutdown_timeout(RECEIVER_STOP);
    drop(runtime);
    result?;
    Ok(metrics.summary())
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

/// An instance whose linear memory grew past this is replaced after its call
/// (a fresh one costs about 150 µs): linear memory never shrinks.
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
