//! Layer 0: memory from the operating system, in whole arenas.
//!
//! An [`ArenaSource`] hands out arenas aligned to their own size, so that a pool's arena is found
//! by masking and no pool is lost to alignment (CPython's mmap'd arenas are only page aligned and
//! lose one pool in 64). Three sources ship:
//!
//! * [`MmapSource`] (Unix, the default): anonymous `mmap`, over-mapped and trimmed to alignment;
//!   `munmap` on release; `madvise(MADV_DONTNEED)` to hand an empty pool's pages back.
//! * [`SystemSource`]: the system allocator with the arena's alignment, for platforms without
//!   mmap. It cannot purge pages.
//! * [`FailingSource`]: wraps another source and fails from a chosen call on, so tests can
//!   check that running out of memory is an `AllocError` and never a crash.
//!
//! The OS also tells the time: the release policy's decay ([`Release`](crate::Release)) asks the
//! source for a monotonic clock, on the heap's slow path only. [`ManualClock`] replaces it in
//! tests, so that a decay is stepped through without sleeping.
//!
//! Requests too large for pools do not come here: they go to the system allocator directly.

use core::alloc::Layout;
use core::ptr::NonNull;
use core::time::Duration;

#[cfg(all(unix, miri))]
use crate::meta::MetaVec;
use crate::meta::{Meta, MetaBox};

/// Where a heap's arenas come from.
///
/// # Safety
///
/// Implementors promise, and the heap relies on it for soundness:
/// * [`map_arena`](ArenaSource::map_arena) returns either `None` or a pointer to `size` bytes
///   of readable and writable memory, aligned to `size`, owned by nobody else until it is
///   passed back to [`unmap_arena`](ArenaSource::unmap_arena);
/// * [`purge`](ArenaSource::purge) leaves the range readable and writable (its contents may
///   become anything);
/// * no method calls back into the heap that owns the source.
pub unsafe trait ArenaSource {
    /// Maps one arena of `size` bytes (a power of two), aligned to `size`, or returns `None`
    /// when the memory cannot be had.
    fn map_arena(&mut self, size: usize) -> Option<NonNull<u8>>;

    /// Returns an arena to the OS.
    ///
    /// # Safety
    ///
    /// `arena` was returned by `map_arena(size)` of this source, with the same `size`, and is
    /// not used afterwards.
    unsafe fn unmap_arena(&mut self, arena: NonNull<u8>, size: usize);

    /// Tells the OS that the contents of `len` bytes at `ptr` are no longer needed, so their
    /// pages can be reclaimed. Returns whether anything was done. The default does nothing.
    ///
    /// # Safety
    ///
    /// The range lies inside one arena mapped by this source and holds no live data.
    unsafe fn purge(&mut self, ptr: NonNull<u8>, len: usize) -> bool {
        let _ = (ptr, len);
        false
    }

    /// Monotonic time in nanoseconds, for the release policy's decay. Read on the heap's slow
    /// path only (a pool taken from or given back to an arena), and only while something
    /// waits to decay. The default is [`monotonic_nanos`].
    fn now(&mut self) -> u64 {
        monotonic_nanos()
    }
}

/// The OS's monotonic clock in nanoseconds, coarse where that is cheaper: on Linux
/// `CLOCK_MONOTONIC_COARSE` (a few nanoseconds through the vDSO, ticking every 1 to 4 ms,
/// which is fine for delays of milliseconds), elsewhere `std::time::Instant` from a process-wide
/// epoch.
pub fn monotonic_nanos() -> u64 {
    #[cfg(all(target_os = "linux", not(miri)))]
    {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux knows.
        let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
        if rc == 0 {
            return (ts.tv_sec as u64)
                .saturating_mul(1_000_000_000)
                .saturating_add(ts.tv_nsec as u64);
        }
    }
    use std::sync::OnceLock;
    use std::time::Instant;
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    u64::try_from(epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

/// Zeroed memory for the heap's sparse tables (the arena map's root and leaves, the free-list
/// heads, the process map's leaves): `bytes` of address space straight from the OS, not from an
/// allocator, so that only the pages written are ever resident. A table sized for the whole
/// address space but written in one place then costs a page, where `calloc` would clear (and
/// fault in) all of it. Reserved with `MAP_NORESERVE`: no commit charge either. `None` when
/// the OS refuses. Elsewhere than Unix, zeroed system memory.
pub(crate) fn map_zeroed(bytes: usize) -> Option<NonNull<u8>> {
    #[cfg(unix)]
    {
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                bytes,
                libc::PROT_READ | libc::PROT_WRITE,
                // Miri's `mmap` takes no other flags.
                libc::MAP_PRIVATE
                    | libc::MAP_ANONYMOUS
                    | if cfg!(miri) { 0 } else { libc::MAP_NORESERVE },
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        NonNull::new(base.cast())
    }
    #[cfg(not(unix))]
    {
        let layout = zeroed_layout(bytes)?;
        // SAFETY: a non-zero size (callers map whole tables).
        NonNull::new(unsafe { std::alloc::GlobalAlloc::alloc_zeroed(&Meta, layout) })
    }
}

/// Gives back what [`map_zeroed`] mapped.
///
/// # Safety
///
/// `base` came from `map_zeroed(bytes)`, with the same `bytes`, and is not used afterwards.
pub(crate) unsafe fn unmap_zeroed(base: NonNull<u8>, bytes: usize) {
    #[cfg(unix)]
    // SAFETY: the caller's contract: a whole mapping of ours that nobody uses any more.
    unsafe {
        libc::munmap(base.as_ptr().cast(), bytes);
    }
    #[cfg(not(unix))]
    {
        let layout = zeroed_layout(bytes).expect("the layout map_zeroed used");
        // SAFETY: the caller's contract: allocated by `map_zeroed` with this layout.
        unsafe { std::alloc::GlobalAlloc::dealloc(&Meta, base.as_ptr(), layout) };
    }
}

/// The layout of a [`map_zeroed`] table in system memory: page-aligned, as a mapping is.
#[cfg(not(unix))]
fn zeroed_layout(bytes: usize) -> Option<Layout> {
    Layout::from_size_align(bytes, 4096).ok()
}

/// A heap's arena source, boxed in system memory like the rest of the core's structures (see
/// [`meta`](crate::meta)): boxing a source of the caller's through the global allocator would
/// re-enter a heap that serves as the global allocator.
pub(crate) type SourceBox = MetaBox<dyn ArenaSource + Send>;

/// Boxes `source` in system memory (a zero-sized source, as the default one, takes none).
pub(crate) fn boxed_source<S: ArenaSource + Send + 'static>(source: S) -> SourceBox {
    allocator_api2::unsize_box!(MetaBox::new_in(source, Meta))
}

/// The default source of this platform: [`MmapSource`] on Unix, [`SystemSource`] elsewhere.
pub(crate) fn default_source() -> SourceBox {
    #[cfg(unix)]
    {
        boxed_source(MmapSource::new())
    }
    #[cfg(not(unix))]
    {
        boxed_source(SystemSource)
    }
}

/// Arenas from anonymous `mmap`, aligned by over-mapping and trimming.
#[cfg(unix)]
#[derive(Debug)]
#[cfg_attr(not(miri), derive(Default))]
pub struct MmapSource {
    /// Miri can only `munmap` a whole mapping, so under Miri the over-mapped region is kept and
    /// remembered here as `(arena address, mapping start, mapping length)`; in system memory,
    /// as the heap's own structures are.
    #[cfg(miri)]
    mappings: MetaVec<(usize, NonNull<u8>, usize)>,
}

/// A `MetaVec` has no `Default` (allocator-api2 gives one to `Vec<T, Global>` only).
#[cfg(all(unix, miri))]
impl Default for MmapSource {
    fn default() -> Self {
        MmapSource {
            #[cfg(miri)]
            mappings: MetaVec::new_in(Meta),
        }
    }
}

// SAFETY: the only state is the Miri bookkeeping of mappings this source owns; moving it to
// another thread moves that ownership with it.
#[cfg(unix)]
unsafe impl Send for MmapSource {}

#[cfg(unix)]
impl MmapSource {
    /// A new mmap source.
    pub fn new() -> Self {
        Self::default()
    }
}

// SAFETY: `map_arena` returns a fresh private anonymous mapping (readable, writable, owned by
// no one else) trimmed to exactly `size` bytes at a `size`-aligned address; `purge` uses
// MADV_DONTNEED, which keeps the range mapped read-write; nothing here touches a heap.
#[cfg(unix)]
unsafe impl ArenaSource for MmapSource {
    fn map_arena(&mut self, size: usize) -> Option<NonNull<u8>> {
        debug_assert!(size.is_power_of_two());
        // Map twice the size: a `size`-aligned run of `size` bytes always lies inside.
        let map_len = size.checked_mul(2)?;
        // SAFETY: an anonymous private mapping at an address of the kernel's choosing touches
        // no existing memory.
        let base = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                map_len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return None;
        }
        let base = base.cast::<u8>();
        let lead = base.addr().wrapping_neg() & (size - 1);
        // SAFETY: `lead < size`, so the arena lies inside the `2 * size` mapping.
        let arena = unsafe { base.add(lead) };
        #[cfg(not(miri))]
        {
            let trail = size - lead;
            // SAFETY: both ranges lie in the mapping just made and outside the arena; a zero
            // length is skipped because munmap rejects it.
            unsafe {
                if lead > 0 {
                    libc::munmap(base.cast(), lead);
                }
                if trail > 0 {
                    libc::munmap(arena.add(size).cast(), trail);
                }
            }
        }
        let arena = NonNull::new(arena)?;
        #[cfg(miri)]
        self.mappings
            .push((arena.as_ptr().addr(), NonNull::new(base)?, map_len));
        Some(arena)
    }

    unsafe fn unmap_arena(&mut self, arena: NonNull<u8>, size: usize) {
        #[cfg(not(miri))]
        // SAFETY: the caller passes an arena this source mapped, with its size, and is done
        // with it; the trimming in `map_arena` left exactly this range mapped.
        unsafe {
            libc::munmap(arena.as_ptr().cast(), size);
        }
        #[cfg(miri)]
        {
            let _ = size;
            let at = self
                .mappings
                .iter()
                .position(|&(addr, _, _)| addr == arena.as_ptr().addr())
                .expect("unmap_arena: not an arena of this source");
            let (_, base, len) = self.mappings.swap_remove(at);
            // SAFETY: `base`/`len` is the whole mapping made for this arena, no longer used.
            unsafe {
                libc::munmap(base.as_ptr().cast(), len);
            }
        }
    }

    #[cfg(not(miri))]
    unsafe fn purge(&mut self, ptr: NonNull<u8>, len: usize) -> bool {
        // madvise needs a page-aligned start; pools are at least MIN_POOL_SIZE (one 4 KiB page)
        // and aligned to their size, so on 4 KiB-page systems the range is aligned already. On
        // larger pages, purge only the whole pages inside the range.
        let page = page_size();
        let start = ptr.as_ptr().addr();
        let first = (start + page - 1) & !(page - 1);
        let end = (start + len) & !(page - 1);
        if end <= first {
            return false;
        }
        // SAFETY: the caller guarantees the range is inside one of our arenas and holds no live
        // data; MADV_DONTNEED keeps the mapping, and later reads see zero-filled pages.
        let rc = unsafe {
            libc::madvise(
                ptr.as_ptr().add(first - start).cast(),
                end - first,
                libc::MADV_DONTNEED,
            )
        };
        rc == 0
    }
}

#[cfg(all(unix, not(miri)))]
fn page_size() -> usize {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PAGE: AtomicUsize = AtomicUsize::new(0);
    let cached = PAGE.load(Ordering::Relaxed);
    if cached != 0 {
        return cached;
    }
    // SAFETY: sysconf has no preconditions.
    let queried = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    let page = usize::try_from(queried)
        .ok()
        .filter(|p| p.is_power_of_two())
        .unwrap_or(4096);
    PAGE.store(page, Ordering::Relaxed);
    page
}

/// Arenas from the system allocator (`std::alloc::System`), aligned to their size. Portable;
/// cannot purge pages.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemSource;

// SAFETY: `System.alloc` with a `size`-aligned layout returns memory owned by the caller until
// it is deallocated with the same layout, which `unmap_arena` does.
unsafe impl ArenaSource for SystemSource {
    fn map_arena(&mut self, size: usize) -> Option<NonNull<u8>> {
        let layout = Layout::from_size_align(size, size).ok()?;
        // SAFETY: `layout` has a non-zero size (arenas are at least one pool).
        NonNull::new(unsafe { std::alloc::GlobalAlloc::alloc(&std::alloc::System, layout) })
    }

    unsafe fn unmap_arena(&mut self, arena: NonNull<u8>, size: usize) {
        // SAFETY: `map_arena` made this block with exactly this layout (it succeeded then, so
        // the layout is valid).
        unsafe {
            let layout = Layout::from_size_align_unchecked(size, size);
            std::alloc::GlobalAlloc::dealloc(&std::alloc::System, arena.as_ptr(), layout);
        }
    }
}

/// A source that serves the first `successes` arenas from `inner`, then fails every request:
/// out-of-memory injection for tests.
///
/// ```
/// use pyalloc::{FailingSource, Heap, HeapConfig, SystemSource};
/// use pyalloc::Allocator;
/// use std::alloc::Layout;
///
/// let heap = Heap::with_source(HeapConfig::new(), FailingSource::new(SystemSource, 0)).unwrap();
/// assert!(heap.allocate(Layout::new::<u64>()).is_err());
/// ```
#[derive(Debug)]
pub struct FailingSource<S> {
    inner: S,
    successes_left: usize,
    failures: usize,
}

impl<S> FailingSource<S> {
    /// Serves `successes` arenas from `inner`, then fails.
    pub fn new(inner: S, successes: usize) -> Self {
        FailingSource {
            inner,
            successes_left: successes,
            failures: 0,
        }
    }
}

impl<S: ArenaSource> FailingSource<S> {
    /// How many requests have failed so far.
    pub fn failures(&self) -> usize {
        self.failures
    }
}

// SAFETY: every arena handed out comes from `inner`, which upholds the contract; failing is
// always allowed.
unsafe impl<S: ArenaSource> ArenaSource for FailingSource<S> {
    fn map_arena(&mut self, size: usize) -> Option<NonNull<u8>> {
        if self.successes_left == 0 {
            self.failures += 1;
            return None;
        }
        self.successes_left -= 1;
        self.inner.map_arena(size)
    }

    unsafe fn unmap_arena(&mut self, arena: NonNull<u8>, size: usize) {
        // SAFETY: forwarded; the arena came from `inner`.
        unsafe { self.inner.unmap_arena(arena, size) }
    }

    unsafe fn purge(&mut self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded; the range lies in an arena of `inner`.
        unsafe { self.inner.purge(ptr, len) }
    }

    fn now(&mut self) -> u64 {
        self.inner.now()
    }
}

/// A clock that moves only when told, for tests of the release policy's decay: the heap built
/// on [`ManualClock::drive`]'s source reads this clock instead of the OS's, so a test steps a
/// decay through without sleeping. Clones share one clock.
///
/// ```
/// use pyalloc::{Heap, HeapConfig, ManualClock, Release, SystemSource};
/// use std::time::Duration;
///
/// let clock = ManualClock::new();
/// let config = HeapConfig::new().release(Release::Decay(Duration::from_millis(100)));
/// let heap = Heap::with_source(config, clock.drive(SystemSource)).unwrap();
/// clock.advance(Duration::from_millis(150));
/// assert_eq!(clock.now(), Duration::from_millis(150));
/// # drop(heap);
/// ```
#[derive(Clone, Debug, Default)]
pub struct ManualClock(std::sync::Arc<std::sync::atomic::AtomicU64>);

impl ManualClock {
    /// A clock at zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Moves the clock forward.
    pub fn advance(&self, by: Duration) {
        let nanos = u64::try_from(by.as_nanos()).unwrap_or(u64::MAX);
        self.0
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }

    /// The time on the clock.
    pub fn now(&self) -> Duration {
        Duration::from_nanos(self.0.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// A source serving `inner`'s arenas whose clock is this one.
    pub fn drive<S: ArenaSource>(&self, inner: S) -> ManualClockSource<S> {
        ManualClockSource {
            inner,
            clock: self.clone(),
        }
    }
}

/// `inner`'s arenas on a [`ManualClock`]'s time (made by [`ManualClock::drive`]).
#[derive(Debug)]
pub struct ManualClockSource<S> {
    inner: S,
    clock: ManualClock,
}

// SAFETY: every arena and purge is `inner`'s, which upholds the contract; the clock touches no
// heap.
unsafe impl<S: ArenaSource> ArenaSource for ManualClockSource<S> {
    fn map_arena(&mut self, size: usize) -> Option<NonNull<u8>> {
        self.inner.map_arena(size)
    }

    unsafe fn unmap_arena(&mut self, arena: NonNull<u8>, size: usize) {
        // SAFETY: forwarded; the arena came from `inner`.
        unsafe { self.inner.unmap_arena(arena, size) }
    }

    unsafe fn purge(&mut self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded; the range lies in an arena of `inner`.
        unsafe { self.inner.purge(ptr, len) }
    }

    fn now(&mut self) -> u64 {
        self.clock.0.load(std::sync::atomic::Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exercise(source: &mut dyn ArenaSource, size: usize) {
        let a = source.map_arena(size).expect("map");
        assert_eq!(a.as_ptr().addr() % size, 0, "arena not aligned to its size");
        // SAFETY: the arena is `size` writable bytes owned by this test.
        unsafe {
            a.as_ptr().write(1);
            a.as_ptr().add(size - 1).write(2);
            assert_eq!(a.as_ptr().add(size - 1).read(), 2);
            source.unmap_arena(a, size);
        }
    }

    #[cfg(unix)]
    #[test]
    fn mmap_arenas_are_aligned() {
        let mut s = MmapSource::new();
        exercise(&mut s, 1 << 16);
        exercise(&mut s, 1 << 20);
    }

    #[test]
    fn system_arenas_are_aligned() {
        exercise(&mut SystemSource, 1 << 16);
    }

    #[test]
    fn failing_source_fails_after_its_budget() {
        let mut s = FailingSource::new(SystemSource, 1);
        let a = s.map_arena(1 << 16).expect("first succeeds");
        assert!(s.map_arena(1 << 16).is_none());
        assert_eq!(s.failures(), 1);
        // SAFETY: `a` came from this source with this size.
        unsafe { s.unmap_arena(a, 1 << 16) };
    }

    #[cfg(all(unix, not(miri)))]
    #[test]
    fn purge_zeroes_pages() {
        let mut s = MmapSource::new();
        let size = 1 << 16;
        let a = s.map_arena(size).unwrap();
        // SAFETY: the arena is ours; purging keeps it mapped read-write.
        unsafe {
            a.as_ptr().write_bytes(0xAB, size);
            assert!(s.purge(a, size));
            assert_eq!(a.as_ptr().add(100).read(), 0);
            s.unmap_arena(a, size);
        }
    }
}
