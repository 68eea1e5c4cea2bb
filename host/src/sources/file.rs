//! `text_file_stream(directory)`: the lines of files that appear in a
//! directory (Spark's `textFileStream`).
//!
//! The directory is listed through `object_store` (a `LocalFileSystem` for
//! a path; the same code reads a bucket once URLs are allowed) at a block
//! tick, just before the block is cut, when no file is left to read. Only the
//! directory's own files count: `list_with_delimiter` leaves nested
//! directories out, and names starting with `.` or `_` are ignored (write to
//! `_name` or `.name`, then rename). Files must be moved in atomically; a file
//! changed after it was read is not read again.
//!
//! New files are read oldest first, each once, streamed in ranged reads of
//! [`CHUNK`] (1 MiB) bytes through the line splitter of the socket source
//! (`lines.rs`: a line longer than [`super::MAX_LINE_BYTES`] is skipped and
//! counted as invalid); blocks are cut at ticks and at the size cap, so a big
//! file spans several blocks and batches. Before each chunk the receiver
//! checks the store's byte budget: while it is used up it reads nothing and
//! waits for a release (ticks go on), so however big a file, the bytes held
//! stay under the budget plus one chunk's records. Reads run on
//! `object_store`'s blocking threads, and a chunk is split between awaits.
//!
//! Remembering files, as Spark's `FileInputDStream`: the receiver keeps the
//! names of the files it has read whose modification time is within the
//! last [`REMEMBER_WINDOW`] (60 s, Spark's
//! `spark.streaming.fileStream.minRememberDuration`) and forgets older ones,
//! so memory does not grow with the number of files ever read. A file whose
//! modification time is already older than the window when it is first
//! listed is ignored (as in Spark; moving a file keeps its modification
//! time, so move files in soon after writing them, or touch them), except at
//! the first listing: unlike Spark's default, the files already in the
//! directory when the receiver starts are read too, whatever their age, so a
//! run over a prepared directory gives the same batches every time. The
//! source never ends; on stop, the rest of a file being read is not read.

use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore, ObjectStoreExt};
use tokio::time::sleep_until;
use tracing::{debug, warn};

use super::generator::BlockGenerator;
use super::lines::LineSplitter;
use super::{ReceiverContext, stop_requested};
use crate::batching::ReceiverHandle;

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
    let generator = BlockGenerator::new(handle, &ctx);
    let mut stop = ctx.stop.subscribe();
    let store: Arc<dyn ObjectStore> = match LocalFileSystem::new_with_prefix(&directory) {
        Ok(store) => Arc::new(store),
        Err(e) => {
            generator.fail(format!("cannot watch directory {directory}: {e}"));
            return;
        }
    };
    let mut watcher = Watcher {
        store,
        directory,
        remembered: Remembered::new(REMEMBER_WINDOW),
        queue: VecDeque::new(),
        current: None,
        splitter: LineSplitter::new(CHUNK, super::MAX_LINE_BYTES),
        last_error: None,
        generator,
    };
    let tick = sleep_until(watcher.generator.deadline());
    tokio::pin!(tick);
    let mut reading: Option<Reading> = None;
    loop {
        let over_budget = watcher.generator.over_budget();
        if reading.is_none() && !over_budget {
            reading = watcher.next_read();
        }
        let waiting_for_budget = reading.is_none() && over_budget && watcher.has_work();
        tokio::select! {
            biased;
            () = stop_requested(&mut stop) => break,
            () = &mut tick => {
                if !watcher.has_work() && !over_budget {
                    watcher.list(now_ms()).await;
                }
                watcher.generator.tick();
                tick.as_mut().reset(watcher.generator.deadline());
            }
            () = watcher.generator.budget_released(), if waiting_for_budget => {}
            result = async { reading.as_mut().expect("guarded").await }, if reading.is_some() => {
                reading = None;
                watcher.chunk_read(result);
            }
        }
    }
    watcher.generator.finish();
}

/// Wall-clock milliseconds since the Unix epoch.
fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
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

/// The files selected so far whose modification time is within the window
/// (Spark's `recentlySelectedFiles`).
struct Remembered {
    window_ms: i64,
    files: HashMap<Path, i64>,
    listed_once: bool,
}

impl Remembered {
    fn new(window: Duration) -> Remembered {
        Remembered {
            window_ms: window.as_millis() as i64,
            files: HashMap::new(),
            listed_once: false,
        }
    }

    /// Forgets the files modified before `now_ms - window`, then selects
    /// from a listing the files to read: not selected before, not temporary,
    /// and (after the first listing) modified within the window; oldest
    /// first. They are remembered from now on.
    fn select(&mut self, listing: impl IntoIterator<Item = Listed>, now_ms: i64) -> Vec<Listed> {
        let threshold = now_ms.saturating_sub(self.window_ms);
        self.files.retain(|_, modified| *modified >= threshold);
        let first = !std::mem::replace(&mut self.listed_once, true);
        let mut new: Vec<Listed> = listing
            .into_iter()
            .filter(|file| {
                let name = file.path.filename().unwrap_or_default();
                let fresh = first || file.modified_ms >= threshold;
                if !fresh && !self.files.contains_key(&file.path) {
                    debug!(
                        "ignoring {}: modified more than {} s ago",
                        file.path,
                        self.window_ms / 1000
                    );
                }
                !name.is_empty()
                    && !name.starts_with(['.', '_'])
                    && fresh
                    && !self.files.contains_key(&file.path)
            })
            .collect();
        new.sort_by(|a, b| (a.modified_ms, &a.path).cmp(&(b.modified_ms, &b.path)));
        for file in &new {
            self.files.insert(file.path.clone(), file.modified_ms);
        }
        new
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.files.len()
    }
}

/// The file being read: where the next chunk starts.
struct Current {
    file: Listed,
    next: u64,
}

struct Watcher {
    store: Arc<dyn ObjectStore>,
    directory: String,
    remembered: Remembered,
    /// Files selected, not yet read.
    queue: VecDeque<Listed>,
    current: Option<Current>,
    splitter: LineSplitter,
    /// The last listing or reading error, logged once until it changes.
    last_error: Option<String>,
    generator: BlockGenerator,
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
        self.current.is_some() || !self.queue.is_empty()
    }

    /// Lists the directory and queues the files to read.
    async fn list(&mut self, now_ms: i64) {
        match self.store.list_with_delimiter(None).await {
            Ok(listing) => {
                let new = self
                    .remembered
                    .select(listing.objects.into_iter().map(Listed::from), now_ms);
                self.queue.extend(new);
            }
            Err(e) => {
                let message = format!("cannot list directory {}: {e}", self.directory);
                self.warn_once(message);
            }
        }
    }

    /// Starts reading the next chunk of the current file, or of the next
    /// queued one; `None` when there is nothing to read.
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
                self.generator.cut_if_full();
                self.current = None;
            }
            let file = self.queue.pop_front()?;
            debug!(
                "source {}: reading {} ({} bytes)",
                self.generator.name(),
                file.path,
                file.size
            );
            self.generator.set_origin(format!(
                "file {}: ",
                file.path.filename().unwrap_or_default()
            ));
            self.splitter.reset();
            self.current = Some(Current { file, next: 0 });
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
                self.generator.cut_if_full();
            }
            // Shorter than listed: what was read is the whole file.
            Ok(_) => current.file.size = current.next,
            Err(e) => {
                let (path, at) = (current.file.path.clone(), current.next);
                // The file breaks off: a partial last line is dropped.
                self.splitter.abandon();
                self.current = None;
                // Moved away between listing and reading: nothing more to read.
                if !matches!(e, object_store::Error::NotFound { .. }) {
                    self.warn_once(format!("cannot read {path} at byte {at}: {e}"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::time::{Duration, SystemTime};

    use object_store::path::Path;

    use super::super::spawn;
    use super::super::testing::{context, lines, run_batches};
    use super::{CHUNK, Listed, Remembered};
    use crate::batching::BlockStore;
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

    fn names(files: &[Listed]) -> Vec<String> {
        files.iter().map(|f| f.path.to_string()).collect()
    }

    #[test]
    fn remembered_files_are_forgotten_after_the_window_and_old_new_files_ignored() {
        let mut remembered = Remembered::new(Duration::from_secs(60));
        let s = 1000;
        // First listing at t = 1000 s: every file is read, however old,
        // oldest first; temporary names are not.
        let first = remembered.select(
            [
                listed("b", 990 * s),
                listed("ancient", 10 * s),
                listed("_tmp", 999 * s),
                listed(".hidden", 999 * s),
            ],
            1000 * s,
        );
        assert_eq!(names(&first), ["ancient", "b"]);
        // t = 1030 s: "ancient" (older than 970 s) is forgotten, "b" is
        // still remembered and not read again; "c" is new.
        let all = || {
            [
                listed("ancient", 10 * s),
                listed("b", 990 * s),
                listed("c", 1020 * s),
            ]
        };
        assert_eq!(names(&remembered.select(all(), 1030 * s)), ["c"]);
        assert_eq!(remembered.len(), 2);
        // t = 1055 s: "b" (990 < 995) is forgotten too; nothing is read again,
        // and a file that appears with a modification time before the window
        // is ignored.
        let mut late = all().to_vec();
        late.push(listed("late", 900 * s));
        late.push(listed("d", 1054 * s));
        assert_eq!(names(&remembered.select(late.clone(), 1055 * s)), ["d"]);
        assert_eq!(remembered.len(), 2, "c and d are remembered");
        // t = 2000 s: everything is forgotten, and nothing is read again.
        assert!(remembered.select(late, 2000 * s).is_empty());
        assert_eq!(remembered.len(), 0);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_stream_reads_a_file_bigger_than_the_budget_exactly_within_budget_plus_a_chunk() {
        // 6 MiB of 100-byte lines against a 256 KiB budget.
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

        // Watch the pending bytes while the batch loop runs.
        let highest = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let watch = {
            let (store, highest, done) =
                (Arc::clone(&store), Arc::clone(&highest), Arc::clone(&done));
            tokio::spawn(async move {
                while !done.load(Ordering::SeqCst) {
                    highest.fetch_max(store.pending_bytes(), Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            })
        };
        // At most one chunk of records: its bytes plus 4 bytes per record.
        let chunk_records = CHUNK as u64 + 4 * (CHUNK / (LINE + 1) + 1) as u64;
        let mut next = 0u64;
        let batches = tokio::time::timeout(
            Duration::from_secs(120),
            run_batches(&store, &ctx, move |input| {
                // All of a batch's bytes were pending together when it was taken.
                assert!(
                    input.unreleased_bytes <= budget + chunk_records,
                    "a batch of {} bytes for a budget of {budget}",
                    input.unreleased_bytes
                );
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
        done.store(true, Ordering::SeqCst);
        watch.await.unwrap();
        stop.stop();
        task.await.unwrap();

        let records: u64 = batches.iter().map(|b| b.records).sum();
        assert_eq!(records, LINES);
        let total = LINES * (LINE as u64 + 4);
        let fewest = total.div_ceil(budget + chunk_records) as usize;
        let with_records = batches.iter().filter(|b| b.records > 0).count();
        assert!(
            with_records >= fewest,
            "the file fits in {with_records} batches"
        );
        let highest = highest.load(Ordering::SeqCst);
        assert!(
            highest <= budget + chunk_records,
            "{highest} bytes pending for a budget of {budget}"
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
