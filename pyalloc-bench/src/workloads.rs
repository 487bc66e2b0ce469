//! The timed loops of W1–W4, generic over [`Peer`] so each peer gets its own machine code.
//!
//! Each function times only the allocator work (and one byte written per block where blocks
//! stay live); set-up, tear-down and [`Peer::recycle`] run outside the clock.

use core::alloc::Layout;
use std::hint::black_box;
use std::time::{Duration, Instant};

use crate::peers::Peer;
use crate::rng::{pareto_size, seeded};

/// Pairs timed between two recycles of an alloc-only peer.
const PAIR_CHUNK: u64 = 1 << 14;

/// The layout of a `size`-byte request, 16-aligned as CPython's.
#[inline]
pub fn layout(size: usize) -> Layout {
    Layout::from_size_align(size.max(1), 16).expect("benchmark sizes are small")
}

/// Where W1's pairs run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PairHeap {
    /// One other block of the same size stays live through the loop, as in any running
    /// program: the block's pool (or page, or span) stays in use.
    Kept,
    /// Nothing else is live in the size class: for pool allocators (pyalloc, pymalloc), each
    /// free empties the pool and each allocation takes a pool again. CPython's interpreter
    /// keeps its own objects live in every class, so among the peers only pyalloc is hit.
    Empty,
}

/// W1: `pairs` alloc+free pairs of `layout` in a tight loop.
pub fn pairs<P: Peer>(peer: &P, layout: Layout, heap: PairHeap, pairs: u64) -> Duration {
    // SAFETY: `layout` is not zero-sized; the keeper is freed at the end.
    let keeper = (heap == PairHeap::Kept).then(|| unsafe { peer.alloc(layout) });
    let mut total = Duration::ZERO;
    let mut left = pairs;
    while left > 0 {
        let n = left.min(PAIR_CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            // SAFETY: `layout` is not zero-sized; the block is freed at once with it.
            unsafe {
                let p = peer.alloc(black_box(layout));
                peer.free(black_box(p), layout);
            }
        }
        total += start.elapsed();
        left -= n;
        if keeper.is_none() {
            // SAFETY: every block of the chunk is freed, and no keeper is live.
            unsafe { peer.recycle() };
        }
    }
    if let Some(keeper) = keeper {
        // SAFETY: the keeper is live, allocated with `layout`.
        unsafe { peer.free(keeper, layout) };
    }
    total
}

/// The order a batch is freed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FreeOrder {
    /// Last allocated, first freed.
    Lifo,
    /// First allocated, first freed.
    Fifo,
}

/// Allocates `ptrs.len()` blocks of `layout` in a row, writing one byte of each.
///
/// # Safety
///
/// `layout` is not zero-sized; the blocks are freed with it by the caller.
#[inline(always)]
unsafe fn fill<P: Peer>(peer: &P, layout: Layout, ptrs: &mut [*mut u8]) {
    for (i, slot) in ptrs.iter_mut().enumerate() {
        // SAFETY: forwarded contract; `p` is a fresh block of at least one byte.
        unsafe {
            let p = peer.alloc(layout);
            p.write_volatile(i as u8);
            *slot = p;
        }
    }
}

/// W2: allocates a batch of `ptrs.len()` blocks of `layout`, then frees it in `order`;
/// `iters` times. `ptrs` is scratch space.
pub fn batch<P: Peer>(
    peer: &P,
    layout: Layout,
    order: FreeOrder,
    ptrs: &mut [*mut u8],
    iters: u64,
) -> Duration {
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        // SAFETY: every block filled in is freed below with `layout`, once.
        unsafe {
            fill(peer, layout, ptrs);
            match order {
                FreeOrder::Lifo => ptrs.iter().rev().for_each(|&p| peer.free(p, layout)),
                FreeOrder::Fifo => ptrs.iter().for_each(|&p| peer.free(p, layout)),
            }
        }
        total += start.elapsed();
        // SAFETY: the batch is freed.
        unsafe { peer.recycle() };
    }
    total
}

/// W3: allocates `ptrs.len()` blocks of `layout`, then frees them in the order of `order`
/// (a permutation of the indexes); `iters` times.
pub fn random_free<P: Peer>(
    peer: &P,
    layout: Layout,
    order: &[usize],
    ptrs: &mut [*mut u8],
    iters: u64,
) -> Duration {
    assert_eq!(order.len(), ptrs.len());
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        let start = Instant::now();
        // SAFETY: `order` is a permutation, so each block is freed once, with `layout`.
        unsafe {
            fill(peer, layout, ptrs);
            for &i in order {
                peer.free(*ptrs.get_unchecked(i), layout);
            }
        }
        total += start.elapsed();
        // SAFETY: the batch is freed.
        unsafe { peer.recycle() };
    }
    total
}

/// W4's script: sizes and victims drawn once, replayed on every peer.
#[derive(Clone, Debug)]
pub struct Mixed {
    /// The sizes of the live set built before timing.
    pub initial: Vec<usize>,
    /// Per step: the index of the live block to free, and the size of its replacement.
    pub steps: Vec<(usize, usize)>,
}

impl Mixed {
    /// `live` blocks of Pareto sizes (1–512), then `steps` steps of "free a random live
    /// block, allocate a new one of a Pareto size in its place".
    pub fn new(live: usize, steps: usize, seed: u64) -> Self {
        let mut rng = seeded(seed);
        let initial = (0..live).map(|_| pareto_size(&mut rng)).collect();
        let steps = (0..steps)
            .map(|_| (rng.usize(..live), pareto_size(&mut rng)))
            .collect();
        Mixed { initial, steps }
    }
}

/// W4: builds the live set (untimed), runs the steps (timed), frees everything (untimed);
/// `iters` times.
pub fn mixed<P: Peer>(peer: &P, script: &Mixed, iters: u64) -> Duration {
    let mut live: Vec<(*mut u8, Layout)> = Vec::with_capacity(script.initial.len());
    let mut total = Duration::ZERO;
    for _ in 0..iters {
        live.clear();
        for &size in &script.initial {
            let l = layout(size);
            // SAFETY: `l` is not zero-sized.
            live.push((unsafe { peer.alloc(l) }, l));
        }
        let start = Instant::now();
        for &(victim, size) in &script.steps {
            let l = layout(size);
            // SAFETY: `live` holds live blocks with their layouts; the victim is replaced by
            // the new block at once.
            unsafe {
                let slot = live.get_unchecked_mut(victim);
                peer.free(slot.0, slot.1);
                let p = peer.alloc(l);
                p.write_volatile(size as u8);
                *slot = (p, l);
            }
        }
        total += start.elapsed();
        for &(p, l) in &live {
            // SAFETY: each block of `live` is live and freed once.
            unsafe { peer.free(p, l) };
        }
        // SAFETY: every block is freed.
        unsafe { peer.recycle() };
    }
    total
}
