//! Early chains: a source read only by a chain of narrow operators has its
//! chain run as soon as a block is cut ([`Executor::ingest`]), in the
//! background on the workers, so that when the batch's time comes it holds
//! that chain's output (for word count, partial counts) instead of raw
//! input. [`Executor::shutdown`] stops them: the ones not started are
//! skipped, the running ones make no further attempt, and it waits for them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::{ExecError, Executor, Part, Place};
use crate::batching::{BatchTime, BlockStore, EarlyBlock, rows_bytes};
use crate::data::Rows;
use crate::plan::{NodeId, StepKind};

/// A chain run early: its slot, its block's sequence number, its output.
type EarlyOutput = (NodeId, u64, Result<Rows, ExecError>);

/// Chains run early, by batch.
#[derive(Default)]
pub(super) struct Early {
    next_block: u64,
    pub(super) outstanding: BTreeMap<BatchTime, usize>,
    /// (chain slot, block sequence number, output) of finished blocks.
    pub(super) done: BTreeMap<BatchTime, Vec<EarlyOutput>>,
}

impl Executor {
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
            let place = Place {
                batch,
                part: Part::Block(sequence),
            };
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

    pub(super) fn lock_early(&self) -> std::sync::MutexGuard<'_, Early> {
        self.early.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the early chains of every batch up to `time` and returns
    /// their outputs by chain slot, in block order, and the bytes they hold.
    pub(super) fn collect_early(
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
}
