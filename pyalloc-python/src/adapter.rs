//! CPython's `PyMemAllocatorEx` (four `extern "C"` functions and a context pointer) over an
//! allocator that frees without a size.
//!
//! CPython's rules, which every domain's allocator follows (obmalloc.c): a zero-byte request
//! returns a distinct, non-NULL pointer; `calloc` returns NULL when `nelem * elsize`
//! overflows; `realloc(NULL, n)` is `malloc(n)`; `realloc(p, 0)` returns a live pointer (a
//! zero-byte block) rather than freeing `p`; a failed `realloc` returns NULL and leaves `p`
//! as it was; `free(NULL)` does nothing.

use core::ffi::c_void;
use core::ptr::{self, NonNull};

use pyalloc::Heap;
use pyo3_ffi::PyMemAllocatorEx;

/// An allocator CPython can call through the adapter: CPython's contract in Rust types.
///
/// # Safety
///
/// Implementors must return memory of at least the size asked for, aligned to 16 bytes
/// (CPython's `ALIGNMENT`), distinct for every zero-byte request, and the same block must be
/// accepted by `deallocate` and `reallocate` without its size.
pub(crate) unsafe trait Sizeless {
    /// A block of `size` bytes (`size` 0 included: a distinct block).
    fn allocate(&self, size: usize) -> Option<NonNull<u8>>;
    /// A block of `size` bytes if one can be had without calling anything; `None` (having
    /// changed nothing) sends the adapter to [`allocate`](Sizeless::allocate). Inlined into
    /// the `extern "C"` function, so that its common case makes no call.
    fn try_allocate(&self, _size: usize) -> Option<NonNull<u8>> {
        None
    }
    /// Frees `ptr` if that needs no call, and says whether it did; `false` (having changed
    /// nothing) sends the adapter to [`deallocate`](Sizeless::deallocate).
    ///
    /// # Safety
    ///
    /// `ptr` is null or as for `deallocate`; after `true` it is not used again.
    unsafe fn try_deallocate(&self, _ptr: *mut u8) -> bool {
        false
    }
    /// As [`allocate`](Sizeless::allocate), zeroed.
    fn allocate_zeroed(&self, size: usize) -> Option<NonNull<u8>>;
    /// Frees `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` came from this allocator and is live; it is not used again.
    unsafe fn deallocate(&self, ptr: NonNull<u8>);
    /// Resizes `ptr` to `new_size` (`None`: a fresh block); `None` leaves `ptr` live.
    ///
    /// # Safety
    ///
    /// `ptr`, if any, came from this allocator and is live; on success it is not used again.
    unsafe fn reallocate(&self, ptr: Option<NonNull<u8>>, new_size: usize) -> Option<NonNull<u8>>;
}

/// The `PyMemAllocatorEx` whose functions call `alloc`, which is the context pointer.
///
/// CPython may call the functions from any thread (for the OBJ and MEM domains: one at a time,
/// with the GIL held), so the caller of `PyMem_SetAllocator` answers for `A` being usable that
/// way; this function only builds the table.
pub(crate) fn allocator_ex<A: Sizeless>(alloc: &'static A) -> PyMemAllocatorEx {
    PyMemAllocatorEx {
        ctx: ptr::from_ref(alloc).cast_mut().cast(),
        malloc: Some(malloc::<A>),
        calloc: Some(calloc::<A>),
        realloc: Some(realloc::<A>),
        free: Some(free::<A>),
    }
}

/// The allocator behind `ctx`.
///
/// # Safety
///
/// `ctx` is the context pointer of a table built by [`allocator_ex`] for this `A`: a
/// `&'static A`, and CPython calls the table's functions one at a time (the GIL).
unsafe fn alloc<'a, A: Sizeless>(ctx: *mut c_void) -> &'a A {
    // SAFETY: by the function's contract `ctx` came from a `&'static A` in `allocator_ex`.
    unsafe { &*ctx.cast::<A>().cast_const() }
}

fn raw(block: Option<NonNull<u8>>) -> *mut c_void {
    block.map_or(ptr::null_mut(), |p| p.as_ptr().cast())
}

// Each entry point that has a fast path is two functions: the `extern "C"` one CPython calls
// tries the allocator's call-free fast path inline, and on a miss jumps (a sibling call: the
// same signature) to a second `extern "C"` function that does the rest. So the common case
// makes no call, needs no stack frame and saves no registers.

extern "C" fn malloc<A: Sizeless>(ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: CPython passes back the context of the table `allocator_ex` built.
    let a = unsafe { alloc::<A>(ctx) };
    match a.try_allocate(size) {
        Some(block) => block.as_ptr().cast(),
        None => malloc_slow::<A>(ctx, size),
    }
}

#[inline(never)]
extern "C" fn malloc_slow<A: Sizeless>(ctx: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: CPython passes back the context of the table `allocator_ex` built.
    let a = unsafe { alloc::<A>(ctx) };
    raw(a.allocate(size))
}

extern "C" fn calloc<A: Sizeless>(ctx: *mut c_void, nelem: usize, elsize: usize) -> *mut c_void {
    let Some(size) = nelem.checked_mul(elsize) else {
        return ptr::null_mut();
    };
    // SAFETY: CPython passes back the context of the table `allocator_ex` built.
    let a = unsafe { alloc::<A>(ctx) };
    raw(a.allocate_zeroed(size))
}

extern "C" fn realloc<A: Sizeless>(ctx: *mut c_void, ptr: *mut c_void, size: usize) -> *mut c_void {
    // SAFETY: CPython passes back the context of the table `allocator_ex` built.
    let a = unsafe { alloc::<A>(ctx) };
    // SAFETY: CPython's realloc contract: `ptr` is NULL or a live block of this domain, which
    // this table allocated (the domain was ours before anything was allocated in it).
    raw(unsafe { a.reallocate(NonNull::new(ptr.cast()), size) })
}

extern "C" fn free<A: Sizeless>(ctx: *mut c_void, ptr: *mut c_void) {
    // SAFETY: CPython passes back the context of the table `allocator_ex` built.
    let a = unsafe { alloc::<A>(ctx) };
    // SAFETY: CPython's free contract: null, or a live block of this domain, which this table
    // allocated.
    if !unsafe { a.try_deallocate(ptr.cast()) } {
        free_slow::<A>(ctx, ptr);
    }
}

#[inline(never)]
extern "C" fn free_slow<A: Sizeless>(ctx: *mut c_void, ptr: *mut c_void) {
    let Some(ptr) = NonNull::new(ptr.cast()) else {
        return;
    };
    // SAFETY: CPython passes back the context of the table `allocator_ex` built.
    let a = unsafe { alloc::<A>(ctx) };
    // SAFETY: CPython's free contract: a live block of this domain, which this table allocated
    // (and `try_deallocate` left it live).
    unsafe { a.deallocate(ptr) }
}

// SAFETY: the unsized API's blocks are 16-aligned (`allocate_unsized`), a zero-byte request
// is a one-byte one (a distinct block), and `deallocate_unsized`/`reallocate_unsized` take its
// blocks without a size (and pass pointers the heap does not own to the system allocator).
unsafe impl Sizeless for Heap {
    #[inline]
    fn allocate(&self, size: usize) -> Option<NonNull<u8>> {
        self.allocate_unsized(size).ok()
    }

    #[inline(always)]
    fn try_allocate(&self, size: usize) -> Option<NonNull<u8>> {
        self.try_allocate_unsized(size)
    }

    #[inline(always)]
    unsafe fn try_deallocate(&self, ptr: *mut u8) -> bool {
        // SAFETY: forwarded contract: null or a live block from this heap's unsized API (or
        // the system allocator's, which the heap does not own and leaves alone).
        unsafe { self.try_deallocate_unsized(ptr) }
    }

    #[inline]
    fn allocate_zeroed(&self, size: usize) -> Option<NonNull<u8>> {
        self.allocate_zeroed_unsized(size).ok()
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>) {
        // SAFETY: forwarded contract: a live block from this heap's unsized API.
        unsafe { self.deallocate_unsized(ptr) }
    }

    #[inline]
    unsafe fn reallocate(&self, ptr: Option<NonNull<u8>>, new_size: usize) -> Option<NonNull<u8>> {
        // SAFETY: forwarded contract: `None` or a live block from this heap's unsized API.
        unsafe { self.reallocate_unsized(ptr, new_size) }.ok()
    }
}
