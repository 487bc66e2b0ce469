//! The release policy: CPython's immediate release against a decay, stepped with a
//! [`ManualClock`] so that no test sleeps. Every step ends with `Heap::check`, which verifies
//! the decay's own invariants (deadlines, the budget of settled empty arenas).

#![cfg(unix)]

use std::time::Duration;

use pyalloc::{Box, Heap, HeapConfig, ManualClock, MmapSource, Release, Vec};
use pyalloc_testkit::{Counters, CountingSource};

const DELAY: Duration = Duration::from_millis(100);

/// 64 KiB arenas of 4 KiB pools (16 pools, 240 blocks of 256 bytes per arena), `kept` spares,
/// on a manual clock; the counters of the mmap source underneath.
fn heap(release: Release, kept: usize) -> (Heap, ManualClock, std::sync::Arc<Counters>) {
    let clock = ManualClock::new();
    let source = CountingSource::wrapping(MmapSource::new());
    let counters = source.counters();
    let config = HeapConfig::new()
        .arena_size(64 << 10)
        .pool_size(4 << 10)
        .empty_arenas_kept(kept)
        .release(release);
    let heap = Heap::with_source(config, clock.drive(source)).unwrap();
    (heap, clock, counters)
}

/// Fills `arenas` arenas with 256-byte blocks.
fn fill(heap: &Heap, arenas: usize) -> Vec<Box<[u8; 256], &Heap>> {
    (0..arenas * 16 * 15)
        .map(|i| Box::new_in([i as u8; 256], heap))
        .collect()
}

/// A slow path with a pool taken: a block of a class (`bytes`, 257 to 512) nobody else uses.
fn slow_path(heap: &Heap, bytes: usize) -> Vec<u8, &Heap> {
    let mut block = Vec::with_capacity_in(bytes, heap);
    block.push(7);
    block
}

#[test]
fn immediate_release_unmaps_an_emptied_arena_at_once() {
    let (heap, _clock, counters) = heap(Release::Immediate, 0);
    drop(fill(&heap, 3));
    heap.check().unwrap();
    assert_eq!(heap.stats().arenas_current(), 0);
    assert_eq!(counters.live(), 0);
}

#[test]
fn a_decay_keeps_emptied_arenas_for_its_delay_then_unmaps_them() {
    let (heap, clock, counters) = heap(Release::Decay(DELAY), 0);
    drop(fill(&heap, 3));
    heap.check().unwrap();
    assert_eq!(heap.stats().arenas_current(), 3, "kept for reuse");
    assert!(heap.stats().retained_bytes() >= 3 * (60 << 10));

    // Built again before the delay: the same arenas serve, nothing is mapped.
    let mapped = counters.mapped();
    let again = fill(&heap, 3);
    assert_eq!(counters.mapped(), mapped, "no arena mapped again");
    drop(again);
    heap.check().unwrap();

    // Not yet due: a slow path leaves everything in place.
    clock.advance(DELAY / 2);
    let keep = slow_path(&heap, 496);
    heap.check().unwrap();
    assert_eq!(heap.stats().arenas_current(), 3);

    // Due: the next slow path settles. One arena holds the slow path's pool; the two others
    // were empty beyond the budget of 0, so they go back.
    clock.advance(DELAY);
    drop(slow_path(&heap, 480));
    heap.check().unwrap();
    let stats = heap.stats();
    assert_eq!(stats.arenas_current(), 1, "{stats}");
    assert_eq!(counters.live(), 1);
    // The arena left kept its live pool, and its free pools are purged (on Linux).
    if cfg!(all(target_os = "linux", not(miri))) {
        assert!(stats.purged_bytes() > 0, "{stats}");
        assert!(
            stats.retained_bytes() <= 4 << 10,
            "only the pool the last slow path emptied may stay resident: {stats}"
        );
    }
    drop(keep);
    heap.check().unwrap();
}

#[test]
fn spares_within_the_budget_stay_mapped_but_are_purged() {
    let (heap, clock, counters) = heap(Release::Decay(DELAY), 2);
    drop(fill(&heap, 3));
    let keep = slow_path(&heap, 464);
    clock.advance(DELAY * 2);
    let keep_too = slow_path(&heap, 448);
    heap.check().unwrap();
    let stats = heap.stats();
    // The slow paths' arena, which also holds the 256-byte class's cached empty pool (it
    // shares the spares budget: one unit), and one spare arena, purged.
    assert_eq!(stats.arenas_current(), 2, "{stats}");
    assert_eq!(counters.live(), 2);
    if cfg!(all(target_os = "linux", not(miri))) {
        assert!(
            counters.bytes_purged() >= 64 << 10,
            "purged {}",
            counters.bytes_purged()
        );
        let occupancy = stats.occupancy();
        let purged_per_arena: u64 = occupancy.arenas().iter().map(|a| a.purged_bytes).sum();
        assert_eq!(purged_per_arena, stats.purged_bytes());
    }
    drop((keep, keep_too));
}

#[test]
fn trim_gives_back_at_once_what_the_decay_holds() {
    let (heap, _clock, counters) = heap(Release::Decay(DELAY), 1);
    drop(fill(&heap, 4));
    assert_eq!(heap.stats().arenas_current(), 4);
    let report = heap.trim();
    heap.check().unwrap();
    assert_eq!(report.arenas_released, 3, "{report:?}");
    assert_eq!(counters.live(), 1, "one spare is kept");
    if cfg!(all(target_os = "linux", not(miri))) {
        assert_eq!(heap.stats().retained_bytes(), 0, "the spare is purged");
    }
}

#[test]
fn a_zero_delay_settles_on_every_slow_path() {
    let (heap, _clock, counters) = heap(Release::Decay(Duration::ZERO), 0);
    let blocks = fill(&heap, 2);
    drop(blocks);
    heap.check().unwrap();
    // The last pool returned settled everything due, itself included.
    assert_eq!(heap.stats().arenas_current(), 0);
    assert_eq!(counters.live(), 0);
}

#[test]
fn the_memory_limit_takes_retained_arenas_first() {
    let clock = ManualClock::new();
    let config = HeapConfig::new()
        .arena_size(64 << 10)
        .pool_size(4 << 10)
        .empty_arenas_kept(0)
        .memory_limit(256 << 10)
        .release(Release::Decay(DELAY));
    let heap = Heap::with_source(config, clock.drive(MmapSource::new())).unwrap();
    drop(fill(&heap, 3));
    assert_eq!(heap.stats().arenas_current(), 3);
    // 200 KiB from the system fits only once the retained arenas go.
    let big = std::alloc::Layout::from_size_align(200 << 10, 8).unwrap();
    let block = pyalloc::Allocator::allocate(&&heap, big).expect("retained arenas give way");
    assert_eq!(heap.stats().arenas_current(), 0);
    // SAFETY: allocated above with `big`.
    unsafe { pyalloc::Allocator::deallocate(&&heap, block.cast(), big) };
    heap.check().unwrap();
}

#[test]
fn a_request_for_the_system_allocator_also_settles_what_is_due() {
    let (heap, clock, counters) = heap(Release::Decay(DELAY), 0);
    drop(fill(&heap, 3));
    assert_eq!(counters.live(), 3);
    clock.advance(DELAY * 2);
    // No pool is taken or returned: only a large request reaches a slow path.
    let large = Box::new_in([0u8; 4096], &heap);
    heap.check().unwrap();
    assert!(counters.live() <= 1, "{} arenas left", counters.live());
    drop(large);
}

/// Pools per arena of [`paged_heap`]: fewer under Miri, where every block costs.
const POOLS_PER_ARENA: usize = if cfg!(miri) { 4 } else { 16 };

/// Survivors' pools of most sweep tests: most of one arena.
const KEPT: usize = if cfg!(miri) { 3 } else { 10 };

/// A heap of 16 KiB pools (four parkable pages each) in arenas of [`POOLS_PER_ARENA`] pools,
/// no spare kept, on a manual clock.
fn paged_heap(release: Release) -> (Heap, ManualClock, std::sync::Arc<Counters>) {
    let clock = ManualClock::new();
    let source = CountingSource::wrapping(MmapSource::new());
    let counters = source.counters();
    let config = HeapConfig::new()
        .arena_size(POOLS_PER_ARENA * (16 << 10))
        .pool_size(16 << 10)
        .empty_arenas_kept(0)
        .release(release);
    let heap = Heap::with_source(config, clock.drive(source)).unwrap();
    (heap, clock, counters)
}

/// Blocks of 64 bytes per 16 KiB pool (48 bytes of header).
const PER_POOL: usize = (16384 - 48) / 64;

/// Pools of 64-byte blocks, each block holding its index's low byte, and then every block
/// freed but the first of each of the first `kept` pools (in page 0, by the header). The
/// pools after them, to the end of their arena and as many arenas more as the survivors
/// take, empty: the first go back to their arena (dirty, with a deadline), the other arenas
/// go back to the OS at the decay's first pass (the heap has shrunk to half its peak: the
/// sweep begins a round). Returns the survivors and the bytes of the dirty pools.
fn scatter(heap: &Heap, kept: usize) -> (Vec<Box<[u8; 64], &Heap>>, usize) {
    let dirty = (POOLS_PER_ARENA - kept % POOLS_PER_ARENA) % POOLS_PER_ARENA;
    let pools = 2 * (kept + dirty);
    let mut blocks: Vec<Option<Box<[u8; 64], &Heap>>> = (0..pools * PER_POOL)
        .map(|i| Some(Box::new_in([i as u8; 64], heap)))
        .collect();
    let survivors = (0..kept)
        .map(|pool| blocks[pool * PER_POOL].take().unwrap())
        .collect();
    drop(blocks);
    heap.check().unwrap();
    (survivors, dirty * (16 << 10))
}

#[test]
fn a_decay_pass_parks_the_free_pages_of_pools_holding_survivors() {
    let (heap, clock, counters) = paged_heap(Release::Decay(DELAY));
    let (survivors, dirty) = scatter(&heap, KEPT);
    assert_eq!(heap.stats().classes()[3].pools, KEPT);
    let purged = counters.bytes_purged();
    let linux = cfg!(all(target_os = "linux", not(miri)));

    // Not yet due: a slow path parks nothing.
    clock.advance(DELAY / 2);
    drop(Box::new_in([0u8; 4096], &heap));
    heap.check().unwrap();
    assert_eq!(counters.bytes_purged(), purged, "nothing is due yet");

    // Due: the large request's slow path runs a pass of the decay: the dirty pools are purged
    // and the empty arena goes back. The heap took pools since the sweep last looked (it was
    // growing), so the sweep puts its step off, and asks for another pass.
    clock.advance(DELAY);
    drop(Box::new_in([0u8; 4096], &heap));
    heap.check().unwrap();
    assert_eq!(heap.stats().arenas_current(), 1);
    if linux {
        assert_eq!(counters.bytes_purged() - purged, dirty, "{}", heap.stats());
    }

    // That pass: every pool but its class's head gives its three free pages back.
    clock.advance(DELAY / 2);
    drop(Box::new_in([0u8; 4096], &heap));
    heap.check().unwrap();
    if linux {
        let swept = counters.bytes_purged() - purged;
        assert_eq!(swept, dirty + (KEPT - 1) * 3 * 4096, "{}", heap.stats());
    }

    // The parked pages come back as the class needs them, under no survivor, and in the same
    // pools: as many blocks again need no new pool.
    let again: Vec<_> = (0..KEPT * (PER_POOL - 1))
        .map(|i| Box::new_in([!(i as u8); 64], &heap))
        .collect();
    heap.check().unwrap();
    assert_eq!(heap.stats().classes()[3].pools, KEPT, "{}", heap.stats());
    for (pool, block) in survivors.iter().enumerate() {
        assert!(block.iter().all(|&b| b == (pool * PER_POOL) as u8));
    }
    drop((again, survivors));
    heap.check().unwrap();
}

#[test]
fn immediate_release_sweeps_no_pool_in_use() {
    let (heap, clock, counters) = paged_heap(Release::Immediate);
    let (survivors, _) = scatter(&heap, KEPT);
    for _ in 0..4 {
        clock.advance(DELAY);
        drop(Box::new_in([0u8; 4096], &heap));
    }
    heap.check().unwrap();
    // The emptied pools went back with their arena or stay resident in theirs (CPython's
    // policy); nothing inside the pools in use was purged.
    assert_eq!(counters.bytes_purged(), 0, "{}", heap.stats());
    drop(survivors);
}

#[test]
fn a_heap_that_did_not_shrink_by_half_is_not_swept() {
    let (heap, clock, counters) = paged_heap(Release::Decay(DELAY));
    // Survivors in all of an arena's pools but two, which empty: deadlines, but the heap
    // keeps its one arena.
    let mut blocks: Vec<Option<Box<[u8; 64], &Heap>>> = (0..POOLS_PER_ARENA * PER_POOL)
        .map(|i| Some(Box::new_in([i as u8; 64], &heap)))
        .collect();
    let survivors: Vec<_> = (0..POOLS_PER_ARENA - 2)
        .map(|pool| blocks[pool * PER_POOL].take().unwrap())
        .collect();
    drop(blocks);
    for _ in 0..4 {
        clock.advance(DELAY);
        drop(Box::new_in([0u8; 4096], &heap));
        heap.check().unwrap();
    }
    let linux = cfg!(all(target_os = "linux", not(miri)));
    if linux {
        assert_eq!(
            counters.bytes_purged(),
            2 * (16 << 10),
            "the dirty pools only"
        );
    }
    // `trim` parks them all the same.
    let report = heap.trim();
    if linux {
        let parked = (POOLS_PER_ARENA - 3) * 3 * 4096;
        assert!(report.bytes_purged >= parked, "{report:?}");
    }
    drop(survivors);
    heap.check().unwrap();
}

#[test]
#[cfg_attr(
    miri,
    ignore = "tens of thousands of blocks; the small tests take the same paths"
)]
fn the_sweep_goes_round_a_large_heap_a_step_per_pass() {
    let (heap, clock, counters) = paged_heap(Release::Decay(DELAY));
    // More pools than a step looks at (64), in several arenas.
    let kept = 200;
    let (survivors, dirty) = scatter(&heap, kept);
    let purged = counters.bytes_purged();
    let parked_all = dirty + (kept - 1) * 3 * 4096;
    let mut passes = 0;
    // The first pass settles the emptied pools and arena and finds the heap grown; then a
    // step a pass.
    while counters.bytes_purged() - purged < parked_all && passes < 10 {
        clock.advance(DELAY);
        drop(Box::new_in([0u8; 4096], &heap));
        heap.check().unwrap();
        passes += 1;
    }
    if cfg!(all(target_os = "linux", not(miri))) {
        assert_eq!(counters.bytes_purged() - purged, parked_all);
        // A pass to settle, then a step per 64 pool positions, from the first: the survivors'
        // pools are the first `kept`.
        assert_eq!(passes, 1 + kept.div_ceil(64), "passes");
    }
    drop(survivors);
    heap.check().unwrap();
}
