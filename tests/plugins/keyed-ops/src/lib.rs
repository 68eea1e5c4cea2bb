//! Test fixture: one keyed operator over `(String, i64)` streams, chosen by
//! the arguments, for the host's property tests. The sources are empty
//! queue streams: the tests hand partitions to the executor directly. With
//! `input`, they are lines files instead, so that the real binary runs the
//! operator over a deterministic input (end-to-end tests).
//!
//! # Arguments (`--arg KEY=VALUE`)
//!
//! - `input`, `other-input` (optional): UTF-8 files of `<key> <value>` lines
//!   (lines that do not parse are skipped) read as source 0 and source 1,
//!   `lines_per_batch` lines per batch (default 1): batch `i` (0-based) holds
//!   lines `i*n .. (i+1)*n`, later batches are empty.
//! - `dataset`: for `join-dataset` and `left-outer-join-dataset`, the
//!   reference dataset (`<key><TAB><i64 value>` lines) joined with source 0.
//! - `output` (required): the operator's result is saved with
//!   `save_as_text_files(output, None)`.
//! - `length`, `slide` (durations like `3s`, `500ms`; `slide` optional: the
//!   window's default, the input's slide), for the windowed operators.
//! - `timeout` (optional duration), for `map-with-state`.
//! - `filter` (optional, `nonzero`), for `reduce-window-inv` and
//!   `sum-window`.
//! - `op`:
//!   - `update-state`: `update_state_by_key` keeping the running sum of each
//!     key, removed when it is 0; named `running-sums`; `(String, i64)`.
//!   - `map-with-state`: `map_with_state` keeping the running sum `s'` of
//!     each key (removed when it is 0), mapping each value to
//!     `(key, Some(s'))` and a key timing out to `(key, None)`; timeout from
//!     `timeout`; named `mapped-sums`. Its `state_snapshots()` are saved
//!     with the prefix `<output>-snapshots`.
//!   - `window`: `window(length, slide)` of the pairs.
//!   - `reduce-window`: `reduce_by_key_and_window(+)` (a guest reducer, not
//!     incremental), named `window-sums`.
//!   - `reduce-window-inv`: `reduce_by_key_and_window_inv(+, -)`, with
//!     `filter=nonzero` a guest filter keeping the pairs whose value is not
//!     0; named `window-sums`.
//!   - `sum-window`: the built-in sum over windows, with `filter=nonzero`
//!     the built-in `nonzero` filter; named `window-sums`.
//!   - `min-window`, `max-window`: the built-in min / max over windows;
//!     named `window-sums`.
//!   - `count-by-value-window`: the keys alone, `count_by_value_and_window`;
//!     `(String, i64)`.
//!   - `count-by-window`: `count_by_window`; `i64`.
//!   - `reduce-by-window`: the values alone, `reduce_by_window(+)`; `i64`.
//!   - `join`, `left-outer-join`, `right-outer-join`, `full-outer-join`,
//!     `cogroup`: source 0 with source 1 (a second empty queue stream).
//!   - `transform`: the whole batch sorted and numbered, `(i, key, value)`:
//!     `(i64, String, i64)`.
//!   - `persist`: source 0 through a `map` that adds 1 to the long
//!     accumulator `map-calls` per record, read by two outputs: the pairs
//!     (saved to `output`) and their `count()` (saved to `<output>-count`).
//!     The map runs once per record, however many read it (Spark's
//!     `persist`).
//!   - `window-join`: `window_length(length)` of source 0 joined with
//!     `window_length(other-length)` of source 1 (the guide's windowed
//!     stream-stream join): `(String, (i64, i64))`.
//!   - `join-dataset`, `left-outer-join-dataset`: source 0 joined with the
//!     dataset: `(String, (i64, i64))`, `(String, (i64, Option<i64>))`.

use std::time::Duration;

use sluice_guest::prelude::*;

struct KeyedOps;

/// The running sum's next value, or `None` (removed) when it is 0.
fn next_sum(state: Option<i64>, values: &[i64]) -> Option<i64> {
    let s = state.unwrap_or(0) + values.iter().sum::<i64>();
    if s == 0 { None } else { Some(s) }
}

/// `<key> <value>` as a pair; `None` for a line that does not parse.
fn parse_pair(line: &str) -> Option<(String, i64)> {
    let (key, value) = line.split_once(' ')?;
    Some((key.to_string(), value.trim().parse().ok()?))
}

impl Job for KeyedOps {
    fn define(ctx: &mut StreamingContext, args: &Args) -> Result<(), String> {
        let output = args.require("output")?.to_string();
        let op = args.require("op")?;
        let filter_nonzero = match args.get("filter") {
            None => false,
            Some("nonzero") => true,
            Some(other) => {
                return Err(format!(
                    "argument `filter`: {other:?} is not a filter (nonzero)"
                ));
            }
        };
        let lines_per_batch = match args.get("lines_per_batch") {
            Some(_) => args.parse::<u32>("lines_per_batch")?,
            None => 1,
        };
        let pairs = |input: Option<&str>| -> DStream<(String, i64)> {
            match input {
                Some(path) => ctx
                    .queue_stream_from_lines_file(path, lines_per_batch)
                    .flat_map(|line: String| parse_pair(&line)),
                None => ctx.queue_stream(vec![]),
            }
        };
        let source = pairs(args.get("input"));
        let length = || args.duration("length");
        let slide = || -> Result<Option<Duration>, String> { args.duration_optional("slide") };
        let save_pairs = |s: DStream<(String, i64)>| s.save_as_text_files(output.clone(), None);
        match op {
            "update-state" => save_pairs(
                source
                    .update_state_by_key(|values: Vec<i64>, state: Option<i64>| {
                        next_sum(state, &values)
                    })
                    .name("running-sums"),
            ),
            "map-with-state" => {
                let mut spec = StateSpec::function(
                    |key: &String, value: Option<i64>, state: &mut State<i64>| match value {
                        Some(v) => {
                            let s = state.get().copied().unwrap_or(0) + v;
                            if s == 0 {
                                state.remove();
                            } else {
                                state.update(s);
                            }
                            (key.clone(), Some(s))
                        }
                        None => (key.clone(), None),
                    },
                );
                if let Some(timeout) = args.duration_optional("timeout")? {
                    spec = spec.timeout(timeout);
                }
                let mapped = source.map_with_state(spec).name("mapped-sums");
                mapped.save_as_text_files(output.clone(), None);
                mapped
                    .state_snapshots()
                    .save_as_text_files(format!("{output}-snapshots"), None);
            }
            "window" => save_pairs(source.window(length()?, slide()?)),
            "reduce-window" => save_pairs(
                source
                    .reduce_by_key_and_window(|a, b| a + b, length()?, slide()?)
                    .name("window-sums"),
            ),
            "reduce-window-inv" => {
                let (length, slide) = (length()?, slide()?);
                let windowed = if filter_nonzero {
                    source.reduce_by_key_and_window_inv_filtered(
                        |a, b| a + b,
                        |a, b| a - b,
                        |(_, v): &(String, i64)| *v != 0,
                        length,
                        slide,
                    )
                } else {
                    source.reduce_by_key_and_window_inv(|a, b| a + b, |a, b| a - b, length, slide)
                };
                save_pairs(windowed.name("window-sums"));
            }
            "sum-window" => {
                let (length, slide) = (length()?, slide()?);
                let windowed = if filter_nonzero {
                    source.sum_by_key_and_window_nonzero(length, slide)
                } else {
                    source.sum_by_key_and_window(length, slide)
                };
                save_pairs(windowed.name("window-sums"));
            }
            "min-window" => save_pairs(
                source
                    .min_by_key_and_window(length()?, slide()?)
                    .name("window-sums"),
            ),
            "max-window" => save_pairs(
                source
                    .max_by_key_and_window(length()?, slide()?)
                    .name("window-sums"),
            ),
            "count-by-value-window" => save_pairs(
                source
                    .map(|(k, _)| k)
                    .count_by_value_and_window(length()?, slide()?),
            ),
            "count-by-window" => source
                .count_by_window(length()?, slide()?)
                .save_as_text_files(output, None),
            "reduce-by-window" => source
                .map(|(_, v)| v)
                .reduce_by_window(|a, b| a + b, length()?, slide()?)
                .save_as_text_files(output, None),
            "join" | "left-outer-join" | "right-outer-join" | "full-outer-join" | "cogroup" => {
                let other = pairs(args.get("other-input"));
                match op {
                    "join" => source.join(&other).save_as_text_files(output, None),
                    "left-outer-join" => source
                        .left_outer_join(&other)
                        .save_as_text_files(output, None),
                    "right-outer-join" => source
                        .right_outer_join(&other)
                        .save_as_text_files(output, None),
                    "full-outer-join" => source
                        .full_outer_join(&other)
                        .save_as_text_files(output, None),
                    _ => source.cogroup(&other).save_as_text_files(output, None),
                }
            }
            "transform" => source
                .transform(|mut records: Vec<(String, i64)>| {
                    records.sort();
                    records
                        .into_iter()
                        .enumerate()
                        .map(|(i, (k, v))| (i as i64, k, v))
                        .collect::<Vec<_>>()
                })
                .save_as_text_files(output, None),
            "persist" => {
                let calls = ctx.long_accumulator("map-calls");
                let mapped = source.map(move |pair| {
                    calls.add(1);
                    pair
                });
                mapped
                    .count()
                    .save_as_text_files(format!("{output}-count"), None);
                save_pairs(mapped);
            }
            "window-join" => {
                let other = pairs(args.get("other-input"));
                source
                    .window_length(length()?)
                    .join(&other.window_length(args.duration("other-length")?))
                    .save_as_text_files(output, None)
            }
            "join-dataset" => source
                .join_dataset::<i64>(args.require("dataset")?)
                .save_as_text_files(output, None),
            "left-outer-join-dataset" => source
                .left_outer_join_dataset::<i64>(args.require("dataset")?)
                .save_as_text_files(output, None),
            other => return Err(format!("argument `op`: unknown operator {other:?}")),
        }
        Ok(())
    }
}

sluice_guest::export_job!(KeyedOps);

#[cfg(test)]
mod tests {
    use super::*;

    fn define(pairs: &[(&str, &str)]) -> Result<(), String> {
        let mut ctx = StreamingContext::new("KeyedOps");
        KeyedOps::define(&mut ctx, &Args::from_pairs(pairs.iter().copied()))
    }

    #[test]
    fn every_op_defines_and_an_unknown_one_is_refused() {
        for op in [
            "update-state",
            "map-with-state",
            "window",
            "reduce-window",
            "reduce-window-inv",
            "sum-window",
            "min-window",
            "max-window",
            "count-by-value-window",
            "count-by-window",
            "reduce-by-window",
            "join",
            "left-outer-join",
            "right-outer-join",
            "full-outer-join",
            "cogroup",
            "transform",
            "persist",
            "window-join",
            "join-dataset",
            "left-outer-join-dataset",
        ] {
            for filter in [None, Some("nonzero")] {
                let mut args = vec![
                    ("op", op),
                    ("output", "out"),
                    ("length", "3s"),
                    ("other-length", "2s"),
                    ("dataset", "ref.tsv"),
                ];
                args.extend(filter.map(|f| ("filter", f)));
                define(&args).unwrap_or_else(|e| panic!("{op}: {e}"));
                args.extend([("slide", "1s"), ("timeout", "500ms")]);
                define(&args).unwrap_or_else(|e| panic!("{op}: {e}"));
            }
        }
        assert_eq!(
            define(&[("op", "nope"), ("output", "o")]),
            Err("argument `op`: unknown operator \"nope\"".to_string())
        );
        assert!(
            define(&[("op", "window"), ("output", "o")]).is_err(),
            "length"
        );
        assert!(
            define(&[
                ("op", "sum-window"),
                ("output", "o"),
                ("length", "3s"),
                ("filter", "x")
            ])
            .is_err()
        );
    }
}
