//! N alloc+free pairs of 32 B on one peer, for instruction counts under callgrind.
//!
//! ```text
//! pairs PEER N [--empty]     PEER: a peer key (pyalloc, glibc, ...) or `pyalloc-pooled`
//! ```
//!
//! One other 32-byte block stays live through the loop, unless `--empty` (see
//! `workloads::PairHeap`).
//!
//! `pyalloc-pooled` is the layer-3 hit: `Pooled::new_in` + drop of a 32-byte type.
//! `callgrind.sh` runs this for N and 2N and divides the difference by N, so start-up
//! (CPython's initialisation included) cancels out.

use std::hint::black_box;
use std::process::ExitCode;

use pyalloc::{Heap, Pooled};
use pyalloc_bench::workloads::{layout, pairs, PairHeap};
use pyalloc_bench::{with_peer, Obj32, Peer, PeerKind, PeerVisitor};

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

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(peer), Some(n)) = (
        args.first(),
        args.get(1).and_then(|n| n.parse::<u64>().ok()),
    ) else {
        eprintln!("usage: pairs PEER N [--empty]");
        return ExitCode::from(2);
    };
    if peer == "pyalloc-pooled" {
        pooled(n);
        return ExitCode::SUCCESS;
    }
    let Some(kind) = PeerKind::from_key(peer) else {
        eprintln!("unknown peer {peer}");
        return ExitCode::from(2);
    };
    let heap = if args.get(2).is_some_and(|a| a == "--empty") {
        PairHeap::Empty
    } else {
        PairHeap::Kept
    };
    match with_peer(kind, Pairs(n, heap)) {
        Some(()) => ExitCode::SUCCESS,
        None => {
            println!(
                "{peer}: {}",
                kind.unavailable_reason().unwrap_or("unavailable")
            );
            ExitCode::from(3)
        }
    }
}
