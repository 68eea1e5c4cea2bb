//! Windowed operators (Spark's `window`, `countByWindow`,
//! `reduceByWindow`, `reduceByKeyAndWindow`, `countByValueAndWindow`).
//!
//! A window of `length` sliding by `slide` produces a batch at the times
//! `T` that are multiples of `slide`, covering the input's batches in
//! `(T - length, T]`, even when it is empty. Both durations must be
//! multiples of the input's slide (the batch interval for a stream with no
//! window before it); the host refuses the job otherwise. Every `slide`
//! argument takes a `Duration`, or `None` for the input's slide (Spark's
//! forms without `slideInterval`).
//!
//! ```
//! use std::time::Duration;
//! use sluice_guest::prelude::*;
//! # let ctx = StreamingContext::new("doc");
//!
//! let words = ctx.socket_text_stream("localhost", 9999);
//! let counts = words
//!     .map(|w| (w, 1i64))
//!     .reduce_by_key_and_window_inv(
//!         |a, b| a + b,
//!         |a, b| a - b,
//!         Duration::from_secs(30),
//!         Duration::from_secs(10),
//!     )
//!     .name("window-counts");
//! counts.print();
//! ```

use std::hash::Hash;
use std::panic::Location;
use std::rc::Rc;
use std::time::Duration;

use crate::bindings::sluice::plugin::types::{
    self, KeyFilter, NodeKind, ReduceByKeyAndWindow, Window,
};
use crate::codec::{Data, Numeric};
use crate::dstream::DStream;
use crate::function::{KeyReducer, NarrowFn, Reducer};
use crate::graph::node_name;
use crate::time::duration_ms;

impl<T: Data> DStream<T> {
    /// The WIT window for `length` and `slide` (`None`: the input's slide);
    /// a bad duration is a mistake of the definition, named after `name`.
    pub(super) fn window_of(
        &self,
        name: &Rc<str>,
        length: Duration,
        slide: Option<Duration>,
    ) -> Window {
        let mut graph = self.graph.borrow_mut();
        let mut ms = |what: &str, d: Duration| match duration_ms(d) {
            Ok(ms) => ms,
            Err(e) => {
                graph.error(format!("{name}: the window's {what}: {e}"));
                1
            }
        };
        let length_ms = ms("length", length);
        let slide_ms = slide.map(|s| ms("slide", s));
        Window {
            length_ms,
            slide_ms,
        }
    }
}

/// Windows of any stream.
impl<T: Data> DStream<T> {
    /// The records of the batches in each window: `length` long, every
    /// `slide` (Spark's `window(windowLength, slideInterval)`).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// let last_minute = lines.window(Duration::from_secs(60), Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn window(&self, length: Duration, slide: impl Into<Option<Duration>>) -> DStream<T> {
        let name = node_name("window", Location::caller());
        let window = self.window_of(&name, length, slide.into());
        self.child(&name, NodeKind::Window(window))
    }

    /// A window sliding by the input's slide (Spark's `window(windowLength)`):
    /// every batch, the last `length` of input.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// let last_20s = lines.window_length(Duration::from_secs(20));
    /// ```
    #[track_caller]
    pub fn window_length(&self, length: Duration) -> DStream<T> {
        let name = node_name("window_length", Location::caller());
        let window = self.window_of(&name, length, None);
        self.child(&name, NodeKind::Window(window))
    }

    /// One record per window: the number of records in it (Spark's
    /// `countByWindow`), counted natively.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let lines = ctx.socket_text_stream("localhost", 9999);
    /// let n: DStream<i64> = lines.count_by_window(Duration::from_secs(30), Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn count_by_window(
        &self,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<i64> {
        let name = node_name("count_by_window", Location::caller());
        let window = self.window_of(&name, length, slide.into());
        let counts: DStream<i64> = self.child(&name, NodeKind::Count);
        let windowed: DStream<i64> = counts.child(&name, NodeKind::Window(window));
        windowed.child(&name, NodeKind::Reduce(types::Reducer::Sum))
    }

    /// One record per window (none for an empty one): its records reduced
    /// with `f` (Spark's `reduceByWindow`: each batch is reduced, then the
    /// window's partial results). `f` must be associative and commutative.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let numbers: DStream<i64> = ctx.queue_stream(vec![vec![3, 9], vec![4]]);
    /// let largest = numbers.reduce_by_window(|a, b| a.max(b), Duration::from_secs(2), Duration::from_secs(1));
    /// ```
    #[track_caller]
    pub fn reduce_by_window(
        &self,
        f: impl Fn(T, T) -> T + 'static,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<T> {
        let name = node_name("reduce_by_window", Location::caller());
        let window = self.window_of(&name, length, slide.into());
        let f = self
            .graph
            .borrow_mut()
            .add_function(&name, Reducer::boxed(f));
        let reduced: DStream<T> = self.child(&name, NodeKind::Reduce(types::Reducer::Function(f)));
        let windowed: DStream<T> = reduced.child(&name, NodeKind::Window(window));
        windowed.child(&name, NodeKind::Reduce(types::Reducer::Function(f)))
    }

    /// How many times each distinct record occurs in each window (Spark's
    /// `countByValueAndWindow`): counted incrementally by the host, records
    /// whose count falls to zero dropped.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let counts: DStream<(String, i64)> =
    ///     words.count_by_value_and_window(Duration::from_secs(30), Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn count_by_value_and_window(
        &self,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(T, i64)> {
        let name = node_name("count_by_value_and_window", Location::caller());
        let window = self.window_of(&name, length, slide.into());
        let pairs: DStream<(T, ())> =
            self.child_with_function(&name, NarrowFn::map(|r: T| (r, ())), NodeKind::Map);
        pairs.child(
            &name,
            NodeKind::ReduceByKeyAndWindow(ReduceByKeyAndWindow {
                reducer: types::Reducer::Count,
                inverse: None,
                filter: Some(KeyFilter::Nonzero),
                window,
                partitions: None,
            }),
        )
    }
}

/// Built-in reducers over a whole batch of numbers, run natively.
impl<T: Numeric> DStream<T> {
    /// One record per batch (none when it is empty): the sum of its records.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let numbers: DStream<i64> = ctx.queue_stream(vec![vec![1, 2, 3]]);
    /// let total = numbers.sum();
    /// ```
    #[track_caller]
    pub fn sum(&self) -> DStream<T> {
        let name = node_name("sum", Location::caller());
        self.child(&name, NodeKind::Reduce(types::Reducer::Sum))
    }

    /// One record per batch (none when it is empty): its smallest record.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let numbers: DStream<f64> = ctx.queue_stream(vec![vec![1.5, -2.0]]);
    /// let least = numbers.min();
    /// ```
    #[track_caller]
    pub fn min(&self) -> DStream<T> {
        let name = node_name("min", Location::caller());
        self.child(&name, NodeKind::Reduce(types::Reducer::Min))
    }

    /// One record per batch (none when it is empty): its largest record.
    ///
    /// ```
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let numbers: DStream<u32> = ctx.queue_stream(vec![vec![1, 7]]);
    /// let most = numbers.max();
    /// ```
    #[track_caller]
    pub fn max(&self) -> DStream<T> {
        let name = node_name("max", Location::caller());
        self.child(&name, NodeKind::Reduce(types::Reducer::Max))
    }
}

/// Windows of key-value pairs.
impl<K, V> DStream<(K, V)>
where
    K: Data + Hash + Eq,
    V: Data,
{
    #[allow(clippy::too_many_arguments)]
    fn by_key_and_window<W: Data>(
        &self,
        name: &Rc<str>,
        reducer: types::Reducer,
        inverse: Option<u32>,
        filter: Option<KeyFilter>,
        length: Duration,
        slide: Option<Duration>,
    ) -> DStream<(K, W)> {
        let window = self.window_of(name, length, slide);
        self.child(
            name,
            NodeKind::ReduceByKeyAndWindow(ReduceByKeyAndWindow {
                reducer,
                inverse,
                filter,
                window,
                partitions: None,
            }),
        )
    }

    /// The values of each key over each window, reduced with `f` (Spark's
    /// `reduceByKeyAndWindow(func, windowLength, slideInterval)`): every
    /// window is reduced from its batches' partial results. See
    /// [`reduce_by_key_and_window_inv`](DStream::reduce_by_key_and_window_inv)
    /// for long windows.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let counts = words
    ///     .map(|w| (w, 1i64))
    ///     .reduce_by_key_and_window(|a, b| a + b, Duration::from_secs(30), Duration::from_secs(10))
    ///     .name("window-counts");
    /// ```
    #[track_caller]
    pub fn reduce_by_key_and_window(
        &self,
        f: impl Fn(V, V) -> V + 'static,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(K, V)> {
        let name = node_name("reduce_by_key_and_window", Location::caller());
        let f = self
            .graph
            .borrow_mut()
            .add_function(&name, KeyReducer::<K, V, _>::boxed(f));
        self.by_key_and_window(
            &name,
            types::Reducer::Function(f),
            None,
            None,
            length,
            slide.into(),
        )
    }

    /// The incremental form (Spark's `reduceByKeyAndWindow(func, invFunc,
    /// windowLength, slideInterval)`): each window's values are the
    /// previous window's, with the batches entering added with `f` and the
    /// batches leaving removed with `inv_f` (`inv_f(a, b)` is `a` with `b`
    /// taken out). Work is in proportion to the data entering and leaving,
    /// not to the window's length. Keys stay in the window's values (with
    /// the value `inv_f` leaves them, e.g. 0) until dropped: see
    /// [`reduce_by_key_and_window_inv_filtered`](DStream::reduce_by_key_and_window_inv_filtered).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let counts = words.map(|w| (w, 1i64)).reduce_by_key_and_window_inv(
    ///     |a, b| a + b,
    ///     |a, b| a - b,
    ///     Duration::from_secs(30),
    ///     Duration::from_secs(10),
    /// );
    /// ```
    #[track_caller]
    pub fn reduce_by_key_and_window_inv(
        &self,
        f: impl Fn(V, V) -> V + 'static,
        inv_f: impl Fn(V, V) -> V + 'static,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(K, V)> {
        let name = node_name("reduce_by_key_and_window_inv", Location::caller());
        let mut graph = self.graph.borrow_mut();
        let f = graph.add_function(&name, KeyReducer::<K, V, _>::boxed(f));
        let inv_f = graph.add_function(&name, KeyReducer::<K, V, _>::boxed(inv_f));
        drop(graph);
        self.by_key_and_window(
            &name,
            types::Reducer::Function(f),
            Some(inv_f),
            None,
            length,
            slide.into(),
        )
    }

    /// [`reduce_by_key_and_window_inv`](DStream::reduce_by_key_and_window_inv)
    /// keeping only the pairs for which `keep` is true (Spark's `filterFunc`):
    /// the others are dropped from the window's values and from its output,
    /// so that the state does not grow without bound.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let counts = words.map(|w| (w, 1i64)).reduce_by_key_and_window_inv_filtered(
    ///     |a, b| a + b,
    ///     |a, b| a - b,
    ///     |(_, count)| *count > 0,
    ///     Duration::from_secs(30),
    ///     Duration::from_secs(10),
    /// );
    /// ```
    #[track_caller]
    pub fn reduce_by_key_and_window_inv_filtered(
        &self,
        f: impl Fn(V, V) -> V + 'static,
        inv_f: impl Fn(V, V) -> V + 'static,
        keep: impl Fn(&(K, V)) -> bool + 'static,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(K, V)> {
        let name = node_name("reduce_by_key_and_window_inv_filtered", Location::caller());
        let mut graph = self.graph.borrow_mut();
        let f = graph.add_function(&name, KeyReducer::<K, V, _>::boxed(f));
        let inv_f = graph.add_function(&name, KeyReducer::<K, V, _>::boxed(inv_f));
        let keep = graph.add_function(&name, NarrowFn::filter(keep));
        drop(graph);
        self.by_key_and_window(
            &name,
            types::Reducer::Function(f),
            Some(inv_f),
            Some(KeyFilter::Function(keep)),
            length,
            slide.into(),
        )
    }

    /// The number of pairs of each key in each window, counted
    /// incrementally by the host. A key whose count falls to 0 stays, with
    /// 0, while the host keeps it; see
    /// [`count_by_key_and_window_nonzero`](DStream::count_by_key_and_window_nonzero).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, String)> = ctx.queue_stream(vec![vec![("k".into(), "v".into())]]);
    /// let counts: DStream<(String, i64)> =
    ///     pairs.count_by_key_and_window(Duration::from_secs(30), Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn count_by_key_and_window(
        &self,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(K, i64)> {
        let name = node_name("count_by_key_and_window", Location::caller());
        self.by_key_and_window(
            &name,
            types::Reducer::Count,
            None,
            None,
            length,
            slide.into(),
        )
    }

    /// [`count_by_key_and_window`](DStream::count_by_key_and_window) with the
    /// keys whose count is 0 dropped (the built-in `nonzero` filter).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, ())> = ctx.queue_stream(vec![vec![("k".into(), ())]]);
    /// let counts = pairs.count_by_key_and_window_nonzero(Duration::from_secs(30), Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn count_by_key_and_window_nonzero(
        &self,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(K, i64)> {
        let name = node_name("count_by_key_and_window_nonzero", Location::caller());
        self.by_key_and_window(
            &name,
            types::Reducer::Count,
            None,
            Some(KeyFilter::Nonzero),
            length,
            slide.into(),
        )
    }
}

/// Built-in reducers over windows of numeric values, run natively by the
/// host; `sum` is incremental (no guest inverse), `min` and `max` are not.
impl<K, V> DStream<(K, V)>
where
    K: Data + Hash + Eq,
    V: Numeric,
{
    /// The sum of the values of each key in each window, kept incrementally.
    /// A key whose sum returns to 0 stays, with 0, while the host keeps it;
    /// see [`sum_by_key_and_window_nonzero`](DStream::sum_by_key_and_window_nonzero).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let words = ctx.socket_text_stream("localhost", 9999);
    /// let counts = words
    ///     .map(|w| (w, 1i64))
    ///     .sum_by_key_and_window(Duration::from_secs(30), Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn sum_by_key_and_window(
        &self,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(K, V)> {
        let name = node_name("sum_by_key_and_window", Location::caller());
        self.by_key_and_window(&name, types::Reducer::Sum, None, None, length, slide.into())
    }

    /// [`sum_by_key_and_window`](DStream::sum_by_key_and_window) with the
    /// keys whose sum is 0 dropped (the built-in `nonzero` filter).
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![vec![("k".into(), 1)]]);
    /// let sums = pairs.sum_by_key_and_window_nonzero(Duration::from_secs(30), Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn sum_by_key_and_window_nonzero(
        &self,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(K, V)> {
        let name = node_name("sum_by_key_and_window_nonzero", Location::caller());
        self.by_key_and_window(
            &name,
            types::Reducer::Sum,
            None,
            Some(KeyFilter::Nonzero),
            length,
            slide.into(),
        )
    }

    /// The smallest value of each key in each window.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, i64)> = ctx.queue_stream(vec![vec![("k".into(), 1)]]);
    /// let minima = pairs.min_by_key_and_window(Duration::from_secs(30), Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn min_by_key_and_window(
        &self,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(K, V)> {
        let name = node_name("min_by_key_and_window", Location::caller());
        self.by_key_and_window(&name, types::Reducer::Min, None, None, length, slide.into())
    }

    /// The largest value of each key in each window.
    ///
    /// ```
    /// # use std::time::Duration;
    /// # use sluice_guest::prelude::*;
    /// # let ctx = StreamingContext::new("doc");
    /// let pairs: DStream<(String, f64)> = ctx.queue_stream(vec![vec![("k".into(), 1.0)]]);
    /// let maxima = pairs.max_by_key_and_window(Duration::from_secs(30), Duration::from_secs(10));
    /// ```
    #[track_caller]
    pub fn max_by_key_and_window(
        &self,
        length: Duration,
        slide: impl Into<Option<Duration>>,
    ) -> DStream<(K, V)> {
        let name = node_name("max_by_key_and_window", Location::caller());
        self.by_key_and_window(&name, types::Reducer::Max, None, None, length, slide.into())
    }
}
