//! Layer 2's unit: a pool, `pool_size` bytes serving blocks of one size class.
//!
//! ```text
//!  pool (aligned to pool_size)
//!  +--------------+---------+---------+-----+---------+-----------+
//!  | PoolHeader   | block 0 | block 1 | ... | block k | untouched |
//!  | (48 bytes)   |         |         |     |         |           |
//!  +--------------+---------+---------+-----+---------+-----------+
//!                                                     ^ next_offset
//! ```
//!
//! A block's pool is its address masked by `!(pool_size - 1)`. Blocks are carved lazily:
//! `next_offset` is the first never-used block, and only the block about to be handed out is
//! written (CPython's `nextoffset`/`maxnextoffset`). Freed blocks form a singly linked LIFO list
//! through their first word, headed by `freeblock`.
//!
//! ## States
//! * **used**: some blocks live, some free; linked in its class's used-pool list, and
//!   `freeblock` is never null there (the allocation fast path relies on it);
//! * **full**: every block live, `freeblock` null; in no list (a free links it back);
//! * **empty**: no block live; given back to its arena, reusable by any class.

use core::ptr::{self, NonNull};

use static_assertions::{assert_eq_size, const_assert};

use crate::config::{ALIGNMENT, MIN_POOL_SIZE, SMALL_REQUEST_THRESHOLD};
use crate::debug;
use crate::size_class::block_size;
use crate::valgrind;

/// The header at the start of every pool in use.
#[repr(C)]
#[derive(Debug)]
pub(crate) struct PoolHeader {
    /// Blocks handed out and not yet freed (CPython's `ref.count`).
    pub(crate) ref_count: u32,
    /// The size class every block of this pool belongs to (CPython's `szidx`).
    pub(crate) size_class: u32,
    /// Head of the free-block list; null when every carved block is live.
    pub(crate) freeblock: *mut u8,
    /// Next pool in the class's used-pool list.
    pub(crate) next: *mut PoolHeader,
    /// Previous pool in the class's used-pool list; null at the head.
    pub(crate) prev: *mut PoolHeader,
    /// Index of the arena this pool belongs to in the arena table (CPython's `arenaindex`).
    pub(crate) arena_index: u32,
    /// Offset of the first never-used block (CPython's `nextoffset`).
    pub(crate) next_offset: u32,
    /// Largest offset a block may start at (CPython's `maxnextoffset`).
    pub(crate) max_next_offset: u32,
}

/// Bytes at the start of a pool taken by its header, rounded up so blocks stay aligned.
pub(crate) const POOL_OVERHEAD: usize =
    (core::mem::size_of::<PoolHeader>() + ALIGNMENT - 1) & !(ALIGNMENT - 1);

#[cfg(target_pointer_width = "64")]
assert_eq_size!(PoolHeader, [u8; 48]);
const_assert!(POOL_OVERHEAD % ALIGNMENT == 0);
const_assert!(core::mem::align_of::<PoolHeader>() <= ALIGNMENT);
// The smallest pool holds at least two blocks of the largest class, so a freshly carved pool
// always has a second block to put on its free list.
const_assert!(MIN_POOL_SIZE - POOL_OVERHEAD >= 2 * SMALL_REQUEST_THRESHOLD);

/// Blocks of class `class` in a pool of `pool_size` bytes.
#[inline]
pub(crate) const fn blocks_per_pool(pool_size: usize, class: usize) -> usize {
    (pool_size - POOL_OVERHEAD) / block_size(class)
}

/// Reads the free-list link stored in a free block's first word.
///
/// # Safety
///
/// `block` is a free block (so its first word is a link written by [`set_next`]).
#[inline(always)]
pub(crate) unsafe fn next_free(block: *mut u8) -> *mut u8 {
    valgrind::make_defined(block, valgrind::LINK);
    // SAFETY: blocks are 16-aligned and at least 16 bytes, and the caller says this one holds
    // a link.
    let next = unsafe { block.cast::<*mut u8>().read() };
    valgrind::make_noaccess(block, valgrind::LINK);
    next
}

/// Stores a free-list link in a free block's first word.
///
/// # Safety
///
/// `block` is a block of a pool whose contents nobody else uses now.
#[inline(always)]
pub(crate) unsafe fn set_next(block: *mut u8, next: *mut u8) {
    valgrind::make_undefined(block, valgrind::LINK);
    // SAFETY: as for `next_free`; the block is not live, so overwriting its first word is fine.
    unsafe { block.cast::<*mut u8>().write(next) };
    valgrind::make_noaccess(block, valgrind::LINK);
}

/// Initialises a pool for `class` and hands out its first block; the second block is carved
/// onto the free list, so the pool is in the "used" state on return. With `poison` (debug
/// mode) both blocks are filled with the freed pattern first.
///
/// # Safety
///
/// `pool` is `pool_size` writable bytes, aligned to `pool_size`, that nothing else uses.
pub(crate) unsafe fn init_pool(
    pool: NonNull<PoolHeader>,
    class: usize,
    arena_index: u32,
    pool_size: usize,
    poison: bool,
) -> NonNull<u8> {
    let size = block_size(class);
    let base = pool.as_ptr().cast::<u8>();
    // SAFETY: the header and the first two blocks lie inside the pool (see the const_assert on
    // MIN_POOL_SIZE), which the caller hands over whole.
    unsafe {
        let first = base.add(POOL_OVERHEAD);
        let second = first.add(size);
        valgrind::make_undefined(first, 2 * size);
        if poison {
            debug::poison(first, 2 * size);
        }
        set_next(second, ptr::null_mut());
        valgrind::make_noaccess(second, pool_size - POOL_OVERHEAD - size);
        pool.as_ptr().write(PoolHeader {
            ref_count: 1,
            size_class: class as u32,
            freeblock: second,
            next: ptr::null_mut(),
            prev: ptr::null_mut(),
            arena_index,
            next_offset: (POOL_OVERHEAD + 2 * size) as u32,
            max_next_offset: (pool_size - size) as u32,
        });
        NonNull::new_unchecked(first)
    }
}

/// Called when a pool's free list has just run dry after an allocation: carves the next
/// untouched block onto it (filled with the freed pattern first with `poison`), or reports
/// (`false`) that the pool is now full.
///
/// # Safety
///
/// `pool` is a pool in use whose `freeblock` is null.
#[inline]
pub(crate) unsafe fn carve_next(pool: NonNull<PoolHeader>, poison: bool) -> bool {
    // SAFETY: the caller hands a valid header; the carved block lies inside the pool because
    // `next_offset <= max_next_offset = pool_size - block size`.
    unsafe {
        let p = pool.as_ptr();
        debug_assert!((*p).freeblock.is_null());
        if (*p).next_offset > (*p).max_next_offset {
            return false;
        }
        let block = p.cast::<u8>().add((*p).next_offset as usize);
        let size = block_size((*p).size_class as usize);
        (*p).next_offset += size as u32;
        valgrind::make_undefined(block, size);
        if poison {
            debug::poison(block, size);
        }
        set_next(block, ptr::null_mut());
        valgrind::make_noaccess(block, size);
        (*p).freeblock = block;
        true
    }
}
