//! Runs a [`Plan`] over one batch: the [`Executor`] walks the plan's steps in
//! order, holding each materialized node's partitions until its last reader,
//! runs guest calls one per partition in parallel on the [`Workers`], and does
//! the keyed operators natively ([`shuffle`]). Outputs are handed to
//! [`crate::sinks`]; the executor itself does no I/O.
//!
//! A source read only by a chain of narrow operators has its chain run
//! *early*: as soon as a block is cut ([`Executor::ingest`]), in the
//! background, so that when the batch's time comes it holds that chain's
//! output (for word count, partial counts) instead of raw input, and only
//! the shuffle and outputs are left to run.
//!
//! The batch loop around it — waiting for a batch's blocks, timing, stopping —
//! is [`scheduler`].
//!
//! A step runs at the batch times that are multiples of its `every` (the
//! slide of the streams it reads): the steps after a window run once per
//! slide. A step whose input produced nothing this batch (a window past its
//! last one, once the sources ended) is skipped, except a window, which
//! takes it as an empty batch.
//!
//! Files: this one (the executor, a batch's steps in order, narrow chains,
//! `transform`), `early` (chains run early, and stopping them), `keyed`
//! (native combine, bucketing, `reduce_by_key`), `window` (`window`,
//! `reduce_by_key_and_window`), `state` (the state kept per operator name and
//! key group; `update_state_by_key`, `map_with_state`), `join` (joins,
//! `cogroup`, joins with a reference dataset), `output` (outputs), `handover`
//! (what moves to another version's executor in an upgrade),
//! [`shuffle`] (the partition-level algorithms of keyed operators), `workers`
//! (the pool and the retry policy), [`scheduler`] (the batch loop).

mod early;
pub mod grouping;
mod handover;
mod join;
mod keyed;
mod output;
mod pieces;
pub mod scheduler;
pub mod shuffle;
pub mod state;
#[cfg(test)]
mod testing;
#[cfg(test)]
mod tests;
mod window;
mod workers;

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Condvar, Mutex};

use rayon::prelude::*;

use crate::batching::BatchTime;
use crate::data::{Codec, Rows, RowsError};
use crate::monitor::Accumulators;
use crate::plan::{NodeId, Plan, Reducer, Step, StepKind};
use crate::sinks::{SinkError, Sinks};
use early::Early;
pub use early::MERGE_FAN_IN;
pub use handover::Handover;
pub use join::Datasets;
pub use pieces::COMBINE_INPUT_BYTES;
pub use state::StateStore;
use window::Windows;
pub use window::WindowsRestoreError;
pub use workers::{Part, Place, Recycle, TaskCause, TaskError, Workers, WorkersConfig};

/// Why a batch failed.
#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// A guest task failed for good.
    #[error("batch {time} failed: {source}")]
    Task {
        /// The batch.
        time: BatchTime,
        /// The task's failure.
        source: Box<TaskError>,
    },
    /// Records did not match their codec.
    #[error("batch {time} failed in `{operator}`: {reason}")]
    Data {
        /// The batch.
        time: BatchTime,
        /// The step, as the user wrote it.
        operator: String,
        /// What was wrong.
        reason: String,
    },
    /// The host panicked while running a step: a bug in Sluice.
    #[error(
        "batch {time} failed in `{operator}`: internal error (a bug in Sluice, please report it): {message}"
    )]
    Panic {
        /// The batch.
        time: BatchTime,
        /// The step, as the user wrote it.
        operator: String,
        /// The panic's message.
        message: String,
    },
    /// An output could not be written.
    #[error("batch {time} failed in `{operator}`: {source}")]
    Sink {
        /// The batch.
        time: BatchTime,
        /// The output, as the user wrote it.
        operator: String,
        /// The sink's error.
        source: Box<SinkError>,
    },
}

/// Runs the steps of a plan for each batch.
pub struct Executor {
    plan: Plan,
    workers: Workers,
    sinks: Sinks,
    /// Source node → index of the chain step that is its only reader.
    early_chains: HashMap<NodeId, usize>,
    early: Mutex<Early>,
    early_done: Condvar,
    /// Set by [`Executor::shutdown`]: early chains not started yet are skipped.
    stopping: AtomicBool,
    /// The state of stateful operators, by name and key group.
    state: StateStore,
    /// The batches and partials windows keep.
    windows: Windows,
    /// The reference datasets joined with streams, as last read.
    datasets: Datasets,
}

/// What a batch leaves for the scheduler once it is done.
#[derive(Debug, Default)]
pub struct BatchOutcome {
    /// Bytes of the early chains' outputs the batch used, to be released to
    /// the budget.
    pub early_bytes: u64,
    /// What the batch's tasks added to accumulators (each successful task
    /// once).
    pub accumulators: Accumulators,
}

impl Executor {
    /// An executor for `plan`, calling guests on `workers` and writing outputs
    /// through `sinks`.
    pub fn new(plan: Plan, workers: Workers, sinks: Sinks, datasets: Datasets) -> Executor {
        let mut early_chains = HashMap::new();
        for (index, step) in plan.steps.iter().enumerate() {
            if let StepKind::Chain { input, .. } = step.kind {
                let is_source = plan.sources.iter().any(|(node, ..)| *node == input);
                if is_source && plan.readers[input] == 1 {
                    early_chains.insert(input, index);
                }
            }
        }
        let state = StateStore::new(plan.key_groups);
        Executor {
            plan,
            workers,
            sinks,
            early_chains,
            early: Mutex::new(Early::default()),
            early_done: Condvar::new(),
            stopping: AtomicBool::new(false),
            state,
            windows: Windows::default(),
            datasets,
        }
    }

    /// The state of the job's stateful operators.
    pub fn state(&self) -> &StateStore {
        &self.state
    }

    /// Runs every step due at batch `time`, whose source partitions are
    /// `sources` (the blocks each source received and that were not taken
    /// early).
    pub fn run_batch(
        &self,
        time: BatchTime,
        mut sources: HashMap<NodeId, Vec<Rows>>,
    ) -> Result<BatchOutcome, ExecError> {
        let (mut early, early_bytes) = self.collect_early(time)?;
        let mut slots: Vec<Option<Vec<Rows>>> = vec![None; self.plan.codecs.len()];
        let mut produced_nothing = vec![false; self.plan.codecs.len()];
        let due = |step: &Step| {
            time.as_millis()
                .is_multiple_of(step.every.as_millis() as u64)
        };
        // Readers among the steps due now: a slot is dropped after its last.
        let mut readers_left = vec![0usize; self.plan.codecs.len()];
        for step in self.plan.steps.iter().filter(|s| due(s)) {
            for input in step.kind.inputs() {
                readers_left[input] += 1;
            }
        }
        for step in &self.plan.steps {
            if !due(step) {
                continue;
            }
            if let StepKind::Source = step.kind {
                slots[step.node] = Some(sources.remove(&step.node).unwrap_or_default());
                continue;
            }
            // A window past its last one (sources ended) produced nothing:
            // the steps after it are skipped, but a window reading it takes
            // that as an empty batch, to produce its own last window.
            let windowed = matches!(
                step.kind,
                StepKind::Window { .. } | StepKind::ReduceByKeyAndWindow { .. }
            );
            let skip = !windowed && step.kind.inputs().iter().any(|&i| produced_nothing[i]);
            let mut inputs: Vec<Vec<Rows>> = Vec::new();
            for input in step.kind.inputs() {
                readers_left[input] -= 1;
                let partitions = if readers_left[input] == 0 {
                    slots[input].take()
                } else {
                    slots[input].clone()
                };
                inputs.push(partitions.unwrap_or_default());
            }
            if skip {
                produced_nothing[step.node] = true;
                continue;
            }
            let started = std::time::Instant::now();
            let mut output = self.catch_panic(time, step, || self.run_step(time, step, inputs))?;
            if let Some(mut ran_early) = early.remove(&step.node) {
                ran_early.extend(output.take().unwrap_or_default());
                output = Some(ran_early);
            }
            tracing::debug!(batch = %time, step = %step.name, elapsed = ?started.elapsed(), "step done");
            produced_nothing[step.node] = output.is_none();
            if let Some(partitions) = output
                && readers_left[step.node] > 0
            {
                slots[step.node] = Some(partitions);
            }
        }
        Ok(BatchOutcome {
            early_bytes,
            accumulators: self.workers.take_accumulators(time),
        })
    }

    fn codec(&self, slot: NodeId) -> &Codec {
        self.plan.codecs[slot]
            .as_ref()
            .expect("validated: only outputs have no codec, and nothing reads an output")
    }

    fn data_error(&self, time: BatchTime, step: &Step, reason: impl ToString) -> ExecError {
        ExecError::Data {
            time,
            operator: step.name.clone(),
            reason: reason.to_string(),
        }
    }

    /// Runs `f`, turning a panic of the host (a bug) into the step's error
    /// instead of unwinding through the worker pool or the batch loop.
    fn catch_panic<R>(
        &self,
        time: BatchTime,
        step: &Step,
        f: impl FnOnce() -> Result<R, ExecError>,
    ) -> Result<R, ExecError> {
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|payload| {
            Err(ExecError::Panic {
                time,
                operator: step.name.clone(),
                message: workers::panic_message(&*payload),
            })
        })
    }

    fn task_error(time: BatchTime) -> impl Fn(Box<TaskError>) -> ExecError {
        move |source| ExecError::Task { time, source }
    }

    fn place(time: BatchTime, partition: usize) -> Place {
        Place {
            batch: time,
            part: Part::Partition(partition),
        }
    }

    /// Runs one step; returns its partitions (`None` for outputs).
    fn run_step(
        &self,
        time: BatchTime,
        step: &Step,
        mut inputs: Vec<Vec<Rows>>,
    ) -> Result<Option<Vec<Rows>>, ExecError> {
        let out = match &step.kind {
            StepKind::Source => unreachable!("handled by run_batch"),
            StepKind::Chain { stages, .. } => {
                let partitions = inputs.pop().expect("one input");
                Some(self.workers.install(|| {
                    partitions
                        .into_par_iter()
                        .enumerate()
                        .map(|(p, mut input)| {
                            if input.is_empty() {
                                return Ok(input);
                            }
                            self.chain_task(time, step, stages, &Self::place(time, p), &mut input)
                        })
                        .collect::<Result<_, _>>()
                })?)
            }
            StepKind::Union { .. } => Some(inputs.into_iter().flatten().collect()),
            StepKind::Repartition { partitions, .. } => Some(
                shuffle::round_robin(&inputs[0], *partitions as usize)
                    .map_err(|e| self.data_error(time, step, e))?,
            ),
            StepKind::Count { .. } => {
                let count: usize = inputs[0].iter().map(Rows::len).sum();
                let mut rows = Rows::new();
                rows.push(&(count as i64).to_le_bytes());
                Some(vec![rows])
            }
            StepKind::Reduce {
                reducer: Reducer::Function(function),
                ..
            } => {
                let partials =
                    self.reduce_all(time, step, *function, inputs.pop().expect("one input"))?;
                let partials = concat(partials).map_err(|e| self.data_error(time, step, e))?;
                Some(self.reduce_all(time, step, *function, vec![partials])?)
            }
            StepKind::Reduce { reducer, input } => {
                Some(self.reduce_natively(time, step, *reducer, *input, &inputs[0])?)
            }
            StepKind::Transform { function, .. } => {
                let mut batch = concat(inputs.pop().expect("one input"))
                    .map_err(|e| self.data_error(time, step, e))?;
                let output = self
                    .workers
                    .run(
                        &step.name,
                        &Place {
                            batch: time,
                            part: Part::Whole,
                        },
                        |instance| instance.transform(*function, time.as_millis(), &mut batch),
                    )
                    .map_err(Self::task_error(time))?;
                Some(vec![output])
            }
            StepKind::Window { .. } | StepKind::ReduceByKeyAndWindow { .. } => {
                self.run_windowed(time, step, inputs)?
            }
            StepKind::UpdateStateByKey { .. }
            | StepKind::MapWithState { .. }
            | StepKind::StateSnapshots { .. } => Some(self.run_stateful(time, step, inputs)?),
            StepKind::Join { .. } | StepKind::Cogroup { .. } | StepKind::JoinDataset { .. } => {
                Some(self.run_join(time, step, inputs)?)
            }
            StepKind::ReduceByKey {
                reducer,
                partitions,
                combined,
                ..
            } => Some(self.reduce_by_key(
                time,
                step,
                *reducer,
                *partitions,
                *combined,
                &inputs[0],
            )?),
            StepKind::GroupByKey { partitions, .. } => {
                let n = self.shuffle_partitions(*partitions);
                let buckets = self.bucket_all(time, step, &inputs[0], n)?;
                Some(self.workers.install(|| {
                    (0..n)
                        .into_par_iter()
                        .map(|p| {
                            shuffle::Groups::new(buckets.iter().map(|b| &b[p]))
                                .and_then(|g| g.to_lists())
                                .map_err(|e| self.data_error(time, step, e))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })?)
            }
            StepKind::Output { input, output } => {
                let partitions = inputs.pop().expect("one input");
                self.run_output(time, step, *input, output, partitions)?;
                None
            }
        };
        Ok(out)
    }

    fn reduce_all(
        &self,
        time: BatchTime,
        step: &Step,
        function: u32,
        partitions: Vec<Rows>,
    ) -> Result<Vec<Rows>, ExecError> {
        self.per_partition(
            time,
            step,
            partitions,
            |p| p.len() <= 1,
            |instance, input| instance.reduce_all(function, input),
        )
    }

    /// One guest task per partition, in parallel on the workers; a partition
    /// for which `done` holds needs no call and passes through as it is.
    fn per_partition(
        &self,
        time: BatchTime,
        step: &Step,
        partitions: Vec<Rows>,
        done: impl Fn(&Rows) -> bool + Sync,
        call: impl Fn(&mut crate::wasm::Instance, &mut Rows) -> Result<Rows, crate::wasm::CallError>
        + Sync,
    ) -> Result<Vec<Rows>, ExecError> {
        self.workers.install(|| {
            partitions
                .into_par_iter()
                .enumerate()
                .map(|(p, mut input)| {
                    if done(&input) {
                        return Ok(input);
                    }
                    self.workers
                        .run(&step.name, &Self::place(time, p), |instance| {
                            call(instance, &mut input)
                        })
                        .map_err(Self::task_error(time))
                })
                .collect()
        })
    }
}

fn concat(partitions: Vec<Rows>) -> Result<Rows, RowsError> {
    let mut iter = partitions.into_iter();
    let mut first = iter.next().unwrap_or_default();
    for p in iter {
        first.try_extend_from(&p)?;
    }
    Ok(first)
}
