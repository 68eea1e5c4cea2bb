//! One guest call per partition: the network word count's fused chain over
//! a partition of 10,000 lines (and over a 4 MiB block of the benchmark
//! corpus, the size a receiver cuts at full speed, whose 40-45 k distinct
//! words make a combine table of about 1.5 MiB), with the words borrowed
//! from the lines (`flat_map_str → combine`, the plugin's default) and as a
//! `String` each (`flat_map → map → combine`, `words=owned`); the merge of
//! four such chains' outputs (the combine alone, as early chains' outputs
//! are merged); and the bare cost of a call on an empty partition.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::data::Rows;
use sluice::wasm::{Runtime, WasmConfig};

mod common;

use common::chain_of;

/// The lines of the benchmark corpus (`sluice-corpus`, as `bench/run`
/// serves it) that fill `bytes`.
fn corpus_block(bytes: usize) -> Rows {
    let corpus = sluice_corpus::generate(bytes / 50, sluice_corpus::DEFAULT_SEED);
    let mut rows = Rows::new();
    for line in corpus.split(|&b| b == b'\n') {
        if rows.byte_len() + line.len() > bytes {
            break;
        }
        rows.push(line);
    }
    rows
}

fn guest_call(c: &mut Criterion) {
    let runtime = Runtime::new(WasmConfig::default()).expect("an engine");
    let plugin = runtime
        .load(std::path::Path::new(
            sluice_test_artifacts::NETWORK_WORD_COUNT,
        ))
        .expect("the word count plugin");
    let mut lines = common::lines(10_000);
    let words: usize = lines.iter().map(|l| l.split(|&b| b == b' ').count()).sum();

    let mut group = c.benchmark_group("guest_call");
    group.throughput(Throughput::Elements(words as u64));
    for variant in ["borrowed", "owned"] {
        let mut instance = plugin.instantiate("bench").expect("an instance");
        let graph = instance
            .define(&[
                ("host".into(), "localhost".into()),
                ("port".into(), "9".into()),
                ("words".into(), variant.into()),
            ])
            .expect("define");
        let stages = chain_of(&graph);
        group.bench_function(
            format!("word count chain, {variant} words, 10k lines"),
            |b| {
                b.iter(|| {
                    instance
                        .run_chain(&stages, &mut lines)
                        .expect("the chain runs")
                })
            },
        );
        if variant == "owned" {
            continue;
        }
        let mut block = corpus_block(4 << 20);
        let block_words: usize = block.iter().map(|l| l.split(|&b| b == b' ').count()).sum();
        group.throughput(Throughput::Elements(block_words as u64));
        group.bench_function(
            "word count chain, borrowed words, 4 MiB corpus block",
            |b| {
                b.iter(|| {
                    instance
                        .run_chain(&stages, &mut block)
                        .expect("the chain runs")
                })
            },
        );
        group.throughput(Throughput::Elements(words as u64));
        // Four chains' outputs, concatenated, through the combine alone.
        let partial = instance
            .run_chain(&stages, &mut lines)
            .expect("the chain runs");
        let mut four = Rows::new();
        for _ in 0..4 {
            four.try_extend_from(&partial).expect("small");
        }
        let combine = vec![*stages.last().expect("a combine")];
        group.throughput(Throughput::Elements(four.len() as u64));
        group.bench_function("merge of four outputs (combine)", |b| {
            b.iter(|| {
                instance
                    .run_chain(&combine, &mut four)
                    .expect("the merge runs")
            })
        });
        group.throughput(Throughput::Elements(words as u64));
    }
    let mut instance = plugin.instantiate("bench").expect("an instance");
    let graph = instance
        .define(&[
            ("host".into(), "localhost".into()),
            ("port".into(), "9".into()),
        ])
        .expect("define");
    let stages = chain_of(&graph);
    group.throughput(Throughput::Elements(1));
    let mut empty = Rows::new();
    group.bench_function("empty partition", |b| {
        b.iter(|| {
            instance
                .run_chain(&stages, &mut empty)
                .expect("the chain runs")
        })
    });
    group.finish();
}

criterion_group!(benches, guest_call);
criterion_main!(benches);
