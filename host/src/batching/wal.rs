//! The write-ahead log: what receivers got, kept under the checkpoint
//! location until a checkpoint covers it, so that a restarted job runs the
//! batches after its checkpoint over the same input.
//!
//! A record is written before anything else sees what it logs: a socket
//! receiver's block before it enters the [`BlockStore`](super::BlockStore)
//! (and so before an early chain runs on it), a file stream's choice of
//! files for a batch before it reads them. Each record is one object,
//!
//! ```text
//! <location>/wal/<source node>/<batch time, 20 digits>-<sequence, 10 digits>.rec
//! ```
//!
//! written under a temporary name and renamed (a local directory) or put
//! whole (an object store), so a record is either complete or absent; a
//! record that fails its checksum anyway (a disk that lied) is skipped with a
//! warning. Its bytes: the magic `SLWR`, a `u32` format version (1), the
//! `u64` batch time, a `u32` payload length, the payload, and the CRC-32 of
//! everything before it; integers little-endian. The payload is the
//! receiver's: a block's rows (see [`encode_block`]) or a JSON list of files.
//!
//! When the log is made durable is the [`WalSync`] policy: `always` syncs
//! each record before the receiver goes on (the default: a record that a
//! batch may use has reached the disk), `batch` syncs a batch's records just
//! before the batch runs (nothing derived from a record — state, outputs —
//! exists before it is on disk, but more than one record may go per fsync),
//! `never` leaves it to the operating system (a process crash loses
//! nothing, a machine crash may). Object stores are durable on every put.
//!
//! Records of batches at or before the oldest retained checkpoint are
//! deleted after each checkpoint ([`Wal::delete_through`]).

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use object_store::path::Path as StorePath;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use super::BatchTime;
use crate::data::Rows;
use crate::plan::NodeId;

const MAGIC: &[u8; 4] = b"SLWR";
const VERSION: u32 = 1;
/// Magic, version, batch time, payload length.
const HEADER: usize = 4 + 4 + 8 + 4;

/// When the log reaches the disk (`--wal-sync`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WalSync {
    /// Each record before the receiver goes on.
    #[default]
    Always,
    /// A batch's records just before the batch runs.
    Batch,
    /// When the operating system writes them back.
    Never,
}

/// The log could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// A local file could not be written, synced, listed or read.
    #[error("write-ahead log: cannot {action} {path}: {source}")]
    Io {
        /// What was being done.
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The object store refused.
    #[error("write-ahead log: cannot {action} {path}: {source}")]
    Store {
        /// What was being done.
        action: &'static str,
        /// The object.
        path: String,
        /// Why.
        source: object_store::Error,
    },
    /// The location is not usable.
    #[error("write-ahead log: {0}")]
    Location(String),
    /// Another process runs a job on this location.
    #[error(
        "another sluice process is running a job on checkpoint location {0} (its lock \
         {0}/wal/.lock is held): one job per location"
    )]
    Locked(String),
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WalRecord {
    /// The batch it belongs to.
    pub batch: BatchTime,
    /// Its order among the source's records.
    pub sequence: u64,
    /// What the receiver logged.
    pub payload: Vec<u8>,
}

enum Backend {
    /// A local directory: plain files, so that the sync policy is ours;
    /// and the lock on it, held while the log lives.
    Local(
        PathBuf,
        #[allow(dead_code, reason = "held for its lock")] std::fs::File,
    ),
    /// An object store: one put per record.
    Store {
        store: Arc<dyn ObjectStore>,
        root: StorePath,
        runtime: tokio::runtime::Handle,
    },
}

/// A job's write-ahead log. Shared by its receivers.
pub struct Wal {
    backend: Backend,
    sync: WalSync,
    /// Records written and not yet synced, with their batch (`batch` policy).
    unsynced: Mutex<Vec<(BatchTime, PathBuf)>>,
}

impl std::fmt::Debug for Wal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wal")
            .field("location", &self.location())
            .field("sync", &self.sync)
            .finish()
    }
}

impl Wal {
    /// The log under `location` (a local directory, or a URL opened through
    /// `storage`), `wal/` inside it.
    pub fn open(
        location: &str,
        options: &crate::storage::StorageOptions,
        sync: WalSync,
        runtime: tokio::runtime::Handle,
    ) -> Result<Wal, WalError> {
        let local = match location.strip_prefix("file://") {
            Some(path) => Some(PathBuf::from(path)),
            None if !location.contains("://") => Some(PathBuf::from(location)),
            None => None,
        };
        let backend = match local {
            Some(dir) => {
                let root = std::path::absolute(&dir)
                    .map_err(|e| WalError::Location(format!("{location}: {e}")))?
                    .join("wal");
                std::fs::create_dir_all(&root).map_err(|source| WalError::Io {
                    action: "create",
                    path: root.clone(),
                    source,
                })?;
                // One process per location: a second one would interleave
                // its records and checkpoints with the first one's.
                let path = root.join(".lock");
                let lock = std::fs::File::create(&path).map_err(|source| WalError::Io {
                    action: "create",
                    path: path.clone(),
                    source,
                })?;
                match lock.try_lock() {
                    Ok(()) => {}
                    Err(std::fs::TryLockError::WouldBlock) => {
                        return Err(WalError::Locked(location.to_string()));
                    }
                    Err(std::fs::TryLockError::Error(source)) => {
                        return Err(WalError::Io {
                            action: "lock",
                            path,
                            source,
                        });
                    }
                }
                Backend::Local(root, lock)
            }
            None => {
                let (store, root) = crate::storage::open(location, options)
                    .map_err(|e| WalError::Location(e.to_string()))?;
                Backend::Store {
                    store,
                    root: root.clone().join("wal"),
                    runtime,
                }
            }
        };
        Ok(Wal {
            backend,
            sync,
            unsynced: Mutex::new(Vec::new()),
        })
    }

    /// Where the log is, for messages.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Local(dir, _) => dir.display().to_string(),
            Backend::Store { root, .. } => root.to_string(),
        }
    }

    fn name(batch: BatchTime, sequence: u64) -> String {
        format!("{:020}-{sequence:010}.rec", batch.as_millis())
    }

    /// Appends a record for `source`, batch `batch`; `sequence` orders the
    /// source's records (the caller numbers them, see [`Wal::next_sequence`]).
    /// Returns once the record is written (and synced, with `always`).
    pub fn append(
        &self,
        source: NodeId,
        batch: BatchTime,
        sequence: u64,
        payload: &[u8],
    ) -> Result<(), WalError> {
        let record = encode_record(batch, payload);
        let name = Self::name(batch, sequence);
        match &self.backend {
            Backend::Local(root, _) => {
                let dir = root.join(source.to_string());
                let io = |action, path: &Path| {
                    let path = path.to_path_buf();
                    move |source| WalError::Io {
                        action,
                        path,
                        source,
                    }
                };
                std::fs::create_dir_all(&dir).map_err(io("create", &dir))?;
                let temporary = dir.join(format!(".{name}.tmp"));
                let path = dir.join(&name);
                {
                    use std::io::Write;
                    let mut file =
                        std::fs::File::create(&temporary).map_err(io("create", &temporary))?;
                    file.write_all(&record).map_err(io("write", &temporary))?;
                    if self.sync == WalSync::Always {
                        file.sync_data().map_err(io("sync", &temporary))?;
                    }
                }
                std::fs::rename(&temporary, &path).map_err(io("rename", &path))?;
                match self.sync {
                    WalSync::Always => sync_dir(&dir)?,
                    WalSync::Batch => self
                        .unsynced
                        .lock()
                        .unwrap_or_else(|e| e.into_inner())
                        .push((batch, path)),
                    WalSync::Never => {}
                }
                Ok(())
            }
            Backend::Store {
                store,
                root,
                runtime,
            } => {
                let path = root.clone().join(source.to_string()).join(name);
                let put = store.put(&path, PutPayload::from(record));
                block_on(runtime, put).map_err(|source| WalError::Store {
                    action: "write",
                    path: path.to_string(),
                    source,
                })?;
                Ok(())
            }
        }
    }

    /// With the `batch` policy, syncs the records of every batch up to
    /// `time` (before that batch runs). Nothing to do otherwise.
    pub fn sync_through(&self, time: BatchTime) -> Result<(), WalError> {
        if self.sync != WalSync::Batch {
            return Ok(());
        }
        let due: Vec<(BatchTime, PathBuf)> = {
            let mut unsynced = self.unsynced.lock().unwrap_or_else(|e| e.into_inner());
            let (due, later) = unsynced.drain(..).partition(|(batch, _)| *batch <= time);
            *unsynced = later;
            due
        };
        let mut dirs = Vec::new();
        for (_, path) in &due {
            let file = match std::fs::File::open(path) {
                Ok(file) => file,
                // Deleted since: a checkpoint covers its batch.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(source) => {
                    return Err(WalError::Io {
                        action: "open",
                        path: path.clone(),
                        source,
                    });
                }
            };
            file.sync_data().map_err(|source| WalError::Io {
                action: "sync",
                path: path.clone(),
                source,
            })?;
            if let Some(dir) = path.parent()
                && !dirs.contains(&dir)
            {
                dirs.push(dir);
            }
        }
        for dir in dirs {
            sync_dir(dir)?;
        }
        Ok(())
    }

    /// The records of `source` for batches after `after`, in order. A record
    /// that fails its checksum is skipped with a warning (it was never
    /// complete, so no batch used it).
    pub fn replay(&self, source: NodeId, after: BatchTime) -> Result<Vec<WalRecord>, WalError> {
        let mut records = Vec::new();
        for (batch, sequence, bytes) in self.read_all(source, after)? {
            match decode_record(&bytes) {
                Some((b, payload)) if b == batch => records.push(WalRecord {
                    batch,
                    sequence,
                    payload: payload.to_vec(),
                }),
                _ => tracing::warn!(
                    "write-ahead log {}: record {} of source {source} is torn; skipped",
                    self.location(),
                    Self::name(batch, sequence)
                ),
            }
        }
        records.sort_by_key(|r| (r.batch, r.sequence));
        Ok(records)
    }

    /// The sequence number after the largest one `source` has logged.
    pub fn next_sequence(&self, source: NodeId) -> Result<u64, WalError> {
        Ok(self
            .list(source)?
            .into_iter()
            .map(|(_, sequence, _)| sequence + 1)
            .max()
            .unwrap_or(0))
    }

    /// Deletes every record of batches at or before `time` (of every source).
    pub fn delete_through(&self, time: BatchTime) -> Result<usize, WalError> {
        let mut deleted = 0;
        for source in self.sources()? {
            for (batch, _, name) in self.list(source)? {
                if batch > time {
                    continue;
                }
                match &self.backend {
                    Backend::Local(root, _) => {
                        let path = root.join(source.to_string()).join(&name);
                        match std::fs::remove_file(&path) {
                            Ok(()) => deleted += 1,
                            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                            Err(source) => {
                                return Err(WalError::Io {
                                    action: "delete",
                                    path,
                                    source,
                                });
                            }
                        }
                    }
                    Backend::Store {
                        store,
                        root,
                        runtime,
                    } => {
                        let path = root.clone().join(source.to_string()).join(name);
                        block_on(runtime, store.delete(&path)).map_err(|source| {
                            WalError::Store {
                                action: "delete",
                                path: path.to_string(),
                                source,
                            }
                        })?;
                        deleted += 1;
                    }
                }
            }
        }
        Ok(deleted)
    }

    /// The sources that have records.
    fn sources(&self) -> Result<Vec<NodeId>, WalError> {
        match &self.backend {
            Backend::Local(root, _) => {
                let entries = match std::fs::read_dir(root) {
                    Ok(entries) => entries,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
                    Err(source) => {
                        return Err(WalError::Io {
                            action: "list",
                            path: root.clone(),
                            source,
                        });
                    }
                };
                Ok(entries
                    .filter_map(Result::ok)
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect())
            }
            Backend::Store {
                store,
                root,
                runtime,
            } => {
                let listing =
                    block_on(runtime, store.list_with_delimiter(Some(root))).map_err(|source| {
                        WalError::Store {
                            action: "list",
                            path: root.to_string(),
                            source,
                        }
                    })?;
                Ok(listing
                    .common_prefixes
                    .iter()
                    .filter_map(|p| p.filename()?.parse().ok())
                    .collect())
            }
        }
    }

    /// `(batch, sequence, name)` of each record of `source`.
    fn list(&self, source: NodeId) -> Result<Vec<(BatchTime, u64, String)>, WalError> {
        let names: Vec<String> =
            match &self.backend {
                Backend::Local(root, _) => {
                    let dir = root.join(source.to_string());
                    match std::fs::read_dir(&dir) {
                        Ok(entries) => entries
                            .filter_map(Result::ok)
                            .filter_map(|e| e.file_name().into_string().ok())
                            .collect(),
                        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                        Err(source) => {
                            return Err(WalError::Io {
                                action: "list",
                                path: dir,
                                source,
                            });
                        }
                    }
                }
                Backend::Store {
                    store,
                    root,
                    runtime,
                } => {
                    let dir = root.clone().join(source.to_string());
                    let listing = block_on(runtime, store.list_with_delimiter(Some(&dir)))
                        .map_err(|source| WalError::Store {
                            action: "list",
                            path: dir.to_string(),
                            source,
                        })?;
                    listing
                        .objects
                        .iter()
                        .filter_map(|o| o.location.filename().map(String::from))
                        .collect()
                }
            };
        Ok(names
            .into_iter()
            .filter_map(|name| {
                let (batch, sequence) = name.strip_suffix(".rec")?.split_once('-')?;
                Some((BatchTime(batch.parse().ok()?), sequence.parse().ok()?, name))
            })
            .collect())
    }

    fn read_all(
        &self,
        source: NodeId,
        after: BatchTime,
    ) -> Result<Vec<(BatchTime, u64, Vec<u8>)>, WalError> {
        let mut out = Vec::new();
        for (batch, sequence, name) in self.list(source)? {
            if batch <= after {
                continue;
            }
            let bytes = match &self.backend {
                Backend::Local(root, _) => {
                    let path = root.join(source.to_string()).join(&name);
                    std::fs::read(&path).map_err(|source| WalError::Io {
                        action: "read",
                        path,
                        source,
                    })?
                }
                Backend::Store {
                    store,
                    root,
                    runtime,
                } => {
                    let path = root.clone().join(source.to_string()).join(name);
                    block_on(runtime, async { store.get(&path).await?.bytes().await })
                        .map_err(|source| WalError::Store {
                            action: "read",
                            path: path.to_string(),
                            source,
                        })?
                        .to_vec()
                }
            };
            out.push((batch, sequence, bytes));
        }
        Ok(out)
    }
}

/// Runs `future` from synchronous code, whether or not the thread is one of
/// the runtime's (receivers log from their tasks).
fn block_on<F>(runtime: &tokio::runtime::Handle, future: F) -> F::Output
where
    F: std::future::Future + Send,
    F::Output: Send,
{
    match tokio::runtime::Handle::try_current() {
        Ok(current) if current.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(|| current.block_on(future))
        }
        Ok(_) => std::thread::scope(|s| {
            s.spawn(|| runtime.block_on(future))
                .join()
                .expect("the object store call does not panic")
        }),
        Err(_) => runtime.block_on(future),
    }
}

fn sync_dir(dir: &Path) -> Result<(), WalError> {
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|source| WalError::Io {
            action: "sync",
            path: dir.to_path_buf(),
            source,
        })
}

fn encode_record(batch: BatchTime, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER + payload.len() + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&VERSION.to_le_bytes());
    out.extend_from_slice(&batch.as_millis().to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_record(bytes: &[u8]) -> Option<(BatchTime, &[u8])> {
    let (body, crc) = bytes.split_at_checked(bytes.len().checked_sub(4)?)?;
    if crc32fast::hash(body).to_le_bytes() != crc
        || body.get(..4)? != MAGIC
        || u32::from_le_bytes(body.get(4..8)?.try_into().ok()?) != VERSION
    {
        return None;
    }
    let batch = u64::from_le_bytes(body.get(8..16)?.try_into().ok()?);
    let len = u32::from_le_bytes(body.get(16..20)?.try_into().ok()?) as usize;
    let payload = body.get(HEADER..)?;
    (payload.len() == len).then_some((BatchTime(batch), payload))
}

/// A block's payload: `u64` invalid records, `u32` record count, the
/// records' end offsets (`u32` each), then the record bytes.
pub fn encode_block(rows: &Rows, invalid_records: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(12 + 4 * rows.len() + rows.byte_len());
    out.extend_from_slice(&invalid_records.to_le_bytes());
    out.extend_from_slice(&(rows.len() as u32).to_le_bytes());
    let mut end = 0u32;
    for record in rows.iter() {
        end += record.len() as u32;
        out.extend_from_slice(&end.to_le_bytes());
    }
    for record in rows.iter() {
        out.extend_from_slice(record);
    }
    out
}

/// The rows and invalid-record count of a block payload.
pub fn decode_block(payload: &[u8]) -> Option<(Rows, u64)> {
    let invalid = u64::from_le_bytes(payload.get(..8)?.try_into().ok()?);
    let count = u32::from_le_bytes(payload.get(8..12)?.try_into().ok()?) as usize;
    let ends_at = 12usize.checked_add(count.checked_mul(4)?)?;
    let ends: Vec<u32> = payload
        .get(12..ends_at)?
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .collect();
    let data = payload.get(ends_at..)?.to_vec();
    Some((Rows::from_parts(data, ends).ok()?, invalid))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(items: &[&str]) -> Rows {
        items.iter().collect()
    }

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn blocks_round_trip_through_their_payload() {
        let block = rows(&["", "héllo", "a b c"]);
        let (back, invalid) = decode_block(&encode_block(&block, 3)).unwrap();
        assert_eq!(
            back.iter().collect::<Vec<_>>(),
            block.iter().collect::<Vec<_>>()
        );
        assert_eq!(invalid, 3);
        assert!(decode_block(&[1, 2, 3]).is_none());
    }

    #[test]
    fn records_after_a_batch_replay_in_order_and_older_ones_are_deleted() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        for sync in [WalSync::Always, WalSync::Batch, WalSync::Never] {
            let location = dir.path().join(format!("{sync:?}"));
            let wal = Wal::open(
                location.to_str().unwrap(),
                &Default::default(),
                sync,
                rt.handle().clone(),
            )
            .unwrap();
            assert_eq!(wal.next_sequence(3).unwrap(), 0);
            for (seq, batch) in [1000u64, 1000, 2000, 3000].into_iter().enumerate() {
                let payload = format!("record {seq}");
                wal.append(3, BatchTime(batch), seq as u64, payload.as_bytes())
                    .unwrap();
            }
            wal.append(5, BatchTime(3000), 0, b"other source").unwrap();
            wal.sync_through(BatchTime(3000)).unwrap();
            assert_eq!(wal.next_sequence(3).unwrap(), 4);
            let replayed = wal.replay(3, BatchTime(1000)).unwrap();
            let got: Vec<(u64, u64, &[u8])> = replayed
                .iter()
                .map(|r| (r.batch.as_millis(), r.sequence, r.payload.as_slice()))
                .collect();
            assert_eq!(got, [(2000, 2, &b"record 2"[..]), (3000, 3, b"record 3")]);
            assert_eq!(wal.delete_through(BatchTime(2000)).unwrap(), 3);
            assert_eq!(wal.replay(3, BatchTime(0)).unwrap().len(), 1);
            assert_eq!(wal.replay(5, BatchTime(0)).unwrap().len(), 1);
        }
    }

    #[test]
    fn a_torn_record_is_skipped_and_the_others_replay() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let wal = Wal::open(
            dir.path().to_str().unwrap(),
            &Default::default(),
            WalSync::Never,
            rt.handle().clone(),
        )
        .unwrap();
        wal.append(0, BatchTime(1000), 0, b"kept").unwrap();
        wal.append(0, BatchTime(2000), 1, b"torn").unwrap();
        let torn = dir.path().join("wal/0").join(Wal::name(BatchTime(2000), 1));
        let bytes = std::fs::read(&torn).unwrap();
        std::fs::write(&torn, &bytes[..bytes.len() - 3]).unwrap();
        let replayed = wal.replay(0, BatchTime(0)).unwrap();
        assert_eq!(replayed.len(), 1);
        assert_eq!(replayed[0].payload, b"kept");
    }

    #[test]
    fn a_second_log_on_one_location_is_refused_while_the_first_lives() {
        let dir = tempfile::tempdir().unwrap();
        let rt = runtime();
        let location = dir.path().to_str().unwrap();
        let open = || {
            Wal::open(
                location,
                &Default::default(),
                WalSync::Never,
                rt.handle().clone(),
            )
        };
        let first = open().unwrap();
        let e = open().unwrap_err().to_string();
        assert!(
            e.starts_with("another sluice process is running a job on checkpoint location"),
            "{e}"
        );
        drop(first);
        open().unwrap();
    }

    #[test]
    fn an_unwritable_location_names_the_directory() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        std::fs::write(&blocker, b"not a directory").unwrap();
        let rt = runtime();
        let e = Wal::open(
            blocker.to_str().unwrap(),
            &Default::default(),
            WalSync::Always,
            rt.handle().clone(),
        )
        .unwrap_err()
        .to_string();
        assert!(e.starts_with("write-ahead log: cannot create"), "{e}");
        assert!(e.contains("file/wal: Not a directory"), "{e}");
    }
}
