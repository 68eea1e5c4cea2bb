//! Handing a job over from one version of its code to the next (a hot
//! upgrade, or its rollback): what an [`Executor`] holds across batches —
//! the state kept by operator name and what windows keep — moves to the
//! executor of the other version, between two batches.

use super::Executor;
use crate::batching::BatchTime;
use crate::plan::NodeId;

/// What moves from one executor to the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Handover {
    /// The names whose state moves.
    pub state: Vec<String>,
    /// The windowed steps whose kept batches move: (node in the old plan,
    /// node in the new plan).
    pub windows: Vec<(NodeId, NodeId)>,
}

impl Executor {
    /// Whether chains run early hold work (running or done) for batch
    /// `time` or later: the code that ran them must also run that batch.
    pub fn has_early_work_from(&self, time: BatchTime) -> bool {
        let early = self.lock_early();
        early.outstanding.range(time..).next().is_some()
            || early.done.range(time..).next().is_some()
    }

    /// Moves what `handover` names from `from` (which runs no batch any
    /// more) to this executor, which has run none yet. State not named stays
    /// behind (reset or removed operators).
    pub fn take_over(&self, from: &Executor, handover: &Handover) {
        for name in &handover.state {
            if let Some(state) = from.state.take(name) {
                self.state.put(name, state);
            }
        }
        from.windows.hand_over(&self.windows, &handover.windows);
    }

    /// Replaces this executor's state with `state` (a copy kept from before
    /// an upgrade), before it runs any batch.
    pub fn restore_state_from(&self, state: &super::StateStore) {
        for name in state.names() {
            if let Some(op) = state.take(&name) {
                self.state.put(&name, op);
            }
        }
    }
}
