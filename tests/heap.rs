//! Layers 0–2 through the public API: the allocator contract, routing, arenas, limits, stats.

use std::alloc::Layout;
use std::ptr::NonNull;

use pyalloc::{
    AllocError, Allocator, Box, FailingSource, Heap, HeapConfig, Release, SystemSource, Vec,
    DEFAULT_ARENA_SIZE,
};
use pyalloc_testkit::{assert_consistent, rng, CountingSource};

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Large workloads are too slow under Miri; they shrink there.
fn scaled(n: usize) -> usize {
    if cfg!(miri) {
        n / 100
    } else {
        n
    }
}

#[test]
fn collections_work_through_the_heap() {
    let heap = Heap::new();
    let b = Box::new_in([7u8; 24], &heap);
    let mut v = Vec::new_in(&heap);
    for i in 0..1000u32 {
        v.push(i);
    }
    let mut map = hashbrown::HashMap::new_in(&heap);
    for i in 0..200u32 {
        map.insert(i, i * 2);
    }
    assert_eq!(b[23], 7);
    assert_eq!(v.iter().sum::<u32>(), 999 * 1000 / 2);
    assert_eq!(map[&150], 300);
    assert!(heap.stats().blocks_in_use() >= 1);
    assert_consistent(&heap);
    drop((b, v, map));
    assert_eq!(heap.stats().blocks_in_use(), 0);
    assert_eq!(heap.stats().large_allocations(), 0);
}

#[test]
fn blocks_are_aligned_sized_and_in_their_class() {
    let heap = Heap::new();
    for size in 1..=512 {
        let block = heap.allocate(layout(size, 1)).unwrap();
        assert_eq!(block.cast::<u8>().as_ptr() as usize % 16, 0);
        assert_eq!(block.len(), size.div_ceil(16) * 16, "size {size}");
        // SAFETY: allocated just above with this layout.
        unsafe { heap.deallocate(block.cast(), layout(size, 1)) };
    }
    assert_consistent(&heap);
}

#[test]
fn large_and_overaligned_requests_go_to_the_system() {
    let heap = Heap::new();
    let big = heap.allocate(layout(513, 8)).unwrap();
    let aligned = heap.allocate(layout(32, 64)).unwrap();
    assert_eq!(aligned.cast::<u8>().as_ptr() as usize % 64, 0);
    let stats = heap.stats();
    assert_eq!(stats.large_allocations(), 2);
    assert_eq!(stats.large_bytes(), 513 + 32);
    assert_eq!(stats.blocks_in_use(), 0);
    // SAFETY: both allocated above with these layouts.
    unsafe {
        heap.deallocate(big.cast(), layout(513, 8));
        heap.deallocate(aligned.cast(), layout(32, 64));
    }
    assert_eq!(heap.stats().large_allocations(), 0);
}

#[test]
fn zero_sized_requests_never_touch_a_pool() {
    let heap = Heap::new();
    let z = heap.allocate(layout(0, 32)).unwrap();
    assert_eq!(z.len(), 0);
    assert_eq!(z.cast::<u8>().as_ptr() as usize % 32, 0);
    // SAFETY: a zero-size deallocate is a no-op, as the contract says.
    unsafe { heap.deallocate(z.cast(), layout(0, 32)) };
    let unit = Box::new_in((), &heap);
    drop(unit);
    let mut v: Vec<(), _> = Vec::new_in(&heap);
    v.extend(std::iter::repeat_n((), 1000));
    assert_eq!(v.len(), 1000);
    assert_eq!(heap.stats().arenas_current(), 0, "a ZST mapped an arena");
}

#[test]
fn grow_and_shrink_stay_in_place_when_they_can() {
    let heap = Heap::new();
    let p = heap.allocate(layout(20, 8)).unwrap().cast::<u8>();
    // SAFETY: `p` is live with the layouts passed, each call's result replaces it.
    unsafe {
        p.as_ptr().write_bytes(0xAB, 20);
        // 20 → 32: same class (block 32).
        let g = heap.grow(p, layout(20, 8), layout(32, 8)).unwrap();
        assert_eq!(g.cast::<u8>(), p);
        // 32 → 25: shrink keeping more than 3/4 of the block: stays.
        let s = heap.shrink(p, layout(32, 8), layout(25, 8)).unwrap();
        assert_eq!(s.cast::<u8>(), p);
        // 25 → 8: less than 3/4 of a 32-byte block: moves to class 0.
        let s2 = heap
            .shrink(p, layout(25, 8), layout(8, 8))
            .unwrap()
            .cast::<u8>();
        assert_ne!(s2, p);
        assert_eq!(std::slice::from_raw_parts(s2.as_ptr(), 8), &[0xAB; 8]);
        // 8 → 600: crosses the threshold into the system allocator, contents kept.
        let big = heap
            .grow(s2, layout(8, 8), layout(600, 8))
            .unwrap()
            .cast::<u8>();
        assert_eq!(std::slice::from_raw_parts(big.as_ptr(), 8), &[0xAB; 8]);
        assert_eq!(heap.stats().large_allocations(), 1);
        assert_eq!(heap.stats().blocks_in_use(), 0);
        // 600 → 1000: system realloc.
        let bigger = heap
            .grow_zeroed(big, layout(600, 8), layout(1000, 8))
            .unwrap();
        let bigger_ptr = bigger.cast::<u8>().as_ptr();
        assert_eq!(*bigger_ptr.add(999), 0);
        assert_eq!(*bigger_ptr.add(7), 0xAB);
        // 1000 → 100: back into a pool.
        let small = heap
            .shrink(bigger.cast(), layout(1000, 8), layout(100, 8))
            .unwrap();
        assert_eq!(*small.cast::<u8>().as_ptr().add(7), 0xAB);
        assert_eq!(heap.stats().large_allocations(), 0);
        assert_eq!(heap.stats().blocks_in_use(), 1);
        heap.deallocate(small.cast(), layout(100, 8));
    }
    assert_consistent(&heap);
}

#[test]
fn allocate_zeroed_zeroes_reused_blocks() {
    let heap = Heap::new();
    let l = layout(64, 16);
    let a = heap.allocate(l).unwrap().cast::<u8>();
    // SAFETY: `a` is a live 64-byte block; it is freed and the same block comes back zeroed.
    unsafe {
        a.as_ptr().write_bytes(0xFF, 64);
        heap.deallocate(a, l);
        let z = heap.allocate_zeroed(l).unwrap();
        assert_eq!(z.cast::<u8>(), a, "LIFO reuse expected");
        assert!(std::slice::from_raw_parts(a.as_ptr(), 64)
            .iter()
            .all(|&b| b == 0));
        heap.deallocate(a, l);
    }
}

#[test]
#[cfg_attr(miri, ignore = "1e5 blocks: too slow under Miri")]
fn random_frees_release_arenas() {
    // CPython's policy: every arena goes back the moment it empties (all but the spare).
    let heap = Heap::with_config(HeapConfig::new().release(Release::Immediate)).unwrap();
    let l = layout(64, 8);
    let mut blocks: std::vec::Vec<NonNull<u8>> = (0..100_000)
        .map(|_| heap.allocate(l).unwrap().cast())
        .collect();
    let peak = heap.stats();
    assert!(peak.arenas_current() >= 6, "{peak}");
    assert_consistent(&heap);
    rng::rng().shuffle(&mut blocks);
    for b in blocks {
        // SAFETY: each block is live and freed once.
        unsafe { heap.deallocate(b, l) };
    }
    let after = heap.stats();
    assert_eq!(after.blocks_in_use(), 0);
    assert!(
        after.arenas_current() <= 1,
        "kept {} arenas",
        after.arenas_current()
    );
    assert_eq!(
        after.arenas_reclaimed() as usize,
        peak.arenas_current() - after.arenas_current()
    );
    assert_eq!(after.arenas_highwater(), peak.arenas_current());
    assert_consistent(&heap);
}

#[test]
fn empty_arenas_kept_is_honoured() {
    for kept in [0usize, 1, 3] {
        let config = HeapConfig::new()
            .empty_arenas_kept(kept)
            .release(Release::Immediate);
        let heap = Heap::with_config(config).unwrap();
        let l = layout(512, 16);
        // 31 blocks of 512 per pool, 64 pools per arena: fill 5 arenas.
        let n = 31 * 64 * 5;
        let blocks: std::vec::Vec<NonNull<u8>> =
            (0..n).map(|_| heap.allocate(l).unwrap().cast()).collect();
        assert_eq!(heap.stats().arenas_current(), 5);
        for b in blocks {
            // SAFETY: each block is live and freed once.
            unsafe { heap.deallocate(b, l) };
        }
        assert_eq!(heap.stats().arenas_current(), kept, "kept = {kept}");
        assert_consistent(&heap);
    }
}

#[test]
fn new_pools_come_from_the_most_used_arena() {
    let arena = DEFAULT_ARENA_SIZE;
    let heap = Heap::new();
    let l = layout(512, 16);
    let per_arena = 31 * 64;
    let blocks: std::vec::Vec<NonNull<u8>> = (0..per_arena * 3)
        .map(|_| heap.allocate(l).unwrap().cast())
        .collect();
    let arena_of = |p: NonNull<u8>| p.as_ptr() as usize & !(arena - 1);
    let bases: std::vec::Vec<usize> = {
        let mut b: std::vec::Vec<usize> = blocks.iter().map(|&p| arena_of(p)).collect();
        b.dedup();
        b
    };
    assert_eq!(bases.len(), 3);
    // Arena 0: free 2 pools' worth (62 free pools left used). Arena 2: free all but one block.
    let (mut freed0, mut freed2) = (0, 0);
    for &p in &blocks {
        let base = arena_of(p);
        let free_it =
            (base == bases[0] && freed0 < 62) || (base == bases[2] && freed2 < per_arena - 1);
        if free_it {
            if base == bases[0] {
                freed0 += 1;
            } else {
                freed2 += 1;
            }
            // SAFETY: each freed block is live and freed once (and skipped below).
            unsafe { heap.deallocate(p, l) };
        }
    }
    heap.check().unwrap();
    // Use another class so the next pool must come from an arena's free pools: arena 0 has 2
    // free pools, arena 2 has 63. The most used (arena 0) must serve it.
    let other = layout(16, 16);
    let q = heap.allocate(other).unwrap().cast::<u8>();
    assert_eq!(
        arena_of(q),
        bases[0],
        "new pool not taken from the most used arena"
    );
    heap.check().unwrap();
    // SAFETY: `q` is live; then every block not freed above is freed.
    unsafe {
        heap.deallocate(q, other);
        let (mut skipped0, mut skipped2) = (0, 0);
        for &p in &blocks {
            let base = arena_of(p);
            if base == bases[0] && skipped0 < 62 {
                skipped0 += 1;
                continue;
            }
            if base == bases[2] && skipped2 < per_arena - 1 {
                skipped2 += 1;
                continue;
            }
            heap.deallocate(p, l);
        }
    }
    assert_eq!(heap.stats().blocks_in_use(), 0);
    assert_consistent(&heap);
}

#[test]
fn dropping_the_heap_returns_every_arena() {
    // Counts arenas mapped and unmapped, to prove the heap gives everything back.
    let source = CountingSource::new();
    let counters = source.counters();
    let config = HeapConfig::new().arena_size(64 << 10).pool_size(4 << 10);
    let heap = Heap::with_source(config, source).unwrap();
    let mut v = Vec::new_in(&heap);
    // 300 blocks of 512 bytes need at least three 64 KiB arenas, at any scale.
    for i in 0..300 {
        v.push(Box::new_in([i as u8; 500], &heap));
    }
    assert!(counters.mapped() >= 3);
    drop(v);
    drop(heap);
    assert_eq!(counters.mapped(), counters.unmapped());
}

#[test]
fn memory_limit_is_an_alloc_error_and_the_heap_recovers() {
    // Immediate release, so that the end can count the arenas left.
    let config = HeapConfig::new()
        .memory_limit(2 * DEFAULT_ARENA_SIZE)
        .release(Release::Immediate);
    let heap = Heap::with_config(config).unwrap();
    let l = layout(256, 16);
    let mut blocks = std::vec::Vec::new();
    let err = loop {
        match heap.allocate(l) {
            Ok(b) => blocks.push(b.cast::<u8>()),
            Err(e) => break e,
        }
    };
    assert_eq!(err, AllocError);
    assert_eq!(heap.stats().arenas_current(), 2);
    assert_eq!(
        blocks.len(),
        63 * 64 * 2,
        "both arenas fully used before failing"
    );
    // Large requests count against the limit too.
    assert!(heap.allocate(layout(4096, 8)).is_err());
    heap.check().unwrap();
    // Free a few: the heap serves again from the pools it has.
    for b in blocks.drain(..10) {
        // SAFETY: live blocks, freed once.
        unsafe { heap.deallocate(b, l) };
    }
    let again = heap.allocate(l).unwrap();
    blocks.push(again.cast());
    for b in blocks {
        // SAFETY: live blocks, freed once.
        unsafe { heap.deallocate(b, l) };
    }
    let stats = heap.stats();
    assert_eq!(stats.blocks_in_use(), 0);
    assert!(stats.arenas_current() <= 1);
    assert_consistent(&heap);
}

#[test]
fn a_failing_source_is_an_alloc_error_and_the_heap_recovers() {
    let config = HeapConfig::new().arena_size(64 << 10).pool_size(4 << 10);
    let heap = Heap::with_source(config, FailingSource::new(SystemSource, 1)).unwrap();
    let l = layout(128, 16);
    let mut blocks = std::vec::Vec::new();
    while let Ok(b) = heap.allocate(l) {
        blocks.push(b.cast::<u8>());
    }
    // One arena of 16 pools of 31 blocks of 128 bytes.
    assert_eq!(blocks.len(), 16 * 31);
    assert!(
        heap.allocate(layout(16, 8)).is_err(),
        "no pool left for another class"
    );
    heap.check().unwrap();
    let b = blocks.pop().unwrap();
    // SAFETY: live block, freed once; then reallocated from the same pool.
    unsafe { heap.deallocate(b, l) };
    assert_eq!(heap.allocate(l).unwrap().cast::<u8>(), b);
    blocks.push(b);
    for b in blocks {
        // SAFETY: live blocks, freed once.
        unsafe { heap.deallocate(b, l) };
    }
    assert_eq!(heap.stats().blocks_in_use(), 0);
    assert_consistent(&heap);
}

#[test]
fn other_geometries_work() {
    for (arena, pool) in [
        (256 << 10, 4 << 10),
        (4 << 10, 4 << 10),
        (1 << 20, 64 << 10),
    ] {
        let heap = Heap::with_config(HeapConfig::new().arena_size(arena).pool_size(pool)).unwrap();
        let mut v = Vec::new_in(&heap);
        for i in 0..scaled(5000) {
            v.push(Box::new_in([i as u64; 5], &heap));
        }
        assert_consistent(&heap);
        assert!(v.iter().enumerate().all(|(i, b)| b[4] == i as u64));
    }
    assert!(Heap::with_config(HeapConfig::new().pool_size(3000)).is_err());
}

#[test]
fn trim_purges_empty_pools_and_clears_free_lists() {
    let heap = Heap::new();
    let l = layout(64, 8);
    let n = scaled(20_000);
    let blocks: std::vec::Vec<NonNull<u8>> =
        (0..n).map(|_| heap.allocate(l).unwrap().cast()).collect();
    let mut survivors = std::vec::Vec::new();
    for (i, b) in blocks.into_iter().enumerate() {
        if i % 1000 == 0 {
            survivors.push(b);
        } else {
            // SAFETY: live block, freed once.
            unsafe { heap.deallocate(b, l) };
        }
    }
    let report = heap.trim();
    if cfg!(all(unix, not(miri))) {
        assert!(report.bytes_purged > 0, "{report:?}");
        // Purged pools are reused cleanly afterwards.
        let again: std::vec::Vec<NonNull<u8>> =
            (0..n).map(|_| heap.allocate(l).unwrap().cast()).collect();
        assert_consistent(&heap);
        for b in again {
            // SAFETY: live block, freed once.
            unsafe { heap.deallocate(b, l) };
        }
    }
    for b in survivors {
        // SAFETY: live block, freed once.
        unsafe { heap.deallocate(b, l) };
    }
    assert_eq!(heap.stats().blocks_in_use(), 0);
    assert_consistent(&heap);
}

#[test]
fn stats_print_cpython_layout() {
    let heap = Heap::new();
    let b = Box::new_in([0u8; 40], &heap);
    let text = heap.stats().to_string();
    assert!(text.starts_with("Small block threshold = 512, in 32 size classes."));
    assert!(text.contains("class   size   num pools   blocks in use  avail blocks"));
    // Class 2 (48-byte blocks), one pool, one block in use, 339 available.
    assert!(
        text.contains("    2     48           1               1           339"),
        "{text}"
    );
    assert!(text.contains("# arenas allocated current         =                    1"));
    assert!(text.contains("Total                              =            1,048,576"));
    drop(b);
}

#[test]
fn heap_moves_to_another_thread() {
    let heap = Heap::new();
    {
        let b = Box::new_in(5u32, &heap);
        assert_eq!(*b, 5);
    }
    let handle = std::thread::spawn(move || {
        let v: Vec<u64, _> = {
            let mut v = Vec::new_in(&heap);
            v.extend(0..scaled(10_000) as u64);
            v
        };
        let sum: u64 = v.iter().sum();
        drop(v);
        heap.check().unwrap();
        (sum, heap)
    });
    let (sum, heap) = handle.join().unwrap();
    let n = scaled(10_000) as u64;
    assert_eq!(sum, n * (n - 1) / 2);
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

/// `trim` parks the free pages of pools that keep survivors (the pool module's "Parked
/// pages"); the blocks in them come back, one page at a time, once the pool has handed out
/// every other block, and never over a survivor.
#[test]
fn trim_parks_free_pages_of_live_pools_and_they_come_back() {
    let heap = Heap::with_source(
        HeapConfig::new(),
        CountingSource::wrapping(pyalloc::MmapSource::new()),
    )
    .unwrap();
    let l = layout(64, 8);
    // Under Miri, enough for a few pools of four pages (nothing is purged there, but pages are
    // parked all the same).
    let n = if cfg!(miri) { 800 } else { 4000 };
    let fill = |block: NonNull<u8>, byte: u8| {
        // SAFETY: a live 64-byte block of ours.
        unsafe { block.as_ptr().write_bytes(byte, 64) }
    };
    let first: Vec<NonNull<u8>> = (0..n).map(|_| heap.allocate(l).unwrap().cast()).collect();
    let pools = heap.stats().classes()[3].pools;
    // One survivor in 300: most pools keep one, in one of their four pages.
    let mut survivors = Vec::new();
    for (i, &block) in first.iter().enumerate() {
        if i % 300 == 7 {
            fill(block, i as u8);
            survivors.push((block, i as u8));
        } else {
            // SAFETY: allocated above with `l`, freed once.
            unsafe { heap.deallocate(block, l) };
        }
    }
    let report = heap.trim();
    heap.check().unwrap();
    if cfg!(all(target_os = "linux", not(miri))) {
        assert!(
            report.bytes_purged >= survivors.len() * 4096,
            "{report:?} for {} survivors",
            survivors.len()
        );
    }
    // As many again: every parked block comes back, none overlaps a survivor.
    let second: Vec<NonNull<u8>> = (0..n)
        .map(|i| {
            let block = heap.allocate(l).unwrap().cast();
            fill(block, !(i as u8));
            block
        })
        .collect();
    heap.check().unwrap();
    for &(block, byte) in &survivors {
        // SAFETY: a live survivor, 64 bytes.
        let bytes = unsafe { std::slice::from_raw_parts(block.as_ptr(), 64) };
        assert!(
            bytes.iter().all(|&b| b == byte),
            "survivor {block:p} overwritten"
        );
    }
    assert_eq!(heap.stats().blocks_in_use(), n + survivors.len());
    // The parked pages were taken back, not passed over: no more pools than the first time.
    assert!(
        heap.stats().classes()[3].pools <= pools,
        "{} pools, {pools} before the trim",
        heap.stats().classes()[3].pools
    );
    for block in second
        .into_iter()
        .chain(survivors.into_iter().map(|(b, _)| b))
    {
        // SAFETY: live blocks allocated with `l`.
        unsafe { heap.deallocate(block, l) };
    }
    heap.check().unwrap();
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

/// A pool whose free blocks all lie in pages `trim` could park keeps one page of them on its
/// free list: a pool in use always has a free block (its class list's invariant).
#[test]
fn trim_leaves_a_free_block_in_a_pool_whose_live_blocks_fill_its_first_page() {
    let heap = Heap::new();
    let l = layout(64, 8);
    // 255 blocks of 64 bytes fill a 16 KiB pool; the first 63 lie in its first page.
    let blocks: std::vec::Vec<NonNull<u8>> =
        (0..255).map(|_| heap.allocate(l).unwrap().cast()).collect();
    let (first_page, rest) = blocks.split_at(63);
    for &block in rest {
        // SAFETY: live, freed once.
        unsafe { heap.deallocate(block, l) };
    }
    heap.trim();
    heap.check().unwrap();
    // Every block comes back, then all go.
    let again: std::vec::Vec<NonNull<u8>> = (0..rest.len())
        .map(|_| heap.allocate(l).unwrap().cast())
        .collect();
    assert_eq!(
        heap.stats().classes()[3].pools,
        1,
        "the parked blocks came back"
    );
    heap.check().unwrap();
    for &block in first_page.iter().chain(&again) {
        // SAFETY: live, freed once.
        unsafe { heap.deallocate(block, l) };
    }
    heap.check().unwrap();
}

/// A pool that was full and takes a free goes back to its class's list second, after the
/// head: the head keeps serving the class until it fills, and only then the pool that was
/// full, with every block freed into it meanwhile (CPython puts it first, and a live set
/// hovering at a pool's edge then fills it, empties a block of it and fills it again on every
/// pair).
#[test]
fn a_full_pool_that_takes_a_free_is_served_after_the_head() {
    let heap = Heap::new();
    let l = layout(64, 8);
    // 16 KiB pools with a 48-byte header.
    let per_pool = (16 * 1024 - 48) / 64;
    let pool_of = |block: NonNull<u8>| block.as_ptr() as usize & !(16 * 1024 - 1);
    // Two full pools and a third, the head, with one block handed out.
    let mut blocks: Vec<NonNull<u8>> = (0..2 * per_pool + 1)
        .map(|_| heap.allocate(l).unwrap().cast())
        .collect();
    let head = pool_of(blocks[2 * per_pool]);
    assert_ne!(pool_of(blocks[0]), head);
    // Two frees into the first (full) pool: it is listed again, behind the head.
    let (first, second) = (blocks.swap_remove(0), blocks.swap_remove(1));
    // SAFETY: allocated above with `l`, freed once.
    unsafe {
        heap.deallocate(first, l);
        heap.deallocate(second, l);
    }
    heap.check().unwrap();
    // The head serves its remaining blocks first...
    for _ in 0..per_pool - 1 {
        let block = heap.allocate(l).unwrap().cast();
        assert_eq!(pool_of(block), head, "the head serves until it fills");
        blocks.push(block);
    }
    // ...then the pool that was full hands out the two blocks it took back.
    for _ in 0..2 {
        let block: NonNull<u8> = heap.allocate(l).unwrap().cast();
        assert_eq!(pool_of(block), pool_of(first));
        blocks.push(block);
    }
    heap.check().unwrap();
    for block in blocks {
        // SAFETY: live blocks allocated with `l`, freed once.
        unsafe { heap.deallocate(block, l) };
    }
    assert_eq!(heap.stats().blocks_in_use(), 0);
}
