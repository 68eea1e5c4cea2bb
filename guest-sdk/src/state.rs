//! Per-key state and whole-batch functions: [`StateSpec`] and [`State`] for
//! [`map_with_state`](crate::DStream::map_with_state), and the functions
//! behind the `update-state`, `map-with-state` and `transform` calls.
//!
//! The state lives in the host, as the state codec's bytes, never in a plugin
//! instance: each call hands the plugin a key's state with its new values and
//! takes the new state back, in the record formats of "State calls" in
//! `wit/sluice.wit`:
//!
//! - `update-state`: in `tuple<k, list<v>, option<s>>`, out `option<s>`;
//! - `map-with-state`: in `tuple<k, option<s>, option<list<v>>>` (no list:
//!   the key is timing out), out `tuple<option<s>, list<m>>`.
//!
//! ```
//! use std::time::Duration;
//! use sluice_guest::prelude::*;
//!
//! // A running sum per key that emits (key, sum) for every value, and
//! // (key, None) when the key has been idle for a minute.
//! let spec = StateSpec::function(|key: &String, value: Option<i64>, state: &mut State<i64>| {
//!     match value {
//!         Some(v) => {
//!             let sum = state.get().copied().unwrap_or(0) + v;
//!             state.update(sum);
//!             (key.clone(), Some(sum))
//!         }
//!         None => (key.clone(), None),
//!     }
//! })
//! .timeout(Duration::from_secs(60));
//! ```

use std::marker::PhantomData;
use std::rc::Rc;
use std::time::Duration;

use crate::bindings::sluice::plugin::types::Rows;
use crate::codec::{Data, DecodeError, split_prefixed};
use crate::function::BatchFn;
use crate::rows::{decode_all, encode_all, end_offset, records};

/// The state of one key, as a [`map_with_state`](crate::DStream::map_with_state)
/// function sees it (Spark's `State`).
#[derive(Debug, Clone, PartialEq)]
pub struct State<S> {
    value: Option<S>,
    timing_out: bool,
    /// What the function did that it may not do (update a key timing out).
    misuse: Option<&'static str>,
}

impl<S> State<S> {
    /// A key's state as the host handed it.
    pub(crate) fn new(value: Option<S>, timing_out: bool) -> Self {
        Self {
            value,
            timing_out,
            misuse: None,
        }
    }

    /// Whether the key has a state.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let f = |_: &String, _: Option<i64>, state: &mut State<i64>| {
    /// if !state.exists() {
    ///     state.update(0);
    /// }
    /// # };
    /// ```
    pub fn exists(&self) -> bool {
        self.value.is_some()
    }

    /// The key's state, if it has one.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let f = |_: &String, _: Option<i64>, state: &mut State<i64>| {
    /// let count = state.get().copied().unwrap_or(0);
    /// # };
    /// ```
    pub fn get(&self) -> Option<&S> {
        self.value.as_ref()
    }

    /// Sets the key's state. Not allowed while the key is timing out
    /// ([`is_timing_out`](State::is_timing_out)): the call then fails with
    /// a message naming the operator, as in Spark.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let f = |_: &String, v: Option<i64>, state: &mut State<i64>| {
    /// state.update(v.unwrap_or(0));
    /// # };
    /// ```
    pub fn update(&mut self, value: S) {
        if self.timing_out {
            self.misuse = Some("cannot update the state of a key that is timing out");
        } else {
            self.value = Some(value);
        }
    }

    /// Removes the key's state. Not allowed while the key is timing out (it
    /// is removed anyway).
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let f = |_: &String, _: Option<i64>, state: &mut State<i64>| {
    /// state.remove();
    /// # };
    /// ```
    pub fn remove(&mut self) {
        if self.timing_out {
            self.misuse = Some("cannot remove the state of a key that is timing out");
        } else {
            self.value = None;
        }
    }

    /// Whether the key is timing out: it had no data for the spec's
    /// timeout, this is the last call for it (with no value), and its state
    /// is removed after it.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let f = |k: &String, _: Option<i64>, state: &mut State<i64>| {
    /// if state.is_timing_out() {
    ///     eprintln!("{k} went idle");
    /// }
    /// # };
    /// ```
    pub fn is_timing_out(&self) -> bool {
        self.timing_out
    }
}

/// The mapping function of a [`map_with_state`](crate::DStream::map_with_state)
/// type.
pub(crate) type MappingFn<K, V, S, M> = dyn Fn(&K, Option<V>, &mut State<S>) -> M;

/// What [`map_with_state`](crate::DStream::map_with_state) does (Spark's
/// `StateSpec`): a function called once per new value of a key, in arrival
/// order, with the key, the value and the key's [`State`], returning the
/// record it maps to; and an optional timeout for idle keys.
pub struct StateSpec<K, V, S, M> {
    pub(crate) function: Rc<MappingFn<K, V, S, M>>,
    pub(crate) timeout: Option<Duration>,
}

impl<K, V, S, M> StateSpec<K, V, S, M> {
    /// A spec calling `f(key, Some(value), state)` for every new value, and
    /// `f(key, None, state)` once for a key timing out.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// let spec = StateSpec::function(|key: &String, value: Option<i64>, state: &mut State<i64>| {
    ///     let seen = state.get().copied().unwrap_or(0) + 1;
    ///     if value.is_some() {
    ///         state.update(seen);
    ///     }
    ///     (key.clone(), seen)
    /// });
    /// ```
    pub fn function(f: impl Fn(&K, Option<V>, &mut State<S>) -> M + 'static) -> Self {
        Self {
            function: Rc::new(f),
            timeout: None,
        }
    }

    /// A key with no new value for `timeout` is called once as timing out,
    /// then removed (Spark's `StateSpec.timeout`). Kept to whole
    /// milliseconds.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// let spec = StateSpec::function(|k: &String, _v: Option<i64>, _s: &mut State<i64>| k.clone())
    ///     .timeout(Duration::from_secs(30));
    /// ```
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }
}

impl<K, V, S, M> Clone for StateSpec<K, V, S, M> {
    fn clone(&self) -> Self {
        Self {
            function: Rc::clone(&self.function),
            timeout: self.timeout,
        }
    }
}

impl<K, V, S, M> std::fmt::Debug for StateSpec<K, V, S, M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateSpec")
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// `<node>: batch <t> ms: cannot decode input record <i> as <codec>: <e>`.
fn call_decode_error<T: Data>(
    node: &str,
    batch_time_ms: u64,
    index: usize,
    e: DecodeError,
) -> String {
    format!(
        "{node}: batch {batch_time_ms} ms: cannot decode input record {index} as {}: {e}",
        T::codec()
    )
}

/// The function of `update_state_by_key`, behind `update-state`.
pub(crate) struct UpdateState<K, V, S, F> {
    f: F,
    types: PhantomData<fn(K, Vec<V>, Option<S>) -> Option<S>>,
}

impl<K, V, S, F> UpdateState<K, V, S, F>
where
    K: Data,
    V: Data,
    S: Data,
    F: Fn(Vec<V>, Option<S>) -> Option<S> + 'static,
{
    pub(crate) fn new(f: F) -> Self {
        Self {
            f,
            types: PhantomData,
        }
    }
}

impl<K, V, S, F> BatchFn for UpdateState<K, V, S, F>
where
    K: Data,
    V: Data,
    S: Data,
    F: Fn(Vec<V>, Option<S>) -> Option<S> + 'static,
{
    /// The key is not decoded: the function does not take it.
    fn call(&self, batch_time_ms: u64, input: &Rows, node: &str) -> Result<Rows, String> {
        let mut out = Rows {
            data: Vec::new(),
            ends: Vec::with_capacity(input.ends.len()),
        };
        for (i, record) in records(input).enumerate() {
            let record = record.map_err(|e| format!("{node}: batch {batch_time_ms} ms: {e}"))?;
            let fail = |e: DecodeError| {
                call_decode_error::<(K, Vec<V>, Option<S>)>(node, batch_time_ms, i, e)
            };
            let (_key, rest) = split_prefixed(record, "tuple element 0").map_err(fail)?;
            let (values, state) = split_prefixed(rest, "tuple element 1").map_err(fail)?;
            let values = Vec::<V>::decode(values)
                .map_err(|e| fail(DecodeError::new(format!("tuple element 1: {e}"))))?;
            let state = Option::<S>::decode(state)
                .map_err(|e| fail(DecodeError::new(format!("tuple element 2: {e}"))))?;
            (self.f)(values, state).encode(&mut out.data);
            out.ends.push(end_offset(&out.data));
        }
        Ok(out)
    }
}

/// The function of `map_with_state`, behind `map-with-state`.
pub(crate) struct MapWithState<K, V, S, M> {
    spec: StateSpec<K, V, S, M>,
}

impl<K, V, S, M> MapWithState<K, V, S, M> {
    pub(crate) fn new(spec: StateSpec<K, V, S, M>) -> Self {
        Self { spec }
    }
}

impl<K, V, S, M> BatchFn for MapWithState<K, V, S, M>
where
    K: Data,
    V: Data,
    S: Data,
    M: Data,
{
    fn call(&self, batch_time_ms: u64, input: &Rows, node: &str) -> Result<Rows, String> {
        let f = &*self.spec.function;
        let mut out = Rows {
            data: Vec::new(),
            ends: Vec::with_capacity(input.ends.len()),
        };
        let mut mapped: Vec<M> = Vec::new();
        for (i, record) in records(input).enumerate() {
            let record = record.map_err(|e| format!("{node}: batch {batch_time_ms} ms: {e}"))?;
            let (key, state, values) =
                <(K, Option<S>, Option<Vec<V>>)>::decode(record).map_err(|e| {
                    call_decode_error::<(K, Option<S>, Option<Vec<V>>)>(node, batch_time_ms, i, e)
                })?;
            mapped.clear();
            let mut state = State::new(state, values.is_none());
            match values {
                Some(values) => {
                    for value in values {
                        mapped.push(f(&key, Some(value), &mut state));
                    }
                }
                None => mapped.push(f(&key, None, &mut state)),
            }
            if let Some(misuse) = state.misuse {
                return Err(format!(
                    "{node}: batch {batch_time_ms} ms, input record {i}: {misuse}"
                ));
            }
            (state.value, std::mem::take(&mut mapped)).encode(&mut out.data);
            out.ends.push(end_offset(&out.data));
        }
        Ok(out)
    }
}

/// The function of `transform`, behind `transform`.
pub(crate) struct Transform<T, U, F> {
    f: F,
    types: PhantomData<fn(u64, Vec<T>) -> Vec<U>>,
}

impl<T, U, F> Transform<T, U, F>
where
    T: Data,
    U: Data,
    F: Fn(u64, Vec<T>) -> Vec<U> + 'static,
{
    pub(crate) fn new(f: F) -> Self {
        Self {
            f,
            types: PhantomData,
        }
    }
}

impl<T, U, F> BatchFn for Transform<T, U, F>
where
    T: Data,
    U: Data,
    F: Fn(u64, Vec<T>) -> Vec<U> + 'static,
{
    fn call(&self, batch_time_ms: u64, input: &Rows, node: &str) -> Result<Rows, String> {
        let records = decode_all::<T>(input, node)?;
        Ok(encode_all(&(self.f)(batch_time_ms, records)))
    }
}
