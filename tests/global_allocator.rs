//! `Global` as this test binary's `#[global_allocator]`: everything Rust allocates here, the
//! test harness included, goes through pyalloc, in the places a global allocator is called
//! from: before `main`, in thread-local destructors, during thread exit, and re-entrantly
//! from inside its own slow paths (`Global::stats()` builds its tables while the heap is busy).

// This binary installs `Global` itself: not with the facade's `test-global-allocator`.
#![cfg(not(feature = "test-global-allocator"))]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;

use pyalloc::Global;

#[global_allocator]
static GLOBAL: Global = Global;

/// Set by a constructor that runs before `main` (the way C++ static initialisers and
/// `ctor`-style crates allocate): a pool block and a large block.
static BEFORE_MAIN: AtomicUsize = AtomicUsize::new(0);

extern "C" fn allocate_before_main() {
    let small = Box::new([7u8; 40]);
    let large = vec![9u8; 10_000];
    BEFORE_MAIN.store(
        small.iter().map(|&b| b as usize).sum::<usize>() + large.len(),
        Ordering::SeqCst,
    );
}

#[used]
#[link_section = ".init_array"]
static CONSTRUCTOR: extern "C" fn() = allocate_before_main;

#[test]
fn allocation_before_main_works() {
    assert_eq!(BEFORE_MAIN.load(Ordering::SeqCst), 7 * 40 + 10_000);
}

/// Allocates and frees in its destructor, which runs during thread exit, possibly after the
/// thread's heap was abandoned.
struct AllocatesOnDrop(RefCell<Vec<String>>);

impl Drop for AllocatesOnDrop {
    fn drop(&mut self) {
        let joined = self.0.borrow().join(",");
        let copy: Vec<String> = joined.split(',').map(str::to_owned).collect();
        assert_eq!(copy.len(), self.0.borrow().len());
        DROPPED.fetch_add(copy.len(), Ordering::SeqCst);
    }
}

static DROPPED: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    static ON_EXIT: AllocatesOnDrop = const { AllocatesOnDrop(RefCell::new(Vec::new())) };
}

#[test]
fn thread_local_destructors_allocate_during_thread_exit() {
    let before = DROPPED.load(Ordering::SeqCst);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            thread::spawn(move || {
                ON_EXIT.with(|v| v.0.borrow_mut().extend((0..50).map(|i| format!("{t}-{i}"))));
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(DROPPED.load(Ordering::SeqCst) - before, 200);
}

#[test]
fn std_collections_cross_threads() {
    let (tx, rx) = mpsc::channel::<(HashMap<String, Vec<u64>>, BTreeMap<u64, Box<str>>)>();
    let producer = thread::spawn(move || {
        for round in 0..50u64 {
            let map: HashMap<String, Vec<u64>> = (0..40)
                .map(|i| (format!("key-{round}-{i}"), (0..i).collect()))
                .collect();
            let tree = (0..40)
                .map(|i| {
                    (
                        i,
                        format!("{i:>width$}", width = i as usize).into_boxed_str(),
                    )
                })
                .collect();
            tx.send((map, tree)).unwrap();
        }
    });
    let mut total = 0usize;
    for (map, tree) in rx {
        total += map.values().map(Vec::len).sum::<usize>();
        assert!(tree
            .iter()
            .all(|(&k, v)| v.len() == (k as usize).max(1) && v.trim() == k.to_string()));
    }
    producer.join().unwrap();
    assert_eq!(total, 50 * (0..40).sum::<usize>());
}

#[test]
fn statistics_are_built_while_the_heap_is_busy() {
    let keep: Vec<Box<[u8; 100]>> = (0..1000).map(|i| Box::new([i as u8; 100])).collect();
    // `stats()` collects its tables inside the heap's slow path: those allocations are served
    // by the fallback heap, not refused.
    let stats = Global::stats();
    assert!(stats.blocks_in_use() >= 1000, "{}", stats.blocks_in_use());
    Global::check().unwrap();
    drop(keep);
    let text = format!("{stats}");
    assert!(text.contains("arenas"), "{text}");
}
