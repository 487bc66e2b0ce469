//! N alloc+free pairs of 32 B on one peer, for instruction counts under callgrind.
//!
//! ```text
//! pairs PEER N [--empty]     PEER: a peer key (pyalloc, glibc, ...) or `pyalloc-pooled`
//! ```
//!
//! One other 32-byte block stays live through the loop, unless `--empty` (see
//! `workloads::PairHeap`).
//!
//! `pyalloc-pooled` is the layer-3 hit: `Pooled::new_in` + drop of a 32-byte type,
//! `pyalloc-poolbox` the same through `PoolBox::new` on the thread's heap of `Global`, and
//! `bare-lifo` the same loop on a bare typed LIFO list ([`BareLifo`]). `pyalloc-global` is the
//! pair loop on `pyalloc::Global` through `GlobalAlloc` (the thread-local look-up included), as
//! a program using it as its `#[global_allocator]` calls it. `loop` runs the pair
//! loop on a peer that does nothing (returns one static block): the harness's own cost.
//! `callgrind.sh` runs this for N and 2N and divides the difference by N, so start-up
//! (CPython's initialisation included) cancels out. `PYALLOC_RELEASE` sets the release policy
//! of the `pyalloc` and `pyalloc-pooled` heaps (`pyalloc_bench::peers`); `pyalloc:POLICY`
//! names one as a peer.

use std::hint::black_box;
use std::process::ExitCode;

use core::alloc::GlobalAlloc;
use core::alloc::Layout;
use pyalloc::{Global, Heap, PoolBox, Pooled};
use pyalloc_bench::peers::pyalloc_config;
use pyalloc_bench::workloads::{layout, pairs, PairHeap};

use pyalloc_bench::{with_peer, BareLifo, Obj32, Peer, PeerKind, PeerVisitor};

struct Pairs(u64, PairHeap);

impl PeerVisitor for Pairs {
    type Output = ();
    fn visit<P: Peer>(self, peer: &P) {
        black_box(pairs(peer, layout(32), self.1, self.0));
    }
}

fn pooled(n: u64) {
    let heap = Heap::with_config(pyalloc_config()).expect("the default geometry is valid");
    for i in 0..n {
        drop(black_box(Pooled::new_in(Obj32([i; 4]), &heap)));
    }
}

fn pool_box(n: u64) {
    for i in 0..n {
        drop(black_box(PoolBox::new(Obj32([i; 4]))));
    }
}

/// `pyalloc::Global` through `GlobalAlloc`, as the global allocator is called.
struct GlobalPeer;

impl Peer for GlobalPeer {
    fn name(&self) -> &'static str {
        "pyalloc-global"
    }
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { Global.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { Global.alloc_zeroed(layout) }
    }
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract.
        unsafe { Global.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { Global.realloc(ptr, old, new_size) }
    }
    fn release(&self) {
        Global::trim();
    }
}

fn bare_lifo(n: u64) {
    let list = BareLifo::default();
    for i in 0..n {
        list.cycle(black_box(Obj32([i; 4])));
    }
}

/// A peer that does nothing: it hands out one static block and ignores frees.
struct Nothing;

static BLOCK: [u128; 64] = [0; 64];

impl Peer for Nothing {
    fn name(&self) -> &'static str {
        "loop"
    }
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        BLOCK.as_ptr().cast_mut().cast()
    }
    unsafe fn alloc_zeroed(&self, _: Layout) -> *mut u8 {
        BLOCK.as_ptr().cast_mut().cast()
    }
    unsafe fn free(&self, _: *mut u8, _: Layout) {}
    unsafe fn realloc(&self, ptr: *mut u8, _: Layout, _: usize) -> *mut u8 {
        ptr
    }
    fn release(&self) {}
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(peer), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: pairs PEER N [--empty]");
        return ExitCode::from(2);
    };
    let heap = if args.get(2).is_some_and(|a| a == "--empty") {
        PairHeap::Empty
    } else {
        PairHeap::Kept
    };
    match peer.as_str() {
        "pyalloc-pooled" => pooled(n),
        "pyalloc-poolbox" => pool_box(n),
        "pyalloc-global" => Pairs(n, heap).visit(&GlobalPeer),
        "bare-lifo" => bare_lifo(n),
        "loop" => Pairs(n, heap).visit(&Nothing),
        _ => {
            let Some(kind) = PeerKind::from_key(peer) else {
                eprintln!("unknown peer {peer}");
                return ExitCode::from(2);
            };
            if with_peer(kind, Pairs(n, heap)).is_none() {
                let why = kind.unavailable_reason().unwrap_or("unavailable");
                println!("{peer}: {why}");
                return ExitCode::from(3);
            }
        }
    }
    ExitCode::SUCCESS
}
