//! The word counter of the native baseline: one pass over the bytes, a
//! `hashbrown` map with `foldhash` keyed by the word's bytes.
//!
//! Words are what Spark's `line.split(" ")` and Python's `line.split(' ')`
//! give: a line ends at `'\n'`, a word at `' '` or at the end of its line, and
//! nothing else is special (two spaces in a row make an empty word; the
//! generated corpus has none). Text after the last `'\n'` is a last line.
//!
//! ```
//! use sluice_bench::words::WordCounter;
//!
//! let mut batch = WordCounter::default();
//! batch.count(b"a b a\n");
//! let mut totals = WordCounter::default();
//! totals.merge(batch);
//! assert_eq!(totals.get(b"a"), Some(2));
//! ```

use std::io::{self, Write};

use hashbrown::HashMap;

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

/// Counts per word, keyed by the word's bytes.
///
/// Words of up to 15 bytes (all of the generated corpus's) are keyed by a
/// `u128` holding their bytes and length, so that finding one compares two
/// machine words instead of calling `memcmp` through a pointer; longer words
/// go to a second map keyed by their bytes.
#[derive(Debug, Default)]
pub struct WordCounter {
    short: HashMap<ShortKey, u64, foldhash::fast::RandomState>,
    long: HashMap<Box<[u8]>, u64, foldhash::fast::RandomState>,
}

/// The longest word kept in a [`ShortKey`]; the top byte holds the length.
const SHORT: usize = 15;

/// A short word's bytes, little-endian, with its length in the top byte: a
/// `u128` stored as two `u64` so that an entry of the map (key and count) is
/// 24 bytes, not 32, and more of the map stays in cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ShortKey([u64; 2]);

impl std::hash::Hash for ShortKey {
    #[inline]
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        state.write_u128(self.as_u128());
    }
}

impl ShortKey {
    #[inline]
    fn new(key: u128) -> Self {
        Self([key as u64, (key >> 64) as u64])
    }

    #[inline]
    fn as_u128(self) -> u128 {
        u128::from(self.0[0]) | (u128::from(self.0[1]) << 64)
    }
}

/// The key of a short word: its bytes, little-endian, and its length on top.
#[inline]
fn short_key(word: &[u8]) -> ShortKey {
    debug_assert!(word.len() <= SHORT);
    let mut bytes = [0u8; 16];
    bytes[..word.len()].copy_from_slice(word);
    ShortKey::new(u128::from_le_bytes(bytes) | ((word.len() as u128) << 120))
}

/// The key of the short word `text[start..end]`, loading 16 bytes at once
/// when `text` has them.
#[inline]
fn short_key_at(text: &[u8], start: usize, end: usize) -> ShortKey {
    let len = end - start;
    debug_assert!(len <= SHORT && end <= text.len());
    match text.get(start..start + 16) {
        Some(bytes) => {
            let raw = u128::from_le_bytes(bytes.try_into().expect("16 bytes"));
            ShortKey::new((raw & ((1u128 << (len * 8)) - 1)) | ((len as u128) << 120))
        }
        None => short_key(&text[start..end]),
    }
}

/// The bytes of a short word's key.
fn short_word(key: &ShortKey) -> ([u8; 16], usize) {
    let key = key.as_u128();
    (key.to_le_bytes(), (key >> 120) as usize)
}

impl WordCounter {
    /// An empty counter with room for `words` distinct words.
    pub fn with_capacity(words: usize) -> Self {
        Self {
            short: HashMap::with_capacity_and_hasher(words, Default::default()),
            long: HashMap::default(),
        }
    }

    /// Counts every word of `text`: whole lines, each ending in `'\n'`,
    /// optionally followed by one last line without it (the stream's tail).
    pub fn count(&mut self, text: &[u8]) -> Counts {
        let mut counts = Counts::default();
        let mut start = 0;
        for_each_delimiter(text, |pos, newline| {
            if pos - start <= SHORT {
                *self
                    .short
                    .entry(short_key_at(text, start, pos))
                    .or_insert(0) += 1;
            } else {
                self.add(&text[start..pos], 1);
            }
            counts.words += 1;
            counts.lines += u64::from(newline);
            start = pos + 1;
        });
        if start < text.len() {
            self.add(&text[start..], 1);
            counts.words += 1;
            counts.lines += 1;
        }
        counts
    }

    /// Adds `n` to the count of `word`.
    #[inline]
    pub fn add(&mut self, word: &[u8], n: u64) {
        if word.len() <= SHORT {
            *self.short.entry(short_key(word)).or_insert(0) += n;
            return;
        }
        match self.long.get_mut(word) {
            Some(count) => *count += n,
            None => {
                self.long.insert(word.into(), n);
            }
        }
    }

    /// Adds every count of `other` to this one (a reduce by key).
    pub fn merge(&mut self, other: WordCounter) {
        if self.is_empty() {
            *self = other;
            return;
        }
        self.short
            .reserve(other.short.len().saturating_sub(self.short.len()));
        for (key, n) in other.short {
            *self.short.entry(key).or_insert(0) += n;
        }
        for (word, n) in other.long {
            *self.long.entry(word).or_insert(0) += n;
        }
    }

    /// The count of `word`, if it was seen.
    pub fn get(&self, word: &[u8]) -> Option<u64> {
        if word.len() <= SHORT {
            self.short.get(&short_key(word))
        } else {
            self.long.get(word)
        }
        .copied()
    }

    /// Distinct words.
    pub fn len(&self) -> usize {
        self.short.len() + self.long.len()
    }

    /// True if no word was counted.
    pub fn is_empty(&self) -> bool {
        self.short.is_empty() && self.long.is_empty()
    }

    /// Sum of all counts.
    pub fn total(&self) -> u64 {
        self.short.values().sum::<u64>() + self.long.values().sum::<u64>()
    }

    /// Every word with its count, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (Vec<u8>, u64)> + '_ {
        let short = self.short.iter().map(|(key, &n)| {
            let (bytes, len) = short_word(key);
            (bytes[..len].to_vec(), n)
        });
        short.chain(self.long.iter().map(|(word, &n)| (word.to_vec(), n)))
    }

    /// Writes one `(word,count)` line per word, the format of Spark's
    /// `saveAsTextFiles` for a pair and of Sluice's file output.
    pub fn write_pairs(&self, out: &mut impl Write) -> io::Result<()> {
        let mut line = |word: &[u8], n: u64| -> io::Result<()> {
            out.write_all(b"(")?;
            out.write_all(word)?;
            writeln!(out, ",{n})")
        };
        for (key, &n) in &self.short {
            let (bytes, len) = short_word(key);
            line(&bytes[..len], n)?;
        }
        for (word, &n) in &self.long {
            line(word, n)?;
        }
        Ok(())
    }
}

/// Calls `f(position, is_newline)` for every `' '` and `'\n'` of `text`, in order.
#[inline]
fn for_each_delimiter(text: &[u8], mut f: impl FnMut(usize, bool)) {
    let mut base = 0;
    // 64 bytes at a time: a bit mask of delimiters, then one call per set bit,
    // so the branch per byte of a naive loop (mispredicted at every word) is gone.
    while base + 64 <= text.len() {
        let block: &[u8; 64] = text[base..base + 64].try_into().expect("slice of 64 bytes");
        let (mut spaces, newlines) = masks64(block);
        spaces |= newlines;
        while spaces != 0 {
            let bit = spaces.trailing_zeros() as usize;
            f(base + bit, newlines & (1 << bit) != 0);
            spaces &= spaces - 1;
        }
        base += 64;
    }
    for (i, &b) in text[base..].iter().enumerate() {
        if b == b' ' || b == b'\n' {
            f(base + i, b == b'\n');
        }
    }
}

/// Bit masks of the `' '` and the `'\n'` bytes of a 64-byte block.
#[inline]
fn masks64(block: &[u8; 64]) -> (u64, u64) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{
            __m128i, _mm_cmpeq_epi8, _mm_loadu_si128, _mm_movemask_epi8, _mm_set1_epi8,
        };
        // SAFETY: SSE2 is part of the x86_64 baseline; the four unaligned
        // 16-byte loads stay inside the 64-byte block.
        unsafe {
            let space = _mm_set1_epi8(b' ' as i8);
            let newline = _mm_set1_epi8(b'\n' as i8);
            let (mut spaces, mut newlines) = (0u64, 0u64);
            for lane in 0..4 {
                let v = _mm_loadu_si128(block.as_ptr().add(lane * 16).cast::<__m128i>());
                spaces |=
                    u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, space)) as u16) << (lane * 16);
                newlines |=
                    u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, newline)) as u16) << (lane * 16);
            }
            (spaces, newlines)
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let (mut spaces, mut newlines) = (0u64, 0u64);
        for (i, &b) in block.iter().enumerate() {
            spaces |= u64::from(b == b' ') << i;
            newlines |= u64::from(b == b'\n') << i;
        }
        (spaces, newlines)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reference: Python's `line.split(' ')` per line.
    fn reference(text: &[u8]) -> std::collections::BTreeMap<Vec<u8>, u64> {
        let mut counts = std::collections::BTreeMap::new();
        let body = text.strip_suffix(b"\n").unwrap_or(text);
        if text.is_empty() {
            return counts;
        }
        for line in body.split(|&b| b == b'\n') {
            for word in line.split(|&b| b == b' ') {
                *counts.entry(word.to_vec()).or_insert(0) += 1;
            }
        }
        counts
    }

    fn counted(text: &[u8]) -> std::collections::BTreeMap<Vec<u8>, u64> {
        let mut counter = WordCounter::default();
        let counts = counter.count(text);
        assert_eq!(counts.words, counter.total());
        counter.iter().collect()
    }

    #[test]
    fn counts_match_split_on_space_per_line() {
        let cases: &[&[u8]] = &[
            b"",
            b"\n",
            b"a",
            b"a b a\n",
            b"a  b\n\nc \n",
            b" lead\ntrail \nx",
            b"fifteen-bytes-- sixteen-bytes--- fifteen-bytes-- sixteen-bytes---\n",
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
        let mut counter = WordCounter::default();
        assert_eq!(counter.count(b"a b\nc"), Counts { lines: 2, words: 3 });
        assert_eq!(counter.count(b"a b\n"), Counts { lines: 1, words: 2 });
    }

    #[test]
    fn merge_adds_counts_per_word() {
        let mut a = WordCounter::default();
        a.count(b"x y\n");
        let mut b = WordCounter::default();
        b.count(b"y z\n");
        a.merge(b);
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
