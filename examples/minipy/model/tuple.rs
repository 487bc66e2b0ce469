//! `tuple`: an immutable array of references stored inline after the header, allocated from
//! one free list per length 1..=20 (CPython's `PyTuple_MAXSAVESIZE`), each keeping up to 2000
//! tuples (`PyTuple_MAXFREELIST`); the empty tuple is a per-runtime singleton.

use core::alloc::Layout;

use super::object::{raw_hash, Header, Kind, PyObject, RawObj};

/// The fixed part of a `tuple` object; `len` item pointers follow it in the same block.
#[repr(C)]
pub(super) struct PyTupleObject {
    head: Header,
    len: usize,
}

// SAFETY: `#[repr(C)]` with the header first.
unsafe impl PyObject for PyTupleObject {
    const KIND: Kind = Kind::Tuple;
}

/// The size of the fixed part: 24 bytes, as CPython's `PyVarObject`.
pub(super) const TUPLE_HEADER: usize = size_of::<PyTupleObject>();

/// The block a tuple of `len` items needs: 24 + 8 × len bytes.
pub(super) fn tuple_layout(len: usize) -> Layout {
    Layout::new::<PyTupleObject>()
        .extend(Layout::array::<RawObj>(len).expect("tuple too large"))
        .expect("tuple too large")
        .0
}

impl PyTupleObject {
    /// The fixed part of a new tuple of `len` items.
    pub(super) fn new(len: usize) -> PyTupleObject {
        PyTupleObject {
            head: Header::new(Kind::Tuple),
            len,
        }
    }
}

impl RawObj {
    /// The items of a `tuple` object (borrowed: the tuple owns their references).
    ///
    /// # Panics
    ///
    /// If the object is not a tuple.
    #[inline]
    pub(super) fn tuple_items(&self) -> &[RawObj] {
        let len = self.downcast::<PyTupleObject>().expect("a tuple").len;
        // SAFETY: a tuple's block holds `len` initialised item pointers right after the fixed
        // part (written by `Runtime::new_tuple` before the tuple is shared, never changed);
        // the pointer has the whole block's provenance; the tuple is live while `self` is used.
        unsafe {
            core::slice::from_raw_parts(
                self.as_ptr().as_ptr().add(TUPLE_HEADER).cast::<RawObj>(),
                len,
            )
        }
    }
}

const XXPRIME_1: u64 = 11_400_714_785_074_694_791;
const XXPRIME_2: u64 = 14_029_467_366_897_019_727;
const XXPRIME_5: u64 = 2_870_177_450_012_600_261;

/// CPython's `tuplehash` (3.8+, after xxHash): combines the items' hashes in order.
pub(super) fn tuple_hash(items: &[RawObj]) -> i64 {
    let mut acc = XXPRIME_5;
    for &item in items {
        let lane = raw_hash(item) as u64;
        acc = acc.wrapping_add(lane.wrapping_mul(XXPRIME_2));
        acc = acc.rotate_left(31);
        acc = acc.wrapping_mul(XXPRIME_1);
    }
    acc = acc.wrapping_add(items.len() as u64 ^ (XXPRIME_5 ^ 3_527_539));
    if acc == u64::MAX {
        1_546_275_796
    } else {
        acc as i64
    }
}
