//! Layer 1: arenas, and the pools carved out of them.
//!
//! An arena is `arena_size` bytes from the [`ArenaSource`], aligned to its size and cut into
//! `pools_per_arena` pools of `pool_size` bytes. The arena table (`Vec<ArenaObject>`, the
//! counterpart of CPython's `arenas` array) lives outside the arenas, in system memory, so an
//! arena's pages can be purged or unmapped without losing any bookkeeping.
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
//! ## Releasing arenas
//! An arena whose pools are all free goes back to the source at once, except that up to
//! `empty_arenas_kept` such arenas stay mapped (bpo-37257: one arena straddled by an alloc/free
//! loop otherwise costs an mmap and a munmap per iteration).

use core::ptr::NonNull;

use crate::os::ArenaSource;

/// "No arena": the null link of the arena lists.
pub(crate) const NONE: u32 = u32::MAX;

/// One slot of the arena table.
#[derive(Debug)]
pub(crate) struct ArenaObject {
    /// The arena's first byte, or `None` while this slot holds no arena (it is then on the
    /// unused-slot list, linked through `next`).
    pub(crate) base: Option<NonNull<u8>>,
    /// Bit `i` set: pool `i` is free and its pages have been touched.
    pub(crate) dirty_free: u64,
    /// Bit `i` set: pool `i` is free and untouched (never used, or purged).
    pub(crate) clean_free: u64,
    /// Number of free pools: `(dirty_free | clean_free).count_ones()`.
    pub(crate) nfree: u32,
    /// Next arena in the usable list (or in the unused-slot list).
    pub(crate) next: u32,
    /// Previous arena in the usable list.
    pub(crate) prev: u32,
}

/// A pool taken from an arena.
pub(crate) struct TakenPool {
    pub(crate) pool: NonNull<u8>,
    pub(crate) arena_index: u32,
    /// Whether the pool's memory still holds what its last user left (header included), as
    /// opposed to being untouched or purged.
    pub(crate) dirty: bool,
}

/// The arena table, its lists, and the source arenas come from.
pub(crate) struct Arenas {
    pub(crate) objects: Vec<ArenaObject>,
    /// Head of the list of unused slots of `objects`.
    unused: u32,
    /// Head of the usable list: the arena with the fewest free pools.
    pub(crate) usable: u32,
    /// `nfp2lasta[n]`: the last usable arena with `n` free pools, or `NONE`.
    pub(crate) nfp2lasta: Vec<u32>,
    pub(crate) pools_per_arena: u32,
    pub(crate) pool_size: usize,
    pub(crate) arena_size: usize,
    pub(crate) empty_arenas_kept: usize,
    /// Arenas currently mapped with every pool free.
    pub(crate) empty_arenas: usize,
    source: Box<dyn ArenaSource + Send>,
    pub(crate) allocated_total: u64,
    pub(crate) reclaimed: u64,
    pub(crate) highwater: usize,
    pub(crate) current: usize,
}

impl Arenas {
    pub(crate) fn new(
        pool_size: usize,
        arena_size: usize,
        empty_arenas_kept: usize,
        source: Box<dyn ArenaSource + Send>,
    ) -> Self {
        let pools_per_arena = (arena_size / pool_size) as u32;
        Arenas {
            objects: Vec::new(),
            unused: NONE,
            usable: NONE,
            nfp2lasta: vec![NONE; pools_per_arena as usize + 1],
            pools_per_arena,
            pool_size,
            arena_size,
            empty_arenas_kept,
            empty_arenas: 0,
            source,
            allocated_total: 0,
            reclaimed: 0,
            highwater: 0,
            current: 0,
        }
    }

    /// Bytes currently mapped from the source.
    #[inline]
    pub(crate) fn mapped_bytes(&self) -> usize {
        self.current * self.arena_size
    }

    /// The bitmap with one bit per pool of an arena.
    #[inline]
    pub(crate) fn all_pools_mask(&self) -> u64 {
        u64::MAX >> (64 - self.pools_per_arena)
    }

    /// The arena index and pool number of a pool address, given the arena index recorded in
    /// the pool's header.
    #[inline]
    pub(crate) fn pool_number(&self, arena_index: u32, pool: NonNull<u8>) -> u32 {
        let base = self.objects[arena_index as usize]
            .base
            .expect("pool_number: arena slot is unused");
        let offset = pool.as_ptr().addr() - base.as_ptr().addr();
        debug_assert!(offset < self.arena_size && offset % self.pool_size == 0);
        (offset / self.pool_size) as u32
    }

    /// Takes a free pool from the most used usable arena, mapping a new arena first if no arena
    /// has a free pool and `headroom` (bytes the memory limit still allows) permits.
    pub(crate) fn take_pool(&mut self, headroom: usize) -> Option<TakenPool> {
        if self.usable == NONE {
            self.new_arena(headroom)?;
        }
        let index = self.usable;
        let pools_per_arena = self.pools_per_arena;
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
        let next = ao.next;
        if nf == pools_per_arena {
            self.empty_arenas -= 1;
        }
        // The head has the fewest free pools. If it was the last arena with `nf`, nothing has
        // `nf` now; nothing had `nf - 1` before, so it becomes the last (and only) one with it.
        if self.nfp2lasta[nf as usize] == index {
            self.nfp2lasta[nf as usize] = NONE;
        }
        if nf == 1 {
            // Full now: leaves the usable list.
            self.usable = next;
            if next != NONE {
                self.objects[next as usize].prev = NONE;
            }
            let ao = &mut self.objects[index as usize];
            ao.next = NONE;
            ao.prev = NONE;
        } else {
            debug_assert_eq!(self.nfp2lasta[nf as usize - 1], NONE);
            self.nfp2lasta[nf as usize - 1] = index;
        }
        // SAFETY: `bit < pools_per_arena`, so the pool lies inside the arena.
        let pool = unsafe { base.add(bit as usize * self.pool_size) };
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
    /// * `pool` is pool number `pool_number` of arena `arena_index`, taken with `take_pool` and
    ///   not returned since;
    /// * no block of the pool is live.
    ///
    /// `spares` counts spares held elsewhere (the raw heap's cached empty pool) against
    /// `empty_arenas_kept`.
    pub(crate) unsafe fn return_pool(&mut self, arena_index: u32, pool_number: u32, spares: usize) {
        let index = arena_index;
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
            if self.empty_arenas + spares >= self.empty_arenas_kept {
                if was_listed {
                    self.unlink(index);
                }
                self.release_arena(index);
                return;
            }
            self.empty_arenas += 1;
        }

        if !was_listed {
            // It was full, so it has the fewest free pools of all: it goes to the head.
            let head = self.usable;
            let ao = &mut self.objects[index as usize];
            ao.next = head;
            ao.prev = NONE;
            if head != NONE {
                self.objects[head as usize].prev = index;
            }
            self.usable = index;
            if self.nfp2lasta[nf as usize] == NONE {
                self.nfp2lasta[nf as usize] = index;
            }
            return;
        }

        if self.nfp2lasta[nf as usize] == NONE {
            self.nfp2lasta[nf as usize] = index;
        }
        if last_of_old == index {
            // Already after every arena with fewer free pools and before every one with more.
            return;
        }
        debug_assert_ne!(last_of_old, NONE);
        // Move it right after the last arena with its old count: first of those with `nf`.
        self.unlink(index);
        let after = last_of_old;
        let next = self.objects[after as usize].next;
        {
            let ao = &mut self.objects[index as usize];
            ao.prev = after;
            ao.next = next;
        }
        self.objects[after as usize].next = index;
        if next != NONE {
            self.objects[next as usize].prev = index;
        }
    }

    /// Removes an arena from the usable list (its `nfp2lasta` entry already fixed).
    fn unlink(&mut self, index: u32) {
        let (prev, next) = {
            let ao = &self.objects[index as usize];
            (ao.prev, ao.next)
        };
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
    fn new_arena(&mut self, headroom: usize) -> Option<()> {
        debug_assert_eq!(self.usable, NONE);
        if self.arena_size > headroom || self.objects.len() >= NONE as usize {
            return None;
        }
        let base = self.source.map_arena(self.arena_size)?;
        debug_assert_eq!(base.as_ptr().addr() % self.arena_size, 0);
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

    /// Returns an arena (already out of the usable list) to the source.
    fn release_arena(&mut self, index: u32) {
        let ao = &mut self.objects[index as usize];
        let base = ao.base.take().expect("release_arena: slot is unused");
        ao.dirty_free = 0;
        ao.clean_free = 0;
        ao.nfree = 0;
        ao.prev = NONE;
        ao.next = self.unused;
        self.unused = index;
        // SAFETY: `base` was mapped by this source with `arena_size`, and every pool is free,
        // so nothing refers to the arena any more.
        unsafe { self.source.unmap_arena(base, self.arena_size) };
        self.reclaimed += 1;
        self.current -= 1;
    }

    /// Hands the pages of every dirty free pool back to the OS. Returns the bytes purged.
    pub(crate) fn purge_free_pools(&mut self) -> usize {
        let mut purged = 0;
        for index in 0..self.objects.len() {
            let Some(base) = self.objects[index].base else {
                continue;
            };
            let mut dirty = self.objects[index].dirty_free;
            while dirty != 0 {
                let bit = dirty.trailing_zeros();
                dirty &= dirty - 1;
                // SAFETY: `bit < pools_per_arena`, so the pool lies inside the arena.
                let pool = unsafe { base.add(bit as usize * self.pool_size) };
                // SAFETY: the pool is free: no block in it is live and no list points into it
                // (free pools are tracked only by these bitmaps).
                if unsafe { self.source.purge(pool, self.pool_size) } {
                    let ao = &mut self.objects[index];
                    ao.dirty_free &= !(1 << bit);
                    ao.clean_free |= 1 << bit;
                    purged += self.pool_size;
                }
            }
        }
        purged
    }

    /// Verifies the table's invariants; the first broken one is returned as a message.
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
        if mapped != self.current {
            return Err(format!(
                "{mapped} arenas mapped, counter says {}",
                self.current
            ));
        }
        if empty != self.empty_arenas || empty > self.empty_arenas_kept {
            return Err(format!(
                "{empty} empty arenas, counter {} (kept at most {})",
                self.empty_arenas, self.empty_arenas_kept
            ));
        }
        // The usable list: every arena with a free pool, sorted by free pools, nfp2lasta right.
        let mut seen = 0;
        let mut prev = NONE;
        let mut at = self.usable;
        let mut last_of = vec![NONE; self.nfp2lasta.len()];
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
        if last_of != self.nfp2lasta {
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
