//! Benchmarks of [pyalloc] against its peers: glibc, mimalloc, jemalloc, CPython's
//! pymalloc, bumpalo (the allocation-only bound) and a bare LIFO list per size class (the
//! floor).
//!
//! - `benches/alloc.rs` (`cargo bench -p pyalloc-bench`): W1–W4 under criterion.
//! - `--bin replay`: W5, replay of real CPython allocation traces ([`replay`]).
//! - `--bin memory`: W6, RSS per peer in fresh child processes.
//! - `--bin pairs` with `callgrind.sh`: instructions per alloc+free pair.
//! - `--bin crossthread` with `callgrind-crossthread.sh`: W8, boxes allocated on producer
//!   threads and freed on consumer threads ([`crossthread`]).
//!
//! Every single-threaded measurement goes through one adapter, [`Peer`], and is generic over
//! it; W8's peers are shared by threads and implement [`crossthread::ThreadedPeer`] instead. `replay` and
//! `memory` also draw their tables as SVG bar charts ([`chart`]).

pub mod cabi;
pub mod chart;
pub mod crossthread;
pub mod peers;
pub mod replay;
pub mod rng;
pub mod rss;
pub mod trace;
pub mod workloads;

pub use peers::{with_peer, Peer, PeerKind, PeerVisitor};
pub use trace::{Event, Op, Trace};

/// A 32-byte object type with its own layer-3 free list, for the layer-3 hit benchmark.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Obj32(pub [u64; 4]);

// SAFETY: `ID` is a static declared here for `Obj32` alone.
unsafe impl pyalloc::FreeListed for Obj32 {
    const NAME: &'static str = "Obj32";
    fn free_list_id() -> &'static pyalloc::FreeListId {
        static ID: pyalloc::FreeListId = pyalloc::FreeListId::new();
        &ID
    }
}

/// A bare typed LIFO free list of [`Obj32`] slots: what a layer-3 hit cannot beat.
#[derive(Debug, Default)]
pub struct BareLifo {
    head: core::cell::Cell<Option<core::ptr::NonNull<Obj32>>>,
}

impl BareLifo {
    /// The most recently freed slot, or a fresh boxed one. Uninitialised in effect: the
    /// caller writes a value before reading.
    #[inline(always)]
    pub fn pop(&self) -> core::ptr::NonNull<Obj32> {
        match self.head.get() {
            Some(p) => {
                // SAFETY: a slot on the list holds the next slot's address in its first word.
                let next = unsafe { p.cast::<Option<core::ptr::NonNull<Obj32>>>().read() };
                self.head.set(next);
                p
            }
            None => core::ptr::NonNull::from(Box::leak(Box::new(Obj32::default()))),
        }
    }

    /// Puts a slot back.
    ///
    /// # Safety
    ///
    /// - `p` came from [`pop`](Self::pop) of this list and is not used afterwards.
    #[inline(always)]
    pub unsafe fn push(&self, p: core::ptr::NonNull<Obj32>) {
        // SAFETY: the slot is 32 bytes, pointer-aligned and dead (caller's contract).
        unsafe {
            p.cast::<Option<core::ptr::NonNull<Obj32>>>()
                .write(self.head.get())
        };
        self.head.set(Some(p));
    }

    /// One layer-3-style cycle: takes a slot, moves `value` in, and puts the slot back.
    #[inline(always)]
    pub fn cycle(&self, value: Obj32) {
        let p = self.pop();
        // SAFETY: `p` is a dead slot of this list, written and pushed back at once.
        unsafe {
            p.write(value);
            self.push(std::hint::black_box(p));
        }
    }
}

impl Drop for BareLifo {
    fn drop(&mut self) {
        while self.head.get().is_some() {
            // SAFETY: every slot came from `Box::leak` of an `Obj32`, and leaves the list here.
            drop(unsafe { Box::from_raw(self.pop().as_ptr()) });
        }
    }
}

/// Parses the `--peers a,b,..` list; all available peers when `None`.
pub fn parse_peers(list: Option<&str>) -> Result<Vec<PeerKind>, String> {
    match list {
        None => Ok(PeerKind::ALL.to_vec()),
        Some(list) => list
            .split(',')
            .filter(|k| !k.is_empty())
            .map(|k| {
                PeerKind::from_key(k).ok_or_else(|| {
                    let keys: Vec<_> = PeerKind::ALL.iter().map(|p| p.key()).collect();
                    format!(
                        "unknown peer {k:?}: one of {}, pyalloc:POLICY (immediate, or a delay \
                         such as 10ms), or cabi:NAME=PATH (a shared library)",
                        keys.join(", ")
                    )
                })
            })
            .collect(),
    }
}

/// Drops the peers that cannot run here, printing one line for each.
pub fn available_peers(peers: &[PeerKind]) -> Vec<PeerKind> {
    peers
        .iter()
        .copied()
        .filter(|p| match p.unavailable_reason() {
            None => true,
            Some(why) => {
                println!("{}: {why}", p.key());
                false
            }
        })
        .collect()
}
