//! [`Workers`]: the rayon pool that runs partition tasks, with one Wasm
//! instance per worker thread (a wasmtime `Store` is not `Sync`), and the retry
//! policy of a task: a trap throws the instance away and runs the task again
//! on a fresh one, up to `retries` times; an error the guest returned is
//! deterministic and fails the task at once.

use std::sync::Mutex;

use crate::wasm::{CallError, Instance, Plugin};

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
}

/// A pool of worker threads, each with its own instance of the job's plugin.
pub struct Workers {
    pool: rayon::ThreadPool,
    instances: Vec<Mutex<Option<Instance>>>,
    plugin: Plugin,
    args: Vec<(String, String)>,
    job: String,
    retries: u32,
    recycle_above: usize,
}

/// Settings of a [`Workers`] pool.
pub struct WorkersConfig {
    /// Worker threads (and instances).
    pub threads: usize,
    /// Retries of a task after a trap.
    pub retries: u32,
    /// An instance whose linear memory grew past this many bytes is dropped
    /// after its call, and the next task gets a fresh one.
    pub recycle_above: usize,
}

impl Workers {
    /// A pool running `plugin`'s functions; each fresh instance is given
    /// `args` through `define` so its function table matches the plan.
    pub fn new(
        plugin: Plugin,
        job: String,
        args: Vec<(String, String)>,
        config: WorkersConfig,
    ) -> Result<Workers, rayon::ThreadPoolBuildError> {
        let threads = config.threads.max(1);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .thread_name(|i| format!("sluice-worker-{i}"))
            .build()?;
        Ok(Workers {
            pool,
            // One more slot for calls made from outside the pool.
            instances: (0..=threads).map(|_| Mutex::new(None)).collect(),
            plugin,
            args,
            job,
            retries: config.retries,
            recycle_above: config.recycle_above,
        })
    }

    /// Number of worker threads: the default parallelism of shuffles.
    pub fn threads(&self) -> usize {
        self.pool.current_num_threads()
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

    /// Runs one task on this thread's instance, with the retry policy.
    /// `operator` and `place` name the task in logs and errors.
    pub fn run<T>(
        &self,
        operator: &str,
        place: &str,
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
        for attempt in 1..=attempts {
            if guard.is_none() {
                let fresh = self
                    .fresh_instance()
                    .map_err(|e| fail(attempt, TaskCause::Instantiate(e)))?;
                *guard = Some(fresh);
            }
            let instance = guard.as_mut().expect("filled above");
            instance.set_task(&task);
            match call(instance) {
                Ok(value) => {
                    if instance.memory_bytes() > self.recycle_above {
                        tracing::debug!(job = %self.job, "recycling an instance above the memory watermark");
                        *guard = None;
                    }
                    return Ok(value);
                }
                Err(error @ CallError::Trap { .. }) => {
                    *guard = None;
                    if attempt == attempts {
                        return Err(fail(attempt, error.into()));
                    }
                    tracing::warn!(
                        job = %self.job,
                        "task `{task}` failed (attempt {attempt} of {attempts}), retrying on a fresh instance: {error}"
                    );
                }
                Err(error) => return Err(fail(attempt, error.into())),
            }
        }
        unreachable!("the last attempt returns")
    }

    fn fresh_instance(&self) -> Result<Instance, String> {
        let mut instance = self
            .plugin
            .instantiate(&self.job)
            .map_err(|e| e.to_string())?;
        instance.set_task("define");
        instance
            .define(&self.args)
            .map_err(|e| format!("`define` failed in a fresh instance: {e}"))?;
        Ok(instance)
    }
}
