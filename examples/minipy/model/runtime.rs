//! The runtime: one interpreter's object space. It owns the singletons (`None`, `True`,
//! `False`, the empty tuple, the small ints -5..=256), creates objects through its
//! [`Memory`] backend, and deallocates them when their count reaches zero, with CPython's
//! "trashcan" to keep deep structures from overflowing the stack.

use core::cell::{Cell, RefCell};

use smallvec::SmallVec;

use super::dict::PyDictObject;
use super::float::PyFloatObject;
use super::int::{small_int_index, PyLongObject, SMALL_INTS, SMALL_INT_MIN};
use super::list::PyListObject;
use super::memory::Memory;
use super::object::{Header, Kind, Obj, PyObject, RawObj};
use super::string::{str_layout, PyStrObject, STR_HEADER};
use super::tuple::{PyTupleObject, TUPLE_HEADER};

/// How deep container deallocations nest before the rest is deferred (CPython's trashcan
/// depth, `Py_TRASHCAN_HEADROOM`'s cousin `_PyTrash_UNWIND_LEVEL`: 50).
const TRASHCAN_DEPTH: u32 = 50;

/// `None`: a bare header.
#[repr(C)]
struct PyNoneObject {
    head: Header,
}

// SAFETY: `#[repr(C)]` with the header first.
unsafe impl PyObject for PyNoneObject {
    const KIND: Kind = Kind::None;
}

/// One interpreter's object space over one memory backend.
///
/// Objects are handed out as [`Obj`]s borrowing the runtime, so every object dies before its
/// runtime, and the runtime (which borrows the heap) before the heap.
pub(crate) struct Runtime<'h> {
    mem: Memory<'h>,
    none: RawObj,
    true_: RawObj,
    false_: RawObj,
    empty_tuple: RawObj,
    small_ints: [RawObj; SMALL_INTS],
    /// Nesting depth of container deallocations in progress.
    dealloc_depth: Cell<u32>,
    /// Containers whose deallocation was deferred to keep the stack shallow.
    trash: RefCell<std::vec::Vec<RawObj>>,
}

impl<'h> Runtime<'h> {
    /// A runtime allocating from `mem`, with its singletons and small ints made.
    pub(crate) fn new(mem: Memory<'h>) -> Runtime<'h> {
        let new_int = |kind: Kind, v: i64| {
            let p = mem.alloc(PyLongObject::LAYOUT).cast::<PyLongObject>();
            // SAFETY: a fresh block with the layout of `PyLongObject`.
            unsafe { p.write(PyLongObject::new(kind, v)) };
            RawObj::new(p)
        };
        let none = mem
            .alloc(core::alloc::Layout::new::<PyNoneObject>())
            .cast::<PyNoneObject>();
        // SAFETY: a fresh block with the layout of `PyNoneObject`.
        unsafe {
            none.write(PyNoneObject {
                head: Header::new(Kind::None),
            })
        };
        Runtime {
            mem,
            none: RawObj::new(none),
            true_: new_int(Kind::Bool, 1),
            false_: new_int(Kind::Bool, 0),
            empty_tuple: alloc_tuple_object(mem, 0),
            small_ints: core::array::from_fn(|i| new_int(Kind::Int, i as i64 + SMALL_INT_MIN)),
            dealloc_depth: Cell::new(0),
            trash: RefCell::new(std::vec::Vec::new()),
        }
    }

    /// The memory backend.
    #[inline(always)]
    pub(crate) fn mem(&self) -> Memory<'h> {
        self.mem
    }

    // ---------------------------------------------------------------------------------------
    // Reference counting

    /// Panics unless `o` belongs to this runtime: an object stored in a container is freed by
    /// the container's runtime, so it must come from the same backend.
    #[inline(always)]
    pub(super) fn check_same(&self, o: &Obj<'_>) {
        let theirs = o.runtime() as *const Runtime<'_> as *const ();
        assert!(
            core::ptr::eq(theirs, self as *const Runtime<'_> as *const ()),
            "an object of another runtime cannot be stored here"
        );
    }

    /// A new counted reference to `o` for a container of this runtime.
    #[inline(always)]
    pub(super) fn adopt(&self, o: &Obj<'_>) -> RawObj {
        self.check_same(o);
        o.new_ref()
    }

    /// `o`'s reference, for a container of this runtime.
    #[inline(always)]
    pub(super) fn adopt_owned(&self, o: Obj<'_>) -> RawObj {
        self.check_same(&o);
        o.into_raw()
    }

    /// `Py_DECREF`: drops one reference, deallocating the object at zero.
    #[inline(always)]
    pub(super) fn decref(&self, o: RawObj) {
        if o.decref_is_zero() {
            self.dealloc(o);
        }
    }

    /// Frees an object whose count reached zero, dropping the references it holds.
    fn dealloc(&self, o: RawObj) {
        match o.kind() {
            Kind::Int | Kind::Bool => {
                // SAFETY: ints and bools are `alloc(PyLongObject::LAYOUT)` blocks of this
                // runtime's backend (`check_same` keeps other runtimes' objects out of its
                // containers); the count is zero, so nothing uses the object again.
                unsafe { self.mem.free(o.as_ptr(), PyLongObject::LAYOUT) }
            }
            Kind::Float => {
                // SAFETY: floats come from `new_pooled::<PyFloatObject>` of this backend; the
                // count is zero.
                unsafe { self.mem.free_pooled(o.as_ptr().cast::<PyFloatObject>()) }
            }
            Kind::Str => {
                let layout = str_layout(o.str_len());
                // SAFETY: strings are `alloc(str_layout(len))` blocks of this backend; the
                // count is zero.
                unsafe { self.mem.free(o.as_ptr(), layout) }
            }
            Kind::None => {
                // SAFETY: `None` is the `alloc` block made in `new`; its count reaches zero
                // only when the runtime drops its own reference, in `drop`.
                unsafe {
                    self.mem
                        .free(o.as_ptr(), core::alloc::Layout::new::<PyNoneObject>())
                }
            }
            Kind::Tuple | Kind::List | Kind::Dict => self.dealloc_container(o),
        }
    }

    /// The trashcan: container deallocations nest at most `TRASHCAN_DEPTH` deep; deeper ones
    /// wait in a list that the outermost one empties.
    fn dealloc_container(&self, o: RawObj) {
        let depth = self.dealloc_depth.get();
        if depth >= TRASHCAN_DEPTH {
            self.trash.borrow_mut().push(o);
            return;
        }
        self.dealloc_depth.set(depth + 1);
        self.dealloc_container_now(o);
        if depth == 0 {
            loop {
                let next = self.trash.borrow_mut().pop();
                match next {
                    Some(o) => self.dealloc_container_now(o),
                    None => break,
                }
            }
        }
        self.dealloc_depth.set(depth);
    }

    fn dealloc_container_now(&self, o: RawObj) {
        match o.kind() {
            Kind::Tuple => {
                let items = o.tuple_items();
                let len = items.len();
                for &item in items {
                    self.decref(item);
                }
                // SAFETY: tuples come from `alloc_tuple(len)` of this backend; the count is
                // zero and the items were released.
                unsafe { self.mem.free_tuple(len, o.as_ptr()) }
            }
            Kind::List => {
                let items = o
                    .downcast::<PyListObject>()
                    .expect("a list")
                    .take_items(self.mem.allocator());
                for &item in items.iter() {
                    self.decref(item);
                }
                drop(items);
                // SAFETY: lists come from `new_pooled::<PyListObject>` of this backend; the
                // count is zero.
                unsafe { self.mem.free_pooled(o.as_ptr().cast::<PyListObject>()) }
            }
            Kind::Dict => {
                let table = o
                    .downcast::<PyDictObject>()
                    .expect("a dict")
                    .take_table(self.mem.allocator());
                table.release(self);
                // SAFETY: dicts come from `new_pooled::<PyDictObject>` of this backend; the
                // count is zero.
                unsafe { self.mem.free_pooled(o.as_ptr().cast::<PyDictObject>()) }
            }
            _ => unreachable!("not a container"),
        }
    }

    // ---------------------------------------------------------------------------------------
    // Scalars

    /// `None`.
    #[inline]
    pub(crate) fn none(&self) -> Obj<'_> {
        Obj::from_borrowed(self.none, self)
    }

    /// `True` or `False`.
    #[inline]
    pub(crate) fn bool(&self, b: bool) -> Obj<'_> {
        Obj::from_borrowed(if b { self.true_ } else { self.false_ }, self)
    }

    /// An `int`: the shared small int for -5..=256, else a new object.
    #[inline]
    pub(crate) fn int(&self, v: i64) -> Obj<'_> {
        if let Some(i) = small_int_index(v) {
            return Obj::from_borrowed(self.small_ints[i], self);
        }
        let p = self.mem.alloc(PyLongObject::LAYOUT).cast::<PyLongObject>();
        // SAFETY: a fresh block with the layout of `PyLongObject`.
        unsafe { p.write(PyLongObject::new(Kind::Int, v)) };
        Obj::from_owned(RawObj::new(p), self)
    }

    /// A new `float`.
    #[inline]
    pub(crate) fn float(&self, v: f64) -> Obj<'_> {
        let p = self.mem.new_pooled(PyFloatObject::new(v));
        Obj::from_owned(RawObj::new(p), self)
    }

    // ---------------------------------------------------------------------------------------
    // Strings

    /// A new `str` holding `s`.
    #[inline]
    pub(crate) fn str(&self, s: &str) -> Obj<'_> {
        self.str_concat(&[s])
    }

    /// A new `str` holding the concatenation of `parts`.
    pub(crate) fn str_concat(&self, parts: &[&str]) -> Obj<'_> {
        let len = parts.iter().map(|p| p.len()).sum();
        let raw = self.new_str_with(len, |buf| {
            let mut at = 0;
            for p in parts {
                buf[at..at + p.len()].copy_from_slice(p.as_bytes());
                at += p.len();
            }
        });
        Obj::from_owned(raw, self)
    }

    /// `sep.join(items)`, `items` a list or tuple of strings.
    ///
    /// # Panics
    ///
    /// `TypeError` if an item is not a `str`.
    pub(crate) fn join<'r>(&'r self, sep: &str, items: &Obj<'r>) -> Obj<'r> {
        let raws: std::vec::Vec<RawObj>;
        let items: &[RawObj] = match items.kind() {
            Kind::Tuple => items.raw_ref().tuple_items(),
            _ => {
                raws = items.raw().list_snapshot();
                &raws
            }
        };
        for item in items {
            assert!(
                item.kind() == Kind::Str,
                "TypeError: sequence item: expected str instance, {} found",
                item.kind().name()
            );
        }
        let len = items.iter().map(|s| s.str_bytes().len()).sum::<usize>()
            + sep.len() * items.len().saturating_sub(1);
        let raw = self.new_str_with(len, |buf| {
            let mut at = 0;
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    buf[at..at + sep.len()].copy_from_slice(sep.as_bytes());
                    at += sep.len();
                }
                let b = item.str_bytes();
                buf[at..at + b.len()].copy_from_slice(b);
                at += b.len();
            }
        });
        Obj::from_owned(raw, self)
    }

    /// A new string of `len` bytes written by `fill` from the bytes of `&str`s (so valid
    /// UTF-8).
    fn new_str_with(&self, len: usize, fill: impl FnOnce(&mut [u8])) -> RawObj {
        let layout = str_layout(len);
        let p = self.mem.alloc(layout);
        // SAFETY: a fresh block of `STR_HEADER + len` bytes: the fixed part goes first and
        // `len` bytes follow it, zeroed before `fill` sees them.
        let bytes = unsafe {
            p.cast::<PyStrObject>().write(PyStrObject::new(len));
            let data = p.as_ptr().add(STR_HEADER);
            data.write_bytes(0, len);
            core::slice::from_raw_parts_mut(data, len)
        };
        fill(bytes);
        debug_assert!(core::str::from_utf8(bytes).is_ok());
        RawObj::new(p.cast::<PyStrObject>())
    }

    // ---------------------------------------------------------------------------------------
    // Tuples

    /// A tuple taking over the references in `items`; the shared empty tuple for none.
    pub(super) fn new_tuple(&self, items: &[RawObj]) -> RawObj {
        if items.is_empty() {
            self.empty_tuple.incref();
            return self.empty_tuple;
        }
        let t = alloc_tuple_object(self.mem, items.len());
        // SAFETY: the block has room for `items.len()` pointers after the fixed part, and
        // nothing reads them before this copy.
        unsafe {
            core::ptr::copy_nonoverlapping(
                items.as_ptr(),
                t.as_ptr().as_ptr().add(TUPLE_HEADER).cast::<RawObj>(),
                items.len(),
            )
        };
        t
    }

    /// `(a, b, ...)`.
    pub(crate) fn tuple<'r>(&'r self, items: &[&Obj<'r>]) -> Obj<'r> {
        let raws: SmallVec<[RawObj; 8]> = items.iter().map(|o| self.adopt(o)).collect();
        Obj::from_owned(self.new_tuple(&raws), self)
    }

    /// `tuple(items)`: collected on the stack first (a `SmallVec` of 8 inline holds the
    /// tuples this runtime builds), then copied into a tuple of the final size.
    pub(crate) fn tuple_from<'r>(&'r self, items: impl IntoIterator<Item = Obj<'r>>) -> Obj<'r> {
        let raws: SmallVec<[RawObj; 8]> = items.into_iter().map(|o| self.adopt_owned(o)).collect();
        Obj::from_owned(self.new_tuple(&raws), self)
    }

    /// `a + b` for two tuples.
    pub(super) fn tuple_concat(&self, a: RawObj, b: RawObj) -> Obj<'_> {
        let raws: SmallVec<[RawObj; 8]> = a
            .tuple_items()
            .iter()
            .chain(b.tuple_items())
            .map(|&r| {
                r.incref();
                r
            })
            .collect();
        Obj::from_owned(self.new_tuple(&raws), self)
    }
}

/// A tuple of `len` whose items the caller writes at once.
fn alloc_tuple_object(mem: Memory<'_>, len: usize) -> RawObj {
    let p = mem.alloc_tuple(len);
    // SAFETY: a fresh block of `tuple_layout(len)`: the fixed part goes first.
    unsafe { p.cast::<PyTupleObject>().write(PyTupleObject::new(len)) };
    RawObj::new(p.cast::<PyTupleObject>())
}

impl Drop for Runtime<'_> {
    /// Drops the runtime's own references to its singletons, which frees them unless a leaked
    /// object (a reference cycle) still counts them.
    fn drop(&mut self) {
        for &i in &self.small_ints {
            self.decref(i);
        }
        self.decref(self.empty_tuple);
        self.decref(self.true_);
        self.decref(self.false_);
        self.decref(self.none);
    }
}
