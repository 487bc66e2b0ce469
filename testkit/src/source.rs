//! One [`ArenaSource`] for tests: [`CountingSource`] wraps another source, counts the arenas
//! mapped and unmapped and the pages purged, and fails or panics on demand.
//!
//! The counts live in shared [`Counters`], still readable once the source has been moved into
//! a [`Heap`](pyalloc::Heap) and after the heap is dropped; the same handle turns the panic in
//! `unmap_arena` on and off while the heap runs:
//!
//! ```
//! use pyalloc::{Box, Heap, HeapConfig};
//! use pyalloc_testkit::CountingSource;
//!
//! let source = CountingSource::new();
//! let counters = source.counters();
//! let heap = Heap::with_source(HeapConfig::new(), source).unwrap();
//! drop(Box::new_in(1u64, &heap));
//! assert_eq!(counters.mapped(), 1);
//! drop(heap);
//! assert_eq!(counters.live(), 0, "the heap gave its arena back");
//! ```

use std::ptr::NonNull;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use pyalloc::{ArenaSource, SystemSource};

/// What a [`CountingSource`] has done, shared between the source and the test, and the
/// switch that makes its `unmap_arena` panic.
#[derive(Debug, Default)]
pub struct Counters {
    mapped: AtomicUsize,
    unmapped: AtomicUsize,
    failed_maps: AtomicUsize,
    purges: AtomicUsize,
    bytes_purged: AtomicUsize,
    unmap_panics: AtomicUsize,
    /// Unmap calls still let through before panicking, and how to panic; `None`: never.
    unmap_panic: Mutex<Option<(usize, UnmapPanic)>>,
}

impl Counters {
    /// Arenas handed to the heap.
    pub fn mapped(&self) -> usize {
        self.mapped.load(Ordering::Relaxed)
    }

    /// Arenas given back to the inner source (an arena whose `unmap_arena` panicked before
    /// unmapping is not counted: it is still mapped).
    pub fn unmapped(&self) -> usize {
        self.unmapped.load(Ordering::Relaxed)
    }

    /// Arenas mapped and not unmapped: 0 once a heap has given everything back.
    pub fn live(&self) -> usize {
        self.mapped() - self.unmapped()
    }

    /// Map requests refused by [`CountingSource::fail_after`].
    pub fn failed_maps(&self) -> usize {
        self.failed_maps.load(Ordering::Relaxed)
    }

    /// `purge` calls that the inner source carried out (it returned `true`).
    pub fn purges(&self) -> usize {
        self.purges.load(Ordering::Relaxed)
    }

    /// Bytes in those purges.
    pub fn bytes_purged(&self) -> usize {
        self.bytes_purged.load(Ordering::Relaxed)
    }

    /// `unmap_arena` calls that panicked, as [`CountingSource::panic_in_unmap`] asked.
    pub fn unmap_panics(&self) -> usize {
        self.unmap_panics.load(Ordering::Relaxed)
    }

    /// From the next call on, every `unmap_arena` panics as `when` says (`None`: none does).
    /// For a source already inside a heap; [`CountingSource::panic_in_unmap`] sets the same
    /// before, with a number of calls let through first.
    pub fn set_unmap_panic(&self, when: Option<UnmapPanic>) {
        *self.plan() = when.map(|when| (0, when));
    }

    fn plan(&self) -> std::sync::MutexGuard<'_, Option<(usize, UnmapPanic)>> {
        // A panic never happens while the lock is held: poisoning cannot occur, but is harmless.
        self.unmap_panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether this `unmap_arena` call must panic, and when; counts the calls let through.
    fn unmap_panic_now(&self) -> Option<UnmapPanic> {
        let mut plan = self.plan();
        let (left, when) = plan.as_mut()?;
        if *left > 0 {
            *left -= 1;
            return None;
        }
        Some(*when)
    }
}

/// When a [`CountingSource`] told to panic in `unmap_arena` does it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnmapPanic {
    /// Panics without unmapping: the arena stays mapped (leaked) and is not counted unmapped.
    BeforeUnmapping,
    /// Unmaps the arena, counts it, then panics.
    AfterUnmapping,
}

/// An [`ArenaSource`] that forwards to `inner` ([`SystemSource`] by default) and counts every
/// call in [`Counters`]; optionally fails every map request after the first few (like
/// [`FailingSource`](pyalloc::FailingSource)) and panics in `unmap_arena`.
#[derive(Debug)]
pub struct CountingSource<S = SystemSource> {
    inner: S,
    counters: Arc<Counters>,
    /// Map requests still served; `None`: all of them.
    maps_left: Option<usize>,
}

impl CountingSource<SystemSource> {
    /// Counts the arenas of a [`SystemSource`]. (It cannot purge: for purge counts, wrap a
    /// `pyalloc::MmapSource` with [`wrapping`](CountingSource::wrapping).)
    pub fn new() -> Self {
        Self::wrapping(SystemSource)
    }
}

impl Default for CountingSource<SystemSource> {
    fn default() -> Self {
        Self::new()
    }
}

impl<S: ArenaSource> CountingSource<S> {
    /// Counts the arenas of `inner`.
    pub fn wrapping(inner: S) -> Self {
        CountingSource {
            inner,
            counters: Arc::default(),
            maps_left: None,
        }
    }

    /// Serves `successes` map requests, then refuses every later one (out of memory). Counts
    /// refusals in [`Counters::failed_maps`].
    pub fn fail_after(mut self, successes: usize) -> Self {
        self.maps_left = Some(successes);
        self
    }

    /// Lets `successes` calls of `unmap_arena` through, then panics in every later one, before
    /// or after unmapping as `when` says (until [`Counters::set_unmap_panic`] says otherwise).
    /// Counts panics in [`Counters::unmap_panics`].
    pub fn panic_in_unmap(self, successes: usize, when: UnmapPanic) -> Self {
        *self.counters.plan() = Some((successes, when));
        self
    }

    /// The counters, shared with the source: keep this before moving the source into a heap.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }
}

// SAFETY: every arena handed out comes from `inner`'s `map_arena` with the same size and goes
// back to `inner`'s `unmap_arena` with the same size (or, when panicking before unmapping, is
// never used again: leaked, which the contract allows); every purge is `inner`'s, on a range of
// one of its arenas; refusing a map is always allowed; nothing here calls into a heap.
unsafe impl<S: ArenaSource> ArenaSource for CountingSource<S> {
    fn map_arena(&mut self, size: usize) -> Option<NonNull<u8>> {
        if let Some(left) = &mut self.maps_left {
            if *left == 0 {
                self.counters.failed_maps.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            *left -= 1;
        }
        let arena = self.inner.map_arena(size)?;
        self.counters.mapped.fetch_add(1, Ordering::Relaxed);
        Some(arena)
    }

    unsafe fn unmap_arena(&mut self, arena: NonNull<u8>, size: usize) {
        let panic = self.counters.unmap_panic_now();
        if panic == Some(UnmapPanic::BeforeUnmapping) {
            self.counters.unmap_panics.fetch_add(1, Ordering::Relaxed);
            panic!("CountingSource: told to panic in unmap_arena (before unmapping)");
        }
        // SAFETY: forwarded contract: `arena` came from `inner.map_arena(size)` and is not
        // used afterwards.
        unsafe { self.inner.unmap_arena(arena, size) };
        self.counters.unmapped.fetch_add(1, Ordering::Relaxed);
        if panic == Some(UnmapPanic::AfterUnmapping) {
            self.counters.unmap_panics.fetch_add(1, Ordering::Relaxed);
            panic!("CountingSource: told to panic in unmap_arena (after unmapping)");
        }
    }

    unsafe fn purge(&mut self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded contract: the range lies in one of `inner`'s arenas and holds no
        // live data.
        let done = unsafe { self.inner.purge(ptr, len) };
        if done {
            self.counters.purges.fetch_add(1, Ordering::Relaxed);
            self.counters.bytes_purged.fetch_add(len, Ordering::Relaxed);
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pyalloc::{Allocator, Heap, HeapConfig};
    use std::alloc::Layout;
    use std::panic::{catch_unwind, AssertUnwindSafe};

    fn small() -> HeapConfig {
        HeapConfig::new()
            .arena_size(16 << 10)
            .pool_size(4 << 10)
            .empty_arenas_kept(0)
            .release(pyalloc::Release::Immediate)
    }

    #[test]
    fn counts_maps_and_unmaps() {
        let source = CountingSource::new();
        let counters = source.counters();
        let heap = Heap::with_source(small(), source).unwrap();
        let layout = Layout::new::<[u64; 64]>();
        // 100 blocks of 512 bytes need more than one 16 KiB arena.
        let blocks: Vec<_> = (0..100).map(|_| heap.allocate(layout).unwrap()).collect();
        assert!(counters.mapped() >= 2);
        assert_eq!(counters.live(), counters.mapped());
        for block in blocks {
            // SAFETY: each block is live with `layout` and freed once.
            unsafe { heap.deallocate(block.cast(), layout) };
        }
        assert_eq!(
            counters.live(),
            0,
            "empty_arenas_kept(0) gives every arena back"
        );
        drop(heap);
        assert_eq!(counters.failed_maps(), 0);
        assert_eq!(counters.unmap_panics(), 0);
    }

    #[test]
    fn fails_after_its_budget() {
        let source = CountingSource::new().fail_after(1);
        let counters = source.counters();
        let heap = Heap::with_source(small(), source).unwrap();
        let layout = Layout::new::<[u64; 64]>();
        let mut blocks = Vec::new();
        while let Ok(block) = heap.allocate(layout) {
            blocks.push(block);
        }
        assert_eq!(counters.mapped(), 1);
        assert!(counters.failed_maps() >= 1);
        for block in blocks {
            // SAFETY: each block is live with `layout` and freed once.
            unsafe { heap.deallocate(block.cast(), layout) };
        }
        drop(heap);
        assert_eq!(counters.live(), 0);
    }

    #[test]
    fn panics_in_unmap_when_told() {
        for when in [UnmapPanic::BeforeUnmapping, UnmapPanic::AfterUnmapping] {
            let mut source = CountingSource::new().panic_in_unmap(1, when);
            let counters = source.counters();
            let size = 16 << 10;
            let a = source.map_arena(size).unwrap();
            let b = source.map_arena(size).unwrap();
            // SAFETY: `a` came from this source with `size` and is not used again.
            unsafe { source.unmap_arena(a, size) };
            assert_eq!(counters.unmap_panics(), 0);
            // SAFETY: as above, for `b`.
            let result = catch_unwind(AssertUnwindSafe(|| unsafe { source.unmap_arena(b, size) }));
            assert!(result.is_err());
            assert_eq!(counters.unmap_panics(), 1);
            match when {
                UnmapPanic::BeforeUnmapping => {
                    assert_eq!(counters.live(), 1);
                    // SAFETY: the panic left `b` mapped; give it back for good.
                    unsafe { SystemSource.unmap_arena(b, size) };
                }
                UnmapPanic::AfterUnmapping => assert_eq!(counters.live(), 0),
            }
        }
    }

    #[test]
    fn the_unmap_panic_switches_on_and_off() {
        // Moved into a box as it would be into a heap: only the counters stay with the test.
        let source = CountingSource::new();
        let counters = source.counters();
        let mut source: std::boxed::Box<dyn ArenaSource> = std::boxed::Box::new(source);
        let size = 16 << 10;
        let arenas = [(); 3].map(|()| source.map_arena(size).unwrap());
        counters.set_unmap_panic(Some(UnmapPanic::AfterUnmapping));
        for arena in &arenas[..2] {
            // SAFETY: each arena came from this source with `size` and is not used again.
            let result = catch_unwind(AssertUnwindSafe(|| unsafe {
                source.unmap_arena(*arena, size)
            }));
            assert!(result.is_err(), "every call panics while the switch is on");
        }
        counters.set_unmap_panic(None);
        // SAFETY: as above.
        unsafe { source.unmap_arena(arenas[2], size) };
        assert_eq!(counters.unmap_panics(), 2);
        assert_eq!(counters.live(), 0);
    }

    #[cfg(all(unix, not(miri)))]
    #[test]
    fn counts_purges() {
        let source = CountingSource::wrapping(pyalloc::MmapSource::new());
        let counters = source.counters();
        let heap = Heap::with_source(HeapConfig::new(), source).unwrap();
        let layout = Layout::new::<[u64; 8]>();
        let blocks: Vec<_> = (0..10_000)
            .map(|_| heap.allocate(layout).unwrap())
            .collect();
        // Keep one block so the arena stays, and its empty pools are purged.
        for block in &blocks[1..] {
            // SAFETY: each block is live with `layout` and freed once.
            unsafe { heap.deallocate(block.cast(), layout) };
        }
        let report = heap.trim();
        assert!(report.bytes_purged > 0);
        assert_eq!(counters.bytes_purged(), report.bytes_purged);
        assert!(counters.purges() >= 1);
        // SAFETY: the one block left, freed once.
        unsafe { heap.deallocate(blocks[0].cast(), layout) };
    }
}
