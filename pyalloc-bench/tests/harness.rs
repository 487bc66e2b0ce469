//! The replay harness: it runs and verifies a small generated trace on every peer, and it
//! catches a peer that corrupts blocks. No timing is checked.

use core::alloc::Layout;
use core::cell::Cell;
use std::alloc::{GlobalAlloc, System};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use pyalloc_bench::peers::PyallocPeer;
use pyalloc_bench::replay::{first_tag, replay, ReplayError};
use pyalloc_bench::rng::seeded;
use pyalloc_bench::{available_peers, with_peer, Event, Peer, PeerKind, PeerVisitor, Trace};

/// A trace of every kind of event: sizes 0–700 (across the 512-byte threshold), zeroed
/// allocations, reallocations that grow and shrink within and across classes, frees in a
/// scrambled order, and blocks left live at the end.
fn tiny_trace() -> Trace {
    let mut rng = seeded(42);
    let mut events = Vec::new();
    let mut live: Vec<u32> = Vec::new();
    let mut next = 0u32;
    for step in 0..3_000 {
        let roll = rng.usize(..10);
        if live.is_empty() || roll < 4 {
            let size = if step % 50 == 0 { 0 } else { rng.u32(..700) };
            events.push(if roll == 0 {
                Event::alloc_zeroed(next, size)
            } else {
                Event::alloc(next, size)
            });
            live.push(next);
            next += 1;
        } else if roll < 6 {
            let at = rng.usize(..live.len());
            let size = rng.u32(..700);
            events.push(Event::realloc(live[at], next, size));
            live[at] = next;
            next += 1;
        } else {
            let at = rng.usize(..live.len());
            events.push(Event::free(live.swap_remove(at)));
        }
    }
    assert!(!live.is_empty(), "some blocks stay live to the end");
    Trace::new("tiny", events).expect("the generated trace is valid")
}

/// A fresh directory under the system's temporary directory, one per call (tests run in
/// parallel).
fn temp_dir(name: &str) -> PathBuf {
    static CALLS: AtomicUsize = AtomicUsize::new(0);
    let call = CALLS.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "pyalloc-bench-{name}-{}-{call}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).expect("temp dir");
    dir
}

/// The trace, written gzip'd and read back as the replay binary would.
fn tiny_trace_from_disk() -> Trace {
    let trace = tiny_trace();
    let dir = temp_dir("trace");
    let path = dir.join("tiny.trace.gz");
    trace.write_gz(&path).expect("write the trace");
    let loaded = Trace::load(&path).expect("read the trace back");
    std::fs::remove_dir_all(&dir).ok();
    assert_eq!(loaded.name, "tiny");
    assert_eq!(loaded.events, trace.events);
    loaded
}

struct Replay<'t>(&'t Trace);

impl PeerVisitor for Replay<'_> {
    type Output = Result<(), ReplayError>;
    fn visit<P: Peer>(self, peer: &P) -> Self::Output {
        replay(peer, self.0).map(drop)
    }
}

#[test]
fn every_peer_replays_the_tiny_trace() {
    let trace = tiny_trace_from_disk();
    for kind in available_peers(&PeerKind::ALL) {
        with_peer(kind, Replay(&trace))
            .expect("available")
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn pyalloc_heap_is_consistent_after_a_replay() {
    let trace = tiny_trace_from_disk();
    let peer = PyallocPeer::new();
    replay(&peer, &trace).unwrap_or_else(|e| panic!("{e}"));
    peer.heap.check().expect("heap invariants hold");
    let stats = peer.heap.stats();
    assert!(stats.to_string().lines().count() > 5, "{stats}");
}

#[test]
fn traces_that_break_the_format_are_refused() {
    let text = b"a 0 16\nf 0\nf 0\n";
    let err = Trace::parse("double-free", text).unwrap_err();
    assert!(err.0.contains("event 3"), "{err}");
    let err = Trace::parse("garbage", b"a 0 16\nx 1\n").unwrap_err();
    assert!(err.0.contains("line 2"), "{err}");
    let err = Trace::parse("reuse", b"a 0 16\na 0 16\n").unwrap_err();
    assert!(err.0.contains("id reused"), "{err}");
}

/// A broken peer: every `step`-th allocation returns the previous block again while it is
/// still live, as an allocator with a corrupted free list would.
struct Overlapping {
    step: usize,
    count: Cell<usize>,
    last: Cell<*mut u8>,
}

/// Every block of [`Overlapping`] has room for any request of the tiny trace.
const ROOM: usize = 1024;

impl Peer for Overlapping {
    fn name(&self) -> &'static str {
        "overlapping"
    }

    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        assert!(layout.size() <= ROOM);
        let n = self.count.get() + 1;
        self.count.set(n);
        if n % self.step == 0 && !self.last.get().is_null() {
            return self.last.get();
        }
        let room = Layout::from_size_align(ROOM, layout.align()).unwrap();
        // SAFETY: `room` is not zero-sized. The blocks are leaked: a broken peer.
        let p = unsafe { System.alloc(room) };
        self.last.set(p);
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        // SAFETY: `p` has `ROOM >= layout.size()` bytes.
        unsafe { p.write_bytes(0, layout.size()) };
        p
    }

    unsafe fn free(&self, _ptr: *mut u8, _layout: Layout) {}

    unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
        let new = Layout::from_size_align(new_size, old.align()).unwrap();
        // SAFETY: forwarded contract; both blocks hold at least `min(old, new)` bytes.
        unsafe {
            let p = self.alloc(new);
            core::ptr::copy(ptr, p, old.size().min(new_size));
            p
        }
    }

    fn release(&self) {}
}

#[test]
fn overlapping_blocks_fail_verification() {
    let trace = tiny_trace_from_disk();
    let peer = Overlapping {
        step: 7,
        count: Cell::new(0),
        last: Cell::new(core::ptr::null_mut()),
    };
    let err = replay(&peer, &trace).expect_err("overlapping blocks must be caught");
    assert_eq!(err.trace, "tiny");
    assert_eq!(err.peer, "overlapping");
    assert!(err.what.contains("overwritten"), "{err}");
}

#[test]
fn a_realloc_that_loses_the_contents_fails_verification() {
    /// glibc, except that reallocation hands out a fresh block without copying.
    struct Forgetful;
    impl Peer for Forgetful {
        fn name(&self) -> &'static str {
            "forgetful"
        }
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded contract.
            unsafe { System.alloc(layout) }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: forwarded contract.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
            // SAFETY: forwarded contract.
            unsafe { System.dealloc(ptr, layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
            let new = Layout::from_size_align(new_size, old.align()).unwrap();
            // SAFETY: forwarded contract; the fresh block is zeroed, not copied.
            unsafe {
                System.dealloc(ptr, old);
                System.alloc_zeroed(new)
            }
        }
        fn release(&self) {}
    }
    let trace = Trace::new(
        "realloc",
        vec![
            Event::alloc(0, 24),
            Event::realloc(0, 1, 100),
            Event::free(1),
        ],
    )
    .unwrap();
    assert_ne!(
        first_tag(0),
        0,
        "the tag of block 0 differs from a zeroed byte"
    );
    let err = replay(&Forgetful, &trace).expect_err("a lost copy must be caught");
    assert_eq!(err.event, 2);
    assert!(err.what.contains("lost its contents"), "{err}");
}
