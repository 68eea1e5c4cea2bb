//! A job running on its own threads and driven from others: `sluice run`
//! runs one, `sluice serve` several. [`JobHandle`] starts it, reports its
//! [`JobStatus`], stops it, and upgrades its code while it runs.
//!
//! # Hot upgrade
//!
//! [`JobHandle::upgrade`] builds the new version on the caller's thread —
//! compile, `define`, validate, plan, the same path as a start
//! ([`Version::build`]) — judges it against the running one
//! ([`super::upgrade::compare`]) and makes its executor. Only then does it
//! hand the new version to the batch loop, which switches between two
//! batches:
//!
//! 1. From the request on, no block goes to an early chain: the old
//!    version's early work drains into the batches it belongs to.
//! 2. Before a batch `T` for which the old version holds no early work,
//!    what the old executor keeps (state by operator name, windows) moves to
//!    the new one, and the old one's threads are stopped in the background.
//!    Batch `T` and all after it run the new code entirely; the checkpoints
//!    from then on name the new digest (a restart before the first of them
//!    resumes the old version from the checkpoint before, consistently).
//! 3. Probation: for its first batches (`probation_batches`, and while
//!    their input fits the job's byte budget) the new version keeps a copy
//!    of what the old one held at the switch and the raw input of each batch
//!    (early chains stay off). If one of those batches fails
//!    after its retries, the job goes back: the old version's executor is
//!    rebuilt from the copy, the batches since the switch run again with the
//!    old code, and a full checkpoint is written. The upgrade's caller hears
//!    "rolled back", and so do the status and the log.
//!
//! The pause of an upgrade is the time the switch takes (step 2), reported
//! in [`UpgradeOutcome::pause_ms`].

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};

use serde::Serialize;

use super::checkpointing::Checkpointing;
use super::switch::Control;
use super::upgrade::{self, Takeover};
use super::version::Version;
use super::{JobConfig, JobError, RECEIVER_STOP, cache_dir};
use crate::batching::{BatchClock, BlockStore, now_ms};
use crate::exec::Executor;
use crate::exec::scheduler::{self, Limits};
use crate::monitor::logs::JobLog;
use crate::monitor::{Accumulators, BatchInfo, Metrics, Summary};
use crate::plan;
use crate::sources::{self, ReceiverContext, StopSignal};
use crate::wasm::{Runtime, WasmConfig};

/// Errors a job's status keeps.
const ERRORS_KEPT: usize = 20;

/// What a job is doing.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum JobState {
    /// Building and starting.
    Starting,
    /// Running batches.
    Running,
    /// Running batches, with a new version waiting for its switch.
    Upgrading,
    /// Finishing what was received.
    Stopping,
    /// Stopped as asked.
    Stopped,
    /// Stopped by an error.
    Failed {
        /// The error.
        reason: String,
    },
}

/// What happened to a job's code.
#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum VersionEventKind {
    /// The job started with this version.
    Started,
    /// This version took over.
    Upgraded,
    /// The job went back to this version after the next one failed.
    RolledBack,
    /// This version was refused.
    Refused,
}

/// One change of a job's code.
#[derive(Debug, Clone, Serialize)]
pub struct VersionEvent {
    /// When, ms since the Unix epoch.
    pub at_ms: u64,
    /// The version's SHA-256, in hex.
    pub digest: String,
    /// What happened.
    pub kind: VersionEventKind,
    /// Why, or at which batch.
    pub detail: String,
}

/// A job's state, version and recent batches.
#[derive(Debug, Clone, Serialize)]
pub struct JobStatus {
    /// The job's name.
    pub name: String,
    /// What it is doing.
    #[serde(flatten)]
    pub state: JobState,
    /// The running version: the SHA-256 of its component, in hex.
    pub version: String,
    /// The running version's file.
    pub plugin: PathBuf,
    /// When the job started, ms since the Unix epoch.
    pub started_ms: u64,
    /// Batches run.
    pub batches: u64,
    /// Records received.
    pub records: u64,
    /// The last batches, oldest first.
    pub last_batches: Vec<BatchInfo>,
    /// The last errors, oldest first.
    pub errors: Vec<String>,
    /// The accumulators' totals.
    pub accumulators: Accumulators,
    /// The versions the job ran, oldest first.
    pub history: Vec<VersionEvent>,
}

/// An upgrade asked of a running job.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    /// The new component.
    pub plugin: PathBuf,
    /// Operators whose state the new version starts without.
    pub reset_state: Vec<String>,
}

/// An upgrade done.
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeOutcome {
    /// The version before.
    pub from: String,
    /// The version now running.
    pub to: String,
    /// The first batch the new version ran (0: nothing to do, the version
    /// was already running).
    pub switched_at_ms: u64,
    /// How long the switch held the batch loop, in ms.
    pub pause_ms: f64,
}

/// Why an upgrade did not happen.
#[derive(Debug, thiserror::Error)]
pub enum UpgradeError {
    /// Incompatible, or the component cannot be loaded.
    #[error("upgrade refused: {reason}{}", if diff.is_empty() { String::new() } else { format!("\n{diff}") })]
    Refused {
        /// Why.
        reason: String,
        /// The two graphs, as a unified diff (empty when beside the point).
        diff: String,
    },
    /// The new version failed and the job went on with the previous one.
    #[error("the new version failed and the job went back to the previous one: {reason}")]
    RolledBack {
        /// The new version's failure.
        reason: String,
    },
    /// The job is not running.
    #[error("the job is not running (it is {state})")]
    NotRunning {
        /// What it is doing.
        state: String,
    },
}

/// A job running on its own threads.
pub struct JobHandle {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Pending>,
    thread: Option<std::thread::JoinHandle<Result<Summary, JobError>>>,
}

/// What the handle and the job's threads share.
pub(super) struct Shared {
    config: JobConfig,
    runtime: Runtime,
    pub(super) log: Arc<JobLog>,
    stop: StopSignal,
    pub(super) abort: AtomicBool,
    status: Mutex<JobStatus>,
    /// The running version.
    pub(super) current: Mutex<Version>,
    /// The job's I/O runtime, once started.
    io: Mutex<Option<tokio::runtime::Handle>>,
    /// One upgrade at a time.
    upgrading: Mutex<()>,
}

/// A new version, built and judged, waiting for its switch.
pub(super) struct Pending {
    pub(super) version: Version,
    pub(super) executor: Arc<Executor>,
    pub(super) takeover: Takeover,
    pub(super) reply: mpsc::Sender<Result<UpgradeOutcome, UpgradeError>>,
}

impl Shared {
    /// `version` runs from now on: the current version and the status say
    /// so.
    pub(super) fn run_version(&self, version: Version) {
        {
            let mut status = self.status();
            status.version = version.digest().to_string();
            status.plugin = version.plugin.path().to_path_buf();
        }
        *self.current.lock().unwrap_or_else(PoisonError::into_inner) = version;
    }

    pub(super) fn config(&self) -> &JobConfig {
        &self.config
    }

    pub(super) fn status(&self) -> std::sync::MutexGuard<'_, JobStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(super) fn current(&self) -> Version {
        self.current
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    pub(super) fn event(&self, digest: &str, kind: VersionEventKind, detail: String) {
        self.status().history.push(VersionEvent {
            at_ms: now_ms(),
            digest: digest.to_string(),
            kind,
            detail,
        });
    }

    pub(super) fn error(&self, error: String) {
        let mut status = self.status();
        if status.errors.len() == ERRORS_KEPT {
            status.errors.remove(0);
        }
        status.errors.push(error);
    }
}

impl JobHandle {
    /// Builds (load, `define`, validate, plan) and starts `config`'s job,
    /// named `name`, its threads logging to `log`; returns once its
    /// receivers run and its batch loop is about to run its first batch, or
    /// with why it could not start.
    pub fn start(name: &str, config: JobConfig, log: Arc<JobLog>) -> Result<JobHandle, JobError> {
        JobHandle::start_with(name, config, log, StopSignal::new())
    }

    /// [`JobHandle::start`], stopping gracefully when `stop` is given.
    pub fn start_with(
        name: &str,
        config: JobConfig,
        log: Arc<JobLog>,
        stop: StopSignal,
    ) -> Result<JobHandle, JobError> {
        let _attached = log.enter();
        plan::check_timing(config.batch_interval, config.block_interval)?;
        let runtime = Runtime::new(WasmConfig {
            memory_limit: config.memory_limit,
            call_timeout: config.call_timeout,
            cache_dir: Some(cache_dir(config.data_dir.as_deref())),
            grants: config.grants.clone(),
        })?;
        let version = Version::build(&runtime, &config, &config.plugin)?;
        tracing::info!(
            job = %version.graph.name,
            plugin = %config.plugin.display(),
            digest = %version.short(),
            "job defined"
        );
        let shared = Arc::new(Shared {
            status: Mutex::new(JobStatus {
                name: name.to_string(),
                state: JobState::Starting,
                version: version.digest().to_string(),
                plugin: config.plugin.clone(),
                started_ms: now_ms(),
                batches: 0,
                records: 0,
                last_batches: Vec::new(),
                errors: Vec::new(),
                accumulators: Accumulators::default(),
                history: Vec::new(),
            }),
            current: Mutex::new(version),
            config,
            runtime,
            log: Arc::clone(&log),
            stop,
            abort: AtomicBool::new(false),
            io: Mutex::new(None),
            upgrading: Mutex::new(()),
        });
        let (started_tx, started_rx) = mpsc::channel();
        let (commands_tx, commands_rx) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name(format!("sluice-job-{name}"))
            .spawn({
                let shared = Arc::clone(&shared);
                move || {
                    shared.log.attach();
                    run(&shared, started_tx, commands_rx)
                }
            })
            .map_err(|e| JobError::Threads(e.to_string()))?;
        match started_rx.recv() {
            Ok(Ok(())) => Ok(JobHandle {
                shared,
                commands: commands_tx,
                thread: Some(thread),
            }),
            Ok(Err(e)) => {
                let _ = thread.join();
                Err(e)
            }
            // The thread ended without a word: it panicked (a bug).
            Err(_) => Err(match thread.join() {
                Ok(Err(e)) => e,
                _ => JobError::Threads("the job's thread panicked while starting".into()),
            }),
        }
    }

    /// The job's state, version, recent batches and errors.
    pub fn status(&self) -> JobStatus {
        self.shared.status().clone()
    }

    /// The job's log.
    pub fn log(&self) -> &Arc<JobLog> {
        &self.shared.log
    }

    /// Asks the job to stop: gracefully (receivers stop, what they received
    /// is processed, a last checkpoint is written), or `now` (after the
    /// current batch; what was received stays in the write-ahead log).
    /// Returns at once.
    pub fn stop(&self, now: bool) {
        if now {
            self.shared.abort.store(true, Ordering::SeqCst);
        }
        self.shared.stop.stop();
    }

    /// True once the job's threads have ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the job to end.
    pub fn join(mut self) -> Result<Summary, JobError> {
        let thread = self.thread.take().expect("joined once");
        thread
            .join()
            .unwrap_or_else(|_| Err(JobError::Threads("the job's thread panicked".into())))
    }

    /// Upgrades the job to the component at `request.plugin`: returns once
    /// the new version runs (its first batch with records succeeded, or its
    /// probation ended), or with why it was refused or rolled back.
    pub fn upgrade(&self, request: UpgradeRequest) -> Result<UpgradeOutcome, UpgradeError> {
        let _one = self
            .shared
            .upgrading
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let _attached = self.shared.log.enter();
        let not_running = |state: &JobState| UpgradeError::NotRunning {
            state: format!("{state:?}").to_lowercase(),
        };
        {
            let status = self.shared.status();
            if !matches!(status.state, JobState::Running | JobState::Upgrading) {
                return Err(not_running(&status.state));
            }
        }
        let config = &self.shared.config;
        let current = self.shared.current();
        let version = match Version::build(&self.shared.runtime, config, &request.plugin) {
            Ok(version) => version,
            Err(e @ (JobError::Define(_) | JobError::UnstableDefine { .. })) => {
                let reason = e.to_string();
                tracing::error!(
                    "upgrade to {}: {reason}; {} goes on",
                    request.plugin.display(),
                    current.short()
                );
                self.shared.error(reason.clone());
                return Err(UpgradeError::RolledBack { reason });
            }
            Err(e) => {
                return Err(UpgradeError::Refused {
                    reason: e.to_string(),
                    diff: String::new(),
                });
            }
        };
        if version.digest() == current.digest() {
            tracing::info!("upgrade: version {} is already running", version.short());
            return Ok(UpgradeOutcome {
                from: current.digest().to_string(),
                to: current.digest().to_string(),
                switched_at_ms: 0,
                pause_ms: 0.0,
            });
        }
        let takeover = match upgrade::compare(&current.graph, &version.graph, &request.reset_state)
        {
            Ok(takeover) => takeover,
            Err(refusal) => {
                tracing::warn!(
                    "upgrade from {} to {} refused:\n{refusal}",
                    current.short(),
                    version.short()
                );
                self.shared.event(
                    version.digest(),
                    VersionEventKind::Refused,
                    refusal.reasons.join(" "),
                );
                return Err(UpgradeError::Refused {
                    reason: refusal.reasons.join("\n"),
                    diff: refusal.diff,
                });
            }
        };
        let io = self
            .shared
            .io
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| not_running(&JobState::Starting))?;
        let executor = version
            .executor(config, &io, Some(&self.shared.log))
            .map_err(|e| UpgradeError::Refused {
                reason: e.to_string(),
                diff: String::new(),
            })?;
        tracing::info!(
            "upgrade from {} to {}: built; switching between two batches (state kept: {:?}, \
             reset: {:?}, new: {:?})",
            current.short(),
            version.short(),
            takeover.handover.state,
            takeover.reset,
            takeover.fresh
        );
        let (reply, replied) = mpsc::channel();
        self.shared.status().state = JobState::Upgrading;
        let sent = self.commands.send(Pending {
            version,
            executor,
            takeover,
            reply,
        });
        let outcome = match sent {
            Ok(()) => replied.recv().unwrap_or_else(|_| {
                Err(UpgradeError::NotRunning {
                    state: "stopped".into(),
                })
            }),
            Err(_) => Err(not_running(&JobState::Stopped)),
        };
        let mut status = self.shared.status();
        if status.state == JobState::Upgrading {
            status.state = JobState::Running;
        }
        outcome
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        if let Some(thread) = self.thread.take() {
            self.stop(true);
            let _ = thread.join();
        }
    }
}

/// The job's thread: starts the I/O runtime, checkpoints and receivers,
/// says it started, runs the batch loop, stops everything.
fn run(
    shared: &Shared,
    started: mpsc::Sender<Result<(), JobError>>,
    commands: mpsc::Receiver<Pending>,
) -> Result<Summary, JobError> {
    let config = &shared.config;
    let version = shared.current();
    let io = {
        let log = Arc::clone(&shared.log);
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("sluice-io")
            .on_thread_start(move || log.attach())
            .enable_all()
            .build()
    };
    let io = match io {
        Ok(io) => io,
        Err(e) => {
            let _ = started.send(Err(JobError::Threads(e.to_string())));
            return Err(JobError::Threads(e.to_string()));
        }
    };
    let mut metrics = Metrics::new(None);
    let setup = (|| -> Result<_, JobError> {
        let partitions = u32::try_from(config.workers).unwrap_or(u32::MAX);
        let mut checkpointing = match &config.checkpoint {
            Some(location) => Some(Checkpointing::open(
                config,
                location,
                &version.graph,
                version.digest(),
                partitions,
                io.handle().clone(),
            )?),
            None => None,
        };
        let executor = version.executor(config, io.handle(), Some(&shared.log))?;
        if let Some(path) = &config.metrics_json {
            metrics = Metrics::new(Some(std::fs::File::create(path).map_err(|source| {
                JobError::MetricsFile {
                    path: path.clone(),
                    source,
                }
            })?));
        }
        let mut start = None;
        if let Some((checkpointing, first)) = &mut checkpointing {
            checkpointing.restore(first, &executor, &mut metrics)?;
            start = Some(BatchClock::new(config.batch_interval).next(first.done));
        }
        Ok((checkpointing, executor, start))
    })();
    let (mut checkpointing, mut executor, start) = match setup {
        Ok(setup) => setup,
        Err(e) => {
            let _ = started.send(Err(e));
            io.shutdown_timeout(RECEIVER_STOP);
            return Ok(metrics.summary());
        }
    };

    let clock = BatchClock::new(config.batch_interval);
    let store = BlockStore::new(config.max_pending_bytes as u64);
    let positions = match &checkpointing {
        Some((checkpointing, start)) => {
            checkpointing.prepare(&store, start);
            checkpointing.positions().clone()
        }
        None => sources::Positions::default(),
    };
    let plan_sources = version.plan(config).map(|p| p.sources);
    let receivers: Vec<_> = plan_sources
        .iter()
        .flatten()
        .map(|(node, name, spec)| {
            sources::spawn(
                spec.clone(),
                ReceiverContext {
                    node: *node,
                    name: name.clone(),
                    block_interval: config.block_interval,
                    clock,
                    store: Arc::clone(&store),
                    stop: shared.stop.clone(),
                    until_end: config.until_sources_end,
                    runtime: io.handle().clone(),
                    positions: positions.clone(),
                },
            )
        })
        .collect();
    *shared.io.lock().unwrap_or_else(PoisonError::into_inner) = Some(io.handle().clone());

    let result = (|| -> Result<(), JobError> {
        let checkpointing = checkpointing
            .as_mut()
            .map(|(checkpointing, _)| checkpointing);
        shared.status().state = JobState::Running;
        shared.event(version.digest(), VersionEventKind::Started, String::new());
        // Started: the caller of `start` returns.
        let _ = started.send(Ok(()));
        let mut control = Control::new(shared, io.handle().clone(), commands, checkpointing);
        let outcome = scheduler::run_batches(
            &mut executor,
            &store,
            &clock,
            &mut metrics,
            Limits {
                max_batches: config.max_batches,
                until_sources_end: config.until_sources_end,
                stop: shared.stop.clone(),
            },
            start,
            &mut control,
        );
        let checkpointing = control.end();
        let last = outcome?;
        // A graceful end: a last checkpoint of the last batch run.
        if !shared.abort.load(Ordering::SeqCst)
            && let (Some(checkpointing), Some(last)) = (checkpointing, last)
        {
            checkpointing.finish(last, &executor, &metrics)?;
        }
        Ok(())
    })();
    // A source that cannot be planned never gets here: the graph was
    // planned when the version was built.
    if shared.status().state == JobState::Starting {
        let _ = started.send(Err(JobError::Threads(
            "the job stopped while starting".into(),
        )));
    }
    shared.status().state = JobState::Stopping;
    // Stop and join everything the job started before returning: the
    // receivers, the early chains and the worker threads, the I/O runtime.
    shared.stop.stop();
    executor.shutdown();
    let joined = io.block_on(async {
        tokio::time::timeout(RECEIVER_STOP, futures::future::join_all(receivers)).await
    });
    if joined.is_err() {
        tracing::warn!(
            "a receiver did not stop within {RECEIVER_STOP:?} of the stop signal; dropping it"
        );
    }
    *shared.io.lock().unwrap_or_else(PoisonError::into_inner) = None;
    io.shutdown_timeout(RECEIVER_STOP);
    let mut status = shared.status();
    status.state = match &result {
        Ok(()) => JobState::Stopped,
        Err(e) => JobState::Failed {
            reason: e.to_string(),
        },
    };
    drop(status);
    plan_sources?;
    result?;
    Ok(metrics.summary())
}
