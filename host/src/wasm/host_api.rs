//! The `host` interface of the WIT contract, which every plugin imports:
//! accumulators (each call's additions are kept in the store until the
//! caller takes them, so that only a successful call's count) and broadcast
//! values (loaded by the host at start, shared read-only by every instance).

use std::collections::HashMap;
use std::sync::Arc;

use super::bindings::sluice::plugin::host;
use super::instance::StoreState;
use crate::monitor::{AccumulatorValue, Accumulators, KindMismatch};

/// The broadcast values of a job, by name: read-only, shared by every
/// instance.
pub type Broadcasts = Arc<HashMap<String, Arc<[u8]>>>;

/// What the `host` imports of one instance see and collect.
#[derive(Default)]
pub(super) struct HostState {
    /// The job's broadcast values.
    pub(super) broadcasts: Broadcasts,
    /// What the running call added.
    pub(super) accumulators: Accumulators,
    /// The first addition of the wrong kind in the running call: the call
    /// fails with it.
    pub(super) mismatch: Option<KindMismatch>,
}

impl HostState {
    /// Forgets what an earlier call added (before a call starts).
    pub(super) fn reset(&mut self) {
        self.accumulators = Accumulators::default();
        self.mismatch = None;
    }
}

impl host::Host for StoreState {
    fn add_to_accumulator(&mut self, name: String, value: host::AccumulatorValue) {
        let value = match value {
            host::AccumulatorValue::Int(n) => AccumulatorValue::Int(n),
            host::AccumulatorValue::Float(x) => AccumulatorValue::Float(x),
        };
        if let Err(e) = self.host.accumulators.add(&name, value) {
            self.host.mismatch.get_or_insert(e);
        }
    }

    fn broadcast_value(&mut self, name: String) -> Option<Vec<u8>> {
        self.host.broadcasts.get(&name).map(|bytes| bytes.to_vec())
    }
}
