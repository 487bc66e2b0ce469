//! `Global` and `PoolBox` across threads, through the public API: blocks freed by other threads
//! go home, heaps of exited threads are adopted or drained, free-list slots cross threads.
//! These tests share the process's heaps, so they assert on what they made, not on totals
//! (`global_stress.rs` checks the process-wide figures in a process of its own).

use std::sync::mpsc;
use std::thread;

use pyalloc::{Allocator, Box, FreeListed, Global, PoolBox, Vec};

/// A value whose every byte says who made it, so a block handed out twice is noticed.
#[derive(FreeListed, Debug, Clone, PartialEq)]
#[free_list(capacity = 16)]
struct Tagged {
    tag: u64,
    words: [u64; 5],
}

impl Tagged {
    fn new(tag: u64) -> Self {
        Tagged {
            tag,
            words: [tag.wrapping_mul(0x9E37_79B9_7F4A_7C15); 5],
        }
    }

    fn verify(&self) {
        assert_eq!(self, &Tagged::new(self.tag), "a slot was overwritten");
    }
}

#[test]
fn blocks_freed_by_another_thread_go_home_and_are_reused() {
    let (to_consumer, from_producer) = mpsc::channel::<Vec<Box<[u64; 8], Global>, Global>>();
    let consumer = thread::spawn(move || {
        let mut seen = 0u64;
        for batch in from_producer {
            for (i, b) in batch.iter().enumerate() {
                assert_eq!(b[0], b[7], "batch item {i}");
                seen += b[0];
            }
        }
        seen
    });
    // Smaller under Miri, which runs every interleaving check on each access.
    let (rounds, per_round) = if cfg!(miri) { (4u64, 60u64) } else { (20, 500) };
    let mut expected = 0u64;
    for round in 0..rounds {
        let mut batch = Vec::new_in(Global);
        for i in 0..per_round {
            let v = round * 1000 + i;
            expected += v;
            batch.push(Box::new_in([v; 8], Global));
        }
        to_consumer.send(batch).unwrap();
    }
    drop(to_consumer);
    assert_eq!(consumer.join().unwrap(), expected);
    // The producer's heap took its blocks back: its own check passes and a trim finds them.
    Global::check().unwrap();
    Global::trim();
    Global::check().unwrap();
    let stats = Global::stats();
    assert!(
        (stats.blocks_in_use() as u64) < per_round,
        "the {} blocks freed remotely came home: {} in use",
        rounds * per_round,
        stats.blocks_in_use()
    );
}

#[test]
fn a_heap_outlives_its_thread_until_its_blocks_come_home() {
    // A thread allocates and exits; its blocks are freed here afterwards.
    let survivors = thread::spawn(|| {
        (0..if cfg!(miri) { 300u64 } else { 2000 })
            .map(|i| Box::new_in([i; 4], Global))
            .collect::<std::vec::Vec<_>>()
    })
    .join()
    .unwrap();
    for (i, b) in survivors.iter().enumerate() {
        assert_eq!(b[3], i as u64);
    }
    drop(survivors);
    // A new thread adopts an abandoned heap (perhaps that one) and works normally.
    thread::spawn(|| {
        let v: std::vec::Vec<_> = (0..100u64).map(|i| Box::new_in(i, Global)).collect();
        assert_eq!(v.iter().map(|b| **b).sum::<u64>(), 4950);
        Global::check().unwrap();
    })
    .join()
    .unwrap();
}

#[test]
fn pool_boxes_cross_threads_and_their_slots_are_never_shared() {
    let made: std::vec::Vec<PoolBox<Tagged>> =
        (0..200).map(|i| PoolBox::new(Tagged::new(i))).collect();
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let boxes: std::vec::Vec<PoolBox<Tagged>> = rx.recv().unwrap();
        for b in &boxes {
            b.verify();
        }
        // Dropped here: 16 rest on this thread's list, the rest go home.
        drop(boxes);
        // This thread's list now hands out foreign slots; each is still one owner's.
        let again: std::vec::Vec<_> = (1000..1100).map(|i| PoolBox::new(Tagged::new(i))).collect();
        for b in &again {
            b.verify();
        }
        again
    });
    tx.send(made).unwrap();
    let again = worker.join().unwrap();
    let mine: std::vec::Vec<_> = (2000..2300).map(|i| PoolBox::new(Tagged::new(i))).collect();
    for b in again.iter().chain(&mine) {
        b.verify();
    }
    let mut addrs: std::vec::Vec<_> = again.iter().chain(&mine).map(PoolBox::as_ptr).collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 400, "a slot was handed to two owners");
    assert_eq!(
        PoolBox::into_inner(PoolBox::new(Tagged::new(7))),
        Tagged::new(7)
    );
}

#[test]
fn pool_boxes_made_and_dropped_after_the_threads_heap_is_gone() {
    use std::cell::RefCell;
    use std::sync::atomic::{AtomicBool, Ordering};

    static LATE_RAN: AtomicBool = AtomicBool::new(false);
    /// Dropped after the thread's heap was abandoned (registered before it existed).
    struct Late(Option<PoolBox<Tagged>>);
    impl Drop for Late {
        fn drop(&mut self) {
            let held = self.0.take().expect("set by the thread");
            held.verify();
            // Its slot cannot rest on the abandoned heap's list (anyone may claim that heap
            // now): it goes home through the global paths.
            drop(held);
            let fresh = PoolBox::new(Tagged::new(77));
            fresh.verify();
            drop(fresh);
            LATE_RAN.store(true, Ordering::Release);
        }
    }
    thread_local! {
        static LATE: RefCell<Late> = const { RefCell::new(Late(None)) };
    }
    thread::spawn(|| {
        // Registered first, so its destructor runs after the heap's exit hook.
        LATE.with(|_| ());
        let warm: std::vec::Vec<_> = (0..20).map(|i| PoolBox::new(Tagged::new(i))).collect();
        drop(warm);
        LATE.with(|late| late.borrow_mut().0 = Some(PoolBox::new(Tagged::new(5))));
    })
    .join()
    .unwrap();
    assert!(LATE_RAN.load(Ordering::Acquire));
    // Abandoned heaps (read exactly) hold no list slot: the exited thread's lists were
    // emptied at exit, and nothing was pushed on them afterwards.
    assert_eq!(Global::process_stats().free_list_slots, 0);
}

#[test]
fn global_is_an_allocator_for_every_layout() {
    for (size, align) in [
        (1, 1),
        (16, 16),
        (512, 16),
        (513, 8),
        (40, 32),
        (4096, 4096),
        (0, 8),
    ] {
        let layout = std::alloc::Layout::from_size_align(size, align).unwrap();
        let block = Global.allocate_zeroed(layout).unwrap();
        assert_eq!(block.len(), size);
        let p = block.cast::<u8>();
        assert_eq!(p.as_ptr().addr() % align, 0);
        // SAFETY: `block` is live, `size` bytes long, zeroed.
        unsafe {
            assert!(std::slice::from_raw_parts(p.as_ptr(), size)
                .iter()
                .all(|&b| b == 0));
            let bigger = std::alloc::Layout::from_size_align(size * 3 + 1, align).unwrap();
            let grown = Global.grow(p, layout, bigger).unwrap();
            Global.deallocate(grown.cast(), bigger);
        }
    }
    // Growth across the pool/system line keeps the contents, in both directions.
    let mut v: Vec<u8, Global> = Vec::new_in(Global);
    for i in 0..5000u32 {
        v.push(i as u8);
    }
    v.truncate(100);
    v.shrink_to_fit();
    assert!(v.iter().enumerate().all(|(i, &b)| b == i as u8));
}
