//! The native half of `reduce_by_key`: bucketing pairs by key, the built-in
//! `sum` (map side), and grouping for a guest reducer.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::data::Numeric;
use sluice::data::{KeyGroups, Partitioner};
use sluice::exec::shuffle::{Builtin, Groups, bucket};
use sluice::plan::Reducer;

mod common;

fn shuffle(c: &mut Criterion) {
    let pairs = common::pairs(&common::lines(10_000));
    let two = Partitioner::new(KeyGroups::default(), 2);
    let mut group = c.benchmark_group("shuffle");
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("bucket into 2", |b| {
        b.iter(|| bucket(&pairs, two).expect("pairs"))
    });
    let sum = Builtin::map_side(Reducer::Sum, Some(Numeric::I64)).expect("numeric");
    group.bench_function("builtin sum, map side", |b| {
        b.iter(|| sum.combine([&pairs], two).expect("pairs"))
    });
    group.bench_function("group by key", |b| {
        b.iter(|| Groups::new([&pairs]).expect("pairs").split_singles())
    });
    group.finish();
}

criterion_group!(benches, shuffle);
criterion_main!(benches);
