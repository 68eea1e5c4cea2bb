//! Sources known in advance, one entry per batch (Spark's `queueStream` with
//! `oneAtATime`): a list of partitions given by the plugin, or a text file
//! read by the host, `lines_per_batch` lines per batch.
//!
//! They are deterministic: entry `i` is the only block of the `i`-th batch
//! from the first one the batch loop asks for ([`BlockStore::first_batch`]),
//! whatever the block interval and the wall clock. The receiver waits for
//! that request, then pushes every entry at once and finishes, saying that
//! its input goes on to the last entry's batch (so an empty last entry is
//! still a batch). Their input is already in memory, so they do not wait
//! for the byte budget (waiting could not free anything, and would hold
//! their watermark back).
//!
//! A lines file that cannot be read, or is not UTF-8, fails the source with
//! a message naming the path (and the line).
//!
//! [`BlockStore::first_batch`]: crate::batching::BlockStore::first_batch

use tracing::warn;

use super::lines::{BadLine, LineSink, split_lines};
use super::{ReceiverContext, stop_requested};
use crate::batching::{BatchTime, Block, ReceiverHandle};
use crate::data::Rows;

pub(super) async fn run_entries(entries: Vec<Rows>, ctx: ReceiverContext, handle: ReceiverHandle) {
    // Entry 0 is for the first batch the loop asks for.
    let mut first = handle.store().first_batch_watch();
    let mut stop = ctx.stop.subscribe();
    let first: Option<BatchTime> = tokio::select! {
        biased;
        () = stop_requested(&mut stop) => None,
        first = first.wait_for(Option::is_some) => first.ok().and_then(|f| *f),
    };
    let Some(first) = first else {
        handle.finish();
        return;
    };
    // Every entry is pushed before the watermark moves (straight to
    // `finish`): the batch loop sees the whole queue at once, and stops
    // after the last entry's batch, whatever the timing.
    let mut last = None;
    for (i, rows) in entries.into_iter().enumerate() {
        if ctx.stop.is_stopped() {
            break;
        }
        let batch = ctx.clock.nth_from(first, i as u64);
        handle.push(Block::new(batch, rows));
        last = Some(batch);
    }
    match last {
        Some(last) => handle.finish_after(last),
        None => handle.finish(),
    }
}

pub(super) async fn run_lines_file(
    path: String,
    lines_per_batch: u32,
    ctx: ReceiverContext,
    handle: ReceiverHandle,
) {
    match read_lines_file(&path, lines_per_batch).await {
        Ok(entries) => run_entries(entries, ctx, handle).await,
        Err(message) => {
            warn!("source {}: {message}", ctx.name);
            handle.fail(message);
        }
    }
}

/// Reads `path` into entries of `lines_per_batch` lines.
async fn read_lines_file(path: &str, lines_per_batch: u32) -> Result<Vec<Rows>, String> {
    if lines_per_batch == 0 {
        return Err(format!(
            "lines file {path}: lines_per_batch must be at least 1"
        ));
    }
    let bytes = tokio::fs::read(path)
        .await
        .map_err(|e| format!("cannot read lines file {path}: {e}"))?;
    let mut entries = Entries {
        per_batch: lines_per_batch as usize,
        entries: Vec::new(),
        line: 0,
        first_bad: None,
    };
    split_lines(&bytes, 0, true, &mut entries);
    match entries.first_bad {
        Some(line) => Err(format!("lines file {path}: invalid UTF-8 at line {line}")),
        None => Ok(entries.entries),
    }
}

/// Groups lines into entries of `per_batch` lines.
struct Entries {
    per_batch: usize,
    entries: Vec<Rows>,
    /// Lines seen so far.
    line: u64,
    /// The first invalid line (1-based).
    first_bad: Option<u64>,
}

impl LineSink for Entries {
    fn line(&mut self, line: &[u8]) {
        self.line += 1;
        match self.entries.last_mut() {
            Some(rows) if rows.len() < self.per_batch => rows.push(line),
            _ => self.entries.push(std::iter::once(line).collect()),
        }
    }

    fn bad_line(&mut self, _offset: u64, _why: BadLine) {
        self.line += 1;
        self.first_bad.get_or_insert(self.line);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::super::spawn;
    use super::super::testing::{context, lines, run_batches};
    use crate::batching::{BatchTime, BlockStore};
    use crate::data::Rows;
    use crate::plan::SourceSpec;

    const LIMIT: Duration = Duration::from_secs(60);

    fn entry(lines: &[&str]) -> Rows {
        lines.iter().collect()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn queue_gives_entry_i_to_batch_i_whatever_the_block_interval() {
        for block_ms in [10, 40, 100] {
            let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
            let (ctx, _stop) = context(&store, block_ms, 40, true);
            let spec = SourceSpec::Queue(vec![
                entry(&["a"]),
                entry(&[]),
                entry(&["b", "c"]),
                entry(&[]),
            ]);
            let task = spawn(spec, ctx.clone());
            let batches = tokio::time::timeout(LIMIT, run_batches(&store, &ctx, |_| false))
                .await
                .unwrap();
            task.await.unwrap();
            let got: Vec<(BatchTime, Vec<String>)> =
                batches.iter().map(|b| (b.time, lines(b))).collect();
            let at = |i| ctx.clock.nth_from(batches[0].time, i);
            assert_eq!(
                got,
                [
                    (at(0), vec!["a".to_string()]),
                    (at(1), vec![]),
                    (at(2), vec!["b".into(), "c".into()]),
                    (at(3), vec![]),
                ]
            );
            assert_eq!(batches[2].blocks[&ctx.node].len(), 1, "one block per entry");
            assert!(store.all_finished());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_resumed_queue_gives_the_entries_after_the_checkpoint_to_their_batches() {
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, _stop) = context(&store, 20, 40, true);
        // The job's first batch, and a checkpoint after its second.
        let first = ctx.clock.batch_for(crate::batching::now_ms());
        store.resume(first, ctx.clock.nth_from(first, 1));
        let spec = SourceSpec::Queue(vec![
            entry(&["a"]),
            entry(&["b"]),
            entry(&["c"]),
            entry(&["d"]),
        ]);
        let task = spawn(spec, ctx.clone());
        let (taker, clock) = (Arc::clone(&store), ctx.clock);
        let got = tokio::task::spawn_blocking(move || {
            (2..4)
                .map(|i| {
                    let input = taker.take_batch(clock.nth_from(first, i)).unwrap();
                    taker.release(input.unreleased_bytes);
                    lines(&input)
                })
                .collect::<Vec<_>>()
        })
        .await
        .unwrap();
        task.await.unwrap();
        assert_eq!(got, [vec!["c".to_string()], vec!["d".to_string()]]);
        assert!(store.all_finished());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn lines_file_gives_lines_per_batch_lines_to_each_batch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("input.txt");
        std::fs::write(&path, "l1\nl2\r\nl3\n\nl5").unwrap();
        let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
        let (ctx, _stop) = context(&store, 20, 40, true);
        let spec = SourceSpec::LinesFile {
            path: path.to_str().unwrap().into(),
            lines_per_batch: 2,
        };
        let task = spawn(spec, ctx.clone());
        let batches = tokio::time::timeout(LIMIT, run_batches(&store, &ctx, |_| false))
            .await
            .unwrap();
        task.await.unwrap();
        let got: Vec<Vec<String>> = batches.iter().map(lines).collect();
        assert_eq!(got, [vec!["l1", "l2"], vec!["l3", ""], vec!["l5"]]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_bad_lines_file_fails_the_source_naming_the_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let bad = dir.path().join("bad.txt");
        std::fs::write(&bad, b"ok\nok\n\xc3(\nok\n").unwrap();
        let missing = dir.path().join("missing.txt");
        for (path, expected) in [
            (&bad, "invalid UTF-8 at line 3"),
            (&missing, "cannot read lines file"),
        ] {
            let store = BlockStore::new(BlockStore::DEFAULT_BUDGET);
            let (ctx, _stop) = context(&store, 20, 40, true);
            let path = path.to_str().unwrap().to_string();
            let spec = SourceSpec::LinesFile {
                path: path.clone(),
                lines_per_batch: 2,
            };
            spawn(spec, ctx.clone()).await.unwrap();
            let err = store.take_batch(BatchTime(0)).unwrap_err();
            assert_eq!(err.node, ctx.node);
            assert!(err.message.contains(expected), "{err}");
            assert!(err.message.contains(&path), "{err}");
        }
    }
}
