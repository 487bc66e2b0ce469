//! Benchmarks of [pyalloc](pyalloc) against its peers: glibc, mimalloc, jemalloc, CPython's
//! pymalloc, bumpalo (the allocation-only bound) and a bare LIFO list per size class (the
//! floor).
//!
//! - `benches/alloc.rs` (`cargo bench -p pyalloc-bench`): W1–W4 under criterion.
//! - `--bin replay`: W5, replay of real CPython allocation traces ([`replay`]).
//! - `--bin memory`: W6, RSS per peer in fresh child processes.
//! - `--bin pairs` with `callgrind.sh`: instructions per alloc+free pair.
//!
//! Every measurement goes through one adapter, [`Peer`], and is generic over it.

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
                    format!("unknown peer {k:?}: one of {}", keys.join(", "))
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
