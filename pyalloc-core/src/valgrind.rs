//! Memcheck client requests: what lets valgrind see inside pools.
//!
//! Pools are carved from big `mmap`'d arenas, so without help memcheck sees one defined,
//! addressable region and can report neither a read of a freed block nor a read of fresh,
//! never-written memory. With the `valgrind` feature the core tells it what it knows:
//!
//! * a block handed out by layer 2 is a heap block of its own ([`malloclike`]: addressable,
//!   undefined, tracked for leaks), and a freed one is gone ([`freelike`]: no access);
//! * a slot resting on a layer-3 free list is no access, and undefined again when popped
//!   ([`slot_pushed`], [`slot_popped`]); the block behind it stays allocated, because a slot may
//!   also be a system block or, in debug mode, the inside of one;
//! * every read or write the allocator makes itself to a free block or slot (its link word,
//!   the debug mode's fill) is bracketed by [`make_defined`] or [`make_undefined`] before and
//!   [`make_noaccess`] after, so the allocator's own work reports nothing.
//!
//! Without the feature every function here is an empty `#[inline(always)]` one and the hooks
//! compile to nothing. With it, each is a call into `valgrind.c`, which wraps the macros of
//! `<valgrind/memcheck.h>`: a handful of instructions that do nothing outside valgrind.

#[cfg(feature = "valgrind")]
mod ffi {
    // The wrappers in `valgrind.c`, compiled by the build script. Each only issues a client
    // request: outside valgrind a no-op, under it a change to memcheck's shadow memory. None
    // reads or writes the memory it names.
    extern "C" {
        pub(super) fn pyalloc_vg_malloclike(ptr: *const u8, size: usize, defined: i32);
        pub(super) fn pyalloc_vg_freelike(ptr: *const u8);
        pub(super) fn pyalloc_vg_make_noaccess(ptr: *const u8, len: usize);
        pub(super) fn pyalloc_vg_make_undefined(ptr: *const u8, len: usize);
        pub(super) fn pyalloc_vg_make_defined(ptr: *const u8, len: usize);
    }
}

/// Declares `size` bytes at `ptr` a heap block of their own (`VALGRIND_MALLOCLIKE_BLOCK`):
/// addressable, tracked by the leak checker, and undefined unless `defined` (the debug mode's
/// blocks hold the freed pattern, which the mode checks before handing them out).
#[inline(always)]
pub(crate) fn malloclike(ptr: *const u8, size: usize, defined: bool) {
    #[cfg(feature = "valgrind")]
    // SAFETY: a client request only updates memcheck's bookkeeping; it touches no memory.
    unsafe {
        ffi::pyalloc_vg_malloclike(ptr, size, i32::from(defined))
    }
    #[cfg(not(feature = "valgrind"))]
    let _ = (ptr, size, defined);
}

/// Ends the heap block at `ptr` (`VALGRIND_FREELIKE_BLOCK`): its bytes become no access, so
/// a later use is reported as a use after free.
#[inline(always)]
pub(crate) fn freelike(ptr: *const u8) {
    #[cfg(feature = "valgrind")]
    // SAFETY: as in `malloclike`.
    unsafe {
        ffi::pyalloc_vg_freelike(ptr)
    }
    #[cfg(not(feature = "valgrind"))]
    let _ = ptr;
}

/// Marks `len` bytes at `ptr` no access (`VALGRIND_MAKE_MEM_NOACCESS`).
#[inline(always)]
pub(crate) fn make_noaccess(ptr: *const u8, len: usize) {
    #[cfg(feature = "valgrind")]
    // SAFETY: as in `malloclike`.
    unsafe {
        ffi::pyalloc_vg_make_noaccess(ptr, len)
    }
    #[cfg(not(feature = "valgrind"))]
    let _ = (ptr, len);
}

/// Marks `len` bytes at `ptr` addressable but undefined (`VALGRIND_MAKE_MEM_UNDEFINED`).
#[inline(always)]
pub(crate) fn make_undefined(ptr: *const u8, len: usize) {
    #[cfg(feature = "valgrind")]
    // SAFETY: as in `malloclike`.
    unsafe {
        ffi::pyalloc_vg_make_undefined(ptr, len)
    }
    #[cfg(not(feature = "valgrind"))]
    let _ = (ptr, len);
}

/// Marks `len` bytes at `ptr` addressable and defined (`VALGRIND_MAKE_MEM_DEFINED`).
#[inline(always)]
pub(crate) fn make_defined(ptr: *const u8, len: usize) {
    #[cfg(feature = "valgrind")]
    // SAFETY: as in `malloclike`.
    unsafe {
        ffi::pyalloc_vg_make_defined(ptr, len)
    }
    #[cfg(not(feature = "valgrind"))]
    let _ = (ptr, len);
}

/// A slot of `len` bytes was pushed on a free list (its link already written): no access
/// until popped.
#[inline(always)]
pub(crate) fn slot_pushed(slot: *const u8, len: usize) {
    make_noaccess(slot, len);
}

/// A slot of `len` bytes was popped from a free list: addressable again, contents undefined.
#[inline(always)]
pub(crate) fn slot_popped(slot: *const u8, len: usize) {
    make_undefined(slot, len);
}
