//! Text helpers tuned for a plugin: [`split`], a `str::split` on an ASCII
//! separator that finds separators 16 bytes at a time.
//!
//! `core`'s `str::split(' ')` searches for each separator with a `memchr`
//! that on wasm32 reads 4 bytes at a time and pays a setup per call, which
//! is most of its cost on short words. [`split`] compares 16 bytes at once
//! with Wasm SIMD (when the plugin is built with `+simd128`, as
//! `scripts/build-plugins` and `sluice build` do) and walks the bits of the
//! match mask, so a line's words come out of a few vector compares.

/// The pieces of `s` between the occurrences of the ASCII character `sep`,
/// exactly as `s.split(sep)` gives them (empty pieces included).
///
/// ```
/// let words: Vec<&str> = sluice_guest::text::split("to be  or", ' ').collect();
/// assert_eq!(words, ["to", "be", "", "or"]);
/// ```
///
/// # Panics
///
/// If `sep` is not ASCII.
pub fn split(s: &str, sep: char) -> Split<'_> {
    assert!(
        sep.is_ascii(),
        "text::split takes an ASCII separator, not {sep:?}"
    );
    Split {
        s,
        sep: sep as u8,
        start: 0,
        scanned: 0,
        base: 0,
        mask: 0,
        done: false,
    }
}

/// The iterator of [`split`].
#[derive(Clone, Debug)]
pub struct Split<'a> {
    s: &'a str,
    sep: u8,
    /// Where the next piece starts.
    start: usize,
    /// How far separators have been looked for.
    scanned: usize,
    /// Where the block of `mask` starts.
    base: usize,
    /// The separators found in the block at `base` and not yet passed: bit
    /// `i` is byte `base + i`.
    mask: u32,
    /// Whether the last piece was returned.
    done: bool,
}

/// The separators among the 16 bytes: bit `i` set if `block[i] == sep`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
#[allow(unsafe_code)]
fn mask16(block: &[u8; 16], sep: u8) -> u32 {
    use core::arch::wasm32::{i8x16_bitmask, i8x16_eq, u8x16_splat, v128_load};
    // SAFETY: `block` is 16 readable bytes; `v128_load` has no alignment
    // requirement.
    let bytes = unsafe { v128_load(block.as_ptr().cast()) };
    u32::from(i8x16_bitmask(i8x16_eq(bytes, u8x16_splat(sep))))
}

/// The separators among the 16 bytes: bit `i` set if `block[i] == sep`.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn mask16(block: &[u8; 16], sep: u8) -> u32 {
    block
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | (u32::from(b == sep) << i))
}

/// The bytes of the 16 that are not ASCII: bit `i` set if `block[i] >= 0x80`.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
#[allow(unsafe_code)]
fn high16(block: &[u8; 16]) -> u32 {
    use core::arch::wasm32::{u8x16_bitmask, v128_load};
    // SAFETY: `block` is 16 readable bytes; `v128_load` has no alignment
    // requirement.
    u32::from(u8x16_bitmask(unsafe { v128_load(block.as_ptr().cast()) }))
}

/// The bytes of the 16 that are not ASCII: bit `i` set if `block[i] >= 0x80`.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn high16(block: &[u8; 16]) -> u32 {
    block
        .iter()
        .enumerate()
        .fold(0, |mask, (i, &b)| mask | (u32::from(b >> 7) << i))
}

/// Whether every byte is ASCII: 16 bytes at a time (with Wasm SIMD), the
/// last 16 overlapping the ones before them, so that a line's tail costs one
/// more load rather than a loop; fewer than 16 with two overlapping loads.
#[inline]
pub(crate) fn is_ascii(bytes: &[u8]) -> bool {
    let len = bytes.len();
    if len < 16 {
        return is_ascii_short(bytes);
    }
    let mut blocks = bytes.chunks_exact(16);
    for block in &mut blocks {
        if high16(block.try_into().expect("16 bytes")) != 0 {
            return false;
        }
    }
    blocks.remainder().is_empty() || high16(bytes[len - 16..].try_into().expect("16 bytes")) == 0
}

/// [`is_ascii`] for a span of many records (a batch of a partition's
/// lines): 64 bytes a test, the rest with [`is_ascii`].
pub(crate) fn is_ascii_span(bytes: &[u8]) -> bool {
    let mut blocks = bytes.chunks_exact(64);
    for block in &mut blocks {
        if any_high64(block.try_into().expect("64 bytes")) {
            return false;
        }
    }
    is_ascii(blocks.remainder())
}

/// Whether any of the 64 bytes is not ASCII.
#[cfg(all(target_arch = "wasm32", target_feature = "simd128"))]
#[inline]
#[allow(unsafe_code)]
fn any_high64(block: &[u8; 64]) -> bool {
    use core::arch::wasm32::{u8x16_bitmask, v128, v128_load, v128_or};
    let at = |i: usize| -> v128 {
        // SAFETY: `i + 16 <= 64`, so 16 readable bytes; `v128_load` has no
        // alignment requirement.
        unsafe { v128_load(block[i..i + 16].as_ptr().cast()) }
    };
    let any = v128_or(v128_or(at(0), at(16)), v128_or(at(32), at(48)));
    u8x16_bitmask(any) != 0
}

/// Whether any of the 64 bytes is not ASCII.
#[cfg(not(all(target_arch = "wasm32", target_feature = "simd128")))]
#[inline]
fn any_high64(block: &[u8; 64]) -> bool {
    let any = block.chunks_exact(8).fold(0, |any, word| {
        any | u64::from_le_bytes(word.try_into().expect("8 bytes"))
    });
    any & 0x8080_8080_8080_8080 != 0
}

/// [`is_ascii`] of fewer than 16 bytes.
#[inline]
fn is_ascii_short(bytes: &[u8]) -> bool {
    let len = bytes.len();
    let le64 = |b: &[u8]| u64::from_le_bytes(b.try_into().expect("8 bytes"));
    let le32 = |b: &[u8]| u64::from(u32::from_le_bytes(b.try_into().expect("4 bytes")));
    let any = if len >= 8 {
        le64(&bytes[..8]) | le64(&bytes[len - 8..])
    } else if len >= 4 {
        le32(&bytes[..4]) | le32(&bytes[len - 4..])
    } else {
        bytes.iter().fold(0, |any, &b| any | u64::from(b))
    };
    any & 0x8080_8080_8080_8080 == 0
}

/// Bytes that [`is_ascii`] accepted, as a `str`, without checking them
/// again.
#[inline]
#[allow(unsafe_code)]
pub(crate) fn ascii_str(bytes: &[u8]) -> &str {
    assert!(
        cfg!(not(debug_assertions)) || bytes.is_ascii(),
        "ascii_str takes ASCII"
    );
    // SAFETY: callers pass bytes `is_ascii` accepted, and ASCII is UTF-8.
    unsafe { std::str::from_utf8_unchecked(bytes) }
}

impl<'a> Iterator for Split<'a> {
    type Item = &'a str;

    #[inline]
    #[allow(unsafe_code)]
    fn next(&mut self) -> Option<&'a str> {
        let bytes = self.s.as_bytes();
        loop {
            if self.mask != 0 {
                let end = self.base + self.mask.trailing_zeros() as usize;
                self.mask &= self.mask - 1;
                // SAFETY: `start <= end < len`: `end` is the place of a
                // separator after `start` (the place after the one before,
                // or 0). An ASCII byte is never inside a multi-byte
                // character, so both are character boundaries. (A checked
                // slice tests both, a tenth of a word count's split.)
                let piece = unsafe { self.s.get_unchecked(self.start..end) };
                self.start = end + 1;
                return Some(piece);
            }
            if let Some(block) = bytes.get(self.scanned..self.scanned + 16) {
                self.base = self.scanned;
                self.mask = mask16(block.try_into().expect("16 bytes"), self.sep);
                self.scanned += 16;
                continue;
            }
            let len = bytes.len();
            if self.scanned < len {
                // The tail, shorter than a block: in a text of a block or
                // more, the last 16 bytes, whose bits before `scanned` are
                // shifted out (one compare, not a loop a byte).
                self.base = self.scanned;
                self.mask = match len.checked_sub(16) {
                    Some(last) => {
                        let block = bytes[last..].try_into().expect("16 bytes");
                        mask16(block, self.sep) >> (self.scanned - last)
                    }
                    None => bytes
                        .iter()
                        .enumerate()
                        .fold(0, |mask, (i, &b)| mask | (u32::from(b == self.sep) << i)),
                };
                self.scanned = len;
                continue;
            }
            if self.done {
                return None;
            }
            self.done = true;
            return Some(&self.s[self.start..]);
        }
    }
}

impl std::iter::FusedIterator for Split<'_> {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// The same pieces as `str::split`, on text with separators at any
        /// place (runs of them, at both ends, across 16-byte blocks) and
        /// characters of every width.
        #[test]
        fn splits_like_str_split(
            s in "[ a,é€😀]{0,70}",
            sep in prop_oneof![Just(' '), Just(','), Just('a'), Just('\u{0}')],
        ) {
            let expected: Vec<&str> = s.split(sep).collect();
            let got: Vec<&str> = split(&s, sep).collect();
            prop_assert_eq!(got, expected);
        }
    }

    proptest! {
        /// The same answer as `<[u8]>::is_ascii`, whatever the length and
        /// wherever a non-ASCII byte is.
        #[test]
        fn is_ascii_agrees(mut bytes in proptest::collection::vec(0u8..0x80, 0..300), at in any::<usize>(), high in 0x80u8..) {
            prop_assert!(is_ascii(&bytes));
            prop_assert!(is_ascii_span(&bytes));
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] = high;
                prop_assert!(!is_ascii(&bytes));
                prop_assert!(!is_ascii_span(&bytes));
            }
        }
    }

    #[test]
    fn edges() {
        for s in [
            "",
            " ",
            "  ",
            "a",
            "a ",
            " a",
            &" ".repeat(16),
            &"x".repeat(16),
            &"x ".repeat(20),
        ] {
            let expected: Vec<&str> = s.split(' ').collect();
            assert_eq!(split(s, ' ').collect::<Vec<_>>(), expected, "{s:?}");
        }
    }

    #[test]
    #[should_panic(expected = "ASCII separator")]
    fn a_separator_that_is_not_ascii_is_refused() {
        let _ = split("é", 'é');
    }
}
