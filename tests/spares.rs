//! Spares (empty arenas kept, the cached empty pool) against the memory limit, and the
//! configuration against per-list capacities.

use std::alloc::Layout;

use pyalloc::{Allocator, Box, FreeListed, Heap, HeapConfig, Pooled};

/// 64 KiB arenas of 4 KiB pools, one spare kept, 256 KiB in all.
fn limited_heap() -> Heap {
    let config = HeapConfig::new()
        .arena_size(64 << 10)
        .pool_size(4 << 10)
        .empty_arenas_kept(1)
        .memory_limit(256 << 10);
    Heap::with_config(config).unwrap()
}

#[test]
fn spares_never_make_a_request_fail_that_fits_without_them() {
    let heap = limited_heap();
    drop(Box::new_in([0u8; 64], &heap));
    // Nothing is live, but the heap holds a 64 KiB arena as a spare.
    assert_eq!(heap.stats().blocks_in_use(), 0);
    assert_eq!(heap.stats().arenas_current(), 1);
    let big = Layout::from_size_align(224 << 10, 8).unwrap();
    let block = heap
        .allocate(big)
        .expect("224 KiB fits a 256 KiB limit once spares go");
    assert_eq!(
        heap.stats().arenas_current(),
        0,
        "the spare arena was given up"
    );
    // SAFETY: allocated just above with `big`.
    unsafe { heap.deallocate(block.cast(), big) };
    heap.check().unwrap();
}

#[test]
fn spares_give_way_after_trim_too() {
    let heap = limited_heap();
    drop(Box::new_in([0u8; 64], &heap));
    heap.trim();
    let big = Layout::from_size_align(224 << 10, 8).unwrap();
    let block = heap.allocate(big).expect("fits after trim");
    // SAFETY: allocated just above with `big`.
    unsafe { heap.deallocate(block.cast(), big) };
    heap.check().unwrap();
}

#[test]
fn a_request_that_does_not_fit_still_fails_and_keeps_the_heap_whole() {
    let heap = limited_heap();
    let live = Box::new_in([0u8; 64], &heap);
    let big = Layout::from_size_align(224 << 10, 8).unwrap();
    assert!(
        heap.allocate(big).is_err(),
        "64 KiB live + 224 KiB exceed 256 KiB"
    );
    assert_eq!(*live, [0; 64]);
    heap.check().unwrap();
}

#[derive(FreeListed)]
#[free_list(capacity = 8)]
struct Small(u64);

#[test]
fn a_heap_without_free_lists_keeps_every_capacity_at_zero() {
    let heap = Heap::with_config(HeapConfig::new().free_lists(false)).unwrap();
    heap.set_free_list_capacity::<Small>(5);
    assert_eq!(
        heap.free_list_stats::<Small>().capacity,
        0,
        "the configuration wins"
    );
    drop(Pooled::new_in(Small(1), &heap));
    let stats = heap.free_list_stats::<Small>();
    assert_eq!((stats.len, stats.pushes, stats.overflows), (0, 0, 1));
    heap.check().unwrap();
}

#[test]
fn a_heap_with_free_lists_takes_a_new_capacity() {
    let heap = Heap::new();
    assert_eq!(
        heap.free_list_stats::<Small>().capacity,
        8,
        "declared, before first use"
    );
    heap.set_free_list_capacity::<Small>(2);
    let values: Vec<_> = (0..4).map(|i| Pooled::new_in(Small(i), &heap)).collect();
    assert_eq!(values.iter().map(|v| v.0).sum::<u64>(), 6);
    drop(values);
    let stats = heap.free_list_stats::<Small>();
    assert_eq!((stats.len, stats.capacity, stats.overflows), (2, 2, 2));
    heap.set_free_list_capacity::<Small>(0);
    assert_eq!(heap.free_list_stats::<Small>().len, 0);
    assert_eq!(heap.stats().blocks_in_use(), 0);
}
