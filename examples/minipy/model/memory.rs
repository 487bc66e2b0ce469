//! Where objects live: the memory backends, behind one small enum.
//!
//! The runtime is the same code in every mode; only the arm of [`Memory`] taken on each
//! allocation and free differs. Every arm costs the same dispatch (one match on the enum, and
//! for tuples a length test), so the comparison between modes measures the allocators, not the
//! abstraction:
//!
//! | mode | `Memory` | float, list, dict | tuple of length 1..=20 | everything else |
//! | --- | --- | --- | --- | --- |
//! | pyalloc | `Pyalloc(&heap)` | `Pooled` (layer-3 free list) | keyed free list, 2000 each | `&Heap` as `Allocator` |
//! | nofreelist | `Pyalloc(&heap)`, heap built with `free_lists(false)` | same calls, every list has capacity 0 | same | same |
//! | system | `System` | `Box::new_in(_, Global)` | `Global` | `Global` |
//! | mimalloc (feature `mimalloc`) | `Mimalloc` | `Box::new_in(_, MiAlloc)` | `MiAlloc` | `MiAlloc` |
//!
//! `MiAlloc` calls mimalloc at its cheapest: `mi_malloc_small` (up to 1 KiB) or `mi_malloc`,
//! `mi_realloc` and `mi_free` for every block of alignment 8 or less (all of minipy's),
//! `mi_malloc_aligned` only above that (model/mi.rs measures the difference).
//!
//! The handle that containers keep, [`Mem`], stays one pointer in every build: a heap, null for
//! `Global`, or (with the feature) a sentinel address for mimalloc. System's arm is the null
//! test it always was; the heap's arm, with the feature, tests the sentinel too.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::alloc::handle_alloc_error;
use std::sync::OnceLock;

use pyalloc::allocator_api2::alloc::Global;
use pyalloc::{AllocError, Allocator, Box, FreeListKey, FreeListStats, FreeListed, Heap, Pooled};

use super::dict::PyDictObject;
use super::float::PyFloatObject;
use super::list::PyListObject;
#[cfg(feature = "mimalloc")]
use super::mi::MiAlloc;
use super::tuple::tuple_layout;

/// CPython's `PyTuple_MAXSAVESIZE`: tuples of length 1..=20 have free lists.
pub(crate) const TUPLE_MAXSAVESIZE: usize = 20;

/// CPython's `PyTuple_MAXFREELIST`: each tuple free list keeps up to 2000 tuples.
pub(crate) const TUPLE_MAXFREELIST: usize = 2000;

/// The names of the tuple free lists, as CPython's `_debugmallocstats` prints them.
const TUPLE_LIST_NAMES: [&str; TUPLE_MAXSAVESIZE] = [
    "1-sized PyTupleObject",
    "2-sized PyTupleObject",
    "3-sized PyTupleObject",
    "4-sized PyTupleObject",
    "5-sized PyTupleObject",
    "6-sized PyTupleObject",
    "7-sized PyTupleObject",
    "8-sized PyTupleObject",
    "9-sized PyTupleObject",
    "10-sized PyTupleObject",
    "11-sized PyTupleObject",
    "12-sized PyTupleObject",
    "13-sized PyTupleObject",
    "14-sized PyTupleObject",
    "15-sized PyTupleObject",
    "16-sized PyTupleObject",
    "17-sized PyTupleObject",
    "18-sized PyTupleObject",
    "19-sized PyTupleObject",
    "20-sized PyTupleObject",
];

/// The tuple free-list keys, one per length 1..=20, made once per process: each heap keeps its
/// own list for each key, so every runtime on every heap shares these identities.
fn tuple_keys() -> &'static [FreeListKey; TUPLE_MAXSAVESIZE] {
    static KEYS: OnceLock<[FreeListKey; TUPLE_MAXSAVESIZE]> = OnceLock::new();
    KEYS.get_or_init(|| {
        core::array::from_fn(|i| {
            FreeListKey::new(TUPLE_LIST_NAMES[i], tuple_layout(i + 1), TUPLE_MAXFREELIST)
        })
    })
}

/// Where a runtime's objects and their storage come from.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Memory<'h> {
    /// pyalloc: typed and keyed free lists (when the heap's configuration enables them) in
    /// front of pymalloc's pools; container storage through `&Heap` as an `Allocator`.
    Pyalloc(&'h Heap),
    /// The system allocator (`allocator_api2::alloc::Global`, i.e. glibc malloc), no free
    /// lists.
    System,
    /// mimalloc, through [`MiAlloc`], no free lists.
    #[cfg(feature = "mimalloc")]
    Mimalloc,
}

impl<'h> Memory<'h> {
    /// The lifetime-erased allocator handle stored in container objects.
    #[inline]
    pub(super) fn allocator(self) -> Mem {
        Mem(match self {
            Memory::Pyalloc(heap) => Some(NonNull::from(heap)),
            Memory::System => None,
            #[cfg(feature = "mimalloc")]
            Memory::Mimalloc => Some(Mem::MIMALLOC),
        })
    }

    /// Moves `value` into memory of its own: a slot of `T`'s free list, or a `malloc` block.
    #[inline]
    pub(super) fn new_pooled<T: FreeListed>(self, value: T) -> NonNull<T> {
        match self {
            Memory::Pyalloc(heap) => Pooled::into_raw(Pooled::new_in(value, heap)),
            Memory::System => NonNull::from(Box::leak(Box::new_in(value, Global))),
            #[cfg(feature = "mimalloc")]
            Memory::Mimalloc => NonNull::from(Box::leak(Box::new_in(value, MiAlloc))),
        }
    }

    /// Drops the value `ptr` points to and frees its memory (back to `T`'s free list, or to
    /// `free`).
    ///
    /// # Safety
    ///
    /// `ptr` came from [`new_pooled`](Self::new_pooled) of this same backend (the same heap),
    /// holds a live `T`, and is not used afterwards.
    #[inline]
    pub(super) unsafe fn free_pooled<T: FreeListed>(self, ptr: NonNull<T>) {
        match self {
            // SAFETY: by the caller's contract `ptr` is from `Pooled::into_raw` on this heap,
            // taken back once.
            Memory::Pyalloc(heap) => drop(unsafe { Pooled::from_raw(ptr, heap) }),
            // SAFETY: by the caller's contract `ptr` is from `Box::leak` of a `Box<T, Global>`,
            // taken back once.
            Memory::System => drop(unsafe { Box::from_raw_in(ptr.as_ptr(), Global) }),
            // SAFETY: by the caller's contract `ptr` is from `Box::leak` of a
            // `Box<T, MiAlloc>`, taken back once.
            #[cfg(feature = "mimalloc")]
            Memory::Mimalloc => drop(unsafe { Box::from_raw_in(ptr.as_ptr(), MiAlloc) }),
        }
    }

    /// Uninitialised memory for `layout` (not zero-sized).
    #[inline]
    pub(super) fn alloc(self, layout: Layout) -> NonNull<u8> {
        let block = match self {
            Memory::Pyalloc(heap) => heap.allocate(layout),
            Memory::System => Global.allocate(layout),
            #[cfg(feature = "mimalloc")]
            Memory::Mimalloc => MiAlloc.allocate(layout),
        };
        match block {
            Ok(block) => block.cast(),
            Err(AllocError) => handle_alloc_error(layout),
        }
    }

    /// Frees memory from [`alloc`](Self::alloc).
    ///
    /// # Safety
    ///
    /// `ptr` came from `alloc(layout)` of this same backend and is not used afterwards.
    #[inline]
    pub(super) unsafe fn free(self, ptr: NonNull<u8>, layout: Layout) {
        match self {
            // SAFETY: the caller's contract: a live block of this heap with this layout.
            Memory::Pyalloc(heap) => unsafe { heap.deallocate(ptr, layout) },
            // SAFETY: the caller's contract: a live `Global` block with this layout.
            Memory::System => unsafe { Global.deallocate(ptr, layout) },
            // SAFETY: the caller's contract: a live `MiAlloc` block with this layout.
            #[cfg(feature = "mimalloc")]
            Memory::Mimalloc => unsafe { MiAlloc.deallocate(ptr, layout) },
        }
    }

    /// Uninitialised memory for a tuple of `len` items: the tuple free list of that length when
    /// there is one (pyalloc, `len` in 1..=20), else a plain block.
    #[inline]
    pub(super) fn alloc_tuple(self, len: usize) -> NonNull<u8> {
        match self {
            Memory::Pyalloc(heap) if (1..=TUPLE_MAXSAVESIZE).contains(&len) => {
                match heap.alloc_slot(&tuple_keys()[len - 1]) {
                    Ok(slot) => slot,
                    Err(AllocError) => handle_alloc_error(tuple_layout(len)),
                }
            }
            _ => self.alloc(tuple_layout(len)),
        }
    }

    /// Frees a tuple's memory from [`alloc_tuple`](Self::alloc_tuple).
    ///
    /// # Safety
    ///
    /// `ptr` came from `alloc_tuple(len)` of this same backend, holds no live value, and is
    /// not used afterwards.
    #[inline]
    pub(super) unsafe fn free_tuple(self, len: usize, ptr: NonNull<u8>) {
        match self {
            Memory::Pyalloc(heap) if (1..=TUPLE_MAXSAVESIZE).contains(&len) => {
                // SAFETY: the caller's contract: the slot came from `alloc_slot` with this
                // length's key on this heap and holds nothing live.
                unsafe { heap.free_slot(&tuple_keys()[len - 1], ptr) }
            }
            // SAFETY: the caller's contract: a block from `alloc(tuple_layout(len))`.
            _ => unsafe { self.free(ptr, tuple_layout(len)) },
        }
    }
}

/// The allocator handle that container objects (list items, dict tables) keep for their
/// storage: the heap, `Global` when `None`, or (feature `mimalloc`) `MiAlloc` when
/// `Mem::MIMALLOC`.
///
/// It erases the heap's lifetime so that object types need no lifetime parameter. Sound
/// because a `Mem` only exists inside objects of a [`Runtime`](super::Runtime), which borrows
/// the heap for as long as it exists and frees every object through itself (an object that
/// is never freed, say in a reference cycle, never touches its `Mem` again).
///
/// It stays one pointer (`Option<NonNull<_>>` is null for `None`) rather than an enum of three
/// cases, which would be two words in every list and dict and change their size classes.
#[derive(Clone, Copy, Debug)]
pub(super) struct Mem(Option<NonNull<Heap>>);

/// What a [`Mem`] stands for, for one call.
enum Backend<'a> {
    Heap(&'a Heap),
    System,
    #[cfg(feature = "mimalloc")]
    Mimalloc,
}

impl Mem {
    /// The sentinel that stands for mimalloc: `NonNull::dangling()`, the address
    /// `align_of::<Heap>()`, in the first page, which is never mapped, so no heap lives there.
    #[cfg(feature = "mimalloc")]
    const MIMALLOC: NonNull<Heap> = NonNull::dangling();

    #[inline(always)]
    fn backend(&self) -> Backend<'_> {
        match self.0 {
            None => Backend::System,
            #[cfg(feature = "mimalloc")]
            Some(p) if p == Self::MIMALLOC => Backend::Mimalloc,
            // SAFETY: the heap outlives every use of a `Mem` (see the type's documentation),
            // and a pointer that is not the sentinel is a heap's.
            Some(heap) => Backend::Heap(unsafe { heap.as_ref() }),
        }
    }
}

// SAFETY: every method forwards to the heap's, `Global`'s or `MiAlloc`'s implementation,
// chosen by a field that never changes, so blocks are freed, grown and shrunk by the allocator
// that made them, and copies of a `Mem` are the same allocator.
unsafe impl Allocator for Mem {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        match self.backend() {
            Backend::Heap(heap) => heap.allocate(layout),
            Backend::System => Global.allocate(layout),
            #[cfg(feature = "mimalloc")]
            Backend::Mimalloc => MiAlloc.allocate(layout),
        }
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        match self.backend() {
            // SAFETY: forwarded contract; this handle's blocks all came from this heap.
            Backend::Heap(heap) => unsafe { heap.deallocate(ptr, layout) },
            // SAFETY: forwarded contract; this handle's blocks all came from `Global`.
            Backend::System => unsafe { Global.deallocate(ptr, layout) },
            // SAFETY: forwarded contract; this handle's blocks all came from `MiAlloc`.
            #[cfg(feature = "mimalloc")]
            Backend::Mimalloc => unsafe { MiAlloc.deallocate(ptr, layout) },
        }
    }

    #[inline]
    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match self.backend() {
            // SAFETY: forwarded contract, same allocator.
            Backend::Heap(heap) => unsafe { heap.grow(ptr, old_layout, new_layout) },
            // SAFETY: forwarded contract, same allocator.
            Backend::System => unsafe { Global.grow(ptr, old_layout, new_layout) },
            // SAFETY: forwarded contract, same allocator.
            #[cfg(feature = "mimalloc")]
            Backend::Mimalloc => unsafe { MiAlloc.grow(ptr, old_layout, new_layout) },
        }
    }

    #[inline]
    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old_layout: Layout,
        new_layout: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        match self.backend() {
            // SAFETY: forwarded contract, same allocator.
            Backend::Heap(heap) => unsafe { heap.shrink(ptr, old_layout, new_layout) },
            // SAFETY: forwarded contract, same allocator.
            Backend::System => unsafe { Global.shrink(ptr, old_layout, new_layout) },
            // SAFETY: forwarded contract, same allocator.
            #[cfg(feature = "mimalloc")]
            Backend::Mimalloc => unsafe { MiAlloc.shrink(ptr, old_layout, new_layout) },
        }
    }
}

/// The figures of the runtime's free lists in one heap: float, list, dict, and the twenty
/// tuple lists summed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct FreeListSnapshot {
    /// `PyFloatObject`'s list.
    pub(crate) float: FreeListStats,
    /// `PyListObject`'s list.
    pub(crate) list: FreeListStats,
    /// `PyDictObject`'s list.
    pub(crate) dict: FreeListStats,
    /// All tuple lists (lengths 1..=20) added together.
    pub(crate) tuple: FreeListStats,
}

impl FreeListSnapshot {
    /// Reads the figures of `heap` now.
    pub(crate) fn of(heap: &Heap) -> Self {
        let mut tuple = FreeListStats::default();
        for key in tuple_keys() {
            let s = heap.free_list_stats_for(key);
            tuple.len += s.len;
            tuple.capacity += s.capacity;
            tuple.hits += s.hits;
            tuple.misses += s.misses;
            tuple.pushes += s.pushes;
            tuple.overflows += s.overflows;
        }
        FreeListSnapshot {
            float: heap.free_list_stats::<PyFloatObject>(),
            list: heap.free_list_stats::<PyListObject>(),
            dict: heap.free_list_stats::<PyDictObject>(),
            tuple,
        }
    }

    /// The four lists with their names.
    pub(crate) fn named(&self) -> [(&'static str, FreeListStats); 4] {
        [
            ("float", self.float),
            ("list", self.list),
            ("dict", self.dict),
            ("tuple", self.tuple),
        ]
    }

    /// What happened between `before` and `self`: counters subtracted, `len` and `capacity`
    /// as now.
    pub(crate) fn since(&self, before: &FreeListSnapshot) -> FreeListSnapshot {
        fn delta(now: FreeListStats, then: FreeListStats) -> FreeListStats {
            FreeListStats {
                len: now.len,
                capacity: now.capacity,
                hits: now.hits - then.hits,
                misses: now.misses - then.misses,
                pushes: now.pushes - then.pushes,
                overflows: now.overflows - then.overflows,
                idle_drains: now.idle_drains - then.idle_drains,
            }
        }
        FreeListSnapshot {
            float: delta(self.float, before.float),
            list: delta(self.list, before.list),
            dict: delta(self.dict, before.dict),
            tuple: delta(self.tuple, before.tuple),
        }
    }
}
