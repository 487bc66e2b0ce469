//! Layer 3: bounded LIFO free lists of recently freed slots, per type (or key), per heap.
//!
//! CPython keeps a hand-written free list in front of pymalloc for its hottest types (dict and
//! list 80, float 100, tuple 2000 per length): freeing pushes the object's memory on the list,
//! allocating pops it, and only an empty list (on allocation) or a full one (on free) reaches
//! the layers below. The most recently freed slot is the next one handed out, so it is likely
//! still in cache.
//!
//! Here every free list is identified by a process-wide number, assigned on first use. A type
//! gets one through [`FreeListed`] (normally derived) and its [`FreeListId`]; a runtime that
//! needs lists keyed by more than the type (one per tuple length) makes [`FreeListKey`]s. Each
//! heap keeps its own lists, so two heaps never share slots.
//!
//! ## The hit path
//! A list is split in two. Its [`ListHead`] (the first slot, the room left, the pushes) is all
//! a hit touches; the rest ([`FreeList`]: layout, capacity, figures, the debug mode's slots)
//! only the slow paths do. A type's heads sit in a [`HeadTable`] indexed by the type's number,
//! and the number is stored in its `FreeListId` already scaled to a byte offset, so a hit is:
//! load the offset, add it to the table's base, pop or push, and no call into layer 2. No
//! bounds test either: a table reserves room for every type number
//! ([`MAX_TYPES`], address space only: a page is touched when a type on it is used), and
//! number 0, which an unassigned id stores, is never created, so it always misses. Before a
//! heap has made its table, its base is [`SENTINEL`], a static table that is never written.
//!
//! The heads are `Cell`s outside the heap's core, not behind its gate: a hit borrows nothing,
//! so it needs no gate test, and a hit that arrives while a slow path runs (from an arena
//! source, or a panic hook) is a plain list operation the slow path's own reads see. Whatever
//! must not take the hit path keeps `room` at 0 and `head` null: a list not created yet, a
//! disabled one, one of the debug mode (whose slots rest out of band).
//!
//! Keys are numbered apart (a runtime may make them without bound, and a table indexed by
//! them would cost every heap for every key ever made): a heap finds its keys' lists in a hash
//! table as large as the keys it uses ([`KeyedLists`]), behind the gate. What the lists give
//! back goes straight to layer 2 ([`RawHeap`]): clearing or shrinking them allocates nothing.
//!
//! A slot's first word holds the link while it is on a list ([`link`](crate::link)): slots are
//! at least one pointer wide and pointer-aligned ([`ListSpec::slot_layout`]). The debug mode
//! keeps its lists *out of band* instead ([`FreeList::push_out_of_band`]), so that every byte
//! of a resting slot can hold the freed pattern and be checked.
//!
//! ## Idle lists do not pin arenas
//! A slot resting on a list keeps its pool, and so its arena, from going back (CPython's float
//! free list keeps dozens of otherwise empty arenas after a program frees a million floats,
//! until `gc.collect()` clears it). So the lists are *tended*: once the heap has given an
//! arena's worth of pools back to layer 1 since the last look (it is shrinking), every list
//! that served no allocation since that look is drained to layer 2 and *shut* (capacity 0, so
//! its frees go to layer 2 too) until its next miss reopens it. The look happens on layer 3's
//! overflow path, where a shrinking heap's frees arrive, and costs the hit paths nothing: hits
//! are derived from counters the hit paths keep already.
//!
//! ## Invariants (checked by [`FreeLists::check`])
//! ```text
//! len <= capacity <= MAX_FREE_LIST_CAPACITY
//! intrusive list:   len == capacity - room == #slots chained from head
//! out of band:      room == 0, head null, len == out_of_band.len()
//! shut:             capacity == 0 (it reopens with the capacity it had)
//! hits == pushes - len - drained
//! ```

use core::alloc::Layout;
use core::cell::Cell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, Ordering};

use allocator_api2::alloc::AllocError;

use crate::gate::Gate;
use crate::link;
use crate::meta::{Meta, MetaVec};
use crate::os;
use crate::raw::RawHeap;
use crate::valgrind;

/// The largest capacity a free list may have. CPython's largest is the tuple list's 2000; a
/// bound keeps a typo (`capacity = 80000000`) from pinning memory without limit.
pub const MAX_FREE_LIST_CAPACITY: usize = 1 << 20;

/// CPython's capacity for dict and list, the default of `#[derive(FreeListed)]`.
pub const DEFAULT_FREE_LIST_CAPACITY: usize = 80;

/// How many types a process may give free lists: the entries of every [`HeadTable`]. Types are
/// as many as a program's code names (the derive rejects generic types); runtime-defined kinds
/// are [`FreeListKey`]s, which have no such bound. A table is reserved address space, 2 MiB,
/// of which a heap touches the pages of the types it uses.
pub(crate) const MAX_TYPES: usize = if cfg!(miri) { 1 << 10 } else { 1 << 16 };

/// `log2(size_of::<ListHead>())`: a type's number shifted by this is its head's byte offset.
const HEAD_SHIFT: u32 = 5;

/// A process-wide number identifying one free list kind, assigned on first use.
///
/// Declared as a `static` per type (the derive does it); two kinds never share a number.
#[derive(Debug)]
pub struct FreeListId(
    /// The number times `size_of::<ListHead>()` (its head's offset in a [`HeadTable`]), or 0
    /// before it is assigned: entry 0 of every table is never created.
    AtomicU32,
);

/// The counter behind [`FreeListId`]: the next number to hand out to a type (0 is never).
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The counter behind [`FreeListKey`]: the next key number (without [`KEYED`]).
static NEXT_KEY: AtomicU32 = AtomicU32::new(0);

/// The bit that marks a key's number. Types and keys are numbered apart: a program has as many
/// types as its code names (a heap indexes their lists directly), while a runtime may make
/// keys without bound (a heap finds theirs in a hash table as large as the keys it uses).
pub(crate) const KEYED: u32 = 1 << 31;

fn fresh_id() -> u32 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    assert!(
        (id as usize) < MAX_TYPES,
        "pyalloc: more than {} types with free lists; use FreeListKey for kinds made at run time",
        MAX_TYPES - 1
    );
    id
}

fn fresh_key_id() -> u32 {
    let n = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    // `KEYED | n` stays below `u32::MAX`, which marks a free entry of the keyed table.
    assert!(n < KEYED - 1, "pyalloc: out of free-list keys");
    KEYED | n
}

impl FreeListId {
    /// An identifier not yet assigned; it gets its number on the first [`get`](Self::get).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        FreeListId(AtomicU32::new(0))
    }

    /// This kind's number (an index into each heap's table of free lists).
    #[inline(always)]
    pub fn get(&self) -> usize {
        let stored = self.0.load(Ordering::Relaxed);
        if stored != 0 {
            return (stored >> HEAD_SHIFT) as usize;
        }
        self.assign()
    }

    /// The head's byte offset in a [`HeadTable`]: 0 (an entry that always misses) until the
    /// number is assigned, so the hit paths use it as it is.
    #[inline(always)]
    pub(crate) fn offset(&self) -> usize {
        self.0.load(Ordering::Relaxed) as usize
    }

    #[cold]
    #[inline(never)]
    fn assign(&self) -> usize {
        let fresh = fresh_id() << HEAD_SHIFT;
        let stored = match self
            .0
            .compare_exchange(0, fresh, Ordering::Relaxed, Ordering::Relaxed)
        {
            Ok(_) => fresh,
            Err(winner) => winner,
        };
        (stored >> HEAD_SHIFT) as usize
    }
}

/// A key's list number, assigned when the key was made (with [`KEYED`] set).
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyId(pub(crate) u32);

/// The hot half of a free list: all that a hit reads and writes.
///
/// `Cell`s, shared between the hit paths (which borrow nothing) and the slow paths; a heap is
/// not `Sync`, so one thread uses a head at a time. All zeros is a list that takes nothing.
#[derive(Debug)]
#[repr(C, align(32))]
pub(crate) struct ListHead {
    /// Most recently freed slot; its first word links to the next. Null out of band.
    head: Cell<*mut u8>,
    /// Frees that kept their slot (counted here, where the free is; hits are derived).
    pushes: Cell<u64>,
    /// How many more slots the list takes: `capacity - len`. 0 for a list not created, a
    /// disabled one and one out of band, so their pushes fall into the slow path.
    room: Cell<u32>,
}

const _: () = assert!(size_of::<ListHead>() == 1 << HEAD_SHIFT);

impl ListHead {
    /// A head that takes nothing: a list not created.
    const fn empty() -> ListHead {
        ListHead {
            head: Cell::new(ptr::null_mut()),
            pushes: Cell::new(0),
            room: Cell::new(0),
        }
    }

    /// Pops the most recently freed slot (of `slot_len` bytes).
    #[inline(always)]
    pub(crate) fn pop(&self, slot_len: usize) -> Option<NonNull<u8>> {
        let slot = NonNull::new(self.head.get())?;
        // SAFETY: a slot on the list holds the link to the next in its first word.
        self.head.set(unsafe { link::read(slot.as_ptr()) });
        valgrind::slot_popped(slot.as_ptr(), slot_len);
        self.room.set(self.room.get() + 1);
        Some(slot)
    }

    /// Pushes a slot if the list has room; returns whether it did.
    ///
    /// # Safety
    ///
    /// `slot` (of `slot_len` bytes) has this list's slot layout, belongs to the heap of the
    /// list, holds no live value, and is not on any list.
    #[inline(always)]
    pub(crate) unsafe fn try_push(&self, slot: NonNull<u8>, slot_len: usize) -> bool {
        let room = self.room.get();
        if room == 0 {
            return false;
        }
        // SAFETY: the slot is at least a pointer wide and pointer-aligned (its slot layout)
        // and holds nothing live.
        unsafe { link::write(slot.as_ptr(), self.head.get()) };
        valgrind::slot_pushed(slot.as_ptr(), slot_len);
        self.head.set(slot.as_ptr());
        self.room.set(room - 1);
        self.pushes.set(self.pushes.get() + 1);
        true
    }
}

/// The [`HeadTable`] of a heap that has made none: every entry empty, never written (a hit
/// misses on the null `head`, a push overflows on the 0 `room`, before either writes).
pub(crate) static SENTINEL: SentinelTable = SentinelTable([const { ListHead::empty() }; MAX_TYPES]);

/// See [`SENTINEL`].
pub(crate) struct SentinelTable(
    // Read only through pointers from `sentinel()`.
    #[allow(dead_code)] [ListHead; MAX_TYPES],
);

// SAFETY: nothing writes the sentinel's `Cell`s: every write to a head follows a test that an
// empty head fails (`head` non-null for a pop, `room` non-zero for a push), and the slow paths
// write only tables they made.
unsafe impl Sync for SentinelTable {}

/// [`SENTINEL`]'s first entry, as a table base.
pub(crate) const fn sentinel() -> NonNull<ListHead> {
    // SAFETY: the address of a static is not null.
    unsafe { NonNull::new_unchecked((&raw const SENTINEL).cast::<ListHead>().cast_mut()) }
}

/// The head at `offset` (a [`FreeListId::offset`]) of the table at `base`.
///
/// # Safety
///
/// `base` is a live [`HeadTable`]'s base (or the sentinel), and `offset` a type's offset.
#[inline(always)]
pub(crate) unsafe fn head_at<'a>(base: NonNull<ListHead>, offset: usize) -> &'a ListHead {
    debug_assert!(offset < MAX_TYPES << HEAD_SHIFT && offset % size_of::<ListHead>() == 0);
    // SAFETY: every offset a type can have lies inside a table of `MAX_TYPES` heads.
    unsafe { base.byte_add(offset).as_ref() }
}

/// One heap's heads of typed lists, indexed by type number: [`MAX_TYPES`] entries of address
/// space, mapped (zero, untouched) the first time the heap creates a typed list.
#[derive(Debug)]
pub(crate) struct HeadTable {
    /// The mapping, or [`sentinel`] before it is made.
    base: NonNull<ListHead>,
}

/// Bytes of a [`HeadTable`].
const TABLE_BYTES: usize = MAX_TYPES * size_of::<ListHead>();

impl HeadTable {
    const fn new() -> Self {
        HeadTable { base: sentinel() }
    }

    fn is_mapped(&self) -> bool {
        self.base != sentinel()
    }

    /// The base the hit paths add offsets to.
    pub(crate) fn base(&self) -> NonNull<ListHead> {
        self.base
    }

    /// Maps the table if it is not yet.
    fn make(&mut self) -> Result<(), AllocError> {
        if !self.is_mapped() {
            // Only the pages of the types used are ever touched (see `map_zeroed`).
            self.base = os::map_zeroed(TABLE_BYTES).ok_or(AllocError)?.cast();
        }
        Ok(())
    }

    /// The head of type `number`, in a mapped table.
    fn at(&self, number: usize) -> &ListHead {
        assert!(number < MAX_TYPES && self.is_mapped());
        // SAFETY: the table is mapped and `number` in range.
        unsafe { head_at(self.base, number << HEAD_SHIFT) }
    }
}

impl Drop for HeadTable {
    fn drop(&mut self) {
        if self.is_mapped() {
            // SAFETY: the mapping `make` made; nothing uses it after the heap drops.
            unsafe { os::unmap_zeroed(self.base.cast(), TABLE_BYTES) };
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
/// use pyalloc::{FreeListKey, Heap};
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
        let spec = ListSpec::new(name, layout, capacity);
        FreeListKey {
            id: fresh_key_id(),
            spec,
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
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ListSpec {
    pub(crate) name: &'static str,
    /// The layout of the values the slots hold.
    pub(crate) value_layout: Layout,
    /// The layout of a slot: room and alignment for the link too.
    pub(crate) slot_layout: Layout,
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
            slot_layout: Self::slot_layout_of(value_layout),
            capacity: capacity as u32,
        }
    }

    /// The spec of type `T`'s list.
    pub(crate) const fn of<T: FreeListed>() -> Self {
        Self::new(T::NAME, Layout::new::<T>(), T::CAPACITY)
    }

    /// The layout of a slot holding a value of `value`: at least a pointer wide and aligned.
    /// Zero-sized values still get a slot-sized layout here; [`Pooled`](crate::Pooled) never
    /// allocates for them.
    const fn slot_layout_of(value: Layout) -> Layout {
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
    /// Frees that found the list full (or shut) and gave their slot to layer 2.
    pub overflows: u64,
    /// Times the list was drained and shut because it served no allocation while the heap
    /// shrank (see the README's "Memory that comes back"); its next miss reopened it.
    pub idle_drains: u64,
}

/// The cold half of one free list in one heap (its [`ListHead`] is the hot half): what only
/// the slow paths, the figures and the debug mode use.
#[derive(Debug)]
pub(crate) struct FreeList {
    /// The most slots kept.
    capacity: u32,
    /// Whether the slots rest out of band (the debug mode): then the head stays empty.
    out_of_band_mode: bool,
    /// Set when the heap first sees the id.
    spec: Option<ListSpec>,
    /// The debug mode's slots, out of band (the slots themselves hold only the freed pattern).
    /// In system memory, as every structure of the core (see [`meta`](crate::meta)); `new_in`
    /// is a `const fn`, so [`UNCREATED`](Self::UNCREATED) stays a constant.
    out_of_band: MetaVec<NonNull<u8>>,
    /// Slots taken off the list without being handed out (evicted by a smaller capacity,
    /// or cleared). Hits are not counted on the hit path: they are `pushes - len - drained`.
    drained: u64,
    misses: u64,
    overflows: u64,
    /// While the list is shut for idleness: the capacity it reopens with (its `capacity` is
    /// 0 meanwhile, so its head takes nothing).
    shut: Option<u32>,
    /// Times the list was shut for idleness.
    idle_drains: u64,
    /// The list's hits when the lists were last tended.
    hits_at_tend: u64,
}

impl FreeList {
    const UNCREATED: FreeList = FreeList {
        capacity: 0,
        out_of_band_mode: false,
        spec: None,
        out_of_band: MetaVec::new_in(Meta),
        drained: 0,
        misses: 0,
        overflows: 0,
        shut: None,
        idle_drains: 0,
        hits_at_tend: 0,
    };

    /// The list's spec (every list the heap hands out is created).
    pub(crate) fn spec(&self) -> &ListSpec {
        self.spec.as_ref().expect("a created list")
    }

    fn is_created(&self) -> bool {
        self.spec.is_some()
    }

    /// The bytes of one slot.
    fn slot_len(&self) -> usize {
        self.spec().slot_layout.size()
    }

    /// Slots on the list now.
    pub(crate) fn len(&self, head: &ListHead) -> usize {
        if self.out_of_band_mode {
            self.out_of_band.len()
        } else {
            (self.capacity - head.room.get()) as usize
        }
    }

    /// Pops the most recently freed slot (intrusive lists).
    fn pop(&self, head: &ListHead) -> Option<NonNull<u8>> {
        head.pop(self.slot_len())
    }

    /// Pushes a slot if the list has room; returns whether it did.
    ///
    /// # Safety
    ///
    /// As [`ListHead::try_push`], for this list's head.
    unsafe fn try_push(&self, head: &ListHead, slot: NonNull<u8>) -> bool {
        // SAFETY: forwarded contract.
        unsafe { head.try_push(slot, self.slot_len()) }
    }

    /// The debug mode's push: keeps the slot out of band if the list has room.
    pub(crate) fn push_out_of_band(
        &mut self,
        head: &ListHead,
        slot: NonNull<u8>,
    ) -> Result<bool, AllocError> {
        debug_assert!(self.out_of_band_mode);
        if self.len(head) >= self.capacity as usize {
            self.overflows += 1;
            return Ok(false);
        }
        self.out_of_band.try_reserve(1).map_err(|_| AllocError)?;
        self.out_of_band.push(slot);
        head.pushes.set(head.pushes.get() + 1);
        Ok(true)
    }

    /// The debug mode's pop.
    pub(crate) fn pop_out_of_band(&mut self) -> Option<NonNull<u8>> {
        self.out_of_band.pop()
    }

    /// Whether `slot` rests on this list out of band.
    pub(crate) fn holds_out_of_band(&self, slot: NonNull<u8>) -> bool {
        self.out_of_band.contains(&slot)
    }

    /// The slots resting out of band.
    pub(crate) fn out_of_band(&self) -> &[NonNull<u8>] {
        &self.out_of_band
    }

    /// Sets the capacity once the list holds no more than it (the caller took the rest off).
    pub(crate) fn set_capacity(&mut self, head: &ListHead, capacity: u32) {
        let len = self.len(head);
        assert!(
            len <= capacity as usize,
            "slots beyond the capacity were taken off"
        );
        self.capacity = capacity;
        if !self.out_of_band_mode {
            head.room.set(capacity - len as u32);
        }
    }

    /// Empties the list into layer 2 (a clearing, or an idle list shut). Returns the slots.
    pub(crate) fn drain_to(&mut self, head: &ListHead, raw: &mut RawHeap, gate: &Gate) -> usize {
        let layout = self.spec().slot_layout;
        let mut count = 0;
        while let Some(slot) = self.drain_one(head) {
            // SAFETY: a slot of this list: a block of `raw` with the list's slot layout.
            unsafe { raw.deallocate(slot, layout, gate) };
            count += 1;
        }
        count
    }

    /// Takes one slot off the list without handing it out (an eviction or a clearing).
    pub(crate) fn drain_one(&mut self, head: &ListHead) -> Option<NonNull<u8>> {
        let slot = self.pop(head).or_else(|| self.pop_out_of_band())?;
        self.drained += 1;
        Some(slot)
    }

    /// Counts a miss. Returns whether the list is shut for idleness: its type is in use
    /// again, and the caller reopens it.
    #[inline]
    pub(crate) fn record_miss(&mut self) -> bool {
        self.misses += 1;
        self.shut.is_some()
    }

    /// Allocations served from the list since it was made.
    fn hits(&self, head: &ListHead) -> u64 {
        head.pushes.get() - self.len(head) as u64 - self.drained
    }

    pub(crate) fn record_overflow(&mut self) {
        self.overflows += 1;
    }

    pub(crate) fn stats(&self, head: &ListHead) -> FreeListStats {
        FreeListStats {
            len: self.len(head),
            capacity: self.shut.unwrap_or(self.capacity) as usize,
            hits: self.hits(head),
            misses: self.misses,
            pushes: head.pushes.get(),
            overflows: self.overflows,
            idle_drains: self.idle_drains,
        }
    }

    /// Verifies the list against its head (see the module's invariants).
    fn check(&self, head: &ListHead) -> Result<(), String> {
        let name = self.spec().name;
        let len = self.len(head);
        if len > self.capacity as usize || self.capacity as usize > MAX_FREE_LIST_CAPACITY {
            return Err(format!(
                "free list {name}: {len} slots, capacity {}",
                self.capacity
            ));
        }
        if self.shut.is_some() && self.capacity != 0 {
            return Err(format!(
                "free list {name}: shut, with capacity {}",
                self.capacity
            ));
        }
        if self.out_of_band_mode && (!head.head.get().is_null() || head.room.get() != 0) {
            return Err(format!(
                "free list {name}: out of band, but its head takes slots"
            ));
        }
        if !self.out_of_band_mode && !self.out_of_band.is_empty() {
            return Err(format!(
                "free list {name}: intrusive, with slots out of band"
            ));
        }
        let mut count = self.out_of_band.len();
        let mut at = head.head.get();
        while !at.is_null() {
            count += 1;
            if count > len {
                return Err(format!(
                    "free list {name}: chain longer than its length {len} (a cycle?)"
                ));
            }
            // SAFETY: slots on the list hold the link to the next in their first word.
            at = unsafe { link::read(at) };
        }
        if count != len {
            return Err(format!(
                "free list {name}: {count} slots chained, length says {len}"
            ));
        }
        Ok(())
    }
}

/// Every free list of one heap: types' heads in a [`HeadTable`] and their cold halves in a
/// table indexed by their number, keys' lists in a hash table ([`KeyedLists`]), each as large
/// as what this heap uses.
#[derive(Debug)]
pub(crate) struct FreeLists {
    /// Types' heads: what the typed hit paths index.
    heads: HeadTable,
    /// Indexed by type number; [`FreeList::UNCREATED`] for a type this heap has not seen. As
    /// long as the largest type number used, and types are as many as the program names.
    typed: MetaVec<FreeList>,
    /// Keys' lists.
    keyed: KeyedLists,
    /// `true` when the heap's config disables free lists: lists are created with capacity 0,
    /// and stay so.
    disabled: bool,
    /// `true` in debug mode: slots rest out of band, and no list takes the hit paths.
    out_of_band: bool,
    /// When the lists are next tended: layer 1's count of pools returned at the last look,
    /// plus an arena's worth; 0 before the first look.
    tend_at: u64,
}

impl FreeLists {
    pub(crate) fn new(disabled: bool, out_of_band: bool) -> Self {
        FreeLists {
            heads: HeadTable::new(),
            typed: MetaVec::new_in(Meta),
            keyed: KeyedLists::new(),
            disabled,
            out_of_band,
            tend_at: 0,
        }
    }

    /// Whether the heap's configuration disables free lists (every list keeps capacity 0).
    pub(crate) fn disabled(&self) -> bool {
        self.disabled
    }

    /// The base of the typed heads, for the hit paths (the sentinel until a typed list is made).
    pub(crate) fn heads_base(&self) -> NonNull<ListHead> {
        self.heads.base()
    }

    /// The capacity a list of `spec` has in this heap when created.
    pub(crate) fn initial_capacity(&self, spec: &ListSpec) -> u32 {
        if self.disabled {
            0
        } else {
            spec.capacity
        }
    }

    /// List `id` (assigned), if this heap has created it.
    fn get(&self, id: usize) -> Option<(&ListHead, &FreeList)> {
        if id as u32 & KEYED == 0 {
            let list = self.typed.get(id).filter(|l| l.is_created())?;
            Some((self.heads.at(id), list))
        } else {
            let entry = &self.keyed.table[self.keyed.find(id)?];
            Some((&entry.head, &entry.list))
        }
    }

    /// The figures of list `id`: zeros and the capacity it will have for a list this heap has
    /// not seen.
    pub(crate) fn stats(&self, id: usize, spec: &ListSpec) -> FreeListStats {
        match self.get(id) {
            Some((head, list)) => list.stats(head),
            None => FreeListStats {
                capacity: self.initial_capacity(spec) as usize,
                ..FreeListStats::default()
            },
        }
    }

    /// Every list this heap has seen.
    pub(crate) fn created(&self) -> impl Iterator<Item = (&ListHead, &FreeList)> + '_ {
        let heads = &self.heads;
        self.typed
            .iter()
            .enumerate()
            .filter(|(_, l)| l.is_created())
            .map(|(n, l)| (heads.at(n), l))
            .chain(
                self.keyed
                    .table
                    .iter()
                    .filter(|e| e.list.is_created())
                    .map(|e| (&e.head, &e.list)),
            )
    }

    /// Every list, the cold half mutably, for draining.
    pub(crate) fn lists_mut(&mut self) -> impl Iterator<Item = (&ListHead, &mut FreeList)> + '_ {
        let heads = &self.heads;
        self.typed
            .iter_mut()
            .enumerate()
            .filter(|(_, l)| l.is_created())
            .map(|(n, l)| (heads.at(n), l))
            .chain(
                self.keyed
                    .table
                    .iter_mut()
                    .filter(|e| e.list.is_created())
                    .map(|e| (&e.head, &mut e.list)),
            )
    }

    /// List `id`'s cold half (assigned), if this heap has made the list: for the misses and
    /// overflows that go straight to layer 2.
    #[inline]
    pub(crate) fn created_mut(&mut self, id: usize) -> Option<&mut FreeList> {
        if id as u32 & KEYED == 0 {
            self.typed.get_mut(id).filter(|l| l.is_created())
        } else {
            let at = self.keyed.find(id)?;
            Some(&mut self.keyed.table[at].list)
        }
    }

    /// Reopens list `id`, shut for idleness, with the capacity it had.
    #[cold]
    #[inline(never)]
    pub(crate) fn reopen(&mut self, id: usize) {
        if let Some((head, list)) = self.get_mut(id) {
            if let Some(capacity) = list.shut.take() {
                list.set_capacity(head, capacity);
            }
        }
    }

    /// List `id` (assigned), the cold half mutably, if this heap has made it.
    fn get_mut(&mut self, id: usize) -> Option<(&ListHead, &mut FreeList)> {
        if id as u32 & KEYED == 0 {
            let list = self.typed.get_mut(id).filter(|l| l.is_created())?;
            Some((self.heads.at(id), list))
        } else {
            let at = self.keyed.find(id)?;
            let entry = &mut self.keyed.table[at];
            Some((&entry.head, &mut entry.list))
        }
    }

    /// Looks at the lists if the heap has given an arena's worth of pools back to layer 1
    /// since the last look (see the module's "Idle lists"): drains and shuts every list that
    /// served no allocation since. Called on layer 3's slow paths. Returns the slots drained.
    #[inline]
    pub(crate) fn tend(&mut self, raw: &mut RawHeap, gate: &Gate) -> usize {
        if raw.arenas().pools_returned() < self.tend_at {
            return 0;
        }
        self.shut_idle_lists(raw, gate)
    }

    #[cold]
    #[inline(never)]
    fn shut_idle_lists(&mut self, raw: &mut RawHeap, gate: &Gate) -> usize {
        let mut drained = 0;
        // The first look only takes note: "since the last look" starts there.
        let first_look = self.tend_at == 0;
        // The debug mode's lists rest out of band and are the debug layer's to drain.
        if !self.out_of_band && !self.disabled {
            for (head, list) in self.lists_mut() {
                let hits = list.hits(head);
                if !first_look && hits == list.hits_at_tend && list.len(head) > 0 {
                    drained += list.drain_to(head, raw, gate);
                    list.shut = Some(list.capacity);
                    list.set_capacity(head, 0);
                    list.idle_drains += 1;
                }
                list.hits_at_tend = list.hits(head);
            }
        }
        let arenas = raw.arenas();
        self.tend_at = arenas.pools_returned() + arenas.pools_per_arena() as u64;
        drained
    }

    /// The keyed hit paths' list: key `id`'s head if it sits at home.
    #[inline(always)]
    pub(crate) fn keyed_head(&self, id: KeyId) -> Option<&ListHead> {
        self.keyed.at_home(id.0 as usize)
    }

    /// The list for `id` (assigned), created from `spec` if the heap has not seen it yet.
    pub(crate) fn list(
        &mut self,
        id: usize,
        spec: &ListSpec,
    ) -> Result<(&ListHead, &mut FreeList), AllocError> {
        debug_assert!(id != 0 && id < u32::MAX as usize, "an assigned id");
        let capacity = self.initial_capacity(spec);
        let out_of_band = self.out_of_band;
        let (head, list) = if id as u32 & KEYED == 0 {
            self.heads.make()?;
            if id >= self.typed.len() {
                let more = id + 1 - self.typed.len();
                self.typed.try_reserve(more).map_err(|_| AllocError)?;
                self.typed.resize_with(id + 1, || FreeList::UNCREATED);
            }
            (self.heads.at(id), &mut self.typed[id])
        } else {
            let at = match self.keyed.find(id) {
                Some(at) => at,
                None => self.keyed.insert(id)?,
            };
            let entry = &mut self.keyed.table[at];
            (&entry.head, &mut entry.list)
        };
        if !list.is_created() {
            list.spec = Some(*spec);
            list.out_of_band_mode = out_of_band;
            list.set_capacity(head, capacity);
        }
        debug_assert_eq!(list.spec.map(|s| s.value_layout), Some(spec.value_layout));
        Ok((head, list))
    }

    /// The slow pop: creates the list if needed and pops, or records a miss and takes a block
    /// from layer 2.
    pub(crate) fn pop_or_allocate(
        &mut self,
        raw: &mut RawHeap,
        id: usize,
        spec: &ListSpec,
        gate: &Gate,
    ) -> Result<NonNull<u8>, AllocError> {
        let (head, list) = self.list(id, spec)?;
        if let Some(slot) = list.pop(head) {
            return Ok(slot);
        }
        if list.record_miss() {
            self.reopen(id);
        }
        Ok(raw.allocate(spec.slot_layout, gate)?.cast())
    }

    /// The slow push: creates the list if needed and pushes, or records an overflow and frees
    /// the slot to layer 2.
    ///
    /// # Safety
    ///
    /// `slot` is a block of `raw` with `spec`'s slot layout, holding nothing live.
    pub(crate) unsafe fn push_or_free(
        &mut self,
        raw: &mut RawHeap,
        id: usize,
        spec: &ListSpec,
        slot: NonNull<u8>,
        gate: &Gate,
    ) {
        if let Ok((head, list)) = self.list(id, spec) {
            // SAFETY: the caller's contract; the list was created with this spec.
            if unsafe { list.try_push(head, slot) } {
                return;
            }
            list.record_overflow();
        }
        // SAFETY: the caller's contract: a block of `raw` with this layout.
        unsafe { raw.deallocate(slot, spec.slot_layout, gate) };
        self.tend(raw, gate);
    }

    /// Sets one list's capacity and frees the slots beyond it to layer 2. A heap whose free
    /// lists are disabled keeps every list at 0 (the configuration wins).
    pub(crate) fn set_capacity(
        &mut self,
        raw: &mut RawHeap,
        id: usize,
        spec: &ListSpec,
        capacity: u32,
        gate: &Gate,
    ) -> Result<(), AllocError> {
        let disabled = self.disabled;
        let (head, list) = self.list(id, spec)?;
        if disabled {
            return Ok(());
        }
        // An explicit capacity reopens a list shut for idleness.
        list.shut = None;
        while list.len(head) > capacity as usize {
            let slot = list.drain_one(head).expect("len counts the slots");
            // SAFETY: a slot of this list: a block of `raw` with the list's slot layout.
            unsafe { raw.deallocate(slot, spec.slot_layout, gate) };
        }
        list.set_capacity(head, capacity);
        Ok(())
    }

    /// Empties every list, freeing the slots to layer 2. Returns the number of slots freed.
    pub(crate) fn drain_all(&mut self, raw: &mut RawHeap, gate: &Gate) -> usize {
        self.lists_mut()
            .map(|(head, list)| list.drain_to(head, raw, gate))
            .sum()
    }

    /// Verifies every list: its chain is as long as its length, within capacity, without a
    /// cycle; and that no head outside the lists created takes slots.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.keyed.check()?;
        for (head, list) in self.created() {
            list.check(head)?;
        }
        if self.heads.is_mapped() {
            for n in 0..self.typed.len().max(1) {
                let created = self.typed.get(n).is_some_and(FreeList::is_created);
                let head = self.heads.at(n);
                if !created && (head.room.get() != 0 || !head.head.get().is_null()) {
                    return Err(format!("free list head {n} takes slots, but no list is"));
                }
            }
        }
        Ok(())
    }
}

/// Keys' lists: a hash table as large as the keys a heap uses, however many keys the process
/// has made (a table indexed by key number would cost every heap memory for every key ever
/// made: 41 MiB for one slot after half a million keys).
///
/// Open addressing: a list lives at its *home*, `id & mask`, or (after a collision the table
/// could not grow away) at the next free entry. The hit paths look at the home entry alone and
/// compare its number; anything else is the slow path's. The table doubles when half full, or
/// when a new list's home is taken, up to eight entries per list, so keys (numbered in order
/// of creation) almost always sit at home.
#[derive(Debug)]
struct KeyedLists {
    /// A power of two long (or empty); [`KeyedEntry::free`] in free entries.
    table: MetaVec<KeyedEntry>,
    /// Lists created.
    created: usize,
}

/// An entry of the keyed table: a key's number and its list, both halves.
#[derive(Debug)]
struct KeyedEntry {
    /// The key's number; `u32::MAX` in a free entry (never a key's: see `fresh_key_id`).
    id: u32,
    head: ListHead,
    list: FreeList,
}

impl KeyedEntry {
    fn free() -> KeyedEntry {
        KeyedEntry {
            id: u32::MAX,
            head: ListHead::empty(),
            list: FreeList::UNCREATED,
        }
    }

    fn is_free(&self) -> bool {
        !self.list.is_created()
    }
}

impl KeyedLists {
    const fn new() -> Self {
        KeyedLists {
            table: MetaVec::new_in(Meta),
            created: 0,
        }
    }

    /// The head at `id`'s home entry, if it is list `id`'s.
    #[inline(always)]
    fn at_home(&self, id: usize) -> Option<&ListHead> {
        let mask = self.table.len().wrapping_sub(1);
        self.table
            .get(id & mask)
            .filter(|entry| entry.id as usize == id)
            .map(|entry| &entry.head)
    }

    /// Where list `id` is, if created.
    fn find(&self, id: usize) -> Option<usize> {
        let len = self.table.len();
        let mut at = id & len.wrapping_sub(1);
        for _ in 0..len {
            let entry = &self.table[at];
            // A free entry ends the probe: the list would be there or before it.
            if entry.is_free() {
                return None;
            }
            if entry.id as usize == id {
                return Some(at);
            }
            at = (at + 1) & (len - 1);
        }
        None
    }

    /// Makes a free entry for list `id` (not in the table), growing the table as the rules
    /// above say, and returns where. The caller fills it in.
    fn insert(&mut self, id: usize) -> Result<usize, AllocError> {
        let needed = 2 * (self.created + 1);
        let mut len = self.table.len().max(8);
        while len < needed {
            len *= 2;
        }
        // Away from a collision at home, while the table stays within 8 entries per list.
        while 2 * len <= 8 * (self.created + 1) && self.home_taken(id, len) {
            len *= 2;
        }
        if len != self.table.len() {
            self.rehash(len)?;
        }
        let mask = len - 1;
        let mut at = id & mask;
        while !self.table[at].is_free() {
            at = (at + 1) & mask;
        }
        self.table[at].id = id as u32;
        self.created += 1;
        Ok(at)
    }

    /// Whether, in a table of `len` entries, `id`'s home would hold another list.
    fn home_taken(&self, id: usize, len: usize) -> bool {
        self.table
            .iter()
            .any(|e| !e.is_free() && (e.id as usize ^ id) & (len - 1) == 0)
    }

    /// Moves every list into a table of `len` entries.
    fn rehash(&mut self, len: usize) -> Result<(), AllocError> {
        let mut table = MetaVec::new_in(Meta);
        table.try_reserve_exact(len).map_err(|_| AllocError)?;
        table.resize_with(len, KeyedEntry::free);
        for entry in self.table.drain(..).filter(|e| !e.is_free()) {
            let mut at = entry.id as usize & (len - 1);
            while !table[at].is_free() {
                at = (at + 1) & (len - 1);
            }
            table[at] = entry;
        }
        self.table = table;
        Ok(())
    }

    /// Verifies the table: a power of two long, within 8 entries per list, every list found
    /// where it is.
    fn check(&self) -> Result<(), String> {
        let len = self.table.len();
        if len != 0 && !len.is_power_of_two() {
            return Err(format!("keyed free-list table of {len} entries"));
        }
        let created = self.table.iter().filter(|e| !e.is_free()).count();
        if created != self.created {
            return Err(format!(
                "keyed free-list table holds {created} lists, {} created",
                self.created
            ));
        }
        if len > 8 && len > 8 * created {
            return Err(format!(
                "keyed free-list table of {len} entries for {created} lists"
            ));
        }
        for (at, entry) in self.table.iter().enumerate() {
            if !entry.is_free() && self.find(entry.id as usize) != Some(at) {
                return Err(format!(
                    "free list {} (key {}) at entry {at} cannot be found there",
                    entry.list.spec().name,
                    entry.id & !KEYED
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heaps_key_table_grows_with_the_keys_it_uses_not_with_the_keys_made() {
        let spec = ListSpec::new("t", Layout::new::<u64>(), 4);
        let key = |n: u32| KeyId(KEYED | n);
        let mut lists = FreeLists::new(false, false);
        // A process that made half a million keys before this heap saw any (the issue's
        // 41 MiB for one keyed slot, with a table indexed by number).
        lists.list(key(500_000).0 as usize, &spec).unwrap();
        assert_eq!(lists.keyed.table.len(), 8);
        // Keys a heap uses are mostly consecutive: each lands at home, and the table stays
        // within 8 entries per list, however they collide.
        let used = [500_000, 3, 500_001, 500_008, 500_016, 7, 1 << 30];
        for &n in &used[1..] {
            lists.list(key(n).0 as usize, &spec).unwrap();
            lists.check().unwrap();
        }
        assert!(
            lists.keyed.table.len() <= 8 * used.len(),
            "{} entries",
            lists.keyed.table.len()
        );
        assert!(
            lists.typed.is_empty(),
            "keys take no room in the typed table"
        );
        for &n in &used {
            assert_eq!(
                lists.stats(key(n).0 as usize, &spec).capacity,
                4,
                "key {n} is found"
            );
        }
        // The hit paths find a list at home, and miss (to the slow path) for any other key.
        let mut slot = [0usize; 1];
        let slot = NonNull::from(&mut slot).cast::<u8>();
        let len = size_of::<usize>();
        assert!(lists.keyed_head(key(500_002)).is_none(), "no such list");
        let head = lists.keyed_head(key(500_001)).expect("at home");
        // SAFETY: a pointer-sized, pointer-aligned slot holding nothing live.
        assert!(unsafe { head.try_push(slot, len) });
        assert_eq!(head.pop(len), Some(slot));
        assert_eq!(head.pop(len), None);
        lists.check().unwrap();
    }

    #[test]
    fn ids_are_distinct_and_stable() {
        static A: FreeListId = FreeListId::new();
        static B: FreeListId = FreeListId::new();
        assert_eq!(A.offset(), 0, "unassigned: the entry that always misses");
        let a = A.get();
        assert_ne!(a, 0);
        assert_eq!(A.get(), a);
        assert_eq!(A.offset(), a * size_of::<ListHead>());
        assert_ne!(B.get(), a);
    }

    #[test]
    fn slot_layout_fits_the_link() {
        let slot = |l| ListSpec::new("t", l, 1).slot_layout;
        assert_eq!(slot(Layout::new::<u8>()), Layout::new::<usize>());
        assert_eq!(slot(Layout::new::<()>()).size(), size_of::<usize>());
        let big = Layout::from_size_align(100, 32).unwrap();
        assert_eq!(slot(big), big);
    }

    #[test]
    fn list_is_lifo_and_bounded() {
        let spec = ListSpec::new("t", Layout::new::<u64>(), 2);
        let mut lists = FreeLists::new(false, false);
        let mut slots = [[0usize; 1]; 3];
        let ptrs: Vec<NonNull<u8>> = slots
            .iter_mut()
            .map(|s| NonNull::from(s).cast::<u8>())
            .collect();
        static TYPE: FreeListId = FreeListId::new();
        static UNSEEN: FreeListId = FreeListId::new();
        let len = size_of::<usize>();
        // The hit paths' view: base plus offset, before and after the table is made.
        let hit = |lists: &FreeLists, id: &FreeListId| {
            // SAFETY: the heap's own base and a type's offset.
            unsafe { head_at(lists.heads_base(), id.offset()) }
        };
        assert_eq!(
            lists.heads_base(),
            sentinel(),
            "no table before a typed list"
        );
        // SAFETY: the slots are pointer-sized, aligned, and owned by this test.
        unsafe {
            assert!(!hit(&lists, &TYPE).try_push(ptrs[0], len), "no list yet");
            let (head, list) = lists.list(TYPE.get(), &spec).unwrap();
            assert!(list.try_push(head, ptrs[0]));
            assert!(hit(&lists, &TYPE).try_push(ptrs[1], len));
            assert!(!hit(&lists, &TYPE).try_push(ptrs[2], len), "full");
            assert!(
                !hit(&lists, &UNSEEN).try_push(ptrs[2], len),
                "an unassigned id takes nothing"
            );
        }
        assert_ne!(lists.heads_base(), sentinel());
        assert_eq!(hit(&lists, &TYPE).pop(len), Some(ptrs[1]));
        assert_eq!(hit(&lists, &TYPE).pop(len), Some(ptrs[0]));
        assert_eq!(hit(&lists, &TYPE).pop(len), None);
        assert_eq!(hit(&lists, &UNSEEN).pop(len), None);
        assert_eq!(UNSEEN.offset(), 0);
        let s = lists.stats(TYPE.get(), &spec);
        assert_eq!((s.hits, s.pushes, s.len, s.capacity), (2, 2, 0, 2));
        lists.check().unwrap();
    }

    #[test]
    fn an_out_of_band_list_never_takes_the_hit_path() {
        let spec = ListSpec::new("t", Layout::new::<u64>(), 4);
        let mut lists = FreeLists::new(false, true);
        static TYPE: FreeListId = FreeListId::new();
        let mut slot = [0usize; 1];
        let slot = NonNull::from(&mut slot).cast::<u8>();
        let (head, list) = lists.list(TYPE.get(), &spec).unwrap();
        assert!(list.push_out_of_band(head, slot).unwrap());
        // SAFETY: the heap's own base and a type's offset; a pointer-sized slot.
        unsafe {
            let hit = head_at(lists.heads_base(), TYPE.offset());
            assert_eq!(hit.pop(8), None);
            assert!(!hit.try_push(slot, 8));
        }
        let s = lists.stats(TYPE.get(), &spec);
        assert_eq!((s.len, s.pushes, s.capacity), (1, 1, 4));
        lists.check().unwrap();
    }

    #[test]
    fn the_sentinel_takes_nothing_and_is_never_written() {
        static TYPE: FreeListId = FreeListId::new();
        let mut slot = [0usize; 1];
        let slot = NonNull::from(&mut slot).cast::<u8>();
        for offset in [0, TYPE.get() << HEAD_SHIFT, (MAX_TYPES - 1) << HEAD_SHIFT] {
            // SAFETY: the sentinel's base and an offset inside it; a pointer-sized slot.
            unsafe {
                let head = head_at(sentinel(), offset);
                assert_eq!(head.pop(8), None);
                assert!(!head.try_push(slot, 8));
            }
        }
        let untouched =
            |h: &ListHead| h.head.get().is_null() && h.room.get() == 0 && h.pushes.get() == 0;
        assert!(SENTINEL.0.iter().all(untouched));
    }

    #[test]
    fn an_unseen_list_reports_its_declared_capacity() {
        let spec = ListSpec::new("t", Layout::new::<u64>(), 33);
        assert_eq!(FreeLists::new(false, false).stats(3, &spec).capacity, 33);
        assert_eq!(FreeLists::new(true, false).stats(3, &spec).capacity, 0);
    }
}
