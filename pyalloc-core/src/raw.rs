//! The raw heap: layers 0–2 behind an `unsafe`, `&mut self` API.
//!
//! [`RawHeap`] owns the arena table and one used-pool list per size class, and serves blocks
//! of size classes and system blocks for large requests. It knows nothing of sharing, of the
//! debug mode or of layer 3: [`Heap`](crate::Heap) routes each request by its layout and holds
//! the [`Gate`] that every call out of here (to the arena source) closes.
//!
//! The fast paths are [`RawHeap::alloc_block`] and [`RawHeap::free_block`]: one list pop or
//! push and one well-predicted test each; `Global`'s are [`UsedPools::try_alloc`] and
//! [`UsedPools::try_free`], on the part of the heap they read (its used pools), which call
//! nothing at all. Everything else (a pool running dry or filling up,
//! a pool emptying, a new arena) is in `#[cold]` functions below them. Nothing on the fast
//! path counts anything: the statistics are derived by walking the structures on demand, as
//! CPython does since bpo-37537.
//!
//! ## The cached empty pool
//! When a class's only pool empties, a program freeing and allocating one block in a loop
//! would send the pool to its arena and take it back on every iteration; so the heap keeps that
//! pool where it is, in its class's list, as its one *cached empty pool*. The cache borrows one
//! unit of the spares budget from layer 1 ([`Arenas::lend_spare`]) while it holds a pool, so a
//! fully freed heap still keeps at most `empty_arenas_kept` spares.
//!
//! ## Invariants (checked by [`RawHeap::check`])
//! ```text
//! pool ∈ used_pools[c]  ⇔  pool in use, pool.class == c, pool.first_free != null
//! pool in use, pool.ref_count == 0  ⇒  pool == cached_pool
//! cached_pool != None  ⇔  arenas.spare_lent;   cached_pool is not full
//! large_count, large_bytes == the number and bytes of live system blocks (0 for a thread
//!                              heap of `Global`, whose large blocks cross threads uncounted)
//! arenas.mapped_bytes() + large_bytes <= memory_limit
//! ```

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use std::alloc::GlobalAlloc;

use allocator_api2::alloc::AllocError;

use crate::arena::Arenas;
use crate::config::{HeapConfig, Release, NUM_SIZE_CLASSES, SMALL_REQUEST_THRESHOLD};
use crate::fill::Fill;
use crate::gate::Gate;
use crate::os::SourceBox;
use crate::pool::{Owner, Pool, PoolList, NO_OWNER, PARK_PAGE};
use crate::remote::Mailbox;
use crate::size_class::{block_size, class_of, is_small};
use crate::sys::{self, System};
use crate::valgrind;

/// Pool positions a step of the release policy's sweep looks at ([`RawHeap::sweep_free_pages`]):
/// a step a pass of the decay, a pass every quarter of the delay at most, so with 16 KiB pools
/// a round covers 1 MiB of heap per quarter delay, at most 64 pools' free lists walked a step.
const SWEEP_POOLS: usize = 64;

/// Layers 0–2 of one heap.
pub(crate) struct RawHeap {
    /// Per size class, the offset past which a pool of this heap has no room to carve another
    /// block (`pool_size - block size`, CPython's `maxnextoffset`, which the pool header no
    /// longer holds): the size-less path's carving limit, read without a division.
    last_carve: [u32; NUM_SIZE_CLASSES],
    /// The used pools of each class and the cached pool: all the fast paths read, in one
    /// place that `Global` reaches through a thread-local pointer (and whose address is the
    /// owner a thread heap's pools carry).
    pools: UsedPools,
    /// `!(pool_size - 1)`: masks a block's address down to its pool.
    pool_mask: usize,
    arenas: Arenas,
    /// Bytes currently held in large (system) allocations.
    large_bytes: usize,
    /// Large allocations currently live.
    large_count: usize,
    /// Bytes the heap may hold from the OS (arenas + large); `usize::MAX` without a limit.
    memory_limit: usize,
    /// What carving writes into new blocks (the freed pattern in debug mode).
    fill: Fill,
    /// The decay's pass count when the sweep last ran ([`RawHeap::sweep_after_decay`]).
    swept_after: u64,
    /// The pool position the sweep's next step starts at.
    sweep_cursor: usize,
    /// Pool positions left in the sweep's round; 0 between rounds.
    sweep_left: usize,
    /// Pools taken from the arenas when the sweep last ran (see `sweep_after_decay`).
    taken_at_sweep: u64,
    /// Set when this is one thread's heap of [`Global`](crate::Global): its place among the
    /// others. `None` for a plain `Heap`.
    thread: Option<ThreadLink>,
}

/// What the fast paths read of a heap: each class's used pools, the cached pool, and what a
/// free tests a block's pool against. `Global` reads a thread heap's through a thread-local
/// pointer, which points at [`UsedPools::CLOSED`] while the heap may not be used that way
/// (see `global.rs`): every fast path on that one fails, at no cost to the others.
#[derive(Debug)]
pub(crate) struct UsedPools {
    /// Each class's list of used pools (neither full nor empty, or the cached empty pool).
    lists: [PoolList; NUM_SIZE_CLASSES],
    /// The cached empty pool (see the module docs), which holds a unit of the spares budget.
    cached: Option<Pool>,
    /// Whether this is a thread heap's table: then its address is the owner its pools carry
    /// (a plain heap's carry [`NO_OWNER`], it may move).
    thread: bool,
    /// A free reads a block's pool header at `(address & pool_mask) | header_base`: the
    /// heap's pool mask and no base, so the block's pool; for `CLOSED`, no mask and the base
    /// of a stand-in header ([`pool::stand_in`](crate::pool::stand_in)), so no block's memory
    /// is read (a debug-mode block need not lie in a pool).
    pool_mask: usize,
    header_base: *const u8,
}

/// What [`UsedPools::try_free`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freed {
    /// The block is back in its pool, and nothing else is to be done.
    Done,
    /// The block is back in `pool`, which emptied or was full: the rest is
    /// [`RawHeap::finish_free`]'s.
    Finish(Pool),
    /// The block is not this heap's (or the table is `CLOSED`): nothing was done.
    NotMine,
}

impl UsedPools {
    /// The table no block belongs to and no pool is listed in: every fast path on it fails.
    pub(crate) const CLOSED: UsedPools = UsedPools {
        lists: [const { PoolList::EMPTY }; NUM_SIZE_CLASSES],
        cached: None,
        thread: false,
        pool_mask: 0,
        header_base: crate::pool::stand_in(),
    };

    fn new(pool_mask: usize) -> Self {
        UsedPools {
            lists: [const { PoolList::EMPTY }; NUM_SIZE_CLASSES],
            cached: None,
            thread: false,
            pool_mask,
            header_base: ptr::null(),
        }
    }

    /// A block of `class` if one can be handed out without calling anything (the class has a
    /// pool, and the pool keeps a free block after this one); `None` sends the caller to its
    /// slow path, which does the rest through [`RawHeap::alloc_block`]. For `Global`, whose
    /// fast path is a function of its own (`__rust_alloc`): a call inside it would make every
    /// call save and restore registers.
    ///
    /// # Safety
    ///
    /// `class` is below `NUM_SIZE_CLASSES`; `self` is `CLOSED`, or the table of a heap of
    /// `Global`'s (which never fills blocks) whose core nobody borrows now, used by this
    /// thread alone.
    #[inline(always)]
    pub(crate) unsafe fn try_alloc(&self, class: usize) -> Option<NonNull<u8>> {
        debug_assert!(class < NUM_SIZE_CLASSES, "class {class} out of range");
        // SAFETY: the caller's contract.
        let pool = unsafe { self.lists.get_unchecked(class) }.first();
        // SAFETY: a listed pool has a free block (the used-state invariant), and an empty
        // list's stand-in one free block and no next (see `PoolList`): the pop fails there.
        let block = unsafe { pool.pop_free_unless_last() }?;
        valgrind::malloclike(block.as_ptr(), block_size(class), false);
        Some(block)
    }

    /// Frees `block` if its pool is this heap's: `Global`'s free fast path. Reads the pool's
    /// owner first; then pushes the block (see [`push`](Self::push)).
    ///
    /// # Safety
    ///
    /// `block` is a live pool block of any heap of `Global`, given up by the caller (in debug
    /// mode, any pointer at all when `self` is `CLOSED`); `self` is `CLOSED`, or the table of
    /// a heap whose core nobody borrows now, used by this thread alone.
    #[inline(always)]
    pub(crate) unsafe fn try_free(&self, block: NonNull<u8>) -> Freed {
        let header = (block.addr().get() & self.pool_mask) | self.header_base.addr();
        // The header is read through the arena's provenance (exposed when it was mapped), or
        // the stand-in's (exposed by `pool::expose_stand_in`).
        // SAFETY: a pool start of a live block, or the stand-in: non-null.
        let pool = unsafe {
            Pool::from_addr(NonNull::new_unchecked(ptr::with_exposed_provenance_mut(
                header,
            )))
        };
        // The owner is this table's address: one comparison with the register that holds
        // it. The stand-in's is `NO_OWNER`, 0, no table's.
        // SAFETY: the header of a pool in use, whose owner nobody writes while the block
        // lives, or the stand-in, never written.
        if unsafe { pool.owner_shared() } != ptr::from_ref(self).addr() {
            return Freed::NotMine;
        }
        // SAFETY: the owner test passed, so `pool` is this heap's and `block` a live block
        // of it: not `CLOSED` (no pool names its owner).
        unsafe { self.push(pool, block) }
    }

    /// Pushes a block freed by its heap's holder on its pool's free list: `Finish` when the
    /// pool emptied (and is not the cached pool) or was full.
    ///
    /// # Safety
    ///
    /// `block` is a live block of `pool`, a pool in use of this table's heap, which the
    /// caller may use (it borrows the core, or is the fast path of the thread that owns it).
    #[inline(always)]
    unsafe fn push(&self, pool: Pool, block: NonNull<u8>) -> Freed {
        // The link is written through the arena's provenance (exposed when it was mapped, as
        // the pool's is), not the caller's pointer, which may cover fewer bytes than a link (a
        // `Box<u32>` covers 4). Taken from the address alone, it costs no instruction.
        // SAFETY: a live block's address is non-null.
        let block: NonNull<u8> =
            unsafe { NonNull::new_unchecked(ptr::with_exposed_provenance_mut(block.addr().get())) };
        valgrind::freelike(block.as_ptr());
        // SAFETY: a live block of `pool`, which nobody uses after this free.
        if unsafe { pool.push_free(block) } {
            // Emptied or was full. The cached pool empties on every iteration of an
            // alloc/free loop and stays where it is: tested here, so that loop makes no call
            // (the cached pool is never full, see `retire`).
            if self.cached == Some(pool) {
                return Freed::Done;
            }
            return Freed::Finish(pool);
        }
        Freed::Done
    }
}

impl core::ops::Index<usize> for UsedPools {
    type Output = PoolList;
    #[inline(always)]
    fn index(&self, class: usize) -> &PoolList {
        &self.lists[class]
    }
}

impl core::ops::IndexMut<usize> for UsedPools {
    #[inline(always)]
    fn index_mut(&mut self, class: usize) -> &mut PoolList {
        &mut self.lists[class]
    }
}

/// What a thread heap knows of the others: its own number (written into each of its pools),
/// its mailbox (blocks other threads freed), and how to send a block of another heap home.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ThreadLink {
    /// This heap's number in the registry of thread heaps (never 0).
    pub(crate) id: u32,
    /// Blocks of this heap freed by other threads.
    pub(crate) mailbox: &'static Mailbox,
    /// Sends a block of heap `owner` home (the registry lives above this layer).
    ///
    /// Safety contract: the block is a live pool block of thread heap `owner`, given up.
    pub(crate) send_home: unsafe fn(NonNull<u8>, Owner),
    /// Called whenever the heap's gate closes or opens (see [`Gate`]'s `turned`).
    pub(crate) gate_turned: fn(),
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
    pub(crate) fn new(config: &HeapConfig, source: SourceBox) -> Self {
        debug_assert!(config.validate().is_ok());
        RawHeap {
            last_carve: core::array::from_fn(|class| (config.pool_size - block_size(class)) as u32),
            pools: UsedPools::new(!(config.pool_size - 1)),
            pool_mask: !(config.pool_size - 1),
            arenas: Arenas::new(
                config.pool_size,
                config.arena_size,
                config.empty_arenas_kept,
                config.release,
                source,
            ),
            large_bytes: 0,
            large_count: 0,
            memory_limit: config.memory_limit.unwrap_or(usize::MAX),
            fill: if config.debug {
                Fill::Freed
            } else {
                Fill::Nothing
            },
            swept_after: 0,
            sweep_cursor: 0,
            sweep_left: 0,
            taken_at_sweep: 0,
            thread: None,
        }
    }

    /// Makes this a thread heap of `Global`: its pools carry `link.id`, it takes its mail on
    /// its slow paths, and it sends other heaps' blocks home instead of freeing them. Large
    /// blocks are not counted: they cross threads, and the system allocator frees them.
    pub(crate) fn set_thread(&mut self, link: ThreadLink) {
        debug_assert!(link.id != 0);
        debug_assert_eq!(self.arenas.pools().count(), 0, "set before the first pool");
        self.thread = Some(link);
        self.pools.thread = true;
    }

    /// Where [`used_pools`](Self::used_pools) lies in a raw heap.
    pub(crate) const USED_POOLS_OFFSET: usize = core::mem::offset_of!(RawHeap, pools);

    /// The table `Global`'s fast paths read (see [`UsedPools`]), by address: it stays where it
    /// is for the heap's life.
    ///
    /// # Safety
    ///
    /// `heap` points at a live raw heap.
    pub(crate) unsafe fn used_pools(heap: *const RawHeap) -> *const UsedPools {
        // SAFETY: the caller's contract; no reference is made.
        unsafe { &raw const (*heap).pools }
    }

    /// The owner this heap's pools carry: its table's address for a thread heap (which is
    /// never moved once registered), else [`NO_OWNER`].
    #[inline]
    fn owner_id(&self) -> Owner {
        // A thread heap does not move once it has pools (it is registered for ever).
        if self.pools.thread {
            ptr::from_ref(&self.pools).addr()
        } else {
            NO_OWNER
        }
    }

    /// Whether a live pool block is this heap's own (a thread heap's free lists may hold
    /// another heap's slots).
    ///
    /// # Safety
    ///
    /// `block` is a live pool block of some heap of this heap's geometry.
    #[inline]
    pub(crate) unsafe fn owns_pool_block(&self, block: NonNull<u8>) -> bool {
        // SAFETY: the caller's contract: a pool block, whose pool header is readable.
        unsafe { Pool::owner_of(block.as_ptr(), self.arenas.pool_size()) == self.owner_id() }
    }

    /// Sets how many empty arenas the heap keeps and its release policy (see
    /// [`Arenas::set_policy`]); the cached pool gives its spare back first. Returns the arenas
    /// released.
    pub(crate) fn set_policy(&mut self, kept: usize, release: Release, gate: &Gate) -> usize {
        self.flush_cached_pool(gate);
        self.arenas.set_policy(kept, release, gate)
    }

    /// Frees every block other threads sent home. Returns how many there were.
    pub(crate) fn take_mail(&mut self, gate: &Gate) -> usize {
        let Some(thread) = self.thread else {
            return 0;
        };
        if !thread.mailbox.has_mail() {
            return 0;
        }
        let mut count = 0;
        // SAFETY: the heap is borrowed mutably, so its holder (owner or claimer) is calling;
        // every block sent to this mailbox is a live block of this heap's pools, given up.
        for block in unsafe { thread.mailbox.take_all() } {
            // SAFETY: as above: a live block of this heap.
            unsafe { self.free_block(block, gate) };
            count += 1;
        }
        count
    }

    /// Layer 1, for the walks of `check`, `stats` and the debug mode.
    pub(crate) fn arenas(&self) -> &Arenas {
        &self.arenas
    }

    /// Live large allocations and their bytes.
    pub(crate) fn large(&self) -> (usize, usize) {
        (self.large_count, self.large_bytes)
    }

    /// The pool a small block lies in: its address masked down to the pool size.
    ///
    /// The header is reached through the arena's provenance (exposed when the arena was
    /// mapped), not the block pointer's: a caller's pointer may be entitled to its block only.
    ///
    /// # Safety
    ///
    /// `block` is a block handed out by this heap's pools and not yet back in its pool, or a
    /// free block of a pool in use.
    #[inline(always)]
    pub(crate) unsafe fn pool_of(&self, block: NonNull<u8>) -> Pool {
        let pool = ptr::with_exposed_provenance_mut(block.as_ptr().addr() & self.pool_mask);
        // SAFETY: masking a block address yields its pool's start, non-null (arenas are never
        // at address 0), a pool in use since it holds the block.
        unsafe { Pool::from_addr(NonNull::new_unchecked(pool)) }
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
    pub(crate) fn alloc_block(&mut self, class: usize, gate: &Gate) -> Option<NonNull<u8>> {
        debug_assert!(class < NUM_SIZE_CLASSES, "class {class} out of range");
        // SAFETY: every caller computes `class` from a size of 1 to 512 bytes (`class_of`), so
        // it is below NUM_SIZE_CLASSES; the check is left out of the fast path.
        let list = unsafe { self.pools.lists.get_unchecked(class) };
        let Some(pool) = list.head() else {
            return self.alloc_block_from_new_pool(class, gate);
        };
        // SAFETY: a pool in a used-pool list has a free block (the used-state invariant).
        let (block, ran_dry) = unsafe { pool.pop_free() };
        // SAFETY: the pool's free list is empty when `ran_dry`; this heap's pool size.
        if ran_dry && !unsafe { pool.extend(self.arenas.pool_size(), self.fill) } {
            self.retire(pool, class);
        }
        valgrind::malloclike(block.as_ptr(), block_size(class), self.fill == Fill::Freed);
        Some(block)
    }

    /// A block of `class` if the size-less fast path can hand one out without calling anything
    /// in the common case: the class has a pool (a pop inline; a pool that runs dry goes to
    /// one out-of-line tail call, which carves its next page, takes its parked pages back or
    /// retires it). `None` (no pool: one must come from an arena) changes nothing and sends
    /// the caller to
    /// [`alloc_block`](Self::alloc_block). For the C-ABI adapters over the size-less API
    /// (pyalloc-python's), whose fast path then makes no call.
    ///
    /// The caller's gate is open and the heap is not in debug mode.
    #[inline(always)]
    pub(crate) fn try_alloc_block_unsized(&mut self, class: usize) -> Option<NonNull<u8>> {
        debug_assert!(class < NUM_SIZE_CLASSES, "class {class} out of range");
        debug_assert!(
            self.fill == Fill::Nothing,
            "the fast paths are shut in debug mode"
        );
        // SAFETY: as in `alloc_block`: every caller's class comes from a size of 1 to 512.
        let pool = unsafe { self.pools.lists.get_unchecked(class) }.head()?;
        // SAFETY: a pool in a used-pool list has a free block (the used-state invariant); each
        // path below counts the block first.
        let (block, ran_dry) = unsafe { pool.pop_free_uncounted() };
        if ran_dry {
            // Out of line, and in tail position: a call in the middle of this path would make
            // every allocation save registers and keep a stack frame.
            // SAFETY: `block` was just popped (uncounted) from `pool`, the head of `class`'s
            // list, whose free list is empty.
            return Some(unsafe { self.ran_dry_unsized(block, pool.addr(), class) });
        }
        pool.count_one();
        valgrind::malloclike(block.as_ptr(), block_size(class), false);
        Some(block)
    }

    /// The size-less paths' retire: counts the block just popped (uncounted) and marks the
    /// pool full in one store, takes it off its list by the head's links, and uncaches it.
    ///
    /// # Safety
    ///
    /// `pool` is the head of `class`'s used list, with its free list empty and nothing left to
    /// carve or unpark, and a block was just popped from it uncounted.
    #[inline(always)]
    unsafe fn retire_counted(&mut self, pool: Pool, class: usize) {
        pool.count_one_and_mark_full();
        // SAFETY: the caller's contract: the head of `class`'s used list, now full.
        unsafe { self.unlist_full(pool, class) };
    }

    /// Takes a pool that just filled off its class's list, and out of the cache (the cached
    /// pool is never full): the retire of both allocation paths, written once.
    ///
    /// # Safety
    ///
    /// `pool` is the head of `class`'s used list.
    #[inline(always)]
    unsafe fn unlist_full(&mut self, pool: Pool, class: usize) {
        // SAFETY: the caller's contract: the head of `class`'s list.
        unsafe { self.pools[class].remove_head(pool) };
        if self.pools.cached == Some(pool) {
            self.pools.cached = None;
            self.arenas.take_back_spare();
        }
    }

    /// The size-less allocation fast path's pool ran dry: carves the next page of its blocks
    /// ([`Pool::extend_until`]), or takes its parked pages back, or retires it, and counts
    /// `block`, which it returns. `extern "C"`, so that nothing unwinds through it and the
    /// fast path's call is a tail jump.
    ///
    /// # Safety
    ///
    /// `block` was just popped from `pool` by `pop_free_uncounted` and not counted; `pool` is
    /// the head of `class`'s list, its free list empty.
    #[cold]
    #[inline(never)]
    unsafe extern "C" fn ran_dry_unsized(
        &mut self,
        block: NonNull<u8>,
        pool: NonNull<u8>,
        class: usize,
    ) -> NonNull<u8> {
        // SAFETY: the caller's contract: a pool in use of this heap.
        let pool = unsafe { Pool::from_addr(pool) };
        // SAFETY: the caller's class comes from a size of 1 to 512 (as in `alloc_block`).
        let last = unsafe { *self.last_carve.get_unchecked(class) };
        // SAFETY: the caller's contract: the free list is empty; `last` is this heap's pool size
        // less the class's block size; `unpark` runs only when nothing is left to carve, and
        // does not read the count.
        if unsafe {
            pool.extend_until(last, block_size(class))
                || (pool.parked() != 0 && pool.unpark(Fill::Nothing))
        } {
            pool.count_one();
        } else {
            // SAFETY: the caller's contract, and nothing was carved or unparked.
            unsafe { self.retire_counted(pool, class) };
        }
        valgrind::malloclike(block.as_ptr(), block_size(class), false);
        block
    }

    /// Frees `ptr` if it is a pool block of this heap: the push, and when the pool was full its
    /// return to its class's list (second, see [`relist`](Self::relist)), inline with no call.
    /// `Finish` when the pool emptied and is not the cached pool: the caller then calls
    /// [`finish_free`](Self::finish_free) (the rest of the free needs calls). `NotMine` (null,
    /// or a pointer the heap does not own) changes nothing and leaves the pointer to
    /// [`deallocate_unsized`](Self::deallocate_unsized). The size-less fast path's free.
    ///
    /// # Safety
    ///
    /// `ptr` is null or as [`deallocate_unsized`](Self::deallocate_unsized)'s; unless this
    /// returns `NotMine` it is not used again.
    #[inline(always)]
    pub(crate) unsafe fn try_free_block_unsized(&mut self, ptr: *mut u8) -> Freed {
        if !self.owns(ptr) {
            return Freed::NotMine;
        }
        // The block (its link written) and its pool header are reached through the arena's
        // provenance, as in `UsedPools::push`.
        // SAFETY: an address in our arenas that the caller says is live: a pool block (of
        // this heap's, as the map says), non-null.
        let block: NonNull<u8> =
            unsafe { NonNull::new_unchecked(ptr::with_exposed_provenance_mut(ptr.addr())) };
        // SAFETY: as above.
        let pool = unsafe { self.pool_of(block) };
        valgrind::freelike(block.as_ptr());
        // SAFETY: a live block of `pool`, which nobody uses after this free.
        if unsafe { pool.push_free(block) } {
            if pool.unmark_full_unless_emptied() {
                // The cached pool empties on every iteration of an alloc/free loop and stays
                // where it is, with no call (as in `UsedPools::push`).
                if self.pools.cached != Some(pool) {
                    return Freed::Finish(pool);
                }
            } else {
                // SAFETY: the pool was full, so in no list; its mark is cleared.
                unsafe { self.relist(pool) };
            }
        }
        Freed::Done
    }

    /// The head pool of `class` is full: it leaves its class's list. If it was the cached
    /// pool, it is cached no more (it is far from empty), so the cached pool is never full: a
    /// free that empties a pool tells the cached one by its address alone.
    #[cold]
    #[inline(never)]
    fn retire(&mut self, pool: Pool, class: usize) {
        // SAFETY: the pool ran dry with nothing left to carve; ours alone.
        if pool.parked() != 0 && unsafe { pool.unpark(self.fill) } {
            return;
        }
        pool.mark_full();
        // SAFETY: `pool` is the head of `class`'s used list, now full.
        unsafe { self.unlist_full(pool, class) };
    }

    /// No pool of `class` has a free block: take an empty pool from layer 1.
    #[cold]
    #[inline(never)]
    fn alloc_block_from_new_pool(&mut self, class: usize, gate: &Gate) -> Option<NonNull<u8>> {
        debug_assert!(self.pools[class].head().is_none());
        // Blocks other threads sent home may refill this class without a new pool.
        if self.take_mail(gate) > 0 && self.pools[class].head().is_some() {
            return self.alloc_block(class, gate);
        }
        let taken = match self.arenas.take_pool(self.headroom(), gate) {
            Some(taken) => taken,
            // The cached pool may be all that keeps an arena from having a free pool.
            None if self.flush_cached_pool(gate) => {
                return self.alloc_block(class, gate);
            }
            None => return None,
        };
        // SAFETY: `take_pool` handed over a whole free pool of this heap. A dirty pool's header
        // is the one its last user left when it emptied: a valid header whose free list holds
        // every carved block. Outside debug mode it is carved again from its start, a page at
        // a time (see `Pool::extend_until`). In debug mode its free list is reused as CPython
        // does: its freed blocks keep the pattern that is checked when they are handed out
        // again, and carving would write the pattern over a stray write before it is caught.
        let (pool, block) = unsafe {
            let old = Pool::from_addr(taken.pool);
            if taken.dirty && self.fill != Fill::Nothing && old.is_ready_for(class) {
                (
                    old,
                    old.reuse(taken.arena_index, self.arenas.pool_size(), self.fill),
                )
            } else {
                Pool::init(
                    taken.pool,
                    class,
                    taken.arena_index,
                    self.owner_id(),
                    self.arenas.pool_size(),
                    self.fill,
                )
            }
        };
        // SAFETY: the pool was just taken into use and is in no list.
        unsafe { self.pools[class].push_front(pool) };
        valgrind::malloclike(block.as_ptr(), block_size(class), self.fill == Fill::Freed);
        self.sweep_after_decay(gate);
        Some(block)
    }

    /// Takes back a small block: the fast path.
    ///
    /// # Safety
    ///
    /// `block` was returned by `alloc_block` of this heap and is not freed yet.
    #[inline(always)]
    pub(crate) unsafe fn free_block(&mut self, block: NonNull<u8>, gate: &Gate) {
        let pool = ptr::with_exposed_provenance_mut(block.as_ptr().addr() & self.pool_mask);
        // SAFETY: masking a live block's address (the caller's contract) yields its pool's
        // start, non-null, a pool in use of this heap (as in `pool_of`).
        let pool = unsafe { Pool::from_addr(NonNull::new_unchecked(pool)) };
        // SAFETY: a live block of `pool`, a pool of this heap, which we borrow.
        if let Freed::Finish(pool) = unsafe { self.pools.push(pool, block) } {
            // SAFETY: just pushed, and the push said it needs finishing.
            unsafe { self.finish_free(pool, gate) };
        }
    }

    /// The rest of a free that emptied a pool other than the cached one, or freed into a full
    /// pool ([`Freed::Finish`]).
    ///
    /// # Safety
    ///
    /// A block of `pool`, a pool in use of this heap, was just pushed by
    /// [`UsedPools::push`], which returned `Finish(pool)`, and nothing ran on the heap since.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn finish_free(&mut self, pool: Pool, gate: &Gate) {
        if pool.is_marked_full() {
            // SAFETY: the pool was full, so in no list.
            unsafe { self.pool_was_full(pool) };
        } else {
            debug_assert!(pool.ref_count() == 0 && self.pools.cached != Some(pool));
            // SAFETY: the pool had a free block before this one (it was not full): it is in
            // its class's list, and now empty.
            unsafe { self.pool_became_empty(pool, gate) };
        }
    }

    /// A block was freed into a full pool: the pool is used again, and goes back to its class's
    /// list (see [`relist`](Self::relist)).
    ///
    /// # Safety
    ///
    /// `pool` is a pool in use of this heap that was full (so in no list) until a block was
    /// just freed into it.
    #[inline(always)]
    unsafe fn pool_was_full(&mut self, pool: Pool) {
        pool.unmark_full();
        // SAFETY: the caller's contract.
        unsafe { self.relist(pool) };
    }

    /// Puts a pool that was full, and is no longer marked so, back in its class's list: second,
    /// after the head, where CPython puts it first. The head goes on serving the class until
    /// it fills, and the pool gathers the frees that follow meanwhile. First, the pool would
    /// serve the very next allocation, fill again at once and leave the list again: a program
    /// whose live set hovers at a pool's edge (CPython's `go` benchmark: 211,000 such turns in
    /// 1.5M requests) would pay a leave and a return on almost every pair. Second, those turns
    /// all but vanish: the `go` replay runs 8.6% fewer instructions (callgrind,
    /// `replay --runs 1 --warmup 1 --keep-peer --peers pyalloc`).
    ///
    /// # Safety
    ///
    /// `pool` is a pool in use of this heap that is in no list and has a free block.
    #[inline(always)]
    unsafe fn relist(&mut self, pool: Pool) {
        debug_assert!(!pool.is_marked_full() && !pool.first_free().is_null());
        // SAFETY: the caller's contract: in no list; a pool's class was set from a size of 1
        // to 512 bytes, so it is below NUM_SIZE_CLASSES (no bounds test, and no panic path on
        // the size-less free, which then needs no stack frame).
        unsafe {
            self.pools
                .lists
                .get_unchecked_mut(pool.class())
                .push_second(pool)
        };
    }

    /// The last live block of a used pool that is not the cached one was freed: cache it (if it
    /// is its class's only pool and the spares budget allows) or give it back to its arena.
    ///
    /// # Safety
    ///
    /// `pool` is in its class's used-pool list, is not the cached pool, and its last live block
    /// was just freed.
    #[inline]
    unsafe fn pool_became_empty(&mut self, pool: Pool, gate: &Gate) {
        debug_assert!(
            self.pools.cached != Some(pool),
            "the cached pool stays cached"
        );
        // SAFETY: the caller's contract: listed.
        if unsafe { self.pools[pool.class()].is_sole(pool) } {
            self.flush_cached_pool(gate);
            if self.arenas.lend_spare() {
                self.pools.cached = Some(pool);
                return;
            }
        }
        // SAFETY: listed, with no live block.
        unsafe { self.release_pool(pool, gate) };
    }

    /// Empties the cache: gives the cached pool back to its arena if it is still empty (else it
    /// simply stays in use), and the spare unit back to layer 1. Returns whether a pool was
    /// cached.
    pub(crate) fn flush_cached_pool(&mut self, gate: &Gate) -> bool {
        let Some(pool) = self.pools.cached.take() else {
            return false;
        };
        self.arenas.take_back_spare();
        if pool.ref_count() == 0 {
            // SAFETY: the cached pool stays in its class's list while cached, and it is empty.
            unsafe { self.release_pool(pool, gate) };
        }
        true
    }

    /// Unlinks an empty pool from its class's list and gives it to its arena.
    ///
    /// # Safety
    ///
    /// `pool` is in its class's used list and holds no live block.
    unsafe fn release_pool(&mut self, pool: Pool, gate: &Gate) {
        let arena_index = pool.arena_index();
        let number = self.arenas.pool_number(arena_index, pool.addr());
        // SAFETY: the caller's contract; after this the pool is in no list and the handle is
        // dropped, so nothing refers to it.
        unsafe {
            self.pools[pool.class()].remove(pool);
            self.arenas.return_pool(arena_index, number, gate);
        }
        self.sweep_after_decay(gate);
    }

    /// The pool and block the next `alloc_block(class)` would hand out without leaving its
    /// pool, if any: the debug mode validates the block's link before it is followed.
    pub(crate) fn next_block(&self, class: usize) -> Option<(Pool, NonNull<u8>)> {
        let pool = self.pools[class].head()?;
        NonNull::new(pool.first_free()).map(|block| (pool, block))
    }

    // ----------------------------------------------------------------------------------------
    // Without a size: C's and CPython's interface

    /// Whether `ptr` lies in one of this heap's arenas. Safe for any pointer: it reads only
    /// the arena map.
    #[inline(always)]
    pub(crate) fn owns(&self, ptr: *const u8) -> bool {
        self.arenas.map().contains(ptr.addr())
    }

    /// Memory for `size` bytes without a layout (16-aligned): a pool block, or for more than
    /// 512 bytes the system allocator's own `malloc` block, as CPython does. A request of 0
    /// bytes is one of 1, so every call gives a distinct pointer.
    pub(crate) fn allocate_unsized(&mut self, size: usize, gate: &Gate) -> Option<NonNull<u8>> {
        let size = size.max(1);
        if size <= SMALL_REQUEST_THRESHOLD {
            return self.alloc_block(class_of(size), gate);
        }
        // `malloc` returns null or `size` bytes, aligned to 16 on the 64-bit platforms pyalloc
        // supports.
        NonNull::new(sys::malloc(size))
    }

    /// Frees a block without its size: a pool block goes back to its pool, anything else to
    /// the system allocator (`free`), as CPython's `free(ctx, p)` does.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this heap from [`allocate_unsized`](Self::allocate_unsized)
    /// (or any live pool block of it), or a live `malloc` block of the system allocator.
    pub(crate) unsafe fn deallocate_unsized(&mut self, ptr: NonNull<u8>, gate: &Gate) {
        if self.owns(ptr.as_ptr()) {
            // SAFETY: an address in our arenas that the caller says is live: a pool block.
            unsafe { self.free_block(ptr, gate) }
        } else {
            // SAFETY: not ours, so the caller's contract makes it a live `malloc` block.
            unsafe { sys::free(ptr.as_ptr()) }
        }
    }

    /// The bytes usable at a live block: its class's block size, or what the system allocator
    /// says (`malloc_usable_size`) for a block that is not ours.
    ///
    /// # Safety
    ///
    /// As [`deallocate_unsized`](Self::deallocate_unsized).
    pub(crate) unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        if self.owns(ptr.as_ptr()) {
            // SAFETY: a live pool block of this heap.
            block_size(unsafe { self.pool_of(ptr) }.class())
        } else {
            // SAFETY: a live `malloc` block (the caller's contract).
            unsafe { sys::malloc_usable_size(ptr.as_ptr()) }
        }
    }

    /// Resizes a block without its old size, by CPython's rules (`pymalloc_realloc`): a pool
    /// block stays in place when the new size fits and at least three quarters of it stays
    /// used, else moves (to a pool or to the system allocator); a block that is not ours is
    /// `realloc`ed by the system allocator. On failure the old block is untouched.
    ///
    /// # Safety
    ///
    /// As [`deallocate_unsized`](Self::deallocate_unsized).
    pub(crate) unsafe fn reallocate_unsized(
        &mut self,
        ptr: NonNull<u8>,
        new_size: usize,
        gate: &Gate,
    ) -> Option<NonNull<u8>> {
        if !self.owns(ptr.as_ptr()) {
            // SAFETY: a live `malloc` block (the caller's contract); `realloc` of 0 bytes would
            // free it, so at least 1 is asked, as CPython does.
            return NonNull::new(unsafe { sys::realloc(ptr.as_ptr(), new_size.max(1)) });
        }
        // SAFETY: a live pool block of this heap.
        let held = block_size(unsafe { self.pool_of(ptr) }.class());
        if new_size <= held && 4 * new_size > 3 * held {
            return Some(ptr);
        }
        let fresh = self.allocate_unsized(new_size, gate)?;
        // SAFETY: both blocks are live and distinct, each at least `min(held, new_size)` bytes;
        // the old one is then freed.
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.as_ptr(), held.min(new_size));
            self.free_block(ptr, gate);
        }
        Some(fresh)
    }

    // ----------------------------------------------------------------------------------------
    // Large blocks, and everything that is not a fast path

    /// Makes `bytes` of headroom under the memory limit by giving up spares: the cached pool
    /// and the empty arenas kept. Spares never make a request fail that would fit without
    /// them. Returns whether the headroom is there now.
    fn make_room(&mut self, bytes: usize, gate: &Gate) -> bool {
        if self.headroom() >= bytes {
            return true;
        }
        self.flush_cached_pool(gate);
        self.arenas.release_spares(gate);
        self.headroom() >= bytes
    }

    /// Allocates for any layout: pools, dangling, or the system allocator. The heap's fast
    /// path has already routed most small requests to [`alloc_block`](Self::alloc_block).
    pub(crate) fn allocate(
        &mut self,
        layout: Layout,
        gate: &Gate,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(slice(dangling(layout.align()), 0));
        }
        if is_small(layout) {
            let class = class_of(layout.size());
            return match self.alloc_block(class, gate) {
                Some(block) => Ok(slice(block, block_size(class))),
                None => Err(AllocError),
            };
        }
        self.allocate_large(layout, gate)
    }

    /// A request for the system allocator, within the memory limit.
    pub(crate) fn allocate_large(
        &mut self,
        layout: Layout,
        gate: &Gate,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(layout.size() != 0);
        // A slow path of the heap's own: the release policy's decay may be due.
        self.arenas.tend(gate);
        self.sweep_after_decay(gate);
        if !self.make_room(layout.size(), gate) {
            return Err(AllocError);
        }
        // SAFETY: the layout has a non-zero size.
        let ptr = NonNull::new(unsafe { System.alloc(layout) }).ok_or(AllocError)?;
        if self.thread.is_none() {
            self.large_bytes += layout.size();
            self.large_count += 1;
        }
        Ok(slice(ptr, layout.size()))
    }

    /// Frees for any layout.
    ///
    /// # Safety
    ///
    /// `ptr` was allocated by this heap with a layout that `layout` fits (same alignment, size
    /// between the requested size and the length returned), and is not freed yet.
    pub(crate) unsafe fn deallocate(&mut self, ptr: NonNull<u8>, layout: Layout, gate: &Gate) {
        if layout.size() == 0 {
            return;
        }
        if is_small(layout) {
            if let Some(thread) = self.thread {
                // A thread heap's free lists may hold another heap's slot (a `PoolBox`
                // dropped on another thread): it goes home.
                // SAFETY: a live pool block (routing is by layout) of the default geometry.
                let owner = unsafe { Pool::owner_of(ptr.as_ptr(), self.arenas.pool_size()) };
                if owner != self.owner_id() {
                    // SAFETY: a live block of thread heap `owner`, given up by the caller.
                    return unsafe { (thread.send_home)(ptr, owner) };
                }
            }
            // SAFETY: a non-zero small layout means a pool block (routing is by layout).
            unsafe { self.free_block(ptr, gate) }
        } else {
            // SAFETY: a non-zero layout that is not small is a system block.
            unsafe { self.deallocate_large(ptr, layout) }
        }
    }

    /// Frees a block of the system allocator.
    ///
    /// # Safety
    ///
    /// `ptr` came from [`allocate_large`](Self::allocate_large) with `layout`, not yet freed.
    pub(crate) unsafe fn deallocate_large(&mut self, ptr: NonNull<u8>, layout: Layout) {
        // A thread heap's large blocks cross threads: nobody counts them (see `set_thread`).
        if self.thread.is_none() {
            debug_assert!(self.large_count > 0 && self.large_bytes >= layout.size());
            self.large_bytes -= layout.size();
            self.large_count -= 1;
        }
        // SAFETY: large blocks come from `System.alloc` with this very layout.
        unsafe { System.dealloc(ptr.as_ptr(), layout) }
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
        gate: &Gate,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let old_small = old.size() != 0 && is_small(old);
        let new_small = new.size() != 0 && is_small(new);
        if old_small && new_small {
            // SAFETY: `ptr` is a live pool block.
            let pool = unsafe { self.pool_of(ptr) };
            let held = block_size(pool.class());
            let growing = new.size() >= old.size();
            if new.size() <= held && (growing || 4 * new.size() > 3 * held) {
                // The whole block, through the heap's provenance (see `free_block`).
                return Ok(slice(pool.addr().with_addr(ptr.addr()), held));
            }
        } else if !old_small
            && !new_small
            && old.size() != 0
            && new.size() != 0
            && old.align() == new.align()
        {
            let grow_by = new.size().saturating_sub(old.size());
            if !self.make_room(grow_by, gate) {
                return Err(AllocError);
            }
            // SAFETY: `ptr` is a live system block of layout `old`; `new.size()` is non-zero
            // and, being a valid layout's size, does not overflow when rounded to the alignment.
            let moved = unsafe { System.realloc(ptr.as_ptr(), old, new.size()) };
            let moved = NonNull::new(moved).ok_or(AllocError)?;
            if self.thread.is_none() {
                self.large_bytes = self.large_bytes - old.size() + new.size();
            }
            return Ok(slice(moved, new.size()));
        }
        let fresh = self.allocate(new, gate)?;
        let keep = old.size().min(new.size());
        // SAFETY: both blocks are live and distinct, each at least `keep` bytes long; then the
        // old block is freed with its own layout, as the caller allows.
        unsafe {
            ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast::<u8>().as_ptr(), keep);
            self.deallocate(ptr, old, gate);
        }
        Ok(fresh)
    }

    /// Gives back what layers 0–2 can: the cached pool, and the pages of every empty pool
    /// (`madvise`) even inside arenas that still hold live blocks. Returns the arenas released
    /// and the bytes purged.
    pub(crate) fn trim(&mut self, gate: &Gate) -> (usize, usize) {
        let before = self.arenas.reclaimed();
        self.flush_cached_pool(gate);
        let purged = self.arenas.settle(None, gate) + self.purge_used_pools(gate);
        ((self.arenas.reclaimed() - before) as usize, purged)
    }

    /// Hands back the pages of pools in use that no live block needs (see the pool module's
    /// "Parked pages"): scattered survivors then pin their own pages, not whole pools. Not in
    /// debug mode, whose freed blocks must keep their pattern. Returns the bytes purged.
    fn purge_used_pools(&mut self, gate: &Gate) -> usize {
        if self.fill != Fill::Nothing {
            return 0;
        }
        let pools = self.arenas.current() * self.arenas.pools_per_arena();
        let mut purged = 0;
        for class in 0..NUM_SIZE_CLASSES {
            for pool in self.pools[class].iter(pools) {
                // A broken list or free list: `check` reports it; leave the pools be.
                let Ok(pool) = pool else { break };
                purged += Self::park_free_pages(&mut self.arenas, pool, gate);
            }
        }
        purged
    }

    /// The release policy's purge inside live pools. After a pass of the decay that finds the
    /// heap shrunk to half of the arenas it used at its peak (what is left has outlived most of
    /// what was allocated: scattered survivors), the heap sweeps its pool positions in address
    /// order, [`SWEEP_POOLS`] per pass, asking layer 1 for one more pass after each step until
    /// the round has covered the whole heap; the next round waits for the heap to halve again
    /// from its peak since. Each pool in use that it meets has its free pages parked and
    /// purged, as `trim` does for all of them, except a pool at the head of its class's list
    /// (where allocation happens) and the cached pool. So a heap whose pools hold scattered
    /// survivors gives their free pages back a bounded step at a time, with no call; a page
    /// needed again comes back, lowest first, when its pool runs out of others.
    ///
    /// A heap that took a pool from its arenas since the last step is growing: pools in use
    /// serve their free blocks before any new pool, so their free pages are the next to be
    /// used, and parking them would only fault them back in. The step is put off to the next
    /// pass. Both rules came from CPython under `pyalloc-python`, which allocates and frees
    /// all along: with a round on every pass, richards' whole run went from 0.76 to 0.88 of
    /// pymalloc's instructions (callgrind, where a pass comes every few thousand requests),
    /// pages parked and taken back again; with a round after any arena given back,
    /// json_dumps' went to 0.81, its live set built and freed on every iteration.
    ///
    /// Called on the slow paths that may have run a pass: a pool taken or given back, a large
    /// request.
    #[inline]
    fn sweep_after_decay(&mut self, gate: &Gate) {
        if self.arenas.decay_passes() != self.swept_after {
            self.sweep_free_pages(gate);
        }
    }

    /// One step of the sweep (see [`sweep_after_decay`](Self::sweep_after_decay)).
    #[cold]
    #[inline(never)]
    fn sweep_free_pages(&mut self, gate: &Gate) {
        self.swept_after = self.arenas.decay_passes();
        if self.fill != Fill::Nothing {
            return;
        }
        let taken = self.arenas.pools_taken();
        let growing = taken != self.taken_at_sweep;
        self.taken_at_sweep = taken;
        let positions = self.arenas.slots() * self.arenas.pools_per_arena();
        if self.sweep_left == 0 {
            if !self.arenas.shrunk_by_half() {
                return;
            }
            self.arenas.mark_peak();
            self.sweep_left = positions;
        }
        if growing {
            self.arenas.request_pass(gate);
            return;
        }
        for _ in 0..SWEEP_POOLS.min(self.sweep_left) {
            self.sweep_left -= 1;
            if self.sweep_cursor >= positions {
                self.sweep_cursor = 0;
            }
            let position = self.sweep_cursor;
            self.sweep_cursor += 1;
            let Some(addr) = self.arenas.pool_in_use_at(position) else {
                continue;
            };
            // SAFETY: a pool layer 2 holds: its header is valid (pools are taken and given back
            // only between slow paths, and this runs at their end).
            let pool = unsafe { Pool::from_addr(addr) };
            let head = self.pools.lists.get(pool.class()).and_then(PoolList::head);
            if pool.is_marked_full() || self.pools.cached == Some(pool) || head == Some(pool) {
                continue;
            }
            // A whole free page needs every block over it free: a pool without that many
            // free carved blocks (most pools of a busy heap) is passed over unread.
            if pool.carved() - pool.ref_count() < PARK_PAGE.div_ceil(block_size(pool.class())) {
                continue;
            }
            Self::park_free_pages(&mut self.arenas, pool, gate);
        }
        if self.sweep_left > 0 {
            self.arenas.request_pass(gate);
        }
    }

    /// Parks the free pages of `pool`, a listed pool in use of `arenas`' heap, and purges them
    /// with the pages past its carved blocks (resident if the pool's last user touched them;
    /// page 0, with the header, stays). Returns the bytes purged.
    fn park_free_pages(arenas: &mut Arenas, pool: Pool, gate: &Gate) -> usize {
        let pool_size = arenas.pool_size();
        let Ok((park, untouched)) = pool.free_pages(pool_size) else {
            // A broken free list: `check` reports it; leave the pool be.
            return 0;
        };
        // Parked first: the purge zeroes the links of the free blocks in those pages.
        // SAFETY: a pool in use of this heap; `free_pages` found no live block in `park`,
        // carved pages other than page 0.
        let parked = unsafe { pool.park(park) };
        let mut pages = parked | untouched;
        let mut purged = 0;
        while pages != 0 {
            // One call per run of adjacent pages.
            let first = pages.trailing_zeros();
            let run = (pages >> first).trailing_ones();
            pages &= !(((1u32 << run) - 1) << first) as u16;
            // SAFETY: the run lies inside the pool.
            let start = unsafe { pool.addr().add(first as usize * PARK_PAGE) };
            let len = run as usize * PARK_PAGE;
            // SAFETY: parked or never carved: nothing there is read before written.
            if unsafe { arenas.purge_in_pool(pool.arena_index(), start, len, gate) } {
                purged += len;
            }
        }
        purged
    }

    /// Whether `pool` is the cached empty pool.
    pub(crate) fn is_cached(&self, pool: Pool) -> bool {
        self.pools.cached == Some(pool)
    }

    /// Verifies every invariant of layers 1 and 2 (see [`Heap::check`](crate::Heap::check)).
    pub(crate) fn check(&self) -> Result<(), String> {
        self.arenas.check()?;
        let pool_size = self.arenas.pool_size();
        let pools = self.arenas.pools_in_use().count();
        // Every pool in a used list: right class, has a free block.
        let mut listed = crate::meta::meta_hash_set();
        for (class, list) in self.pools.lists.iter().enumerate() {
            for pool in list.iter(pools) {
                let pool = pool?;
                if !listed.insert(pool) {
                    return Err(format!("pool {:p} is listed twice", pool.addr()));
                }
                if pool.class() != class {
                    return Err(format!(
                        "pool {:p} in the list of class {class}",
                        pool.addr()
                    ));
                }
                if pool.first_free().is_null() {
                    return Err(format!("used pool {:p} has no free block", pool.addr()));
                }
            }
        }
        if let Some(pool) = self.pools.cached {
            if !listed.contains(&pool) {
                return Err(format!("cached pool {:p} is not listed", pool.addr()));
            }
        }
        if self.pools.cached.is_some() != self.arenas.spare_lent() {
            return Err(format!(
                "cached pool {:?} but a spare {} lent",
                self.pools.cached.map(Pool::addr),
                if self.arenas.spare_lent() {
                    "is"
                } else {
                    "is not"
                }
            ));
        }
        for (arena_index, addr) in self.arenas.pools_in_use() {
            // SAFETY: a pool in use of this heap.
            let pool = unsafe { Pool::from_addr(addr) };
            pool.check(arena_index, pool_size)?;
            if pool.owner() != self.owner_id() {
                return Err(format!(
                    "pool {addr:p} names owner {:#x} in heap {:#x}",
                    pool.owner(),
                    self.owner_id()
                ));
            }
            if pool.ref_count() == 0 && !self.is_cached(pool) {
                return Err(format!("pool {addr:p} is empty but in use"));
            }
            let full = pool.first_free().is_null();
            if full == listed.contains(&pool) {
                return Err(format!(
                    "pool {addr:p}: {} but {} a used-pool list",
                    if full { "full" } else { "used" },
                    if full { "in" } else { "not in" }
                ));
            }
        }
        Ok(())
    }
}

/// Forgets the pool blocks still live when a heap is dropped: its arenas go back to the OS
/// with them, which is no leak (CPython's arenas do the same at exit). Without this, memcheck
/// would report every block a test leaked on purpose (`mem::forget`, a panic before a free)
/// as definitely lost, and could later confuse a block at the same address of a new arena.
#[cfg(feature = "valgrind")]
impl Drop for RawHeap {
    fn drop(&mut self) {
        for (_, addr) in self.arenas.pools_in_use() {
            // SAFETY: a pool in use of this heap, which is being dropped.
            let pool = unsafe { Pool::from_addr(addr) };
            if let Ok(live) = pool.live_blocks() {
                for block in live {
                    valgrind::freelike(block.as_ptr());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::{boxed_source, SystemSource};

    /// 32 KiB arenas of 4 KiB pools from the system allocator.
    fn raw(kept: usize, limit: Option<usize>) -> (RawHeap, Gate) {
        let mut config = HeapConfig::new()
            .arena_size(32 << 10)
            .pool_size(4 << 10)
            .empty_arenas_kept(kept)
            .release(Release::Immediate);
        if let Some(limit) = limit {
            config = config.memory_limit(limit);
        }
        (
            RawHeap::new(&config, boxed_source(SystemSource)),
            Gate::new(512),
        )
    }

    #[test]
    fn a_class_loop_keeps_its_pool_cached_and_never_leaves_it() {
        let (mut raw, gate) = raw(1, None);
        let a = raw.alloc_block(3, &gate).unwrap();
        // SAFETY: `a` is a live block of class 3.
        let pool = unsafe { raw.pool_of(a) };
        for _ in 0..10 {
            // SAFETY: `a` is live; freed once, then reallocated.
            unsafe { raw.free_block(a, &gate) };
            assert!(raw.is_cached(pool));
            assert_eq!(
                raw.alloc_block(3, &gate),
                Some(a),
                "the same block, the same pool"
            );
        }
        assert_eq!(raw.arenas().reclaimed(), 0);
        raw.check().unwrap();
        // SAFETY: `a` is live.
        unsafe { raw.free_block(a, &gate) };
        // The cached pool goes back to its arena, which is then the one spare kept.
        assert_eq!(raw.trim(&gate), (0, 0));
        assert!(!raw.is_cached(pool));
        assert_eq!(raw.arenas().current(), 1);
        raw.check().unwrap();
    }

    #[test]
    fn without_spares_an_emptied_pool_and_arena_go_back_at_once() {
        let (mut raw, gate) = raw(0, None);
        let a = raw.alloc_block(0, &gate).unwrap();
        // SAFETY: `a` is live.
        unsafe { raw.free_block(a, &gate) };
        assert_eq!(raw.arenas().current(), 0);
        raw.check().unwrap();
    }

    #[test]
    fn a_full_pool_leaves_its_list_and_comes_back_on_a_free() {
        let (mut raw, gate) = raw(1, None);
        let per_pool = crate::pool::blocks_per_pool(4 << 10, 31);
        let blocks: Vec<_> = (0..per_pool)
            .map(|_| raw.alloc_block(31, &gate).unwrap())
            .collect();
        assert!(raw.next_block(31).is_none(), "the only pool is full");
        raw.check().unwrap();
        // SAFETY: live blocks of class 31, each freed once.
        unsafe { raw.free_block(blocks[2], &gate) };
        assert_eq!(raw.next_block(31).map(|(_, b)| b), Some(blocks[2]));
        for &b in blocks.iter().filter(|&&b| b != blocks[2]) {
            // SAFETY: as above.
            unsafe { raw.free_block(b, &gate) };
        }
        raw.check().unwrap();
    }

    #[test]
    fn large_requests_count_against_the_limit_and_spares_give_way() {
        let (mut raw, gate) = raw(1, Some(64 << 10));
        let a = raw.alloc_block(0, &gate).unwrap();
        // SAFETY: `a` is live.
        unsafe { raw.free_block(a, &gate) };
        assert_eq!(raw.arenas().current(), 1, "a spare");
        let big = Layout::from_size_align(40 << 10, 16).unwrap();
        let block = raw.allocate(big, &gate).expect("the spare makes room");
        assert_eq!(raw.arenas().current(), 0);
        assert_eq!(raw.large(), (1, 40 << 10));
        let too_big = Layout::from_size_align(30 << 10, 16).unwrap();
        assert_eq!(raw.allocate(too_big, &gate), Err(AllocError));
        // SAFETY: `block` is live with `big`.
        unsafe { raw.deallocate(block.cast(), big, &gate) };
        assert_eq!(raw.large(), (0, 0));
        raw.check().unwrap();
    }

    #[test]
    fn reallocation_stays_in_place_by_cpythons_rule() {
        let (mut raw, gate) = raw(1, None);
        let l = |size| Layout::from_size_align(size, 8).unwrap();
        let block = raw.allocate(l(40), &gate).unwrap().cast::<u8>();
        // SAFETY: each call passes the live block with the layout it last had.
        unsafe {
            let grown = raw.reallocate(block, l(40), l(48), &gate).unwrap();
            assert_eq!(
                (grown.cast::<u8>(), grown.len()),
                (block, 48),
                "same class: in place"
            );
            let shrunk = raw.reallocate(block, l(48), l(37), &gate).unwrap();
            assert_eq!(
                shrunk.cast::<u8>(),
                block,
                "37 of 48 bytes stay used: in place"
            );
            let moved = raw.reallocate(block, l(37), l(8), &gate).unwrap();
            assert_ne!(
                moved.cast::<u8>(),
                block,
                "8 of 48 bytes: moves to a small class"
            );
            let large = raw.reallocate(moved.cast(), l(8), l(4000), &gate).unwrap();
            assert_eq!(raw.large(), (1, 4000));
            raw.deallocate(large.cast(), l(4000), &gate);
        }
        raw.check().unwrap();
    }
}
