//! `#[derive(FreeListed)]` and `Pooled` end to end, through the facade only: free-list order
//! and bounds, the fall-through to layer 2, clearing, heap separation, destructor accounting
//! (including a destructor that panics), unusual layouts, the `Pooled` API, allocation
//! failure, and a property test mixing pooled values with plain `Box` traffic.

use std::cell::Cell;
use std::fmt;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};

use proptest::prelude::*;
use pyalloc::{Box, FailingSource, FreeListed, Heap, HeapConfig, Pooled, SystemSource, Vec};

#[derive(FreeListed, Debug, PartialEq)]
#[free_list(capacity = 100)]
struct Float(f64);

#[derive(FreeListed, Debug)]
#[free_list(capacity = 4)]
struct Small(u64);

/// Counts its drops in a cell the test owns (and shows that a lifetime parameter derives).
#[derive(FreeListed)]
#[free_list(capacity = 8)]
struct Counted<'a> {
    drops: &'a Cell<usize>,
    value: u64,
}

impl Drop for Counted<'_> {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

fn counted(drops: &Cell<usize>, value: u64) -> Counted<'_> {
    Counted { drops, value }
}

/// The slot addresses of `values`, in order.
fn slots<T: FreeListed>(values: &[Pooled<'_, T>]) -> std::vec::Vec<NonNull<T>> {
    values.iter().map(Pooled::as_ptr).collect()
}

#[test]
fn freed_slots_come_back_last_in_first_out() {
    let heap = Heap::new();
    let first: std::vec::Vec<_> = (0..3)
        .map(|i| Pooled::new_in(Float(i.into()), &heap))
        .collect();
    let freed = slots(&first);
    drop(first); // drops 0, 1, 2 in order: slot 2 is on top
    let again: std::vec::Vec<_> = (0..3)
        .map(|i| Pooled::new_in(Float(i.into()), &heap))
        .collect();
    assert_eq!(slots(&again), [freed[2], freed[1], freed[0]]);
    let stats = heap.free_list_stats::<Float>();
    assert_eq!(
        (stats.misses, stats.pushes, stats.hits, stats.len),
        (3, 3, 3, 0)
    );
}

#[test]
fn a_full_list_gives_further_slots_back_to_layer_2() {
    const K: usize = 3;
    let heap = Heap::new();
    let capacity = Small::CAPACITY;
    let values: std::vec::Vec<_> = (0..capacity + K)
        .map(|i| Pooled::new_in(Small(i as u64), &heap))
        .collect();
    assert_eq!(heap.stats().blocks_in_use(), capacity + K);
    drop(values);
    let stats = heap.free_list_stats::<Small>();
    assert_eq!(stats.capacity, capacity);
    assert_eq!(stats.len, capacity);
    assert_eq!(stats.pushes, capacity as u64);
    assert_eq!(stats.overflows, K as u64);
    // The K overflowing slots were freed to layer 2; the `capacity` kept ones still count as
    // blocks in use (they rest on the list).
    assert_eq!(heap.stats().blocks_in_use(), capacity);
    heap.check().unwrap();
}

#[test]
fn an_empty_list_falls_through_to_layer_2() {
    let heap = Heap::new();
    let a = Pooled::new_in(Small(1), &heap);
    let b = Pooled::new_in(Small(2), &heap);
    let stats = heap.free_list_stats::<Small>();
    assert_eq!((stats.misses, stats.hits, stats.len), (2, 0, 0));
    assert_ne!(Pooled::as_ptr(&a), Pooled::as_ptr(&b));
    assert_eq!(heap.stats().blocks_in_use(), 2);
    drop(a);
    let c = Pooled::new_in(Small(3), &heap);
    let stats = heap.free_list_stats::<Small>();
    assert_eq!((stats.misses, stats.hits), (2, 1));
    assert_eq!((b.0, c.0), (2, 3));
}

#[test]
fn clearing_free_lists_returns_their_slots_to_layer_2() {
    let heap = Heap::new();
    let values: std::vec::Vec<_> = (0..5)
        .map(|i| Pooled::new_in(Float(i.into()), &heap))
        .collect();
    let keep = Pooled::new_in(Small(7), &heap);
    drop(values);
    assert_eq!(heap.stats().blocks_in_use(), 6);
    assert_eq!(heap.clear_free_lists(), 5);
    assert_eq!(heap.stats().blocks_in_use(), 1);
    assert_eq!(heap.free_list_stats::<Float>().len, 0);
    assert_eq!(heap.clear_free_lists(), 0);
    assert_eq!(keep.0, 7);
    drop(keep);
    assert_eq!(heap.clear_free_lists(), 1);
    assert_eq!(heap.stats().blocks_in_use(), 0);
    heap.check().unwrap();
}

#[test]
fn two_heaps_keep_separate_lists_for_one_type() {
    let one = Heap::new();
    let two = Heap::new();
    let a = Pooled::new_in(Float(1.0), &one);
    let slot = Pooled::as_ptr(&a);
    drop(a);
    assert_eq!(one.free_list_stats::<Float>().len, 1);
    // Heap two has not used `Float`: zeros, and the capacity its list will have.
    assert_eq!(
        two.free_list_stats::<Float>(),
        pyalloc::FreeListStats {
            capacity: 100,
            ..Default::default()
        }
    );
    let b = Pooled::new_in(Float(2.0), &two);
    assert_ne!(Pooled::as_ptr(&b), slot, "heap two took heap one's slot");
    assert_eq!(two.free_list_stats::<Float>().misses, 1);
    assert_eq!(one.free_list_stats::<Float>().len, 1);
    assert!(std::ptr::eq(Pooled::heap(&b), &two));
    let c = Pooled::new_in(Float(3.0), &one);
    assert_eq!(Pooled::as_ptr(&c), slot);
}

#[test]
fn every_value_is_dropped_exactly_once() {
    let drops = Cell::new(0);
    let heap = Heap::new();
    let n = Counted::CAPACITY + 5; // some drops overflow the list
    let mut values: std::vec::Vec<_> = (0..n as u64)
        .map(|i| Pooled::new_in(counted(&drops, i), &heap))
        .collect();
    assert_eq!(drops.get(), 0);
    let last = values.pop().unwrap();
    let moved_out = Pooled::into_inner(last);
    assert_eq!(drops.get(), 0, "into_inner dropped the value");
    drop(values);
    assert_eq!(drops.get(), n - 1);
    assert_eq!(moved_out.value, n as u64 - 1);
    drop(moved_out);
    assert_eq!(drops.get(), n);
    heap.clear_free_lists();
    assert_eq!(drops.get(), n, "clearing the lists ran a destructor");
    let stats = heap.free_list_stats::<Counted<'_>>();
    assert_eq!(stats.pushes + stats.overflows, n as u64);
}

#[derive(FreeListed)]
struct PanicOnDrop(u64);

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("PanicOnDrop({}) dropped", self.0);
    }
}

#[test]
fn a_panicking_destructor_still_returns_the_slot() {
    let heap = Heap::new();
    let value = Pooled::new_in(PanicOnDrop(9), &heap);
    let slot = Pooled::as_ptr(&value);
    let result = catch_unwind(AssertUnwindSafe(|| drop(value)));
    assert!(result.is_err(), "the destructor did not panic");
    let stats = heap.free_list_stats::<PanicOnDrop>();
    assert_eq!((stats.pushes, stats.len), (1, 1));
    heap.check().unwrap();
    let again = Pooled::new_in(PanicOnDrop(10), &heap);
    assert_eq!(Pooled::as_ptr(&again), slot);
    assert_eq!(again.0, 10);
    // Leave without the panic: give the value up and take it back as plain data.
    let raw = Pooled::into_raw(again);
    // SAFETY: `raw` came from `into_raw` just above and is not used again.
    let again = unsafe { Pooled::from_raw(raw, &heap) };
    std::mem::forget(Pooled::into_inner(again));
    assert_eq!(heap.free_list_stats::<PanicOnDrop>().len, 1);
}

static ZST_DROPS: AtomicUsize = AtomicUsize::new(0);

#[derive(FreeListed, Debug)]
#[free_list(capacity = 2)]
struct Nothing;

impl Drop for Nothing {
    fn drop(&mut self) {
        ZST_DROPS.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn zero_sized_values_take_no_slot_but_are_dropped() {
    let heap = Heap::new();
    let values: std::vec::Vec<_> = (0..5).map(|_| Pooled::new_in(Nothing, &heap)).collect();
    assert_eq!(heap.stats().blocks_in_use(), 0);
    assert_eq!(format!("{:?}", values[0]), "Nothing");
    assert_eq!(ZST_DROPS.load(Ordering::Relaxed), 0);
    drop(values);
    assert_eq!(ZST_DROPS.load(Ordering::Relaxed), 5);
    let inner = Pooled::into_inner(Pooled::new_in(Nothing, &heap));
    assert_eq!(ZST_DROPS.load(Ordering::Relaxed), 5);
    drop(inner);
    assert_eq!(ZST_DROPS.load(Ordering::Relaxed), 6);
    let stats = heap.free_list_stats::<Nothing>();
    assert_eq!((stats.pushes, stats.misses, stats.overflows), (0, 0, 0));
    heap.check().unwrap();
}

/// Larger than the 512-byte small-request threshold: its slots come from the system allocator.
#[derive(FreeListed)]
#[free_list(capacity = 2)]
struct Big([u8; 600]);

#[test]
fn values_larger_than_512_bytes_use_large_slots() {
    let heap = Heap::new();
    let values: std::vec::Vec<_> = (0..3u8)
        .map(|i| Pooled::new_in(Big([i; 600]), &heap))
        .collect();
    for (i, value) in values.iter().enumerate() {
        assert!(value.0.iter().all(|&b| b == i as u8));
    }
    assert_eq!(heap.stats().large_allocations(), 3);
    assert_eq!(heap.stats().blocks_in_use(), 0);
    // Dropped in order: 0 and 1 fill the list, 2 overflows; 1 is on top.
    let top = Pooled::as_ptr(&values[1]);
    drop(values);
    let stats = heap.free_list_stats::<Big>();
    assert_eq!((stats.len, stats.overflows), (2, 1));
    assert_eq!(heap.stats().large_allocations(), 2);
    let again = Pooled::new_in(Big([7; 600]), &heap);
    assert_eq!(Pooled::as_ptr(&again), top);
    assert!(again.0.iter().all(|&b| b == 7));
    drop(again);
    assert_eq!(heap.clear_free_lists(), 2);
    assert_eq!(heap.stats().large_allocations(), 0);
    heap.check().unwrap();
}

#[derive(FreeListed)]
#[free_list(capacity = 3)]
#[repr(align(64))]
struct Aligned {
    bytes: [u8; 16],
}

#[test]
fn over_aligned_values_get_aligned_slots() {
    let heap = Heap::new();
    for round in 0..3u8 {
        let values: std::vec::Vec<_> = (0..5u8)
            .map(|i| {
                Pooled::new_in(
                    Aligned {
                        bytes: [i ^ round; 16],
                    },
                    &heap,
                )
            })
            .collect();
        for (i, value) in values.iter().enumerate() {
            let address = Pooled::as_ptr(value).as_ptr() as usize;
            assert_eq!(address % 64, 0, "slot {address:#x} is not 64-aligned");
            assert_eq!(value.bytes, [i as u8 ^ round; 16]);
        }
    }
    let stats = heap.free_list_stats::<Aligned>();
    assert_eq!(stats.len, 3);
    assert!(stats.hits > 0);
    heap.clear_free_lists();
    heap.check().unwrap();
}

#[test]
fn into_inner_moves_the_value_out_and_frees_the_slot() {
    let drops = Cell::new(0);
    let heap = Heap::new();
    let pooled = Pooled::new_in(counted(&drops, 41), &heap);
    let value = Pooled::into_inner(pooled);
    assert_eq!(value.value, 41);
    assert_eq!(heap.free_list_stats::<Counted<'_>>().pushes, 1);
    assert_eq!(drops.get(), 0);
    drop(value);
    assert_eq!(drops.get(), 1);
}

#[test]
fn into_raw_and_from_raw_round_trip() {
    let drops = Cell::new(0);
    let heap = Heap::new();
    let pooled = Pooled::new_in(counted(&drops, 5), &heap);
    let address = Pooled::as_ptr(&pooled);
    let raw = Pooled::into_raw(pooled);
    assert_eq!(raw, address);
    assert_eq!(drops.get(), 0);
    assert_eq!(heap.free_list_stats::<Counted<'_>>().pushes, 0);
    // SAFETY: the value is live: `into_raw` gave it up without dropping it.
    assert_eq!(unsafe { raw.as_ref() }.value, 5);
    // SAFETY: `raw` came from `into_raw` of a `Pooled` of this heap and is taken back once.
    let mut back = unsafe { Pooled::from_raw(raw, &heap) };
    back.value += 1;
    assert_eq!(back.value, 6);
    drop(back);
    assert_eq!(drops.get(), 1);
    assert_eq!(heap.free_list_stats::<Counted<'_>>().pushes, 1);
}

impl fmt::Display for Float {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}!", self.0)
    }
}

#[test]
fn display_debug_and_equality_forward_to_the_value() {
    let heap = Heap::new();
    let a = Pooled::new_in(Float(1.5), &heap);
    let b = Pooled::new_in(Float(1.5), &heap);
    let c = Pooled::new_in(Float(2.5), &heap);
    assert_eq!(a.to_string(), "1.5!");
    assert_eq!(format!("{a:?}"), "Float(1.5)");
    assert_eq!(format!("{c:?}"), format!("{:?}", Float(2.5)));
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[derive(FreeListed)]
struct Empty;

#[test]
fn try_new_in_reports_a_heap_out_of_memory() {
    let drops = Cell::new(0);
    let heap = Heap::with_source(HeapConfig::new(), FailingSource::new(SystemSource, 0)).unwrap();
    assert!(Pooled::try_new_in(Float(1.0), &heap).is_err());
    assert!(Pooled::try_new_in(counted(&drops, 1), &heap).is_err());
    assert_eq!(
        drops.get(),
        1,
        "the value given to a failed try_new_in was not dropped"
    );
    assert_eq!(heap.free_list_stats::<Float>().misses, 1);
    assert_eq!(heap.stats().blocks_in_use(), 0);
    heap.check().unwrap();
    // Zero-sized values need no memory, so they still succeed.
    assert!(Pooled::try_new_in(Empty, &heap).is_ok());
}

/// The `capacity = 0` diagnostic sends users to these two switches; both must work.
#[test]
fn lists_can_be_turned_off_at_run_time() {
    let heap = Heap::new();
    drop(Pooled::new_in(Small(1), &heap));
    assert_eq!(heap.free_list_stats::<Small>().len, 1);
    heap.set_free_list_capacity::<Small>(0);
    let stats = heap.free_list_stats::<Small>();
    assert_eq!((stats.capacity, stats.len), (0, 0));
    assert_eq!(
        heap.stats().blocks_in_use(),
        0,
        "the evicted slot was not freed"
    );
    drop(Pooled::new_in(Small(2), &heap));
    assert_eq!(heap.free_list_stats::<Small>().overflows, 1);
    assert_eq!(heap.stats().blocks_in_use(), 0);

    let off = Heap::with_config(HeapConfig::new().free_lists(false)).unwrap();
    let value = Pooled::new_in(Float(4.0), &off);
    assert_eq!(value.0, 4.0);
    drop(value);
    let stats = off.free_list_stats::<Float>();
    assert_eq!(
        (stats.capacity, stats.len, stats.pushes, stats.overflows),
        (0, 0, 0, 1)
    );
    assert_eq!(off.stats().blocks_in_use(), 0);
    off.check().unwrap();
}

// ----------------------------------------------------------------------------------------
// Property test: pooled values of three derived types mixed with plain `Box`/`Vec` traffic.

/// A 16-byte value in a small list.
#[derive(FreeListed, Debug, PartialEq)]
#[free_list(capacity = 3)]
struct Pair(u64, u64);

/// A 200-byte value.
#[derive(FreeListed, Debug, PartialEq)]
#[free_list(capacity = 2)]
struct Block([u32; 50]);

/// Counts its drops; 56 bytes.
#[derive(FreeListed)]
#[free_list(capacity = 5)]
struct Tracked<'a> {
    drops: &'a Cell<usize>,
    tag: u32,
    pad: [u16; 20],
}

impl Drop for Tracked<'_> {
    fn drop(&mut self) {
        self.drops.set(self.drops.get() + 1);
    }
}

#[derive(Clone, Debug)]
enum Action {
    NewPair(u64),
    NewBlock(u32),
    NewTracked(u32),
    NewBox(u64),
    NewVec(u16),
    Drop(usize),
    IntoInner(usize),
    Clear,
}

fn action() -> impl Strategy<Value = Action> {
    prop_oneof![
        3 => any::<u64>().prop_map(Action::NewPair),
        2 => any::<u32>().prop_map(Action::NewBlock),
        3 => any::<u32>().prop_map(Action::NewTracked),
        2 => any::<u64>().prop_map(Action::NewBox),
        1 => (0..700u16).prop_map(Action::NewVec),
        5 => any::<usize>().prop_map(Action::Drop),
        1 => any::<usize>().prop_map(Action::IntoInner),
        1 => Just(Action::Clear),
    ]
}

enum Live<'h, 'd> {
    Pair(Pooled<'h, Pair>, u64),
    Block(Pooled<'h, Block>, u32),
    Tracked(Pooled<'h, Tracked<'d>>, u32),
    Box(Box<u64, &'h Heap>, u64),
    Vec(Vec<u16, &'h Heap>, u16),
}

fn block(seed: u32) -> [u32; 50] {
    std::array::from_fn(|i| seed.wrapping_mul(i as u32 + 1))
}

impl Live<'_, '_> {
    fn verify(&self) -> Result<(), TestCaseError> {
        match self {
            Live::Pair(p, seed) => prop_assert_eq!(&**p, &Pair(*seed, !*seed)),
            Live::Block(b, seed) => prop_assert_eq!(&**b, &Block(block(*seed))),
            Live::Tracked(t, tag) => {
                prop_assert_eq!(t.tag, *tag);
                prop_assert_eq!(t.pad, [*tag as u16; 20]);
            }
            Live::Box(b, value) => prop_assert_eq!(**b, *value),
            Live::Vec(v, len) => {
                prop_assert_eq!(v.len(), *len as usize);
                prop_assert!(v.iter().enumerate().all(|(i, &x)| x == i as u16 ^ *len));
            }
        }
        Ok(())
    }
}

fn run(actions: &[Action]) -> Result<(), TestCaseError> {
    let drops = Cell::new(0);
    let heap = Heap::new();
    let mut tracked_made = 0;
    {
        let mut live: std::vec::Vec<Live<'_, '_>> = std::vec::Vec::new();
        for action in actions {
            match *action {
                Action::NewPair(seed) => {
                    live.push(Live::Pair(Pooled::new_in(Pair(seed, !seed), &heap), seed))
                }
                Action::NewBlock(seed) => {
                    live.push(Live::Block(Pooled::new_in(Block(block(seed)), &heap), seed))
                }
                Action::NewTracked(tag) => {
                    tracked_made += 1;
                    let value = Tracked {
                        drops: &drops,
                        tag,
                        pad: [tag as u16; 20],
                    };
                    live.push(Live::Tracked(Pooled::new_in(value, &heap), tag));
                }
                Action::NewBox(value) => live.push(Live::Box(Box::new_in(value, &heap), value)),
                Action::NewVec(len) => {
                    let mut v = Vec::with_capacity_in(len as usize, &heap);
                    v.extend((0..len).map(|i| i ^ len));
                    live.push(Live::Vec(v, len));
                }
                Action::Drop(pick) if !live.is_empty() => {
                    let entry = live.swap_remove(pick % live.len());
                    entry.verify()?;
                    drop(entry);
                }
                Action::IntoInner(pick) if !live.is_empty() => {
                    match live.swap_remove(pick % live.len()) {
                        Live::Pair(p, seed) => {
                            prop_assert_eq!(Pooled::into_inner(p), Pair(seed, !seed))
                        }
                        Live::Block(b, seed) => {
                            prop_assert_eq!(Pooled::into_inner(b), Block(block(seed)))
                        }
                        Live::Tracked(t, tag) => {
                            let before = drops.get();
                            let value = Pooled::into_inner(t);
                            prop_assert_eq!(drops.get(), before);
                            prop_assert_eq!(value.tag, tag);
                        }
                        other => drop(other),
                    }
                }
                Action::Drop(_) | Action::IntoInner(_) => {}
                Action::Clear => {
                    heap.clear_free_lists();
                }
            }
            for entry in &live {
                entry.verify()?;
            }
            let tracked_live = live
                .iter()
                .filter(|entry| matches!(entry, Live::Tracked(..)))
                .count();
            prop_assert_eq!(drops.get() + tracked_live, tracked_made);
            if let Err(problem) = heap.check() {
                return Err(TestCaseError::fail(problem));
            }
        }
    }
    prop_assert_eq!(drops.get(), tracked_made);
    heap.clear_free_lists();
    let stats = heap.stats();
    prop_assert_eq!(stats.blocks_in_use(), 0, "{}", stats);
    prop_assert_eq!(stats.large_allocations(), 0);
    for list in [
        heap.free_list_stats::<Pair>(),
        heap.free_list_stats::<Block>(),
        heap.free_list_stats::<Tracked<'_>>(),
    ] {
        prop_assert_eq!(list.len, 0);
        prop_assert_eq!(list.hits + list.misses, list.pushes + list.overflows);
    }
    if let Err(problem) = heap.check() {
        return Err(TestCaseError::fail(problem));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: if cfg!(miri) { 4 } else { 128 },
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn pooled_values_and_boxes_mix(actions in proptest::collection::vec(action(), 0..80)) {
        run(&actions)?;
    }
}
