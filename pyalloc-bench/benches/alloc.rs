//! W1–W4 under criterion: `cargo bench -p pyalloc-bench` (filter with `-- W3`, say).
//!
//! Every peer of `pyalloc_bench::peers` runs every workload; the times criterion prints are
//! per alloc+free pair (throughput in elements = pairs). Figures are meant as ratios between
//! peers of one run: the machines are shared and noisy.
//!
//! - W1 `W1 kept/SIZE`: alloc+free of one size in a tight loop, one other block of the size
//!   kept live (its pool stays in use); `W1 empty/SIZE`: nothing else live in the class.
//! - `W1 layer-3 hit 32B`: `Pooled::new_in` + drop of a 32-byte type against a bare typed LIFO
//!   list, the floor, and pyalloc's layer 2.
//! - W2 `W2 batch/N ORDER`: allocate N blocks of 64 B, free them LIFO or FIFO.
//! - W3 `W3 random/N`: allocate N blocks of 64 B, free them in random order.
//! - W4 `W4 mixed`: 1e4 live blocks of Pareto sizes 1–512; each pair frees a random live block
//!   and allocates a new one.
//!
//! `PYALLOC_RELEASE=10ms` (or `immediate`, `1s`, ...) sets the release policy of pyalloc's
//! heaps (`pyalloc_bench::peers`); the benchmark ids stay `.../pyalloc`, so compare policies by
//! running the suite once per value, each run with its own peers (mimalloc) for the ratios.

use std::hint::black_box;
use std::ptr;
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, SamplingMode, Throughput};
use pyalloc::{Heap, Pooled};
use pyalloc_bench::peers::pyalloc_config;
use pyalloc_bench::rng::{permutation, seeded};
use pyalloc_bench::workloads::{self, layout, FreeOrder, Mixed, PairHeap};
use pyalloc_bench::{available_peers, with_peer, BareLifo, Obj32, Peer, PeerKind, PeerVisitor};

const SIZES: [usize; 6] = [16, 32, 64, 128, 256, 512];
/// Block size of W2 and W3.
const BATCH_SIZE: usize = 64;

fn config() -> Criterion {
    Criterion::default()
        .measurement_time(Duration::from_millis(1500))
        .warm_up_time(Duration::from_millis(300))
        .sample_size(20)
        .configure_from_args()
}

/// Registers one benchmark per peer in `group`; `routine(peer, iters)` times `iters`
/// iterations.
struct Register<'g, 'c, F> {
    group: &'g mut BenchmarkGroup<'c, WallTime>,
    kind: PeerKind,
    routine: F,
}

/// The routine of one workload, generic over the peer.
trait Routine {
    fn time<P: Peer>(&mut self, peer: &P, iters: u64) -> Duration;
}

impl<F: Routine> PeerVisitor for Register<'_, '_, F> {
    type Output = ();
    fn visit<P: Peer>(mut self, peer: &P) {
        self.group.bench_function(self.kind.key(), |b| {
            b.iter_custom(|iters| self.routine.time(peer, iters))
        });
    }
}

fn each_peer<R: Routine + Clone>(group: &mut BenchmarkGroup<'_, WallTime>, routine: R) {
    for kind in available_peers(&PeerKind::ALL) {
        with_peer(
            kind,
            Register {
                group: &mut *group,
                kind,
                routine: routine.clone(),
            },
        );
    }
}

#[derive(Clone)]
struct W1(usize, PairHeap);

impl Routine for W1 {
    fn time<P: Peer>(&mut self, peer: &P, iters: u64) -> Duration {
        workloads::pairs(peer, layout(self.0), self.1, iters)
    }
}

fn w1(c: &mut Criterion) {
    for (heap, name) in [(PairHeap::Kept, "kept"), (PairHeap::Empty, "empty")] {
        for size in SIZES {
            let mut g = c.benchmark_group(format!("W1 {name}/{size}B"));
            g.throughput(Throughput::Elements(1));
            each_peer(&mut g, W1(size, heap));
            g.finish();
        }
    }
}

fn layer3(c: &mut Criterion) {
    let mut g = c.benchmark_group("W1 layer-3 hit 32B");
    g.throughput(Throughput::Elements(1));
    g.bench_function("pyalloc Pooled", |b| {
        let heap = Heap::with_config(pyalloc_config()).expect("the default geometry is valid");
        drop(Pooled::new_in(Obj32::default(), &heap));
        b.iter(|| drop(black_box(Pooled::new_in(black_box(Obj32([1; 4])), &heap))))
    });
    g.bench_function("bare LIFO", |b| {
        let list = BareLifo::default();
        b.iter(|| list.cycle(black_box(Obj32([1; 4]))))
    });
    g.finish();
}

#[derive(Clone)]
struct W2(usize, FreeOrder);

impl Routine for W2 {
    fn time<P: Peer>(&mut self, peer: &P, iters: u64) -> Duration {
        let mut ptrs = vec![ptr::null_mut(); self.0];
        workloads::batch(peer, layout(BATCH_SIZE), self.1, &mut ptrs, iters)
    }
}

fn w2(c: &mut Criterion) {
    for n in [1_000, 100_000] {
        for (order, name) in [(FreeOrder::Lifo, "LIFO"), (FreeOrder::Fifo, "FIFO")] {
            let mut g = c.benchmark_group(format!("W2 batch/{n} {name}"));
            g.throughput(Throughput::Elements(n as u64));
            g.sampling_mode(SamplingMode::Flat);
            each_peer(&mut g, W2(n, order));
            g.finish();
        }
    }
}

#[derive(Clone)]
struct W3(std::rc::Rc<Vec<usize>>);

impl Routine for W3 {
    fn time<P: Peer>(&mut self, peer: &P, iters: u64) -> Duration {
        let mut ptrs = vec![ptr::null_mut(); self.0.len()];
        workloads::random_free(peer, layout(BATCH_SIZE), &self.0, &mut ptrs, iters)
    }
}

fn w3(c: &mut Criterion) {
    for n in [100_000, 1_000_000] {
        let order = std::rc::Rc::new(permutation(&mut seeded(n as u64), n));
        let mut g = c.benchmark_group(format!("W3 random/{n}"));
        g.throughput(Throughput::Elements(n as u64));
        g.sampling_mode(SamplingMode::Flat);
        if n >= 1_000_000 {
            g.sample_size(10);
        }
        each_peer(&mut g, W3(order));
        g.finish();
    }
}

#[derive(Clone)]
struct W4(std::rc::Rc<Mixed>);

impl Routine for W4 {
    fn time<P: Peer>(&mut self, peer: &P, iters: u64) -> Duration {
        workloads::mixed(peer, &self.0, iters)
    }
}

fn w4(c: &mut Criterion) {
    let script = Mixed::new(10_000, 100_000, 4);
    let mut g = c.benchmark_group("W4 mixed 1-512B, 1e4 live");
    g.throughput(Throughput::Elements(script.steps.len() as u64));
    g.sampling_mode(SamplingMode::Flat);
    each_peer(&mut g, W4(std::rc::Rc::new(script)));
    g.finish();
}

/// How long the whole suite took, printed at the end.
fn main() {
    let start = Instant::now();
    let mut c = config();
    w1(&mut c);
    layer3(&mut c);
    w2(&mut c);
    w3(&mut c);
    w4(&mut c);
    c.final_summary();
    eprintln!("suite: {:.0} s", start.elapsed().as_secs_f64());
}
