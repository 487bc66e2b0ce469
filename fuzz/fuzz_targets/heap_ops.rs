//! heap_ops: the fuzzer's bytes become a heap configuration and a sequence of heap operations,
//! run against the model shared with the property tests (`pyalloc_testkit::model`).
//!
//! The first byte picks the heap: CPython's geometry, 16 KiB arenas of 4 KiB pools keeping no
//! empty arena, the debug mode, or small arenas under a memory limit (the second byte sets it)
//! so that allocations fail. The rest decodes (with `arbitrary`) into `Op`s: allocate,
//! allocate_zeroed, deallocate, grow (or grow_zeroed) and shrink over sizes 0..=2048 (grown up
//! to 4096) and alignments 1..=64; `Pooled` values of three types (a word, six words, and a
//! 64-byte-aligned one whose slots are system blocks); slots of two keyed free lists (one
//! small, one large); clearing the free lists; trimming.
//!
//! The model holds every live block, value and slot with its layout and the bytes it must
//! hold. After each op: every block is aligned and at least as long as asked, no two live
//! ones overlap, each still holds its bytes, the stats agree with the model, and
//! `Heap::check()` passes. A failure is allowed only under the memory limit, must be
//! `Err(AllocError)`, and leaves the model (and the block a failed resize was given) as it was.
//! At the end everything is freed and the heap must hold no block and keep no more arenas than
//! configured.
#![no_main]

use arbitrary::Unstructured;
use libfuzzer_sys::fuzz_target;
use pyalloc::HeapConfig;
use pyalloc_testkit::model::{self, Op};

/// The heap the first two input bytes pick.
fn config(u: &mut Unstructured<'_>) -> HeapConfig {
    let small = HeapConfig::new()
        .arena_size(16 << 10)
        .pool_size(4 << 10)
        .empty_arenas_kept(0);
    let pick = u.arbitrary::<u8>().unwrap_or(0);
    match pick % 4 {
        0 => HeapConfig::new(),
        1 => small,
        2 => HeapConfig::new().debug(true),
        _ => {
            // 8 KiB to 128 KiB: from no arena at all (only small large requests fit) to eight.
            let limit = 8192 * (1 + u.arbitrary::<u8>().unwrap_or(0) as usize % 16);
            small.memory_limit(limit)
        }
    }
}

/// The most ops one input runs (each is followed by a whole-heap check).
const MAX_OPS: usize = 1000;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let config = config(&mut u);
    // `arbitrary` keeps producing (zeros) from an exhausted input: stop when it is used up.
    let mut ops = Vec::new();
    while ops.len() < MAX_OPS && !u.is_empty() {
        let Ok(op) = u.arbitrary::<Op>() else {
            break;
        };
        ops.push(op);
    }
    // Allocations may fail only under the memory limit (the fourth configuration).
    model::run(config, ops);
});
