//! The state of stateful operators ([`StateStore`]: per operator name and key
//! group, keys and states as codec bytes), and the steps that use it:
//! `update_state_by_key`, `map_with_state` and its `state_snapshots`.

use super::{ExecError, Executor};
use crate::batching::BatchTime;
use crate::data::Rows;
use crate::plan::Step;

/// The state of every stateful operator of a job.
#[derive(Default)]
pub struct StateStore {}

impl Executor {
    /// Runs an `UpdateStateByKey`, `MapWithState` or `StateSnapshots` step.
    pub(super) fn run_stateful(
        &self,
        time: BatchTime,
        step: &Step,
        _inputs: Vec<Vec<Rows>>,
    ) -> Result<Vec<Rows>, ExecError> {
        let _ = &self.state;
        Err(self.data_error(time, step, "state is not implemented yet"))
    }
}
