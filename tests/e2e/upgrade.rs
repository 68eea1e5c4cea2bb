//! Hot upgrade, end to end: a stateful word count reads a socket that never
//! stops, and its plugin is replaced while it runs — through `sluice serve`
//! and its client (`sluice upgrade`), and through `sluice run --watch`,
//! which takes the same upgrade path. Every line must be counted exactly
//! once, by the version that ran its batch, with the state carried across
//! versions. Beside them, jobs that break their limits fail alone.
//!
//! The fixtures (`tests/plugins/upgrade-*`) share one graph: `upgrade-v1`
//! counts words as they are, `upgrade-lower` lower-cases them, `upgrade-trap`
//! traps on every word, `upgrade-text-state` keeps its counts as text (an
//! incompatible state codec). Each line starts with a token `LineNNNNNN`, so
//! the final counts tell which version saw each line (`Line…` or `line…`).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{
    Counts, Host, Output, Running, SavedBatch, Sluice, StreamServer, count_words, diff_counts,
    parse_counts, plugin, read_saved_batches, wait_until,
};

/// Words of the same length, so that every line has the same length; some
/// differ only in case, so that the lower-casing version merges them.
const WORDS: [&str; 6] = ["Apple", "apple", "Bread", "CHEER", "delta", "Eagle"];
/// Bytes of a line: `LineNNNNNN` and three words, spaces and the newline.
const LINE: usize = 10 + 3 * 6 + 1;

/// `lines` lines: `LineNNNNNN` and three of [`WORDS`].
fn text(lines: usize) -> &'static [u8] {
    let mut text = String::with_capacity(lines * LINE);
    for i in 0..lines {
        text.push_str(&format!(
            "Line{i:06} {} {} {}\n",
            WORDS[i % 6],
            WORDS[(i / 6) % 6],
            WORDS[(i * 7 + 3) % 6]
        ));
    }
    Box::leak(text.into_bytes().into_boxed_slice())
}

/// A socket feeding [`text`] at about 1,000 lines a second, whole lines at
/// a time.
fn feed() -> StreamServer {
    StreamServer::start(text(200_000), LINE * 20, Duration::from_millis(20))
}

/// A stateful word count under `--watch`, reading `port`, its plugin a copy
/// of `first` at `job`, saving the running counts under `prefix`.
fn watched(dir: &Path, first: &str, port: u16) -> (Running, PathBuf, PathBuf) {
    let job = dir.join("job.wasm");
    std::fs::copy(plugin(first), &job).expect("copy the first version");
    let prefix = dir.join("counts");
    let running = Sluice::run(&job, &dir.join("data"))
        .arg("--watch")
        .job_arg("host", "127.0.0.1")
        .job_arg("port", port)
        .job_arg("output", prefix.display())
        .opt("--batch-interval", "500ms")
        .opt("--block-interval", "100ms")
        .opt("--metrics-json", dir.join("metrics.json"))
        .spawn();
    (running, job, prefix)
}

/// Replaces the plugin file with `next` (whole, by a rename).
fn replace(job: &Path, next: &str) {
    let staged = job.with_extension("staged");
    std::fs::copy(plugin(next), &staged).expect("stage the next version");
    std::fs::rename(&staged, job).expect("replace the plugin file");
}

/// A switch the log reports: the first batch of the new version, and the
/// pause it took.
#[derive(Debug, Clone, Copy)]
struct Switch {
    batch_ms: u64,
    pause_ms: f64,
}

/// The switches the log reports so far, in order.
fn switches(stderr: &str) -> Vec<Switch> {
    let field = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!(" {name}="))? + name.len() + 2;
        Some(line[start..].split_whitespace().next()?.to_string())
    };
    stderr
        .lines()
        .filter(|l| l.contains("upgraded from"))
        .map(|l| Switch {
            batch_ms: field(l, "batch")
                .and_then(|v| v.parse().ok())
                .expect("batch="),
            pause_ms: field(l, "pause_ms")
                .and_then(|v| v.parse().ok())
                .expect("pause_ms="),
        })
        .collect()
}

/// Waits until the log reports `n` switches.
fn wait_for_switches(running: &mut Running, n: usize) -> Vec<Switch> {
    assert!(
        wait_until(Duration::from_secs(60), || {
            running.check_deadline();
            switches(&running.stderr_so_far()).len() >= n
        }),
        "no upgrade #{n} within 60 s; stderr:\n{}",
        running.stderr_so_far()
    );
    switches(&running.stderr_so_far())
}

/// Waits until at least `n` batches were saved.
fn wait_for_batches(running: &mut Running, prefix: &Path, n: usize) {
    assert!(
        wait_until(Duration::from_secs(60), || {
            running.check_deadline();
            read_saved_batches(prefix, None).is_ok_and(|b| b.len() >= n)
        }),
        "fewer than {n} batches saved within 60 s; stderr:\n{}",
        running.stderr_so_far()
    );
}

/// Stops the feed, lets the job read to the end of it, stops the job
/// gracefully; returns the text sent and the saved batches.
fn finish(
    mut running: Running,
    server: StreamServer,
    prefix: &Path,
) -> (String, Vec<SavedBatch>, String) {
    let sent = server.finish();
    std::thread::sleep(Duration::from_secs(2));
    running.interrupt();
    let out = running.wait();
    out.assert_success();
    let text = String::from_utf8(text(200_000)[..sent].to_vec()).expect("ASCII");
    let batches = read_saved_batches(prefix, None).expect("read the saved batches");
    assert!(!batches.is_empty(), "nothing saved; {out:?}");
    (text, batches, out.stderr)
}

/// The line number of a `LineNNNNNN` / `lineNNNNNN` key, and whether it was
/// lower-cased.
fn token(key: &str) -> Option<(usize, bool)> {
    let (lower, digits) = if let Some(d) = key.strip_prefix("Line") {
        (false, d)
    } else {
        (true, key.strip_prefix("line")?)
    };
    (digits.len() == 6).then(|| digits.parse().ok().map(|n| (n, lower)))?
}

/// Checks the batches against the versions that ran them: a line is
/// counted in the first batch whose running counts hold its token, and
/// that batch's version (lower-casing from each switch to a lower-casing
/// version on, as `versions` says) must have made its token. Returns the
/// counts the whole text must give: each line as its version made it,
/// counting only the lines of batches from `from_ms` on (a state reset
/// there).
fn expected_counts(
    text: &str,
    batches: &[SavedBatch],
    versions: &[(u64, bool)],
    from_ms: u64,
) -> Counts {
    let lines: Vec<&str> = text.lines().collect();
    let lower_at = |batch_ms: u64| {
        versions
            .iter()
            .rev()
            .find(|(from, _)| *from <= batch_ms)
            .is_some_and(|(_, lower)| *lower)
    };
    let mut seen_in: BTreeMap<usize, (u64, bool)> = BTreeMap::new();
    for batch in batches {
        let counts = parse_counts(batch.lines()).expect("(word,count) lines");
        for key in counts.keys() {
            if let Some((line, lower)) = token(key) {
                let first = seen_in.entry(line).or_insert((batch.time_ms, lower));
                assert_eq!(
                    first.1, lower,
                    "line {line} was counted by both versions (in batch {} and {})",
                    first.0, batch.time_ms
                );
            }
        }
    }
    let mut expected = Counts::new();
    for (i, line) in lines.iter().enumerate() {
        // A last line cut short by the end of the feed has no full token;
        // it is in the last batch.
        let (batch_ms, lower) = match seen_in.get(&i) {
            Some(&seen) => seen,
            None if i + 1 == lines.len() => {
                let last = batches.last().expect("batches").time_ms;
                (last, lower_at(last))
            }
            None => panic!("line {i} ({line:?}) was never counted"),
        };
        assert_eq!(
            lower,
            lower_at(batch_ms),
            "line {i} was counted in batch {batch_ms} by the wrong version (versions: {versions:?})"
        );
        if batch_ms < from_ms {
            continue;
        }
        let line = if lower {
            line.to_lowercase()
        } else {
            line.to_string()
        };
        for (word, n) in count_words([line.as_str()]) {
            *expected.entry(word).or_default() += n;
        }
    }
    expected
}

/// Lines counted as they are and lower-cased, by their tokens in the last
/// batch.
fn lines_per_version(batches: &[SavedBatch]) -> (usize, usize) {
    let last = batches.last().expect("batches");
    let counts = parse_counts(last.lines()).expect("(word,count) lines");
    let lower = counts
        .keys()
        .filter_map(|k| token(k))
        .filter(|t| t.1)
        .count();
    let tokens = counts.keys().filter_map(|k| token(k)).count();
    (tokens - lower, lower)
}

fn assert_final_counts(expected: &Counts, batches: &[SavedBatch]) {
    let last = batches.last().expect("batches");
    let actual = parse_counts(last.lines()).expect("(word,count) lines");
    if let Some(diff) = diff_counts(expected, &actual) {
        panic!(
            "the running counts of the last batch ({}) are wrong: {diff}",
            last.time_ms
        );
    }
}

#[test]
fn an_upgrade_mid_stream_counts_every_line_once_and_carries_the_state() {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = feed();
    let (mut running, job, prefix) =
        watched(dir.path(), sluice_test_artifacts::UPGRADE_V1, server.port);
    wait_for_batches(&mut running, &prefix, 4);
    replace(&job, sluice_test_artifacts::UPGRADE_LOWER);
    let switch = wait_for_switches(&mut running, 1)[0];
    // Some batches of the new version.
    let after = read_saved_batches(&prefix, None).expect("batches").len();
    wait_for_batches(&mut running, &prefix, after + 4);
    let (text, batches, stderr) = finish(running, server, &prefix);

    let versions = [(0, false), (switch.batch_ms, true)];
    let expected = expected_counts(&text, &batches, &versions, 0);
    assert_final_counts(&expected, &batches);
    // Both versions saw lines; the counts of the last batch (all of them)
    // hold the first version's counts plus the second's, so the state went
    // across: `apple` was counted as it is by the first version and from
    // `Apple` and `apple` by the second.
    let (old, new) = lines_per_version(&batches);
    assert!(
        old > 0 && new > 0,
        "lines seen: {old} by the first version, {new} by the second"
    );
    assert!(stderr.contains("run the new version"), "{stderr}");
}

/// Runs the first version under `--watch`, replaces it with `next`, waits
/// until the log says `logged`, lets three more batches run, and checks
/// that every line was counted by the first version: the attempt changed
/// nothing. Returns the log.
fn attempt_under_watch(next: &str, logged: &str) -> String {
    let dir = tempfile::tempdir().expect("temp dir");
    let server = feed();
    let (mut running, job, prefix) =
        watched(dir.path(), sluice_test_artifacts::UPGRADE_V1, server.port);
    wait_for_batches(&mut running, &prefix, 3);
    replace(&job, next);
    assert!(
        wait_until(Duration::from_secs(60), || {
            running.check_deadline();
            running.stderr_so_far().contains(logged)
        }),
        "no `{logged}` in the log; stderr:\n{}",
        running.stderr_so_far()
    );
    let then = read_saved_batches(&prefix, None).expect("batches").len();
    wait_for_batches(&mut running, &prefix, then + 3);
    let (text, batches, stderr) = finish(running, server, &prefix);
    let expected = expected_counts(&text, &batches, &[(0, false)], 0);
    assert_final_counts(&expected, &batches);
    stderr
}

#[test]
fn a_version_that_traps_is_rolled_back_and_nothing_is_lost() {
    // Every line as the first version counts it: the trapping version's
    // batches ran again with it.
    let stderr = attempt_under_watch(sluice_test_artifacts::UPGRADE_TRAP, "rolled back to");
    assert!(
        stderr.contains("deliberate trap on"),
        "the trap's message: {stderr}"
    );
}

#[test]
fn an_incompatible_version_is_refused_with_a_diff_and_the_job_goes_on() {
    let stderr = attempt_under_watch(sluice_test_artifacts::UPGRADE_TEXT_STATE, "upgrade refused");
    assert!(
        stderr.contains("`running-counts`: its state codec changed from `i64` to `string`")
            && stderr.contains("--reset-state running-counts"),
        "the reason names the operator, the change and the way out: {stderr}"
    );
    assert!(
        stderr.contains("-#3 `running-counts") && stderr.contains("+#3 `running-counts"),
        "the refusal shows a diff of the two graphs: {stderr}"
    );
}

/// `sluice deploy`s the stateful word count of `first` on `host` as `job`,
/// reading `port`, saving its running counts under `prefix`.
fn deploy(host: &Host, first: &str, port: u16, prefix: &Path) {
    host.client(["deploy"])
        .arg(plugin(first))
        .opt("--name", "job")
        .opt("--arg", "host=127.0.0.1")
        .opt("--arg", format!("port={port}"))
        .opt("--arg", format!("output={}", prefix.display()))
        .opt("--batch-interval", "500ms")
        .opt("--block-interval", "100ms")
        .output()
        .assert_success();
}

/// `sluice upgrade job NEXT --json [--reset-state OPERATOR]...`.
fn upgrade(host: &Host, next: &str, reset: &[&str]) -> Output {
    let mut command = host
        .client(["upgrade", "job"])
        .arg(plugin(next))
        .arg("--json");
    for operator in reset {
        command = command.opt("--reset-state", operator);
    }
    command.output()
}

/// The first batch of the new version, from `sluice upgrade --json`.
fn switched_at(out: &Output) -> Switch {
    out.assert_success();
    let done: serde_json::Value = serde_json::from_str(&out.stdout).expect("JSON");
    Switch {
        batch_ms: done["switched_at_ms"].as_u64().expect("switched_at_ms"),
        pause_ms: done["pause_ms"].as_f64().expect("pause_ms"),
    }
}

/// A host running the stateful word count of `first` as `job`, fed by a
/// socket, after its first `batches` batches.
struct Served {
    dir: tempfile::TempDir,
    host: Host,
    server: StreamServer,
    prefix: PathBuf,
}

fn served(first: &str, batches: usize) -> Served {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut host = Host::start(&dir.path().join("data"));
    let server = feed();
    let prefix = dir.path().join("counts");
    deploy(&host, first, server.port, &prefix);
    wait_for_batches(&mut host.running, &prefix, batches);
    Served {
        dir,
        host,
        server,
        prefix,
    }
}

/// Stops the feed, lets the job read to its end, stops the job
/// gracefully (`sluice stop`); returns the text sent and the saved batches.
fn finish_served(host: &Host, server: StreamServer, prefix: &Path) -> (String, Vec<SavedBatch>) {
    let sent = server.finish();
    std::thread::sleep(Duration::from_secs(2));
    host.client(["stop", "job"]).output().assert_success();
    let text = String::from_utf8(text(200_000)[..sent].to_vec()).expect("ASCII");
    let batches = read_saved_batches(prefix, None).expect("read the saved batches");
    assert!(!batches.is_empty(), "nothing saved");
    (text, batches)
}

#[test]
fn an_upgrade_of_a_served_job_mid_stream_counts_every_line_once_and_carries_the_state() {
    let Served {
        dir: _dir,
        mut host,
        server,
        prefix,
    } = served(sluice_test_artifacts::UPGRADE_V1, 4);
    let switch = switched_at(&upgrade(&host, sluice_test_artifacts::UPGRADE_LOWER, &[]));
    let after = read_saved_batches(&prefix, None).expect("batches").len();
    wait_for_batches(&mut host.running, &prefix, after + 4);
    let (text, batches) = finish_served(&host, server, &prefix);
    let expected = expected_counts(&text, &batches, &[(0, false), (switch.batch_ms, true)], 0);
    assert_final_counts(&expected, &batches);
    let (old, new) = lines_per_version(&batches);
    assert!(
        old > 0 && new > 0,
        "lines seen: {old} by the first version, {new} by the second"
    );
}

#[test]
fn an_incompatible_upgrade_is_refused_with_a_diff_and_applied_with_reset_state() {
    let Served {
        dir: _dir,
        mut host,
        server,
        prefix,
    } = served(sluice_test_artifacts::UPGRADE_V1, 3);
    let out = upgrade(&host, sluice_test_artifacts::UPGRADE_TEXT_STATE, &[]);
    assert_eq!(out.status.code(), Some(3), "refused: {out:?}");
    out.assert_stderr_contains(&[
        "`running-counts`: its state codec changed from `i64` to `string`",
        "--reset-state running-counts",
        "-#3 `running-counts (update_state_by_key",
        "+#3 `running-counts (update_state_by_key",
    ]);
    let reset = switched_at(&upgrade(
        &host,
        sluice_test_artifacts::UPGRADE_TEXT_STATE,
        &["running-counts"],
    ));
    let after = read_saved_batches(&prefix, None).expect("batches").len();
    wait_for_batches(&mut host.running, &prefix, after + 3);
    let (text, batches) = finish_served(&host, server, &prefix);
    // The counts start again at the switch: the last batch holds the
    // counts (as text) of the lines of the batches since.
    let expected = expected_counts(&text, &batches, &[(0, false)], reset.batch_ms);
    assert!(!expected.is_empty(), "no line after the reset");
    assert_final_counts(&expected, &batches);
}

#[test]
fn twenty_upgrades_back_and_forth_under_load_count_every_line_once() {
    let Served {
        dir: _dir,
        mut host,
        server,
        prefix,
    } = served(sluice_test_artifacts::UPGRADE_V1, 2);
    let mut versions = vec![(0, false)];
    let mut pauses = Vec::new();
    for i in 1..=20 {
        let lower = i % 2 == 1;
        let next = if lower {
            sluice_test_artifacts::UPGRADE_LOWER
        } else {
            sluice_test_artifacts::UPGRADE_V1
        };
        let switch = switched_at(&upgrade(&host, next, &[]));
        versions.push((switch.batch_ms, lower));
        pauses.push(switch.pause_ms);
    }
    let after = read_saved_batches(&prefix, None).expect("batches").len();
    wait_for_batches(&mut host.running, &prefix, after + 2);
    let (text, batches) = finish_served(&host, server, &prefix);
    let expected = expected_counts(&text, &batches, &versions, 0);
    assert_final_counts(&expected, &batches);
    // For the record (not asserted: speed is for benchmarks; `bench/serve`
    // measures the extra delay of the first batch after each switch).
    pauses.sort_by(f64::total_cmp);
    eprintln!(
        "20 upgrades: switch median {:.2} ms, max {:.2} ms",
        pauses[pauses.len() / 2],
        pauses[pauses.len() - 1]
    );
}

#[test]
fn jobs_in_an_endless_loop_and_allocating_without_bound_fail_alone_while_another_keeps_its_pace() {
    let Served {
        dir,
        host,
        server,
        prefix,
    } = served(sluice_test_artifacts::UPGRADE_V1, 2);
    let input = dir.path().join("lines.txt");
    std::fs::write(&input, "a b\n".repeat(50)).expect("write the input");
    for (name, fault) in [("looping", "loop"), ("bomb", "alloc")] {
        host.client(["deploy"])
            .arg(plugin(sluice_test_artifacts::MISBEHAVING))
            .opt("--name", name)
            .opt("--arg", format!("fault={fault}"))
            .opt("--arg", format!("input={}", input.display()))
            .opt("--batch-interval", "500ms")
            .opt("--call-timeout", "2s")
            .opt("--memory-limit", "64MiB")
            .opt("--task-retries", "2")
            .opt("--workers", "2")
            .output()
            .assert_success();
    }
    // The good job's batches while the bad ones break their limits.
    let mut delays: BTreeMap<u64, f64> = BTreeMap::new();
    let failed = |name: &str| host.status(name)["state"] == "failed";
    let both_failed = wait_until(Duration::from_secs(90), || {
        for batch in host.status("job")["live"]["last_batches"]
            .as_array()
            .into_iter()
            .flatten()
        {
            delays.insert(
                batch["batch_time_ms"].as_u64().expect("batch time"),
                batch["total_delay_ms"].as_f64().expect("total delay"),
            );
        }
        failed("looping") && failed("bomb")
    });
    assert!(both_failed, "the bad jobs did not fail within 90 s");
    let looping = host.status("looping");
    let bomb = host.status("bomb");
    assert!(
        looping["reason"]
            .as_str()
            .is_some_and(|r| r.contains("time limit")),
        "{looping}"
    );
    assert!(
        bomb["reason"]
            .as_str()
            .is_some_and(|r| r.contains("memory limit")),
        "{bomb}"
    );
    assert_eq!(host.status("job")["state"], "running");
    let slowest = delays.values().copied().fold(0.0, f64::max);
    assert!(
        delays.len() >= 10 && slowest < 500.0,
        "the good job's batches must keep within their 500 ms interval: {delays:?}"
    );
    let (text, batches) = finish_served(&host, server, &prefix);
    let expected = expected_counts(&text, &batches, &[(0, false)], 0);
    assert_final_counts(&expected, &batches);
}
