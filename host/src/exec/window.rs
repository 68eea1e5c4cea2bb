//! Windowed steps: `window(length, slide)` and `reduce_by_key_and_window`.
//!
//! A windowed step runs at every batch of the stream it reads, keeping what
//! it needs (the input's partitions, or each batch's values reduced by key),
//! and produces its output only at the multiples of its slide, covering the
//! batches in `(T - length, T]`.

use std::sync::Mutex;

use super::{ExecError, Executor};
use crate::batching::BatchTime;
use crate::data::Rows;
use crate::plan::Step;

/// What the windowed steps keep between batches.
#[derive(Default)]
pub(super) struct Windows {
    _kept: Mutex<()>,
}

impl Executor {
    /// Runs a `Window` or `ReduceByKeyAndWindow` step: `None` at the times
    /// that are not multiples of its slide.
    pub(super) fn run_windowed(
        &self,
        time: BatchTime,
        step: &Step,
        _inputs: Vec<Vec<Rows>>,
    ) -> Result<Option<Vec<Rows>>, ExecError> {
        let _ = &self.windows;
        Err(self.data_error(time, step, "windows are not implemented yet"))
    }
}
