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
//! holds its own lists in a small hash table keyed by that number ([`FreeLists`]), created
//! lazily and as large as the lists it uses, so two heaps never share slots and the hit path is
//! an index, a compare, a pop and no call into layer 2. What the lists
//! give back goes straight to layer 2 ([`RawHeap`]): clearing or shrinking them allocates
//! nothing.
//!
//! A slot's first word holds the link while it is on a list ([`link`](crate::link)): slots are
//! at least one pointer wide and pointer-aligned ([`ListSpec::slot_layout`]). The debug mode
//! keeps its lists *out of band* instead ([`FreeList::push_out_of_band`]), so that every byte
//! of a resting slot can hold the freed pattern and be checked.
//!
//! ## Invariants (checked by [`FreeLists::check`])
//! ```text
//! len <= capacity <= MAX_FREE_LIST_CAPACITY
//! len == #slots chained from head (intrusive)  or  len == out_of_band.len() (debug mode)
//! hits == pushes - len - drained
//! ```

use core::alloc::Layout;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicU32, Ordering};

use allocator_api2::alloc::AllocError;

use crate::gate::Gate;
use crate::link;
use crate::meta::{Meta, MetaVec};
use crate::raw::RawHeap;
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

/// The counter behind [`FreeListId`]: the next number to hand out to a type.
static NEXT_ID: AtomicU32 = AtomicU32::new(0);

/// The counter behind [`FreeListKey`]: the next key number (without [`KEYED`]).
static NEXT_KEY: AtomicU32 = AtomicU32::new(0);

/// The bit that marks a key's number. Types and keys are numbered apart: a program has as many
/// types as its code names (a heap indexes their lists directly), while a runtime may make
/// keys without bound (a heap finds theirs in a hash table as large as the keys it uses).
pub(crate) const KEYED: u32 = 1 << 31;

fn fresh_id() -> u32 {
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    assert!(id < KEYED, "pyalloc: out of free-list identifiers");
    id
}

fn fresh_key_id() -> u32 {
    let n = NEXT_KEY.fetch_add(1, Ordering::Relaxed);
    // `KEYED | n` stays below `FreeListId::UNASSIGNED` (u32::MAX), which no list gets.
    assert!(n < KEYED - 1, "pyalloc: out of free-list keys");
    KEYED | n
}

impl FreeListId {
    /// An identifier not yet assigned; it gets its number on the first [`get`](Self::get).
    #[allow(clippy::new_without_default)]
    pub const fn new() -> Self {
        FreeListId(AtomicU32::new(Self::UNASSIGNED))
    }

    /// The stored value of an identifier not yet assigned: a number no list ever gets
    /// (`fresh_id` stops below it) and no table reaches, so the hit paths use the stored value
    /// as it is: an unassigned id fails their bounds check and takes the slow path.
    pub(crate) const UNASSIGNED: u32 = u32::MAX;

    /// This kind's number (an index into each heap's table of free lists).
    #[inline(always)]
    pub fn get(&self) -> usize {
        let stored = self.0.load(Ordering::Relaxed);
        if stored != Self::UNASSIGNED {
            return stored as usize;
        }
        self.assign()
    }

    /// The stored number, which may still be [`UNASSIGNED`](Self::UNASSIGNED): for the hit
    /// paths, whose bounds check rejects it.
    #[inline(always)]
    pub(crate) fn raw(&self) -> usize {
        self.0.load(Ordering::Relaxed) as usize
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

/// How the hit paths name a list: by its stored number (which an unassigned [`FreeListId`]
/// keeps at [`FreeListId::UNASSIGNED`], out of every table's range) and, on the slow path, by
/// its assigned number. Generic so each path is compiled for typed and keyed lists alike.
pub(crate) trait ListIdentity: Copy {
    /// Whether this names a key's list (found in the heap's hash table) rather than a type's
    /// (indexed directly): fixed per implementation, so each hit path has one table to look at.
    const KEYED: bool;
    /// The number as stored: an index the table may not hold.
    fn raw(self) -> usize;
    /// The number, assigned if it was not yet.
    fn resolve(self) -> usize;
}

impl ListIdentity for &'static FreeListId {
    const KEYED: bool = false;

    #[inline(always)]
    fn raw(self) -> usize {
        FreeListId::raw(self)
    }

    #[inline]
    fn resolve(self) -> usize {
        self.get()
    }
}

/// A keyed list's number, assigned when the key was made.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeyId(pub(crate) u32);

impl ListIdentity for KeyId {
    const KEYED: bool = true;

    #[inline(always)]
    fn raw(self) -> usize {
        self.0 as usize
    }

    #[inline(always)]
    fn resolve(self) -> usize {
        self.0 as usize
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
    /// Frees that found the list full and gave their slot to layer 2.
    pub overflows: u64,
}

/// One free list in one heap.
#[derive(Debug)]
pub(crate) struct FreeList {
    /// Most recently freed slot; its first word links to the next. Null out of band.
    head: *mut u8,
    len: u32,
    /// The most slots kept; 0 for a list not created yet, so the hit paths need no "created?"
    /// test: an unseen id always misses or overflows into the slow path.
    capacity: u32,
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
    pushes: u64,
    overflows: u64,
}

impl FreeList {
    const UNCREATED: FreeList = FreeList {
        head: ptr::null_mut(),
        len: 0,
        capacity: 0,
        spec: None,
        out_of_band: MetaVec::new_in(Meta),
        drained: 0,
        misses: 0,
        pushes: 0,
        overflows: 0,
    };

    /// The list's spec (every list the heap hands out is created).
    pub(crate) fn spec(&self) -> &ListSpec {
        self.spec.as_ref().expect("a created list")
    }

    /// The bytes of one slot (0 for an uncreated list, which holds none).
    #[inline(always)]
    fn slot_len(&self) -> usize {
        self.spec.map_or(0, |s| s.slot_layout.size())
    }

    /// Pops the most recently freed slot.
    #[inline(always)]
    fn pop(&mut self) -> Option<NonNull<u8>> {
        let slot = NonNull::new(self.head)?;
        // SAFETY: a slot on the list holds the link to the next in its first word.
        self.head = unsafe { link::read(slot.as_ptr()) };
        valgrind::slot_popped(slot.as_ptr(), self.slot_len());
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
    unsafe fn try_push(&mut self, slot: NonNull<u8>) -> bool {
        if self.len >= self.capacity {
            return false;
        }
        // SAFETY: the slot is at least a pointer wide and pointer-aligned (its slot layout)
        // and holds nothing live.
        unsafe { link::write(slot.as_ptr(), self.head) };
        valgrind::slot_pushed(slot.as_ptr(), self.slot_len());
        self.head = slot.as_ptr();
        self.len += 1;
        self.pushes += 1;
        true
    }

    /// The debug mode's push: keeps the slot out of band if the list has room.
    pub(crate) fn push_out_of_band(&mut self, slot: NonNull<u8>) -> Result<bool, AllocError> {
        if self.len >= self.capacity {
            self.overflows += 1;
            return Ok(false);
        }
        self.out_of_band.try_reserve(1).map_err(|_| AllocError)?;
        self.out_of_band.push(slot);
        self.len += 1;
        self.pushes += 1;
        Ok(true)
    }

    /// The debug mode's pop.
    pub(crate) fn pop_out_of_band(&mut self) -> Option<NonNull<u8>> {
        let slot = self.out_of_band.pop()?;
        self.len -= 1;
        Some(slot)
    }

    /// Whether `slot` rests on this list out of band.
    pub(crate) fn holds_out_of_band(&self, slot: NonNull<u8>) -> bool {
        self.out_of_band.contains(&slot)
    }

    /// The slots resting out of band.
    pub(crate) fn out_of_band(&self) -> &[NonNull<u8>] {
        &self.out_of_band
    }

    /// Sets the capacity without touching the slots: the caller takes off those beyond it.
    pub(crate) fn set_capacity_only(&mut self, capacity: u32) {
        self.capacity = capacity;
    }

    /// Takes one slot off the list without handing it out (an eviction or a clearing).
    pub(crate) fn drain_one(&mut self) -> Option<NonNull<u8>> {
        let slot = self.pop().or_else(|| self.pop_out_of_band())?;
        self.drained += 1;
        Some(slot)
    }

    pub(crate) fn record_miss(&mut self) {
        self.misses += 1;
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

/// Every free list of one heap: types' lists in a table indexed by their number, keys' lists
/// in a hash table ([`KeyedLists`]), each as large as what this heap uses.
#[derive(Debug)]
pub(crate) struct FreeLists {
    /// Indexed by type number; [`FreeList::UNCREATED`] for a type this heap has not seen. As
    /// long as the largest type number used, and types are as many as the program names.
    typed: MetaVec<FreeList>,
    /// Keys' lists.
    keyed: KeyedLists,
    /// `true` when the heap's config disables free lists: lists are created with capacity 0,
    /// and stay so.
    disabled: bool,
}

impl FreeLists {
    pub(crate) fn new(disabled: bool) -> Self {
        FreeLists {
            typed: MetaVec::new_in(Meta),
            keyed: KeyedLists::new(),
            disabled,
        }
    }

    /// Whether the heap's configuration disables free lists (every list keeps capacity 0).
    pub(crate) fn disabled(&self) -> bool {
        self.disabled
    }

    /// The capacity a list of `spec` has in this heap when created.
    pub(crate) fn initial_capacity(&self, spec: &ListSpec) -> u32 {
        if self.disabled {
            0
        } else {
            spec.capacity
        }
    }

    /// Where list `id` (assigned) is, if this heap has created it.
    fn get(&self, id: usize) -> Option<&FreeList> {
        if id as u32 & KEYED == 0 {
            self.typed.get(id).filter(|l| l.spec.is_some())
        } else {
            self.keyed.find(id).map(|at| &self.keyed.table[at].list)
        }
    }

    /// The figures of list `id`: zeros and the capacity it will have for a list this heap has
    /// not seen.
    pub(crate) fn stats(&self, id: usize, spec: &ListSpec) -> FreeListStats {
        match self.get(id) {
            Some(list) => list.stats(),
            None => FreeListStats {
                capacity: self.initial_capacity(spec) as usize,
                ..FreeListStats::default()
            },
        }
    }

    /// Every list this heap has seen.
    pub(crate) fn created(&self) -> impl Iterator<Item = &FreeList> + '_ {
        self.typed
            .iter()
            .chain(self.keyed.table.iter().map(|e| &e.list))
            .filter(|l| l.spec.is_some())
    }

    /// The hit path: pops a slot of list `id`, if it exists (at home, for a key) and has one.
    /// An unassigned type number ([`FreeListId::UNASSIGNED`]) is out of the table's range.
    #[inline(always)]
    pub(crate) fn pop<I: ListIdentity>(&mut self, id: I) -> Option<NonNull<u8>> {
        let id = id.raw();
        let list = if I::KEYED {
            self.keyed.at_home(id)?
        } else {
            self.typed.get_mut(id)?
        };
        list.pop()
    }

    /// The hit path: pushes a slot on list `id` if it exists (at home, for a key) and has room.
    ///
    /// # Safety
    ///
    /// As [`FreeList::try_push`], for a list created with the layout of `slot`.
    #[inline(always)]
    pub(crate) unsafe fn try_push<I: ListIdentity>(&mut self, id: I, slot: NonNull<u8>) -> bool {
        let id = id.raw();
        let list = if I::KEYED {
            self.keyed.at_home(id)
        } else {
            self.typed.get_mut(id)
        };
        match list {
            // SAFETY: forwarded contract: the entry is list `id`'s.
            Some(list) => unsafe { list.try_push(slot) },
            None => false,
        }
    }

    /// The list for `id` (assigned), created from `spec` if the heap has not seen it yet.
    pub(crate) fn list(&mut self, id: usize, spec: &ListSpec) -> Result<&mut FreeList, AllocError> {
        debug_assert!(id < FreeListId::UNASSIGNED as usize, "an assigned id");
        let capacity = self.initial_capacity(spec);
        let list = if id as u32 & KEYED == 0 {
            if id >= self.typed.len() {
                let more = id + 1 - self.typed.len();
                self.typed.try_reserve(more).map_err(|_| AllocError)?;
                self.typed.resize_with(id + 1, || FreeList::UNCREATED);
            }
            &mut self.typed[id]
        } else {
            let at = match self.keyed.find(id) {
                Some(at) => at,
                None => self.keyed.insert(id)?,
            };
            &mut self.keyed.table[at].list
        };
        if list.spec.is_none() {
            list.spec = Some(*spec);
            list.capacity = capacity;
        }
        debug_assert_eq!(list.spec.map(|s| s.value_layout), Some(spec.value_layout));
        Ok(list)
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
        let list = self.list(id, spec)?;
        if let Some(slot) = list.pop() {
            return Ok(slot);
        }
        list.record_miss();
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
        if let Ok(list) = self.list(id, spec) {
            // SAFETY: the caller's contract; the list was created with this spec.
            if unsafe { list.try_push(slot) } {
                return;
            }
            list.overflows += 1;
        }
        // SAFETY: the caller's contract: a block of `raw` with this layout.
        unsafe { raw.deallocate(slot, spec.slot_layout, gate) };
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
        let list = self.list(id, spec)?;
        if disabled {
            return Ok(());
        }
        list.set_capacity_only(capacity);
        while list.len > list.capacity {
            let slot = list.drain_one().expect("len counts the slots");
            // SAFETY: a slot of this list: a block of `raw` with the list's slot layout.
            unsafe { raw.deallocate(slot, spec.slot_layout, gate) };
        }
        Ok(())
    }

    /// Empties every list, freeing the slots to layer 2. Returns the number of slots freed.
    pub(crate) fn drain_all(&mut self, raw: &mut RawHeap, gate: &Gate) -> usize {
        let mut count = 0;
        for list in self.lists_mut() {
            let layout = list.spec().slot_layout;
            while let Some(slot) = list.drain_one() {
                // SAFETY: a slot of this list: a block of `raw` with the list's slot layout.
                unsafe { raw.deallocate(slot, layout, gate) };
                count += 1;
            }
        }
        count
    }

    /// Every list, mutably, for the debug mode.
    pub(crate) fn lists_mut(&mut self) -> impl Iterator<Item = &mut FreeList> + '_ {
        self.typed
            .iter_mut()
            .chain(self.keyed.table.iter_mut().map(|e| &mut e.list))
            .filter(|l| l.spec.is_some())
    }

    /// Verifies every list: its chain is as long as `len`, within capacity, without a cycle.
    pub(crate) fn check(&self) -> Result<(), String> {
        self.keyed.check()?;
        for list in self.created() {
            let name = list.spec().name;
            if list.len > list.capacity || list.capacity as usize > MAX_FREE_LIST_CAPACITY {
                return Err(format!(
                    "free list {name}: {} slots, capacity {}",
                    list.len, list.capacity
                ));
            }
            let mut count = list.out_of_band.len() as u32;
            if count > 0 && !list.head.is_null() {
                return Err(format!(
                    "free list {name}: slots both chained and out of band"
                ));
            }
            let mut at = list.head;
            while !at.is_null() {
                count += 1;
                if count > list.len {
                    return Err(format!(
                        "free list {name}: chain longer than its length {} (a cycle?)",
                        list.len
                    ));
                }
                // SAFETY: slots on the list hold the link to the next in their first word.
                at = unsafe { link::read(at) };
            }
            if count != list.len {
                return Err(format!(
                    "free list {name}: {count} slots chained, length says {}",
                    list.len
                ));
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
    /// A power of two long (or empty); [`KeyedEntry::FREE`] in free entries.
    table: MetaVec<KeyedEntry>,
    /// Lists created.
    created: usize,
}

/// An entry of the keyed table: a key's number and its list.
#[derive(Debug)]
struct KeyedEntry {
    /// The key's number; `u32::MAX` in a free entry (never a key's: see `fresh_key_id`).
    id: u32,
    list: FreeList,
}

impl KeyedEntry {
    const FREE: KeyedEntry = KeyedEntry {
        id: u32::MAX,
        list: FreeList::UNCREATED,
    };

    fn is_free(&self) -> bool {
        self.list.spec.is_none()
    }
}

impl KeyedLists {
    const fn new() -> Self {
        KeyedLists {
            table: MetaVec::new_in(Meta),
            created: 0,
        }
    }

    /// The list at `id`'s home entry, if it is list `id`'s.
    #[inline(always)]
    fn at_home(&mut self, id: usize) -> Option<&mut FreeList> {
        let mask = self.table.len().wrapping_sub(1);
        self.table
            .get_mut(id & mask)
            .filter(|entry| entry.id as usize == id)
            .map(|entry| &mut entry.list)
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
        table.resize_with(len, || KeyedEntry::FREE);
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
        let mut lists = FreeLists::new(false);
        // A process that made half a million keys before this heap saw any (the issue's
        // 41 MiB for one keyed slot, with a table indexed by number).
        lists.list(key(500_000).resolve(), &spec).unwrap();
        assert_eq!(lists.keyed.table.len(), 8);
        // Keys a heap uses are mostly consecutive: each lands at home, and the table stays
        // within 8 entries per list, however they collide.
        let used = [500_000, 3, 500_001, 500_008, 500_016, 7, 1 << 30];
        for &n in &used[1..] {
            lists.list(key(n).resolve(), &spec).unwrap();
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
                lists.stats(key(n).resolve(), &spec).capacity,
                4,
                "key {n} is found"
            );
        }
        // The hit paths find a list at home, and miss (to the slow path) for any other key.
        let mut slot = [0usize; 1];
        let slot = NonNull::from(&mut slot).cast::<u8>();
        // SAFETY: a pointer-sized, pointer-aligned slot holding nothing live.
        unsafe {
            assert!(lists.try_push(key(500_001), slot));
            assert!(!lists.try_push(key(500_002), slot), "no such list");
        }
        assert_eq!(lists.pop(key(500_002)), None);
        assert_eq!(lists.pop(key(500_001)), Some(slot));
        lists.check().unwrap();
    }

    #[test]
    fn ids_are_distinct_and_stable() {
        static A: FreeListId = FreeListId::new();
        static B: FreeListId = FreeListId::new();
        assert_eq!(A.raw(), FreeListId::UNASSIGNED as usize);
        let a = A.get();
        assert_eq!(A.get(), a);
        assert_eq!(A.raw(), a);
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
        let mut lists = FreeLists::new(false);
        let mut slots = [[0usize; 1]; 3];
        let ptrs: Vec<NonNull<u8>> = slots
            .iter_mut()
            .map(|s| NonNull::from(s).cast::<u8>())
            .collect();
        static TYPE: FreeListId = FreeListId::new();
        static UNSEEN: FreeListId = FreeListId::new();
        let id = &TYPE;
        // SAFETY: the slots are pointer-sized, aligned, and owned by this test.
        unsafe {
            assert!(!lists.try_push(id, ptrs[0]), "uncreated list takes nothing");
            assert!(
                !lists.try_push(&UNSEEN, ptrs[0]),
                "an unassigned id takes nothing"
            );
            let list = lists.list(id.get(), &spec).unwrap();
            assert!(list.try_push(ptrs[0]));
            assert!(lists.try_push(id, ptrs[1]));
            assert!(!lists.try_push(id, ptrs[2]), "full");
        }
        assert_eq!(lists.pop(id), Some(ptrs[1]));
        assert_eq!(lists.pop(id), Some(ptrs[0]));
        assert_eq!(lists.pop(id), None);
        assert_eq!(lists.pop(&UNSEEN), None);
        assert_eq!(UNSEEN.raw(), FreeListId::UNASSIGNED as usize);
        let s = lists.stats(id.get(), &spec);
        assert_eq!((s.hits, s.pushes, s.len, s.capacity), (2, 2, 0, 2));
        lists.check().unwrap();
    }

    #[test]
    fn an_unseen_list_reports_its_declared_capacity() {
        let spec = ListSpec::new("t", Layout::new::<u64>(), 33);
        assert_eq!(FreeLists::new(false).stats(3, &spec).capacity, 33);
        assert_eq!(FreeLists::new(true).stats(3, &spec).capacity, 0);
    }
}
