//! The conformance suite's jobs in Rust: the reference every SDK's
//! conformance plugin matches (`tests/conformance/README.md` lists the jobs
//! and their arguments; `conformance-py` and `conformance-js` are the same
//! jobs in Python and JavaScript).
//!
//! `--arg job=NAME --arg input=FILE --arg per=N --arg output=PREFIX`, plus
//! `input2` for `join` and `window-ms`/`slide-ms` for `windowed-wordcount`.

use std::time::Duration;

use sluice_guest::prelude::*;

/// The job.
pub struct Conformance;

/// A line's words: split on single spaces, as Spark's `split(" ")`.
fn words(line: String) -> Vec<String> {
    line.split(' ').map(String::from).collect()
}

/// `(word, 1)` for each word of each line of `FILE`, `per` lines a batch.
fn pairs(
    ctx: &StreamingContext,
    args: &Args,
    input: &str,
) -> Result<DStream<(String, i64)>, String> {
    let lines = ctx.queue_stream_from_lines_file(args.require(input)?, args.parse::<u32>("per")?);
    Ok(lines.flat_map(words).map(|w| (w, 1i64)))
}

impl Job for Conformance {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let output = args.require("output")?.to_string();
        let result = match args.require("job")? {
            "wordcount-closure" => pairs(ctx, args, "input")?.reduce_by_key(|a, b| a + b),
            "wordcount-sum" => pairs(ctx, args, "input")?.sum_by_key(),
            "windowed-wordcount" => {
                let window = Duration::from_millis(args.parse::<u64>("window-ms")?);
                let slide = Duration::from_millis(args.parse::<u64>("slide-ms")?);
                pairs(ctx, args, "input")?.reduce_by_key_and_window_inv_filtered(
                    |a, b| a + b,
                    |a, b| a - b,
                    |(_, count)| *count > 0,
                    window,
                    Some(slide),
                )
            }
            "stateful-wordcount" => pairs(ctx, args, "input")?
                .update_state_by_key(|values: Vec<i64>, state: Option<i64>| {
                    Some(values.iter().sum::<i64>() + state.unwrap_or(0))
                })
                .name("running-counts"),
            "join" => {
                let left = pairs(ctx, args, "input")?.sum_by_key();
                let right = pairs(ctx, args, "input2")?.sum_by_key();
                let joined = left.join(&right);
                joined.save_as_text_files(output, None);
                return Ok(());
            }
            "foreach-partition" => {
                let records = ctx.long_accumulator("fp-records");
                let words = ctx.long_accumulator("fp-words");
                pairs(ctx, args, "input")?
                    .reduce_by_key(|a, b| a + b)
                    .foreach_partition(move |key, counts| {
                        records.add(counts.len() as i64);
                        words.add(counts.iter().map(|(_, n)| n).sum());
                        println!(
                            "fp {} {} {}",
                            key.batch_time_ms,
                            key.partition,
                            counts.len()
                        );
                        Ok(())
                    });
                return Ok(());
            }
            "failing" => {
                let lines = ctx.queue_stream_from_lines_file(
                    args.require("input")?,
                    args.parse::<u32>("per")?,
                );
                lines
                    .flat_map(words)
                    .map(|w| {
                        if w == "boom" {
                            panic!("conformance failure on word {w}");
                        }
                        (w, 1i64)
                    })
                    .sum_by_key()
            }
            other => return Err(format!("argument `job`: unknown job {other:?}")),
        };
        result.save_as_text_files(output, None);
        Ok(())
    }
}

sluice_guest::export_job!(Conformance);
