//! `all-operators`: every source, operator and output of the Rust SDK in one
//! deterministic job, each result saved to its own directory so that an
//! end-to-end test can check it against an independent computation.
//!
//! # Arguments (`--arg KEY=VALUE`)
//!
//! - `input` (required): a UTF-8 text file, read by the host with
//!   `queue_stream_from_lines_file`.
//! - `lines_per_batch` (optional, default 2): lines per batch. Batch `i`
//!   (0-based) holds lines `i*n .. (i+1)*n` of the file; later batches are
//!   empty.
//! - `output` (required): a directory. Every stream below named `NAME` is
//!   saved with `save_as_text_files("<output>/NAME", None)`, i.e. one
//!   `<output>/NAME-<batch time ms>` directory per batch.
//! - `host` + `port` (optional): also read a socket; its lines go to `socket`.
//! - `directory` (optional): also watch a directory; its lines go to
//!   `text_files`.
//! - `rate` (optional, records per second): also run a rate source; the
//!   counters of its records go to `rate`.
//!
//! # Output streams
//!
//! For one batch, let `L` be its lines in file order, `W` the words
//! `line.split(' ')` of every line in `L` (exactly like Spark's `split(" ")`:
//! an empty line or two consecutive spaces give empty words), `NW` the
//! non-empty words of `W`, `len(w)` the length of `w` in UTF-8 bytes and
//! `first(w)` the first `char` of `w` as a string. The order of records
//! within a batch depends on partitioning: compare batches as multisets.
//! Streams marked *per key* have one record per distinct key of the batch.
//!
//! | directory | records of one batch |
//! |-----------|----------------------|
//! | `lines` | `L` |
//! | `map` | each line of `L` ASCII-uppercased (`str::to_ascii_uppercase`) |
//! | `flat_map` | `W` |
//! | `filter` | `NW` |
//! | `map_partitions` | `len(w)` as `i64`, for each `w` in `NW` |
//! | `repartition` | `NW` (after `repartition(3)`) |
//! | `union` | `NW` and the records of `map` |
//! | `context_union` | the records of `lines`, `map` and `filter` (`StreamingContext::union`) |
//! | `count` | one `i64`: the number of lines `|L|` |
//! | `reduce` | one string: the longest word of `NW`, ties broken by the greatest in byte order; nothing if `NW` is empty |
//! | `count_by_value` | per key: `(w, number of occurrences of w in NW)` |
//! | `reduce_by_key` | per key: `(w, number of occurrences of w in NW)`, by a `reduce_by_key(|a, b| a + b)` closure |
//! | `reduce_by_key_with_partitions` | per key: `(len(w) as i64, smallest w of that length in byte order)` over `NW`, 3 partitions |
//! | `group_by_key` | per key: `(first(w), all w of NW with that first char, sorted in byte order, duplicates kept)` |
//! | `group_by_key_with_partitions` | per key: `(w, number of occurrences of w in NW)`, 2 partitions |
//! | `map_values` | `(w, 10 * len(w) as i64)` for each `w` in `NW` |
//! | `flat_map_values` | `(w, len(w) as i64)` and `(w, -len(w) as i64)` for each `w` in `NW` |
//! | `sum_by_key` | per key: `(w, occurrences * len(w))` as `i64`, over `NW` |
//! | `sum_by_key_with_partitions` | per key: `(first(w), 0.5 * number of words of NW with that first char)` as `f64`, 2 partitions |
//! | `min_by_key` | per key: `(first(w), smallest len(w))` as `i32` |
//! | `min_by_key_with_partitions` | per key: `(first(w), smallest len(w))` as `u32`, 2 partitions |
//! | `max_by_key` | per key: `(first(w), largest len(w))` as `f64` |
//! | `max_by_key_with_partitions` | per key: `(first(w), largest len(w))` as `u64`, 2 partitions |
//! | `count_by_key` | per key: `(first(w), number of words of NW with that first char)` |
//! | `count_by_key_with_partitions` | per key: `(len(w) as i64, number of words of NW with that length)`, 2 partitions |
//! | `json` | for each line of `L`: `{"text":<line>,"words":<number of words of the line in W>}` (codec `json`) |
//! | `tuples` | for each line of `L`: `(len(line) as u32, first word of the line that is non-empty or none, whether the line is empty)` (codec `tuple<u32,option<string>,bool>`) |
//! | `queue_squares` | an inline `queue_stream` of `i64` batches `[1, 2, 3]`, `[4, 5]`, `[]`, `[6]`, squared: `[1, 4, 9]`, `[16, 25]`, `[]`, `[36]`, then nothing |
//! | `queue_pairs` | an inline `queue_stream` of `(string, i64)` batches `[("a", 1), ("b", 2), ("a", 3)]`, `[("b", 4)]` through `reduce_by_key(+)`: `[("a", 4), ("b", 2)]`, `[("b", 4)]`, then nothing |
//! | `socket` | the lines of the socket, when `host` and `port` are given |
//! | `text_files` | the lines of new files in `directory`, when given |
//! | `rate` | the counters (second element) of the rate source's records, when `rate` is given |
//!
//! Besides: `count` is also printed (`print()`), `reduce_by_key` with
//! `print_n(3)`, and a `foreach_partition` over `NW` writes one line per
//! partition (empty ones too) to the plugin's stdout,
//! `all-operators foreach_partition batch=<ms> partition=<p> records=<n>`,
//! whose `n` add up to `|NW|` for each batch.

use serde::{Deserialize, Serialize};
use sluice_guest::prelude::*;

/// The job.
pub struct AllOperators;

/// The record of the `json` stream.
#[derive(Serialize, Deserialize)]
struct LineInfo {
    text: String,
    words: u32,
}
sluice_guest::json_data!(LineInfo);

fn first(w: &str) -> String {
    w.chars().take(1).collect()
}

fn len(w: &str) -> i64 {
    w.len() as i64
}

impl Job for AllOperators {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let input = args.require("input")?;
        let lines_per_batch = args.parse_optional::<u32>("lines_per_batch")?.unwrap_or(2);
        let output = args.require("output")?.trim_end_matches('/').to_string();
        let save = move |name: &str| format!("{output}/{name}");

        let lines = ctx.queue_stream_from_lines_file(input, lines_per_batch);
        lines.save_as_text_files(save("lines"), None);

        let upper = lines.map(|l| l.to_ascii_uppercase());
        upper.save_as_text_files(save("map"), None);

        let words = lines.flat_map(|l| l.split(' ').map(String::from).collect::<Vec<_>>());
        words.save_as_text_files(save("flat_map"), None);

        let nonempty = words.filter(|w| !w.is_empty());
        nonempty.save_as_text_files(save("filter"), None);

        nonempty
            .map_partitions(|ws| ws.iter().map(|w| len(w)).collect())
            .save_as_text_files(save("map_partitions"), None);

        nonempty
            .repartition(3)
            .save_as_text_files(save("repartition"), None);

        nonempty
            .union(&upper)
            .save_as_text_files(save("union"), None);

        ctx.union(vec![lines.clone(), upper.clone(), nonempty.clone()])
            .save_as_text_files(save("context_union"), None);

        let count = lines.count();
        count.save_as_text_files(save("count"), None);
        count.print();

        nonempty
            .reduce(|a, b| {
                if (a.len(), a.as_bytes()) >= (b.len(), b.as_bytes()) {
                    a
                } else {
                    b
                }
            })
            .save_as_text_files(save("reduce"), None);

        nonempty
            .count_by_value()
            .save_as_text_files(save("count_by_value"), None);

        let ones = nonempty.map(|w| (w, 1i64));
        let word_counts = ones.reduce_by_key(|a, b| a + b);
        word_counts.save_as_text_files(save("reduce_by_key"), None);
        word_counts.print_n(3);

        nonempty
            .map(|w| (len(&w), w))
            .reduce_by_key_with_partitions(|a, b| a.min(b), 3)
            .save_as_text_files(save("reduce_by_key_with_partitions"), None);

        let by_first = nonempty.map(|w| (first(&w), w));
        by_first
            .group_by_key()
            .map_values(|mut ws| {
                ws.sort();
                ws
            })
            .save_as_text_files(save("group_by_key"), None);

        ones.group_by_key_with_partitions(2)
            .map_values(|ones| ones.len() as i64)
            .save_as_text_files(save("group_by_key_with_partitions"), None);

        let lengths = nonempty.map(|w| {
            let n = len(&w);
            (w, n)
        });
        lengths
            .map_values(|n| 10 * n)
            .save_as_text_files(save("map_values"), None);
        lengths
            .flat_map_values(|n| [n, -n])
            .save_as_text_files(save("flat_map_values"), None);
        lengths
            .sum_by_key()
            .save_as_text_files(save("sum_by_key"), None);

        nonempty
            .map(|w| (first(&w), 0.5f64))
            .sum_by_key_with_partitions(2)
            .save_as_text_files(save("sum_by_key_with_partitions"), None);
        nonempty
            .map(|w| (first(&w), w.len() as i32))
            .min_by_key()
            .save_as_text_files(save("min_by_key"), None);
        nonempty
            .map(|w| (first(&w), w.len() as u32))
            .min_by_key_with_partitions(2)
            .save_as_text_files(save("min_by_key_with_partitions"), None);
        nonempty
            .map(|w| (first(&w), w.len() as f64))
            .max_by_key()
            .save_as_text_files(save("max_by_key"), None);
        nonempty
            .map(|w| (first(&w), w.len() as u64))
            .max_by_key_with_partitions(2)
            .save_as_text_files(save("max_by_key_with_partitions"), None);
        by_first
            .count_by_key()
            .save_as_text_files(save("count_by_key"), None);
        nonempty
            .map(|w| (len(&w), ()))
            .count_by_key_with_partitions(2)
            .save_as_text_files(save("count_by_key_with_partitions"), None);

        lines
            .map(|l| {
                let words = l.split(' ').count() as u32;
                LineInfo { text: l, words }
            })
            .save_as_text_files(save("json"), None);
        lines
            .map(|l| {
                let first_word = l.split(' ').find(|w| !w.is_empty()).map(String::from);
                (l.len() as u32, first_word, l.is_empty())
            })
            .save_as_text_files(save("tuples"), None);

        ctx.queue_stream(vec![vec![1i64, 2, 3], vec![4, 5], vec![], vec![6]])
            .map(|x| x * x)
            .save_as_text_files(save("queue_squares"), None);
        let pairs = |batch: &[(&str, i64)]| -> Vec<(String, i64)> {
            batch.iter().map(|&(k, v)| (k.to_string(), v)).collect()
        };
        ctx.queue_stream(vec![
            pairs(&[("a", 1), ("b", 2), ("a", 3)]),
            pairs(&[("b", 4)]),
        ])
        .reduce_by_key(|a, b| a + b)
        .save_as_text_files(save("queue_pairs"), None);

        nonempty.foreach_partition(|key, records| {
            println!(
                "all-operators foreach_partition batch={} partition={} key={key} records={}",
                key.batch_time_ms,
                key.partition,
                records.len()
            );
            Ok(())
        });

        if let (Some(host), Some(port)) = (args.get("host"), args.parse_optional::<u16>("port")?) {
            ctx.socket_text_stream(host, port)
                .save_as_text_files(save("socket"), None);
        }
        if let Some(directory) = args.get("directory") {
            ctx.text_file_stream(directory)
                .save_as_text_files(save("text_files"), None);
        }
        if let Some(rate) = args.parse_optional::<u64>("rate")? {
            ctx.rate_stream(rate)
                .map(|(_, counter)| counter)
                .save_as_text_files(save("rate"), None);
        }
        Ok(())
    }
}

sluice_guest::export_job!(AllOperators);
