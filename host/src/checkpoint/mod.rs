//! Checkpoints: a job's state, blobs and metadata written through
//! `object_store` to a checkpoint location, incrementally, and read back
//! after a restart.
//!
//! # Layout
//!
//! ```text
//! <root>/manifests/<T>.json   one per checkpoint; T = the batch time (ms since the epoch) of
//!                             the last completed batch, zero-padded to 20 digits (names sort by time)
//! <root>/data/<T>/<n>.kg      a key group of one operator written by checkpoint T (n: a counter)
//! <root>/data/<T>/<n>.blob    a blob (window partials, join buffers, …: bytes the caller names)
//! <root>/wal/                 the write-ahead log (not this module's; only `reset` deletes it)
//! ```
//!
//! Operator names are arbitrary strings and never appear in object paths:
//! the manifest maps them to files.
//!
//! # Manifest (`manifests/<T>.json`)
//!
//! ```json
//! { "format_version": 1,
//!   "metadata": { "job": …, "plugin_digest": …, "graph": …, "batch_interval_ms": …,
//!                 "key_groups": …, "partitions": …, "batch_time_ms": T, "first_batch_ms": …,
//!                 "sources": {…}, "accumulators": … },
//!   "operators": { "<operator name>": { "<key group>": { "file": "data/<T'>/<n>.kg",
//!                  "bytes": …, "crc32": …, "entries": … } } },
//!   "blobs": { "<blob name>": { "file": "data/<T>/<n>.blob", "bytes": …, "crc32": … } } }
//! ```
//!
//! A key group a checkpoint did not change refers to the file of an older
//! checkpoint (`T' < T`); a key group absent from the manifest is empty.
//! Blobs are written whole by every checkpoint. `crc32` is the CRC-32
//! (IEEE, `crc32fast`) of the whole file.
//!
//! # Key group file (`.kg`), all integers little-endian
//!
//! ```text
//! offset 0   4 bytes  magic "SLKG"
//! offset 4   u32      format version (1)
//! offset 8   u32      key group
//! offset 12  u64      entry count
//! offset 20  entries, back to back: [u32 key length][u32 value length][key bytes][value bytes]
//! ```
//!
//! Keys and values are the codec bytes the [`StateStore`] holds (see
//! `exec::state::store`), never memory dumps. The file ends right after the
//! last entry.
//!
//! # Visibility, torn checkpoints, retention
//!
//! A checkpoint's data files are written first (up to 8 at a time), its
//! manifest last: a checkpoint exists once its manifest does (object
//! stores write an object atomically; a local location writes a temporary
//! file, `fsync`s it and renames it into place). [`Checkpoints::latest`]
//! takes the newest manifest whose files are all present with the size and
//! checksum it records, skipping torn ones with a warning. After a write,
//! the newest `retain` manifests up to the one written are kept, older
//! ones are deleted, then every data file (up to that batch time) that no
//! kept manifest refers to. Manifests and data newer than the checkpoint
//! written (left by a run that died before reaching them, and skipped as
//! torn by `latest`) are left alone until a checkpoint passes them. On a
//! local location, retention also deletes the temporary files a process
//! killed during a write left (`<name>#<digits>`, hidden from
//! `object_store`'s listings).
//!
//! Call [`Checkpoints::latest`] (and restore it) or [`Checkpoints::reset`]
//! before the first [`Checkpoints::write`]; batch times never go back.
//!
//! # Threads
//!
//! Every call blocks on the given runtime handle (`Handle::block_on`): call
//! it from a plain thread, never from a tokio worker thread. Writing
//! expects the state to be quiescent (no batch running on it).

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt, stream};
use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};

use crate::exec::state::{KeyGroupState, StateStore};
use crate::storage::{self, StorageError, StorageOptions};

/// The version of the manifest and key group file formats this Sluice
/// writes and reads.
pub const FORMAT_VERSION: u32 = 1;

/// The first bytes of a key group file.
const MAGIC: &[u8; 4] = b"SLKG";

/// Bytes before a key group file's first entry.
const FILE_HEADER: usize = 20;

/// Objects written, read or deleted at a time.
const CONCURRENCY: usize = 8;

/// A checkpoint that cannot be written, read or restored.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The location is not a usable path or URL.
    #[error("checkpoint location: {0}")]
    Location(#[source] StorageError),
    /// The probe object could not be written or deleted.
    #[error("checkpoint location {location} is not writable ({object}): {source}")]
    NotWritable {
        /// The location as given.
        location: String,
        /// The probe's path under the location.
        object: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// A file or the manifest of a checkpoint could not be written.
    #[error("cannot write checkpoint {batch_time_ms} to {location} ({object}): {source}")]
    Write {
        /// The checkpoint's batch time.
        batch_time_ms: u64,
        /// The location.
        location: String,
        /// The object's path under the location.
        object: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// An object could not be read (other than missing: a missing file makes
    /// its checkpoint torn).
    #[error("cannot read {object} in checkpoint location {location}: {source}")]
    Read {
        /// The location.
        location: String,
        /// The object's path under the location.
        object: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// Objects could not be listed.
    #[error("cannot list {prefix} in checkpoint location {location}: {source}")]
    List {
        /// The location.
        location: String,
        /// The prefix listed, under the location.
        prefix: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// An object could not be deleted.
    #[error("cannot delete {object} in checkpoint location {location}: {source}")]
    Delete {
        /// The location.
        location: String,
        /// The object's path under the location.
        object: String,
        /// The store's error.
        source: Box<object_store::Error>,
    },
    /// The checkpoint does not fit the state store or the state given.
    #[error("checkpoint {batch_time_ms} in {location}: {reason}")]
    Mismatch {
        /// The location.
        location: String,
        /// The checkpoint's batch time.
        batch_time_ms: u64,
        /// What does not fit.
        reason: String,
    },
    /// The manifest could not be serialized.
    #[error("cannot encode the manifest of checkpoint {batch_time_ms}: {source}")]
    Encode {
        /// The checkpoint's batch time.
        batch_time_ms: u64,
        /// Serde's error.
        source: serde_json::Error,
    },
}

/// What a checkpoint records besides state and blobs: what must not change
/// across a restart and where to resume.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
pub struct Metadata {
    /// The job's name.
    pub job: String,
    /// The digest of the plugin that ran the job.
    pub plugin_digest: String,
    /// The job graph, as the caller renders it (opaque here).
    pub graph: serde_json::Value,
    /// The batch interval, in ms.
    pub batch_interval_ms: u64,
    /// The job's key groups, N.
    pub key_groups: u32,
    /// The job's partition count.
    pub partitions: u32,
    /// The batch time of the last completed batch (the checkpoint's name).
    pub batch_time_ms: u64,
    /// The batch time of the job's first batch ever.
    pub first_batch_ms: u64,
    /// Source positions, by source (opaque here).
    pub sources: BTreeMap<String, serde_json::Value>,
    /// Accumulator totals (opaque here).
    pub accumulators: serde_json::Value,
}

/// A key group file as a manifest records it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct GroupFile {
    /// Path under the location (`data/<T>/<n>.kg`).
    pub file: String,
    /// Size of the file.
    pub bytes: u64,
    /// CRC-32 of the whole file.
    pub crc32: u32,
    /// Number of keys.
    pub entries: u64,
}

/// A blob file as a manifest records it.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq, Eq)]
pub struct BlobFile {
    /// Path under the location (`data/<T>/<n>.blob`).
    pub file: String,
    /// Size of the file.
    pub bytes: u64,
    /// CRC-32 of the whole file.
    pub crc32: u32,
}

/// The contents of `manifests/<T>.json`.
#[derive(Serialize, Deserialize, Debug, Clone, PartialEq)]
struct Manifest {
    format_version: u32,
    metadata: Metadata,
    operators: BTreeMap<String, BTreeMap<u32, GroupFile>>,
    blobs: BTreeMap<String, BlobFile>,
}

impl Manifest {
    /// Every data file the manifest refers to.
    fn files(&self) -> BTreeSet<String> {
        self.operators
            .values()
            .flat_map(|groups| groups.values().map(|f| f.file.clone()))
            .chain(self.blobs.values().map(|b| b.file.clone()))
            .collect()
    }
}

/// Just the version of a manifest, read before the rest.
#[derive(Deserialize)]
struct VersionOnly {
    format_version: u32,
}

/// What [`Checkpoints::write`] wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// The checkpoint's batch time.
    pub batch_time_ms: u64,
    /// Objects written: key group files, blobs and the manifest.
    pub files: usize,
    /// Bytes of those objects.
    pub bytes: u64,
    /// Key groups written (they had changed).
    pub groups_written: usize,
    /// Key groups referred to in older checkpoints' files (unchanged).
    pub groups_referred: usize,
    /// Objects deleted by retention (manifests and data files).
    pub deleted: usize,
    /// The batch time of the oldest checkpoint kept: the write-ahead log
    /// may delete what is older.
    pub oldest_retained_ms: u64,
}

/// A valid checkpoint, read whole and checked.
#[derive(Debug, Clone)]
pub struct Restored {
    /// Its metadata.
    pub metadata: Metadata,
    /// Its blobs, by name.
    pub blobs: HashMap<String, Vec<u8>>,
    /// Key group files by operator name and key group (checked).
    groups: BTreeMap<String, BTreeMap<u32, Bytes>>,
    location: String,
}

impl Restored {
    /// Fills `store` (empty) with the checkpoint's state; the key groups are
    /// left marked unchanged, so the next checkpoint refers to the files
    /// read. Fails when `store` has another number of key groups or already
    /// holds a key in a group the checkpoint fills.
    pub fn restore_state(&self, store: &StateStore) -> Result<(), CheckpointError> {
        let mismatch = |reason: String| CheckpointError::Mismatch {
            location: self.location.clone(),
            batch_time_ms: self.metadata.batch_time_ms,
            reason,
        };
        let key_groups = store.key_groups();
        if key_groups.get() != self.metadata.key_groups {
            return Err(mismatch(format!(
                "it has {} key groups, the job {}",
                self.metadata.key_groups,
                key_groups.get()
            )));
        }
        for (name, groups) in &self.groups {
            let op = store.operator(name);
            for (&g, data) in groups {
                let mut group = op.group(g);
                if !group.is_empty() {
                    return Err(mismatch(format!(
                        "the state of `{name}` key group {g} is not empty before the restore"
                    )));
                }
                // The table sized once, for the file's entries.
                group.reserve(u64_at(data, 12) as usize);
                for (key, value) in entries(&data[FILE_HEADER..]) {
                    if key_groups.of(key) != g {
                        return Err(mismatch(format!(
                            "`{name}` key group {g} holds a key of key group {}",
                            key_groups.of(key)
                        )));
                    }
                    group.insert(key, value);
                }
                group.shrink_to_fit();
                group.mark_unchanged();
            }
        }
        Ok(())
    }

    /// Number of keys over all operators.
    pub fn keys(&self) -> u64 {
        self.groups
            .values()
            .flat_map(|g| g.values())
            .map(|data| u64_at(data, 12))
            .sum()
    }
}

/// Why a checkpoint is skipped (torn), or a hard error.
enum LoadError {
    Torn(String),
    Failed(CheckpointError),
}

/// One job's checkpoint location.
pub struct Checkpoints {
    location: String,
    store: Arc<dyn ObjectStore>,
    root: StorePath,
    retain: usize,
    runtime: tokio::runtime::Handle,
    /// The files of the newest checkpoint read or written, by operator name
    /// and key group: what the next one refers to for unchanged groups.
    current: BTreeMap<String, BTreeMap<u32, GroupFile>>,
    /// The data files each manifest known to this process refers to, by
    /// batch time.
    references: BTreeMap<u64, BTreeSet<String>>,
    /// The batch time of the newest checkpoint read or written.
    newest: Option<u64>,
    /// The directory of a local location.
    local: Option<std::path::PathBuf>,
}

impl std::fmt::Debug for Checkpoints {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Checkpoints")
            .field("location", &self.location)
            .field("retain", &self.retain)
            .finish_non_exhaustive()
    }
}

/// `manifests/<T>.json`.
fn manifest_name(batch_time_ms: u64) -> String {
    format!("manifests/{batch_time_ms:020}.json")
}

/// The batch time of a manifest's name (relative to the location).
fn manifest_time(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("manifests/")?.strip_suffix(".json")?;
    (digits.len() == 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// The checkpoint time and counter of a data file's name
/// (`data/<T>/<n>.kg` or `.blob`), if it is one.
fn data_file(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("data/")?;
    let (dir, file) = rest.split_once('/')?;
    let counter = file
        .strip_suffix(".kg")
        .or_else(|| file.strip_suffix(".blob"))?;
    let valid = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if dir.len() != 20 || !valid(dir) || !valid(counter) {
        return None;
    }
    Some((dir.parse().ok()?, counter.parse().ok()?))
}

fn u32_at(data: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(data[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(data: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(data[at..at + 8].try_into().expect("8 bytes"))
}

/// A key group file: header and entries (see the module's documentation).
fn encode_group(group: u32, state: &KeyGroupState) -> Vec<u8> {
    let mut out = Vec::with_capacity(FILE_HEADER + state.bytes() + 8 * state.len());
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&(state.len() as u64).to_le_bytes());
    for (key, value) in state.iter() {
        // The store's own entries have u32 lengths.
        out.extend_from_slice(&(key.len() as u32).to_le_bytes());
        out.extend_from_slice(&(value.len() as u32).to_le_bytes());
        out.extend_from_slice(key);
        out.extend_from_slice(value);
    }
    out
}

/// Checks a key group file against what its manifest says of it.
fn check_group(data: &[u8], group: u32, entries_expected: u64) -> Result<(), String> {
    if data.len() < FILE_HEADER || &data[..4] != MAGIC {
        return Err("not a key group file (no SLKG header)".to_string());
    }
    let version = u32_at(data, 4);
    if version != FORMAT_VERSION {
        return Err(format!(
            "key group file format version {version}, this Sluice reads {FORMAT_VERSION}"
        ));
    }
    if u32_at(data, 8) != group {
        return Err(format!(
            "holds key group {}, the manifest says {group}",
            u32_at(data, 8)
        ));
    }
    let count = u64_at(data, 12);
    if count != entries_expected {
        return Err(format!(
            "holds {count} entries, the manifest says {entries_expected}"
        ));
    }
    let mut at = FILE_HEADER;
    let mut seen = 0u64;
    while at < data.len() {
        if data.len() - at < 8 {
            return Err(format!("entry {seen} is cut at byte {at}"));
        }
        let len = 8 + u32_at(data, at) as usize + u32_at(data, at + 4) as usize;
        if data.len() - at < len {
            return Err(format!("entry {seen} is cut at byte {at}"));
        }
        at += len;
        seen += 1;
    }
    if seen != count {
        return Err(format!("holds {seen} entries, its header says {count}"));
    }
    Ok(())
}

/// The entries of a checked key group file's body.
fn entries(mut body: &[u8]) -> impl Iterator<Item = (&[u8], &[u8])> {
    std::iter::from_fn(move || {
        if body.len() < 8 {
            return None;
        }
        let key_len = u32_at(body, 0) as usize;
        let value_len = u32_at(body, 4) as usize;
        let (key, rest) = body[8..].split_at(key_len);
        let (value, rest) = rest.split_at(value_len);
        body = rest;
        Some((key, value))
    })
}

/// True for the store's "no such object".
fn is_not_found(e: &object_store::Error) -> bool {
    matches!(e, object_store::Error::NotFound { .. })
}

impl Checkpoints {
    /// Opens the checkpoint location `location` (a path or an `s3://`,
    /// `gs://`, `az://`, `file://` URL, configured by the environment and
    /// `options`), keeping the newest `retain` checkpoints (at least 1).
    /// Writes nothing but a probe object, which it deletes: an unwritable
    /// location is an error now, naming it and the cause. A local location
    /// is created if missing.
    pub fn open(
        location: &str,
        options: &StorageOptions,
        retain: usize,
        runtime: tokio::runtime::Handle,
    ) -> Result<Checkpoints, CheckpointError> {
        let (store, root) =
            storage::open_dir(location, options).map_err(CheckpointError::Location)?;
        let checkpoints = Checkpoints {
            location: location.to_string(),
            store,
            root,
            retain: retain.max(1),
            runtime,
            current: BTreeMap::new(),
            references: BTreeMap::new(),
            newest: None,
            local: storage::local_path(location),
        };
        // One name: a probe left by a killed process is replaced by the next.
        let probe = ".sluice-probe".to_string();
        let path = checkpoints.path(&probe);
        let not_writable = |source| CheckpointError::NotWritable {
            location: location.to_string(),
            object: probe.clone(),
            source: Box::new(source),
        };
        checkpoints.runtime.block_on(async {
            checkpoints
                .store
                .put(&path, Bytes::from_static(b"probe").into())
                .await
                .map_err(not_writable)?;
            checkpoints.store.delete(&path).await.map_err(not_writable)
        })?;
        Ok(checkpoints)
    }

    /// The location, as given.
    pub fn location(&self) -> &str {
        &self.location
    }

    /// The store path of `name` (relative to the location).
    fn path(&self, name: &str) -> StorePath {
        if self.root.as_ref().is_empty() {
            StorePath::from(name)
        } else {
            StorePath::from(format!("{}/{name}", self.root))
        }
    }

    /// `path`'s name relative to the location.
    fn name_of(&self, path: &StorePath) -> Option<String> {
        let parts: Vec<String> = path
            .prefix_match(&self.root)?
            .map(|p| p.as_ref().to_string())
            .collect();
        Some(parts.join("/"))
    }

    /// The names (relative to the location) of every object under `prefix`.
    async fn list(&self, prefix: &str) -> Result<Vec<String>, CheckpointError> {
        let path = self.path(prefix);
        let listed: Vec<object_store::ObjectMeta> = if path.as_ref().is_empty() {
            self.store.list(None).try_collect().await
        } else {
            self.store.list(Some(&path)).try_collect().await
        }
        .map_err(|source| CheckpointError::List {
            location: self.location.clone(),
            prefix: if prefix.is_empty() { "/" } else { prefix }.to_string(),
            source: Box::new(source),
        })?;
        Ok(listed
            .iter()
            .filter_map(|meta| self.name_of(&meta.location))
            .collect())
    }

    /// The batch times of the manifests present, oldest first.
    async fn manifest_times(&self) -> Result<Vec<u64>, CheckpointError> {
        let mut times: Vec<u64> = self
            .list("manifests")
            .await?
            .iter()
            .filter_map(|name| manifest_time(name))
            .collect();
        times.sort_unstable();
        times.dedup();
        Ok(times)
    }

    /// Deletes the objects `names`; a missing one is not an error.
    async fn delete_all(&self, names: Vec<String>) -> Result<usize, CheckpointError> {
        let count = names.len();
        stream::iter(names)
            .map(|name| async move {
                match self.store.delete(&self.path(&name)).await {
                    Ok(()) => Ok(()),
                    Err(e) if is_not_found(&e) => Ok(()),
                    Err(source) => Err(CheckpointError::Delete {
                        location: self.location.clone(),
                        object: name,
                        source: Box::new(source),
                    }),
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect::<()>()
            .await?;
        Ok(count)
    }

    /// Reads the object `name`; `None` when it does not exist.
    async fn get(&self, name: &str) -> Result<Option<Bytes>, CheckpointError> {
        let failed = |source| CheckpointError::Read {
            location: self.location.clone(),
            object: name.to_string(),
            source: Box::new(source),
        };
        match self.store.get(&self.path(name)).await {
            Ok(result) => result.bytes().await.map(Some).map_err(failed),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(failed(e)),
        }
    }

    /// The newest valid checkpoint, or `None` when the location holds none.
    /// A torn one (a manifest that does not parse or has another format
    /// version, a file it refers to missing, of another size, failing its
    /// checksum or its header) is skipped with a warning naming the manifest
    /// and the cause, and the one before it is tried. Errors of the store
    /// other than a missing object are errors. Remembers the checkpoint's
    /// files so the next [`Checkpoints::write`] refers to them.
    pub fn latest(&mut self) -> Result<Option<Restored>, CheckpointError> {
        let runtime = self.runtime.clone();
        runtime.block_on(async {
            let manifests = self.manifest_times().await?;
            self.warn_unfinished(manifests.last().copied()).await?;
            for time in manifests.into_iter().rev() {
                match self.load(time).await {
                    Ok((manifest, restored)) => {
                        self.references.insert(time, manifest.files());
                        self.current = manifest.operators;
                        self.newest = Some(time);
                        return Ok(Some(restored));
                    }
                    Err(LoadError::Torn(reason)) => tracing::warn!(
                        "checkpoint {} in {} skipped: {reason}",
                        manifest_name(time),
                        self.location
                    ),
                    Err(LoadError::Failed(e)) => return Err(e),
                }
            }
            Ok(None)
        })
    }

    /// Warns about the checkpoints newer than the newest manifest that have
    /// data but no manifest: a process stopped while writing them, so they
    /// never became visible (retention deletes their files).
    async fn warn_unfinished(&self, newest_manifest: Option<u64>) -> Result<(), CheckpointError> {
        let mut unfinished: Vec<u64> = self
            .list("data")
            .await?
            .iter()
            .filter_map(|name| name.strip_prefix("data/")?.split_once('/')?.0.parse().ok())
            .filter(|&time| newest_manifest.is_none_or(|newest| time > newest))
            .collect();
        unfinished.sort_unstable();
        unfinished.dedup();
        for time in unfinished {
            tracing::warn!(
                "checkpoint {} in {} skipped: its manifest is missing (the process stopped while \
                 writing it)",
                manifest_name(time),
                self.location
            );
        }
        Ok(())
    }

    /// Reads and checks checkpoint `time`.
    async fn load(&self, time: u64) -> Result<(Manifest, Restored), LoadError> {
        let name = manifest_name(time);
        let bytes = self
            .get(&name)
            .await
            .map_err(LoadError::Failed)?
            .ok_or_else(|| LoadError::Torn("the manifest disappeared".to_string()))?;
        let version: VersionOnly = serde_json::from_slice(&bytes)
            .map_err(|e| LoadError::Torn(format!("the manifest does not parse: {e}")))?;
        if version.format_version != FORMAT_VERSION {
            return Err(LoadError::Torn(format!(
                "format version {}, this Sluice reads {FORMAT_VERSION}",
                version.format_version
            )));
        }
        let manifest: Manifest = serde_json::from_slice(&bytes)
            .map_err(|e| LoadError::Torn(format!("the manifest does not parse: {e}")))?;
        if manifest.metadata.batch_time_ms != time {
            return Err(LoadError::Torn(format!(
                "the manifest is of batch time {}",
                manifest.metadata.batch_time_ms
            )));
        }
        // Every file, fetched (up to 8 at a time) and checked.
        enum Want<'a> {
            Group(&'a str, u32, &'a GroupFile),
            Blob(&'a str, &'a BlobFile),
        }
        let mut wants = Vec::new();
        for (op, groups) in &manifest.operators {
            for (&g, file) in groups {
                if g >= manifest.metadata.key_groups {
                    return Err(LoadError::Torn(format!(
                        "`{op}` has key group {g} of {}",
                        manifest.metadata.key_groups
                    )));
                }
                wants.push(Want::Group(op, g, file));
            }
        }
        for (blob, file) in &manifest.blobs {
            wants.push(Want::Blob(blob, file));
        }
        let fetched: Vec<(&Want, Bytes)> = stream::iter(&wants)
            .map(|want| async move {
                let (file, bytes, crc32) = match want {
                    Want::Group(_, _, f) => (&f.file, f.bytes, f.crc32),
                    Want::Blob(_, f) => (&f.file, f.bytes, f.crc32),
                };
                if data_file(file).is_none() {
                    return Err(LoadError::Torn(format!("`{file}` is not a data file name")));
                }
                let data = self
                    .get(file)
                    .await
                    .map_err(LoadError::Failed)?
                    .ok_or_else(|| LoadError::Torn(format!("{file} is missing")))?;
                if data.len() as u64 != bytes {
                    return Err(LoadError::Torn(format!(
                        "{file} has {} bytes, the manifest says {bytes}",
                        data.len()
                    )));
                }
                if crc32fast::hash(&data) != crc32 {
                    return Err(LoadError::Torn(format!("{file} fails its checksum")));
                }
                if let Want::Group(_, g, f) = want {
                    check_group(&data, *g, f.entries)
                        .map_err(|e| LoadError::Torn(format!("{file}: {e}")))?;
                }
                Ok((want, data))
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut groups: BTreeMap<String, BTreeMap<u32, Bytes>> = BTreeMap::new();
        let mut blobs = HashMap::new();
        for (want, data) in fetched {
            match want {
                Want::Group(op, g, _) => {
                    groups.entry(op.to_string()).or_default().insert(*g, data);
                }
                Want::Blob(blob, _) => {
                    blobs.insert(blob.to_string(), data.to_vec());
                }
            }
        }
        let restored = Restored {
            metadata: manifest.metadata.clone(),
            blobs,
            groups,
            location: self.location.clone(),
        };
        Ok((manifest, restored))
    }

    /// Writes checkpoint `metadata.batch_time_ms`: a file for every key group
    /// of `state` marked changed (an empty one too: it may have become
    /// empty), every blob whole, then the manifest, which refers to the
    /// files of the previous checkpoint (read by [`Checkpoints::latest`] or
    /// written by this) for the unchanged groups. Then marks the written
    /// groups unchanged, and applies retention (see the module's
    /// documentation). `state` must not change during the call. On an error
    /// nothing is marked, so the next write writes those groups again.
    ///
    /// Call [`Checkpoints::latest`] (and restore what it returns) or
    /// [`Checkpoints::reset`] before the first write to a location that may
    /// hold checkpoints. Batch times never go back: a write older than the
    /// checkpoint last read or written is an error (one at the same batch
    /// time replaces it, e.g. the final checkpoint of a stop).
    pub fn write(
        &mut self,
        metadata: &Metadata,
        state: &StateStore,
        blobs: &[(String, Vec<u8>)],
    ) -> Result<Written, CheckpointError> {
        let time = metadata.batch_time_ms;
        if let Some(newest) = self.newest.filter(|&newest| time < newest) {
            return Err(CheckpointError::Mismatch {
                location: self.location.clone(),
                batch_time_ms: time,
                reason: format!("it is older than checkpoint {newest}, read or written before"),
            });
        }
        if metadata.key_groups != state.key_groups().get() {
            return Err(CheckpointError::Mismatch {
                location: self.location.clone(),
                batch_time_ms: time,
                reason: format!(
                    "the metadata says {} key groups, the state has {}",
                    metadata.key_groups,
                    state.key_groups().get()
                ),
            });
        }
        let runtime = self.runtime.clone();
        let written = runtime.block_on(self.write_files(metadata, state, blobs))?;
        runtime.block_on(self.retain(time, written))
    }

    async fn write_files(
        &mut self,
        metadata: &Metadata,
        state: &StateStore,
        blobs: &[(String, Vec<u8>)],
    ) -> Result<Written, CheckpointError> {
        let time = metadata.batch_time_ms;
        let dir = format!("data/{time:020}");
        // Never overwrite a file of this directory: a manifest of the same
        // batch time (rewritten after a restart) may refer to it.
        let mut counter = self
            .list(&dir)
            .await?
            .iter()
            .filter_map(|name| data_file(name).map(|(_, n)| n + 1))
            .max()
            .unwrap_or(0);
        let mut next = |ext: &str| {
            let name = format!("{dir}/{counter}.{ext}");
            counter += 1;
            name
        };
        let mut operators: BTreeMap<String, BTreeMap<u32, GroupFile>> = BTreeMap::new();
        let mut to_write = Vec::new();
        let mut referred = 0;
        for name in state.names() {
            let op = state.operator(&name);
            let previous = self.current.get(&name);
            for g in 0..state.key_groups().get() {
                if op.group(g).is_changed() {
                    to_write.push((name.clone(), op.clone(), g, next("kg")));
                } else if let Some(file) = previous.and_then(|p| p.get(&g)) {
                    operators
                        .entry(name.clone())
                        .or_default()
                        .insert(g, file.clone());
                    referred += 1;
                }
            }
        }
        let groups_written = to_write.len();
        let this: &Checkpoints = self;
        let failed = |object: String| {
            let location = this.location.clone();
            move |source| CheckpointError::Write {
                batch_time_ms: time,
                location,
                object,
                source: Box::new(source),
            }
        };
        // Each group is encoded when its write starts: at most 8 encoded at
        // a time.
        let groups: Vec<(String, u32, GroupFile)> = stream::iter(&to_write)
            .map(|(name, op, g, file)| {
                let data = encode_group(*g, &op.group(*g));
                let entry = GroupFile {
                    file: file.clone(),
                    bytes: data.len() as u64,
                    crc32: crc32fast::hash(&data),
                    entries: u64_at(&data, 12),
                };
                let path = this.path(file);
                let failed = failed(file.clone());
                async move {
                    this.store
                        .put(&path, Bytes::from(data).into())
                        .await
                        .map_err(failed)?;
                    Ok::<_, CheckpointError>((name.clone(), *g, entry))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        let mut bytes: u64 = groups.iter().map(|(_, _, f)| f.bytes).sum();
        for (name, g, file) in groups {
            operators.entry(name).or_default().insert(g, file);
        }
        let blob_files: Vec<(String, String)> = blobs
            .iter()
            .map(|(name, _)| (name.clone(), next("blob")))
            .collect();
        let blob_entries: Vec<(String, BlobFile)> = stream::iter(blobs.iter().zip(&blob_files))
            .map(|((name, data), (_, file))| {
                let entry = BlobFile {
                    file: file.clone(),
                    bytes: data.len() as u64,
                    crc32: crc32fast::hash(data),
                };
                let path = this.path(file);
                let failed = failed(file.clone());
                async move {
                    this.store
                        .put(&path, Bytes::copy_from_slice(data).into())
                        .await
                        .map_err(failed)?;
                    Ok::<_, CheckpointError>((name.clone(), entry))
                }
            })
            .buffer_unordered(CONCURRENCY)
            .try_collect()
            .await?;
        bytes += blob_entries.iter().map(|(_, b)| b.bytes).sum::<u64>();
        let manifest = Manifest {
            format_version: FORMAT_VERSION,
            metadata: metadata.clone(),
            operators,
            blobs: blob_entries.into_iter().collect(),
        };
        let json =
            serde_json::to_vec_pretty(&manifest).map_err(|source| CheckpointError::Encode {
                batch_time_ms: time,
                source,
            })?;
        bytes += json.len() as u64;
        let name = manifest_name(time);
        self.store
            .put(&self.path(&name), Bytes::from(json).into())
            .await
            .map_err(failed(name))?;
        // Visible: the written groups are now in a checkpoint.
        for (_, op, g, _) in &to_write {
            op.group(*g).mark_unchanged();
        }
        self.references.insert(time, manifest.files());
        self.current = manifest.operators;
        self.newest = Some(time);
        Ok(Written {
            batch_time_ms: time,
            files: groups_written + blobs.len() + 1,
            bytes,
            groups_written,
            groups_referred: referred,
            deleted: 0,
            oldest_retained_ms: time,
        })
    }

    /// Keeps the newest `retain` manifests up to `time`, deletes the older
    /// ones, then the data files up to `time` no kept manifest refers to.
    async fn retain(
        &mut self,
        time: u64,
        mut written: Written,
    ) -> Result<Written, CheckpointError> {
        let times: Vec<u64> = self
            .manifest_times()
            .await?
            .into_iter()
            .filter(|&t| t <= time)
            .collect();
        let split = times.len().saturating_sub(self.retain);
        let (dropped, kept) = times.split_at(split);
        written.oldest_retained_ms = kept.first().copied().unwrap_or(time);
        let mut protected = BTreeSet::new();
        for &t in kept {
            if !self.references.contains_key(&t) {
                // Written by an earlier run: read which files it uses. One
                // that does not parse is torn and protects nothing.
                let files = match self.get(&manifest_name(t)).await? {
                    Some(bytes) => serde_json::from_slice::<Manifest>(&bytes)
                        .map(|m| m.files())
                        .unwrap_or_default(),
                    None => BTreeSet::new(),
                };
                self.references.insert(t, files);
            }
            protected.extend(self.references[&t].iter().cloned());
        }
        // Manifests first: a crash between leaves unreferenced data, never a
        // manifest whose files are gone.
        written.deleted += self
            .delete_all(dropped.iter().map(|&t| manifest_name(t)).collect())
            .await?;
        for t in dropped {
            self.references.remove(t);
        }
        let garbage: Vec<String> = self
            .list("data")
            .await?
            .into_iter()
            .filter(|name| match data_file(name) {
                Some((t, _)) => t <= time && !protected.contains(name),
                None => false,
            })
            .collect();
        written.deleted += self.delete_all(garbage).await?;
        written.deleted += self.sweep_staged(time);
        Ok(written)
    }

    /// On a local location, deletes the files a killed process left while
    /// `LocalFileSystem` was writing them (`<name>#<digits>`, which its
    /// listings hide) under `manifests/` and the `data/` directories up to
    /// `time`, and the directories that leaves empty. Best effort: returns
    /// how many it deleted.
    fn sweep_staged(&self, time: u64) -> usize {
        let Some(root) = &self.local else {
            return 0;
        };
        let staged = |name: &std::ffi::OsStr| {
            name.to_str()
                .and_then(|n| n.rsplit_once('#'))
                .is_some_and(|(_, n)| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        };
        let mut dirs = vec![root.join("manifests")];
        if let Ok(entries) = std::fs::read_dir(root.join("data")) {
            dirs.extend(entries.flatten().map(|e| e.path()).filter(|dir| {
                dir.file_name()
                    .and_then(|n| n.to_str())
                    .and_then(|n| (n.len() == 20).then(|| n.parse::<u64>().ok()).flatten())
                    .is_some_and(|t| t <= time)
            }));
        }
        let mut deleted = 0;
        for dir in dirs {
            let Ok(entries) = std::fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                if staged(&entry.file_name()) && std::fs::remove_file(entry.path()).is_ok() {
                    deleted += 1;
                }
            }
            if dir.parent() != Some(root.as_path()) {
                // A data directory: removed if that emptied it.
                let _ = std::fs::remove_dir(&dir);
            }
        }
        deleted
    }

    /// `--reset`: deletes everything under the location (manifests, data
    /// and the write-ahead log).
    pub fn reset(&mut self) -> Result<(), CheckpointError> {
        let runtime = self.runtime.clone();
        runtime.block_on(async {
            let all = self.list("").await?;
            self.delete_all(all).await
        })?;
        self.current.clear();
        self.newest = None;
        self.references.clear();
        Ok(())
    }
}
