//! The keyed operators of a batch, natively: the end of a chain's task (the
//! map-side combine of a built-in reducer, or the grouping of a stateful
//! step's values), bucketing every partition by the
//! [`Partitioner`], and `reduce_by_key` (guest reducers through the
//! guest's combine, over key-disjoint pieces of a partition; built-in ones
//! without a guest call).

use bumpalo::Bump;
use rayon::prelude::*;

use super::grouping::Grouper;
use super::grouping::totals::Totals;
use super::pieces::{COMBINE_INPUT_BYTES, PAIRS_CHAIN_INPUT_BYTES, for_each_piece};
use super::{ExecError, Executor, Place, shuffle};
use crate::batching::BatchTime;
use crate::data::{Codec, Partitioner, Rows};
use crate::plan::{FunctionId, Reducer, Stage, Step, StepKind};

impl Executor {
    /// A chain's task over one block or partition: the guest's call, then
    /// its native end, if it has one (see [`StepKind::Chain`]): the map-side
    /// combine of a built-in reducer, or the grouping by key of a stateful
    /// step's values into packed groups. Such a chain answers with pairs,
    /// several times its input: it gets its input in pieces of at most
    /// [`PAIRS_CHAIN_INPUT_BYTES`], and each answer is combined or grouped
    /// with those before it as it comes, then dropped: what the task holds
    /// is one answer and the block's distinct keys (and its runs' values),
    /// not all its pairs. A
    /// chain without a native end gets its input whole.
    pub(super) fn chain_task(
        &self,
        time: BatchTime,
        step: &Step,
        stages: &[Stage],
        place: &Place,
        input: &mut Rows,
    ) -> Result<Rows, ExecError> {
        let call = |piece: &mut Rows| {
            self.workers
                .run(&step.name, place, |instance| {
                    instance.run_chain(stages, piece)
                })
                .map_err(Self::task_error(time))
        };
        let StepKind::Chain { combine, group, .. } = &step.kind else {
            return call(input);
        };
        if combine.is_none() && !group {
            return call(input);
        }
        // Each answer is combined or grouped as it comes and goes: the
        // totals or groups keep copies of their keys (and runs' values) in
        // `arena`.
        let arena = Bump::new();
        let too_large = |e| self.data_error(time, step, e);
        let block_bytes = input.byte_len();
        let Some(combine) = combine else {
            let mut groups = Grouper::default();
            for_each_piece(
                input,
                PAIRS_CHAIN_INPUT_BYTES,
                |piece| {
                    let answer = call(piece)?;
                    if groups.is_empty() {
                        groups.reserve(keys_guess(&answer, piece, block_bytes));
                    }
                    groups
                        .add_pairs(&arena, &answer)
                        .map_err(|e| self.data_error(time, step, e))
                },
                too_large,
            )?;
            return groups
                .to_packed()
                .map_err(|e| self.data_error(time, step, e));
        };
        let builtin =
            shuffle::Builtin::map_side(combine.reducer, combine.value).ok_or_else(|| {
                self.data_error(time, step, "a built-in reducer needs numeric values")
            })?;
        let mut totals = Totals::with_capacity(0);
        for_each_piece(
            input,
            PAIRS_CHAIN_INPUT_BYTES,
            |piece| {
                let answer = call(piece)?;
                if totals.is_empty() {
                    totals.reserve(keys_guess(&answer, piece, block_bytes));
                }
                builtin
                    .add_pairs(&mut totals, &answer, &arena, |_| true)
                    .map_err(|e| self.data_error(time, step, e))
            },
            too_large,
        )?;
        builtin
            .bucketed(&totals, Partitioner::single())
            .map(|mut one| one.remove(0))
            .map_err(|e| self.data_error(time, step, e))
    }

    /// The pairs of `inputs` with one pair per key, combined by the guest's
    /// combine of `function` (a reducer) in pieces of about
    /// [`COMBINE_INPUT_BYTES`] ([`shuffle::combine_in_pieces`]).
    pub(super) fn guest_combine<'a>(
        &self,
        time: BatchTime,
        step: &Step,
        place: &Place,
        function: FunctionId,
        inputs: impl IntoIterator<Item = &'a Rows> + Clone,
    ) -> Result<Rows, ExecError> {
        shuffle::combine_in_pieces(inputs, COMBINE_INPUT_BYTES, |piece| {
            self.workers
                .run(&step.name, place, |instance| {
                    instance.run_chain(&[Stage::Combine(function)], piece)
                })
                .map_err(Self::task_error(time))
        })
        .map_err(|e| match e {
            shuffle::CombineError::Pairs(e) => self.data_error(time, step, e),
            shuffle::CombineError::Combine(e) => e,
        })
    }

    /// The partitions of a keyed step: as many as it asks for (validated to
    /// be at most the key groups), else one per worker, but never more than
    /// the key groups, since a partition owns whole key groups.
    pub(super) fn shuffle_partitions(&self, partitions: Option<u32>) -> usize {
        let groups = self.plan.key_groups.get() as usize;
        partitions.map_or(self.workers.threads().min(groups), |n| n as usize)
    }

    /// Places keys among `n` partitions with the job's key groups.
    pub(super) fn partitioner(&self, n: usize) -> Partitioner {
        Partitioner::new(self.plan.key_groups, n)
    }

    /// Buckets every input partition by key into `n` buckets, in parallel.
    pub(super) fn bucket_all(
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

    pub(super) fn reduce_by_key(
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
                        let place = Self::place(time, p);
                        self.guest_combine(
                            time,
                            step,
                            &place,
                            function,
                            buckets.iter().map(|b| &b[p]),
                        )
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
}

impl Executor {
    /// `reduce` with a built-in reducer: every record of the batch reduced
    /// natively to one (none for an empty batch; `count` counts them).
    pub(super) fn reduce_natively(
        &self,
        time: BatchTime,
        step: &Step,
        reducer: Reducer,
        input: crate::plan::NodeId,
        partitions: &[Rows],
    ) -> Result<Vec<Rows>, ExecError> {
        let value = match self.codec(input) {
            Codec::Num(n) => Some(*n),
            _ => None,
        };
        let builtin = shuffle::Builtin::map_side(reducer, value).ok_or_else(|| {
            self.data_error(time, step, "a built-in reducer needs numeric values")
        })?;
        let mut rows = Rows::new();
        if let Some(total) = builtin
            .reduce_values(partitions.iter().flat_map(Rows::iter))
            .map_err(|e| self.data_error(time, step, e))?
        {
            rows.push(&total);
        }
        Ok(vec![rows])
    }
}

/// A guess of the distinct keys of a block of `block_bytes` from the answer
/// to its first piece: that answer's pairs scaled to the whole block, and a
/// key for about 16 pairs (a word count's block has one for about 14, a
/// key for about 84 bytes of text). At most a key for 64 bytes of the
/// block: a reserved key takes about 90 bytes (its group, its links, its
/// index slot), so a small first piece with many pairs reserves at most
/// about 1.4 times the block. The table grows past a guess that falls
/// short.
fn keys_guess(answer: &Rows, piece: &Rows, block_bytes: usize) -> usize {
    let pairs = answer.len() as u64 * block_bytes as u64 / piece.byte_len().max(1) as u64;
    usize::try_from(pairs / 16)
        .unwrap_or(usize::MAX)
        .min(block_bytes / 64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(records: usize, bytes: usize) -> Rows {
        (0..records).map(|_| vec![b'x'; bytes]).collect()
    }

    /// The first answer's pairs scaled to the block, a key for 16 pairs;
    /// never more than a key for 64 bytes of the block.
    #[test]
    fn the_keys_guess_scales_the_first_answer_and_is_capped_by_the_block() {
        let piece = rows(1, 256 << 10);
        let answer = rows(45_000, 1);
        assert_eq!(keys_guess(&answer, &piece, 4 << 20), 45_000);
        assert_eq!(keys_guess(&answer, &piece, 256 << 10), 45_000 / 16);
        // An empty first answer: nothing reserved (the next one guesses).
        assert_eq!(keys_guess(&Rows::new(), &piece, 4 << 20), 0);
        // A one-byte piece that answered a thousand pairs.
        let tiny = rows(1, 1);
        let many = rows(1000, 1);
        assert_eq!(keys_guess(&many, &tiny, 4 << 20), (4 << 20) / 64);
        // An empty piece of an empty block: no division by zero.
        assert_eq!(keys_guess(&many, &Rows::new(), 0), 0);
    }
}
