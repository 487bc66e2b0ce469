//! The safe handle: [`Heap`], one pymalloc instance, and its `Allocator` implementation.
//!
//! `Heap` wraps the raw layers in `UnsafeCell`s. It is `Send` but not `Sync`: like a CPython
//! interpreter under its GIL, one thread uses it at a time, and everything allocated from it
//! borrows it (`Box<T, &Heap>`, `Vec<T, &Heap>`, [`Pooled<T>`](crate::Pooled)), so the heap
//! cannot be dropped or moved while any of it is live.

use core::alloc::Layout;
use core::cell::UnsafeCell;
use core::fmt;
use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};

use crate::config::{ConfigError, HeapConfig};
use crate::free_list::{slot_layout, FreeListKey, FreeListStats, FreeListed, FreeLists, ListSpec};
use crate::os::{default_source, ArenaSource};
use crate::raw::RawHeap;
use crate::stats::Stats;

/// One instance of CPython's small-object allocator: arenas, pools, size classes, and per-type
/// free lists.
///
/// `&Heap` is an [`Allocator`], so the allocator-api2 collections (and hashbrown's, and
/// bumpalo's) take it directly:
///
/// ```
/// use allocator_api2::{boxed::Box, vec::Vec};
/// use pyalloc_core::Heap;
///
/// let heap = Heap::new();
/// let b = Box::new_in(42u64, &heap);
/// let mut v = Vec::new_in(&heap);
/// v.extend([1, 2, 3]);
/// assert_eq!(*b + v.iter().sum::<u64>(), 48);
/// assert_eq!(heap.stats().arenas_current(), 1);
/// ```
///
/// `Heap` is not `Sync`, so it cannot be shared between threads:
///
/// ```compile_fail
/// fn shared<T: Sync>() {}
/// shared::<pyalloc_core::Heap>();
/// ```
///
/// and what is allocated from it cannot leave the thread that uses it:
///
/// ```compile_fail
/// let heap = pyalloc_core::Heap::new();
/// let b = allocator_api2::boxed::Box::new_in(1u8, &heap);
/// std::thread::spawn(move || drop(b));
/// ```
///
/// The heap itself can move to another thread while nothing borrows it:
///
/// ```
/// let heap = pyalloc_core::Heap::new();
/// std::thread::spawn(move || {
///     let b = allocator_api2::boxed::Box::new_in([0u8; 100], &heap);
///     assert_eq!(b.len(), 100);
/// })
/// .join()
/// .unwrap();
/// ```
pub struct Heap {
    raw: UnsafeCell<RawHeap>,
    lists: UnsafeCell<FreeLists>,
    config: HeapConfig,
}

// SAFETY: every pointer inside the heap points into memory the heap owns (its arenas, its
// large blocks, its free-list slots) or into its own tables; the arena source is `Send`.
// Moving the heap moves all of it. `Heap` is not `Sync` (the `UnsafeCell`s), so only the
// thread that holds it uses it.
unsafe impl Send for Heap {}

/// What [`Heap::trim`] gave back.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TrimReport {
    /// Slots emptied from the layer-3 free lists.
    pub free_list_slots: usize,
    /// Arenas returned to the OS.
    pub arenas_released: usize,
    /// Bytes of empty pools whose pages were handed back (`madvise`) inside arenas kept.
    pub bytes_purged: usize,
}

impl Default for Heap {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Heap {
    /// A heap with CPython 3.10+'s geometry ([`HeapConfig::new`]), arenas from mmap. Maps
    /// nothing until the first allocation.
    pub fn new() -> Self {
        Self::with_config(HeapConfig::new()).expect("the default configuration is valid")
    }

    /// A heap with the given geometry and policies.
    pub fn with_config(config: HeapConfig) -> Result<Self, ConfigError> {
        Self::with_boxed_source(config, default_source())
    }

    /// A heap taking its arenas from `source` (a [`SystemSource`](crate::SystemSource), a
    /// [`FailingSource`](crate::FailingSource) for tests, or your own).
    pub fn with_source<S: ArenaSource + Send + 'static>(
        config: HeapConfig,
        source: S,
    ) -> Result<Self, ConfigError> {
        Self::with_boxed_source(config, Box::new(source))
    }

    fn with_boxed_source(
        config: HeapConfig,
        source: Box<dyn ArenaSource + Send>,
    ) -> Result<Self, ConfigError> {
        config.validate()?;
        Ok(Heap {
            raw: UnsafeCell::new(RawHeap::new(&config, source)),
            lists: UnsafeCell::new(FreeLists::new(!config.free_lists, config.debug)),
            config,
        })
    }

    /// The configuration this heap was built with.
    pub fn config(&self) -> &HeapConfig {
        &self.config
    }

    /// The raw layers, for one call that does not re-enter the heap.
    ///
    /// # Safety
    ///
    /// The returned reference must not outlive the caller's use, and no other reference to
    /// the raw heap may exist meanwhile: true for any call that runs no user code, because
    /// `Heap` is not `Sync` and no `RawHeap` method calls out of the crate (arena sources
    /// promise not to re-enter the heap).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn raw(&self) -> &mut RawHeap {
        // SAFETY: see the function's contract.
        unsafe { &mut *self.raw.get() }
    }

    /// The free lists, under the same rule as [`raw`](Self::raw).
    ///
    /// # Safety
    ///
    /// As for [`raw`](Self::raw).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn lists(&self) -> &mut FreeLists {
        // SAFETY: see the function's contract.
        unsafe { &mut *self.lists.get() }
    }

    /// The statistics of `sys._debugmallocstats()`, derived by walking the heap now.
    pub fn stats(&self) -> Stats {
        // SAFETY: reading the tables runs no user code; both borrows end before returning.
        unsafe { Stats::collect(self.raw(), self.lists(), &self.config) }
    }

    /// Verifies every internal invariant of layers 1–3: arena counts and bitmaps, the order
    /// of usable arenas and `nfp2lasta`, each pool's header, free list and state against the
    /// used-pool lists, each layer-3 list's chain and length, and in debug mode every guard
    /// and every poisoned slot. O(heap size): for tests, fuzzing and debugging.
    ///
    /// Returns the first broken invariant, as a message naming the structure and address.
    pub fn check(&self) -> Result<(), String> {
        // SAFETY: the walks run no user code.
        unsafe {
            self.raw().check()?;
            self.lists().check()
        }
    }

    /// Gives back to the OS everything that can go: empties the layer-3 free lists (their
    /// slots pin pools and arenas, exactly as CPython's float free list does), returns empty
    /// arenas beyond those kept, and hands the pages of every empty pool back to the OS
    /// (`madvise`) even inside arenas that still hold live blocks, which CPython cannot do.
    pub fn trim(&self) -> TrimReport {
        let free_list_slots = self.clear_free_lists();
        // SAFETY: no user code runs during the purge.
        let raw = unsafe { self.raw() };
        let before = raw.arenas.reclaimed;
        raw.flush_cached_pool();
        let bytes_purged = raw.arenas.purge_free_pools();
        TrimReport {
            free_list_slots,
            arenas_released: (raw.arenas.reclaimed - before) as usize,
            bytes_purged,
        }
    }

    // ------------------------------------------------------------------------------------
    // Layer 3

    /// Empties every free list of this heap, freeing the slots to layer 2 (CPython's clearing
    /// of free lists in `gc.collect()`). Returns the number of slots freed.
    pub fn clear_free_lists(&self) -> usize {
        // SAFETY: draining runs no user code; the borrow ends at the semicolon.
        let slots = unsafe { self.lists().drain_all() };
        let count = slots.len();
        for (slot, layout) in slots {
            // SAFETY: each slot was allocated from this heap with its list's slot layout and
            // holds no live value.
            unsafe { self.raw().deallocate(slot, layout) };
        }
        count
    }

    /// The figures of `T`'s free list in this heap.
    pub fn free_list_stats<T: FreeListed>(&self) -> FreeListStats {
        self.stats_of(T::free_list_id().get())
    }

    /// The figures of a keyed free list in this heap.
    pub fn free_list_stats_for(&self, key: &FreeListKey) -> FreeListStats {
        self.stats_of(key.id as usize)
    }

    fn stats_of(&self, id: usize) -> FreeListStats {
        // SAFETY: a read that runs no user code.
        unsafe { self.lists() }.stats(id)
    }

    /// Sets how many slots `T`'s free list keeps in this heap (0 turns it off); slots beyond
    /// the new capacity are freed to layer 2.
    ///
    /// # Panics
    ///
    /// If `capacity` exceeds [`MAX_FREE_LIST_CAPACITY`](crate::MAX_FREE_LIST_CAPACITY).
    pub fn set_free_list_capacity<T: FreeListed>(&self, capacity: usize) {
        self.set_capacity(T::free_list_id().get(), &ListSpec::of::<T>(), capacity);
    }

    /// Sets how many slots a keyed free list keeps in this heap, like
    /// [`set_free_list_capacity`](Self::set_free_list_capacity).
    pub fn set_free_list_capacity_for(&self, key: &FreeListKey, capacity: usize) {
        self.set_capacity(key.id as usize, &key.spec, capacity);
    }

    fn set_capacity(&self, id: usize, spec: &ListSpec, capacity: usize) {
        // SAFETY: no user code runs; the borrow ends at the semicolon.
        let evicted = unsafe { self.lists().set_capacity(id, spec, capacity) };
        let layout = slot_layout(spec.value_layout);
        for slot in evicted {
            // SAFETY: evicted slots were allocated from this heap with this layout.
            unsafe { self.raw().deallocate(slot, layout) };
        }
    }

    /// Memory for one value of `key`'s layout: the most recently freed slot of the list, else a
    /// block from layer 2. The memory is uninitialised.
    #[inline]
    pub fn alloc_slot(&self, key: &FreeListKey) -> Result<NonNull<u8>, AllocError> {
        self.pop_slot(key.id as usize, &key.spec)
    }

    /// Returns a slot to `key`'s free list, or to layer 2 when the list is full.
    ///
    /// # Safety
    ///
    /// `slot` came from [`alloc_slot`](Self::alloc_slot) of this heap with the same key (or a
    /// copy of it), holds no live value, and is not used afterwards.
    #[inline]
    pub unsafe fn free_slot(&self, key: &FreeListKey, slot: NonNull<u8>) {
        // SAFETY: forwarded contract.
        unsafe { self.push_slot(key.id as usize, &key.spec, slot) }
    }

    /// The typed and keyed pop: the hit path is a list pop; a miss goes to layer 2.
    #[inline(always)]
    pub(crate) fn pop_slot(&self, id: usize, spec: &ListSpec) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: popping runs no user code.
        if let Some(slot) = unsafe { self.lists() }.pop(id) {
            return Ok(slot);
        }
        self.pop_slot_miss(id, spec)
    }

    #[cold]
    #[inline(never)]
    fn pop_slot_miss(&self, id: usize, spec: &ListSpec) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: no user code runs while either borrow lives.
        unsafe {
            if self.config.debug {
                if let Some(slot) = self.lists().debug_pop(id, spec) {
                    return Ok(slot);
                }
            }
            self.lists().record_miss(id, spec);
            let block = self.raw().allocate(slot_layout(spec.value_layout))?;
            Ok(block.cast())
        }
    }

    /// The typed and keyed push: the hit path is a list push; a full list goes to layer 2.
    ///
    /// # Safety
    ///
    /// `slot` came from `pop_slot` of this heap with the same id and spec, holds no live value.
    #[inline(always)]
    pub(crate) unsafe fn push_slot(&self, id: usize, spec: &ListSpec, slot: NonNull<u8>) {
        // SAFETY: the slot has the layout of list `id` (the caller's contract); no user code
        // runs.
        if unsafe { self.lists().try_push(id, slot) } {
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { self.push_slot_slow(id, spec, slot) }
    }

    /// # Safety
    ///
    /// As [`push_slot`](Self::push_slot).
    #[cold]
    #[inline(never)]
    unsafe fn push_slot_slow(&self, id: usize, spec: &ListSpec, slot: NonNull<u8>) {
        // SAFETY: as `push_slot`; a slot the list does not keep is a block of this heap with
        // the slot layout, freed to layer 2. No user code runs.
        unsafe {
            if self.config.debug {
                // A slot must be a live block of this heap (not foreign, not freed to layer 2).
                self.raw()
                    .debug_check_live(slot, slot_layout(spec.value_layout));
            }
            if !self.lists().push_or_overflow(id, spec, slot) {
                self.raw().deallocate(slot, slot_layout(spec.value_layout));
            }
        }
    }
}

// SAFETY: `allocate` returns blocks that stay valid until deallocated or the heap is dropped
// (and every allocation borrows the heap, so it cannot be dropped first); blocks never overlap
// (each is handed out once until freed); `grow`/`shrink` preserve the contents up to the
// smaller size; the `&Heap` blanket impl of allocator-api2 forwards here, and clones of `&Heap`
// are the same heap.
unsafe impl Allocator for Heap {
    #[inline(always)]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: `RawHeap::allocate` runs no user code.
        unsafe { self.raw().allocate(layout) }
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: as `allocate`.
        unsafe { self.raw().allocate_zeroed(layout) }
    }

    #[inline(always)]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        // SAFETY: the caller guarantees `ptr` is a live block of this heap that `layout` fits,
        // which is `RawHeap::deallocate`'s contract; no user code runs.
        unsafe { self.raw().deallocate(ptr, layout) }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(new_layout.size() >= old_layout.size());
        // SAFETY: forwarded contract.
        unsafe { self.raw().reallocate(ptr, old_layout, new_layout) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded contract.
        let block = unsafe { self.raw().reallocate(ptr, old_layout, new_layout) }?;
        // SAFETY: the block is at least `old_layout.size()` long and writable to its end.
        unsafe {
            let start = block.cast::<u8>().as_ptr().add(old_layout.size());
            start.write_bytes(0, block.len() - old_layout.size());
        }
        Ok(block)
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(new_layout.size() <= old_layout.size());
        // SAFETY: forwarded contract.
        unsafe { self.raw().reallocate(ptr, old_layout, new_layout) }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        // Free-list slots may be system blocks (large or over-aligned types): free them first.
        // Arenas go back to the OS when the raw heap drops.
        self.clear_free_lists();
        self.raw.get_mut().debug_release_leftovers();
    }
}
