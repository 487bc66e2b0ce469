//! Free without a size: `Heap::owns`, `allocate_unsized`, `deallocate_unsized`,
//! `reallocate_unsized` and `usable_size`, the interface of C's `free(p)` and of CPython's
//! allocator hooks, and their call-free fast paths `try_allocate_unsized` and
//! `try_deallocate_unsized`.

use std::ptr::NonNull;

use proptest::prelude::*;
use pyalloc::{Box, Heap, HeapConfig};

/// A block of the system allocator, as CPython would hand one over from before pyalloc.
fn malloc(size: usize) -> NonNull<u8> {
    // SAFETY: `malloc` has no preconditions.
    NonNull::new(unsafe { libc::malloc(size) }.cast()).expect("malloc")
}

#[test]
fn owns_tells_the_heaps_blocks_from_everything_else() {
    let heap = Heap::new();
    let other = Heap::new();
    let mine = heap.allocate_unsized(24).unwrap();
    let theirs = other.allocate_unsized(24).unwrap();
    let foreign = malloc(24);
    let on_stack = 7u64;
    assert!(heap.owns(mine.as_ptr()));
    assert!(!heap.owns(theirs.as_ptr()), "another heap's block");
    assert!(!heap.owns(foreign.as_ptr()), "a malloc block");
    assert!(!heap.owns(std::ptr::from_ref(&on_stack).cast()));
    assert!(!heap.owns(std::ptr::null()));
    assert!(!heap.owns(std::ptr::without_provenance(usize::MAX)));
    let large = heap.allocate_unsized(4000).unwrap();
    assert!(!heap.owns(large.as_ptr()), "large blocks are the system's");
    // SAFETY: each block is live and freed once, by the heap it came from or by the system.
    unsafe {
        heap.deallocate_unsized(mine);
        other.deallocate_unsized(theirs);
        heap.deallocate_unsized(foreign); // not ours: `free`
        heap.deallocate_unsized(large);
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

#[test]
fn zero_bytes_give_distinct_blocks() {
    let heap = Heap::new();
    let a = heap.allocate_unsized(0).unwrap();
    let b = heap.allocate_unsized(0).unwrap();
    assert_ne!(a, b);
    assert_eq!(a.as_ptr().addr() % 16, 0);
    // SAFETY: live blocks of this heap.
    unsafe {
        assert_eq!(heap.usable_size(a), 16);
        heap.deallocate_unsized(a);
        heap.deallocate_unsized(b);
    }
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

#[test]
fn reallocation_follows_cpythons_rules() {
    let heap = Heap::new();
    let p = heap.allocate_unsized(40).unwrap();
    // SAFETY: every pointer passed is the live block returned by the call before.
    unsafe {
        p.as_ptr().write_bytes(0xAB, 40);
        assert_eq!(
            heap.reallocate_unsized(Some(p), 48).unwrap(),
            p,
            "fits: in place"
        );
        assert_eq!(
            heap.reallocate_unsized(Some(p), 37).unwrap(),
            p,
            "37 of 48: in place"
        );
        let q = heap.reallocate_unsized(Some(p), 20).unwrap();
        assert_ne!(q, p, "20 of 48: moves to a smaller class");
        assert_eq!(heap.usable_size(q), 32);
        assert!((0..20).all(|i| *q.as_ptr().add(i) == 0xAB));
        let big = heap.reallocate_unsized(Some(q), 3000).unwrap();
        assert!(!heap.owns(big.as_ptr()));
        assert!((0..20).all(|i| *big.as_ptr().add(i) == 0xAB));
        // Miri has no `malloc_usable_size`: the system's figure is asked natively only.
        assert!(cfg!(miri) || heap.usable_size(big) >= 3000);
        let still_big = heap.reallocate_unsized(Some(big), 100).unwrap();
        assert!(
            !heap.owns(still_big.as_ptr()),
            "a system block stays the system's"
        );
        heap.deallocate_unsized(still_big);
        let fresh = heap.reallocate_unsized(None, 10).unwrap();
        assert!(heap.owns(fresh.as_ptr()));
        heap.deallocate_unsized(fresh);
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

#[test]
fn zeroed_blocks_are_zero() {
    let heap = Heap::new();
    for size in [0, 1, 100, 512, 513, 5000] {
        let p = heap.allocate_unsized(size).unwrap();
        // SAFETY: the block is live and at least `size` bytes; written, freed, zeroed again.
        unsafe {
            p.as_ptr().write_bytes(0xFF, size);
            heap.deallocate_unsized(p);
            let z = heap.allocate_zeroed_unsized(size).unwrap();
            assert!((0..size).all(|i| *z.as_ptr().add(i) == 0), "size {size}");
            heap.deallocate_unsized(z);
        }
    }
}

#[test]
fn sized_and_unsized_pool_blocks_mix() {
    let heap = Heap::new();
    let b = Box::new_in([1u64; 4], &heap);
    let raw = pyalloc::Box::into_raw(b).cast::<u8>();
    // SAFETY: a live pool block of this heap, given up by its `Box`.
    unsafe {
        assert_eq!(heap.usable_size(NonNull::new(raw).unwrap()), 32);
        heap.deallocate_unsized(NonNull::new(raw).unwrap());
    }
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

#[test]
fn the_arena_map_is_counted_in_the_stats() {
    let heap = Heap::new();
    assert_eq!(heap.stats().arena_map(), (0, 0));
    let p = heap.allocate_unsized(8).unwrap();
    let (bytes, leaves) = heap.stats().arena_map();
    assert_eq!(leaves, 1);
    assert!((4096..1 << 20).contains(&bytes), "{bytes}");
    assert!(heap
        .stats()
        .to_string()
        .contains("# bytes in arena map (1 leaves)"));
    // SAFETY: live block of this heap.
    unsafe { heap.deallocate_unsized(p) };
}

#[test]
#[should_panic(expected = "pyalloc debug: double free: block")]
fn debug_mode_names_an_unsized_double_free() {
    let heap = Heap::with_config(HeapConfig::new().debug(true)).unwrap();
    let p = heap.allocate_unsized(30).unwrap();
    // SAFETY: the second free is the misuse under test.
    unsafe {
        assert_eq!(heap.usable_size(p), 30, "the requested size in debug mode");
        heap.deallocate_unsized(p);
        heap.deallocate_unsized(p);
    }
}

#[test]
#[should_panic(expected = "pyalloc debug: foreign pointer: block")]
fn debug_mode_names_a_pointer_into_the_arenas_that_is_no_block() {
    let heap = Heap::with_config(HeapConfig::new().debug(true)).unwrap();
    let p = heap.allocate_unsized(64).unwrap();
    // SAFETY: the interior pointer is the misuse under test.
    unsafe { heap.deallocate_unsized(p.add(8)) };
}

#[test]
fn debug_mode_passes_foreign_pointers_to_the_system() {
    let heap = Heap::with_config(HeapConfig::new().debug(true)).unwrap();
    let foreign = malloc(100);
    // SAFETY: a live malloc block, resized then freed by the system allocator.
    unsafe {
        let moved = heap.reallocate_unsized(Some(foreign), 200).unwrap();
        assert!(!heap.owns(moved.as_ptr()));
        heap.deallocate_unsized(moved);
    }
    heap.check().unwrap();
}

/// One operation of the unsized model.
/// `try_allocate_unsized` then `allocate_unsized`, as pyalloc-python's `malloc` does.
fn try_then_allocate(heap: &Heap, size: usize) -> NonNull<u8> {
    heap.try_allocate_unsized(size)
        .unwrap_or_else(|| heap.allocate_unsized(size).unwrap())
}

/// `try_deallocate_unsized` then `deallocate_unsized`, as pyalloc-python's `free` does.
///
/// # Safety
///
/// As `deallocate_unsized`'s.
unsafe fn try_then_deallocate(heap: &Heap, p: NonNull<u8>) {
    // SAFETY: forwarded contract; a block the fast path leaves is still live.
    unsafe {
        if !heap.try_deallocate_unsized(p.as_ptr()) {
            heap.deallocate_unsized(p);
        }
    }
}

#[test]
fn the_fast_paths_fill_carve_refill_and_empty_pools() {
    let heap = Heap::new();
    // 48-byte blocks: 340 to a 16 KiB pool; 1000 fill two pools and carve into a third.
    let blocks: Vec<_> = (0..1000).map(|_| try_then_allocate(&heap, 48)).collect();
    heap.check().unwrap();
    assert_eq!(heap.stats().blocks_in_use(), 1000);
    // Every other block: frees into full pools (which go back in their class's list), then
    // into used ones.
    for &p in blocks.iter().step_by(2) {
        // SAFETY: live, freed once.
        unsafe { try_then_deallocate(&heap, p) };
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().blocks_in_use(), 500);
    // Allocations refill the holes (and fill the pools again), then free everything: the
    // last block of each pool empties it (the first to empty is cached, the others go back
    // to their arena), through the fast path's call to the rest of the free.
    let refill: Vec<_> = (0..500).map(|_| try_then_allocate(&heap, 48)).collect();
    heap.check().unwrap();
    for &p in blocks.iter().skip(1).step_by(2).chain(&refill) {
        // SAFETY: live, freed once.
        unsafe { try_then_deallocate(&heap, p) };
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

#[test]
fn the_fast_paths_leave_everything_else_alone() {
    let heap = Heap::new();
    let keep = heap.allocate_unsized(16).unwrap();
    let foreign = malloc(16);
    // SAFETY: null, and a live `malloc` block, which the fast path does not take.
    unsafe {
        assert!(!heap.try_deallocate_unsized(std::ptr::null_mut()));
        assert!(!heap.try_deallocate_unsized(foreign.as_ptr()));
        heap.deallocate_unsized(foreign);
    }
    assert_eq!(heap.try_allocate_unsized(0), None, "0 bytes: the slow path");
    assert_eq!(heap.try_allocate_unsized(513), None, "large: the system's");
    // The last live block of a pool: the fast path frees it too, and its pool is cached.
    // SAFETY: live, freed once.
    unsafe { assert!(heap.try_deallocate_unsized(keep.as_ptr())) };
    heap.check().unwrap();
    assert_eq!(heap.stats().blocks_in_use(), 0);
    let debug = Heap::with_config(HeapConfig::new().debug(true)).unwrap();
    assert_eq!(
        debug.try_allocate_unsized(16),
        None,
        "debug mode: the slow path"
    );
    let p = debug.allocate_unsized(16).unwrap();
    let q = debug.allocate_unsized(16).unwrap();
    // SAFETY: live blocks of the debug heap, freed once.
    unsafe {
        assert!(!debug.try_deallocate_unsized(p.as_ptr()));
        debug.deallocate_unsized(p);
        debug.deallocate_unsized(q);
    }
    heap.check().unwrap();
    debug.check().unwrap();
}

#[derive(Clone, Debug)]
enum Op {
    Alloc(usize),
    Zeroed(usize),
    Foreign(usize),
    Realloc(usize, usize),
    Free(usize),
}

fn op() -> impl Strategy<Value = Op> {
    let size = prop_oneof![0..=64usize, 0..=600usize, 500..=530usize];
    prop_oneof![
        3 => size.clone().prop_map(Op::Alloc),
        1 => size.clone().prop_map(Op::Zeroed),
        1 => size.clone().prop_map(Op::Foreign),
        2 => (any::<usize>(), size).prop_map(|(pick, size)| Op::Realloc(pick, size)),
        3 => any::<usize>().prop_map(Op::Free),
    ]
}

/// The byte a block holds at `i`.
fn pattern(seed: usize, i: usize) -> u8 {
    (seed as u8).wrapping_add((i as u8).wrapping_mul(31))
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 128 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    /// Random unsized operations, foreign `malloc` blocks among them, against a model of
    /// every live block's size and contents.
    #[test]
    fn unsized_operations_behave_like_the_model(
        ops in proptest::collection::vec(op(), 1..if cfg!(miri) { 20 } else { 200 }),
        debug in any::<bool>(),
    ) {
        let heap = Heap::with_config(HeapConfig::new().debug(debug)).unwrap();
        let mut live: Vec<(NonNull<u8>, usize, usize)> = Vec::new();
        for (step, op) in ops.into_iter().enumerate() {
            let fill = |p: NonNull<u8>, size: usize| {
                // SAFETY: `p` is a live block of at least `size` bytes.
                (0..size).for_each(|i| unsafe { p.as_ptr().add(i).write(pattern(step, i)) });
            };
            match op {
                Op::Alloc(size) | Op::Zeroed(size) | Op::Foreign(size) => {
                    let p = match op {
                        Op::Alloc(_) => heap.allocate_unsized(size).unwrap(),
                        Op::Zeroed(_) => {
                            let p = heap.allocate_zeroed_unsized(size).unwrap();
                            // SAFETY: a fresh block of `size` bytes.
                            let zero = (0..size).all(|i| unsafe { *p.as_ptr().add(i) } == 0);
                            prop_assert!(zero, "a zeroed block of {} bytes is not zero", size);
                            p
                        }
                        _ => malloc(size.max(1)),
                    };
                    // The heap's blocks are 16-aligned; a foreign one is as `malloc` made it
                    // (Miri's gives 8 to a request under 16 bytes).
                    if !matches!(op, Op::Foreign(_)) {
                        prop_assert_eq!(p.as_ptr().addr() % 16, 0);
                    }
                    prop_assert!(live.iter().all(|&(q, _, _)| q != p), "{:p} handed out twice", p);
                    fill(p, size);
                    live.push((p, size, step));
                }
                Op::Realloc(pick, size) if !live.is_empty() => {
                    let (p, old, seed) = live.swap_remove(pick % live.len());
                    // SAFETY: a live block from this heap or `malloc`.
                    let q = unsafe { heap.reallocate_unsized(Some(p), size) }.unwrap();
                    let kept = old.min(size);
                    // SAFETY: `q` is live and at least `size` bytes.
                    let same = (0..kept).all(|i| unsafe { *q.as_ptr().add(i) } == pattern(seed, i));
                    prop_assert!(same, "{:p} lost its contents in a resize", q);
                    fill(q, size);
                    live.push((q, size, step));
                }
                Op::Free(pick) if !live.is_empty() => {
                    let (p, size, seed) = live.swap_remove(pick % live.len());
                    // SAFETY: a live block, checked then freed once.
                    let (usable, same) = unsafe {
                        let same = (0..size).all(|i| *p.as_ptr().add(i) == pattern(seed, i));
                        // Miri has no `malloc_usable_size`: only pool blocks are asked there.
                        let ask = !cfg!(miri) || heap.owns(p.as_ptr());
                        (if ask { heap.usable_size(p) } else { size }, same)
                    };
                    prop_assert!(usable >= size);
                    prop_assert!(same, "{:p} lost its contents", p);
                    // Half the frees try the call-free fast path first, as pyalloc-python's
                    // adapter does.
                    // SAFETY: a live block, freed once (by whichever path takes it).
                    unsafe {
                        if (pick >> 40) & 1 == 0 || !heap.try_deallocate_unsized(p.as_ptr()) {
                            heap.deallocate_unsized(p);
                        }
                    }
                }
                _ => {}
            }
            heap.check().map_err(TestCaseError::fail)?;
        }
        for (p, _, _) in live {
            // SAFETY: every block left is live.
            unsafe { heap.deallocate_unsized(p) };
        }
        prop_assert_eq!(heap.stats().blocks_in_use(), 0);
        heap.check().map_err(TestCaseError::fail)?;
    }
}
