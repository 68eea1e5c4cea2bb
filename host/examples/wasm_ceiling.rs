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

use std::path::PathBuf;
use std::time::Instant;

use clap::Parser;
use clap::builder::RangedU64ValueParser;
use sluice::data::Rows;
use sluice::wasm::{Runtime, WasmConfig};
use sluice_bench::words::WordCounter;
use wasmtime::{Config, Engine, Instance, Linker, Memory, Module, Store, TypedFunc};

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

/// Seconds a word, for each round.
#[derive(Default)]
struct Times(Vec<f64>);

impl Times {
    fn add(&mut self, started: Instant, words: u64) {
        self.0.push(started.elapsed().as_secs_f64() / words as f64);
    }

    /// Minimum and median, ns a word.
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
    let runtime = Runtime::new(WasmConfig::default())?;
    let mut plugins = Vec::new();
    for path in &args.plugin {
        let mut instance = runtime.load(path)?.instantiate("wasm-ceiling")?;
        let graph = instance.define(&[
            ("host".into(), "localhost".into()),
            ("port".into(), "9999".into()),
        ])?;
        let stages = chain_of(&graph);
        plugins.push((path, instance, stages, Times::default()));
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
        for (path, instance, stages, times) in &mut plugins {
            let started = Instant::now();
            let out = instance.run_chain(stages, &mut block.rows)?;
            times.add(started, words);
            let got = out.len() as u64;
            anyhow::ensure!(
                got == distinct,
                "{}: {got} keys out, not {distinct}",
                path.display()
            );
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
    let name = |path: &PathBuf| {
        path.file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned()
    };
    for (path, epoch_check, _, times) in &mut counters {
        let check = if *epoch_check { "on" } else { "off" };
        row(
            &format!(
                "the same code as Wasm (`{}`), epoch check {check}",
                name(path)
            ),
            times.summary(),
        );
    }
    for (path, _, _, times) in &mut plugins {
        row(
            &format!("Sluice chain of `{}`", name(path)),
            times.summary(),
        );
    }
    Ok(())
}
