//! `str`: immutable UTF-8 text stored inline after the header, with its hash cached as in
//! CPython's `PyASCIIObject`.

use core::alloc::Layout;
use core::cell::Cell;

use super::object::{Header, Kind, PyObject, RawObj};

/// The fixed part of a `str` object; `len` bytes of UTF-8 follow it in the same block.
#[repr(C)]
pub(super) struct PyStrObject {
    head: Header,
    /// The cached hash, -1 until computed (CPython's `hash` field).
    hash: Cell<i64>,
    len: usize,
}

// SAFETY: `#[repr(C)]` with the header first.
unsafe impl PyObject for PyStrObject {
    const KIND: Kind = Kind::Str;
}

/// The size of the fixed part: 32 bytes.
pub(super) const STR_HEADER: usize = size_of::<PyStrObject>();

/// The block a string of `len` bytes needs.
pub(super) fn str_layout(len: usize) -> Layout {
    Layout::from_size_align(STR_HEADER + len, align_of::<PyStrObject>()).expect("str too large")
}

impl PyStrObject {
    /// The fixed part of a new string of `len` bytes.
    pub(super) fn new(len: usize) -> PyStrObject {
        PyStrObject {
            head: Header::new(Kind::Str),
            hash: Cell::new(-1),
            len,
        }
    }
}

impl RawObj {
    fn as_str_object(&self) -> &PyStrObject {
        self.downcast::<PyStrObject>().expect("a str object")
    }

    /// The bytes of a `str` object.
    ///
    /// # Panics
    ///
    /// If the object is not a `str`.
    #[inline]
    pub(super) fn str_bytes(&self) -> &[u8] {
        let len = self.as_str_object().len;
        // SAFETY: a str object's block holds `len` initialised bytes right after the fixed
        // part (`Runtime::str_from_parts` writes them before the object is shared); the
        // pointer has the whole block's provenance; the object is live while `self` is used.
        unsafe { core::slice::from_raw_parts(self.as_ptr().as_ptr().add(STR_HEADER), len) }
    }

    /// The text of a `str` object.
    #[inline]
    pub(super) fn str_value(&self) -> &str {
        // SAFETY: str objects are only built from the bytes of `&str`s (valid UTF-8), and
        // never change.
        unsafe { core::str::from_utf8_unchecked(self.str_bytes()) }
    }

    /// The string's hash, computed once and cached.
    #[inline]
    pub(super) fn str_hash(&self) -> i64 {
        let cached = self.as_str_object().hash.get();
        if cached != -1 {
            return cached;
        }
        let h = str_hash(self.str_bytes());
        self.as_str_object().hash.set(h);
        h
    }

    /// The length in bytes of a `str` object (for deallocation).
    pub(super) fn str_len(&self) -> usize {
        self.as_str_object().len
    }
}

/// The hash of a string: FNV-1a, 64-bit. CPython uses SipHash-1-3 with a random key per
/// process; a fixed function keeps runs reproducible, and dict order does not depend on it.
pub(super) fn str_hash(bytes: &[u8]) -> i64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    let h = h as i64;
    if h == -1 {
        -2
    } else {
        h
    }
}
