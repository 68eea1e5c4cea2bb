//! Windowed reduces, per batch: the incremental forms (the built-in `sum`, a
//! user reducer with its inverse) against the same operator over a 1 s
//! window, and against the non-incremental form (a user reducer without an
//! inverse, which re-reduces every batch of the window).
//!
//! The executor runs the `keyed-ops` fixture's windowed operators over 60
//! batches (1 s apart) of 200,000 `(key, 1)` pairs each, keys drawn
//! uniformly from 50,000: every batch holds almost every key (about 49,000),
//! so a batch's partial is large, the output (the window's keys) is about
//! the same size for every window length, and what differs is the window's
//! own work. The time of batches 36 to 60 is
//! reported: by then, with a 30 s window, a batch's data enters and an old
//! batch's leaves at every slide.
//!
//! `cargo bench -p sluice --bench window` (a plain `main`, not criterion: one
//! run of 60 batches is the measurement).

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use sluice::batching::BatchTime;
use sluice::data::codec::{pair_len, write_pair};
use sluice::data::{KeyGroups, Rows};
use sluice::exec::{Datasets, Executor, Workers, WorkersConfig};
use sluice::plan::{Plan, validate};
use sluice::sinks::Sinks;
use sluice::wasm::{Runtime, WasmConfig};

const BATCHES: u64 = 60;
const MEASURED_FROM: u64 = 36;
const PAIRS: usize = 200_000;
const KEYS: u64 = 50_000;

/// The pairs of batch `b`, in 4 partitions.
fn batch(b: u64) -> Vec<Rows> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64 ^ b;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let one = 1i64.to_le_bytes();
    (0..4)
        .map(|_| {
            let mut rows = Rows::new();
            for _ in 0..PAIRS / 4 {
                let key = format!("key{}", next() % KEYS);
                rows.try_push_with(pair_len(key.as_bytes(), 8), |out| {
                    write_pair(key.as_bytes(), &one, out)
                })
                .expect("small");
            }
            rows
        })
        .collect()
}

/// Mean time per batch of `op` over batches `MEASURED_FROM..BATCHES`.
fn measure(runtime: &Runtime, op: &str, length: &str, inputs: &[Vec<Rows>]) -> Duration {
    let dir = tempfile::tempdir().expect("a temp dir");
    let plugin = runtime
        .load(Path::new(sluice_test_artifacts::KEYED_OPS))
        .expect("the keyed-ops fixture");
    let args: Vec<(String, String)> = [
        ("op", op),
        ("length", length),
        ("slide", "1s"),
        ("output", dir.path().join("out").to_str().expect("UTF-8")),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let graph = plugin
        .instantiate("bench")
        .expect("an instance")
        .define(&args)
        .expect("define");
    let groups = KeyGroups::default();
    let interval = Duration::from_secs(1);
    let validated = validate(&graph, interval, Duration::from_millis(250), groups).expect("valid");
    let source = graph
        .nodes
        .iter()
        .position(|n| n.inputs.is_empty())
        .expect("a source");
    let plan = Plan::new(&graph, validated, groups, interval);
    let workers = Workers::new(
        plugin,
        graph,
        args,
        WorkersConfig {
            threads: 2,
            retries: 0,
            recycle: sluice::exec::Recycle {
                after_calls: None,
                growth_above: 32 << 20,
            },
            log: None,
        },
    )
    .expect("workers");
    let io = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("tokio");
    let executor = std::sync::Arc::new(Executor::new(
        plan,
        workers,
        Sinks::new(io.handle().clone()),
        Datasets::new(io.handle().clone(), Default::default()),
    ));
    let mut measured = Duration::ZERO;
    for b in 1..=BATCHES {
        let sources = HashMap::from([(source, inputs[(b - 1) as usize].clone())]);
        let started = Instant::now();
        executor
            .run_batch(BatchTime(b * 1000), sources)
            .unwrap_or_else(|e| panic!("{op} over {length}: {e}"));
        if b >= MEASURED_FROM {
            measured += started.elapsed();
        }
    }
    executor.shutdown();
    measured / (BATCHES - MEASURED_FROM + 1) as u32
}

fn main() {
    // `cargo bench` passes `--bench`; a filter selects operators by name.
    let filter = std::env::args().skip(1).find(|a| !a.starts_with("--"));
    let runtime = Runtime::new(WasmConfig::default()).expect("an engine");
    let inputs: Vec<Vec<Rows>> = (1..=BATCHES).map(batch).collect();
    println!(
        "{BATCHES} batches of {PAIRS} pairs over {KEYS} keys, 1 s slide; mean time per batch over batches {MEASURED_FROM}..{BATCHES}:"
    );
    for (op, what) in [
        ("sum-window", "built-in sum (incremental, native)"),
        (
            "reduce-window-inv",
            "user reducer with inverse (incremental)",
        ),
        ("reduce-window", "user reducer, no inverse (recomputed)"),
    ] {
        if filter.as_deref().is_some_and(|f| !op.contains(f)) {
            continue;
        }
        let one = measure(&runtime, op, "1s", &inputs);
        let thirty = measure(&runtime, op, "30s", &inputs);
        println!(
            "  {op:18} {what:42} 1 s window {:>8.1} ms   30 s window {:>8.1} ms   ×{:.2}",
            one.as_secs_f64() * 1e3,
            thirty.as_secs_f64() * 1e3,
            thirty.as_secs_f64() / one.as_secs_f64()
        );
    }
}
