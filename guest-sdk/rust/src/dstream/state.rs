//! Per-key state across batches (Spark's `updateStateByKey` and
//! `mapWithState`). The host keeps each key's state, encoded, under the
//! operator's name: name stateful operators with
//! [`name`](DStream::name), so that their state can outlive a change of
//! the code around them.
//!
//! ```
//! use sluice_guest::prelude::*;
//! # let ctx = StreamingContext::new("doc");
//!
//! let words = ctx.socket_text_stream("localhost", 9999);
//! let running = words
//!     .map(|w| (w, 1i64))
//!     .update_state_by_key(|new: Vec<i64>, total: Option<i64>| {
//!         Some(total.unwrap_or(0) + new.iter().sum::<i64>())
//!     })
//!     .name("running-counts");
//! running.print();
//! ```

use std::hash::Hash;
use std::ops::Deref;
use std::panic::Location;

use crate::bindings::sluice::plugin::types::{self, NodeKind};
use crate::codec::Data;
use crate::dstream::DStream;
use crate::function::Function;
use crate::graph::node_name;
use crate::state::{MapWithState, NewValues, Runs, StateSpec, UpdateState};
use crate::time::duration_ms;

/// The stream of a [`map_with_state`](DStream::map_with_state): the mapped
/// records (it derefs to a `DStream<M>`), and the whole state through
/// [`state_snapshots`](MapWithStateDStream::state_snapshots) (Spark's
/// `MapWithStateDStream`).
pub struct MapWithStateDStream<K, S, M> {
    mapped: DStream<M>,
    snapshots: std::marker::PhantomData<fn() -> (K, S)>,
}

impl<K, S, M> Clone for MapWithStateDStream<K, S, M> {
    fn clone(&self) -> Self {
        Self {
            mapped: self.mapped.clone(),
            snapshots: std::marker::PhantomData,
        }
    }
}

impl<K, S, M> std::fmt::Debug for MapWithStateDStream<K, S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.mapped.fmt(f)
    }
}

impl<K, S, M> Deref for MapWithStateDStream<K, S, M> {
    type Target = DStream<M>;
    fn deref(&self) -> &DStream<M> {
        &self.mapped
    }
}

impl<K: Data, S: Data, M: Data> MapWithStateDStream<K, S, M> {
    /// Every key with state and its state, after each batch (Spark's
    /// `stateSnapshots`).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![vec![("a".into(), 1)]]);
    /// let sums = pairs.map_with_state(StateSpec::function(
    ///     |k: &String, v: Option<i64>, s: &mut State<i64>| {
    ///         let sum = s.get().copied().unwrap_or(0) + v.unwrap_or(0);
    ///         s.update(sum);
    ///         (k.clone(), sum)
    ///     },
    /// ));
    /// let snapshots: DStream<(String, i64)> = sums.state_snapshots();
    /// ```
    #[track_caller]
    pub fn state_snapshots(&self) -> DStream<(K, S)> {
        let name = node_name("state_snapshots", Location::caller());
        self.mapped.child(&name, NodeKind::StateSnapshots)
    }

    /// Names the operator (see [`DStream::name`]); its state is kept under
    /// this name.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let seen = pairs
    ///     .map_with_state(StateSpec::function(|k: &String, _v: Option<i64>, _s: &mut State<()>| k.clone()))
    ///     .name("seen");
    /// ```
    pub fn name(self, name: &str) -> Self {
        let _ = self.mapped.name(name);
        self
    }

    /// The mapped records as a plain stream.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// # let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![]);
    /// let keys: DStream<String> = pairs
    ///     .map_with_state(StateSpec::function(|k: &String, _v: Option<i64>, _s: &mut State<()>| k.clone()))
    ///     .stream();
    /// ```
    pub fn stream(&self) -> DStream<M> {
        self.mapped.clone()
    }
}

/// State per key.
impl<K, V> DStream<(K, V)>
where
    K: Data + Hash + Eq,
    V: Data,
{
    /// A state per key, updated every batch by `f(new_values, state)`
    /// (Spark's `updateStateByKey`): `f` is called every batch for every key
    /// that has a state or new values (an empty `Vec` when it has none);
    /// `None` removes the key. The stream is every key with its state after
    /// each batch. [`update_state_by_key_runs`](Self::update_state_by_key_runs)
    /// is the same with the new values as runs.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let running = words
    ///     .map(|w| (w, 1i64))
    ///     .update_state_by_key(|new: Vec<i64>, total: Option<i64>| {
    ///         Some(total.unwrap_or(0) + new.len() as i64)
    ///     })
    ///     .name("running-counts");
    /// ```
    #[track_caller]
    pub fn update_state_by_key<S: Data>(
        &self,
        f: impl Fn(Vec<V>, Option<S>) -> Option<S> + 'static,
    ) -> DStream<(K, S)> {
        self.update_state(Location::caller(), f)
    }

    /// [`update_state_by_key`](Self::update_state_by_key) with each key's
    /// new values as [`Runs<V>`](crate::Runs): `(count, value)` for equal
    /// values in a row, as they came, where a `Vec` holds every value. For
    /// keys with many equal values in a batch (a frequent word's `1`s: one
    /// run however often it came). The operator is `update_state_by_key`,
    /// as for a `Vec`.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let running = ctx
    ///     .socket_text_stream("localhost", 9999)
    ///     .map(|w| (w, 1i64))
    ///     .update_state_by_key_runs(|new: Runs<i64>, total: Option<i64>| {
    ///         Some(total.unwrap_or(0) + new.iter().map(|(n, one)| i64::from(n) * one).sum::<i64>())
    ///     })
    ///     .name("running-counts");
    /// ```
    #[track_caller]
    pub fn update_state_by_key_runs<S: Data>(
        &self,
        f: impl Fn(Runs<V>, Option<S>) -> Option<S> + 'static,
    ) -> DStream<(K, S)> {
        self.update_state(Location::caller(), f)
    }

    fn update_state<S: Data, N: NewValues<V>>(
        &self,
        caller: &'static Location<'static>,
        f: impl Fn(N, Option<S>) -> Option<S> + 'static,
    ) -> DStream<(K, S)> {
        let name = node_name("update_state_by_key", caller);
        let function = Function::UpdateState(Box::new(UpdateState::<K, V, N, S, _>::new(f)));
        self.child_with_function(&name, function, |function| {
            NodeKind::UpdateStateByKey(types::UpdateStateByKey {
                function,
                state_codec: S::codec(),
                partitions: None,
            })
        })
    }

    /// A state per key and records mapped from each new value (Spark's
    /// `mapWithState`): the spec's function is called for each new value of
    /// a key, in arrival order, and once, with no value, for a key that
    /// times out (no data for the spec's timeout; it is removed after).
    /// Keys with no new data are not called.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![vec![("a".into(), 1)]]);
    /// let spec = StateSpec::function(|key: &String, value: Option<i64>, state: &mut State<i64>| {
    ///     let Some(v) = value else { return (key.clone(), None) };
    ///     let sum = state.get().copied().unwrap_or(0) + v;
    ///     state.update(sum);
    ///     (key.clone(), Some(sum))
    /// })
    /// .timeout(Duration::from_secs(60));
    /// let sums: MapWithStateDStream<String, i64, (String, Option<i64>)> =
    ///     pairs.map_with_state(spec).name("sums");
    /// sums.print();
    /// sums.state_snapshots().print();
    /// ```
    #[track_caller]
    pub fn map_with_state<S: Data, M: Data>(
        &self,
        spec: StateSpec<K, V, S, M>,
    ) -> MapWithStateDStream<K, S, M> {
        let name = node_name("map_with_state", Location::caller());
        let timeout_ms = spec.timeout.map(|t| {
            duration_ms(t).unwrap_or_else(|e| {
                self.graph
                    .borrow_mut()
                    .error(format!("{name}: the state's timeout: {e}"));
                1
            })
        });
        let function = Function::MapWithState(Box::new(MapWithState::new(spec)));
        let mapped = self.child_with_function(&name, function, |function| {
            NodeKind::MapWithState(types::MapWithState {
                function,
                state_codec: S::codec(),
                timeout_ms,
                partitions: None,
            })
        });
        MapWithStateDStream {
            mapped,
            snapshots: std::marker::PhantomData,
        }
    }
}
