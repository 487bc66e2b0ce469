//! The debug mode: CPython's `PYTHONMALLOC=debug`, and more.
//!
//! With [`HeapConfig::debug`](crate::HeapConfig::debug) on, every request of `size` bytes is
//! served by a larger *inner* block laid out as
//!
//! ```text
//!  | leading guard (max(16, align) × 0xFD) | data (size bytes) | trailing guard (16 × 0xFD) |
//!  ^ inner block                           ^ returned pointer
//! ```
//!
//! Fresh data is filled with `0xCD`, freed blocks (and every block carved in a pool) with
//! `0xDD`, CPython's patterns. A record of every live block (address → layout) and of freed
//! ones lets each misuse be named exactly:
//!
//! | misuse | caught when | how |
//! | --- | --- | --- |
//! | overrun | free, resize, `check()` | trailing guard disturbed |
//! | underrun | free, resize, `check()` | leading guard disturbed |
//! | double free | free | address in the freed record |
//! | wrong layout | free, resize | layout differs from the one recorded |
//! | foreign pointer | free, resize | address in neither record |
//! | write after free | the block is handed out again | `0xDD` fill disturbed |
//!
//! Each is a panic whose message starts with `pyalloc debug:` and names the problem, the
//! address and the size, raised before the heap changes anything, so nothing is corrupted
//! further. Layer-3 slots resting on a free list are poisoned with `0xDD` too and checked when
//! popped.
//!
//! The mode costs nothing when off: the fast paths compare the request size with a per-heap
//! limit that is 512 normally and 0 in debug mode, so every debug request takes the slow path
//! without an extra branch on the fast one.

use core::alloc::Layout;
use core::ptr::NonNull;
use std::collections::HashMap;

use allocator_api2::alloc::AllocError;

use crate::config::ALIGNMENT;
use crate::raw::{slice, RawHeap};
use crate::size_class::{block_size, class_of, is_small};

/// Fill of fresh data (CPython's `PYMEM_CLEANBYTE`).
pub const FRESH_BYTE: u8 = 0xCD;
/// Fill of freed memory (CPython's `PYMEM_DEADBYTE`).
pub const FREED_BYTE: u8 = 0xDD;
/// Guard bytes around each block (CPython's `PYMEM_FORBIDDENBYTE`).
pub const GUARD_BYTE: u8 = 0xFD;

/// Bytes of the trailing guard.
const TRAILER: usize = 16;

/// Bytes at the start of a free block or slot that hold a list link, not the fill pattern.
const LINK: usize = size_of::<usize>();

/// What the debug mode remembers.
#[derive(Debug, Default)]
pub(crate) struct DebugState {
    /// Live blocks: returned address → the pointer (for the `check()` walk) and the layout
    /// requested.
    live: HashMap<usize, (NonNull<u8>, Layout)>,
    /// Blocks freed and not handed out since: address → the layout they had.
    freed: HashMap<usize, Layout>,
}

/// Bytes of the leading guard for `layout`: keeps the data aligned.
fn lead(layout: Layout) -> usize {
    layout.align().max(ALIGNMENT)
}

/// The inner block serving `layout`.
fn inner_layout(layout: Layout) -> Result<Layout, AllocError> {
    let size = lead(layout)
        .checked_add(layout.size())
        .and_then(|s| s.checked_add(TRAILER))
        .ok_or(AllocError)?;
    Layout::from_size_align(size, layout.align().max(ALIGNMENT)).map_err(|_| AllocError)
}

/// The first byte of `bytes` that is not `expected`, as (offset, value).
fn first_mismatch(bytes: &[u8], expected: u8) -> Option<(usize, u8)> {
    bytes
        .iter()
        .position(|&b| b != expected)
        .map(|i| (i, bytes[i]))
}

/// Fills `len` bytes at `ptr` with the freed pattern, keeping the first word for a list link:
/// what every free pool block and free-list slot holds in debug mode.
///
/// # Safety
///
/// `ptr` is valid for writes of `len` bytes.
pub(crate) unsafe fn poison(ptr: *mut u8, len: usize) {
    if len > LINK {
        // SAFETY: within the `len` bytes the caller vouches for.
        unsafe { ptr.add(LINK).write_bytes(FREED_BYTE, len - LINK) };
    }
}

/// Whether `len` bytes at `ptr` still hold the freed pattern (after the link word).
///
/// # Safety
///
/// `ptr` is valid for reads of `len` bytes.
pub(crate) unsafe fn is_poisoned(ptr: *mut u8, len: usize) -> bool {
    if len <= LINK {
        return true;
    }
    // SAFETY: within the `len` bytes the caller vouches for.
    let bytes = unsafe { core::slice::from_raw_parts(ptr.add(LINK), len - LINK) };
    first_mismatch(bytes, FREED_BYTE).is_none()
}

/// Checks that `len` bytes at `ptr` still hold the freed pattern (after the link word);
/// panics with a "write after free" message naming `what` otherwise.
///
/// # Safety
///
/// `ptr` is valid for reads of `len` bytes.
pub(crate) unsafe fn check_poison(ptr: *mut u8, len: usize, what: core::fmt::Arguments<'_>) {
    if len <= LINK {
        return;
    }
    // SAFETY: within the `len` bytes the caller vouches for.
    let bytes = unsafe { core::slice::from_raw_parts(ptr.add(LINK), len - LINK) };
    if let Some((offset, value)) = first_mismatch(bytes, FREED_BYTE) {
        panic!(
            "pyalloc debug: write after free: {what} at {ptr:p} ({len} bytes) was modified \
             after it was freed: byte {} is {value:#04x}, expected {FREED_BYTE:#04x}",
            offset + LINK
        );
    }
}

/// The inner block of a live debug-mode block, through the inner block's provenance (exposed
/// by `debug_allocate`): the caller's pointer may not cover the guards.
fn inner_of(ptr: NonNull<u8>, layout: Layout) -> NonNull<u8> {
    let inner = core::ptr::with_exposed_provenance_mut(ptr.as_ptr().addr() - lead(layout));
    // SAFETY: the inner block starts `lead` bytes before a live block: a non-null address.
    unsafe { NonNull::new_unchecked(inner) }
}

impl RawHeap {
    /// The debug mode's allocation.
    pub(crate) fn debug_allocate(&mut self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        let inner = inner_layout(layout)?;
        let (block, len) = if is_small(inner) {
            let class = class_of(inner.size());
            let block = self.alloc_block(class).ok_or(AllocError)?;
            // A pool block was poisoned when carved or freed; anything else is a stray write.
            // SAFETY: the block is `block_size(class)` bytes, handed out just now.
            unsafe { check_poison(block.as_ptr(), block_size(class), format_args!("memory")) };
            (block, block_size(class))
        } else {
            (self.allocate_large(inner)?.cast::<u8>(), inner.size())
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
        let state = self.debug.as_mut().expect("debug mode");
        state.freed.remove(&user.as_ptr().addr());
        state.live.insert(user.as_ptr().addr(), (user, layout));
        Ok(slice(user, layout.size()))
    }

    /// Checks that `ptr` is a live block of this heap with layout `layout` and intact guards;
    /// panics naming the misuse otherwise.
    pub(crate) fn debug_check_live(&self, ptr: NonNull<u8>, layout: Layout) {
        let state = self.debug.as_ref().expect("debug mode");
        let addr = ptr.as_ptr().addr();
        let Some(&(_, recorded)) = state.live.get(&addr) else {
            if let Some(freed) = state.freed.get(&addr) {
                panic!(
                    "pyalloc debug: double free: block {ptr:p} of {} bytes was already freed",
                    freed.size()
                );
            }
            panic!(
                "pyalloc debug: foreign pointer: block {ptr:p} ({} bytes) was not allocated by \
                 this heap",
                layout.size()
            );
        };
        if recorded != layout {
            panic!(
                "pyalloc debug: wrong layout: block {ptr:p} was allocated with size {}, align {} \
                 and freed with size {}, align {}",
                recorded.size(),
                recorded.align(),
                layout.size(),
                layout.align()
            );
        }
        if let Err(message) = Self::check_guards(ptr, recorded) {
            panic!("{message}");
        }
    }

    /// Checks both guards of a live block.
    fn check_guards(ptr: NonNull<u8>, layout: Layout) -> Result<(), String> {
        let lead = lead(layout);
        let inner = inner_of(ptr, layout);
        // SAFETY: the block is live (recorded), so its inner block surrounds it: `lead` guard
        // bytes before, `TRAILER` after.
        let (before, after) = unsafe {
            let p = inner.as_ptr();
            (
                core::slice::from_raw_parts(p, lead),
                core::slice::from_raw_parts(p.add(lead + layout.size()), TRAILER),
            )
        };
        if let Some((i, value)) = first_mismatch(after, GUARD_BYTE) {
            return Err(format!(
                "pyalloc debug: buffer overrun: block {ptr:p} of {} bytes was written past its \
                 end: byte {} after it is {value:#04x}, expected {GUARD_BYTE:#04x}",
                layout.size(),
                i
            ));
        }
        if let Some((i, value)) = first_mismatch(before, GUARD_BYTE) {
            return Err(format!(
                "pyalloc debug: buffer underrun: block {ptr:p} of {} bytes was written before \
                 its start: byte {} before it is {value:#04x}, expected {GUARD_BYTE:#04x}",
                layout.size(),
                lead - i
            ));
        }
        Ok(())
    }

    /// The debug mode's free.
    ///
    /// # Safety
    ///
    /// None beyond the allocator contract: every misuse of it is detected and reported by a
    /// panic before anything is changed (except for pointers that are not allocations at all,
    /// which cannot be told from foreign ones and are reported as such).
    pub(crate) unsafe fn debug_deallocate(&mut self, ptr: NonNull<u8>, layout: Layout) {
        self.debug_check_live(ptr, layout);
        let state = self.debug.as_mut().expect("debug mode");
        state.live.remove(&ptr.as_ptr().addr());
        state.freed.insert(ptr.as_ptr().addr(), layout);
        let inner = inner_layout(layout).expect("recorded layouts have an inner layout");
        // SAFETY: the block is live with `layout` (checked above), so its inner block starts
        // `lead` bytes before it; it is filled with the freed pattern, then freed the way it
        // was allocated.
        unsafe {
            let block = inner_of(ptr, layout);
            if is_small(inner) {
                let len = block_size(class_of(inner.size()));
                block.as_ptr().write_bytes(FREED_BYTE, len);
                self.free_block(block);
            } else {
                block.as_ptr().write_bytes(FREED_BYTE, inner.size());
                self.deallocate_large(block, inner);
            }
        }
    }

    /// The debug mode's grow and shrink: always a move, so stale pointers to the old block
    /// meet the freed pattern.
    ///
    /// # Safety
    ///
    /// As [`debug_deallocate`](Self::debug_deallocate).
    pub(crate) unsafe fn debug_reallocate(
        &mut self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() != 0 {
            self.debug_check_live(ptr, old);
        }
        let fresh = if new.size() == 0 {
            slice(crate::raw::dangling(new.align()), 0)
        } else {
            self.debug_allocate(new)?
        };
        // SAFETY: both blocks are live and distinct (or zero-sized), each at least `keep` long;
        // the old one is then freed with its own, checked layout.
        unsafe {
            let keep = old.size().min(new.size());
            core::ptr::copy_nonoverlapping(ptr.as_ptr(), fresh.cast::<u8>().as_ptr(), keep);
            if old.size() != 0 {
                self.debug_deallocate(ptr, old);
            }
        }
        Ok(fresh)
    }

    /// Frees the system blocks still live when the heap is dropped (pool blocks go with their
    /// arenas). Only the debug mode knows them: it records every block.
    pub(crate) fn debug_release_leftovers(&mut self) {
        let Some(state) = self.debug.as_mut() else {
            return;
        };
        let live: Vec<(NonNull<u8>, Layout)> = state.live.drain().map(|(_, v)| v).collect();
        for (ptr, layout) in live {
            let inner = inner_layout(layout).expect("recorded layouts have an inner layout");
            if !is_small(inner) {
                // SAFETY: the heap is being dropped, so nothing can use the block any more; it
                // is a live system block allocated with `inner`.
                unsafe { self.deallocate_large(inner_of(ptr, layout), inner) };
            }
        }
    }

    /// The debug part of [`check`](RawHeap::check): every live block's guards are intact.
    pub(crate) fn debug_check(&self) -> Result<(), String> {
        let Some(state) = self.debug.as_ref() else {
            return Ok(());
        };
        for &(ptr, layout) in state.live.values() {
            Self::check_guards(ptr, layout)?;
        }
        Ok(())
    }
}
