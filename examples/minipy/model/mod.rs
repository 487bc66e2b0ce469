//! The object model: CPython's object layout and reference counting over a pluggable memory
//! backend.
//!
//! Every object starts with a [`Header`](object::Header) (CPython's `ob_refcnt` and `ob_type`),
//! is created with a reference count of one, gains a reference on every `incref` and is
//! deallocated when `decref` takes the count to zero, exactly as `Py_INCREF`/`Py_DECREF` do.
//! Where an object's memory comes from is the [`Memory`] backend's business: pyalloc (with its
//! per-type free lists on or off), the system allocator or (feature `mimalloc`) mimalloc, through the same code paths.
//!
//! All `unsafe` code of the example lives in this module. Outside it, objects are only reached
//! through [`Obj`], a counted reference that borrows the [`Runtime`]; raw object pointers
//! ([`RawObj`](object::RawObj)) never leave the module.

mod dict;
mod float;
mod int;
mod list;
mod memory;
#[cfg(feature = "mimalloc")]
mod mi;
mod object;
mod runtime;
#[path = "str.rs"]
mod string;
mod tuple;

pub(crate) use float::float_repr;
pub(crate) use memory::{FreeListSnapshot, Memory};
pub(crate) use object::{Kind, Obj};
pub(crate) use runtime::Runtime;

#[cfg(test)]
pub(crate) use dict::{DictStorage, PyDictObject};
#[cfg(test)]
pub(crate) use float::PyFloatObject;
#[cfg(test)]
pub(crate) use list::PyListObject;
#[cfg(test)]
pub(crate) use memory::{TUPLE_MAXFREELIST, TUPLE_MAXSAVESIZE};
