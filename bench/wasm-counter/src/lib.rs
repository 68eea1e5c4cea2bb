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
//! - `distinct() -> n`: the distinct words of the last count.
//!
//! Off wasm32 the crate is empty.

#[cfg(target_arch = "wasm32")]
mod exports {
    use std::cell::RefCell;

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

    /// The distinct words of the last [`count`].
    #[unsafe(no_mangle)]
    pub extern "C" fn distinct() -> u64 {
        COUNTER.with_borrow(|counter| counter.len() as u64)
    }
}
