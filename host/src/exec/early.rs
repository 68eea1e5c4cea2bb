//! Early chains: a source read only by a chain of narrow operators has its
//! chain run as soon as a block is cut ([`Executor::ingest`]), in the
//! background on the workers, so that when the batch's time comes it holds
//! that chain's output (for word count, partial counts) instead of raw
//! input. [`Executor::shutdown`] stops them: the ones not started are
//! skipped, the running ones make no further attempt, and it waits for them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::grouping::Grouper;
use super::pieces::CALL_INPUT_BYTES;
use super::{ExecError, Executor, Part, Place, shuffle};
use crate::batching::{BatchTime, BlockStore, EarlyBlock, rows_bytes};
use crate::data::{Partitioner, Rows};
use crate::plan::{FunctionId, NativeCombine, NodeId, Stage, StepKind};

/// A chain run early: its slot, its block's sequence number, its output.
type EarlyOutput = (NodeId, u64, Result<Rows, ExecError>);

/// How many done outputs of one early chain in one batch are merged into
/// one by the chain's combine (for word count: partial counts of blocks into
/// partial counts of the four), at most. Without it a batch would hold a partial
/// output per block, each about the size of the distinct keys of a block,
/// and fill the byte budget well before its time; with it what a batch
/// holds grows with its distinct keys, and the shuffle at batch time has
/// fewer records to place.
pub const MERGE_FAN_IN: usize = 4;

/// The most bytes of outputs one merge takes (unless two outputs are more):
/// twice [`CALL_INPUT_BYTES`], as a merge's answer is about half its input
/// once the keys repeat.
const MERGE_INPUT_BYTES: u64 = 2 * CALL_INPUT_BYTES as u64;

/// How a chain's outputs merge.
#[derive(Clone, Copy)]
enum EarlyMerge {
    /// The guest's map-side combine (`Stage::Combine`).
    Guest(FunctionId),
    /// A built-in reducer's map-side combine.
    Native(NativeCombine),
    /// Groups of a stateful step's values, grouped again.
    Group,
}

/// Successful outputs of `node` in `done` to merge, in block order (taken
/// out of `done`): [`MERGE_FAN_IN`] of them, or fewer (two at least) when
/// the next would take the merge past [`MERGE_INPUT_BYTES`].
fn take_mergeable(done: &mut Vec<EarlyOutput>, node: NodeId) -> Option<Vec<(u64, Rows)>> {
    let mut candidates: Vec<(u64, u64)> = done
        .iter()
        .filter_map(|(n, sequence, output)| match output {
            Ok(rows) if *n == node => Some((*sequence, rows_bytes(rows))),
            _ => None,
        })
        .collect();
    if candidates.len() < MERGE_FAN_IN {
        return None;
    }
    candidates.sort_unstable();
    let mut bytes = 0;
    let mut take = 0;
    for &(_, size) in &candidates[..MERGE_FAN_IN] {
        if take >= 2 && bytes + size > MERGE_INPUT_BYTES {
            break;
        }
        bytes += size;
        take += 1;
    }
    let chosen: Vec<u64> = candidates[..take].iter().map(|&(seq, _)| seq).collect();
    let mut parts = Vec::with_capacity(take);
    let mut kept = Vec::with_capacity(done.len() - take);
    for (n, sequence, output) in done.drain(..) {
        match output {
            Ok(rows) if n == node && chosen.contains(&sequence) => parts.push((sequence, rows)),
            output => kept.push((n, sequence, output)),
        }
    }
    *done = kept;
    parts.sort_by_key(|(sequence, _)| *sequence);
    Some(parts)
}

/// Chains run early, by batch.
#[derive(Default)]
pub(super) struct Early {
    next_block: u64,
    pub(super) outstanding: BTreeMap<BatchTime, usize>,
    /// (chain slot, block sequence number, output) of finished blocks.
    pub(super) done: BTreeMap<BatchTime, Vec<EarlyOutput>>,
    /// Chains whose outputs stopped shrinking when merged, in a batch (keys
    /// that seldom repeat): their outputs are left as they are.
    unmergeable: HashSet<(BatchTime, NodeId)>,
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
            let StepKind::Chain { stages, .. } = &step.kind else {
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
                    this.chain_task(batch, step, stages, &place, &mut rows)
                })
            };
            store.recycle(rows);
            // The block's bytes are free; its output's count against the
            // budget until its batch is done, so that early chains running
            // ahead of slow batches cannot fill memory.
            if let Ok(out) = &output {
                store.charge(rows_bytes(out));
            }
            store.release(bytes);
            this.early_finished(&store, batch, step_index, sequence, output, None);
        });
    }

    /// Records the output of an early task (a chain over a block, or a
    /// merge of `merged_from` bytes of outputs) and, once enough outputs of
    /// the chain in the batch are done ([`take_mergeable`]), starts merging
    /// them into one.
    fn early_finished(
        self: &Arc<Self>,
        store: &Arc<BlockStore>,
        batch: BatchTime,
        step_index: usize,
        sequence: u64,
        output: Result<Rows, ExecError>,
        merged_from: Option<u64>,
    ) {
        let node = self.plan.steps[step_index].node;
        let mut early = self.lock_early();
        if let (Some(input), Ok(rows)) = (merged_from, &output) {
            // Merging pays while it shrinks what the batch holds.
            if rows_bytes(rows) * 4 > input * 3 {
                early.unmergeable.insert((batch, node));
            }
        }
        let mergeable = self.early_merge(step_index).is_some()
            && !self.stopping.load(Ordering::SeqCst)
            && !early.unmergeable.contains(&(batch, node));
        let done = early.done.entry(batch).or_default();
        done.push((node, sequence, output));
        let merge = if mergeable {
            take_mergeable(done, node)
        } else {
            None
        };
        let outstanding = early
            .outstanding
            .get_mut(&batch)
            .expect("counted when started");
        if merge.is_some() {
            *outstanding += 1;
        }
        *outstanding -= 1;
        if *outstanding == 0 {
            early.outstanding.remove(&batch);
        }
        drop(early);
        self.early_done.notify_all();
        if let Some(parts) = merge {
            self.spawn_merge(store, batch, step_index, parts);
        }
    }

    /// How a chain's outputs merge: by its combine, in the guest or
    /// natively, or by grouping its groups again. `None` for a chain without
    /// a combine or a grouping.
    fn early_merge(&self, step_index: usize) -> Option<EarlyMerge> {
        let StepKind::Chain {
            stages,
            combine,
            group,
            ..
        } = &self.plan.steps[step_index].kind
        else {
            return None;
        };
        match (stages.last(), combine) {
            _ if *group => Some(EarlyMerge::Group),
            (_, Some(native)) => Some(EarlyMerge::Native(*native)),
            (Some(Stage::Combine(f)), None) => Some(EarlyMerge::Guest(*f)),
            _ => None,
        }
    }

    /// Merges the outputs `parts` (in block order) of one chain into one, in
    /// the background: the chain's combine over their concatenation. The
    /// result takes the first part's place in block order.
    fn spawn_merge(
        self: &Arc<Self>,
        store: &Arc<BlockStore>,
        batch: BatchTime,
        step_index: usize,
        parts: Vec<(u64, Rows)>,
    ) {
        let this = Arc::clone(self);
        let store = Arc::clone(store);
        self.workers.spawn(move || {
            let step = &this.plan.steps[step_index];
            let sequence = parts[0].0;
            let bytes: u64 = parts.iter().map(|(_, rows)| rows_bytes(rows)).sum();
            let output = this.catch_panic(batch, step, || {
                let merge = this.early_merge(step_index);
                if let Some(EarlyMerge::Native(native)) = merge {
                    // Partial results merge with the reduce side (a count
                    // becomes a sum of counts).
                    let builtin = shuffle::Builtin::map_side(native.reducer, native.value)
                        .ok_or_else(|| {
                            this.data_error(batch, step, "a built-in reducer needs numeric values")
                        })?
                        .reduce_side();
                    return builtin
                        .combine(parts.iter().map(|(_, rows)| rows), Partitioner::single())
                        .map(|mut one| one.remove(0))
                        .map_err(|e| this.data_error(batch, step, e));
                }
                if let Some(EarlyMerge::Group) = merge {
                    return Grouper::of_packed(parts.iter().map(|(_, rows)| rows))
                        .and_then(|groups| groups.to_packed())
                        .map_err(|e| this.data_error(batch, step, e));
                }
                let Some(EarlyMerge::Guest(f)) = merge else {
                    unreachable!("only chains with a combine or a grouping merge")
                };
                let place = Place {
                    batch,
                    part: Part::Block(sequence),
                };
                if this.stopping.load(Ordering::SeqCst) {
                    // Not merged: handed on as they are.
                    let mut all = Rows::new();
                    for (_, rows) in &parts {
                        all.try_extend_from(rows)
                            .map_err(|e| this.data_error(batch, step, e))?;
                    }
                    return Ok(all);
                }
                this.guest_combine(batch, step, &place, f, parts.iter().map(|(_, rows)| rows))
            });
            let inputs = parts.len();
            drop(parts);
            if let Ok(out) = &output {
                tracing::debug!(
                    batch = %batch,
                    step = %step.name,
                    node = step.node,
                    block = sequence,
                    inputs,
                    bytes_in = bytes,
                    bytes_out = rows_bytes(out),
                    "early outputs merged"
                );
                store.charge(rows_bytes(out));
            }
            store.release(bytes);
            this.early_finished(&store, batch, step_index, sequence, output, Some(bytes));
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
        early.unmergeable.retain(|(batch, _)| *batch > time);
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

#[cfg(test)]
mod tests {
    use super::*;

    /// `bytes` bytes of records in one.
    fn rows(bytes: usize) -> Rows {
        let mut rows = Rows::new();
        rows.push(&vec![b'x'; bytes]);
        rows
    }

    fn failed() -> Result<Rows, ExecError> {
        Err(ExecError::Data {
            time: BatchTime(1),
            operator: "op".into(),
            reason: "boom".into(),
        })
    }

    /// Sequences of what `done` holds for `node`, in order.
    fn left(done: &[EarlyOutput], node: NodeId) -> Vec<u64> {
        let mut left: Vec<u64> = done
            .iter()
            .filter(|(n, _, _)| *n == node)
            .map(|(_, s, _)| *s)
            .collect();
        left.sort_unstable();
        left
    }

    /// Four successful outputs of the node are taken, in block order; other
    /// nodes' outputs, failed ones and the rest stay.
    #[test]
    fn the_first_four_outputs_of_the_node_are_taken_in_block_order() {
        let mut done: Vec<EarlyOutput> = vec![
            (0, 7, Ok(rows(10))),
            (1, 1, Ok(rows(10))),
            (0, 3, Ok(rows(10))),
            (0, 2, failed()),
            (0, 9, Ok(rows(10))),
        ];
        assert!(
            take_mergeable(&mut done, 0).is_none(),
            "three are not enough"
        );
        done.push((0, 5, Ok(rows(10))));
        done.push((0, 8, Ok(rows(10))));
        let parts = take_mergeable(&mut done, 0).expect("four are done");
        let sequences: Vec<u64> = parts.iter().map(|(s, _)| *s).collect();
        assert_eq!(sequences, [3, 5, 7, 8]);
        assert_eq!(left(&done, 0), [2, 9], "the failed one and the fifth stay");
        assert_eq!(left(&done, 1), [1]);
    }

    /// Fewer than four (two at least) when the next would take the merge
    /// past its cap; two even if they alone pass it.
    #[test]
    fn a_merge_stays_under_its_input_cap() {
        let big = MERGE_INPUT_BYTES as usize / 3;
        let mut done: Vec<EarlyOutput> = (0..4).map(|s| (0, s, Ok(rows(big)))).collect();
        let parts = take_mergeable(&mut done, 0).expect("four are done");
        assert_eq!(parts.len(), 2);
        assert!(parts.iter().map(|(_, r)| rows_bytes(r)).sum::<u64>() <= MERGE_INPUT_BYTES);
        assert_eq!(left(&done, 0), [2, 3]);

        let huge = MERGE_INPUT_BYTES as usize;
        let mut done: Vec<EarlyOutput> = (0..4).map(|s| (0, s, Ok(rows(huge)))).collect();
        assert_eq!(
            take_mergeable(&mut done, 0).expect("four are done").len(),
            2
        );
    }
}
