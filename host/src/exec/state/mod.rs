//! The state of stateful operators ([`StateStore`]: per operator name and key
//! group, keys and states as codec bytes; layout in [`store`]), and the steps
//! that use it: `update_state_by_key`, `map_with_state` and its
//! `state_snapshots`.
//!
//! A stateful step buckets the batch's pairs by the partitioner into its `P`
//! partitions; partition `p` owns the key groups `g mod P = p`, so its task
//! reads and writes those groups only and the `P` tasks run in parallel. Each
//! task builds its call's input from its new values and its groups' state,
//! calls the guest (with `Workers`' retries) and checks the output
//! ([`calls`]); the step writes the new states only once every partition
//! succeeded, so a retried task or a failed batch changes nothing.

pub mod calls;
pub mod store;
#[cfg(test)]
mod tests;

use rayon::prelude::*;

use super::pieces::CALL_INPUT_BYTES;
use super::{ExecError, Executor};
use crate::batching::BatchTime;
use crate::data::Rows;
use crate::plan::{Step, StepKind};
use calls::{Codecs, NewValues, Owned, PrepareError, Prepared};
pub use store::{KeyGroupState, OperatorState, OwnedGroups, StateStats, StateStore};

impl Executor {
    /// Runs an `UpdateStateByKey`, `MapWithState` or `StateSnapshots` step.
    pub(super) fn run_stateful(
        &self,
        time: BatchTime,
        step: &Step,
        mut inputs: Vec<Vec<Rows>>,
    ) -> Result<Vec<Rows>, ExecError> {
        let pairs = inputs.pop().unwrap_or_default();
        let out = match &step.kind {
            StepKind::UpdateStateByKey {
                function,
                partitions,
                state,
                grouped,
                ..
            } => {
                let output = self.codec(step.node);
                let (Some(key), Some(state_codec)) = (output.key(), output.value()) else {
                    return Err(self.data_error(
                        time,
                        step,
                        "its output is not (key, state) pairs",
                    ));
                };
                let codecs = Codecs {
                    key,
                    state: state_codec,
                    mapped: None,
                };
                self.stateful_step(
                    time,
                    step,
                    state,
                    *partitions,
                    pairs,
                    |op, owned, buckets, call_place| {
                        calls::prepare_update(
                            op,
                            owned,
                            NewValues {
                                buckets,
                                grouped: *grouped,
                            },
                            &codecs,
                            CALL_INPUT_BYTES,
                            |piece| {
                                self.workers.run(&step.name, &call_place, |instance| {
                                    instance.update_state(*function, time.as_millis(), piece)
                                })
                            },
                        )
                    },
                )?
            }
            StepKind::MapWithState {
                input,
                function,
                timeout,
                partitions,
                state,
                state_codec,
                grouped,
            } => {
                let Some(key) = self.codec(*input).key() else {
                    return Err(self.data_error(time, step, "its input is not (key, value) pairs"));
                };
                let codecs = Codecs {
                    key,
                    state: state_codec,
                    mapped: Some(self.codec(step.node)),
                };
                let timeout_ms = timeout.map(|t| t.as_millis() as u64);
                self.stateful_step(
                    time,
                    step,
                    state,
                    *partitions,
                    pairs,
                    |op, owned, buckets, call_place| {
                        calls::prepare_map(
                            op,
                            owned,
                            NewValues {
                                buckets,
                                grouped: *grouped,
                            },
                            time.as_millis(),
                            timeout_ms,
                            &codecs,
                            CALL_INPUT_BYTES,
                            |piece| {
                                self.workers.run(&step.name, &call_place, |instance| {
                                    instance.map_with_state(*function, time.as_millis(), piece)
                                })
                            },
                        )
                    },
                )?
            }
            StepKind::StateSnapshots { state, .. } => {
                // As many partitions as the map_with_state step that keeps it.
                let partitions = self.plan.steps.iter().find_map(|s| match &s.kind {
                    StepKind::MapWithState {
                        state: name,
                        partitions,
                        ..
                    } if name == state => Some(*partitions),
                    _ => None,
                });
                let n = self.shuffle_partitions(partitions.flatten());
                let op = self.state.operator(state);
                self.workers.install(|| {
                    (0..n)
                        .into_par_iter()
                        .map(|p| {
                            calls::snapshot(&op, self.owned(p, n))
                                .map_err(|e| self.data_error(time, step, e))
                        })
                        .collect::<Result<Vec<_>, _>>()
                })?
            }
            _ => unreachable!("run_stateful runs stateful steps only"),
        };
        Ok(out)
    }

    fn owned(&self, partition: usize, partitions: usize) -> Owned {
        Owned {
            partition,
            partitions,
            key_groups: self.plan.key_groups.get(),
        }
    }

    /// The common frame of `update_state_by_key` and `map_with_state`:
    /// bucket, prepare every partition in parallel (`prepare`), then commit
    /// them all; returns each partition's emitted records.
    fn stateful_step(
        &self,
        time: BatchTime,
        step: &Step,
        state: &str,
        partitions: Option<u32>,
        input: Vec<Rows>,
        prepare: impl Fn(
            &OperatorState,
            Owned,
            Vec<&Rows>,
            super::Place,
        ) -> Result<Prepared, PrepareError<Box<super::TaskError>>>
        + Sync,
    ) -> Result<Vec<Rows>, ExecError> {
        let n = self.shuffle_partitions(partitions);
        let buckets = self.bucket_all(time, step, &input, n)?;
        // The batch's pairs are in the buckets now.
        drop(input);
        let op = self.state.operator(state);
        let prepared: Vec<Prepared> = self.workers.install(|| {
            (0..n)
                .into_par_iter()
                .map(|p| {
                    let mine: Vec<&Rows> = buckets.iter().map(|b| &b[p]).collect();
                    prepare(&op, self.owned(p, n), mine, Self::place(time, p)).map_err(
                        |e| match e {
                            PrepareError::Call(source) => ExecError::Task { time, source },
                            // A named operator's step name starts with its
                            // name; a derived name is said here.
                            PrepareError::Data(reason) if step.name.starts_with(state) => {
                                self.data_error(time, step, format!("partition {p}: {reason}"))
                            }
                            PrepareError::Data(reason) => self.data_error(
                                time,
                                step,
                                format!("state `{state}`, partition {p}: {reason}"),
                            ),
                        },
                    )
                })
                .collect::<Result<_, _>>()
        })?;
        // Every partition succeeded: only now is the store written.
        let out = self.workers.install(|| {
            prepared
                .into_par_iter()
                .map(|prepared| {
                    prepared.commit(&op);
                    prepared.emitted
                })
                .collect()
        });
        if tracing::enabled!(tracing::Level::DEBUG) {
            let stats = op.stats();
            tracing::debug!(batch = %time, state, keys = stats.keys, bytes = stats.bytes, "state after the batch");
        }
        Ok(out)
    }
}
