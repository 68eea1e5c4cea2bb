//! The native counting loop alone, without socket or batches:
//! `cargo run --release -p sluice-bench --example count_file -- CORPUS [ROUNDS]`.
//! Prints words per second on one thread (the best of the rounds).

use std::time::Instant;

use sluice_bench::words::WordCounter;

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args.next().expect("usage: count_file CORPUS [ROUNDS]");
    let rounds: usize = args
        .next()
        .map_or(5, |r| r.parse().expect("ROUNDS is a number"));
    let text = std::fs::read(&path).expect("corpus is readable");
    let mut best = f64::MAX;
    for _ in 0..rounds {
        let mut counter = WordCounter::with_capacity(100_000);
        let started = Instant::now();
        // In chunks of about 1 MiB cut at newlines, as the socket reader hands them over.
        let mut words = 0;
        let mut rest = &text[..];
        while !rest.is_empty() {
            let cut = if rest.len() <= 1 << 20 {
                rest.len()
            } else {
                memchr::memrchr(b'\n', &rest[..1 << 20]).map_or(rest.len(), |i| i + 1)
            };
            words += counter.count(&rest[..cut]).words;
            rest = &rest[cut..];
        }
        let secs = started.elapsed().as_secs_f64();
        best = best.min(secs);
        println!(
            "{words} words, {} distinct, {:.1} ms, {:.1} M words/s",
            counter.len(),
            secs * 1e3,
            words as f64 / secs / 1e6
        );
    }
    let words = WordCounter::default().count(&text).words;
    println!(
        "best: {:.1} M words/s, {:.0} MB/s",
        words as f64 / best / 1e6,
        text.len() as f64 / best / 1e6
    );
}
