//! Fill patterns: what the debug mode writes into memory it hands out, takes back or guards,
//! and the one policy that layer 2 takes instead of knowing about the debug mode.
//!
//! The patterns are CPython's (`Objects/obmalloc.c`, `PYMEM_CLEANBYTE` and friends), so a
//! dump of a pyalloc heap reads like a dump of a CPython heap under `PYTHONMALLOC=debug`.

/// Fill of fresh data (CPython's `PYMEM_CLEANBYTE`).
pub const FRESH_BYTE: u8 = 0xCD;
/// Fill of freed memory (CPython's `PYMEM_DEADBYTE`).
pub const FREED_BYTE: u8 = 0xDD;
/// Guard bytes around each block (CPython's `PYMEM_FORBIDDENBYTE`).
pub const GUARD_BYTE: u8 = 0xFD;

/// What layer 2 writes into a block it carves: nothing (the normal mode, so that untouched
/// pages stay untouched), or the freed pattern (the debug mode, which checks the pattern when
/// the block is handed out, so a stray write into a free block is named).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fill {
    /// Leave carved blocks as they are.
    Nothing,
    /// Fill carved blocks with [`FREED_BYTE`].
    Freed,
}

impl Fill {
    /// Applies the policy to `len` bytes at `ptr`.
    ///
    /// # Safety
    ///
    /// `ptr` is valid for writes of `len` bytes that hold nothing live.
    #[inline(always)]
    pub(crate) unsafe fn apply(self, ptr: *mut u8, len: usize) {
        if self == Fill::Freed {
            // SAFETY: the caller vouches for the range.
            unsafe { ptr.write_bytes(FREED_BYTE, len) };
        }
    }
}

/// The first byte of `len` bytes at `ptr` that is not `expected`, as (offset, value).
///
/// # Safety
///
/// `ptr` is valid for reads of `len` bytes.
pub(crate) unsafe fn first_mismatch(
    ptr: *const u8,
    len: usize,
    expected: u8,
) -> Option<(usize, u8)> {
    // SAFETY: the caller vouches for the range.
    let bytes = unsafe { core::slice::from_raw_parts(ptr, len) };
    bytes
        .iter()
        .position(|&b| b != expected)
        .map(|i| (i, bytes[i]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_freed_fill_writes_the_pattern_and_nothing_writes_nothing() {
        let mut bytes = [7u8; 32];
        // SAFETY: the array is 32 writable bytes.
        unsafe {
            Fill::Nothing.apply(bytes.as_mut_ptr(), 32);
            assert_eq!(first_mismatch(bytes.as_ptr(), 32, 7), None);
            Fill::Freed.apply(bytes.as_mut_ptr().add(4), 8);
            assert_eq!(first_mismatch(bytes.as_ptr().add(4), 8, FREED_BYTE), None);
            assert_eq!(first_mismatch(bytes.as_ptr(), 32, FREED_BYTE), Some((0, 7)));
            assert_eq!(
                first_mismatch(bytes.as_ptr().add(4), 28, FREED_BYTE),
                Some((8, 7))
            );
        }
    }
}
