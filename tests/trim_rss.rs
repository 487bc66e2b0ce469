//! `Heap::trim` gives memory back to the OS even when survivors pin every arena.
//!
//! Its own test binary with one test, because RSS is a figure of the whole process. The heap's
//! RSS is measured above the baseline taken before the heap was created, so the test harness's
//! own memory does not blur the ratio.
//!
//! Rerun with `cargo test --release --test trim_rss -- --nocapture` to see the figures.

#![cfg(all(target_os = "linux", not(miri)))]

use std::alloc::Layout;
use std::ptr::NonNull;

use pyalloc::{Allocator, Heap};
use pyalloc_testkit::rss;

#[test]
fn trim_returns_pages_pinned_by_one_survivor_in_a_thousand() {
    const N: usize = 100_000;
    let layout = Layout::from_size_align(64, 8).unwrap();
    // The pointer table lives outside the measured region: allocate it first.
    let mut blocks: Vec<NonNull<u8>> = Vec::with_capacity(N);
    blocks.resize(N, NonNull::dangling());
    let baseline = rss();

    let heap = Heap::new();
    for slot in blocks.iter_mut() {
        let block = heap.allocate(layout).unwrap().cast::<u8>();
        // SAFETY: a live 64-byte block: touch it as a program would.
        unsafe { block.as_ptr().write_bytes(0x5A, 64) };
        *slot = block;
    }
    let peak = rss() - baseline;
    let mut survivors = Vec::new();
    for (i, &block) in blocks.iter().enumerate() {
        if i % 1000 == 0 {
            survivors.push(block);
        } else {
            // SAFETY: each block is live and freed once.
            unsafe { heap.deallocate(block, layout) };
        }
    }
    let before_trim = rss() - baseline;
    let report = heap.trim();
    let after_trim = rss() - baseline;
    let ratio = after_trim as f64 / peak as f64;
    println!(
        "payload {} B, heap RSS: peak {peak} B, after frees {before_trim} B, after trim \
         {after_trim} B = {:.1}% of peak ({report:?}); whole process: {:.1}% of peak",
        N * 64,
        ratio * 100.0,
        (after_trim + baseline) as f64 * 100.0 / (peak + baseline) as f64
    );
    assert!(
        peak >= N * 64,
        "the blocks were touched, so they are resident"
    );
    assert!(
        before_trim > peak / 2,
        "without trim the survivors pin the pools"
    );
    // A survivor pins its own page and its pool's first (the header's): about one pool in
    // four keeps 1.75 of its 4 pages, some 11-13% of the peak. Whole pools were 25%.
    assert!(
        ratio <= 0.20,
        "after trim the heap keeps {:.1}% of its peak RSS",
        ratio * 100.0
    );
    for block in survivors {
        // SAFETY: each survivor is live and freed once.
        unsafe { heap.deallocate(block, layout) };
    }
    heap.check().unwrap();
}
