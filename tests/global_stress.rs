//! Many threads allocate through `Global`, free each other's blocks at random, and exit with
//! blocks still live that others free later. Every block's contents are verified when it is
//! freed; afterwards the process-wide figures show nothing in use, and the RSS is back near
//! its baseline. One test in a process of its own, so the figures are this test's alone.

// Its process-wide figures must be this test's alone: not with the facade's
// `test-global-allocator`, under which the harness allocates through `Global` too.
#![cfg(not(feature = "test-global-allocator"))]

use std::sync::{Arc, Mutex};
use std::thread;

use pyalloc::{Global, Vec};
use pyalloc_testkit::rng::Rng;

/// A block whose every byte is derived from its identity.
struct Block {
    id: u64,
    bytes: Vec<u8, Global>,
}

fn byte(id: u64, i: usize) -> u8 {
    (id.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32) as u8 ^ i as u8
}

impl Block {
    fn new(id: u64, len: usize) -> Self {
        let mut bytes = Vec::with_capacity_in(len, Global);
        bytes.extend((0..len).map(|i| byte(id, i)));
        Block { id, bytes }
    }

    fn verify(&self) {
        for (i, &b) in self.bytes.iter().enumerate() {
            assert_eq!(
                b,
                byte(self.id, i),
                "block {} byte {i} was overwritten",
                self.id
            );
        }
    }
}

const THREADS: usize = if cfg!(miri) { 3 } else { 8 };
const ROUNDS: usize = if cfg!(miri) { 4 } else { 30 };
const PER_ROUND: usize = if cfg!(miri) { 20 } else { 2000 };

fn rss() -> usize {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: usize = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

#[test]
fn threads_free_each_others_blocks_and_exit_leaving_nothing_behind() {
    let baseline = rss();
    let inboxes: Arc<std::vec::Vec<Mutex<std::vec::Vec<Block>>>> = Arc::new(
        (0..THREADS)
            .map(|_| Mutex::new(std::vec::Vec::new()))
            .collect(),
    );
    let peak = Arc::new(Mutex::new(0usize));
    let workers: std::vec::Vec<_> = (0..THREADS)
        .map(|me| {
            let inboxes = Arc::clone(&inboxes);
            let peak = Arc::clone(&peak);
            thread::spawn(move || {
                let mut rng = Rng::with_seed(0x5EED + me as u64);
                let mut kept = std::vec::Vec::new();
                for round in 0..ROUNDS {
                    let mut batch = std::vec::Vec::with_capacity(PER_ROUND);
                    for i in 0..PER_ROUND {
                        let id = ((me * ROUNDS + round) * PER_ROUND + i) as u64;
                        // Mostly pool sizes, some large ones for the system allocator.
                        let len = if rng.u32(..20) == 0 {
                            rng.usize(513..3513)
                        } else {
                            rng.usize(1..=512)
                        };
                        batch.push(Block::new(id, len));
                    }
                    // A third stays here for a while, the rest goes to a random thread.
                    let keep_from = PER_ROUND * 2 / 3;
                    kept.extend(batch.drain(keep_from..));
                    let to = rng.usize(..THREADS);
                    inboxes[to].lock().unwrap().append(&mut batch);
                    // Free (after verifying) part of what others sent here.
                    let mut mine = std::mem::take(&mut *inboxes[me].lock().unwrap());
                    let n = mine.len() / 2;
                    for block in mine.drain(..n) {
                        block.verify();
                    }
                    inboxes[me].lock().unwrap().append(&mut mine);
                    if kept.len() > PER_ROUND {
                        let half = kept.len() / 2;
                        for block in kept.drain(..half) {
                            block.verify();
                        }
                    }
                    let now = rss();
                    let mut p = peak.lock().unwrap();
                    *p = (*p).max(now);
                }
                // Exits with `kept` live: handed to the main thread, freed after the exit.
                kept
            })
        })
        .collect();
    let orphans: std::vec::Vec<Block> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert!(!orphans.is_empty());
    for block in &orphans {
        block.verify();
    }
    drop(orphans);
    for inbox in inboxes.iter() {
        for block in inbox.lock().unwrap().drain(..) {
            block.verify();
        }
    }
    Global::trim();
    Global::check().unwrap();
    let summary = Global::process_stats();
    assert_eq!(
        summary.heaps_elsewhere, 0,
        "every worker exited: {summary:?}"
    );
    assert!(summary.heaps >= 2, "the workers had heaps: {summary:?}");
    assert_eq!(summary.blocks_in_use, 0, "{summary:?}");
    assert_eq!(summary.free_list_slots, 0, "{summary:?}");
    // Abandoned heaps keep no spare arena; the main thread's keeps at most its one, and the
    // fallback heap (if the workers' set-up used it) one.
    assert!(summary.arenas <= 2, "arenas left mapped: {summary:?}");
    if !cfg!(miri) {
        let peak = *peak.lock().unwrap();
        // Large blocks and the test's own vectors are glibc's, which keeps freed memory in its
        // per-thread arenas until asked: ask, so the RSS shows what pyalloc kept. glibc still
        // keeps some 4 MB in its thread arenas (their 64 MiB-aligned mappings in smaps), and
        // the code paged in since the baseline counts too, hence a third rather than nothing.
        // SAFETY: `malloc_trim` has no preconditions.
        unsafe { libc::malloc_trim(0) };
        let after = rss();
        let grown = peak.saturating_sub(baseline);
        eprintln!("RSS: {baseline} before, {peak} at peak, {after} after; {summary:?}");
        assert!(grown > 8 << 20, "the workload grew the RSS: {grown} bytes");
        assert!(
            after <= baseline + grown / 3,
            "RSS {after} after, {baseline} before, {peak} at peak"
        );
    }
}
