//! The word counter of the native baseline: the [`split`](crate::split)
//! splitter feeding a [`WordTable`], with the table's lookups trailing the
//! parser so that their slots are already in cache.
//!
//! Words are what Spark's `line.split(" ")` and Python's `line.split(' ')`
//! give: a line ends at `'\n'`, a word at `' '` or at the end of its line, and
//! nothing else is special (two spaces in a row make an empty word; the
//! generated corpus has none). Text after the last `'\n'` is a last line.
//!
//! [`WordCounter::count`] keeps a ring of the last [`RING`] words parsed: the
//! splitter finds a word, its key (two 8-byte loads, masked) and its hash are
//! computed, its slot is prefetched, and the word parsed [`RING`] words earlier
//! is looked up and counted. By then its slot has had the time of
//! [`RING`] words to arrive from memory, so the table's cache misses (its
//! 100,000 words do not fit in L1 or L2) overlap with parsing instead of
//! stalling it. Nothing is allocated per word or per call; the table grows
//! only when it holds more words than ever before.
//!
//! ```
//! use sluice_bench::words::WordCounter;
//!
//! let mut batch: WordCounter = WordCounter::default();
//! batch.count(b"a b a\n");
//! let mut totals: WordCounter = WordCounter::default();
//! totals.merge(&batch);
//! batch.clear();
//! assert_eq!(totals.get(b"a"), Some(2));
//! assert!(batch.is_empty());
//! ```

use std::io::{self, Write};

#[cfg(target_arch = "x86_64")]
use crate::split::{Avx2, Avx512};
use crate::split::{Masks, Portable, for_each_word_with};
use crate::table::{FoldHash, INLINE, ShortKey, WordHash, WordTable};

/// How many words the table lookups trail the parser by.
pub const RING: usize = 16;

/// Lines and words seen by one call to [`WordCounter::count`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    /// Lines (records, in Spark's terms).
    pub lines: u64,
    /// Words.
    pub words: u64,
}

impl std::ops::AddAssign for Counts {
    fn add_assign(&mut self, other: Self) {
        self.lines += other.lines;
        self.words += other.words;
    }
}

/// Counts per word: a [`WordTable`] and the counting loop that fills it.
#[derive(Debug, Clone)]
pub struct WordCounter<H = FoldHash> {
    table: WordTable<H>,
}

impl<H: WordHash + Default> Default for WordCounter<H> {
    fn default() -> Self {
        Self::with_capacity(0)
    }
}

impl<H: WordHash + Default> WordCounter<H> {
    /// An empty counter with room for `words` distinct words.
    pub fn with_capacity(words: usize) -> Self {
        Self {
            table: WordTable::with_capacity(words),
        }
    }
}

/// A word parsed, not counted yet: a short word's key, or for a long word
/// its start in the text in `key.lo` and its length + 1 in `key.meta`.
#[derive(Debug, Clone, Copy)]
struct Pending {
    key: ShortKey,
    hash: u64,
}

/// The last [`RING`] words parsed, field by field: a struct of arrays, so
/// that every field goes to memory and back as one 8-byte word. (Whole
/// `Pending`s were copied through the stack with 16-byte moves, and a 16-byte
/// load of two fields just stored apart cannot be forwarded from the store
/// buffer: it stalled every word.)
struct Ring {
    lo: [u64; RING],
    hi: [u64; RING],
    meta: [u64; RING],
    hash: [u64; RING],
}

impl Ring {
    fn new() -> Self {
        Self {
            lo: [0; RING],
            hi: [0; RING],
            meta: [0; RING],
            hash: [0; RING],
        }
    }

    /// The word in place `i` (modulo [`RING`]).
    #[inline(always)]
    fn get(&self, i: usize) -> Pending {
        let i = i % RING;
        Pending {
            key: ShortKey {
                lo: self.lo[i],
                hi: self.hi[i],
                meta: self.meta[i],
            },
            hash: self.hash[i],
        }
    }

    /// Puts `word` in place `i` (modulo [`RING`]).
    #[inline(always)]
    fn put(&mut self, i: usize, word: Pending) {
        let i = i % RING;
        self.lo[i] = word.key.lo;
        self.hi[i] = word.key.hi;
        self.meta[i] = word.key.meta;
        self.hash[i] = word.hash;
    }
}

impl<H: WordHash> WordCounter<H> {
    /// An empty counter over `table` (e.g. one with another hash).
    pub fn from_table(table: WordTable<H>) -> Self {
        Self { table }
    }

    /// The table.
    pub fn table(&self) -> &WordTable<H> {
        &self.table
    }

    /// Counts every word of `text`: whole lines, each ending in `'\n'`,
    /// optionally followed by one last line without it (the stream's tail).
    ///
    /// The loop is compiled for the best delimiter kernel the CPU has
    /// (AVX-512, AVX2, or the portable SSE2 one).
    pub fn count(&mut self, text: &[u8]) -> Counts {
        #[cfg(target_arch = "x86_64")]
        {
            if let Some(kernel) = Avx512::detect() {
                // SAFETY: the kernel exists only if the CPU has every feature
                // `count_avx512` is compiled for.
                return unsafe { self.count_avx512(kernel, text) };
            }
            if let Some(kernel) = Avx2::detect() {
                // SAFETY: as above, for `count_avx2`.
                return unsafe { self.count_avx2(kernel, text) };
            }
        }
        self.count_with(Portable, text)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,bmi1,bmi2,popcnt")]
    fn count_avx512(&mut self, kernel: Avx512, text: &[u8]) -> Counts {
        self.count_with(kernel, text)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,bmi1,bmi2,popcnt")]
    fn count_avx2(&mut self, kernel: Avx2, text: &[u8]) -> Counts {
        self.count_with(kernel, text)
    }

    /// [`WordCounter::count`] with the delimiter kernel `masks` (the tests
    /// run each one).
    #[inline(always)]
    pub fn count_with<M: Masks>(&mut self, masks: M, text: &[u8]) -> Counts {
        let table = &mut self.table;
        let mut ring = Ring::new();
        let mut parsed = 0usize;
        let split = for_each_word_with(masks, text, |start, end| {
            let len = end - start;
            let word = if len <= INLINE {
                let key = ShortKey::at(text, start, len);
                Pending {
                    key,
                    hash: key.hash(table.hasher()),
                }
            } else {
                long_pending(table.hasher(), text, start, end)
            };
            table.prefetch(word.hash);
            if parsed >= RING {
                count_pending(table, text, ring.get(parsed));
            }
            ring.put(parsed, word);
            parsed += 1;
        });
        for k in parsed.saturating_sub(RING)..parsed {
            count_pending(table, text, ring.get(k));
        }
        let mut counts = Counts {
            lines: split.newlines,
            words: parsed as u64,
        };
        if text.last().is_some_and(|&b| b != b'\n') {
            // The unterminated last line's last word (empty after a final ' ').
            table.add(&text[split.tail..], 1);
            counts.words += 1;
            counts.lines += 1;
        }
        counts
    }

    /// Adds `n` to the count of `word`.
    #[inline]
    pub fn add(&mut self, word: &[u8], n: u64) {
        self.table.add(word, n);
    }

    /// Adds every count of `other` to this one (a reduce by key).
    pub fn merge(&mut self, other: &WordCounter<H>) {
        self.table.merge(&other.table);
    }

    /// Forgets every word, keeping the memory.
    pub fn clear(&mut self) {
        self.table.clear();
    }

    /// The count of `word`, if it was seen.
    pub fn get(&self, word: &[u8]) -> Option<u64> {
        self.table.get(word)
    }

    /// Distinct words.
    pub fn len(&self) -> usize {
        self.table.len()
    }

    /// True if no word was counted.
    pub fn is_empty(&self) -> bool {
        self.table.is_empty()
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.table.total()
    }

    /// Calls `f(word, count)` for every word, in the order they were first counted.
    pub fn for_each(&self, f: impl FnMut(&[u8], u64)) {
        self.table.for_each(f);
    }

    /// Writes one `(word,count)` line per word, the format of Spark's
    /// `saveAsTextFiles` for a pair and of Sluice's file output.
    pub fn write_pairs(&self, out: &mut impl Write) -> io::Result<()> {
        let mut result = Ok(());
        self.table.for_each(|word, n| {
            if result.is_ok() {
                result = (|| {
                    out.write_all(b"(")?;
                    out.write_all(word)?;
                    writeln!(out, ",{n})")
                })();
            }
        });
        result
    }
}

/// A long word's pending entry (out of line: the corpus has none).
#[cold]
#[inline(never)]
fn long_pending<H: WordHash>(hasher: &H, text: &[u8], start: usize, end: usize) -> Pending {
    Pending {
        key: ShortKey {
            lo: start as u64,
            hi: 0,
            meta: (end - start) as u64 + 1,
        },
        hash: hasher.long(&text[start..end]),
    }
}

/// Counts one pending word of `text`.
#[inline(always)]
fn count_pending<H: WordHash>(table: &mut WordTable<H>, text: &[u8], word: Pending) {
    if word.key.meta as usize <= INLINE + 1 {
        table.add_short(word.key, word.hash, 1);
    } else {
        let start = word.key.lo as usize;
        table.add_long(&text[start..start + word.key.len()], word.hash, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: Python's `line.split(' ')` per line.
    fn reference(text: &[u8]) -> std::collections::BTreeMap<Vec<u8>, u64> {
        let mut counts = std::collections::BTreeMap::new();
        if text.is_empty() {
            return counts;
        }
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        for line in body.split(|&b| b == b'\n') {
            for word in line.split(|&b| b == b' ') {
                *counts.entry(word.to_vec()).or_insert(0) += 1;
            }
        }
        counts
    }

    fn counted(text: &[u8]) -> std::collections::BTreeMap<Vec<u8>, u64> {
        let mut counter: WordCounter = WordCounter::default();
        let counts = counter.count(text);
        assert_eq!(counts.words, counter.total());
        let mut out = std::collections::BTreeMap::new();
        counter.for_each(|word, n| {
            out.insert(word.to_vec(), n);
        });
        out
    }

    #[test]
    fn counts_match_split_on_space_per_line() {
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"a",
            b"a ",
            b"a b a\n",
            b"a  b\n\nc \n",
            b" lead\ntrail \nx",
            b"fifteen-bytes-- sixteen-bytes--- seventeen-bytes-- sixteen-bytes---\n",
            b"ab ab\0 ab\0\0 ab\n",
            b"the quick brown fox jumps over the lazy dog and the quick brown cat sleeps under the tree\nthe end\n",
        ];
        for text in cases {
            assert_eq!(
                counted(text),
                reference(text),
                "text {:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn counts_across_block_boundaries() {
        // Words of every length straddle the 64-byte blocks.
        let mut text = Vec::new();
        for i in 0..500usize {
            text.extend(std::iter::repeat_n(b'a' + (i % 26) as u8, i % 23 + 1));
            text.push(if i % 7 == 0 { b'\n' } else { b' ' });
        }
        text.extend_from_slice(b"tail");
        assert_eq!(counted(&text), reference(&text));
    }

    #[test]
    fn lines_are_counted_with_the_unterminated_tail() {
        let mut counter: WordCounter = WordCounter::default();
        assert_eq!(counter.count(b"a b\nc"), Counts { lines: 2, words: 3 });
        assert_eq!(counter.count(b"a b\n"), Counts { lines: 1, words: 2 });
        assert_eq!(counter.count(b"a b "), Counts { lines: 1, words: 3 });
    }

    #[test]
    fn merge_adds_counts_per_word_and_writes_pairs() {
        let mut a: WordCounter = WordCounter::default();
        a.count(b"x y\n");
        let mut b: WordCounter = WordCounter::default();
        b.count(b"y z\n");
        a.merge(&b);
        assert_eq!(
            (a.get(b"x"), a.get(b"y"), a.get(b"z")),
            (Some(1), Some(2), Some(1))
        );
        let mut out = Vec::new();
        a.write_pairs(&mut out).unwrap();
        let mut lines: Vec<_> = out
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .collect();
        lines.sort();
        assert_eq!(lines, [&b"(x,1)"[..], b"(y,2)", b"(z,1)"]);
    }
}
