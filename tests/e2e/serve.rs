//! `sluice serve` and its client commands, with the real binary over real
//! HTTP: the token and its file, 401s, a non-loopback address refused, a
//! deployed socket word count counting every line sent exactly once, two
//! jobs resumed by a host restarted after SIGKILL with every line counted
//! exactly once, SIGTERM stopping the host gracefully, upgrades and
//! rollbacks through the API (done, refused, rolled back), a job that fails
//! marked failed, and the client's exit codes.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::Duration;

use crate::util::{
    self, Counts, Host, Output, Server, Sluice, TimedFile, add_counts, assert_counts_eq,
    count_words, counts_of, free_port, http_request_with, http_status, lines_of, now_ms, plugin,
    saved_counts, wait_until, write_timed_file,
};

#[cfg(unix)]
#[test]
fn serve_creates_a_private_token_and_every_request_needs_it() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let host = Host::start(&data);
    let token_file = data.join("token");
    let mode = fs::metadata(&token_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the token file's mode is {mode:o}");
    let token = host.token();
    assert_eq!(token.len(), 64, "a 256-bit token in hex: {token:?}");

    let bearer = format!("Bearer {token}");
    let wrong = format!("Bearer {}", "0".repeat(64));
    for path in ["/v1/jobs", "/v1/openapi.json", "/v1/jobs/none/logs"] {
        for headers in [vec![], vec![("Authorization", wrong.as_str())]] {
            let response = http_request_with(host.port, "GET", path, &headers).unwrap();
            assert_eq!(http_status(&response), Some(401), "{path}: {response}");
            let lower = response.to_lowercase();
            assert!(lower.contains("www-authenticate: bearer"), "{response}");
            assert!(response.contains("\"unauthorized\""), "{response}");
        }
    }
    let auth = [("Authorization", bearer.as_str())];
    let jobs = http_request_with(host.port, "GET", "/v1/jobs", &auth).unwrap();
    assert_eq!(http_status(&jobs), Some(200), "{jobs}");
    assert!(jobs.ends_with("[]"), "{jobs}");
    let openapi = http_request_with(host.port, "GET", "/v1/openapi.json", &auth).unwrap();
    assert_eq!(http_status(&openapi), Some(200));
    assert!(openapi.contains("\"/v1/jobs/{name}/upgrade\""), "{openapi}");

    // The CLI: a wrong token is "unauthorized" (6), and a known job is
    // needed (3).
    let out = host
        .client(["jobs"])
        .env("SLUICE_TOKEN", "0".repeat(64))
        .output();
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    out.assert_stderr_contains(&["wrong"]);
    let out = host.client(["status", "nothing"]).output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    out.assert_stderr_contains(&["no job named `nothing`"]);

    // The same token on the next start.
    drop(host);
    let again = Host::start(&data);
    assert_eq!(again.token(), token);
}

#[test]
fn serve_with_a_token_file_takes_its_token_and_creates_none() {
    let tmp = tempfile::tempdir().unwrap();
    let (data, token_file) = (tmp.path().join("data"), tmp.path().join("my-token"));
    fs::write(&token_file, "correct-horse-battery-staple\n").unwrap();
    let port = free_port();
    let mut running = Sluice::new(["serve", "--listen"])
        .arg(format!("127.0.0.1:{port}"))
        .opt("--data-dir", &data)
        .opt("--token-file", &token_file)
        .spawn();
    let up = wait_until(util::RUN_TIMEOUT / 2, || {
        running.check_deadline();
        http_request_with(port, "GET", "/v1/jobs", &[]).is_ok()
    });
    assert!(up, "sluice serve did not answer");
    let get = |token: &str| {
        let bearer = format!("Bearer {token}");
        let response =
            http_request_with(port, "GET", "/v1/jobs", &[("Authorization", &bearer)]).unwrap();
        http_status(&response)
    };
    assert_eq!(get("correct-horse-battery-staple"), Some(200));
    assert_eq!(get("correct-horse-battery-stapl"), Some(401));
    assert!(!data.join("token").exists());
    running.terminate();
    running.wait().assert_success();
}

#[test]
fn the_client_without_a_server_exits_unreachable() {
    let port = free_port();
    let out = Sluice::new(["jobs", "--server"])
        .arg(format!("http://127.0.0.1:{port}"))
        .env("SLUICE_TOKEN", "x")
        .output();
    assert_eq!(out.status.code(), Some(5), "{out:?}");
    out.assert_stderr_contains(&["cannot reach the host", &port.to_string()]);
}

#[test]
fn serve_refuses_a_non_loopback_address_without_a_token_file() {
    let tmp = tempfile::tempdir().unwrap();
    let out = Sluice::new(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(tmp.path())
        .output();
    out.assert_failure();
    out.assert_stderr_contains(&["not a loopback address", "--token-file"]);
    assert!(!tmp.path().join("token").exists());
}

fn total(saved: &BTreeMap<u64, Counts>) -> Counts {
    let mut total = Counts::new();
    for counts in saved.values() {
        add_counts(&mut total, counts);
    }
    total
}

#[test]
fn a_deployed_socket_word_count_counts_every_line_sent_once() {
    const LINES: usize = 20_000;
    let corpus = util::corpus(LINES);
    let text = std::str::from_utf8(corpus).unwrap();
    let lines = lines_of(text);
    let expected = count_words(lines.iter().copied());

    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("data"));
    let server = Server::serve_paced(corpus.to_vec(), 20, Duration::from_millis(100));
    let prefix = tmp.path().join("out").join("counts");
    let wasm = plugin(sluice_test_artifacts::NETWORK_WORD_COUNT);
    let deployed = deploy_socket_count(&host, &wasm, server.port, &prefix);
    let digest = deployed["version"].as_str().unwrap().to_string();
    assert_eq!(digest.len(), 64, "{deployed}");
    assert_eq!(
        deployed["checkpoint"].as_str().unwrap(),
        host.data.join("jobs/wc/checkpoint").display().to_string()
    );
    // The component is stored under its digest.
    let stored = host.data.join("plugins").join(format!("{digest}.wasm"));
    assert_eq!(fs::read(&stored).unwrap(), fs::read(&wasm).unwrap());

    let counted = wait_until(util::RUN_TIMEOUT / 2, || {
        total(&saved_counts(&prefix)).values().sum::<i64>() >= expected.values().sum::<i64>()
    });
    server.finish();
    assert!(counted, "the job did not count every line in time");

    let jobs = host.client(["jobs"]).output();
    jobs.assert_success();
    let row = jobs.stdout.lines().find(|l| l.starts_with("wc ")).unwrap();
    assert!(
        row.contains(&digest[..12]) && row.contains("running"),
        "{jobs:?}"
    );
    let status = host.status("wc");
    assert_eq!(status["state"], "running");
    assert_eq!(status["version"], digest.as_str());
    assert_eq!(status["live"]["records"], lines.len() as u64, "{status}");
    let table = host.client(["status", "wc"]).output();
    table.assert_success();
    for needle in [
        "state       running",
        &digest[..12],
        "last batches",
        "versions",
    ] {
        assert!(table.stdout.contains(needle), "no {needle:?} in {table:?}");
    }
    let logs = host.client(["logs", "wc"]).output();
    logs.assert_success();
    assert!(logs.stdout.contains("deploying version"), "{logs:?}");
    // A follower gets the lines to come, and ends with the job.
    let follower = host.client(["logs", "wc", "--follow"]).spawn();

    let stop = host.client(["stop", "wc"]).output();
    stop.assert_success();
    let followed = follower.wait();
    followed.assert_success();
    assert!(
        followed.stdout.contains("deploying version"),
        "{followed:?}"
    );
    assert!(
        followed.stdout.contains("stopping gracefully"),
        "{followed:?}"
    );
    assert!(
        followed.stdout.trim_end().ends_with("stopped"),
        "{followed:?}"
    );
    assert!(stop.stdout.contains("stopped"), "{stop:?}");
    assert_eq!(host.status("wc")["state"], "stopped");
    let record: serde_json::Value =
        serde_json::from_slice(&fs::read(host.data.join("jobs/wc/job.json")).unwrap()).unwrap();
    assert_eq!(record["should_run"], false);
    assert_counts_eq(
        &expected,
        &total(&saved_counts(&prefix)),
        "every line, once",
    );

    // Stopped: a second stop is refused (3). Started again it runs; a
    // running job cannot be removed (3), a stopped one can.
    let again = host.client(["stop", "wc"]).output();
    assert_eq!(again.status.code(), Some(3), "{again:?}");
    host.client(["start", "wc"]).output().assert_success();
    assert_eq!(host.status("wc")["state"], "running");
    let remove = host.client(["remove", "wc"]).output();
    assert_eq!(remove.status.code(), Some(3), "{remove:?}");
    host.client(["stop", "wc", "--now"])
        .output()
        .assert_success();
    host.client(["remove", "wc"]).output().assert_success();
    assert!(!host.data.join("jobs/wc").exists());
    let jobs = host.client(["jobs", "--json"]).output();
    assert_eq!(jobs.stdout.trim(), "[]", "{jobs:?}");
}

/// Batch interval of the resumed jobs.
const BATCH_MS: u64 = 250;

/// `count` files of corpus lines in `dir`, one per batch from `first_ms`.
fn timed_files(dir: &Path, count: usize, first_ms: u64, seed: u64) -> Vec<TimedFile> {
    fs::create_dir_all(dir).unwrap();
    let mut corpus = sluice_corpus::Corpus::new(seed);
    (0..count)
        .map(|i| {
            let mut text = Vec::new();
            for _ in 0..(5 + i % 7) {
                corpus.line(&mut text);
            }
            let modified = first_ms + i as u64 * BATCH_MS + 1 + (i as u64 * 37) % (BATCH_MS - 2);
            write_timed_file(
                &dir.join(format!("part-{i:04}.txt")),
                &text,
                modified,
                BATCH_MS,
            )
        })
        .collect()
}

/// Deploys the socket word count `wasm` as job `wc`, reading the server on
/// `port` and saving under `prefix` (500 ms batches, 2 workers); its
/// `--json` answer.
fn deploy_socket_count(host: &Host, wasm: &Path, port: u16, prefix: &Path) -> serde_json::Value {
    let out = host
        .client(["deploy"])
        .arg(wasm)
        .opt("--name", "wc")
        .opt("--arg", "host=127.0.0.1")
        .opt("--arg", format!("port={port}"))
        .opt("--arg", format!("output={}", prefix.display()))
        .opt("--batch-interval", "500ms")
        .opt("--workers", "2")
        .arg("--json")
        .output();
    out.assert_success();
    serde_json::from_str(&out.stdout).unwrap()
}

fn deploy_file_job(host: &Host, name: &str, wasm: &str, input: &Path, prefix: &Path) -> Output {
    let out = host
        .client(["deploy"])
        .arg(plugin(wasm))
        .opt("--name", name)
        .opt("--arg", format!("dir={}", input.display()))
        .opt("--arg", format!("output={}", prefix.display()))
        .opt("--batch-interval", format!("{BATCH_MS}ms"))
        .opt("--checkpoint-interval", "1s")
        .opt("--workers", "1")
        .output();
    out.assert_success();
    out
}

#[cfg(unix)]
#[test]
fn a_host_killed_with_sigkill_resumes_every_job_and_counts_every_line_once() {
    const FILES: usize = 40;
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let (in_one, in_two) = (tmp.path().join("in-one"), tmp.path().join("in-two"));
    let (out_one, out_two) = (
        tmp.path().join("out-one").join("counts"),
        tmp.path().join("out-two").join("counts"),
    );
    // The files appear (by modification time) one per batch from 15 s on:
    // after both deploys, and across the kill.
    let first = (now_ms() + 15_000).div_ceil(BATCH_MS) * BATCH_MS;
    let files_one = timed_files(&in_one, FILES, first, 1);
    let files_two = timed_files(&in_two, FILES, first, 2);
    let last_batch = files_one
        .iter()
        .chain(&files_two)
        .map(|f| f.batch)
        .max()
        .unwrap();

    let host = Host::start(&data);
    let port = host.port;
    deploy_file_job(
        &host,
        "one",
        sluice_test_artifacts::NETWORK_WORD_COUNT,
        &in_one,
        &out_one,
    );
    deploy_file_job(
        &host,
        "two",
        sluice_test_artifacts::STATEFUL_WORD_COUNT,
        &in_two,
        &out_two,
    );

    // Kill the host once about half of the files' batches have run.
    let middle = files_one[FILES / 2].batch;
    let reached = wait_until(util::RUN_TIMEOUT, || {
        saved_counts(&out_one).keys().any(|&t| t >= middle)
    });
    assert!(reached, "job `one` did not reach batch {middle}");
    let killed = host.running.kill();
    assert!(!killed.stderr.contains("error:"), "{killed:?}");

    // A new host on the same data directory resumes both by itself.
    let mut host = Host::start_on(&data, port);
    let done = wait_until(util::RUN_TIMEOUT, || {
        [&out_one, &out_two]
            .iter()
            .all(|prefix| saved_counts(prefix).keys().any(|&t| t >= last_batch))
    });
    assert!(done, "the resumed jobs did not reach batch {last_batch}");
    let jobs = host.client(["jobs", "--json"]).output();
    jobs.assert_success();
    let jobs: serde_json::Value = serde_json::from_str(&jobs.stdout).unwrap();
    let states: Vec<(&str, &str)> = jobs
        .as_array()
        .unwrap()
        .iter()
        .map(|j| (j["name"].as_str().unwrap(), j["state"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("one", "running"), ("two", "running")]);

    // SIGTERM: both stop gracefully, then the host exits 0; their records
    // still say they should run.
    host.running.terminate();
    let out = host.running.wait();
    out.assert_success();
    out.assert_stderr_contains(&["stopping every job gracefully", "the host stops"]);
    for name in ["one", "two"] {
        let record: serde_json::Value = serde_json::from_slice(
            &fs::read(data.join("jobs").join(name).join("job.json")).unwrap(),
        )
        .unwrap();
        assert_eq!(record["should_run"], true, "{record}");
    }

    // Job one: each batch's counts are those of its files, every file's
    // batch is there; job two: the running totals of the files up to each
    // batch. Every line counted exactly once across the kill.
    let saved_one = saved_counts(&out_one);
    for (&time, counts) in &saved_one {
        let expected = counts_of(&files_one, |batch| batch == time);
        assert_counts_eq(&expected, counts, &format!("job one at {time}"));
    }
    for file in &files_one {
        assert!(
            saved_one.contains_key(&file.batch),
            "job one: batch {} missing",
            file.batch
        );
    }
    assert_counts_eq(
        &counts_of(&files_one, |_| true),
        &total(&saved_one),
        "job one: all lines",
    );
    let saved_two = saved_counts(&out_two);
    for (&time, counts) in &saved_two {
        let expected = counts_of(&files_two, |batch| batch <= time);
        assert_counts_eq(&expected, counts, &format!("job two at {time}"));
    }
}

#[test]
fn a_job_that_fails_is_marked_failed_and_a_deploy_that_cannot_start_exits_4() {
    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("data"));
    let wasm = plugin(sluice_test_artifacts::MISBEHAVING);

    // `define` fails (no input named): the deploy fails (4), no job is left.
    let out = host
        .client(["deploy"])
        .arg(&wasm)
        .opt("--name", "nothing")
        .output();
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    out.assert_stderr_contains(&["job `nothing` did not start", "define"]);
    assert!(!host.data.join("jobs/nothing").exists());
    let out = host
        .client(["deploy"])
        .arg(&wasm)
        .opt("--name", "Bad Name")
        .output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");

    // A guest that panics on every record fails its first batch after its
    // retries; the job is marked failed, with its reason.
    let input = tmp.path().join("lines.txt");
    fs::write(&input, "a b\nc d\n").unwrap();
    let out = host
        .client(["deploy"])
        .arg(&wasm)
        .opt("--name", "bad")
        .opt("--arg", "fault=panic")
        .opt("--arg", format!("input={}", input.display()))
        .opt("--batch-interval", "200ms")
        .opt("--task-retries", "1")
        .opt("--workers", "1")
        .output();
    out.assert_success();
    // The record is written once the supervisor has reaped the job.
    let record = || -> serde_json::Value {
        serde_json::from_slice(&fs::read(host.data.join("jobs/bad/job.json")).unwrap()).unwrap()
    };
    let failed = wait_until(util::RUN_TIMEOUT / 2, || record()["failed"].is_string());
    let status = host.status("bad");
    assert!(failed, "{status}");
    assert_eq!(status["state"], "failed");
    let reason = status["reason"].as_str().unwrap();
    assert!(reason.contains("boom: deliberate failure"), "{status}");
    let record = record();
    assert_eq!(record["failed"].as_str(), Some(reason));
    assert_eq!(record["should_run"], false);
    let jobs = host.client(["jobs"]).output();
    jobs.assert_success();
    assert!(jobs.stdout.contains("failed: "), "{jobs:?}");
    // It does not run: an upgrade is refused (3).
    let out = host.client(["upgrade", "bad"]).arg(&wasm).output();
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

/// Word counts with every word lower-cased: what the `upgrade-*` fixtures
/// count between them, whichever version saw a line.
fn lower_cased(counts: &Counts) -> Counts {
    let mut lower = Counts::new();
    for (word, n) in counts {
        *lower.entry(word.to_lowercase()).or_default() += n;
    }
    lower
}

#[test]
fn upgrade_and_rollback_through_the_api_say_what_happened_and_count_every_line_once() {
    const LINES: usize = 30_000;
    let corpus = util::corpus(LINES);
    let text = std::str::from_utf8(corpus).unwrap();
    let expected = lower_cased(&count_words(lines_of(text)));

    let tmp = tempfile::tempdir().unwrap();
    let host = Host::start(&tmp.path().join("data"));
    // About 20 s of stream: the upgrades happen while it flows.
    let server = Server::serve_paced(corpus.to_vec(), 80, Duration::from_millis(250));
    let prefix = tmp.path().join("out").join("counts");
    let deploy = |wasm: &str| {
        deploy_socket_count(&host, &plugin(wasm), server.port, &prefix)["version"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let v1 = deploy(sluice_test_artifacts::UPGRADE_V1);
    assert!(
        wait_until(util::RUN_TIMEOUT / 2, || !saved_counts(&prefix).is_empty()),
        "no batch saved"
    );
    let upgrade = |wasm: &str| {
        host.client(["upgrade", "wc"])
            .arg(plugin(wasm))
            .arg("--json")
            .output()
    };

    // A compatible version: done (0), from v1 to it.
    let out = upgrade(sluice_test_artifacts::UPGRADE_LOWER);
    out.assert_success();
    let done: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(done["from"], v1.as_str(), "{done}");
    let lower = done["to"].as_str().unwrap().to_string();
    assert_ne!(lower, v1);

    // Another state codec: refused (3), with the reason and the graph diff.
    let out = upgrade(sluice_test_artifacts::UPGRADE_TEXT_STATE);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    out.assert_stderr_contains(&["running-counts", "@@"]);

    // A version that traps on every record: rolled back (4).
    let out = upgrade(sluice_test_artifacts::UPGRADE_TRAP);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    out.assert_stderr_contains(&["went back to version", &lower[..12]]);
    assert_eq!(host.status("wc")["version"], lower.as_str());

    // Back to the previous version (v1), then to `lower` by its digest.
    let out = host.client(["rollback", "wc", "--json"]).output();
    out.assert_success();
    let back: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        (back["from"].as_str(), back["to"].as_str()),
        (Some(lower.as_str()), Some(v1.as_str()))
    );
    let out = host
        .client(["rollback", "wc", "--to", &lower[..12]])
        .output();
    out.assert_success();
    assert!(out.stdout.contains(&lower[..12]), "{out:?}");

    let status = host.status("wc");
    assert_eq!(status["version"], lower.as_str());
    let versions: Vec<&str> = status["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["digest"].as_str().unwrap())
        .collect();
    assert_eq!(versions, [v1.as_str(), lower.as_str()]);
    let kinds: Vec<&str> = status["live"]["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    for kind in ["started", "upgraded", "refused", "rolled-back"] {
        assert!(
            kinds.contains(&kind),
            "no `{kind}` in the history {kinds:?}"
        );
    }

    // Every line counted once, by one version or another: the last running
    // counts, lower-cased, are those of the whole text.
    let complete = wait_until(util::RUN_TIMEOUT / 2, || {
        saved_counts(&prefix)
            .values()
            .next_back()
            .is_some_and(|last| lower_cased(last) == expected)
    });
    server.finish();
    let last = saved_counts(&prefix).into_values().next_back().unwrap();
    assert!(
        complete,
        "{:?}",
        util::diff_counts(&expected, &lower_cased(&last))
    );
    host.client(["stop", "wc"]).output().assert_success();
    let last = saved_counts(&prefix).into_values().next_back().unwrap();
    assert_counts_eq(
        &expected,
        &lower_cased(&last),
        "all versions, every line once",
    );
}
