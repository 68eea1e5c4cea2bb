//! Input shared by the benchmarks (and `examples/wasm_ceiling.rs`): lines of
//! the benchmark corpus distribution (Zipf words), made deterministically so
//! runs compare; and the chain a word count's partition runs.

use std::fmt::Write as _;

use sluice::data::Rows;
use sluice::data::codec::{pair_len, write_pair};
use sluice::plan::{JobGraph, NodeKind, Reducer, Stage};

/// The chain a partition of a word count runs: the job's narrow steps, then
/// the combine of its `reduce_by_key`.
#[allow(dead_code)] // not every benchmark uses it
pub fn chain_of(graph: &JobGraph) -> Vec<Stage> {
    let mut stages: Vec<Stage> = graph
        .nodes
        .iter()
        .filter_map(|n| n.kind.narrow_function().map(Stage::Apply))
        .collect();
    stages.extend(graph.nodes.iter().filter_map(|n| match n.kind {
        NodeKind::ReduceByKey {
            reducer: Reducer::Function(f),
            ..
        } => Some(Stage::Combine(f)),
        _ => None,
    }));
    stages
}

/// `n` lines of about ten words drawn from a Zipf-like vocabulary.
pub fn lines(n: usize) -> Rows {
    let vocab: Vec<String> = (0..20_000)
        .map(|i| format!("w{:x}{}", i * 2654435761u64 % 1_000_003, i % 7))
        .collect();
    lines_of(n, 0x2545_f491_4f6c_dd1d, |random, line| {
        // rank ~ 1/u: a heavy head and a long tail.
        let u = (random % 1_000_000 + 1) as usize;
        line.push_str(&vocab[(1_000_000 / u - 1).min(vocab.len() - 1)]);
    })
}

/// `n` lines of ten words, Zipf-distributed (exponent 1, as the benchmark
/// corpus) over `vocabulary` words: a block of the corpus has about as many
/// distinct words as one of these with as many words.
#[allow(dead_code)] // not every benchmark uses it
pub fn zipf_lines(n: usize, vocabulary: u32) -> Rows {
    lines_of(n, 0x9e37_79b9_7f4a_7c15, |random, line| {
        // A log-uniform rank: P(rank = r) ~ 1/r.
        let u = (random >> 11) as f64 / (1u64 << 53) as f64;
        let rank = (f64::from(vocabulary).powf(u) as u32).saturating_sub(1);
        write!(line, "w{:x}", u64::from(rank) * 2654435761 % 1_000_003).expect("a String");
    })
}

/// `n` lines of ten words separated by spaces, each word appended by `word`
/// from a xorshift generator's next number (seeded with `seed`).
fn lines_of(n: usize, seed: u64, mut word: impl FnMut(u64, &mut String)) -> Rows {
    let mut state = seed;
    let mut rows = Rows::new();
    let mut line = String::new();
    for _ in 0..n {
        line.clear();
        for w in 0..10 {
            if w > 0 {
                line.push(' ');
            }
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            word(state, &mut line);
        }
        rows.push(line.as_bytes());
    }
    rows
}

/// `(word, 1i64)` pairs of the words of `lines`.
#[allow(dead_code)] // not every benchmark uses it
pub fn pairs(lines: &Rows) -> Rows {
    let mut rows = Rows::new();
    for line in lines {
        for word in line.split(|&b| b == b' ') {
            rows.try_push_with(pair_len(word, 8), |out| {
                write_pair(word, &1i64.to_le_bytes(), out)
            })
            .expect("a small partition");
        }
    }
    rows
}
