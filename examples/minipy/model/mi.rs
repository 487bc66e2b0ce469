//! mimalloc as an allocator-api2 [`Allocator`], called at its cheapest (feature `mimalloc`).
//!
//! The `mimalloc` crate's `GlobalAlloc` calls `mi_malloc_aligned(size, align)` and
//! `mi_realloc_aligned` for every request. For the alignment mimalloc gives every block anyway
//! (8 bytes: every size class is a multiple of the word) there are cheaper entry points:
//! `mi_malloc_small` for up to [`MI_SMALL_SIZE_MAX`] bytes (1 KiB; it skips the size test),
//! else `mi_malloc`, and `mi_realloc`. `MiAlloc` uses them, and the aligned calls only above
//! 8 bytes of alignment, which minipy never asks for. Measured with callgrind on the four
//! workloads at size 1 in mode mimalloc, total instructions:
//!
//! | path | nqueens | json_dumps | float | richards |
//! | --- | ---: | ---: | ---: | ---: |
//! | `mi_malloc_aligned` (the crate's `GlobalAlloc`) | 349,453,966 | 92,289,000 | 621,923,055 | 252,188,938 |
//! | `mi_malloc` | 334,083,607 | 90,188,057 | 582,425,689 | 251,296,040 |
//! | `mi_malloc_small`, else `mi_malloc` (this) | 327,070,812 | 89,075,563 | 561,511,725 | 250,611,872 |
//!
//! `mi_free_small` is `mi_free` in mimalloc's default configuration, so frees use `mi_free`.

use core::alloc::Layout;
use core::ffi::c_void;
use core::ptr::NonNull;

use libmimalloc_sys as ffi;
use libmimalloc_sys::MI_SMALL_SIZE_MAX;
use pyalloc::{AllocError, Allocator};

/// The alignment of every block `mi_malloc` returns: its size classes are multiples of the
/// word, and its pages start at least that aligned.
const NATURAL_ALIGN: usize = core::mem::size_of::<usize>();

/// mimalloc (the process-wide instance the C library keeps per thread) as an [`Allocator`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct MiAlloc;

impl MiAlloc {
    /// Turns mimalloc's answer into the `Allocator`'s.
    #[inline(always)]
    fn block(p: *mut c_void, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(
            p as usize % layout.align() == 0,
            "mimalloc misaligned a block"
        );
        match NonNull::new(p.cast::<u8>()) {
            Some(p) => Ok(NonNull::slice_from_raw_parts(p, layout.size())),
            None => Err(AllocError),
        }
    }

    /// A new size for the block `ptr` (from this allocator, its layout `old`) to `new`.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this allocator; on success it is not used again.
    #[inline(always)]
    unsafe fn realloc(ptr: NonNull<u8>, new: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let p = if new.align() <= NATURAL_ALIGN {
            // SAFETY: `ptr` is a live mimalloc block (the caller's contract); mi_realloc keeps
            // the first bytes and the word alignment every block has.
            unsafe { ffi::mi_realloc(ptr.as_ptr().cast(), new.size()) }
        } else {
            // SAFETY: as above; `new.align()` is a power of two (a `Layout`'s).
            unsafe { ffi::mi_realloc_aligned(ptr.as_ptr().cast(), new.size(), new.align()) }
        };
        Self::block(p, new)
    }
}

// SAFETY: blocks come from mimalloc and go back to it (`mi_free` takes blocks of any of its
// allocation calls); a block is valid until freed whatever `MiAlloc` value frees it, since all
// of them are the same process-wide allocator.
unsafe impl Allocator for MiAlloc {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let p = if layout.align() <= NATURAL_ALIGN && layout.size() <= MI_SMALL_SIZE_MAX {
            // SAFETY: `mi_malloc_small` asks for at most `MI_SMALL_SIZE_MAX` bytes, tested just
            // above (zero bytes give a unique block).
            unsafe { ffi::mi_malloc_small(layout.size()) }
        } else if layout.align() <= NATURAL_ALIGN {
            // SAFETY: `mi_malloc` has no precondition.
            unsafe { ffi::mi_malloc(layout.size()) }
        } else {
            // SAFETY: `layout.align()` is a power of two, as `mi_malloc_aligned` requires.
            unsafe { ffi::mi_malloc_aligned(layout.size(), layout.align()) }
        };
        Self::block(p, layout)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, _layout: Layout) {
        // SAFETY: the caller's contract: a live block of this allocator, i.e. of mimalloc.
        unsafe { ffi::mi_free(ptr.as_ptr().cast()) }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        _old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: the caller's contract: a live block of this allocator (any new alignment is
        // served: `realloc` picks the call by it).
        unsafe { Self::realloc(ptr, new_layout) }
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        _old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: as in `grow`.
        unsafe { Self::realloc(ptr, new_layout) }
    }
}
