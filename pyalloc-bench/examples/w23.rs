//! W2 and W3 at 1e5 blocks of 64 B, several peers side by side and interleaved (each round
//! starts one peer further along), with the minor page faults per batch: the figures of the
//! README's "Memory that comes back".
//!
//! ```sh
//! cargo run --release -p pyalloc-bench --example w23 -- ROUNDS BATCHES PEER...
//! cargo run --release -p pyalloc-bench --example w23 -- 5 20 pyalloc mimalloc jemalloc glibc
//! ```
//!
//! Prints one CSV line per workload and peer: workload, peer, median ns per pair over the
//! rounds, fastest, slowest, median faults per batch. Each round warms the peer with 3 batches
//! (its heap then holds what its release policy keeps, as a running program's would) and
//! times `BATCHES` more. `PYALLOC_RELEASE` sets the pyalloc peer's policy (see `peers`).

use std::ptr;

use pyalloc_bench::rng::{permutation, seeded};
use pyalloc_bench::rss::minor_faults;
use pyalloc_bench::workloads::{self, layout, FreeOrder};
use pyalloc_bench::{with_peer, Peer, PeerKind, PeerVisitor};

const N: usize = 100_000;

/// One timed run: the workload (0 W2 LIFO, 1 W2 FIFO, 2 W3), W3's free order, the batches.
struct Run<'a>(u8, &'a [usize], u64);

impl PeerVisitor for Run<'_> {
    type Output = (f64, f64);
    fn visit<P: Peer>(self, peer: &P) -> (f64, f64) {
        let mut ptrs = vec![ptr::null_mut(); N];
        let l = layout(64);
        let go = |batches: u64, ptrs: &mut Vec<*mut u8>| match self.0 {
            0 => workloads::batch(peer, l, FreeOrder::Lifo, ptrs, batches),
            1 => workloads::batch(peer, l, FreeOrder::Fifo, ptrs, batches),
            _ => workloads::random_free(peer, l, self.1, ptrs, batches),
        };
        go(3, &mut ptrs);
        let faults = minor_faults();
        let time = go(self.2, &mut ptrs);
        let faults = minor_faults() - faults;
        (
            time.as_secs_f64() * 1e9 / (self.2 as f64 * N as f64),
            faults as f64 / self.2 as f64,
        )
    }
}

fn median(sorted: &[f64]) -> f64 {
    sorted[sorted.len() / 2]
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: w23 ROUNDS BATCHES PEER...";
    let rounds: usize = args.first().and_then(|a| a.parse().ok()).expect(usage);
    let batches: u64 = args.get(1).and_then(|a| a.parse().ok()).expect(usage);
    let peers: Vec<(String, PeerKind)> = args[2..]
        .iter()
        .map(|key| {
            let kind = PeerKind::from_key(key).unwrap_or_else(|| panic!("unknown peer {key}"));
            (key.clone(), kind)
        })
        .collect();
    assert!(!peers.is_empty(), "{usage}");
    let order = permutation(&mut seeded(N as u64), N);
    for (workload, name) in [(0u8, "W2 LIFO"), (1, "W2 FIFO"), (2, "W3 random")] {
        let mut results = vec![Vec::new(); peers.len()];
        for round in 0..rounds {
            for k in 0..peers.len() {
                let i = (round + k) % peers.len();
                let run = Run(workload, &order, batches);
                results[i].push(with_peer(peers[i].1, run).expect("the peer is available"));
            }
        }
        for ((key, _), runs) in peers.iter().zip(&mut results) {
            let mut ns: Vec<f64> = runs.iter().map(|r| r.0).collect();
            let mut faults: Vec<f64> = runs.iter().map(|r| r.1).collect();
            ns.sort_by(f64::total_cmp);
            faults.sort_by(f64::total_cmp);
            println!(
                "{name},{key},{:.2},{:.2},{:.2},{:.0}",
                median(&ns),
                ns[0],
                ns[ns.len() - 1],
                median(&faults)
            );
        }
    }
}
