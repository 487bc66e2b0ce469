//! The raw heap: layers 0–2 behind an `unsafe`, `&mut self` API.
//!
//! [`RawHeap`] owns the arena table and one used-pool list per size class, and routes every
//! request by its layout: zero-sized requests get a dangling pointer, small ones a pool block,
//! the rest the system allocator. It knows nothing of sharing; [`Heap`](crate::Heap) wraps it
//! in an `UnsafeCell` and is what callers see.
//!
//! The fast paths are [`RawHeap::alloc_block`] and [`RawHeap::free_block`]: one list pop or
//! push and one well-predicted test each. Everything else (a pool running dry or filling up,
//! a pool emptying, a new arena) is in `#[cold]` functions below them. Nothing on the fast
//! path counts anything: the statistics are derived by walking the structures on demand, as
//! CPython does since bpo-37537.

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use std::alloc::{GlobalAlloc, System};

use allocator_api2::alloc::AllocError;

use crate::arena::Arenas;
use crate::config::{HeapConfig, ALIGNMENT, NUM_SIZE_CLASSES, SMALL_REQUEST_THRESHOLD};
use crate::debug::DebugState;
use crate::os::ArenaSource;
use crate::pool::{self, PoolHeader, POOL_OVERHEAD};
use crate::size_class::{block_size, class_of, is_small};
use crate::valgrind;

/// Layers 0–2 of one heap.
pub(crate) struct RawHeap {
    /// Head of each class's list of used pools (neither full nor empty); null when none.
    pub(crate) used_pools: [*mut PoolHeader; NUM_SIZE_CLASSES],
    /// `!(pool_size - 1)`: masks a block's address down to its pool.
    pool_mask: usize,
    pub(crate) arenas: Arenas,
    /// Bytes currently held in large (system) allocations.
    pub(crate) large_bytes: usize,
    /// Large allocations currently live.
    pub(crate) large_count: usize,
    /// Bytes the heap may hold from the OS (arenas + large); `usize::MAX` without a limit.
    memory_limit: usize,
    /// Requests with `size - 1 < small_limit` (and alignment at most 16) take the pool fast
    /// path: [`SMALL_REQUEST_THRESHOLD`] normally, 0 in debug mode so that every request takes
    /// the debug path without a branch of its own on the fast path.
    small_limit: usize,
    /// The debug mode's records; `None` when it is off.
    pub(crate) debug: Option<Box<DebugState>>,
    /// A pool kept in its class's list after its last block was freed, or null (see
    /// [`pool_became_empty`](Self::pool_became_empty)).
    cached_pool: *mut PoolHeader,
}

/// A block as the allocator API returns it: its address and usable length.
#[inline(always)]
pub(crate) fn slice(ptr: NonNull<u8>, len: usize) -> NonNull<[u8]> {
    NonNull::slice_from_raw_parts(ptr, len)
}

/// A well-aligned, non-null pointer for zero-sized requests; it is never dereferenced.
#[inline]
pub(crate) fn dangling(align: usize) -> NonNull<u8> {
    // SAFETY: an alignment is a power of two, hence never zero.
    unsafe { NonNull::new_unchecked(ptr::without_provenance_mut(align)) }
}

impl RawHeap {
    /// A heap with a validated `config`, taking arenas from `source`. Maps nothing yet.
    pub(crate) fn new(config: &HeapConfig, source: Box<dyn ArenaSource + Send>) -> Self {
        debug_assert!(config.validate().is_ok());
        RawHeap {
            used_pools: [ptr::null_mut(); NUM_SIZE_CLASSES],
            pool_mask: !(config.pool_size - 1),
            arenas: Arenas::new(
                config.pool_size,
                config.arena_size,
                config.empty_arenas_kept,
                source,
            ),
            large_bytes: 0,
            large_count: 0,
            memory_limit: config.memory_limit.unwrap_or(usize::MAX),
            small_limit: if config.debug {
                0
            } else {
                SMALL_REQUEST_THRESHOLD
            },
            debug: config.debug.then(Box::default),
            cached_pool: ptr::null_mut(),
        }
    }

    /// The pool a small block lies in: its address masked down to the pool size.
    ///
    /// The header is reached through the arena's provenance (exposed when the arena was
    /// mapped), not the block pointer's: a caller's pointer may be entitled to its block only.
    #[inline(always)]
    pub(crate) fn pool_of(&self, block: NonNull<u8>) -> NonNull<PoolHeader> {
        let pool = ptr::with_exposed_provenance_mut(block.as_ptr().addr() & self.pool_mask);
        // SAFETY: masking a non-null block address inside a pool yields the pool's start,
        // which is non-null (arenas are never at address 0).
        unsafe { NonNull::new_unchecked(pool) }
    }

    /// Bytes the memory limit still allows the heap to take from the OS.
    fn headroom(&self) -> usize {
        self.memory_limit
            .saturating_sub(self.arenas.mapped_bytes())
            .saturating_sub(self.large_bytes)
    }

    // ----------------------------------------------------------------------------------------
    // Layer 2: blocks

    /// Hands out a block of size class `class`: the fast path.
    #[inline(always)]
    pub(crate) fn alloc_block(&mut self, class: usize) -> Option<NonNull<u8>> {
        match NonNull::new(self.used_pool(class)) {
            // SAFETY: a pool in a used-pool list is a live pool of this heap in that state.
            Some(pool) => Some(unsafe { self.pop_block(pool, class) }),
            None => self.alloc_block_from_new_pool(class),
        }
    }

    /// The head of `class`'s used-pool list.
    #[inline(always)]
    fn used_pool(&self, class: usize) -> *mut PoolHeader {
        debug_assert!(class < NUM_SIZE_CLASSES, "class {class} out of range");
        // SAFETY: every caller computes `class` from a size of 1 to 512 bytes (`class_of`), so
        // it is below NUM_SIZE_CLASSES; the check is left out of the fast path.
        unsafe { *self.used_pools.get_unchecked(class) }
    }

    /// Pops the first free block of a used pool: one list pop, one well-predicted test.
    ///
    /// # Safety
    ///
    /// `pool` is in `class`'s used-pool list.
    #[inline(always)]
    unsafe fn pop_block(&mut self, pool: NonNull<PoolHeader>, class: usize) -> NonNull<u8> {
        // SAFETY: a used pool's `freeblock` is a free block of it (the used-state invariant,
        // see `pool`), holding the link to the next.
        unsafe {
            let p = pool.as_ptr();
            let block = (*p).freeblock;
            debug_assert!(!block.is_null(), "used pool {p:p} has no free block");
            core::hint::assert_unchecked(!block.is_null());
            (*p).ref_count += 1;
            let next = pool::next_free(block);
            (*p).freeblock = next;
            if next.is_null() {
                self.refill_or_retire(pool, class);
            }
            valgrind::malloclike(block, block_size(class), self.debug.is_some());
            NonNull::new_unchecked(block)
        }
    }

    /// The head pool of `class` ran out of free blocks: carve one more, or unlink it as full.
    #[cold]
    #[inline(never)]
    fn refill_or_retire(&mut self, pool: NonNull<PoolHeader>, class: usize) {
        // SAFETY: `pool` is the head of `class`'s used list with a null `freeblock`.
        unsafe {
            if pool::carve_next(pool, self.debug.is_some()) {
                return;
            }
            debug_assert_eq!(self.used_pools[class], pool.as_ptr());
            let next = (*pool.as_ptr()).next;
            self.used_pools[class] = next;
            if !next.is_null() {
                (*next).prev = ptr::null_mut();
            }
            (*pool.as_ptr()).next = ptr::null_mut();
        }
    }

    /// No pool of `class` has a free block: take an empty pool from layer 1.
    #[cold]
    #[inline(never)]
    fn alloc_block_from_new_pool(&mut self, class: usize) -> Option<NonNull<u8>> {
        debug_assert!(self.used_pools[class].is_null());
        let headroom = self.headroom();
        let taken = self.arenas.take_pool(headroom)?;
        let pool = taken.pool.cast::<PoolHeader>();
        // SAFETY: `take_pool` handed over a whole free pool of this heap. A dirty pool's header
        // is the one its last user left when it emptied: a valid header whose free list holds
        // every carved block.
        let block = unsafe {
            let p = pool.as_ptr();
            if taken.dirty && (*p).size_class as usize == class && !(*p).freeblock.is_null() {
                // Last used by this same class: its free list is ready (CPython does the same).
                debug_assert_eq!((*p).ref_count, 0);
                let block = (*p).freeblock;
                (*p).freeblock = pool::next_free(block);
                (*p).ref_count = 1;
                (*p).arena_index = taken.arena_index;
                if (*p).freeblock.is_null() && !pool::carve_next(pool, self.debug.is_some()) {
                    unreachable!("a pool holds at least two blocks");
                }
                NonNull::new_unchecked(block)
            } else {
                let poison = self.debug.is_some();
                pool::init_pool(
                    pool,
                    class,
                    taken.arena_index,
                    self.arenas.pool_size,
                    poison,
                )
            }
        };
        // SAFETY: the pool header was just initialised; the list of `class` is empty.
        unsafe {
            (*pool.as_ptr()).next = ptr::null_mut();
            (*pool.as_ptr()).prev = ptr::null_mut();
        }
        self.used_pools[class] = pool.as_ptr();
        valgrind::malloclike(block.as_ptr(), block_size(class), self.debug.is_some());
        Some(block)
    }

    /// Takes back a small block: the fast path.
    ///
    /// # Safety
    ///
    /// `block` was returned by `alloc_block` of this heap and is not freed yet.
    #[inline(always)]
    pub(crate) unsafe fn free_block(&mut self, block: NonNull<u8>) {
        let pool = self.pool_of(block);
        // The link is written through the heap's own provenance: the caller's pointer may
        // cover fewer bytes than a link (a `Box<u32>` covers 4).
        let block = pool.cast::<u8>().with_addr(block.addr());
        // SAFETY: the caller guarantees `block` is a live block of this heap, so `pool` is its
        // pool's header and the block's first word may be overwritten with the link.
        unsafe {
            let p = pool.as_ptr();
            debug_assert!(
                (*p).ref_count > 0,
                "free of block {block:p} in empty pool {p:p}"
            );
            valgrind::freelike(block.as_ptr());
            let last_free = (*p).freeblock;
            pool::set_next(block.as_ptr(), last_free);
            (*p).freeblock = block.as_ptr();
            (*p).ref_count -= 1;
            // Emptiness first: the decrement's own flags decide it. A pool that was full
            // cannot be empty now, since every pool holds at least two blocks.
            if (*p).ref_count == 0 {
                self.pool_became_empty(pool);
            } else if last_free.is_null() {
                self.pool_was_full(pool);
            }
        }
    }

    /// A block was freed into a full pool: the pool is used again, and goes to the front of its
    /// class's list so the next allocation of the class finds it.
    ///
    /// # Safety
    ///
    /// `pool` is a pool in use of this heap that was full (so in no list) until a block was
    /// just freed into it.
    #[cold]
    #[inline(never)]
    unsafe fn pool_was_full(&mut self, pool: NonNull<PoolHeader>) {
        // SAFETY: `pool` was full, so it is in no list; its header is valid.
        unsafe {
            let p = pool.as_ptr();
            debug_assert!((*p).ref_count > 0, "a pool holds at least two blocks");
            let class = (*p).size_class as usize;
            let head = self.used_pools[class];
            (*p).next = head;
            (*p).prev = ptr::null_mut();
            if !head.is_null() {
                (*head).prev = p;
            }
            self.used_pools[class] = p;
        }
    }

    /// The last live block of a used pool was freed.
    ///
    /// Normally the pool goes back to its arena. But when it was its class's only pool, a
    /// program freeing and allocating one block in a loop would send the pool to its arena and
    /// take it back on every iteration; so the heap keeps that pool where it is, as its one
    /// *cached empty pool*. The cache spends one unit of the budget for spares that also
    /// governs empty arenas ([`HeapConfig::empty_arenas_kept`]): a pool is cached only while
    /// that budget has room, and an arena that empties while the cache holds an empty pool
    /// counts it. So a fully freed heap still keeps at most `empty_arenas_kept` spares, and
    /// [`flush_cached_pool`](Self::flush_cached_pool) gives it back on `trim`.
    ///
    /// # Safety
    ///
    /// `pool` is in its class's used-pool list and its last live block was just freed.
    #[cold]
    #[inline(never)]
    unsafe fn pool_became_empty(&mut self, pool: NonNull<PoolHeader>) {
        let p = pool.as_ptr();
        if p == self.cached_pool {
            return;
        }
        // SAFETY: `pool` is in its class's used list (it had a free block before this free).
        let sole = unsafe { (*p).prev.is_null() && (*p).next.is_null() };
        if sole {
            self.flush_cached_pool();
            if self.arenas.empty_arenas < self.arenas.empty_arenas_kept {
                self.cached_pool = p;
                return;
            }
        }
        let spares = self.cached_spares();
        // SAFETY: the pool is in its class's used list and holds no live block.
        unsafe { self.release_pool(pool, spares) };
    }

    /// Spares held outside the arenas: 1 while the cached pool is empty, else 0.
    fn cached_spares(&self) -> usize {
        // SAFETY: a non-null cached pool is a pool in use of this heap (it leaves the cache
        // before it can go back to its arena).
        usize::from(!self.cached_pool.is_null() && unsafe { (*self.cached_pool).ref_count } == 0)
    }

    /// Gives the cached pool back to its arena if it is still empty, and empties the cache.
    pub(crate) fn flush_cached_pool(&mut self) {
        let cached = core::mem::replace(&mut self.cached_pool, ptr::null_mut());
        if let Some(pool) = NonNull::new(cached) {
            // SAFETY: as in `cached_spares`; an empty cached pool is in its class's list.
            unsafe {
                if (*cached).ref_count == 0 {
                    self.release_pool(pool, 0);
                }
            }
        }
    }

    /// Unlinks an empty pool from its class's list and gives it to its arena.
    ///
    /// # Safety
    ///
    /// `pool` is in its class's used list and holds no live block.
    unsafe fn release_pool(&mut self, pool: NonNull<PoolHeader>, spares: usize) {
        // SAFETY: the caller's contract; the neighbours in the list are live pools.
        unsafe {
            let p = pool.as_ptr();
            let class = (*p).size_class as usize;
            let (prev, next) = ((*p).prev, (*p).next);
            if prev.is_null() {
                debug_assert_eq!(self.used_pools[class], p);
                self.used_pools[class] = next;
            } else {
                (*prev).next = next;
            }
            if !next.is_null() {
                (*next).prev = prev;
            }
            let arena_index = (*p).arena_index;
            let number = self.arenas.pool_number(arena_index, pool.cast());
            self.arenas.return_pool(arena_index, number, spares);
        }
    }

    // ----------------------------------------------------------------------------------------
    // Routing by layout

    /// Whether a request takes the pool fast path: non-zero, small, and not in debug mode.
    #[inline(always)]
    fn takes_fast_path(&self, layout: Layout) -> bool {
        layout.size().wrapping_sub(1) < self.small_limit && layout.align() <= ALIGNMENT
    }

    /// Allocates for any layout: pools, dangling, or the system allocator.
    #[inline]
    pub(crate) fn allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let size = layout.size();
        if self.takes_fast_path(layout) {
            let class = class_of(size);
            return match self.alloc_block(class) {
                Some(block) => Ok(slice(block, block_size(class))),
                None => Err(AllocError),
            };
        }
        self.allocate_other(layout)
    }

    /// The requests the fast path does not serve: zero-sized, large, and debug-mode ones.
    #[cold]
    #[inline(never)]
    pub(crate) fn allocate_other(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(slice(dangling(layout.align()), 0));
        }
        if self.debug.is_some() {
            return self.debug_allocate(layout);
        }
        self.allocate_large(layout)
    }

    /// A request for the system allocator, within the memory limit.
    pub(crate) fn allocate_large(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(layout.size() != 0);
        if layout.size() > self.headroom() {
            return Err(AllocError);
        }
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { System.alloc(layout) }).ok_or(AllocError)?;
        self.large_bytes += layout.size();
        self.large_count += 1;
        Ok(slice(ptr, layout.size()))
    }

    /// Frees for any layout.
    ///
    /// # Safety
    ///
    /// `ptr` was allocated by this heap with a layout that `layout` fits (same alignment, size
    /// between the requested size and the length returned), and is not freed yet.
    #[inline]
    pub(crate) unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        if self.takes_fast_path(layout) {
            // SAFETY: a non-zero small layout outside debug mode means a pool block (routing
            // is by layout, and the caller's layout fits the one it was allocated with).
            unsafe { self.free_block(ptr) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { self.deallocate_other(ptr, layout) }
        }
    }

    /// Frees what the fast path does not: zero-sized (nothing to do), large, and debug-mode
    /// blocks.
    ///
    /// # Safety
    ///
    /// As [`deallocate`](Self::deallocate), with a layout the fast path does not take.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn deallocate_other(&mut self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() == 0 {
            return;
        }
        if self.debug.is_some() {
            // SAFETY: forwarded contract; the debug mode checks it.
            unsafe { self.debug_deallocate(ptr, layout) };
            return;
        }
        // SAFETY: forwarded contract: a non-zero layout that is not small is a system block.
        unsafe { self.deallocate_large(ptr, layout) }
    }

    /// Frees a block of the system allocator.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`allocate_large`](Self::allocate_large) with `layout`, not yet freed.
    pub(crate) unsafe fn deallocate_large(&mut self, ptr: NonNull<u8>, layout: Layout) {
        debug_assert!(self.large_count > 0 && self.large_bytes >= layout.size());
        self.large_bytes -= layout.size();
        self.large_count -= 1;
        // SAFETY: large blocks come from `System.alloc` with this very layout.
        unsafe { System.dealloc(ptr.as_ptr(), layout) }
    }

    /// Allocates zeroed memory: the whole returned length is zero.
    pub(crate) fn allocate_zeroed(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate(layout)?;
        // SAFETY: `block` is freshly allocated, writable for its whole length.
        unsafe { block.cast::<u8>().as_ptr().write_bytes(0, block.len()) };
        Ok(block)
    }

    /// Resizes a block. Stays in place when the block can hold the new size (and, when
    /// shrinking, at least three quarters of it stays used: CPython's rule, so that a shrink
    /// to a much smaller class gives the big block back); otherwise moves, crossing between
    /// pools and the system allocator as the size crosses the threshold.
    ///
    /// # Safety
    ///
    /// As [`deallocate`](Self::deallocate) for `ptr` and `old`.
    pub(crate) unsafe fn reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if self.debug.is_some() {
            // SAFETY: forwarded contract; the debug mode checks it.
            return unsafe { self.debug_reallocate(ptr, old, new) };
        }
        let old_small = old.size() != 0 && is_small(old);
        let new_small = new.size() != 0 && is_small(new);
        if old_small && new_small {
            let pool = self.pool_of(ptr);
            // SAFETY: `ptr` is a live pool block, so its pool header is valid.
            let held = block_size(unsafe { (*pool.as_ptr()).size_class } as usize);
            let growing = new.size() >= old.size();
            if new.size() <= held && (growing || 4 * new.size() > 3 * held) {
                // The whole block, through the heap's provenance (see `free_block`).
                return Ok(slice(pool.cast().with_addr(ptr.addr()), held));
            }
        } else if !old_small
            && !new_small
            && old.size() != 0
            && new.size() != 0
            && old.align() == new.align()
        {
            let grow_by = new.size().saturating_sub(old.size());
            if grow_by > self.headroom() {
                return Err(AllocError);
            }
            // SAFETY: `ptr` is a live system block of layout `old`; `new.size()` is non-zero
            // and, being a valid layout's size, does not overflow when rounded to the alignment.
            let moved = unsafe { System.realloc(ptr.as_ptr(), old, new.size()) };
            let moved = NonNull::new(moved).ok_or(AllocError)?;
            self.large_bytes = self.large_bytes - old.size() + new.size();
            return Ok(slice(moved, new.size()));
        }
        let fresh = self.allocate(new)?;
        let keep = old.size().min(new.size());
        // SAFETY: both blocks are live and distinct, each at least `keep` bytes long; then the
        // old block is freed with its own layout, as the caller allows.
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast::<u8>().as_ptr(), keep);
            self.deallocate(ptr, old);
        }
        Ok(fresh)
    }

    /// Verifies every invariant of layers 1 and 2 (see [`Heap::check`](crate::Heap::check)).
    pub(crate) fn check(&self) -> Result<(), String> {
        self.arenas.check()?;
        self.debug_check()?;
        let spares = self.arenas.empty_arenas + self.cached_spares();
        if spares > self.arenas.empty_arenas_kept {
            return Err(format!(
                "{} empty arenas and {} cached empty pool exceed the {} spares kept",
                self.arenas.empty_arenas,
                self.cached_spares(),
                self.arenas.empty_arenas_kept
            ));
        }
        let pool_size = self.arenas.pool_size;
        // Every pool in a used list: right class, free list well formed, counts agree.
        let mut listed = std::collections::HashSet::new();
        for (class, &head) in self.used_pools.iter().enumerate() {
            let mut prev: *mut PoolHeader = ptr::null_mut();
            let mut p = head;
            while !p.is_null() {
                if !listed.insert(p.addr()) {
                    return Err(format!("pool {p:p} is listed twice (class {class})"));
                }
                // SAFETY: pools reachable from the used lists are live pools of this heap.
                let h = unsafe { &*p };
                if h.size_class as usize != class || h.prev != prev {
                    return Err(format!("pool {p:p} misplaced in the list of class {class}"));
                }
                if h.freeblock.is_null() {
                    return Err(format!("used pool {p:p} (class {class}) has no free block"));
                }
                prev = p;
                p = h.next;
            }
        }
        for (index, ao) in self.arenas.objects.iter().enumerate() {
            let Some(base) = ao.base else { continue };
            for number in 0..self.arenas.pools_per_arena {
                if (ao.dirty_free | ao.clean_free) & (1 << number) != 0 {
                    continue;
                }
                // SAFETY: a pool whose bit is clear is in use: its header is valid.
                let p =
                    unsafe { base.as_ptr().add(number as usize * pool_size) }.cast::<PoolHeader>();
                // SAFETY: as above.
                let h = unsafe { &*p };
                let cached = p == self.cached_pool;
                check_pool(
                    p,
                    h,
                    index as u32,
                    pool_size,
                    listed.contains(&p.addr()),
                    cached,
                )?;
            }
        }
        Ok(())
    }
}

/// Checks one pool in use: its header, its free list, and its state against the lists.
fn check_pool(
    p: *mut PoolHeader,
    h: &PoolHeader,
    arena_index: u32,
    pool_size: usize,
    listed: bool,
    cached: bool,
) -> Result<(), String> {
    let class = h.size_class as usize;
    if class >= NUM_SIZE_CLASSES || h.arena_index != arena_index {
        return Err(format!("pool {p:p}: corrupt header {h:?}"));
    }
    let size = block_size(class);
    let capacity = pool::blocks_per_pool(pool_size, class);
    let carved = (h.next_offset as usize - POOL_OVERHEAD) / size;
    if (h.ref_count == 0 && !cached) || h.ref_count as usize > carved || carved > capacity {
        return Err(format!(
            "pool {p:p}: {} live of {carved} carved",
            h.ref_count
        ));
    }
    let start = p.addr();
    let mut free = 0usize;
    let mut b = h.freeblock;
    while !b.is_null() {
        let offset = b.addr().wrapping_sub(start);
        if offset < POOL_OVERHEAD
            || offset >= h.next_offset as usize
            || (offset - POOL_OVERHEAD) % size != 0
        {
            return Err(format!("pool {p:p}: free list holds stray address {b:p}"));
        }
        free += 1;
        if free > carved {
            return Err(format!("pool {p:p}: free list has a cycle"));
        }
        // SAFETY: `b` is a free block of this pool (checked above), holding a link.
        b = unsafe { pool::next_free(b) };
    }
    if free + h.ref_count as usize != carved {
        return Err(format!(
            "pool {p:p}: {free} free + {} live != {carved} carved",
            h.ref_count
        ));
    }
    let full = h.freeblock.is_null();
    if full == listed {
        return Err(format!(
            "pool {p:p}: {} but {} a used-pool list",
            if full { "full" } else { "used" },
            if listed { "in" } else { "not in" }
        ));
    }
    Ok(())
}
