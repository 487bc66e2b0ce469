//! Layer 3 does not pin layer 1: free lists that serve nothing while the heap shrinks are
//! drained and shut, without any explicit call, and reopen on their next miss.

use pyalloc::{FreeListed, Heap, Pooled};
use pyalloc_testkit::rng::Rng;

#[derive(FreeListed)]
#[free_list(capacity = 100)]
struct Float(#[allow(dead_code)] f64);

#[derive(FreeListed)]
#[free_list(capacity = 80)]
struct Pair(#[allow(dead_code)] [u64; 6]);

/// Frees `values` in a random order.
fn drop_at_random<T>(mut values: Vec<T>, rng: &mut Rng) {
    while !values.is_empty() {
        let at = rng.usize(..values.len());
        drop(values.swap_remove(at));
    }
}

#[test]
fn slots_on_free_lists_stop_pinning_arenas_once_everything_is_freed() {
    // CPython's float free list after a million floats freed at random keeps dozens of arenas
    // (measured on 3.11: 31 arenas stay until gc.collect()). Here the lists shut while the
    // heap shrinks, and what remains is the spare arena and at most one more.
    let heap = Heap::new();
    let mut rng = Rng::with_seed(7);
    let floats: Vec<_> = (0..200_000)
        .map(|i| Pooled::new_in(Float(i as f64), &heap))
        .collect();
    let pairs: Vec<_> = (0..50_000)
        .map(|i| Pooled::new_in(Pair([i; 6]), &heap))
        .collect();
    let peak = heap.stats().arenas_current();
    assert!(peak >= 5, "{peak} arenas at the peak");
    drop_at_random(floats, &mut rng);
    drop_at_random(pairs, &mut rng);
    heap.check().unwrap();
    let stats = heap.stats();
    assert!(
        stats.arenas_current() <= 2,
        "{} arenas left of {peak}, no call made:\n{stats}",
        stats.arenas_current()
    );
    let float = heap.free_list_stats::<Float>();
    assert!(float.idle_drains >= 1, "{float:?}");
}

#[test]
fn a_shut_list_reopens_on_its_next_miss_and_hits_again() {
    let heap = Heap::new();
    let mut rng = Rng::with_seed(11);
    let floats: Vec<_> = (0..200_000)
        .map(|i| Pooled::new_in(Float(i as f64), &heap))
        .collect();
    drop_at_random(floats, &mut rng);
    let shut = heap.free_list_stats::<Float>();
    assert!(shut.idle_drains >= 1, "{shut:?}");
    assert_eq!(
        shut.capacity, 100,
        "a shut list reports the capacity it reopens with"
    );

    // A miss reopens it; the value's slot then rests on it, and the next one is a hit.
    let misses = shut.misses;
    drop(Pooled::new_in(Float(1.0), &heap));
    let hits = heap.free_list_stats::<Float>().hits;
    drop(Pooled::new_in(Float(2.0), &heap));
    let after = heap.free_list_stats::<Float>();
    assert!(after.misses > misses, "{after:?}");
    assert_eq!(after.hits, hits + 1, "{after:?}");
    heap.check().unwrap();
}

#[test]
fn a_list_that_serves_while_the_heap_shrinks_stays_open() {
    let heap = Heap::new();
    let mut rng = Rng::with_seed(13);
    let floats: Vec<_> = (0..200_000)
        .map(|i| Pooled::new_in(Float(i as f64), &heap))
        .collect();
    // Pairs are in use throughout: one made and dropped (a hit) for every float freed.
    let mut floats = floats;
    let mut pair = Some(Pooled::new_in(Pair([0; 6]), &heap));
    while !floats.is_empty() {
        let at = rng.usize(..floats.len());
        drop(floats.swap_remove(at));
        pair = None;
        pair = pair.or_else(|| Some(Pooled::new_in(Pair([1; 6]), &heap)));
    }
    let pairs = heap.free_list_stats::<Pair>();
    assert_eq!(pairs.idle_drains, 0, "{pairs:?}");
    assert!(heap.free_list_stats::<Float>().idle_drains >= 1);
    drop(pair);
    heap.check().unwrap();
}
