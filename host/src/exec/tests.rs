//! Tests of the [`Executor`] over a real plugin (`network-word-count`, built
//! by `sluice-test-artifacts`), driven as the scheduler drives it: blocks
//! pushed into a [`BlockStore`], handed to early chains with
//! [`Executor::ingest`], then [`Executor::run_batch`] and the release of the
//! batch's bytes. Outputs go through `save_as_text_files` into a temporary
//! directory, so counts and placement are checked exactly.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sluice_test_artifacts::NETWORK_WORD_COUNT;

use super::Executor;
use super::testing::{self, WORKERS};
use crate::batching::{BatchTime, Block, BlockStore, ReceiverHandle};
use crate::data::Rows;
use crate::data::{KeyGroups, Partitioner};

/// An executor for word count with `reducer` (`closure` or `builtin`),
/// saving each batch's counts under `output`.
fn executor(reducer: &str, output: &Path, key_groups: KeyGroups) -> Executor {
    let args = testing::args(&[
        ("host", "localhost"),
        ("port", "9"),
        ("reducer", reducer),
        ("output", output.to_str().expect("UTF-8 temp path")),
    ]);
    testing::executor(NETWORK_WORD_COUNT, args, key_groups, |_| {}).0
}

/// Lines of batch `b`, block `k`: words from a small vocabulary, with
/// repeats, a non-ASCII word and an empty word (two spaces).
fn block_lines(b: u64, k: u64) -> Vec<String> {
    (0..40 + 13 * k)
        .map(|i| {
            let n = (i * 7 + b * 3 + k) % 23;
            match n % 5 {
                0 => format!("w{n} é{n}  w{}", n % 4),
                1 => format!("the w{n}"),
                _ => format!("w{n} w{} w{n}", (n + b) % 11),
            }
        })
        .collect()
}

/// Word counts of `lines`, computed here, split as Spark's `split(" ")`.
fn count(lines: &[String], into: &mut BTreeMap<String, i64>) {
    for line in lines {
        for word in line.split(' ') {
            *into.entry(word.to_string()).or_default() += 1;
        }
    }
}

/// The `(word,count)` lines saved for batch `time`, by part file (there are
/// `partitions` of them).
fn saved(output: &Path, time: BatchTime, partitions: usize) -> Vec<BTreeMap<String, i64>> {
    let dir = PathBuf::from(format!("{}-{}", output.display(), time.as_millis()));
    assert!(
        dir.join("_SUCCESS").exists(),
        "{} is committed",
        dir.display()
    );
    assert!(
        !dir.join(format!("part-{partitions:05}")).exists(),
        "no more than {partitions} parts"
    );
    (0..partitions)
        .map(|p| {
            let text = std::fs::read_to_string(dir.join(format!("part-{p:05}"))).expect("part");
            text.lines()
                .map(|line| {
                    let inner = line
                        .strip_prefix('(')
                        .and_then(|l| l.strip_suffix(')'))
                        .expect("(word,count)");
                    let (word, n) = inner.rsplit_once(',').expect("a comma");
                    (word.to_string(), n.parse().expect("a count"))
                })
                .collect()
        })
        .collect()
}

/// Closes the receiver's batch `time` and runs it as the scheduler does,
/// releasing its bytes to the budget after.
fn run_batch_at(
    executor: &Executor,
    store: &BlockStore,
    receiver: &ReceiverHandle,
    time: BatchTime,
) {
    receiver.advance(time.as_millis());
    let input = store.take_batch(time).expect("no source fails");
    let early_bytes = executor
        .run_batch(time, input.blocks)
        .expect("the batch runs")
        .early_bytes;
    store.release(input.unreleased_bytes + early_bytes);
}

/// Runs three batches of several blocks each as the scheduler does and
/// checks, after each, the saved counts against [`count`], every word's part
/// file against the partitioner, and that the budget is back to 0.
fn run_word_count(reducer: &str, key_groups: KeyGroups) {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("counts");
    let executor = executor(reducer, &output, key_groups);
    let executor = Arc::new(executor);
    let sources = executor.early_sources();
    assert_eq!(sources.len(), 1, "the socket's only reader is a chain");
    let store = BlockStore::new(1 << 20);
    let receiver = store.register(sources[0], "socket".into());
    // One partition per worker, but no more than there are key groups.
    let partitions = WORKERS.min(key_groups.get() as usize);
    let partitioner = Partitioner::new(key_groups, partitions);

    for b in 1..=3u64 {
        let time = BatchTime(b * 1_000);
        let mut expected = BTreeMap::new();
        let mut lines_pushed = 0;
        for k in 0..3 {
            let lines = block_lines(b, k);
            count(&lines, &mut expected);
            lines_pushed += lines.len() as u64;
            receiver.push(Block::new(time, lines.iter().collect::<Rows>()));
            // A block with only invalid records counts, and holds no bytes.
            receiver.push(Block {
                batch: time,
                rows: Rows::new(),
                invalid_records: 1,
            });
            // Early chains start as blocks are cut.
            for block in store.take_early(&sources) {
                executor.ingest(block, &store);
            }
        }
        receiver.advance(time.as_millis());
        assert!(store.pending_bytes() > 0, "batch {b}'s input is held");
        let input = store.take_batch(time).expect("no source fails");
        assert_eq!(input.records, lines_pushed);
        assert_eq!(input.invalid_records, 3);
        let early_bytes = executor
            .run_batch(time, input.blocks)
            .expect("the batch runs")
            .early_bytes;
        store.release(input.unreleased_bytes + early_bytes);
        assert_eq!(store.pending_bytes(), 0, "after batch {b}");

        let parts = saved(&output, time, partitions);
        let mut got = BTreeMap::new();
        for (p, part) in parts.iter().enumerate() {
            for (word, n) in part {
                assert_eq!(
                    partitioner.partition_of(word.as_bytes()),
                    p,
                    "{word:?} in part {p}"
                );
                assert!(
                    got.insert(word.clone(), *n).is_none(),
                    "{word:?} saved once"
                );
            }
        }
        assert_eq!(got, expected, "counts of batch {b}");
    }
    receiver.finish();
    assert!(store.all_finished());
}

#[test]
fn word_count_with_a_guest_reducer_releases_the_budget_after_every_batch() {
    run_word_count("closure", KeyGroups::default());
}

#[test]
fn word_count_with_the_builtin_sum_releases_the_budget_after_every_batch() {
    run_word_count("builtin", KeyGroups::new(7).expect("valid"));
}

#[test]
fn with_fewer_key_groups_than_workers_each_partition_owns_a_key_group() {
    run_word_count("closure", KeyGroups::new(1).expect("valid"));
}

#[test]
fn a_host_panic_in_a_step_fails_the_batch_naming_the_step() {
    let output = tempfile::tempdir().unwrap();
    let executor = executor("closure", &output.path().join("out"), KeyGroups::default());
    let step = executor.plan.steps.last().expect("an output step");
    let time = BatchTime(1_000);
    let err = executor
        .catch_panic(time, step, || -> Result<(), super::ExecError> {
            panic!("index out of bounds")
        })
        .unwrap_err();
    assert!(
        matches!(&err, super::ExecError::Panic { operator, message, .. }
            if operator == &step.name && message == "index out of bounds"),
        "{err:?}"
    );
    assert!(err.to_string().contains("internal error"), "{err}");
    // Nothing is left broken: the next batch runs.
    executor.run_batch(time, Default::default()).unwrap();
    Arc::new(executor).shutdown();
}

/// Runs two batches of three blocks far larger than a piece of a chain
/// whose pairs the host combines or groups
/// ([`super::pieces::PAIRS_CHAIN_INPUT_BYTES`]), one of them holding a
/// single line larger than a piece; the blocks of the first batch run
/// early, those of the second inside the batch. After each batch the saved
/// counts are checked: the batch's own (`running` false) or those of every
/// line so far.
fn run_large_blocks(executor: Executor, output: &Path, running: bool) {
    let executor = Arc::new(executor);
    let sources = executor.early_sources();
    let store = BlockStore::new(64 << 20);
    let receiver = store.register(sources[0], "socket".into());
    let piece = super::pieces::PAIRS_CHAIN_INPUT_BYTES;
    let mut expected = BTreeMap::new();
    for b in 1..=2u64 {
        let time = BatchTime(b * 1_000);
        if !running {
            expected.clear();
        }
        for k in 0..3u64 {
            let mut lines: Vec<String> = (0..piece as u64 / 5)
                .map(|i| format!("w{} é{} w{}", (i * 31 + k) % 997, i % 13, i % 5))
                .collect();
            if k == 1 {
                lines.push((0..piece / 4).map(|i| format!("x{} ", i % 7)).collect());
            }
            assert!(lines.iter().map(String::len).sum::<usize>() > 2 * piece);
            count(&lines, &mut expected);
            receiver.push(Block::new(time, lines.iter().collect::<Rows>()));
            if b == 1 {
                for block in store.take_early(&sources) {
                    executor.ingest(block, &store);
                }
            }
        }
        run_batch_at(&executor, &store, &receiver, time);
        let got: BTreeMap<String, i64> =
            saved(output, time, WORKERS).into_iter().flatten().collect();
        assert_eq!(got, expected, "counts after batch {b}");
    }
    receiver.finish();
    executor.shutdown();
}

#[test]
fn a_grouping_chain_over_blocks_in_pieces_keeps_exact_running_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("counts");
    let args = testing::args(&[
        ("host", "localhost"),
        ("port", "9"),
        ("output", output.to_str().expect("UTF-8 temp path")),
    ]);
    let (executor, _) = testing::executor(
        sluice_test_artifacts::STATEFUL_WORD_COUNT,
        args,
        KeyGroups::default(),
        |_| {},
    );
    run_large_blocks(executor, &output, true);
}

#[test]
fn a_builtin_sum_over_blocks_in_pieces_keeps_exact_counts() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("counts");
    run_large_blocks(
        executor("builtin", &output, KeyGroups::default()),
        &output,
        false,
    );
}

/// A batch whose partitions each hold more distinct words than one call of
/// the guest's combine takes ([`super::pieces::COMBINE_INPUT_BYTES`]), so
/// that the merges of early outputs and `reduce_by_key` with the guest's
/// reducer combine in several key-disjoint pieces: every word is saved
/// once, in the part of its partition, with its exact count.
#[test]
fn a_guest_reducer_combines_large_partitions_in_key_disjoint_pieces() {
    let dir = tempfile::tempdir().expect("temp dir");
    let output = dir.path().join("counts");
    let executor = Arc::new(executor("closure", &output, KeyGroups::default()));
    let sources = executor.early_sources();
    let store = BlockStore::new(256 << 20);
    let receiver = store.register(sources[0], "socket".into());
    let partitioner = Partitioner::new(KeyGroups::default(), WORKERS);
    // A saved pair is at least a word of 8 bytes and a count of 8: this
    // many distinct words make three calls' worth a partition.
    let words = 3 * WORKERS * super::pieces::COMBINE_INPUT_BYTES / 16;
    let time = BatchTime(1_000);
    let mut expected = BTreeMap::new();
    // Five blocks: four early outputs are merged before the batch's time.
    for k in 0..5usize {
        // Every word once, and every third one again, in an order of
        // the block's own.
        let lines: Vec<String> = (0..words + words / 3)
            .map(|i| format!("k{:07}", (i * (2 * k + 1) + k) % words))
            .collect::<Vec<_>>()
            .chunks(8)
            .map(|line| line.join(" "))
            .collect();
        count(&lines, &mut expected);
        receiver.push(Block::new(time, lines.iter().collect::<Rows>()));
        for block in store.take_early(&sources) {
            executor.ingest(block, &store);
        }
    }
    run_batch_at(&executor, &store, &receiver, time);
    let mut got = BTreeMap::new();
    for (p, part) in saved(&output, time, WORKERS).into_iter().enumerate() {
        assert!(
            part.len() * 16 > 2 * super::pieces::COMBINE_INPUT_BYTES,
            "part {p} took several calls ({} words)",
            part.len()
        );
        for (word, n) in part {
            assert_eq!(partitioner.partition_of(word.as_bytes()), p, "{word:?}");
            assert!(got.insert(word, n).is_none(), "a word saved once");
        }
    }
    assert_eq!(got, expected);
    receiver.finish();
    executor.shutdown();
}
