//! N alloc+free pairs of 32 B through `pyalloc::Global` as this binary's `#[global_allocator]`,
//! for instruction counts under callgrind: the path every Rust program takes (`Box::new` →
//! `__rust_alloc` → `Global::alloc`, the thread-local look-up included), which the `pairs`
//! binary's `pyalloc-global` peer (called through a trait from the bench library) only
//! approximates.
//!
//! ```text
//! pairs_global N [--empty]
//! ```
//!
//! One other 32-byte block stays live through the loop, unless `--empty`.

use std::hint::black_box;
use std::process::ExitCode;

#[global_allocator]
static GLOBAL: pyalloc::Global = pyalloc::Global;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(n) = args.first().and_then(|n| n.parse::<u64>().ok()) else {
        eprintln!("usage: pairs_global N [--empty]");
        return ExitCode::from(2);
    };
    let kept = (!args.iter().any(|a| a == "--empty")).then(|| Box::new([0u64; 4]));
    for i in 0..n {
        drop(black_box(Box::new([i; 4])));
    }
    drop(black_box(kept));
    ExitCode::SUCCESS
}
