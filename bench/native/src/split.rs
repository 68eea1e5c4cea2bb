//! The native baseline's splitter: words as Spark's `line.split(" ")` makes
//! them, in one pass over the bytes.
//!
//! A line ends at `'\n'`, a word at `' '` or at the end of its line; nothing
//! else is special. Two spaces in a row make an empty word, an empty line is
//! one empty word, and text after the last `'\n'` is a last line (the stream's
//! unterminated tail).
//!
//! The delimiters are found 64 bytes at a time: SIMD compares against `' '`
//! and `'\n'` give a 64-bit mask of the delimiters of the block, and each set
//! bit (`trailing_zeros`, then clear the lowest bit) ends one word, with no
//! branch per byte. The lines of a block are the population count of its
//! newline mask.
//!
//! ```
//! use sluice_bench::split::for_each_word;
//!
//! let mut words = Vec::new();
//! let split = for_each_word(b"a  b\n\nc", |start, end| words.push((start, end)));
//! assert_eq!(words, [(0, 1), (2, 2), (3, 4), (5, 5)]); // "a", "", "b", ""
//! assert_eq!((split.tail, split.newlines), (6, 2)); // "c" is the unterminated last line
//! ```

/// What [`for_each_word`] found besides the words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Split {
    /// Where the text after the last delimiter starts; `text[tail..]` is the
    /// last word of an unterminated last line when not empty.
    pub tail: usize,
    /// The `'\n'`s of the text.
    pub newlines: u64,
}

/// Calls `f(start, end)` for every word that ends at a delimiter (`' '` or
/// `'\n'`), in order; `text[start..end]` is the word and `text[end]` its
/// delimiter.
#[inline(always)]
pub fn for_each_word(text: &[u8], mut f: impl FnMut(usize, usize)) -> Split {
    let mut start = 0;
    let mut newlines = 0u64;
    let mut base = 0;
    // The last block, padded with zeros (not delimiters), so that one loop
    // (and one call site of `f`, which then inlines) serves every block.
    let mut last = [0u8; 64];
    while base < text.len() {
        let block: &[u8; 64] = match text.get(base..base + 64) {
            Some(block) => block.try_into().expect("a slice of 64 bytes"),
            None => {
                last[..text.len() - base].copy_from_slice(&text[base..]);
                &last
            }
        };
        let (spaces, ends) = masks64(block);
        newlines += u64::from(ends.count_ones());
        let mut delimiters = spaces | ends;
        while delimiters != 0 {
            let end = base + delimiters.trailing_zeros() as usize;
            f(start, end);
            start = end + 1;
            delimiters &= delimiters - 1;
        }
        base += 64;
    }
    Split {
        tail: start,
        newlines,
    }
}

/// Bit masks of the `' '` and the `'\n'` bytes of a 64-byte block.
#[inline(always)]
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

/// The same words with `memchr::memchr2_iter`: the plain path the tests and
/// the `count_file` example compare [`for_each_word`] with.
pub fn for_each_word_memchr(text: &[u8], mut f: impl FnMut(usize, usize)) -> Split {
    let mut start = 0;
    let mut newlines = 0u64;
    for end in memchr::memchr2_iter(b' ', b'\n', text) {
        f(start, end);
        start = end + 1;
        newlines += u64::from(text[end] == b'\n');
    }
    Split {
        tail: start,
        newlines,
    }
}
