//! The system allocator, as the core reaches it: std's `System` and libc's `malloc` family, or,
//! with the `glibc-internals` feature, glibc's own entry points behind them.
//!
//! Everything the core takes from "the system" goes through here: the heaps' bookkeeping
//! (`Meta`, which the `meta` module builds on this one), large blocks, the registry of
//! `Global`'s heaps, and the pointers the size-less API passes on because they are not its
//! own. A bottom module: it names the modules above it in prose, not in links.
//!
//! Normally that is `std::alloc::System` and `libc::{malloc, free, realloc,
//! malloc_usable_size}`. But when pyalloc *is* the process's `malloc` (the `pyalloc-malloc`
//! cdylib, loaded with `LD_PRELOAD`), those names resolve to pyalloc's own exports, and every
//! arena-table growth or large block would call back into the allocator that is asking: an
//! endless recursion, or a heap re-entered in the middle of its own slow path. The
//! `glibc-internals` feature points them at the entry points glibc exports for exactly this,
//! `__libc_malloc`, `__libc_calloc`, `__libc_realloc`, `__libc_memalign` and `__libc_free`
//! (mimalloc's and jemalloc's glibc builds do the same), and at glibc's `malloc_usable_size`
//! found with `dlsym(RTLD_NEXT, …)`, glibc having no `__libc_` name for it. The feature is off
//! by default: a program that only links pyalloc keeps the ordinary, portable names.

#[cfg(not(feature = "glibc-internals"))]
pub(crate) use std::alloc::System;

#[cfg(feature = "glibc-internals")]
pub use glibc::System;

/// `free`: the system's.
///
/// # Safety
///
/// `ptr` is null or a live block of the system allocator, not used afterwards.
#[inline]
pub(crate) unsafe fn free(ptr: *mut u8) {
    #[cfg(not(feature = "glibc-internals"))]
    // SAFETY: forwarded contract.
    unsafe {
        libc::free(ptr.cast())
    }
    #[cfg(feature = "glibc-internals")]
    // SAFETY: forwarded contract.
    unsafe {
        glibc::__libc_free(ptr.cast())
    }
}

/// `malloc`: the system's (null when it fails).
#[inline]
pub(crate) fn malloc(size: usize) -> *mut u8 {
    #[cfg(not(feature = "glibc-internals"))]
    // SAFETY: `malloc` has no preconditions.
    unsafe {
        libc::malloc(size).cast()
    }
    #[cfg(feature = "glibc-internals")]
    // SAFETY: `__libc_malloc` is `malloc` and has no preconditions.
    unsafe {
        glibc::__libc_malloc(size).cast()
    }
}

/// `realloc`: the system's.
///
/// # Safety
///
/// `ptr` is null or a live block of the system allocator; on success it is not used again.
#[inline]
pub(crate) unsafe fn realloc(ptr: *mut u8, size: usize) -> *mut u8 {
    #[cfg(not(feature = "glibc-internals"))]
    // SAFETY: forwarded contract.
    unsafe {
        libc::realloc(ptr.cast(), size).cast()
    }
    #[cfg(feature = "glibc-internals")]
    // SAFETY: forwarded contract.
    unsafe {
        glibc::__libc_realloc(ptr.cast(), size).cast()
    }
}

/// `malloc_usable_size`: the system's.
///
/// # Safety
///
/// `ptr` is null or a live block of the system allocator.
#[inline]
pub(crate) unsafe fn malloc_usable_size(ptr: *mut u8) -> usize {
    #[cfg(not(feature = "glibc-internals"))]
    // SAFETY: forwarded contract.
    unsafe {
        libc::malloc_usable_size(ptr.cast())
    }
    #[cfg(feature = "glibc-internals")]
    // SAFETY: forwarded contract.
    unsafe {
        glibc::malloc_usable_size(ptr)
    }
}

#[cfg(feature = "glibc-internals")]
mod glibc {
    use core::alloc::{GlobalAlloc, Layout};
    use core::ffi::c_void;
    use core::ptr::{self, NonNull};
    use core::sync::atomic::{AtomicUsize, Ordering};

    use allocator_api2::alloc::{AllocError, Allocator};

    /// The alignment glibc's `malloc` guarantees on x86-64 and AArch64 (`MALLOC_ALIGNMENT`).
    const MALLOC_ALIGNMENT: usize = 16;

    extern "C" {
        pub(super) fn __libc_malloc(size: usize) -> *mut c_void;
        pub(super) fn __libc_calloc(count: usize, size: usize) -> *mut c_void;
        pub(super) fn __libc_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
        pub(super) fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
        pub(super) fn __libc_free(ptr: *mut c_void);
    }

    /// glibc's `malloc_usable_size`, found once with `dlsym(RTLD_NEXT, …)` (0: not yet).
    static USABLE_SIZE: AtomicUsize = AtomicUsize::new(0);

    type UsableSize = unsafe extern "C" fn(*mut c_void) -> usize;

    /// Looks up glibc's `malloc_usable_size` (the next definition after the object holding
    /// pyalloc, which defines its own). Call it early (pyalloc-malloc does, from its
    /// constructor), so that the look-up does not first happen inside an allocation.
    pub fn resolve_malloc_usable_size() {
        // SAFETY: a NUL-terminated name; `RTLD_NEXT` is valid from a shared object.
        let found = unsafe { libc::dlsym(libc::RTLD_NEXT, c"malloc_usable_size".as_ptr()) };
        USABLE_SIZE.store(found.addr(), Ordering::Release);
    }

    /// glibc's `malloc_usable_size` of a glibc block.
    ///
    /// # Safety
    ///
    /// `ptr` is null or a live block of glibc's allocator.
    pub(super) unsafe fn malloc_usable_size(ptr: *mut u8) -> usize {
        if ptr.is_null() {
            return 0;
        }
        let mut found = USABLE_SIZE.load(Ordering::Acquire);
        if found == 0 {
            resolve_malloc_usable_size();
            found = USABLE_SIZE.load(Ordering::Acquire);
        }
        if found == 0 {
            // Not found (pyalloc linked into the executable, without a next object): the
            // block is at least what glibc could have been asked for, which is unknown; zero
            // is the one answer that never overstates it.
            return 0;
        }
        // SAFETY: `dlsym` found glibc's `malloc_usable_size`, whose signature this is.
        let usable: UsableSize = unsafe { core::mem::transmute::<usize, UsableSize>(found) };
        // SAFETY: the caller's contract.
        unsafe { usable(ptr.cast()) }
    }

    /// The system allocator reached through glibc's `__libc_*` entry points, never through the
    /// `malloc` symbol (which may be pyalloc itself). A [`GlobalAlloc`], and an allocator-api2
    /// [`Allocator`] for the core's own structures.
    #[derive(Clone, Copy, Debug, Default)]
    pub struct System;

    // SAFETY: every block comes from glibc's allocator, which gives non-overlapping blocks of at
    // least the size asked, aligned to `MALLOC_ALIGNMENT` (`__libc_malloc`) or to the alignment
    // asked (`__libc_memalign`), and frees any of them with `__libc_free`.
    unsafe impl GlobalAlloc for System {
        #[inline]
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGNMENT && layout.align() <= layout.size() {
                // SAFETY: no preconditions.
                unsafe { __libc_malloc(layout.size()) }.cast()
            } else {
                // SAFETY: a power-of-two alignment (a `Layout`'s).
                unsafe { __libc_memalign(layout.align(), layout.size()) }.cast()
            }
        }

        #[inline]
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGNMENT && layout.align() <= layout.size() {
                // SAFETY: no preconditions.
                unsafe { __libc_calloc(1, layout.size()) }.cast()
            } else {
                // SAFETY: the caller's contract (non-zero size).
                let block = unsafe { self.alloc(layout) };
                if !block.is_null() {
                    // SAFETY: a fresh block of `layout.size()` bytes.
                    unsafe { block.write_bytes(0, layout.size()) };
                }
                block
            }
        }

        #[inline]
        unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
            // SAFETY: the caller's contract: a live block of this allocator.
            unsafe { __libc_free(ptr.cast()) }
        }

        #[inline]
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            if layout.align() <= MALLOC_ALIGNMENT && layout.align() <= new_size {
                // SAFETY: the caller's contract: a live block of this allocator.
                return unsafe { __libc_realloc(ptr.cast(), new_size) }.cast();
            }
            // SAFETY: the caller guarantees `new_size` rounded up to the alignment fits.
            let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
            // SAFETY: a non-zero size (the caller's contract).
            let fresh = unsafe { self.alloc(new) };
            if !fresh.is_null() {
                // SAFETY: both live and distinct; the old block is then freed.
                unsafe {
                    ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                    __libc_free(ptr.cast());
                }
            }
            fresh
        }
    }

    // SAFETY: blocks come from the `GlobalAlloc` impl above (valid until deallocated, never
    // overlapping); zero-sized requests get a dangling aligned pointer and are never freed;
    // `grow`/`shrink` are allocator-api2's defaults (allocate, copy, deallocate).
    unsafe impl Allocator for System {
        #[inline]
        fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            if layout.size() == 0 {
                return Ok(NonNull::slice_from_raw_parts(dangling(layout), 0));
            }
            // SAFETY: a non-zero size.
            let block = unsafe { GlobalAlloc::alloc(self, layout) };
            NonNull::new(block)
                .map(|b| NonNull::slice_from_raw_parts(b, layout.size()))
                .ok_or(AllocError)
        }

        #[inline]
        fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
            if layout.size() == 0 {
                return Ok(NonNull::slice_from_raw_parts(dangling(layout), 0));
            }
            // SAFETY: a non-zero size.
            let block = unsafe { GlobalAlloc::alloc_zeroed(self, layout) };
            NonNull::new(block)
                .map(|b| NonNull::slice_from_raw_parts(b, layout.size()))
                .ok_or(AllocError)
        }

        #[inline]
        unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
            if layout.size() != 0 {
                // SAFETY: the caller's contract: a live block from `allocate`.
                unsafe { GlobalAlloc::dealloc(self, ptr.as_ptr(), layout) }
            }
        }
    }

    /// A well-aligned dangling pointer for a zero-sized block.
    fn dangling(layout: Layout) -> NonNull<u8> {
        // SAFETY: an alignment is never zero.
        unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(layout.align())) }
    }
}

#[cfg(feature = "glibc-internals")]
pub use glibc::resolve_malloc_usable_size;
