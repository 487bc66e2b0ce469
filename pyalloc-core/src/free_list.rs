//! Layer 3: bounded LIFO free lists of recently freed slots, per type (or key), per heap.
//!
//! CPython keeps a hand-written free list in front of pymalloc for its hottest types (dict and
//! list 80, float 100, tuple 2000 per length): freeing pushes the object's memory on the list,
//! allocating pops it, and only an empty list (on allocation) or a full one (on free) reaches
//! the layers below. The most recently freed slot is the next one handed out, so it is likely
//! still in cache.
//!
//! Here every free list is identified by a process-wide number, [`FreeListId`], assigned on
//! first use. A type gets one through [`FreeListed`] (normally derived); a runtime that needs
//! lists keyed by more than the type (one per tuple length) makes [`FreeListKey`]s. Each heap
//! holds its own lists in a vector indexed by that number, created lazily, so two heaps never
//! share slots and the hit path is an index, a pop and no call into layer 2.
//!
//! A slot's first word holds the link while it is on a list: slots are at least one pointer
//! wide and pointer-aligned ([`slot_layout`]).

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, Ordering};

use crate::debug;
use crate::valgrind;

/// The largest capacity a free list may have. CPython's largest is the tuple list's 2000; a
/// bound keeps a typo (`capacity = 80000000`) from pinning memory without limit.
pub const MAX_FREE_LIST_CAPACITY: usize = 1 << 20;

/// CPython's capacity for dict and list, the default of `#[derive(FreeListed)]`.
pub const DEFAULT_FREE_LIST_CAPACITY: usize = 80;

/// A process-wide number identifying one free list kind, assigned on first use.
///
/// Declared as a `static` per type (the derive does it); two kinds never share a number.
#[derive(Debug)]
pub struct FreeListId(AtomicU32);

/// The counter behind [`FreeListId`]: the next number to hand out.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

fn fresh_id() -> u32 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    assert!(id < u32::MAX - 1, "pyalloc: out of free-list identifiers");
    id
}

impl FreeListId {
    /// An identifier not yet assigned; it gets its number on the first [`get`](Self::get).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        FreeListId(AtomicU32::new(Self::UNASSIGNED))
    }

    /// The stored value of an identifier not yet assigned: a number no list ever gets
    /// (`fresh_id` stops below it), so the hit path compares with a constant and uses the
    /// stored value as it is.
    const UNASSIGNED: u32 = u32::MAX;

    /// This kind's number (an index into each heap's table of free lists).
    #[inline(always)]
    pub fn get(&self) -> usize {
        let stored = self.0.load(Ordering::Relaxed);
        if stored != Self::UNASSIGNED {
            return stored as usize;
        }
        self.assign()
    }

    #[cold]
    #[inline(never)]
    fn assign(&self) -> usize {
        let fresh = fresh_id();
        match self.0.compare_exchange(
            Self::UNASSIGNED,
            fresh,
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => fresh as usize,
            Err(winner) => winner as usize,
        }
    }
}

/// A type whose freed slots are kept on a free list of their own in each heap.
///
/// Implement it with `#[derive(FreeListed)]` (from the `pyalloc` crate) and
/// `#[free_list(capacity = N)]`; then create values with `Pooled::new_in(value, &heap)`.
///
/// # Safety
///
/// [`free_list_id`](FreeListed::free_list_id) returns a `static` that belongs to this type
/// alone: no other type (nor another instantiation of a generic type) may return the same
/// one, because a list's slots have the layout of the type that created it. The derive
/// declares a fresh `static` per type and rejects type parameters for this reason.
pub unsafe trait FreeListed: Sized {
    /// The most freed slots the list keeps; pushes beyond it go back to layer 2.
    const CAPACITY: usize = DEFAULT_FREE_LIST_CAPACITY;

    /// The name shown in statistics (CPython's `PyDictObject`).
    const NAME: &'static str;

    /// This type's free-list identifier.
    fn free_list_id() -> &'static FreeListId;
}

/// A free list defined at run time: its identity, slot layout, capacity and name.
///
/// For runtimes that need lists keyed by more than the type, like CPython's tuples (one list
/// per length). A key can be used with any heap; each heap keeps its own list for it.
///
/// ```
/// use core::alloc::Layout;
/// use pyalloc_core::{FreeListKey, Heap};
///
/// let heap = Heap::new();
/// let pairs = FreeListKey::new("2-tuple", Layout::new::<[u64; 3]>(), 2000);
/// let slot = heap.alloc_slot(&pairs).unwrap();
/// // SAFETY: `slot` came from `alloc_slot` with this key and is not used afterwards.
/// unsafe { heap.free_slot(&pairs, slot) };
/// assert_eq!(heap.free_list_stats_for(&pairs).len, 1);
/// assert_eq!(heap.alloc_slot(&pairs).unwrap(), slot); // LIFO: the same slot comes back
/// ```
#[derive(Clone, Copy, Debug)]
pub struct FreeListKey {
    pub(crate) id: u32,
    pub(crate) spec: ListSpec,
}

impl FreeListKey {
    /// A new free list kind for values of `layout`, keeping at most `capacity` slots.
    ///
    /// # Panics
    ///
    /// If `capacity` exceeds [`MAX_FREE_LIST_CAPACITY`].
    pub fn new(name: &'static str, layout: Layout, capacity: usize) -> Self {
        FreeListKey {
            id: fresh_id(),
            spec: ListSpec::new(name, layout, capacity),
        }
    }

    /// The layout of the values this list's slots hold.
    pub fn layout(&self) -> Layout {
        self.spec.value_layout
    }

    /// The most slots this list keeps.
    pub fn capacity(&self) -> usize {
        self.spec.capacity as usize
    }
}

/// What a heap needs to create a list the first time it sees its id.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ListSpec {
    pub(crate) name: &'static str,
    pub(crate) value_layout: Layout,
    pub(crate) capacity: u32,
}

impl ListSpec {
    pub(crate) const fn new(name: &'static str, value_layout: Layout, capacity: usize) -> Self {
        assert!(
            capacity <= MAX_FREE_LIST_CAPACITY,
            "free-list capacity exceeds MAX_FREE_LIST_CAPACITY"
        );
        ListSpec {
            name,
            value_layout,
            capacity: capacity as u32,
        }
    }

    /// The spec of type `T`'s list.
    pub(crate) const fn of<T: FreeListed>() -> Self {
        Self::new(T::NAME, Layout::new::<T>(), T::CAPACITY)
    }
}

/// The layout of a slot holding a value of `value`: room and alignment for the link too.
/// Zero-sized values still get a slot-sized layout here; [`Pooled`](crate::Pooled) never
/// allocates for them.
pub(crate) const fn slot_layout(value: Layout) -> Layout {
    let size = if value.size() > size_of::<usize>() {
        value.size()
    } else {
        size_of::<usize>()
    };
    let align = if value.align() > align_of::<usize>() {
        value.align()
    } else {
        align_of::<usize>()
    };
    match Layout::from_size_align(size, align) {
        Ok(layout) => layout,
        Err(_) => panic!("slot layout overflow"),
    }
}

/// The figures of one free list.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreeListStats {
    /// Slots on the list now.
    pub len: usize,
    /// The most slots the list keeps (0 while free lists are disabled).
    pub capacity: usize,
    /// Allocations served from the list.
    pub hits: u64,
    /// Allocations that found the list empty and went to layer 2.
    pub misses: u64,
    /// Frees that kept their slot on the list.
    pub pushes: u64,
    /// Frees that found the list full and gave their slot to layer 2.
    pub overflows: u64,
}

/// One free list in one heap.
#[derive(Debug)]
pub(crate) struct FreeList {
    /// Most recently freed slot; its first word links to the next.
    head: *mut u8,
    len: u32,
    /// The most slots kept; 0 for a list not created yet (so the fast paths need no
    /// "created?" test: an unknown id always misses or overflows into the slow path).
    capacity: u32,
    /// Set when the heap first sees the id.
    pub(crate) spec: Option<ListSpec>,
    /// Slots taken off the list without being handed out (evicted by a smaller capacity,
    /// or cleared). Hits are not counted on the hit path: they are `pushes - len - drained`.
    drained: u64,
    misses: u64,
    pushes: u64,
    overflows: u64,
}

impl FreeList {
    const UNCREATED: FreeList = FreeList {
        head: ptr::null_mut(),
        len: 0,
        capacity: 0,
        spec: None,
        drained: 0,
        misses: 0,
        pushes: 0,
        overflows: 0,
    };

    /// Pops the most recently freed slot.
    #[inline(always)]
    pub(crate) fn pop(&mut self) -> Option<NonNull<u8>> {
        let slot = NonNull::new(self.head)?;
        valgrind::make_defined(slot.as_ptr(), valgrind::LINK);
        // SAFETY: a slot on the list holds the link to the next in its first word.
        self.head = unsafe { slot.as_ptr().cast::<*mut u8>().read() };
        valgrind::slot_popped(slot.as_ptr(), &self.spec);
        self.len -= 1;
        Some(slot)
    }

    /// Pushes a slot if the list has room; returns whether it did.
    ///
    /// # Safety
    ///
    /// `slot` has this list's slot layout, belongs to the same heap, holds no live value, and
    /// is not on any list.
    #[inline(always)]
    pub(crate) unsafe fn try_push(&mut self, slot: NonNull<u8>) -> bool {
        if self.len >= self.capacity {
            return false;
        }
        // SAFETY: the slot is at least a pointer wide and pointer-aligned (`slot_layout`) and
        // holds nothing live.
        unsafe { slot.as_ptr().cast::<*mut u8>().write(self.head) };
        valgrind::slot_pushed(slot.as_ptr(), &self.spec);
        self.head = slot.as_ptr();
        self.len += 1;
        self.pushes += 1;
        true
    }

    /// Panics if `slot` is already on this list: a double free in debug mode.
    fn debug_check_absent(&self, slot: NonNull<u8>) {
        let mut at = self.head;
        while !at.is_null() {
            if at == slot.as_ptr() {
                panic!(
                    "pyalloc debug: double free: slot {slot:p} is already on the {} free list",
                    self.spec.map_or("?", |s| s.name)
                );
            }
            valgrind::make_defined(at, valgrind::LINK);
            let next = at;
            // SAFETY: slots on the list hold the link to the next in their first word.
            at = unsafe { at.cast::<*mut u8>().read() };
            valgrind::make_noaccess(next, valgrind::LINK);
        }
    }

    pub(crate) fn stats(&self) -> FreeListStats {
        FreeListStats {
            len: self.len as usize,
            capacity: self.capacity as usize,
            hits: self.pushes - u64::from(self.len) - self.drained,
            misses: self.misses,
            pushes: self.pushes,
            overflows: self.overflows,
        }
    }
}

/// Every free list of one heap, indexed by [`FreeListId`] number.
#[derive(Debug, Default)]
pub(crate) struct FreeLists {
    /// The lists the hit paths use. Always empty in debug mode, so the hit paths always miss
    /// and every operation takes the slow path, which poisons and checks slots.
    lists: Vec<FreeList>,
    /// The lists of a debug-mode heap.
    debug_lists: Vec<FreeList>,
    /// `true` when the heap's config disables free lists: lists are created with capacity 0.
    disabled: bool,
    /// The heap's debug mode.
    debug: bool,
}

impl FreeLists {
    pub(crate) fn new(disabled: bool, debug: bool) -> Self {
        FreeLists {
            disabled,
            debug,
            ..FreeLists::default()
        }
    }

    /// The vector that holds the lists: the hit paths' one, or the debug mode's.
    fn store(&mut self) -> &mut Vec<FreeList> {
        if self.debug {
            &mut self.debug_lists
        } else {
            &mut self.lists
        }
    }

    fn store_ref(&self) -> &Vec<FreeList> {
        if self.debug {
            &self.debug_lists
        } else {
            &self.lists
        }
    }

    /// The figures of list `id` (zero for a list this heap has not seen).
    pub(crate) fn stats(&self, id: usize) -> FreeListStats {
        self.store_ref()
            .get(id)
            .map(FreeList::stats)
            .unwrap_or_default()
    }

    /// The specs of every list this heap has seen, with their figures.
    pub(crate) fn created(&self) -> impl Iterator<Item = (ListSpec, FreeListStats)> + '_ {
        self.store_ref()
            .iter()
            .filter_map(|l| l.spec.map(|s| (s, l.stats())))
    }
    /// The hit path: pops a slot of list `id`, if it exists and has one.
    #[inline(always)]
    pub(crate) fn pop(&mut self, id: usize) -> Option<NonNull<u8>> {
        self.lists.get_mut(id)?.pop()
    }

    /// The hit path: pushes a slot on list `id` if it exists and has room.
    ///
    /// # Safety
    ///
    /// As [`FreeList::try_push`], for a list created with the layout of `slot`.
    #[inline(always)]
    pub(crate) unsafe fn try_push(&mut self, id: usize, slot: NonNull<u8>) -> bool {
        match self.lists.get_mut(id) {
            // SAFETY: forwarded contract.
            Some(list) => unsafe { list.try_push(slot) },
            None => false,
        }
    }

    /// The list for `id`, created from `spec` if the heap has not seen it yet.
    pub(crate) fn list(&mut self, id: usize, spec: &ListSpec) -> &mut FreeList {
        let capacity = if self.disabled { 0 } else { spec.capacity };
        let store = self.store();
        if id >= store.len() {
            store.resize_with(id + 1, || FreeList::UNCREATED);
        }
        let list = &mut store[id];
        if list.spec.is_none() {
            list.spec = Some(*spec);
            list.capacity = capacity;
        }
        debug_assert_eq!(list.spec.map(|s| s.value_layout), Some(spec.value_layout));
        list
    }

    /// Records a miss (the pop path found nothing) on list `id`.
    pub(crate) fn record_miss(&mut self, id: usize, spec: &ListSpec) {
        self.list(id, spec).misses += 1;
    }

    /// The slow push path: creates the list if needed and tries again; on a full list records
    /// the overflow. Returns whether the slot was kept.
    ///
    /// # Safety
    ///
    /// As [`FreeList::try_push`], for a slot of `slot_layout(spec.value_layout)`.
    pub(crate) unsafe fn push_or_overflow(
        &mut self,
        id: usize,
        spec: &ListSpec,
        slot: NonNull<u8>,
    ) -> bool {
        let debug = self.debug;
        let list = self.list(id, spec);
        if debug {
            list.debug_check_absent(slot);
        }
        // SAFETY: forwarded contract; the list was created with this spec.
        if unsafe { list.try_push(slot) } {
            if debug {
                valgrind::make_undefined(slot.as_ptr(), slot_layout(spec.value_layout).size());
                // SAFETY: the slot is `slot_layout` bytes and holds nothing live.
                unsafe { debug::poison(slot.as_ptr(), slot_layout(spec.value_layout).size()) };
                valgrind::make_noaccess(slot.as_ptr(), slot_layout(spec.value_layout).size());
            }
            return true;
        }
        list.overflows += 1;
        false
    }

    /// Verifies every list: its chain is as long as `len`, within capacity, without a cycle,
    /// and (in debug mode) every slot still holds the freed pattern.
    pub(crate) fn check(&self) -> Result<(), String> {
        for list in self.store_ref() {
            let Some(spec) = list.spec else { continue };
            if list.len > list.capacity {
                return Err(format!(
                    "free list {}: {} slots over capacity {}",
                    spec.name, list.len, list.capacity
                ));
            }
            let mut count = 0u32;
            let mut at = list.head;
            while !at.is_null() {
                count += 1;
                if count > list.len {
                    return Err(format!(
                        "free list {}: chain longer than its length {} (a cycle?)",
                        spec.name, list.len
                    ));
                }
                valgrind::make_defined(at, slot_layout(spec.value_layout).size());
                if self.debug {
                    let size = slot_layout(spec.value_layout).size();
                    // SAFETY: slots on the list are `size` bytes, poisoned when pushed.
                    let poisoned = unsafe { debug::is_poisoned(at, size) };
                    if !poisoned {
                        return Err(format!(
                            "pyalloc debug: write after free: slot {at:p} of the {} free list \
                             was modified while on the list",
                            spec.name
                        ));
                    }
                }
                let slot = at;
                // SAFETY: slots on the list hold the link to the next in their first word.
                at = unsafe { at.cast::<*mut u8>().read() };
                valgrind::make_noaccess(slot, slot_layout(spec.value_layout).size());
            }
            if count != list.len {
                return Err(format!(
                    "free list {}: {count} slots chained, length says {}",
                    spec.name, list.len
                ));
            }
        }
        Ok(())
    }

    /// The debug mode's pop: checks that the slot was not written while on the list.
    pub(crate) fn debug_pop(&mut self, id: usize, spec: &ListSpec) -> Option<NonNull<u8>> {
        let slot = self.list(id, spec).pop()?;
        valgrind::make_defined(slot.as_ptr(), slot_layout(spec.value_layout).size());
        let size = slot_layout(spec.value_layout).size();
        let what = format_args!("slot of the {} free list", spec.name);
        // SAFETY: the slot is `size` bytes, poisoned when pushed.
        unsafe { debug::check_poison(slot.as_ptr(), size, what) };
        Some(slot)
    }

    /// Changes one list's capacity; returns the slots that no longer fit, to be freed.
    pub(crate) fn set_capacity(
        &mut self,
        id: usize,
        spec: &ListSpec,
        capacity: usize,
    ) -> Vec<NonNull<u8>> {
        assert!(
            capacity <= MAX_FREE_LIST_CAPACITY,
            "free-list capacity {capacity} exceeds MAX_FREE_LIST_CAPACITY"
        );
        let list = self.list(id, spec);
        list.capacity = capacity as u32;
        let mut evicted = Vec::new();
        while list.len > list.capacity {
            let slot = list.pop().expect("len counts the slots");
            list.drained += 1; // an eviction is not a hit
            evicted.push(slot);
        }
        evicted
    }

    /// Empties every list; returns each slot with its value layout, to be freed to layer 2.
    pub(crate) fn drain_all(&mut self) -> Vec<(NonNull<u8>, Layout)> {
        let mut slots = Vec::new();
        for list in self.store() {
            let Some(spec) = list.spec else { continue };
            while let Some(slot) = list.pop() {
                list.drained += 1; // a clearing is not a hit
                slots.push((slot, slot_layout(spec.value_layout)));
            }
        }
        slots
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_distinct_and_stable() {
        static A: FreeListId = FreeListId::new();
        static B: FreeListId = FreeListId::new();
        let a = A.get();
        assert_eq!(A.get(), a);
        assert_ne!(B.get(), a);
    }

    #[test]
    fn slot_layout_fits_the_link() {
        assert_eq!(slot_layout(Layout::new::<u8>()), Layout::new::<usize>());
        assert_eq!(slot_layout(Layout::new::<()>()).size(), size_of::<usize>());
        let big = Layout::from_size_align(100, 32).unwrap();
        assert_eq!(slot_layout(big), big);
    }

    #[test]
    fn list_is_lifo_and_bounded() {
        let spec = ListSpec::new("t", Layout::new::<u64>(), 2);
        let mut lists = FreeLists::default();
        let mut slots = [[0usize; 1]; 3];
        let ptrs: Vec<NonNull<u8>> = slots
            .iter_mut()
            .map(|s| NonNull::from(s).cast::<u8>())
            .collect();
        // SAFETY: the slots are pointer-sized, aligned, and owned by this test.
        unsafe {
            assert!(!lists.try_push(7, ptrs[0]), "uncreated list takes nothing");
            assert!(lists.push_or_overflow(7, &spec, ptrs[0]));
            assert!(lists.try_push(7, ptrs[1]));
            assert!(!lists.push_or_overflow(7, &spec, ptrs[2]));
        }
        assert_eq!(lists.pop(7), Some(ptrs[1]));
        assert_eq!(lists.pop(7), Some(ptrs[0]));
        assert_eq!(lists.pop(7), None);
        let s = lists.stats(7);
        assert_eq!((s.hits, s.pushes, s.overflows, s.len), (2, 2, 1, 0));
    }
}
