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
//! A block's pool is its address masked by `!(pool_size - 1)`. Blocks are carved lazily, a
//! page at a time: `next_offset` is the first block not carved yet (CPython's `nextoffset`;
//! its `maxnextoffset` is derived from the pool size here, so the header has room for an owner
//! the size of a pointer), and when the free list runs dry the blocks that start in the next
//! page are linked onto it ([`Pool::extend`]). Freed blocks form a singly linked LIFO list
//! through their first word ([`link`](crate::link)), headed by `freeblock`.
//!
//! ## Parked pages
//! `trim`, and the release policy's decay a few pools at a time (`RawHeap::sweep_free_pages`),
//! hand back the free pages of pools that still hold live blocks, so that scattered
//! survivors pin their own pages and not whole pools. A page can go when no live block
//! overlaps it; but the free list threads through the free blocks, and the page's contents
//! are lost. So its free blocks are *parked*: taken off the free list, and the page marked in
//! the header's `parked` bits. When the pool runs out of free and uncarved blocks, before it
//! would count as full, the lowest parked page is taken back: its blocks go on the free list
//! again (CPython's lazy carving, generalised: the page faults back in, zeroed, when the first
//! of them is written). The header's page, page 0, is never parked; a block that straddles a
//! parked page is parked with it, and comes back with the last of its pages.
//!
//! ## States and invariants
//! * **used**: some blocks live, some free; in its class's [`PoolList`], and `freeblock` is
//!   never null there (the allocation fast path relies on it);
//! * **full**: every block live, `freeblock` null; in no list (a free links it back);
//! * **empty**: no block live; given back to its arena, reusable by any class (or kept in its
//!   list as the heap's one cached empty pool).
//!
//! ```text
//! POOL_OVERHEAD <= next_offset <= pool_size - tail   (tail: what is left after the last block)
//! carved == (next_offset - POOL_OVERHEAD) / block size
//!        == ref_count + #free list + #parked (carved blocks overlapping a parked page)
//! no block on the free list overlaps a parked page; page 0 is never parked
//! full  ⇔  FULL marked in the header's count (see `FULL`)
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
    /// Blocks handed out and not yet freed (CPython's `ref.count`) less one, so all ones
    /// (`EMPTY_REFS`) when none is; with [`FULL`] set while the pool is full. Read it through
    /// [`Pool::ref_count`].
    refs: u32,
    /// The size class every block of this pool belongs to (CPython's `szidx`).
    size_class: u16,
    /// Bit `p` set: page `p` of the pool ([`PARK_PAGE`] bytes) is *parked*: handed back to the
    /// OS while the pool holds live blocks elsewhere, its free blocks off the free list until
    /// the pool runs out of others (see "Parked pages").
    parked: u16,
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
    /// The thread heap whose arena holds this pool ([`NO_OWNER`] for a plain `Heap`): what a
    /// free compares with the freeing thread's heap, and what a thread freeing a block of
    /// another thread's heap reads to send it home. Written once, when the pool is
    /// initialised, before any of its blocks is handed out, and constant while the pool is in
    /// use (an arena belongs to one heap for life). It takes the place of CPython's
    /// `maxnextoffset` and padding.
    owner: Owner,
}

/// Who owns a pool: the address of the owning thread heap's fast-path table (a number to this
/// layer, see `raw::UsedPools`; an address, never dereferenced as a pointer of its own), which
/// a free compares with the table it holds in a register, one instruction; or [`NO_OWNER`].
pub(crate) type Owner = usize;

/// The owner of a plain `Heap`'s pools: no thread heap.
pub(crate) const NO_OWNER: Owner = 0;

/// The top bit of `refs`, set while the pool is full (CPython tests `freeblock` for that after a
/// free, a second test). With the count kept less one, a free finds the decremented `refs`
/// negative both when the pool emptied (all ones) and when it was full (`FULL` set, and a full
/// pool keeps a block after one free), and tests the sign alone for the two.
const FULL: u32 = 1 << 31;

/// `refs` of a pool with no live block.
const EMPTY_REFS: u32 = u32::MAX;

/// The page of [`parked`](PoolHeader::parked) pages: 4 KiB. On systems with larger pages the
/// OS purges nothing of one, and nothing is parked.
pub(crate) const PARK_PAGE: usize = 4096;

/// Pools of at most this many pages may park pages (one bit each in the header).
pub(crate) const MAX_PARKED_PAGES: usize = u16::BITS as usize;

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
// A count of blocks never reaches the `FULL` bit: a pool is at most an arena.
const_assert!((crate::config::MAX_ARENA_SIZE / ALIGNMENT) < FULL as usize);

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
        let refs = unsafe { (*self.header()).refs };
        if refs == EMPTY_REFS {
            0
        } else {
            (refs & !FULL) as usize + 1
        }
    }

    /// Whether the pool is marked full ([`mark_full`](Self::mark_full)).
    #[inline]
    pub(crate) fn is_marked_full(self) -> bool {
        // SAFETY: as in `class`.
        let refs = unsafe { (*self.header()).refs };
        refs & FULL != 0 && refs != EMPTY_REFS
    }

    /// Marks the pool full: its free list is empty and nothing is left to carve. Until a free
    /// reports it ([`push_free`](Self::push_free)) and [`unmark_full`](Self::unmark_full)
    /// clears it.
    #[inline]
    pub(crate) fn mark_full(self) {
        debug_assert!(self.first_free().is_null());
        // SAFETY: as in `class`.
        unsafe { (*self.header()).refs |= FULL };
    }

    /// Clears the full mark, once a free into the full pool was reported.
    #[inline]
    pub(crate) fn unmark_full(self) {
        // SAFETY: as in `class`.
        unsafe { (*self.header()).refs &= !FULL };
    }

    /// After a [`push_free`](Self::push_free) that needs attention: whether the pool emptied;
    /// if it did not, it was full, and its full mark is cleared. The mask that clears the mark
    /// tells the two apart (an empty pool's count is all ones, a full one's less), so the full
    /// pool pays one compare over [`unmark_full`](Self::unmark_full) and the push keeps no
    /// copy of the count it decremented.
    #[inline(always)]
    pub(crate) fn unmark_full_unless_emptied(self) -> bool {
        // SAFETY: as in `class`.
        unsafe {
            let refs = (*self.header()).refs & !FULL;
            if refs == EMPTY_REFS & !FULL {
                return true;
            }
            (*self.header()).refs = refs;
        }
        false
    }

    /// The thread heap the pool belongs to ([`NO_OWNER`] for a plain heap).
    #[inline(always)]
    pub(crate) fn owner(self) -> Owner {
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
    pub(crate) unsafe fn owner_of(block: *const u8, pool_size: usize) -> Owner {
        let header: *const PoolHeader =
            ptr::with_exposed_provenance(block.addr() & !(pool_size - 1));
        // SAFETY: the caller's contract: a pool in use, whose header's `owner` nobody writes
        // while the block lives; the arena's provenance was exposed when it was mapped.
        unsafe { ptr::addr_of!((*header).owner).read() }
    }

    /// The pool's owner, read by any thread (as [`owner_of`](Self::owner_of), through a handle).
    ///
    /// # Safety
    ///
    /// The pool is in use and stays in use while the caller reads (a live block of it is the
    /// caller's), reached by a thread that the block's allocation happened before; or the pool
    /// is the [`stand_in`].
    #[inline(always)]
    pub(crate) unsafe fn owner_shared(self) -> Owner {
        // SAFETY: the caller's contract: nobody writes `owner` meanwhile.
        unsafe { ptr::addr_of!((*self.header()).owner).read() }
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
        owner: Owner,
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
                refs: 0,
                size_class: class as u16,
                parked: 0,
                freeblock: second,
                next: ptr::null_mut(),
                prev: ptr::null_mut(),
                arena_index,
                next_offset: (POOL_OVERHEAD + 2 * size) as u32,
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
    pub(crate) unsafe fn reuse(
        self,
        arena_index: u32,
        pool_size: usize,
        fill: Fill,
    ) -> NonNull<u8> {
        let h = self.header();
        // SAFETY: the caller's contract: a valid header of an empty pool, ours alone; its free
        // list holds every carved block, at least two, so the pop finds one.
        unsafe {
            debug_assert_eq!((*h).refs, EMPTY_REFS);
            (*h).arena_index = arena_index;
            (*h).next = ptr::null_mut();
            (*h).prev = ptr::null_mut();
            let (block, ran_dry) = self.pop_free();
            if ran_dry && !self.extend(pool_size, fill) && !self.unpark(fill) {
                // The pool is empty, so every carved block is free or parked: a pool holds
                // at least two blocks, and page 0's are never parked.
                unreachable!("an empty pool ran dry after one block");
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
            (*h).refs = (*h).refs.wrapping_add(1);
            let next = link::read(block);
            (*h).freeblock = next;
            (NonNull::new_unchecked(block), next.is_null())
        }
    }

    /// [`pop_free`](Self::pop_free) without counting the block: the caller counts it with
    /// [`count_one`](Self::count_one) or [`count_one_and_mark_full`](Self::count_one_and_mark_full)
    /// on each of the paths that follow. So the path that returns at once increments the
    /// count in memory, one instruction, instead of keeping it in a register for the path
    /// that marks the pool full.
    ///
    /// # Safety
    ///
    /// The pool's free list is not empty; the caller counts the block before anything else
    /// reads the count.
    #[inline(always)]
    pub(crate) unsafe fn pop_free_uncounted(self) -> (NonNull<u8>, bool) {
        let h = self.header();
        // SAFETY: as in `pop_free`.
        unsafe {
            let block = (*h).freeblock;
            debug_assert!(!block.is_null(), "pool {h:p} has no free block");
            core::hint::assert_unchecked(!block.is_null());
            let next = link::read(block);
            (*h).freeblock = next;
            (NonNull::new_unchecked(block), next.is_null())
        }
    }

    /// Counts a block handed out by [`pop_free_uncounted`](Self::pop_free_uncounted).
    #[inline(always)]
    pub(crate) fn count_one(self) {
        // SAFETY: as in `class`.
        unsafe { (*self.header()).refs = (*self.header()).refs.wrapping_add(1) };
    }

    /// Counts a block handed out by [`pop_free_uncounted`](Self::pop_free_uncounted), which
    /// was the pool's last: and marks the pool full ([`mark_full`](Self::mark_full)).
    #[inline(always)]
    pub(crate) fn count_one_and_mark_full(self) {
        debug_assert!(self.first_free().is_null());
        // SAFETY: as in `class`.
        unsafe { (*self.header()).refs = (*self.header()).refs.wrapping_add(1) | FULL };
    }

    /// Pops the first free block only if another follows it: a pop that calls nothing, for
    /// `Global`'s fast path, which leaves a pool running dry (its next block to carve) to its
    /// slow path. On an empty list's stand-in ([`PoolList::first`]) it always fails, and
    /// writes nothing.
    ///
    /// # Safety
    ///
    /// The pool's free list is not empty.
    #[inline(always)]
    pub(crate) unsafe fn pop_free_unless_last(self) -> Option<NonNull<u8>> {
        let h = self.header();
        // Under memcheck the link is marked readable around each read, and threads sharing the
        // stand-in would race on those marks: its pop fails without reading.
        #[cfg(feature = "valgrind")]
        if h == NO_POOL_HEAD {
            return None;
        }
        // SAFETY: as in `pop_free`: `freeblock` is a free block holding the link to the next.
        unsafe {
            let block = (*h).freeblock;
            debug_assert!(!block.is_null(), "pool {h:p} has no free block");
            let next = link::read(block);
            if next.is_null() {
                return None;
            }
            (*h).refs = (*h).refs.wrapping_add(1);
            (*h).freeblock = next;
            Some(NonNull::new_unchecked(block))
        }
    }

    /// Pushes a freed block on the free list. Returns whether the pool needs its heap's
    /// attention: it is empty now, or it was full (one sign test, see [`FULL`];
    /// [`is_marked_full`](Self::is_marked_full) tells which).
    ///
    /// # Safety
    ///
    /// `block` is a live block of this pool, reached with the heap's provenance, and is not
    /// used by anyone afterwards.
    #[inline(always)]
    pub(crate) unsafe fn push_free(self, block: NonNull<u8>) -> bool {
        let h = self.header();
        // SAFETY: the caller's contract: the block is ours to link.
        unsafe {
            debug_assert!(
                self.ref_count() > 0,
                "free of {block:p} in empty pool {h:p}"
            );
            debug_assert_eq!(self.is_marked_full(), (*h).freeblock.is_null());
            link::write(block.as_ptr(), (*h).freeblock);
            (*h).freeblock = block.as_ptr();
            let refs = (*h).refs.wrapping_sub(1);
            (*h).refs = refs;
            // Empty (all ones), or full (`FULL` set, see there). Nothing here reads `refs`
            // back, so the decrement stays one instruction (`decl` and a sign test).
            (refs as i32) < 0
        }
    }

    /// Carves the untouched blocks that start in the page of the next one (at least one) onto
    /// the empty free list, in address order, with `fill` applied; or reports (`false`) that
    /// nothing is left to carve. See [`extend_until`](Self::extend_until).
    ///
    /// # Safety
    ///
    /// The pool's free list is empty, and the pool is `pool_size` bytes.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn extend(self, pool_size: usize, fill: Fill) -> bool {
        let size = block_size(self.class());
        // SAFETY: the caller's contract; `pool_size - size` is the last offset a block of this
        // class can start at.
        unsafe { self.extend_with((pool_size - size) as u32, size, fill) }
    }

    /// [`extend`](Self::extend) for the size-less paths (never in debug mode): `last` is the
    /// class's last carving offset in this pool size, held by the heap.
    ///
    /// CPython carves one block each time a pool runs dry (`pymalloc_pool_extend`), so a pool
    /// being filled takes that path on every allocation. Carving a page's blocks at once, as
    /// mimalloc extends a page's free list, writes one link a block in a tight loop and runs dry
    /// once a page: the pops in between are the fast path's. A pool taken again from its arena
    /// is carved the same way from its start (its old free list, in the order its blocks were
    /// freed, is dropped), so its blocks come back in address order, from pages that are
    /// resident, and a pool taken for a few blocks writes a page of links, not its whole
    /// length.
    ///
    /// # Safety
    ///
    /// The pool's free list is empty, its blocks are `size` bytes, and `last` is its pool size
    /// less `size`.
    #[inline]
    pub(crate) unsafe fn extend_until(self, last: u32, size: usize) -> bool {
        debug_assert_eq!(block_size(self.class()), size);
        // SAFETY: the caller's contract.
        unsafe { self.extend_with(last, size, Fill::Nothing) }
    }

    /// # Safety
    ///
    /// As [`extend_until`](Self::extend_until), `fill` applied to each block carved.
    #[inline(always)]
    unsafe fn extend_with(self, last: u32, size: usize, fill: Fill) -> bool {
        let h = self.header();
        // SAFETY: a valid header; every block carved starts at or below `last = pool_size -
        // size`, so lies inside the pool.
        unsafe {
            debug_assert!((*h).freeblock.is_null());
            let first = (*h).next_offset as usize;
            if first > last as usize {
                return false;
            }
            // The blocks that start before the end of `first`'s page (the last of them may run
            // into the next page), and at or below `last`.
            let end = (first / PARK_PAGE + 1) * PARK_PAGE;
            let end = end.min(last as usize + 1);
            let count = (end - first).div_ceil(size);
            let base = h.cast::<u8>();
            let head = base.add(first);
            valgrind::make_undefined(head, count * size);
            fill.apply(head, count * size);
            let mut at = head;
            for _ in 1..count {
                let next = at.add(size);
                link::write(at, next);
                at = next;
            }
            link::write(at, ptr::null_mut());
            valgrind::make_noaccess(head, count * size);
            (*h).next_offset = (first + count * size) as u32;
            (*h).freeblock = head;
            true
        }
    }

    // ----------------------------------------------------------------------------------------
    // Parked pages

    /// The pool's parked pages (bit `p`: page `p`).
    pub(crate) fn parked(self) -> u16 {
        // SAFETY: as in `class`.
        unsafe { (*self.header()).parked }
    }

    /// Whether the block at `offset` (of `size` bytes) overlaps a page of `pages`.
    fn overlaps(offset: usize, size: usize, pages: u16) -> bool {
        let (first, last) = (offset / PARK_PAGE, (offset + size - 1) / PARK_PAGE);
        (first..=last).any(|p| p < MAX_PARKED_PAGES && pages & (1 << p) != 0)
    }

    /// The pages the pool could hand back now, as two masks: carved pages that no live block
    /// overlaps and that are not parked yet (`park`: their free blocks must be parked), and
    /// pages wholly past the carved blocks (`untouched`: nothing lives there; carving will
    /// fault them in again). Never page 0. Empty for a pool of more than
    /// [`MAX_PARKED_PAGES`] pages, and for one of one page.
    pub(crate) fn free_pages(self, pool_size: usize) -> Result<(u16, u16), String> {
        let pages = pool_size / PARK_PAGE;
        if !(2..=MAX_PARKED_PAGES).contains(&pages) {
            return Ok((0, 0));
        }
        let size = block_size(self.class());
        let carved = self.carved();
        // Which carved blocks are free: at most a 64 KiB pool of 16-byte blocks.
        let mut free = [0u64; (MAX_PARKED_PAGES * PARK_PAGE / ALIGNMENT).div_ceil(64)];
        for block in self.free_blocks() {
            let offset = block?.as_ptr().addr() - self.addr().as_ptr().addr();
            let index = (offset - POOL_OVERHEAD) / size;
            free[index / 64] |= 1 << (index % 64);
        }
        let mut pinned: u16 = 1; // the header's page
        for index in 0..carved {
            if free[index / 64] & (1 << (index % 64)) == 0 {
                let offset = POOL_OVERHEAD + index * size;
                for p in offset / PARK_PAGE..=(offset + size - 1) / PARK_PAGE {
                    pinned |= 1 << p;
                }
            }
        }
        // The carved region ends at the next block to carve, or at the pool's end once every
        // block is carved (the tail after the last block is never used).
        let next_offset = POOL_OVERHEAD + carved * size;
        let carved_end = if next_offset + size > pool_size {
            pool_size
        } else {
            next_offset
        };
        let (mut park, mut untouched) = (0u16, 0u16);
        for p in 1..pages {
            let (start, end) = (p * PARK_PAGE, (p + 1) * PARK_PAGE);
            if pinned & (1 << p) != 0 || self.parked() & (1 << p) != 0 {
                continue;
            }
            if end <= carved_end {
                park |= 1 << p;
            } else if start >= next_offset {
                untouched |= 1 << p;
            }
        }
        Ok((park, untouched))
    }

    /// Parks `pages` (found by [`free_pages`](Self::free_pages)): takes every free block
    /// overlapping them off the free list. A pool in use keeps a free block (its list's
    /// invariant), so when every free block lies in those pages, the lowest of them is not
    /// parked. Returns the pages parked, for the caller to purge.
    ///
    /// # Safety
    ///
    /// The pool is in use, ours alone; no live block overlaps `pages`, which lie in the carved
    /// region and exclude page 0.
    pub(crate) unsafe fn park(self, mut pages: u16) -> u16 {
        debug_assert_eq!(pages & 1, 0, "page 0 holds the header");
        let size = block_size(self.class());
        let base = self.addr().as_ptr().addr();
        let keeps_a_block = |parked: u16| {
            self.free_blocks()
                .any(|b| b.is_ok_and(|b| !Self::overlaps(b.as_ptr().addr() - base, size, parked)))
        };
        while pages != 0 && !keeps_a_block(self.parked() | pages) {
            pages &= pages - 1;
        }
        // SAFETY: the caller's contract (for `pages`, and so for any part of it).
        unsafe { self.park_exactly(pages) };
        pages
    }

    /// [`park`](Self::park) of exactly `pages`, which leave a free block on the list.
    ///
    /// # Safety
    ///
    /// As [`park`](Self::park).
    unsafe fn park_exactly(self, pages: u16) {
        let h = self.header();
        let size = block_size(self.class());
        let base = self.addr().as_ptr().addr();
        // SAFETY: the caller's contract; the free list's blocks hold their links.
        unsafe {
            let parked = (*h).parked | pages;
            // Rebuild the list in its order, without the blocks that overlap a parked page.
            let mut kept: *mut u8 = ptr::null_mut();
            let mut tail: *mut u8 = ptr::null_mut();
            let mut at = (*h).freeblock;
            while !at.is_null() {
                let next = link::read(at);
                if !Self::overlaps(at.addr() - base, size, parked) {
                    if tail.is_null() {
                        kept = at;
                    } else {
                        link::write(tail, at);
                    }
                    tail = at;
                }
                at = next;
            }
            if !tail.is_null() {
                link::write(tail, ptr::null_mut());
            }
            debug_assert!(
                !kept.is_null() || pages == 0,
                "a pool in use keeps a free block"
            );
            (*h).freeblock = kept;
            (*h).parked = parked;
        }
    }

    /// The pool's free list and uncarved blocks ran out: takes back parked pages, lowest first,
    /// until one gives a block to the free list. Returns whether one did (`false`: nothing is
    /// parked, the pool is full).
    ///
    /// # Safety
    ///
    /// The pool is in use, ours alone, its free list empty and nothing left to carve.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn unpark(self, fill: Fill) -> bool {
        let h = self.header();
        let size = block_size(self.class());
        let carved = self.carved();
        // SAFETY: the caller's contract; the blocks pushed are carved, free, and overlap no
        // page still parked, so they are ours to link.
        unsafe {
            debug_assert!((*h).freeblock.is_null());
            while (*h).parked != 0 {
                let page = (*h).parked.trailing_zeros() as usize;
                (*h).parked &= !(1 << page);
                let parked = (*h).parked;
                let start = (page * PARK_PAGE)
                    .saturating_sub(size - 1)
                    .max(POOL_OVERHEAD);
                let first = (start - POOL_OVERHEAD).div_ceil(size);
                // Highest address first, so that the list hands them out in address order.
                for index in (first..carved).rev() {
                    let offset = POOL_OVERHEAD + index * size;
                    if offset >= (page + 1) * PARK_PAGE {
                        continue;
                    }
                    if Self::overlaps(offset, size, parked) {
                        continue;
                    }
                    let block = h.cast::<u8>().add(offset);
                    valgrind::make_undefined(block, size);
                    fill.apply(block, size);
                    link::write(block, (*h).freeblock);
                    valgrind::make_noaccess(block, size);
                    (*h).freeblock = block;
                }
                if !(*h).freeblock.is_null() {
                    return true;
                }
            }
            false
        }
    }

    /// Carved blocks that overlap a parked page.
    pub(crate) fn parked_blocks(self) -> usize {
        let parked = self.parked();
        if parked == 0 {
            return 0;
        }
        let size = block_size(self.class());
        (0..self.carved())
            .filter(|i| Self::overlaps(POOL_OVERHEAD + i * size, size, parked))
            .count()
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
        let (size, parked) = (block_size(self.class()), self.parked());
        Ok((0..self.carved())
            .filter(|i| !Self::overlaps(POOL_OVERHEAD + i * size, size, parked))
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
            || h.next_offset as usize > pool_size
        {
            return Err(format!("pool {:p}: corrupt header {h:?}", self.0));
        }
        let carved = self.carved();
        let live = self.ref_count();
        if live > carved || carved > blocks_per_pool(pool_size, class) {
            return Err(format!("pool {:p}: {live} live of {carved} carved", self.0));
        }
        if self.is_marked_full() != h.freeblock.is_null() {
            return Err(format!(
                "pool {:p}: full mark {} but free list head {:p}",
                self.0,
                self.is_marked_full(),
                h.freeblock
            ));
        }
        let mut free = 0;
        for block in self.free_blocks() {
            let offset = block?.as_ptr().addr() - self.addr().as_ptr().addr();
            if Self::overlaps(offset, block_size(class), h.parked) {
                return Err(format!(
                    "pool {:p}: free block at offset {offset} lies in a parked page",
                    self.0
                ));
            }
            free += 1;
        }
        let parked = self.parked_blocks();
        if free + live + parked != carved {
            return Err(format!(
                "pool {:p}: {free} free + {live} live + {parked} parked != {carved} carved",
                self.0
            ));
        }
        if h.parked & 1 != 0 {
            return Err(format!("pool {:p}: its header's page is parked", self.0));
        }
        Ok(())
    }
}

/// A class's list of used pools: doubly linked through the pools' headers, with a real head
/// (CPython's `usedpools` array of fake headers is a C trick). Written once: every insertion
/// and removal of a pool goes through here (mimalloc's `mi_page_queue_push/remove`).
///
/// An empty list's head is not null but [`NO_POOL`], a pool that is never in use and whose one
/// free block has no successor: [`Pool::pop_free_unless_last`] on [`first`](Self::first)
/// fails for an empty list exactly as for a pool about to run dry, so the allocation fast path
/// makes one test for both (mimalloc's empty page, `_mi_page_empty`, does the same).
#[derive(Debug)]
pub(crate) struct PoolList {
    /// The first pool, or `NO_POOL`: never null. Only the head is a sentinel; the pools'
    /// `next` and `prev` links end in null.
    head: *mut PoolHeader,
}

/// The head of every empty [`PoolList`]: a header that is only ever read (it lives in
/// read-only memory), whose free list is one block, [`NoPool::link`], holding a null link.
#[repr(C)]
struct NoPool {
    header: PoolHeader,
    link: *mut u8,
}

// SAFETY: never written (nothing in it is a cell; every write to a pool header goes to a pool in
// use, and `NO_POOL` is never one), so sharing it between threads is sharing a constant.
unsafe impl Sync for NoPool {}

static NO_POOL: NoPool = NoPool {
    header: PoolHeader {
        refs: EMPTY_REFS,
        size_class: 0,
        parked: 0,
        freeblock: (&raw const NO_POOL.link).cast_mut().cast(),
        next: ptr::null_mut(),
        prev: ptr::null_mut(),
        arena_index: 0,
        next_offset: 0,
        owner: NO_OWNER,
    },
    link: ptr::null_mut(),
};

/// `NO_POOL`'s header, as a list head.
const NO_POOL_HEAD: *mut PoolHeader = (&raw const NO_POOL.header).cast_mut();

/// A pool header that is never in use and never written, owned by [`NO_OWNER`]: what a free
/// reads instead of a block's pool when it must not touch the block (see
/// `UsedPools::CLOSED`). Read through exposed provenance: [`expose_stand_in`] first.
pub(crate) const fn stand_in() -> *const u8 {
    NO_POOL_HEAD.cast_const().cast()
}

/// Exposes the [`stand_in`]'s provenance, so that an address computed to it may be read.
#[inline]
pub(crate) fn expose_stand_in() {
    let _ = stand_in().expose_provenance();
}

impl PoolList {
    pub(crate) const EMPTY: PoolList = PoolList { head: NO_POOL_HEAD };

    /// The first pool, if any.
    #[inline(always)]
    pub(crate) fn head(&self) -> Option<Pool> {
        if self.head == NO_POOL_HEAD {
            return None;
        }
        // SAFETY: a head is never null (see the field).
        Some(Pool(unsafe { NonNull::new_unchecked(self.head) }))
    }

    /// The first pool, or for an empty list a pool that is not in use and whose free list
    /// holds one block and nothing after it: the pool to try
    /// [`pop_free_unless_last`](Pool::pop_free_unless_last) on, and nothing else.
    #[inline(always)]
    pub(crate) fn first(&self) -> Pool {
        // SAFETY: a head is never null (see the field).
        Pool(unsafe { NonNull::new_unchecked(self.head) })
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
            (*p).prev = ptr::null_mut();
            if self.head == NO_POOL_HEAD {
                (*p).next = ptr::null_mut();
            } else {
                (*p).next = self.head;
                (*self.head).prev = p;
            }
        }
        self.head = p;
    }

    /// Puts a pool that is in no list second, after the head (first if the list is empty).
    ///
    /// # Safety
    ///
    /// `pool` is a pool in use that is in no list.
    #[inline]
    pub(crate) unsafe fn push_second(&mut self, pool: Pool) {
        if self.head == NO_POOL_HEAD {
            // SAFETY: the caller's contract.
            return unsafe { self.push_front(pool) };
        }
        let p = pool.header();
        // SAFETY: `pool`, the head and its successor have valid headers.
        unsafe {
            let next = (*self.head).next;
            (*p).prev = self.head;
            (*p).next = next;
            if !next.is_null() {
                (*next).prev = p;
            }
            (*self.head).next = p;
        }
    }

    /// Takes a pool out of the list.
    ///
    /// # Safety
    ///
    /// `pool` is in this list.
    #[inline]
    pub(crate) unsafe fn remove(&mut self, pool: Pool) {
        let p = pool.header();
        // SAFETY: `pool` and its neighbours are listed pools with valid headers.
        unsafe {
            let (prev, next) = ((*p).prev, (*p).next);
            if prev.is_null() {
                debug_assert_eq!(self.head, p, "pool {p:p} is not in this list");
                self.head = if next.is_null() { NO_POOL_HEAD } else { next };
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

    /// Takes the first pool out of the list: [`remove`](Self::remove) for a pool known to be
    /// the head (no previous pool to relink), which leaves the pool's own links as they were:
    /// a pool in no list is only ever listed again by [`push_front`](Self::push_front) or
    /// [`push_second`](Self::push_second), which write both. For the paths where a pool that
    /// fills up leaves its list.
    ///
    /// # Safety
    ///
    /// `pool` is the first pool of this list.
    #[inline(always)]
    pub(crate) unsafe fn remove_head(&mut self, pool: Pool) {
        let p = pool.header();
        debug_assert_eq!(self.head, p, "pool {p:p} is not the head");
        // SAFETY: `pool` and its successor are listed pools with valid headers.
        unsafe {
            let next = (*p).next;
            if next.is_null() {
                self.head = NO_POOL_HEAD;
            } else {
                (*next).prev = ptr::null_mut();
                self.head = next;
            }
        }
    }

    /// The pools of the list, head first; stops with an error at a wrong back link or after
    /// `limit` pools (a cycle).
    pub(crate) fn iter(&self, limit: usize) -> impl Iterator<Item = Result<Pool, String>> + '_ {
        let mut prev: *mut PoolHeader = ptr::null_mut();
        let mut at = self.head().map_or(ptr::null_mut(), Pool::header);
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

    /// A 16 KiB pool-aligned buffer: four pages.
    #[repr(C, align(16384))]
    struct Pages([u8; 16384]);

    #[test]
    fn extend_carves_the_blocks_that_start_in_the_next_page_in_address_order() {
        let mut buffer = Pages([0; 16384]);
        let addr = NonNull::from(&mut buffer.0).cast::<u8>();
        // 96-byte blocks: (16384 - 48) / 96 = 170 per pool.
        let class = 5;
        // SAFETY: the buffer is 16 KiB, writable, aligned to its size, used by nothing else.
        let (pool, first) = unsafe { Pool::init(addr, class, 0, NO_OWNER, 16384, Fill::Nothing) };
        let base = addr.as_ptr().addr();
        let mut blocks = vec![first];
        let mut carved_at_each_run_dry = Vec::new();
        // SAFETY: each pop follows a check that the free list has a block.
        unsafe {
            loop {
                if pool.first_free().is_null() {
                    if !pool.extend(16384, Fill::Nothing) {
                        break;
                    }
                    carved_at_each_run_dry.push(pool.carved());
                }
                blocks.push(pool.pop_free().0);
            }
        }
        // Every block once, in address order.
        assert_eq!(blocks.len(), blocks_per_pool(16384, class));
        for (i, block) in blocks.iter().enumerate() {
            assert_eq!(block.as_ptr().addr() - base, POOL_OVERHEAD + i * 96);
        }
        // Each extension ends with the first block that starts in the page after.
        let page_ends: Vec<usize> = carved_at_each_run_dry
            .iter()
            .map(|&carved| POOL_OVERHEAD + carved * 96)
            .collect();
        // (The two blocks `init` carves are in page 0; then one extension a page.)
        assert_eq!(page_ends.len(), 4, "{page_ends:?}");
        for (p, &end) in page_ends[..3].iter().enumerate() {
            let boundary = (p + 1) * PARK_PAGE;
            assert!(end >= boundary && end - 96 < boundary, "{page_ends:?}");
        }
        assert_eq!(
            page_ends[3],
            POOL_OVERHEAD + 170 * 96,
            "the last page up to the pool's end"
        );
        pool.mark_full();
        pool.check(0, 16384).unwrap();
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
                if pool.first_free().is_null() && !pool.extend(4096, Fill::Nothing) {
                    break;
                }
                blocks.push(pool.pop_free().0);
            }
        }
        assert_eq!(blocks.len(), 7);
        assert_eq!(pool.ref_count(), 7);
        assert!(pool.check(7, 4096).unwrap_err().contains("full mark false"));
        // As the heap does when it retires a pool.
        pool.mark_full();
        assert_eq!(pool.ref_count(), 7);
        pool.check(7, 4096).unwrap();
        // SAFETY: every block is live in this pool.
        unsafe {
            assert!(pool.push_free(blocks[3]), "the pool was full");
            assert_eq!(pool.ref_count(), 6);
            assert!(pool.is_marked_full());
            pool.unmark_full();
            assert!(!pool.push_free(blocks[5]), "neither full nor empty");
            assert_eq!(pool.first_free(), blocks[5].as_ptr());
        }
        assert_eq!(pool.live_blocks().unwrap().len(), 5);
        pool.check(7, 4096).unwrap();
    }

    #[test]
    fn a_push_that_needs_attention_tells_a_full_pool_from_an_empty_one() {
        let mut buffer = Buffer([0; 4096]);
        let (pool, first) = pool_in(&mut buffer, 31);
        // SAFETY: blocks of this pool, each popped (or carved then popped) once, as the
        // size-less fast path does, and pushed back once.
        unsafe {
            let mut blocks = vec![first];
            loop {
                let (block, ran_dry) = pool.pop_free_uncounted();
                blocks.push(block);
                if ran_dry && !pool.extend_until(4096 - 512, 512) {
                    pool.count_one_and_mark_full();
                    break;
                }
                pool.count_one();
            }
            assert_eq!(blocks.len(), 7);
            assert!(pool.is_marked_full());
            pool.check(7, 4096).unwrap();
            assert!(pool.push_free(blocks[0]));
            assert!(!pool.unmark_full_unless_emptied(), "was full");
            assert!(!pool.is_marked_full());
            for &block in &blocks[1..6] {
                assert!(!pool.push_free(block));
            }
            assert!(pool.push_free(blocks[6]));
            assert!(pool.unmark_full_unless_emptied(), "emptied");
            assert_eq!(pool.ref_count(), 0);
        }
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

    #[test]
    fn push_second_goes_after_the_head_or_first_in_an_empty_list() {
        let mut bufs = [Buffer([0; 4096]), Buffer([0; 4096]), Buffer([0; 4096])];
        let [a, b, c] = &mut bufs;
        let (pa, _) = pool_in(a, 1);
        let (pb, _) = pool_in(b, 1);
        let (pc, _) = pool_in(c, 1);
        let mut list = PoolList::EMPTY;
        // SAFETY: the pools are in use and in no list until pushed; removed once each.
        unsafe {
            list.push_second(pa);
            assert!(list.is_sole(pa), "first in an empty list");
            list.push_second(pb);
            list.push_second(pc);
            // `iter` also checks every back link.
            let order: Vec<_> = list.iter(8).map(Result::unwrap).collect();
            assert_eq!(order, vec![pa, pc, pb]);
            list.remove(pc);
            let order: Vec<_> = list.iter(8).map(Result::unwrap).collect();
            assert_eq!(order, vec![pa, pb]);
            list.remove(pa);
            assert_eq!(list.head(), Some(pb));
            assert!(list.is_sole(pb));
            list.remove(pb);
        }
        assert_eq!(list.head(), None);
    }
}
