//! The guide's NetworkWordCount over a real TCP socket: 200,000 lines of the
//! corpus (`sluice-corpus`), checked against counts computed here, in total
//! and batch by batch.

use std::path::Path;
use std::time::Duration;

use crate::util::{
    self, Counts, Output, Server, Sluice, assert_counts_eq, check_metrics_shape, count_words,
    lines_of, parse_counts, parse_printed, read_metrics, read_saved_batches,
};

const LINES: usize = 200_000;
const BATCH_INTERVAL_MS: u64 = 500;

/// Serves the corpus, runs `network-word-count` to the end of the stream and
/// checks every saved batch against the lines that batch received.
fn run_word_count(extra_args: &[(&str, &str)]) {
    let corpus = util::corpus(LINES);
    let text = std::str::from_utf8(corpus).expect("the corpus is UTF-8");
    let lines = lines_of(text);
    assert_eq!(lines.len(), LINES);
    let expected = count_words(lines.iter().copied());

    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("out");
    let metrics_path = tmp.path().join("metrics.jsonl");
    // About 3 s of data: several batches of 500 ms, so that the per-batch
    // check below means something.
    let server = Server::serve_paced(corpus, 30, Duration::from_millis(100));

    let mut cmd = Sluice::socket_word_count(&tmp.path().join("data"), server.port, &prefix)
        .arg("--until-sources-end")
        .opt("--metrics-json", &metrics_path);
    for (k, v) in extra_args {
        cmd = cmd.job_arg(k, v);
    }
    let out = cmd.output();
    out.assert_success();
    server.finish();

    check_batches(&out, &lines, &expected, &prefix, &metrics_path);
}

/// Checks the saved batches, the metrics and the printed output of a word
/// count over `lines` from one socket, in 500 ms batches.
pub(crate) fn check_batches(
    out: &Output,
    lines: &[&str],
    expected: &Counts,
    prefix: &Path,
    metrics_path: &Path,
) {
    let metrics = read_metrics(metrics_path).unwrap();
    check_metrics_shape(&metrics, BATCH_INTERVAL_MS);
    let records: u64 = metrics.iter().map(|m| m.records).sum();
    assert_eq!(
        records,
        lines.len() as u64,
        "the batches' `records` do not add up to the lines sent; {out:?}"
    );

    let batches = read_saved_batches(prefix, None).unwrap();
    let mut total = Counts::new();
    let mut per_batch = std::collections::HashMap::new();
    for batch in &batches {
        let counts = parse_counts(batch.lines())
            .unwrap_or_else(|e| panic!("{}: {e:#}", batch.dir.display()));
        for (word, n) in &counts {
            assert!(*n > 0, "{}: count {n} for {word:?}", batch.dir.display());
        }
        util::add_counts(&mut total, &counts);
        per_batch.insert(batch.time_ms, counts);
    }
    assert_counts_eq(
        expected,
        &total,
        "sum of all saved batches vs. exact counts",
    );

    // One receiver cuts the stream in order, so the batch with `records = n`
    // received the next n lines: its counts are exactly theirs.
    let mut next_line = 0;
    for m in &metrics {
        let received = &lines[next_line..next_line + m.records as usize];
        next_line += m.records as usize;
        let saved = per_batch.get(&m.batch_time_ms);
        if m.records == 0 {
            assert!(
                saved.is_none_or(|c| c.is_empty()),
                "batch {} had no records but saved counts",
                m.batch_time_ms
            );
            continue;
        }
        let saved = saved.unwrap_or_else(|| {
            panic!(
                "batch {} had {} records but no complete output directory; {out:?}",
                m.batch_time_ms, m.records
            )
        });
        assert_counts_eq(
            &count_words(received.iter().copied()),
            saved,
            &format!("batch {} ({} lines)", m.batch_time_ms, m.records),
        );
    }
    let with_records = metrics.iter().filter(|m| m.records > 0).count();
    assert!(
        with_records >= 3,
        "the stream was served over about 3 s but only {with_records} batches had records"
    );
    let dirs_with_records = per_batch.values().filter(|c| !c.is_empty()).count();
    assert_eq!(
        dirs_with_records, with_records,
        "batch directories with counts vs. metric lines with records > 0"
    );
    for time in per_batch.keys() {
        assert!(
            metrics.iter().any(|m| m.batch_time_ms == *time),
            "output directory for batch {time} has no metrics line"
        );
    }

    // `print()` shows the first elements of each batch, all from that batch.
    let printed = parse_printed(&out.stdout).unwrap_or_else(|e| panic!("{e:#}; {out:?}"));
    for batch in &printed {
        assert!(
            metrics.iter().any(|m| m.batch_time_ms == batch.time_ms),
            "printed batch {} has no metrics line",
            batch.time_ms
        );
        assert!(
            batch.elements.len() <= 10,
            "print() showed more than 10 elements"
        );
        let saved = per_batch.get(&batch.time_ms);
        for element in &batch.elements {
            let counts = parse_counts([element.as_str()]).unwrap();
            let (word, n) = counts.iter().next().expect("one pair");
            assert_eq!(
                saved.and_then(|c| c.get(word)),
                Some(n),
                "printed {element} in batch {} is not what was saved",
                batch.time_ms
            );
        }
        let saved_len = saved.map_or(0, |c| c.len());
        assert_eq!(
            batch.truncated,
            saved_len > batch.elements.len(),
            "batch {}: `...` must appear exactly when there are more elements",
            batch.time_ms
        );
    }
}

#[test]
fn socket_word_count_matches_exact_counts() {
    run_word_count(&[]);
}

#[test]
fn socket_word_count_with_builtin_reducer_matches_exact_counts() {
    run_word_count(&[("reducer", "builtin")]);
}

#[test]
fn demo_serves_text_counts_words_and_exits() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Sluice::new(["demo"])
        .opt(
            "--plugin",
            util::plugin(sluice_test_artifacts::NETWORK_WORD_COUNT),
        )
        .opt("--duration", "2s")
        .opt("--lines-per-second", "2000")
        .opt("--batch-interval", "500ms")
        .opt("--block-interval", "100ms")
        .opt("--data-dir", tmp.path())
        .output();
    out.assert_success();
    let printed = parse_printed(&out.stdout).unwrap_or_else(|e| panic!("{e:#}; {out:?}"));
    let with_counts: Vec<_> = printed.iter().filter(|b| !b.elements.is_empty()).collect();
    assert!(
        with_counts.len() >= 2,
        "2 s of text in 500 ms batches printed counts in {} batches; {out:?}",
        with_counts.len()
    );
    for batch in with_counts {
        parse_counts(batch.elements.iter().map(String::as_str))
            .unwrap_or_else(|e| panic!("batch {}: {e:#}", batch.time_ms));
        assert!(
            batch.truncated,
            "a batch of ~1000 lines has more than 10 words"
        );
    }
}
