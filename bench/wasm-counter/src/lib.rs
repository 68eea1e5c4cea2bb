//! The native baseline's word counter ([`sluice_bench::words::WordCounter`],
//! the same code that `native-wordcount` runs) as a core WebAssembly module,
//! so that `bench/wasm-ceiling` can run the same hand-tuned loop natively,
//! inside wasmtime, and beside a Sluice plugin's chain over the same blocks:
//! what the sandbox itself costs, apart from what Sluice's SDK and contract
//! cost.
//!
//! Built by `bench/wasm-ceiling` for `wasm32-wasip2` with `+simd128` (the
//! delimiter kernel's compares) and `+wide-arithmetic` (the hash's 64×64→128
//! multiply as one instruction, which wasmtime enables with
//! `Config::wasm_wide_arithmetic`), linked as a plain module
//! (`--skip-wit-component`). Its only imports are the WASI functions `std`
//! links for a panic's message, which counting never calls. It exports
//!
//! - `buffer(len) -> ptr`: room for `len` bytes of text in linear memory;
//! - `count(ptr, len) -> words`: empties the counter, then counts the words
//!   of the text at `ptr` (whole lines);
//! - `distinct() -> n`: the distinct words of the last count;
//! - `check_masks(blocks) -> failed`: the delimiter kernel as built here
//!   (Wasm SIMD, which no native test reaches) against a byte loop on
//!   `blocks` pseudo-random blocks; how many differ.
//!
//! Off wasm32 the crate is empty.

#[cfg(target_arch = "wasm32")]
mod exports {
    use std::cell::RefCell;

    use sluice_bench::split::{Masks, Portable};
    use sluice_bench::words::WordCounter;

    thread_local! {
        static COUNTER: RefCell<WordCounter> = RefCell::new(WordCounter::with_capacity(100_000));
    }

    /// Room for `len` bytes, never freed (one buffer for a whole run).
    #[unsafe(no_mangle)]
    pub extern "C" fn buffer(len: usize) -> *mut u8 {
        Vec::<u8>::with_capacity(len).leak().as_mut_ptr()
    }

    /// Counts the words of the `len` bytes at `ptr`, which `buffer` gave.
    ///
    /// # Safety
    ///
    /// `ptr..ptr + len` is inside a buffer from [`buffer`].
    #[unsafe(no_mangle)]
    pub unsafe extern "C" fn count(ptr: *const u8, len: usize) -> u64 {
        // SAFETY: the caller's promise.
        let text = unsafe { std::slice::from_raw_parts(ptr, len) };
        COUNTER.with_borrow_mut(|counter| count_words(counter, text))
    }

    /// The count, compiled apart from the thread-local's borrow.
    #[inline(never)]
    fn count_words(counter: &mut WordCounter, text: &[u8]) -> u64 {
        counter.clear();
        counter.count(text).words
    }

    /// Compares [`Portable`]'s masks (its Wasm SIMD path in this build)
    /// with a byte-by-byte loop on `blocks` pseudo-random 64-byte blocks of
    /// spaces, newlines and any other byte (those of 0x80 and up too);
    /// returns how many blocks differ.
    #[unsafe(no_mangle)]
    pub extern "C" fn check_masks(blocks: u32) -> u32 {
        let mut state = 0x9e37_79b9_7f4a_7c15_u64;
        let mut failed = 0;
        for _ in 0..blocks {
            let mut block = [0u8; 64];
            for byte in &mut block {
                // xorshift64
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                *byte = match state % 4 {
                    0 => b' ',
                    1 => b'\n',
                    _ => (state >> 8) as u8,
                };
            }
            let expected = block
                .iter()
                .enumerate()
                .fold((0, 0), |(spaces, ends), (i, &b)| {
                    (
                        spaces | u64::from(b == b' ') << i,
                        ends | u64::from(b == b'\n') << i,
                    )
                });
            if Portable.masks(&block) != expected {
                failed += 1;
            }
        }
        failed
    }

    /// The distinct words of the last [`count`].
    #[unsafe(no_mangle)]
    pub extern "C" fn distinct() -> u64 {
        COUNTER.with_borrow(|counter| counter.len() as u64)
    }
}
