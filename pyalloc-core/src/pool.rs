//! Layer 2's unit: a pool, `pool_size` bytes serving blocks of one size class, and the list of
//! used pools each class keeps.
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
//! through their first word ([`link`](crate::link)), headed by `freeblock`.
//!
//! ## States and invariants
//! * **used**: some blocks live, some free; in its class's [`PoolList`], and `freeblock` is
//!   never null there (the allocation fast path relies on it);
//! * **full**: every block live, `freeblock` null; in no list (a free links it back);
//! * **empty**: no block live; given back to its arena, reusable by any class (or kept in its
//!   list as the heap's one cached empty pool).
//!
//! ```text
//! POOL_OVERHEAD <= next_offset <= max_next_offset + block size == pool_size - tail
//! carved == (next_offset - POOL_OVERHEAD) / block size == ref_count + #free list
//! ```
//!
//! [`Pool`] is a typed handle to a header, in the way hashbrown's `Bucket<T>` names the raw
//! operations on a slot, so no other module writes `(*p).field`.

use core::ptr::{self, NonNull};

use static_assertions::{assert_eq_size, const_assert};

use crate::config::{ALIGNMENT, MIN_POOL_SIZE, NUM_SIZE_CLASSES, SMALL_REQUEST_THRESHOLD};
use crate::fill::Fill;
use crate::link;
use crate::size_class::block_size;
use crate::valgrind;

/// The header at the start of every pool in use.
#[repr(C)]
#[derive(Debug)]
struct PoolHeader {
    /// Blocks handed out and not yet freed (CPython's `ref.count`).
    ref_count: u32,
    /// The size class every block of this pool belongs to (CPython's `szidx`).
    size_class: u32,
    /// Head of the free-block list; null when every carved block is live.
    freeblock: *mut u8,
    /// Next pool in the class's used-pool list.
    next: *mut PoolHeader,
    /// Previous pool in the class's used-pool list; null at the head.
    prev: *mut PoolHeader,
    /// Index of the arena this pool belongs to in the arena table (CPython's `arenaindex`).
    arena_index: u32,
    /// Offset of the first never-used block (CPython's `nextoffset`).
    next_offset: u32,
    /// Largest offset a block may start at (CPython's `maxnextoffset`).
    max_next_offset: u32,
    /// The thread heap whose arena holds this pool ([`NO_OWNER`] for a plain `Heap`): what a
    /// thread freeing a block of another thread's heap reads to send it home. Written once,
    /// when the pool is initialised, before any of its blocks is handed out, and constant
    /// while the pool is in use (an arena belongs to one heap for life). It fills what was
    /// padding in CPython's layout.
    owner: u32,
}

/// The owner of a plain `Heap`'s pools: no thread heap.
pub(crate) const NO_OWNER: u32 = 0;

/// Bytes at the start of a pool taken by its header, rounded up so blocks stay aligned.
pub(crate) const POOL_OVERHEAD: usize =
    (core::mem::size_of::<PoolHeader>() + ALIGNMENT - 1) & !(ALIGNMENT - 1);

#[cfg(target_pointer_width = "64")]
assert_eq_size!(PoolHeader, [u8; 48]);
const_assert!(POOL_OVERHEAD % ALIGNMENT == 0);
const_assert!(core::mem::align_of::<PoolHeader>() <= ALIGNMENT);
// The smallest pool holds at least two blocks of the largest class, so a freshly carved pool
// always has a second block to put on its free list, and a full pool never empties in one free.
const_assert!(MIN_POOL_SIZE - POOL_OVERHEAD >= 2 * SMALL_REQUEST_THRESHOLD);

/// Blocks of class `class` in a pool of `pool_size` bytes.
#[inline]
pub(crate) const fn blocks_per_pool(pool_size: usize, class: usize) -> usize {
    (pool_size - POOL_OVERHEAD) / block_size(class)
}

/// A pool in use: a handle to its header.
///
/// Every method's contract is the one of [`Pool::from_addr`]: the header is valid while the
/// pool is in use, and the handle is used by the heap that owns the pool alone.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Pool(NonNull<PoolHeader>);

impl Pool {
    /// The pool starting at `addr`.
    ///
    /// # Safety
    ///
    /// `addr` is the start of a pool in use (its header initialised by [`Pool::init`]) of a
    /// heap that the caller has exclusive access to, and the handle is not used after the pool
    /// goes back to its arena.
    #[inline(always)]
    pub(crate) unsafe fn from_addr(addr: NonNull<u8>) -> Pool {
        Pool(addr.cast())
    }

    /// The pool's first byte.
    #[inline(always)]
    pub(crate) fn addr(self) -> NonNull<u8> {
        self.0.cast()
    }

    #[inline(always)]
    fn header(self) -> *mut PoolHeader {
        self.0.as_ptr()
    }

    /// The size class of the pool's blocks.
    #[inline(always)]
    pub(crate) fn class(self) -> usize {
        // SAFETY: the header is valid (the handle's contract).
        unsafe { (*self.header()).size_class as usize }
    }

    /// Blocks handed out and not freed.
    #[inline(always)]
    pub(crate) fn ref_count(self) -> usize {
        // SAFETY: as in `class`.
        unsafe { (*self.header()).ref_count as usize }
    }

    /// The thread heap the pool belongs to ([`NO_OWNER`] for a plain heap).
    #[inline(always)]
    pub(crate) fn owner(self) -> u32 {
        // SAFETY: as in `class`.
        unsafe { (*self.header()).owner }
    }

    /// The owner of the pool holding `block`, read by any thread.
    ///
    /// # Safety
    ///
    /// `block` is a live block of a pool of `pool_size` bytes (the pool is in use and stays in
    /// use while the block lives), reached by a thread that the block's allocation happened
    /// before (the owner is written before the block is handed out and never changes).
    #[inline(always)]
    pub(crate) unsafe fn owner_of(block: *const u8, pool_size: usize) -> u32 {
        let header: *const PoolHeader =
            ptr::with_exposed_provenance(block.addr() & !(pool_size - 1));
        // SAFETY: the caller's contract: a pool in use, whose header's `owner` nobody writes
        // while the block lives; the arena's provenance was exposed when it was mapped.
        unsafe { ptr::addr_of!((*header).owner).read() }
    }

    /// The size class of the pool holding `block`, read by any thread.
    ///
    /// # Safety
    ///
    /// As [`owner_of`](Self::owner_of): the class, too, is constant while a block lives.
    #[inline]
    pub(crate) unsafe fn class_of(block: *const u8, pool_size: usize) -> usize {
        let header: *const PoolHeader =
            ptr::with_exposed_provenance(block.addr() & !(pool_size - 1));
        // SAFETY: as in `owner_of`.
        unsafe { ptr::addr_of!((*header).size_class).read() as usize }
    }

    /// The index of the pool's arena in the arena table.
    #[inline]
    pub(crate) fn arena_index(self) -> u32 {
        // SAFETY: as in `class`.
        unsafe { (*self.header()).arena_index }
    }

    /// The head of the free-block list (null when every carved block is live).
    #[inline(always)]
    pub(crate) fn first_free(self) -> *mut u8 {
        // SAFETY: as in `class`.
        unsafe { (*self.header()).freeblock }
    }

    /// Blocks carved so far.
    pub(crate) fn carved(self) -> usize {
        // SAFETY: as in `class`.
        let next_offset = unsafe { (*self.header()).next_offset } as usize;
        (next_offset - POOL_OVERHEAD) / block_size(self.class())
    }

    /// Whether `addr` is the address of a block carved in this pool.
    pub(crate) fn holds_block(self, addr: usize) -> bool {
        let offset = addr.wrapping_sub(self.addr().as_ptr().addr());
        // SAFETY: as in `class`.
        let next_offset = unsafe { (*self.header()).next_offset } as usize;
        offset >= POOL_OVERHEAD
            && offset < next_offset
            && (offset - POOL_OVERHEAD) % block_size(self.class()) == 0
    }

    /// Initialises a pool for `class` and hands out its first block; the second block is
    /// carved onto the free list, so the pool is in the "used" state (in no list yet) on
    /// return. `fill` is applied to both blocks first.
    ///
    /// # Safety
    ///
    /// `addr` is `pool_size` writable bytes, aligned to `pool_size`, that nothing else uses.
    pub(crate) unsafe fn init(
        addr: NonNull<u8>,
        class: usize,
        arena_index: u32,
        owner: u32,
        pool_size: usize,
        fill: Fill,
    ) -> (Pool, NonNull<u8>) {
        let size = block_size(class);
        let base = addr.as_ptr();
        // SAFETY: the header and the first two blocks lie inside the pool (see the
        // const_assert on MIN_POOL_SIZE), which the caller hands over whole.
        unsafe {
            let first = base.add(POOL_OVERHEAD);
            let second = first.add(size);
            valgrind::make_undefined(first, 2 * size);
            fill.apply(first, 2 * size);
            link::write(second, ptr::null_mut());
            valgrind::make_noaccess(second, pool_size - POOL_OVERHEAD - size);
            base.cast::<PoolHeader>().write(PoolHeader {
                ref_count: 1,
                size_class: class as u32,
                freeblock: second,
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                arena_index,
                next_offset: (POOL_OVERHEAD + 2 * size) as u32,
                max_next_offset: (pool_size - size) as u32,
                owner,
            });
            (Pool(addr.cast()), NonNull::new_unchecked(first))
        }
    }

    /// Whether this pool, found empty in its arena with its header intact (a dirty pool), was
    /// last used by `class`: then its free list is ready and it needs no initialisation
    /// (CPython does the same).
    pub(crate) fn is_ready_for(self, class: usize) -> bool {
        self.class() == class && !self.first_free().is_null()
    }

    /// Takes an empty pool that kept its header (see [`is_ready_for`](Self::is_ready_for))
    /// into use again and hands out a block.
    ///
    /// # Safety
    ///
    /// The pool is empty (`ref_count` 0) with a valid header, nothing else uses it, and its
    /// arena's index is `arena_index`.
    pub(crate) unsafe fn reuse(self, arena_index: u32, fill: Fill) -> NonNull<u8> {
        let h = self.header();
        // SAFETY: the caller's contract: a valid header of an empty pool, ours alone; its free
        // list holds every carved block, at least two, so the pop finds one.
        unsafe {
            debug_assert_eq!((*h).ref_count, 0);
            (*h).arena_index = arena_index;
            (*h).next = ptr::null_mut();
            (*h).prev = ptr::null_mut();
            let (block, ran_dry) = self.pop_free();
            if ran_dry && !self.carve_next(fill) {
                unreachable!("a pool holds at least two blocks");
            }
            block
        }
    }

    /// Pops the first free block; returns it and whether the free list is empty afterwards.
    ///
    /// # Safety
    ///
    /// The pool's free list is not empty.
    #[inline(always)]
    pub(crate) unsafe fn pop_free(self) -> (NonNull<u8>, bool) {
        let h = self.header();
        // SAFETY: `freeblock` is a free block of this pool holding the link to the next (the
        // used-state invariant); the caller says the list is not empty.
        unsafe {
            let block = (*h).freeblock;
            debug_assert!(!block.is_null(), "pool {h:p} has no free block");
            core::hint::assert_unchecked(!block.is_null());
            (*h).ref_count += 1;
            let next = link::read(block);
            (*h).freeblock = next;
            (NonNull::new_unchecked(block), next.is_null())
        }
    }

    /// Pops the first free block only if another follows it: a pop that calls nothing, for
    /// `Global`'s fast path, which leaves a pool running dry (its next block to carve) to its
    /// slow path.
    ///
    /// # Safety
    ///
    /// The pool's free list is not empty.
    #[inline(always)]
    pub(crate) unsafe fn pop_free_unless_last(self) -> Option<NonNull<u8>> {
        let h = self.header();
        // SAFETY: as in `pop_free`: `freeblock` is a free block holding the link to the next.
        unsafe {
            let block = (*h).freeblock;
            debug_assert!(!block.is_null(), "pool {h:p} has no free block");
            let next = link::read(block);
            if next.is_null() {
                return None;
            }
            (*h).ref_count += 1;
            (*h).freeblock = next;
            Some(NonNull::new_unchecked(block))
        }
    }

    /// Pops the first free block, carving the next untouched block onto the list when it was
    /// the last (CPython's `pymalloc_alloc` with `pymalloc_pool_extend`). Returns the block and
    /// whether the pool is full now (nothing left to carve: the caller takes it out of its
    /// list). Calls nothing; fills nothing (for the fast paths, which are shut in debug mode).
    ///
    /// # Safety
    ///
    /// The pool's free list is not empty and its blocks are of size class `class`.
    #[inline(always)]
    pub(crate) unsafe fn pop_free_or_carve(self, class: usize) -> (NonNull<u8>, bool) {
        let h = self.header();
        // SAFETY: as in `pop_free`: `freeblock` is a free block holding the link to the next;
        // a carved block lies inside the pool, as in `carve_next`.
        unsafe {
            debug_assert_eq!((*h).size_class as usize, class);
            let block = (*h).freeblock;
            debug_assert!(!block.is_null(), "pool {h:p} has no free block");
            core::hint::assert_unchecked(!block.is_null());
            (*h).ref_count += 1;
            let mut next = link::read(block);
            let mut full = false;
            if next.is_null() {
                let offset = (*h).next_offset;
                if offset <= (*h).max_next_offset {
                    let size = block_size(class);
                    (*h).next_offset = offset + size as u32;
                    next = h.cast::<u8>().add(offset as usize);
                    valgrind::make_undefined(next, size);
                    link::write(next, ptr::null_mut());
                    valgrind::make_noaccess(next, size);
                } else {
                    full = true;
                }
            }
            (*h).freeblock = next;
            (NonNull::new_unchecked(block), full)
        }
    }

    /// Pushes a freed block unless it is the pool's last live one (the pool would empty, which
    /// the caller's slow path handles: the cached pool, or back to the arena): then it changes
    /// nothing and returns `None`. Otherwise returns whether the pool was full (the caller puts
    /// it back in its list). Calls nothing.
    ///
    /// # Safety
    ///
    /// As [`push_free`](Self::push_free).
    #[inline(always)]
    pub(crate) unsafe fn push_free_unless_emptying(self, block: NonNull<u8>) -> Option<bool> {
        let h = self.header();
        // SAFETY: as in `push_free`.
        unsafe {
            if (*h).ref_count == 1 {
                return None;
            }
            debug_assert!((*h).ref_count > 0, "free of {block:p} in empty pool {h:p}");
            let last_free = (*h).freeblock;
            link::write(block.as_ptr(), last_free);
            (*h).freeblock = block.as_ptr();
            (*h).ref_count -= 1;
            Some(last_free.is_null())
        }
    }

    /// Pushes a freed block on the free list. Returns the free list's head before the push:
    /// null means the pool was full.
    ///
    /// # Safety
    ///
    /// `block` is a live block of this pool, reached with the heap's provenance, and is not
    /// used by anyone afterwards.
    #[inline(always)]
    pub(crate) unsafe fn push_free(self, block: NonNull<u8>) -> *mut u8 {
        let h = self.header();
        // SAFETY: the caller's contract: the block is ours to link.
        unsafe {
            debug_assert!((*h).ref_count > 0, "free of {block:p} in empty pool {h:p}");
            let last_free = (*h).freeblock;
            link::write(block.as_ptr(), last_free);
            (*h).freeblock = block.as_ptr();
            (*h).ref_count -= 1;
            last_free
        }
    }

    /// Carves the next untouched block onto the empty free list (with `fill` applied), or
    /// reports (`false`) that the pool is full.
    ///
    /// # Safety
    ///
    /// The pool's free list is empty.
    #[inline(always)]
    pub(crate) unsafe fn carve_next(self, fill: Fill) -> bool {
        let h = self.header();
        // SAFETY: a valid header; the carved block lies inside the pool because
        // `next_offset <= max_next_offset = pool_size - block size`.
        unsafe {
            debug_assert!((*h).freeblock.is_null());
            if (*h).next_offset > (*h).max_next_offset {
                return false;
            }
            let block = h.cast::<u8>().add((*h).next_offset as usize);
            let size = block_size((*h).size_class as usize);
            (*h).next_offset += size as u32;
            valgrind::make_undefined(block, size);
            fill.apply(block, size);
            link::write(block, ptr::null_mut());
            valgrind::make_noaccess(block, size);
            (*h).freeblock = block;
            true
        }
    }

    /// Every carved block that is free, following the free list. Stops (with an error) at the
    /// first link that is not a carved block of this pool, or after more links than carved
    /// blocks (a cycle).
    pub(crate) fn free_blocks(self) -> impl Iterator<Item = Result<NonNull<u8>, String>> {
        let mut at = self.first_free();
        let mut left = self.carved() + 1;
        core::iter::from_fn(move || {
            let block = NonNull::new(at)?;
            left -= 1;
            if left == 0 {
                at = ptr::null_mut();
                return Some(Err(format!("pool {:p}: free list has a cycle", self.0)));
            }
            if !self.holds_block(block.as_ptr().addr()) {
                at = ptr::null_mut();
                return Some(Err(format!(
                    "pool {:p}: free list holds stray address {block:p}",
                    self.0
                )));
            }
            // SAFETY: `block` is a free carved block of this pool (checked), holding a link.
            at = unsafe { link::read(block.as_ptr()) };
            Some(Ok(block))
        })
    }

    /// Every carved block that is live (not on the free list).
    #[cfg(any(test, feature = "valgrind"))]
    pub(crate) fn live_blocks(self) -> Result<Vec<NonNull<u8>>, String> {
        let free = self
            .free_blocks()
            .map(|b| b.map(|b| b.as_ptr().addr()))
            .collect::<Result<std::collections::HashSet<_>, _>>()?;
        let size = block_size(self.class());
        Ok((0..self.carved())
            .map(|i| {
                // SAFETY: carved blocks lie inside the pool.
                unsafe { self.addr().add(POOL_OVERHEAD + i * size) }
            })
            .filter(|b| !free.contains(&b.as_ptr().addr()))
            .collect())
    }

    /// Checks the header and the free list against the pool's arena index and size.
    pub(crate) fn check(self, arena_index: u32, pool_size: usize) -> Result<(), String> {
        // SAFETY: a valid header (the handle's contract).
        let h = unsafe { &*self.header() };
        let class = h.size_class as usize;
        if class >= NUM_SIZE_CLASSES
            || h.arena_index != arena_index
            || (h.next_offset as usize) < POOL_OVERHEAD
            || h.max_next_offset as usize != pool_size - block_size(class)
        {
            return Err(format!("pool {:p}: corrupt header {h:?}", self.0));
        }
        let carved = self.carved();
        if h.ref_count as usize > carved || carved > blocks_per_pool(pool_size, class) {
            return Err(format!(
                "pool {:p}: {} live of {carved} carved",
                self.0, h.ref_count
            ));
        }
        let mut free = 0;
        for block in self.free_blocks() {
            block?;
            free += 1;
        }
        if free + h.ref_count as usize != carved {
            return Err(format!(
                "pool {:p}: {free} free + {} live != {carved} carved",
                self.0, h.ref_count
            ));
        }
        Ok(())
    }
}

/// A class's list of used pools: doubly linked through the pools' headers, with a real head
/// (CPython's `usedpools` array of fake headers is a C trick). Written once: every insertion
/// and removal of a pool goes through here (mimalloc's `mi_page_queue_push/remove`).
#[derive(Debug)]
pub(crate) struct PoolList {
    head: *mut PoolHeader,
}

impl PoolList {
    pub(crate) const EMPTY: PoolList = PoolList {
        head: ptr::null_mut(),
    };

    /// The first pool, if any.
    #[inline(always)]
    pub(crate) fn head(&self) -> Option<Pool> {
        NonNull::new(self.head).map(Pool)
    }

    /// Whether `pool` is the only pool of the list.
    ///
    /// # Safety
    ///
    /// `pool` is in this list.
    pub(crate) unsafe fn is_sole(&self, pool: Pool) -> bool {
        // SAFETY: a listed pool has a valid header.
        unsafe { (*pool.header()).prev.is_null() && (*pool.header()).next.is_null() }
    }

    /// Puts a pool that is in no list at the front.
    ///
    /// # Safety
    ///
    /// `pool` is a pool in use that is in no list.
    #[inline]
    pub(crate) unsafe fn push_front(&mut self, pool: Pool) {
        let p = pool.header();
        // SAFETY: `pool` and the current head have valid headers.
        unsafe {
            (*p).next = self.head;
            (*p).prev = ptr::null_mut();
            if !self.head.is_null() {
                (*self.head).prev = p;
            }
        }
        self.head = p;
    }

    /// Takes the first pool out of the list: [`remove`](Self::remove) for the head, inline.
    ///
    /// # Safety
    ///
    /// `pool` is the head of this list.
    #[inline(always)]
    pub(crate) unsafe fn remove_head(&mut self, pool: Pool) {
        let p = pool.header();
        debug_assert_eq!(self.head, p, "pool {p:p} is not this list's head");
        // SAFETY: `pool` and its successor are listed pools with valid headers; the head has
        // no predecessor.
        unsafe {
            let next = (*p).next;
            self.head = next;
            if !next.is_null() {
                (*next).prev = ptr::null_mut();
            }
            (*p).next = ptr::null_mut();
        }
    }

    /// Takes a pool out of the list.
    ///
    /// # Safety
    ///
    /// `pool` is in this list.
    pub(crate) unsafe fn remove(&mut self, pool: Pool) {
        let p = pool.header();
        // SAFETY: `pool` and its neighbours are listed pools with valid headers.
        unsafe {
            let (prev, next) = ((*p).prev, (*p).next);
            if prev.is_null() {
                debug_assert_eq!(self.head, p, "pool {p:p} is not in this list");
                self.head = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            (*p).next = ptr::null_mut();
            (*p).prev = ptr::null_mut();
        }
    }

    /// The pools of the list, head first; stops with an error at a wrong back link or after
    /// `limit` pools (a cycle).
    pub(crate) fn iter(&self, limit: usize) -> impl Iterator<Item = Result<Pool, String>> + '_ {
        let mut prev: *mut PoolHeader = ptr::null_mut();
        let mut at = self.head;
        let mut left = limit + 1;
        core::iter::from_fn(move || {
            let pool = NonNull::new(at)?;
            left -= 1;
            // SAFETY: listed pools have valid headers.
            let h = unsafe { &*pool.as_ptr() };
            if left == 0 || h.prev != prev {
                at = ptr::null_mut();
                return Some(Err(format!("pool list broken at {pool:p}")));
            }
            prev = at;
            at = h.next;
            Some(Ok(Pool(pool)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4 KiB pool-aligned buffer.
    #[repr(C, align(4096))]
    struct Buffer([u8; 4096]);

    fn pool_in(buffer: &mut Buffer, class: usize) -> (Pool, NonNull<u8>) {
        let addr = NonNull::from(&mut buffer.0).cast::<u8>();
        // SAFETY: the buffer is 4096 writable bytes aligned to 4096, used by nothing else.
        unsafe { Pool::init(addr, class, 7, NO_OWNER, 4096, Fill::Nothing) }
    }

    #[test]
    fn a_pool_carves_lazily_and_fills_up() {
        let mut buffer = Buffer([0; 4096]);
        let class = 31; // 512-byte blocks: (4096 - 48) / 512 = 7 per pool
        let (pool, first) = pool_in(&mut buffer, class);
        assert_eq!(blocks_per_pool(4096, class), 7);
        assert_eq!(
            (pool.ref_count(), pool.carved(), pool.arena_index()),
            (1, 2, 7)
        );
        let mut blocks = vec![first];
        // SAFETY: each pop follows a check that the free list has a block (carving as the
        // heap does when it runs dry).
        unsafe {
            loop {
                if pool.first_free().is_null() && !pool.carve_next(Fill::Nothing) {
                    break;
                }
                blocks.push(pool.pop_free().0);
            }
        }
        assert_eq!(blocks.len(), 7);
        assert_eq!(pool.ref_count(), 7);
        pool.check(7, 4096).unwrap();
        // SAFETY: every block is live in this pool.
        unsafe {
            assert!(pool.push_free(blocks[3]).is_null(), "the pool was full");
            assert_eq!(pool.push_free(blocks[5]), blocks[3].as_ptr());
        }
        assert_eq!(pool.live_blocks().unwrap().len(), 5);
        pool.check(7, 4096).unwrap();
    }

    #[test]
    fn a_corrupt_free_list_is_reported() {
        let mut buffer = Buffer([0; 4096]);
        let (pool, first) = pool_in(&mut buffer, 0);
        // SAFETY: `first` is live; freeing it makes it the head of the list.
        unsafe { pool.push_free(first) };
        // A stray link: the write after free that the debug mode must catch. (Made writable
        // first, so that memcheck, which watches free blocks, sees only the check's reads.)
        crate::valgrind::make_undefined(first.as_ptr(), 8);
        // SAFETY: the block is inside the buffer.
        unsafe { first.as_ptr().cast::<usize>().write(0x10) };
        let err = pool.check(7, 4096).unwrap_err();
        assert!(err.contains("stray address"), "{err}");
    }

    #[test]
    fn a_pool_list_links_and_unlinks() {
        let mut a = Buffer([0; 4096]);
        let mut b = Buffer([0; 4096]);
        let (pa, _) = pool_in(&mut a, 1);
        let (pb, _) = pool_in(&mut b, 1);
        let mut list = PoolList::EMPTY;
        // SAFETY: both pools are in use and in no list until pushed; removed once each.
        unsafe {
            list.push_front(pa);
            assert!(list.is_sole(pa));
            list.push_front(pb);
            let order: Vec<_> = list.iter(8).map(Result::unwrap).collect();
            assert_eq!(order, vec![pb, pa]);
            list.remove(pb);
            assert_eq!(list.head(), Some(pa));
            assert!(list.is_sole(pa));
            list.remove(pa);
        }
        assert_eq!(list.head(), None);
    }
}
