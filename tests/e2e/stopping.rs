//! Stopping a job with Ctrl-C (SIGINT) in the middle of a socket stream: the
//! receiver stops, everything it received as whole lines is processed, once,
//! and the process exits 0.

use std::collections::HashMap;
use std::time::Duration;

use crate::util::{
    self, Counts, Sluice, StreamServer, assert_counts_eq, count_words, lines_of, parse_counts,
    parse_printed, read_metrics, read_saved_batches,
};

/// More than the test can send before it stops the job (about 30 s of
/// stream at the rate below), so the stream is cut in its middle.
const LINES: usize = 400_000;

#[test]
fn sigint_mid_stream_processes_a_whole_line_prefix_once_and_exits_zero() {
    let corpus = util::corpus(LINES);
    let text = std::str::from_utf8(corpus).expect("the corpus is UTF-8");
    let lines = lines_of(text);

    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("out");
    let metrics_path = tmp.path().join("metrics.jsonl");
    // 16 KiB every 20 ms (about 800 kB/s, 13,000 lines/s), in pieces cut
    // anywhere: when the signal comes, the receiver most likely holds a
    // partial last line, which must not become a record.
    let server = StreamServer::start(corpus, 16 << 10, Duration::from_millis(20));
    let mut running = Sluice::socket_word_count(&tmp.path().join("data"), server.port, &prefix)
        .opt("--metrics-json", &metrics_path)
        .spawn();

    // Let a few batches with records run, then press Ctrl-C.
    let mut processed_before_stop = 0u64;
    let started = util::wait_until(util::RUN_TIMEOUT / 2, || {
        running.check_deadline();
        // A line being written may not parse yet: look again later.
        let metrics = read_metrics(&metrics_path).unwrap_or_default();
        processed_before_stop = metrics.iter().map(|m| m.records).sum();
        metrics.iter().filter(|m| m.records > 0).count() >= 3
    });
    let sent_at_stop = server.sent();
    running.interrupt();
    let out = running.wait();
    let sent = server.finish();
    assert!(
        started,
        "three batches with records never ran before the deadline; {out:?}"
    );
    out.assert_success();
    out.assert_stderr_contains(&["stopping gracefully"]);
    assert!(
        sent_at_stop < corpus.len(),
        "the whole corpus was sent before the stop: the stream was not cut in its middle"
    );

    // Every batch directory, and the total.
    let mut total = Counts::new();
    let mut per_batch = HashMap::new();
    for batch in read_saved_batches(&prefix, None).unwrap() {
        let counts = parse_counts(batch.lines())
            .unwrap_or_else(|e| panic!("{}: {e:#}", batch.dir.display()));
        util::add_counts(&mut total, &counts);
        per_batch.insert(batch.time_ms, counts);
    }

    // What Sluice had received when it stopped is a prefix of whole lines:
    // each line has at least one word, so the number of words counted
    // names the prefix (if any).
    let words: i64 = total.values().sum();
    let (mut received, mut cumulative, mut prefix_bytes) = (0usize, 0i64, 0usize);
    for line in &lines {
        if cumulative >= words {
            break;
        }
        cumulative += line.split(' ').count() as i64;
        prefix_bytes += line.len() + 1;
        received += 1;
    }
    assert_eq!(
        cumulative, words,
        "{words} words were counted, which is not the word count of any prefix of whole \
         lines of the stream (a partial line became a record, or lines were lost or counted \
         twice); {out:?}"
    );
    assert!(
        prefix_bytes <= sent,
        "the {received} lines counted ({prefix_bytes} bytes) are more than the {sent} bytes sent"
    );
    assert_counts_eq(
        &count_words(lines[..received].iter().copied()),
        &total,
        &format!("all batches vs. the first {received} lines of the stream"),
    );

    // Nothing processed before the stop was dropped, and the prefix is more
    // than a few lines: at least three batches' worth.
    assert!(
        received as u64 >= processed_before_stop && processed_before_stop > 0,
        "{received} lines counted, but {processed_before_stop} had been processed before the stop"
    );

    // Batch by batch: the batch with `records = n` holds the next n lines.
    let metrics = read_metrics(&metrics_path).unwrap();
    let records: u64 = metrics.iter().map(|m| m.records).sum();
    assert_eq!(
        records, received as u64,
        "the batches' `records` vs. the lines counted"
    );
    let mut next = 0usize;
    for m in &metrics {
        let batch_lines = &lines[next..next + m.records as usize];
        next += m.records as usize;
        let saved = per_batch.remove(&m.batch_time_ms).unwrap_or_default();
        assert_counts_eq(
            &count_words(batch_lines.iter().copied()),
            &saved,
            &format!("batch {} ({} lines)", m.batch_time_ms, m.records),
        );
    }
    assert!(
        per_batch.values().all(|c| c.is_empty()),
        "batch directories without a metrics line: {:?}",
        per_batch.keys().collect::<Vec<_>>()
    );
    parse_printed(&out.stdout).unwrap_or_else(|e| panic!("stdout: {e:#}; {out:?}"));
}
