//! What the sandbox costs, apart from what Sluice costs: the native
//! baseline's hand-tuned word counter (`sluice-bench`'s `WordCounter`) run
//! natively and as a core Wasm module (`bench/wasm-counter`) in wasmtime,
//! beside a Sluice plugin's chain (`run_chain`: split, pairs, combine), over
//! the same blocks of the benchmark corpus. `bench/wasm-ceiling` builds the
//! module and the plugin and runs this; see `bench/README.md`.
//!
//! Each round takes the next block and times every configuration on it in
//! turn, so that the machine's drift falls on all of them alike. Every count
//! is checked: the words against a plain split of the block, the distinct
//! words of the module and of the plugin's output against the native
//! counter's.
//!
//! A second table gives, for each plugin, what the rest of its early work
//! costs: a merge of its chain's last four outputs as the executor merges
//! them (the merged keys checked against the outputs' distinct keys, their
//! counts against the blocks' words), a call apart from its work (a call
//! over a few lines), and an instantiation. With `--engine`, the plugins run in engines with other
//! wasmtime settings beside Sluice's own ([`Setting`]).

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::time::Instant;

use clap::builder::RangedU64ValueParser;
use clap::{Parser, ValueEnum};
use sluice::data::Rows;
use sluice::data::codec::split_pair;
use sluice::exec::shuffle::combine_in_pieces;
use sluice::exec::{COMBINE_INPUT_BYTES, MERGE_FAN_IN as MERGED};
use sluice::plan::Stage;
use sluice::wasm::{Plugin, Runtime, WasmConfig};
use sluice_bench::words::WordCounter;
use wasmtime::{
    Config, Engine, Instance, InstanceAllocationStrategy, Linker, Memory, Module, OptLevel,
    PoolingAllocationConfig, Store, TypedFunc,
};

// The benchmarks' helpers, of which this uses only `chain_of`.
#[path = "../benches/common/mod.rs"]
#[allow(dead_code)]
mod common;

use common::chain_of;

#[derive(Parser)]
struct Args {
    /// The counter module (`bench/wasm-counter`, built for wasm32); more
    /// than one are timed side by side.
    #[arg(long, required = true)]
    counter: Vec<PathBuf>,
    /// A word count plugin whose chain to time (`network-word-count`);
    /// more than one are timed side by side.
    #[arg(long, required = true)]
    plugin: Vec<PathBuf>,
    /// Rounds (one block each, the blocks in turn).
    #[arg(long, default_value_t = 200, value_parser = at_least_one())]
    rounds: usize,
    /// Distinct blocks.
    #[arg(long, default_value_t = 10, value_parser = at_least_one())]
    blocks: usize,
    /// Most bytes of text (lines and their newlines) in a block: the 4 MiB a
    /// receiver cuts at full speed. At least one corpus line.
    #[arg(long, default_value_t = 4 << 20, value_parser = at_least_one())]
    block_bytes: usize,
    /// The engines to run the plugins in (default: Sluice's only); more
    /// than one are timed side by side.
    #[arg(long, value_enum)]
    engine: Vec<Setting>,
}

/// An engine to run the plugins in: Sluice's, or Sluice's with one wasmtime
/// setting changed. The settings that a call's work or its fixed cost
/// depend on: the epoch check, the memory's reservation and guard region
/// (whether accesses are bounds-checked), the instance allocator, and
/// Cranelift's optimisation level.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Setting {
    /// Sluice's engine, as `sluice run` makes it.
    Sluice,
    /// Without the epoch check: no time limit (measurement only).
    NoEpochCheck,
    /// The pooling instance allocator instead of the on-demand one.
    Pooling,
    /// No guard region after the 4 GiB reservation: accesses with an
    /// offset are bounds-checked.
    NoGuard,
    /// Nothing reserved, no guard region: every access is bounds-checked
    /// (with the Spectre mitigation of the checks, wasmtime's default).
    BoundsChecked,
    /// Every access bounds-checked, without the Spectre mitigation.
    BoundsCheckedNoSpectre,
    /// Cranelift optimising for speed and size rather than speed.
    SpeedAndSize,
}

impl Setting {
    fn name(self) -> String {
        self.to_possible_value()
            .expect("no variant is skipped")
            .get_name()
            .to_string()
    }

    /// Changes Sluice's wasmtime `Config` to this setting.
    #[allow(unsafe_code)]
    fn apply(self, config: &mut Config) {
        match self {
            Setting::Sluice => {}
            Setting::NoEpochCheck => {
                config.epoch_interruption(false);
            }
            Setting::Pooling => {
                let mut pool = PoolingAllocationConfig::default();
                pool.total_component_instances(16)
                    .total_core_instances(64)
                    .total_memories(64)
                    .total_tables(64)
                    .total_stacks(16)
                    .max_memory_size(WasmConfig::default().memory_limit);
                config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
            }
            Setting::NoGuard => {
                config.memory_guard_size(0);
            }
            Setting::BoundsChecked => {
                config.memory_reservation(0).memory_guard_size(0);
            }
            Setting::BoundsCheckedNoSpectre => {
                config.memory_reservation(0).memory_guard_size(0);
                // SAFETY: a Cranelift setting that the engine accepts; it
                // only removes a mitigation (measurement only).
                unsafe {
                    config.cranelift_flag_set("enable_heap_access_spectre_mitigation", "false");
                }
            }
            Setting::SpeedAndSize => {
                config.cranelift_opt_level(OptLevel::SpeedAndSize);
            }
        }
    }
}

/// A count of at least one.
fn at_least_one() -> RangedU64ValueParser<usize> {
    RangedU64ValueParser::new().range(1..)
}

/// The counter module, instantiated in an engine of its own.
struct Counter {
    store: Store<()>,
    memory: Memory,
    count: TypedFunc<(u32, u32), u64>,
    distinct: TypedFunc<(), u64>,
    buffer: u32,
}

impl Counter {
    /// The module at `path` with the time limit's epoch check compiled in
    /// (as Sluice's engine does) or not, and room for `max` bytes of text.
    fn new(path: &PathBuf, epoch_check: bool, max: usize) -> anyhow::Result<Self> {
        let mut config = Config::new();
        config
            .epoch_interruption(epoch_check)
            .wasm_wide_arithmetic(true);
        let engine = Engine::new(&config)?;
        let module = Module::from_file(&engine, path)?;
        let mut store = Store::new(&engine, ());
        if epoch_check {
            // Never reached: the check runs, the deadline never passes.
            store.set_epoch_deadline(u64::MAX / 2);
        }
        // The module's imports are WASI's, for `std` (a panic's message):
        // counting never calls them, so they trap if called.
        let mut linker = Linker::new(&engine);
        linker.define_unknown_imports_as_traps(&module)?;
        let instance: Instance = linker.instantiate(&mut store, &module)?;
        let memory = instance
            .get_memory(&mut store, "memory")
            .ok_or_else(|| anyhow::anyhow!("the counter module exports no memory"))?;
        // The module's delimiter kernel is Wasm SIMD, which no native test
        // runs: checked against a byte loop before anything is timed.
        let blocks = 10_000;
        let failed = instance
            .get_typed_func::<u32, u32>(&mut store, "check_masks")?
            .call(&mut store, blocks)?;
        anyhow::ensure!(
            failed == 0,
            "{}: the delimiter kernel differs from a byte loop on {failed} of {blocks} blocks",
            path.display()
        );
        let buffer = instance
            .get_typed_func::<u32, u32>(&mut store, "buffer")?
            .call(&mut store, u32::try_from(max)?)?;
        Ok(Self {
            count: instance.get_typed_func(&mut store, "count")?,
            distinct: instance.get_typed_func(&mut store, "distinct")?,
            store,
            memory,
            buffer,
        })
    }

    /// Copies `text` into the module's memory and counts its words.
    fn count(&mut self, text: &[u8]) -> anyhow::Result<u64> {
        let at = self.buffer as usize;
        self.memory.data_mut(&mut self.store)[at..at + text.len()].copy_from_slice(text);
        let len = u32::try_from(text.len())?;
        Ok(self.count.call(&mut self.store, (self.buffer, len))?)
    }

    fn distinct(&mut self) -> anyhow::Result<u64> {
        Ok(self.distinct.call(&mut self.store, ())?)
    }
}

/// A block: its text (lines with their newlines) and the same lines as rows.
struct Block {
    text: Vec<u8>,
    rows: Rows,
    words: u64,
}

/// `args.blocks` blocks of whole lines of the corpus.
fn blocks(args: &Args) -> anyhow::Result<Vec<Block>> {
    // About 60 bytes a line; a few more lines than the blocks need.
    let lines = args.blocks * args.block_bytes / 50 + 1000;
    let corpus = sluice_corpus::generate(lines, sluice_corpus::DEFAULT_SEED);
    let mut blocks = Vec::new();
    let mut block = Block {
        text: Vec::new(),
        rows: Rows::new(),
        words: 0,
    };
    for line in corpus.split_inclusive(|&b| b == b'\n') {
        anyhow::ensure!(
            line.len() <= args.block_bytes,
            "--block-bytes {}: a corpus line has {} bytes, more than a block holds",
            args.block_bytes,
            line.len()
        );
        if block.text.len() + line.len() > args.block_bytes {
            blocks.push(std::mem::replace(
                &mut block,
                Block {
                    text: Vec::new(),
                    rows: Rows::new(),
                    words: 0,
                },
            ));
            if blocks.len() == args.blocks {
                break;
            }
        }
        let bare = line.strip_suffix(b"\n").unwrap_or(line);
        block.text.extend_from_slice(line);
        block.rows.push(bare);
        block.words += bare.split(|&b| b == b' ').count() as u64;
    }
    // The corpus is sized for the blocks with room to spare: a shortfall is
    // this tool's bug, not a smaller run to report as if it were whole.
    anyhow::ensure!(
        blocks.len() == args.blocks,
        "the corpus of {lines} lines filled {} of {} blocks of {} bytes",
        blocks.len(),
        args.blocks,
        args.block_bytes
    );
    Ok(blocks)
}

/// Calls over [`FEW_LINES`] lines a round, a plugin's fixed cost per call.
const CALLS: u64 = 20;
/// The lines of a call that measures a call's fixed cost.
const FEW_LINES: usize = 10;
/// Instances made and dropped a round.
const INSTANTIATIONS: u64 = 5;

/// The last outputs merged as the executor merges them: by the chain's
/// combine, in key-disjoint pieces.
fn merge(
    instance: &mut sluice::wasm::Instance,
    stages: &[Stage],
    outputs: &VecDeque<(Rows, u64)>,
) -> anyhow::Result<Rows> {
    let combine = [*stages
        .last()
        .ok_or_else(|| anyhow::anyhow!("the plugin's graph has no chain"))?];
    anyhow::ensure!(
        matches!(combine[0], Stage::Combine(_)),
        "the plugin's chain does not end in a combine"
    );
    let inputs = outputs.iter().map(|(rows, _)| rows);
    Ok(combine_in_pieces(inputs, COMBINE_INPUT_BYTES, |piece| {
        instance.run_chain(&combine, piece)
    })?)
}

/// The sum of the counts of word count pairs (`tuple<string, s64>`).
fn counts(pairs: &Rows) -> anyhow::Result<u64> {
    pairs.iter().try_fold(0u64, |sum, pair| {
        let count = split_pair(pair)
            .and_then(|(_, value)| Some(i64::from_le_bytes(value.try_into().ok()?)))
            .ok_or_else(|| anyhow::anyhow!("a pair that is not (string, s64)"))?;
        let count = u64::try_from(count).map_err(|_| anyhow::anyhow!("a count of {count}"))?;
        Ok(sum + count)
    })
}

/// A plugin in an engine, and its times.
struct Timed {
    name: String,
    plugin: Plugin,
    instance: sluice::wasm::Instance,
    stages: Vec<Stage>,
    /// Seconds a word over the blocks.
    words: Times,
    /// Seconds a call over a few lines.
    calls: Times,
    /// Seconds an instantiation.
    instantiations: Times,
    /// The last outputs of the chain, for a merge, with their blocks'
    /// words.
    outputs: VecDeque<(Rows, u64)>,
    /// Seconds a pair of the merges' input.
    merges: Times,
}

fn file_name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

/// Seconds a unit (a word, a call), for each round.
#[derive(Default)]
struct Times(Vec<f64>);

impl Times {
    fn add(&mut self, started: Instant, units: u64) {
        self.0.push(started.elapsed().as_secs_f64() / units as f64);
    }

    /// Minimum and median, ns a unit.
    fn summary(&mut self) -> (f64, f64) {
        self.0.sort_by(f64::total_cmp);
        (self.0[0] * 1e9, self.0[self.0.len() / 2] * 1e9)
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let blocks = blocks(&args)?;
    let max = blocks.iter().map(|b| b.text.len()).max().unwrap_or(0);
    let mut native: WordCounter = WordCounter::with_capacity(100_000);
    let mut counters = Vec::new();
    for path in &args.counter {
        for epoch_check in [true, false] {
            let counter = Counter::new(path, epoch_check, max)?;
            counters.push((path, epoch_check, counter, Times::default()));
        }
    }
    let settings = if args.engine.is_empty() {
        vec![Setting::Sluice]
    } else {
        args.engine.clone()
    };
    let mut plugins = Vec::new();
    for &setting in &settings {
        let runtime =
            Runtime::with_engine_settings(WasmConfig::default(), |config| setting.apply(config))?;
        for path in &args.plugin {
            let plugin = runtime.load(path)?;
            let mut instance = plugin.instantiate("wasm-ceiling")?;
            let graph = instance.define(&[
                ("host".into(), "localhost".into()),
                ("port".into(), "9999".into()),
            ])?;
            let stages = chain_of(&graph);
            let name = if settings.len() == 1 && setting == Setting::Sluice {
                format!("`{}`", file_name(path))
            } else {
                format!("`{}`, engine `{}`", file_name(path), setting.name())
            };
            plugins.push(Timed {
                name,
                plugin,
                instance,
                stages,
                words: Times::default(),
                calls: Times::default(),
                instantiations: Times::default(),
                outputs: VecDeque::new(),
                merges: Times::default(),
            });
        }
    }
    let mut native_times = Times::default();
    let mut blocks = blocks;
    for round in 0..args.rounds {
        let index = round % blocks.len();
        let block = &mut blocks[index];
        let words = block.words;

        let started = Instant::now();
        native.clear();
        let counted = native.count(&block.text).words;
        native_times.add(started, words);
        anyhow::ensure!(counted == words, "native: {counted} words, not {words}");
        let distinct = native.len() as u64;

        for (path, epoch_check, counter, times) in &mut counters {
            let started = Instant::now();
            let counted = counter.count(&block.text)?;
            times.add(started, words);
            let name = format!("{} (epoch check {epoch_check})", path.display());
            anyhow::ensure!(counted == words, "{name}: {counted} words, not {words}");
            let got = counter.distinct()?;
            anyhow::ensure!(got == distinct, "{name}: {got} distinct, not {distinct}");
        }

        // Each round starts with another plugin, so that none always runs
        // right after the counters (whose tables evict the caches).
        let first = round % plugins.len();
        plugins.rotate_left(first);
        for timed in &mut plugins {
            let started = Instant::now();
            let out = timed.instance.run_chain(&timed.stages, &mut block.rows)?;
            timed.words.add(started, words);
            let got = out.len() as u64;
            anyhow::ensure!(
                got == distinct,
                "{}: {got} keys out, not {distinct}",
                timed.name
            );
            // What a call costs apart from its work: calls over a few lines.
            let mut few: Rows = block.rows.iter().take(FEW_LINES).collect();
            let started = Instant::now();
            for _ in 0..CALLS {
                let out = timed.instance.run_chain(&timed.stages, &mut few)?;
                anyhow::ensure!(!out.is_empty(), "{}: no keys out of a call", timed.name);
            }
            timed.calls.add(started, CALLS);
            let started = Instant::now();
            for _ in 0..INSTANTIATIONS {
                drop(timed.plugin.instantiate("wasm-ceiling")?);
            }
            timed.instantiations.add(started, INSTANTIATIONS);
            // A merge of the last outputs, as the executor merges them.
            let sum = counts(&out)?;
            anyhow::ensure!(
                sum == words,
                "{}: the counts out sum to {sum}, not {words}",
                timed.name
            );
            timed.outputs.push_back((out, words));
            if timed.outputs.len() > MERGED {
                timed.outputs.pop_front();
            }
            if timed.outputs.len() == MERGED {
                let pairs: usize = timed.outputs.iter().map(|(rows, _)| rows.len()).sum();
                let started = Instant::now();
                let merged = merge(&mut timed.instance, &timed.stages, &timed.outputs)?;
                timed.merges.add(started, pairs as u64);
                let keys = merged.len();
                let sum = counts(&merged)?;
                let distinct: HashSet<&[u8]> = timed
                    .outputs
                    .iter()
                    .flat_map(|(rows, _)| rows.iter())
                    .filter_map(|pair| split_pair(pair).map(|(key, _)| key))
                    .collect();
                let words: u64 = timed.outputs.iter().map(|(_, words)| words).sum();
                anyhow::ensure!(
                    keys == distinct.len() && sum == words,
                    "{}: a merge of {MERGED} outputs gave {keys} keys counting {sum} words, \
                     not {} keys counting {words}",
                    timed.name,
                    distinct.len()
                );
            }
        }
        plugins.rotate_right(first);
    }

    let words: u64 = blocks.iter().map(|b| b.words).sum();
    println!(
        "{} rounds over {} blocks of up to {} bytes ({:.0} words a block on average)\n",
        args.rounds,
        blocks.len(),
        args.block_bytes,
        words as f64 / blocks.len() as f64
    );
    println!("| configuration | ns a word, min | ns a word, median | min × native |");
    println!("|---|---:|---:|---:|");
    let (native_min, native_median) = native_times.summary();
    let row = |name: &str, (min, median): (f64, f64)| {
        println!(
            "| {name} | {min:.1} | {median:.1} | ×{:.2} |",
            min / native_min
        );
    };
    row(
        "native `WordCounter` (prefetch on x86_64)",
        (native_min, native_median),
    );
    for (path, epoch_check, _, times) in &mut counters {
        let check = if *epoch_check { "on" } else { "off" };
        row(
            &format!(
                "the same code as Wasm (`{}`), epoch check {check}",
                file_name(path)
            ),
            times.summary(),
        );
    }
    for timed in &mut plugins {
        row(
            &format!("Sluice chain of {}", timed.name),
            timed.words.summary(),
        );
    }
    println!(
        "\n| plugin | ns a pair, merges of {MERGED} outputs, min / median | µs a call over {FEW_LINES} lines, min / median | µs an instantiation, min / median |"
    );
    println!("|---|---:|---:|---:|");
    for timed in &mut plugins {
        let merges = if timed.merges.0.is_empty() {
            format!("(none: fewer than {MERGED} rounds)")
        } else {
            let (min, median) = timed.merges.summary();
            format!("{min:.1} / {median:.1}")
        };
        let (call_min, call_median) = timed.calls.summary();
        let (new_min, new_median) = timed.instantiations.summary();
        println!(
            "| {} | {merges} | {:.1} / {:.1} | {:.1} / {:.1} |",
            timed.name,
            call_min / 1e3,
            call_median / 1e3,
            new_min / 1e3,
            new_median / 1e3
        );
    }
    Ok(())
}
