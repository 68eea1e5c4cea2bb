//! Host-side codec work per record: splitting pairs and formatting records as
//! text for `print` / `save_as_text_files`.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::data::Codec;
use sluice::data::codec::split_pair;

mod common;

fn codec(c: &mut Criterion) {
    let pairs = common::pairs(&common::lines(10_000));
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("split_pair", |b| {
        b.iter(|| {
            pairs
                .iter()
                .filter_map(split_pair)
                .map(|(k, _)| k.len())
                .sum::<usize>()
        })
    });
    let codec: Codec = "tuple<string,i64>".parse().expect("a valid codec");
    group.bench_function("format tuple<string,i64>", |b| {
        b.iter(|| {
            sluice::sinks::format_lines(&codec, &pairs)
                .expect("valid records")
                .len()
        })
    });
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
