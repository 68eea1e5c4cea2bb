//! WindowedWordCount, the guide's `reduceByKeyAndWindow` example: word
//! counts over the last `window` of input, every `slide`, kept
//! incrementally (the counts of the batches entering the window are added,
//! those of the batches leaving it subtracted), and words whose count falls
//! to 0 dropped.
//!
//! Arguments (`--arg KEY=VALUE`):
//!
//! - `host`, `port`: the TCP server to read lines from; or instead `dir`: a
//!   directory whose new files are read (a text file stream).
//! - `window` (default `30s`), `slide` (default `10s`): durations like
//!   `30s` or `500ms`, multiples of the batch interval.
//! - `output` (optional): also save every window's counts with
//!   `save_as_text_files(output)`, as `(word,count)` lines.
//!
//! Lines are split on single spaces as `network-word-count` does. The
//! windowed counts are named `window-counts`; every window is printed.
//!
//! ```text
//! sluice run target/wasm32-wasip2/release/windowed_word_count.wasm \
//!     --arg host=localhost --arg port=9999 --arg window=30s --arg slide=10s
//! ```

use std::time::Duration;

use sluice_guest::prelude::*;

/// The job.
pub struct WindowedWordCount;

/// Lines from `host` + `port`, or from the files appearing in `dir`.
fn lines(ctx: &StreamingContext, args: &Args) -> Result<DStream<String>, String> {
    match (args.get("dir"), args.get("host"), args.get("port")) {
        (Some(dir), None, None) => Ok(ctx.text_file_stream(dir)),
        (None, Some(host), Some(_)) => Ok(ctx.socket_text_stream(host, args.parse::<u16>("port")?)),
        _ => Err("give either `host` and `port` (a socket) or `dir` (a text file stream)".into()),
    }
}

impl Job for WindowedWordCount {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let window = args
            .duration_optional("window")?
            .unwrap_or(Duration::from_secs(30));
        let slide = args
            .duration_optional("slide")?
            .unwrap_or(Duration::from_secs(10));
        let counts = lines(ctx, args)?
            // (word, 1) pairs borrowing the words from the line.
            .flat_map_str(|line, out| {
                for word in sluice_guest::text::split(line, ' ') {
                    out.emit((word, 1i64));
                }
            })
            .reduce_by_key_and_window_inv_filtered(
                |a, b| a + b,
                |a, b| a - b,
                |(_, count): &(String, i64)| *count > 0,
                window,
                slide,
            )
            .name("window-counts");
        counts.print();
        if let Some(output) = args.get("output") {
            counts.save_as_text_files(output, None);
        }
        Ok(())
    }
}

sluice_guest::export_job!(WindowedWordCount);
