//! Values shared by every task of a job: accumulators, which user functions
//! add to and the host sums (Spark's `LongAccumulator`,
//! `DoubleAccumulator`), and broadcast values, named and immutable, which
//! the host loads at start and hands to every instance (Spark's
//! `Broadcast`). Both go through the `host` interface of `wit/sluice.wit`.
//!
//! ```
//! use sluice_guest::prelude::*;
//! # let ctx = StreamingContext::new("doc");
//!
//! let stop_words = ctx.broadcast("stop-words", vec!["a".to_string(), "the".to_string()]);
//! let dropped = ctx.long_accumulator("dropped");
//! let words = ctx.socket_text_stream("localhost", 9999).filter(move |w| {
//!     let drop = stop_words.value().contains(w);
//!     if drop {
//!         dropped.add(1);
//!     }
//!     !drop
//! });
//! ```
//!
//! Outside a WebAssembly build (the SDK's own tests, a job's unit tests),
//! additions go to a per-thread table ([`accumulated`]) and broadcast values
//! come from the `broadcast` calls of the thread's last definition.

use std::cell::OnceCell;
use std::rc::Rc;

use crate::codec::Data;

/// A named integer sum that user functions add to (Spark's
/// `LongAccumulator`). The host counts a task's additions once, when the
/// task succeeds, and shows the totals per batch and at exit. Create it
/// with [`StreamingContext::long_accumulator`](crate::StreamingContext::long_accumulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LongAccumulator {
    name: &'static str,
}

/// A named float sum that user functions add to (Spark's
/// `DoubleAccumulator`). Create it with
/// [`StreamingContext::double_accumulator`](crate::StreamingContext::double_accumulator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DoubleAccumulator {
    name: &'static str,
}

/// An accumulator's name, kept for the life of the instance: handles are
/// `Copy` so closures can capture them freely. `define` runs once per
/// instance, so this holds a few short strings per instance.
fn intern(name: &str) -> &'static str {
    Box::leak(name.to_string().into_boxed_str())
}

impl LongAccumulator {
    pub(crate) fn new(name: &str) -> Self {
        Self { name: intern(name) }
    }

    /// Adds `n` to the accumulator.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let empty_lines = ctx.long_accumulator("empty-lines");
    /// let lines = ctx.socket_text_stream("localhost", 9999).filter(move |l| {
    ///     if l.is_empty() {
    ///         empty_lines.add(1);
    ///     }
    ///     !l.is_empty()
    /// });
    /// ```
    pub fn add(&self, n: i64) {
        host::add(self.name, Value::Int(n));
    }

    /// The accumulator's name.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// assert_eq!(ctx.long_accumulator("dropped").name(), "dropped");
    /// ```
    pub fn name(&self) -> &str {
        self.name
    }
}

impl DoubleAccumulator {
    pub(crate) fn new(name: &str) -> Self {
        Self { name: intern(name) }
    }

    /// Adds `x` to the accumulator.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let total = ctx.double_accumulator("total-price");
    /// let prices: DStream<f64> = ctx.queue_stream(vec![vec![1.5, 2.0]]);
    /// let prices = prices.map(move |p| {
    ///     total.add(p);
    ///     p
    /// });
    /// ```
    pub fn add(&self, x: f64) {
        host::add(self.name, Value::Float(x));
    }

    /// The accumulator's name.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// assert_eq!(ctx.double_accumulator("seconds").name(), "seconds");
    /// ```
    pub fn name(&self) -> &str {
        self.name
    }
}

/// An accumulator addition.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    /// To a [`LongAccumulator`].
    Int(i64),
    /// To a [`DoubleAccumulator`].
    Float(f64),
}

/// The additions made on this thread outside a WebAssembly build, summed
/// per name, in order of first use (for tests of user functions).
///
/// ```
/// use sluice_guest::prelude::*;
/// use sluice_guest::shared::{Value, accumulated};
/// let ctx = StreamingContext::new("doc");
/// let n = ctx.long_accumulator("n");
/// n.add(2);
/// n.add(3);
/// assert!(accumulated().contains(&("n".to_string(), Value::Int(5))));
/// ```
pub fn accumulated() -> Vec<(String, Value)> {
    host::accumulated()
}

/// A named, immutable value that every user function can read (Spark's
/// `Broadcast`). Create it with
/// [`StreamingContext::broadcast`](crate::StreamingContext::broadcast) or
/// [`StreamingContext::broadcast_file`](crate::StreamingContext::broadcast_file).
/// Cheap to clone; the value is fetched from the host on first use in an
/// instance and kept.
pub struct Broadcast<T> {
    name: Rc<str>,
    value: Rc<OnceCell<T>>,
}

impl<T> Clone for Broadcast<T> {
    fn clone(&self) -> Self {
        Self {
            name: Rc::clone(&self.name),
            value: Rc::clone(&self.value),
        }
    }
}

impl<T> std::fmt::Debug for Broadcast<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broadcast")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<T: Data> Broadcast<T> {
    pub(crate) fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            value: Rc::new(OnceCell::new()),
        }
    }

    /// The broadcast's name.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// assert_eq!(ctx.broadcast("limit", 3u32).name(), "limit");
    /// ```
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The value, or why it is not available: during `define` (the host
    /// loads broadcast values after it), or when the host's bytes do not
    /// decode as `T`.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let limit = ctx.broadcast("limit", 100i64);
    /// let small = ctx.queue_stream(vec![vec![5i64, 500]])
    ///     .filter(move |x| limit.try_value().map_or(true, |limit| x < limit));
    /// ```
    pub fn try_value(&self) -> Result<&T, String> {
        if let Some(value) = self.value.get() {
            return Ok(value);
        }
        if crate::runtime::defining() {
            return Err(format!(
                "broadcast {:?} is read during define; read it in an operator's function",
                self.name
            ));
        }
        let bytes = host::broadcast_value(&self.name).ok_or_else(|| {
            format!(
                "broadcast {:?}: the host has no value of that name",
                self.name
            )
        })?;
        let value = T::decode(&bytes).map_err(|e| {
            format!(
                "broadcast {:?}: cannot decode its value as {}: {e}",
                self.name,
                T::codec()
            )
        })?;
        Ok(self.value.get_or_init(|| value))
    }

    /// The value (Spark's `value`). Panics, naming the broadcast and the
    /// operator, where [`try_value`](Broadcast::try_value) returns an error.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.broadcast("blacklist", vec!["spam".to_string()]);
    /// let clean = ctx.socket_text_stream("localhost", 9999)
    ///     .filter(move |w| !words.value().contains(w));
    /// ```
    pub fn value(&self) -> &T {
        match self.try_value() {
            Ok(value) => value,
            Err(e) => panic!("{e}"),
        }
    }
}

/// The `host` imports, or their stand-ins outside WebAssembly.
#[cfg(target_arch = "wasm32")]
mod host {
    use super::Value;
    use crate::bindings::sluice::plugin::host::{self, AccumulatorValue};

    pub(super) fn add(name: &str, value: Value) {
        let value = match value {
            Value::Int(n) => AccumulatorValue::Int(n),
            Value::Float(x) => AccumulatorValue::Float(x),
        };
        host::add_to_accumulator(name, value);
    }

    pub(super) fn broadcast_value(name: &str) -> Option<Vec<u8>> {
        host::broadcast_value(name)
    }

    pub(super) fn accumulated() -> Vec<(String, Value)> {
        Vec::new()
    }

    pub(crate) fn declare_broadcast(_name: &str, _bytes: Option<Vec<u8>>) {}
}

#[cfg(not(target_arch = "wasm32"))]
mod host {
    use std::cell::RefCell;

    use super::Value;

    thread_local! {
        static SUMS: RefCell<Vec<(String, Value)>> = const { RefCell::new(Vec::new()) };
        static BROADCASTS: RefCell<Vec<(String, Option<Vec<u8>>)>> = const { RefCell::new(Vec::new()) };
    }

    pub(super) fn add(name: &str, value: Value) {
        SUMS.with_borrow_mut(|sums| match sums.iter_mut().find(|(n, _)| n == name) {
            Some((_, Value::Int(sum))) => {
                if let Value::Int(n) = value {
                    *sum = sum.wrapping_add(n);
                }
            }
            Some((_, Value::Float(sum))) => {
                if let Value::Float(x) = value {
                    *sum += x;
                }
            }
            None => sums.push((name.to_string(), value)),
        });
    }

    pub(super) fn broadcast_value(name: &str) -> Option<Vec<u8>> {
        BROADCASTS.with_borrow(|all| {
            all.iter()
                .rev()
                .find(|(n, _)| n == name)
                .and_then(|(_, bytes)| bytes.clone())
        })
    }

    pub(super) fn accumulated() -> Vec<(String, Value)> {
        SUMS.with_borrow(Clone::clone)
    }

    /// Remembers a broadcast's bytes (`None` for a file) for
    /// [`broadcast_value`].
    pub(crate) fn declare_broadcast(name: &str, bytes: Option<Vec<u8>>) {
        BROADCASTS.with_borrow_mut(|all| all.push((name.to_string(), bytes)));
    }
}

pub(crate) use host::declare_broadcast;
