//! Outputs of the real binary: `network-word-count` over a text file stream
//! with `--arg sqlite=…` (`save_to_sqlite`) and `--arg output=…`
//! (`save_as_text_files`). The database, read independently with SQLite,
//! holds every batch's counts once, agrees with the batch's text files, adds
//! up to an independent count of the input, and records the last batch in
//! `sluice_commits`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use crate::util::{
    self, Counts, Sluice, add_counts, assert_counts_eq, count_words, lines_of, parse_counts,
    read_metrics, read_saved_batches, wait_until,
};

/// Files moved into the watched directory while the job runs.
const FILES: usize = 6;
const LINES_PER_FILE: usize = 400;
const BATCHES: usize = 16;

/// Writes `text` to `staging/name`, then renames it into `dir`: the file
/// appears complete, as a text file stream requires.
fn move_in(staging: &Path, dir: &Path, name: &str, text: &str) {
    let tmp = staging.join(name);
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn save_to_sqlite_holds_each_batchs_counts_once_and_their_sum_is_the_input_count() {
    let tmp = tempfile::tempdir().unwrap();
    let watched = tmp.path().join("incoming");
    let staging = tmp.path().join("staging");
    fs::create_dir_all(&watched).unwrap();
    fs::create_dir_all(&staging).unwrap();
    let database = tmp.path().join("db").join("counts.db");
    let prefix = tmp.path().join("out").join("counts");
    let metrics_path = tmp.path().join("metrics.jsonl");

    let corpus = std::str::from_utf8(util::corpus(FILES * LINES_PER_FILE)).unwrap();
    let lines = lines_of(corpus);
    assert_eq!(lines.len(), FILES * LINES_PER_FILE);
    let expected = count_words(lines.iter().copied());

    let mut job = Sluice::run(
        &util::plugin(sluice_test_artifacts::NETWORK_WORD_COUNT),
        &tmp.path().join("data"),
    )
    .job_arg("dir", watched.display())
    .job_arg("sqlite", database.display())
    .job_arg("output", prefix.display())
    .opt("--batch-interval", "500ms")
    .opt("--block-interval", "100ms")
    .opt("--max-batches", BATCHES.to_string())
    .opt("--metrics-json", &metrics_path)
    .spawn();

    // A text file stream reads only the files that appear after it starts.
    let started = wait_until(Duration::from_secs(60), || {
        job.check_deadline();
        job.has_exited() || read_metrics(&metrics_path).is_ok_and(|m| !m.is_empty())
    });
    assert!(started, "no batch completed within 60 s");
    assert!(
        !job.has_exited(),
        "the job ended before files were moved in: {:?}",
        job.wait()
    );
    for (i, chunk) in lines.chunks(LINES_PER_FILE).enumerate() {
        let mut text = chunk.join("\n");
        text.push('\n');
        move_in(&staging, &watched, &format!("part{i}.txt"), &text);
        thread::sleep(Duration::from_millis(300));
    }
    let out = job.wait();
    out.assert_success();

    // The database, read on its own.
    let connection = rusqlite::Connection::open(&database).unwrap();
    let mut by_batch: BTreeMap<u64, Counts> = BTreeMap::new();
    {
        let mut rows = connection
            .prepare("SELECT batch_time, key, value FROM word_counts")
            .unwrap();
        let rows = rows
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .unwrap();
        for row in rows {
            let (time, word, count) = row.unwrap();
            let previous = by_batch
                .entry(time as u64)
                .or_default()
                .insert(word.clone(), count);
            assert!(
                previous.is_none(),
                "batch {time} ms has {word:?} twice ({previous:?} and {count}); {out:?}"
            );
        }
    }
    assert!(
        by_batch.len() >= 2,
        "the files span several batches: {:?}",
        by_batch.keys().collect::<Vec<_>>()
    );

    // Every batch with words is in the table with the counts its text files
    // hold, and no other.
    let saved = read_saved_batches(&prefix, None).unwrap();
    let metrics = read_metrics(&metrics_path).unwrap();
    assert_eq!(metrics.len(), BATCHES, "--max-batches {BATCHES}");
    assert_eq!(
        saved.iter().map(|b| b.time_ms).collect::<Vec<_>>(),
        metrics.iter().map(|m| m.batch_time_ms).collect::<Vec<_>>(),
        "one saved directory per batch"
    );
    let with_words: BTreeSet<u64> = saved
        .iter()
        .filter(|b| b.lines().next().is_some())
        .map(|b| b.time_ms)
        .collect();
    assert_eq!(
        by_batch.keys().copied().collect::<BTreeSet<_>>(),
        with_words,
        "the batches in the table are those with words"
    );
    for batch in &saved {
        let text = parse_counts(batch.lines()).unwrap();
        let table = by_batch.get(&batch.time_ms).cloned().unwrap_or_default();
        assert_counts_eq(
            &text,
            &table,
            &format!(
                "batch {} ms: the table against the text files",
                batch.time_ms
            ),
        );
    }

    // Over all batches, each word's counts add up to the input's.
    let mut total = Counts::new();
    for counts in by_batch.values() {
        add_counts(&mut total, counts);
    }
    assert_counts_eq(&expected, &total, "the sums over the table's batches");

    // The last batch is committed, even if it had no words.
    let last = metrics.last().unwrap().batch_time_ms;
    let commits: Vec<(String, i64)> = connection
        .prepare("SELECT table_name, batch_time FROM sluice_commits")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(commits, [("word_counts".to_string(), last as i64)]);
}
