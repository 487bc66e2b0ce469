//! `dict`: CPython's compact ordered dict (3.6+). An index table of `2^k` slots, each a
//! signed integer of 1, 2, 4 or 8 bytes (by table size), points into an insertion-ordered
//! array of entries `(hash, key, value)`; lookups probe the index table with CPython's
//! perturbed open addressing and compare keys by identity, then hash, then `==`. Both arrays
//! are `Vec`s in the runtime's allocator, grown and shrunk through it. Dict objects have a
//! free list of 80 (layer 3, by derive).
//!
//! As in CPython 3.11: a new dict allocates no table until its first insertion (then 8 slots);
//! a full table (`2/3` of the slots used, counting deleted entries) is resized on the next
//! insertion to the smallest power of two `>= 3 × live entries`, which grows it, or shrinks it
//! after many deletions; deletion leaves a dummy index and a hole in the entry array until
//! that resize compacts the entries in place.

use core::cell::RefCell;

use pyalloc::{FreeListed, Vec};

use super::memory::Mem;
use super::object::{raw_eq, raw_hash, Header, Kind, Obj, PyObject, RawObj};
use super::runtime::Runtime;

/// An index slot that was never used.
const DKIX_EMPTY: isize = -1;
/// An index slot whose entry was deleted.
const DKIX_DUMMY: isize = -2;
/// CPython's `PERTURB_SHIFT`.
const PERTURB_SHIFT: u32 = 5;
/// `PyDict_LOG_MINSIZE`: the smallest table has 8 slots.
const LOG2_MINSIZE: u8 = 3;

/// One entry: CPython's `PyDictKeyEntry`. A deleted entry has no key and no value.
#[derive(Clone, Copy, Debug)]
pub(super) struct Entry {
    hash: i64,
    key: Option<RawObj>,
    value: Option<RawObj>,
}

/// The keys object: CPython's `PyDictKeysObject` with its two arrays.
pub(super) struct DictTable {
    /// log2 of the number of index slots; 0 while the dict has no table (`Py_EMPTY_KEYS`).
    log2_size: u8,
    /// How many entries the entry array holds before a resize: `USABLE_FRACTION(size)`.
    usable: usize,
    /// `size` slots of `width()` bytes each, native-endian signed.
    indices: Vec<u8, Mem>,
    /// Entries in insertion order, deleted ones included until the next resize.
    entries: Vec<Entry, Mem>,
    /// Live entries (`ma_used`).
    used: usize,
}

/// The sizes of a dict's storage, for tests.
#[cfg(test)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DictStorage {
    /// Index slots (0 before the first insertion).
    pub(crate) slots: usize,
    /// Bytes per index slot.
    pub(crate) index_width: usize,
    /// Capacity of the entry array.
    pub(crate) entry_capacity: usize,
    /// Entries in the array, deleted ones included.
    pub(crate) entries: usize,
}

impl DictTable {
    fn new(mem: Mem) -> DictTable {
        DictTable {
            log2_size: 0,
            usable: 0,
            indices: Vec::new_in(mem),
            entries: Vec::new_in(mem),
            used: 0,
        }
    }

    /// Bytes per index slot: `DK_IXSIZE`.
    #[inline(always)]
    fn width(&self) -> usize {
        match self.log2_size {
            0..=7 => 1,
            8..=15 => 2,
            16..=31 => 4,
            _ => 8,
        }
    }

    #[inline(always)]
    fn mask(&self) -> usize {
        (1usize << self.log2_size) - 1
    }

    #[inline(always)]
    fn get_index(&self, i: usize) -> isize {
        let b = &self.indices;
        match self.width() {
            1 => b[i] as i8 as isize,
            2 => i16::from_ne_bytes([b[2 * i], b[2 * i + 1]]) as isize,
            4 => i32::from_ne_bytes(b[4 * i..4 * i + 4].try_into().expect("4 bytes")) as isize,
            _ => i64::from_ne_bytes(b[8 * i..8 * i + 8].try_into().expect("8 bytes")) as isize,
        }
    }

    #[inline(always)]
    fn set_index(&mut self, i: usize, ix: isize) {
        let w = self.width();
        let b = &mut self.indices;
        match w {
            1 => b[i] = ix as i8 as u8,
            2 => b[2 * i..2 * i + 2].copy_from_slice(&(ix as i16).to_ne_bytes()),
            4 => b[4 * i..4 * i + 4].copy_from_slice(&(ix as i32).to_ne_bytes()),
            _ => b[8 * i..8 * i + 8].copy_from_slice(&(ix as i64).to_ne_bytes()),
        }
    }

    /// The probe sequence's next slot.
    #[inline(always)]
    fn next_slot(i: usize, perturb: &mut u64, mask: usize) -> usize {
        *perturb >>= PERTURB_SHIFT;
        (i.wrapping_mul(5)
            .wrapping_add(*perturb as usize)
            .wrapping_add(1))
            & mask
    }

    /// `(index slot, entry index)` of `key`, if present. Keys are hashable, so comparing them
    /// never touches a dict or list (no re-entry into any `RefCell`).
    fn lookup(&self, key: RawObj, hash: i64) -> Option<(usize, usize)> {
        if self.log2_size == 0 {
            return None;
        }
        let mask = self.mask();
        let mut perturb = hash as u64;
        let mut i = (hash as u64 as usize) & mask;
        loop {
            let ix = self.get_index(i);
            if ix == DKIX_EMPTY {
                return None;
            }
            if ix >= 0 {
                let e = &self.entries[ix as usize];
                if let Some(k) = e.key {
                    if k == key || (e.hash == hash && raw_eq(k, key)) {
                        return Some((i, ix as usize));
                    }
                }
            }
            i = Self::next_slot(i, &mut perturb, mask);
        }
    }

    /// The first empty or dummy index slot on `hash`'s probe sequence.
    fn find_empty_slot(&self, hash: i64) -> usize {
        let mask = self.mask();
        let mut perturb = hash as u64;
        let mut i = (hash as u64 as usize) & mask;
        while self.get_index(i) >= 0 {
            i = Self::next_slot(i, &mut perturb, mask);
        }
        i
    }

    /// Inserts or overwrites, taking over the references to `key` and `value`. On overwrite
    /// returns `(old value, key)`: references the caller must drop (CPython keeps the old key).
    fn insert(&mut self, key: RawObj, hash: i64, value: RawObj) -> Option<(RawObj, RawObj)> {
        if let Some((_, ix)) = self.lookup(key, hash) {
            let old = self.entries[ix].value.replace(value);
            return Some((old.expect("a live entry has a value"), key));
        }
        if self.entries.len() >= self.usable {
            self.resize(self.used * 3); // CPython's GROWTH_RATE
        }
        let slot = self.find_empty_slot(hash);
        let ix = self.entries.len();
        self.entries.push(Entry {
            hash,
            key: Some(key),
            value: Some(value),
        });
        self.set_index(slot, ix as isize);
        self.used += 1;
        None
    }

    /// Removes `key`, returning the references to its key and value for the caller to drop.
    fn remove(&mut self, key: RawObj, hash: i64) -> Option<(RawObj, RawObj)> {
        let (slot, ix) = self.lookup(key, hash)?;
        self.set_index(slot, DKIX_DUMMY);
        let e = &mut self.entries[ix];
        let (k, v) = (e.key.take(), e.value.take());
        self.used -= 1;
        Some((k.expect("live key"), v.expect("live value")))
    }

    /// `dictresize`: a table of the smallest power of two `>= minsize` (at least 8) slots.
    /// The entry array is compacted in place and then grown or shrunk to the new usable size
    /// through the allocator (`grow`/`shrink`, in place when the size class allows); the index
    /// table is rebuilt.
    fn resize(&mut self, minsize: usize) {
        let mut log2 = LOG2_MINSIZE;
        while (1usize << log2) < minsize {
            log2 += 1;
        }
        let size = 1usize << log2;
        let usable = (size << 1) / 3; // USABLE_FRACTION
        if self.entries.len() != self.used {
            self.entries.retain(|e| e.key.is_some());
        }
        let capacity = self.entries.capacity();
        if usable > capacity {
            let len = self.entries.len();
            self.entries.reserve_exact(usable - len);
        } else if usable < capacity {
            self.entries.shrink_to(usable);
        }
        self.log2_size = log2;
        self.usable = usable;
        let mem = *self.indices.allocator();
        let bytes = size * self.width();
        let mut indices = Vec::with_capacity_in(bytes, mem);
        indices.resize(bytes, 0xff); // -1, DKIX_EMPTY, at every width
        self.indices = indices;
        for ix in 0..self.entries.len() {
            let slot = self.find_empty_slot(self.entries[ix].hash);
            self.set_index(slot, ix as isize);
        }
    }
}

/// A `dict` object: CPython's `PyDictObject`.
#[derive(FreeListed)]
#[free_list(capacity = 80, name = "PyDictObject")]
#[repr(C)]
pub(crate) struct PyDictObject {
    head: Header,
    table: RefCell<DictTable>,
}

// SAFETY: `#[repr(C)]` with the header first.
unsafe impl PyObject for PyDictObject {
    const KIND: Kind = Kind::Dict;
}

impl PyDictObject {
    /// Takes the table out, leaving the dict empty with no table (for deallocation and
    /// `clear`); the caller drops the references it holds with [`DictTable::release`].
    pub(super) fn take_table(&self, mem: Mem) -> DictTable {
        core::mem::replace(&mut *self.table.borrow_mut(), DictTable::new(mem))
    }
}

impl DictTable {
    /// Drops every key and value reference of a table taken out of its dict, then frees the
    /// table's arrays.
    pub(super) fn release(self, rt: &Runtime<'_>) {
        for e in self.entries.iter() {
            if let (Some(k), Some(v)) = (e.key, e.value) {
                rt.decref(k);
                rt.decref(v);
            }
        }
    }
}

impl RawObj {
    fn dict_table(&self) -> &RefCell<DictTable> {
        match self.downcast::<PyDictObject>() {
            Some(d) => &d.table,
            None => panic!("TypeError: expected dict, got '{}'", self.kind().name()),
        }
    }

    /// `len()` of a dict.
    pub(super) fn dict_len(&self) -> usize {
        self.dict_table().borrow().used
    }

    /// The live `(key, value)` pointers in order (borrowed references), for read-only walks.
    pub(super) fn dict_snapshot(&self) -> std::vec::Vec<(RawObj, RawObj)> {
        let t = self.dict_table().borrow();
        t.entries
            .iter()
            .filter_map(|e| Some((e.key?, e.value?)))
            .collect()
    }

    /// `==` of two dicts: same length, and every key of one maps to an equal value in the
    /// other.
    pub(super) fn dict_eq(&self, other: RawObj) -> bool {
        let (a, b) = (self.dict_table().borrow(), other.dict_table().borrow());
        a.used == b.used
            && a.entries.iter().all(|e| match (e.key, e.value) {
                (Some(k), Some(v)) => match b.lookup(k, e.hash) {
                    Some((_, ix)) => raw_eq(v, b.entries[ix].value.expect("live value")),
                    None => false,
                },
                _ => true,
            })
    }
}

impl<'h> Runtime<'h> {
    /// `{}`: a new empty dict (no table until the first insertion, as CPython).
    pub(crate) fn dict(&self) -> Obj<'_> {
        let d = PyDictObject {
            head: Header::new(Kind::Dict),
            table: RefCell::new(DictTable::new(self.mem().allocator())),
        };
        Obj::from_owned(RawObj::new(self.mem().new_pooled(d)), self)
    }
}

impl<'r> Obj<'r> {
    fn dict_table(&self) -> &RefCell<DictTable> {
        self.raw_ref().dict_table()
    }

    /// `self.get(key)` of a dict: the value, or `None` when absent.
    ///
    /// # Panics
    ///
    /// `TypeError` if `self` is not a dict or `key` is unhashable.
    #[inline]
    pub(crate) fn get(&self, key: &Obj<'_>) -> Option<Obj<'r>> {
        let hash = raw_hash(key.raw());
        let t = self.dict_table().borrow();
        let (_, ix) = t.lookup(key.raw(), hash)?;
        let v = t.entries[ix].value.expect("live value");
        drop(t);
        Some(Obj::from_borrowed(v, self.runtime()))
    }

    /// `self[key]` of a dict.
    ///
    /// # Panics
    ///
    /// `KeyError` when absent.
    #[inline]
    pub(crate) fn getitem(&self, key: &Obj<'_>) -> Obj<'r> {
        match self.get(key) {
            Some(v) => v,
            None => panic!("KeyError: {}", key.repr()),
        }
    }

    /// `key in self` of a dict.
    pub(crate) fn contains(&self, key: &Obj<'_>) -> bool {
        let hash = raw_hash(key.raw());
        self.dict_table().borrow().lookup(key.raw(), hash).is_some()
    }

    /// `self[key] = value` of a dict: overwrites in place (keeping the position), or appends.
    ///
    /// # Panics
    ///
    /// `TypeError` if `self` is not a dict or `key` is unhashable.
    #[inline]
    pub(crate) fn set(&self, key: &Obj<'r>, value: &Obj<'r>) {
        let hash = raw_hash(key.raw());
        let rt = self.runtime();
        let (k, v) = (rt.adopt(key), rt.adopt(value));
        let replaced = self.dict_table().borrow_mut().insert(k, hash, v);
        if let Some((old, unused_key)) = replaced {
            rt.decref(unused_key);
            rt.decref(old);
        }
    }

    /// `del self[key]` of a dict; returns whether the key was there (Python would raise
    /// `KeyError` otherwise).
    pub(crate) fn del(&self, key: &Obj<'_>) -> bool {
        let hash = raw_hash(key.raw());
        let removed = self.dict_table().borrow_mut().remove(key.raw(), hash);
        match removed {
            Some((k, v)) => {
                self.runtime().decref(k);
                self.runtime().decref(v);
                true
            }
            None => false,
        }
    }

    /// `self.clear()` of a dict: drops every entry and the table (back to no table).
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn clear(&self) {
        let rt = self.runtime();
        let d = self.raw();
        let d = d.downcast::<PyDictObject>().expect("a dict");
        d.take_table(rt.mem().allocator()).release(rt);
    }

    /// Iterates over `(key, value)` in insertion order.
    ///
    /// # Panics
    ///
    /// The iterator panics with `RuntimeError` if the dict changes size meanwhile.
    pub(crate) fn items(&self) -> DictItems<'r> {
        let used = self.dict_table().borrow().used;
        DictItems {
            dict: self.clone(),
            pos: 0,
            used,
        }
    }

    /// The sizes of the dict's storage.
    #[cfg(test)]
    pub(crate) fn dict_storage(&self) -> DictStorage {
        let t = self.dict_table().borrow();
        DictStorage {
            slots: if t.log2_size == 0 {
                0
            } else {
                1 << t.log2_size
            },
            index_width: t.width(),
            entry_capacity: t.entries.capacity(),
            entries: t.entries.len(),
        }
    }
}

/// `dict.items()`'s iterator.
pub(crate) struct DictItems<'r> {
    dict: Obj<'r>,
    pos: usize,
    used: usize,
}

impl<'r> Iterator for DictItems<'r> {
    type Item = (Obj<'r>, Obj<'r>);

    fn next(&mut self) -> Option<(Obj<'r>, Obj<'r>)> {
        let t = self.dict.dict_table().borrow();
        if t.used != self.used {
            panic!("RuntimeError: dictionary changed size during iteration");
        }
        while let Some(&e) = t.entries.get(self.pos) {
            self.pos += 1;
            if let (Some(k), Some(v)) = (e.key, e.value) {
                drop(t);
                let rt = self.dict.runtime();
                return Some((Obj::from_borrowed(k, rt), Obj::from_borrowed(v, rt)));
            }
        }
        None
    }
}
