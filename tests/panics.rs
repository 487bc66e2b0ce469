//! Panics inside a heap: an arena source that panics, a panic hook that uses the heap that
//! panicked, and frees that arrive while the heap is busy. Run under Miri in CI: natively these
//! programs passed before the heap had one gated way in, and only Miri saw the aliasing.

use std::alloc::Layout;
use std::cell::{Cell, OnceCell};
use std::panic::{self, catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Once};

use pyalloc::{
    Allocator, ArenaSource, Box, FreeListed, Heap, HeapConfig, Pooled, Release, SystemSource,
    MAX_FREE_LIST_CAPACITY,
};
use pyalloc_testkit::{Counters, CountingSource, UnmapPanic};

/// What the panic hook does on the thread that armed it.
#[derive(Clone, Copy)]
enum HookAction {
    Nothing,
    /// Allocate 32 bytes from `HEAP` and record whether it worked.
    Allocate,
    /// Free this block of `HEAP`, of this layout.
    Free(NonNull<u8>, Layout),
    /// Free this block of `HEAP` without its size.
    FreeUnsized(NonNull<u8>),
}

thread_local! {
    /// This thread's heap, with no spares (its last free unmaps its arena) and a source whose
    /// `unmap_arena` panics, after unmapping, while `COUNTERS` says so.
    static HEAP: Heap = {
        let source = CountingSource::new();
        COUNTERS.with(|c| c.set(source.counters()).expect("one heap per thread"));
        // Immediate release: an arena goes back (and the source may panic) the moment its
        // last block is freed.
        let config = HeapConfig::new()
            .empty_arenas_kept(0)
            .release(Release::Immediate);
        Heap::with_source(config, source).unwrap()
    };
    static COUNTERS: OnceCell<Arc<Counters>> = const { OnceCell::new() };
    static HOOK: Cell<HookAction> = const { Cell::new(HookAction::Nothing) };
    static HOOK_ALLOCATED: Cell<Option<bool>> = const { Cell::new(None) };
}

const L32: Layout = Layout::new::<[u64; 4]>();
const L1000: Layout = Layout::new::<[u8; 1000]>();

/// Installs, once per process, a hook that does this thread's `HOOK` action and prints nothing
/// (other threads get the default hook).
fn install_hook() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = panic::take_hook();
        panic::set_hook(std::boxed::Box::new(move |info| {
            match HOOK.with(Cell::get) {
                HookAction::Nothing => default(info),
                HookAction::Allocate => HEAP.with(|heap| {
                    let got = heap.allocate(L32);
                    HOOK_ALLOCATED.with(|c| c.set(Some(got.is_ok())));
                    if let Ok(block) = got {
                        // SAFETY: allocated just above with `L32`.
                        unsafe { heap.deallocate(block.cast(), L32) };
                    }
                }),
                HookAction::FreeUnsized(block) => HEAP.with(|heap| {
                    // SAFETY: the test hands the hook a live unsized block of `HEAP`, freed once.
                    unsafe { heap.deallocate_unsized(block) }
                }),
                HookAction::Free(block, layout) => HEAP.with(|heap| {
                    // SAFETY: the test hands the hook a live block of `HEAP` with its layout,
                    // freed once.
                    unsafe { heap.deallocate(block, layout) }
                }),
            }
        }));
    });
}

/// Makes this thread's heap's source panic in `unmap_arena` (after unmapping), or not.
fn panic_on_unmap(on: bool) {
    HEAP.with(|_| ()); // the heap, and so its counters, exist
    COUNTERS.with(|c| {
        let counters = c.get().expect("set by HEAP");
        counters.set_unmap_panic(on.then_some(UnmapPanic::AfterUnmapping));
    });
}

/// Runs `f`, which must panic, with `action` for the hook.
fn panics_with_hook(action: HookAction, f: impl FnOnce()) {
    install_hook();
    HOOK.with(|h| h.set(action));
    let result = catch_unwind(AssertUnwindSafe(f));
    HOOK.with(|h| h.set(HookAction::Nothing));
    assert!(result.is_err(), "the operation was expected to panic");
}

#[derive(FreeListed)]
struct Cell3([u64; 3]);

#[test]
fn a_capacity_over_the_maximum_panics_before_the_heap_is_touched() {
    HEAP.with(|heap| {
        HOOK_ALLOCATED.with(|c| c.set(None));
        panics_with_hook(HookAction::Allocate, || {
            heap.set_free_list_capacity::<Cell3>(MAX_FREE_LIST_CAPACITY + 1)
        });
        // The hook ran while the panic was raised: the heap was not busy, so it could serve.
        assert_eq!(HOOK_ALLOCATED.with(Cell::get), Some(true));
        heap.check().unwrap();
        let value = Pooled::new_in(Cell3([1; 3]), heap);
        assert_eq!(value.0, [1; 3]);
    });
}

#[test]
fn a_source_that_panics_leaves_true_figures_and_refuses_re_entry() {
    HEAP.with(|heap| {
        let arenas_before = heap.stats().arenas_current();
        let block = Box::new_in([7u64; 4], heap);
        HOOK_ALLOCATED.with(|c| c.set(None));
        panic_on_unmap(true);
        // The last block of the only arena: freeing it unmaps the arena, and the source panics
        // while the heap is busy. The hook's allocation must be refused, not aliased.
        panics_with_hook(HookAction::Allocate, || drop(block));
        panic_on_unmap(false);
        assert_eq!(
            HOOK_ALLOCATED.with(Cell::get),
            Some(false),
            "re-entry was refused"
        );
        heap.check().unwrap();
        let stats = heap.stats();
        assert_eq!(
            stats.arenas_current(),
            arenas_before,
            "the unmapped arena is not counted"
        );
        assert_eq!(stats.blocks_in_use(), 0);
        // The heap keeps working.
        let again = Box::new_in(1u8, heap);
        assert_eq!(*again, 1);
    });
}

#[test]
fn a_free_from_a_busy_heaps_panic_hook_is_deferred_not_lost() {
    HEAP.with(|heap| {
        // A large block lives outside the arenas; the pool block is its arena's only one.
        let large = heap.allocate(L1000).unwrap().cast::<u8>();
        let block = Box::new_in([7u64; 4], heap);
        panic_on_unmap(true);
        panics_with_hook(HookAction::Free(large, L1000), || drop(block));
        panic_on_unmap(false);
        // The hook's free arrived while the heap was busy: deferred, then done on the next
        // way in. Nothing is leaked and nothing was aliased.
        heap.check().unwrap();
        let stats = heap.stats();
        assert_eq!(stats.large_allocations(), 0);
        assert_eq!(stats.blocks_in_use(), 0);
    });
}

#[test]
fn a_free_without_a_size_from_a_busy_heaps_panic_hook_is_deferred_not_lost() {
    HEAP.with(|heap| {
        // A large unsized block is a `malloc` block: under Miri, a free that was lost would be
        // reported as a leak.
        let large = heap.allocate_unsized(2000).unwrap();
        let small = heap.allocate_unsized(16).unwrap();
        let block = Box::new_in([7u64; 4], heap);
        // SAFETY: a live unsized block, freed once.
        unsafe { heap.deallocate_unsized(small) };
        panic_on_unmap(true);
        panics_with_hook(HookAction::FreeUnsized(large), || drop(block));
        panic_on_unmap(false);
        heap.check().unwrap();
        assert_eq!(heap.stats().blocks_in_use(), 0);
    });
}

#[test]
fn an_allocation_from_inside_the_arena_source_is_an_alloc_error() {
    /// Calls back into its own heap from `map_arena`: the misuse under test.
    struct AllocatesInMap {
        heap: Arc<AtomicPtr<Heap>>,
        refused: Arc<AtomicBool>,
    }
    // SAFETY: forwards to `SystemSource`, which upholds the contract; the call back into the
    // heap breaks "no method calls back into the heap", and the heap must refuse it.
    unsafe impl ArenaSource for AllocatesInMap {
        fn map_arena(&mut self, size: usize) -> Option<NonNull<u8>> {
            // SAFETY: set to the heap, which stays in place while it calls its source.
            let heap = unsafe { &*self.heap.load(Ordering::Relaxed) };
            let refused = heap.allocate(L32).is_err();
            self.refused.store(refused, Ordering::Relaxed);
            SystemSource.map_arena(size)
        }

        unsafe fn unmap_arena(&mut self, arena: NonNull<u8>, size: usize) {
            // SAFETY: forwarded contract.
            unsafe { SystemSource.unmap_arena(arena, size) }
        }
    }
    let at = Arc::new(AtomicPtr::new(std::ptr::null_mut()));
    let refused = Arc::new(AtomicBool::new(false));
    let source = AllocatesInMap {
        heap: at.clone(),
        refused: refused.clone(),
    };
    let heap = Heap::with_source(HeapConfig::new(), source).unwrap();
    at.store(std::ptr::from_ref(&heap).cast_mut(), Ordering::Relaxed);
    let block = Box::new_in(5u32, &heap);
    assert!(
        refused.load(Ordering::Relaxed),
        "the re-entrant allocation was refused"
    );
    assert_eq!(*block, 5);
    drop(block);
    heap.check().unwrap();
}
