//! W8's harness: a tiny cross-thread run on every peer must bring every box back intact, and
//! a peer that hands a live block out twice must fail the check. No timing is checked.

use core::alloc::{GlobalAlloc, Layout};
use std::alloc::System;
use std::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use pyalloc_bench::crossthread::{
    run, with_threaded_peer, Config, Outcome, ThreadedKind, ThreadedPeer, ThreadedVisitor, BATCH,
};

struct Run(Config);

impl ThreadedVisitor for Run {
    type Output = Outcome;
    fn visit<P: ThreadedPeer>(self, peer: &P) -> Outcome {
        run(peer, &self.0)
    }
}

/// Shapes with a partial last batch, more consumers than producers and the converse.
const SHAPES: [Config; 3] = [
    Config {
        producers: 1,
        consumers: 1,
        pairs: 3 * BATCH as u64 + 17,
    },
    Config {
        producers: 2,
        consumers: 3,
        pairs: 10_007,
    },
    Config {
        producers: 3,
        consumers: 2,
        pairs: 5_000,
    },
];

#[test]
fn every_peer_brings_every_box_back() {
    for &kind in ThreadedKind::ALL {
        for config in SHAPES {
            let outcome = with_threaded_peer(kind, Run(config));
            assert_eq!(outcome.received, config.pairs, "{kind:?} {config:?}");
            outcome
                .check(&config)
                .unwrap_or_else(|e| panic!("{kind:?} {config:?}: {e}"));
        }
    }
}

#[test]
fn producers_share_the_pairs() {
    for config in SHAPES {
        let total: u64 = (0..config.producers).map(|p| config.share(p)).sum();
        assert_eq!(total, config.pairs);
    }
}

#[test]
fn a_box_missing_or_seen_twice_fails_the_check() {
    let config = SHAPES[1];
    let expected = config.expected_checksum();
    let good = Outcome {
        received: config.pairs,
        checksum: expected,
        ..Outcome::default()
    };
    assert!(good.check(&config).is_ok());
    let short = Outcome {
        received: config.pairs - 1,
        ..good
    };
    assert!(short.check(&config).unwrap_err().contains("came back of"));
    let corrupt = Outcome { corrupt: 1, ..good };
    assert!(corrupt.check(&config).unwrap_err().contains("corrupt"));
}

/// A broken peer: every fifth allocation returns the previous block again while it is still
/// live, as an allocator with a corrupted free list would. Frees are ignored (the blocks
/// leak: a few KiB).
struct HandsOutTwice {
    count: AtomicUsize,
    last: AtomicPtr<u8>,
}

impl ThreadedPeer for HandsOutTwice {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        let last = self.last.load(Ordering::Relaxed);
        if n % 5 == 0 && !last.is_null() {
            return last;
        }
        // SAFETY: `layout` is not zero-sized (caller's contract).
        let p = unsafe { System.alloc(layout) };
        self.last.store(p, Ordering::Relaxed);
        p
    }

    unsafe fn free(&self, _ptr: *mut u8, _layout: Layout) {}
}

#[test]
fn a_block_handed_out_twice_fails_the_check() {
    // One producer: the block is written twice before it is sent, so the first identity is
    // lost and the second arrives twice, each copy intact. (Allocation 5k repeats allocation
    // 5k - 1 in the same batch as long as no batch starts at 5k: the first that would is
    // allocation 1025, past the 1000 made here.)
    let config = Config {
        producers: 1,
        consumers: 2,
        pairs: 1_000,
    };
    let peer = HandsOutTwice {
        count: AtomicUsize::new(0),
        last: AtomicPtr::new(core::ptr::null_mut()),
    };
    let outcome = run(&peer, &config);
    assert_eq!(outcome.corrupt, 0);
    assert_eq!(outcome.received, config.pairs);
    let err = outcome
        .check(&config)
        .expect_err("a block handed out twice");
    assert!(err.contains("not the ones sent"), "{err}");
}
