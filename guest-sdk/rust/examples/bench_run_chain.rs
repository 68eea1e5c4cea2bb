//! A small native benchmark of the `run-chain` export on the word count's
//! chain `[apply flat_map, apply map, combine reduce_by_key]`.
//!
//! ```text
//! cargo run --release -p sluice-corpus -- 100000 > /tmp/corpus.txt
//! cargo run --release -p sluice-guest --example bench_run_chain -- /tmp/corpus.txt [ITERATIONS] [pairs]
//! ```
//!
//! Prints the time per word of one call over the whole corpus as one
//! partition (best and median of the iterations). With `pairs`, the chain
//! stops before the combine (`[apply flat_map, apply map]`, as with the
//! built-in `sum_by_key`) and returns one pair per word.

use std::time::Instant;

use sluice_guest::__private::{Rows, Stage, define, run_chain};
use sluice_guest::prelude::*;

struct WordCount;

impl Job for WordCount {
    fn define(ctx: &mut StreamingContext, _args: &Args) -> Result<(), String> {
        ctx.socket_text_stream("localhost", 9999)
            .flat_map(|l: String| l.split(' ').map(String::from).collect::<Vec<_>>())
            .map(|w| (w, 1i64))
            .reduce_by_key(|a, b| a + b)
            .print();
        Ok(())
    }
}

fn main() {
    let mut args = std::env::args().skip(1);
    let path = args
        .next()
        .expect("usage: bench_run_chain CORPUS [ITERATIONS]");
    let iterations: usize = args.next().map_or(10, |n| n.parse().expect("a number"));
    let combine = match args.next().as_deref() {
        None => true,
        Some("pairs") => false,
        Some(other) => panic!("expected `pairs`, got {other:?}"),
    };
    let text = std::fs::read_to_string(&path).expect("a readable UTF-8 corpus");

    let mut input = Rows {
        data: Vec::with_capacity(text.len()),
        ends: Vec::new(),
    };
    let mut words = 0usize;
    for line in text.lines() {
        input.data.extend_from_slice(line.as_bytes());
        input.ends.push(input.data.len() as u32);
        words += line.split(' ').count();
    }
    let lines = input.ends.len();

    define::<WordCount>(Vec::new()).expect("defines");
    let chain = || {
        let mut stages = vec![Stage::Apply(0), Stage::Apply(1)];
        if combine {
            stages.push(Stage::Combine(2));
        }
        stages
    };

    let mut times = Vec::with_capacity(iterations);
    let mut records = 0;
    for _ in 0..iterations {
        let input = input.clone();
        let start = Instant::now();
        let out = run_chain(chain(), input).expect("runs");
        let elapsed = start.elapsed();
        records = out.ends.len();
        drop(out);
        times.push(elapsed.as_nanos() as f64);
    }
    times.sort_by(f64::total_cmp);
    let per_word = |ns: f64| ns / words as f64;
    println!(
        "{lines} lines, {words} words, {records} output records: best {:.1} ns/word, median {:.1} ns/word ({:.1} ms per call)",
        per_word(times[0]),
        per_word(times[times.len() / 2]),
        times[times.len() / 2] / 1e6
    );
}
