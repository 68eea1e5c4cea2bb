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
//! newline mask. The compares are a [`Masks`] kernel: [`Portable`] (SSE2, in
//! every x86_64; plain Rust elsewhere), or on x86_64 [`Avx2`] and
//! [`Avx512`], which exist only once the CPU has been seen to have them.
//! [`for_each_word`] uses [`Portable`]; the counter picks the best kernel
//! once per chunk and compiles its whole loop for it.
//!
//! This is `memchr2`'s job, done in place: `memchr::memchr2_iter` finds the
//! same delimiters ([`for_each_word_memchr`], which the tests compare with),
//! but restarts a search at every match, which on text with a delimiter
//! every 8.6 bytes makes it 2 to 3 times slower than iterating the bits of
//! one mask (`cargo run --release -p sluice-bench --example count_file`).
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

/// A kernel that finds the delimiters of a 64-byte block.
pub trait Masks: Copy {
    /// Bit masks of the `' '` and of the `'\n'` bytes of `block` (bit `i`
    /// for byte `i`).
    fn masks(self, block: &[u8; 64]) -> (u64, u64);
}

/// Calls `f(start, end)` for every word that ends at a delimiter (`' '` or
/// `'\n'`), in order; `text[start..end]` is the word and `text[end]` its
/// delimiter.
#[inline]
pub fn for_each_word(text: &[u8], f: impl FnMut(usize, usize)) -> Split {
    for_each_word_with(Portable, text, f)
}

/// [`for_each_word`] with the kernel `masks`. Inlined into its caller, so that
/// `f` inlines too and the whole loop is compiled for the caller's target
/// features.
#[inline(always)]
pub fn for_each_word_with<M: Masks>(
    masks: M,
    text: &[u8],
    mut f: impl FnMut(usize, usize),
) -> Split {
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
        let (spaces, ends) = masks.masks(block);
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

/// The kernel every CPU has: SSE2 on x86_64 (four 16-byte compares per
/// delimiter), the same with Wasm SIMD on wasm32 built with `+simd128` (the
/// Wasm build of `bench/wasm-counter`), a plain loop elsewhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Portable;

impl Masks for Portable {
    #[inline(always)]
    fn masks(self, block: &[u8; 64]) -> (u64, u64) {
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
                    spaces |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, space)) as u16)
                        << (lane * 16);
                    newlines |= u64::from(_mm_movemask_epi8(_mm_cmpeq_epi8(v, newline)) as u16)
                        << (lane * 16);
                }
                (spaces, newlines)
            }
        }
        #[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
        {
            use std::arch::wasm32::{i8x16_bitmask, i8x16_eq, u8x16_splat, v128_load};
            let space = u8x16_splat(b' ');
            let newline = u8x16_splat(b'\n');
            let (mut spaces, mut newlines) = (0u64, 0u64);
            for lane in 0..4 {
                // SAFETY: the four unaligned 16-byte loads stay inside the
                // 64-byte block; `v128_load` has no alignment requirement.
                let v = unsafe { v128_load(block.as_ptr().add(lane * 16).cast()) };
                spaces |= u64::from(i8x16_bitmask(i8x16_eq(v, space))) << (lane * 16);
                newlines |= u64::from(i8x16_bitmask(i8x16_eq(v, newline))) << (lane * 16);
            }
            (spaces, newlines)
        }
        #[cfg(not(any(
            target_arch = "x86_64",
            all(target_arch = "wasm32", target_feature = "simd128")
        )))]
        {
            let (mut spaces, mut newlines) = (0u64, 0u64);
            for (i, &b) in block.iter().enumerate() {
                spaces |= u64::from(b == b' ') << i;
                newlines |= u64::from(b == b'\n') << i;
            }
            (spaces, newlines)
        }
    }
}

/// The AVX2 kernel: two 32-byte compares per delimiter. A value exists only if
/// the CPU has AVX2, BMI1, BMI2 and POPCNT ([`Avx2::detect`]).
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub struct Avx2(());

#[cfg(target_arch = "x86_64")]
impl Avx2 {
    /// The kernel, if this CPU can run it.
    #[inline]
    pub fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("popcnt"))
        .then_some(Self(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Masks for Avx2 {
    #[inline(always)]
    fn masks(self, block: &[u8; 64]) -> (u64, u64) {
        use std::arch::x86_64::{
            __m256i, _mm256_cmpeq_epi8, _mm256_loadu_si256, _mm256_movemask_epi8, _mm256_set1_epi8,
        };
        // SAFETY: `self` exists only if the CPU has AVX2 (`detect`); the two
        // unaligned 32-byte loads stay inside the 64-byte block.
        unsafe {
            let space = _mm256_set1_epi8(b' ' as i8);
            let newline = _mm256_set1_epi8(b'\n' as i8);
            let low = _mm256_loadu_si256(block.as_ptr().cast::<__m256i>());
            let high = _mm256_loadu_si256(block.as_ptr().add(32).cast::<__m256i>());
            let mask = |v, c| u64::from(_mm256_movemask_epi8(_mm256_cmpeq_epi8(v, c)) as u32);
            (
                mask(low, space) | (mask(high, space) << 32),
                mask(low, newline) | (mask(high, newline) << 32),
            )
        }
    }
}

/// The AVX-512 kernel: one 64-byte compare per delimiter, straight into a
/// mask register. A value exists only if the CPU has AVX-512 F and BW, BMI1,
/// BMI2 and POPCNT ([`Avx512::detect`]).
#[cfg(target_arch = "x86_64")]
#[derive(Debug, Clone, Copy)]
pub struct Avx512(());

#[cfg(target_arch = "x86_64")]
impl Avx512 {
    /// The kernel, if this CPU can run it.
    #[inline]
    pub fn detect() -> Option<Self> {
        (std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("bmi1")
            && std::arch::is_x86_feature_detected!("bmi2")
            && std::arch::is_x86_feature_detected!("popcnt"))
        .then_some(Self(()))
    }
}

#[cfg(target_arch = "x86_64")]
impl Masks for Avx512 {
    #[inline(always)]
    fn masks(self, block: &[u8; 64]) -> (u64, u64) {
        use std::arch::x86_64::{_mm512_cmpeq_epi8_mask, _mm512_loadu_si512, _mm512_set1_epi8};
        // SAFETY: `self` exists only if the CPU has AVX-512 F and BW
        // (`detect`); the unaligned 64-byte load is the block.
        unsafe {
            let v = _mm512_loadu_si512(block.as_ptr().cast());
            (
                _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b' ' as i8)),
                _mm512_cmpeq_epi8_mask(v, _mm512_set1_epi8(b'\n' as i8)),
            )
        }
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
