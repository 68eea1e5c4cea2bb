//! `text_file_stream(directory)`: the lines of files that appear in a
//! directory (Spark's `textFileStream`).
//!
//! The directory is listed through `object_store` (a `LocalFileSystem` for
//! a path; the same code reads a bucket once URLs are allowed) at block
//! ticks, when no file is being read. Only the directory's own files count:
//! `list_with_delimiter` leaves nested directories out, and names starting
//! with `.` or `_` are ignored (write to `_name` or `.name`, then rename).
//! Files must be moved in atomically; a file changed after it was read is
//! not read again.
//!
//! **Which batch a file belongs to.** As the guide says of Spark, "a file is
//! considered part of a time period based on its modification time": a
//! file modified at `m` belongs to batch `batch_for(m)`, or, when that batch
//! is already complete when the file is listed (a file moved in late), to
//! the first batch still open. A whole file belongs to one batch: the
//! receiver holds its watermark before a batch until every file of that
//! batch is read. A file modified in the future waits for its batch. So a
//! directory of files gives the same batches on every run and after every
//! restart.
//!
//! New files are read in order of batch, modification time and name, each
//! once, streamed in ranged reads of [`CHUNK`] (1 MiB) bytes through the
//! line splitter of the socket source (`lines.rs`: a line longer than
//! [`super::MAX_LINE_BYTES`] is skipped and counted as invalid). A block is
//! cut at the end of each file and at the size cap, so a file is at least
//! one partition (as in Spark) and the blocks of a batch do not depend on
//! timing. Before each chunk the receiver checks the store's byte budget:
//! while it is used up it reads nothing and waits for a release — unless
//! the batch loop is waiting for the batch of the file being read, which
//! only the rest of that file can complete (a batch's files may then hold
//! more than the budget; with early chains, as in a word count, their raw
//! bytes are released block by block). Reads run on `object_store`'s
//! blocking threads, and a chunk is split between awaits.
//!
//! Remembering files, as Spark's `FileInputDStream`: the receiver keeps the
//! names of the files it has selected whose modification time is within
//! [`REMEMBER_WINDOW`] (60 s, Spark's
//! `spark.streaming.fileStream.minRememberDuration`) of the open batch and
//! forgets older ones, so memory does not grow with the number of files
//! ever read. A file whose modification time is already older than the
//! window when it is first listed is ignored (as in Spark; moving a file
//! keeps its modification time, so move files in soon after writing them,
//! or touch them), except at the first listing of a fresh job: unlike
//! Spark's default, the files already in the directory when a job starts are
//! read too, whatever their age, so a run over a prepared directory gives
//! the same batches every time. The source never ends, except with
//! `--until-sources-end`: then it ends once a listing finds no new file and
//! every file is read. On stop, the rest of a file being read is not read.
//!
//! **Restarts.** With a checkpoint, each block's provenance (the file, the
//! byte range of its lines, the batch) is appended to the write-ahead log
//! before the block is pushed, and a checkpoint records the files selected
//! for the batches it covers ([`Positions`]). A restarted receiver re-reads
//! the logged ranges of the batches after the checkpoint into the same
//! batches, goes on with a file it was in the middle of, and never selects a
//! file the checkpoint or the log names again: each file is counted once
//! across restarts.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use serde::{Deserialize, Serialize};
use tokio::time::sleep_until;
use tracing::{debug, info, warn};

use super::generator::BlockGenerator;
use super::lines::{LineSplitter, split_lines};
use super::{ReceiverContext, stop_requested};
use crate::batching::{BatchClock, BatchTime, Block, ReceiverHandle, now_ms};

/// A file is read and split into lines this many bytes at a time, so that
/// the budget is checked and a block can be cut in the middle of a big file.
const CHUNK: usize = 1 << 20;

/// How long the names of files read are remembered, by modification time
/// (Spark's `minRememberDuration` default); a file listed for the first time
/// with a modification time older than this is ignored (except at the first
/// listing).
pub const REMEMBER_WINDOW: Duration = Duration::from_secs(60);

/// A ranged read under way (kept across ticks, so a tick does not restart it).
type Reading = Pin<Box<dyn Future<Output = object_store::Result<Bytes>> + Send>>;

pub(super) async fn run(directory: String, ctx: ReceiverContext, handle: ReceiverHandle) {
    let store: Arc<dyn ObjectStore> = match LocalFileSystem::new_with_prefix(&directory) {
        Ok(store) => Arc::new(store),
        Err(e) => {
            let message = format!("cannot watch directory {directory}: {e}");
            warn!("source {}: {message}", ctx.name);
            handle.fail(message);
            return;
        }
    };
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    if let Some(position) = ctx.positions.restored_for(ctx.node) {
        match serde_json::from_value::<FilePosition>(position.clone()) {
            Ok(position) => ledger.lock().expect("not poisoned").restore(position),
            Err(e) => {
                let message = format!("the checkpoint's position of {directory} is invalid: {e}");
                handle.fail(message);
                return;
            }
        }
    }
    {
        let ledger = Arc::clone(&ledger);
        ctx.positions.publish(ctx.node, move |done| {
            let position = ledger.lock().expect("not poisoned").position(done);
            serde_json::to_value(position).expect("a position serializes")
        });
    }
    let mut watcher = Watcher {
        store,
        directory,
        clock: ctx.clock,
        pending: BTreeMap::new(),
        current: None,
        pieces: Vec::new(),
        splitter: LineSplitter::new(CHUNK, super::MAX_LINE_BYTES),
        last_error: None,
        ledger,
        remember_ms: REMEMBER_WINDOW.as_millis() as u64,
        until_end: ctx.until_end,
        generator: BlockGenerator::new(handle, &ctx),
        failed: false,
    };
    if let Err(message) = watcher.replay().await {
        watcher.generator.fail(message);
        return;
    }
    let mut stop = ctx.stop.subscribe();
    let tick = sleep_until(watcher.generator.deadline());
    tokio::pin!(tick);
    let mut reading: Option<Reading> = None;
    loop {
        let over_budget = watcher.generator.over_budget() && !watcher.awaited();
        if reading.is_none() && !over_budget {
            reading = watcher.next_read();
            if watcher.failed {
                break;
            }
        }
        let waiting_for_budget = reading.is_none() && over_budget && watcher.has_work();
        tokio::select! {
            biased;
            () = stop_requested(&mut stop) => break,
            () = &mut tick => {
                let due = watcher.generator.due();
                if watcher.current.is_none() {
                    let found = watcher.list().await;
                    if found == 0 && watcher.until_end && !watcher.has_work() {
                        break;
                    }
                }
                watcher.advance(due);
                watcher.generator.skip_tick();
                tick.as_mut().reset(watcher.generator.deadline());
            }
            () = watcher.generator.budget_released(), if waiting_for_budget => {}
            result = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => {
                reading = None;
                watcher.chunk_read(result);
            }
        }
    }
    watcher.generator.finish_without_block();
}

/// A file to read, as listed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Listed {
    path: Path,
    /// Modification time, ms since the Unix epoch.
    modified_ms: i64,
    size: u64,
}

impl From<ObjectMeta> for Listed {
    fn from(meta: ObjectMeta) -> Listed {
        Listed {
            path: meta.location,
            modified_ms: meta.last_modified.timestamp_millis(),
            size: meta.size,
        }
    }
}

/// A file's place in a checkpoint: its name, modification time and batch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct SelectedFile {
    path: String,
    modified_ms: i64,
    batch_ms: u64,
}

/// What a checkpoint keeps of a file stream: the files selected for the
/// batches it covers (within the remember window), and whether the first
/// listing happened.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct FilePosition {
    listed: bool,
    files: Vec<SelectedFile>,
}

/// The files selected so far, with their batch (Spark's
/// `recentlySelectedFiles`), shared with the checkpoint.
#[derive(Debug, Default)]
struct Ledger {
    files: HashMap<Path, (i64, BatchTime)>,
    listed_once: bool,
}

impl Ledger {
    /// Forgets the files modified before `taken - window` (`taken` the
    /// latest batch the loop took: a checkpoint of it must still name every
    /// file that a restart could select again), then selects from a
    /// listing the files to read: not
    /// selected before, not temporary, and (after the first listing)
    /// modified within the window. Each goes to the batch of its
    /// modification time, or `open` when that batch is complete; they are
    /// remembered from now on.
    fn select(
        &mut self,
        listing: impl IntoIterator<Item = Listed>,
        open: BatchTime,
        clock: &BatchClock,
        remember_ms: u64,
        taken: BatchTime,
    ) -> Vec<(BatchTime, Listed)> {
        let forget = taken.as_millis().saturating_sub(remember_ms) as i64;
        self.files
            .retain(|_, (modified, batch)| *modified >= forget || *batch > taken);
        let threshold = open.as_millis().saturating_sub(remember_ms) as i64;
        let first = !std::mem::replace(&mut self.listed_once, true);
        let mut new = Vec::new();
        for file in listing {
            let name = file.path.filename().unwrap_or_default();
            if name.is_empty()
                || name.starts_with(['.', '_'])
                || self.files.contains_key(&file.path)
            {
                continue;
            }
            if !first && file.modified_ms < threshold {
                debug!(
                    "ignoring {}: modified more than {} s before batch {open}",
                    file.path,
                    remember_ms / 1000
                );
                continue;
            }
            let batch = clock
                .batch_for(u64::try_from(file.modified_ms).unwrap_or(0))
                .max(open);
            self.files
                .insert(file.path.clone(), (file.modified_ms, batch));
            new.push((batch, file));
        }
        new.sort_by(|a, b| {
            (a.0, a.1.modified_ms, &a.1.path).cmp(&(b.0, b.1.modified_ms, &b.1.path))
        });
        new
    }

    fn restore(&mut self, position: FilePosition) {
        self.listed_once = position.listed;
        for file in position.files {
            self.files.insert(
                Path::from(file.path),
                (file.modified_ms, BatchTime(file.batch_ms)),
            );
        }
    }

    /// The position once every batch up to `done` is complete: the files of
    /// those batches.
    fn position(&self, done: BatchTime) -> FilePosition {
        let mut files: Vec<SelectedFile> = self
            .files
            .iter()
            .filter(|(_, (_, batch))| *batch <= done)
            .map(|(path, (modified_ms, batch))| SelectedFile {
                path: path.to_string(),
                modified_ms: *modified_ms,
                batch_ms: batch.as_millis(),
            })
            .collect();
        files.sort_by(|a, b| (a.batch_ms, &a.path).cmp(&(b.batch_ms, &b.path)));
        FilePosition {
            listed: self.listed_once,
            files,
        }
    }
}

/// The file being read.
struct Current {
    file: Listed,
    batch: BatchTime,
    /// Where the next chunk starts.
    next: u64,
    /// Where the lines of the block being filled start.
    block_start: u64,
}

/// Where a block's lines come from, as the write-ahead log keeps it: the
/// lines of `path` in bytes `start..end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Piece {
    path: String,
    modified_ms: i64,
    start: u64,
    end: u64,
}

struct Watcher {
    store: Arc<dyn ObjectStore>,
    directory: String,
    clock: BatchClock,
    /// Files selected and not yet started, by (batch, modification time,
    /// name), with the offset to start at (not 0 for a file that was being
    /// read when the job stopped).
    pending: BTreeMap<(BatchTime, i64, Path), (Listed, u64)>,
    current: Option<Current>,
    /// The provenance of the block being filled.
    pieces: Vec<Piece>,
    splitter: LineSplitter,
    /// The last listing or reading error, logged once until it changes.
    last_error: Option<String>,
    ledger: Arc<Mutex<Ledger>>,
    remember_ms: u64,
    until_end: bool,
    generator: BlockGenerator,
    /// Logging a block failed: the source has failed.
    failed: bool,
}

impl Watcher {
    fn warn_once(&mut self, message: String) {
        if self.last_error.as_ref() != Some(&message) {
            warn!("source {}: {message}", self.generator.name());
            self.last_error = Some(message);
        }
    }

    /// A file is being read or waits to be.
    fn has_work(&self) -> bool {
        self.current.is_some() || !self.pending.is_empty()
    }

    /// The first batch that is not complete yet: files found now go there
    /// at the earliest.
    fn open_batch(&self) -> BatchTime {
        self.clock.batch_for(self.generator.watermark() + 1)
    }

    /// The earliest batch with a file not read completely.
    fn first_unread(&self) -> Option<BatchTime> {
        let current = self.current.as_ref().map(|c| c.batch);
        let pending = self.pending.keys().next().map(|(batch, _, _)| *batch);
        current.into_iter().chain(pending).min()
    }

    /// Whether the batch loop waits for the batch of the file being read,
    /// which only this receiver can complete: then it reads past the budget.
    fn awaited(&self) -> bool {
        self.first_unread().is_some_and(|batch| {
            self.generator
                .wanted()
                .is_some_and(|wanted| wanted >= batch)
        })
    }

    /// Lists the directory and selects new files; returns how many.
    async fn list(&mut self) -> usize {
        match self.store.list_with_delimiter(None).await {
            Ok(listing) => {
                let open = self.open_batch();
                let new = self.select(listing.objects.into_iter().map(Listed::from), open);
                new.len()
            }
            Err(e) => {
                let message = format!("cannot list directory {}: {e}", self.directory);
                self.warn_once(message);
                0
            }
        }
    }

    /// Selects the new files of a listing (see [`Ledger::select`]) and
    /// queues them.
    fn select(
        &mut self,
        listing: impl IntoIterator<Item = Listed>,
        open: BatchTime,
    ) -> Vec<Listed> {
        let taken = self.generator.taken();
        let new = self.ledger.lock().expect("not poisoned").select(
            listing,
            open,
            &self.clock,
            self.remember_ms,
            taken,
        );
        new.into_iter()
            .map(|(batch, file)| {
                self.pending.insert(
                    (batch, file.modified_ms, file.path.clone()),
                    (file.clone(), 0),
                );
                file
            })
            .collect()
    }

    /// The tick `due` has come: the watermark moves to it, or to just
    /// before the first batch with a file not read completely.
    fn advance(&mut self, due: u64) {
        let limit = match self.first_unread() {
            Some(batch) => due.min(batch.as_millis().saturating_sub(1)),
            None => due,
        };
        self.generator.advance_to(limit);
    }

    /// Starts reading the next chunk of the current file, or of the next
    /// file whose batch has come; `None` when there is nothing to read now.
    fn next_read(&mut self) -> Option<Reading> {
        loop {
            if let Some(current) = &self.current {
                let start = current.next;
                let len = self.splitter.spare().len() as u64;
                let end = (start + len).min(current.file.size);
                if start < end {
                    let store = Arc::clone(&self.store);
                    let path = current.file.path.clone();
                    return Some(Box::pin(
                        async move { store.get_range(&path, start..end).await },
                    ));
                }
                // The whole file is read: a last line without `\n` counts.
                self.splitter.end(&mut self.generator);
                self.cut();
                self.current = None;
                if self.failed {
                    return None;
                }
            }
            let (&(batch, _, _), _) = self.pending.first_key_value()?;
            // A file modified in the future waits for its batch.
            if batch > self.clock.batch_for(now_ms()) {
                return None;
            }
            let (_, (file, offset)) = self.pending.pop_first().expect("not empty");
            self.start(file, batch, offset);
        }
    }

    fn start(&mut self, file: Listed, batch: BatchTime, offset: u64) {
        debug!(
            "source {}: reading {} ({} bytes) for batch {batch}",
            self.generator.name(),
            file.path,
            file.size
        );
        self.generator.set_origin(format!(
            "file {}: ",
            file.path.filename().unwrap_or_default()
        ));
        self.splitter.reset_at(offset);
        self.current = Some(Current {
            file,
            batch,
            next: offset,
            block_start: offset,
        });
    }

    /// Cuts the block of the current file's lines read so far, logging where
    /// they come from first.
    fn cut(&mut self) {
        let Some(current) = &mut self.current else {
            return;
        };
        let end = self.splitter.consumed();
        if end > current.block_start || !self.generator.rows().is_empty() {
            self.pieces.push(Piece {
                path: current.file.path.to_string(),
                modified_ms: current.file.modified_ms,
                start: current.block_start,
                end,
            });
        }
        current.block_start = end;
        let batch = current.batch;
        if self.pieces.is_empty() {
            return;
        }
        let pieces = std::mem::take(&mut self.pieces);
        let provenance = serde_json::to_vec(&pieces).expect("pieces serialize");
        if let Err(message) = self.generator.push_block_logged(batch, &provenance) {
            self.failed = true;
            self.generator.fail_in_place(message);
        }
    }

    /// Takes the lines of a chunk just read.
    fn chunk_read(&mut self, result: object_store::Result<Bytes>) {
        let Some(current) = &mut self.current else {
            return;
        };
        match result {
            Ok(bytes) if !bytes.is_empty() => {
                let n = bytes.len().min(self.splitter.spare().len());
                self.splitter.spare()[..n].copy_from_slice(&bytes[..n]);
                current.next += n as u64;
                self.splitter.filled(n, &mut self.generator);
                if self.generator.is_full() {
                    self.cut();
                }
            }
            // Shorter than listed: what was read is the whole file.
            Ok(_) => current.file.size = current.next,
            Err(e) => {
                let (path, at) = (current.file.path.clone(), current.next);
                // The file breaks off: a partial last line is dropped.
                self.splitter.abandon();
                self.cut();
                self.current = None;
                // Moved away between listing and reading: nothing more to read.
                if !matches!(e, object_store::Error::NotFound { .. }) {
                    self.warn_once(format!("cannot read {path} at byte {at}: {e}"));
                }
            }
        }
    }

    /// After a restart: pushes again the blocks logged for the batches after
    /// the checkpoint (re-reading their byte ranges), and goes on with a
    /// file that was being read.
    async fn replay(&mut self) -> Result<(), String> {
        let records = self.generator.logged()?;
        if records.is_empty() {
            return Ok(());
        }
        // Per file: its batch and how far its logged blocks go.
        let mut reached: HashMap<String, (BatchTime, i64, u64)> = HashMap::new();
        for record in &records {
            let pieces: Vec<Piece> = serde_json::from_slice(&record.payload).map_err(|e| {
                format!(
                    "write-ahead log record {} of batch {} is not a file block: {e}",
                    record.sequence, record.batch
                )
            })?;
            let mut block = Block {
                batch: record.batch,
                ..Block::default()
            };
            for piece in &pieces {
                let path = Path::from(piece.path.as_str());
                let bytes = self
                    .store
                    .get_range(&path, piece.start..piece.end)
                    .await
                    .map_err(|e| {
                        format!(
                            "cannot read {} again (bytes {}..{}) for batch {}: {e}",
                            piece.path, piece.start, piece.end, record.batch
                        )
                    })?;
                let mut sink = ReplaySink(&mut block);
                split_lines(&bytes, piece.start, true, &mut sink);
                let entry = reached.entry(piece.path.clone()).or_insert((
                    record.batch,
                    piece.modified_ms,
                    0,
                ));
                entry.2 = entry.2.max(piece.end);
            }
            self.generator.push_replayed(block);
        }
        info!(
            "source {}: {} block(s) of {} file(s) replayed from the write-ahead log",
            self.generator.name(),
            records.len(),
            reached.len()
        );
        for (path, (batch, modified_ms, end)) in reached {
            let path = Path::from(path);
            self.ledger
                .lock()
                .expect("not poisoned")
                .files
                .insert(path.clone(), (modified_ms, batch));
            // A file whose blocks stop before its end was being read.
            let size = match self.store.head(&path).await {
                Ok(meta) => meta.size,
                Err(_) => continue,
            };
            if end < size {
                let file = Listed {
                    path,
                    modified_ms,
                    size,
                };
                self.pending
                    .insert((batch, modified_ms, file.path.clone()), (file, end));
            }
        }
        Ok(())
    }
}

/// Collects the lines of a replayed piece into a block.
struct ReplaySink<'a>(&'a mut Block);

impl super::lines::LineSink for ReplaySink<'_> {
    fn line(&mut self, line: &[u8]) {
        self.0.rows.push(line);
    }

    fn bad_line(&mut self, _offset: u64, _why: super::lines::BadLine) {
        self.0.invalid_records += 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, SystemTime};

    use object_store::path::Path;

    use super::super::spawn;
    use super::super::testing::{context, lines, run_batches};
    use super::{CHUNK, Ledger, Listed};
    use crate::batching::BlockStore;
    use crate::batching::{BatchClock, BatchTime};
    use crate::plan::SourceSpec;

    /// A file source on `directory` (20 ms blocks, 40 ms batches, the
    /// default budget), started.
    fn watch(
        directory: &std::path::Path,
    ) -> (
        Arc<BlockStore>,
        crate::sources::ReceiverContext,
        crate::sources::StopSignal,
        tokio::task::JoinHandle<()>,
    ) {
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, stop) = context(&store, 20, 40, false);
        let spec = SourceSpec::TextFile {
            directory: directory.to_str().unwrap().to_string(),
        };
        let task = spawn(spec, ctx.clone());
        (store, ctx, stop, task)
    }

    fn listed(name: &str, modified_ms: i64) -> Listed {
        Listed {
            path: Path::from(name),
            modified_ms,
            size: 1,
        }
    }

    #[test]
    fn files_go_to_the_batch_of_their_modification_time_and_are_forgotten_after_the_window() {
        let mut ledger = Ledger::default();
        let clock = BatchClock::new(Duration::from_secs(1));
        let s = 1000;
        let window = 60 * s as u64;
        let select = |ledger: &mut Ledger, files: &[Listed], open_s: u64| -> Vec<(u64, String)> {
            let (open, taken) = (BatchTime(open_s * 1000), BatchTime(open_s * 1000 - 1000));
            ledger
                .select(files.to_vec(), open, &clock, window, taken)
                .into_iter()
                .map(|(batch, f)| (batch.as_millis() / 1000, f.path.to_string()))
                .collect()
        };
        // First listing, batch 1000 s open: every file is read, however
        // old; old ones in the open batch, a future one in its own batch;
        // temporary names are not read.
        let first = select(
            &mut ledger,
            &[
                listed("b", 990 * s),
                listed("ancient", 10 * s),
                listed("future", 1004 * s + 500),
                listed("_tmp", 999 * s),
                listed(".hidden", 999 * s),
            ],
            1000,
        );
        assert_eq!(
            first,
            [
                (1000, "ancient".into()),
                (1000, "b".into()),
                (1005, "future".into())
            ]
        );
        // Batch 1030 s open: "ancient" (older than 970 s) is forgotten, "b"
        // is still remembered and not read again; "c" (1020.5 s) is late and
        // goes to the open batch.
        let all = [
            listed("ancient", 10 * s),
            listed("b", 990 * s),
            listed("c", 1020 * s + 500),
        ];
        assert_eq!(select(&mut ledger, &all, 1030), [(1030, "c".into())]);
        // The checkpoint of batch 1030 s names the files of batches up to it
        // that a restart could select again.
        let position = ledger.position(BatchTime(1030 * 1000));
        let names: Vec<&str> = position.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(names, ["b", "future", "c"], "ancient is forgotten");
        // Batch 1055 s open: "b" (990 < 995) is forgotten too; nothing is
        // read again, and a file that appears with a modification time
        // before the window is ignored.
        let mut late = all.to_vec();
        late.push(listed("late", 900 * s));
        late.push(listed("d", 1054 * s));
        assert_eq!(select(&mut ledger, &late, 1055), [(1055, "d".into())]);
        // A ledger restored from the checkpoint of 1030 s does not select
        // its files again.
        let mut restored = Ledger::default();
        restored.restore(position);
        assert_eq!(select(&mut restored, &late, 1031), [(1054, "d".into())]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_file_bigger_than_the_budget_is_read_whole_into_one_batch_in_blocks_at_the_cap() {
        // 6 MiB of 100-byte lines against a 256 KiB budget: the batch loop
        // waits for the file's batch, so the receiver reads on past the
        // budget, cutting blocks at the size cap.
        const LINES: u64 = 60_000;
        const LINE: usize = 99;
        let dir = tempfile::tempdir().unwrap();
        let mut text = Vec::with_capacity(LINES as usize * (LINE + 1));
        for i in 0..LINES {
            text.extend_from_slice(format!("{i:0LINE$}\n").as_bytes());
        }
        std::fs::write(dir.path().join("big.txt"), &text).unwrap();

        let budget = 256 << 10;
        let store = BlockStore::new(budget);
        let (ctx, stop) = context(&store, 20, 40, false);
        let spec = SourceSpec::TextFile {
            directory: dir.path().to_str().unwrap().to_string(),
        };
        let task = spawn(spec, ctx.clone());
        let mut next = 0u64;
        let batches = tokio::time::timeout(
            Duration::from_secs(120),
            run_batches(&store, &ctx, move |input| {
                for line in lines(input) {
                    assert_eq!(line.len(), LINE);
                    assert_eq!(line.parse::<u64>().unwrap(), next, "lines in order, once");
                    next += 1;
                }
                next == LINES
            }),
        )
        .await
        .expect("the whole file is read");
        stop.stop();
        task.await.unwrap();

        let with_records: Vec<_> = batches.iter().filter(|b| b.records > 0).collect();
        assert_eq!(with_records.len(), 1, "the file is one batch");
        assert_eq!(with_records[0].records, LINES);
        let blocks = with_records[0].blocks.values().flatten().count();
        let cap = (crate::sources::MAX_BLOCK_BYTES + CHUNK) as u64;
        let total = LINES * (LINE as u64 + 1);
        assert!(
            blocks as u64 >= total.div_ceil(cap),
            "{blocks} blocks for {total} bytes"
        );
        assert_eq!(store.pending_bytes(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_stream_ignores_a_new_file_modified_before_the_remember_window() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        let hour_ago = SystemTime::now() - Duration::from_secs(3600);
        std::fs::write(path.join("present.txt"), "p1\np2\n").unwrap();
        std::fs::File::options()
            .write(true)
            .open(path.join("present.txt"))
            .unwrap()
            .set_modified(hour_ago)
            .unwrap();

        let (store, ctx, stop, task) = watch(path);
        let dir_path = path.to_path_buf();
        let mut all = Vec::new();
        let mut after_new = 0;
        let batches = tokio::time::timeout(
            Duration::from_secs(60),
            run_batches(&store, &ctx, move |input| {
                all.extend(lines(input));
                if all.iter().any(|l| l == "p2") && !dir_path.join("new.txt").exists() {
                    // An old file (rename keeps its modification time), then
                    // a fresh one.
                    std::fs::write(dir_path.join("_old"), "o1\n").unwrap();
                    std::fs::File::options()
                        .write(true)
                        .open(dir_path.join("_old"))
                        .unwrap()
                        .set_modified(hour_ago)
                        .unwrap();
                    std::fs::rename(dir_path.join("_old"), dir_path.join("old.txt")).unwrap();
                    std::fs::write(dir_path.join("_new"), "n1\n").unwrap();
                    std::fs::rename(dir_path.join("_new"), dir_path.join("new.txt")).unwrap();
                }
                if all.iter().any(|l| l == "n1") {
                    after_new += 1;
                }
                after_new > 5
            }),
        )
        .await
        .expect("the new file is read");
        stop.stop();
        task.await.unwrap();
        let got: Vec<String> = batches.iter().flat_map(lines).collect();
        assert_eq!(got, ["p1", "p2", "n1"]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_stream_reads_each_new_file_once_and_ignores_nested_and_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::write(path.join("a.txt"), b"a1\r\n\xffbad\na2\n").unwrap();
        std::fs::create_dir(path.join("nested")).unwrap();
        std::fs::write(path.join("nested").join("n.txt"), "nested\n").unwrap();
        std::fs::write(path.join("_tmp"), "temporary\n").unwrap();
        std::fs::write(path.join(".hidden"), "hidden\n").unwrap();

        let (store, ctx, stop, task) = watch(path);

        // Once a.txt is in, b.txt is moved in atomically; then a few more
        // batches pass to show that nothing is read twice.
        let dir_path = path.to_path_buf();
        let mut all = Vec::new();
        let mut after_b = 0;
        let batches = tokio::time::timeout(
            Duration::from_secs(60),
            run_batches(&store, &ctx, move |input| {
                all.extend(lines(input));
                if all.iter().any(|l| l == "a2") && !dir_path.join("b.txt").exists() {
                    std::fs::write(dir_path.join("_b.txt.tmp"), "b1\nb2 é\nb3").unwrap();
                    std::fs::rename(dir_path.join("_b.txt.tmp"), dir_path.join("b.txt")).unwrap();
                }
                if all.iter().any(|l| l == "b3") {
                    after_b += 1;
                }
                after_b > 5
            }),
        )
        .await
        .expect("both files are read");
        stop.stop();
        task.await.unwrap();

        let got: Vec<String> = batches.iter().flat_map(lines).collect();
        assert_eq!(got, ["a1", "a2", "b1", "b2 é", "b3"]);
        let invalid: u64 = batches.iter().map(|b| b.invalid_records).sum();
        assert_eq!(invalid, 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_stream_fails_on_a_missing_directory() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope");
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, _stop) = context(&store, 20, 40, false);
        let spec = SourceSpec::TextFile {
            directory: missing.to_str().unwrap().to_string(),
        };
        spawn(spec, ctx).await.unwrap();
        let err = store.take_batch(crate::batching::BatchTime(0)).unwrap_err();
        assert!(err.message.contains("cannot watch directory"), "{err}");
        assert!(err.message.contains("nope"), "{err}");
    }
}
