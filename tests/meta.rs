//! The heap's own bookkeeping never goes through `#[global_allocator]`.
//!
//! A heap that serves as (part of) the global allocator cannot take memory for its arena table,
//! its arena map, its free lists or its debug records from the global allocator: it would
//! re-enter itself while busy. So the core allocates every structure of its own from the system
//! allocator, by type (`pyalloc-core/src/meta.rs`). This binary installs a global allocator that
//! counts the calls made while a workload runs, and holds the heap to zero of them: heaps built,
//! driven through every layer (many arenas, the table and the map growing, typed and keyed free
//! lists, capacities changed, trim, the debug mode's records and quarantine) and dropped.
//! `stats()` and `check()` are left out (called between watches): what they return is the
//! caller's to own.

// This binary installs a counting global allocator of its own: not with the facade's `test-global-allocator`.
#![cfg(not(feature = "test-global-allocator"))]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr::NonNull;

use pyalloc::{
    Allocator, FailingSource, FreeListKey, FreeListed, Heap, HeapConfig, Pooled, Stats,
    SystemSource, Vec,
};

/// The system allocator, counting the calls made on a thread while it is watched.
struct Counting;

thread_local! {
    /// Whether this thread's calls are counted now.
    static WATCHED: Cell<bool> = const { Cell::new(false) };
    /// Calls counted on this thread.
    static CALLS: Cell<usize> = const { Cell::new(0) };
    /// The size of the first call counted, to name it in the failure.
    static FIRST: Cell<Option<(&'static str, usize)>> = const { Cell::new(None) };
}

impl Counting {
    /// Counts one call, if this thread is watched. Thread locals with a `const` initialiser and
    /// no destructor are plain TLS slots: reading them allocates nothing.
    fn note(what: &'static str, size: usize) {
        if WATCHED.with(Cell::get) {
            CALLS.with(|c| c.set(c.get() + 1));
            if FIRST.with(Cell::get).is_none() {
                FIRST.with(|f| f.set(Some((what, size))));
            }
        }
    }
}

// SAFETY: every call is forwarded to `System` unchanged; counting touches only thread locals.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::note("alloc", layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Self::note("alloc_zeroed", layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        Self::note("realloc", new_size);
        // SAFETY: forwarded contract.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        Self::note("dealloc", layout.size());
        // SAFETY: forwarded contract.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// Runs `f` watched, and panics (after the watch) if it called the global allocator.
fn assert_no_global_allocation<R>(what: &str, f: impl FnOnce() -> R) -> R {
    /// Ends the watch however `f` ends, so a panic's own allocations are not counted.
    struct Unwatch;
    impl Drop for Unwatch {
        fn drop(&mut self) {
            WATCHED.with(|w| w.set(false));
        }
    }
    CALLS.with(|c| c.set(0));
    FIRST.with(|f| f.set(None));
    WATCHED.with(|w| w.set(true));
    let unwatch = Unwatch;
    let result = f();
    drop(unwatch);
    let calls = CALLS.with(Cell::get);
    assert_eq!(
        calls,
        0,
        "{what}: {calls} calls to the global allocator, the first {:?}",
        FIRST.with(Cell::get)
    );
    result
}

/// Blocks a workload allocates: fewer under Miri, fewer still in debug mode, where every
/// block's bytes are checked one by one (and Miri is slow at that).
fn blocks(debug: bool) -> usize {
    match (cfg!(miri), debug) {
        (false, _) => 20_000,
        (true, false) => 400,
        (true, true) => 100,
    }
}

#[derive(FreeListed)]
#[free_list(capacity = 100)]
struct Float(f64);

#[derive(FreeListed)]
#[free_list(capacity = 8)]
struct Record([u64; 12]);

#[derive(FreeListed)]
struct Buffer([u8; 400]);

/// Small pools in small arenas: many arenas, so the arena table and the arena map grow.
fn small_arenas() -> HeapConfig {
    HeapConfig::new().pool_size(4 << 10).arena_size(16 << 10)
}

/// Every layer of `heap`, `n` small blocks' worth, with nothing held by the test outside the
/// heap (its own vectors live in the heap too).
fn workload(heap: &Heap, n: usize) {
    // Layers 1 and 2: blocks of every small class, then half freed, some resized, refilled.
    let mut blocks: Vec<(NonNull<u8>, Layout), &Heap> = Vec::new_in(heap);
    for i in 0..n {
        let layout = Layout::from_size_align(1 + i % 512, 1 << (i % 4)).unwrap();
        blocks.push((heap.allocate(layout).unwrap().cast(), layout));
    }
    let mut i = 0;
    blocks.retain(|&(ptr, layout)| {
        i += 1;
        if i % 2 == 0 {
            // SAFETY: allocated above with this layout, and dropped from the vector.
            unsafe { heap.deallocate(ptr, layout) };
        }
        i % 2 != 0
    });
    for (k, (ptr, layout)) in blocks.iter_mut().enumerate().filter(|(k, _)| k % 5 == 0) {
        let new = Layout::from_size_align(layout.size() * 2 + 8, layout.align()).unwrap();
        // SAFETY: a live block of this heap with `layout`; grown (a move, some of them into
        // the large range), then recorded with its new layout.
        *ptr = unsafe { heap.grow(*ptr, *layout, new) }.unwrap().cast();
        *layout = new;
        if k % 10 == 0 {
            let small = Layout::from_size_align(8, layout.align()).unwrap();
            // SAFETY: as above.
            *ptr = unsafe { heap.shrink(*ptr, *layout, small) }.unwrap().cast();
            *layout = small;
        }
    }
    for i in 0..n / 4 {
        let layout = Layout::from_size_align(16 + i % 300, 8).unwrap();
        blocks.push((heap.allocate_zeroed(layout).unwrap().cast(), layout));
    }

    // Large blocks (through the debug layer's records and quarantine in debug mode): natively
    // more than the quarantine holds, so it evicts and wraps; under Miri a few (the debug
    // mode's byte checks of each cost a tenth of a second there).
    for i in 0..if cfg!(miri) { 10 } else { 200 } {
        let layout = Layout::from_size_align(520 + i * 8, 16).unwrap();
        blocks.push((heap.allocate(layout).unwrap().cast(), layout));
    }
    let unsized_block = heap.allocate_unsized(100).unwrap();
    assert!(heap.owns(unsized_block.as_ptr()));

    // Layer 3: typed lists of three types, filled past capacity, drained and refilled.
    let m = n / 10;
    let mut floats: Vec<Pooled<'_, Float>, &Heap> = Vec::new_in(heap);
    let mut records: Vec<Pooled<'_, Record>, &Heap> = Vec::new_in(heap);
    let mut buffers: Vec<Pooled<'_, Buffer>, &Heap> = Vec::new_in(heap);
    for round in 0..3 {
        for i in 0..m {
            floats.push(Pooled::new_in(Float(i as f64), heap));
            records.push(Pooled::new_in(Record([i as u64; 12]), heap));
            if i % 4 == round {
                buffers.push(Pooled::new_in(Buffer([i as u8; 400]), heap));
            }
        }
        let floats_sum: f64 = floats.iter().map(|f| f.0).sum();
        let records_sum: u64 = records.iter().map(|r| r.0[11]).sum();
        let buffers_sum: u64 = buffers.iter().map(|b| u64::from(b.0[399])).sum();
        std::hint::black_box((floats_sum, records_sum, buffers_sum));
        floats.clear();
        records.truncate(m / 3);
        buffers.clear();
    }
    heap.set_free_list_capacity::<Float>(10);
    heap.set_free_list_capacity::<Record>(500);
    records.clear();
    let _ = heap.free_list_stats::<Record>();

    // Keyed lists: two keys of one layout are two lists.
    let pairs = FreeListKey::new("2-tuple", Layout::new::<[u64; 3]>(), 50);
    let triples = FreeListKey::new("3-tuple", Layout::new::<[u64; 3]>(), 20);
    let mut slots: Vec<(NonNull<u8>, &FreeListKey), &Heap> = Vec::new_in(heap);
    for i in 0..m {
        let key = if i % 3 == 0 { &triples } else { &pairs };
        slots.push((heap.alloc_slot(key).unwrap(), key));
    }
    for (slot, key) in slots.drain(..) {
        // SAFETY: from `alloc_slot` of this heap with this key, holding no value.
        unsafe { heap.free_slot(key, slot) };
    }
    heap.set_free_list_capacity_for(&pairs, 5);
    let _ = heap.free_list_stats_for(&pairs);

    // Everything back, then trimmed.
    for (ptr, layout) in blocks.drain(..) {
        // SAFETY: each is a live block of this heap with this layout.
        unsafe { heap.deallocate(ptr, layout) };
    }
    // SAFETY: from `allocate_unsized` of this heap.
    unsafe { heap.deallocate_unsized(unsized_block) };
    drop((blocks, floats, records, buffers, slots));
    let _ = heap.trim();
    let _ = heap.clear_free_lists();
    let _ = heap.trim();
}

/// Builds a heap with `make`, runs the workload on it `runs` times and drops it, all watched;
/// returns the heap's figures, taken between the watches (`stats()` is the caller's to own).
fn watched_heap(what: &str, make: impl FnOnce() -> Heap, runs: usize, n: usize) -> Stats {
    let heap = assert_no_global_allocation(what, || {
        let heap = make();
        for _ in 0..runs {
            workload(&heap, n);
        }
        heap
    });
    let stats = heap.stats();
    assert_no_global_allocation(what, || drop(heap));
    stats
}

#[test]
fn a_heap_of_many_small_arenas_allocates_nothing_globally() {
    let make = || Heap::with_config(small_arenas()).unwrap();
    let stats = watched_heap("small arenas", make, 1, blocks(false));
    // The arena table grew more than once, and the map made a leaf.
    assert!(stats.arenas_highwater() > 4, "{}", stats.arenas_highwater());
    assert!(stats.arena_map().1 >= 1);
}

#[test]
fn a_default_heap_allocates_nothing_globally() {
    watched_heap("default heap", Heap::new, 2, blocks(false));
}

#[test]
fn a_debug_heap_allocates_nothing_globally() {
    let make = || Heap::with_config(small_arenas().debug(true)).unwrap();
    watched_heap("debug heap", make, 1, blocks(true));
}

#[test]
fn a_heap_with_a_source_of_its_own_allocates_nothing_globally() {
    // A source with state, so boxing it takes memory: the core's business too.
    let make = || {
        let source = FailingSource::new(SystemSource, usize::MAX);
        Heap::with_source(small_arenas().empty_arenas_kept(0), source).unwrap()
    };
    watched_heap("own source", make, 1, blocks(false));
}

#[test]
fn the_watch_sees_the_global_allocator() {
    // The counter is live: a std `Box` inside the watch is seen.
    let seen = std::panic::catch_unwind(|| {
        assert_no_global_allocation("std box", || drop(std::hint::black_box(Box::new(1u64))));
    });
    assert!(seen.is_err());
}
