//! Where the heap's own structures live: the system allocator, named by type.
//!
//! A heap keeps its bookkeeping (the arena table and map, the free-list table, the debug
//! mode's records, the boxed arena source) outside its arenas, in collections. Those
//! collections never use `#[global_allocator]`: each names [`Meta`], the system allocator, in
//! its type. A heap may serve as (part of) the global allocator, and then a table growing
//! through the global allocator would call back into the very heap that is growing it, which
//! its gate refuses (see [`gate`](crate::gate)): the heap would fail for want of memory it does
//! not even manage. With every structure typed to `Meta`, no path from the core leads to the
//! global allocator. mimalloc keeps its metadata out of its own heaps for the same reason.
//!
//! Growth stays fallible where it was: `try_reserve` on a [`MetaVec`] reports the system's
//! refusal as an error, which the heap turns into an `AllocError`.
//!
//! The values a heap hands *out* (`Stats`, `check()`'s message) are its caller's and use the
//! standard types; so do the tests. This module is the only one that names the collections'
//! crates.

#[cfg(feature = "glibc-internals")]
pub(crate) use crate::sys::System as Meta;
/// The allocator of the core's own structures: the system allocator, which implements
/// allocator-api2's `Allocator`. A `use`, not a `type`, so that `Meta` is also the unit value
/// that the `_in` constructors take (in `const`s too). With the `glibc-internals` feature it is
/// glibc's allocator reached through `__libc_malloc` and its siblings (see [`sys`](crate::sys)):
/// when pyalloc is the process's `malloc`, the symbol `malloc` is pyalloc itself.
#[cfg(not(feature = "glibc-internals"))]
pub(crate) use allocator_api2::alloc::System as Meta;

/// A `Vec` in system memory.
pub(crate) type MetaVec<T> = allocator_api2::vec::Vec<T, Meta>;

/// A `Box` in system memory. A `MetaBox<dyn Trait>` is made with `allocator_api2::unsize_box!`
/// (stable Rust cannot coerce a `Box` with an allocator).
pub(crate) type MetaBox<T> = allocator_api2::boxed::Box<T, Meta>;

/// A `HashMap` in system memory, hashed as the standard one is (SipHash, keys per thread): a
/// `RandomState` allocates nothing when made.
pub(crate) type MetaHashMap<K, V> = hashbrown::HashMap<K, V, std::hash::RandomState, Meta>;

/// A set for `check()`'s scratch: `check()` runs inside the heap too, so even its scratch
/// stays out of the global allocator (only its error message, the caller's, does not).
pub(crate) type MetaHashSet<K> = hashbrown::HashSet<K, std::hash::RandomState, Meta>;

/// An empty [`MetaHashSet`].
pub(crate) fn meta_hash_set<K>() -> MetaHashSet<K> {
    hashbrown::HashSet::with_hasher_in(std::hash::RandomState::new(), Meta)
}
