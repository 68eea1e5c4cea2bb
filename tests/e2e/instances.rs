//! The life of plugin instances, with the `misbehaving` fixture over a lines
//! file: the compiled plugin is cached across starts, a task that traps once
//! succeeds on a fresh instance, an instance whose memory grew past the
//! watermark is recycled, and a plugin whose `define` changes from instance
//! to instance is refused.

use std::fs;
use std::path::Path;

use crate::util::{
    self, Counts, Output, Sluice, assert_counts_eq, count_words, lines_of, parse_counts,
    read_saved_batches,
};

/// `n` lines of the corpus, as owned strings (a test may edit them).
fn corpus_lines(n: usize) -> Vec<String> {
    let text = std::str::from_utf8(util::corpus(n)).expect("the corpus is UTF-8");
    lines_of(text).into_iter().map(String::from).collect()
}

/// `sluice run misbehaving.wasm` over `lines` written to a lines file,
/// `lines_per_batch` lines per batch, counts saved under `<dir>/out`, until
/// the queue is exhausted; `args` are more job arguments.
fn misbehaving(
    dir: &Path,
    lines: &[String],
    lines_per_batch: usize,
    args: &[(&str, &str)],
) -> Sluice {
    let input = dir.join("input.txt");
    let mut text = lines.join("\n");
    text.push('\n');
    fs::write(&input, text).unwrap();
    let mut cmd = Sluice::run(
        &util::plugin(sluice_test_artifacts::MISBEHAVING),
        &dir.join("data"),
    )
    .job_arg("input", input.display())
    .job_arg("lines_per_batch", lines_per_batch)
    .job_arg("output", dir.join("out").display())
    .opt("--batch-interval", "200ms")
    .arg("--until-sources-end");
    for (k, v) in args {
        cmd = cmd.job_arg(k, v);
    }
    cmd
}

/// The sum of every saved batch under `<dir>/out`.
fn saved_total(dir: &Path, out: &Output) -> Counts {
    let mut total = Counts::new();
    for batch in read_saved_batches(&dir.join("out"), None).unwrap() {
        let counts = parse_counts(batch.lines())
            .unwrap_or_else(|e| panic!("{}: {e:#}; {out:?}", batch.dir.display()));
        util::add_counts(&mut total, &counts);
    }
    total
}

/// The lines of stderr that contain `needle`.
fn stderr_lines<'a>(out: &'a Output, needle: &str) -> Vec<&'a str> {
    out.stderr.lines().filter(|l| l.contains(needle)).collect()
}

/// The path that follows `marker` on the first stderr line that has it.
fn logged_entry(out: &Output, marker: &str) -> String {
    let line = stderr_lines(out, marker)
        .first()
        .copied()
        .unwrap_or_else(|| panic!("no `{marker}` line on stderr; {out:?}"));
    let rest = &line[line.find(marker).expect("found above") + marker.len()..];
    rest.split_whitespace()
        .next()
        .unwrap_or_else(|| panic!("no path after `{marker}` in {line:?}"))
        .to_string()
}

#[test]
fn second_start_loads_the_compiled_plugin_from_the_cache_without_compiling() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = corpus_lines(20);
    let expected = count_words(lines.iter().map(String::as_str));
    // Both runs share `<tmp>/data` (the cache); each starts with no saved
    // batch (`save_as_text_files` writes `<tmp>/out-<batch ms>` directories).
    let run = || {
        for entry in fs::read_dir(tmp.path()).unwrap() {
            let path = entry.unwrap().path();
            if path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("out-"))
            {
                fs::remove_dir_all(&path).unwrap();
            }
        }
        let out = misbehaving(tmp.path(), &lines, 10, &[])
            .env("SLUICE_LOG", "info")
            .output();
        out.assert_success();
        assert_counts_eq(&expected, &saved_total(tmp.path(), &out), "word counts");
        out
    };

    let first = run();
    assert_eq!(
        stderr_lines(&first, "compiled plugin in").len(),
        1,
        "the first start compiles the plugin once; {first:?}"
    );
    let written = logged_entry(&first, "wrote cache entry ");
    assert!(
        stderr_lines(&first, "loaded plugin from cache entry").is_empty(),
        "the first start has no cache to load from; {first:?}"
    );
    let cache = tmp.path().join("data").join("cache");
    assert!(
        Path::new(&written).starts_with(&cache) && Path::new(&written).is_file(),
        "the cache entry {written} is not a file under {}",
        cache.display()
    );

    let second = run();
    assert_eq!(
        logged_entry(&second, "loaded plugin from cache entry "),
        written,
        "the second start loads the entry the first one wrote; {second:?}"
    );
    assert!(
        stderr_lines(&second, "compiled plugin in").is_empty()
            && stderr_lines(&second, "wrote cache entry").is_empty(),
        "the second start compiled the plugin again; {second:?}"
    );
}

#[test]
fn task_that_traps_once_succeeds_on_its_retry_with_exact_counts() {
    let tmp = tempfile::tempdir().unwrap();
    let mut lines = corpus_lines(40);
    // One line of the first batch (lines 0..5) poisons its instance; the
    // next call on that instance, the second batch's chain, traps once.
    lines[2].push_str(" poisonpill");
    let expected = count_words(lines.iter().map(String::as_str));
    let out = misbehaving(
        tmp.path(),
        &lines,
        5,
        &[("fault", "poison"), ("fault_on", "poisonpill")],
    )
    .opt("--workers", "1")
    .output();
    out.assert_success();
    assert_counts_eq(&expected, &saved_total(tmp.path(), &out), "word counts");

    let retries = stderr_lines(&out, "retrying on a fresh instance");
    assert_eq!(
        retries.len(),
        1,
        "expected exactly one retry warning; {out:?}"
    );
    assert!(
        retries[0].contains("attempt 1 of 5"),
        "the retry is not of the first attempt: {:?}",
        retries[0]
    );
    out.assert_stderr_contains(&["boom: poisoned by an earlier call"]);
    assert!(
        !out.stderr.contains("error:") && !out.stderr.contains("attempts:"),
        "a batch failed; {out:?}"
    );
}

#[test]
fn instance_above_the_memory_watermark_is_recycled_and_counts_stay_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = corpus_lines(6);
    let expected = count_words(lines.iter().map(String::as_str));
    // Every record grows the instance's memory by 48 MiB (the limit on
    // growth above its size after `define` is 32 MiB); 3 batches of 2
    // lines, one chain call each.
    let out = misbehaving(tmp.path(), &lines, 2, &[("fault", "grow")])
        .opt("--workers", "1")
        .env("SLUICE_LOG", "info,sluice::exec::workers=debug")
        .output();
    out.assert_success();
    assert_counts_eq(&expected, &saved_total(tmp.path(), &out), "word counts");
    let recycled = stderr_lines(&out, "recycling an instance: its memory grew");
    assert_eq!(
        recycled.len(),
        3,
        "one recycling after each of the 3 chain calls that grew the memory; {out:?}"
    );
}

#[test]
fn recycle_after_calls_replaces_the_instance_after_that_many_calls_and_counts_stay_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = corpus_lines(8);
    let expected = count_words(lines.iter().map(String::as_str));
    // 4 batches of 2 lines, one chain call each on one worker: a fresh
    // instance every 2 calls.
    let out = misbehaving(tmp.path(), &lines, 2, &[("fault", "none")])
        .opt("--workers", "1")
        .opt("--recycle-after-calls", "2")
        .env("SLUICE_LOG", "info,sluice::exec::workers=debug")
        .output();
    out.assert_success();
    assert_counts_eq(&expected, &saved_total(tmp.path(), &out), "word counts");
    let recycled = stderr_lines(&out, "recycling an instance: it served 2 calls");
    assert!(
        recycled.len() >= 2,
        "a fresh instance after every second call; {out:?}"
    );
}

#[test]
fn plugin_whose_define_differs_between_instances_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let lines = corpus_lines(20);
    let out = misbehaving(tmp.path(), &lines, 5, &[("unstable_define", "true")])
        .opt("--max-batches", "50")
        .output();
    out.assert_failure()
        .assert_stderr_contains(&["define", "different"]);
}
