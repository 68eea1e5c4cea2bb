//! The text corpus of word-count runs: lines of words drawn from a Zipf(1.1)
//! law over a synthetic vocabulary, so that a few keys are hot and most are
//! rare, as in real text. One generator serves the demo (`sluice demo`), the
//! end-to-end tests (`tests/e2e`) and the benchmark (`bench/run`, through the
//! `gen-corpus` binary).
//!
//! The rules (those of the Python generator the benchmark figures in
//! `BENCHMARKS.md` were first measured with; same rules, not the same bytes):
//!
//! - the vocabulary has [`VOCABULARY`] words; word `i` is 2 to 10 random
//!   lowercase ASCII letters followed by the digit `i % 7`;
//! - the word of rank `r` (1-based) has weight `1 / r^1.1`;
//! - a line has `max(1, trunc(normal(10, 3)))` words, joined by one space,
//!   and ends with `\n`.
//!
//! Everything comes from one [`SmallRng`] seeded with the seed: the same
//! seed gives the same bytes, on every run of the same build.
//!
//! ```
//! let text = sluice_corpus::generate(3, 42);
//! assert_eq!(text.iter().filter(|&&b| b == b'\n').count(), 3);
//! assert_eq!(text, sluice_corpus::generate(3, 42));
//! ```

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

/// Words in the vocabulary.
pub const VOCABULARY: usize = 100_000;

/// The exponent of the Zipf law over word ranks.
pub const ZIPF_EXPONENT: f64 = 1.1;

/// Mean words per line (standard deviation 3).
pub const WORDS_PER_LINE: f64 = 10.0;

/// The seed used when none is given (the demo's and `gen-corpus`'s).
pub const DEFAULT_SEED: u64 = 42;

/// A stream of corpus lines: a vocabulary and the random generator that
/// draws from it.
pub struct Corpus {
    rng: SmallRng,
    vocab: Vec<String>,
    /// `cumulative[r]`: the sum of the weights of ranks `0..=r`.
    cumulative: Vec<f64>,
}

impl Corpus {
    /// Builds the vocabulary and the rank weights from `seed`.
    pub fn new(seed: u64) -> Corpus {
        let mut rng = SmallRng::seed_from_u64(seed);
        let vocab = (0..VOCABULARY)
            .map(|i| {
                let len = rng.random_range(2..=10);
                let mut word: String = (0..len)
                    .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                    .collect();
                word.push(char::from(b'0' + (i % 7) as u8));
                word
            })
            .collect();
        let mut total = 0.0;
        let cumulative = (1..=VOCABULARY)
            .map(|rank| {
                total += 1.0 / (rank as f64).powf(ZIPF_EXPONENT);
                total
            })
            .collect();
        Corpus {
            rng,
            vocab,
            cumulative,
        }
    }

    /// The word of 0-based `rank` (0 is the most frequent), if there is one.
    pub fn word(&self, rank: usize) -> Option<&str> {
        self.vocab.get(rank).map(String::as_str)
    }

    /// Appends the next line, with its `\n`, to `out`.
    pub fn line(&mut self, out: &mut Vec<u8>) {
        // Words per line: normal(10, 3) by Box–Muller, truncated, at least 1.
        let u1 = self.rng.random::<f64>().max(1e-12);
        let u2: f64 = self.rng.random();
        let normal = (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos();
        let words = ((WORDS_PER_LINE + 3.0 * normal) as i64).max(1);
        let total = self.cumulative[VOCABULARY - 1];
        for i in 0..words {
            if i > 0 {
                out.push(b' ');
            }
            let x = self.rng.random::<f64>() * total;
            let rank = self
                .cumulative
                .partition_point(|&c| c < x)
                .min(VOCABULARY - 1);
            out.extend_from_slice(self.vocab[rank].as_bytes());
        }
        out.push(b'\n');
    }
}

/// `lines` lines of the corpus of `seed`, each ending with `\n`.
pub fn generate(lines: usize, seed: u64) -> Vec<u8> {
    let mut corpus = Corpus::new(seed);
    // About 60 bytes a line.
    let mut out = Vec::with_capacity(lines.saturating_mul(64));
    for _ in 0..lines {
        corpus.line(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    #[test]
    fn same_seed_gives_the_same_bytes_and_another_seed_others() {
        let a = generate(2_000, 7);
        assert_eq!(a, generate(2_000, 7));
        assert_ne!(a, generate(2_000, 8));
        // A stream and `generate` agree.
        let mut corpus = Corpus::new(7);
        let mut streamed = Vec::new();
        for _ in 0..2_000 {
            corpus.line(&mut streamed);
        }
        assert_eq!(a, streamed);
    }

    #[test]
    fn lines_and_words_follow_the_vocabulary_rule() {
        let text = String::from_utf8(generate(5_000, 1)).expect("ASCII");
        assert!(text.ends_with('\n'));
        let lines: Vec<&str> = text
            .strip_suffix('\n')
            .unwrap_or(&text)
            .split('\n')
            .collect();
        assert_eq!(lines.len(), 5_000);
        let mut words = 0usize;
        for line in &lines {
            for word in line.split(' ') {
                words += 1;
                let (letters, digit) = word.split_at(word.len() - 1);
                assert!(
                    (2..=10).contains(&letters.len())
                        && letters.bytes().all(|b| b.is_ascii_lowercase())
                        && matches!(digit.as_bytes()[0], b'0'..=b'6'),
                    "{word:?} is not 2 to 10 letters and a digit 0 to 6"
                );
            }
        }
        // normal(10, 3), truncated: a mean near 9.5 words a line.
        let mean = words as f64 / lines.len() as f64;
        assert!((9.0..10.0).contains(&mean), "{mean} words a line");
    }

    #[test]
    fn word_frequencies_follow_a_zipf_law() {
        let corpus = Corpus::new(7);
        let text = String::from_utf8(generate(20_000, 7)).expect("ASCII");
        let mut counts: HashMap<&str, u64> = HashMap::new();
        for word in text.split([' ', '\n']).filter(|w| !w.is_empty()) {
            *counts.entry(word).or_default() += 1;
        }
        let count = |rank: usize| {
            let word = corpus.word(rank).expect("a rank in the vocabulary");
            counts.get(word).copied().unwrap_or(0) as f64
        };
        // Zipf(1.1): rank 1 is 10^1.1 ≈ 12.6 times as frequent as rank 10,
        // and 2^1.1 ≈ 2.14 times as frequent as rank 2. (Two synthetic words
        // may be spelled alike; at these ranks that does not move the ratio.)
        let r1_r10 = count(0) / count(9).max(1.0);
        let r1_r2 = count(0) / count(1).max(1.0);
        assert!((9.0..17.0).contains(&r1_r10), "rank 1 / rank 10 = {r1_r10}");
        assert!((1.8..2.5).contains(&r1_r2), "rank 1 / rank 2 = {r1_r2}");
    }
}
