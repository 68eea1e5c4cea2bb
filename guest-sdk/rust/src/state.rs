//! Per-key state and whole-batch functions: [`StateSpec`] and [`State`] for
//! [`map_with_state`](crate::DStream::map_with_state), and the functions
//! behind the `update-state`, `map-with-state` and `transform` calls.
//!
//! The state lives in the host, as the state codec's bytes, never in a plugin
//! instance: each call hands the plugin a key's state with its new values and
//! takes the new state back, in the record formats of "State calls" in
//! `wit/sluice.wit`:
//!
//! - `update-state`: in `tuple<k, list<tuple<u32, v>>, option<s>>`, out
//!   `option<s>`;
//! - `map-with-state`: in `tuple<k, option<s>, option<list<tuple<u32, v>>>>`
//!   (no list: the key is timing out), out `tuple<option<s>, list<m>>`.
//!
//! The new values come as runs, `(count, value)`. A `map_with_state`
//! function sees each value `count` times ([`for_each_value`]); an
//! `update_state_by_key` function takes them as a `Vec<V>`, each value
//! `count` times, and an `update_state_by_key_runs` one as the [`Runs<V>`]
//! themselves.
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
use crate::codec::{Data, DecodeError, for_each_list_element, split_option, split_prefixed};
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

/// Each run of a key's new values as runs (`list<tuple<u32, v>>`, "State
/// calls" in `wit/sluice.wit`), in order: its count and its value's bytes,
/// undecoded. A count of 0 is an error: the contract's counts are at least
/// 1.
fn for_each_run(
    runs: &[u8],
    mut each: impl FnMut(u32, &[u8]) -> Result<(), DecodeError>,
) -> Result<(), DecodeError> {
    for_each_list_element(runs, |i, run| {
        let in_run = |e: DecodeError| DecodeError::new(format!("run {i}: {e}"));
        let (count, value) = split_prefixed(run, "a run's count").map_err(in_run)?;
        match u32::decode(count).map_err(in_run)? {
            0 => Err(in_run(DecodeError::new("a count of 0".to_string()))),
            count => each(count, value).map_err(in_run),
        }
    })
    .map(drop)
}

/// The values of a key's runs, in order: each run's value `count` times,
/// decoded each time (a [`Data`] value is not `Clone`). A function called
/// with each value as it is decoded may have been called for the values
/// before a run that does not decode: the call then fails, and the host
/// applies none of it.
fn for_each_value<V: Data>(runs: &[u8], mut each: impl FnMut(V)) -> Result<(), DecodeError> {
    for_each_run(runs, |count, value| {
        for _ in 0..count {
            each(V::decode(value)?);
        }
        Ok(())
    })
}

/// A key's new values in a batch as runs of equal values: `(count, value)`,
/// in arrival order, as `update-state` receives them ("State calls" in
/// `wit/sluice.wit`). What
/// [`update_state_by_key_runs`](crate::DStream::update_state_by_key_runs)
/// gives its function instead of a `Vec<V>`: a value that came a million
/// times in a row (a frequent word's `1`) is one run, where the `Vec` holds
/// it a million times.
///
/// Equal values in a row may come as one run or as several, so two `Runs`
/// of the same values may differ (`==` compares the runs).
///
/// ```
/// # use sluice_guest::prelude::*;
/// let new: Runs<i64> = [(3, 1), (1, 5)].into_iter().collect();
/// assert_eq!(new.len(), 4);
/// assert_eq!(new.iter().map(|(n, v)| i64::from(n) * v).sum::<i64>(), 8);
/// assert_eq!(new.values().copied().collect::<Vec<_>>(), [1, 1, 1, 5]);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Runs<V> {
    runs: Vec<(u32, V)>,
    len: u64,
}

impl<V> Runs<V> {
    /// The number of values: the sum of the runs' counts (a `u64`, since
    /// it may pass a 32-bit `usize`).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Whether the key had no new values.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The runs, in order: each value with how many times it came in a row
    /// (at least once).
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (u32, &V)> + '_ {
        self.runs.iter().map(|(count, value)| (*count, value))
    }

    /// The values, in arrival order: each run's value `count` times.
    pub fn values(&self) -> impl Iterator<Item = &V> + '_ {
        self.runs
            .iter()
            .flat_map(|(count, value)| std::iter::repeat_n(value, *count as usize))
    }
}

/// Runs from `(count, value)` pairs, in order; a run of 0 is left out.
impl<V> FromIterator<(u32, V)> for Runs<V> {
    fn from_iter<I: IntoIterator<Item = (u32, V)>>(runs: I) -> Self {
        let runs: Vec<(u32, V)> = runs.into_iter().filter(|(count, _)| *count > 0).collect();
        let len = runs.iter().map(|(count, _)| u64::from(*count)).sum();
        Runs { runs, len }
    }
}

/// The runs by value, `(count, value)`, in order.
impl<V> IntoIterator for Runs<V> {
    type Item = (u32, V);
    type IntoIter = std::vec::IntoIter<(u32, V)>;

    fn into_iter(self) -> Self::IntoIter {
        self.runs.into_iter()
    }
}

/// How an `update_state_by_key` function takes a key's new values: a
/// `Vec<V>` (every value, as Spark's `Seq[V]`) or [`Runs<V>`].
pub(crate) trait NewValues<V>: Sized + 'static {
    /// Decodes a key's runs, `list<tuple<u32, v>>`.
    fn decode_runs(runs: &[u8]) -> Result<Self, DecodeError>;
}

impl<V: Data> NewValues<V> for Vec<V> {
    /// Sized at once from the counts; a total past what the instance can
    /// hold is an error that names it, not an allocation failure.
    fn decode_runs(runs: &[u8]) -> Result<Self, DecodeError> {
        let mut total = 0u64;
        for_each_run(runs, |count, _| {
            total += u64::from(count);
            Ok(())
        })?;
        let mut values = Vec::new();
        usize::try_from(total)
            .ok()
            .and_then(|total| values.try_reserve_exact(total).ok())
            .ok_or_else(|| {
                DecodeError::new(format!(
                    "{total} values are more than a Vec in this instance can hold \
                     (a function over Runs<V>, update_state_by_key_runs, takes them as runs)"
                ))
            })?;
        for_each_value(runs, |value| values.push(value))?;
        Ok(values)
    }
}

impl<V: Data> NewValues<V> for Runs<V> {
    fn decode_runs(runs: &[u8]) -> Result<Self, DecodeError> {
        let mut decoded = Runs {
            runs: Vec::new(),
            len: 0,
        };
        for_each_run(runs, |count, value| {
            decoded.len += u64::from(count);
            decoded.runs.push((count, V::decode(value)?));
            Ok(())
        })?;
        Ok(decoded)
    }
}

/// The codec of `update-state`'s input records, for messages.
type UpdateRecord<K, V, S> = (K, Vec<(u32, V)>, Option<S>);

/// The codec of `map-with-state`'s input records, for messages.
type MapRecord<K, V, S> = (K, Option<S>, Option<Vec<(u32, V)>>);

/// The types an [`UpdateState`] works on: the key, the values, the new
/// values as the function takes them, and the state.
type UpdateTypes<K, V, N, S> = fn(K, V, N, Option<S>) -> Option<S>;

/// The function of `update_state_by_key`, behind `update-state`.
pub(crate) struct UpdateState<K, V, N, S, F> {
    f: F,
    types: PhantomData<UpdateTypes<K, V, N, S>>,
}

impl<K, V, N, S, F> UpdateState<K, V, N, S, F>
where
    K: Data,
    V: Data,
    N: NewValues<V>,
    S: Data,
    F: Fn(N, Option<S>) -> Option<S> + 'static,
{
    pub(crate) fn new(f: F) -> Self {
        Self {
            f,
            types: PhantomData,
        }
    }
}

impl<K, V, N, S, F> BatchFn for UpdateState<K, V, N, S, F>
where
    K: Data,
    V: Data,
    N: NewValues<V>,
    S: Data,
    F: Fn(N, Option<S>) -> Option<S> + 'static,
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
                call_decode_error::<UpdateRecord<K, V, S>>(node, batch_time_ms, i, e)
            };
            let (_key, rest) = split_prefixed(record, "tuple element 0").map_err(fail)?;
            let (runs, state) = split_prefixed(rest, "tuple element 1").map_err(fail)?;
            let values = N::decode_runs(runs)
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
            let fail =
                |e: DecodeError| call_decode_error::<MapRecord<K, V, S>>(node, batch_time_ms, i, e);
            let element = |n: usize| {
                move |e: DecodeError| fail(DecodeError::new(format!("tuple element {n}: {e}")))
            };
            let (key, rest) = split_prefixed(record, "tuple element 0").map_err(fail)?;
            let key = K::decode(key).map_err(element(0))?;
            let (state, runs) = split_prefixed(rest, "tuple element 1").map_err(fail)?;
            let state = Option::<S>::decode(state).map_err(element(1))?;
            let runs = split_option(runs).map_err(element(2))?;
            mapped.clear();
            let mut state = State::new(state, runs.is_none());
            match runs {
                Some(runs) => for_each_value(runs, |value| {
                    mapped.push(f(&key, Some(value), &mut state));
                })
                .map_err(element(2))?,
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
    types: PhantomData<TransformTypes<T, U>>,
}

/// The types a [`Transform`] works on.
type TransformTypes<T, U> = fn(u64, Vec<T>) -> Vec<U>;

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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::collection::vec;
    use proptest::prelude::*;

    const NODE: &str = "op at src/lib.rs:1:1";

    /// `u32` little-endian.
    fn le(n: u32) -> [u8; 4] {
        n.to_le_bytes()
    }

    fn rows(records: &[Vec<u8>]) -> Rows {
        let mut rows = Rows {
            data: Vec::new(),
            ends: Vec::new(),
        };
        for r in records {
            rows.data.extend_from_slice(r);
            rows.ends.push(rows.data.len() as u32);
        }
        rows
    }

    fn split(rows: &Rows) -> Vec<Vec<u8>> {
        records(rows).map(|r| r.unwrap().to_vec()).collect()
    }

    type Update = fn(Vec<i64>, Option<i64>) -> Option<i64>;

    fn running_sum() -> UpdateState<String, i64, Vec<i64>, i64, Update> {
        UpdateState::new(|values, state| {
            let s = state.unwrap_or(0) + values.iter().sum::<i64>();
            (s != 0).then_some(s)
        })
    }

    type UpdateRuns = fn(Runs<i64>, Option<i64>) -> Option<i64>;

    /// [`running_sum`] over the runs, a run at a time.
    fn running_sum_of_runs() -> UpdateState<String, i64, Runs<i64>, i64, UpdateRuns> {
        UpdateState::new(|runs, state| {
            let s = state.unwrap_or(0) + runs.iter().map(|(n, v)| i64::from(n) * v).sum::<i64>();
            (s != 0).then_some(s)
        })
    }

    /// A run `(count, value)` of `list<tuple<u32, i64>>`, by hand.
    fn run(count: u32, value: i64, out: &mut Vec<u8>) {
        out.extend(le(16));
        out.extend(le(4));
        out.extend(le(count));
        out.extend(value.to_le_bytes());
    }

    #[test]
    fn update_state_reads_key_values_state_and_writes_one_option_per_record() {
        // tuple<string, list<tuple<u32, i64>>, option<i64>>, written out by
        // hand: 5, 5, 7 as two runs.
        let mut with_state = Vec::new();
        with_state.extend(le(1));
        with_state.extend(b"a");
        with_state.extend(le(4 + 2 * 20));
        with_state.extend(le(2));
        run(2, 5, &mut with_state);
        run(1, 7, &mut with_state);
        with_state.push(1);
        with_state.extend(10i64.to_le_bytes());
        // A key with no new values: its state stays.
        let mut no_values = Vec::new();
        no_values.extend(le(2));
        no_values.extend(b"bc");
        no_values.extend(le(4));
        no_values.extend(le(0));
        no_values.push(1);
        no_values.extend(3i64.to_le_bytes());
        // A new key whose values sum to 0: removed.
        let mut to_zero = Vec::new();
        to_zero.extend(le(0));
        to_zero.extend(le(4 + 2 * 20));
        to_zero.extend(le(2));
        run(1, 4, &mut to_zero);
        run(1, -4, &mut to_zero);
        to_zero.push(0);
        let out = running_sum()
            .call(7, &rows(&[with_state, no_values, to_zero]), NODE)
            .unwrap();
        let mut some_27 = vec![1];
        some_27.extend(27i64.to_le_bytes());
        let mut some_3 = vec![1];
        some_3.extend(3i64.to_le_bytes());
        assert_eq!(split(&out), [some_27, some_3, vec![0]]);
    }

    #[test]
    fn a_malformed_run_names_the_run_for_a_vec_or_runs_and_in_map_with_state() {
        // Two runs, the second's count 3 bytes long.
        let mut runs = Vec::new();
        runs.extend(le(2));
        run(1, 5, &mut runs);
        runs.extend(le(15));
        runs.extend(le(3));
        runs.extend([1, 0, 0]);
        runs.extend(5i64.to_le_bytes());
        // update-state: the runs, no state.
        let mut record = Vec::new();
        encode_prefixed_for_test("k", &mut record);
        record.extend(le(runs.len() as u32));
        record.extend(&runs);
        record.push(0);
        let input = rows(&[record]);
        let expected = format!(
            "{NODE}: batch 1000 ms: cannot decode input record 0 as \
             tuple<string,list<tuple<u32,i64>>,option<i64>>: tuple element 1: run 1: "
        );
        let err = running_sum().call(1_000, &input, NODE).unwrap_err();
        assert!(err.starts_with(&expected), "{err}");
        let runs_err = running_sum_of_runs().call(1_000, &input, NODE).unwrap_err();
        assert_eq!(runs_err, err);
        // map-with-state: no state, some(runs).
        let mut record = Vec::new();
        encode_prefixed_for_test("k", &mut record);
        record.extend(le(1));
        record.push(0);
        record.push(1);
        record.extend(&runs);
        let err = mapped_sums().call(5, &rows(&[record]), NODE).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{NODE}: batch 5 ms: cannot decode input record 0 as \
                 tuple<string,option<i64>,option<list<tuple<u32,i64>>>>: tuple element 2: run 1: "
            )),
            "{err}"
        );
    }

    #[test]
    fn a_state_that_does_not_decode_names_the_operator_batch_and_record() {
        let good = ("k".to_string(), vec![(1u32, 1i64)], None::<i64>);
        // A state of 3 bytes, not 8.
        let mut truncated = Vec::new();
        encode_prefixed_for_test("k", &mut truncated);
        encode_prefixed_runs(&[(1, 1)], &mut truncated);
        truncated.extend([1, 0, 0]);
        let input = rows(&[encode(&good), truncated]);
        let err = running_sum().call(1_000, &input, NODE).unwrap_err();
        assert!(
            err.starts_with(&format!(
                "{NODE}: batch 1000 ms: cannot decode input record 1 as \
                 tuple<string,list<tuple<u32,i64>>,option<i64>>: tuple element 2: "
            )),
            "{err}"
        );
    }

    fn encode<T: Data>(value: &T) -> Vec<u8> {
        let mut out = Vec::new();
        value.encode(&mut out);
        out
    }

    fn encode_prefixed_for_test(key: &str, out: &mut Vec<u8>) {
        out.extend(le(key.len() as u32));
        out.extend(key.as_bytes());
    }

    fn encode_prefixed_runs(runs: &[(u32, i64)], out: &mut Vec<u8>) {
        let list = encode(&runs.to_vec());
        out.extend(le(list.len() as u32));
        out.extend(list);
    }

    /// The fixture's map_with_state function: a running sum, removed at 0.
    fn mapped_sums() -> MapWithState<String, i64, i64, (String, Option<i64>)> {
        MapWithState::new(StateSpec::function(
            |key: &String, value: Option<i64>, state: &mut State<i64>| match value {
                Some(v) => {
                    let s = state.get().copied().unwrap_or(0) + v;
                    if s == 0 {
                        state.remove();
                    } else {
                        state.update(s);
                    }
                    (key.clone(), Some(s))
                }
                None => (key.clone(), None),
            },
        ))
    }

    type MapIn = (String, Option<i64>, Option<Vec<(u32, i64)>>);
    type MapOut = (Option<i64>, Vec<(String, Option<i64>)>);

    fn call_map(records: &[MapIn]) -> Result<Vec<MapOut>, String> {
        let input = rows(&records.iter().map(encode).collect::<Vec<_>>());
        let out = mapped_sums().call(5, &input, NODE)?;
        Ok(split(&out)
            .iter()
            .map(|r| MapOut::decode(r).unwrap())
            .collect())
    }

    #[test]
    fn map_with_state_writes_the_state_then_the_mapped_records_by_hand() {
        let input = [("k".to_string(), Some(1i64), Some(vec![(1u32, 2i64)]))];
        let out = mapped_sums()
            .call(5, &rows(&[encode(&input[0])]), NODE)
            .unwrap();
        // tuple<option<i64>, list<tuple<string, option<i64>>>>
        let mut expected = Vec::new();
        expected.extend(le(9));
        expected.push(1);
        expected.extend(3i64.to_le_bytes());
        expected.extend(le(1));
        expected.extend(le(4 + 1 + 9));
        expected.extend(le(1));
        expected.extend(b"k");
        expected.push(1);
        expected.extend(3i64.to_le_bytes());
        assert_eq!(split(&out), [expected]);
    }

    #[test]
    fn map_with_state_maps_every_value_in_order_and_a_timing_out_key_once() {
        let out = call_map(&[
            ("a".into(), None, Some(vec![(1, 1), (1, 2), (1, -3)])),
            ("b".into(), Some(5), Some(vec![])),
            ("c".into(), Some(9), None),
            ("d".into(), Some(1), Some(vec![(3, 2)])),
        ])
        .unwrap();
        assert_eq!(
            out,
            [
                (
                    None,
                    vec![
                        ("a".into(), Some(1)),
                        ("a".into(), Some(3)),
                        ("a".into(), Some(0))
                    ]
                ),
                (Some(5), vec![]),
                (Some(9), vec![("c".into(), None)]),
                (
                    Some(7),
                    vec![
                        ("d".into(), Some(3)),
                        ("d".into(), Some(5)),
                        ("d".into(), Some(7))
                    ]
                ),
            ]
        );
    }

    #[test]
    fn updating_a_key_that_is_timing_out_is_an_error_naming_the_operator() {
        let f = MapWithState::new(StateSpec::function(
            |_: &String, _: Option<i64>, state: &mut State<i64>| {
                state.update(1);
            },
        ));
        let input = rows(&[encode(&(
            "k".to_string(),
            Some(3i64),
            None::<Vec<(u32, i64)>>,
        ))]);
        assert_eq!(
            f.call(2_000, &input, NODE).unwrap_err(),
            format!(
                "{NODE}: batch 2000 ms, input record 0: \
                 cannot update the state of a key that is timing out"
            )
        );
    }

    #[test]
    fn transform_gets_the_whole_batch_and_its_time() {
        let f = Transform::new(|time: u64, mut batch: Vec<i64>| {
            batch.sort();
            batch.into_iter().map(|x| (time, x)).collect::<Vec<_>>()
        });
        let out = f.call(9, &encode_all(&[3i64, 1, 2]), NODE).unwrap();
        let out: Vec<(u64, i64)> = decode_all(&out, NODE).unwrap();
        assert_eq!(out, [(9, 1), (9, 2), (9, 3)]);
    }

    /// The values of runs, each value `count` times.
    fn expand(runs: &[(u32, i64)]) -> Vec<i64> {
        runs.iter()
            .flat_map(|&(count, value)| std::iter::repeat_n(value, count as usize))
            .collect()
    }

    proptest! {
        #[test]
        fn update_state_matches_a_reference_fold(
            keys in vec(("[a-c]{0,3}", vec((1u32..4, -3i64..3), 0..4), proptest::option::of(-5i64..5)), 0..20)
        ) {
            let input = rows(&keys.iter().map(encode).collect::<Vec<_>>());
            let out = running_sum().call(1, &input, NODE).unwrap();
            prop_assert_eq!(split(&running_sum_of_runs().call(1, &input, NODE).unwrap()), split(&out));
            let out: Vec<Option<i64>> = split(&out).iter().map(|r| Option::decode(r).unwrap()).collect();
            let expected: Vec<Option<i64>> = keys
                .iter()
                .map(|(_, runs, s)| {
                    let sum = s.unwrap_or(0) + expand(runs).iter().sum::<i64>();
                    if sum == 0 { None } else { Some(sum) }
                })
                .collect();
            prop_assert_eq!(out, expected);
        }

        /// `Runs` holds the values a `Vec` holds, in order, as the runs
        /// sent; a count of 0 (never sent by the host) fails both, naming
        /// the run.
        #[test]
        fn runs_hold_the_values_of_the_vec(runs in vec((0u32..4, -3i64..3), 0..6)) {
            let bytes = encode(&runs);
            if let Some(zero) = runs.iter().position(|(n, _)| *n == 0) {
                let expected = format!("run {zero}: a count of 0");
                prop_assert_eq!(Vec::<i64>::decode_runs(&bytes).unwrap_err().to_string(), expected.clone());
                prop_assert_eq!(Runs::<i64>::decode_runs(&bytes).unwrap_err().to_string(), expected);
                return Ok(());
            }
            let values = Vec::<i64>::decode_runs(&bytes).unwrap();
            prop_assert_eq!(&values, &expand(&runs));
            let decoded = Runs::<i64>::decode_runs(&bytes).unwrap();
            prop_assert_eq!(decoded.values().copied().collect::<Vec<_>>(), values.clone());
            prop_assert_eq!(decoded.len(), values.len() as u64);
            prop_assert_eq!(decoded.is_empty(), values.is_empty());
            prop_assert_eq!(decoded.iter().map(|(n, v)| (n, *v)).collect::<Vec<_>>(), runs.clone());
            prop_assert_eq!(decoded.clone().into_iter().collect::<Vec<_>>(), runs.clone());
            prop_assert_eq!(runs.into_iter().collect::<Runs<i64>>(), decoded);
        }

        #[test]
        fn map_with_state_matches_a_reference(
            keys in vec(("[a-c]{0,3}", proptest::option::of(-5i64..5), proptest::option::of(vec((1u32..4, -3i64..3), 1..4))), 0..20)
        ) {
            let out = call_map(&keys).unwrap();
            let expected: Vec<MapOut> = keys
                .iter()
                .map(|(k, s, vs)| match vs {
                    None => (*s, vec![(k.clone(), None)]),
                    Some(runs) => {
                        let mut state = *s;
                        let mut mapped = Vec::new();
                        for v in expand(runs) {
                            let next = state.unwrap_or(0) + v;
                            state = (next != 0).then_some(next);
                            mapped.push((k.clone(), Some(next)));
                        }
                        (state, mapped)
                    }
                })
                .collect();
            prop_assert_eq!(out, expected);
        }
    }
}
