//! Tests of the windowed steps: the end-of-sources rule, and property tests
//! that drive the [`Executor`] over the `keyed-ops` fixture plugin through
//! random sequences of batches (keys from a small alphabet, values of both
//! signs whose sums return to zero, empty batches) with random window and
//! slide multiples, and compare every batch's saved output with a
//! brute-force recomputation of its window from scratch.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use sluice_test_artifacts::KEYED_OPS;

use super::*;
use crate::data::KeyGroups;
use crate::data::codec::write_pair;
use crate::exec::testing;

const SEC: u64 = 1_000;

fn step(kind: StepKind) -> Step {
    Step {
        node: 1,
        name: "w".into(),
        every: Duration::from_secs(1),
        kind,
    }
}

fn window_step(length: u64, slide: u64) -> Step {
    step(StepKind::Window {
        input: 0,
        window: Window {
            length: Duration::from_millis(length),
            slide: Some(Duration::from_millis(slide)),
        },
    })
}

fn sum_window_step(length: u64, slide: u64) -> Step {
    step(StepKind::ReduceByKeyAndWindow {
        input: 0,
        reducer: Reducer::Sum,
        inverse: None,
        filter: None,
        window: Window {
            length: Duration::from_millis(length),
            slide: Some(Duration::from_millis(slide)),
        },
        partitions: None,
        combined: false,
        state: "s".into(),
    })
}

#[test]
fn without_windows_the_last_batch_is_the_one_the_sources_ended_in() {
    let steps = [step(StepKind::Count { input: 0 })];
    assert_eq!(
        last_batch_for_windows(&steps, BatchTime(5 * SEC)),
        BatchTime(5 * SEC)
    );
}

#[test]
fn the_last_batch_is_the_latest_first_slide_multiple_whose_window_covers_the_end() {
    let end = BatchTime(5 * SEC);
    // Slide 2s: the window at 6s covers (3s, 6s], which holds 5s.
    assert_eq!(
        last_batch_for_windows(&[window_step(3 * SEC, 2 * SEC)], end),
        BatchTime(6 * SEC)
    );
    // With a reduce sliding every 4s too: its window at 8s covers (4s, 8s].
    assert_eq!(
        last_batch_for_windows(
            &[
                window_step(3 * SEC, 2 * SEC),
                sum_window_step(4 * SEC, 4 * SEC)
            ],
            end
        ),
        BatchTime(8 * SEC)
    );
    // A window of 1s every 4s never covers 5s: nothing to wait for.
    assert_eq!(
        last_batch_for_windows(&[window_step(SEC, 4 * SEC)], end),
        end
    );
    // The end on a multiple of the slide: that window.
    assert_eq!(
        last_batch_for_windows(&[window_step(3 * SEC, 5 * SEC)], end),
        end
    );
}

/// An executor for `keyed-ops` with `args` (plus `output`), on two workers
/// (so two partitions per keyed step), and the node of its source 0.
fn executor(args: &[(&str, String)], output: &Path) -> (Executor, NodeId) {
    let mut args = testing::args(args);
    args.push((
        "output".into(),
        output.to_str().expect("UTF-8 temp path").into(),
    ));
    testing::executor(KEYED_OPS, args, KeyGroups::default(), |_| {})
}

/// The `(String, i64)` records of a batch, as partitions: cut after every
/// `cut` records.
fn partitions(records: &[(String, i64)], cut: usize) -> Vec<Rows> {
    records
        .chunks(cut.max(1))
        .map(|chunk| {
            let mut rows = Rows::new();
            for (k, v) in chunk {
                rows.try_push_with(pair_len(k.as_bytes(), 8), |b| {
                    write_pair(k.as_bytes(), &v.to_le_bytes(), b)
                })
                .expect("small");
            }
            rows
        })
        .collect()
}

/// The lines saved for batch `time`, sorted; `None` when nothing was saved.
fn saved(output: &Path, time: u64) -> Option<Vec<String>> {
    let dir = PathBuf::from(format!("{}-{time}", output.display()));
    if !dir.exists() {
        return None;
    }
    assert!(
        dir.join("_SUCCESS").exists(),
        "{} is committed",
        dir.display()
    );
    let mut lines = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("a directory") {
        let path = entry.expect("an entry").path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if name.starts_with("part-") {
            let text = std::fs::read_to_string(&path).expect("a part");
            lines.extend(text.lines().map(str::to_string));
        }
    }
    lines.sort();
    Some(lines)
}

/// A random run: batches 1, 2, … at `b * 1s`; window length and slide in
/// batch intervals.
#[derive(Debug, Clone)]
struct Run {
    batches: Vec<Vec<(String, i64)>>,
    length: u64,
    slide: u64,
    cut: usize,
}

fn runs() -> impl Strategy<Value = Run> {
    let record = ("[a-d]", -3i64..=3);
    // A third of the batches empty.
    let batch = prop_oneof![
        1 => Just(Vec::new()),
        2 => proptest::collection::vec(record, 1..6),
    ];
    (
        proptest::collection::vec(batch, 1..10),
        1u64..=4,
        1u64..=4,
        1usize..4,
    )
        .prop_map(|(batches, length, slide, cut)| Run {
            batches,
            length,
            slide,
            cut,
        })
}

impl Run {
    /// The records of the batches in the window at batch `t`:
    /// `(t - length, t]`, batches numbered from 1 (past the last: empty).
    fn window(&self, t: u64) -> impl Iterator<Item = &(String, i64)> {
        let first = t.saturating_sub(self.length) + 1;
        (first.max(1)..=t)
            .filter_map(|b| self.batches.get(b as usize - 1))
            .flatten()
    }

    /// The window times up to `t`: the multiples of the slide.
    fn windows_until(&self, t: u64) -> impl Iterator<Item = u64> + '_ {
        (1..=t).filter(|w| w.is_multiple_of(self.slide))
    }

    /// Each key's values in the window at `t`, folded with `f`.
    fn fold(&self, t: u64, f: impl Fn(i64, i64) -> i64) -> BTreeMap<String, i64> {
        let mut out = BTreeMap::new();
        for (k, v) in self.window(t) {
            out.entry(k.clone())
                .and_modify(|total| *total = f(*total, *v))
                .or_insert(*v);
        }
        out
    }

    /// The keys of every window so far: an incremental reduce without a
    /// filter keeps them, at zero when their values left (as Spark does).
    fn keys_so_far(&self, t: u64) -> BTreeSet<String> {
        self.windows_until(t)
            .flat_map(|w| self.window(w).map(|(k, _)| k.clone()))
            .collect()
    }
}

fn pair_lines(pairs: impl IntoIterator<Item = (String, i64)>) -> Vec<String> {
    let mut lines: Vec<String> = pairs
        .into_iter()
        .map(|(k, v)| format!("({k},{v})"))
        .collect();
    lines.sort();
    lines
}

/// Runs `run` through `keyed-ops` with `op` (and `filter`), then, as the
/// scheduler does once sources end, empty batches up to the last window
/// that covers the last batch; checks that every batch at a multiple of the
/// slide saved exactly `expected(run, t)` and that the others saved nothing.
fn check(
    op: &str,
    filter: Option<&str>,
    run: &Run,
    expected: impl Fn(&Run, u64) -> Vec<String>,
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out");
    let mut args = vec![
        ("op", op.to_string()),
        ("length", format!("{}s", run.length)),
        ("slide", format!("{}s", run.slide)),
    ];
    if let Some(filter) = filter {
        args.push(("filter", filter.to_string()));
    }
    let (executor, source) = executor(&args, &output);
    let end = run.batches.len() as u64;
    for (i, records) in run.batches.iter().enumerate() {
        let time = BatchTime((i as u64 + 1) * SEC);
        let sources = HashMap::from([(source, partitions(records, run.cut))]);
        executor.run_batch(time, sources).expect("the batch runs");
    }
    let last = executor.end_windows_at(BatchTime(end * SEC)).as_millis() / SEC;
    let first_multiple = end.div_ceil(run.slide) * run.slide;
    let covered = first_multiple - run.length.min(first_multiple) < end;
    prop_assert_eq!(last, if covered { first_multiple } else { end });
    for t in end + 1..=last {
        executor
            .run_batch(BatchTime(t * SEC), HashMap::new())
            .expect("an empty batch runs");
    }
    for t in 1..=last {
        let got = saved(&output, t * SEC);
        if t.is_multiple_of(run.slide) {
            prop_assert_eq!(got, Some(expected(run, t)), "window at {}s", t);
        } else {
            prop_assert_eq!(got, None, "nothing between slides, at {}s", t);
        }
    }
    // Kept: no more batches than the next window reads, plus a slide for
    // the ones leaving it.
    for (node, kept) in executor.windows.lock().iter() {
        prop_assert!(
            kept.batches.len() as u64 <= run.length + run.slide,
            "step {} keeps {} batches",
            node,
            kept.batches.len()
        );
    }
    // Past its last window, a windowed step produces nothing, and the
    // output after it does not run.
    let past = last.max(first_multiple) + run.slide;
    executor
        .run_batch(BatchTime(past * SEC), HashMap::new())
        .expect("an empty batch runs");
    prop_assert_eq!(saved(&output, past * SEC), None, "no window past the end");
    Ok(())
}

/// An incremental window without a filter, at `t`: every key seen so far,
/// with its sum over the window (zero once its values left), as in Spark.
fn sums_of_every_key_so_far(run: &Run, t: u64) -> Vec<String> {
    let sums = run.fold(t, |a, b| a + b);
    pair_lines(run.keys_so_far(t).into_iter().map(|k| {
        let v = sums.get(&k).copied().unwrap_or(0);
        (k, v)
    }))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    #[test]
    fn window_holds_exactly_the_records_of_its_batches(run in runs()) {
        check("window", None, &run, |run, t| {
            pair_lines(run.window(t).cloned())
        })?;
    }

    #[test]
    fn builtin_sum_over_windows_is_incremental_and_keeps_keys_at_zero(run in runs()) {
        check("sum-window", None, &run, |run, t| {
            sums_of_every_key_so_far(run, t)
        })?;
    }

    #[test]
    fn builtin_sum_with_the_nonzero_filter_drops_keys_whose_sum_is_zero(run in runs()) {
        check("sum-window", Some("nonzero"), &run, |run, t| {
            pair_lines(run.fold(t, |a, b| a + b).into_iter().filter(|(_, v)| *v != 0))
        })?;
    }

    #[test]
    fn builtin_min_and_max_over_windows_equal_a_fold_of_the_window(run in runs()) {
        check("min-window", None, &run, |run, t| pair_lines(run.fold(t, i64::min)))?;
        check("max-window", None, &run, |run, t| pair_lines(run.fold(t, i64::max)))?;
    }

    #[test]
    fn a_guest_reducer_without_inverse_reduces_each_window(run in runs()) {
        check("reduce-window", None, &run, |run, t| pair_lines(run.fold(t, |a, b| a + b)))?;
    }

    #[test]
    fn a_guest_reducer_with_inverse_is_incremental_and_keeps_keys_at_zero(run in runs()) {
        check("reduce-window-inv", None, &run, |run, t| {
            sums_of_every_key_so_far(run, t)
        })?;
    }

    #[test]
    fn a_guest_inverse_with_a_nonzero_filter_drops_keys_returning_to_zero(run in runs()) {
        check("reduce-window-inv", Some("nonzero"), &run, |run, t| {
            pair_lines(run.fold(t, |a, b| a + b).into_iter().filter(|(_, v)| *v != 0))
        })?;
    }

    #[test]
    fn count_by_value_and_window_counts_each_key_of_the_window(run in runs()) {
        check("count-by-value-window", None, &run, |run, t| {
            let mut counts = BTreeMap::new();
            for (k, _) in run.window(t) {
                *counts.entry(k.clone()).or_insert(0i64) += 1;
            }
            pair_lines(counts)
        })?;
    }

    #[test]
    fn count_by_window_counts_the_records_of_the_window(run in runs()) {
        check("count-by-window", None, &run, |run, t| {
            vec![run.window(t).count().to_string()]
        })?;
    }

    #[test]
    fn reduce_by_window_reduces_the_values_of_the_window(run in runs()) {
        check("reduce-by-window", None, &run, |run, t| {
            run.window(t)
                .map(|(_, v)| *v)
                .reduce(|a, b| a + b)
                .map(|total| total.to_string())
                .into_iter()
                .collect()
        })?;
    }
}

#[test]
fn with_until_sources_end_the_window_holding_the_last_batch_is_written_and_no_other() {
    use crate::batching::{BatchClock, Block, BlockStore, now_ms};
    use crate::exec::scheduler::{Limits, NoHooks, run_batches};
    use crate::monitor::Metrics;
    use std::sync::Arc;

    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("out");
    let args = [
        ("op", "window".to_string()),
        ("length", "3s".to_string()),
        ("slide", "2s".to_string()),
    ];
    let (executor, source) = executor(&args, &output);
    let mut executor = Arc::new(executor);
    let store = BlockStore::new(1 << 20);
    let receiver = store.register(source, "queue".into());
    let clock = BatchClock::new(Duration::from_secs(1));
    let batch = clock.batch_for(now_ms());
    let records = vec![("a".to_string(), 1), ("b".to_string(), -2)];
    receiver.push(Block::new(batch, partitions(&records, 8).remove(0)));
    receiver.finish();
    let limits = Limits {
        until_sources_end: true,
        ..Limits::default()
    };
    run_batches(
        &mut executor,
        &store,
        &clock,
        &mut Metrics::new(None),
        limits,
        None,
        &mut NoHooks,
    )
    .expect("runs");
    let written: Vec<u64> = std::fs::read_dir(dir.path())
        .expect("the temp dir")
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_prefix("out-")?.parse().ok()
        })
        .collect();
    // The sources ended in the first batch the loop ran (`batch`, or the
    // next one if the clock ticked meanwhile): one window holds it, at the
    // first multiple of the slide from there; none is written after it.
    assert_eq!(written.len(), 1, "{written:?}");
    let at = written[0];
    assert!(
        at.is_multiple_of(2 * SEC) && at >= batch.as_millis() && at < batch.as_millis() + 3 * SEC,
        "window at {at} ms for a last batch at {batch}"
    );
    assert_eq!(saved(&output, at), Some(pair_lines(records)));
    Arc::try_unwrap(executor)
        .ok()
        .expect("the only reference")
        .workers
        .shutdown();
}

/// A window's values grow with its keys, not with a batch: its guest
/// filter gets them in pieces, as a partition's reduce, so that an
/// instance grows to a piece and not to the window. Each partition's values
/// here are three times a piece; the keys kept are exact.
#[test]
fn a_guest_filter_gets_a_large_window_in_pieces_and_keeps_exactly_the_nonzero_keys() {
    use crate::exec::pieces::CALL_INPUT_BYTES;

    let dir = tempfile::tempdir().expect("a temp dir");
    let output = dir.path().join("out");
    let args = [
        ("op", "reduce-window-inv".to_string()),
        ("filter", "nonzero".to_string()),
        ("length", "3s".to_string()),
        ("slide", "1s".to_string()),
    ];
    let (executor, source) = executor(&args, &output);
    // Distinct 40-byte keys, a third of them at zero; 2 partitions of
    // values of 3 pieces each.
    let record_bytes = 4 + 40 + 8;
    let keys = 2 * 3 * CALL_INPUT_BYTES / record_bytes;
    let records: Vec<(String, i64)> = (0..keys)
        .map(|i| (format!("{i:040}"), (i % 3) as i64))
        .collect();
    // Small partitions (chain calls far under a piece), over three batches.
    for (b, batch) in records.chunks(keys.div_ceil(3)).enumerate() {
        let time = BatchTime((b as u64 + 1) * SEC);
        let sources = HashMap::from([(source, partitions(batch, 2_000))]);
        executor.run_batch(time, sources).expect("the batch runs");
    }
    let expected = pair_lines(records.iter().filter(|(_, v)| *v != 0).cloned());
    assert_eq!(saved(&output, 3 * SEC), Some(expected));
    let partition_values = keys / 2 * record_bytes;
    let memories = executor.workers.memory_bytes();
    // Each worker kept its instance (a recycled one would show nothing).
    assert_eq!(memories.len(), testing::WORKERS, "{memories:?}");
    for memory in memories {
        assert!(
            memory < partition_values,
            "an instance of {memory} bytes, for a partition's values of {partition_values}"
        );
    }
}

/// The values of an incremental window are state: kept in the state store
/// under the operator's name, each key in its key group.
#[test]
fn incremental_window_values_are_kept_per_key_group_under_the_operator_name() {
    let dir = tempfile::tempdir().expect("a temp dir");
    let output = dir.path().join("out");
    let args = [
        ("op", "sum-window".to_string()),
        ("length", "2s".to_string()),
        ("slide", "1s".to_string()),
    ];
    let (executor, source) = executor(&args, &output);
    let batches = [
        vec![("a".to_string(), 1), ("b".to_string(), 2)],
        vec![("a".to_string(), 5), ("c".to_string(), 7)],
    ];
    for (i, batch) in batches.iter().enumerate() {
        let time = BatchTime((i as u64 + 1) * SEC);
        let sources = std::collections::HashMap::from([(source, partitions(batch, 1))]);
        executor.run_batch(time, sources).expect("the batch runs");
    }
    let state = executor.state().operator("window-sums");
    let groups = executor.state().key_groups();
    let mut kept = BTreeMap::new();
    for g in 0..groups.get() {
        for (key, value) in state.group(g).iter() {
            assert_eq!(groups.of(key), g, "{key:?} is in its key group");
            let value = i64::from_le_bytes(value.try_into().expect("an i64"));
            kept.insert(String::from_utf8(key.to_vec()).expect("UTF-8"), value);
        }
    }
    // The window at 2 s covers both batches.
    assert_eq!(
        kept,
        BTreeMap::from([("a".into(), 6), ("b".into(), 2), ("c".into(), 7)])
    );
}
