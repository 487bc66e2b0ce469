//! The C-ABI peer (`cabi:NAME=PATH`): it loads a library by `dlopen` and calls the library's
//! own `malloc` family, it replays a trace with the same accounting as the direct peer of the
//! same allocator, and a library that cannot be loaded is skipped, not fatal. Also: the replay
//! refuses a block that breaks the trace's 16-byte alignment. No timing is checked.

use core::alloc::Layout;
use core::cell::Cell;
use std::alloc::{GlobalAlloc, System};

use pyalloc_bench::cabi::CabiPeer;
use pyalloc_bench::peers::GlibcPeer;
use pyalloc_bench::replay::{layout_of, replay, Summary};
use pyalloc_bench::{parse_peers, Event, Peer, PeerKind, Trace};

/// glibc through the C ABI: `libc.so.6` is the process's own C library.
fn glibc_cabi() -> CabiPeer {
    let PeerKind::Cabi(id) = pyalloc_bench::cabi::kind("glibc-test=libc.so.6") else {
        panic!("a cabi spec gives a cabi kind")
    };
    CabiPeer::new(id).expect("libc.so.6 loads")
}

/// Sizes of every kind: zero, under 16, each side of glibc's chunk steps and of 512.
/// (Nothing over glibc's mmap threshold: freeing an mmapped block raises the threshold, so
/// the second peer's would come from the heap.)
const SIZES: [u32; 12] = [0, 1, 8, 15, 16, 24, 25, 100, 512, 513, 4000, 100_000];

/// `malloc_usable_size` of each block, as the process's glibc sees it.
fn usable_sizes<P: Peer>(peer: &P) -> Vec<usize> {
    let blocks: Vec<(*mut u8, Layout)> = SIZES
        .iter()
        .map(|&s| {
            let layout = layout_of(s);
            // SAFETY: `layout_of` never gives a zero size.
            let p = unsafe { peer.alloc(layout) };
            assert!(!p.is_null());
            assert_eq!(p as usize % 16, 0, "{} B at {p:p}", layout.size());
            (p, layout)
        })
        .collect();
    let sizes = blocks
        .iter()
        // SAFETY: each block is a live glibc block (the peer is glibc, directly or by dlopen).
        .map(|&(p, _)| unsafe { libc::malloc_usable_size(p.cast()) })
        .collect();
    for (p, layout) in blocks {
        // SAFETY: allocated above by `peer` with `layout`.
        unsafe { peer.free(p, layout) };
    }
    sizes
}

#[test]
fn glibc_through_the_c_abi_hands_out_glibc_blocks() {
    let cabi = glibc_cabi();
    // The exact usable size depends on the heap's history (a reused chunk may be a little
    // larger; the other tests run beside this one), so each block is checked for the shape of
    // a glibc chunk of its request: 8 bytes short of a multiple of 16, at most 47 over.
    for (peer, sizes) in [
        ("direct", usable_sizes(&GlibcPeer)),
        ("cabi", usable_sizes(&cabi)),
    ] {
        for (&size, &usable) in SIZES.iter().zip(&sizes) {
            let asked = (size as usize).max(16);
            assert!(
                usable % 16 == 8 && usable >= asked && usable < asked + 48,
                "{peer}: {size} B gave a block of {usable} usable bytes"
            );
        }
    }
    // And a block of the process's glibc is the library's: the C-ABI `free` takes it.
    // SAFETY: a 64-byte glibc block, freed once by the same glibc.
    unsafe {
        let layout = Layout::from_size_align(64, 16).unwrap();
        let p = System.alloc(layout);
        cabi.free(p, layout);
    }
}

/// A peer that keeps glibc's account of its live blocks: the sum of `malloc_usable_size`, and
/// its peak.
struct Counting<P> {
    inner: P,
    live: Cell<usize>,
    peak: Cell<usize>,
}

impl<P: Peer> Counting<P> {
    fn new(inner: P) -> Self {
        Counting {
            inner,
            live: Cell::new(0),
            peak: Cell::new(0),
        }
    }

    fn born(&self, p: *mut u8) -> *mut u8 {
        if !p.is_null() {
            // SAFETY: a live glibc block (the peer is glibc, directly or by dlopen).
            let n = unsafe { libc::malloc_usable_size(p.cast()) };
            self.live.set(self.live.get() + n);
            self.peak.set(self.peak.get().max(self.live.get()));
        }
        p
    }

    fn dies(&self, p: *mut u8) {
        // SAFETY: a live glibc block, about to be freed or resized.
        let n = unsafe { libc::malloc_usable_size(p.cast()) };
        self.live.set(self.live.get() - n);
    }
}

impl<P: Peer> Peer for Counting<P> {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        self.born(unsafe { self.inner.alloc(layout) })
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        self.born(unsafe { self.inner.alloc_zeroed(layout) })
    }
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        self.dies(ptr);
        // SAFETY: forwarded contract.
        unsafe { self.inner.free(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
        self.dies(ptr);
        // SAFETY: forwarded contract.
        self.born(unsafe { self.inner.realloc(ptr, old, new_size) })
    }
    fn release(&self) {}
}

/// Sizes 0–700 (across 512 and glibc's mmap-free range), zeroed allocations, reallocations
/// that grow and shrink, frees, and blocks left live at the end.
fn mixed_trace() -> Trace {
    let mut events = Vec::new();
    for id in 0..400u32 {
        events.push(if id % 5 == 0 {
            Event::alloc_zeroed(id, id * 7 % 900)
        } else {
            Event::alloc(id, id * 13 % 700)
        });
    }
    for id in (0..400u32).step_by(3) {
        events.push(Event::free(id));
    }
    for id in (1..400u32).step_by(3) {
        // From 16 bytes: below, `std::alloc::System` (the direct peer) reallocates by copying,
        // where `realloc` shrinks in place.
        events.push(Event::realloc(id, id + 400, 16 + id * 11 % 1000));
    }
    Trace::new("mixed", events).unwrap()
}

/// Set in the children of the test below: which peer the child replays on.
const CHILD: &str = "PYALLOC_BENCH_CABI_CHILD";

#[test]
fn glibc_through_the_c_abi_replays_with_the_same_live_bytes() {
    // glibc's usable sizes depend on its heap's history (a reused free chunk may be larger
    // than asked), so each peer replays in a fresh child process with the same history: this
    // test binary, started the same way.
    if let Ok(which) = std::env::var(CHILD) {
        let trace = mixed_trace();
        let (peak, live) = if which == "cabi" {
            let peer = Counting::new(glibc_cabi());
            replay(&peer, &trace).unwrap_or_else(|e| panic!("{e}"));
            (peer.peak.get(), peer.live.get())
        } else {
            let peer = Counting::new(GlibcPeer);
            replay(&peer, &trace).unwrap_or_else(|e| panic!("{e}"));
            (peer.peak.get(), peer.live.get())
        };
        println!("accounting: peak {peak} live {live}");
        return;
    }
    let run = |which: &str| -> (usize, usize) {
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "glibc_through_the_c_abi_replays_with_the_same_live_bytes",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, which)
            .output()
            .expect("run the child");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(
            out.status.success(),
            "{which}: {text}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let line = text
            .lines()
            .find_map(|l| l.split_once("accounting: ").map(|(_, rest)| rest))
            .unwrap_or_else(|| panic!("{which}: no accounting line in {text}"));
        let words: Vec<usize> = line.split(' ').filter_map(|w| w.parse().ok()).collect();
        (words[0], words[1])
    };
    let (through, direct) = (run("cabi"), run("direct"));
    assert!(direct.0 > 100_000, "peak {}", direct.0);
    assert_eq!(
        through.0, direct.0,
        "peak live bytes, C ABI vs direct glibc"
    );
    assert_eq!(
        (through.1, direct.1),
        (0, 0),
        "the replay frees every block at the end"
    );
}

#[test]
fn a_library_that_cannot_be_loaded_is_skipped_with_its_reason() {
    let kinds = parse_peers(Some("glibc,cabi:nothing=/nonexistent/libnothing.so")).unwrap();
    assert_eq!(kinds[1].key(), "cabi:nothing");
    assert_eq!(kinds[1].label(), "nothing");
    assert!(!kinds[1].available());
    let why = kinds[1].unavailable_reason().unwrap();
    assert!(
        why.starts_with("skipped: cannot load /nonexistent/libnothing.so"),
        "{why}"
    );
    assert!(pyalloc_bench::with_peer(kinds[1], Nothing).is_none());
    // A library without the malloc family (libm) is refused by name.
    let kinds = parse_peers(Some("cabi:libm.so.6")).unwrap();
    assert_eq!(kinds[0].key(), "cabi:m");
    let why = kinds[0].unavailable_reason().unwrap();
    assert!(why.contains("has no `malloc` of its own"), "{why}");
    assert!(parse_peers(Some("cabi:")).is_err());
}

struct Nothing;
impl pyalloc_bench::PeerVisitor for Nothing {
    type Output = ();
    fn visit<P: Peer>(self, _peer: &P) {}
}

#[test]
fn a_misaligned_block_fails_the_replay() {
    /// glibc, shifted by 8 bytes: blocks aligned to 8, not 16.
    struct Shifted;
    impl Peer for Shifted {
        fn name(&self) -> &'static str {
            "shifted"
        }
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            // SAFETY: 8 more bytes than asked, and the block handed out starts 8 bytes in.
            unsafe {
                System
                    .alloc(Layout::from_size_align(layout.size() + 8, 16).unwrap())
                    .add(8)
            }
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            // SAFETY: as `alloc`.
            unsafe {
                System
                    .alloc_zeroed(Layout::from_size_align(layout.size() + 8, 16).unwrap())
                    .add(8)
            }
        }
        unsafe fn free(&self, _ptr: *mut u8, _layout: Layout) {}
        unsafe fn realloc(&self, _ptr: *mut u8, _old: Layout, _new: usize) -> *mut u8 {
            unreachable!()
        }
        fn release(&self) {}
    }
    let trace = Trace::new("shifted", vec![Event::alloc(0, 32), Event::free(0)]).unwrap();
    let err = replay(&Shifted, &trace).expect_err("a misaligned block must be caught");
    assert_eq!(err.event, 1);
    assert!(err.what.contains("not aligned to 16"), "{err}");
}

#[test]
fn the_summary_gives_median_and_spread() {
    let s = Summary::of(&mut [5.0, 1.0, 3.0, 9.0]);
    assert_eq!(
        s,
        Summary {
            median: 4.0,
            min: 1.0,
            max: 9.0
        }
    );
    assert_eq!(
        Summary::of(&mut []),
        Summary {
            median: 0.0,
            min: 0.0,
            max: 0.0
        }
    );
}

#[test]
fn every_default_library_that_loads_replays_a_trace() {
    let trace = mixed_trace();
    let mut replayed = Vec::new();
    for spec in pyalloc_bench::cabi::default_specs() {
        let kind = pyalloc_bench::cabi::kind(&spec);
        if let Some(why) = kind.unavailable_reason() {
            assert!(why.starts_with("skipped: "), "{spec}: {why}");
            continue;
        }
        pyalloc_bench::with_peer(kind, ReplayIt(&trace)).expect("available");
        replayed.push(kind.key());
    }
    assert!(replayed.contains(&"cabi:glibc-cabi"), "{replayed:?}");
    // build.rs makes both mimalloc lines wherever it can compile the crate's sources.
    for (name, built) in [
        (
            "cabi:mimalloc-v2",
            option_env!("PYALLOC_BENCH_MIMALLOC_V2_SO"),
        ),
        (
            "cabi:mimalloc-v3",
            option_env!("PYALLOC_BENCH_MIMALLOC_V3_SO"),
        ),
    ] {
        assert_eq!(
            replayed.contains(&name),
            built.is_some(),
            "{name}: {replayed:?}"
        );
    }
}

struct ReplayIt<'t>(&'t Trace);
impl pyalloc_bench::PeerVisitor for ReplayIt<'_> {
    type Output = ();
    fn visit<P: Peer>(self, peer: &P) {
        replay(peer, self.0).unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn a_counted_replay_reports_the_threads_cpu_time() {
    let trace = mixed_trace();
    let run = pyalloc_bench::replay::replay_counted(&GlibcPeer, &trace).unwrap();
    assert!(run.cpu > std::time::Duration::ZERO, "{run:?}");
    assert!(
        pyalloc_bench::replay::thread_cpu_time() > run.cpu,
        "{run:?}"
    );
}
