//! Test helpers shared by pyalloc's integration tests (`tests/`), its property tests
//! (`tests/model.rs`) and its fuzz target (`fuzz/fuzz_targets/heap_ops.rs`), so that each is
//! written once:
//!
//! * [`rng`]: one seeded random number generator ([`fastrand`]'s), so that "random order" tests
//!   repeat exactly;
//! * [`source`]: one [`ArenaSource`](pyalloc::ArenaSource) that counts what the heap asks of
//!   it, and fails or panics on demand;
//! * [`model`]: one reference model of a heap's live memory, with the operations that drive
//!   both the heap and the model and the checks that compare them;
//! * [`rss()`]: the process's resident set, for the tests that measure what a heap gives back.
//!
//! Not published: a dev-dependency of `pyalloc` and a dependency of the fuzz crate.

pub mod model;
pub mod rng;
pub mod source;

pub use model::{assert_consistent, Model, Op};

/// The process's resident set size in bytes (`VmRSS` in `/proc/self/status`), on Linux.
#[cfg(target_os = "linux")]
pub fn rss() -> usize {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let kib: usize = status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmRSS line in kB");
    kib << 10
}
pub use source::{Counters, CountingSource, UnmapPanic};
