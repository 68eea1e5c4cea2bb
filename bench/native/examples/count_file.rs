//! The native counting loop alone, without socket or batches:
//! `cargo run --release -p sluice-bench --example count_file -- CORPUS [ROUNDS]`.
//! Prints words per second on one thread (the best of the rounds) for the
//! whole counter, and for its parts: the splitter alone (the SIMD mask loop
//! and `memchr2_iter`), and the splitter with the keys and hashes but no table.

use std::time::Instant;

use sluice_bench::split::{for_each_word, for_each_word_memchr};
use sluice_bench::table::{FoldHash, ShortKey};
use sluice_bench::words::WordCounter;

/// Chunks of about 1 MiB cut at newlines, as the socket reader hands them over.
fn chunks(text: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = text;
    while !rest.is_empty() {
        let cut = if rest.len() <= 1 << 20 {
            rest.len()
        } else {
            memchr::memrchr(b'\n', &rest[..1 << 20]).map_or(rest.len(), |i| i + 1)
        };
        out.push(&rest[..cut]);
        rest = &rest[cut..];
    }
    out
}

/// The best time of `rounds` runs of `f`, and `f`'s result.
fn best(rounds: usize, mut f: impl FnMut() -> u64) -> (f64, u64) {
    let mut best = f64::MAX;
    let mut result = 0;
    for _ in 0..rounds {
        let started = Instant::now();
        result = std::hint::black_box(f());
        best = best.min(started.elapsed().as_secs_f64());
    }
    (best, result)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: count_file CORPUS [ROUNDS]");
    let rounds: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("ROUNDS is a number"));
    let text = std::fs::read(&path).expect("corpus is readable");
    let chunks = chunks(&text);
    let mut counter: WordCounter = WordCounter::with_capacity(100_000);
    let (secs, words) = best(rounds, || {
        counter.clear();
        chunks.iter().map(|c| counter.count(c).words).sum()
    });
    let report = |what: &str, secs: f64| {
        println!(
            "{what:<40} {:6.1} ms {:6.1} M words/s {:5.0} MB/s",
            secs * 1e3,
            words as f64 / secs / 1e6,
            text.len() as f64 / secs / 1e6
        );
    };
    println!("{words} words, {} distinct", counter.len());
    report("count (split, hash, prefetch, table)", secs);
    let (secs, _) = best(rounds, || {
        let mut n = 0u64;
        for c in &chunks {
            for_each_word(c, |s, e| n = n.wrapping_add((s ^ e) as u64));
        }
        n
    });
    report("split: SIMD masks (SSE2)", secs);
    let (secs, _) = best(rounds, || {
        let mut n = 0u64;
        for c in &chunks {
            for_each_word_memchr(c, |s, e| n = n.wrapping_add((s ^ e) as u64));
        }
        n
    });
    report("split: memchr2_iter", secs);
    let (secs, _) = best(rounds, || {
        let mut n = 0u64;
        for c in &chunks {
            for_each_word(c, |s, e| {
                if e - s <= 16 {
                    n = n.wrapping_add(ShortKey::at(c, s, e - s).hash(&FoldHash));
                }
            });
        }
        n
    });
    report("split + key + hash, no table", secs);
    // The batch-time work: merging one thread's table into the batch's and
    // the batch's into the totals, then emptying it.
    let mut totals: WordCounter = WordCounter::with_capacity(100_000);
    totals.merge(&counter);
    let mut batch: WordCounter = WordCounter::with_capacity(100_000);
    let mut best_merge = f64::MAX;
    for _ in 0..rounds {
        batch.clear();
        let started = Instant::now();
        batch.merge(&counter);
        totals.merge(&batch);
        best_merge = best_merge.min(started.elapsed().as_secs_f64());
    }
    println!(
        "merge {} words into an empty table and the result into the totals: {:.2} ms",
        counter.len(),
        best_merge * 1e3
    );
}
