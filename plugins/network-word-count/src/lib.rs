//! NetworkWordCount, the first example of the Spark Streaming guide: counts
//! the words of the lines a TCP server sends, per batch.
//!
//! Arguments (`--arg KEY=VALUE`):
//!
//! - `host`, `port`: the server to read lines from, e.g. one started with
//!   `nc -lk 9999`; or instead `dir`: a directory whose new files are read
//!   (a text file stream, which a restarted job does not read twice).
//! - `output` (optional): also save every batch's counts with
//!   `save_as_text_files(output)`, no suffix.
//! - `sqlite` (optional): also save every batch's counts, exactly once, to
//!   table `word_counts` of the SQLite database at this path
//!   (`save_to_sqlite`: columns `batch_time`, `key`, `value`).
//! - `reducer` (optional): `closure` (the default) adds the counts with a
//!   `reduce_by_key(|a, b| a + b)` closure run in the plugin; `builtin` uses
//!   `sum_by_key()`, which the host runs natively. Benchmarks compare both.
//!
//! - `words` (optional): `borrowed` (the default) splits each line with
//!   `flat_map_str`, emitting `(word, 1)` pairs that borrow the words from
//!   the line; `owned` is the guide's code as it is, `flat_map` to a
//!   `String` per word then `map` to pairs. Same results; benchmarks compare
//!   both.
//!
//! Lines are split on single spaces exactly like Spark's `split(" ")`, so
//! two consecutive spaces give an empty word, which is counted too.
//!
//! ```text
//! cargo build --release --target wasm32-wasip2 -p network-word-count
//! sluice run target/wasm32-wasip2/release/network_word_count.wasm --arg host=localhost --arg port=9999
//! ```

use sluice_guest::prelude::*;

/// The job.
pub struct NetworkWordCount;

/// Lines from `host` + `port`, or from the files appearing in `dir`.
fn lines(ctx: &StreamingContext, args: &Args) -> Result<DStream<String>, String> {
    match (args.get("dir"), args.get("host"), args.get("port")) {
        (Some(dir), None, None) => Ok(ctx.text_file_stream(dir)),
        (None, Some(host), Some(_)) => Ok(ctx.socket_text_stream(host, args.parse::<u16>("port")?)),
        _ => Err("give either `host` and `port` (a socket) or `dir` (a text file stream)".into()),
    }
}

impl Job for NetworkWordCount {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let lines = lines(ctx, args)?;
        let pairs = match args.get("words").unwrap_or("borrowed") {
            // Each word emitted as a (word, 1) pair borrowed from its line:
            // the combine of reduce_by_key takes it by its bytes, without a
            // String per word.
            "borrowed" => lines.flat_map_str(|line, out| {
                for word in sluice_guest::text::split(line, ' ') {
                    out.emit((word, 1i64));
                }
            }),
            // The guide's code as it is: a String per word, then a pair.
            "owned" => lines
                .flat_map(|l: String| l.split(' ').map(String::from).collect::<Vec<_>>())
                .map(|w| (w, 1i64)),
            other => {
                return Err(format!(
                    "argument `words`: expected `borrowed` or `owned`, got {other:?}"
                ));
            }
        };
        let word_counts = match args.get("reducer").unwrap_or("closure") {
            "closure" => pairs.reduce_by_key(|a, b| a + b),
            "builtin" => pairs.sum_by_key(),
            other => {
                return Err(format!(
                    "argument `reducer`: expected `closure` or `builtin`, got {other:?}"
                ));
            }
        };
        word_counts.print();
        if let Some(output) = args.get("output") {
            word_counts.save_as_text_files(output, None);
        }
        if let Some(path) = args.get("sqlite") {
            word_counts.save_to_sqlite(path, "word_counts");
        }
        Ok(())
    }
}

sluice_guest::export_job!(NetworkWordCount);
