//! Memcheck sees inside pools (the `valgrind` feature). `.ci/valgrind.sh` runs this binary
//! under `valgrind --error-exitcode=99`: the first test must leave memcheck silent, and each
//! `#[ignore]`d one, run alone, makes a mistake that memcheck must report (exit 99), though the
//! memory stays mapped in an arena and a plain run would notice nothing.
#![cfg(feature = "valgrind")]

use core::alloc::Layout;
use core::hint::black_box;
use core::ptr::{self, NonNull};
use std::sync::Mutex;

use pyalloc_core::allocator_api2::alloc::Allocator;
use pyalloc_core::allocator_api2::boxed::Box;
use pyalloc_core::allocator_api2::vec::Vec;
use pyalloc_core::{FreeListId, FreeListKey, FreeListed, Heap, HeapConfig, Pooled};

struct Obj {
    refcount: u64,
    payload: [u64; 3],
}

// SAFETY: `ID` is declared here for `Obj` alone.
unsafe impl FreeListed for Obj {
    const CAPACITY: usize = 8;
    const NAME: &'static str = "Obj";
    fn free_list_id() -> &'static FreeListId {
        static ID: FreeListId = FreeListId::new();
        &ID
    }
}

/// Everything the allocator does by itself (carving, free lists, reuse of emptied pools and
/// arenas, heap checks, the debug mode, a heap dropped with blocks still live) reports nothing.
#[test]
fn the_allocators_own_work_is_clean() {
    for config in [
        HeapConfig::new(),
        HeapConfig::new()
            .arena_size(16 << 10)
            .pool_size(4 << 10)
            .empty_arenas_kept(0),
        HeapConfig::new().debug(true),
    ] {
        let heap = Heap::with_config(config).unwrap();
        for round in 0..3u64 {
            let mut boxes = Vec::new_in(&heap);
            for i in 0..500u64 {
                boxes.push(Box::new_in([i; 5], &heap));
            }
            let mut objs = std::vec::Vec::new();
            for i in 0..20 {
                objs.push(Pooled::new_in(
                    Obj {
                        refcount: i,
                        payload: [round; 3],
                    },
                    &heap,
                ));
            }
            heap.check().unwrap();
            boxes.retain(|b| b[0] % 3 == 0);
            boxes.shrink_to_fit();
            objs.truncate(5);
            assert_eq!(objs[4].refcount + objs[4].payload[0], 4 + round);
            heap.check().unwrap();
            drop(objs);
            let key = FreeListKey::new("pair", Layout::new::<[u64; 2]>(), 4);
            let slots: std::vec::Vec<NonNull<u8>> =
                (0..6).map(|_| heap.alloc_slot(&key).unwrap()).collect();
            for slot in slots {
                // SAFETY: each slot came from `alloc_slot` with `key` and holds nothing.
                unsafe { heap.free_slot(&key, slot) };
            }
            heap.check().unwrap();
            assert_eq!(boxes.iter().map(|b| b[4]).sum::<u64>() % 3, 0);
        }
        heap.trim();
        // A block left live when its heap is dropped goes back to the OS with its arena: no
        // leak, and no confusion when a later arena reuses the address.
        core::mem::forget(Box::new_in(7u32, &heap));
        heap.check().unwrap();
    }
}

fn one_block(heap: &Heap) -> (NonNull<u64>, Layout) {
    let layout = Layout::new::<[u64; 4]>();
    (heap.allocate(layout).unwrap().cast(), layout)
}

#[test]
#[ignore = "a deliberate use after free: run by .ci/valgrind.sh, memcheck must report it"]
fn read_after_free_of_a_pool_block() {
    let heap = Heap::new();
    let (p, layout) = one_block(&heap);
    // SAFETY: not safe: reading the block after its free is the bug memcheck must see.
    unsafe {
        p.as_ptr().add(2).write(42);
        heap.deallocate(p.cast(), layout);
        black_box(ptr::read_volatile(p.as_ptr().add(2)));
    }
}

#[test]
#[ignore = "a deliberate use after free: run by .ci/valgrind.sh, memcheck must report it"]
fn write_after_free_of_a_pool_block() {
    let heap = Heap::new();
    let (p, layout) = one_block(&heap);
    // SAFETY: not safe: writing a freed block is the bug memcheck must see (past its first
    // word, the free-list link, so that the heap survives to exit cleanly).
    unsafe {
        heap.deallocate(p.cast(), layout);
        ptr::write_volatile(p.as_ptr().add(2), 1);
    }
}

#[test]
#[ignore = "a deliberate uninitialised read: run by .ci/valgrind.sh, memcheck must report it"]
fn branch_on_uninitialised_pool_memory() {
    let heap = Heap::new();
    let (p, layout) = one_block(&heap);
    // SAFETY: not safe: deciding on bytes nobody wrote is the bug memcheck must see.
    unsafe {
        if ptr::read_volatile(p.as_ptr().add(1)) == 42 {
            println!("the answer");
        }
        heap.deallocate(p.cast(), layout);
    }
}

#[test]
#[ignore = "a deliberate use after free: run by .ci/valgrind.sh, memcheck must report it"]
fn read_of_a_pooled_value_on_its_free_list() {
    let heap = Heap::new();
    let obj = Pooled::new_in(
        Obj {
            refcount: 1,
            payload: [0; 3],
        },
        &heap,
    );
    let stale = Pooled::as_ptr(&obj);
    drop(obj);
    // SAFETY: not safe: the slot rests on the free list; reading it is the bug.
    black_box(unsafe { ptr::read_volatile(&raw const (*stale.as_ptr()).refcount) });
}

/// A heap that outlives `main`, so a block lost in it is still in a mapped arena at exit.
static IMMORTAL: Mutex<Option<Heap>> = Mutex::new(None);

#[test]
#[ignore = "a deliberate leak: run by .ci/valgrind.sh, memcheck must report it"]
fn leaked_pool_block_is_definitely_lost() {
    let mut guard = IMMORTAL.lock().unwrap();
    let heap = guard.insert(Heap::new());
    let (p, _) = one_block(heap);
    // SAFETY: the block is live; the only pointer to it is then dropped: the leak.
    unsafe { p.as_ptr().write(1) };
    black_box(p);
}
