//! Layer 1: arenas, and the pools carved out of them.
//!
//! An arena is `arena_size` bytes from the [`ArenaSource`], aligned to its size and cut into
//! `pools_per_arena` pools of `pool_size` bytes. The arena table (a [`MetaVec`] of
//! `ArenaObject`s, the counterpart of CPython's `arenas` array) lives outside the arenas, in
//! system memory, so an arena's pages can be purged or unmapped without losing any bookkeeping.
//!
//! ## Free pools: two bitmaps
//! CPython links an arena's empty pools through their headers and carves untouched pools from
//! a high-water mark. pyalloc keeps one bit per pool instead, in two words:
//! * `dirty_free`: empty pools whose pages have been written (cheap to reuse, cost RSS);
//! * `clean_free`: pools never touched, or whose pages were handed back with `purge`.
//!
//! A pool is taken dirty-first (its pages are resident already), lowest address first; an
//! untouched pool is never written before it is taken (lazy carving). Because nothing lives in
//! a free pool's memory, *all* of it, header included, can be purged: this is what lets
//! [`Heap::trim`](crate::Heap::trim) return memory CPython cannot.
//!
//! ## Usable arenas: most used first
//! Arenas with at least one free pool form the doubly linked `usable` list, sorted by number of
//! free pools, fewest first. New pools come from the head, the most used arena, so lightly used
//! arenas drain and can be released. `nfp2lasta[n]` is the last arena in the list with `n` free
//! pools (CPython's bpo-37029), so each change of an arena's count moves it in O(1).
//!
//! ## Spares
//! An arena whose pools are all free goes back to the source at once, except that the heap
//! keeps a budget of *spares*, `empty_arenas_kept` (bpo-37257: one arena straddled by an
//! alloc/free loop otherwise costs an mmap and a munmap per iteration). Layer 2 may borrow one
//! unit of that budget for its cached empty pool ([`Arenas::lend_spare`]); this module alone
//! decides what the budget allows.
//!
//! ## Release: at once, or after a decay
//! Under [`Release::Immediate`] (CPython's policy) an arena that empties beyond the spares
//! budget goes back to the source at once, and dirty free pools stay resident until
//! [`Arenas::settle`] is called by `trim`. Under [`Release::Decay`] nothing goes back at once:
//! an arena with something to give back (a dirty free pool, or being empty beyond the budget)
//! carries a deadline, `expires`, set one delay after the first such event (and reset when
//! the arena empties), and the heap-wide `next_expiry` is the earliest of them. The clock is
//! read on this module's slow paths only (a pool taken or returned) and only while a deadline
//! is pending; once `next_expiry` has passed, [`Arenas::settle`] walks the arenas whose
//! deadline passed, unmaps those that are empty beyond the budget and purges the dirty free
//! pools of the rest. Deadlines are rounded up to a quarter of the delay, so that arenas
//! emptied close together are settled in one walk. Layer 2 may also ask for a pass with no
//! deadline due ([`Arenas::request_pass`]): its sweep of the pools in use goes on a little
//! at each pass.
//!
//! ## Invariants (checked by [`Arenas::check`])
//! ```text
//! for every mapped arena a:  a.dirty_free & a.clean_free == 0
//!                            a.nfree == popcount(a.dirty_free | a.clean_free) <= pools_per_arena
//! current == #mapped arenas;  empty_arenas == #{a : a.nfree == pools_per_arena}
//! Immediate:  empty_arenas + spare_lent <= empty_arenas_kept;  every a.expires == NEVER
//! Decay:      #{a : a.nfree == pools_per_arena, a.expires == NEVER} + spare_lent
//!                 <= empty_arenas_kept
//!             next_expiry <= every a.expires
//! usable == the mapped arenas with nfree > 0, sorted by nfree ascending
//! nfp2lasta[n] == the last arena of `usable` with nfree == n, or NONE
//! ```
//!
//! Every call into the source is made with the heap's [`Gate`] closed, after the table has been
//! updated, so a source that panics leaves the figures true and cannot re-enter the heap.
//!
//! ## Which addresses are ours: the arena map
//! C's `free(p)` carries no size and no owner, so a heap that serves it must tell its own
//! pointers from anyone else's without reading the memory they point to. CPython 3.11 keeps a
//! three-level radix tree over its (page-aligned) arenas for this (`arena_map_is_used`).
//! Arenas here are aligned to their size, so one mark per arena-sized slot of the address space
//! answers it: [`ArenaMap`], a root of leaf pointers (mapped zeroed from the OS, so the pages of
//! it that are never written cost no memory) and 32 KiB leaves of one byte per slot, made as arenas
//! arrive. A byte rather than a bit: the test is one load and compare instead of a load, two
//! shifts, a mask and a bit test, on every size-less free (a leaf covers 32 GiB of 1 MiB
//! arenas, and its untouched pages cost nothing).
//! ```text
//! map.contains(a)  ⇔  a lies in an arena mapped now
//! ```

use core::ptr::NonNull;

use crate::config::Release;
use crate::gate::Gate;
use crate::meta::{Meta, MetaVec};
use crate::os::{self, SourceBox};

/// "No arena": the null link of the arena lists.
const NONE: u32 = u32::MAX;

/// "No deadline": the `expires` of an arena with nothing waiting to decay.
const NEVER: u64 = u64::MAX;

/// The addresses the map covers: `0..1 << ADDRESS_BITS`, the user half of x86-64's and
/// AArch64's 48-bit address spaces. An arena mapped above (never, without an address hint) is
/// refused, and a pointer above is never ours.
const ADDRESS_BITS: u32 = 48;

/// Slots per leaf of the map, as a power of two: 32 KiB leaves.
const LEAF_BITS: u32 = 15;

/// One leaf of the map: a byte per arena slot, nonzero while an arena is mapped there.
type Leaf = [u8; 1 << LEAF_BITS];

/// An entry of the map's root: a leaf, or none yet (null: all-zero bytes, as a fresh mapping
/// holds, are `None`, which `Option<NonNull>` guarantees).
type RootEntry = Option<NonNull<Leaf>>;

/// One byte per arena-sized slot of the address space, set while an arena of this heap is
/// mapped there: a two-level radix map (see the module docs). The root and the leaves are
/// mapped zeroed from the OS ([`os::map_zeroed`]): only their pages that are written, around the
/// addresses of arenas, are ever resident.
pub(crate) struct ArenaMap {
    /// `log2(arena size)`: a slot's number is its address shifted by this.
    shift: u32,
    /// The leaves, indexed by `slot >> LEAF_BITS`: `root_len` entries, mapped when the first
    /// arena is registered (dangling and empty before). Owned: the map unmaps it and every
    /// leaf it points to. Most of it is never written, so nothing walks it whole: see
    /// `leaf_indices`.
    root: NonNull<RootEntry>,
    /// Entries of `root`: 0 until the first arena, then one per leaf of the covered range.
    root_len: usize,
    /// The root indices that hold a leaf, so that counting and dropping the map cost one step
    /// per leaf, not one per root entry (up to 2^19 with 16 KiB arenas).
    leaf_indices: MetaVec<usize>,
    /// Slots marked (see [`marked`](Self::marked)).
    marked: usize,
}

// SAFETY: the map owns its root and leaves outright (no one else holds their addresses), as a
// `Vec` of `Box`es would; it is moved with its heap, never shared.
unsafe impl Send for ArenaMap {}

impl ArenaMap {
    fn new(arena_size: usize) -> Self {
        ArenaMap {
            shift: arena_size.trailing_zeros(),
            root: NonNull::dangling(),
            root_len: 0,
            leaf_indices: MetaVec::new_in(Meta),
            marked: 0,
        }
    }

    /// The root's entries (none before the first arena).
    #[inline(always)]
    fn root(&self) -> &[RootEntry] {
        // SAFETY: `root` is dangling with length 0, or the mapping of `root_len` entries that
        // `set` made, zeroed (`None`) or written by `set` only, and owned by this map.
        unsafe { core::slice::from_raw_parts(self.root.as_ptr(), self.root_len) }
    }

    /// Bytes of the root's mapping.
    fn root_bytes(&self) -> usize {
        self.root_len * size_of::<RootEntry>()
    }

    /// The root index and the index in its leaf of the slot of `addr`, or `None` above the
    /// covered range.
    #[inline(always)]
    fn position(&self, addr: usize) -> Option<(usize, usize)> {
        if addr >> ADDRESS_BITS != 0 {
            return None;
        }
        let slot = addr >> self.shift;
        Some((slot >> LEAF_BITS, slot & ((1 << LEAF_BITS) - 1)))
    }

    /// Whether `addr` lies in an arena of this heap: four loads, no read outside the map.
    /// The root has exactly one entry per leaf of the covered range, so its bounds check alone
    /// turns away an address above the range (or any address before the first arena).
    #[inline(always)]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        let slot = addr >> self.shift;
        let index = slot & ((1 << LEAF_BITS) - 1);
        match self.root().get(slot >> LEAF_BITS) {
            // SAFETY: a leaf in the root is a live mapping of this map's; `index` is in range.
            Some(Some(leaf)) => unsafe { *leaf.as_ptr().cast::<u8>().add(index) != 0 },
            _ => false,
        }
    }

    /// Marks (or clears) the slot of an arena at `base`. Returns `false`, changing nothing, when
    /// the arena lies above the covered range or memory for the map cannot be had.
    fn set(&mut self, base: usize, present: bool) -> bool {
        let Some((leaf, index)) = self.position(base) else {
            return false;
        };
        if self.root_len == 0 {
            let entries = 1usize << (ADDRESS_BITS - self.shift).saturating_sub(LEAF_BITS);
            let Some(root) = os::map_zeroed(entries * size_of::<RootEntry>()) else {
                return false;
            };
            // All-zero bytes are `RootEntry`'s `None`.
            self.root = root.cast();
            self.root_len = entries;
        }
        debug_assert!(
            leaf < self.root_len,
            "position() keeps below the covered range"
        );
        // SAFETY: `leaf < root_len` (the root covers the whole range `position` accepts); the
        // root is this map's mapping, and `&mut self` excludes every reader.
        let entry = unsafe { &mut *self.root.as_ptr().add(leaf) };
        let slots = match entry {
            Some(slots) => *slots,
            None if !present => return true,
            None => {
                if self.leaf_indices.try_reserve(1).is_err() {
                    return false;
                }
                let Some(zeroed) = os::map_zeroed(size_of::<Leaf>()) else {
                    return false;
                };
                self.leaf_indices.push(leaf);
                // All-zero bytes are a leaf of clear slots.
                *entry.insert(zeroed.cast())
            }
        };
        // SAFETY: a leaf of this map's, written only here, under `&mut self`.
        let slot = unsafe { &mut (*slots.as_ptr())[index] };
        if (*slot != 0) != present {
            if present {
                self.marked += 1;
            } else {
                self.marked -= 1;
            }
        }
        *slot = u8::from(present);
        true
    }

    /// Slots marked, all leaves together: kept by [`set`](Self::set) as it flips a slot,
    /// the only writer of the leaves (`check()` compares it with the arenas mapped after every
    /// step of the model tests, under Miri too, where counting 32 KiB leaves would dominate).
    fn marked(&self) -> usize {
        self.marked
    }

    /// Bytes of address space the map takes: its root and its leaves (only the pages written
    /// are resident).
    pub(crate) fn bytes(&self) -> usize {
        self.root_bytes() + self.leaf_indices.len() * size_of::<Leaf>()
    }

    /// Leaves made.
    pub(crate) fn leaves(&self) -> usize {
        self.leaf_indices.len()
    }
}

impl Drop for ArenaMap {
    /// Unmaps the leaves, then the root, without visiting its other entries (most of its pages
    /// were never written).
    fn drop(&mut self) {
        for &i in &self.leaf_indices {
            if let Some(leaf) = self.root()[i] {
                // SAFETY: a leaf this map mapped, unmapped once (each index is listed once),
                // and nothing reads the map after its drop.
                unsafe { os::unmap_zeroed(leaf.cast(), size_of::<Leaf>()) };
            }
        }
        if self.root_len != 0 {
            // SAFETY: the root this map mapped, with its length; no longer used.
            unsafe { os::unmap_zeroed(self.root.cast(), self.root_bytes()) };
        }
    }
}

/// One slot of the arena table.
#[derive(Debug)]
struct ArenaObject {
    /// The arena's first byte, or `None` while this slot holds no arena (it is then on the
    /// unused-slot list, linked through `next`).
    base: Option<NonNull<u8>>,
    /// Bit `i` set: pool `i` is free and its pages have been touched.
    dirty_free: u64,
    /// Bit `i` set: pool `i` is free and untouched (never used, or purged).
    clean_free: u64,
    /// Number of free pools: `(dirty_free | clean_free).count_ones()`.
    nfree: u32,
    /// Next arena in the usable list (or in the unused-slot list).
    next: u32,
    /// Previous arena in the usable list.
    prev: u32,
    /// Under a decay: when this arena's dirty free pools are purged, or (empty beyond the
    /// spares budget) it is unmapped; `NEVER` when nothing waits.
    expires: u64,
    /// Bytes of this arena handed back with `purge` since it was mapped.
    purged: u64,
}

/// A pool taken from an arena.
pub(crate) struct TakenPool {
    pub(crate) pool: NonNull<u8>,
    pub(crate) arena_index: u32,
    /// Whether the pool's memory still holds what its last user left (header included), as
    /// opposed to being untouched or purged.
    pub(crate) dirty: bool,
}

/// Where a pool stands in its arena.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PoolSlot {
    /// Taken by layer 2: its header is valid.
    InUse,
    /// Free, its pages resident (written by a former user).
    FreeDirty,
    /// Free and untouched: never used, or purged.
    FreeClean,
}

/// One pool of one arena, as the walks see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct PoolEntry {
    pub(crate) arena_index: u32,
    pub(crate) number: u32,
    pub(crate) addr: NonNull<u8>,
    pub(crate) slot: PoolSlot,
}

/// The arena table, its lists, the spares budget, and the source arenas come from.
pub(crate) struct Arenas {
    objects: MetaVec<ArenaObject>,
    /// Head of the list of unused slots of `objects`.
    unused: u32,
    /// Head of the usable list: the arena with the fewest free pools.
    usable: u32,
    /// `nfp2lasta[n]`: the last usable arena with `n` free pools, or `NONE`.
    nfp2lasta: MetaVec<u32>,
    pools_per_arena: u32,
    pool_size: usize,
    arena_size: usize,
    /// The spares budget: empty arenas kept plus the spare lent to layer 2.
    empty_arenas_kept: usize,
    /// Arenas currently mapped with every pool free.
    empty_arenas: usize,
    /// Whether one unit of the budget is lent to layer 2's cached empty pool.
    spare_lent: bool,
    source: SourceBox,
    /// Which addresses lie in the arenas mapped now.
    map: ArenaMap,
    allocated_total: u64,
    reclaimed: u64,
    highwater: usize,
    current: usize,
    /// The decay's delay in nanoseconds; `None` under [`Release::Immediate`].
    decay: Option<u64>,
    /// The earliest `expires` of any arena (or later: never earlier), or `NEVER`.
    next_expiry: u64,
    /// Bytes handed back with `purge` since the heap was made.
    purged_bytes: u64,
    /// Pools given back by layer 2 since the heap was made. Layer 3 compares it between two
    /// looks at its free lists (`FreeLists::tend`) to tell a heap that is shrinking; named in
    /// prose, so that this module does not point up at the layers built on it.
    pools_returned: u64,
    /// Passes of the decay (settles due to a deadline) since the heap was made. Layer 2's sweep
    /// of its pools in use takes a step after a pass (`RawHeap::sweep_free_pages`); named in
    /// prose for the same reason.
    decay_passes: u64,
    /// Pools taken by layer 2 since the heap was made: a heap that took one since the sweep's
    /// last step is growing, and the sweep puts its next step off.
    pools_taken: u64,
    /// The most arenas holding pools in use at once since [`mark_peak`](Self::mark_peak)
    /// (layer 2's sweep begins a round once the heap has shrunk to half of it).
    peak_since_mark: usize,
}

impl Arenas {
    pub(crate) fn new(
        pool_size: usize,
        arena_size: usize,
        empty_arenas_kept: usize,
        release: Release,
        source: SourceBox,
    ) -> Self {
        let pools_per_arena = (arena_size / pool_size) as u32;
        debug_assert!((1..=64).contains(&pools_per_arena));
        Arenas {
            objects: MetaVec::new_in(Meta),
            unused: NONE,
            usable: NONE,
            nfp2lasta: allocator_api2::vec![in Meta; NONE; pools_per_arena as usize + 1],
            pools_per_arena,
            pool_size,
            arena_size,
            empty_arenas_kept,
            empty_arenas: 0,
            spare_lent: false,
            source,
            map: ArenaMap::new(arena_size),
            allocated_total: 0,
            reclaimed: 0,
            highwater: 0,
            current: 0,
            decay: Self::delay_of(release),
            next_expiry: NEVER,
            purged_bytes: 0,
            pools_returned: 0,
            decay_passes: 0,
            pools_taken: 0,
            peak_since_mark: 0,
        }
    }

    pub(crate) fn pool_size(&self) -> usize {
        self.pool_size
    }

    pub(crate) fn arena_size(&self) -> usize {
        self.arena_size
    }

    pub(crate) fn pools_per_arena(&self) -> usize {
        self.pools_per_arena as usize
    }

    /// Bytes currently mapped from the source.
    #[inline]
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.current * self.arena_size
    }

    /// Which addresses lie in the arenas mapped now.
    #[inline(always)]
    pub(crate) fn map(&self) -> &ArenaMap {
        &self.map
    }

    /// Arenas mapped now.
    pub(crate) fn current(&self) -> usize {
        self.current
    }

    /// Arenas ever mapped.
    pub(crate) fn allocated_total(&self) -> u64 {
        self.allocated_total
    }

    /// Arenas returned to the source.
    pub(crate) fn reclaimed(&self) -> u64 {
        self.reclaimed
    }

    /// The most arenas mapped at once.
    pub(crate) fn highwater(&self) -> usize {
        self.highwater
    }

    /// The bitmap with one bit per pool of an arena.
    #[inline]
    fn all_pools_mask(&self) -> u64 {
        u64::MAX >> (64 - self.pools_per_arena)
    }

    /// The address of pool `number` of the arena at `base`.
    #[inline]
    fn pool_at(&self, base: NonNull<u8>, number: u32) -> NonNull<u8> {
        debug_assert!(number < self.pools_per_arena);
        // SAFETY: `number < pools_per_arena`, so the pool lies inside the arena.
        unsafe { base.add(number as usize * self.pool_size) }
    }

    /// The pool number of a pool address, given the arena index recorded in its header.
    #[inline]
    pub(crate) fn pool_number(&self, arena_index: u32, pool: NonNull<u8>) -> u32 {
        let base = self.objects[arena_index as usize]
            .base
            .expect("pool_number: arena slot is unused");
        let offset = pool.as_ptr().addr() - base.as_ptr().addr();
        debug_assert!(offset < self.arena_size && offset % self.pool_size == 0);
        (offset / self.pool_size) as u32
    }

    // ----------------------------------------------------------------------------------------
    // The spares budget

    /// Lends layer 2 one unit of the spares budget for a cached empty pool, if the budget has
    /// room. Returns whether it did.
    pub(crate) fn lend_spare(&mut self) -> bool {
        if self.spare_lent || self.empty_arenas >= self.empty_arenas_kept {
            return false;
        }
        self.spare_lent = true;
        true
    }

    /// Whether a unit of the budget is lent to layer 2.
    pub(crate) fn spare_lent(&self) -> bool {
        self.spare_lent
    }

    /// Layer 2 gives back the unit lent by [`lend_spare`](Self::lend_spare).
    #[inline]
    pub(crate) fn take_back_spare(&mut self) {
        self.spare_lent = false;
    }

    /// Whether an arena that just emptied may stay mapped as a spare.
    fn may_keep_empty_arena(&self) -> bool {
        self.empty_arenas + usize::from(self.spare_lent) < self.empty_arenas_kept
    }

    // ----------------------------------------------------------------------------------------
    // Taking and returning pools

    /// Takes a free pool from the most used usable arena, mapping a new arena first if no arena
    /// has a free pool and `headroom` (bytes the memory limit still allows) permits.
    pub(crate) fn take_pool(&mut self, headroom: usize, gate: &Gate) -> Option<TakenPool> {
        if self.usable == NONE {
            self.new_arena(headroom, gate)?;
        }
        let index = self.usable;
        let ao = &mut self.objects[index as usize];
        let base = ao.base.expect("usable arena has no memory");
        let (bit, dirty) = if ao.dirty_free != 0 {
            (ao.dirty_free.trailing_zeros(), true)
        } else {
            debug_assert!(ao.clean_free != 0, "usable arena {index} has no free pool");
            (ao.clean_free.trailing_zeros(), false)
        };
        ao.dirty_free &= !(1 << bit);
        ao.clean_free &= !(1 << bit);
        let nf = ao.nfree;
        ao.nfree = nf - 1;
        if nf == self.pools_per_arena {
            self.empty_arenas -= 1;
            self.peak_since_mark = self.peak_since_mark.max(self.occupied());
        }
        // The head has the fewest free pools. If it was the last arena with `nf`, nothing has
        // `nf` now; nothing had `nf - 1` before, so it becomes the last (and only) one with it.
        if self.nfp2lasta[nf as usize] == index {
            self.nfp2lasta[nf as usize] = NONE;
        }
        if nf == 1 {
            // Full now: leaves the usable list.
            self.unlink(index);
        } else {
            debug_assert_eq!(self.nfp2lasta[nf as usize - 1], NONE);
            self.nfp2lasta[nf as usize - 1] = index;
        }
        let pool = self.pool_at(base, bit);
        self.pools_taken += 1;
        // After the take, so that the arena the pool came from is not empty and stays.
        if self.next_expiry != NEVER {
            self.tick(gate);
        }
        Some(TakenPool {
            pool,
            arena_index: index,
            dirty,
        })
    }

    /// Gives an empty pool back to its arena, which may then be released to the source.
    ///
    /// # Safety
    ///
    /// * `pool_number` of arena `arena_index` was taken with `take_pool` and not returned since;
    /// * no block of the pool is live, and nothing refers to the pool any more.
    pub(crate) unsafe fn return_pool(&mut self, arena_index: u32, pool_number: u32, gate: &Gate) {
        let index = arena_index;
        self.pools_returned += 1;
        let ao = &mut self.objects[index as usize];
        debug_assert_eq!((ao.dirty_free | ao.clean_free) & (1 << pool_number), 0);
        ao.dirty_free |= 1 << pool_number;
        ao.nfree += 1;
        let nf = ao.nfree;
        let prev = ao.prev;
        // Where the arena stood: after every arena with fewer free pools, so right after the
        // last arena with its old count (possibly itself).
        let last_of_old = self.nfp2lasta[nf as usize - 1];
        if last_of_old == index {
            let prev_has_old = prev != NONE && self.objects[prev as usize].nfree == nf - 1;
            self.nfp2lasta[nf as usize - 1] = if prev_has_old { prev } else { NONE };
        }
        let was_listed = nf > 1;

        if nf == self.pools_per_arena {
            if self.decay.is_none() && !self.may_keep_empty_arena() {
                if was_listed {
                    self.unlink(index);
                }
                self.release_arena(index, gate);
                return;
            }
            self.empty_arenas += 1;
        }

        if !was_listed {
            // It was full, so it has the fewest free pools of all: it goes to the head.
            self.link_after(index, NONE);
        } else if last_of_old != index {
            // Move it right after the last arena with its old count: first of those with `nf`.
            debug_assert_ne!(last_of_old, NONE);
            self.unlink(index);
            self.link_after(index, last_of_old);
        }
        // Else it is already after every arena with fewer free pools and before every one
        // with more.
        if self.nfp2lasta[nf as usize] == NONE {
            self.nfp2lasta[nf as usize] = index;
        }
        if self.decay.is_some() {
            self.wait_to_decay(index, nf == self.pools_per_arena, gate);
        }
    }

    /// Inserts an unlisted arena into the usable list after `after` (at the head for `NONE`).
    fn link_after(&mut self, index: u32, after: u32) {
        let next = if after == NONE {
            self.usable
        } else {
            self.objects[after as usize].next
        };
        let ao = &mut self.objects[index as usize];
        ao.prev = after;
        ao.next = next;
        if after == NONE {
            self.usable = index;
        } else {
            self.objects[after as usize].next = index;
        }
        if next != NONE {
            self.objects[next as usize].prev = index;
        }
    }

    /// Removes an arena from the usable list (its `nfp2lasta` entry already fixed).
    fn unlink(&mut self, index: u32) {
        let ArenaObject { prev, next, .. } = self.objects[index as usize];
        if prev != NONE {
            self.objects[prev as usize].next = next;
        } else {
            debug_assert_eq!(self.usable, index);
            self.usable = next;
        }
        if next != NONE {
            self.objects[next as usize].prev = prev;
        }
        let ao = &mut self.objects[index as usize];
        ao.next = NONE;
        ao.prev = NONE;
    }

    /// Maps a new arena and makes it the only usable one. Only called when no arena is usable.
    fn new_arena(&mut self, headroom: usize, gate: &Gate) -> Option<()> {
        debug_assert_eq!(self.usable, NONE);
        if self.arena_size > headroom || self.objects.len() >= NONE as usize {
            return None;
        }
        if self.unused == NONE {
            // Room for the slot first, so that nothing can fail once the arena is mapped.
            self.objects.try_reserve(1).ok()?;
        }
        let size = self.arena_size;
        let base = gate.closed(|| self.source.map_arena(size))?;
        debug_assert_eq!(base.as_ptr().addr() % self.arena_size, 0);
        if !self.map.set(base.as_ptr().addr(), true) {
            // No room for the map, or an address it does not cover: the arena cannot be
            // told from foreign memory, so it is not used.
            let source = &mut self.source;
            // SAFETY: just mapped by this source with this size, and used by no one.
            gate.closed(|| unsafe { source.unmap_arena(base, size) });
            return None;
        }
        // A freed block reaches the heap as the caller's pointer, whose provenance may cover
        // that block only (a `Box` retags it so); the heap finds the block's pool header by
        // address instead, through the arena's own provenance, exposed here.
        let _ = base.as_ptr().expose_provenance();
        let object = ArenaObject {
            base: Some(base),
            dirty_free: 0,
            clean_free: self.all_pools_mask(),
            nfree: self.pools_per_arena,
            next: NONE,
            prev: NONE,
            expires: NEVER,
            purged: 0,
        };
        let index = if self.unused != NONE {
            let index = self.unused;
            self.unused = self.objects[index as usize].next;
            self.objects[index as usize] = object;
            index
        } else {
            self.objects.push(object);
            (self.objects.len() - 1) as u32
        };
        self.usable = index;
        self.nfp2lasta[self.pools_per_arena as usize] = index;
        self.empty_arenas += 1;
        self.allocated_total += 1;
        self.current += 1;
        self.highwater = self.highwater.max(self.current);
        Some(())
    }

    /// Returns an empty arena (already out of the usable list) to the source. The table is
    /// updated first, so the figures stay true if the source panics.
    fn release_arena(&mut self, index: u32, gate: &Gate) {
        let ao = &mut self.objects[index as usize];
        let base = ao.base.take().expect("release_arena: slot is unused");
        ao.dirty_free = 0;
        ao.clean_free = 0;
        ao.nfree = 0;
        ao.prev = NONE;
        ao.expires = NEVER;
        ao.next = self.unused;
        self.unused = index;
        self.reclaimed += 1;
        self.current -= 1;
        let cleared = self.map.set(base.as_ptr().addr(), false);
        debug_assert!(cleared, "a mapped arena is in the map");
        let size = self.arena_size;
        let source = &mut self.source;
        // SAFETY: `base` was mapped by this source with `arena_size`, and every pool is free,
        // so nothing refers to the arena any more.
        gate.closed(|| unsafe { source.unmap_arena(base, size) });
    }

    /// Releases every empty arena kept as a spare. Returns how many went back.
    pub(crate) fn release_spares(&mut self, gate: &Gate) -> usize {
        let mut released = 0;
        while self.empty_arenas > 0 {
            self.release_one_spare(gate);
            released += 1;
        }
        released
    }

    /// Releases one empty arena kept as a spare (there is one).
    fn release_one_spare(&mut self, gate: &Gate) {
        // Empty arenas have the most free pools, so they are at the tail of the usable list,
        // and `nfp2lasta[pools_per_arena]` is the last of them.
        let index = self.nfp2lasta[self.pools_per_arena as usize];
        debug_assert_ne!(index, NONE);
        self.release_empty_arena(index, gate);
    }

    /// Releases empty arena `index`, listed at the tail of the usable list with the others.
    fn release_empty_arena(&mut self, index: u32, gate: &Gate) {
        let ppa = self.pools_per_arena;
        debug_assert_eq!(self.objects[index as usize].nfree, ppa);
        if self.nfp2lasta[ppa as usize] == index {
            let prev = self.objects[index as usize].prev;
            let prev_is_empty = prev != NONE && self.objects[prev as usize].nfree == ppa;
            self.nfp2lasta[ppa as usize] = if prev_is_empty { prev } else { NONE };
        }
        self.unlink(index);
        self.empty_arenas -= 1;
        self.release_arena(index, gate);
    }

    /// Sets the spares budget and the release policy (a thread heap keeps no spare and
    /// releases at once while abandoned, since nobody runs its slow paths to settle a decay;
    /// its configured ones again once adopted); spares beyond the budget go back at once, and
    /// under immediate release everything a decay held. Returns the arenas released.
    pub(crate) fn set_policy(&mut self, kept: usize, release: Release, gate: &Gate) -> usize {
        debug_assert!(
            !self.spare_lent,
            "the cached pool gives its spare back first"
        );
        let before = self.reclaimed;
        self.empty_arenas_kept = kept;
        self.decay = Self::delay_of(release);
        if self.decay.is_none() {
            // No deadline may stay pending under immediate release.
            self.settle(None, gate);
        }
        while self.empty_arenas > kept {
            self.release_one_spare(gate);
        }
        (self.reclaimed - before) as usize
    }

    /// The decay's delay in nanoseconds, `None` for immediate release.
    fn delay_of(release: Release) -> Option<u64> {
        match release {
            Release::Immediate => None,
            Release::Decay(delay) => Some(u64::try_from(delay.as_nanos()).unwrap_or(NEVER)),
        }
    }

    // ----------------------------------------------------------------------------------------
    // Decay and purge

    /// Under a decay: an event of `return_pool` left arena `index` with something to give
    /// back (a dirty free pool; `emptied`: every pool free). Gives it a deadline if it has
    /// none (a new one if it just emptied: an empty arena waits a whole delay), then settles
    /// whatever is due.
    #[cold]
    fn wait_to_decay(&mut self, index: u32, emptied: bool, gate: &Gate) {
        let Some(delay) = self.decay else { return };
        let now = self.now(gate);
        let ao = &mut self.objects[index as usize];
        if ao.expires == NEVER || emptied {
            // Rounded up to a quarter of the delay: arenas emptied close together share one
            // deadline, and one walk settles them.
            let grain = (delay / 4).max(1);
            let at = now.saturating_add(delay);
            ao.expires = at.div_ceil(grain).saturating_mul(grain);
            self.next_expiry = self.next_expiry.min(ao.expires);
        }
        if now >= self.next_expiry {
            self.settle(Some(now), gate);
        }
    }

    /// Under a decay, asks for a pass of it about a quarter delay from now (rounded as the
    /// deadlines are) even if no arena has anything to give back: layer 2's sweep of the
    /// pools in use continues on the passes (see `decay_passes`). Nothing under immediate
    /// release.
    pub(crate) fn request_pass(&mut self, gate: &Gate) {
        let Some(delay) = self.decay else { return };
        let now = self.now(gate);
        let grain = (delay / 4).max(1);
        let at = now
            .saturating_add(grain)
            .div_ceil(grain)
            .saturating_mul(grain);
        self.next_expiry = self.next_expiry.min(at);
    }

    /// Settles what is due, if anything waits: for slow paths outside this module (a large
    /// allocation), so that a program whose pools stop turning over still decays.
    #[inline]
    pub(crate) fn tend(&mut self, gate: &Gate) {
        if self.next_expiry != NEVER {
            self.tick(gate);
        }
    }

    /// Settles what is due if the earliest deadline has passed (`next_expiry` is pending).
    #[cold]
    #[inline(never)]
    fn tick(&mut self, gate: &Gate) {
        let now = self.now(gate);
        if now >= self.next_expiry {
            self.settle(Some(now), gate);
        }
    }

    /// The source's clock, read with the gate closed (it is the caller's code).
    fn now(&mut self, gate: &Gate) -> u64 {
        let source = &mut self.source;
        gate.closed(|| source.now())
    }

    /// Gives back what is due at `now`, or everything that can go (`None`: `trim`): unmaps the
    /// empty arenas beyond the spares budget and purges the dirty free pools of the others.
    /// Returns the bytes purged.
    pub(crate) fn settle(&mut self, now: Option<u64>, gate: &Gate) -> usize {
        let mut purged = 0;
        let mut next = NEVER;
        for index in 0..self.objects.len() as u32 {
            let ao = &mut self.objects[index as usize];
            if ao.base.is_none() {
                continue;
            }
            if let Some(now) = now {
                if ao.expires > now {
                    next = next.min(ao.expires);
                    continue;
                }
            }
            ao.expires = NEVER;
            let empty = ao.nfree == self.pools_per_arena;
            let over_budget =
                self.empty_arenas + usize::from(self.spare_lent) > self.empty_arenas_kept;
            if empty && over_budget {
                self.release_empty_arena(index, gate);
            } else {
                purged += self.purge_arena(index, gate);
            }
        }
        self.next_expiry = next;
        if now.is_some() {
            self.decay_passes += 1;
        }
        purged
    }

    /// Hands the pages of arena `index`'s dirty free pools back to the OS. Returns the bytes.
    fn purge_arena(&mut self, index: u32, gate: &Gate) -> usize {
        let Some(base) = self.objects[index as usize].base else {
            return 0;
        };
        let mut purged = 0;
        let mut dirty = self.objects[index as usize].dirty_free;
        while dirty != 0 {
            let bit = dirty.trailing_zeros();
            dirty &= dirty - 1;
            let pool = self.pool_at(base, bit);
            let (source, size) = (&mut self.source, self.pool_size);
            // SAFETY: the pool is free: no block in it is live and no list points into it
            // (free pools are tracked only by these bitmaps).
            if gate.closed(|| unsafe { source.purge(pool, size) }) {
                let ao = &mut self.objects[index as usize];
                ao.dirty_free &= !(1 << bit);
                ao.clean_free |= 1 << bit;
                ao.purged += self.pool_size as u64;
                purged += self.pool_size;
            }
        }
        self.purged_bytes += purged as u64;
        purged
    }

    /// Hands back `len` bytes at `ptr`, inside a pool in use of arena `index` that layer 2
    /// has emptied of everything it needs (its parked pages). Returns whether the OS took them.
    ///
    /// # Safety
    ///
    /// The range lies in a pool of arena `index` and holds nothing anyone will read before
    /// writing.
    pub(crate) unsafe fn purge_in_pool(
        &mut self,
        index: u32,
        ptr: NonNull<u8>,
        len: usize,
        gate: &Gate,
    ) -> bool {
        let source = &mut self.source;
        // SAFETY: the caller's contract: inside one of this source's arenas, nothing live.
        let purged = gate.closed(|| unsafe { source.purge(ptr, len) });
        if purged {
            self.objects[index as usize].purged += len as u64;
            self.purged_bytes += len as u64;
        }
        purged
    }

    /// Pools given back by layer 2 since the heap was made.
    pub(crate) fn pools_returned(&self) -> u64 {
        self.pools_returned
    }

    /// Passes of the decay since the heap was made (see the field).
    #[inline]
    pub(crate) fn decay_passes(&self) -> u64 {
        self.decay_passes
    }

    /// Arenas holding pools in use (mapped and not empty).
    pub(crate) fn occupied(&self) -> usize {
        self.current - self.empty_arenas
    }

    /// Whether the arenas holding pools in use are at most half of the most there were since
    /// the last [`mark_peak`](Self::mark_peak): the heap has shrunk, and what is left has
    /// outlived most of what was allocated.
    pub(crate) fn shrunk_by_half(&self) -> bool {
        self.occupied() * 2 <= self.peak_since_mark
    }

    /// Starts watching the peak again from the arenas in use now.
    pub(crate) fn mark_peak(&mut self) {
        self.peak_since_mark = self.occupied();
    }

    /// Pools taken by layer 2 since the heap was made.
    #[inline]
    pub(crate) fn pools_taken(&self) -> u64 {
        self.pools_taken
    }

    /// Slots of the arena table: pool positions `0..slots * pools_per_arena` name every pool a
    /// walk by position ([`pool_in_use_at`](Self::pool_in_use_at)) can meet.
    pub(crate) fn slots(&self) -> usize {
        self.objects.len()
    }

    /// The pool at `position` (`arena slot * pools_per_arena + number`), if its arena is
    /// mapped and layer 2 holds it (its header valid).
    pub(crate) fn pool_in_use_at(&self, position: usize) -> Option<NonNull<u8>> {
        let per_arena = self.pools_per_arena as usize;
        let (index, number) = (position / per_arena, (position % per_arena) as u32);
        let ao = self.objects.get(index)?;
        let base = ao.base?;
        let free = (ao.dirty_free | ao.clean_free) & (1 << number) != 0;
        (!free).then(|| self.pool_at(base, number))
    }

    /// Bytes handed back with `purge` since the heap was made.
    pub(crate) fn purged_bytes(&self) -> u64 {
        self.purged_bytes
    }

    /// Bytes of arena `index` handed back with `purge` since it was mapped.
    pub(crate) fn purged_in(&self, index: u32) -> u64 {
        self.objects[index as usize].purged
    }

    /// Bytes of free pools whose pages are resident: kept for reuse, not yet purged.
    pub(crate) fn retained_bytes(&self) -> usize {
        let dirty: u32 = self
            .objects
            .iter()
            .filter(|ao| ao.base.is_some())
            .map(|ao| ao.dirty_free.count_ones())
            .sum();
        dirty as usize * self.pool_size
    }

    // ----------------------------------------------------------------------------------------
    // Walks

    /// Every pool of every mapped arena, arena by arena in table order, pool by pool.
    pub(crate) fn pools(&self) -> impl Iterator<Item = PoolEntry> + '_ {
        self.objects
            .iter()
            .enumerate()
            .filter_map(|(index, ao)| ao.base.map(|base| (index as u32, ao, base)))
            .flat_map(move |(arena_index, ao, base)| {
                (0..self.pools_per_arena).map(move |number| {
                    let bit = 1u64 << number;
                    let slot = if ao.dirty_free & bit != 0 {
                        PoolSlot::FreeDirty
                    } else if ao.clean_free & bit != 0 {
                        PoolSlot::FreeClean
                    } else {
                        PoolSlot::InUse
                    };
                    PoolEntry {
                        arena_index,
                        number,
                        addr: self.pool_at(base, number),
                        slot,
                    }
                })
            })
    }

    /// Every pool taken by layer 2 (its header valid), with its arena's index.
    pub(crate) fn pools_in_use(&self) -> impl Iterator<Item = (u32, NonNull<u8>)> + '_ {
        self.pools()
            .filter(|p| p.slot == PoolSlot::InUse)
            .map(|p| (p.arena_index, p.addr))
    }

    /// Verifies the invariants listed in the module docs; the first broken one is returned.
    pub(crate) fn check(&self) -> Result<(), String> {
        let all = self.all_pools_mask();
        let mut mapped = 0;
        let mut empty = 0;
        for (i, ao) in self.objects.iter().enumerate() {
            if ao.base.is_none() {
                continue;
            }
            mapped += 1;
            if ao.dirty_free & ao.clean_free != 0 || (ao.dirty_free | ao.clean_free) & !all != 0 {
                return Err(format!("arena {i}: free-pool bitmaps overlap or overflow"));
            }
            if (ao.dirty_free | ao.clean_free).count_ones() != ao.nfree {
                return Err(format!(
                    "arena {i}: nfree {} disagrees with bitmaps",
                    ao.nfree
                ));
            }
            if ao.nfree == self.pools_per_arena {
                empty += 1;
            }
        }
        for ao in &self.objects {
            if let Some(base) = ao.base {
                let (first, last) = (
                    base.as_ptr().addr(),
                    base.as_ptr().addr() + self.arena_size - 1,
                );
                if !self.map.contains(first) || !self.map.contains(last) {
                    return Err(format!("arena {base:p} is missing from the arena map"));
                }
            }
        }
        let marked = self.map.marked();
        if marked != self.current {
            return Err(format!(
                "arena map marks {marked} arenas, {} are mapped",
                self.current
            ));
        }
        if mapped != self.current {
            return Err(format!(
                "{mapped} arenas mapped, counter says {}",
                self.current
            ));
        }
        if empty != self.empty_arenas {
            return Err(format!(
                "{empty} empty arenas, counter {}",
                self.empty_arenas
            ));
        }
        let mut settled_empty = 0;
        for (i, ao) in self.objects.iter().enumerate() {
            if ao.base.is_none() {
                continue;
            }
            if ao.expires != NEVER && self.decay.is_none() {
                return Err(format!("arena {i} has a deadline under immediate release"));
            }
            if ao.expires < self.next_expiry {
                return Err(format!(
                    "arena {i} expires at {} before next_expiry {}",
                    ao.expires, self.next_expiry
                ));
            }
            if ao.nfree == self.pools_per_arena && ao.expires == NEVER {
                settled_empty += 1;
            }
        }
        if self.decay.is_some()
            && settled_empty + usize::from(self.spare_lent) > self.empty_arenas_kept
        {
            return Err(format!(
                "{settled_empty} empty arenas wait for no deadline and {} cached empty pool \
                 exceed the {} spares kept",
                usize::from(self.spare_lent),
                self.empty_arenas_kept
            ));
        }
        if self.decay.is_none()
            && self.empty_arenas + usize::from(self.spare_lent) > self.empty_arenas_kept
        {
            return Err(format!(
                "{} empty arenas and {} cached empty pool exceed the {} spares kept",
                self.empty_arenas,
                usize::from(self.spare_lent),
                self.empty_arenas_kept
            ));
        }
        // The usable list: every arena with a free pool, sorted by free pools, nfp2lasta right.
        let mut seen = 0;
        let mut prev = NONE;
        let mut at = self.usable;
        let mut last_of = allocator_api2::vec![in Meta; NONE; self.nfp2lasta.len()];
        while at != NONE {
            let ao = &self.objects[at as usize];
            if ao.base.is_none() || ao.nfree == 0 {
                return Err(format!("usable list holds arena {at} with no free pool"));
            }
            if ao.prev != prev {
                return Err(format!("usable list: arena {at} has a wrong back link"));
            }
            if prev != NONE && self.objects[prev as usize].nfree > ao.nfree {
                return Err(format!("usable list out of order at arena {at}"));
            }
            last_of[ao.nfree as usize] = at;
            seen += 1;
            prev = at;
            at = ao.next;
            if seen > self.objects.len() {
                return Err("usable list has a cycle".into());
            }
        }
        let listed = self
            .objects
            .iter()
            .filter(|ao| ao.base.is_some() && ao.nfree > 0)
            .count();
        if seen != listed {
            return Err(format!(
                "usable list has {seen} arenas, {listed} have free pools"
            ));
        }
        if last_of[..] != self.nfp2lasta[..] {
            return Err(format!(
                "nfp2lasta {:?} should be {:?}",
                self.nfp2lasta, last_of
            ));
        }
        Ok(())
    }
}

impl Drop for Arenas {
    fn drop(&mut self) {
        for ao in &mut self.objects {
            if let Some(base) = ao.base.take() {
                // SAFETY: the heap is being dropped and every allocation borrowed it, so no
                // block of this arena can be used again.
                unsafe { self.source.unmap_arena(base, self.arena_size) };
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::os::{boxed_source, SystemSource};

    /// Arenas of 8 pools of 4 KiB from the system allocator, keeping `kept` spares.
    fn arenas(kept: usize) -> Arenas {
        Arenas::new(
            4 << 10,
            32 << 10,
            kept,
            Release::Immediate,
            boxed_source(SystemSource),
        )
    }

    fn take(a: &mut Arenas, gate: &Gate) -> (u32, u32) {
        let taken = a.take_pool(usize::MAX, gate).expect("a pool");
        (
            taken.arena_index,
            a.pool_number(taken.arena_index, taken.pool),
        )
    }

    fn give(a: &mut Arenas, (arena, number): (u32, u32), gate: &Gate) {
        // SAFETY: the pool was taken by `take` and nothing uses it.
        unsafe { a.return_pool(arena, number, gate) };
        a.check().unwrap();
    }

    /// The usable list as (arena, free pools), head first.
    fn usable(a: &Arenas) -> Vec<(u32, u32)> {
        let mut out = Vec::new();
        let mut at = a.usable;
        while at != NONE {
            out.push((at, a.objects[at as usize].nfree));
            at = a.objects[at as usize].next;
        }
        out
    }

    #[test]
    fn pools_come_from_the_most_used_arena_lowest_first() {
        let gate = Gate::new(512);
        let mut a = arenas(1);
        let first: Vec<_> = (0..8).map(|_| take(&mut a, &gate)).collect();
        assert_eq!(first, (0..8).map(|n| (0, n)).collect::<Vec<_>>());
        assert_eq!(usable(&a), vec![]);
        assert_eq!(take(&mut a, &gate), (1, 0));
        a.check().unwrap();
        // A pool back in the full arena 0 puts it at the head: it has fewer free pools.
        give(&mut a, (0, 3), &gate);
        assert_eq!(usable(&a), vec![(0, 1), (1, 7)]);
        assert_eq!(take(&mut a, &gate), (0, 3), "dirty pools are reused first");
    }

    #[test]
    fn every_return_path_keeps_the_order_and_nfp2lasta() {
        let gate = Gate::new(512);
        let mut a = arenas(8);
        // Three full arenas.
        let mut held: Vec<Vec<(u32, u32)>> = (0..3)
            .map(|_| (0..8).map(|_| take(&mut a, &gate)).collect())
            .collect();
        // Full → head (arena 1 gets one free pool).
        give(&mut a, held[1].pop().unwrap(), &gate);
        assert_eq!(usable(&a), vec![(1, 1)]);
        // Full → head, ahead of an arena with as many free pools: order by count holds.
        give(&mut a, held[2].pop().unwrap(), &gate);
        assert_eq!(usable(&a), vec![(2, 1), (1, 1)]);
        // Listed, not last of its count: moves behind the last arena with its old count.
        give(&mut a, held[2].pop().unwrap(), &gate);
        assert_eq!(usable(&a), vec![(1, 1), (2, 2)]);
        // Listed and last of its count: stays in place.
        give(&mut a, held[2].pop().unwrap(), &gate);
        assert_eq!(usable(&a), vec![(1, 1), (2, 3)]);
        assert_eq!(a.nfp2lasta[1], 1);
        assert_eq!(a.nfp2lasta[3], 2);
        // An arena that empties is kept while the budget allows.
        for pool in held[2].drain(..) {
            give(&mut a, pool, &gate);
        }
        assert_eq!(usable(&a), vec![(1, 1), (2, 8)]);
        assert_eq!(a.empty_arenas, 1);
        assert_eq!(a.current(), 3);
    }

    #[test]
    fn an_empty_arena_beyond_the_budget_goes_back_at_once() {
        let gate = Gate::new(512);
        let mut a = arenas(1);
        let one: Vec<_> = (0..8).map(|_| take(&mut a, &gate)).collect();
        let two: Vec<_> = (0..8).map(|_| take(&mut a, &gate)).collect();
        for pool in one {
            give(&mut a, pool, &gate);
        }
        assert_eq!((a.current(), a.empty_arenas), (2, 1), "one spare kept");
        for pool in two {
            give(&mut a, pool, &gate);
        }
        assert_eq!((a.current(), a.reclaimed()), (1, 1), "the second goes back");
        assert_eq!(a.release_spares(&gate), 1);
        assert_eq!(a.current(), 0);
        a.check().unwrap();
    }

    #[test]
    fn a_lent_spare_counts_against_the_budget() {
        let gate = Gate::new(512);
        let mut a = arenas(1);
        assert!(a.lend_spare());
        assert!(!a.lend_spare(), "one unit only");
        let pools: Vec<_> = (0..8).map(|_| take(&mut a, &gate)).collect();
        for pool in pools {
            give(&mut a, pool, &gate);
        }
        assert_eq!(
            a.current(),
            0,
            "the budget was lent: the empty arena goes back"
        );
        a.take_back_spare();
        let pools: Vec<_> = (0..8).map(|_| take(&mut a, &gate)).collect();
        for pool in pools {
            give(&mut a, pool, &gate);
        }
        assert_eq!(
            a.current(),
            1,
            "the budget is free again: the arena is kept"
        );
        assert!(!a.lend_spare(), "the kept arena uses the budget");
    }

    #[test]
    fn the_headroom_bounds_new_arenas() {
        let gate = Gate::new(512);
        let mut a = arenas(1);
        assert!(a.take_pool((32 << 10) - 1, &gate).is_none());
        assert_eq!(a.current(), 0);
        assert!(a.take_pool(32 << 10, &gate).is_some());
    }

    #[test]
    fn the_map_marks_whole_arenas_and_nothing_else() {
        let mut map = ArenaMap::new(1 << 20);
        assert!(!map.contains(0x4000_0000), "an empty map holds nothing");
        assert_eq!(
            map.bytes(),
            0,
            "nothing is allocated before the first arena"
        );
        let base = 0x7f12_3450_0000;
        assert!(map.set(base, true));
        assert!(map.contains(base) && map.contains(base + (1 << 20) - 1));
        assert!(!map.contains(base - 1) && !map.contains(base + (1 << 20)));
        assert!(!map.contains(usize::MAX) && !map.contains(1 << ADDRESS_BITS));
        assert!(
            !map.set(1 << ADDRESS_BITS, true),
            "above the covered range: refused"
        );
        assert_eq!(map.leaves(), 1);
        // 2^(48 - 20 - 15) root entries of 8 bytes, and one 32 KiB leaf.
        assert_eq!(map.bytes(), (1 << 13) * 8 + (32 << 10));
        assert!(map.set(base, true), "marking twice");
        assert_eq!(map.marked(), 1, "a slot marked twice counts once");
        assert!(map.set(base, false));
        assert!(!map.contains(base));
        assert_eq!(map.marked(), 0);
        assert!(map.set(base, false), "clearing a clear slot");
        assert_eq!(map.marked(), 0);
    }

    #[test]
    fn released_arenas_leave_the_map() {
        let gate = Gate::new(512);
        let mut a = arenas(0);
        let (arena, number) = take(&mut a, &gate);
        let base = a.objects[arena as usize].base.unwrap().as_ptr().addr();
        assert!(a.map().contains(base));
        give(&mut a, (arena, number), &gate);
        assert_eq!(a.current(), 0);
        assert!(!a.map().contains(base));
    }

    #[test]
    fn the_walk_sees_every_pool_once_in_its_state() {
        let gate = Gate::new(512);
        let mut a = arenas(1);
        let taken: Vec<_> = (0..3).map(|_| take(&mut a, &gate)).collect();
        give(&mut a, taken[1], &gate);
        let slots: Vec<_> = a.pools().map(|p| p.slot).collect();
        assert_eq!(slots.len(), 8);
        assert_eq!(slots[0], PoolSlot::InUse);
        assert_eq!(slots[1], PoolSlot::FreeDirty);
        assert_eq!(slots[2], PoolSlot::InUse);
        assert!(slots[3..].iter().all(|&s| s == PoolSlot::FreeClean));
        assert_eq!(a.pools_in_use().count(), 2);
    }
}
