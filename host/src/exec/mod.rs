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

pub mod scheduler;
pub mod shuffle;
#[cfg(test)]
mod tests;
mod workers;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use rayon::prelude::*;

use crate::batching::{BatchTime, BlockStore, EarlyBlock, rows_bytes};
use crate::data::{Codec, Partitioner, Rows, RowsError};
use crate::plan::{NativeCombine, NodeId, OutputKind, Plan, Reducer, Stage, Step, StepKind};
use crate::sinks::{SinkError, Sinks};
pub use workers::{TaskCause, TaskError, Workers, WorkersConfig};

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
}

/// A chain run early: its slot, its block's sequence number, its output.
type EarlyOutput = (NodeId, u64, Result<Rows, ExecError>);

/// Chains run early, by batch.
#[derive(Default)]
struct Early {
    next_block: u64,
    outstanding: BTreeMap<BatchTime, usize>,
    /// (chain slot, block sequence number, output) of finished blocks.
    done: BTreeMap<BatchTime, Vec<EarlyOutput>>,
}

impl Executor {
    /// An executor for `plan`, calling guests on `workers` and writing outputs
    /// through `sinks`.
    pub fn new(plan: Plan, workers: Workers, sinks: Sinks) -> Executor {
        let mut early_chains = HashMap::new();
        for (index, step) in plan.steps.iter().enumerate() {
            if let StepKind::Chain { input, .. } = step.kind {
                let is_source = plan.sources.iter().any(|(node, ..)| *node == input);
                if is_source && plan.readers[input] == 1 {
                    early_chains.insert(input, index);
                }
            }
        }
        Executor {
            plan,
            workers,
            sinks,
            early_chains,
            early: Mutex::new(Early::default()),
            early_done: Condvar::new(),
            stopping: AtomicBool::new(false),
        }
    }

    /// Stops the executor: early chains not started yet are skipped, the
    /// running ones make no further attempt and finish their current call,
    /// then the worker threads exit (their instances
    /// are dropped). Returns once nothing it started is left running.
    pub fn shutdown(self: Arc<Self>) {
        self.stopping.store(true, Ordering::SeqCst);
        self.workers.cancel();
        {
            let early = self.lock_early();
            drop(
                self.early_done
                    .wait_while(early, |early| !early.outstanding.is_empty())
                    .unwrap_or_else(|e| e.into_inner()),
            );
        }
        // An early chain drops its reference just after it says it is done.
        let mut this = self;
        let executor = loop {
            match Arc::try_unwrap(this) {
                Ok(executor) => break executor,
                Err(again) => {
                    this = again;
                    std::thread::yield_now();
                }
            }
        };
        executor.workers.shutdown();
    }

    /// The sources whose blocks [`Executor::ingest`] takes as soon as they
    /// are cut.
    pub fn early_sources(&self) -> Vec<NodeId> {
        self.early_chains.keys().copied().collect()
    }

    /// Starts the chain that reads `block`'s source on it, in the background.
    /// Its output joins the batch's when [`Executor::run_batch`] runs; its
    /// input bytes go back to `store`'s budget as soon as it is done.
    pub fn ingest(self: &Arc<Self>, block: EarlyBlock, store: &Arc<BlockStore>) {
        let step_index = self.early_chains[&block.node];
        let sequence = {
            let mut early = self.lock_early();
            early.next_block += 1;
            *early.outstanding.entry(block.batch).or_default() += 1;
            early.next_block
        };
        let this = Arc::clone(self);
        let store = Arc::clone(store);
        self.workers.spawn(move || {
            let step = &this.plan.steps[step_index];
            let StepKind::Chain {
                stages, combine, ..
            } = &step.kind
            else {
                unreachable!("early_chains holds chain steps")
            };
            let EarlyBlock {
                batch,
                mut rows,
                bytes,
                ..
            } = block;
            let place = format!("batch {batch}, block {sequence}");
            let output = if this.stopping.load(Ordering::SeqCst) {
                Ok(Rows::new())
            } else {
                this.catch_panic(batch, step, || {
                    this.workers
                        .run(&step.name, &place, |instance| {
                            instance.run_chain(stages, &mut rows)
                        })
                        .map_err(Self::task_error(batch))
                        .and_then(|out| this.combine_natively(batch, step, *combine, out))
                })
            };
            drop(rows);
            // The block's bytes are free; its output's count against the
            // budget until its batch is done, so that early chains running
            // ahead of slow batches cannot fill memory.
            if let Ok(out) = &output {
                store.charge(rows_bytes(out));
            }
            store.release(bytes);
            let mut early = this.lock_early();
            early
                .done
                .entry(batch)
                .or_default()
                .push((step.node, sequence, output));
            let left = early
                .outstanding
                .get_mut(&batch)
                .expect("counted in ingest");
            *left -= 1;
            if *left == 0 {
                early.outstanding.remove(&batch);
            }
            drop(early);
            this.early_done.notify_all();
        });
    }

    fn lock_early(&self) -> std::sync::MutexGuard<'_, Early> {
        self.early.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the early chains of every batch up to `time` and returns
    /// their outputs by chain slot, in block order, and the bytes they hold.
    fn collect_early(
        &self,
        time: BatchTime,
    ) -> Result<(HashMap<NodeId, Vec<Rows>>, u64), ExecError> {
        let mut early = self.lock_early();
        while early
            .outstanding
            .first_key_value()
            .is_some_and(|(b, _)| *b <= time)
        {
            early = self
                .early_done
                .wait(early)
                .unwrap_or_else(|e| e.into_inner());
        }
        let mut finished = Vec::new();
        while let Some(entry) = early.done.first_entry() {
            if *entry.key() > time {
                break;
            }
            finished.extend(entry.remove());
        }
        drop(early);
        finished.sort_by_key(|(_, sequence, _)| *sequence);
        let mut outputs: HashMap<NodeId, Vec<Rows>> = HashMap::new();
        let mut bytes = 0;
        for (slot, _, output) in finished {
            let output = output?;
            bytes += rows_bytes(&output);
            outputs.entry(slot).or_default().push(output);
        }
        Ok((outputs, bytes))
    }

    /// Runs every step for batch `time`, whose source partitions are
    /// `sources` (the blocks each source received and that were not taken
    /// early). Returns the bytes of the early chains' outputs it used, to be
    /// released to the budget now that the batch is done.
    pub fn run_batch(
        &self,
        time: BatchTime,
        mut sources: HashMap<NodeId, Vec<Rows>>,
    ) -> Result<u64, ExecError> {
        let (mut early, early_bytes) = self.collect_early(time)?;
        let mut slots: Vec<Option<Vec<Rows>>> = vec![None; self.plan.codecs.len()];
        let mut readers_left = self.plan.readers.clone();
        for step in &self.plan.steps {
            if let StepKind::Source = step.kind {
                slots[step.node] = Some(sources.remove(&step.node).unwrap_or_default());
                continue;
            }
            let mut inputs: Vec<Vec<Rows>> = Vec::new();
            for input in step.kind.inputs() {
                readers_left[input] -= 1;
                let partitions = if readers_left[input] == 0 {
                    slots[input].take()
                } else {
                    slots[input].clone()
                };
                inputs.push(partitions.expect("steps come after the steps they read"));
            }
            let started = std::time::Instant::now();
            let mut output = self.catch_panic(time, step, || self.run_step(time, step, inputs))?;
            if let Some(mut ran_early) = early.remove(&step.node) {
                ran_early.extend(output.take().unwrap_or_default());
                output = Some(ran_early);
            }
            tracing::debug!(batch = %time, step = %step.name, elapsed = ?started.elapsed(), "step done");
            if let Some(partitions) = output
                && readers_left[step.node] > 0
            {
                slots[step.node] = Some(partitions);
            }
        }
        Ok(early_bytes)
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

    fn place(time: BatchTime, partition: usize) -> String {
        format!("batch {time}, partition {partition}")
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
            StepKind::Chain {
                stages, combine, ..
            } => {
                let partitions = inputs.pop().expect("one input");
                let outputs = self.run_chain(time, step, stages, partitions)?;
                Some(self.workers.install(|| {
                    outputs
                        .into_par_iter()
                        .map(|out| self.combine_natively(time, step, *combine, out))
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
            StepKind::Reduce { function, .. } => {
                let partials =
                    self.reduce_all(time, step, *function, inputs.pop().expect("one input"))?;
                let partials = concat(partials).map_err(|e| self.data_error(time, step, e))?;
                Some(self.reduce_all(time, step, *function, vec![partials])?)
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

    /// A built-in reducer's map-side combine of a chain's output.
    fn combine_natively(
        &self,
        time: BatchTime,
        step: &Step,
        combine: Option<NativeCombine>,
        output: Rows,
    ) -> Result<Rows, ExecError> {
        let Some(combine) = combine else {
            return Ok(output);
        };
        let builtin =
            shuffle::Builtin::map_side(combine.reducer, combine.value).ok_or_else(|| {
                self.data_error(time, step, "a built-in reducer needs numeric values")
            })?;
        builtin
            .combine([&output], Partitioner::single())
            .map(|mut one| one.remove(0))
            .map_err(|e| self.data_error(time, step, e))
    }

    fn shuffle_partitions(&self, partitions: Option<u32>) -> usize {
        partitions.map_or(self.workers.threads(), |n| n as usize)
    }

    /// Places keys among `n` partitions with the job's key groups.
    fn partitioner(&self, n: usize) -> Partitioner {
        Partitioner::new(self.plan.key_groups, n)
    }

    fn run_chain(
        &self,
        time: BatchTime,
        step: &Step,
        stages: &[Stage],
        partitions: Vec<Rows>,
    ) -> Result<Vec<Rows>, ExecError> {
        self.per_partition(time, step, partitions, Rows::is_empty, |instance, input| {
            instance.run_chain(stages, input)
        })
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

    /// Buckets every input partition by key into `n` buckets, in parallel.
    fn bucket_all(
        &self,
        time: BatchTime,
        step: &Step,
        inputs: &[Rows],
        n: usize,
    ) -> Result<Vec<Vec<Rows>>, ExecError> {
        self.workers.install(|| {
            inputs
                .par_iter()
                .map(|p| {
                    shuffle::bucket(p, self.partitioner(n))
                        .map_err(|e| self.data_error(time, step, e))
                })
                .collect()
        })
    }

    fn reduce_by_key(
        &self,
        time: BatchTime,
        step: &Step,
        reducer: Reducer,
        partitions: Option<u32>,
        combined: bool,
        inputs: &[Rows],
    ) -> Result<Vec<Rows>, ExecError> {
        let n = self.shuffle_partitions(partitions);
        if let Reducer::Function(function) = reducer {
            let buckets = self.bucket_all(time, step, inputs, n)?;
            return self.workers.install(|| {
                (0..n)
                    .into_par_iter()
                    .map(|p| {
                        let (mut singles, mut lists) =
                            shuffle::Groups::new(buckets.iter().map(|b| &b[p]))
                                .and_then(|groups| groups.split_singles())
                                .map_err(|e| self.data_error(time, step, e))?;
                        if !lists.is_empty() {
                            let reduced = self
                                .workers
                                .run(&step.name, &Self::place(time, p), |instance| {
                                    instance.reduce_groups(function, &mut lists)
                                })
                                .map_err(Self::task_error(time))?;
                            singles
                                .try_extend_from(&reduced)
                                .map_err(|e| self.data_error(time, step, e))?;
                        }
                        Ok(singles)
                    })
                    .collect()
            });
        }
        let input_value = match self.codec(step.kind.inputs()[0]).value() {
            Some(Codec::Num(n)) => Some(*n),
            _ => None,
        };
        let map_side = shuffle::Builtin::map_side(reducer, input_value).ok_or_else(|| {
            self.data_error(time, step, "a built-in reducer needs numeric values")
        })?;
        let reduce_side = map_side.reduce_side();
        // Inputs a chain already combined hold partial results (for `count`,
        // counts): merging them is the reduce side's work.
        let first = if combined { reduce_side } else { map_side };
        let mapped: Vec<Vec<Rows>> = self.workers.install(|| {
            inputs
                .par_iter()
                .map(|p| {
                    first
                        .combine([p], self.partitioner(n))
                        .map_err(|e| self.data_error(time, step, e))
                })
                .collect::<Result<_, _>>()
        })?;
        self.workers.install(|| {
            (0..n)
                .into_par_iter()
                .map(|p| {
                    reduce_side
                        .combine(mapped.iter().map(|m| &m[p]), Partitioner::single())
                        .map(|mut one| one.remove(0))
                        .map_err(|e| self.data_error(time, step, e))
                })
                .collect()
        })
    }

    fn run_output(
        &self,
        time: BatchTime,
        step: &Step,
        input: NodeId,
        output: &OutputKind,
        partitions: Vec<Rows>,
    ) -> Result<(), ExecError> {
        let codec = self.codec(input);
        let sink_error = |source| ExecError::Sink {
            time,
            operator: step.name.clone(),
            source: Box::new(source),
        };
        match output {
            OutputKind::Print(n) => self
                .sinks
                .print(time, codec, &partitions, *n as usize)
                .map_err(sink_error),
            OutputKind::SaveAsTextFiles { prefix, suffix } => {
                let formatted = self.workers.install(|| {
                    partitions
                        .par_iter()
                        .map(|p| crate::sinks::format_lines(codec, p))
                        .collect::<Result<Vec<_>, _>>()
                });
                let formatted = formatted.map_err(sink_error)?;
                self.sinks
                    .save_as_text_files(time, prefix, suffix.as_deref(), formatted)
                    .map_err(sink_error)
            }
            OutputKind::ForeachPartition(function) => self.workers.install(|| {
                partitions
                    .into_par_iter()
                    .enumerate()
                    .map(|(p, mut input)| {
                        self.workers
                            .run(&step.name, &Self::place(time, p), |instance| {
                                instance.foreach_partition(
                                    *function,
                                    time.as_millis(),
                                    p as u32,
                                    &mut input,
                                )
                            })
                            .map_err(Self::task_error(time))
                    })
                    .collect()
            }),
        }
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
