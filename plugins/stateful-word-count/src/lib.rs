//! StatefulNetworkWordCount, the guide's `updateStateByKey` example: the
//! running count of every word since the job started.
//!
//! Arguments (`--arg KEY=VALUE`):
//!
//! - `host`, `port`: the TCP server to read lines from; or instead `dir`: a
//!   directory whose new files are read (a text file stream).
//! - `output` (optional): every batch saves the full running counts with
//!   `save_as_text_files(output)`, as `(word,count)` lines.
//!
//! Lines are split on single spaces as `network-word-count` does. The
//! running counts are named `running-counts`, so that their state is kept
//! under a name that does not change with the code around it.
//!
//! ```text
//! sluice run target/wasm32-wasip2/release/stateful_word_count.wasm \
//!     --arg host=localhost --arg port=9999 --arg output=out/counts
//! ```

use sluice_guest::prelude::*;

/// The job.
pub struct StatefulWordCount;

/// Lines from `host` + `port`, or from the files appearing in `dir`.
fn lines(ctx: &StreamingContext, args: &Args) -> Result<DStream<String>, String> {
    match (args.get("dir"), args.get("host"), args.get("port")) {
        (Some(dir), None, None) => Ok(ctx.text_file_stream(dir)),
        (None, Some(host), Some(_)) => Ok(ctx.socket_text_stream(host, args.parse::<u16>("port")?)),
        _ => Err("give either `host` and `port` (a socket) or `dir` (a text file stream)".into()),
    }
}

impl Job for StatefulWordCount {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let running = lines(ctx, args)?
            // (word, 1) pairs borrowing the words from the line.
            .flat_map_str(|line, out| {
                for word in sluice_guest::text::split(line, ' ') {
                    out.emit((word, 1i64));
                }
            })
            // The new values as runs: a word's `1`s are one run, `(n, 1)`,
            // however often it came in the batch.
            .update_state_by_key_runs(|new: Runs<i64>, count: Option<i64>| {
                Some(
                    count.unwrap_or(0) + new.iter().map(|(n, one)| i64::from(n) * one).sum::<i64>(),
                )
            })
            .name("running-counts");
        running.print();
        if let Some(output) = args.get("output") {
            running.save_as_text_files(output, None);
        }
        Ok(())
    }
}

sluice_guest::export_job!(StatefulWordCount);
