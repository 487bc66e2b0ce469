//! Layer 2's arithmetic: which requests pools serve, and in which size class.
//!
//! A request of `size` bytes (0 counts as 1) goes to class `(size - 1) >> 4`, whose blocks are
//! `(class + 1) << 4` bytes. Routing is decided from the `Layout` alone, on allocation and on
//! free alike, so a block needs no ownership lookup: C's `free(p)` has no size and CPython must
//! ask a radix tree whether `p` is its own; Rust's `deallocate(p, layout)` says it.

use core::alloc::Layout;

use crate::config::{ALIGNMENT, ALIGNMENT_SHIFT, NUM_SIZE_CLASSES, SMALL_REQUEST_THRESHOLD};

/// Whether a non-zero-sized request is served from pools: at most 512 bytes and aligned to at
/// most 16 (every block is 16-aligned, nothing more).
#[inline(always)]
pub(crate) const fn is_small(layout: Layout) -> bool {
    layout.size() <= SMALL_REQUEST_THRESHOLD && layout.align() <= ALIGNMENT
}

/// The class of a small request of `size` bytes, `1 <= size <= 512`.
#[inline(always)]
pub(crate) const fn class_of(size: usize) -> usize {
    debug_assert!(size >= 1 && size <= SMALL_REQUEST_THRESHOLD);
    (size - 1) >> ALIGNMENT_SHIFT
}

/// The block size of class `class`.
#[inline(always)]
pub(crate) const fn block_size(class: usize) -> usize {
    debug_assert!(class < NUM_SIZE_CLASSES);
    (class + 1) << ALIGNMENT_SHIFT
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_are_16_byte_steps() {
        for size in 1..=SMALL_REQUEST_THRESHOLD {
            let class = class_of(size);
            let block = block_size(class);
            assert!(block >= size && block - size < ALIGNMENT, "size {size}");
            assert_eq!(block % ALIGNMENT, 0);
        }
        assert_eq!(class_of(1), 0);
        assert_eq!(class_of(16), 0);
        assert_eq!(class_of(17), 1);
        assert_eq!(class_of(512), NUM_SIZE_CLASSES - 1);
    }

    #[test]
    fn routing_follows_size_and_alignment() {
        let l = |s, a| Layout::from_size_align(s, a).unwrap();
        assert!(is_small(l(512, 16)));
        assert!(!is_small(l(513, 1)));
        assert!(!is_small(l(8, 32)));
    }
}
