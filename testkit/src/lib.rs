//! Test helpers shared by pyalloc's integration tests (`tests/`), its property tests
//! (`tests/model.rs`) and its fuzz target (`fuzz/fuzz_targets/heap_ops.rs`), so that each is
//! written once:
//!
//! * [`rng`]: one seeded random number generator ([`fastrand`]'s), so that "random order" tests
//!   repeat exactly;
//! * [`source`]: one [`ArenaSource`](pyalloc::ArenaSource) that counts what the heap asks of
//!   it, and fails or panics on demand;
//! * [`model`]: one reference model of a heap's live memory, with the operations that drive
//!   both the heap and the model and the checks that compare them.
//!
//! Not published: a dev-dependency of `pyalloc` and a dependency of the fuzz crate.

pub mod model;
pub mod rng;
pub mod source;

pub use model::{assert_consistent, Model, Op};
pub use source::{Counters, CountingSource, UnmapPanic};
