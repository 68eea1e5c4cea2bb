//! The conformance suite: the same jobs written with every SDK (Rust,
//! Python, JavaScript), run by the real `sluice` binary over the same input,
//! each output compared with an exact computation made here. The jobs and
//! their arguments are in `tests/conformance/README.md`; the plugins in
//! `tests/conformance/plugins/`. An SDK is conformant when every test of its
//! language passes.
//!
//! The suite is a module of the end-to-end test binary (one link for all);
//! run it alone with `cargo test --release -p sluice --test e2e conformance`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::util::{self, Counts, Output, Sluice};

/// The batch interval of every run: the input is a queue (one chunk of
/// lines per batch), so the results do not depend on timing.
const BATCH_MS: u64 = 100;
/// Lines per batch.
const PER: usize = 100;
/// Batches after the input ends, so windows drain and state stays.
const TAIL_BATCHES: usize = 3;

/// An SDK under test.
#[derive(Clone, Copy, Debug)]
enum Lang {
    Rust,
    Python,
    Js,
}

impl Lang {
    fn plugin(self) -> PathBuf {
        util::plugin(match self {
            Lang::Rust => sluice_test_artifacts::CONFORMANCE_RUST,
            Lang::Python => sluice_test_artifacts::CONFORMANCE_PY,
            Lang::Js => sluice_test_artifacts::CONFORMANCE_JS,
        })
    }

    /// The file the plugin's job is written in, which an error must name.
    fn source_file(self) -> &'static str {
        match self {
            Lang::Rust => "src/lib.rs",
            Lang::Python => "app.py",
            Lang::Js => "app.js",
        }
    }

    /// One data directory per language for the whole suite, so that its
    /// component is compiled once (a Python or JavaScript component takes
    /// seconds to compile, as a user's second start shows).
    fn data_dir(self) -> &'static Path {
        static DIRS: OnceLock<[tempfile::TempDir; 3]> = OnceLock::new();
        let dirs = DIRS.get_or_init(|| {
            std::array::from_fn(|_| tempfile::tempdir().expect("a temporary data directory"))
        });
        dirs[self as usize].path()
    }
}

/// The suite's input: corpus lines with, in the middle, lines that need care
/// (non-ASCII words, empty words from two spaces, a long word, a line with
/// no word but the empty one).
fn input_lines() -> Vec<String> {
    let corpus = std::str::from_utf8(util::corpus(600)).expect("the corpus is UTF-8");
    let mut lines: Vec<String> = util::lines_of(corpus)
        .into_iter()
        .map(String::from)
        .collect();
    let special = [
        "héllo wörld 日本 héllo".to_string(),
        "two  spaces  here ".to_string(),
        "x".repeat(3000) + " tail",
        String::new(),
        "émoji 🚀 🚀".to_string(),
    ];
    for (i, line) in special.into_iter().enumerate() {
        lines.insert(250 + i * 7, line);
    }
    assert!(
        lines.iter().all(|l| !l.split(' ').any(|w| w == "boom")),
        "the input must not hold the word that makes the `failing` job fail"
    );
    lines
}

/// A second input for the join: other corpus lines, so that keys overlap
/// in part.
fn input2_lines() -> Vec<String> {
    let corpus = std::str::from_utf8(util::corpus(1300)).expect("the corpus is UTF-8");
    util::lines_of(corpus)[700..]
        .iter()
        .map(|l| l.to_string())
        .collect()
}

fn write_lines(path: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(path, text).expect("write an input file");
}

fn chunks(lines: &[String]) -> Vec<Counts> {
    lines
        .chunks(PER)
        .map(|chunk| util::count_words(chunk.iter().map(String::as_str)))
        .collect()
}

/// One run of a conformance job.
struct Run {
    output: Output,
    /// Every batch's metrics, in order: batch `k` read chunk `k`.
    metrics: Vec<util::BatchMetrics>,
    /// What `save_as_text_files` wrote, by batch time: sorted lines.
    saved: BTreeMap<u64, Vec<String>>,
}

fn run(lang: Lang, job: &str, batches: usize, extra: &[(&str, String)]) -> Run {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input = dir.path().join("input.txt");
    write_lines(&input, &input_lines());
    let metrics_path = dir.path().join("metrics.jsonl");
    let prefix = dir.path().join("out").join("batch");
    let mut cmd = Sluice::run(&lang.plugin(), lang.data_dir())
        .job_arg("job", job)
        .job_arg("input", input.display())
        .job_arg("per", PER)
        .job_arg("output", prefix.display())
        .opt("--batch-interval", format!("{BATCH_MS}ms"))
        .opt("--max-batches", batches.to_string())
        .opt("--metrics-json", &metrics_path);
    for (k, v) in extra {
        cmd = cmd.job_arg(k, v);
    }
    let output = cmd.output();
    let metrics = util::read_metrics(&metrics_path).expect("read the metrics");
    let saved = util::read_saved_batches(&prefix, None)
        .expect("read the saved batches")
        .into_iter()
        .map(|b| {
            let mut lines: Vec<String> = b.lines().map(String::from).collect();
            lines.sort();
            (b.time_ms, lines)
        })
        .collect();
    Run {
        output,
        metrics,
        saved,
    }
}

/// `(word,count)` lines, sorted, as the host's text form writes them.
fn count_lines(counts: &Counts) -> Vec<String> {
    let mut lines: Vec<String> = counts.iter().map(|(w, n)| format!("({w},{n})")).collect();
    lines.sort();
    lines
}

/// Checks that the run succeeded with one saved batch per expected time,
/// each holding exactly the expected lines.
#[track_caller]
fn assert_saved(lang: Lang, job: &str, run: &Run, expected: &BTreeMap<u64, Vec<String>>) {
    run.output.assert_success();
    let times: BTreeSet<u64> = run.saved.keys().copied().collect();
    let expected_times: BTreeSet<u64> = expected.keys().copied().collect();
    assert_eq!(
        times, expected_times,
        "{lang:?} {job}: the saved batches' times; {:?}",
        run.output
    );
    for (time, lines) in expected {
        let got = &run.saved[time];
        if got != lines {
            let missing: Vec<_> = lines.iter().filter(|l| !got.contains(l)).take(5).collect();
            let extra: Vec<_> = got.iter().filter(|l| !lines.contains(l)).take(5).collect();
            panic!(
                "{lang:?} {job}: batch {time}: {} lines expected, {} saved; missing {missing:?}, \
                 not expected {extra:?}",
                lines.len(),
                got.len()
            );
        }
    }
}

/// The batch times of a run, checked: one per batch asked for.
#[track_caller]
fn batch_times(run: &Run, batches: usize) -> Vec<u64> {
    let times: Vec<u64> = run.metrics.iter().map(|m| m.batch_time_ms).collect();
    assert_eq!(
        times.len(),
        batches,
        "one metrics line per batch; {:?}",
        run.output
    );
    times
}

fn wordcount(lang: Lang, job: &str) {
    let chunks = chunks(&input_lines());
    let batches = chunks.len() + TAIL_BATCHES;
    let run = run(lang, job, batches, &[]);
    let expected = batch_times(&run, batches)
        .into_iter()
        .enumerate()
        .map(|(k, t)| (t, chunks.get(k).map(count_lines).unwrap_or_default()))
        .collect();
    assert_saved(lang, job, &run, &expected);
}

fn wordcount_closure(lang: Lang) {
    wordcount(lang, "wordcount-closure");
}

fn wordcount_sum(lang: Lang) {
    wordcount(lang, "wordcount-sum");
}

fn windowed_wordcount(lang: Lang) {
    const WINDOW_MS: u64 = 3 * BATCH_MS;
    const SLIDE_MS: u64 = 2 * BATCH_MS;
    let chunks = chunks(&input_lines());
    let batches = chunks.len() + TAIL_BATCHES;
    let run = run(
        lang,
        "windowed-wordcount",
        batches,
        &[
            ("window-ms", WINDOW_MS.to_string()),
            ("slide-ms", SLIDE_MS.to_string()),
        ],
    );
    let times = batch_times(&run, batches);
    // A window at time T (a multiple of the slide) covers the batches in
    // (T - window, T]; keys whose count fell to zero are filtered out.
    let expected = times
        .iter()
        .filter(|t| *t % SLIDE_MS == 0)
        .map(|&t| {
            let mut window = Counts::new();
            for (k, &tk) in times.iter().enumerate() {
                if tk + WINDOW_MS > t
                    && tk <= t
                    && let Some(counts) = chunks.get(k)
                {
                    util::add_counts(&mut window, counts);
                }
            }
            (t, count_lines(&window))
        })
        .collect();
    assert_saved(lang, "windowed-wordcount", &run, &expected);
}

fn stateful_wordcount(lang: Lang) {
    let chunks = chunks(&input_lines());
    let batches = chunks.len() + TAIL_BATCHES;
    let run = run(lang, "stateful-wordcount", batches, &[]);
    let mut running = Counts::new();
    let expected = batch_times(&run, batches)
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            if let Some(counts) = chunks.get(k) {
                util::add_counts(&mut running, counts);
            }
            (t, count_lines(&running))
        })
        .collect();
    assert_saved(lang, "stateful-wordcount", &run, &expected);
}

fn join(lang: Lang) {
    let left = chunks(&input_lines());
    let right = chunks(&input2_lines());
    let batches = left.len().max(right.len()) + TAIL_BATCHES;
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input2 = dir.path().join("input2.txt");
    write_lines(&input2, &input2_lines());
    let run = run(
        lang,
        "join",
        batches,
        &[("input2", input2.display().to_string())],
    );
    let expected = batch_times(&run, batches)
        .into_iter()
        .enumerate()
        .map(|(k, t)| {
            let mut lines = Vec::new();
            if let (Some(l), Some(r)) = (left.get(k), right.get(k)) {
                for (word, a) in l {
                    if let Some(b) = r.get(word) {
                        lines.push(format!("({word},({a},{b}))"));
                    }
                }
            }
            lines.sort();
            (t, lines)
        })
        .collect();
    assert_saved(lang, "join", &run, &expected);
}

fn foreach_partition(lang: Lang) {
    let chunks = chunks(&input_lines());
    let batches = chunks.len() + TAIL_BATCHES;
    let run = run(lang, "foreach-partition", batches, &[]);
    run.output.assert_success();
    let times = batch_times(&run, batches);

    // The function's own line per call: `fp <batch time> <partition> <records>`.
    let mut calls: BTreeMap<(u64, u32), u64> = BTreeMap::new();
    for line in run.output.stderr.lines() {
        let Some((_, rest)) = line.split_once("sluice::guest: fp ") else {
            continue;
        };
        let fields: Vec<&str> = rest.split_whitespace().take(3).collect();
        let [time, partition, records] = fields[..] else {
            panic!("{lang:?}: a malformed line from the function: {line:?}");
        };
        let key = (time.parse().unwrap(), partition.parse().unwrap());
        let previous = calls.insert(key, records.parse().unwrap());
        assert!(previous.is_none(), "{lang:?}: {key:?} was called twice");
    }
    for (k, &t) in times.iter().enumerate() {
        let distinct = chunks.get(k).map_or(0, |c| c.len() as u64);
        let seen: u64 = calls.range((t, 0)..=(t, u32::MAX)).map(|(_, n)| n).sum();
        assert_eq!(
            seen, distinct,
            "{lang:?}: batch {t}: the records given to foreach_partition, over its partitions"
        );
    }
    assert!(
        calls.keys().all(|(t, _)| times.contains(t)),
        "{lang:?}: a call for a batch that did not run: {calls:?}"
    );

    // The accumulators count each record once.
    let totals = &run.metrics.last().expect("metrics").accumulator_totals;
    let records: usize = chunks.iter().map(Counts::len).sum();
    let words: i64 = chunks.iter().flat_map(|c| c.values()).sum();
    assert_eq!(
        totals.get("fp-records"),
        Some(&(records as f64)),
        "{lang:?}: {totals:?}"
    );
    assert_eq!(
        totals.get("fp-words"),
        Some(&(words as f64)),
        "{lang:?}: {totals:?}"
    );
}

fn failing(lang: Lang) {
    let mut lines = input_lines();
    // The second batch holds the word that makes the function fail.
    lines.insert(PER + 10, "a boom b".to_string());
    let dir = tempfile::tempdir().expect("a temporary directory");
    let input = dir.path().join("poisoned.txt");
    write_lines(&input, &lines);
    let prefix = dir.path().join("out").join("batch");
    let output = Sluice::run(&lang.plugin(), lang.data_dir())
        .job_arg("job", "failing")
        .job_arg("input", input.display())
        .job_arg("per", PER)
        .job_arg("output", prefix.display())
        .opt("--batch-interval", format!("{BATCH_MS}ms"))
        .opt("--max-batches", "5")
        .output();
    output.assert_failure();
    // The error names the cause, the operator and the place in the user's code.
    output.assert_stderr_contains(&[
        "conformance failure on word boom",
        "map at",
        lang.source_file(),
    ]);
    // The batch before the failure was saved whole; nothing after it.
    let saved = util::read_saved_batches(&prefix, None).expect("read the saved batches");
    assert_eq!(
        saved.len(),
        1,
        "{lang:?}: only the first batch completes; {output:?}"
    );
    let got = util::parse_counts(saved[0].lines()).expect("(word,count) lines");
    let expected = util::count_words(lines[..PER].iter().map(String::as_str));
    util::assert_counts_eq(&expected, &got, "the batch before the failure");
}

/// One test per job and language: `conformance::<job>::<language>`.
macro_rules! conformance {
    ($($job:ident),* $(,)?) => {
        $(
            mod $job {
                #[test]
                fn rust() {
                    super::$job(super::Lang::Rust);
                }
                #[test]
                fn python() {
                    super::$job(super::Lang::Python);
                }
                #[test]
                fn js() {
                    super::$job(super::Lang::Js);
                }
            }
        )*
    };
}

conformance!(
    wordcount_closure,
    wordcount_sum,
    windowed_wordcount,
    stateful_wordcount,
    join,
    foreach_partition,
    failing,
);
