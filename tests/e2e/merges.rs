//! The merges of early outputs (`host/src/exec/early.rs`) end to end: the
//! guide's NetworkWordCount over a real, paced TCP socket in 500 ms batches
//! of 20 ms blocks, so that every batch holds enough blocks for the map-side
//! partial counts to be merged, four at a time, while the batch waits, by
//! the guest's combine or natively by the built-in reducer. Every saved
//! batch is checked against the lines it received (as `wordcount.rs` does),
//! and the job's own log lines show how many blocks each batch had and which
//! merges it made: the `early outputs merged` debug line of `early.rs`, and
//! the workers' trace line after each guest call, which names its block.
//!
//! Three inputs: the corpus (Zipf: a batch merges until a merge stops
//! shrinking), few keys (every merge shrinks: a batch merges to the end,
//! merges of merges included) and distinct words (no merge shrinks: the
//! `unmergeable` path).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

use crate::util::{self, Output, Server, Sluice, count_words, lines_of, read_metrics, strip_ansi};
use crate::wordcount::check_batches;

/// `--block-interval`: 25 blocks in each 500 ms batch.
const BLOCK_INTERVAL: &str = "20ms";

/// The fewest blocks a batch must have had, unless it is the stream's first
/// or last: twice what one merge takes.
const MIN_BLOCKS: u64 = 8;

/// `MERGE_FAN_IN` of `early.rs`: the outputs one merge takes (the tests'
/// outputs are far below `MERGE_INPUT_BYTES`, so never fewer).
const MERGE_FAN_IN: u64 = 4;

/// The log lines the tests read: the merges (`sluice::exec::early`, debug)
/// and the guest calls with their blocks (`sluice::exec::workers`, trace).
const LOG: &str = "info,sluice::exec::early=debug,sluice::exec::workers=trace";

/// One merge, from its `early outputs merged` line.
#[derive(Debug)]
struct Merge {
    /// The block whose place in block order the merged output takes.
    block: u64,
    inputs: u64,
    bytes_in: u64,
    bytes_out: u64,
}

impl Merge {
    /// Whether it shrank what the batch holds by a quarter at least: if
    /// not, `early.rs` merges no more outputs of the chain in that batch.
    fn shrank(&self) -> bool {
        self.bytes_out * 4 <= self.bytes_in * 3
    }
}

/// What the log says about one batch.
#[derive(Debug, Default)]
struct BatchLog {
    /// The blocks the early chain ran on (a guest merge's call names its
    /// first block again, so a set).
    blocks: BTreeSet<u64>,
    merges: Vec<Merge>,
}

/// The number after `key` (e.g. ` inputs=`) on `line`.
fn number_after(line: &str, key: &str) -> Option<u64> {
    let rest = &line[line.find(key)? + key.len()..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The batches of the log on `out`'s stderr, by batch time (ms).
fn batch_logs(out: &Output) -> BTreeMap<u64, BatchLog> {
    let mut batches: BTreeMap<u64, BatchLog> = BTreeMap::new();
    for line in strip_ansi(&out.stderr).lines() {
        let number = |key: &str| {
            number_after(line, key).unwrap_or_else(|| panic!("no {key:?} in log line {line:?}"))
        };
        if line.contains("early outputs merged") {
            batches
                .entry(number(" batch="))
                .or_default()
                .merges
                .push(Merge {
                    block: number(" block="),
                    inputs: number(" inputs="),
                    bytes_in: number(" bytes_in="),
                    bytes_out: number(" bytes_out="),
                });
        } else if line.contains("instance memory") && line.contains(", block ") {
            // `task `<operator> (batch <ms> ms, block <n>)`: instance memory ...`
            batches
                .entry(number("(batch "))
                .or_default()
                .blocks
                .insert(number(", block "));
        }
    }
    batches
}

/// Which merges the input allows.
#[derive(Clone, Copy)]
enum Expect {
    /// Few keys, all in every block: every merge shrinks, so each batch
    /// merges to the end, merges of merges included.
    EveryMergeShrinks,
    /// The corpus (Zipf, most keys rare): a batch's first merges shrink;
    /// as its merged output grows with the rare keys, a merge may stop
    /// shrinking, and the batch stops merging.
    FirstMergesShrink,
    /// Every word distinct: no merge shrinks, so each batch stops merging
    /// after its first merge (or the few already under way).
    NoMergeShrinks,
}

/// Serves `text` over about 3 s in pieces 5 ms apart (several in each
/// block), runs `network-word-count` with `job_args` in 20 ms blocks to
/// the end of the stream, checks every batch's counts exactly (and the
/// total), then the blocks and merges of each batch.
fn run_with_merges(text: &str, job_args: &[(&str, &str)], expect: Expect) {
    let lines = lines_of(text);
    let expected = count_words(lines.iter().copied());

    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("out");
    let metrics_path = tmp.path().join("metrics.jsonl");
    let server = Server::serve_paced(text, 600, Duration::from_millis(5));
    let mut cmd = Sluice::socket_word_count_in_blocks(
        &tmp.path().join("data"),
        server.port,
        &prefix,
        BLOCK_INTERVAL,
    )
    .arg("--until-sources-end")
    .opt("--metrics-json", &metrics_path)
    .env("SLUICE_LOG", LOG);
    for (k, v) in job_args {
        cmd = cmd.job_arg(k, v);
    }
    let out = cmd.output();
    out.assert_success();
    server.finish();

    check_batches(&out, &lines, &expected, &prefix, &metrics_path);
    check_merges(&out, &metrics_path, expect);
}

/// Checks each batch's blocks and merges against what `early.rs` promises:
/// a merge takes [`MERGE_FAN_IN`] outputs of the batch's blocks, and while
/// merges shrink, a batch of `n` blocks is left with one to three outputs,
/// so it made exactly `(n - 1) / 3` merges (fewer once one did not shrink).
fn check_merges(out: &Output, metrics_path: &Path, expect: Expect) {
    let metrics = read_metrics(metrics_path).unwrap();
    let logs = batch_logs(out);
    for time in logs.keys() {
        assert!(
            metrics.iter().any(|m| m.batch_time_ms == *time),
            "the log names batch {time}, which has no metrics line"
        );
    }
    let with_records: Vec<u64> = metrics
        .iter()
        .filter(|m| m.records > 0)
        .map(|m| m.batch_time_ms)
        .collect();
    for m in &metrics {
        let blocks = logs.get(&m.batch_time_ms).map_or(0, |l| l.blocks.len());
        assert_eq!(
            blocks > 0,
            m.records > 0,
            "batch {} had {} records and {blocks} blocks in the log",
            m.batch_time_ms,
            m.records
        );
    }
    // The stream starts and ends anywhere in a batch; the batches between
    // had it all along.
    let full = &with_records[1..with_records.len() - 1];
    assert!(
        full.len() >= 3,
        "about 3 s of stream in 500 ms batches, but only {} batches between the first and the last",
        full.len()
    );

    let mut summary = Vec::new();
    for (time, log) in &logs {
        let n = log.blocks.len() as u64;
        let merges = log.merges.len() as u64;
        let shrank = log.merges.iter().filter(|m| m.shrank()).count() as u64;
        summary.push(format!(
            "{time}: {n} blocks, {merges} merges ({shrank} shrank)"
        ));
        for merge in &log.merges {
            assert_eq!(
                merge.inputs, MERGE_FAN_IN,
                "batch {time}: a merge of small outputs takes {MERGE_FAN_IN}: {merge:?}"
            );
            assert!(
                log.blocks.contains(&merge.block),
                "batch {time}: merge {merge:?} is not in place of one of the batch's blocks {:?}",
                log.blocks
            );
        }
        let full_merging = n.saturating_sub(1) / (MERGE_FAN_IN - 1);
        if shrank == merges {
            assert_eq!(
                merges, full_merging,
                "batch {time}: {n} blocks and every merge shrank, so {full_merging} merges; {:?}",
                log.merges
            );
        } else {
            assert!(
                merges <= full_merging,
                "batch {time}: {merges} merges of {n} blocks; {:?}",
                log.merges
            );
        }
        if !full.contains(time) {
            continue;
        }
        assert!(
            n >= MIN_BLOCKS,
            "batch {time} had only {n} blocks of {BLOCK_INTERVAL}; {}",
            summary.join("; ")
        );
        assert!(merges >= 1, "batch {time}: {n} blocks but no merge");
        match expect {
            Expect::EveryMergeShrinks => assert_eq!(
                shrank, merges,
                "batch {time}: few keys, yet a merge did not shrink: {:?}",
                log.merges
            ),
            Expect::FirstMergesShrink => assert!(
                shrank >= 1,
                "batch {time}: repeated keys, but no merge shrank: {:?}",
                log.merges
            ),
            Expect::NoMergeShrinks => {
                assert_eq!(
                    shrank, 0,
                    "batch {time}: distinct words, yet a merge shrank: {:?}",
                    log.merges
                );
                assert!(
                    merges < full_merging,
                    "batch {time}: merges did not stop: {merges} merges of {n} blocks"
                );
            }
        }
    }
    eprintln!("blocks and merges by batch: {}", summary.join("; "));
}

/// 200,000 lines of the corpus (the one `wordcount.rs` sends), whose keys
/// repeat across blocks.
fn corpus_text() -> &'static str {
    std::str::from_utf8(util::corpus(200_000)).expect("the corpus is UTF-8")
}

/// 60,000 lines of 8 words, with `word(line, w)` the `w`th word of `line`.
fn text_of(word: impl Fn(usize, usize) -> String) -> String {
    (0..60_000)
        .map(|line| {
            let words: Vec<String> = (0..8).map(|w| word(line, w)).collect();
            words.join(" ") + "\n"
        })
        .collect()
}

/// Words of 500 keys, each in every block: a merge of four partial counts
/// is a quarter of its input.
fn few_keys() -> String {
    text_of(|line, w| format!("k{}", (line * 31 + w * 17) % 500))
}

#[test]
fn merges_of_early_outputs_keep_counts_exact_with_the_guest_reducer() {
    run_with_merges(corpus_text(), &[], Expect::FirstMergesShrink);
}

#[test]
fn merges_of_early_outputs_keep_counts_exact_with_the_builtin_reducer() {
    run_with_merges(
        corpus_text(),
        &[("reducer", "builtin")],
        Expect::FirstMergesShrink,
    );
}

#[test]
fn merges_of_early_outputs_keep_counts_exact_with_owned_words() {
    run_with_merges(
        corpus_text(),
        &[("words", "owned")],
        Expect::FirstMergesShrink,
    );
}

#[test]
fn merges_to_the_end_of_each_batch_keep_counts_exact_with_the_guest_reducer() {
    run_with_merges(&few_keys(), &[], Expect::EveryMergeShrinks);
}

#[test]
fn merges_to_the_end_of_each_batch_keep_counts_exact_with_the_builtin_reducer() {
    run_with_merges(
        &few_keys(),
        &[("reducer", "builtin")],
        Expect::EveryMergeShrinks,
    );
}

#[test]
fn merges_stop_in_a_batch_whose_outputs_do_not_shrink_and_counts_stay_exact() {
    // Every word distinct: a merge's output is as large as its inputs.
    run_with_merges(
        &text_of(|line, w| format!("u{line}w{w}")),
        &[],
        Expect::NoMergeShrinks,
    );
}
