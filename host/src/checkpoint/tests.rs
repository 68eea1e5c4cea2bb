//! Checkpoints on local directories (real files) and on an S3-protocol
//! server (moto, started by the test on loopback).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::path::Path;
use std::sync::{Arc, Mutex};

use super::*;
use crate::data::KeyGroups;

const GROUPS: u32 = 8;

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn metadata(batch_time_ms: u64) -> Metadata {
    Metadata {
        job: "word-count".to_string(),
        plugin_digest: "sha256:abc".to_string(),
        graph: serde_json::json!({"nodes": [{"op": "flat_map"}, {"op": "update_state_by_key"}]}),
        batch_interval_ms: 1000,
        key_groups: GROUPS,
        partitions: 4,
        batch_time_ms,
        first_batch_ms: 1_700_000_000_000,
        sources: BTreeMap::from([(
            "files".to_string(),
            serde_json::json!({"taken": ["a.txt", "b.txt"]}),
        )]),
        accumulators: serde_json::json!({"lines": 42}),
    }
}

fn location(dir: &Path) -> String {
    dir.to_str().unwrap().to_string()
}

/// Every (operator, key) → value the store holds.
fn contents(store: &StateStore) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
    let mut all = BTreeMap::new();
    for name in store.names() {
        let op = store.operator(&name);
        for g in 0..store.key_groups().get() {
            for (k, v) in op.group(g).iter() {
                all.insert((name.clone(), k.to_vec()), v.to_vec());
            }
        }
    }
    all
}

/// The files under `dir`, relative, with `/` separators.
fn files_under(dir: &Path) -> BTreeSet<String> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeSet<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                let rel = path.strip_prefix(base).unwrap();
                out.insert(rel.to_str().unwrap().replace('\\', "/"));
            }
        }
    }
    let mut out = BTreeSet::new();
    if dir.exists() {
        walk(dir, dir, &mut out);
    }
    out
}

/// The data files a manifest on disk refers to.
fn referenced(dir: &Path, batch_time_ms: u64) -> BTreeSet<String> {
    let json = std::fs::read(dir.join(manifest_name(batch_time_ms))).unwrap();
    serde_json::from_slice::<Manifest>(&json).unwrap().files()
}

fn restored_contents(restored: &Restored) -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
    let store = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    restored.restore_state(&store).unwrap();
    contents(&store)
}

/// Keys of `groups` distinct key groups of an 8-group job, one list per group.
fn keys_by_group() -> BTreeMap<u32, Vec<Vec<u8>>> {
    let groups = KeyGroups::new(GROUPS.into()).unwrap();
    let mut by_group: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    for i in 0..200 {
        let key = format!("word{i}").into_bytes();
        by_group.entry(groups.of(&key)).or_default().push(key);
    }
    assert_eq!(
        by_group.len(),
        GROUPS as usize,
        "200 words fill 8 key groups"
    );
    by_group
}

/// Captures what `tracing` logs on this thread during `f`.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer(Arc::new(Mutex::new(Vec::new())));
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    let result = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    (result, text)
}

#[test]
fn a_checkpoint_reads_back_its_state_blobs_and_metadata() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    // Names that are no file names; keys that are no UTF-8; an empty value.
    for i in 0..100u64 {
        store.insert(
            "running counts/ü",
            format!("w{i}").as_bytes(),
            &i.to_le_bytes(),
        );
    }
    store.insert("running counts/ü", &[0xff, 0x00, 0xfe], b"");
    store.insert("../escape", &[0x80; 3], &[1, 2, 3]);
    let blobs = vec![
        ("window#3".to_string(), vec![0u8, 255, 7]),
        ("join#5".to_string(), Vec::new()),
    ];
    let mut checkpoints = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    let t = 1_700_000_005_000;
    let written = checkpoints.write(&metadata(t), &store, &blobs).unwrap();
    assert_eq!(written.batch_time_ms, t);
    let nonempty: usize = store
        .names()
        .iter()
        .map(|n| {
            (0..GROUPS)
                .filter(|&g| !store.operator(n).group(g).is_empty())
                .count()
        })
        .sum();
    assert_eq!(written.groups_written, nonempty);
    assert_eq!(written.groups_referred, 0);
    assert_eq!(written.files, nonempty + 2 + 1);
    assert_eq!(written.oldest_retained_ms, t);
    let on_disk = files_under(dir.path());
    assert_eq!(
        written.bytes,
        on_disk
            .iter()
            .map(|f| std::fs::metadata(dir.path().join(f)).unwrap().len())
            .sum::<u64>()
    );
    assert!(
        on_disk.contains("manifests/00000001700000005000.json"),
        "{on_disk:?}"
    );
    assert!(
        on_disk
            .iter()
            .all(|f| f.starts_with("manifests/") || f.starts_with("data/00000001700000005000/")),
        "{on_disk:?}"
    );
    for name in store.names() {
        for g in 0..GROUPS {
            assert!(!store.operator(&name).group(g).is_changed(), "{name} {g}");
        }
    }

    // A key group file, read by hand against the documented format.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join(manifest_name(t))).unwrap()).unwrap();
    assert_eq!(manifest["format_version"], 1);
    let g = KeyGroups::new(GROUPS.into()).unwrap().of(&[0x80; 3]);
    let entry = &manifest["operators"]["../escape"][g.to_string()];
    let file = std::fs::read(dir.path().join(entry["file"].as_str().unwrap())).unwrap();
    let mut expected = b"SLKG".to_vec();
    expected.extend_from_slice(&1u32.to_le_bytes());
    expected.extend_from_slice(&g.to_le_bytes());
    expected.extend_from_slice(&1u64.to_le_bytes());
    expected.extend_from_slice(&3u32.to_le_bytes());
    expected.extend_from_slice(&3u32.to_le_bytes());
    expected.extend_from_slice(&[0x80, 0x80, 0x80, 1, 2, 3]);
    assert_eq!(file, expected);
    assert_eq!(entry["bytes"], expected.len());
    assert_eq!(entry["crc32"], crc32fast::hash(&expected));
    assert_eq!(entry["entries"], 1);

    // Another process: a fresh handle on the location.
    let mut reopened = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    let restored = reopened.latest().unwrap().expect("a checkpoint");
    assert_eq!(restored.metadata, metadata(t));
    assert_eq!(
        restored.blobs,
        blobs.iter().cloned().collect::<HashMap<_, _>>()
    );
    assert_eq!(restored.keys(), 102);
    let fresh = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    restored.restore_state(&fresh).unwrap();
    assert_eq!(contents(&fresh), contents(&store));
    for name in fresh.names() {
        for g in 0..GROUPS {
            assert!(!fresh.operator(&name).group(g).is_changed(), "{name} {g}");
        }
    }
    // Restoring into a store of another shape, or twice, is refused.
    let other = StateStore::new(KeyGroups::new(16).unwrap());
    let e = restored.restore_state(&other).unwrap_err();
    assert!(
        e.to_string().contains("it has 8 key groups, the job 16"),
        "{e}"
    );
    let e = restored.restore_state(&fresh).unwrap_err();
    assert!(
        e.to_string().contains("is not empty before the restore"),
        "{e}"
    );
}

#[test]
fn an_empty_location_has_no_checkpoint() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("not/yet");
    let mut checkpoints = Checkpoints::open(
        &location(&missing),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    assert!(checkpoints.latest().unwrap().is_none());
    assert_eq!(files_under(&missing), BTreeSet::new(), "the probe is gone");
}

#[test]
fn a_second_checkpoint_writes_only_the_changed_group_and_refers_to_the_others() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let by_group = keys_by_group();
    let store = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    for keys in by_group.values() {
        for key in keys {
            store.insert("counts", key, &1i64.to_le_bytes());
        }
    }
    store.insert("other", &by_group[&0][0], b"x");
    let mut checkpoints = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    let first = checkpoints.write(&metadata(1000), &store, &[]).unwrap();
    assert_eq!(first.groups_written, GROUPS as usize + 1);

    // One key of group 5 changes.
    store.insert("counts", &by_group[&5][0], &2i64.to_le_bytes());
    let second = checkpoints.write(&metadata(2000), &store, &[]).unwrap();
    assert_eq!(second.groups_written, 1);
    assert_eq!(second.groups_referred, GROUPS as usize);
    let new_files: Vec<String> = files_under(dir.path())
        .into_iter()
        .filter(|f| f.starts_with("data/00000000000000002000/"))
        .collect();
    assert_eq!(new_files, ["data/00000000000000002000/0.kg"]);
    let manifest: Manifest =
        serde_json::from_slice(&std::fs::read(dir.path().join(manifest_name(2000))).unwrap())
            .unwrap();
    for (g, file) in &manifest.operators["counts"] {
        let dir_expected = if *g == 5 { "2000/" } else { "1000/" };
        assert!(file.file.contains(dir_expected), "group {g}: {}", file.file);
    }

    // Restored by another process: the union of both checkpoints.
    let mut reopened = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    let restored = reopened.latest().unwrap().unwrap();
    let fresh = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    restored.restore_state(&fresh).unwrap();
    assert_eq!(contents(&fresh), contents(&store));
    assert_eq!(
        fresh.get("counts", &by_group[&5][0]),
        Some(2i64.to_le_bytes().to_vec())
    );

    // After a restore, nothing changed: nothing written, everything referred.
    let third = reopened.write(&metadata(3000), &fresh, &[]).unwrap();
    assert_eq!(
        (third.groups_written, third.groups_referred),
        (0, GROUPS as usize + 1)
    );
    // A group emptied is written (empty), and reads back empty.
    for key in &by_group[&0] {
        fresh.remove("counts", key);
    }
    let fourth = reopened.write(&metadata(4000), &fresh, &[]).unwrap();
    assert_eq!(
        (fourth.groups_written, fourth.groups_referred),
        (1, GROUPS as usize)
    );
    let restored = reopened.latest().unwrap().unwrap();
    assert_eq!(restored.metadata.batch_time_ms, 4000);
    assert_eq!(restored_contents(&restored), contents(&fresh));
    assert!(
        restored_contents(&restored)
            .keys()
            .all(|(name, key)| name != "counts" || !by_group[&0].contains(key))
    );
}

#[test]
fn a_checkpoint_written_again_at_the_same_batch_time_replaces_it_without_overwriting_its_files() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    store.insert("s", b"a", b"1");
    let mut checkpoints = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    checkpoints.write(&metadata(1000), &store, &[]).unwrap();
    store.insert("s", b"a", b"2");
    checkpoints.write(&metadata(1000), &store, &[]).unwrap();
    assert_eq!(
        files_under(dir.path()),
        BTreeSet::from([
            "manifests/00000000000000001000.json".to_string(),
            "data/00000000000000001000/1.kg".to_string(),
        ])
    );
    let restored = checkpoints.latest().unwrap().unwrap();
    assert_eq!(
        restored_contents(&restored),
        BTreeMap::from([(("s".to_string(), b"a".to_vec()), b"2".to_vec())])
    );
    // Going back in time is refused, and writes nothing.
    let e = checkpoints.write(&metadata(999), &store, &[]).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "checkpoint 999 in {}: it is older than checkpoint 1000, read or written before",
            location(dir.path())
        )
    );
    assert_eq!(files_under(dir.path()).len(), 2);
}

/// Two checkpoints of distinct states (1000: a=1, 2000: a=2 and b=3).
fn two_checkpoints(dir: &Path, rt: &tokio::runtime::Runtime) -> StateStore {
    let store = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    store.insert("s", b"a", b"1");
    let mut checkpoints = Checkpoints::open(
        &location(dir),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    checkpoints.write(&metadata(1000), &store, &[]).unwrap();
    store.insert("s", b"a", b"2");
    store.insert("s", b"b", b"3");
    checkpoints
        .write(
            &metadata(2000),
            &store,
            &[("w".to_string(), b"blob".to_vec())],
        )
        .unwrap();
    store
}

fn first_state() -> BTreeMap<(String, Vec<u8>), Vec<u8>> {
    BTreeMap::from([(("s".to_string(), b"a".to_vec()), b"1".to_vec())])
}

#[test]
fn a_missing_manifest_falls_back_to_the_previous_checkpoint() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    two_checkpoints(dir.path(), &rt);
    std::fs::remove_file(dir.path().join(manifest_name(2000))).unwrap();
    let mut checkpoints = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    let restored = checkpoints.latest().unwrap().unwrap();
    assert_eq!(restored.metadata.batch_time_ms, 1000);
    assert_eq!(restored_contents(&restored), first_state());
    assert!(restored.blobs.is_empty());
}

#[test]
fn a_truncated_or_altered_data_file_falls_back_to_the_previous_checkpoint_with_a_warning() {
    let rt = runtime();
    for damage in ["truncate", "flip", "remove", "blob"] {
        let dir = tempfile::tempdir().unwrap();
        two_checkpoints(dir.path(), &rt);
        let newest = dir.path().join("data/00000000000000002000");
        let target = if damage == "blob" { "1.blob" } else { "0.kg" };
        let file = newest.join(target);
        let mut bytes = std::fs::read(&file).unwrap();
        let len = bytes.len();
        match damage {
            "truncate" | "blob" => std::fs::write(&file, &bytes[..len - 1]).unwrap(),
            "flip" => {
                bytes[len - 1] ^= 1;
                std::fs::write(&file, &bytes).unwrap();
            }
            _ => std::fs::remove_file(&file).unwrap(),
        }
        let mut checkpoints = Checkpoints::open(
            &location(dir.path()),
            &StorageOptions::new(),
            3,
            rt.handle().clone(),
        )
        .unwrap();
        let (restored, log) = logged(|| checkpoints.latest().unwrap().unwrap());
        assert_eq!(restored.metadata.batch_time_ms, 1000, "{damage}");
        assert_eq!(restored_contents(&restored), first_state(), "{damage}");
        let cause = match damage {
            "truncate" => format!(
                "data/00000000000000002000/0.kg has {} bytes, the manifest says {len}",
                len - 1
            ),
            "blob" => format!(
                "data/00000000000000002000/1.blob has {} bytes, the manifest says {len}",
                len - 1
            ),
            "flip" => "data/00000000000000002000/0.kg fails its checksum".to_string(),
            _ => "data/00000000000000002000/0.kg is missing".to_string(),
        };
        assert!(log.contains("WARN"), "{damage}: {log}");
        assert!(
            log.contains(&format!(
                "checkpoint manifests/00000000000000002000.json in {} skipped: {cause}",
                location(dir.path())
            )),
            "{damage}: {log}"
        );
    }
}

#[test]
fn a_manifest_of_another_format_version_or_unparsable_is_skipped() {
    let rt = runtime();
    for (content, cause) in [
        (None, "format version 2, this Sluice reads 1"),
        (
            Some(&b"{\"format_version\": 1, \"metad"[..]),
            "the manifest does not parse",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        two_checkpoints(dir.path(), &rt);
        let path = dir.path().join(manifest_name(2000));
        let new = match content {
            Some(bytes) => bytes.to_vec(),
            None => {
                let mut json: serde_json::Value =
                    serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
                json["format_version"] = 2.into();
                serde_json::to_vec(&json).unwrap()
            }
        };
        std::fs::write(&path, new).unwrap();
        let mut checkpoints = Checkpoints::open(
            &location(dir.path()),
            &StorageOptions::new(),
            3,
            rt.handle().clone(),
        )
        .unwrap();
        let (restored, log) = logged(|| checkpoints.latest().unwrap().unwrap());
        assert_eq!(restored.metadata.batch_time_ms, 1000);
        assert_eq!(restored_contents(&restored), first_state());
        assert!(log.contains(cause), "{log}");
    }
}

#[test]
fn retention_keeps_the_newest_and_deletes_exactly_the_files_only_dropped_ones_used() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let by_group = keys_by_group();
    let store = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    let mut checkpoints = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        2,
        rt.handle().clone(),
    )
    .unwrap();
    // Group 7 is written once (by checkpoint 1) and never changes; checkpoint
    // i changes group i - 1 (and group 0 each time).
    for key in &by_group[&7] {
        store.insert("s", key, b"forever");
    }
    let mut states = BTreeMap::new();
    let mut all_referenced = BTreeMap::new();
    for i in 1..=5u64 {
        store.insert("s", &by_group[&0][0], &i.to_le_bytes());
        store.insert("s", &by_group[&((i - 1) as u32)][1], &i.to_le_bytes());
        let t = i * 1000;
        let written = checkpoints
            .write(&metadata(t), &store, &[("b".to_string(), vec![i as u8])])
            .unwrap();
        assert_eq!(written.oldest_retained_ms, t.saturating_sub(1000).max(1000));
        states.insert(t, contents(&store));
        all_referenced.insert(t, referenced(dir.path(), t));
    }
    let mut expected: BTreeSet<String> = all_referenced[&4000]
        .union(&all_referenced[&5000])
        .cloned()
        .collect();
    expected.insert(manifest_name(4000));
    expected.insert(manifest_name(5000));
    assert_eq!(files_under(dir.path()), expected);
    // What survives: a file of checkpoint 1 (group 7), still referred to.
    assert!(
        expected
            .iter()
            .any(|f| f.starts_with("data/00000000000000001000/")),
        "{expected:?}"
    );
    // What went: each dropped checkpoint's group 0 and blob.
    for t in [1000, 2000, 3000] {
        let gone: Vec<&String> = all_referenced[&t].difference(&expected).collect();
        assert_eq!(gone.len(), 2, "{t}: {gone:?}");
    }
    // No directory left empty.
    for entry in std::fs::read_dir(dir.path().join("data")).unwrap() {
        let path = entry.unwrap().path();
        assert!(
            std::fs::read_dir(&path).unwrap().next().is_some(),
            "{path:?}"
        );
    }
    // Both kept checkpoints restore their own state.
    let mut reopened = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        2,
        rt.handle().clone(),
    )
    .unwrap();
    let restored = reopened.latest().unwrap().unwrap();
    assert_eq!(restored_contents(&restored), states[&5000]);
    std::fs::remove_file(dir.path().join(manifest_name(5000))).unwrap();
    let restored = reopened.latest().unwrap().unwrap();
    assert_eq!(restored.metadata.batch_time_ms, 4000);
    assert_eq!(restored_contents(&restored), states[&4000]);
    assert_eq!(restored.blobs["b"], [4]);
}

#[test]
fn an_unwritable_location_is_an_error_naming_it_and_the_cause() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "").unwrap();
    let under_a_file = file.join("ck");
    let e = Checkpoints::open(
        &location(&under_a_file),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap_err();
    let message = e.to_string();
    assert!(message.contains(&location(&under_a_file)), "{message}");
    assert!(message.contains("Not a directory"), "{message}");

    // A directory where the probe object must go.
    let ck = dir.path().join("ck");
    std::fs::create_dir_all(ck.join(".sluice-probe")).unwrap();
    let e = Checkpoints::open(
        &location(&ck),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap_err();
    let message = e.to_string();
    assert!(
        message.starts_with(&format!(
            "checkpoint location {} is not writable (.sluice-probe): ",
            location(&ck),
        )),
        "{message}"
    );
}

#[test]
fn reset_empties_the_location() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    two_checkpoints(dir.path(), &rt);
    std::fs::create_dir_all(dir.path().join("wal")).unwrap();
    std::fs::write(dir.path().join("wal/00000000000000002000.log"), "x").unwrap();
    let mut checkpoints = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    assert!(checkpoints.latest().unwrap().is_some());
    checkpoints.reset().unwrap();
    assert_eq!(files_under(dir.path()), BTreeSet::new());
    assert!(checkpoints.latest().unwrap().is_none());
    // After a reset, a write refers to nothing old: it writes every group.
    let store = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    store.insert("s", b"k", b"v");
    let written = checkpoints.write(&metadata(5000), &store, &[]).unwrap();
    assert_eq!((written.groups_written, written.groups_referred), (1, 0));
}

/// moto in server mode on a free loopback port, killed on drop.
pub(crate) struct S3Server {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
}

impl S3Server {
    /// Starts `scripts/s3-test-server` (without installing) and creates
    /// `bucket`. Panics, saying how to install it, when it does not start.
    pub fn start(bucket: &str) -> S3Server {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/../scripts/s3-test-server");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = std::process::Command::new(script)
            .args(["--no-install", &port.to_string()])
            .stdout(std::process::Stdio::null())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {script}: {e}"));
        let mut server = S3Server { child, port };
        let fail = |why: String| -> ! {
            let log = std::fs::read_to_string(log.path()).unwrap_or_default();
            panic!(
                "the S3 test server did not start ({why}); install it with \
                 `scripts/s3-test-server --install` (scripts/test does). Its output:\n{log}"
            )
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            if let Ok(Some(status)) = server.child.try_wait() {
                fail(format!("it exited with {status}"));
            }
            if let Ok(response) = http(port, "GET", "/")
                && status_of(&response) == Some(200)
            {
                break;
            }
            if std::time::Instant::now() > deadline {
                fail("no answer on port {port} within 60 s".to_string());
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        match http(port, "PUT", &format!("/{bucket}")) {
            Ok(response) if status_of(&response) == Some(200) => {}
            other => fail(format!("creating bucket {bucket}: {other:?}")),
        }
        server
    }

    /// The options for a store on this server.
    pub fn options(&self) -> StorageOptions {
        StorageOptions::new()
            .with("aws_access_key_id", "test")
            .with("aws_secret_access_key", "test")
            .with("aws_region", "us-east-1")
            .with("aws_endpoint", format!("http://127.0.0.1:{}", self.port))
            .with("aws_allow_http", "true")
    }
}

impl Drop for S3Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One HTTP/1.1 request with an empty body; the whole response.
fn http(port: u16, method: &str, path: &str) -> std::io::Result<String> {
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(std::time::Duration::from_secs(10)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    Ok(String::from_utf8_lossy(&response).into_owned())
}

fn status_of(response: &str) -> Option<u16> {
    response.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn checkpoints_on_s3_round_trip_incrementally_keep_the_newest_and_reset() {
    let server = S3Server::start("sluice-test");
    let rt = runtime();
    let url = "s3://sluice-test/jobs/word-count";
    let options = server.options();
    let by_group = keys_by_group();
    let store = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    for keys in by_group.values() {
        for key in keys {
            store.insert("counts", key, &3i64.to_le_bytes());
        }
    }
    store.insert("counts", &[0xff, 0xfe], b"not utf-8");
    let mut checkpoints = Checkpoints::open(url, &options, 1, rt.handle().clone()).unwrap();
    assert!(checkpoints.latest().unwrap().is_none());
    checkpoints
        .write(
            &metadata(1000),
            &store,
            &[("w".to_string(), b"partials".to_vec())],
        )
        .unwrap();
    store.insert("counts", &by_group[&2][0], &4i64.to_le_bytes());
    let second = checkpoints
        .write(
            &metadata(2000),
            &store,
            &[("w".to_string(), b"partials 2".to_vec())],
        )
        .unwrap();
    assert_eq!(
        (second.groups_written, second.groups_referred),
        (1, GROUPS as usize - 1)
    );
    // retain = 1: manifest 1000 and its blob and group 2 file are gone.
    assert_eq!(second.deleted, 3);
    assert_eq!(second.oldest_retained_ms, 2000);

    let mut reopened = Checkpoints::open(url, &options, 1, rt.handle().clone()).unwrap();
    let restored = reopened.latest().unwrap().unwrap();
    assert_eq!(restored.metadata, metadata(2000));
    assert_eq!(restored.blobs["w"], b"partials 2");
    assert_eq!(restored_contents(&restored), contents(&store));

    reopened.reset().unwrap();
    assert!(reopened.latest().unwrap().is_none());
    let (s3, root) = storage::open(url, &options).unwrap();
    let left: Vec<object_store::ObjectMeta> =
        rt.block_on(s3.list(Some(&root)).try_collect()).unwrap();
    assert!(left.is_empty(), "{left:?}");

    // A bucket that does not exist: the error names the location.
    let e =
        Checkpoints::open("s3://no-such-bucket/ck", &options, 1, rt.handle().clone()).unwrap_err();
    assert!(
        e.to_string()
            .starts_with("checkpoint location s3://no-such-bucket/ck is not writable"),
        "{e}"
    );
}

/// The size of a checkpoint of one million `word123456` → i64 keys in 128
/// key groups: `cargo test --release -p sluice --lib
/// checkpoint::tests::size_of_a_million_keys -- --ignored --nocapture`.
#[test]
#[ignore = "a measurement"]
fn size_of_a_million_keys() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = StateStore::new(KeyGroups::new(128).unwrap());
    let op = store.operator("counts");
    for i in 0..1_000_000u64 {
        let key = format!("word{i:06}");
        op.group_of(key.as_bytes())
            .insert(key.as_bytes(), &(i as i64).to_le_bytes());
    }
    let mut meta = metadata(1000);
    meta.key_groups = 128;
    let mut checkpoints = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let written = checkpoints.write(&meta, &store, &[]).unwrap();
    let write = started.elapsed();
    let started = std::time::Instant::now();
    let restored = checkpoints.latest().unwrap().unwrap();
    let fresh = StateStore::new(KeyGroups::new(128).unwrap());
    restored.restore_state(&fresh).unwrap();
    let read = started.elapsed();
    assert_eq!(fresh.operator("counts").stats().keys, 1_000_000);
    println!(
        "1M keys in 128 key groups: {} files, {} bytes ({:.1} MB, {:.1} bytes/key); \
         write {write:?}, read + restore {read:?}",
        written.files,
        written.bytes,
        written.bytes as f64 / 1e6,
        written.bytes as f64 / 1e6
    );
}

#[test]
fn a_failed_write_names_the_object_and_cause_and_keeps_the_previous_checkpoint() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    let store = two_checkpoints(dir.path(), &rt);
    let mut checkpoints = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    let restored = checkpoints.latest().unwrap().unwrap();
    let fresh = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    restored.restore_state(&fresh).unwrap();
    fresh.insert("s", b"a", b"4");
    // The object the next key group file goes to cannot be written.
    std::fs::create_dir_all(dir.path().join("data/00000000000000003000/0.kg")).unwrap();
    let e = checkpoints.write(&metadata(3000), &fresh, &[]).unwrap_err();
    let message = e.to_string();
    assert!(
        message.starts_with(&format!(
            "cannot write checkpoint 3000 to {} (data/00000000000000003000/0.kg): ",
            location(dir.path())
        )),
        "{message}"
    );
    assert!(message.contains("Is a directory"), "{message}");
    // Nothing was marked written: the next write writes the group again.
    let a = KeyGroups::new(GROUPS.into()).unwrap().of(b"a");
    assert!(fresh.operator("s").group(a).is_changed());
    assert!(!dir.path().join(manifest_name(3000)).exists());
    let restored = checkpoints.latest().unwrap().unwrap();
    assert_eq!(restored.metadata.batch_time_ms, 2000);
    assert_eq!(restored_contents(&restored), contents(&store));
}

#[test]
fn files_left_half_written_by_a_killed_process_are_deleted_by_the_next_checkpoint() {
    let rt = runtime();
    let dir = tempfile::tempdir().unwrap();
    two_checkpoints(dir.path(), &rt);
    // What `LocalFileSystem` leaves when killed in a put: `<name>#<digits>`.
    let leftovers = [
        "data/00000000000000002000/7.kg#12",
        "data/00000000000000002500/0.kg#1",
        "manifests/00000000000000002500.json#3",
    ];
    for file in leftovers {
        let path = dir.path().join(file);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "half").unwrap();
    }
    // A later checkpoint's leftover is not this one's business.
    let later = "data/00000000000000009000/0.kg#1";
    std::fs::create_dir_all(dir.path().join("data/00000000000000009000")).unwrap();
    std::fs::write(dir.path().join(later), "half").unwrap();
    let mut checkpoints = Checkpoints::open(
        &location(dir.path()),
        &StorageOptions::new(),
        3,
        rt.handle().clone(),
    )
    .unwrap();
    let restored = checkpoints.latest().unwrap().unwrap();
    let store = StateStore::new(KeyGroups::new(GROUPS.into()).unwrap());
    restored.restore_state(&store).unwrap();
    store.insert("s", b"c", b"5");
    checkpoints.write(&metadata(3000), &store, &[]).unwrap();
    let files = files_under(dir.path());
    for file in leftovers {
        assert!(!files.contains(file), "{file} in {files:?}");
    }
    assert!(!dir.path().join("data/00000000000000002500").exists());
    assert!(files.contains(later));
}
