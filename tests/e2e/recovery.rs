//! Recovery when things go wrong around a checkpoint location: a torn
//! newest checkpoint (manifest deleted or cut short, a data file cut
//! short), the checkpoints of another plugin, changed settings, a location
//! that cannot be written, a full disk (a tiny file size limit), and the
//! same recovery after kill -9 with the checkpoint on `s3://` (moto).
//!
//! As in the crash harness, the input is a directory of files whose
//! modification times are set: a text file stream puts each file in the
//! batch of its modification time, so the running counts of every batch are
//! known exactly, independently of Sluice.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::util::{
    Counts, Running, S3Server, Sluice, TimedFile, assert_counts_eq, count_words, now_ms,
    parse_counts, plugin, read_saved_batches, wait_until, write_timed_file,
};

/// Batch interval of the jobs here.
const BATCH_MS: u64 = 250;
/// Checkpoint interval: every 2 batches.
const CHECKPOINT_MS: u64 = 500;
/// Files appear (by modification time) one per batch from this long after
/// the test starts: time for the first run to compile the plugin.
const LEAD_MS: u64 = 5000;
/// How long one run may take.
const TIMEOUT: Duration = Duration::from_secs(90);

/// The batch a time belongs to (the host's `BatchClock::batch_for`).
fn batch_for(t: u64) -> u64 {
    t.div_ceil(BATCH_MS) * BATCH_MS
}

/// A job's directories and input.
struct Setup {
    tmp: tempfile::TempDir,
    input: PathBuf,
    checkpoint: PathBuf,
    prefix: PathBuf,
    data: PathBuf,
    files: Vec<TimedFile>,
}

impl Setup {
    /// `count` files of `lines` corpus lines each (seed `seed`), file `i`
    /// modified in the middle of the batch `i` batches after `first_ms`.
    fn new(count: usize, lines: usize, first_ms: u64, seed: u64) -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let input = tmp.path().join("in");
        fs::create_dir_all(&input).unwrap();
        let mut corpus = sluice_corpus::Corpus::new(seed);
        let mut files = Vec::new();
        for i in 0..count {
            let mut text = Vec::new();
            for _ in 0..lines {
                corpus.line(&mut text);
            }
            let modified = first_ms + i as u64 * BATCH_MS + BATCH_MS / 2;
            let path = input.join(format!("part-{i:04}.txt"));
            files.push(write_timed_file(&path, &text, modified, BATCH_MS));
        }
        Setup {
            input,
            checkpoint: tmp.path().join("checkpoint"),
            prefix: tmp.path().join("out").join("counts"),
            data: tmp.path().join("data"),
            files,
            tmp,
        }
    }

    /// Files one per batch from [`LEAD_MS`] on.
    fn ahead(count: usize, seed: u64) -> Setup {
        Setup::new(count, 20, batch_for(now_ms() + LEAD_MS), seed)
    }

    /// `sluice run PLUGIN` over the input, saving to the prefix, with
    /// checkpoints at `location`, ending once every file is read.
    fn job(&self, wasm: &str, location: &str) -> Sluice {
        self.job_every(wasm, location, BATCH_MS, CHECKPOINT_MS)
    }

    /// [`Setup::job`] with another batch and checkpoint interval.
    fn job_every(&self, wasm: &str, location: &str, batch_ms: u64, checkpoint_ms: u64) -> Sluice {
        let mut job = Sluice::run(&plugin(wasm), &self.data)
            .job_arg("dir", self.input.display())
            .job_arg("output", self.prefix.display())
            .opt("--batch-interval", format!("{batch_ms}ms"))
            .opt("--checkpoint", location)
            .opt("--checkpoint-interval", format!("{checkpoint_ms}ms"))
            .arg("--until-sources-end")
            .timeout(TIMEOUT);
        if wasm == sluice_test_artifacts::WINDOWED_WORD_COUNT {
            job = job.job_arg("window", "1s").job_arg("slide", "500ms");
        }
        job
    }

    fn stateful(&self) -> Sluice {
        self.job(
            sluice_test_artifacts::STATEFUL_WORD_COUNT,
            &self.checkpoint.display().to_string(),
        )
    }

    /// The word counts of the files of the batches `within` accepts.
    fn counts(&self, within: impl Fn(u64) -> bool) -> Counts {
        count_words(
            self.files
                .iter()
                .filter(|f| within(f.batch))
                .flat_map(|f| f.lines.iter().map(String::as_str)),
        )
    }

    /// Every saved directory, by batch time, as counts.
    fn saved(&self) -> BTreeMap<u64, Counts> {
        read_saved_batches(&self.prefix, None)
            .unwrap()
            .into_iter()
            .map(|batch| (batch.time_ms, parse_counts(batch.lines()).unwrap()))
            .collect()
    }

    /// The newest batch saved so far.
    fn last_saved(&self) -> Option<u64> {
        read_saved_batches(&self.prefix, None)
            .ok()?
            .last()
            .map(|b| b.time_ms)
    }

    /// Checks the running counts saved: one directory per batch from the
    /// first to the last, none missing; each with the counts of every file
    /// of the batches up to it; the last one after the last file's batch.
    #[track_caller]
    fn assert_running_counts_exact(&self) {
        let saved = self.saved();
        let (&first, &last) = (
            saved.keys().next().expect("batches were saved"),
            saved.keys().last().expect("batches were saved"),
        );
        let expected_times: Vec<u64> = (first..=last).step_by(BATCH_MS as usize).collect();
        assert_eq!(
            saved.keys().copied().collect::<Vec<_>>(),
            expected_times,
            "one directory per batch, none missing"
        );
        for (&time, counts) in &saved {
            let expected = self.counts(|batch| batch <= time);
            assert_counts_eq(&expected, counts, &format!("running counts at {time}"));
        }
        let last_file = self.files.iter().map(|f| f.batch).max().unwrap();
        assert!(last >= last_file, "the last file's batch {last_file} ran");
        assert_counts_eq(
            &self.counts(|_| true),
            &saved[&last],
            "final running totals",
        );
    }

    /// Waits until a batch at or after file `i`'s has been saved.
    #[track_caller]
    fn wait_for_file(&self, running: &mut Running, i: usize) {
        let batch = self.files[i].batch;
        let saved = wait_until(TIMEOUT, || {
            running.check_deadline();
            self.last_saved().is_some_and(|t| t >= batch)
        });
        assert!(saved, "batch {batch} (file {i}) was not saved in time");
    }
}

/// The batch times of the manifests at a local location, oldest first.
fn manifests(location: &Path) -> Vec<u64> {
    let mut times: Vec<u64> = fs::read_dir(location.join("manifests"))
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().ok()?;
            let time = name.strip_suffix(".json")?;
            (time.len() == 20).then(|| time.parse().ok())?
        })
        .collect();
    times.sort_unstable();
    times
}

/// `manifests/<T, 20 digits>.json`.
fn manifest_name(time: u64) -> String {
    format!("manifests/{time:020}.json")
}

fn read_manifest(location: &Path, time: u64) -> serde_json::Value {
    let text = fs::read_to_string(location.join(manifest_name(time))).unwrap();
    serde_json::from_str(&text).unwrap()
}

/// Every file under `dir` (relative path → size).
fn listing(dir: &Path) -> BTreeMap<String, u64> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, u64>) {
        for entry in fs::read_dir(dir).unwrap() {
            let entry = entry.unwrap();
            let path = entry.path();
            if entry.file_type().unwrap().is_dir() {
                walk(root, &path, out);
            } else {
                let rel = path.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, entry.metadata().unwrap().len());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(dir, dir, &mut out);
    out
}

/// The hex SHA-256 of a plugin's file: its digest.
fn digest_of(wasm: &str) -> String {
    hex::encode(Sha256::digest(fs::read(plugin(wasm)).unwrap()))
}

/// How the newest checkpoint is torn.
#[derive(Debug, Clone, Copy)]
enum Tear {
    /// Its manifest deleted (a kill between the data files and the
    /// manifest).
    DeleteManifest,
    /// Its manifest cut to half.
    TruncateManifest,
    /// One of the key group files it wrote itself cut to half.
    TruncateDataFile,
}

/// Runs stateful word count over 16 files, stops it gracefully (SIGTERM)
/// after about half of them, tears its newest checkpoint, restarts it and
/// checks that it resumed from the one before, re-ran the batches after it
/// and ends with the exact running counts.
fn torn_checkpoint_resumes_from_the_previous(tear: Tear, seed: u64) {
    let setup = Setup::ahead(16, seed);
    let mut running = setup.stateful().spawn();
    setup.wait_for_file(&mut running, 7);
    running.terminate();
    let out = running.wait();
    out.assert_success();
    let last_saved = setup.last_saved().expect("batches were saved");
    assert!(
        last_saved < setup.files[15].batch,
        "the job was stopped before the last file; {out:?}"
    );
    let times = manifests(&setup.checkpoint);
    assert!(times.len() >= 2, "two checkpoints at least: {times:?}");
    let (previous, newest) = (times[times.len() - 2], times[times.len() - 1]);
    assert_eq!(
        newest, last_saved,
        "the graceful stop checkpointed the last batch it ran"
    );
    let manifest = setup.checkpoint.join(manifest_name(newest));
    let cause = match tear {
        Tear::DeleteManifest => {
            fs::remove_file(&manifest).unwrap();
            "its manifest is missing".to_string()
        }
        Tear::TruncateManifest => {
            let len = fs::metadata(&manifest).unwrap().len();
            fs::File::options()
                .write(true)
                .open(&manifest)
                .unwrap()
                .set_len(len / 2)
                .unwrap();
            "the manifest does not parse".to_string()
        }
        Tear::TruncateDataFile => {
            // A key group file the newest checkpoint wrote (not one it
            // shares with the previous).
            let own = format!("data/{newest:020}/");
            let json = read_manifest(&setup.checkpoint, newest);
            let (file, bytes) = json["operators"]
                .as_object()
                .unwrap()
                .values()
                .flat_map(|groups| groups.as_object().unwrap().values())
                .map(|f| {
                    (
                        f["file"].as_str().unwrap().to_string(),
                        f["bytes"].as_u64().unwrap(),
                    )
                })
                .find(|(file, bytes)| file.starts_with(&own) && *bytes > 20)
                .unwrap_or_else(|| panic!("checkpoint {newest} wrote a key group: {json}"));
            fs::File::options()
                .write(true)
                .open(setup.checkpoint.join(&file))
                .unwrap()
                .set_len(bytes / 2)
                .unwrap();
            format!("{file} has {} bytes, the manifest says {bytes}", bytes / 2)
        }
    };
    let out = setup.stateful().output();
    out.assert_success();
    out.assert_stderr_contains(&[&format!(
        "resuming from the checkpoint of batch {previous} ms"
    )]);
    out.assert_stderr_contains(&[
        &format!(
            "checkpoint {} in {} skipped",
            manifest_name(newest),
            setup.checkpoint.display()
        ),
        &cause,
    ]);
    setup.assert_running_counts_exact();
    assert_every_data_file_is_referenced(&setup.checkpoint);
}

/// Retention leaves no data file that no manifest names (a torn
/// checkpoint's files included).
#[track_caller]
fn assert_every_data_file_is_referenced(location: &Path) {
    let mut named = std::collections::BTreeSet::new();
    for time in manifests(location) {
        let json = read_manifest(location, time);
        for groups in json["operators"].as_object().unwrap().values() {
            for file in groups.as_object().unwrap().values() {
                named.insert(file["file"].as_str().unwrap().to_string());
            }
        }
        for file in json["blobs"].as_object().unwrap().values() {
            named.insert(file["file"].as_str().unwrap().to_string());
        }
    }
    let unnamed: Vec<String> = listing(location)
        .into_keys()
        .filter(|name| name.starts_with("data/") && !named.contains(name))
        .collect();
    assert!(
        unnamed.is_empty(),
        "data files no manifest names: {unnamed:?}"
    );
}

#[test]
fn a_checkpoint_whose_data_file_is_cut_short_is_skipped_with_a_warning_and_nothing_is_lost() {
    torn_checkpoint_resumes_from_the_previous(Tear::TruncateDataFile, 121);
}

#[test]
fn a_checkpoint_whose_manifest_is_cut_short_is_skipped_with_a_warning_and_nothing_is_lost() {
    torn_checkpoint_resumes_from_the_previous(Tear::TruncateManifest, 122);
}

#[test]
fn a_checkpoint_without_its_manifest_is_skipped_with_a_warning_and_nothing_is_lost() {
    torn_checkpoint_resumes_from_the_previous(Tear::DeleteManifest, 123);
}

/// A location with the checkpoints of stateful word count over two files
/// (batches of [`BATCH_MS`]); the job ran to its end.
fn stateful_location(seed: u64) -> Setup {
    let setup = Setup::new(2, 10, batch_for(now_ms()) - 10 * BATCH_MS, seed);
    setup.stateful().output().assert_success();
    assert!(
        !manifests(&setup.checkpoint).is_empty(),
        "the run wrote checkpoints"
    );
    setup
}

#[test]
fn the_checkpoints_of_another_plugin_are_refused_unchanged_until_reset() {
    let setup = stateful_location(124);
    let location = setup.checkpoint.display().to_string();
    let stateful = digest_of(sluice_test_artifacts::STATEFUL_WORD_COUNT);
    let windowed = digest_of(sluice_test_artifacts::WINDOWED_WORD_COUNT);
    let newest = *manifests(&setup.checkpoint).last().unwrap();
    assert_eq!(
        read_manifest(&setup.checkpoint, newest)["metadata"]["plugin_digest"],
        stateful.as_str(),
        "a checkpoint records its plugin's SHA-256"
    );
    let before = listing(&setup.checkpoint);
    let windowed_job = || setup.job(sluice_test_artifacts::WINDOWED_WORD_COUNT, &location);
    let out = windowed_job().output();
    out.assert_failure();
    out.assert_stderr_contains(&[
        &location,
        &stateful[..12],
        &windowed[..12],
        "sluice upgrade",
        "new --checkpoint location",
        "--reset",
    ]);
    assert!(
        !out.stderr.contains(&stateful) && !out.stderr.contains(&windowed),
        "the digests are shortened; {out:?}"
    );
    assert!(!out.stdout.contains("Time:"), "no batch ran; {out:?}");
    assert_eq!(
        listing(&setup.checkpoint),
        before,
        "the refused run changed nothing at the location"
    );

    let out = windowed_job().arg("--reset").output();
    out.assert_success();
    out.assert_stderr_contains(&["--reset", &location]);
    let newest = *manifests(&setup.checkpoint).last().unwrap();
    assert_eq!(
        read_manifest(&setup.checkpoint, newest)["metadata"]["plugin_digest"],
        windowed.as_str(),
        "after --reset the location holds the new plugin's checkpoints"
    );
}

#[test]
fn a_changed_batch_interval_or_key_group_count_is_refused_naming_both_values() {
    let setup = stateful_location(125);
    let location = setup.checkpoint.display().to_string();
    let before = listing(&setup.checkpoint);
    let out = setup
        .job_every(
            sluice_test_artifacts::STATEFUL_WORD_COUNT,
            &location,
            500,
            1000,
        )
        .output();
    out.assert_failure();
    out.assert_stderr_contains(&[
        &location,
        "made with batch interval 250ms, and this run has 500ms",
        "--batch-interval 250ms resumes it",
    ]);
    assert!(!out.stdout.contains("Time:"), "no batch ran; {out:?}");
    assert_eq!(listing(&setup.checkpoint), before, "nothing changed");

    let out = setup.stateful().opt("--key-groups", "64").output();
    out.assert_failure();
    out.assert_stderr_contains(&[
        &location,
        "made with key groups 128, and this run has 64",
        "--key-groups 128 resumes it",
    ]);
    assert!(!out.stdout.contains("Time:"), "no batch ran; {out:?}");
    assert_eq!(listing(&setup.checkpoint), before, "nothing changed");

    // The same settings resume it.
    setup.stateful().output().assert_success();
    setup.assert_running_counts_exact();
}

#[test]
fn a_checkpoint_location_under_a_regular_file_fails_before_any_batch() {
    let setup = Setup::new(2, 10, batch_for(now_ms()) - 10 * BATCH_MS, 126);
    let file = setup.tmp.path().join("plain-file");
    fs::write(&file, "not a directory").unwrap();
    let location = file.join("checkpoint").display().to_string();
    let out = setup
        .job(sluice_test_artifacts::STATEFUL_WORD_COUNT, &location)
        .output();
    out.assert_failure();
    out.assert_stderr_contains(&[
        &format!("error: write-ahead log: cannot create {location}/wal"),
        "Not a directory",
    ]);
    assert!(!out.stdout.contains("Time:"), "no batch ran; {out:?}");
    assert!(setup.saved().is_empty(), "no batch was saved");
    assert_eq!(
        fs::read_to_string(&file).unwrap(),
        "not a directory",
        "the file is untouched"
    );
}

#[cfg(unix)]
#[test]
fn a_full_disk_stops_the_job_naming_the_file_and_a_restart_loses_nothing() {
    // 16 × 512 bytes: the first checkpoint's manifest (no state yet) fits;
    // once most of the 128 key groups hold words, a manifest naming them
    // does not.
    const LIMIT_BLOCKS: u32 = 16;
    let setup = Setup::ahead(12, 127);
    // Compile the plugin into the data directory's cache first (without
    // the limit: the cache entry is megabytes), with a job that reads an
    // empty directory and ends.
    let empty = setup.tmp.path().join("empty");
    fs::create_dir_all(&empty).unwrap();
    Sluice::run(
        &plugin(sluice_test_artifacts::STATEFUL_WORD_COUNT),
        &setup.data,
    )
    .job_arg("dir", empty.display())
    .arg("--until-sources-end")
    .timeout(TIMEOUT)
    .output()
    .assert_success();

    let out = setup
        .stateful()
        .spawn_with_file_size_limit(LIMIT_BLOCKS)
        .wait();
    out.assert_failure();
    let error = out
        .stderr
        .lines()
        .find(|l| l.starts_with("error:"))
        .unwrap()
        .to_string();
    let before = manifests(&setup.checkpoint);
    let last_good = *before
        .last()
        .expect("the checkpoints written before are there");
    // The manifest of a later checkpoint is what does not fit.
    let failed: u64 = error
        .split_once("(manifests/")
        .and_then(|(_, rest)| rest.split_once(".json)"))
        .and_then(|(time, _)| time.parse().ok())
        .unwrap_or_else(|| panic!("the error names the manifest: {error}"));
    assert!(failed > last_good, "{error}");
    for needle in [
        format!(
            "cannot write checkpoint {failed} to {} ({})",
            setup.checkpoint.display(),
            manifest_name(failed)
        ),
        "File too large".to_string(),
    ] {
        assert!(error.contains(&needle), "{needle:?} in {error:?}");
    }
    for &time in &before {
        assert!(
            fs::metadata(setup.checkpoint.join(manifest_name(time)))
                .unwrap()
                .len()
                <= u64::from(LIMIT_BLOCKS) * 512,
            "manifest {time} fits the limit"
        );
    }
    assert!(
        setup
            .last_saved()
            .is_some_and(|t| t < setup.files[11].batch),
        "the job stopped before its last file"
    );

    let out = setup.stateful().output();
    out.assert_success();
    out.assert_stderr_contains(&[&format!(
        "resuming from the checkpoint of batch {last_good} ms"
    )]);
    setup.assert_running_counts_exact();
}

#[test]
fn checkpoints_on_s3_survive_kill_9_with_exact_totals() {
    let server = S3Server::start("sluice-recovery");
    let setup = Setup::ahead(24, 128);
    let location = format!("s3://{}/job", server.bucket);
    let job = || {
        let mut job = setup.job(sluice_test_artifacts::STATEFUL_WORD_COUNT, &location);
        for (key, value) in server.env() {
            job = job.env(key, value);
        }
        for option in server.storage_options() {
            job = job.opt("--storage-option", option);
        }
        job
    };
    let mut kills = 0;
    for file in [4, 10, 16] {
        let mut running = job().spawn();
        setup.wait_for_file(&mut running, file);
        let out = running.kill();
        assert!(
            !out.stderr.contains("error:"),
            "the run failed before it was killed; {out:?}"
        );
        if kills > 0 {
            out.assert_stderr_contains(&["resuming from the checkpoint of batch"]);
        }
        kills += 1;
    }
    let out = job().output();
    out.assert_success();
    out.assert_stderr_contains(&["resuming from the checkpoint of batch"]);
    setup.assert_running_counts_exact();
    let manifests = server.list("job/manifests/").unwrap();
    assert!(
        !manifests.is_empty()
            && manifests.iter().all(|key| {
                key.strip_prefix("job/manifests/")
                    .and_then(|n| n.strip_suffix(".json"))
                    .is_some_and(|t| t.len() == 20 && t.bytes().all(|b| b.is_ascii_digit()))
            }),
        "the bucket holds the manifests: {manifests:?}"
    );
    assert!(
        !server.list("job/data/").unwrap().is_empty(),
        "the bucket holds data files"
    );
    assert!(
        !setup.checkpoint.exists(),
        "nothing was written to a local directory"
    );
    assert_eq!(kills, 3);
}
