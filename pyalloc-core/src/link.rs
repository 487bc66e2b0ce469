//! The one link primitive: the pointer a free block, or a slot resting on a layer-3 free list,
//! keeps in its first word.
//!
//! Layer 2 threads each pool's free blocks through their first word, and layer 3 threads each
//! free list's slots the same way (CPython does both). Every read and write of that word goes
//! through [`read`] and [`write`], which also tell memcheck (with the `valgrind` feature) that
//! the allocator itself is touching memory its users may not, so the allocator's own work is
//! never reported while a user's use after free is.

use crate::valgrind;

/// Bytes of the link at the start of a free block or slot. Blocks are at least 16 bytes and
/// slots at least a pointer wide and pointer aligned, so the link always fits.
pub(crate) const LINK: usize = size_of::<*mut u8>();

/// Reads the link of a free block or slot.
///
/// # Safety
///
/// `block` is pointer-aligned, valid for reads of a pointer, and its first word is a link
/// written by [`write`].
#[inline(always)]
pub(crate) unsafe fn read(block: *mut u8) -> *mut u8 {
    valgrind::make_defined(block, LINK);
    // SAFETY: the caller's contract.
    let next = unsafe { block.cast::<*mut u8>().read() };
    valgrind::make_noaccess(block, LINK);
    next
}

/// Writes the link of a free block or slot.
///
/// # Safety
///
/// `block` is pointer-aligned, valid for writes of a pointer, and holds nothing live.
#[inline(always)]
pub(crate) unsafe fn write(block: *mut u8, next: *mut u8) {
    valgrind::make_undefined(block, LINK);
    // SAFETY: the caller's contract.
    unsafe { block.cast::<*mut u8>().write(next) };
    valgrind::make_noaccess(block, LINK);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_reads_back_what_was_written() {
        let mut words = [core::ptr::null_mut::<u8>(); 2];
        let target = words.as_mut_ptr().cast::<u8>();
        let at = words[1..].as_mut_ptr().cast::<u8>();
        // SAFETY: `at` is a pointer-aligned word of the array, holding nothing live.
        unsafe {
            write(at, target);
            assert_eq!(read(at), target);
        }
    }
}
