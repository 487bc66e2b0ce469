#![doc = include_str!("../README.md")]

pub use pyalloc_core::*;

/// `#[derive(FreeListed)]`, optionally with `#[free_list(capacity = N, name = "...")]`.
pub use pyalloc_derive::FreeListed;

/// allocator-api2's collections and trait, re-exported so `pyalloc` is the one dependency.
pub use allocator_api2::{
    alloc::{AllocError, Allocator},
    boxed::Box,
    vec::Vec,
};
