//! `#[derive(FreeListed)]`: gives a type a layer-3 free list of its own in every
//! [pyalloc](https://docs.rs/pyalloc) heap.
//!
//! Use it through the `pyalloc` facade, which re-exports the derive next to the trait of the
//! same name (as serde does with `Serialize`):
//!
//! ```ignore
//! use pyalloc::{FreeListed, Heap, Pooled};
//!
//! #[derive(FreeListed)]
//! #[free_list(capacity = 100)] // CPython's float free list
//! struct Float(f64);
//!
//! let heap = Heap::new();
//! let x = Pooled::new_in(Float(1.5), &heap);
//! drop(x); // the slot goes on `Float`'s free list, ready for the next `Float`
//! assert_eq!(heap.free_list_stats::<Float>().len, 1);
//! ```
//!
//! # The `#[free_list(...)]` attribute
//!
//! Optional, on the type (not on a field or variant), at most once per key; the keys may be
//! split over several attributes:
//!
//! | key | value | default |
//! | --- | --- | --- |
//! | `capacity` | an integer literal from 1 to 1_048_576 (`MAX_FREE_LIST_CAPACITY`) | the trait's default, 80 (CPython's dict and list lists) |
//! | `name` | a non-empty string literal, shown in statistics | the type's identifier |
//! | `crate` | a string literal holding the path of the `pyalloc` crate | `"::pyalloc"` |
//!
//! ```ignore
//! #[derive(FreeListed)]
//! #[free_list(capacity = 2000, name = "PyTupleObject")]
//! struct Tuple3([u64; 3]);
//! ```
//!
//! `crate`, as in serde's `#[serde(crate = "...")]` and PyO3's `#[pyo3(crate = "...")]`, is for
//! code that reaches pyalloc by another name: a renamed dependency, a library that re-exports
//! pyalloc for derives written in its users' crates (`crate = "my_runtime::pyalloc"`), or a
//! crate that depends on `pyalloc-core` and this derive but not on the facade
//! (`crate = "pyalloc_core"`). The generated code then names `<path>::__private::...`. The path
//! is a module path (`a::b`, `::a`, `crate::a`; no generic arguments), and if it does not
//! resolve rustc says so at the string.
//!
//! ```ignore
//! pub use pyalloc; // in `my_runtime`, for the derives of its users
//!
//! #[derive(my_runtime::pyalloc::FreeListed)]
//! #[free_list(crate = "my_runtime::pyalloc")]
//! struct Float(f64);
//! ```
//!
//! # What the derive writes
//!
//! ```ignore
//! #[automatically_derived]
//! unsafe impl ::pyalloc::__private::FreeListed for Float {
//!     const CAPACITY: usize = 100;
//!     const NAME: &'static str = "Float";
//!     fn free_list_id() -> &'static ::pyalloc::__private::FreeListId {
//!         static ID: ::pyalloc::__private::FreeListId = ::pyalloc::__private::FreeListId::new();
//!         &ID
//!     }
//! }
//! ```
//!
//! Structs (named, tuple and unit), enums and unions are all accepted, as are lifetime
//! parameters and `where` clauses.
//!
//! # What is rejected, and why
//!
//! - **Type parameters and const parameters.** The trait is `unsafe` because every slot on a
//!   list must have the layout of the type that owns the list. A `static` declared inside a
//!   generic impl is one `static` shared by every instantiation, so `Wrapper<u8>` and
//!   `Wrapper<[u64; 64]>` would push slots of different sizes on one list, and a pop would
//!   hand a 1-byte slot to a 512-byte value. Lifetime parameters are fine: they are erased
//!   before layout, so `Ref<'a>` has one layout for every `'a`. For a generic type, derive on
//!   each concrete newtype, or key lists at run time with `FreeListKey`.
//! - **`capacity = 0`.** A list that can never hold a slot is a mistake at compile time; to
//!   turn a list off at run time use `Heap::set_free_list_capacity::<T>(0)` (or
//!   `HeapConfig::free_lists(false)` for every list of a heap).
//! - **`capacity` above `MAX_FREE_LIST_CAPACITY` (1_048_576).** The runtime would panic on the
//!   first use of the list; the derive says so at compile time instead.
//! - **A `capacity` that is not an integer literal** (a string, a negative number, a constant
//!   or an expression): a derive sees tokens, not values, so it cannot evaluate a constant.
//! - **A `name` that is not a non-empty string literal.**
//! - **A `crate` that is not a string literal holding a module path** (`crate = pyalloc`,
//!   `crate = ""`, `crate = "pyalloc-core"`).
//! - **Unsized types** (`struct Bytes([u8])`): the trait requires `Sized`, since every slot of a
//!   list has one size; rustc reports it at the type's name.
//! - **Unknown keys, duplicate keys, and malformed attributes** (`#[free_list]`,
//!   `#[free_list = 3]`, `#[free_list()]`, `#[free_list(capacity)]`), and `#[free_list]` on a
//!   field or variant, where it would otherwise be silently ignored.
//!
//! Every problem is reported at the token that causes it, all of them at once; the derive
//! then still writes a stub impl of the trait, so the only errors are the ones above and not
//! a cascade of "`FreeListed` is not implemented" at every use of the type. (Not when the
//! `crate` value itself is unreadable: where the trait lives is then unknown.)
//!
//! # Layout of this crate
//!
//! One stage per module, as in thiserror: `ast` (the input, keeping syntax nodes for spans)
//! → `attr` (parsing `#[free_list(...)]`) → `valid` (every semantic check) → `expand` (the
//! impl) or `fallback` (`compile_error!`s and a stub impl). Each stage adds its errors to
//! `error::Errors`, the one module every stage shares; a module imports only the stages
//! before it and `error`, never a later one, so the graph has no cycle.

mod ast;
mod attr;
mod error;
mod expand;
mod fallback;
mod valid;

use proc_macro::TokenStream;
use syn::{parse_macro_input, DeriveInput};

/// Implements `FreeListed` for a struct, enum or union without type or const parameters,
/// giving it a free list of its own; see the [crate docs](crate) for
/// `#[free_list(capacity = N, name = "...", crate = "path")]`.
#[proc_macro_derive(FreeListed, attributes(free_list))]
pub fn derive_free_listed(input: TokenStream) -> TokenStream {
    let input = parse_macro_input!(input as DeriveInput);
    expand::derive(&input).into()
}
