//! Joins: of two pair streams (`join`, the outer joins, `cogroup`), both
//! sides shuffled by the same partitioner; and of a pair stream with a
//! reference dataset ([`Datasets`]).

use super::{ExecError, Executor};
use crate::batching::BatchTime;
use crate::data::Rows;
use crate::plan::Step;

/// The reference datasets of a job, as last read.
#[derive(Default)]
pub struct Datasets {}

impl Executor {
    /// Runs a `Join`, `Cogroup` or `JoinDataset` step.
    pub(super) fn run_join(
        &self,
        time: BatchTime,
        step: &Step,
        _inputs: Vec<Vec<Rows>>,
    ) -> Result<Vec<Rows>, ExecError> {
        let _ = &self.datasets;
        Err(self.data_error(time, step, "joins are not implemented yet"))
    }
}
