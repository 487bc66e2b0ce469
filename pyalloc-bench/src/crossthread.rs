//! W8: cross-thread producer/consumer. Producer threads allocate 64-byte boxes, write a
//! pattern into each and send them to consumer threads, which verify the pattern and free
//! them: every free happens on another thread than the allocation, the path a per-thread heap
//! has to send back to the owner (mimalloc's thread-free lists, jemalloc's tcache flush to
//! the owning arena, glibc's arena lock).
//!
//! - Peers implement [`ThreadedPeer`] (shared by every thread, so `Sync`) and are called at
//!   their best path for a 64-byte, 8-aligned block: glibc's `malloc`/`free` (through
//!   `std::alloc::System`, which calls them directly for such a layout), mimalloc's
//!   `mi_malloc`/`mi_free` (the `mimalloc` crate's `GlobalAlloc` always takes the aligned
//!   entry points, a few instructions dearer), jemalloc's `malloc`/`sdallocx(ptr, size, 0)`
//!   (both have a fast path; the sized free skips the size-class lookup, and `mallocx` has no
//!   fast path). [`with_threaded_peer`] hands a concrete type to a [`ThreadedVisitor`], so the
//!   loops are monomorphised per peer: no dynamic dispatch in the timed region.
//! - Boxes travel in batches of [`BATCH`] pointers (a `Vec` per message) over one bounded
//!   `std::sync::mpsc::sync_channel` per consumer, at most [`CHANNEL_BOUND`] batches deep.
//!   Batching keeps the channel's own cost (a lock or CAS, sometimes a futex wake) at about
//!   1/256 of a message per pair, well under an allocator's cross-thread free, while 256
//!   boxes (16 KiB) still fit in L2 when the consumer reads them. The bound keeps producers
//!   from running ahead of consumers: at most `CHANNEL_BOUND` batches wait per consumer, plus
//!   the one each producer fills and each consumer drains, a steady pipeline rather than a
//!   growing heap. The batch `Vec`s themselves
//!   come from the process's global allocator (glibc), the same for every peer.
//! - Producer `p` sends its batches to the consumers in turn, starting at consumer
//!   `p % consumers`, so every consumer frees blocks of every producer.
//! - Every box carries its identity (producer, sequence number) in its first word and seven
//!   words derived from it ([`word`]); the consumer checks the seven against the first and
//!   adds a hash of the identity to a checksum ([`fingerprint`]). [`Outcome::check`]
//!   compares the count and the checksum with the expected ones: a box lost, duplicated,
//!   overwritten while in flight or handed out twice fails it.
//!
//! The clock runs from the moment every thread is spawned and waiting (a barrier) until every
//! consumer has drained its channel: thread start-up is outside, channel traffic inside.
//!
//! The allocator calls go through two `#[inline(never)]` functions, [`alloc_box`] and
//! [`free_box`], so that `callgrind-crossthread.sh` can count the instructions inside them
//! alone (`--toggle-collect`).

use core::alloc::{GlobalAlloc, Layout};
use std::alloc::{handle_alloc_error, System};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::Barrier;
use std::time::{Duration, Instant};

/// The layout of every box: eight words (64 bytes, 8-aligned), a small object of a runtime.
/// Under 16-byte alignment every peer takes its plain `malloc` path.
pub const BOX: Layout = Layout::new::<[u64; 8]>();

/// Boxes per channel message.
pub const BATCH: usize = 256;

/// Batches a consumer's channel holds before its producers block.
pub const CHANNEL_BOUND: usize = 8;

/// An allocator shared by producer and consumer threads: blocks allocated on one thread are
/// freed on another.
pub trait ThreadedPeer: Sync {
    /// Allocates a block for `layout`, or returns null.
    ///
    /// # Safety
    ///
    /// - `layout.size()` is not zero.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8;

    /// Frees a block, on any thread.
    ///
    /// # Safety
    ///
    /// - `ptr` was returned by this peer's `alloc` for `layout` (on any thread) and is live;
    /// - it is not used afterwards.
    unsafe fn free(&self, ptr: *mut u8, layout: Layout);
}

/// Any `GlobalAlloc`, through `alloc` and `dealloc`: glibc as `ViaGlobalAlloc(System)`, and
/// `pyalloc::Global`.
#[derive(Clone, Copy, Debug, Default)]
pub struct ViaGlobalAlloc<A>(pub A);

impl<A: GlobalAlloc + Sync> ThreadedPeer for ViaGlobalAlloc<A> {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: `layout.size() != 0` (caller's contract), `GlobalAlloc::alloc`'s
        // precondition.
        unsafe { self.0.alloc(layout) }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator's `alloc` with `layout` (caller's contract);
        // a `GlobalAlloc` may be called from any thread.
        unsafe { self.0.dealloc(ptr, layout) }
    }
}

/// mimalloc's unaligned entry points, `mi_malloc` and `mi_free` (prefixed symbols: glibc
/// stays glibc).
#[derive(Clone, Copy, Debug, Default)]
pub struct MimallocRaw;

impl ThreadedPeer for MimallocRaw {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        debug_assert!(layout.align() <= 16 && layout.align() <= layout.size());
        // SAFETY: `mi_malloc` takes any size; its blocks are 16-aligned from 16 bytes up,
        // which covers `layout` (asserted above, and `BOX` is 64 bytes, 8-aligned).
        unsafe { libmimalloc_sys::mi_malloc(layout.size()).cast() }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `mi_malloc` and is live (caller's contract); mimalloc
        // takes frees from any thread.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }
}

/// jemalloc's fast paths: `malloc` and the sized `sdallocx(ptr, size, 0)` (prefixed `_rjem_`
/// symbols).
#[derive(Clone, Copy, Debug, Default)]
pub struct JemallocRaw;

impl ThreadedPeer for JemallocRaw {
    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        debug_assert!(layout.align() <= 16 && layout.align() <= layout.size());
        // SAFETY: jemalloc's `malloc` aligns to 16 from 16 bytes up, which covers `layout`.
        unsafe { tikv_jemalloc_sys::malloc(layout.size()).cast() }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from jemalloc's `malloc(layout.size())` and is live (caller's
        // contract); flags 0 match that call; jemalloc takes frees from any thread.
        unsafe { tikv_jemalloc_sys::sdallocx(ptr.cast(), layout.size(), 0) }
    }
}

/// Receives the concrete peer built by [`with_threaded_peer`].
pub trait ThreadedVisitor {
    /// What the visit computes.
    type Output;
    /// Runs with the peer.
    fn visit<P: ThreadedPeer>(self, peer: &P) -> Self::Output;
}

/// Declares the peers of W8 in table order: the [`ThreadedKind`] enum, its keys and
/// [`with_threaded_peer`].
macro_rules! threaded_peers {
    ($($(#[$doc:meta])* $kind:ident => $key:literal, $peer:expr;)*) => {
        /// The peers of W8, in table order.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ThreadedKind {
            $($(#[$doc])* $kind,)*
        }

        impl ThreadedKind {
            /// Every peer, in table order.
            pub const ALL: &'static [ThreadedKind] = &[$(ThreadedKind::$kind,)*];

            /// The command-line key (`--peers glibc,mimalloc`), also the table's label.
            pub fn key(self) -> &'static str {
                match self {
                    $(ThreadedKind::$kind => $key,)*
                }
            }
        }

        /// Hands the peer of `kind` to `visitor`.
        pub fn with_threaded_peer<V: ThreadedVisitor>(kind: ThreadedKind, visitor: V) -> V::Output {
            match kind {
                $(ThreadedKind::$kind => visitor.visit(&$peer),)*
            }
        }
    };
}

threaded_peers! {
    /// `pyalloc::Global` through `GlobalAlloc` (per-thread heaps, remote frees by mailbox).
    Pyalloc => "pyalloc", ViaGlobalAlloc(pyalloc::Global);
    /// glibc's `malloc`/`free`, through `std::alloc::System`.
    Glibc => "glibc", ViaGlobalAlloc(System);
    /// mimalloc's `mi_malloc`/`mi_free`.
    Mimalloc => "mimalloc", MimallocRaw;
    /// jemalloc's `malloc`/`sdallocx`.
    Jemalloc => "jemalloc", JemallocRaw;
}

impl ThreadedKind {
    /// The peer named by a command-line key.
    pub fn from_key(key: &str) -> Option<ThreadedKind> {
        ThreadedKind::ALL.iter().copied().find(|k| k.key() == key)
    }

    /// Parses a `--peers a,b,..` list; every peer when `None`.
    pub fn parse_list(list: Option<&str>) -> Result<Vec<ThreadedKind>, String> {
        match list {
            None => Ok(ThreadedKind::ALL.to_vec()),
            Some(list) => list
                .split(',')
                .filter(|k| !k.is_empty())
                .map(|k| {
                    ThreadedKind::from_key(k).ok_or_else(|| {
                        let keys: Vec<_> = ThreadedKind::ALL.iter().map(|p| p.key()).collect();
                        format!("unknown peer {k:?}: one of {}", keys.join(", "))
                    })
                })
                .collect(),
        }
    }
}

/// The shape of one run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Config {
    /// Producer threads (at least one).
    pub producers: usize,
    /// Consumer threads (at least one).
    pub consumers: usize,
    /// Boxes allocated, sent and freed in all (alloc+free pairs).
    pub pairs: u64,
}

impl Config {
    /// The boxes producer `p` makes: `pairs` split evenly, the first ones taking the rest.
    pub fn share(&self, p: usize) -> u64 {
        let n = self.producers as u64;
        self.pairs / n + u64::from((p as u64) < self.pairs % n)
    }

    /// The checksum a run of this shape must give: the wrapping sum of [`fingerprint`] over
    /// every box's identity.
    pub fn expected_checksum(&self) -> u64 {
        (0..self.producers)
            .flat_map(|p| (0..self.share(p)).map(move |i| identity(p, i)))
            .fold(0u64, |sum, id| sum.wrapping_add(fingerprint(id)))
    }
}

/// What one run measured and saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// Wall time from the start barrier until every consumer finished.
    pub elapsed: Duration,
    /// Boxes the consumers received with an intact pattern.
    pub received: u64,
    /// Boxes whose pattern was broken.
    pub corrupt: u64,
    /// The wrapping sum of [`fingerprint`] over the intact boxes.
    pub checksum: u64,
}

impl Outcome {
    /// Whether every box of `config` came back once, intact.
    pub fn check(&self, config: &Config) -> Result<(), String> {
        if self.corrupt != 0 {
            return Err(format!("{} boxes came back corrupt", self.corrupt));
        }
        if self.received != config.pairs {
            return Err(format!(
                "{} boxes came back of {} sent",
                self.received, config.pairs
            ));
        }
        if self.checksum != config.expected_checksum() {
            return Err("the boxes that came back are not the ones sent \
                        (one lost and another seen twice)"
                .into());
        }
        Ok(())
    }
}

/// A box's identity: producer in the top 16 bits, sequence number below.
#[inline(always)]
fn identity(producer: usize, seq: u64) -> u64 {
    ((producer as u64) << 48) | seq
}

/// Word `j` (0 to 7) of the box with identity `id`: `id` itself for word 0, and `id` xor a
/// constant per word after it, so a zeroed box or one written by two producers fails the
/// check, for about one instruction per word written and two per word checked (the harness
/// should cost little next to the allocator).
#[inline(always)]
pub fn word(id: u64, j: u64) -> u64 {
    id ^ j.wrapping_mul(0x9e37_79b9_7f4a_7c15)
}

/// What the checksum adds up per box: a hash of its identity (splitmix64's finaliser), so a
/// lost box and a box seen twice do not cancel out as plain identities could.
#[inline(always)]
pub fn fingerprint(id: u64) -> u64 {
    let mut z = id.wrapping_add(0x6a09_e667_f3bc_c909);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// The allocation of one box; `#[inline(never)]` so that callgrind can count inside it.
///
/// # Safety
///
/// - The box is freed with [`free_box`] on the same peer.
#[inline(never)]
pub unsafe fn alloc_box<P: ThreadedPeer>(peer: &P) -> *mut u8 {
    // SAFETY: `BOX` is not zero-sized.
    unsafe { peer.alloc(BOX) }
}

/// The free of one box; `#[inline(never)]` so that callgrind can count inside it.
///
/// # Safety
///
/// - `ptr` came from [`alloc_box`] on this peer, is live and not used afterwards.
#[inline(never)]
pub unsafe fn free_box<P: ThreadedPeer>(peer: &P, ptr: *mut u8) {
    // SAFETY: the caller's contract, with `BOX` the layout of every box.
    unsafe { peer.free(ptr, BOX) }
}

/// A batch of boxes on its way to a consumer.
struct Batch(Vec<*mut u8>);

// SAFETY: the boxes of a batch are owned by the batch alone (the producer keeps no pointer to
// them), and every peer takes frees from any thread (`ThreadedPeer`).
unsafe impl Send for Batch {}

/// What one consumer saw.
#[derive(Clone, Copy, Debug, Default)]
struct Tally {
    received: u64,
    corrupt: u64,
    checksum: u64,
}

/// Producer `producer`: makes `count` boxes and sends them in batches to `to`, in turn.
fn produce<P: ThreadedPeer>(peer: &P, producer: usize, count: u64, to: &[SyncSender<Batch>]) {
    let mut next = producer % to.len();
    let mut seq = 0;
    while seq < count {
        let n = (count - seq).min(BATCH as u64);
        let mut batch = Vec::with_capacity(BATCH);
        for _ in 0..n {
            // SAFETY: the box is handed to a consumer, which frees it with `free_box`.
            let p = unsafe { alloc_box(peer) };
            if p.is_null() {
                handle_alloc_error(BOX);
            }
            let id = identity(producer, seq);
            let words = p.cast::<u64>();
            // SAFETY: `p` is a fresh block of `BOX`: eight 8-aligned words.
            unsafe {
                for j in 0..8 {
                    words.add(j).write(word(id, j as u64));
                }
            }
            batch.push(p);
            seq += 1;
        }
        to[next]
            .send(Batch(batch))
            .expect("consumers drain their channels until every producer is done");
        next = (next + 1) % to.len();
    }
}

/// A consumer: verifies and frees every box it receives, until every producer is done.
fn consume<P: ThreadedPeer>(peer: &P, from: Receiver<Batch>) -> Tally {
    let mut tally = Tally::default();
    for Batch(boxes) in from {
        for p in boxes {
            let words = p.cast::<u64>();
            // SAFETY: `p` is a live box, its eight words written by its producer before the
            // send, which happens-before this receive.
            let id = unsafe { words.read() };
            let intact = (1..8).all(|j| {
                // SAFETY: as above, `j < 8`.
                unsafe { words.add(j).read() == word(id, j as u64) }
            });
            if intact {
                tally.received += 1;
                tally.checksum = tally.checksum.wrapping_add(fingerprint(id));
            } else {
                tally.corrupt += 1;
            }
            // SAFETY: `p` came from `alloc_box` on this peer; the batch owned it and drops
            // it here.
            unsafe { free_box(peer, p) };
        }
    }
    tally
}

/// Runs W8 once on `peer`: spawns the threads, times the pipeline, verifies every box.
pub fn run<P: ThreadedPeer>(peer: &P, config: &Config) -> Outcome {
    assert!(config.producers > 0 && config.consumers > 0);
    assert!(config.producers < 1 << 16 && config.pairs < 1 << 48);
    let barrier = Barrier::new(config.producers + config.consumers + 1);
    let (senders, receivers): (Vec<_>, Vec<_>) = (0..config.consumers)
        .map(|_| sync_channel::<Batch>(CHANNEL_BOUND))
        .unzip();
    std::thread::scope(|s| {
        let barrier = &barrier;
        let consumers: Vec<_> = receivers
            .into_iter()
            .map(|rx| {
                s.spawn(move || {
                    barrier.wait();
                    consume(peer, rx)
                })
            })
            .collect();
        for p in 0..config.producers {
            let senders = senders.clone();
            let count = config.share(p);
            s.spawn(move || {
                barrier.wait();
                produce(peer, p, count, &senders);
            });
        }
        // The consumers end when every producer has dropped its senders.
        drop(senders);
        barrier.wait();
        let start = Instant::now();
        let tallies: Vec<Tally> = consumers
            .into_iter()
            .map(|c| c.join().expect("a consumer panicked"))
            .collect();
        let elapsed = start.elapsed();
        tallies.iter().fold(
            Outcome {
                elapsed,
                ..Outcome::default()
            },
            |o, t| Outcome {
                elapsed,
                received: o.received + t.received,
                corrupt: o.corrupt + t.corrupt,
                checksum: o.checksum.wrapping_add(t.checksum),
            },
        )
    })
}
