//! The `all-operators` plugin: every source, operator and output of the SDK,
//! each result checked, batch by batch, against a computation done here in
//! plain Rust (see the table at the top of `plugins/all-operators/src/lib.rs`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::time::Duration;

use crate::util::{
    self, BatchMetrics, Output, PrintedBatch, SavedBatch, Sluice, parse_printed, read_metrics,
};

/// The input file, `LINES_PER_BATCH` lines per batch. It has an empty line,
/// double, leading and trailing spaces (empty words), multi-byte characters
/// (first chars and byte lengths differ from char counts), repeated words and
/// words of equal length (tie-breaks).
const INPUT: &[&str] = &[
    "the quick brown fox",
    "the  lazy dog",
    "",
    "élan über alles über",
    "a b a b a",
    "zebra zzz yak",
    "the end",
    " leading space",
    "trailing space ",
    "x",
];
const LINES_PER_BATCH: usize = 3;
/// The longest source (the lines file and `queue_squares`) has 4 batches;
/// with `--until-sources-end` the job ends after them.
const BATCHES: usize = 4;

/// What one stream must contain in each batch, as a multiset of lines.
type Expected = Vec<Vec<String>>;

fn multiset(lines: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    for l in lines {
        *m.entry(l).or_default() += 1;
    }
    m
}

fn first(w: &str) -> String {
    w.chars().take(1).collect()
}

fn words(lines: &[&str]) -> Vec<String> {
    lines
        .iter()
        .flat_map(|l| l.split(' '))
        .map(String::from)
        .collect()
}

fn nonempty(lines: &[&str]) -> Vec<String> {
    words(lines).into_iter().filter(|w| !w.is_empty()).collect()
}

/// Applies `f` to the lines of each of the `BATCHES` batches.
fn per_batch(f: impl Fn(&[&str]) -> Vec<String>) -> Expected {
    (0..BATCHES)
        .map(|i| {
            let start = (i * LINES_PER_BATCH).min(INPUT.len());
            let end = ((i + 1) * LINES_PER_BATCH).min(INPUT.len());
            f(&INPUT[start..end])
        })
        .collect()
}

/// `(key, value)` lines of a per-key aggregate.
fn per_key<K: Ord + std::fmt::Display, V>(
    items: impl IntoIterator<Item = (K, V)>,
    init: impl Fn() -> V,
    fold: impl Fn(V, V) -> V,
    show: impl Fn(&V) -> String,
) -> Vec<String> {
    let mut m: BTreeMap<K, V> = BTreeMap::new();
    for (k, v) in items {
        let old = m.remove(&k).unwrap_or_else(&init);
        m.insert(k, fold(old, v));
    }
    m.iter()
        .map(|(k, v)| format!("({k},{})", show(v)))
        .collect()
}

fn counts_of(ws: impl IntoIterator<Item = String>) -> Vec<String> {
    per_key(
        ws.into_iter().map(|w| (w, 1i64)),
        || 0,
        |a, b| a + b,
        i64::to_string,
    )
}

/// A float as the host prints it: Rust's `{:?}`, which always has a decimal.
fn float(x: f64) -> String {
    format!("{x:?}")
}

/// Every stream of the plugin with its expected batches, and the number of
/// part files it must have when its batch has input (`None`: any).
fn expected_streams() -> Vec<(&'static str, Expected, Option<usize>)> {
    let upper = |l: &[&str]| l.iter().map(|l| l.to_ascii_uppercase()).collect::<Vec<_>>();
    let len = |w: &str| w.len() as i64;
    vec![
        (
            "lines",
            per_batch(|l| l.iter().map(|s| s.to_string()).collect()),
            None,
        ),
        ("map", per_batch(upper), None),
        ("flat_map", per_batch(words), None),
        ("filter", per_batch(nonempty), None),
        (
            "map_partitions",
            per_batch(|l| nonempty(l).iter().map(|w| len(w).to_string()).collect()),
            None,
        ),
        ("repartition", per_batch(nonempty), Some(3)),
        (
            "union",
            per_batch(|l| [nonempty(l), upper(l)].concat()),
            None,
        ),
        (
            "context_union",
            per_batch(|l| {
                let lines: Vec<String> = l.iter().map(|s| s.to_string()).collect();
                [lines, upper(l), nonempty(l)].concat()
            }),
            None,
        ),
        ("count", per_batch(|l| vec![l.len().to_string()]), None),
        (
            "reduce",
            per_batch(|l| {
                nonempty(l)
                    .into_iter()
                    .max_by(|a, b| (a.len(), a.as_bytes()).cmp(&(b.len(), b.as_bytes())))
                    .into_iter()
                    .collect()
            }),
            None,
        ),
        (
            "count_by_value",
            per_batch(|l| counts_of(nonempty(l))),
            None,
        ),
        ("reduce_by_key", per_batch(|l| counts_of(nonempty(l))), None),
        (
            "reduce_by_key_with_partitions",
            per_batch(|l| {
                per_key(
                    nonempty(l).into_iter().map(|w| (len(&w), w)),
                    || String::from("\u{10FFFF}"),
                    |a, b| a.min(b),
                    String::clone,
                )
            }),
            Some(3),
        ),
        (
            "group_by_key",
            per_batch(|l| {
                let mut groups: BTreeMap<String, Vec<String>> = BTreeMap::new();
                for w in nonempty(l) {
                    groups.entry(first(&w)).or_default().push(w);
                }
                groups
                    .into_iter()
                    .map(|(k, mut ws)| {
                        ws.sort();
                        format!("({k},[{}])", ws.join(", "))
                    })
                    .collect()
            }),
            None,
        ),
        (
            "group_by_key_with_partitions",
            per_batch(|l| counts_of(nonempty(l))),
            Some(2),
        ),
        (
            "map_values",
            per_batch(|l| {
                nonempty(l)
                    .iter()
                    .map(|w| format!("({w},{})", 10 * len(w)))
                    .collect()
            }),
            None,
        ),
        (
            "flat_map_values",
            per_batch(|l| {
                nonempty(l)
                    .iter()
                    .flat_map(|w| [format!("({w},{})", len(w)), format!("({w},{})", -len(w))])
                    .collect()
            }),
            None,
        ),
        (
            "sum_by_key",
            per_batch(|l| {
                per_key(
                    nonempty(l).into_iter().map(|w| {
                        let n = len(&w);
                        (w, n)
                    }),
                    || 0,
                    |a, b| a + b,
                    i64::to_string,
                )
            }),
            None,
        ),
        (
            "sum_by_key_with_partitions",
            per_batch(|l| {
                per_key(
                    nonempty(l).iter().map(|w| (first(w), 0.5f64)),
                    || 0.0,
                    |a, b| a + b,
                    |v| float(*v),
                )
            }),
            Some(2),
        ),
        (
            "min_by_key",
            per_batch(|l| {
                per_key(
                    nonempty(l).iter().map(|w| (first(w), len(w))),
                    || i64::MAX,
                    i64::min,
                    i64::to_string,
                )
            }),
            None,
        ),
        (
            "min_by_key_with_partitions",
            per_batch(|l| {
                per_key(
                    nonempty(l).iter().map(|w| (first(w), len(w))),
                    || i64::MAX,
                    i64::min,
                    i64::to_string,
                )
            }),
            Some(2),
        ),
        (
            "max_by_key",
            per_batch(|l| {
                per_key(
                    nonempty(l).iter().map(|w| (first(w), len(w))),
                    || i64::MIN,
                    i64::max,
                    |v| float(*v as f64),
                )
            }),
            None,
        ),
        (
            "max_by_key_with_partitions",
            per_batch(|l| {
                per_key(
                    nonempty(l).iter().map(|w| (first(w), len(w))),
                    || i64::MIN,
                    i64::max,
                    i64::to_string,
                )
            }),
            Some(2),
        ),
        (
            "count_by_key",
            per_batch(|l| counts_of(nonempty(l).iter().map(|w| first(w)))),
            None,
        ),
        (
            "count_by_key_with_partitions",
            per_batch(|l| counts_of(nonempty(l).iter().map(|w| len(w).to_string()))),
            Some(2),
        ),
        (
            "tuples",
            per_batch(|l| {
                l.iter()
                    .map(|line| {
                        let first_word = match line.split(' ').find(|w| !w.is_empty()) {
                            Some(w) => format!("Some({w})"),
                            None => "None".to_string(),
                        };
                        format!("({},{first_word},{})", line.len(), line.is_empty())
                    })
                    .collect()
            }),
            None,
        ),
        (
            "queue_squares",
            queue(&[&["1", "4", "9"], &["16", "25"], &[], &["36"]]),
            None,
        ),
        (
            "queue_pairs",
            queue(&[&["(a,4)", "(b,2)"], &["(b,4)"]]),
            None,
        ),
    ]
}

/// A queue stream's batches, then empty ones.
fn queue(batches: &[&[&str]]) -> Expected {
    (0..BATCHES)
        .map(|i| {
            batches
                .get(i)
                .map(|b| b.iter().map(|s| s.to_string()).collect())
                .unwrap_or_default()
        })
        .collect()
}

/// Runs `all-operators` over [`INPUT`] with `--arg`s `extra` and the options
/// `options`, which must end it after `batches` batches.
fn run(
    extra: &[(&str, &str)],
    options: &[&str],
    batches: usize,
) -> (tempfile::TempDir, Output, Vec<BatchMetrics>) {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.txt");
    let mut text = INPUT.join("\n");
    text.push('\n');
    fs::write(&input, text).unwrap();
    let metrics_path = tmp.path().join("metrics.jsonl");
    let mut cmd = Sluice::run(
        &util::plugin(sluice_test_artifacts::ALL_OPERATORS),
        &tmp.path().join("data"),
    )
    .job_arg("input", input.display())
    .job_arg("lines_per_batch", LINES_PER_BATCH)
    .job_arg("output", tmp.path().join("out").display())
    .opt("--batch-interval", "200ms")
    .opt("--metrics-json", &metrics_path);
    for (k, v) in extra {
        cmd = cmd.job_arg(k, v);
    }
    for option in options {
        cmd = cmd.arg(option);
    }
    let out = cmd.timeout(Duration::from_secs(120)).output();
    out.assert_success();
    let metrics = read_metrics(&metrics_path).unwrap();
    assert_eq!(metrics.len(), batches, "number of batches; {out:?}");
    (tmp, out, metrics)
}

/// The saved batches of `stream`, one per batch of `metrics`, in order.
fn saved(tmp: &tempfile::TempDir, stream: &str, metrics: &[BatchMetrics]) -> Vec<SavedBatch> {
    let batches = util::read_saved_batches(&tmp.path().join("out").join(stream), None)
        .unwrap_or_else(|e| panic!("{stream}: {e:#}"));
    let times: Vec<u64> = batches.iter().map(|b| b.time_ms).collect();
    let expected: Vec<u64> = metrics.iter().map(|m| m.batch_time_ms).collect();
    assert_eq!(
        times, expected,
        "stream `{stream}`: one complete directory per batch"
    );
    batches
}

#[test]
fn all_operators_match_an_independent_computation() {
    let (tmp, out, metrics) = run(&[], &["--until-sources-end"], BATCHES);
    util::check_metrics_shape(&metrics, 200);

    let mut failures = Vec::new();
    for (stream, expected, parts) in expected_streams() {
        let batches = saved(&tmp, stream, &metrics);
        for (i, (batch, want)) in batches.iter().zip(&expected).enumerate() {
            let got = multiset(batch.lines().map(String::from));
            let want = multiset(want.iter().cloned());
            if got != want {
                failures.push(format!(
                    "`{stream}` batch {i} ({}): expected {want:?}, got {got:?}",
                    batch.time_ms
                ));
            }
            let has_input = i * LINES_PER_BATCH < INPUT.len();
            if let Some(parts) = parts
                && has_input
                && batch.parts.len() != parts
            {
                failures.push(format!(
                    "`{stream}` batch {i}: {} part files, expected {parts}",
                    batch.parts.len()
                ));
            }
        }
    }

    // `json`: compared as JSON values, not text.
    let json = saved(&tmp, "json", &metrics);
    let want_json = per_batch(|l| {
        l.iter()
            .map(|line| {
                serde_json::json!({"text": line, "words": line.split(' ').count()}).to_string()
            })
            .collect()
    });
    for (i, (batch, want)) in json.iter().zip(&want_json).enumerate() {
        let parse = |l: &str| -> String {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("`json` batch {i}: {l:?} is not JSON: {e}"))
                .to_string()
        };
        let got = multiset(batch.lines().map(parse));
        let want = multiset(want.iter().map(|l| parse(l)));
        if got != want {
            failures.push(format!("`json` batch {i}: expected {want:?}, got {got:?}"));
        }
    }

    check_prints(&out, &metrics, &mut failures);
    check_foreach_partition(&out, &metrics, &mut failures);

    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}\n{out:?}",
        failures.len(),
        failures.join("\n")
    );
}

/// `count.print()` and `reduce_by_key.print_n(3)`: two blocks per batch.
fn check_prints(out: &Output, metrics: &[BatchMetrics], failures: &mut Vec<String>) {
    let printed = match parse_printed(&out.stdout) {
        Ok(p) => p,
        Err(e) => return failures.push(format!("stdout is not print() output: {e:#}")),
    };
    let counts = per_batch(|l| counts_of(nonempty(l)));
    for (i, m) in metrics.iter().enumerate() {
        let blocks: Vec<_> = printed
            .iter()
            .filter(|p| p.time_ms == m.batch_time_ms)
            .collect();
        if blocks.len() != 2 {
            failures.push(format!(
                "batch {i} ({}): {} print blocks, expected 2 (count, reduce_by_key)",
                m.batch_time_ms,
                blocks.len()
            ));
            continue;
        }
        let lines = per_batch(|l| vec![l.len().to_string()])[i].clone();
        let is_count =
            |b: &&&PrintedBatch| b.elements.len() == 1 && b.elements[0].parse::<i64>().is_ok();
        let (count, words): (Vec<&&PrintedBatch>, Vec<&&PrintedBatch>) =
            blocks.iter().partition(is_count);
        match (count.as_slice(), words.as_slice()) {
            ([count], [words]) => {
                if count.elements != lines {
                    failures.push(format!(
                        "batch {i}: printed count {:?}, expected {lines:?}",
                        count.elements
                    ));
                }
                let all: BTreeSet<&String> = counts[i].iter().collect();
                let shown = words.elements.len();
                if shown > 3 || words.elements.iter().any(|e| !all.contains(e)) {
                    failures.push(format!(
                        "batch {i}: print_n(3) showed {:?}, not 3 of {all:?}",
                        words.elements
                    ));
                }
                if shown != all.len().min(3) || words.truncated != (all.len() > 3) {
                    failures.push(format!(
                        "batch {i}: print_n(3) showed {shown} (truncated: {}) of {}",
                        words.truncated,
                        all.len()
                    ));
                }
            }
            _ => failures.push(format!(
                "batch {i}: cannot tell the count block from the word block: {blocks:?}"
            )),
        }
    }
}

/// The `foreach_partition` writes `all-operators foreach_partition
/// batch=<ms> partition=<p> records=<n>` to the guest's stdout, which the
/// host logs: the `n` of one batch add up to the batch's non-empty words.
fn check_foreach_partition(out: &Output, metrics: &[BatchMetrics], failures: &mut Vec<String>) {
    let mut seen: HashMap<(u64, u64), u64> = HashMap::new();
    for line in out.stderr.lines().chain(out.stdout.lines()) {
        let Some(rest) = line.split("all-operators foreach_partition ").nth(1) else {
            continue;
        };
        let field = |name: &str| -> Option<u64> {
            rest.split_whitespace()
                .find_map(|f| f.strip_prefix(name)?.strip_prefix('='))
                .and_then(|v| v.trim_matches(|c: char| !c.is_ascii_digit()).parse().ok())
        };
        let key = rest.split_whitespace().find_map(|f| f.strip_prefix("key="));
        match (field("batch"), field("partition"), field("records")) {
            (Some(b), Some(p), Some(n)) => {
                // The idempotency key is (job, batch time, partition).
                let expected = format!("AllOperators/{b}/{p}");
                if key != Some(expected.as_str()) {
                    failures.push(format!("idempotency key {key:?}, expected {expected}"));
                }
                // A retried task prints again with the same (batch, partition).
                seen.insert((b, p), n);
            }
            _ => failures.push(format!("malformed foreach_partition line: {line:?}")),
        }
    }
    let words = per_batch(nonempty);
    for (i, m) in metrics.iter().enumerate() {
        let total: u64 = seen
            .iter()
            .filter(|((b, _), _)| *b == m.batch_time_ms)
            .map(|(_, n)| n)
            .sum();
        let calls = seen.keys().filter(|(b, _)| *b == m.batch_time_ms).count();
        if calls == 0 || total != words[i].len() as u64 {
            failures.push(format!(
                "batch {i}: foreach_partition saw {total} records in {calls} calls, expected {} \
                 (one call per partition, empty ones too)",
                words[i].len()
            ));
        }
    }
}

#[test]
fn rate_stream_counters_are_consecutive_and_each_seen_once() {
    let (tmp, out, metrics) = run(&[("rate", "50")], &["--max-batches", "6"], 6);
    let mut counters = Vec::new();
    for batch in saved(&tmp, "rate", &metrics) {
        for line in batch.lines() {
            let n: i64 = line
                .parse()
                .unwrap_or_else(|_| panic!("rate counter {line:?} is not an integer"));
            counters.push(n);
        }
    }
    counters.sort_unstable();
    let want: Vec<i64> = (0..counters.len() as i64).collect();
    assert_eq!(counters, want, "counters 0..n, each once; {out:?}");
    // 50 records/s for about 1.2 s of batches.
    assert!(
        (10..=200).contains(&counters.len()),
        "{} rate records in 6 batches of 200 ms at 50/s",
        counters.len()
    );
}
