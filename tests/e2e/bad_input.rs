//! Every bad input gets its own error, naming the cause and the place: files
//! that are not plugins, a plugin built against another contract version,
//! guests that trap, loop (in Wasm code or in WASI calls) or allocate without
//! bound, invalid UTF-8 in a stream, intervals that do not fit together, and
//! key groups out of range or fewer than a keyed operator's partitions.

use std::fs;
use std::time::Duration;

use crate::util::{
    self, Counts, Server, Sluice, assert_counts_eq, count_words, lines_of, parse_counts,
    read_metrics, read_saved_batches,
};

#[test]
fn missing_plugin_file_is_reported_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("no-such-plugin.wasm");
    Sluice::run(&path, &tmp.path().join("data"))
        .arg("--until-sources-end")
        .output()
        .assert_failure()
        .assert_stderr_contains(&[&path.display().to_string()]);
}

#[test]
fn random_bytes_are_refused_as_not_a_component_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("random.wasm");
    // Fixed "random" bytes (an LCG), so a failure reproduces.
    let mut x: u32 = 0x1234_5678;
    let bytes: Vec<u8> = (0..4096)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect();
    fs::write(&path, bytes).unwrap();
    Sluice::run(&path, &tmp.path().join("data"))
        .arg("--until-sources-end")
        .output()
        .assert_failure()
        .assert_stderr_contains(&[&path.display().to_string(), "not a WebAssembly component"]);
}

#[test]
fn core_module_is_refused_as_not_a_component() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("core.wasm");
    // The header of an empty core module: magic, version 1.
    fs::write(&path, b"\0asm\x01\0\0\0").unwrap();
    Sluice::run(&path, &tmp.path().join("data"))
        .arg("--until-sources-end")
        .output()
        .assert_failure()
        .assert_stderr_contains(&[
            &path.display().to_string(),
            "not a WebAssembly component",
            "core",
            "module",
        ]);
}

#[test]
fn plugin_built_against_another_contract_version_names_both_versions() {
    let tmp = tempfile::tempdir().unwrap();
    let plugin = util::plugin(sluice_test_artifacts::CONTRACT_0_1);
    Sluice::run(&plugin, &tmp.path().join("data"))
        .arg("--until-sources-end")
        .output()
        .assert_failure()
        .assert_stderr_contains(&[&plugin.display().to_string(), "0.1.0", "0.4.0"]);
}

/// Runs the `misbehaving` plugin with `fault=<fault>` over a small lines
/// file (one line per batch); it must fail.
fn misbehave(fault: &str, extra: &[(&str, &str)]) -> util::Output {
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("input.txt");
    fs::write(
        &input,
        "one line
another line
a third line
",
    )
    .unwrap();
    let mut cmd = Sluice::run(
        &util::plugin(sluice_test_artifacts::MISBEHAVING),
        &tmp.path().join("data"),
    )
    .job_arg("fault", fault)
    .job_arg("input", input.display())
    .opt("--batch-interval", "200ms")
    // A guard: the fault must stop the job long before this.
    .opt("--max-batches", "50");
    for (k, v) in extra {
        cmd = cmd.opt(k, *v);
    }
    let out = cmd.timeout(Duration::from_secs(90)).output();
    out.assert_failure();
    out
}

/// `map at tests/plugins/misbehaving/src/lib.rs:<line>:`, the name of the
/// misbehaving `map` as the SDK records it (the line of `lines.map(` in the
/// plugin's source). "flat_map at" must not do.
fn faulty_map() -> String {
    let path = "tests/plugins/misbehaving/src/lib.rs";
    let source = fs::read_to_string(util::repo_root().join(path)).unwrap();
    let line = source
        .lines()
        .position(|l| l.contains("lines.map("))
        .expect("the misbehaving plugin has a `lines.map(`")
        + 1;
    format!("map at {path}:{line}:")
}

#[test]
fn trap_in_map_is_retried_then_reported_with_operator_name() {
    misbehave("panic", &[]).assert_stderr_contains(&[
        "boom: deliberate failure",
        &format!("panic in {}", faulty_map()),
        // The default 4 retries, each on a fresh instance.
        "after 5 attempts",
    ]);
}

#[test]
fn infinite_loop_in_map_is_stopped_by_the_time_limit() {
    misbehave("loop", &[("--call-timeout", "1s")])
        .assert_stderr_contains(&["time limit", &faulty_map()]);
}

#[test]
fn sleep_in_a_wasi_call_is_stopped_by_the_time_limit_after_the_retries() {
    // Blocked in WASI `poll`, not in Wasm code: the limit must still hold.
    misbehave("sleep", &[("--call-timeout", "2s")]).assert_stderr_contains(&[
        "time limit",
        &faulty_map(),
        "after 5 attempts",
    ]);
}

#[test]
fn endless_stdin_reads_are_stopped_by_the_time_limit_after_the_retries() {
    misbehave("stdin", &[("--call-timeout", "2s")]).assert_stderr_contains(&[
        "time limit",
        &faulty_map(),
        "after 5 attempts",
    ]);
}

#[test]
fn unbounded_allocation_is_stopped_by_the_memory_limit() {
    misbehave("alloc", &[("--memory-limit", "64MiB")])
        .assert_stderr_contains(&["memory limit", &faulty_map()]);
}

#[test]
fn invalid_utf8_line_is_skipped_and_reported_with_source_and_offset() {
    let corpus = util::corpus(2_000);
    let text = std::str::from_utf8(corpus).unwrap();
    let lines = lines_of(text);
    let (before, after) = lines.split_at(1_000);

    let mut data = Vec::new();
    for line in before {
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
    }
    let line_offset = data.len();
    data.extend_from_slice(b"valid \xff\xfe invalid\n");
    let byte_offset = line_offset + "valid ".len();
    for line in after {
        data.extend_from_slice(line.as_bytes());
        data.push(b'\n');
    }
    let expected: Counts = count_words(before.iter().chain(after).copied());

    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("out");
    let metrics_path = tmp.path().join("metrics.jsonl");
    // In pieces cut anywhere (in lines, maybe between the two bad bytes).
    let server = Server::serve_paced(data, 7, Duration::from_millis(50));
    let port = server.port;
    let out = Sluice::socket_word_count(&tmp.path().join("data"), server.port, &prefix)
        .arg("--until-sources-end")
        .opt("--metrics-json", &metrics_path)
        .output();
    out.assert_success();
    server.finish();

    // The report names the source and where in its stream the line was.
    let report = utf8_report(&out.stderr);
    let address = format!("127.0.0.1:{port}");
    assert!(
        report.contains(&address) || report.contains("socket_text_stream at"),
        "the UTF-8 report names neither the source's address {address} nor its node: {report}"
    );
    assert!(
        report.contains(&line_offset.to_string()) || report.contains(&byte_offset.to_string()),
        "the UTF-8 report names neither byte offset {line_offset} (start of the invalid line) \
         nor {byte_offset} (first invalid byte): {report}"
    );

    let mut total = Counts::new();
    for batch in read_saved_batches(&prefix, None).unwrap() {
        util::add_counts(&mut total, &parse_counts(batch.lines()).unwrap());
    }
    assert_counts_eq(&expected, &total, "word counts without the invalid line");

    let metrics = read_metrics(&metrics_path).unwrap();
    let invalid: u64 = metrics.iter().map(|m| m.invalid_records).sum();
    assert_eq!(invalid, 1, "invalid_records over all batches; {out:?}");
    let records: u64 = metrics.iter().map(|m| m.records).sum();
    assert!(
        records == lines.len() as u64 || records == lines.len() as u64 + 1,
        "records over all batches: {records}, expected the {} valid lines (plus, \
         perhaps, the invalid one)",
        lines.len()
    );
}

/// The line of stderr that reports invalid UTF-8.
fn utf8_report(stderr: &str) -> &str {
    stderr
        .lines()
        .find(|l| {
            let l = l.to_lowercase();
            l.contains("utf-8") || l.contains("utf8")
        })
        .unwrap_or_else(|| panic!("no line of stderr mentions UTF-8:\n{stderr}"))
}

#[test]
fn batch_interval_not_a_multiple_of_block_interval_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    Sluice::run(
        &util::plugin(sluice_test_artifacts::NETWORK_WORD_COUNT),
        &tmp.path().join("data"),
    )
    .job_arg("host", "127.0.0.1")
    .job_arg("port", 9)
    .opt("--block-interval", "300ms")
    .opt("--batch-interval", "1s")
    .arg("--until-sources-end")
    .timeout(Duration::from_secs(60))
    .output()
    .assert_failure()
    .assert_stderr_contains(&["multiple", "300ms", "1s"]);
}

#[test]
fn error_returned_by_output_function_fails_the_job_with_its_message() {
    misbehave("error", &[])
        .assert_stderr_contains(&["deliberate error in batch", "foreach_partition at"]);
}

#[test]
fn more_partitions_than_key_groups_are_refused_naming_the_node_and_both_numbers() {
    // all-operators has `reduce_by_key_with_partitions(.., 3)`.
    let tmp = tempfile::tempdir().unwrap();
    Sluice::run(
        &util::plugin(sluice_test_artifacts::ALL_OPERATORS),
        &tmp.path().join("data"),
    )
    .job_arg("input", tmp.path().join("input.txt").display())
    .job_arg("output", tmp.path().join("out").display())
    .opt("--key-groups", "2")
    .arg("--until-sources-end")
    .timeout(Duration::from_secs(60))
    .output()
    .assert_failure()
    .assert_stderr_contains(&[
        "reduce_by_key",
        "asks for 3 partitions, more than the job's 2 key groups",
    ]);
}

#[test]
fn key_groups_outside_one_to_32768_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    for n in ["0", "32769"] {
        Sluice::run(
            &util::plugin(sluice_test_artifacts::NETWORK_WORD_COUNT),
            &tmp.path().join("data"),
        )
        .job_arg("host", "127.0.0.1")
        .job_arg("port", 9)
        .opt("--key-groups", n)
        .timeout(Duration::from_secs(60))
        .output()
        .assert_failure()
        .assert_stderr_contains(&["--key-groups", "between 1 and 32768"]);
    }
}
