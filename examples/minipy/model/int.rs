//! `int` (and `bool`, which shares its layout as in CPython): 64-bit here, with CPython's
//! cache of small ints -5..=256 preallocated per runtime and shared.

use core::alloc::Layout;

use super::object::{Header, Kind, PyObject, RawObj};

/// CPython's `_PY_NSMALLNEGINTS`: ints from -5 are cached.
pub(super) const SMALL_INT_MIN: i64 = -5;
/// CPython's `_PY_NSMALLPOSINTS - 1`: ints up to 256 are cached.
pub(super) const SMALL_INT_MAX: i64 = 256;
/// How many small ints a runtime preallocates.
pub(super) const SMALL_INTS: usize = (SMALL_INT_MAX - SMALL_INT_MIN + 1) as usize;

/// An `int` or `bool` object: CPython's `PyLongObject` with a single 64-bit digit.
#[repr(C)]
pub(super) struct PyLongObject {
    head: Header,
    value: i64,
}

// SAFETY: `#[repr(C)]` with the header first.
unsafe impl PyObject for PyLongObject {
    const KIND: Kind = Kind::Int;
}

impl PyLongObject {
    /// The layout of every int and bool.
    pub(super) const LAYOUT: Layout = Layout::new::<PyLongObject>();

    /// A new int (or bool, with `kind` `Bool`) holding `value`.
    pub(super) const fn new(kind: Kind, value: i64) -> PyLongObject {
        PyLongObject {
            head: Header::new(kind),
            value,
        }
    }
}

impl RawObj {
    /// The value of an `int` or `bool` object; `None` for other kinds.
    #[inline(always)]
    pub(super) fn int_value(self) -> Option<i64> {
        match self.kind() {
            // SAFETY: ints and bools are `PyLongObject`s.
            Kind::Int | Kind::Bool => Some(unsafe { self.cast_unchecked::<PyLongObject>() }.value),
            _ => None,
        }
    }
}

/// The index of `v` in the small-int cache, if it is cached.
#[inline(always)]
pub(super) fn small_int_index(v: i64) -> Option<usize> {
    if (SMALL_INT_MIN..=SMALL_INT_MAX).contains(&v) {
        Some((v - SMALL_INT_MIN) as usize)
    } else {
        None
    }
}

/// `_PyHASH_MODULUS`: the Mersenne prime 2^61 - 1 numeric hashes reduce by.
pub(super) const HASH_MODULUS: u64 = (1 << 61) - 1;

/// CPython's `long_hash`: the value modulo 2^61 - 1 with its sign, -1 becoming -2.
pub(super) fn int_hash(v: i64) -> i64 {
    let m = (v.unsigned_abs() % HASH_MODULUS) as i64;
    let h = if v < 0 { -m } else { m };
    if h == -1 {
        -2
    } else {
        h
    }
}
