//! `text_file_stream(dir)` with files moved into the directory while the job
//! runs: every file's lines are read exactly once, in one batch; nested
//! directories and names starting with `_` or `.` are ignored.

use std::collections::HashMap;
use std::fs;
use std::path::Path;
use std::thread;
use std::time::Duration;

use crate::util::{self, Sluice, read_metrics, read_saved_batches, wait_until};

/// Files moved in while the job runs.
const FILES: usize = 6;
const LINES_PER_FILE: usize = 40;

fn file_lines(file: usize) -> Vec<String> {
    (0..LINES_PER_FILE)
        .map(|line| format!("file{file} line{line} words of file {file} and line {line}"))
        .collect()
}

/// Writes `lines` to `staging/name`, then renames it to `dir/name`: the file
/// appears in `dir` complete, as the text file source requires.
fn move_in(staging: &Path, dir: &Path, name: &str, lines: &[String]) {
    let tmp = staging.join(name);
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(&tmp, text).unwrap();
    fs::rename(&tmp, dir.join(name)).unwrap();
}

#[test]
fn text_file_stream_reads_each_moved_file_once() {
    let tmp = tempfile::tempdir().unwrap();
    let watched = tmp.path().join("incoming");
    let staging = tmp.path().join("staging");
    let output = tmp.path().join("out");
    let metrics_path = tmp.path().join("metrics.jsonl");
    fs::create_dir_all(&watched).unwrap();
    fs::create_dir_all(&staging).unwrap();
    // all-operators always reads a lines file; this one is empty.
    let input = tmp.path().join("empty.txt");
    fs::write(&input, "").unwrap();

    let mut job = Sluice::run(
        &util::plugin(sluice_test_artifacts::ALL_OPERATORS),
        &tmp.path().join("data"),
    )
    .job_arg("input", input.display())
    .job_arg("output", output.display())
    .job_arg("directory", watched.display())
    .opt("--batch-interval", "500ms")
    .opt("--block-interval", "100ms")
    .opt("--max-batches", "16")
    .opt("--metrics-json", &metrics_path)
    .spawn();

    // Move files in only once the job runs (a batch has completed), as a
    // text file stream only reads files that appear after it starts.
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

    for file in 0..FILES {
        move_in(
            &staging,
            &watched,
            &format!("file{file}.txt"),
            &file_lines(file),
        );
        if file == 2 {
            // Ignored: a nested directory (moved in whole), names starting
            // with `_` or `.`.
            let nested = staging.join("nested");
            fs::create_dir_all(&nested).unwrap();
            fs::write(nested.join("inner.txt"), "ignored nested line\n").unwrap();
            fs::rename(&nested, watched.join("nested")).unwrap();
            move_in(
                &staging,
                &watched,
                "_ignored",
                &["ignored underscore line".into()],
            );
            move_in(
                &staging,
                &watched,
                ".hidden",
                &["ignored hidden line".into()],
            );
        }
        thread::sleep(Duration::from_millis(300));
    }

    let out = job.wait();
    out.assert_success();

    // Every line of every moved file exactly once, all of a file in one batch.
    let mut seen: HashMap<String, u64> = HashMap::new();
    let mut batch_of_file: HashMap<usize, Vec<u64>> = HashMap::new();
    let batches = read_saved_batches(&output.join("text_files"), None).unwrap();
    for batch in &batches {
        for line in batch.lines() {
            assert!(
                !line.contains("ignored"),
                "batch {}: read an ignored file: {line:?}",
                batch.time_ms
            );
            assert!(
                seen.insert(line.to_string(), batch.time_ms).is_none(),
                "line {line:?} read twice (batches {} and {})",
                seen[line],
                batch.time_ms
            );
            let file: usize = line
                .strip_prefix("file")
                .and_then(|l| l.split(' ').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("unexpected line {line:?}"));
            let times = batch_of_file.entry(file).or_default();
            if !times.contains(&batch.time_ms) {
                times.push(batch.time_ms);
            }
        }
    }
    for file in 0..FILES {
        for line in file_lines(file) {
            assert!(
                seen.contains_key(&line),
                "line {line:?} of file{file}.txt was never read; {out:?}"
            );
        }
        assert_eq!(
            batch_of_file[&file].len(),
            1,
            "file{file}.txt was split over batches {:?}",
            batch_of_file[&file]
        );
    }
    assert_eq!(seen.len(), FILES * LINES_PER_FILE);

    let metrics = read_metrics(&metrics_path).unwrap();
    assert_eq!(metrics.len(), 16, "--max-batches 16 runs 16 batches");
    // all-operators also has two inline queues of 6 and 4 records.
    let records: u64 = metrics.iter().map(|m| m.records).sum();
    assert_eq!(
        records,
        (FILES * LINES_PER_FILE + 10) as u64,
        "records over all batches: the lines of the moved files and the queues"
    );
}
