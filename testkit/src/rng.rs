//! One random number generator for every test: [`fastrand`]'s, always seeded, so that a test
//! that shuffles or picks at random does the same thing on every run and every machine.
//!
//! ```
//! let mut order: Vec<u32> = (0..10).collect();
//! pyalloc_testkit::rng::rng().shuffle(&mut order);
//! let mut again: Vec<u32> = (0..10).collect();
//! pyalloc_testkit::rng::rng().shuffle(&mut again);
//! assert_eq!(order, again);
//! ```

pub use fastrand::{self, Rng};

/// The seed tests use unless they need several streams: 2^64 divided by the golden ratio.
pub const SEED: u64 = 0x9E37_79B9_7F4A_7C15;

/// A generator seeded with [`SEED`]. For another stream, `Rng::with_seed(n)`.
pub fn rng() -> Rng {
    Rng::with_seed(SEED)
}
