//! Which addresses belong to [`Global`](crate::Global): one bit per arena slot of the address
//! space, for the whole process, readable by any thread without a lock.
//!
//! C's `free(p)` carries no size and no owner, and under `LD_PRELOAD` `p` may be a block of any
//! thread's heap, a large block of glibc's, or a block glibc handed out before pyalloc was
//! loaded. Each `Heap` has its own arena map ([`arena`](crate::arena)), but a thread freeing
//! another thread's block cannot read that heap's map (it is the owner's, unsynchronised). This
//! map answers "is `p` in one of `Global`'s arenas?" for everyone:
//!
//! ```text
//!  address  [47 ......... 35][34 ......... 20][19 ...... 0]
//!            root index        bit in the leaf  offset in the arena
//!  ROOT: 8192 atomic leaf pointers (64 KiB of .bss; null until an arena lands in that 32 GiB)
//!  leaf: 2^15 bits = 4 KiB, mapped zeroed on first use, installed by compare-and-swap,
//!        never freed (a reader may hold it at any time)
//! ```
//!
//! `Global`'s heaps all have the default geometry, so an arena is exactly one slot (1 MiB,
//! aligned to 1 MiB): a slot is wholly pyalloc's or not at all, and a foreign pointer can
//! never share a slot with an arena mapped now.
//!
//! ## The protocol, and why a reader needs no lock
//! * **Map**: mmap the arena, *then* set its bit (release); only then does the heap carve a
//!   block from it. A block reaches a freeing thread through some synchronisation with the
//!   allocating one (that is what makes the free legal), so the freeing thread sees the bit.
//! * **Unmap**: clear the bit (release), *then* munmap. An arena is unmapped only when every
//!   pool in it is empty, that is when no block of it is live; and a pointer being freed is
//!   live, so no free of a block in that arena can be racing the unmap. A *foreign* pointer
//!   in that slot can only exist after the munmap (before it, the kernel gave the range to
//!   us), and whoever then maps that range again is ordered after our clear by the kernel's
//!   own locking of the address space: the reader sees the bit clear.
//! * A pointer never allocated by anyone (a double free, garbage) is undefined behaviour in C
//!   anyway; the map still answers without reading the memory it points to, so even then the
//!   test itself cannot fault.

use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use crate::config::DEFAULT_ARENA_SIZE;
#[cfg(unix)]
use crate::os::{ArenaSource, MmapSource};

/// `log2` of a slot: one arena of the default geometry.
const SLOT_SHIFT: u32 = DEFAULT_ARENA_SIZE.trailing_zeros();

/// The addresses covered: the 48-bit user half of x86-64's and AArch64's address spaces. An
/// arena mapped above it (never, without an address hint) is refused, so a pointer above it is
/// never ours.
const ADDRESS_BITS: u32 = 48;

/// Bits per leaf: a 4 KiB page of them.
const LEAF_BITS: u32 = 15;

/// Words per leaf.
const LEAF_WORDS: usize = 1 << (LEAF_BITS - 6);

/// Entries of the root.
const ROOT_LEN: usize = 1 << (ADDRESS_BITS - SLOT_SHIFT - LEAF_BITS);

type Leaf = [AtomicU64; LEAF_WORDS];

static_assertions::const_assert!(ADDRESS_BITS > SLOT_SHIFT + LEAF_BITS);
static_assertions::const_assert_eq!(size_of::<Leaf>(), 4096);

/// The root: null, or a leaf that is never freed.
static ROOT: [AtomicPtr<Leaf>; ROOT_LEN] = [const { AtomicPtr::new(ptr::null_mut()) }; ROOT_LEN];

/// The root index, word and bit of `addr`'s slot, or `None` above the covered range.
#[inline(always)]
fn position(addr: usize) -> Option<(usize, usize, u64)> {
    let slot = addr >> SLOT_SHIFT;
    let root = slot >> LEAF_BITS;
    if root >= ROOT_LEN {
        return None;
    }
    let bit = slot & ((1 << LEAF_BITS) - 1);
    Some((root, bit >> 6, 1 << (bit & 63)))
}

/// Whether `addr` lies in an arena of one of `Global`'s heaps mapped now: two loads, never a
/// read of the memory at `addr`, so any address may be asked about.
#[inline(always)]
pub(crate) fn contains(addr: usize) -> bool {
    let Some((root, word, bit)) = position(addr) else {
        return false;
    };
    // Acquire: the leaf's zeroing happens before its words are read.
    let leaf = ROOT[root].load(Ordering::Acquire);
    if leaf.is_null() {
        return false;
    }
    // SAFETY: published leaves are never freed; the index is below `LEAF_WORDS`.
    let words = unsafe { &*leaf };
    words[word].load(Ordering::Acquire) & bit != 0
}

/// Sets or clears the bit of the arena slot at `base`. Returns `false`, changing nothing, when
/// `base` is above the covered range or a leaf cannot be mapped.
fn mark(base: usize, present: bool) -> bool {
    let Some((root, word, bit)) = position(base) else {
        return false;
    };
    let mut leaf = ROOT[root].load(Ordering::Acquire);
    if leaf.is_null() {
        if !present {
            return true;
        }
        let fresh = map_leaf();
        if fresh.is_null() {
            return false;
        }
        match ROOT[root].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => leaf = fresh,
            Err(winner) => {
                // SAFETY: ours, mapped just above, never published.
                unsafe { unmap_leaf(fresh) };
                leaf = winner;
            }
        }
    }
    // SAFETY: published leaves are never freed.
    let words = unsafe { &*leaf };
    if present {
        words[word].fetch_or(bit, Ordering::Release);
    } else {
        words[word].fetch_and(!bit, Ordering::Release);
    }
    true
}

/// A zeroed leaf from the OS (not from an allocator: the map must not depend on the allocator
/// it serves), or null. All-zero bytes are a leaf of clear bits.
fn map_leaf() -> *mut Leaf {
    crate::os::map_zeroed(size_of::<Leaf>()).map_or(ptr::null_mut(), |leaf| leaf.as_ptr().cast())
}

/// # Safety
///
/// `leaf` came from `map_leaf` and was never published.
unsafe fn unmap_leaf(leaf: *mut Leaf) {
    // SAFETY: the caller's contract: a whole mapping of ours that nobody else knows (non-null,
    // as `map_leaf` returned it).
    unsafe { crate::os::unmap_zeroed(NonNull::new_unchecked(leaf.cast()), size_of::<Leaf>()) };
}

/// The arena source of `Global`'s heaps: mmap's, with each arena marked in the process map
/// while it is mapped (see the module docs for the order of the two steps).
#[cfg(unix)]
#[derive(Debug, Default)]
pub(crate) struct MarkedSource(MmapSource);

// SAFETY: arenas are `MmapSource`'s (which meets the contract); marking touches only the map,
// never a heap.
#[cfg(unix)]
unsafe impl ArenaSource for MarkedSource {
    fn map_arena(&mut self, size: usize) -> Option<NonNull<u8>> {
        // One arena, one slot: any other geometry would need several bits per arena.
        if size != DEFAULT_ARENA_SIZE {
            return None;
        }
        let arena = self.0.map_arena(size)?;
        if !mark(arena.as_ptr().addr(), true) {
            // SAFETY: mapped just above with this size, never handed out.
            unsafe { self.0.unmap_arena(arena, size) };
            return None;
        }
        Some(arena)
    }

    unsafe fn unmap_arena(&mut self, arena: NonNull<u8>, size: usize) {
        mark(arena.as_ptr().addr(), false);
        // SAFETY: forwarded contract.
        unsafe { self.0.unmap_arena(arena, size) }
    }

    unsafe fn purge(&mut self, ptr: NonNull<u8>, len: usize) -> bool {
        // SAFETY: forwarded contract.
        unsafe { self.0.purge(ptr, len) }
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;

    #[test]
    fn marks_exactly_the_arena() {
        let mut source = MarkedSource::default();
        let arena = source.map_arena(DEFAULT_ARENA_SIZE).unwrap();
        let base = arena.as_ptr().addr();
        assert!(contains(base));
        assert!(contains(base + DEFAULT_ARENA_SIZE - 1));
        assert!(!contains(base + DEFAULT_ARENA_SIZE));
        assert!(!contains(base - 1));
        assert!(!contains(usize::MAX));
        assert!(!contains(0));
        // SAFETY: mapped above with this size, unused.
        unsafe { source.unmap_arena(arena, DEFAULT_ARENA_SIZE) };
        assert!(!contains(base));
        assert!(source.map_arena(DEFAULT_ARENA_SIZE / 2).is_none());
    }
}
