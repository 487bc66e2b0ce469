//! The safe handle: [`Heap`], one pymalloc instance, its `Allocator` implementation, and the
//! one way into its core.
//!
//! `Heap` keeps its layers (the raw heap, the free lists, and in debug mode the debug layer) in
//! one `UnsafeCell`, with the re-entrancy [`Gate`] beside it. It is `Send` but not `Sync`: like
//! a CPython interpreter under its GIL, one thread uses it at a time, and everything allocated
//! from it borrows it (`Box<T, &Heap>`, `Vec<T, &Heap>`, [`Pooled<T>`](crate::Pooled)), so the
//! heap cannot be dropped or moved while any of it is live.
//!
//! ## The way in
//! * The fast paths (a block of layer 2, a slot of layer 3) test the gate, borrow the core for
//!   one list operation that calls nothing out and cannot panic, and return.
//! * Everything else goes through [`Heap::enter`]: it refuses a re-entrant call (one made
//!   while the core is borrowed, from a panic hook or an arena source), closes the gate, and
//!   hands the closure the core. A debug-mode misuse comes back as data and becomes a panic
//!   only after the gate has reopened, so a panic hook may use the heap.
//! * A re-entrant free cannot be refused without losing the block, so it is deferred: kept
//!   beside the core and done when the gate next opens.

use core::alloc::Layout;
use core::cell::{Cell, UnsafeCell};
use core::fmt;
use core::ptr::NonNull;

use allocator_api2::alloc::{AllocError, Allocator};

use crate::config::{ConfigError, HeapConfig, Release, ALIGNMENT, SMALL_REQUEST_THRESHOLD};
use crate::debug::{DebugError, DebugLayer, Misuse};
use crate::free_list::{
    head_at, sentinel, FreeListId, FreeListKey, FreeListStats, FreeListed, FreeLists, KeyId,
    ListHead, ListSpec, MAX_FREE_LIST_CAPACITY,
};
use crate::gate::Gate;
use crate::meta::{Meta, MetaBox};
use crate::os::{boxed_source, default_source, ArenaSource, SourceBox};
use crate::pool::Pool;
use crate::raw::{slice, RawHeap, ThreadLink, UsedPools};
use crate::size_class::{block_size, class_of};
use crate::stats::Stats;
use crate::sys;

/// One instance of CPython's small-object allocator: arenas, pools, size classes, and per-type
/// free lists.
///
/// `&Heap` is an [`Allocator`], so the allocator-api2 collections (and hashbrown's, and
/// bumpalo's) take it directly:
///
/// ```
/// use pyalloc::{Box, Heap, Vec};
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
/// shared::<pyalloc::Heap>();
/// ```
///
/// and what is allocated from it cannot leave the thread that uses it:
///
/// ```compile_fail
/// let heap = pyalloc::Heap::new();
/// let b = pyalloc::Box::new_in(1u8, &heap);
/// std::thread::spawn(move || drop(b));
/// ```
///
/// The heap itself can move to another thread while nothing borrows it:
///
/// ```
/// let heap = pyalloc::Heap::new();
/// std::thread::spawn(move || {
///     let b = pyalloc::Box::new_in([0u8; 100], &heap);
///     assert_eq!(b.len(), 100);
/// })
/// .join()
/// .unwrap();
/// ```
///
/// # Debug mode
///
/// [`HeapConfig::debug`] turns on CPython's `PYTHONMALLOC=debug` and more, for every layer:
/// every block is served with guard bytes around it, fresh blocks are filled with
/// [`FRESH_BYTE`](crate::FRESH_BYTE) (`0xCD`), freed ones with
/// [`FREED_BYTE`](crate::FREED_BYTE) (`0xDD`), guards with [`GUARD_BYTE`](crate::GUARD_BYTE)
/// (`0xFD`), and a record of every live and freed block names each misuse the type system
/// cannot stop:
///
/// | misuse | named when |
/// | --- | --- |
/// | buffer overrun (any byte of the trailing guard, which runs to the block's end) | free, resize, [`check`](Heap::check) |
/// | buffer underrun | free, resize, `check` |
/// | double free of a block, or of a [`Pooled`](crate::Pooled)/keyed slot | the second free |
/// | a block freed with another layout than it was allocated with | free, resize |
/// | a pointer this heap did not allocate (another heap's, or none at all) | free, resize, slot push |
/// | write after free into a small block | the block is handed out again, or its pool empties |
/// | write after free that overwrote a free block's list link | before the link is followed |
/// | write after free into a large block (kept in a quarantine of the last 64 freed, up to 4 MiB) | it leaves the quarantine, `check`, [`trim`](Heap::trim) |
/// | write after free into a slot resting on a free list (every byte, its first word included) | popped, evicted, cleared, `trim`, `check` |
///
/// Each is a panic whose message starts with `pyalloc debug:` and names the problem, the
/// address and the size, raised before the heap changes anything and after its core is
/// released, so a panic hook may still use the heap:
///
/// ```should_panic
/// use pyalloc::{Allocator, Heap, HeapConfig};
/// use std::alloc::Layout;
///
/// let heap = Heap::with_config(HeapConfig::new().debug(true)).unwrap();
/// let layout = Layout::new::<[u8; 24]>();
/// let block = heap.allocate(layout).unwrap().cast::<u8>();
/// // SAFETY: none: the second free is the misuse being shown.
/// unsafe {
///     heap.deallocate(block, layout);
///     heap.deallocate(block, layout); // panics: "pyalloc debug: double free: block 0x…"
/// }
/// ```
///
/// The mode costs nothing when off: a debug heap's fast-path limit is 0, so its requests
/// take the slow path through the debug layer, and a normal heap's fast path has no test of
/// its own for the mode. In debug mode, layer-3 slots rest *out of band* (the list keeps their
/// addresses) so they can be poisoned whole; LIFO order and the statistics are the same.
pub struct Heap {
    core: UnsafeCell<Core>,
    gate: Gate,
    /// The base of the core's typed list heads ([`FreeLists::heads_base`]), copied out so the
    /// typed hit paths reach them without borrowing the core: the heads are `Cell`s in a
    /// table of their own, which the core owns but never holds a borrow of across a call out.
    /// Refreshed by every slow path.
    heads: Cell<NonNull<ListHead>>,
    deferred: DeferredFrees,
    config: HeapConfig,
    /// A misuse aborts the process with its message instead of panicking: set for `Global`'s
    /// heaps, which serve `GlobalAlloc`, out of which a panic may not unwind (and whose panic
    /// machinery would allocate from the very heap that caught the misuse).
    abort_on_misuse: bool,
}

/// The layers behind the gate.
struct Core {
    raw: RawHeap,
    lists: FreeLists,
    /// The debug layer, when the heap was built in debug mode (boxed in system memory, as
    /// every structure of the core: see [`meta`](crate::meta)).
    debug: Option<MetaBox<DebugLayer>>,
}

// SAFETY: every pointer inside the heap points into memory the heap owns (its arenas, its
// large blocks, its free-list slots) or into its own tables; the arena source is `Send`.
// Moving the heap moves all of it. `Heap` is not `Sync` (the `UnsafeCell` and `Cell`s), so
// only the thread that holds it uses it.
unsafe impl Send for Heap {}

/// A call that arrived while the heap's core was borrowed: from a panic hook that runs inside
/// the heap, or from an arena source that calls back into its heap.
#[derive(Clone, Copy, Debug)]
struct Reentrant;

impl fmt::Display for Reentrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "pyalloc: re-entrant call into a heap that is busy (from a panic hook, or an arena \
             source calling back into its heap)",
        )
    }
}

/// A free put off until the gate opens: the block and the layout it was freed with (`None`
/// for a free without a size).
type DeferredFree = Option<(NonNull<u8>, Option<Layout>)>;

/// Frees that arrived re-entrantly, done when the gate next opens. A fixed array beside the
/// core: recording one must not allocate.
#[derive(Debug, Default)]
struct DeferredFrees {
    frees: [Cell<DeferredFree>; 8],
    /// How many of `frees` are set, so the way in looks at them only when there are some.
    pending: Cell<usize>,
    /// Frees that found the array full: leaked, never aliased. Counted for `check()`.
    leaked: Cell<usize>,
}

impl DeferredFrees {
    fn push(&self, ptr: NonNull<u8>, layout: Option<Layout>) {
        match self.frees.iter().find(|f| f.get().is_none()) {
            Some(free) => {
                free.set(Some((ptr, layout)));
                self.pending.set(self.pending.get() + 1);
            }
            None => self.leaked.set(self.leaked.get() + 1),
        }
    }

    #[inline]
    fn take(&self) -> DeferredFree {
        if self.pending.get() == 0 {
            return None;
        }
        let free = self.frees.iter().find_map(Cell::take);
        debug_assert!(free.is_some());
        self.pending.set(self.pending.get() - 1);
        free
    }
}

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

/// Panics with a misuse the debug mode caught, once the core is released.
#[cold]
#[inline(never)]
fn misuse(misuse: Misuse) -> ! {
    panic!("{misuse}")
}

/// Writes a misuse's message to standard error and aborts, allocating nothing: for heaps that
/// serve `GlobalAlloc` (see `Heap::abort_on_misuse`).
#[cold]
#[inline(never)]
fn abort_with(misuse: Misuse) -> ! {
    /// A message formatted on the stack; what does not fit is cut.
    struct Line {
        bytes: [u8; 1024],
        len: usize,
    }
    impl fmt::Write for Line {
        fn write_str(&mut self, s: &str) -> fmt::Result {
            let n = s.len().min(self.bytes.len() - self.len);
            self.bytes[self.len..self.len + n].copy_from_slice(&s.as_bytes()[..n]);
            self.len += n;
            Ok(())
        }
    }
    let mut line = Line {
        bytes: [0; 1024],
        len: 0,
    };
    let _ = fmt::Write::write_fmt(&mut line, format_args!("{misuse}\n"));
    // SAFETY: writes `len` initialised bytes of the buffer to file descriptor 2.
    unsafe { libc::write(2, line.bytes.as_ptr().cast(), line.len) };
    std::process::abort()
}

/// Panics for a re-entrant call that has no error to return.
#[cold]
#[inline(never)]
fn reentrant(Reentrant: Reentrant) -> ! {
    panic!("{Reentrant}")
}

impl Heap {
    /// Reports a misuse the debug mode caught, once the core is released: a panic, or for a
    /// heap serving `GlobalAlloc` an abort with the same message.
    #[cold]
    #[inline(never)]
    fn report(&self, m: Misuse) -> ! {
        if self.abort_on_misuse {
            abort_with(m)
        }
        misuse(m)
    }

    /// What an allocation through the way in comes to: the memory, an `AllocError` (out of
    /// memory, or a re-entrant call), or a misuse reported once the core is released.
    fn allocation<T>(
        &self,
        result: Result<Result<T, DebugError>, Reentrant>,
    ) -> Result<T, AllocError> {
        match result {
            Ok(Ok(memory)) => Ok(memory),
            Ok(Err(DebugError::OutOfMemory)) | Err(Reentrant) => Err(AllocError),
            Ok(Err(DebugError::Misuse(m))) => self.report(m),
        }
    }

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
        Self::with_boxed_source(config, boxed_source(source))
    }

    fn with_boxed_source(config: HeapConfig, source: SourceBox) -> Result<Self, ConfigError> {
        config.validate()?;
        let fast_limit = if config.debug {
            0
        } else {
            SMALL_REQUEST_THRESHOLD
        };
        Ok(Heap {
            core: UnsafeCell::new(Core {
                raw: RawHeap::new(&config, source),
                lists: FreeLists::new(!config.free_lists, config.debug),
                debug: config
                    .debug
                    .then(|| MetaBox::new_in(DebugLayer::default(), Meta)),
            }),
            gate: Gate::new(fast_limit),
            heads: Cell::new(sentinel()),
            deferred: DeferredFrees::default(),
            config,
            abort_on_misuse: false,
        })
    }

    /// The configuration this heap was built with.
    pub fn config(&self) -> &HeapConfig {
        &self.config
    }

    /// A heap for one thread of [`Global`](crate::Global) (see [`RawHeap::set_thread`]).
    /// Its arenas are marked in the process-wide map, so that `Global` can tell its pointers
    /// from anyone else's without a size ([`process_map`](crate::process_map)).
    pub(crate) fn for_thread(config: HeapConfig, link: ThreadLink) -> Result<Self, ConfigError> {
        #[cfg(unix)]
        let source = boxed_source(crate::process_map::MarkedSource::default());
        #[cfg(not(unix))]
        let source = default_source();
        let mut heap = Self::with_boxed_source(config, source)?;
        heap.core.get_mut().raw.set_thread(link);
        heap.gate.set_turned(link.gate_turned);
        heap.abort_on_misuse = true;
        Ok(heap)
    }

    /// Whether a slow path of this heap is under way on this thread: a call now would be
    /// re-entrant, and `Global` serves it elsewhere.
    #[inline(always)]
    pub(crate) fn is_busy(&self) -> bool {
        self.gate.is_closed()
    }

    /// Marks a thread heap abandoned (no spare kept, immediate release: its arenas go back as
    /// its blocks come home, since no slow path of its own will settle a decay) or adopted
    /// again (its configured spares and policy).
    pub(crate) fn set_abandoned(&self, abandoned: bool) {
        let (kept, release) = if abandoned {
            (0, Release::Immediate)
        } else {
            (self.config.empty_arenas_kept, self.config.release)
        };
        let _ = self.enter(|core, gate| core.raw.set_policy(kept, release, gate));
    }

    /// Frees the blocks other threads sent home to this (thread) heap. A busy heap (a call
    /// re-entering its core) takes them at its next slow path instead.
    pub(crate) fn take_mail(&self) {
        let _ = self.enter(|core, gate| core.raw.take_mail(gate));
    }

    // ------------------------------------------------------------------------------------
    // The way in

    /// The core, for a fast path.
    ///
    /// # Safety
    ///
    /// The gate is open (a test against it passed just now, with nothing run since),
    /// and while the returned borrow lives the caller calls nothing out of the core except
    /// through [`Gate::closed`], and does not panic.
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn core_fast(&self) -> &mut Core {
        debug_assert!(!self.gate.is_closed());
        // SAFETY: the gate is open, so no other borrow of the core exists (every borrow of it
        // is either a fast path, which ends before anything can re-enter, or inside `enter`,
        // which closes the gate); `Heap` is not `Sync`, so no other thread borrows it.
        unsafe { &mut *self.core.get() }
    }

    /// The one way into the core for everything but the fast paths: refuses a re-entrant call,
    /// and runs `f` with the gate closed. Frees deferred by re-entrant calls are done when the
    /// gate opens again.
    fn enter<R>(&self, f: impl FnOnce(&mut Core, &Gate) -> R) -> Result<R, Reentrant> {
        if self.gate.is_closed() {
            return Err(Reentrant);
        }
        self.do_deferred_frees();
        let result = self.gate.closed(|| {
            // SAFETY: the gate was open, so the core is not borrowed (see `core_fast`), and
            // it stays closed while `f` runs, so every re-entrant call is refused above or
            // kept off the fast paths.
            let core = unsafe { &mut *self.core.get() };
            let result = f(core, &self.gate);
            // A slow path may have made the typed heads' table.
            self.heads.set(core.lists.heads_base());
            result
        });
        self.do_deferred_frees();
        Ok(result)
    }

    /// Frees what re-entrant calls deferred.
    fn do_deferred_frees(&self) {
        while let Some((ptr, layout)) = self.deferred.take() {
            // SAFETY: a block of this heap, freed by its owner while the heap was busy, with
            // the layout it was freed with, or without one.
            unsafe {
                match layout {
                    Some(layout) => self.deallocate_slow(ptr, layout),
                    None => self.deallocate_unsized_slow(ptr),
                }
            }
        }
    }

    // ------------------------------------------------------------------------------------
    // Figures, checks and trimming

    /// The statistics of `sys._debugmallocstats()`, derived by walking the heap now.
    ///
    /// # Panics
    ///
    /// When called re-entrantly (from a panic hook running inside this heap).
    pub fn stats(&self) -> Stats {
        self.enter(|core, gate| {
            core.raw.take_mail(gate);
            let quarantined = core.debug.as_ref().map_or((0, 0), |d| d.quarantined());
            Stats::collect(&core.raw, &core.lists, quarantined, &self.config)
        })
        .unwrap_or_else(|e| reentrant(e))
    }

    /// Verifies every internal invariant of layers 1–3: arena counts and bitmaps, the order
    /// of usable arenas and `nfp2lasta`, the spares budget, each pool's header, free list and
    /// state against the used-pool lists, each layer-3 list's chain and length, and in debug
    /// mode every guard, every quarantined block and every resting slot. O(heap size): for
    /// tests, fuzzing and debugging.
    ///
    /// Returns the first broken invariant, as a message naming the structure and address.
    pub fn check(&self) -> Result<(), String> {
        let leaked = self.deferred.leaked.get();
        if leaked > 0 {
            return Err(format!(
                "{leaked} frees arrived re-entrantly and were leaked"
            ));
        }
        self.enter(|core, _| {
            core.raw.check()?;
            core.lists.check()?;
            match &core.debug {
                Some(debug) => debug.check(&core.lists),
                None => Ok(()),
            }
        })
        .map_err(|e| e.to_string())?
    }

    /// Gives back to the OS everything that can go: empties the layer-3 free lists (their
    /// slots pin pools and arenas, exactly as CPython's float free list does), returns empty
    /// arenas beyond those kept, and hands the pages of every empty pool back to the OS
    /// (`madvise`) even inside arenas that still hold live blocks, which CPython cannot do.
    /// Allocates nothing.
    ///
    /// # Panics
    ///
    /// When called re-entrantly, and in debug mode when a slot or a quarantined block was
    /// written after it was freed.
    pub fn trim(&self) -> TrimReport {
        let result = self.enter(|core, gate| {
            core.raw.take_mail(gate);
            let slots = Self::drain_lists(core, gate)?;
            if let Some(debug) = &mut core.debug {
                debug.flush_quarantine(&mut core.raw)?;
            }
            let (arenas_released, bytes_purged) = core.raw.trim(gate);
            Ok(TrimReport {
                free_list_slots: slots,
                arenas_released,
                bytes_purged,
            })
        });
        match result {
            Ok(Ok(report)) => report,
            Ok(Err(m)) => self.report(m),
            Err(e) => reentrant(e),
        }
    }

    /// Empties every free list into layer 2 (through the debug layer in debug mode).
    fn drain_lists(core: &mut Core, gate: &Gate) -> Result<usize, Misuse> {
        let Core { raw, lists, debug } = core;
        match debug {
            Some(debug) => debug.drain_slots(raw, lists, gate),
            None => Ok(lists.drain_all(raw, gate)),
        }
    }

    // ------------------------------------------------------------------------------------
    // Layer 3

    /// Empties every free list of this heap, freeing the slots to layer 2 (CPython's clearing
    /// of free lists in `gc.collect()`). Returns the number of slots freed. Allocates nothing.
    pub fn clear_free_lists(&self) -> usize {
        match self.enter(Self::drain_lists) {
            Ok(Ok(count)) => count,
            Ok(Err(m)) => self.report(m),
            Err(e) => reentrant(e),
        }
    }

    /// The figures of `T`'s free list in this heap (its declared capacity, and zeros, before
    /// the heap first uses `T`).
    pub fn free_list_stats<T: FreeListed>(&self) -> FreeListStats {
        self.stats_of(T::free_list_id().get(), &const { ListSpec::of::<T>() })
    }

    /// The figures of a keyed free list in this heap.
    pub fn free_list_stats_for(&self, key: &FreeListKey) -> FreeListStats {
        self.stats_of(key.id as usize, &key.spec)
    }

    fn stats_of(&self, id: usize, spec: &ListSpec) -> FreeListStats {
        self.enter(|core, _| core.lists.stats(id, spec))
            .unwrap_or_else(|e| reentrant(e))
    }

    /// Sets how many slots `T`'s free list keeps in this heap (0 turns it off); slots beyond
    /// the new capacity are freed to layer 2. On a heap built with
    /// [`free_lists(false)`](HeapConfig::free_lists) the configuration wins: every list stays
    /// at capacity 0 and this does nothing.
    ///
    /// # Panics
    ///
    /// If `capacity` exceeds [`MAX_FREE_LIST_CAPACITY`](crate::MAX_FREE_LIST_CAPACITY)
    /// (checked before the heap is touched).
    pub fn set_free_list_capacity<T: FreeListed>(&self, capacity: usize) {
        self.set_capacity(
            T::free_list_id().get(),
            &const { ListSpec::of::<T>() },
            capacity,
        );
    }

    /// Sets how many slots a keyed free list keeps in this heap, like
    /// [`set_free_list_capacity`](Self::set_free_list_capacity).
    pub fn set_free_list_capacity_for(&self, key: &FreeListKey, capacity: usize) {
        self.set_capacity(key.id as usize, &key.spec, capacity);
    }

    fn set_capacity(&self, id: usize, spec: &ListSpec, capacity: usize) {
        assert!(
            capacity <= MAX_FREE_LIST_CAPACITY,
            "free-list capacity {capacity} exceeds MAX_FREE_LIST_CAPACITY"
        );
        let capacity = capacity as u32;
        let result = self.enter(|core, gate| {
            let Core { raw, lists, debug } = core;
            match debug {
                Some(debug) => debug.set_capacity(raw, lists, id, spec, capacity, gate),
                None => lists
                    .set_capacity(raw, id, spec, capacity, gate)
                    .map_err(DebugError::from),
            }
        });
        match result {
            // Out of memory for the list table: the capacity stays as it was.
            Ok(Ok(())) | Ok(Err(DebugError::OutOfMemory)) => {}
            Ok(Err(DebugError::Misuse(m))) => self.report(m),
            Err(e) => reentrant(e),
        }
    }

    /// Memory for one value of `key`'s layout: the most recently freed slot of the list, else a
    /// block from layer 2. The memory is uninitialised.
    #[inline]
    pub fn alloc_slot(&self, key: &FreeListKey) -> Result<NonNull<u8>, AllocError> {
        if let Some(slot) = self.pop_keyed_fast(KeyId(key.id), &key.spec) {
            return Ok(slot);
        }
        self.alloc_slot_slow(key)
    }

    /// The keyed miss: straight to layer 2 for a list this heap has made, else the slow path.
    #[cold]
    #[inline(never)]
    fn alloc_slot_slow(&self, key: &FreeListKey) -> Result<NonNull<u8>, AllocError> {
        match self.miss_to_layer2(key.id as usize, key.spec.slot_layout) {
            Some(block) => Ok(block),
            None => self.pop_slot_slow(key.id as usize, &key.spec),
        }
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
        if unsafe { self.push_keyed_fast(KeyId(key.id), &key.spec, slot) } {
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { self.free_slot_slow(key, slot) }
    }

    /// The keyed overflow: straight to layer 2 for a list this heap has made, else the slow
    /// path.
    ///
    /// # Safety
    ///
    /// As [`free_slot`](Self::free_slot).
    #[cold]
    #[inline(never)]
    unsafe fn free_slot_slow(&self, key: &FreeListKey, slot: NonNull<u8>) {
        // SAFETY: forwarded contract.
        if !unsafe { self.overflow_to_layer2(key.id as usize, key.spec.slot_layout, slot) } {
            // SAFETY: forwarded contract.
            unsafe { self.push_slot_slow(key.id as usize, &key.spec, slot) }
        }
    }

    /// The base of this heap's typed list heads, for the typed hit paths ([`head_at`]): the
    /// sentinel until the heap makes its first typed list.
    #[inline(always)]
    pub(crate) fn heads(&self) -> NonNull<ListHead> {
        self.heads.get()
    }

    /// The typed pop: the hit path is an offset load and a list pop, with no gate test (see
    /// [`free_list`](crate::free_list)); a miss goes to the slow path.
    #[inline(always)]
    pub(crate) fn pop_typed(
        &self,
        id: &'static FreeListId,
        spec: &ListSpec,
    ) -> Result<NonNull<u8>, AllocError> {
        // SAFETY: this heap's heads base, and a type's offset.
        let head = unsafe { head_at(self.heads(), id.offset()) };
        match head.pop(spec.slot_layout.size()) {
            Some(slot) => Ok(slot),
            None => self.pop_typed_slow(id, spec),
        }
    }

    /// The typed miss, out of line (with the id's assignment), so the hit path falls through.
    /// A list this heap has made goes straight to layer 2's fast path, as a CPython free-list
    /// miss calls `PyObject_Malloc`; the rest (a list to make, a closed gate, the debug mode)
    /// takes the slow path.
    #[cold]
    #[inline(never)]
    pub(crate) fn pop_typed_slow(
        &self,
        id: &'static FreeListId,
        spec: &ListSpec,
    ) -> Result<NonNull<u8>, AllocError> {
        if let Some(block) = self.miss_to_layer2(id.get(), spec.slot_layout) {
            return Ok(block);
        }
        self.pop_slot_slow(id.get(), spec)
    }

    /// The typed push: the hit path is an offset load and a list push; a full list (or one
    /// not created) goes to the slow path.
    ///
    /// # Safety
    ///
    /// `slot` came from `pop_typed` of this heap with the same id and spec, and holds no live
    /// value.
    #[inline(always)]
    pub(crate) unsafe fn push_typed(
        &self,
        id: &'static FreeListId,
        spec: &ListSpec,
        slot: NonNull<u8>,
    ) {
        // SAFETY: this heap's heads base, and a type's offset.
        let head = unsafe { head_at(self.heads(), id.offset()) };
        // SAFETY: the caller's contract: a dead slot of this list's layout, of this heap.
        if unsafe { head.try_push(slot, spec.slot_layout.size()) } {
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { self.push_typed_slow(id, spec, slot) }
    }

    /// The typed overflow, out of line (with the id's assignment): a full list this heap has
    /// made frees the slot straight to layer 2's fast path (see
    /// [`overflow_to_layer2`](Self::overflow_to_layer2)), the rest takes the slow path.
    ///
    /// # Safety
    ///
    /// As [`push_typed`](Self::push_typed).
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn push_typed_slow(
        &self,
        id: &'static FreeListId,
        spec: &ListSpec,
        slot: NonNull<u8>,
    ) {
        // SAFETY: forwarded contract.
        if unsafe { self.overflow_to_layer2(id.get(), spec.slot_layout, slot) } {
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { self.push_slot_slow(id.get(), spec, slot) }
    }

    /// The keyed hit path's pop: a gate test (the keyed table lives in the core, and moves
    /// when it grows), a look at the key's home entry, and a list pop.
    #[inline(always)]
    fn pop_keyed_fast(&self, id: KeyId, spec: &ListSpec) -> Option<NonNull<u8>> {
        if !self.gate.fast_paths_open() {
            return None;
        }
        // SAFETY: the gate is open; a list pop calls nothing out and cannot panic.
        let lists = unsafe { &self.core_fast().lists };
        lists.keyed_head(id)?.pop(spec.slot_layout.size())
    }

    /// The keyed hit path's push: pushes when the gate is open and the list has room.
    ///
    /// # Safety
    ///
    /// As [`free_slot`](Self::free_slot).
    #[inline(always)]
    unsafe fn push_keyed_fast(&self, id: KeyId, spec: &ListSpec, slot: NonNull<u8>) -> bool {
        if !self.gate.fast_paths_open() {
            return false;
        }
        // SAFETY: the gate is open; a list push calls nothing out and cannot panic.
        let lists = unsafe { &self.core_fast().lists };
        match lists.keyed_head(id) {
            // SAFETY: the caller's contract: a dead slot of the key's layout, of this heap.
            Some(head) => unsafe { head.try_push(slot, spec.slot_layout.size()) },
            None => false,
        }
    }

    /// A miss of list `id` (assigned) that this heap has made goes straight to layer 2's fast
    /// path, as a CPython free-list miss calls `PyObject_Malloc`: `None` sends the rest (a
    /// list to make, a closed gate, the debug mode, a large slot) to the slow path.
    #[inline(always)]
    fn miss_to_layer2(&self, id: usize, layout: Layout) -> Option<NonNull<u8>> {
        if !self.takes_fast_path(layout) {
            return None;
        }
        // SAFETY: the fast-path test passed, so the gate is open; `alloc_block` calls out only
        // through the gate and does not panic.
        let core = unsafe { self.core_fast() };
        let list = core.lists.created_mut(id)?;
        let block = core.raw.alloc_block(class_of(layout.size()), &self.gate)?;
        if list.record_miss() {
            core.lists.reopen(id);
        }
        Some(block)
    }

    /// An overflow of list `id` (assigned) that this heap has made frees the slot straight to
    /// layer 2's fast path, when the slot is this heap's own (a thread heap's list may hold
    /// another heap's: the slow path sends it home). Returns whether it did.
    ///
    /// # Safety
    ///
    /// `slot` is a live slot of list `id`'s `layout` from some heap of this geometry, holding
    /// nothing live.
    #[inline(always)]
    unsafe fn overflow_to_layer2(&self, id: usize, layout: Layout, slot: NonNull<u8>) -> bool {
        if !self.takes_fast_path(layout) {
            return false;
        }
        // SAFETY: the fast-path test passed, so the gate is open; `free_block` calls out only
        // through the gate and does not panic.
        let core = unsafe { self.core_fast() };
        let Some(list) = core.lists.created_mut(id) else {
            return false;
        };
        // SAFETY: a live slot of a small layout: a pool block.
        if !unsafe { core.raw.owns_pool_block(slot) } {
            return false;
        }
        list.record_overflow();
        // SAFETY: a live pool block of this heap, holding nothing live.
        unsafe { core.raw.free_block(slot, &self.gate) };
        // A slow path of layer 3: the heap may be shrinking under idle lists.
        core.lists.tend(&mut core.raw, &self.gate);
        true
    }

    #[cold]
    #[inline(never)]
    pub(crate) fn pop_slot_slow(
        &self,
        id: usize,
        spec: &ListSpec,
    ) -> Result<NonNull<u8>, AllocError> {
        let result = self.enter(|core, gate| {
            let Core { raw, lists, debug } = core;
            match debug {
                Some(debug) => debug.pop_slot(raw, lists, id, spec, gate),
                None => lists
                    .pop_or_allocate(raw, id, spec, gate)
                    .map_err(DebugError::from),
            }
        });
        self.allocation(result)
    }

    /// # Safety
    ///
    /// `slot` came from a pop of this heap's list `id` (of `spec`), and holds no live value.
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn push_slot_slow(&self, id: usize, spec: &ListSpec, slot: NonNull<u8>) {
        let result = self.enter(|core, gate| {
            let Core { raw, lists, debug } = core;
            match debug {
                Some(debug) => debug.push_slot(raw, lists, id, spec, slot, gate),
                None => {
                    // SAFETY: the caller's contract: a block of this heap with the slot layout.
                    unsafe { lists.push_or_free(raw, id, spec, slot, gate) };
                    Ok(())
                }
            }
        });
        match result {
            Ok(Ok(())) | Ok(Err(DebugError::OutOfMemory)) => {}
            Ok(Err(DebugError::Misuse(m))) => self.report(m),
            Err(Reentrant) => self.deferred.push(slot, Some(spec.slot_layout)),
        }
    }

    // ------------------------------------------------------------------------------------
    // Layers 0-2: routing by layout

    /// Whether a request takes the pool fast path: non-zero, small, the gate open and the
    /// heap not in debug mode (one comparison covers all four, see [`Gate`]).
    #[inline(always)]
    pub(crate) fn takes_fast_path(&self, layout: Layout) -> bool {
        layout.size().wrapping_sub(1) < self.gate.fast_limit() && layout.align() <= ALIGNMENT
    }

    /// Where [`used_pools`](Self::used_pools) lies in a heap (an `UnsafeCell` is laid out as
    /// what it holds).
    pub(crate) const USED_POOLS_OFFSET: usize = core::mem::offset_of!(Heap, core)
        + core::mem::offset_of!(Core, raw)
        + RawHeap::USED_POOLS_OFFSET;

    /// The table `Global`'s fast paths read (see [`UsedPools`]), by address: fixed once the
    /// heap stays in place (as a registered thread heap does). Read through it only while the gate is open, on the thread using the heap,
    /// calling nothing out and not panicking (as a fast path borrows the core).
    pub(crate) fn used_pools(&self) -> *const UsedPools {
        // SAFETY: the core lives as long as `self`; no reference to it is made.
        unsafe { RawHeap::used_pools(&raw const (*self.core.get()).raw) }
    }

    /// Finishes a free that `Global`'s fast path began on this heap's table
    /// ([`Freed::Finish`](crate::raw::Freed::Finish)).
    ///
    /// # Safety
    ///
    /// The gate is open, and [`UsedPools::try_free`] on this heap's table returned
    /// `Finish(pool)` just now on this thread, with nothing run on the heap since.
    #[inline(never)]
    pub(crate) unsafe fn finish_free(&self, pool: Pool) {
        // SAFETY: the caller's contract: the gate is open; `finish_free` calls out only
        // through the gate and does not panic.
        unsafe { self.core_fast().raw.finish_free(pool, &self.gate) }
    }

    #[cold]
    #[inline(never)]
    fn allocate_slow(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let result = self.enter(|core, gate| match &mut core.debug {
            Some(debug) => debug.allocate(&mut core.raw, layout, gate),
            None => core.raw.allocate(layout, gate).map_err(DebugError::from),
        });
        self.allocation(result)
    }

    /// # Safety
    ///
    /// As [`Allocator::deallocate`].
    #[cold]
    #[inline(never)]
    unsafe fn deallocate_slow(&self, ptr: NonNull<u8>, layout: Layout) {
        let result = self.enter(|core, gate| match &mut core.debug {
            Some(debug) => debug.deallocate(&mut core.raw, ptr, layout, gate),
            None => {
                // SAFETY: the caller's contract: a live block of this heap that `layout` fits.
                unsafe { core.raw.deallocate(ptr, layout, gate) };
                Ok(())
            }
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(m)) => self.report(m),
            Err(Reentrant) => self.deferred.push(ptr, Some(layout)),
        }
    }

    /// # Safety
    ///
    /// As [`Allocator::grow`].
    unsafe fn reallocate(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        let result = self.enter(|core, gate| match &mut core.debug {
            Some(debug) => debug.reallocate(&mut core.raw, ptr, old, new, gate),
            // SAFETY: the caller's contract: a live block of this heap that `old` fits.
            None => unsafe { core.raw.reallocate(ptr, old, new, gate) }.map_err(DebugError::from),
        });
        self.allocation(result)
    }
}

/// Without a size: the interface of C's `malloc`/`free` and of CPython's `PyMemAllocatorEx`.
///
/// A block of at most 512 bytes comes from a pool; a larger one is the system allocator's own
/// `malloc` block, as in CPython, and like CPython's it is neither counted in
/// [`Stats::large_allocations`] nor held to [`HeapConfig::memory_limit`] (a heap cannot tell
/// it from a block that was never its own). A pointer the heap does not own, whoever allocated
/// it, is passed to the system allocator: [`Heap::owns`] decides, from the arena map alone.
///
/// ```
/// use pyalloc::Heap;
///
/// let heap = Heap::new();
/// let p = heap.allocate_unsized(40).unwrap();
/// assert!(heap.owns(p.as_ptr()));
/// // SAFETY: `p` is a live block of this heap, used by nothing else.
/// unsafe {
///     assert_eq!(heap.usable_size(p), 48);
///     let q = heap.reallocate_unsized(Some(p), 44).unwrap();
///     assert_eq!(q, p, "44 of 48 bytes stay used: in place");
///     heap.deallocate_unsized(q);
/// }
/// let stack = 0u64;
/// assert!(!heap.owns(std::ptr::from_ref(&stack).cast()));
/// ```
impl Heap {
    /// Whether `ptr` lies in one of this heap's arenas. Safe for any pointer, including ones
    /// never allocated by pyalloc: it reads only the heap's arena map (a radix map with a byte
    /// per arena-sized slot of the address space), never the memory `ptr` points to.
    ///
    /// # Panics
    ///
    /// When called re-entrantly (from a panic hook running inside this heap).
    #[inline]
    pub fn owns(&self, ptr: *const u8) -> bool {
        if self.gate.is_closed() {
            reentrant(Reentrant)
        }
        // SAFETY: the gate is open; reading the map calls nothing out and cannot panic.
        unsafe { self.core_fast() }.raw.owns(ptr)
    }

    /// Memory for `size` bytes, aligned to 16, without a layout; `size` 0 gives a distinct
    /// pointer (a 1-byte request), as CPython's allocators must.
    #[inline]
    pub fn allocate_unsized(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        match self.try_allocate_unsized(size) {
            Some(block) => Ok(block),
            None => self.allocate_unsized_slow(size),
        }
    }

    /// The fast path of [`allocate_unsized`](Self::allocate_unsized) alone: a block of `size`
    /// bytes (1 to 512) when the heap can hand one out without calling anything (a block of
    /// the size class's current pool, popped or carved); `None` otherwise (another size, the
    /// pool needs replacing, debug mode, a call from inside the heap), having changed nothing.
    ///
    /// For a caller that wraps the heap in a function of its own, such as a C allocator's
    /// `malloc`: with this inlined and `allocate_unsized` in a second function it calls only on
    /// `None`, the common case makes no call and saves no registers (pyalloc-python's adapter).
    ///
    /// ```
    /// let heap = pyalloc::Heap::new();
    /// let p = match heap.try_allocate_unsized(40) {
    ///     Some(p) => p,
    ///     None => heap.allocate_unsized(40).unwrap(),
    /// };
    /// // SAFETY: a live block of this heap, used by nothing else.
    /// unsafe { heap.deallocate_unsized(p) };
    /// ```
    #[inline(always)]
    pub fn try_allocate_unsized(&self, size: usize) -> Option<NonNull<u8>> {
        if size.wrapping_sub(1) < self.gate.fast_limit() {
            // SAFETY: the fast-path test passed, so the gate is open and the heap not in debug
            // mode; `try_alloc_block_unsized` calls nothing and does not panic.
            let core = unsafe { self.core_fast() };
            return core.raw.try_alloc_block_unsized(class_of(size));
        }
        None
    }

    /// As [`allocate_unsized`](Self::allocate_unsized), zeroed.
    pub fn allocate_zeroed_unsized(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        let block = self.allocate_unsized(size)?;
        // SAFETY: a fresh block of at least `size` bytes.
        unsafe { block.as_ptr().write_bytes(0, size) };
        Ok(block)
    }

    #[cold]
    #[inline(never)]
    fn allocate_unsized_slow(&self, size: usize) -> Result<NonNull<u8>, AllocError> {
        if self.gate.fast_paths_open() {
            if size > SMALL_REQUEST_THRESHOLD {
                // A large block is the system allocator's and touches nothing of the heap (it
                // is neither counted nor held to the limit, see above): no need to enter.
                // SAFETY: `malloc` has no preconditions; it returns null or `size` bytes,
                // aligned to 16 on the 64-bit platforms pyalloc supports.
                return NonNull::new(unsafe { libc::malloc(size) }.cast()).ok_or(AllocError);
            }
            // A small (or zero-byte: one-byte) request whose class needs a pool from an arena.
            // SAFETY: the gate is open and the heap not in debug mode; `alloc_block` calls out
            // only through the gate and does not panic.
            let core = unsafe { self.core_fast() };
            return core
                .raw
                .alloc_block(class_of(size.max(1)), &self.gate)
                .ok_or(AllocError);
        }
        let result = self.enter(|core, gate| match &mut core.debug {
            Some(debug) => {
                let layout = Layout::from_size_align(size.max(1), ALIGNMENT)
                    .map_err(|_| DebugError::OutOfMemory)?;
                debug
                    .allocate(&mut core.raw, layout, gate)
                    .map(|b| b.cast())
            }
            None => core
                .raw
                .allocate_unsized(size, gate)
                .ok_or(DebugError::OutOfMemory),
        });
        self.allocation(result)
    }

    /// Frees a block without its size: a block of this heap goes back to its pool, any other
    /// pointer to the system allocator (`free`).
    ///
    /// # Safety
    ///
    /// `ptr` is a live block of this heap from the unsized API, or a live block of the system
    /// allocator (`malloc`), and is not used afterwards. In debug mode a pointer into this
    /// heap's arenas that is not a live block is reported.
    #[inline]
    pub unsafe fn deallocate_unsized(&self, ptr: NonNull<u8>) {
        if self.gate.fast_paths_open() {
            // SAFETY: the gate is open; `owns` and `free_block` call out only through the gate
            // and do not panic.
            let core = unsafe { self.core_fast() };
            if core.raw.owns(ptr.as_ptr()) {
                // SAFETY: a live block in our arenas (the caller's contract): a pool block.
                unsafe { core.raw.free_block(ptr, &self.gate) };
            } else {
                // SAFETY: not ours, so a live `malloc` block (the caller's contract).
                unsafe { sys::free(ptr.as_ptr()) };
            }
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { self.deallocate_unsized_slow(ptr) }
    }

    /// The fast path of [`deallocate_unsized`](Self::deallocate_unsized) alone: frees `ptr` if
    /// it is a block of this heap, and returns whether it did. Its common case (a push, and
    /// the return of a full pool to its list) makes no call; a free that empties a pool other
    /// than the cached one ends in a call that gives the pool back. `false` (for null, for
    /// every pointer the heap does not own, in debug mode and for a call from inside the heap)
    /// changes nothing: the caller then calls `deallocate_unsized` (or nothing, for null). The
    /// counterpart of [`try_allocate_unsized`](Self::try_allocate_unsized).
    ///
    /// # Safety
    ///
    /// `ptr` is null or as for [`deallocate_unsized`](Self::deallocate_unsized); when this
    /// returns `true` it is not used afterwards.
    #[inline(always)]
    pub unsafe fn try_deallocate_unsized(&self, ptr: *mut u8) -> bool {
        if !self.gate.fast_paths_open() {
            return false;
        }
        // SAFETY: the gate is open and the heap not in debug mode; `try_free_block_unsized`
        // calls nothing and does not panic.
        let core = unsafe { self.core_fast() };
        // SAFETY: forwarded contract.
        match unsafe { core.raw.try_free_block_unsized(ptr) } {
            crate::raw::Freed::Done => true,
            crate::raw::Freed::NotMine => false,
            crate::raw::Freed::Finish(_) => {
                // SAFETY: `ptr` was just pushed into its pool, which emptied.
                unsafe { self.finish_free_unsized(ptr) };
                true
            }
        }
    }

    /// The rest of a size-less free that emptied a pool other than the cached one: the pool is
    /// cached or goes back to its arena. An `extern "C"` function, through which nothing
    /// unwinds (a panic in it aborts; it has none outside debug assertions), so that the call
    /// is a plain call, which in tail position is a jump: a call that may unwind is an `invoke`
    /// whose landing pad keeps the caller's stack frame. It takes what a C allocator's `free`
    /// was given, the heap and the pointer, in the registers they came in: that `free`, with
    /// [`try_deallocate_unsized`](Self::try_deallocate_unsized) inlined, then needs no frame
    /// and no register moves on any path.
    ///
    /// # Safety
    ///
    /// `ptr` was just freed by `try_free_block_unsized`, which returned `Finish`, and nothing
    /// ran on the heap since.
    #[cold]
    #[inline(never)]
    unsafe extern "C" fn finish_free_unsized(&self, ptr: *mut u8) {
        // SAFETY: the caller's contract: the gate is still open (the fast path was taken and
        // nothing ran since); `finish_free` calls out only through the gate and does not
        // panic.
        let core = unsafe { self.core_fast() };
        // SAFETY: a free block of a pool in use of this heap, which it just emptied: its pool,
        // and `finish_free`'s contract.
        unsafe {
            let pool = core.raw.pool_of(NonNull::new_unchecked(ptr));
            core.raw.finish_free(pool, &self.gate);
        }
    }

    /// # Safety
    ///
    /// As [`deallocate_unsized`](Self::deallocate_unsized).
    #[cold]
    #[inline(never)]
    unsafe fn deallocate_unsized_slow(&self, ptr: NonNull<u8>) {
        let result = self.enter(|core, gate| match &mut core.debug {
            Some(debug) => match debug.layout_of(&core.raw, ptr)? {
                Some(layout) => debug.deallocate(&mut core.raw, ptr, layout, gate),
                None => {
                    // SAFETY: not ours, so a live `malloc` block (the caller's contract).
                    unsafe { sys::free(ptr.as_ptr()) };
                    Ok(())
                }
            },
            None => {
                // SAFETY: forwarded contract.
                unsafe { core.raw.deallocate_unsized(ptr, gate) };
                Ok(())
            }
        });
        match result {
            Ok(Ok(())) => {}
            Ok(Err(m)) => self.report(m),
            Err(Reentrant) => self.deferred.push(ptr, None),
        }
    }

    /// Resizes a block without its old size, by CPython's rules: `None` is a fresh allocation;
    /// a block of this heap stays in place when the new size fits it and at least three
    /// quarters of it stays used, and moves otherwise; any other pointer is `realloc`ed by the
    /// system allocator. On failure the old block is untouched and still live.
    ///
    /// # Safety
    ///
    /// As [`deallocate_unsized`](Self::deallocate_unsized) for a `Some` pointer.
    pub unsafe fn reallocate_unsized(
        &self,
        ptr: Option<NonNull<u8>>,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let Some(ptr) = ptr else {
            return self.allocate_unsized(new_size);
        };
        if self.gate.fast_paths_open() {
            // SAFETY: the gate is open and the heap not in debug mode; the raw heap calls out
            // only through the gate (or to the system allocator, which does not re-enter this
            // heap) and does not panic; the caller's contract is `reallocate_unsized`'s.
            let core = unsafe { self.core_fast() };
            // SAFETY: forwarded contract.
            return unsafe { core.raw.reallocate_unsized(ptr, new_size, &self.gate) }
                .ok_or(AllocError);
        }
        // SAFETY: forwarded contract.
        unsafe { self.reallocate_unsized_slow(ptr, new_size) }
    }

    /// # Safety
    ///
    /// As [`reallocate_unsized`](Self::reallocate_unsized), with a pointer.
    #[cold]
    #[inline(never)]
    unsafe fn reallocate_unsized_slow(
        &self,
        ptr: NonNull<u8>,
        new_size: usize,
    ) -> Result<NonNull<u8>, AllocError> {
        let result = self.enter(|core, gate| match &mut core.debug {
            Some(debug) => match debug.layout_of(&core.raw, ptr)? {
                Some(old) => {
                    let new = Layout::from_size_align(new_size.max(1), ALIGNMENT)
                        .map_err(|_| DebugError::OutOfMemory)?;
                    debug
                        .reallocate(&mut core.raw, ptr, old, new, gate)
                        .map(|b| b.cast())
                }
                None => {
                    // SAFETY: not ours, so a live `malloc` block (the caller's contract).
                    let moved = unsafe { sys::realloc(ptr.as_ptr(), new_size.max(1)) };
                    NonNull::new(moved.cast()).ok_or(DebugError::OutOfMemory)
                }
            },
            // SAFETY: forwarded contract.
            None => unsafe { core.raw.reallocate_unsized(ptr, new_size, gate) }
                .ok_or(DebugError::OutOfMemory),
        });
        self.allocation(result)
    }

    /// The bytes usable at a live block: at least what was asked for it. For a pool block its
    /// class's block size (the requested size in debug mode), for anything else what the system
    /// allocator says (`malloc_usable_size`).
    ///
    /// # Safety
    ///
    /// As [`deallocate_unsized`](Self::deallocate_unsized), except that the block stays live.
    pub unsafe fn usable_size(&self, ptr: NonNull<u8>) -> usize {
        let result = self.enter(|core, _| match &core.debug {
            Some(debug) => match debug.layout_of(&core.raw, ptr)? {
                Some(layout) => Ok(layout.size()),
                // SAFETY: not ours, so a live `malloc` block (the caller's contract).
                None => Ok(unsafe { sys::malloc_usable_size(ptr.as_ptr()) }),
            },
            // SAFETY: forwarded contract.
            None => Ok(unsafe { core.raw.usable_size(ptr) }),
        });
        match result {
            Ok(Ok(size)) => size,
            Ok(Err(m)) => self.report(m),
            Err(e) => reentrant(e),
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
        if self.takes_fast_path(layout) {
            let class = class_of(layout.size());
            // SAFETY: the fast-path test passed, so the gate is open; `alloc_block` calls out
            // only through the gate and does not panic.
            let core = unsafe { self.core_fast() };
            return match core.raw.alloc_block(class, &self.gate) {
                Some(block) => Ok(slice(block, block_size(class))),
                None => Err(AllocError),
            };
        }
        self.allocate_slow(layout)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let block = self.allocate(layout)?;
        // SAFETY: `block` is freshly allocated, writable for its whole length.
        unsafe { block.cast::<u8>().as_ptr().write_bytes(0, block.len()) };
        Ok(block)
    }

    #[inline(always)]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if self.takes_fast_path(layout) {
            // SAFETY: the fast-path test passed, so the gate is open; the caller guarantees
            // `ptr` is a live block of this heap that `layout` fits, which a non-zero small
            // layout routes to a pool; `free_block` calls out only through the gate.
            unsafe { self.core_fast().raw.free_block(ptr, &self.gate) }
        } else {
            // SAFETY: forwarded contract.
            unsafe { self.deallocate_slow(ptr, layout) }
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        debug_assert!(new_layout.size() >= old_layout.size());
        // SAFETY: forwarded contract.
        unsafe { self.reallocate(ptr, old_layout, new_layout) }
    }

    unsafe fn grow_zeroed(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded contract.
        let block = unsafe { self.reallocate(ptr, old_layout, new_layout) }?;
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
        unsafe { self.reallocate(ptr, old_layout, new_layout) }
    }
}

impl Drop for Heap {
    fn drop(&mut self) {
        // Free-list slots may be system blocks (large or over-aligned types): free them first.
        // Arenas go back to the OS when the raw heap drops. Nothing here allocates.
        self.do_deferred_frees();
        let gate = &self.gate;
        let Core { raw, lists, debug } = self.core.get_mut();
        match debug {
            // Resting slots are live debug blocks: the leftovers include them.
            Some(debug) => debug.release_leftovers(raw),
            None => {
                lists.drain_all(raw, gate);
            }
        }
    }
}
