//! N alloc+free pairs of 32 B on one peer, for instruction counts under callgrind.
//!
//! ```text
//! pairs PEER N [--empty]     PEER: a peer key (pyalloc, glibc, ...) or `pyalloc-pooled`
//! ```
//!
//! One other 32-byte block stays live through the loop, unless `--empty` (see
//! `workloads::PairHeap`).
//!
//! `pyalloc-pooled` is the layer-3 hit: `Pooled::new_in` + drop of a 32-byte type, and
//! `bare-lifo` the same loop on a bare typed LIFO list ([`BareLifo`]). `loop` runs the pair
//! loop on a peer that does nothing (returns one static block): the harness's own cost.
//! `callgrind.sh` runs this for N and 2N and divides the difference by N, so start-up
//! (CPython's initialisation included) cancels out.

use std::hint::black_box;
use std::process::ExitCode;

use core::alloc::Layout;
use pyalloc::{Heap, Pooled};
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
    let heap = Heap::new();
    for i in 0..n {
        drop(black_box(Pooled::new_in(Obj32([i; 4]), &heap)));
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
