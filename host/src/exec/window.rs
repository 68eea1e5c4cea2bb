//! Windowed steps: `window(length, slide)` and `reduce_by_key_and_window`.
//!
//! A windowed step runs at every batch of the stream it reads, keeping what
//! it needs, and produces its output only at the batch times `T` that are
//! multiples of its slide, covering the batches in `(T - length, T]`; in
//! between it produces nothing (`None`), and the steps after it are not due.
//! A window with no records is an empty output, which still reaches the
//! outputs.
//!
//! - `window` keeps its input's partitions per batch for
//!   `max(length, remember)`; a window's partition `i` is the concatenation
//!   of partition `i` of each of its batches.
//! - `reduce_by_key_and_window` reduces every batch by key (as
//!   `reduce_by_key`, into the step's P partitions) and keeps those
//!   per-batch partials. Without an inverse (a user reducer alone, the
//!   built-in `min` and `max`) a window reduces the partials of its
//!   batches. With one (a user inverse; the built-in `sum` and `count`,
//!   natively) it is incremental, as Spark's `ReducedWindowedDStream`: the
//!   previous window's value of each key, `inv` the partials that left, `f`
//!   the partials that entered, so the work follows the data entering and
//!   leaving, not the window's length (only the key filter and the emit go
//!   over the window's keys, as in Spark). A key with no previous value
//!   takes the reduce of what entered. A key with no previous value but
//!   values leaving was dropped by the filter while it still had values in
//!   the window: its value is recomputed from the window's partials, so
//!   results stay exact when values return to zero and come back (Spark
//!   would fail or forget them there). A filter is meant to drop keys whose
//!   value is the reducer's identity (zero counts), as in Spark; otherwise a
//!   dropped key that comes back restarts from what entered. Float sums
//!   carry the rounding of their additions and subtractions, as Spark's do.
//!
//! The window values of an incremental step (each key's value over the last
//! window) are state: they are kept in the [`super::StateStore`] under the
//! step's name, per key group, as codec bytes; partition `p` works on the key
//! groups it owns. The kept batches and per-batch partials stay here, per
//! step. Neither is counted in the byte budget.
//!
//! When the sources have ended at batch `E` (see [`Executor::end_windows_at`]),
//! each windowed step produces its window up to the first multiple of its
//! slide at or after `E`, and nothing after it.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use rayon::prelude::*;

use super::shuffle::{self, Builtin, KeyMap};
use super::state::OwnedGroups;
use super::{ExecError, Executor};
use crate::batching::BatchTime;
use crate::data::codec::{list_len, pair_len, split_pair, write_list, write_pair, write_prefixed};
use crate::data::{Codec, Number, Rows, RowsError};
use crate::plan::{FunctionId, KeyFilter, NodeId, Reducer, Stage, Step, StepKind, Window};

/// What the windowed steps keep between batches.
#[derive(Default)]
pub(super) struct Windows {
    /// By the step's node.
    kept: Mutex<hashbrown::HashMap<NodeId, Kept>>,
    /// The batch in which the sources ended, once they have.
    end: Mutex<Option<BatchTime>>,
}

/// What one windowed step keeps.
#[derive(Default)]
struct Kept {
    /// The input's partitions (`window`) or the per-batch partials by key
    /// (`reduce_by_key_and_window`), oldest first.
    batches: VecDeque<(BatchTime, Vec<Rows>)>,
    /// Incremental reduces: the time of the last window produced (its
    /// values are in the state store under the step's name).
    last: Option<BatchTime>,
}

/// Whole milliseconds of a plan's duration (validated to be whole).
fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Length and slide in milliseconds; the plan always sets the slide.
fn length_and_slide(window: &Window) -> (u64, u64) {
    let slide = window.slide.expect("a plan's windows have their slide set");
    (ms(window.length), ms(slide))
}

/// The first multiple of `slide` at or after `time`.
fn first_multiple(time: BatchTime, slide: u64) -> u64 {
    time.as_millis().div_ceil(slide).saturating_mul(slide)
}

/// The last batch to run once the sources ended at batch `end`: for each
/// windowed step whose window at the first multiple of its slide at or
/// after `end` covers `end`, that multiple; the largest of them (`end`
/// itself without windows).
pub(super) fn last_batch_for_windows(steps: &[Step], end: BatchTime) -> BatchTime {
    let mut last = end.as_millis();
    for step in steps {
        let (StepKind::Window { window, .. } | StepKind::ReduceByKeyAndWindow { window, .. }) =
            &step.kind
        else {
            continue;
        };
        let (length, slide) = length_and_slide(window);
        let at = first_multiple(end, slide);
        // The window at `at` covers `(at - length, at]`.
        if at.saturating_sub(length) < end.as_millis() {
            last = last.max(at);
        }
    }
    BatchTime(last)
}

impl Windows {
    fn lock(&self) -> std::sync::MutexGuard<'_, hashbrown::HashMap<NodeId, Kept>> {
        self.kept.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Moves what the steps `moves` names keep (node here, node in `to`)
    /// to `to`, and the end of the sources: an upgrade's handover.
    pub(super) fn hand_over(&self, to: &Windows, moves: &[(NodeId, NodeId)]) {
        let mut old = self.lock();
        let mut new = to.lock();
        for (from_node, to_node) in moves {
            if let Some(kept) = old.remove(from_node) {
                new.insert(*to_node, kept);
            }
        }
        *to.end.lock().unwrap_or_else(|e| e.into_inner()) =
            *self.end.lock().unwrap_or_else(|e| e.into_inner());
    }

    /// Whether a step with this slide is past its last window.
    fn past_end(&self, time: BatchTime, slide: u64) -> bool {
        let end = *self.end.lock().unwrap_or_else(|e| e.into_inner());
        end.is_some_and(|end| time.as_millis() > first_multiple(end, slide))
    }
}

/// Why what windows keep could not be restored from a checkpoint.
#[derive(Debug, thiserror::Error)]
#[error("the windows' kept batches in the checkpoint are malformed: {0}")]
pub struct WindowsRestoreError(String);

/// Reads what [`Executor::windows_snapshot`] wrote.
struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], WindowsRestoreError> {
        if self.0.len() < n {
            return Err(WindowsRestoreError(format!(
                "{} bytes left, {n} expected",
                self.0.len()
            )));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u32(&mut self) -> Result<u32, WindowsRestoreError> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().expect("4 bytes"),
        ))
    }

    fn u64(&mut self) -> Result<u64, WindowsRestoreError> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().expect("8 bytes"),
        ))
    }
}

impl Executor {
    /// What the windowed steps keep, as plain bytes for a checkpoint: per
    /// step (by node index), the time of its last window (`u64`, 0 for
    /// none), then its kept batches, each a time and its partitions, each
    /// partition its record count, end offsets and bytes; every integer
    /// little-endian, counts `u32`.
    pub fn windows_snapshot(&self) -> Vec<u8> {
        let kept = self.windows.lock();
        let mut out = Vec::new();
        let mut nodes: Vec<&NodeId> = kept.keys().collect();
        nodes.sort();
        out.extend_from_slice(&(nodes.len() as u32).to_le_bytes());
        for node in nodes {
            let step = &kept[node];
            out.extend_from_slice(&(*node as u32).to_le_bytes());
            out.extend_from_slice(&step.last.map_or(0, BatchTime::as_millis).to_le_bytes());
            out.extend_from_slice(&(step.batches.len() as u32).to_le_bytes());
            for (time, partitions) in &step.batches {
                out.extend_from_slice(&time.as_millis().to_le_bytes());
                out.extend_from_slice(&(partitions.len() as u32).to_le_bytes());
                for rows in partitions {
                    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
                    let mut end = 0u32;
                    for record in rows.iter() {
                        end += record.len() as u32;
                        out.extend_from_slice(&end.to_le_bytes());
                    }
                    for record in rows.iter() {
                        out.extend_from_slice(record);
                    }
                }
            }
        }
        out
    }

    /// Restores what [`Executor::windows_snapshot`] saved (before the first
    /// batch).
    pub fn restore_windows(&self, bytes: &[u8]) -> Result<(), WindowsRestoreError> {
        let mut reader = Reader(bytes);
        let mut kept = self.windows.lock();
        kept.clear();
        for _ in 0..reader.u32()? {
            let node = reader.u32()? as NodeId;
            let last = match reader.u64()? {
                0 => None,
                t => Some(BatchTime(t)),
            };
            let mut batches = VecDeque::new();
            for _ in 0..reader.u32()? {
                let time = BatchTime(reader.u64()?);
                let mut partitions = Vec::new();
                for _ in 0..reader.u32()? {
                    let count = reader.u32()? as usize;
                    let ends = (0..count)
                        .map(|_| reader.u32())
                        .collect::<Result<Vec<u32>, _>>()?;
                    let len = ends.last().copied().unwrap_or(0) as usize;
                    let data = reader.take(len)?.to_vec();
                    partitions.push(
                        Rows::from_parts(data, ends)
                            .map_err(|e| WindowsRestoreError(e.to_string()))?,
                    );
                }
                batches.push_back((time, partitions));
            }
            kept.insert(node, Kept { batches, last });
        }
        if !reader.0.is_empty() {
            return Err(WindowsRestoreError(format!(
                "{} bytes left over",
                reader.0.len()
            )));
        }
        Ok(())
    }

    /// Tells the executor that the sources ended at batch `end`; returns the
    /// last batch the scheduler should run: the largest first multiple of a
    /// windowed step's slide at or after `end` whose window covers `end`
    /// (`end` without such windows). From then on, a windowed step produces
    /// nothing after the first multiple of its slide at or after `end`.
    pub fn end_windows_at(&self, end: BatchTime) -> BatchTime {
        *self.windows.end.lock().unwrap_or_else(|e| e.into_inner()) = Some(end);
        last_batch_for_windows(&self.plan.steps, end)
    }

    /// Runs a `Window` or `ReduceByKeyAndWindow` step: `None` at the times
    /// that are not multiples of its slide.
    pub(super) fn run_windowed(
        &self,
        time: BatchTime,
        step: &Step,
        mut inputs: Vec<Vec<Rows>>,
    ) -> Result<Option<Vec<Rows>>, ExecError> {
        let input = inputs.pop().unwrap_or_default();
        let mut all = self.windows.lock();
        let kept = all.entry(step.node).or_default();
        match &step.kind {
            StepKind::Window { window, .. } => self.run_window(time, step, window, kept, input),
            StepKind::ReduceByKeyAndWindow {
                input: input_node,
                reducer,
                inverse,
                filter,
                window,
                partitions,
                combined,
                state,
            } => {
                let (length, slide) = length_and_slide(window);
                if self.windows.past_end(time, slide) {
                    return Ok(None);
                }
                let partial =
                    self.reduce_by_key(time, step, *reducer, *partitions, *combined, &input)?;
                kept.batches.push_back((time, partial));
                let incremental =
                    matches!(reducer, Reducer::Sum | Reducer::Count) || inverse.is_some();
                let output = if time.as_millis().is_multiple_of(slide) {
                    let spec = ReduceSpec {
                        state,
                        input: *input_node,
                        reducer: *reducer,
                        inverse: *inverse,
                        filter: *filter,
                        length,
                        slide,
                    };
                    Some(if incremental {
                        self.reduce_incrementally(time, step, &spec, kept)?
                    } else {
                        self.reduce_window(time, step, &spec, kept)?
                    })
                } else {
                    None
                };
                // The next window leaves the batches up to its start minus
                // a slide; one that is not incremental only reads its own.
                let keep = length + if incremental { slide } else { 0 };
                drop_before(&mut kept.batches, time, keep);
                Ok(output)
            }
            _ => unreachable!("only windowed steps are run here"),
        }
    }

    fn run_window(
        &self,
        time: BatchTime,
        step: &Step,
        window: &Window,
        kept: &mut Kept,
        input: Vec<Rows>,
    ) -> Result<Option<Vec<Rows>>, ExecError> {
        let (length, slide) = length_and_slide(window);
        if self.windows.past_end(time, slide) {
            return Ok(None);
        }
        kept.batches.push_back((time, input));
        let output = if time.as_millis().is_multiple_of(slide) {
            let start = time.as_millis().saturating_sub(length);
            let mut parts: Vec<Rows> = Vec::new();
            for (_, batch) in kept.batches.iter().filter(|(t, _)| t.as_millis() > start) {
                for (i, partition) in batch.iter().enumerate() {
                    if i == parts.len() {
                        parts.push(Rows::new());
                    }
                    parts[i]
                        .try_extend_from(partition)
                        .map_err(|e| self.data_error(time, step, e))?;
                }
            }
            Some(parts)
        } else {
            None
        };
        let remember = self.plan.remember.map_or(0, ms);
        drop_before(&mut kept.batches, time, length.max(remember));
        Ok(output)
    }
}

/// Drops the kept batches at or before `time - keep`.
fn drop_before(batches: &mut VecDeque<(BatchTime, Vec<Rows>)>, time: BatchTime, keep: u64) {
    while batches
        .front()
        .is_some_and(|(t, _)| t.as_millis().saturating_add(keep) <= time.as_millis())
    {
        batches.pop_front();
    }
}

/// What a window reduce does, from its step.
struct ReduceSpec<'s> {
    /// The name its window values are kept under.
    state: &'s str,
    input: NodeId,
    reducer: Reducer,
    inverse: Option<FunctionId>,
    filter: Option<KeyFilter>,
    length: u64,
    slide: u64,
}

/// The partials of partition `p` of the kept batches in `(from, to]`.
fn partials(
    batches: &VecDeque<(BatchTime, Vec<Rows>)>,
    p: usize,
    from: u64,
    to: u64,
) -> Vec<&Rows> {
    batches
        .iter()
        .filter(|(t, _)| t.as_millis() > from && t.as_millis() <= to)
        .filter_map(|(_, parts)| parts.get(p))
        .collect()
}

impl Executor {
    /// The reduce side of a built-in reducer over the step's partials.
    fn window_builtin(
        &self,
        time: BatchTime,
        step: &Step,
        spec: &ReduceSpec<'_>,
    ) -> Result<Builtin, ExecError> {
        let value = match self.codec(spec.input).value() {
            Some(Codec::Num(n)) => Some(*n),
            _ => None,
        };
        Builtin::map_side(spec.reducer, value)
            .map(Builtin::reduce_side)
            .ok_or_else(|| self.data_error(time, step, "a built-in reducer needs numeric values"))
    }

    /// The partitions a windowed reduce has (those of its partials).
    fn window_partitions(kept: &Kept) -> usize {
        kept.batches.back().map_or(0, |(_, parts)| parts.len())
    }

    /// A window reduced from the partials of its batches.
    fn reduce_window(
        &self,
        time: BatchTime,
        step: &Step,
        spec: &ReduceSpec<'_>,
        kept: &Kept,
    ) -> Result<Vec<Rows>, ExecError> {
        let start = time.as_millis().saturating_sub(spec.length);
        let n = Self::window_partitions(kept);
        let builtin = match spec.reducer {
            Reducer::Function(_) => None,
            _ => Some(self.window_builtin(time, step, spec)?),
        };
        self.workers.install(|| {
            (0..n)
                .into_par_iter()
                .map(|p| {
                    let inputs = partials(&kept.batches, p, start, time.as_millis());
                    match (spec.reducer, builtin) {
                        (Reducer::Function(f), _) => self.reduce_pairs(time, step, f, p, inputs),
                        (_, Some(builtin)) => builtin
                            .combine(inputs, crate::data::Partitioner::single())
                            .map(|mut one| one.remove(0))
                            .map_err(|e| self.data_error(time, step, e)),
                        (_, None) => unreachable!("set for built-in reducers"),
                    }
                })
                .collect()
        })
    }

    /// The values of each key of `inputs` (pairs) reduced with the guest's
    /// `function`, in input order: one guest call for the keys with several
    /// values, none when every key has one.
    fn reduce_pairs<'a>(
        &self,
        time: BatchTime,
        step: &Step,
        function: FunctionId,
        p: usize,
        inputs: impl IntoIterator<Item = &'a Rows>,
    ) -> Result<Rows, ExecError> {
        let (mut singles, mut lists) = shuffle::Groups::new(inputs)
            .and_then(|groups| groups.split_singles())
            .map_err(|e| self.data_error(time, step, e))?;
        if !lists.is_empty() {
            let reduced = self.reduce_groups_call(time, step, function, p, &mut lists)?;
            singles
                .try_extend_from(&reduced)
                .map_err(|e| self.data_error(time, step, e))?;
        }
        Ok(singles)
    }

    fn reduce_groups_call(
        &self,
        time: BatchTime,
        step: &Step,
        function: FunctionId,
        p: usize,
        lists: &mut Rows,
    ) -> Result<Rows, ExecError> {
        let out = self
            .call_in_pieces(step, &Self::place(time, p), lists, |instance, piece| {
                instance.reduce_groups(function, piece)
            })
            .map_err(Self::task_error(time))?;
        if out.len() != lists.len() {
            return Err(self.data_error(
                time,
                step,
                format!(
                    "the reducer returned {} values for {} keys (partition {p})",
                    out.len(),
                    lists.len()
                ),
            ));
        }
        Ok(out)
    }

    /// The next window from the previous one: `inv` what left, `f` what
    /// entered, then the key filter (see the module docs).
    fn reduce_incrementally(
        &self,
        time: BatchTime,
        step: &Step,
        spec: &ReduceSpec<'_>,
        kept: &mut Kept,
    ) -> Result<Vec<Rows>, ExecError> {
        let now = time.as_millis();
        let start = now.saturating_sub(spec.length);
        let previous = now.saturating_sub(spec.slide);
        // From scratch for the first window (or after a gap in the windows).
        let from_scratch = kept.last != Some(BatchTime(previous));
        let n = Self::window_partitions(kept);
        let state = self.state.operator(spec.state);
        if from_scratch {
            (0..n).for_each(|p| state.owned_by(p, n).clear());
        }
        // Left: in the previous window, `(previous - length, previous]`, and
        // not in this one. Entered: in this one and not in the previous.
        let (leave_from, leave_to) = (previous.saturating_sub(spec.length), start.min(previous));
        let enter_from = if from_scratch {
            start
        } else {
            start.max(previous)
        };
        let builtin = match spec.reducer {
            Reducer::Function(_) => None,
            _ => Some(self.window_builtin(time, step, spec)?),
        };
        let batches = &kept.batches;
        let result = self.workers.install(|| {
            (0..n)
                .into_par_iter()
                .map(|p| {
                    let values = &mut state.owned_by(p, n);
                    let (leaving, entering) = if from_scratch {
                        (Vec::new(), partials(batches, p, enter_from, now))
                    } else {
                        (
                            partials(batches, p, leave_from, leave_to),
                            partials(batches, p, enter_from, now),
                        )
                    };
                    let window = || partials(batches, p, start, now);
                    let slide = Slide {
                        time,
                        step,
                        p,
                        leaving,
                        entering,
                    };
                    match (builtin, spec.reducer, spec.inverse) {
                        (Some(builtin), ..) => {
                            self.slide_natively(&slide, builtin, values, window)?
                        }
                        (None, Reducer::Function(f), Some(inv)) => {
                            self.slide_with_guest(&slide, f, inv, values, window)?
                        }
                        _ => unreachable!("incremental: a built-in or an inverse"),
                    }
                    self.filter_values(&slide, spec.filter, builtin, values)?;
                    pairs_rows(values).map_err(|e| self.data_error(time, step, e))
                })
                .collect::<Result<Vec<_>, _>>()
        });
        if result.is_ok() {
            kept.last = Some(time);
        } else {
            // The values may be half updated: the next window starts over.
            kept.last = None;
        }
        result
    }

    /// One partition's slide with a built-in `sum` or `count`, natively.
    fn slide_natively<'a>(
        &self,
        slide: &Slide<'a>,
        builtin: Builtin,
        values: &mut OwnedGroups<'_>,
        window: impl FnOnce() -> Vec<&'a Rows>,
    ) -> Result<(), ExecError> {
        let error = |e| self.data_error(slide.time, slide.step, e);
        let bad_value = |key: &[u8]| {
            self.data_error(
                slide.time,
                slide.step,
                format!("the kept window value of key {key:?} is not a number of its codec"),
            )
        };
        let left = builtin
            .totals(slide.leaving.iter().copied(), |_| true)
            .map_err(error)?;
        let entered = builtin
            .totals(slide.entering.iter().copied(), |_| true)
            .map_err(error)?;
        // Keys the filter dropped while they had values in the window.
        let dropped: KeyMap<&[u8], ()> = left
            .iter()
            .filter(|(k, _)| !values.contains_key(k))
            .map(|(k, _)| (k, ()))
            .collect();
        let mut scratch = Vec::with_capacity(16);
        let mut store = |values: &mut OwnedGroups<'_>, key: &[u8], n: Number| {
            scratch.clear();
            builtin.write(n, &mut scratch);
            values.insert(key, &scratch);
        };
        for (key, out) in left.iter() {
            if let Some(prev) = values.get(key) {
                let prev = builtin.read(prev).ok_or_else(|| bad_value(key))?;
                let new = builtin
                    .inverse(prev, out)
                    .expect("incremental built-ins have an inverse");
                store(values, key, new);
            }
        }
        for (key, add) in entered.iter() {
            if dropped.contains_key(key) {
                continue;
            }
            let new = match values.get(key) {
                Some(prev) => builtin.merge(builtin.read(prev).ok_or_else(|| bad_value(key))?, add),
                None => add,
            };
            store(values, key, new);
        }
        if !dropped.is_empty() {
            let recomputed = builtin
                .totals(window(), |key| dropped.contains_key(key))
                .map_err(error)?;
            for (key, total) in recomputed.iter() {
                store(values, key, total);
            }
        }
        Ok(())
    }

    /// One partition's slide with a user reducer `f` and its inverse `inv`
    /// through the guest's `reduce-groups`.
    fn slide_with_guest<'a>(
        &self,
        slide: &Slide<'a>,
        f: FunctionId,
        inv: FunctionId,
        values: &mut OwnedGroups<'_>,
        window: impl FnOnce() -> Vec<&'a Rows>,
    ) -> Result<(), ExecError> {
        let Slide { time, step, p, .. } = *slide;
        let error = |e: RowsError| self.data_error(time, step, e);
        let left = self.reduce_pairs(time, step, f, p, slide.leaving.iter().copied())?;
        let entered = self.reduce_pairs(time, step, f, p, slide.entering.iter().copied())?;
        let left = self.pairs_of(slide, &left)?;
        let entered = self.pairs_of(slide, &entered)?;
        let dropped: KeyMap<&[u8], ()> = left
            .iter()
            .filter(|(k, _)| !values.contains_key(k))
            .map(|(k, _)| (*k, ()))
            .collect();
        // inv(prev, left), for the keys with a previous value.
        let mut lists = Rows::new();
        for (key, out) in &left {
            if let Some(prev) = values.get(key) {
                push_two(&mut lists, key, prev, out).map_err(error)?;
            }
        }
        self.apply_pairs(slide, inv, &mut lists, values)?;
        // f(prev, entered), or what entered for a key with no value.
        let mut lists = Rows::new();
        for (key, add) in &entered {
            if dropped.contains_key(*key) {
                continue;
            }
            match values.get(key) {
                Some(prev) => push_two(&mut lists, key, prev, add).map_err(error)?,
                None => values.insert(key, add),
            }
        }
        self.apply_pairs(slide, f, &mut lists, values)?;
        if !dropped.is_empty() {
            let mut of_dropped = Rows::new();
            for partial in window() {
                for record in partial {
                    if split_pair(record).is_some_and(|(k, _)| dropped.contains_key(k)) {
                        of_dropped.try_push(record).map_err(error)?;
                    }
                }
            }
            let recomputed = self.reduce_pairs(time, step, f, p, [&of_dropped])?;
            for (key, value) in self.pairs_of(slide, &recomputed)? {
                values.insert(key, value);
            }
        }
        Ok(())
    }

    /// Reduces `lists` (`tuple<k, list<v>>` records) with `function` and
    /// stores each key's result in `values`.
    fn apply_pairs(
        &self,
        slide: &Slide<'_>,
        function: FunctionId,
        lists: &mut Rows,
        values: &mut OwnedGroups<'_>,
    ) -> Result<(), ExecError> {
        if lists.is_empty() {
            return Ok(());
        }
        let out = self.reduce_groups_call(slide.time, slide.step, function, slide.p, lists)?;
        for (key, value) in self.pairs_of(slide, &out)? {
            values.insert(key, value);
        }
        Ok(())
    }

    /// The window values the step's key filter keeps (all without one).
    fn filter_values(
        &self,
        slide: &Slide<'_>,
        filter: Option<KeyFilter>,
        builtin: Option<Builtin>,
        values: &mut OwnedGroups<'_>,
    ) -> Result<(), ExecError> {
        match filter {
            None => Ok(()),
            Some(KeyFilter::Nonzero) => {
                let builtin = builtin.ok_or_else(|| {
                    self.data_error(
                        slide.time,
                        slide.step,
                        "the nonzero filter needs a built-in",
                    )
                })?;
                values.retain(|_, v| !builtin.is_zero(v));
                Ok(())
            }
            Some(KeyFilter::Function(f)) => {
                if values.is_empty() {
                    return Ok(());
                }
                let mut pairs =
                    pairs_rows(values).map_err(|e| self.data_error(slide.time, slide.step, e))?;
                // In pieces, as a partition's reduce: the window's values
                // grow with its keys, an instance with its largest call.
                let kept = self
                    .call_in_pieces(
                        slide.step,
                        &Self::place(slide.time, slide.p),
                        &mut pairs,
                        |instance, piece| instance.run_chain(&[Stage::Apply(f)], piece),
                    )
                    .map_err(Self::task_error(slide.time))?;
                let keep: KeyMap<&[u8], ()> = self
                    .pairs_of(slide, &kept)?
                    .into_iter()
                    .map(|(key, _)| (key, ()))
                    .collect();
                values.retain(|key, _| keep.contains_key(key));
                Ok(())
            }
        }
    }

    /// The `(key, value)` of each record of `rows`.
    fn pairs_of<'r>(&self, slide: &Slide<'_>, rows: &'r Rows) -> Result<Vec<Pair<'r>>, ExecError> {
        rows.iter()
            .enumerate()
            .map(|(index, record)| {
                split_pair(record).ok_or_else(|| {
                    self.data_error(
                        slide.time,
                        slide.step,
                        shuffle::ShuffleError::NotAPair { index },
                    )
                })
            })
            .collect()
    }
}

/// An encoded key and value.
type Pair<'r> = (&'r [u8], &'r [u8]);

/// One partition of a window's slide.
struct Slide<'a> {
    time: BatchTime,
    step: &'a Step,
    p: usize,
    /// The partials of the batches that left the window.
    leaving: Vec<&'a Rows>,
    /// The partials of the batches that entered it.
    entering: Vec<&'a Rows>,
}

/// Appends `tuple<key, list<[a, b]>>`: the two values a reducer folds.
fn push_two(out: &mut Rows, key: &[u8], a: &[u8], b: &[u8]) -> Result<(), RowsError> {
    let items = [a, b];
    out.try_push_with(pair_len(key, list_len(items)), |buf| {
        write_prefixed(key, buf)?;
        write_list(items.into_iter(), buf)
    })
}

/// The `(k, v)` pair records of `values`.
fn pairs_rows(values: &OwnedGroups<'_>) -> Result<Rows, RowsError> {
    let mut rows = Rows::with_capacity(values.len(), 0);
    for (key, value) in values.iter() {
        rows.try_push_with(pair_len(key, value.len()), |buf| {
            write_pair(key, value, buf)
        })?;
    }
    Ok(rows)
}

#[cfg(test)]
#[path = "window_tests.rs"]
mod tests;
