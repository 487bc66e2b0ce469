//! The debug mode, a layer of its own over layers 0–3: CPython's `PYTHONMALLOC=debug`, and more.
//!
//! As CPython's `PyMem_SetupDebugHooks` wraps any allocator, this layer wraps the raw heap and
//! the free lists; the heap chooses it when it is built ([`HeapConfig::debug`]) and routes every
//! request through it. Nothing below knows it exists: layer 2 takes a [`Fill`] policy, and the
//! fast paths stay branch-free when the mode is off (a debug heap's gate keeps the fast-path
//! limit at 0, see [`gate`](crate::gate)).
//!
//! Every request of `size` bytes is served by a larger *inner* block laid out as
//!
//! ```text
//!  | leading guard (max(16, align) × 0xFD) | data (size bytes) | trailing guard (≥ 16 × 0xFD) |
//!  ^ inner block                           ^ returned pointer
//! ```
//!
//! (the trailing guard runs to the end of the inner block: a pool block's rounding is guarded
//! too). Fresh data is filled with `0xCD`, freed blocks with `0xDD`, CPython's patterns. A
//! record of every live block (address → layout) and of freed ones lets each misuse be named
//! exactly:
//!
//! | misuse | caught when | how |
//! | --- | --- | --- |
//! | overrun | free, resize, `check()` | trailing guard disturbed |
//! | underrun | free, resize, `check()` | leading guard disturbed |
//! | double free | free (blocks and layer-3 slots) | address in the freed record, or resting on its list |
//! | wrong layout | free, resize | layout differs from the one recorded |
//! | foreign pointer | free, resize, a slot pushed | address in neither record |
//! | write after free, small block | the block is handed out again, or its pool empties | `0xDD` fill disturbed, or its free-list link leaves the pool |
//! | write after free, large block | it leaves the quarantine, `check()`, `trim()` | `0xDD` fill disturbed |
//! | write after free, layer-3 slot | popped, evicted, cleared, `check()` | `0xDD` fill disturbed, every byte |
//!
//! Each is a panic whose message starts with `pyalloc debug:` and names the problem, the
//! address and the size, raised before the heap changes anything, so nothing is corrupted
//! further, and raised after the heap's core is released, so a panic hook may use the heap.
//!
//! Large blocks are not given back to the system at once: the last few freed
//! ([`QUARANTINE_BLOCKS`], at most [`QUARANTINE_BYTES`]) wait in a quarantine, filled with
//! `0xDD`, and are checked when they leave it. Layer-3 slots rest *out of band*: the list keeps
//! their addresses, so every byte of a resting slot, its first word included, holds `0xDD`.

use core::alloc::Layout;
use core::fmt;
use core::ptr::NonNull;

use allocator_api2::alloc::AllocError;

use crate::config::ALIGNMENT;
use crate::fill::{first_mismatch, FREED_BYTE, FRESH_BYTE, GUARD_BYTE};
use crate::free_list::{FreeLists, ListSpec};
use crate::gate::Gate;
use crate::link::{self, LINK};
use crate::meta::MetaHashMap;
use crate::pool::Pool;
use crate::raw::{dangling, slice, RawHeap};
use crate::size_class::{block_size, class_of, is_small};
use crate::valgrind;

/// The most freed large blocks the quarantine holds.
pub(crate) const QUARANTINE_BLOCKS: usize = 64;
/// The most bytes the quarantine holds (inner blocks).
pub(crate) const QUARANTINE_BYTES: usize = 4 << 20;

/// Bytes of the smallest trailing guard.
const TRAILER: usize = 16;

/// What memory a write after free hit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Freed {
    /// A freed block.
    Memory,
    /// A slot resting on the named free list.
    Slot(&'static str),
}

/// A misuse the debug mode caught: plain data, formatted when the heap panics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Misuse {
    Overrun {
        ptr: NonNull<u8>,
        size: usize,
        offset: usize,
        value: u8,
    },
    Underrun {
        ptr: NonNull<u8>,
        size: usize,
        offset: usize,
        value: u8,
    },
    DoubleFree {
        ptr: NonNull<u8>,
        size: usize,
    },
    DoubleFreeSlot {
        ptr: NonNull<u8>,
        list: &'static str,
    },
    ForeignPointer {
        ptr: NonNull<u8>,
        size: usize,
    },
    WrongLayout {
        ptr: NonNull<u8>,
        recorded: Layout,
        given: Layout,
    },
    WriteAfterFree {
        what: Freed,
        ptr: NonNull<u8>,
        len: usize,
        offset: usize,
        value: u8,
    },
    CorruptLink {
        ptr: NonNull<u8>,
        len: usize,
        link: usize,
    },
}

impl fmt::Display for Misuse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Misuse::Overrun {
                ptr,
                size,
                offset,
                value,
            } => write!(
                f,
                "pyalloc debug: buffer overrun: block {ptr:p} of {size} bytes was written past \
                 its end: byte {offset} after it is {value:#04x}, expected {GUARD_BYTE:#04x}"
            ),
            Misuse::Underrun {
                ptr,
                size,
                offset,
                value,
            } => write!(
                f,
                "pyalloc debug: buffer underrun: block {ptr:p} of {size} bytes was written \
                 before its start: byte {offset} before it is {value:#04x}, expected \
                 {GUARD_BYTE:#04x}"
            ),
            Misuse::DoubleFree { ptr, size } => write!(
                f,
                "pyalloc debug: double free: block {ptr:p} of {size} bytes was already freed"
            ),
            Misuse::DoubleFreeSlot { ptr, list } => write!(
                f,
                "pyalloc debug: double free: slot {ptr:p} is already on the {list} free list"
            ),
            Misuse::ForeignPointer { ptr, size } => write!(
                f,
                "pyalloc debug: foreign pointer: block {ptr:p} ({size} bytes) was not \
                 allocated by this heap"
            ),
            Misuse::WrongLayout {
                ptr,
                recorded,
                given,
            } => write!(
                f,
                "pyalloc debug: wrong layout: block {ptr:p} was allocated with size {}, align \
                 {} and freed with size {}, align {}",
                recorded.size(),
                recorded.align(),
                given.size(),
                given.align()
            ),
            Misuse::WriteAfterFree {
                what,
                ptr,
                len,
                offset,
                value,
            } => {
                write!(f, "pyalloc debug: write after free: ")?;
                match what {
                    Freed::Memory => write!(f, "memory")?,
                    Freed::Slot(list) => write!(f, "slot of the {list} free list")?,
                }
                write!(
                    f,
                    " at {ptr:p} ({len} bytes) was modified after it was freed: byte {offset} \
                     is {value:#04x}, expected {FREED_BYTE:#04x}"
                )
            }
            Misuse::CorruptLink { ptr, len, link } => write!(
                f,
                "pyalloc debug: write after free: memory at {ptr:p} ({len} bytes) was modified \
                 after it was freed: its free-list link {link:#x} points outside its pool"
            ),
        }
    }
}

/// Why a debug-mode request did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum DebugError {
    /// No memory: an `AllocError` for the caller.
    OutOfMemory,
    /// A misuse: a panic, once the core is released.
    Misuse(Misuse),
}

impl From<Misuse> for DebugError {
    fn from(misuse: Misuse) -> Self {
        DebugError::Misuse(misuse)
    }
}

impl From<AllocError> for DebugError {
    fn from(_: AllocError) -> Self {
        DebugError::OutOfMemory
    }
}

/// Bytes of the leading guard for `layout`: keeps the data aligned.
fn lead(layout: Layout) -> usize {
    layout.align().max(ALIGNMENT)
}

/// The inner layout serving `layout`.
fn inner_layout(layout: Layout) -> Result<Layout, AllocError> {
    let size = lead(layout)
        .checked_add(layout.size())
        .and_then(|s| s.checked_add(TRAILER))
        .ok_or(AllocError)?;
    Layout::from_size_align(size, layout.align().max(ALIGNMENT)).map_err(|_| AllocError)
}

/// The length of the inner block serving `inner`: its pool block, or exactly `inner`.
fn inner_len(inner: Layout) -> usize {
    if is_small(inner) {
        block_size(class_of(inner.size()))
    } else {
        inner.size()
    }
}

/// The inner block of a live debug-mode block, through the inner block's provenance (exposed
/// by `allocate`): the caller's pointer may not cover the guards.
fn inner_of(ptr: NonNull<u8>, layout: Layout) -> NonNull<u8> {
    let inner = core::ptr::with_exposed_provenance_mut(ptr.as_ptr().addr() - lead(layout));
    // SAFETY: the inner block starts `lead` bytes before a live block: a non-null address.
    unsafe { NonNull::new_unchecked(inner) }
}

/// Checks that `len` bytes at `ptr` (from byte `from`) hold the freed pattern.
///
/// # Safety
///
/// `ptr` is valid for reads of `len` bytes.
unsafe fn check_freed(
    what: Freed,
    ptr: NonNull<u8>,
    len: usize,
    from: usize,
) -> Result<(), Misuse> {
    if len <= from {
        return Ok(());
    }
    // SAFETY: within the `len` bytes the caller vouches for.
    match unsafe { first_mismatch(ptr.as_ptr().add(from), len - from, FREED_BYTE) } {
        None => Ok(()),
        Some((offset, value)) => Err(Misuse::WriteAfterFree {
            what,
            ptr,
            len,
            offset: offset + from,
            value,
        }),
    }
}

/// [`check_freed`] on memory at rest (a freed block, a quarantined one, a resting slot), which
/// memcheck sees as no access: readable for the check, no access again after it.
///
/// # Safety
///
/// As [`check_freed`].
unsafe fn check_at_rest(
    what: Freed,
    ptr: NonNull<u8>,
    len: usize,
    from: usize,
) -> Result<(), Misuse> {
    valgrind::make_defined(ptr.as_ptr(), len);
    // SAFETY: forwarded contract.
    let found = unsafe { check_freed(what, ptr, len, from) };
    valgrind::make_noaccess(ptr.as_ptr(), len);
    found
}

/// A quarantined block: the pointer returned to the user, and its layout.
type Quarantined = (NonNull<u8>, Layout);

/// Freed large blocks not yet given back, oldest first: a ring of [`QUARANTINE_BLOCKS`]
/// entries inside the debug layer. The quarantine's bound is a constant, so it needs no memory
/// of its own (the heap's structures stay out of the global allocator, see
/// [`meta`](crate::meta)) and every operation is O(1), as a `VecDeque`'s.
#[derive(Debug)]
struct Quarantine {
    /// The entries, `len` of them from `head` on, wrapping; the others are `None`.
    ring: [Option<Quarantined>; QUARANTINE_BLOCKS],
    head: usize,
    len: usize,
}

impl Default for Quarantine {
    fn default() -> Self {
        Quarantine {
            ring: [None; QUARANTINE_BLOCKS],
            head: 0,
            len: 0,
        }
    }
}

impl Quarantine {
    fn len(&self) -> usize {
        self.len
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The oldest block.
    fn front(&self) -> Option<&Quarantined> {
        self.ring[self.head].as_ref()
    }

    /// Takes the oldest block out.
    fn pop_front(&mut self) -> Option<Quarantined> {
        let oldest = self.ring[self.head].take()?;
        self.head = (self.head + 1) % QUARANTINE_BLOCKS;
        self.len -= 1;
        Some(oldest)
    }

    /// Adds the newest block. The caller has made room (`make_quarantine_room`).
    fn push_back(&mut self, block: Quarantined) {
        debug_assert!(
            self.len < QUARANTINE_BLOCKS,
            "pyalloc debug: quarantine full"
        );
        let at = (self.head + self.len) % QUARANTINE_BLOCKS;
        self.ring[at] = Some(block);
        self.len += 1;
    }

    /// The blocks, oldest first.
    fn iter(&self) -> impl Iterator<Item = &Quarantined> {
        (0..self.len).filter_map(|i| self.ring[(self.head + i) % QUARANTINE_BLOCKS].as_ref())
    }
}

/// What the debug mode remembers, in system memory (see [`meta`](crate::meta)).
#[derive(Debug, Default)]
pub(crate) struct DebugLayer {
    /// Live blocks: returned address → the pointer (for the `check()` walk) and the layout
    /// requested.
    live: MetaHashMap<usize, (NonNull<u8>, Layout)>,
    /// Blocks freed and not handed out since: address → the layout they had.
    freed: MetaHashMap<usize, Layout>,
    /// Freed large blocks not yet given back.
    quarantine: Quarantine,
    /// Bytes of the inner blocks in the quarantine.
    quarantine_bytes: usize,
}

impl DebugLayer {
    /// The debug mode's allocation.
    pub(crate) fn allocate(
        &mut self,
        raw: &mut RawHeap,
        layout: Layout,
        gate: &Gate,
    ) -> Result<NonNull<[u8]>, DebugError> {
        if layout.size() == 0 {
            return Ok(slice(dangling(layout.align()), 0));
        }
        let inner = inner_layout(layout)?;
        let len = inner_len(inner);
        let block = if is_small(inner) {
            let class = class_of(inner.size());
            // The block about to be handed out must still hold what its free left: a link
            // inside its pool, and the freed pattern after it. Checked before it is taken when
            // its pool is in use; a block of a pool taken from its arena is checked once out.
            let peeked = raw.next_block(class);
            if let Some((pool, next)) = peeked {
                // SAFETY: `next` is the first free block of a pool in use, holding a link
                // and, in debug mode, the freed pattern (`Fill::Freed`, or a debug free).
                unsafe { Self::check_free_block(pool, next, len)? };
            }
            let block = raw.alloc_block(class, gate).ok_or(AllocError)?;
            if peeked.is_none() {
                // SAFETY: a block of `len` bytes just handed out, carved with the freed
                // pattern or freed by this layer; its first word held a link.
                unsafe { check_freed(Freed::Memory, block, len, LINK)? };
            }
            block
        } else {
            match raw.allocate_large(inner, gate) {
                Ok(block) => block.cast(),
                Err(AllocError) => {
                    // The quarantine may be what stands in the way of the memory limit.
                    self.flush_quarantine(raw)?;
                    raw.allocate_large(inner, gate)?.cast()
                }
            }
        };
        let lead = lead(layout);
        // The guards lie outside what the caller's pointer may cover: they are reached later
        // through the inner block's provenance, exposed here (see `inner_of`).
        let _ = block.as_ptr().expose_provenance();
        // SAFETY: the inner block is `len >= lead + size + TRAILER` writable bytes.
        let user = unsafe {
            let p = block.as_ptr();
            p.write_bytes(GUARD_BYTE, lead);
            p.add(lead).write_bytes(FRESH_BYTE, layout.size());
            p.add(lead + layout.size())
                .write_bytes(GUARD_BYTE, len - lead - layout.size());
            NonNull::new_unchecked(p.add(lead))
        };
        self.freed.remove(&user.as_ptr().addr());
        self.live.insert(user.as_ptr().addr(), (user, layout));
        Ok(slice(user, layout.size()))
    }

    /// Checks a free pool block: its link stays inside its pool and the rest holds `0xDD`.
    ///
    /// # Safety
    ///
    /// `block` is a free block of `pool` (`len` bytes), a pool in use of a debug heap.
    unsafe fn check_free_block(pool: Pool, block: NonNull<u8>, len: usize) -> Result<(), Misuse> {
        // SAFETY: a free block's first word is a link.
        let next = unsafe { link::read(block.as_ptr()) };
        if !next.is_null() && !pool.holds_block(next.addr()) {
            return Err(Misuse::CorruptLink {
                ptr: block,
                len,
                link: next.addr(),
            });
        }
        // SAFETY: the block is `len` bytes of the pool.
        unsafe { check_at_rest(Freed::Memory, block, len, LINK) }
    }

    /// The layout a block was allocated with, if it is live: how the unsized API finds what
    /// the caller does not say. A pointer that is neither live nor ours is the system's; one
    /// that lies in our arenas but is not live is a misuse, named as the sized API names it.
    pub(crate) fn layout_of(
        &self,
        raw: &RawHeap,
        ptr: NonNull<u8>,
    ) -> Result<Option<Layout>, Misuse> {
        if let Some(&(_, layout)) = self.live.get(&ptr.as_ptr().addr()) {
            return Ok(Some(layout));
        }
        if let Some(freed) = self.freed.get(&ptr.as_ptr().addr()) {
            return Err(Misuse::DoubleFree {
                ptr,
                size: freed.size(),
            });
        }
        if raw.owns(ptr.as_ptr()) {
            return Err(Misuse::ForeignPointer { ptr, size: 0 });
        }
        Ok(None)
    }

    /// Checks that `ptr` is a live block of this heap with layout `layout` and intact guards.
    pub(crate) fn check_live(&self, ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        let addr = ptr.as_ptr().addr();
        let Some(&(_, recorded)) = self.live.get(&addr) else {
            if let Some(freed) = self.freed.get(&addr) {
                return Err(Misuse::DoubleFree {
                    ptr,
                    size: freed.size(),
                });
            }
            return Err(Misuse::ForeignPointer {
                ptr,
                size: layout.size(),
            });
        };
        if recorded != layout {
            return Err(Misuse::WrongLayout {
                ptr,
                recorded,
                given: layout,
            });
        }
        Self::check_guards(ptr, recorded)
    }

    /// Checks both guards of a live block, the whole trailing one.
    fn check_guards(ptr: NonNull<u8>, layout: Layout) -> Result<(), Misuse> {
        let lead = lead(layout);
        let inner = inner_of(ptr, layout);
        let len = inner_len(inner_layout(layout).expect("recorded layouts have an inner layout"));
        let tail = len - lead - layout.size();
        // SAFETY: the block is live (recorded), so its inner block surrounds it: `lead` guard
        // bytes before, `tail` after.
        let (after, before) = unsafe {
            let p = inner.as_ptr();
            (
                first_mismatch(p.add(lead + layout.size()), tail, GUARD_BYTE),
                first_mismatch(p, lead, GUARD_BYTE),
            )
        };
        if let Some((offset, value)) = after {
            return Err(Misuse::Overrun {
                ptr,
                size: layout.size(),
                offset,
                value,
            });
        }
        if let Some((i, value)) = before {
            return Err(Misuse::Underrun {
                ptr,
                size: layout.size(),
                offset: lead - i,
                value,
            });
        }
        Ok(())
    }

    /// The debug mode's free. Every misuse is reported before anything changes (except for
    /// pointers that are not allocations at all, which cannot be told from foreign ones).
    pub(crate) fn deallocate(
        &mut self,
        raw: &mut RawHeap,
        ptr: NonNull<u8>,
        layout: Layout,
        gate: &Gate,
    ) -> Result<(), Misuse> {
        if layout.size() == 0 {
            return Ok(());
        }
        self.check_live(ptr, layout)?;
        let inner = inner_layout(layout).expect("recorded layouts have an inner layout");
        let block = inner_of(ptr, layout);
        let len = inner_len(inner);
        if is_small(inner) {
            // SAFETY: a live pool block of this heap.
            let pool = unsafe { raw.pool_of(block) };
            if pool.ref_count() == 1 {
                // The pool empties with this free and may be recycled for another class: the
                // last chance to see a write into one of its free blocks.
                Self::check_pool_free_blocks(pool, len)?;
            }
        } else {
            self.make_quarantine_room(raw, len)?;
        }
        self.live.remove(&ptr.as_ptr().addr());
        self.freed.insert(ptr.as_ptr().addr(), layout);
        // SAFETY: the block is live with `layout` (checked), its inner block `len` bytes; it is
        // filled with the freed pattern, then freed the way it was allocated (or quarantined).
        unsafe {
            block.as_ptr().write_bytes(FREED_BYTE, len);
            if is_small(inner) {
                raw.free_block(block, gate);
            } else {
                valgrind::make_noaccess(block.as_ptr(), len);
                self.quarantine.push_back((ptr, layout));
                self.quarantine_bytes += len;
            }
        }
        Ok(())
    }

    /// Checks every free block of a pool (see [`check_free_block`](Self::check_free_block)).
    fn check_pool_free_blocks(pool: Pool, len: usize) -> Result<(), Misuse> {
        for block in pool.free_blocks() {
            let Ok(block) = block else {
                return Err(Misuse::CorruptLink {
                    ptr: NonNull::new(pool.first_free()).unwrap_or(pool.addr()),
                    len,
                    link: 0,
                });
            };
            // SAFETY: a free block of a pool in use of this debug heap.
            unsafe { Self::check_free_block(pool, block, len)? };
        }
        Ok(())
    }

    /// Evicts quarantined blocks (checking each first) until `len` more bytes fit.
    fn make_quarantine_room(&mut self, raw: &mut RawHeap, len: usize) -> Result<(), Misuse> {
        while !self.quarantine.is_empty()
            && (self.quarantine.len() >= QUARANTINE_BLOCKS
                || self.quarantine_bytes + len > QUARANTINE_BYTES)
        {
            self.evict_oldest(raw)?;
        }
        Ok(())
    }

    /// Checks the oldest quarantined block and gives it back to the system.
    fn evict_oldest(&mut self, raw: &mut RawHeap) -> Result<(), Misuse> {
        let Some(&(ptr, layout)) = self.quarantine.front() else {
            return Ok(());
        };
        let inner = inner_layout(layout).expect("quarantined layouts have an inner layout");
        let block = inner_of(ptr, layout);
        // SAFETY: a quarantined block is an inner block of `inner.size()` bytes, still ours.
        unsafe { check_at_rest(Freed::Memory, block, inner.size(), 0)? };
        self.quarantine.pop_front();
        self.quarantine_bytes -= inner.size();
        // SAFETY: a system block of this heap with layout `inner`, freed by the user.
        unsafe { raw.deallocate_large(block, inner) };
        Ok(())
    }

    /// Empties the quarantine, checking every block.
    pub(crate) fn flush_quarantine(&mut self, raw: &mut RawHeap) -> Result<(), Misuse> {
        while !self.quarantine.is_empty() {
            self.evict_oldest(raw)?;
        }
        Ok(())
    }

    /// The debug mode's grow and shrink: always a move, so stale pointers to the old block
    /// meet the freed pattern.
    pub(crate) fn reallocate(
        &mut self,
        raw: &mut RawHeap,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
        gate: &Gate,
    ) -> Result<NonNull<[u8]>, DebugError> {
        if old.size() != 0 {
            self.check_live(ptr, old)?;
        }
        let fresh = self.allocate(raw, new, gate)?;
        // SAFETY: both blocks are live and distinct (or zero-sized), each at least `keep` long.
        unsafe {
            let keep = old.size().min(new.size());
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast::<u8>().as_ptr(), keep);
        }
        self.deallocate(raw, ptr, old, gate)?;
        Ok(fresh)
    }

    // ----------------------------------------------------------------------------------------
    // Layer 3 in debug mode: slots out of band

    /// The debug mode's pop of a slot: the most recently pushed one, checked, or a fresh block.
    pub(crate) fn pop_slot(
        &mut self,
        raw: &mut RawHeap,
        lists: &mut FreeLists,
        id: usize,
        spec: &ListSpec,
        gate: &Gate,
    ) -> Result<NonNull<u8>, DebugError> {
        let (_, list) = lists.list(id, spec)?;
        if let Some(&slot) = list.out_of_band().last() {
            // SAFETY: a resting slot is a live debug block of the slot layout.
            unsafe { check_at_rest(Freed::Slot(spec.name), slot, spec.slot_layout.size(), 0)? };
            list.pop_out_of_band();
            valgrind::make_undefined(slot.as_ptr(), spec.slot_layout.size());
            return Ok(slot);
        }
        // Out-of-band lists are never shut: nothing to reopen.
        list.record_miss();
        Ok(self.allocate(raw, spec.slot_layout, gate)?.cast())
    }

    /// The debug mode's push of a slot: checked to be a live block of this heap not on its
    /// list already, then poisoned and kept, or freed when the list is full.
    pub(crate) fn push_slot(
        &mut self,
        raw: &mut RawHeap,
        lists: &mut FreeLists,
        id: usize,
        spec: &ListSpec,
        slot: NonNull<u8>,
        gate: &Gate,
    ) -> Result<(), DebugError> {
        let (head, list) = lists.list(id, spec)?;
        if list.holds_out_of_band(slot) {
            return Err(Misuse::DoubleFreeSlot {
                ptr: slot,
                list: spec.name,
            }
            .into());
        }
        self.check_live(slot, spec.slot_layout)?;
        if list.push_out_of_band(head, slot).unwrap_or(false) {
            let len = spec.slot_layout.size();
            // SAFETY: a live block of `len` bytes whose value was dropped.
            unsafe { slot.as_ptr().write_bytes(FREED_BYTE, len) };
            valgrind::make_noaccess(slot.as_ptr(), len);
            return Ok(());
        }
        Ok(self.deallocate(raw, slot, spec.slot_layout, gate)?)
    }

    /// Takes every slot off every list, checking each, and frees them. Returns how many.
    pub(crate) fn drain_slots(
        &mut self,
        raw: &mut RawHeap,
        lists: &mut FreeLists,
        gate: &Gate,
    ) -> Result<usize, Misuse> {
        let mut count = 0;
        for (head, list) in lists.lists_mut() {
            let spec = *list.spec();
            while let Some(&slot) = list.out_of_band().last() {
                // SAFETY: a resting slot is a live debug block of the slot layout.
                unsafe { check_at_rest(Freed::Slot(spec.name), slot, spec.slot_layout.size(), 0)? };
                list.drain_one(head);
                valgrind::make_undefined(slot.as_ptr(), spec.slot_layout.size());
                self.deallocate(raw, slot, spec.slot_layout, gate)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Sets the capacity of a list, checking and freeing the slots beyond it.
    pub(crate) fn set_capacity(
        &mut self,
        raw: &mut RawHeap,
        lists: &mut FreeLists,
        id: usize,
        spec: &ListSpec,
        capacity: u32,
        gate: &Gate,
    ) -> Result<(), DebugError> {
        // Take off the slots beyond the new capacity, checking each, then set it.
        let disabled = lists.disabled();
        let (head, list) = lists.list(id, spec)?;
        if disabled {
            return Ok(());
        }
        while list.len(head) > capacity as usize {
            let slot = *list.out_of_band().last().expect("len counts the slots");
            // SAFETY: a resting slot is a live debug block of the slot layout.
            unsafe { check_at_rest(Freed::Slot(spec.name), slot, spec.slot_layout.size(), 0)? };
            list.drain_one(head);
            valgrind::make_undefined(slot.as_ptr(), spec.slot_layout.size());
            self.deallocate(raw, slot, spec.slot_layout, gate)?;
        }
        list.set_capacity(head, capacity);
        Ok(())
    }

    // ----------------------------------------------------------------------------------------
    // Walks

    /// Blocks and bytes (inner blocks) waiting in the quarantine: system memory the heap still
    /// holds for blocks its users have freed.
    pub(crate) fn quarantined(&self) -> (usize, usize) {
        (self.quarantine.len(), self.quarantine_bytes)
    }

    /// The debug part of `check()`: every live block's guards, every quarantined block's and
    /// every resting slot's fill.
    pub(crate) fn check(&self, lists: &FreeLists) -> Result<(), String> {
        let err = |m: Misuse| m.to_string();
        for &(ptr, layout) in self.live.values() {
            Self::check_guards(ptr, layout).map_err(err)?;
        }
        for &(ptr, layout) in self.quarantine.iter() {
            let inner = inner_layout(layout).expect("quarantined layouts have an inner layout");
            // SAFETY: a quarantined inner block, still ours.
            unsafe { check_at_rest(Freed::Memory, inner_of(ptr, layout), inner.size(), 0) }
                .map_err(err)?;
        }
        let mut resting = crate::meta::meta_hash_set();
        for (_, list) in lists.created() {
            let spec = list.spec();
            for &slot in list.out_of_band() {
                if !resting.insert(slot) || !self.live.contains_key(&slot.as_ptr().addr()) {
                    return Err(format!(
                        "pyalloc debug: slot {slot:p} of the {} free list is not a live block \
                         resting once",
                        spec.name
                    ));
                }
                // SAFETY: a resting slot is a live debug block of the slot layout.
                unsafe { check_at_rest(Freed::Slot(spec.name), slot, spec.slot_layout.size(), 0) }
                    .map_err(err)?;
            }
        }
        Ok(())
    }

    /// Frees the system blocks still live or quarantined when the heap is dropped (pool blocks
    /// go with their arenas). Only the debug mode knows them: it records every block.
    pub(crate) fn release_leftovers(&mut self, raw: &mut RawHeap) {
        let quarantined = core::iter::from_fn(|| self.quarantine.pop_front());
        for (ptr, layout) in self.live.drain().map(|(_, v)| v).chain(quarantined) {
            let inner = inner_layout(layout).expect("recorded layouts have an inner layout");
            if !is_small(inner) {
                // SAFETY: the heap is being dropped, so nothing can use the block any more; it
                // is a system block allocated with `inner`.
                unsafe { raw.deallocate_large(inner_of(ptr, layout), inner) };
            }
        }
        self.quarantine_bytes = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quarantine_ring_is_first_in_first_out_across_its_wrap() {
        let entry = |n: usize| (dangling(16 * (n + 1)), Layout::new::<[u8; 1000]>());
        let mut q = Quarantine::default();
        assert!(q.is_empty() && q.front().is_none() && q.pop_front().is_none());
        for n in 0..QUARANTINE_BLOCKS {
            q.push_back(entry(n));
        }
        for n in 0..10 {
            assert_eq!(q.pop_front(), Some(entry(n)));
        }
        for n in QUARANTINE_BLOCKS..QUARANTINE_BLOCKS + 10 {
            q.push_back(entry(n));
        }
        assert_eq!(q.len(), QUARANTINE_BLOCKS);
        assert!(q
            .iter()
            .copied()
            .eq((10..QUARANTINE_BLOCKS + 10).map(entry)));
        assert_eq!(q.front(), Some(&entry(10)));
        let drained: Vec<_> = core::iter::from_fn(|| q.pop_front()).collect();
        assert!(drained
            .into_iter()
            .eq((10..QUARANTINE_BLOCKS + 10).map(entry)));
        assert!(q.is_empty() && q.iter().next().is_none());
    }

    #[test]
    fn inner_blocks_keep_the_data_aligned_and_guarded() {
        for (size, align) in [(1, 1), (24, 8), (40, 64), (1000, 16)] {
            let layout = Layout::from_size_align(size, align).unwrap();
            let inner = inner_layout(layout).unwrap();
            assert_eq!(lead(layout) % align, 0);
            assert!(inner.align() >= align);
            assert!(inner_len(inner) >= lead(layout) + size + TRAILER);
        }
        assert_eq!(inner_len(Layout::from_size_align(56, 16).unwrap()), 64);
        assert!(
            inner_layout(Layout::from_size_align(isize::MAX as usize - 8, 1).unwrap()).is_err()
        );
    }

    #[test]
    fn each_misuse_names_itself_the_address_and_the_size() {
        let ptr = NonNull::<u8>::dangling();
        let cases = [
            (
                Misuse::Overrun {
                    ptr,
                    size: 24,
                    offset: 3,
                    value: 0,
                },
                "buffer overrun: block 0x1 of 24 bytes was written past its end: byte 3 after",
            ),
            (
                Misuse::DoubleFreeSlot { ptr, list: "Node" },
                "double free: slot 0x1 is already on the Node free list",
            ),
            (
                Misuse::WriteAfterFree {
                    what: Freed::Slot("Node"),
                    ptr,
                    len: 32,
                    offset: 0,
                    value: 7,
                },
                "write after free: slot of the Node free list at 0x1 (32 bytes)",
            ),
            (
                Misuse::CorruptLink {
                    ptr,
                    len: 64,
                    link: 0x10,
                },
                "its free-list link 0x10 points outside its pool",
            ),
        ];
        for (misuse, expected) in cases {
            let message = misuse.to_string();
            assert!(message.starts_with("pyalloc debug: "), "{message}");
            assert!(message.contains(expected), "{message}");
        }
    }

    #[test]
    fn check_freed_names_the_first_byte_that_changed() {
        let mut bytes = [FREED_BYTE; 32];
        bytes[20] = 9;
        let ptr = NonNull::from(&mut bytes).cast::<u8>();
        // SAFETY: the array is 32 readable bytes.
        let found = unsafe { check_freed(Freed::Memory, ptr, 32, LINK) };
        assert_eq!(
            found,
            Err(Misuse::WriteAfterFree {
                what: Freed::Memory,
                ptr,
                len: 32,
                offset: 20,
                value: 9
            })
        );
        // SAFETY: as above; the first `LINK` bytes are skipped, so a link there is fine.
        assert_eq!(unsafe { check_freed(Freed::Memory, ptr, 20, 0) }, Ok(()));
    }
}
