//! The crash harness: a job is killed with SIGKILL at random moments —
//! some of them just after a checkpoint's batch, while it is written — and
//! restarted on the same checkpoint location, again and again; at the end
//! every saved output directory, and so the running totals, must be those
//! of an uninterrupted run over the same input. The uninterrupted run is
//! computed independently: a text file stream puts each file in the batch
//! of its modification time, which the harness sets, so the expected output
//! of every batch is known exactly.
//!
//! Seeded and bounded: `SLUICE_CRASH_SEED` (default 12) picks the input
//! and the kill times, `SLUICE_CRASH_KILLS` the number of kills per job
//! (default 20, what CI runs). The long run:
//!
//! ```text
//! SLUICE_CRASH_KILLS=200 SLUICE_CRASH_SEED=7 cargo test --release -p sluice --test e2e crash -- --nocapture
//! ```

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::util::{
    Counts, Sluice, TimedFile, count_words, counts_of, now_ms, plugin, saved_counts,
    sqlite_word_counts, write_timed_file,
};

/// Batch interval of the harness's jobs.
const BATCH_MS: u64 = 250;
/// Checkpoint interval: every 4 batches.
const CHECKPOINT_MS: u64 = 1000;
/// Files appear (by modification time) one per batch from this long after
/// the harness starts.
const LEAD_MS: u64 = 5000;

/// SplitMix64: the harness's random numbers, from its seed.
struct Random(u64);

impl Random {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The batch a time belongs to (the host's `BatchClock::batch_for`).
fn batch_for(t: u64) -> u64 {
    t.div_ceil(BATCH_MS) * BATCH_MS
}

/// Writes `count` files of seeded Zipf text into `dir`, file `i` modified
/// at `first + i` batches (a little inside the batch), and returns them.
fn write_input(dir: &Path, count: usize, first_ms: u64, random: &mut Random) -> Vec<TimedFile> {
    fs::create_dir_all(dir).unwrap();
    let mut corpus = sluice_corpus::Corpus::new(random.next());
    let mut files = Vec::new();
    for i in 0..count {
        let lines = 1 + random.below(40) as usize;
        let mut text = Vec::new();
        for _ in 0..lines {
            corpus.line(&mut text);
        }
        let modified = first_ms + i as u64 * BATCH_MS + 1 + random.below(BATCH_MS - 2);
        let path = dir.join(format!("part-{i:04}.txt"));
        files.push(write_timed_file(&path, &text, modified, BATCH_MS));
    }
    files
}

/// What the harness saw.
#[derive(Debug, Default)]
struct Tally {
    kills: usize,
    restarts: usize,
    /// Kills within a few milliseconds after a checkpoint's batch.
    kills_at_checkpoints: usize,
    /// From each restart to its first batch done: process start, plugin
    /// load, restore, first batch.
    recoveries: Vec<Duration>,
}

impl Tally {
    fn median_recovery(&self) -> Duration {
        let mut times = self.recoveries.clone();
        times.sort();
        times.get(times.len() / 2).copied().unwrap_or_default()
    }
}

/// Runs `job` (the `sluice run` command line for a fresh process) on one
/// checkpoint location, killing it `kills` times at random moments and
/// restarting it, then lets the last run finish (the file stream ends with
/// `--until-sources-end` once every file is read).
fn run_with_kills(
    job: impl Fn() -> Sluice,
    kills: usize,
    random: &mut Random,
    scratch: &Path,
) -> Tally {
    let mut tally = Tally::default();
    loop {
        let metrics = scratch.join(format!("metrics-{}.json", tally.restarts));
        let started = std::time::Instant::now();
        let mut running = job().opt("--metrics-json", &metrics).spawn();
        if tally.kills == kills {
            let out = running.wait();
            out.assert_success();
            return tally;
        }
        // Half the kills at a random moment; half just after a checkpoint's
        // batch time, while the checkpoint is being written.
        let at_checkpoint = random.below(2) == 0;
        let delay = if at_checkpoint {
            let wait = 200 + random.below(1200);
            let target = now_ms() + wait;
            let boundary = target.div_ceil(CHECKPOINT_MS) * CHECKPOINT_MS;
            boundary + 2 + random.below(12) - now_ms()
        } else {
            100 + random.below(1500)
        };
        let deadline = started + Duration::from_millis(delay);
        let mut recovered = None;
        while std::time::Instant::now() < deadline {
            if recovered.is_none() && fs::metadata(&metrics).is_ok_and(|m| m.len() > 0) {
                recovered = Some(started.elapsed());
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if tally.restarts > 0
            && let Some(recovery) = recovered
        {
            tally.recoveries.push(recovery);
        }
        if running.has_exited() {
            // It finished before the kill: run it to its end check.
            let out = running.wait();
            out.assert_success();
            return tally;
        }
        let out = running.kill();
        assert!(
            !out.stderr.contains("error:"),
            "a run failed before it was killed; {out:?}"
        );
        tally.kills += 1;
        tally.kills_at_checkpoints += usize::from(at_checkpoint);
        tally.restarts += 1;
    }
}

struct Setup {
    _tmp: tempfile::TempDir,
    scratch: PathBuf,
    input: PathBuf,
    checkpoint: PathBuf,
    prefix: PathBuf,
    data: PathBuf,
    files: Vec<TimedFile>,
    random: Random,
}

fn setup(files: usize) -> Setup {
    let mut random = Random(env_u64("SLUICE_CRASH_SEED", 12));
    let tmp = tempfile::tempdir().unwrap();
    let input = tmp.path().join("in");
    let first = batch_for(now_ms() + LEAD_MS);
    let files = write_input(&input, files, first, &mut random);
    let scratch = tmp.path().join("scratch");
    fs::create_dir_all(&scratch).unwrap();
    Setup {
        scratch,
        input,
        checkpoint: tmp.path().join("checkpoint"),
        prefix: tmp.path().join("out").join("counts"),
        data: tmp.path().join("data"),
        files,
        random,
        _tmp: tmp,
    }
}

/// The job's command line for a harness setup.
fn job(setup: &Setup, wasm: &str, extra: &[(&str, &str)]) -> Sluice {
    let mut job = Sluice::run(&plugin(wasm), &setup.data)
        .job_arg("dir", setup.input.display())
        .job_arg("output", setup.prefix.display())
        .opt("--batch-interval", format!("{BATCH_MS}ms"))
        .opt("--checkpoint", &setup.checkpoint)
        .opt("--checkpoint-interval", format!("{CHECKPOINT_MS}ms"))
        .arg("--until-sources-end")
        .env("SLUICE_LOG", "warn");
    for (key, value) in extra {
        job = job.job_arg(key, value);
    }
    job
}

fn records(files: &[TimedFile]) -> usize {
    files.iter().map(|f| f.lines.len()).sum()
}

/// Kills `wasm` (with job arguments `args`) at random, then checks that it
/// saved one directory every `step_ms` from its first to its last, each
/// equal to `expected(setup files, time)`, the last covering the last file.
fn saved_outputs_survive_kills(
    what: &str,
    wasm: &str,
    args: &[(&str, &str)],
    step_ms: u64,
    expected: impl Fn(&[TimedFile], u64) -> Counts,
    salt: u64,
) {
    let kills = env_u64("SLUICE_CRASH_KILLS", 20) as usize;
    // Enough files (one per batch) to outlast the kills on a slow machine.
    let mut setup = setup(kills * 8 + 8);
    let mut random = Random(setup.random.next() ^ salt);
    let setup = setup;
    let tally = run_with_kills(
        || job(&setup, wasm, args),
        kills,
        &mut random,
        &setup.scratch,
    );
    let saved = saved_counts(&setup.prefix);
    let (&first, &last) = (
        saved.keys().next().expect("outputs were saved"),
        saved.keys().last().expect("outputs were saved"),
    );
    let expected_times: Vec<u64> = (first..=last).step_by(step_ms as usize).collect();
    assert_eq!(
        saved.keys().copied().collect::<Vec<_>>(),
        expected_times,
        "{what}: one directory every {step_ms} ms, none missing"
    );
    for (&time, counts) in &saved {
        let expected = expected(&setup.files, time);
        crate::util::assert_counts_eq(&expected, counts, &format!("{what} at {time}"));
    }
    let last_file = setup.files.iter().map(|f| f.batch).max().unwrap();
    assert!(
        last >= last_file,
        "{what}: the output of the last file's batch {last_file} ran"
    );
    eprintln!(
        "crash harness ({what}): {} kills ({} while a checkpoint was written), {} restarts, {} \
         records in {} files, {} outputs checked: nothing lost or doubled; median recovery \
         (restart to first batch done) {:?}",
        tally.kills,
        tally.kills_at_checkpoints,
        tally.restarts,
        records(&setup.files),
        setup.files.len(),
        saved.len(),
        tally.median_recovery()
    );
    assert_eq!(tally.kills, kills, "every kill landed on a running job");
}

#[test]
fn stateful_word_count_killed_at_random_equals_an_uninterrupted_run() {
    // Every batch saves the running counts of the files of the batches up
    // to it; the last ones are the totals of all files.
    saved_outputs_survive_kills(
        "stateful word count",
        sluice_test_artifacts::STATEFUL_WORD_COUNT,
        &[],
        BATCH_MS,
        |files, time| counts_of(files, |batch| batch <= time),
        0,
    );
}

#[test]
fn windowed_word_count_killed_at_random_equals_an_uninterrupted_run() {
    // A 2 s window every 500 ms: the files of the batches in (T - 2 s, T].
    let window = 2_000;
    saved_outputs_survive_kills(
        "windowed word count",
        sluice_test_artifacts::WINDOWED_WORD_COUNT,
        &[("window", "2s"), ("slide", "500ms")],
        500,
        |files, time| counts_of(files, |batch| batch + window > time && batch <= time),
        1,
    );
}

#[test]
fn sqlite_output_killed_at_random_holds_every_batch_once() {
    let kills = env_u64("SLUICE_CRASH_KILLS", 20) as usize;
    // Enough files (one per batch) to outlast the kills on a slow machine.
    let mut setup = setup(kills * 8 + 8);
    let mut random = Random(setup.random.next() ^ 2);
    let setup = setup;
    let database = setup.scratch.join("counts.db");
    let tally = run_with_kills(
        || {
            let path = database.display().to_string();
            job(
                &setup,
                sluice_test_artifacts::NETWORK_WORD_COUNT,
                &[("sqlite", path.as_str())],
            )
        },
        kills,
        &mut random,
        &setup.scratch,
    );
    let rows = sqlite_word_counts(&database, "word_counts");
    let stored: usize = rows.values().map(|counts| counts.len()).sum();
    // Exactly the batches with input, each with its files' counts.
    let mut expected: BTreeMap<u64, Counts> = BTreeMap::new();
    for file in &setup.files {
        let counts = count_words(file.lines.iter().map(String::as_str));
        crate::util::add_counts(expected.entry(file.batch).or_default(), &counts);
    }
    assert_eq!(
        rows.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the batches in the table"
    );
    for (time, counts) in &expected {
        crate::util::assert_counts_eq(counts, &rows[time], &format!("batch {time} in SQLite"));
    }
    eprintln!(
        "crash harness (save_to_sqlite): {} kills ({} while a checkpoint was written), {} \
         restarts, {} records in {} files, {} rows in {} batches: each batch once; median \
         recovery {:?}",
        tally.kills,
        tally.kills_at_checkpoints,
        tally.restarts,
        records(&setup.files),
        setup.files.len(),
        stored,
        rows.len(),
        tally.median_recovery()
    );
    assert_eq!(tally.kills, kills, "every kill landed on a running job");
}

/// The lines of every write-ahead log record of source node 0, by batch,
/// read with the format `host/src/batching/wal.rs` documents.
fn logged_lines(checkpoint: &Path) -> BTreeMap<u64, Vec<String>> {
    let mut batches: BTreeMap<u64, Vec<String>> = BTreeMap::new();
    let Ok(entries) = fs::read_dir(checkpoint.join("wal").join("0")) else {
        return batches;
    };
    for entry in entries {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.ends_with(".rec") || name.starts_with('.') {
            continue;
        }
        let bytes = fs::read(entry.path()).unwrap();
        let u32_at = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        assert_eq!(&bytes[..4], b"SLWR", "{name}");
        assert_eq!(u32_at(4), 1, "{name}: format version");
        let batch = u64_at(8);
        let len = u32_at(16) as usize;
        assert_eq!(bytes.len(), 20 + len + 4, "{name}: a whole record");
        // The payload: invalid records, record count, end offsets, bytes.
        let payload = 20;
        let count = u32_at(payload + 8) as usize;
        let data = payload + 12 + 4 * count;
        let mut start = 0;
        let lines = batches.entry(batch).or_default();
        for i in 0..count {
            let end = u32_at(payload + 12 + 4 * i) as usize;
            lines.push(String::from_utf8(bytes[data + start..data + end].to_vec()).unwrap());
            start = end;
        }
    }
    batches
}

#[test]
fn socket_lines_in_the_write_ahead_log_at_a_kill_are_counted_exactly_once_after_recovery() {
    use std::io::Write;
    use std::net::TcpListener;

    let mut random = Random(env_u64("SLUICE_CRASH_SEED", 12) ^ 3);
    let tmp = tempfile::tempdir().unwrap();
    let (checkpoint, database) = (tmp.path().join("checkpoint"), tmp.path().join("counts.db"));
    let mut corpus = sluice_corpus::Corpus::new(random.next());
    let mut text = Vec::new();
    for _ in 0..4000 {
        corpus.line(&mut text);
    }
    let text = String::from_utf8(text).unwrap();
    let lines: Vec<String> = text.lines().map(String::from).collect();
    let sent_lines = lines.clone();

    // The first connection gets the lines, 40 at a time every 25 ms, until
    // the process dies; the second (the restarted process) gets nothing and
    // is closed, which ends the source.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let server = std::thread::spawn(move || {
        let (mut first, _) = listener.accept().unwrap();
        let mut sent = 0;
        for chunk in lines.chunks(40) {
            let mut bytes = chunk.join("\n");
            bytes.push('\n');
            if first.write_all(bytes.as_bytes()).is_err() {
                break;
            }
            sent += chunk.len();
            std::thread::sleep(Duration::from_millis(25));
        }
        drop(first);
        let (second, _) = listener.accept().unwrap();
        drop(second);
        sent
    });
    let job = || {
        Sluice::run(
            &plugin(sluice_test_artifacts::NETWORK_WORD_COUNT),
            &tmp.path().join("data"),
        )
        .job_arg("host", "127.0.0.1")
        .job_arg("port", port)
        .job_arg("sqlite", database.display())
        .opt("--batch-interval", format!("{BATCH_MS}ms"))
        .opt("--checkpoint", &checkpoint)
        .opt("--checkpoint-interval", format!("{CHECKPOINT_MS}ms"))
        .arg("--until-sources-end")
    };
    let running = job().spawn();
    std::thread::sleep(Duration::from_millis(1500 + random.below(800)));
    let killed = running.kill();
    assert!(!killed.stderr.contains("error:"), "{killed:?}");
    let logged = logged_lines(&checkpoint);
    assert!(!logged.is_empty(), "the log held records at the kill");

    let out = job().output();
    out.assert_success();
    let sent = server.join().unwrap();

    let rows = sqlite_word_counts(&database, "word_counts");
    // Every batch the log held: its lines counted exactly once, in it.
    let mut logged_total = 0;
    for (batch, lines) in &logged {
        let expected = count_words(lines.iter().map(String::as_str));
        let stored = rows.get(batch).cloned().unwrap_or_default();
        crate::util::assert_counts_eq(&expected, &stored, &format!("logged batch {batch}"));
        logged_total += lines.len();
    }
    // And nothing counted that was not sent, nor anything twice.
    let sent_counts = count_words(sent_lines[..sent].iter().map(String::as_str));
    let mut stored_totals = Counts::new();
    for counts in rows.values() {
        crate::util::add_counts(&mut stored_totals, counts);
    }
    for (word, count) in &stored_totals {
        let at_most = sent_counts.get(word).copied().unwrap_or(0);
        assert!(*count <= at_most, "{word}: {count} counted, {at_most} sent");
    }
    eprintln!(
        "socket recovery: {} lines sent, {logged_total} in the write-ahead log at the kill ({} \
         batches), each counted once after recovery",
        sent,
        logged.len()
    );
}

#[test]
fn a_checkpointed_socket_job_counts_every_line_from_its_first_block() {
    use std::io::Write;
    use std::net::TcpListener;

    let tmp = tempfile::tempdir().unwrap();
    let database = tmp.path().join("counts.db");
    let text = String::from_utf8(crate::util::corpus(2000).to_vec()).unwrap();
    // Everything at once, as soon as the job connects: the first block
    // holds it, in the job's first batch.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let served = text.clone();
    let server = std::thread::spawn(move || {
        let (mut connection, _) = listener.accept().unwrap();
        connection.write_all(served.as_bytes()).unwrap();
    });
    Sluice::run(
        &plugin(sluice_test_artifacts::NETWORK_WORD_COUNT),
        &tmp.path().join("data"),
    )
    .job_arg("host", "127.0.0.1")
    .job_arg("port", port)
    .job_arg("sqlite", database.display())
    .opt("--batch-interval", format!("{BATCH_MS}ms"))
    .opt("--checkpoint", tmp.path().join("checkpoint"))
    .arg("--until-sources-end")
    .output()
    .assert_success();
    server.join().unwrap();
    let mut stored = Counts::new();
    for counts in sqlite_word_counts(&database, "word_counts").values() {
        crate::util::add_counts(&mut stored, counts);
    }
    crate::util::assert_counts_eq(&count_words(text.lines()), &stored, "every line counted");
}
