#![doc = include_str!("../README.md")]

pub use pyalloc_core::*;

/// `#[derive(FreeListed)]`, optionally with `#[free_list(capacity = N, name = "...")]`, and
/// `crate = "path"` when pyalloc is reached by another path than `::pyalloc` (a renamed
/// dependency, or a re-export for derives in another crate).
pub use pyalloc_derive::FreeListed;

/// allocator-api2's collections and trait, re-exported so `pyalloc` is the one dependency.
pub use allocator_api2::{
    alloc::{AllocError, Allocator},
    boxed::Box,
    vec::Vec,
};

/// The test suite's global allocator under the `test-global-allocator` feature (CI only).
#[cfg(feature = "test-global-allocator")]
#[global_allocator]
static TEST_GLOBAL_ALLOCATOR: Global = Global;
