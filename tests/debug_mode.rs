//! The debug mode: every misuse the type system cannot stop is reported, by name.
//!
//! Each test provokes one misuse on purpose; the raw-pointer writes below are exactly the bugs
//! the mode exists to catch, made on memory the heap still owns.

use std::alloc::Layout;
use std::ptr::NonNull;

use pyalloc::{
    Allocator, Box, FreeListId, FreeListKey, FreeListed, Heap, HeapConfig, Pooled, Vec, FREED_BYTE,
    FRESH_BYTE, GUARD_BYTE,
};

fn debug_heap() -> Heap {
    Heap::with_config(HeapConfig::new().debug(true)).unwrap()
}

fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

fn alloc(heap: &Heap, l: Layout) -> NonNull<u8> {
    heap.allocate(l).unwrap().cast()
}

#[test]
fn fresh_blocks_are_filled_and_guarded() {
    let heap = debug_heap();
    for (size, align) in [(24, 8), (500, 16), (40, 64), (3000, 8)] {
        let l = layout(size, align);
        let block = heap.allocate(l).unwrap();
        assert_eq!(block.len(), size);
        let p = block.cast::<u8>().as_ptr();
        assert_eq!(p as usize % align, 0);
        // SAFETY: the block and its guards (inside the inner block) are readable.
        unsafe {
            assert!((0..size).all(|i| *p.add(i) == FRESH_BYTE));
            assert!((1..=16).all(|i| *p.sub(i) == GUARD_BYTE));
            assert!((0..16).all(|i| *p.add(size + i) == GUARD_BYTE));
            heap.deallocate(NonNull::new_unchecked(p), l);
        }
    }
    heap.check().unwrap();
}

#[test]
#[cfg_attr(miri, ignore = "reads freed memory on purpose")]
fn freed_blocks_are_filled_with_the_dead_pattern() {
    let heap = debug_heap();
    let l = layout(64, 8);
    let p = alloc(&heap, l);
    // SAFETY: the block is live; after the free the test peeks at memory the heap still maps.
    unsafe {
        heap.deallocate(p, l);
        assert!((8..64).all(|i| *p.as_ptr().add(i) == FREED_BYTE));
    }
}

/// Allocates `size` bytes in a debug heap, writes one byte at `offset` from the block's start
/// (out of bounds on purpose: into a guard, which absorbs it), then frees the block.
fn write_out_of_bounds_then_free(size: usize, offset: isize) {
    let heap = debug_heap();
    let l = layout(size, 8);
    let p = alloc(&heap, l);
    // SAFETY: the out-of-bounds write is the bug under test; it lands in the block's guard,
    // inside memory the heap owns, and the free reports it before changing anything.
    unsafe {
        p.as_ptr().offset(offset).write(0);
        heap.deallocate(p, l);
    }
}

#[test]
#[should_panic(expected = "pyalloc debug: buffer overrun: block")]
fn overrun_is_caught_on_free() {
    write_out_of_bounds_then_free(24, 24);
}

#[test]
#[should_panic(expected = "pyalloc debug: buffer overrun: block")]
fn overrun_of_a_large_block_is_caught() {
    write_out_of_bounds_then_free(1000, 1003);
}

#[test]
#[should_panic(expected = "pyalloc debug: buffer underrun: block")]
fn underrun_is_caught_on_free() {
    write_out_of_bounds_then_free(24, -1);
}

#[test]
fn check_reports_an_overrun_before_any_free() {
    let heap = debug_heap();
    let l = layout(100, 4);
    let p = alloc(&heap, l);
    // SAFETY: deliberately past the end, into the guard.
    unsafe { p.as_ptr().add(101).write(7) };
    let message = heap.check().unwrap_err();
    assert!(message.contains("buffer overrun"), "{message}");
    assert!(message.contains("of 100 bytes"), "{message}");
    // SAFETY: repair the guard so the block can be freed cleanly.
    unsafe {
        p.as_ptr().add(101).write(GUARD_BYTE);
        heap.deallocate(p, l);
    }
    heap.check().unwrap();
}

#[test]
#[should_panic(expected = "pyalloc debug: double free: block")]
fn double_free_is_caught() {
    let heap = debug_heap();
    let l = layout(32, 8);
    let p = alloc(&heap, l);
    // SAFETY: the second free is the bug under test; the mode reports it before acting.
    unsafe {
        heap.deallocate(p, l);
        heap.deallocate(p, l);
    }
}

#[test]
#[should_panic(expected = "pyalloc debug: wrong layout: block")]
fn free_with_another_layout_is_caught() {
    let heap = debug_heap();
    let p = alloc(&heap, layout(32, 8));
    // SAFETY: the wrong layout is the bug under test.
    unsafe { heap.deallocate(p, layout(48, 8)) };
}

#[test]
#[should_panic(expected = "pyalloc debug: foreign pointer: block")]
fn free_to_another_heap_is_caught() {
    let mine = debug_heap();
    let theirs = debug_heap();
    let l = layout(32, 8);
    let p = alloc(&mine, l);
    // SAFETY: freeing to the wrong heap is the bug under test.
    unsafe { theirs.deallocate(p, l) };
}

#[test]
#[should_panic(expected = "pyalloc debug: write after free: memory at")]
fn write_after_free_is_caught_when_the_block_is_reused() {
    let heap = debug_heap();
    let l = layout(40, 8);
    let p = alloc(&heap, l);
    // SAFETY: the write after free is the bug under test; the memory stays mapped.
    unsafe {
        heap.deallocate(p, l);
        p.as_ptr().add(10).write(1);
    }
    let _again = alloc(&heap, l);
}

#[test]
fn collections_work_in_debug_mode() {
    let heap = debug_heap();
    let mut v = Vec::new_in(&heap);
    for i in 0..2000u32 {
        v.push(i);
    }
    v.shrink_to_fit();
    let mut map = hashbrown::HashMap::new_in(&heap);
    for i in 0..300u32 {
        map.insert(i, Box::new_in(i, &heap));
    }
    assert_eq!(*map[&299], 299);
    heap.check().unwrap();
    let stats = heap.stats();
    assert_eq!(stats.total(), stats.arena_bytes());
    drop((v, map));
    heap.check().unwrap();
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

struct Node {
    value: u64,
    _pad: [u64; 3],
}

// SAFETY: `ID` is declared here for `Node` alone.
unsafe impl FreeListed for Node {
    const CAPACITY: usize = 4;
    const NAME: &'static str = "Node";
    fn free_list_id() -> &'static FreeListId {
        static ID: FreeListId = FreeListId::new();
        &ID
    }
}

#[test]
fn pooled_values_work_in_debug_mode() {
    let heap = debug_heap();
    let a = Pooled::new_in(
        Node {
            value: 1,
            _pad: [0; 3],
        },
        &heap,
    );
    let slot = Pooled::as_ptr(&a);
    drop(a);
    let b = Pooled::new_in(
        Node {
            value: 2,
            _pad: [0; 3],
        },
        &heap,
    );
    assert_eq!(Pooled::as_ptr(&b), slot, "LIFO holds in debug mode too");
    assert_eq!(b.value, 2);
    let stats = heap.free_list_stats::<Node>();
    assert_eq!((stats.hits, stats.pushes, stats.misses), (1, 1, 1));
    drop(b);
    heap.check().unwrap();
    assert_eq!(heap.clear_free_lists(), 1);
    assert_eq!(heap.stats().blocks_in_use(), 0);
}

#[test]
#[should_panic(expected = "pyalloc debug: write after free: slot of the Node free list")]
fn write_to_a_slot_on_a_free_list_is_caught_when_popped() {
    let heap = debug_heap();
    let a = Pooled::new_in(
        Node {
            value: 1,
            _pad: [0; 3],
        },
        &heap,
    );
    let slot = Pooled::as_ptr(&a);
    drop(a);
    // SAFETY: the write to a freed slot is the bug under test; the slot stays mapped.
    unsafe { (*slot.as_ptr())._pad[1] = 99 };
    let _b = Pooled::new_in(
        Node {
            value: 2,
            _pad: [0; 3],
        },
        &heap,
    );
}

#[test]
#[should_panic(expected = "pyalloc debug: double free: slot")]
fn double_free_of_a_keyed_slot_is_caught() {
    let heap = debug_heap();
    let key = FreeListKey::new("pair", layout(16, 8), 10);
    let slot = heap.alloc_slot(&key).unwrap();
    // SAFETY: the second free is the bug under test.
    unsafe {
        heap.free_slot(&key, slot);
        heap.free_slot(&key, slot);
    }
}

#[test]
#[should_panic(expected = "pyalloc debug: foreign pointer")]
fn a_keyed_slot_freed_to_another_heap_is_caught() {
    let mine = debug_heap();
    let theirs = debug_heap();
    let key = FreeListKey::new("pair", layout(16, 8), 10);
    let slot = mine.alloc_slot(&key).unwrap();
    // SAFETY: the wrong heap is the bug under test.
    unsafe { theirs.free_slot(&key, slot) };
}

// ---------------------------------------------------------------------------------------------
// Writes after free that the debug mode used to miss: each test below failed (a crash, a
// silent corruption, or no panic) before the debug mode became a layer of its own.

fn node(value: u64) -> Node {
    Node {
        value,
        _pad: [0; 3],
    }
}

#[test]
#[should_panic(expected = "pyalloc debug: write after free: slot of the Node free list")]
fn write_to_the_first_word_of_a_resting_slot_is_caught() {
    let heap = debug_heap();
    let a = Pooled::new_in(node(1), &heap);
    let slot = Pooled::as_ptr(&a);
    drop(a);
    // SAFETY: the write after free is the bug under test. The slot's first word held the
    // list's link before slots rested out of band; following it crashed.
    unsafe { slot.as_ptr().cast::<u64>().write(0x4141_4141) };
    let _b = Pooled::new_in(node(2), &heap);
}

#[test]
#[cfg_attr(miri, ignore = "writes into freed memory on purpose")]
fn write_after_free_into_a_large_block_is_caught_by_check() {
    let heap = debug_heap();
    let l = layout(1000, 8);
    let p = alloc(&heap, l);
    // SAFETY: the write after free is the bug under test; the block waits in the quarantine.
    unsafe {
        heap.deallocate(p, l);
        p.as_ptr().add(500).write(1);
    }
    let message = heap.check().unwrap_err();
    assert!(message.contains("write after free: memory at"), "{message}");
    assert!(message.contains("byte 516 is 0x01"), "{message}");
}

#[test]
#[should_panic(expected = "pyalloc debug: write after free: memory at")]
#[cfg_attr(miri, ignore = "writes into freed memory on purpose")]
fn write_after_free_into_a_large_block_is_caught_by_trim() {
    let heap = debug_heap();
    let l = layout(4000, 8);
    let p = alloc(&heap, l);
    // SAFETY: the write after free is the bug under test.
    unsafe {
        heap.deallocate(p, l);
        p.as_ptr().write(1);
    }
    heap.trim();
}

#[test]
#[should_panic(expected = "pyalloc debug: write after free: memory at")]
#[cfg_attr(miri, ignore = "writes into freed memory on purpose")]
fn write_after_free_into_a_large_block_is_caught_when_it_leaves_the_quarantine() {
    let heap = debug_heap();
    let l = layout(2000, 8);
    let p = alloc(&heap, l);
    // SAFETY: the write after free is the bug under test.
    unsafe {
        heap.deallocate(p, l);
        p.as_ptr().add(1999).write(1);
    }
    // Enough frees to push the block out of the quarantine.
    for _ in 0..100 {
        let q = alloc(&heap, l);
        // SAFETY: just allocated with `l`.
        unsafe { heap.deallocate(q, l) };
    }
}

#[test]
#[should_panic(expected = "pyalloc debug: write after free: memory at")]
#[cfg_attr(miri, ignore = "writes into freed memory on purpose")]
fn write_after_free_is_caught_before_the_pool_is_recycled() {
    let heap = debug_heap();
    let l = layout(40, 8);
    let a = alloc(&heap, l);
    let b = alloc(&heap, l);
    // SAFETY: the write after free is the bug under test. Freeing `b` empties the pool, which
    // then could serve another class and overwrite the evidence.
    unsafe {
        heap.deallocate(a, l);
        a.as_ptr().add(10).write(1);
        heap.deallocate(b, l);
    }
}

#[test]
#[should_panic(expected = "points outside its pool")]
#[cfg_attr(miri, ignore = "writes into freed memory on purpose")]
fn a_corrupted_free_block_link_is_caught_before_it_is_followed() {
    let heap = debug_heap();
    let l = layout(40, 8);
    let _keep = alloc(&heap, l); // keeps the pool in use when `a` is freed
    let a = alloc(&heap, l);
    // SAFETY: the write after free is the bug under test: it lands on the block's link.
    unsafe {
        heap.deallocate(a, l);
        a.as_ptr().sub(16).cast::<usize>().write(0x10);
    }
    let _again = alloc(&heap, l);
}

#[test]
#[should_panic(expected = "pyalloc debug: buffer overrun: block")]
fn an_overrun_into_a_pool_blocks_rounding_is_caught() {
    // 24 bytes: inner block 16 + 24 + 16 = 56, served by a 64-byte block, so the trailing
    // guard is 24 bytes long; a write 20 bytes past the end used to go unseen.
    write_out_of_bounds_then_free(24, 24 + 20);
}

/// A debug heap with one `Node` resting on its list, whose slot was then written, and the slot.
fn heap_with_a_written_resting_slot() -> (Heap, NonNull<Node>) {
    let heap = debug_heap();
    let a = Pooled::new_in(node(1), &heap);
    let slot = Pooled::as_ptr(&a);
    drop(a);
    // SAFETY: the write after free is the bug under test.
    unsafe { (*slot.as_ptr()).value = 7 };
    (heap, slot)
}

#[test]
#[should_panic(expected = "pyalloc debug: write after free: slot of the Node free list")]
fn clearing_the_free_lists_checks_each_slot() {
    heap_with_a_written_resting_slot().0.clear_free_lists();
}

#[test]
#[should_panic(expected = "pyalloc debug: write after free: slot of the Node free list")]
fn trim_checks_each_slot() {
    heap_with_a_written_resting_slot().0.trim();
}

#[test]
#[should_panic(expected = "pyalloc debug: write after free: slot of the Node free list")]
fn shrinking_a_free_list_checks_each_slot_it_evicts() {
    heap_with_a_written_resting_slot()
        .0
        .set_free_list_capacity::<Node>(0);
}

#[test]
fn check_reports_a_written_resting_slot() {
    let (heap, slot) = heap_with_a_written_resting_slot();
    let message = heap.check().unwrap_err();
    assert!(message.contains("slot of the Node free list"), "{message}");
    assert!(message.contains("byte 0 is 0x07"), "{message}");
    // SAFETY: the slot is still the heap's; restoring its fill undoes the bug under test.
    unsafe {
        slot.as_ptr()
            .cast::<u8>()
            .write_bytes(FREED_BYTE, size_of::<Node>())
    };
    heap.check().unwrap();
    assert_eq!(heap.clear_free_lists(), 1);
}

#[test]
fn debug_stats_keep_quarantined_blocks_apart() {
    let heap = debug_heap();
    let l = layout(3000, 8);
    let p = alloc(&heap, l);
    assert_eq!(heap.stats().large_allocations(), 1);
    // SAFETY: allocated just above with `l`.
    unsafe { heap.deallocate(p, l) };
    let stats = heap.stats();
    assert_eq!(stats.large_allocations(), 0);
    assert_eq!(stats.quarantined(), (1, 16 + 3000 + 16));
    assert!(stats
        .to_string()
        .contains("1 quarantined blocks (debug mode)"));
    heap.trim();
    assert_eq!(heap.stats().quarantined(), (0, 0));
    heap.check().unwrap();
}
