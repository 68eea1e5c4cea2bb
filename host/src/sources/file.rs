//! `text_file_stream(directory)`: the lines of files that appear in a
//! directory (Spark's `textFileStream`).
//!
//! The directory is listed through `object_store` (a `LocalFileSystem` for
//! a path; the same code reads a bucket once URLs are allowed) at every
//! block tick, just before the block is cut, so a file listed at tick `t` is
//! in batch `batch_for(t)`. Only the directory's own files count:
//! `list_with_delimiter` leaves nested directories out, and names starting
//! with `.` or `_` are ignored (write to `_name` or `.name`, then rename).
//! Each new file is read whole, once: the receiver remembers the names it
//! has read. Files must be moved in atomically; a file changed after it was
//! read is not read again.
//!
//! Unlike Spark's default, the files already in the directory when the
//! receiver starts are read too (in the first block): a run over a prepared
//! directory gives the same batches every time. The source never ends.
//!
//! Over budget the receiver does not list the directory: new files wait on
//! disk.

use std::collections::HashSet;
use std::sync::Arc;

use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use tokio::time::sleep_until;
use tracing::{debug, warn};

use super::generator::BlockGenerator;
use super::lines::split_lines;
use super::{ReceiverContext, stop_requested};
use crate::batching::ReceiverHandle;

/// A file is split into lines this many bytes at a time, so that a block
/// can be cut at the size cap in the middle of a big file.
const CHUNK: usize = 1 << 20;

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
        seen: HashSet::new(),
        last_error: None,
        generator,
    };
    let tick = sleep_until(watcher.generator.deadline());
    tokio::pin!(tick);
    loop {
        tokio::select! {
            biased;
            () = stop_requested(&mut stop) => break,
            () = &mut tick => {
                if !watcher.generator.over_budget() {
                    watcher.read_new_files().await;
                }
                watcher.generator.tick();
                tick.as_mut().reset(watcher.generator.deadline());
            }
        }
    }
    watcher.generator.finish();
}

struct Watcher {
    store: Arc<dyn ObjectStore>,
    directory: String,
    /// Files read so far.
    seen: HashSet<Path>,
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

    /// Lists the directory and reads the files not seen before, oldest
    /// first, into the current block.
    async fn read_new_files(&mut self) {
        let listing = match self.store.list_with_delimiter(None).await {
            Ok(listing) => listing,
            Err(e) => {
                let message = format!("cannot list directory {}: {e}", self.directory);
                self.warn_once(message);
                return;
            }
        };
        let mut new: Vec<_> = listing
            .objects
            .into_iter()
            .filter(|meta| {
                let name = meta.location.filename().unwrap_or_default();
                !name.is_empty()
                    && !name.starts_with(['.', '_'])
                    && !self.seen.contains(&meta.location)
            })
            .collect();
        new.sort_by(|a, b| (a.last_modified, &a.location).cmp(&(b.last_modified, &b.location)));
        for meta in new {
            if self.generator.over_budget() {
                // The rest wait on disk for the next tick.
                return;
            }
            let bytes = match self.store.get(&meta.location).await {
                Ok(result) => result.bytes().await,
                Err(e) => Err(e),
            };
            match bytes {
                Ok(bytes) => {
                    debug!(
                        "source {}: reading {} ({} bytes)",
                        self.generator.name(),
                        meta.location,
                        bytes.len()
                    );
                    self.add_lines(&meta.location, &bytes);
                    self.seen.insert(meta.location);
                }
                // Moved away between listing and reading: nothing to read.
                Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => {
                    let message = format!("cannot read {}: {e}", meta.location);
                    self.warn_once(message);
                }
            }
        }
    }

    /// Adds the lines of one file, cutting blocks at the size cap.
    fn add_lines(&mut self, file: &Path, bytes: &[u8]) {
        self.generator
            .set_origin(format!("file {}: ", file.filename().unwrap_or_default()));
        let mut offset = 0;
        while offset < bytes.len() {
            let end = (offset + CHUNK).min(bytes.len());
            let last = end == bytes.len();
            let used = split_lines(
                &bytes[offset..end],
                offset as u64,
                last,
                &mut self.generator,
            );
            offset += if used == 0 && !last {
                // A line longer than a chunk: take it whole.
                let rest = &bytes[offset..];
                let line_end = memchr::memchr(b'\n', rest).map_or(rest.len(), |i| i + 1);
                split_lines(&rest[..line_end], offset as u64, true, &mut self.generator)
            } else {
                used
            };
            self.generator.cut_if_full();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::spawn;
    use super::super::testing::{context, lines, run_batches};
    use crate::batching::BlockStore;
    use crate::plan::SourceSpec;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn file_stream_reads_each_new_file_once_and_ignores_nested_and_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path();
        std::fs::write(path.join("a.txt"), b"a1\r\n\xffbad\na2\n").unwrap();
        std::fs::create_dir(path.join("nested")).unwrap();
        std::fs::write(path.join("nested").join("n.txt"), "nested\n").unwrap();
        std::fs::write(path.join("_tmp"), "temporary\n").unwrap();
        std::fs::write(path.join(".hidden"), "hidden\n").unwrap();

        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, stop) = context(&store, 20, 40, false);
        let spec = SourceSpec::TextFile {
            directory: path.to_str().unwrap().to_string(),
        };
        let task = spawn(spec, ctx.clone());

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
