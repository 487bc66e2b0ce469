//! Every tunable in one place, with the invariants the rest of the crate relies on.
//!
//! The fixed figures (class step, small-request threshold, number of classes) are compile-time
//! constants because the fast path computes with them; the geometry (pool and arena size) and
//! the policies are per heap, chosen through [`HeapConfig`] and validated once, when the heap is
//! built, so that a bad choice is a [`ConfigError`] and never a panic deep inside.

use core::fmt;
use core::time::Duration;

use static_assertions::const_assert;

/// Every block is aligned to this, and size classes are this many bytes apart.
///
/// CPython uses 16 on 64-bit platforms since 3.8 (8 before): the widest scalar a C compiler may
/// place in an object (`long double`, SSE) needs it.
pub const ALIGNMENT: usize = 16;

/// `log2(ALIGNMENT)`: a request's class is `(size - 1) >> ALIGNMENT_SHIFT`.
pub const ALIGNMENT_SHIFT: u32 = ALIGNMENT.trailing_zeros();

/// Requests of at most this many bytes (and aligned to at most [`ALIGNMENT`]) are served from
/// pools; larger ones go to the system allocator. CPython's `SMALL_REQUEST_THRESHOLD`.
pub const SMALL_REQUEST_THRESHOLD: usize = 512;

/// Number of size classes: class `i` serves sizes `16*i+1 ..= 16*(i+1)`.
pub const NUM_SIZE_CLASSES: usize = SMALL_REQUEST_THRESHOLD / ALIGNMENT;

/// CPython 3.10+'s pool size, 16 KiB.
pub const DEFAULT_POOL_SIZE: usize = 16 << 10;

/// CPython 3.10+'s arena size, 1 MiB.
pub const DEFAULT_ARENA_SIZE: usize = 1 << 20;

/// The most pools one arena may hold. An arena tracks its free pools in two one-word bitmaps,
/// so that taking and returning a pool is a bit operation; both of CPython's geometries (256 KiB
/// of 4 KiB pools, 1 MiB of 16 KiB pools) have exactly 64.
pub const MAX_POOLS_PER_ARENA: usize = 64;

/// The smallest pool: one page, as in CPython before 3.10. A pool must also be large enough to
/// hold its header and several blocks of the largest class.
pub const MIN_POOL_SIZE: usize = 4 << 10;

/// The largest arena a heap accepts (1 GiB): arena indices and offsets stay far from `u32` limits.
pub const MAX_ARENA_SIZE: usize = 1 << 30;

const_assert!(ALIGNMENT.is_power_of_two());
const_assert!(ALIGNMENT >= core::mem::size_of::<*mut u8>());
const_assert!(SMALL_REQUEST_THRESHOLD % ALIGNMENT == 0);
const_assert!(NUM_SIZE_CLASSES == 32);
const_assert!(DEFAULT_POOL_SIZE.is_power_of_two() && DEFAULT_ARENA_SIZE.is_power_of_two());
const_assert!(DEFAULT_ARENA_SIZE / DEFAULT_POOL_SIZE == MAX_POOLS_PER_ARENA);
const_assert!(MAX_POOLS_PER_ARENA <= u64::BITS as usize);
const_assert!(MIN_POOL_SIZE >= 4 * SMALL_REQUEST_THRESHOLD);

/// The geometry and policies of one [`Heap`](crate::Heap).
///
/// Built with `HeapConfig::new()` (CPython 3.10+'s figures) and refined with builder methods;
/// checked by [`HeapConfig::validate`] when the heap is built.
///
/// ```
/// use pyalloc::{Heap, HeapConfig};
///
/// // CPython 3.9's geometry: 256 KiB arenas of 4 KiB pools, and a 64 MiB budget.
/// let config = HeapConfig::new()
///     .arena_size(256 << 10)
///     .pool_size(4 << 10)
///     .memory_limit(64 << 20);
/// let heap = Heap::with_config(config).unwrap();
/// assert_eq!(heap.config().pools_per_arena(), 64);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HeapConfig {
    pub(crate) pool_size: usize,
    pub(crate) arena_size: usize,
    pub(crate) empty_arenas_kept: usize,
    pub(crate) memory_limit: Option<usize>,
    pub(crate) free_lists: bool,
    pub(crate) debug: bool,
    pub(crate) release: Release,
}

/// What a heap does with the memory of pools and arenas that empty: its release policy.
///
/// Memory given back to the OS must be faulted in (and zeroed by the kernel) again when it is
/// needed again, so giving back at once makes a program that frees a large set and builds it
/// again pay for every page twice; never giving back keeps a program's peak for good.
/// A decay keeps what empties for a while, the way jemalloc's dirty decay and mimalloc's purge
/// delay do, and gives back only what stayed unused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Release {
    /// CPython's policy: an arena whose pools are all empty goes back to the OS at once (beyond
    /// [`HeapConfig::empty_arenas_kept`]); the pages of empty pools inside live arenas stay
    /// resident until [`Heap::trim`](crate::Heap::trim).
    Immediate,
    /// Keep emptied pools and arenas for reuse, and give them back once they have stayed unused
    /// for about this long: the free pools of an arena are purged (`madvise`) one delay after
    /// the first of them emptied, and an empty arena beyond the spares budget is unmapped one
    /// delay after it emptied. The clock is read on the heap's slow paths only (a pool taken
    /// from or given back to an arena, a request for the system allocator), and only while
    /// something waits to decay; no thread runs in the background, so a heap nobody calls
    /// keeps what it holds until its next slow path or [`Heap::trim`](crate::Heap::trim).
    Decay(Duration),
}

impl Default for HeapConfig {
    fn default() -> Self {
        Self::new()
    }
}

impl HeapConfig {
    /// CPython 3.10+'s geometry: 16 KiB pools in 1 MiB arenas, one empty arena kept, no memory
    /// limit, free lists on.
    pub const fn new() -> Self {
        HeapConfig {
            pool_size: DEFAULT_POOL_SIZE,
            arena_size: DEFAULT_ARENA_SIZE,
            empty_arenas_kept: 1,
            memory_limit: None,
            free_lists: true,
            debug: false,
            release: Release::Immediate,
        }
    }

    /// Pool size in bytes: a power of two, at least [`MIN_POOL_SIZE`].
    pub const fn pool_size(mut self, bytes: usize) -> Self {
        self.pool_size = bytes;
        self
    }

    /// Arena size in bytes: a power of two holding 1 to [`MAX_POOLS_PER_ARENA`] pools.
    pub const fn arena_size(mut self, bytes: usize) -> Self {
        self.arena_size = bytes;
        self
    }

    /// How many spares the heap keeps instead of returning them at once: arenas whose pools
    /// are all empty (CPython keeps one, bpo-37257: without it a loop that allocates and frees
    /// across an arena boundary maps and unmaps an arena every iteration), and the one *cached
    /// empty pool*: a class's last pool, kept in place when its last block is freed so that a
    /// loop allocating and freeing one block does not send the pool to its arena and back on
    /// every iteration. Both share this budget, so a fully freed heap keeps at most this many
    /// spares; 0 turns both off. [`Heap::trim`](crate::Heap::trim) returns the cached pool.
    pub const fn empty_arenas_kept(mut self, arenas: usize) -> Self {
        self.empty_arenas_kept = arenas;
        self
    }

    /// The most bytes the heap may hold from the OS: arenas mapped plus large (system)
    /// allocations. A request past it fails with `AllocError`; the heap stays usable.
    pub const fn memory_limit(mut self, bytes: usize) -> Self {
        self.memory_limit = Some(bytes);
        self
    }

    /// Whether layer-3 free lists keep freed slots (the default) or every pooled value's slot
    /// goes straight back to layer 2, as if every free list had capacity 0.
    pub const fn free_lists(mut self, enabled: bool) -> Self {
        self.free_lists = enabled;
        self
    }

    /// The debug mode, as CPython's `PYTHONMALLOC=debug`: guard bytes around every block,
    /// fill patterns, and a record of every live block, so that overruns, underruns, double
    /// frees, frees with the wrong layout or to the wrong heap, and writes after free are
    /// reported (by a panic naming the problem and the address) before they corrupt anything
    /// else. Slower and larger; off by default, and free of cost when off. See
    /// [`Heap`](crate::Heap)'s "Debug mode" section for every misuse it names.
    pub const fn debug(mut self, enabled: bool) -> Self {
        self.debug = enabled;
        self
    }

    /// The release policy: what happens to the memory of pools and arenas that empty (see
    /// [`Release`]).
    pub const fn release(mut self, policy: Release) -> Self {
        self.release = policy;
        self
    }

    /// The configured release policy.
    pub const fn get_release(&self) -> Release {
        self.release
    }

    /// Whether the debug mode is on.
    pub const fn get_debug(&self) -> bool {
        self.debug
    }

    /// Pools per arena under this geometry (0 for a pool size of 0: an accessor of a config
    /// not yet validated never panics).
    pub const fn pools_per_arena(&self) -> usize {
        match self.arena_size.checked_div(self.pool_size) {
            Some(pools) => pools,
            None => 0,
        }
    }

    /// The configured pool size in bytes.
    pub const fn get_pool_size(&self) -> usize {
        self.pool_size
    }

    /// The configured arena size in bytes.
    pub const fn get_arena_size(&self) -> usize {
        self.arena_size
    }

    /// The configured number of empty arenas kept.
    pub const fn get_empty_arenas_kept(&self) -> usize {
        self.empty_arenas_kept
    }

    /// The configured memory limit, if any.
    pub const fn get_memory_limit(&self) -> Option<usize> {
        self.memory_limit
    }

    /// Whether layer-3 free lists are enabled.
    pub const fn get_free_lists(&self) -> bool {
        self.free_lists
    }

    /// Checks the geometry; every rule broken is named in the error.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !self.pool_size.is_power_of_two() || self.pool_size < MIN_POOL_SIZE {
            return Err(ConfigError::PoolSize(self.pool_size));
        }
        if !self.arena_size.is_power_of_two() || self.arena_size > MAX_ARENA_SIZE {
            return Err(ConfigError::ArenaSize(self.arena_size));
        }
        if self.arena_size < self.pool_size
            || self.arena_size / self.pool_size > MAX_POOLS_PER_ARENA
        {
            return Err(ConfigError::PoolsPerArena {
                arena_size: self.arena_size,
                pool_size: self.pool_size,
            });
        }
        Ok(())
    }
}

/// Why a [`HeapConfig`] was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// The pool size is not a power of two of at least [`MIN_POOL_SIZE`] bytes.
    PoolSize(usize),
    /// The arena size is not a power of two of at most [`MAX_ARENA_SIZE`] bytes.
    ArenaSize(usize),
    /// The arena does not hold between 1 and [`MAX_POOLS_PER_ARENA`] pools.
    PoolsPerArena {
        /// The arena size asked for.
        arena_size: usize,
        /// The pool size asked for.
        pool_size: usize,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigError::PoolSize(size) => write!(
                f,
                "pool size {size} is not a power of two of at least {MIN_POOL_SIZE} bytes"
            ),
            ConfigError::ArenaSize(size) => write!(
                f,
                "arena size {size} is not a power of two of at most {MAX_ARENA_SIZE} bytes"
            ),
            ConfigError::PoolsPerArena {
                arena_size,
                pool_size,
            } => write!(
                f,
                "an arena of {arena_size} bytes holds {} pools of {pool_size} bytes; \
                 it must hold between 1 and {MAX_POOLS_PER_ARENA}",
                arena_size.checked_div(pool_size).unwrap_or(0)
            ),
        }
    }
}

impl std::error::Error for ConfigError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_cpython_3_10() {
        let c = HeapConfig::new();
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(c.pools_per_arena(), 64);
        assert_eq!(c.get_empty_arenas_kept(), 1);
    }

    #[test]
    fn accessors_of_an_unvalidated_config_do_not_panic() {
        let c = HeapConfig::new().pool_size(0);
        assert_eq!(c.pools_per_arena(), 0);
        assert_eq!(c.validate(), Err(ConfigError::PoolSize(0)));
        let e = ConfigError::PoolsPerArena {
            arena_size: 1 << 20,
            pool_size: 0,
        };
        assert!(e.to_string().contains("holds 0 pools"), "{e}");
    }

    #[test]
    fn bad_geometry_is_named() {
        let e = HeapConfig::new().pool_size(5000).validate().unwrap_err();
        assert_eq!(e, ConfigError::PoolSize(5000));
        assert!(e.to_string().contains("pool size 5000"));
        let e = HeapConfig::new().pool_size(1024).validate().unwrap_err();
        assert_eq!(e, ConfigError::PoolSize(1024));
        let e = HeapConfig::new()
            .arena_size(3 << 20)
            .validate()
            .unwrap_err();
        assert_eq!(e, ConfigError::ArenaSize(3 << 20));
        let e = HeapConfig::new()
            .arena_size(4 << 20)
            .pool_size(4096)
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("holds 1024 pools"), "{e}");
        let e = HeapConfig::new()
            .arena_size(4096)
            .pool_size(8192)
            .validate()
            .unwrap_err();
        assert!(matches!(e, ConfigError::PoolsPerArena { .. }));
    }
}
