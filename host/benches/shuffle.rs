//! The native half of keyed steps: bucketing pairs by key, the built-in
//! `sum` (map side), grouping for a guest reducer, the cut into key pieces
//! and the keys that occur once (which skip the guest's combine), and the
//! packed grouping of a stateful step's values (the chain's end, then a
//! merge).

use bumpalo::Bump;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sluice::data::{KeyGroups, Numeric, Partitioner, Rows};
use sluice::exec::grouping::Grouper;
use sluice::exec::shuffle::{Builtin, Groups, bucket, key_pieces, take_singles};
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
    // A block's pairs as `sum_by_key()`'s chain gives them: about 490,000
    // words (a 4 MiB block of the bench corpus) over a vocabulary of
    // 100,000, in answers of 256 KiB of input each, into one partition.
    let chain_pairs = common::pairs(&common::zipf_lines(49_000, 100_000));
    let answers: Vec<Rows> = chain_pairs
        .iter()
        .collect::<Vec<_>>()
        .chunks(22_000)
        .map(|chunk| {
            let mut rows = Rows::new();
            for pair in chunk {
                rows.try_push(pair).expect("small");
            }
            rows
        })
        .collect();
    group.throughput(Throughput::Elements(chain_pairs.len() as u64));
    // The totals over the held answers (a chain's task adds them answer by
    // answer, its keys copied into an arena, as the grouping below).
    group.bench_function("builtin sum, map side, a block in answers", |b| {
        b.iter(|| sum.combine(&answers, Partitioner::single()).expect("pairs"))
    });
    // The same answers grouped as a stateful step's chain ends: all held,
    // then grouped where they lie; or each grouped as it comes, its keys
    // and values copied, so that it can go.
    group.bench_function("packed groups, a block in answers, held", |b| {
        b.iter(|| Grouper::of_pairs(&answers).expect("pairs").to_packed())
    });
    group.bench_function("packed groups, a block in answers, each as it comes", |b| {
        b.iter(|| {
            let arena = Bump::new();
            let mut groups = Grouper::default();
            // Room for the block's keys, as a chain's task reserves it
            // from its first answer.
            groups.reserve(answers[0].len() * answers.len() / 16);
            for answer in &answers {
                groups.add_pairs(&arena, answer).expect("pairs");
            }
            groups.to_packed()
        })
    });
    group.throughput(Throughput::Elements(pairs.len() as u64));
    group.bench_function("group by key", |b| {
        b.iter(|| Groups::new([&pairs]).expect("pairs").split_singles())
    });
    group.bench_function("packed groups of a stateful step", |b| {
        b.iter(|| Grouper::of_pairs([&pairs]).expect("pairs").to_packed())
    });
    group.finish();
    // A block's pairs over the benchmark corpus's vocabulary: groups of
    // megabytes, whose lookups miss the cache unless asked for ahead.
    let block = common::pairs(&common::zipf_lines(100_000, 1_000_000));
    let mut group = c.benchmark_group("shuffle, a block");
    group.throughput(Throughput::Elements(block.len() as u64));
    group.bench_function("packed groups of a stateful step", |b| {
        b.iter(|| Grouper::of_pairs([&block]).expect("pairs").to_packed())
    });
    // The keys that occur once, which a merge of early outputs passes
    // without a guest call.
    group.bench_function("take singles", |b| {
        b.iter(|| take_singles(&block, &mut Rows::new()).expect("pairs"))
    });
    // A merge's pairs cut into key pieces of 2 MiB (the guest combine's),
    // then each piece's singles taken: with the hashes the cut computed,
    // and (as before they were kept) hashing every key again.
    group.bench_function("key pieces, then take singles", |b| {
        b.iter(|| {
            for piece in key_pieces([&block], 2 << 20).expect("pairs") {
                piece.take_singles(&mut Rows::new()).expect("pairs");
            }
        })
    });
    group.bench_function("key pieces, then take singles hashing again", |b| {
        b.iter(|| {
            for piece in key_pieces([&block], 2 << 20).expect("pairs") {
                take_singles(piece.pairs(), &mut Rows::new()).expect("pairs");
            }
        })
    });
    group.finish();
    let packed = Grouper::of_pairs([&block])
        .and_then(|g| g.to_packed())
        .expect("pairs");
    let four = [&packed, &packed, &packed, &packed];
    let mut group = c.benchmark_group("merge, a block");
    group.throughput(Throughput::Elements(4 * packed.len() as u64));
    group.bench_function("packed groups, four outputs", |b| {
        b.iter(|| Grouper::of_packed(four).expect("groups").to_packed())
    });
    group.finish();
    // A merge of four early outputs, by the packed groups read.
    let packed = Grouper::of_pairs([&pairs])
        .and_then(|g| g.to_packed())
        .expect("pairs");
    let four = [&packed, &packed, &packed, &packed];
    let mut group = c.benchmark_group("merge");
    group.throughput(Throughput::Elements(4 * packed.len() as u64));
    group.bench_function("packed groups, four outputs", |b| {
        b.iter(|| Grouper::of_packed(four).expect("groups").to_packed())
    });
    group.finish();
}

criterion_group!(benches, shuffle);
criterion_main!(benches);
