//! The keyed operators of the guide's stateful half — joins, `cogroup`,
//! `transform`, joins with a reference dataset, windows and state — run by
//! the real binary over a deterministic input: the `keyed-ops` fixture reads
//! `<key> <value>` lines files, `lines_per_batch` lines per batch (entry `i`
//! of a queue source is the `i`-th batch of the run, whatever the clock).
//! Every output batch is compared with a computation done here from the
//! batch times that `--metrics-json` reports.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::PathBuf;

use crate::util::{self, BatchMetrics, SavedBatch, Sluice, read_metrics, read_saved_batches};

const BATCH_MS: u64 = 100;

type Pairs = Vec<(String, i64)>;

/// A finished run of `keyed-ops`.
struct Run {
    /// Each batch's time and the pairs of source 0 and source 1 in it.
    batches: Vec<(u64, Pairs, Pairs)>,
    /// The saved batches of the operator's output.
    outputs: Vec<SavedBatch>,
    /// `<output>-snapshots` (for `map-with-state`).
    snapshots: Vec<SavedBatch>,
    metrics: Vec<BatchMetrics>,
    _dir: tempfile::TempDir,
}

fn parse(lines: &[&str]) -> Vec<Pairs> {
    lines
        .iter()
        .map(|line| {
            line.split(';')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once(' ').expect("test input is `k v`");
                    (k.to_string(), v.parse().expect("test values are i64"))
                })
                .collect()
        })
        .collect()
}

/// Runs `op` over `left` (and `right`, the second source): each string is one
/// batch, its pairs separated by `;` (`"a 1;b 2"`, `""` for an empty batch).
fn run(op: &str, left: &[&str], right: &[&str], args: &[(&str, String)]) -> Run {
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, batches: &[&str]| -> (PathBuf, usize) {
        // One batch per `lines_per_batch` lines: pad each batch to the
        // longest with lines that do not parse (skipped by the fixture).
        let per = batches
            .iter()
            .map(|b| b.split(';').filter(|p| !p.is_empty()).count())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut text = String::new();
        for batch in batches {
            let pairs: Vec<&str> = batch.split(';').filter(|p| !p.is_empty()).collect();
            for i in 0..per {
                text.push_str(pairs.get(i).copied().unwrap_or("-"));
                text.push('\n');
            }
        }
        let path = dir.path().join(name);
        fs::write(&path, text).unwrap();
        (path, per)
    };
    let (input, per) = write("left.txt", left);
    let output = dir.path().join("out").join("result");
    let metrics = dir.path().join("metrics.jsonl");
    let mut sluice = Sluice::run(
        &util::plugin(sluice_test_artifacts::KEYED_OPS),
        &dir.path().join("data"),
    )
    .job_arg("op", op)
    .job_arg("input", input.display())
    .job_arg("output", output.display())
    .opt("--batch-interval", format!("{BATCH_MS}ms"))
    .opt("--block-interval", "50ms")
    .opt("--metrics-json", &metrics)
    .arg("--until-sources-end");
    if !right.is_empty() {
        let (other, other_per) = write("right.txt", right);
        assert_eq!(per, other_per, "both sides have as many pairs per batch");
        sluice = sluice.job_arg("other-input", other.display());
    }
    sluice = sluice.job_arg("lines_per_batch", per);
    for (k, v) in args {
        sluice = sluice.job_arg(k, v);
    }
    sluice.output().assert_success();
    let metrics = read_metrics(&metrics).unwrap();
    util::check_metrics_shape(&metrics, BATCH_MS);
    let (left, right) = (parse(left), parse(right));
    let batches = metrics
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let side = |s: &Vec<Pairs>| s.get(i).cloned().unwrap_or_default();
            (m.batch_time_ms, side(&left), side(&right))
        })
        .collect();
    Run {
        batches,
        outputs: read_saved_batches(&output, None).unwrap(),
        snapshots: read_saved_batches(&dir.path().join("out").join("result-snapshots"), None)
            .unwrap(),
        metrics,
        _dir: dir,
    }
}

fn multiset<'a>(lines: impl IntoIterator<Item = &'a str>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for line in lines {
        *m.entry(line.to_string()).or_default() += 1;
    }
    m
}

/// Each output batch, as a multiset of lines, by batch time.
fn by_time(outputs: &[SavedBatch]) -> BTreeMap<u64, BTreeMap<String, usize>> {
    outputs
        .iter()
        .map(|b| (b.time_ms, multiset(b.lines())))
        .collect()
}

#[track_caller]
fn assert_batches_eq(
    what: &str,
    expected: BTreeMap<u64, BTreeMap<String, usize>>,
    actual: BTreeMap<u64, BTreeMap<String, usize>>,
) {
    let times = |m: &BTreeMap<u64, _>| m.keys().copied().collect::<Vec<_>>();
    assert_eq!(
        times(&actual),
        times(&expected),
        "{what}: the batches written"
    );
    for (time, want) in &expected {
        assert_eq!(&actual[time], want, "{what}: batch {time} ms");
    }
}

fn some(v: Option<i64>) -> String {
    v.map_or("None".into(), |v| format!("Some({v})"))
}

const LEFT: &[&str] = &["a 1;b 2", "a 3;a 4", "c 5;", "", "b 6;d 7"];
const RIGHT: &[&str] = &["a 10;a 30", "b 20;", "c 50;c 51", "e 1;", "d 70;"];

#[test]
fn joins_and_cogroup_pair_the_values_of_each_key_in_each_batch() {
    for op in [
        "join",
        "left-outer-join",
        "right-outer-join",
        "full-outer-join",
        "cogroup",
    ] {
        let run = run(op, LEFT, RIGHT, &[]);
        let mut expected = BTreeMap::new();
        for (time, left, right) in &run.batches {
            let keys: BTreeSet<&String> = left.iter().chain(right).map(|(k, _)| k).collect();
            let mut lines = Vec::new();
            for key in keys {
                let vs: Vec<i64> = left.iter().filter(|(k, _)| k == key).map(|p| p.1).collect();
                let ws: Vec<i64> = right
                    .iter()
                    .filter(|(k, _)| k == key)
                    .map(|p| p.1)
                    .collect();
                if op == "cogroup" {
                    let list = |xs: &[i64]| {
                        let items: Vec<String> = xs.iter().map(i64::to_string).collect();
                        format!("[{}]", items.join(", "))
                    };
                    lines.push(format!("({key},({},{}))", list(&vs), list(&ws)));
                    continue;
                }
                // On an outer join, the other side is an option: `None`
                // where the key has no value there.
                let (wrap_left, wrap_right) = match op {
                    "left-outer-join" => (false, true),
                    "right-outer-join" => (true, false),
                    "full-outer-join" => (true, true),
                    _ => (false, false),
                };
                let side = |xs: &[i64], wrap: bool| -> Vec<String> {
                    match (wrap, xs.is_empty()) {
                        (true, true) => vec!["None".into()],
                        (true, false) => xs.iter().map(|x| some(Some(*x))).collect(),
                        (false, _) => xs.iter().map(i64::to_string).collect(),
                    }
                };
                let (lefts, rights) = (side(&vs, wrap_left), side(&ws, wrap_right));
                for v in &lefts {
                    for w in &rights {
                        lines.push(format!("({key},({v},{w}))"));
                    }
                }
            }
            expected.insert(*time, multiset(lines.iter().map(String::as_str)));
        }
        assert_batches_eq(op, expected, by_time(&run.outputs));
    }
}

#[test]
fn transform_sees_every_partition_of_a_batch_in_one_call() {
    let run = run(
        "transform",
        &["b 2;a 9;c 1;a 1", "", "z 0;y 5;x 5;w 1"],
        &[],
        &[],
    );
    let mut expected = BTreeMap::new();
    for (time, pairs, _) in &run.batches {
        let mut sorted = pairs.clone();
        sorted.sort();
        let lines: Vec<String> = sorted
            .iter()
            .enumerate()
            .map(|(i, (k, v))| format!("({i},{k},{v})"))
            .collect();
        expected.insert(*time, multiset(lines.iter().map(String::as_str)));
    }
    assert_batches_eq("transform", expected, by_time(&run.outputs));
}

#[test]
fn a_stream_joins_a_reference_dataset_read_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("prices.tsv");
    fs::write(&dataset, "# key\tprice\na\t100\nb\t200\nb\t201\n").unwrap();
    for op in ["join-dataset", "left-outer-join-dataset"] {
        let run = run(
            op,
            &["a 1;z 2", "b 3;", "q 4;a 5"],
            &[],
            &[("dataset", dataset.display().to_string())],
        );
        let table = [("a", vec![100]), ("b", vec![200, 201])];
        let mut expected = BTreeMap::new();
        for (time, pairs, _) in &run.batches {
            let mut lines = Vec::new();
            for (k, v) in pairs {
                let ws = table
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, ws)| ws.clone())
                    .unwrap_or_default();
                if op == "join-dataset" {
                    lines.extend(ws.iter().map(|w| format!("({k},({v},{w}))")));
                } else if ws.is_empty() {
                    lines.push(format!("({k},({v},None))"));
                } else {
                    lines.extend(ws.iter().map(|w| format!("({k},({v},Some({w})))")));
                }
            }
            expected.insert(*time, multiset(lines.iter().map(String::as_str)));
        }
        assert_batches_eq(op, expected, by_time(&run.outputs));
    }
}

#[test]
fn a_reference_dataset_that_cannot_be_read_fails_the_batch_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let dataset = dir.path().join("bad.tsv");
    fs::write(&dataset, "a\t1\nb two\n").unwrap();
    let input = dir.path().join("in.txt");
    fs::write(&input, "a 1\n").unwrap();
    Sluice::run(
        &util::plugin(sluice_test_artifacts::KEYED_OPS),
        &dir.path().join("data"),
    )
    .job_arg("op", "join-dataset")
    .job_arg("input", input.display())
    .job_arg("dataset", dataset.display())
    .job_arg("output", dir.path().join("out").display())
    .opt("--batch-interval", "100ms")
    .opt("--block-interval", "50ms")
    .arg("--until-sources-end")
    .output()
    .assert_failure()
    .assert_stderr_contains(&["bad.tsv", "line 2", "no tab"]);
}

/// The batches of `run` in `(t - length, t]`.
fn in_window(run: &Run, t: u64, length: u64) -> impl Iterator<Item = &(u64, Pairs, Pairs)> {
    run.batches
        .iter()
        .filter(move |(time, ..)| *time + length > t && *time <= t)
}

/// The times a window of `slide` is written: the multiples of the slide from
/// the first batch on; the last is the last batch of the run, which must be
/// a multiple of the slide too (the window holding the last input is
/// written, and none after it).
fn slide_times(run: &Run, slide: u64) -> Vec<u64> {
    let first = run.metrics[0].batch_time_ms;
    let last = run.metrics.last().unwrap().batch_time_ms;
    assert_eq!(
        last % slide,
        0,
        "the run ends with the window holding its last input"
    );
    (first.div_ceil(slide) * slide..=last)
        .step_by(slide as usize)
        .collect()
}

/// Per-key sums of `pairs`.
fn sums<'a>(pairs: impl IntoIterator<Item = &'a (String, i64)>) -> BTreeMap<String, i64> {
    let mut sums = BTreeMap::new();
    for (k, v) in pairs {
        *sums.entry(k.clone()).or_insert(0) += v;
    }
    sums
}

/// Values that return to zero (`a`), negative ones, keys that come back.
const WINDOWED: &[&str] = &[
    "a 1;b 2", "a 3;", "", "a -4;c 1", "b -2;", "", "", "c 2;a 7", "", "d 1;",
];

#[test]
fn windows_cover_the_batches_of_their_length_once_per_slide() {
    let (length, slide) = (300, 200);
    let args = [
        ("length", format!("{length}ms")),
        ("slide", format!("{slide}ms")),
    ];
    let input = ["a 1;b 2", "", "", "", "c 3;", "a 1;a 2", "", "", "", "d 4;"];
    let run = run("window", &input, &[], &args);
    let mut expected = BTreeMap::new();
    for t in slide_times(&run, slide) {
        let lines: Vec<String> = in_window(&run, t, length)
            .flat_map(|(_, pairs, _)| pairs.iter().map(|(k, v)| format!("({k},{v})")))
            .collect();
        expected.insert(t, multiset(lines.iter().map(String::as_str)));
    }
    assert!(
        expected.values().any(BTreeMap::is_empty),
        "the input has an empty window, written as an empty directory"
    );
    assert_batches_eq("window", expected, by_time(&run.outputs));
}

#[test]
fn windowed_sums_match_a_recount_of_each_window() {
    let (length, slide) = (400, 200);
    // The incremental forms (built-in sum, user reducer with inverse) keep
    // keys whose sum returned to zero unless filtered, as Spark does.
    for (op, filter, drop_zeros) in [
        ("sum-window", None, false),
        ("sum-window", Some("nonzero"), true),
        ("reduce-window-inv", None, false),
        ("reduce-window-inv", Some("nonzero"), true),
        ("reduce-window", None, false),
    ] {
        let mut args = vec![
            ("length", format!("{length}ms")),
            ("slide", format!("{slide}ms")),
        ];
        if let Some(filter) = filter {
            args.push(("filter", filter.to_string()));
        }
        let run = run(op, WINDOWED, &[], &args);
        let incremental = op != "reduce-window";
        let mut seen = BTreeSet::new();
        let mut expected = BTreeMap::new();
        for t in slide_times(&run, slide) {
            let window = sums(in_window(&run, t, length).flat_map(|(_, p, _)| p));
            let mut lines = Vec::new();
            seen.extend(window.keys().cloned());
            // An incremental window keeps every key it has seen, at zero
            // once its values left, unless the filter drops it.
            let keys: Vec<String> = if incremental {
                seen.iter().cloned().collect()
            } else {
                window.keys().cloned().collect()
            };
            for k in keys {
                let v = window.get(&k).copied().unwrap_or(0);
                if !(drop_zeros && v == 0) {
                    lines.push(format!("({k},{v})"));
                }
            }
            if drop_zeros {
                seen.retain(|k| window.get(k).is_some_and(|v| *v != 0));
            }
            expected.insert(t, multiset(lines.iter().map(String::as_str)));
        }
        assert_batches_eq(&format!("{op} {filter:?}"), expected, by_time(&run.outputs));
    }
}

#[test]
fn running_state_after_each_batch_matches_the_sums_so_far() {
    let run = run("update-state", WINDOWED, &[], &[]);
    let mut expected = BTreeMap::new();
    for (i, (time, ..)) in run.batches.iter().enumerate() {
        let so_far = sums(run.batches[..=i].iter().flat_map(|(_, p, _)| p));
        let lines: Vec<String> = so_far
            .iter()
            .filter(|(_, v)| **v != 0)
            .map(|(k, v)| format!("({k},{v})"))
            .collect();
        expected.insert(*time, multiset(lines.iter().map(String::as_str)));
    }
    assert_batches_eq("update-state", expected, by_time(&run.outputs));
}

#[test]
fn map_with_state_maps_new_values_and_times_idle_keys_out_once() {
    let timeout = 300;
    let run = run(
        "map-with-state",
        &["a 1;b 2", "a 1;", "", "", "", "b 5;", "", "", "", ""],
        &[],
        &[("timeout", format!("{timeout}ms"))],
    );
    // The reference: each key's running sum and the time it was last set.
    let mut state: BTreeMap<String, (i64, u64)> = BTreeMap::new();
    let (mut mapped, mut snapshots) = (BTreeMap::new(), BTreeMap::new());
    for (time, pairs, _) in &run.batches {
        let mut lines = Vec::new();
        let touched: BTreeSet<&String> = pairs.iter().map(|(k, _)| k).collect();
        // Spark: a key times out when its state was last updated before
        // `batch time - timeout`; it is called once with no value, then
        // removed.
        let timing_out: Vec<String> = state
            .iter()
            .filter(|(k, (_, at))| !touched.contains(k) && *at + timeout < *time)
            .map(|(k, _)| k.clone())
            .collect();
        for k in timing_out {
            state.remove(&k);
            lines.push(format!("({k},None)"));
        }
        for (k, v) in pairs {
            let s = state.get(k).map_or(0, |(s, _)| *s) + v;
            if s == 0 {
                state.remove(k);
            } else {
                state.insert(k.clone(), (s, *time));
            }
            lines.push(format!("({k},{})", some(Some(s))));
        }
        mapped.insert(*time, multiset(lines.iter().map(String::as_str)));
        let snapshot: Vec<String> = state
            .iter()
            .map(|(k, (s, _))| format!("({k},{s})"))
            .collect();
        snapshots.insert(*time, multiset(snapshot.iter().map(String::as_str)));
    }
    assert!(
        mapped.values().any(|m| m.contains_key("(a,None)")),
        "the input times a key out"
    );
    assert_batches_eq("map-with-state", mapped, by_time(&run.outputs));
    assert_batches_eq("state snapshots", snapshots, by_time(&run.snapshots));
}

#[test]
fn a_stream_read_by_two_outputs_is_computed_once_per_batch() {
    let input = ["a 1;b 2;c 3", "", "d 4;e 5"];
    let run = run("persist", &input, &[], &[]);
    let pairs: usize = run.batches.iter().map(|(_, p, _)| p.len()).sum();
    // Both outputs got every record...
    let saved: usize = run.outputs.iter().map(|b| b.lines().count()).sum();
    assert_eq!(saved, pairs);
    // ...from one run of the map: the accumulator counts each record once.
    let totals = &run.metrics.last().unwrap().accumulator_totals;
    assert_eq!(
        totals.get("map-calls").copied(),
        Some(pairs as f64),
        "{totals:?}"
    );
}
