//! The unhappy paths: out of memory at every point of a workload, and panics mid-operation.
//!
//! After each failure the heap must pass `check()`, keep working, and give back everything
//! when its users and then itself are dropped.

use std::alloc::Layout;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyalloc::{AllocError, Box, FreeListId, FreeListed, Heap, HeapConfig, Pooled, Vec};
use pyalloc_testkit::CountingSource;

struct Cell3([u64; 3]);

// SAFETY: `ID` is declared here for `Cell3` alone.
unsafe impl FreeListed for Cell3 {
    const CAPACITY: usize = 8;
    const NAME: &'static str = "Cell3";
    fn free_list_id() -> &'static FreeListId {
        static ID: FreeListId = FreeListId::new();
        &ID
    }
}

/// Small arenas (4 pools of 4 KiB) so the workload needs many of them.
fn small_geometry() -> HeapConfig {
    HeapConfig::new().arena_size(16 << 10).pool_size(4 << 10)
}

/// Everything a workload keeps alive, dropped by the caller.
struct Kept<'h> {
    boxes: std::vec::Vec<Box<[u8], &'h Heap>>,
    pooled: std::vec::Vec<Pooled<'h, Cell3>>,
    numbers: Vec<u64, &'h Heap>,
}

/// A workload of every kind of request, through the fallible APIs, stopping at the first
/// allocation failure.
fn workload<'h>(heap: &'h Heap, kept: &mut Kept<'h>) -> Result<(), AllocError> {
    let scale = if cfg!(miri) { 4 } else { 40 };
    for round in 0..scale {
        for size in [8usize, 24, 48, 100, 256, 512, 700] {
            let layout = Layout::array::<u8>(size).unwrap();
            let block = pyalloc::Allocator::allocate_zeroed(&heap, layout)?;
            // SAFETY: a fresh zeroed block of `size` bytes becomes a boxed slice owned by `kept`.
            let boxed = unsafe {
                Box::from_raw_in(
                    std::ptr::slice_from_raw_parts_mut(block.cast::<u8>().as_ptr(), size),
                    heap,
                )
            };
            kept.boxes.push(boxed);
        }
        kept.pooled
            .push(Pooled::try_new_in(Cell3([round as u64; 3]), heap)?);
        if round % 5 == 4 {
            // Frees in the middle: pools empty and refill.
            kept.boxes.truncate(kept.boxes.len() * 3 / 4);
            kept.pooled.truncate(kept.pooled.len() * 3 / 4);
        }
        kept.numbers
            .try_reserve(kept.numbers.len() + 7)
            .map_err(|_| AllocError)?;
        kept.numbers.extend(0..7);
    }
    Ok(())
}

fn run_with(heap: &Heap) -> bool {
    let mut kept = Kept {
        boxes: std::vec::Vec::new(),
        pooled: std::vec::Vec::new(),
        numbers: Vec::new_in(heap),
    };
    let ok = workload(heap, &mut kept).is_ok();
    heap.check().unwrap();
    // The heap still serves what it can after a failure.
    if !ok {
        if let Ok(b) = Box::try_new_in(1u8, heap) {
            assert_eq!(*b, 1);
        }
    }
    for (i, p) in kept.pooled.iter().enumerate() {
        assert!(p.0[2] >= i as u64, "pooled values keep their contents");
    }
    drop(kept);
    heap.clear_free_lists();
    heap.check().unwrap();
    assert_eq!(heap.stats().blocks_in_use(), 0);
    assert_eq!(heap.stats().large_allocations(), 0);
    ok
}

#[test]
fn every_arena_failure_is_an_alloc_error() {
    // How many arenas the whole workload needs.
    let full = {
        let heap = Heap::with_config(small_geometry()).unwrap();
        assert!(run_with(&heap));
        heap.stats().arenas_highwater()
    };
    assert!(
        full >= 3,
        "the workload should need several arenas, needed {full}"
    );
    // The workload may succeed with fewer arenas than its high-water mark: when the source
    // refuses an arena, the heap's spares (its cached pool, an empty arena kept) give way first.
    // So: no arena fails, `full` arenas succeed, once it succeeds it succeeds with more, and a
    // failure is always a refused arena.
    let mut first_success = None;
    for successes in 0..=full {
        // Counts arenas in and out, so the test can prove that nothing stays mapped.
        let source = CountingSource::new().fail_after(successes);
        let counters = source.counters();
        let heap = Heap::with_source(small_geometry(), source).unwrap();
        let ok = run_with(&heap);
        if successes == 0 || successes >= full {
            assert_eq!(ok, successes >= full, "with {successes} of {full} arenas");
        }
        match first_success {
            Some(n) => assert!(ok, "succeeded with {n} arenas but not with {successes}"),
            None if ok => first_success = Some(successes),
            None => {}
        }
        // A failure is always a refused arena; a refused arena need not be a failure, when
        // giving up a spare made room.
        if !ok {
            assert!(
                counters.failed_maps() > 0,
                "a failure without a refused arena"
            );
        }
        if counters.failed_maps() == 0 {
            assert!(ok, "no arena was refused, yet the workload failed");
        }
        drop(heap);
        assert_eq!(counters.live(), 0, "an arena stayed mapped");
    }
}

#[test]
fn every_memory_limit_is_an_alloc_error() {
    let step = 16 << 10;
    let mut limit = 0;
    loop {
        let heap = Heap::with_config(small_geometry().memory_limit(limit)).unwrap();
        if run_with(&heap) {
            break;
        }
        limit += step;
        assert!(limit < 64 << 20, "the workload never fit");
    }
    assert!(limit > 0);
}

#[test]
fn a_panic_while_a_vec_grows_leaves_the_heap_consistent() {
    let heap = Heap::new();
    let result = catch_unwind(AssertUnwindSafe(|| {
        let mut v = Vec::new_in(&heap);
        v.extend((0..10_000u32).map(|i| {
            assert!(i != 777, "boom at {i}");
            Box::new_in(i, &heap)
        }));
        v.len()
    }));
    assert!(result.is_err());
    heap.check().unwrap();
    let stats = heap.stats();
    assert_eq!(stats.blocks_in_use(), 0, "the unwinding dropped every box");
    assert_eq!(stats.large_allocations(), 0, "and the vector's buffer");
    // And it keeps working.
    let mut v = Vec::new_in(&heap);
    v.extend(0..100u8);
    assert_eq!(v.len(), 100);
}

struct Exploding(u32);

impl Drop for Exploding {
    fn drop(&mut self) {
        if self.0 == 13 {
            panic!("unlucky");
        }
    }
}

// SAFETY: `ID` is declared here for `Exploding` alone.
unsafe impl FreeListed for Exploding {
    const NAME: &'static str = "Exploding";
    fn free_list_id() -> &'static FreeListId {
        static ID: FreeListId = FreeListId::new();
        &ID
    }
}

#[test]
fn a_panicking_destructor_does_not_lose_its_slot() {
    let heap = Heap::new();
    let values: std::vec::Vec<_> = (0..20)
        .map(|i| Pooled::new_in(Exploding(i), &heap))
        .collect();
    let result = catch_unwind(AssertUnwindSafe(|| drop(values)));
    assert!(result.is_err());
    heap.check().unwrap();
    // Every slot came back: the 20 pushes include the one whose destructor panicked (the
    // vector keeps dropping its other elements after one panics).
    assert_eq!(heap.free_list_stats::<Exploding>().pushes, 20);
    assert_eq!(heap.clear_free_lists(), 20);
    assert_eq!(heap.stats().blocks_in_use(), 0);
}
