//! [`Workers`]: the rayon pool that runs partition tasks, with one Wasm
//! instance per worker thread (a wasmtime `Store` is not `Sync`), and the retry
//! policy of a task: a trap throws the instance away and runs the task again
//! on a fresh one, up to `retries` times; an error the guest returned is
//! deterministic and fails the task at once.
//!
//! Every fresh instance runs `define` and must return the graph the job was
//! planned from: the host calls user functions by their number, and a plugin
//! that numbers them differently per instance (iterating a randomly seeded
//! hash map, reading the clock) would otherwise have the wrong function
//! called. A panic of the host inside a task (a bug) fails the task with its
//! message instead of unwinding through the pool. [`Workers::shutdown`]
//! stops the pool and waits for its threads to exit.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use std::collections::BTreeMap;
use std::fmt;

use crate::batching::BatchTime;
use crate::monitor::Accumulators;
use crate::plan::JobGraph;
use crate::wasm::{CallError, Instance, Plugin};

/// Which task of which batch: a partition, a block (an early chain), or the
/// whole batch (`transform`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The batch the task's work (and its accumulator additions) belongs to.
    pub batch: BatchTime,
    /// What part of it.
    pub part: Part,
}

/// The part of a batch a task runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// A partition of a step's input.
    Partition(usize),
    /// A block, run by an early chain (its sequence number).
    Block(u64),
    /// Every partition at once.
    Whole,
}

impl fmt::Display for Place {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.part {
            Part::Partition(p) => write!(f, "batch {}, partition {p}", self.batch),
            Part::Block(b) => write!(f, "batch {}, block {b}", self.batch),
            Part::Whole => write!(f, "batch {}", self.batch),
        }
    }
}

/// Why a task failed.
#[derive(Debug, thiserror::Error)]
#[error("task `{operator}` ({place}) failed{attempts_note}: {cause}")]
pub struct TaskError {
    /// The operator(s) the task ran, as the user wrote them.
    pub operator: String,
    /// Which partition of which batch, e.g. `batch 1700000000000 ms, partition 3`.
    pub place: String,
    /// `" after 5 attempts"`, or empty when it failed at once.
    pub attempts_note: String,
    /// What happened in the last attempt.
    pub cause: TaskCause,
}

/// The cause of a task failure.
#[derive(Debug, thiserror::Error)]
pub enum TaskCause {
    /// The guest returned an error, trapped, or hit a limit.
    #[error(transparent)]
    Call(#[from] CallError),
    /// A fresh instance could not be made.
    #[error("could not start a plugin instance: {0}")]
    Instantiate(String),
    /// A fresh instance's `define` returned another graph than the one the
    /// job runs: the plugin is not deterministic.
    #[error(
        "a fresh instance's `define` returned a different graph than the first instance: \
         {0}; `define` must build the same graph in every instance (no randomness, hash map \
         iteration order or clock)"
    )]
    UnstableDefine(String),
    /// The job is stopping: the task was not run (again).
    #[error("not run: the job is stopping")]
    Cancelled,
    /// The host panicked while running the task: a bug in Sluice.
    #[error("internal error (a bug in Sluice, please report it): {0}")]
    Panic(String),
}

/// The message of a caught panic.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a panic with a non-string payload".to_string()
    }
}

/// A pool of worker threads, each with its own instance of the job's plugin.
pub struct Workers {
    pool: rayon::ThreadPool,
    /// The pool's threads, joined by [`Workers::shutdown`].
    threads: Arc<Mutex<Vec<std::thread::JoinHandle<()>>>>,
    /// Set by [`Workers::cancel`]: tasks make no further attempt.
    cancelled: AtomicBool,
    instances: Vec<Mutex<Option<Slot>>>,
    plugin: Plugin,
    args: Vec<(String, String)>,
    graph: JobGraph,
    retries: u32,
    recycle: Recycle,
    /// What successful tasks added to accumulators, by batch.
    accumulators: Mutex<BTreeMap<BatchTime, Accumulators>>,
}

/// When a worker replaces its instance with a fresh one (after a call that
/// succeeded; a trap always does). Linear memory never shrinks, and some
/// guests (Python, JavaScript) grow a little with every call, from a size
/// after `define` that is already tens of MiB: the limits are relative to
/// that size, and a count of calls bounds the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recycle {
    /// After this many calls; `None`: no limit.
    pub after_calls: Option<u64>,
    /// When its linear memory grew more than this many bytes above its size
    /// right after `define`.
    pub growth_above: usize,
}

impl Recycle {
    /// Why an instance of `memory` bytes, `defined` after `define`, that
    /// served `calls` calls is due for replacement, if it is.
    fn due(&self, memory: usize, defined: usize, calls: u64) -> Option<String> {
        let grown = memory.saturating_sub(defined);
        if grown > self.growth_above {
            return Some(format!(
                "its memory grew {grown} bytes above its size after `define` (limit {})",
                self.growth_above
            ));
        }
        self.after_calls
            .filter(|&n| calls >= n)
            .map(|n| format!("it served {n} calls"))
    }
}

/// A worker's instance, its size after `define` and the calls it served.
struct Slot {
    instance: Instance,
    defined_bytes: usize,
    calls: u64,
}

/// Settings of a [`Workers`] pool.
pub struct WorkersConfig {
    /// Worker threads (and instances).
    pub threads: usize,
    /// Retries of a task after a trap.
    pub retries: u32,
    /// When an instance is dropped after its call, for the next task to
    /// get a fresh one.
    pub recycle: Recycle,
    /// The job's own log, which the worker threads' log lines (and the
    /// guests' output) also go to.
    pub log: Option<std::sync::Arc<crate::monitor::logs::JobLog>>,
}

impl Workers {
    /// A pool running `plugin`'s functions; each fresh instance is given
    /// `args` through `define`, and must return `graph`, the graph the job
    /// was planned from, so that its function table matches the plan.
    pub fn new(
        plugin: Plugin,
        graph: JobGraph,
        args: Vec<(String, String)>,
        config: WorkersConfig,
    ) -> Result<Workers, rayon::ThreadPoolBuildError> {
        let threads = config.threads.max(1);
        let handles = Arc::new(Mutex::new(Vec::with_capacity(threads)));
        let spawned = Arc::clone(&handles);
        let job = graph.name.clone();
        let log = config.log.clone();
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            // Our own threads, so that `shutdown` can join them.
            .spawn_handler(move |thread| {
                let handle = std::thread::Builder::new()
                    .name(format!("sluice-worker-{}", thread.index()))
                    .spawn(move || thread.run())?;
                spawned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(handle);
                Ok(())
            })
            .start_handler(move |_| {
                if let Some(log) = &log {
                    log.attach();
                }
            })
            // Tasks catch their panics; this is for anything else, which
            // would otherwise abort the process.
            .panic_handler(move |payload| {
                tracing::error!(job = %job, "a worker thread panicked: {}", panic_message(&*payload));
            })
            .build()?;
        Ok(Workers {
            pool,
            threads: handles,
            cancelled: AtomicBool::new(false),
            // One more slot for calls made from outside the pool.
            instances: (0..=threads).map(|_| Mutex::new(None)).collect(),
            plugin,
            args,
            graph,
            retries: config.retries,
            recycle: config.recycle,
            accumulators: Mutex::new(BTreeMap::new()),
        })
    }

    /// Tells tasks not to start another attempt (a call already running
    /// goes on to its end or its time limit): the job is stopping.
    pub fn cancel(&self) {
        self.cancelled.store(true, Ordering::SeqCst);
    }

    /// Stops the pool and joins its threads (each finishes the task it is
    /// running first); the instances are dropped. Returns the number of
    /// threads joined. Must not be called from one of them.
    pub fn shutdown(self) -> usize {
        let threads = Arc::clone(&self.threads);
        drop(self);
        let handles = std::mem::take(&mut *threads.lock().unwrap_or_else(|e| e.into_inner()));
        let joined = handles.len();
        for handle in handles {
            // A worker's panics are caught and logged by the pool.
            let _ = handle.join();
        }
        joined
    }

    /// Number of worker threads: the default parallelism of shuffles.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
    }

    /// The linear memory of each worker's instance, in bytes (none for a
    /// worker without one).
    #[cfg(test)]
    pub(crate) fn memory_bytes(&self) -> Vec<usize> {
        self.instances
            .iter()
            .filter_map(|slot| {
                let slot = slot.lock().unwrap_or_else(|e| e.into_inner());
                slot.as_ref().map(|slot| slot.instance.memory_bytes())
            })
            .collect()
    }

    /// Runs `op` inside the pool, so that rayon parallel iterators in it use
    /// the workers.
    pub fn install<R: Send>(&self, op: impl FnOnce() -> R + Send) -> R {
        self.pool.install(op)
    }

    /// Runs `op` on the pool in the background.
    pub fn spawn(&self, op: impl FnOnce() + Send + 'static) {
        self.pool.spawn(op)
    }

    /// What the successful tasks of batch `batch` added to accumulators,
    /// taken.
    pub fn take_accumulators(&self, batch: BatchTime) -> Accumulators {
        let mut all = self
            .accumulators
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        all.remove(&batch).unwrap_or_default()
    }

    /// Runs one task on this thread's instance, with the retry policy.
    /// `operator` and `place` name the task in logs and errors. What the
    /// successful attempt added to accumulators counts for `place.batch`; a
    /// failed attempt's additions are dropped.
    pub fn run<T>(
        &self,
        operator: &str,
        place: &Place,
        mut call: impl FnMut(&mut Instance) -> Result<T, CallError>,
    ) -> Result<T, Box<TaskError>> {
        let slot = rayon::current_thread_index()
            .filter(|&i| i + 1 < self.instances.len())
            .unwrap_or(self.instances.len() - 1);
        let mut guard = self.instances[slot]
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let attempts = self.retries + 1;
        let fail = |attempt: u32, cause: TaskCause| {
            Box::new(TaskError {
                operator: operator.to_string(),
                place: place.to_string(),
                attempts_note: if attempt > 1 {
                    format!(" after {attempt} attempts")
                } else {
                    String::new()
                },
                cause,
            })
        };
        let task = format!("{operator} ({place})");
        let job = &self.graph.name;
        for attempt in 1..=attempts {
            if self.cancelled.load(Ordering::SeqCst) {
                return Err(fail(attempt, TaskCause::Cancelled));
            }
            if guard.is_none() {
                let instance = self
                    .fresh_instance()
                    .map_err(|cause| fail(attempt, cause))?;
                *guard = Some(Slot {
                    defined_bytes: instance.memory_bytes(),
                    calls: 0,
                    instance,
                });
            }
            let slot = guard.as_mut().expect("filled above");
            slot.calls += 1;
            let instance = &mut slot.instance;
            instance.set_task(&task);
            let outcome = catch_unwind(AssertUnwindSafe(|| call(instance)));
            match outcome {
                Ok(Ok(value)) => {
                    let added = instance.take_accumulators();
                    if !added.is_empty() {
                        let mut all = self
                            .accumulators
                            .lock()
                            .unwrap_or_else(|poisoned| poisoned.into_inner());
                        let batch = all.entry(place.batch).or_default();
                        if let Err(mismatch) = batch.merge(&added) {
                            return Err(fail(
                                attempt,
                                CallError::Guest(mismatch.to_string()).into(),
                            ));
                        }
                    }
                    tracing::trace!(
                        job = %job,
                        "task `{task}`: instance memory {} bytes after call {}",
                        slot.instance.memory_bytes(),
                        slot.calls
                    );
                    let due = self.recycle.due(
                        slot.instance.memory_bytes(),
                        slot.defined_bytes,
                        slot.calls,
                    );
                    if let Some(why) = due {
                        tracing::debug!(job = %job, "recycling an instance: {why}");
                        *guard = None;
                    }
                    return Ok(value);
                }
                Ok(Err(error @ CallError::Trap { .. })) => {
                    *guard = None;
                    if attempt == attempts {
                        return Err(fail(attempt, error.into()));
                    }
                    tracing::warn!(
                        job = %job,
                        "task `{task}` failed (attempt {attempt} of {attempts}), retrying on a fresh instance: {error}"
                    );
                }
                Ok(Err(error)) => return Err(fail(attempt, error.into())),
                Err(payload) => {
                    // The instance may be half way through a call: drop it.
                    *guard = None;
                    return Err(fail(attempt, TaskCause::Panic(panic_message(&*payload))));
                }
            }
        }
        unreachable!("the last attempt returns")
    }

    fn fresh_instance(&self) -> Result<Instance, TaskCause> {
        let mut instance = self
            .plugin
            .instantiate(&self.graph.name)
            .map_err(|e| TaskCause::Instantiate(e.to_string()))?;
        instance.set_task("define");
        let graph = instance.define(&self.args).map_err(|e| {
            TaskCause::Instantiate(format!("`define` failed in a fresh instance: {e}"))
        })?;
        match self.graph.first_difference(&graph) {
            None => Ok(instance),
            Some(difference) => Err(TaskCause::UnstableDefine(difference)),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use sluice_test_artifacts::MISBEHAVING;

    use super::*;
    use crate::wasm::{Runtime, WasmConfig};

    fn args(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    /// Workers over the `misbehaving` plugin whose instances get `args`,
    /// expecting the graph that `define` gives for `planned_args`.
    fn workers(planned_args: &[(&str, &str)], args_: &[(&str, &str)]) -> Workers {
        let runtime = Runtime::new(WasmConfig::default()).expect("engine");
        let plugin = runtime.load(Path::new(MISBEHAVING)).expect("load");
        let graph = plugin
            .instantiate("test")
            .expect("instantiate")
            .define(&args(planned_args))
            .expect("define");
        let config = WorkersConfig {
            threads: 2,
            retries: 1,
            recycle: Recycle {
                after_calls: None,
                growth_above: usize::MAX,
            },
            log: None,
        };
        Workers::new(plugin, graph, args(args_), config).expect("a pool")
    }

    /// Partition `p` of batch 1 ms.
    fn partition(p: usize) -> Place {
        Place {
            batch: BatchTime(1),
            part: Part::Partition(p),
        }
    }

    const LINES_FILE: (&str, &str) = ("input", "/nonexistent/lines.txt");

    #[test]
    fn a_host_panic_in_a_task_fails_the_task_not_the_process() {
        let workers = workers(&[LINES_FILE], &[LINES_FILE]);
        let err = workers
            .install(|| {
                workers.run(
                    "map at a.rs:1:1",
                    &partition(0),
                    |_| -> Result<(), CallError> { panic!("boom") },
                )
            })
            .unwrap_err();
        assert!(
            matches!(&err.cause, TaskCause::Panic(m) if m == "boom"),
            "{err}"
        );
        assert!(
            err.to_string().starts_with(
                "task `map at a.rs:1:1` (batch 1 ms, partition 0) failed: internal error"
            ),
            "{err}"
        );
        // The pool lives on, and the next task gets a fresh instance.
        assert_eq!(
            workers
                .install(|| workers.run("map", &partition(1), |_| Ok(7)))
                .unwrap(),
            7
        );
        workers.shutdown();
    }

    #[test]
    fn a_fresh_instance_that_defines_another_graph_is_refused() {
        // The pool was planned from a plain `define`; its instances define
        // ten more maps.
        let workers = workers(&[LINES_FILE], &[LINES_FILE, ("unstable_define", "true")]);
        let err = workers
            .install(|| workers.run("map", &partition(0), |_| Ok(())))
            .unwrap_err();
        let TaskCause::UnstableDefine(difference) = &err.cause else {
            panic!("{err}")
        };
        assert!(difference.starts_with("node 1 was `"), "{difference}");
        assert!(
            err.to_string()
                .contains("a different graph than the first instance"),
            "{err}"
        );
        assert_eq!(err.attempts_note, "", "not retried");
        workers.shutdown();
    }

    #[test]
    fn instances_are_recycled_by_growth_above_their_defined_size_or_by_calls() {
        const MIB: usize = 1 << 20;
        let by_growth = Recycle {
            after_calls: None,
            growth_above: 32 * MIB,
        };
        // A 40 MiB instance (a Python guest) is not recycled for its size,
        // only for what it grew since `define`.
        assert_eq!(by_growth.due(72 * MIB, 40 * MIB, 1_000), None);
        assert!(
            by_growth
                .due(73 * MIB, 40 * MIB, 1)
                .is_some_and(|why| why.contains("grew 34603008 bytes"))
        );
        let by_calls = Recycle {
            after_calls: Some(3),
            ..by_growth
        };
        assert_eq!(by_calls.due(40 * MIB, 40 * MIB, 2), None);
        assert_eq!(
            by_calls.due(40 * MIB, 40 * MIB, 3).as_deref(),
            Some("it served 3 calls")
        );
    }

    #[test]
    fn cancelled_tasks_make_no_attempt_and_shutdown_joins_the_threads() {
        let workers = workers(&[LINES_FILE], &[LINES_FILE]);
        workers
            .install(|| workers.run("map", &partition(0), |_| Ok(())))
            .unwrap();
        workers.cancel();
        let err = workers
            .install(|| workers.run("map", &partition(1), |_| Ok(())))
            .unwrap_err();
        assert!(matches!(err.cause, TaskCause::Cancelled), "{err}");
        assert_eq!(workers.shutdown(), 2, "every worker thread was joined");
    }

    /// A task that trapped after adding to an accumulator, then succeeded on
    /// a fresh instance, counts its additions once: the failed attempt's
    /// went with its instance.
    #[test]
    fn a_retried_task_adds_to_accumulators_once() {
        use crate::monitor::AccumulatorValue;
        use crate::plan::{BroadcastValue, Stage};
        use crate::wasm::{Broadcasts, TrapReason};

        let runtime = Runtime::new(WasmConfig::default()).expect("engine");
        let plugin = runtime
            .load(Path::new(sluice_test_artifacts::BLACKLIST_FILTER))
            .expect("load");
        let job_args = args(&[("host", "localhost"), ("port", "9"), ("blacklist", "a,c")]);
        let graph = plugin
            .instantiate("test")
            .expect("instantiate")
            .define(&job_args)
            .expect("define");
        let broadcasts: Broadcasts = std::sync::Arc::new(
            graph
                .broadcasts
                .iter()
                .map(|b| match &b.value {
                    BroadcastValue::Bytes(bytes) => (b.name.clone(), bytes.as_slice().into()),
                    BroadcastValue::File(_) => unreachable!("an inline blacklist"),
                })
                .collect(),
        );
        // flat_map then filter: the filter adds 1 to `dropped-words` per word
        // on the blacklist.
        let stages: Vec<Stage> = graph
            .nodes
            .iter()
            .filter_map(|n| n.kind.narrow_function())
            .take(2)
            .map(Stage::Apply)
            .collect();
        let config = WorkersConfig {
            threads: 1,
            retries: 2,
            recycle: Recycle {
                after_calls: None,
                growth_above: usize::MAX,
            },
            log: None,
        };
        let workers = Workers::new(plugin.with_broadcasts(broadcasts), graph, job_args, config)
            .expect("pool");
        let mut attempts = 0;
        let out = workers
            .install(|| {
                workers.run("filter", &partition(0), |instance| {
                    attempts += 1;
                    let mut input: crate::data::Rows = ["a b c", "c d a a"].into_iter().collect();
                    let out = instance.run_chain(&stages, &mut input)?;
                    if attempts == 1 {
                        // As if the call had trapped at its very end.
                        return Err(CallError::Trap {
                            reason: TrapReason::Trap,
                            detail: "injected".into(),
                            guest_stderr: String::new(),
                        });
                    }
                    Ok(out)
                })
            })
            .expect("the second attempt succeeds");
        assert_eq!(attempts, 2);
        assert_eq!(out.iter().collect::<Vec<_>>(), [b"b".as_slice(), b"d"]);
        let added = workers.take_accumulators(BatchTime(1));
        assert_eq!(added.get("dropped-words"), Some(AccumulatorValue::Int(5)));
        assert!(
            workers.take_accumulators(BatchTime(1)).is_empty(),
            "taken once"
        );
    }
}
