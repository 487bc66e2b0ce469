//! The object header, raw object pointers, and [`Obj`], the counted reference the rest of the
//! example uses; Python's generic operations (`==`, `<`, `hash`, `+`, `str`, `repr`).

use core::cell::Cell;
use core::cmp::Ordering;
use core::fmt;
use core::mem::ManuallyDrop;
use core::ops::{Add, BitAnd, BitXor, Div, Mul, Neg, Sub};
use core::ptr::NonNull;

use super::float::{float_hash, float_repr};
use super::int::int_hash;
use super::runtime::Runtime;
use super::tuple::tuple_hash;

/// An object's type: CPython's `ob_type`, reduced to a tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(crate) enum Kind {
    /// `None`.
    None,
    /// `True` and `False`.
    Bool,
    /// `int` (64-bit here).
    Int,
    /// `float`.
    Float,
    /// `str`.
    Str,
    /// `tuple`.
    Tuple,
    /// `list`.
    List,
    /// `dict`.
    Dict,
}

impl Kind {
    /// The Python type name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Kind::None => "NoneType",
            Kind::Bool => "bool",
            Kind::Int => "int",
            Kind::Float => "float",
            Kind::Str => "str",
            Kind::Tuple => "tuple",
            Kind::List => "list",
            Kind::Dict => "dict",
        }
    }
}

/// The start of every object: CPython's `PyObject` (`ob_refcnt`, `ob_type`), 16 bytes.
#[repr(C)]
pub(super) struct Header {
    refcnt: Cell<usize>,
    kind: Kind,
}

impl Header {
    /// A header for a new object of `kind`, holding one reference (its creator's).
    pub(super) const fn new(kind: Kind) -> Header {
        Header {
            refcnt: Cell::new(1),
            kind,
        }
    }
}

/// An object type of the model.
///
/// # Safety
///
/// The type is `#[repr(C)]` and starts with a [`Header`] whose kind is [`KIND`](Self::KIND)
/// (or, for `int`'s layout, also `Bool`), so that a pointer to the header is a pointer to the
/// object.
pub(super) unsafe trait PyObject {
    /// The header kind of this type's objects.
    const KIND: Kind;
}

/// A pointer to an object's header: CPython's `PyObject *`.
///
/// Invariant of the model (all of whose code is in this module tree): a `RawObj` is only
/// dereferenced while the object is live, which the model ensures by only dereferencing one
/// that stands for a counted reference it holds (its own, or one owned by a container it is
/// reading). A `RawObj` never leaves the model; outside code holds [`Obj`]s.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(transparent)]
pub(super) struct RawObj(NonNull<Header>);

impl RawObj {
    /// The object at `ptr`, a freshly initialised value of an object type.
    #[inline(always)]
    pub(super) fn new<T: PyObject>(ptr: NonNull<T>) -> RawObj {
        RawObj(ptr.cast())
    }

    /// The address, with the provenance of the whole allocation (for variable-size objects).
    #[inline(always)]
    pub(super) fn as_ptr(self) -> NonNull<u8> {
        self.0.cast()
    }

    #[inline(always)]
    fn header(&self) -> &Header {
        // SAFETY: the type's invariant: the object is live while its `RawObj` is used.
        unsafe { self.0.as_ref() }
    }

    /// The object's type.
    #[inline(always)]
    pub(super) fn kind(self) -> Kind {
        self.header().kind
    }

    /// The reference count.
    #[cfg(test)]
    pub(super) fn refcnt(self) -> usize {
        self.header().refcnt.get()
    }

    /// `Py_INCREF`.
    #[inline(always)]
    pub(super) fn incref(self) {
        let rc = &self.header().refcnt;
        rc.set(rc.get() + 1);
    }

    /// The decrement half of `Py_DECREF`: true when the count reached zero and the caller must
    /// deallocate.
    #[inline(always)]
    pub(super) fn decref_is_zero(self) -> bool {
        let rc = &self.header().refcnt;
        let n = rc.get() - 1;
        rc.set(n);
        n == 0
    }

    /// The object as a `T`, if it is one.
    #[inline(always)]
    pub(super) fn downcast<T: PyObject>(&self) -> Option<&T> {
        if self.kind() == T::KIND {
            // SAFETY: the kind matches, so the object is a live `T` (`PyObject`'s contract and
            // this type's invariant).
            Some(unsafe { self.0.cast::<T>().as_ref() })
        } else {
            None
        }
    }

    /// The object as a `T`, which the caller has checked it is.
    ///
    /// # Safety
    ///
    /// The object is a live `T` (its kind is `T`'s, or one sharing `T`'s layout).
    #[inline(always)]
    pub(super) unsafe fn cast_unchecked<T: PyObject>(&self) -> &T {
        // SAFETY: the caller's contract.
        unsafe { self.0.cast::<T>().as_ref() }
    }
}

/// The numeric value of an `int`, `bool` or `float`.
#[derive(Clone, Copy, Debug)]
pub(super) enum Num {
    /// An integer (or bool).
    I(i64),
    /// A float.
    F(f64),
}

/// `int`/`bool`/`float` as a number, other kinds as `None`.
#[inline]
pub(super) fn num(o: RawObj) -> Option<Num> {
    match o.kind() {
        Kind::Int | Kind::Bool => o.int_value().map(Num::I),
        Kind::Float => o.float_value().map(Num::F),
        _ => None,
    }
}

/// 2^63: the first float past `i64`'s range.
const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;

/// Whether the float `f` equals the integer `i` exactly (Python compares int and float
/// exactly, not by rounding the int).
fn int_float_eq(i: i64, f: f64) -> bool {
    // 2^63 is the first float out of range; every float within range that has no fraction
    // converts exactly.
    f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&f) && f as i64 == i
}

/// Python's `==` on two objects.
pub(super) fn raw_eq(a: RawObj, b: RawObj) -> bool {
    if a == b && a.kind() != Kind::Float {
        return true; // identity implies equality (PyObject_RichCompare's shortcut in lookups)
    }
    match (a.kind(), b.kind()) {
        (Kind::Str, Kind::Str) => a.str_bytes() == b.str_bytes(),
        (Kind::Tuple, Kind::Tuple) => {
            let (x, y) = (a.tuple_items(), b.tuple_items());
            x.len() == y.len() && x.iter().zip(y).all(|(&p, &q)| raw_eq(p, q))
        }
        (Kind::List, Kind::List) => a.list_eq(b),
        (Kind::Dict, Kind::Dict) => a.dict_eq(b),
        _ => match (num(a), num(b)) {
            (Some(Num::I(x)), Some(Num::I(y))) => x == y,
            (Some(Num::F(x)), Some(Num::F(y))) => x == y,
            (Some(Num::I(x)), Some(Num::F(y))) | (Some(Num::F(y)), Some(Num::I(x))) => {
                int_float_eq(x, y)
            }
            _ => false,
        },
    }
}

/// Python's ordering of two objects (`<` and friends): numbers, strings, and tuples or lists
/// of those. `None` for unordered floats (NaN).
///
/// # Panics
///
/// `TypeError` for kinds that do not compare.
pub(super) fn raw_cmp(a: RawObj, b: RawObj) -> Option<Ordering> {
    match (a.kind(), b.kind()) {
        (Kind::Str, Kind::Str) => Some(a.str_bytes().cmp(b.str_bytes())),
        (Kind::Tuple, Kind::Tuple) => seq_cmp(a.tuple_items(), b.tuple_items()),
        (Kind::List, Kind::List) => {
            let (x, y) = (a.list_snapshot(), b.list_snapshot());
            seq_cmp(&x, &y)
        }
        _ => match (num(a), num(b)) {
            (Some(Num::I(x)), Some(Num::I(y))) => Some(x.cmp(&y)),
            (Some(Num::F(x)), Some(Num::F(y))) => x.partial_cmp(&y),
            (Some(Num::I(x)), Some(Num::F(y))) => int_float_cmp(x, y),
            (Some(Num::F(x)), Some(Num::I(y))) => int_float_cmp(y, x).map(Ordering::reverse),
            _ => panic!(
                "TypeError: '<' not supported between instances of '{}' and '{}'",
                a.kind().name(),
                b.kind().name()
            ),
        },
    }
}

/// Exact comparison of an int with a float.
fn int_float_cmp(i: i64, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    if int_float_eq(i, f) {
        return Some(Ordering::Equal);
    }
    // Not equal: compare with the float's floor, which is exact when in range.
    if f >= TWO_POW_63 {
        Some(Ordering::Less)
    } else if f < -TWO_POW_63 {
        Some(Ordering::Greater)
    } else {
        let floor = f.floor() as i64;
        Some(if i <= floor {
            Ordering::Less
        } else {
            Ordering::Greater
        })
    }
}

/// Lexicographic comparison, as Python's for sequences.
fn seq_cmp(x: &[RawObj], y: &[RawObj]) -> Option<Ordering> {
    for (&p, &q) in x.iter().zip(y) {
        if !raw_eq(p, q) {
            return raw_cmp(p, q);
        }
    }
    Some(x.len().cmp(&y.len()))
}

/// Python's `hash()`.
///
/// # Panics
///
/// `TypeError: unhashable type` for lists and dicts (and tuples holding them).
pub(super) fn raw_hash(o: RawObj) -> i64 {
    match o.kind() {
        Kind::Str => o.str_hash(),
        Kind::Int | Kind::Bool => int_hash(o.int_value().unwrap_or(0)),
        Kind::Float => float_hash(o.float_value().unwrap_or(0.0)),
        Kind::Tuple => tuple_hash(o.tuple_items()),
        // CPython hashes None by its address; any fixed value will do.
        Kind::None => 0x5f3759df,
        Kind::List | Kind::Dict => {
            panic!("TypeError: unhashable type: '{}'", o.kind().name())
        }
    }
}

/// Python's truth value.
pub(super) fn raw_truthy(o: RawObj) -> bool {
    match o.kind() {
        Kind::None => false,
        Kind::Int | Kind::Bool => o.int_value() != Some(0),
        Kind::Float => o.float_value() != Some(0.0),
        Kind::Str => !o.str_bytes().is_empty(),
        Kind::Tuple => !o.tuple_items().is_empty(),
        Kind::List => o.list_len() != 0,
        Kind::Dict => o.dict_len() != 0,
    }
}

/// Python's `repr()` of an object, appended to `out`. `active` holds the lists and dicts
/// being printed, so that one containing itself prints as `[...]` or `{...}`, as in Python.
pub(super) fn raw_repr(o: RawObj, out: &mut String, active: &mut std::vec::Vec<RawObj>) {
    if matches!(o.kind(), Kind::List | Kind::Dict) {
        if active.contains(&o) {
            out.push_str(if o.kind() == Kind::List {
                "[...]"
            } else {
                "{...}"
            });
            return;
        }
        active.push(o);
    }
    match o.kind() {
        Kind::None => out.push_str("None"),
        Kind::Bool => out.push_str(if o.int_value() == Some(0) {
            "False"
        } else {
            "True"
        }),
        Kind::Int => out.push_str(&o.int_value().unwrap_or(0).to_string()),
        Kind::Float => out.push_str(&float_repr(o.float_value().unwrap_or(0.0))),
        Kind::Str => {
            out.push('\'');
            for c in o.str_value().chars() {
                match c {
                    '\'' => out.push_str("\\'"),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    c => out.push(c),
                }
            }
            out.push('\'');
        }
        Kind::Tuple => {
            let items = o.tuple_items();
            out.push('(');
            for (i, &item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                raw_repr(item, out, active);
            }
            if items.len() == 1 {
                out.push(',');
            }
            out.push(')');
        }
        Kind::List => {
            out.push('[');
            for (i, item) in o.list_snapshot().iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                raw_repr(*item, out, active);
            }
            out.push(']');
        }
        Kind::Dict => {
            out.push('{');
            for (i, (k, v)) in o.dict_snapshot().iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                raw_repr(*k, out, active);
                out.push_str(": ");
                raw_repr(*v, out, active);
            }
            out.push('}');
        }
    }
    if matches!(o.kind(), Kind::List | Kind::Dict) {
        active.pop();
    }
}

/// A counted reference to an object: CPython's owned `PyObject *`, made safe.
///
/// Cloning increments the reference count (`Py_INCREF`), dropping decrements it (`Py_DECREF`)
/// and deallocates the object at zero. An `Obj` borrows its [`Runtime`], so it cannot outlive
/// the runtime nor the heap under it.
pub(crate) struct Obj<'r> {
    raw: RawObj,
    rt: &'r Runtime<'r>,
}

impl<'r> Obj<'r> {
    /// Takes over a reference the caller owns.
    #[inline(always)]
    pub(super) fn from_owned(raw: RawObj, rt: &'r Runtime<'r>) -> Obj<'r> {
        Obj { raw, rt }
    }

    /// Takes a new reference to an object the caller can see but does not own a count of.
    #[inline(always)]
    pub(super) fn from_borrowed(raw: RawObj, rt: &'r Runtime<'r>) -> Obj<'r> {
        raw.incref();
        Obj { raw, rt }
    }

    /// The raw pointer (the reference stays with `self`).
    #[inline(always)]
    pub(super) fn raw(&self) -> RawObj {
        self.raw
    }

    /// The raw pointer by reference, for borrowing the object's contents for as long as
    /// `self` is borrowed.
    #[inline(always)]
    pub(super) fn raw_ref(&self) -> &RawObj {
        &self.raw
    }

    /// A new counted reference as a raw pointer, for storing in a container.
    #[inline(always)]
    pub(super) fn new_ref(&self) -> RawObj {
        self.raw.incref();
        self.raw
    }

    /// Gives up this reference as a raw pointer, for storing in a container.
    #[inline(always)]
    pub(super) fn into_raw(self) -> RawObj {
        ManuallyDrop::new(self).raw
    }

    /// The runtime this object belongs to.
    #[inline(always)]
    pub(crate) fn runtime(&self) -> &'r Runtime<'r> {
        self.rt
    }

    /// The object's type.
    #[inline]
    pub(crate) fn kind(&self) -> Kind {
        self.raw.kind()
    }

    /// Python's `is`.
    #[inline]
    pub(crate) fn is(&self, other: &Obj<'_>) -> bool {
        self.raw == other.raw
    }

    /// Python's `id(self)`: the address.
    pub(crate) fn id(&self) -> i64 {
        self.raw.as_ptr().as_ptr() as usize as i64
    }

    /// `self is None`.
    #[inline]
    pub(crate) fn is_none(&self) -> bool {
        self.raw.kind() == Kind::None
    }

    /// `sys.getrefcount(self) - 1`: the references held, this one included.
    #[cfg(test)]
    pub(crate) fn refcount(&self) -> usize {
        self.raw.refcnt()
    }

    /// Python's truth value (`bool(self)`).
    #[inline]
    pub(crate) fn truthy(&self) -> bool {
        raw_truthy(self.raw)
    }

    /// Python's `hash(self)`.
    ///
    /// # Panics
    ///
    /// `TypeError` for unhashable objects.
    pub(crate) fn py_hash(&self) -> i64 {
        raw_hash(self.raw)
    }

    /// Python's `repr(self)`.
    pub(crate) fn repr(&self) -> String {
        let mut out = String::new();
        raw_repr(self.raw, &mut out, &mut std::vec::Vec::new());
        out
    }

    /// `int(self)` for an `int` or `bool`.
    ///
    /// # Panics
    ///
    /// `TypeError` for other kinds.
    #[inline]
    pub(crate) fn int(&self) -> i64 {
        match self.raw.int_value() {
            Some(v) => v,
            None => panic!("TypeError: expected int, got '{}'", self.kind().name()),
        }
    }

    /// `float(self)` for a `float`, `int` or `bool`.
    #[inline]
    pub(crate) fn as_float(&self) -> Option<f64> {
        match num(self.raw)? {
            Num::I(i) => Some(i as f64),
            Num::F(f) => Some(f),
        }
    }

    /// `float(self)`.
    ///
    /// # Panics
    ///
    /// `TypeError` for non-numbers.
    #[inline]
    pub(crate) fn float(&self) -> f64 {
        match self.as_float() {
            Some(v) => v,
            None => panic!("TypeError: expected float, got '{}'", self.kind().name()),
        }
    }

    /// The text of a `str`.
    #[inline]
    pub(crate) fn as_str(&self) -> Option<&str> {
        (self.raw.kind() == Kind::Str).then(|| self.raw.str_value())
    }

    /// `len(self)` of a `str`, `tuple`, `list` or `dict`.
    ///
    /// # Panics
    ///
    /// `TypeError` for other kinds.
    pub(crate) fn len(&self) -> usize {
        match self.kind() {
            Kind::Str => self.raw.str_bytes().len(),
            Kind::Tuple => self.raw.tuple_items().len(),
            Kind::List => self.raw.list_len(),
            Kind::Dict => self.raw.dict_len(),
            k => panic!("TypeError: object of type '{}' has no len()", k.name()),
        }
    }

    /// `self < other`.
    #[inline]
    pub(crate) fn lt(&self, other: &Obj<'_>) -> bool {
        raw_cmp(self.raw, other.raw) == Some(Ordering::Less)
    }

    /// `self > other`.
    #[inline]
    pub(crate) fn gt(&self, other: &Obj<'_>) -> bool {
        raw_cmp(self.raw, other.raw) == Some(Ordering::Greater)
    }

    /// `self // other` (floor division).
    ///
    /// # Panics
    ///
    /// `ZeroDivisionError`, `TypeError`.
    pub(crate) fn floordiv(&self, other: &Obj<'_>) -> Obj<'r> {
        match (num(self.raw), num(other.raw)) {
            (Some(Num::I(a)), Some(Num::I(b))) => {
                if b == 0 {
                    panic!("ZeroDivisionError: integer division or modulo by zero");
                }
                let (q, r) = (a / b, a % b);
                let q = if r != 0 && ((r < 0) != (b < 0)) {
                    q - 1
                } else {
                    q
                };
                self.rt.int(q)
            }
            (Some(a), Some(b)) => {
                let (a, b) = (to_f64(a), to_f64(b));
                if b == 0.0 {
                    panic!("ZeroDivisionError: float floor division by zero");
                }
                self.rt.float((a / b).floor())
            }
            _ => type_error("//", self, other),
        }
    }
}

fn to_f64(n: Num) -> f64 {
    match n {
        Num::I(i) => i as f64,
        Num::F(f) => f,
    }
}

#[cold]
fn type_error(op: &str, a: &Obj<'_>, b: &Obj<'_>) -> ! {
    panic!(
        "TypeError: unsupported operand type(s) for {op}: '{}' and '{}'",
        a.kind().name(),
        b.kind().name()
    )
}

#[cold]
fn overflow() -> ! {
    panic!("OverflowError: minipy's ints are 64-bit")
}

impl Clone for Obj<'_> {
    #[inline(always)]
    fn clone(&self) -> Self {
        Obj::from_borrowed(self.raw, self.rt)
    }
}

impl Drop for Obj<'_> {
    #[inline(always)]
    fn drop(&mut self) {
        self.rt.decref(self.raw);
    }
}

impl PartialEq for Obj<'_> {
    /// Python's `==`.
    fn eq(&self, other: &Self) -> bool {
        raw_eq(self.raw, other.raw)
    }
}

impl PartialOrd for Obj<'_> {
    /// Python's ordering.
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        raw_cmp(self.raw, other.raw)
    }
}

impl fmt::Debug for Obj<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.repr())
    }
}

impl fmt::Display for Obj<'_> {
    /// Python's `str()`: a string's text, else its `repr()`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.as_str() {
            Some(s) => f.write_str(s),
            None => f.write_str(&self.repr()),
        }
    }
}

/// Implements a binary arithmetic operator on `&Obj`: int op int (checked), else float.
macro_rules! arith {
    ($trait:ident, $method:ident, $sym:literal, $int:expr, $float:expr) => {
        impl<'r> $trait<&Obj<'_>> for &Obj<'r> {
            type Output = Obj<'r>;
            #[inline]
            fn $method(self, other: &Obj<'_>) -> Obj<'r> {
                let int: fn(i64, i64) -> Option<i64> = $int;
                let float: fn(f64, f64) -> f64 = $float;
                match (num(self.raw), num(other.raw)) {
                    (Some(Num::I(a)), Some(Num::I(b))) => match int(a, b) {
                        Some(v) => self.rt.int(v),
                        None => overflow(),
                    },
                    (Some(a), Some(b)) => self.rt.float(float(to_f64(a), to_f64(b))),
                    _ => arith_fallback(self, other, $sym),
                }
            }
        }
    };
}

arith!(Add, add, "+", |a, b| a.checked_add(b), |a, b| a + b);
arith!(Sub, sub, "-", |a, b| a.checked_sub(b), |a, b| a - b);
arith!(Mul, mul, "*", |a, b| a.checked_mul(b), |a, b| a * b);

/// `+` on sequences (concatenation), the only non-numeric arithmetic the model has.
fn arith_fallback<'r>(a: &Obj<'r>, b: &Obj<'_>, op: &str) -> Obj<'r> {
    if op == "+" && a.kind() == b.kind() {
        match a.kind() {
            Kind::Str => return a.rt.str_concat(&[a.raw.str_value(), b.raw.str_value()]),
            Kind::List | Kind::Tuple => {
                // The result holds `b`'s items: they must belong to `a`'s runtime.
                a.rt.check_same(b);
                return if a.kind() == Kind::List {
                    a.rt.list_concat(a.raw, b.raw)
                } else {
                    a.rt.tuple_concat(a.raw, b.raw)
                };
            }
            _ => {}
        }
    }
    type_error(op, a, b)
}

impl<'r> Div<&Obj<'_>> for &Obj<'r> {
    type Output = Obj<'r>;
    /// Python's true division: always a float.
    #[inline]
    fn div(self, other: &Obj<'_>) -> Obj<'r> {
        match (num(self.raw), num(other.raw)) {
            (Some(a), Some(b)) => {
                let (a, b) = (to_f64(a), to_f64(b));
                if b == 0.0 {
                    panic!("ZeroDivisionError: division by zero");
                }
                self.rt.float(a / b)
            }
            _ => type_error("/", self, other),
        }
    }
}

impl<'r> BitXor<&Obj<'_>> for &Obj<'r> {
    type Output = Obj<'r>;
    #[inline]
    fn bitxor(self, other: &Obj<'_>) -> Obj<'r> {
        match (self.raw.int_value(), other.raw.int_value()) {
            (Some(a), Some(b)) => self.rt.int(a ^ b),
            _ => type_error("^", self, other),
        }
    }
}

impl<'r> BitAnd<&Obj<'_>> for &Obj<'r> {
    type Output = Obj<'r>;
    #[inline]
    fn bitand(self, other: &Obj<'_>) -> Obj<'r> {
        match (self.raw.int_value(), other.raw.int_value()) {
            (Some(a), Some(b)) => self.rt.int(a & b),
            _ => type_error("&", self, other),
        }
    }
}

impl<'r> Neg for &Obj<'r> {
    type Output = Obj<'r>;
    #[inline]
    fn neg(self) -> Obj<'r> {
        match num(self.raw) {
            Some(Num::I(a)) => match a.checked_neg() {
                Some(v) => self.rt.int(v),
                None => overflow(),
            },
            Some(Num::F(f)) => self.rt.float(-f),
            None => panic!(
                "TypeError: bad operand type for unary -: '{}'",
                self.kind().name()
            ),
        }
    }
}
