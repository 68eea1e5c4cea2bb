//! The guide's broadcast blacklist: words on a blacklist, a broadcast value,
//! are dropped and counted with the long accumulator `dropped-words`; the
//! other words are counted per batch.
//!
//! Arguments (`--arg KEY=VALUE`):
//!
//! - `host`, `port`: the TCP server to read lines from; or instead `dir`: a
//!   directory whose new files are read (a text file stream).
//! - `blacklist`: comma-separated words; and/or `blacklist-file`: a file
//!   (local path or object store URL) the host reads at start, one word per
//!   line. At least one of the two.
//! - `output` (optional): also save every batch's counts with
//!   `save_as_text_files(output)`, as `(word,count)` lines.
//!
//! Lines are split on single spaces as `network-word-count` does.
//!
//! ```text
//! sluice run target/wasm32-wasip2/release/blacklist_filter.wasm \
//!     --arg host=localhost --arg port=9999 --arg blacklist=a,the
//! ```

use std::collections::HashSet;

use sluice_guest::prelude::*;

/// The job.
pub struct BlacklistFilter;

/// Lines from `host` + `port`, or from the files appearing in `dir`.
fn lines(ctx: &StreamingContext, args: &Args) -> Result<DStream<String>, String> {
    match (args.get("dir"), args.get("host"), args.get("port")) {
        (Some(dir), None, None) => Ok(ctx.text_file_stream(dir)),
        (None, Some(host), Some(_)) => Ok(ctx.socket_text_stream(host, args.parse::<u16>("port")?)),
        _ => Err("give either `host` and `port` (a socket) or `dir` (a text file stream)".into()),
    }
}

/// The words of a comma-separated list, or of a file's lines, without
/// surrounding blanks and empty entries.
fn words<'a>(list: impl Iterator<Item = &'a str>) -> impl Iterator<Item = String> {
    list.map(str::trim)
        .filter(|w| !w.is_empty())
        .map(String::from)
}

impl Job for BlacklistFilter {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let listed = args
            .get("blacklist")
            .map(|list| ctx.broadcast("blacklist", words(list.split(',')).collect::<Vec<_>>()));
        let file = args
            .get("blacklist-file")
            .map(|path| ctx.broadcast_file("blacklist-file", path));
        if listed.is_none() && file.is_none() {
            return Err("give `blacklist` (comma-separated words) and/or `blacklist-file`".into());
        }
        let dropped = ctx.long_accumulator("dropped-words");
        // Built once per instance, on first use: the union of both lists.
        let blacklist: std::rc::Rc<std::cell::OnceCell<HashSet<String>>> = Default::default();
        let counts = lines(ctx, args)?
            .flat_map(|l: String| l.split(' ').map(String::from).collect::<Vec<_>>())
            .filter(move |word| {
                let blacklist = blacklist.get_or_init(|| {
                    let mut all = HashSet::new();
                    if let Some(listed) = &listed {
                        all.extend(listed.value().iter().cloned());
                    }
                    if let Some(file) = &file {
                        all.extend(words(file.value().lines()));
                    }
                    all
                });
                let drop = blacklist.contains(word);
                if drop {
                    dropped.add(1);
                }
                !drop
            })
            .map(|w| (w, 1i64))
            .reduce_by_key(|a, b| a + b);
        counts.print();
        if let Some(output) = args.get("output") {
            counts.save_as_text_files(output, None);
        }
        Ok(())
    }
}

sluice_guest::export_job!(BlacklistFilter);
