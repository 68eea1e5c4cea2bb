//! The plugin's allocator: small allocations from 64 KiB chunks, a chunk
//! reused once everything in it is freed.
//!
//! A guest call allocates many small, short-lived values — a `String` per
//! word, a `Vec` per line — and frees them all before it returns. A general
//! allocator (`dlmalloc`, the default on wasm32) pays for free lists and
//! coalescing on every one of them. Here an allocation of at most
//! [`SMALL`] bytes (alignment at most [`MAX_ALIGN`]) is a pointer bump in
//! the current chunk plus one to the chunk's count of live allocations; a
//! free is one decrement. A chunk whose count falls to zero is empty: the
//! current chunk starts over at once, another one goes back to a short list
//! of free chunks. Larger allocations, and chunks themselves, come from the
//! fallback allocator (`System`).
//!
//! Nothing has to be proven about lifetimes: a value that outlives its call
//! only keeps its own chunk from being reused. The cost of that is memory,
//! at most a chunk per long-lived small value; the host's recycling of
//! instances (`--recycle-above-growth`) bounds it like any other growth.
//!
//! Memory from the fallback can reach `dealloc` too, and the reverse must
//! never happen: wasi-libc frees with `free` what the canonical ABI
//! allocated with `cabi_realloc` (an environment list, a directory entry's
//! name), so the SDK defines `cabi_realloc` on the fallback (`System`, which
//! is `malloc`), overriding the standard library's weak definition on the
//! global allocator. The bindings drop the buffers the host lowers (a
//! partition's rows) through Rust's allocator, so `dealloc` asks which
//! chunks are its own (a bit per 64 KiB of the 4 GiB address space, 8 KiB
//! in all) rather than trust the layout: a small block that is not in one
//! of its chunks goes to the fallback.
//!
//! [`Arena`] is installed as the global allocator on single-threaded wasm32
//! (the `allocator` feature, on by default; turn it off with
//! `default-features = false` to use another one). Its logic is tested
//! natively on an instance of its own.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout};
use std::cell::UnsafeCell;
use std::ptr;

/// The size and the alignment of a chunk: one wasm page.
pub(crate) const CHUNK: usize = 64 * 1024;
/// The largest allocation served from a chunk.
pub(crate) const SMALL: usize = 2048;
/// The largest alignment served from a chunk.
pub(crate) const MAX_ALIGN: usize = 16;
/// How many empty chunks are kept for reuse; more go back to the fallback.
const KEEP_FREE: usize = 32;
/// Bytes at the start of a chunk that hold its [`Header`].
const HEADER: usize = 16;

/// The start of every chunk.
#[repr(C)]
struct Header {
    /// Allocations in the chunk not freed yet.
    live: usize,
    /// The next chunk of the free list, while the chunk is in it.
    next_free: *mut Header,
}

const _: () = assert!(size_of::<Header>() <= HEADER && HEADER.is_multiple_of(MAX_ALIGN));
const _: () = assert!(HEADER + SMALL + MAX_ALIGN <= CHUNK);

/// A chunk allocator in front of `A`. Not thread-safe: see the `Sync` impl.
pub(crate) struct Arena<A> {
    fallback: A,
    state: UnsafeCell<State>,
}

struct State {
    /// The chunk allocations are bumped from (null before the first one).
    chunk: *mut Header,
    /// The next free byte of `chunk`.
    cur: usize,
    /// The end of `chunk`.
    end: usize,
    /// Empty chunks, linked through `next_free`.
    free: *mut Header,
    free_len: usize,
    /// The chunks taken from the fallback and not given back.
    owned: Chunks,
}

/// A set of chunks: a bit per possible chunk of the 32-bit address space.
#[cfg(target_pointer_width = "32")]
struct Chunks([u32; 1 << 11]);

#[cfg(target_pointer_width = "32")]
impl Chunks {
    const fn new() -> Self {
        Self([0; 1 << 11])
    }
    fn bit(chunk: usize) -> (usize, u32) {
        let index = chunk / CHUNK;
        (index / 32, 1 << (index % 32))
    }
    fn insert(&mut self, chunk: usize) {
        let (word, bit) = Self::bit(chunk);
        self.0[word] |= bit;
    }
    fn remove(&mut self, chunk: usize) {
        let (word, bit) = Self::bit(chunk);
        self.0[word] &= !bit;
    }
    #[inline]
    fn contains(&self, chunk: usize) -> bool {
        let (word, bit) = Self::bit(chunk);
        self.0[word] & bit != 0
    }
}

/// A set of chunks (natively, where the arena only runs in tests).
#[cfg(not(target_pointer_width = "32"))]
struct Chunks(Vec<usize>);

#[cfg(not(target_pointer_width = "32"))]
impl Chunks {
    const fn new() -> Self {
        Self(Vec::new())
    }
    fn insert(&mut self, chunk: usize) {
        self.0.push(chunk);
    }
    fn remove(&mut self, chunk: usize) {
        self.0.retain(|&c| c != chunk);
    }
    fn contains(&self, chunk: usize) -> bool {
        self.0.contains(&chunk)
    }
}

// SAFETY: the arena is only installed (and so only shared) where there is a
// single thread: wasm32 without the `atomics` feature, where `std` cannot
// spawn threads. Natively it is not `Sync`, and tests use it from one thread.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl<A: Sync> Sync for Arena<A> {}

impl<A> Arena<A> {
    /// An arena with no chunk yet.
    pub(crate) const fn new(fallback: A) -> Self {
        Self {
            fallback,
            state: UnsafeCell::new(State {
                chunk: ptr::null_mut(),
                cur: 0,
                end: 0,
                free: ptr::null_mut(),
                free_len: 0,
                owned: Chunks::new(),
            }),
        }
    }
}

/// Whether an allocation of `layout` comes from a chunk.
#[inline]
fn is_small(layout: Layout) -> bool {
    layout.size() <= SMALL && layout.align() <= MAX_ALIGN
}

fn chunk_layout() -> Layout {
    Layout::from_size_align(CHUNK, CHUNK).expect("a valid layout")
}

impl<A: GlobalAlloc> Arena<A> {
    /// Bumps `layout` from the current chunk, if it fits.
    ///
    /// # Safety
    /// `layout` is small; the caller holds the only access to the state.
    #[inline]
    unsafe fn bump(state: &mut State, layout: Layout) -> Option<*mut u8> {
        let start = (state.cur + layout.align() - 1) & !(layout.align() - 1);
        let next = start + layout.size();
        if state.chunk.is_null() || next > state.end {
            return None;
        }
        state.cur = next;
        // SAFETY: `chunk` is a live chunk, its header initialized.
        unsafe { (*state.chunk).live += 1 };
        Some(start as *mut u8)
    }

    /// Makes room for a small allocation: restarts the current chunk if it
    /// is empty, else moves to a free chunk or a new one. `None` if the
    /// fallback has no memory.
    #[cold]
    unsafe fn next_chunk(&self, state: &mut State) -> Option<()> {
        let old = state.chunk;
        // SAFETY: a non-null `chunk` is live with an initialized header.
        if !old.is_null() && unsafe { (*old).live } == 0 {
            state.cur = old as usize + HEADER;
            return Some(());
        }
        // The old chunk, if any, still holds live allocations: it is
        // released by the free of its last one.
        let chunk = if state.free.is_null() {
            // SAFETY: the layout is valid and not zero-sized.
            let chunk = unsafe { self.fallback.alloc(chunk_layout()) }.cast::<Header>();
            if chunk.is_null() {
                return None;
            }
            state.owned.insert(chunk as usize);
            chunk
        } else {
            let chunk = state.free;
            // SAFETY: chunks in the free list are live with initialized headers.
            state.free = unsafe { (*chunk).next_free };
            state.free_len -= 1;
            chunk
        };
        // SAFETY: `chunk` is CHUNK bytes, CHUNK-aligned, ours.
        unsafe {
            chunk.write(Header {
                live: 0,
                next_free: ptr::null_mut(),
            })
        };
        state.chunk = chunk;
        state.cur = chunk as usize + HEADER;
        state.end = chunk as usize + CHUNK;
        Some(())
    }

    /// Takes back an empty chunk that is not the current one.
    unsafe fn release(&self, state: &mut State, chunk: *mut Header) {
        if state.free_len < KEEP_FREE {
            // SAFETY: the chunk is live and empty; the list owns it now.
            unsafe { (*chunk).next_free = state.free };
            state.free = chunk;
            state.free_len += 1;
        } else {
            state.owned.remove(chunk as usize);
            // SAFETY: the chunk came from the fallback with this layout.
            unsafe { self.fallback.dealloc(chunk.cast(), chunk_layout()) };
        }
    }
}

// SAFETY: every small allocation lies inside one CHUNK-aligned chunk (it is
// at most SMALL bytes and bumped only while it fits), so `dealloc` finds its
// chunk by masking the pointer; a chunk is reused only when its count of
// live allocations is zero. Other allocations go to the fallback; a block is
// the arena's only if its layout is small and its chunk is one the arena
// owns (a chunk's memory is the arena's alone while it is in `owned`), so a
// block the fallback made, whatever its layout, goes back to the fallback.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Arena<A> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !is_small(layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.fallback.alloc(layout) };
        }
        // SAFETY: single-threaded (see `Sync`), and no reference to the
        // state outlives this call.
        let state = unsafe { &mut *self.state.get() };
        // SAFETY: the layout is small.
        if let Some(p) = unsafe { Self::bump(state, layout) } {
            return p;
        }
        // SAFETY: as above.
        match unsafe { self.next_chunk(state) } {
            // SAFETY: a fresh or empty chunk has room for any small layout.
            Some(()) => unsafe { Self::bump(state, layout) }.expect("room in a new chunk"),
            None => ptr::null_mut(),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as in `alloc`.
        let state = unsafe { &mut *self.state.get() };
        let chunk = (ptr as usize & !(CHUNK - 1)) as *mut Header;
        if !is_small(layout) || !state.owned.contains(chunk as usize) {
            // SAFETY: not in a chunk, so from the fallback.
            return unsafe { self.fallback.dealloc(ptr, layout) };
        }
        // SAFETY: `ptr` was bumped from this chunk, which is live until its
        // count reaches zero.
        let live = unsafe {
            (*chunk).live -= 1;
            (*chunk).live
        };
        if live == 0 {
            if chunk == state.chunk {
                state.cur = chunk as usize + HEADER;
            } else {
                // SAFETY: empty, and not the current chunk.
                unsafe { self.release(state, chunk) };
            }
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_small(layout) {
            // SAFETY: forwarded with the caller's guarantees.
            return unsafe { self.fallback.alloc_zeroed(layout) };
        }
        // SAFETY: as in `alloc`.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: `p` is `layout.size()` writable bytes.
            unsafe { ptr::write_bytes(p, 0, layout.size()) };
        }
        p
    }

    #[inline]
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size` with the old alignment is a valid layout (the
        // caller's guarantee).
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: as in `alloc`; the reference ends before any other call.
        let ours = {
            let state = unsafe { &*self.state.get() };
            state.owned.contains(ptr as usize & !(CHUNK - 1))
        };
        match (is_small(layout) && ours, is_small(new_layout)) {
            (false, false) => {
                // SAFETY: forwarded with the caller's guarantees.
                return unsafe { self.fallback.realloc(ptr, layout, new_size) };
            }
            (true, true) => {
                if new_size <= layout.size() {
                    // Shrinking in place: the bytes stay the chunk's until it
                    // is empty.
                    return ptr;
                }
                // SAFETY: as in `alloc`.
                let state = unsafe { &mut *self.state.get() };
                // The last allocation of the current chunk grows in place.
                if ptr as usize + layout.size() == state.cur && ptr as usize + new_size <= state.end
                {
                    state.cur = ptr as usize + new_size;
                    return ptr;
                }
            }
            _ => {}
        }
        // SAFETY: a valid layout, as above.
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            // SAFETY: both blocks are valid for the smaller size and distinct.
            unsafe {
                ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

/// The canonical ABI's allocator, on `System` (`malloc`): wasi-libc frees
/// with `free` what it gets through it. Overrides the standard library's
/// weak definition, which uses the global allocator (this arena).
///
/// # Safety
///
/// As the canonical ABI calls it: `old_ptr`/`old_len` a block it got from
/// this function (or null and 0), `align` a power of two.
#[cfg(all(
    feature = "allocator",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(
    old_ptr: *mut u8,
    old_len: usize,
    align: usize,
    new_len: usize,
) -> *mut u8 {
    use std::alloc::System;
    let ptr = if old_len == 0 {
        if new_len == 0 {
            return align as *mut u8;
        }
        // SAFETY: a non-zero size and a power-of-two alignment.
        unsafe { System.alloc(Layout::from_size_align_unchecked(new_len, align)) }
    } else {
        // SAFETY: the block came from here with this size and alignment.
        unsafe {
            System.realloc(
                old_ptr,
                Layout::from_size_align_unchecked(old_len, align),
                new_len,
            )
        }
    };
    if ptr.is_null() {
        std::process::abort();
    }
    ptr
}

/// Keeps [`cabi_realloc`] in the link even if nothing in Rust calls it.
#[cfg(all(
    feature = "allocator",
    target_arch = "wasm32",
    not(target_feature = "atomics")
))]
#[used]
static KEEP_CABI_REALLOC: unsafe extern "C" fn(*mut u8, usize, usize, usize) -> *mut u8 =
    cabi_realloc;

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::alloc::System;
    use std::cell::Cell;

    /// The fallback, counting the bytes it has out.
    #[derive(Default)]
    struct Counting {
        out: Cell<isize>,
    }

    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            self.out.set(self.out.get() + layout.size() as isize);
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            self.out.set(self.out.get() - layout.size() as isize);
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    #[derive(Debug, Clone)]
    enum Op {
        Alloc {
            size: usize,
            align_log2: u32,
            zeroed: bool,
        },
        Free(usize),
        Realloc(usize, usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        // Sizes around the small limit and beyond, alignments up to 64.
        let size = prop_oneof![
            1usize..64,
            1usize..=SMALL + 64,
            SMALL - 8..SMALL + 8,
            1usize..20_000
        ];
        prop_oneof![
            4 => (size.clone(), 0u32..7, any::<bool>()).prop_map(|(size, align_log2, zeroed)| Op::Alloc { size, align_log2, zeroed }),
            3 => any::<usize>().prop_map(Op::Free),
            2 => (any::<usize>(), size).prop_map(|(i, s)| Op::Realloc(i, s)),
        ]
    }

    /// A live block: where, its layout, and the byte it is filled with.
    struct Block {
        ptr: *mut u8,
        layout: Layout,
        fill: u8,
    }

    fn check(block: &Block) {
        let bytes = unsafe { std::slice::from_raw_parts(block.ptr, block.layout.size()) };
        assert!(
            bytes.iter().all(|&b| b == block.fill),
            "a block was overwritten"
        );
        assert_eq!(block.ptr as usize % block.layout.align(), 0, "misaligned");
    }

    proptest! {
        /// Any sequence of allocations, frees and reallocations gives
        /// aligned blocks that keep their contents and never overlap (each
        /// is filled with its own byte and checked after every step), and
        /// once everything is freed the fallback has no more than the kept
        /// free chunks out.
        #[test]
        fn blocks_keep_their_bytes_and_everything_comes_back(ops in proptest::collection::vec(op(), 1..400)) {
            let arena = Arena::new(Counting::default());
            let mut live: Vec<Block> = Vec::new();
            let mut next_fill = 1u8;
            for op in ops {
                match op {
                    Op::Alloc { size, align_log2, zeroed } => {
                        let layout = Layout::from_size_align(size, 1 << align_log2).unwrap();
                        let ptr = unsafe { if zeroed { arena.alloc_zeroed(layout) } else { arena.alloc(layout) } };
                        prop_assert!(!ptr.is_null());
                        if zeroed {
                            let bytes = unsafe { std::slice::from_raw_parts(ptr, size) };
                            prop_assert!(bytes.iter().all(|&b| b == 0), "alloc_zeroed gave dirty bytes");
                        }
                        next_fill = next_fill.wrapping_add(1).max(1);
                        unsafe { ptr::write_bytes(ptr, next_fill, size) };
                        live.push(Block { ptr, layout, fill: next_fill });
                    }
                    Op::Free(i) if !live.is_empty() => {
                        let block = live.swap_remove(i % live.len());
                        check(&block);
                        unsafe { arena.dealloc(block.ptr, block.layout) };
                    }
                    Op::Realloc(i, size) if !live.is_empty() => {
                        let i = i % live.len();
                        let block = &mut live[i];
                        check(block);
                        let ptr = unsafe { arena.realloc(block.ptr, block.layout, size) };
                        prop_assert!(!ptr.is_null());
                        let kept = block.layout.size().min(size);
                        let bytes = unsafe { std::slice::from_raw_parts(ptr, kept) };
                        prop_assert!(bytes.iter().all(|&b| b == block.fill), "realloc lost bytes");
                        block.ptr = ptr;
                        block.layout = Layout::from_size_align(size, block.layout.align()).unwrap();
                        unsafe { ptr::write_bytes(ptr, block.fill, size) };
                    }
                    _ => {}
                }
                for block in &live {
                    check(block);
                }
            }
            for block in live.drain(..) {
                check(&block);
                unsafe { arena.dealloc(block.ptr, block.layout) };
            }
            let out = arena.fallback.out.get();
            let kept = (KEEP_FREE + 1) * CHUNK;
            prop_assert!(out <= kept as isize, "{out} bytes still out");
        }
    }

    /// A small block the fallback made (what the canonical ABI allocates
    /// with wasi-libc's `malloc`) is given back to the fallback, and
    /// reallocating one moves it out of the fallback safely.
    #[test]
    fn small_blocks_of_the_fallback_go_back_to_it() {
        let arena = Arena::new(Counting::default());
        let layout = Layout::from_size_align(24, 8).unwrap();
        // An arena chunk exists, so masks of fallback pointers are tested
        // against a non-empty set.
        let ours = unsafe { arena.alloc(layout) };
        let theirs = unsafe { arena.fallback.alloc(layout) };
        let before = arena.fallback.out.get();
        unsafe { arena.dealloc(theirs, layout) };
        assert_eq!(arena.fallback.out.get(), before - 24);
        let theirs = unsafe { arena.fallback.alloc(layout) };
        unsafe { ptr::write_bytes(theirs, 7, 24) };
        let moved = unsafe { arena.realloc(theirs, layout, 100) };
        let bytes = unsafe { std::slice::from_raw_parts(moved, 24) };
        assert!(bytes.iter().all(|&b| b == 7));
        assert_eq!(
            arena.fallback.out.get(),
            before - 24,
            "the old block went back"
        );
        unsafe {
            arena.dealloc(moved, Layout::from_size_align(100, 8).unwrap());
            arena.dealloc(ours, layout);
        }
    }

    /// The pattern of a word count call: many small values, freed in
    /// order, reuse the same chunk instead of taking new ones.
    #[test]
    fn short_lived_values_reuse_one_chunk() {
        let arena = Arena::new(Counting::default());
        let layout = Layout::from_size_align(9, 1).unwrap();
        for _ in 0..100_000 {
            let a = unsafe { arena.alloc(layout) };
            let b = unsafe { arena.alloc(layout) };
            unsafe {
                arena.dealloc(a, layout);
                arena.dealloc(b, layout);
            }
        }
        assert_eq!(arena.fallback.out.get(), CHUNK as isize);
    }

    /// A value that outlives the others keeps only its own chunk.
    #[test]
    fn a_long_lived_value_pins_only_its_chunk() {
        let arena = Arena::new(Counting::default());
        let layout = Layout::from_size_align(1000, 8).unwrap();
        let pinned = unsafe { arena.alloc(layout) };
        let mut blocks = Vec::new();
        for _ in 0..1000 {
            blocks.push(unsafe { arena.alloc(layout) });
        }
        for b in blocks {
            unsafe { arena.dealloc(b, layout) };
        }
        // The pinned chunk, and the free chunks kept for reuse.
        let out = arena.fallback.out.get() as usize;
        assert!(out <= (KEEP_FREE + 2) * CHUNK, "{out}");
        unsafe { arena.dealloc(pinned, layout) };
    }
}
