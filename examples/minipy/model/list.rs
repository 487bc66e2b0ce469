//! `list`: a resizable array of references, CPython's over-allocation policy, and a free list
//! of 80 list objects (layer 3, by derive). The item array is a `Vec` in the runtime's
//! allocator, grown and shrunk through it.

use core::cell::RefCell;

use pyalloc::{FreeListed, Vec};

use super::memory::Mem;
use super::object::{raw_eq, Header, Kind, Obj, PyObject, RawObj};
use super::runtime::Runtime;

/// A `list` object: CPython's `PyListObject` (`ob_item`, `allocated`, `ob_size` are the
/// `Vec`'s pointer, capacity and length).
#[derive(FreeListed)]
#[free_list(capacity = 80, name = "PyListObject")]
#[repr(C)]
pub(crate) struct PyListObject {
    head: Header,
    items: RefCell<Vec<RawObj, Mem>>,
}

// SAFETY: `#[repr(C)]` with the header first.
unsafe impl PyObject for PyListObject {
    const KIND: Kind = Kind::List;
}

impl PyListObject {
    /// A new list owning the references in `items`.
    pub(super) fn new(items: Vec<RawObj, Mem>) -> PyListObject {
        PyListObject {
            head: Header::new(Kind::List),
            items: RefCell::new(items),
        }
    }

    /// Takes the items out, leaving the list empty (for deallocation).
    pub(super) fn take_items(&self, mem: Mem) -> Vec<RawObj, Mem> {
        core::mem::replace(&mut *self.items.borrow_mut(), Vec::new_in(mem))
    }
}

/// CPython's `list_resize`: makes room for `newsize` items with its over-allocation
/// (`newsize + newsize/8 + 6`, rounded to 4), or gives memory back when the list fell under
/// half its allocation. Call before growing to `newsize`, or after shrinking to it.
pub(super) fn list_resize(v: &mut Vec<RawObj, Mem>, newsize: usize) {
    let allocated = v.capacity();
    if allocated >= newsize && newsize >= (allocated >> 1) {
        return;
    }
    let mut new_allocated = (newsize + (newsize >> 3) + 6) & !3;
    // A large jump (or a shrink): allocate for exactly the new size, rounded.
    if newsize.wrapping_sub(v.len()) > new_allocated - newsize {
        new_allocated = (newsize + 3) & !3;
    }
    if newsize == 0 {
        new_allocated = 0;
    }
    if new_allocated > allocated {
        v.reserve_exact(new_allocated - v.len());
    } else {
        v.shrink_to(new_allocated);
    }
}

impl RawObj {
    fn list_cell(&self) -> &RefCell<Vec<RawObj, Mem>> {
        match self.downcast::<PyListObject>() {
            Some(list) => &list.items,
            None => panic!("TypeError: expected list, got '{}'", self.kind().name()),
        }
    }

    /// `len()` of a list.
    pub(super) fn list_len(&self) -> usize {
        self.list_cell().borrow().len()
    }

    /// A copy of a list's item pointers (borrowed references: valid while nothing changes the
    /// list), for read-only walks that may re-enter the model.
    pub(super) fn list_snapshot(&self) -> std::vec::Vec<RawObj> {
        self.list_cell().borrow().to_vec()
    }

    /// `==` of two lists, item by item.
    pub(super) fn list_eq(&self, other: RawObj) -> bool {
        let (a, b) = (self.list_cell().borrow(), other.list_cell().borrow());
        a.len() == b.len() && a.iter().zip(b.iter()).all(|(&x, &y)| raw_eq(x, y))
    }
}

/// Python's index normalisation: negative counts from the end.
///
/// # Panics
///
/// `IndexError` when out of range.
fn norm_index(i: isize, len: usize) -> usize {
    let j = if i < 0 { i + len as isize } else { i };
    if j < 0 || j as usize >= len {
        panic!("IndexError: index {i} out of range for length {len}");
    }
    j as usize
}

/// Python's slice bound clamping.
fn clamp(i: isize, len: usize) -> usize {
    if i < 0 {
        (i + len as isize).max(0) as usize
    } else {
        (i as usize).min(len)
    }
}

impl<'h> Runtime<'h> {
    /// `[]`: a new empty list (no item storage until the first append, as CPython).
    pub(crate) fn list(&self) -> Obj<'_> {
        let raw = self.new_list(Vec::new_in(self.mem().allocator()));
        Obj::from_owned(raw, self)
    }

    /// `list(items)`.
    pub(crate) fn list_from<'r>(&'r self, items: impl IntoIterator<Item = Obj<'r>>) -> Obj<'r> {
        let items = items.into_iter();
        let mut v = Vec::with_capacity_in(items.size_hint().0, self.mem().allocator());
        for item in items {
            let raw = self.adopt_owned(item);
            let n = v.len();
            if n == v.capacity() {
                list_resize(&mut v, n + 1);
            }
            v.push(raw);
        }
        Obj::from_owned(self.new_list(v), self)
    }

    /// `[item] * n`.
    pub(crate) fn list_repeat<'r>(&'r self, item: &Obj<'r>, n: usize) -> Obj<'r> {
        let raw = self.adopt(item);
        let mut v = Vec::with_capacity_in(n, self.mem().allocator());
        for _ in 0..n {
            raw.incref();
            v.push(raw);
        }
        self.decref(raw);
        Obj::from_owned(self.new_list(v), self)
    }

    /// `a + b` for two lists.
    pub(super) fn list_concat(&self, a: RawObj, b: RawObj) -> Obj<'_> {
        let (x, y) = (a.list_cell().borrow(), b.list_cell().borrow());
        let mut v = Vec::with_capacity_in(x.len() + y.len(), self.mem().allocator());
        for &item in x.iter().chain(y.iter()) {
            item.incref();
            v.push(item);
        }
        drop((x, y));
        Obj::from_owned(self.new_list(v), self)
    }

    /// A list object around `items` (whose references it takes over).
    pub(super) fn new_list(&self, items: Vec<RawObj, Mem>) -> RawObj {
        RawObj::new(self.mem().new_pooled(PyListObject::new(items)))
    }
}

impl<'r> Obj<'r> {
    fn list_cell(&self) -> &RefCell<Vec<RawObj, Mem>> {
        self.raw_ref().list_cell()
    }

    /// `self.append(item)`.
    ///
    /// # Panics
    ///
    /// `TypeError` if `self` is not a list.
    pub(crate) fn append(&self, item: &Obj<'r>) {
        let raw = self.runtime().adopt(item);
        let mut v = self.list_cell().borrow_mut();
        let n = v.len();
        if n == v.capacity() {
            list_resize(&mut v, n + 1);
        }
        v.push(raw);
    }

    /// `self.pop()`.
    ///
    /// # Panics
    ///
    /// `IndexError` on an empty list.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn pop(&self) -> Obj<'r> {
        let mut v = self.list_cell().borrow_mut();
        let Some(raw) = v.pop() else {
            panic!("IndexError: pop from empty list");
        };
        let n = v.len();
        list_resize(&mut v, n);
        drop(v);
        Obj::from_owned(raw, self.runtime())
    }

    /// `self[i]` of a list or tuple.
    ///
    /// # Panics
    ///
    /// `IndexError`, or `TypeError` for other kinds.
    #[inline]
    pub(crate) fn at(&self, i: isize) -> Obj<'r> {
        let raw = match self.kind() {
            Kind::Tuple => {
                let items = self.raw_ref().tuple_items();
                items[norm_index(i, items.len())]
            }
            _ => {
                let v = self.list_cell().borrow();
                v[norm_index(i, v.len())]
            }
        };
        Obj::from_borrowed(raw, self.runtime())
    }

    /// `self[i] = value` of a list.
    ///
    /// # Panics
    ///
    /// `IndexError`, or `TypeError` if `self` is not a list.
    #[inline]
    pub(crate) fn set_at(&self, i: isize, value: &Obj<'r>) {
        let raw = self.runtime().adopt(value);
        let old = {
            let mut v = self.list_cell().borrow_mut();
            let j = norm_index(i, v.len());
            core::mem::replace(&mut v[j], raw)
        };
        self.runtime().decref(old);
    }

    /// `self[start:stop]` of a list (a new list) or a tuple (a new tuple).
    pub(crate) fn slice(&self, start: isize, stop: isize) -> Obj<'r> {
        let rt = self.runtime();
        if self.kind() == Kind::Tuple {
            let items = self.raw_ref().tuple_items();
            let (a, b) = (clamp(start, items.len()), clamp(stop, items.len()));
            let part = if a < b { &items[a..b] } else { &[][..] };
            for &item in part {
                item.incref();
            }
            return Obj::from_owned(rt.new_tuple(part), rt);
        }
        let v = self.list_cell().borrow();
        let (a, b) = (clamp(start, v.len()), clamp(stop, v.len()));
        let n = b.saturating_sub(a);
        let mut out = Vec::with_capacity_in(n, rt.mem().allocator());
        for &item in v.iter().skip(a).take(n) {
            item.incref();
            out.push(item);
        }
        drop(v);
        Obj::from_owned(rt.new_list(out), rt)
    }

    /// `self[start:stop] = src` of a list, `src` a list or tuple (possibly `self`).
    pub(crate) fn set_slice(&self, start: isize, stop: isize, src: &Obj<'r>) {
        let rt = self.runtime();
        rt.check_same(src);
        // Take new references to the source's items first: `src` may be `self`.
        let new: smallvec::SmallVec<[RawObj; 16]> = match src.kind() {
            Kind::Tuple => src.raw_ref().tuple_items().iter().copied().collect(),
            _ => src.list_cell().borrow().iter().copied().collect(),
        };
        for &item in &new {
            item.incref();
        }
        let removed: smallvec::SmallVec<[RawObj; 16]> = {
            let mut v = self.list_cell().borrow_mut();
            let (a, b) = (clamp(start, v.len()), clamp(stop, v.len()));
            let b = b.max(a);
            let newsize = v.len() - (b - a) + new.len();
            if newsize > v.len() {
                list_resize(&mut v, newsize);
            }
            let removed = v.splice(a..b, new).collect();
            let n = v.len();
            list_resize(&mut v, n);
            removed
        };
        for item in removed {
            rt.decref(item);
        }
    }

    /// `self.extend(src)`, `src` a list or tuple.
    #[cfg_attr(not(test), allow(dead_code))]
    pub(crate) fn extend(&self, src: &Obj<'r>) {
        let n = self.list_cell().borrow().len();
        self.set_slice(n as isize, n as isize, src);
    }

    /// Iterates over the items of a list or tuple (by index, as Python's list iterator does).
    pub(crate) fn iter(&self) -> SeqIter<'r> {
        assert!(
            matches!(self.kind(), Kind::List | Kind::Tuple),
            "TypeError: '{}' object is not iterable here",
            self.kind().name()
        );
        SeqIter {
            seq: self.clone(),
            next: 0,
        }
    }
}

/// Python's list and tuple iterators: by index, so a list changed meanwhile is seen as it is.
pub(crate) struct SeqIter<'r> {
    seq: Obj<'r>,
    next: usize,
}

impl<'r> Iterator for SeqIter<'r> {
    type Item = Obj<'r>;

    fn next(&mut self) -> Option<Obj<'r>> {
        let raw = match self.seq.kind() {
            Kind::Tuple => *self.seq.raw_ref().tuple_items().get(self.next)?,
            _ => *self.seq.list_cell().borrow().get(self.next)?,
        };
        self.next += 1;
        Some(Obj::from_borrowed(raw, self.seq.runtime()))
    }
}
