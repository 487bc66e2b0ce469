//! The allocator behind [pyalloc](https://docs.rs/pyalloc): CPython's small-object allocator
//! (pymalloc, `Objects/obmalloc.c`) in Rust, layer by layer.
//!
//! ```text
//!  layer 3   per-type free lists    free_list, pooled   bounded LIFO of freed slots, per heap
//!  layer 2   blocks in size classes size_class, pool    16-byte steps, 32 classes up to 512 B
//!  layer 1   arenas and pools       arena               1 MiB arenas of 16 KiB pools
//!  layer 0   the OS                 os                  mmap/munmap; large requests → malloc
//! ```
//!
//! Modules import only downwards, in this order (each line imports only from lines above it):
//!
//! ```text
//!  config, valgrind, gate, sys     tunables; memcheck hooks; the re-entrancy gate; the
//!                                  system allocator (std's, or glibc's `__libc_*` ones)
//!  meta                            the system allocator the core's own structures live in
//!  fill, link, size_class          fill patterns; the free-block link; class arithmetic
//!  remote                          frees from other threads: mailboxes, who holds a heap
//!  os                              layer 0: arena sources
//!  process_map                     `Global`'s arenas, one bit per slot, for any thread
//!  arena                           layer 1: the arena table, the spares budget
//!  pool                            layer 2's unit: a pool and the used-pool list
//!  raw                             layers 0-2: the unsafe `&mut self` core
//!  free_list                       layer 3: free lists, freeing straight into `raw`
//!  debug                           the debug mode: a layer over `raw` and `free_list`
//!  stats                           the figures, and the occupancy map
//!  heap                            the safe `!Sync` `Heap`, its one way in, `Allocator`
//!  pooled                          `Pooled<T>`, layer 3's owning pointer
//!  global                          `Global`: a heap per thread, the registry, remote frees
//!  pool_box                        `PoolBox<T>`: layer 3 on the calling thread's heap
//! ```
//!
//! Most users depend on the `pyalloc` facade crate instead, which re-exports this one together
//! with `#[derive(FreeListed)]`.

mod arena;
mod config;
mod debug;
mod fill;
mod free_list;
mod gate;
mod global;
mod heap;
mod link;
mod meta;
mod os;
mod pool;
mod pool_box;
mod pooled;
mod process_map;
mod raw;
mod remote;
mod size_class;
mod stats;
mod sys;
mod valgrind;

pub use allocator_api2;
pub use config::{
    ConfigError, HeapConfig, Release, ALIGNMENT, DEFAULT_ARENA_SIZE, DEFAULT_POOL_SIZE,
    MAX_ARENA_SIZE, MAX_POOLS_PER_ARENA, MIN_POOL_SIZE, NUM_SIZE_CLASSES, SMALL_REQUEST_THRESHOLD,
};
pub use fill::{FREED_BYTE, FRESH_BYTE, GUARD_BYTE};
pub use free_list::{
    FreeListId, FreeListKey, FreeListStats, FreeListed, DEFAULT_FREE_LIST_CAPACITY,
    MAX_FREE_LIST_CAPACITY,
};
pub use global::{Global, ProcessStats};
pub use heap::{Heap, TrimReport};
#[cfg(unix)]
pub use os::MmapSource;
pub use os::{
    monotonic_nanos, ArenaSource, FailingSource, ManualClock, ManualClockSource, SystemSource,
};
pub use pool_box::PoolBox;
pub use pooled::Pooled;
pub use stats::{ArenaOccupancy, ClassStats, FreeListLine, Occupancy, PoolState, Stats};
/// glibc's allocator reached through `__libc_malloc` and its siblings (never the `malloc`
/// symbol), for a pyalloc that is itself the process's `malloc`; and the early look-up of
/// glibc's `malloc_usable_size` it needs. Only with the `glibc-internals` feature.
#[cfg(feature = "glibc-internals")]
pub use sys::{resolve_malloc_usable_size, System as LibcSystem};

/// Not public API: what `#[derive(FreeListed)]` expands to refers to these paths.
#[doc(hidden)]
pub mod __private {
    pub use crate::free_list::{FreeListId, FreeListed};
}
