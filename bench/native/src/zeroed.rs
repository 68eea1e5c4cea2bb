//! Large zeroed arrays on huge pages, for the hash table's slots.
//!
//! A table of 100,000 words is 8 MiB of slots, and the words a Zipf text
//! hits most are spread over all of it. On 4 KiB pages that is 2,048 pages,
//! more than the TLB holds, so nearly every lookup would also walk the page
//! tables. On Linux an array of 2 MiB or more is mapped on its own
//! (`mmap`, 2 MiB-aligned) and marked `MADV_HUGEPAGE`, so that with
//! transparent huge pages in `madvise` or `always` mode it sits on a few
//! 2 MiB pages. Fresh anonymous memory reads as zeros, so nothing is written
//! to create the array. Elsewhere, and for small arrays, it is a `Vec`.

use std::ops::{Deref, DerefMut};
use std::ptr::NonNull;

/// Arrays this large or larger get their own huge-page mapping.
#[cfg(target_os = "linux")]
const HUGE: usize = 2 << 20;

/// Types whose all-zero bytes are a valid value, equal to `T::default()`.
///
/// # Safety
///
/// Implement it only for such types: plain integers, and `#[repr(C)]`
/// structs of them.
pub unsafe trait Zeroable: Copy + Default {}

// SAFETY: every bit pattern is a `u64`, and zero is `u64::default()`.
unsafe impl Zeroable for u64 {}

/// A boxed slice of `T` whose every byte starts at zero.
pub struct ZeroedArray<T: Zeroable> {
    /// `len` values of `T`, owned as `owner` says.
    ptr: NonNull<T>,
    len: usize,
    owner: Owner,
}

/// Who owns the memory behind a [`ZeroedArray`].
#[derive(Debug, Clone, Copy)]
enum Owner {
    /// A boxed slice, leaked into the raw parts.
    Heap,
    /// Our own mapping (the array starts 2 MiB-aligned inside it).
    #[cfg(target_os = "linux")]
    Mapped {
        base: *mut libc::c_void,
        mapped: usize,
    },
}

// SAFETY: the memory is owned exclusively by the array, as a `Vec`'s buffer
// is; `T`'s own `Send`/`Sync` decide.
unsafe impl<T: Zeroable + Send> Send for ZeroedArray<T> {}
// SAFETY: as above.
unsafe impl<T: Zeroable + Sync> Sync for ZeroedArray<T> {}

impl<T: Zeroable> ZeroedArray<T> {
    /// `len` values, all zero.
    pub fn new(len: usize) -> Self {
        #[cfg(target_os = "linux")]
        {
            let bytes = len * size_of::<T>();
            if bytes >= HUGE
                && align_of::<T>() <= HUGE
                && let Some(array) = Self::mapped(len, bytes)
            {
                return array;
            }
        }
        let boxed: Box<[T]> = vec![T::default(); len].into_boxed_slice();
        let ptr = NonNull::new(Box::into_raw(boxed).cast::<T>()).expect("a box is not null");
        Self {
            ptr,
            len,
            owner: Owner::Heap,
        }
    }

    #[cfg(target_os = "linux")]
    fn mapped(len: usize, bytes: usize) -> Option<Self> {
        let mapped = bytes.div_ceil(HUGE) * HUGE + HUGE;
        // SAFETY: an anonymous private mapping of fresh memory, no file, no
        // fixed address; the result is checked before use.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                mapped,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let offset = (HUGE - base as usize % HUGE) % HUGE;
        // SAFETY: `offset < HUGE` and `mapped >= bytes + HUGE`, so
        // `ptr..ptr + bytes` lies inside the mapping; `ptr` is 2 MiB-aligned,
        // hence aligned for `T`.
        let ptr = unsafe { base.cast::<u8>().add(offset) }.cast::<T>();
        // SAFETY: advice on our own mapping; failure only means small pages.
        unsafe { libc::madvise(ptr.cast(), bytes.div_ceil(HUGE) * HUGE, libc::MADV_HUGEPAGE) };
        Some(Self {
            ptr: NonNull::new(ptr)?,
            len,
            owner: Owner::Mapped { base, mapped },
        })
    }
}

impl<T: Zeroable> Deref for ZeroedArray<T> {
    type Target = [T];

    #[inline(always)]
    fn deref(&self) -> &[T] {
        // SAFETY: `ptr` points to `len` initialized values of `T` that the
        // array owns (a boxed slice's, or the kernel's zeroed pages, which
        // `Zeroable` makes valid values); the borrow of `self` guards them.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> DerefMut for ZeroedArray<T> {
    #[inline(always)]
    fn deref_mut(&mut self) -> &mut [T] {
        // SAFETY: as in `deref`, and `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }
}

impl<T: Zeroable> Drop for ZeroedArray<T> {
    fn drop(&mut self) {
        match self.owner {
            Owner::Heap => {
                let slice = std::ptr::slice_from_raw_parts_mut(self.ptr.as_ptr(), self.len);
                // SAFETY: `ptr` and `len` are the raw parts of the boxed slice
                // made in `new`, rebuilt once, here.
                drop(unsafe { Box::from_raw(slice) });
            }
            #[cfg(target_os = "linux")]
            Owner::Mapped { base, mapped } => {
                // SAFETY: `base..base + mapped` is the mapping made in
                // `mapped`, unmapped once, here; no borrow of it outlives `self`.
                unsafe { libc::munmap(base, mapped) };
            }
        }
    }
}

impl<T: Zeroable> Clone for ZeroedArray<T> {
    fn clone(&self) -> Self {
        let mut copy = Self::new(self.len());
        copy.copy_from_slice(self);
        copy
    }
}

impl<T: Zeroable> std::fmt::Debug for ZeroedArray<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ZeroedArray")
            .field("len", &self.len)
            .field("owner", &self.owner)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_and_large_arrays_start_at_zero_and_keep_what_is_written() {
        for len in [0, 1, 1000, (4 << 20) / 8 + 3] {
            let mut array = ZeroedArray::<u64>::new(len);
            assert_eq!(array.len(), len);
            assert!(array.iter().all(|&v| v == 0));
            for (i, v) in array.iter_mut().enumerate() {
                *v = i as u64;
            }
            let copy = array.clone();
            assert!(copy.iter().enumerate().all(|(i, &v)| v == i as u64));
            drop(array);
            assert_eq!(copy.len(), len);
        }
    }
}
