//! Test fixture: one keyed operator over `(String, i64)` streams, chosen by
//! the arguments, for the host's property tests. The sources are empty
//! queue streams: the tests hand partitions to the executor directly.
//!
//! # Arguments (`--arg KEY=VALUE`)
//!
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

use std::time::Duration;

use sluice_guest::prelude::*;

struct KeyedOps;

/// The running sum's next value, or `None` (removed) when it is 0.
fn next_sum(state: Option<i64>, values: &[i64]) -> Option<i64> {
    let s = state.unwrap_or(0) + values.iter().sum::<i64>();
    if s == 0 { None } else { Some(s) }
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
        let source: DStream<(String, i64)> = ctx.queue_stream(vec![]);
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
                let other: DStream<(String, i64)> = ctx.queue_stream(vec![]);
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
            other => return Err(format!("argument `op`: unknown operator {other:?}")),
        }
        Ok(())
    }
}

sluice_guest::export_job!(KeyedOps);
