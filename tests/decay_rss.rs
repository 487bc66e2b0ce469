//! The default release policy gives memory back without being asked: a heap that frees a
//! large set keeps it for the decay's delay, then returns it on its next slow path.
//!
//! Its own test binary with one test, because RSS is a figure of the whole process (see
//! `trim_rss.rs`). The clock is a [`ManualClock`]: no sleeping.
//!
//! Rerun with `cargo test --release -p pyalloc --test decay_rss -- --nocapture` to see the
//! figures.

#![cfg(all(target_os = "linux", not(miri)))]

use std::alloc::Layout;
use std::ptr::NonNull;
use std::time::Duration;

use pyalloc::{Allocator, Heap, HeapConfig, ManualClock, MmapSource, DEFAULT_DECAY};
use pyalloc_testkit::rss;

#[test]
fn the_default_decay_returns_a_freed_set_after_its_delay() {
    // Large enough that the test harness's own pages (a few hundred KiB in a debug build) do
    // not weigh in the ratio.
    const N: usize = 400_000;
    let layout = Layout::from_size_align(64, 8).unwrap();
    let mut blocks: Vec<NonNull<u8>> = Vec::with_capacity(N);
    blocks.resize(N, NonNull::dangling());
    let baseline = rss();

    let clock = ManualClock::new();
    let heap = Heap::with_source(HeapConfig::new(), clock.drive(MmapSource::new())).unwrap();
    let fill = |blocks: &mut [NonNull<u8>]| {
        for slot in blocks.iter_mut() {
            let block = heap.allocate(layout).unwrap().cast::<u8>();
            // SAFETY: a live 64-byte block: touch it as a program would.
            unsafe { block.as_ptr().write_bytes(0x5A, 64) };
            *slot = block;
        }
    };
    let free = |blocks: &[NonNull<u8>]| {
        for &block in blocks {
            // SAFETY: each block is live and freed once.
            unsafe { heap.deallocate(block, layout) };
        }
    };
    fill(&mut blocks);
    let peak = rss() - baseline;
    free(&blocks);
    let kept = rss() - baseline;
    // Built again within the delay: the memory kept serves, nothing is mapped or faulted in.
    let mapped = heap.stats().arenas_allocated_total();
    fill(&mut blocks);
    assert_eq!(
        heap.stats().arenas_allocated_total(),
        mapped,
        "no arena mapped again"
    );
    free(&blocks);

    // The delay passes; the program goes on lightly (a block of another class: a slow path).
    clock.advance(DEFAULT_DECAY + Duration::from_millis(50));
    let light = heap
        .allocate(Layout::from_size_align(200, 8).unwrap())
        .unwrap();
    let after = rss() - baseline;
    let ratio = after as f64 / peak as f64;
    println!(
        "heap RSS: peak {peak} B, right after the frees {kept} B, after the delay and one slow \
         path {after} B = {:.1}% of peak",
        ratio * 100.0
    );
    assert!(
        kept > peak / 2,
        "within the delay the memory is kept for reuse"
    );
    assert!(
        ratio <= 0.05,
        "after the delay the heap keeps {:.1}% of its peak RSS",
        ratio * 100.0
    );
    // SAFETY: allocated just above with this layout.
    unsafe { heap.deallocate(light.cast(), Layout::from_size_align(200, 8).unwrap()) };
    heap.check().unwrap();
}
