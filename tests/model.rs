//! Model-based test: random sequences of allocator calls against a reference model.
//!
//! The model is the set of live blocks with their layouts and the byte pattern each holds.
//! After every step: every block is aligned, no two live blocks overlap, every block still
//! holds its pattern, the stats identity holds and `Heap::check` finds nothing wrong.

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;

use proptest::prelude::*;
use pyalloc::{Allocator, Heap, HeapConfig};

#[derive(Clone, Debug)]
enum Op {
    Alloc { size: usize, align_log2: u32 },
    AllocZeroed { size: usize, align_log2: u32 },
    Free { pick: usize },
    Grow { pick: usize, extra: usize },
    Shrink { pick: usize, keep_permille: usize },
}

fn op() -> impl Strategy<Value = Op> {
    // Sizes cluster around the pool threshold and class boundaries, with the whole range
    // covered; alignments 1..=64.
    let size = prop_oneof![0..=64usize, 0..=2048usize, 500..=530usize];
    prop_oneof![
        4 => (size.clone(), 0..=6u32).prop_map(|(size, align_log2)| Op::Alloc { size, align_log2 }),
        1 => (size, 0..=6u32).prop_map(|(size, align_log2)| Op::AllocZeroed { size, align_log2 }),
        3 => any::<usize>().prop_map(|pick| Op::Free { pick }),
        1 => (any::<usize>(), 0..=700usize).prop_map(|(pick, extra)| Op::Grow { pick, extra }),
        1 => (any::<usize>(), 0..=1000usize)
            .prop_map(|(pick, keep_permille)| Op::Shrink { pick, keep_permille }),
    ]
}

struct Live {
    layout: Layout,
    seed: u8,
}

/// The byte a block holds at `i`: a function of its seed, so every block's content differs.
fn pattern(seed: u8, i: usize) -> u8 {
    seed.wrapping_add((i as u8).wrapping_mul(31))
}

fn fill(ptr: NonNull<u8>, live: &Live) {
    for i in 0..live.layout.size() {
        // SAFETY: the block is live and at least `layout.size()` bytes long.
        unsafe { ptr.as_ptr().add(i).write(pattern(live.seed, i)) };
    }
}

fn verify(ptr: NonNull<u8>, live: &Live, upto: usize) -> Result<(), TestCaseError> {
    for i in 0..upto.min(live.layout.size()) {
        // SAFETY: the block is live and at least `layout.size()` bytes long.
        let byte = unsafe { ptr.as_ptr().add(i).read() };
        prop_assert_eq!(byte, pattern(live.seed, i), "block {:p} byte {}", ptr, i);
    }
    Ok(())
}

fn check_model(heap: &Heap, live: &BTreeMap<usize, Live>) -> Result<(), TestCaseError> {
    let mut end = 0usize;
    for (&addr, block) in live {
        prop_assert_eq!(addr % block.layout.align(), 0, "misaligned block");
        if block.layout.size() > 0 {
            prop_assert!(addr >= end, "blocks overlap at {:#x}", addr);
            end = addr + block.layout.size();
        }
        verify(NonNull::new(addr as *mut u8).unwrap(), block, usize::MAX)?;
    }
    let stats = heap.stats();
    prop_assert_eq!(stats.total(), stats.arena_bytes());
    let small = live
        .values()
        .filter(|b| b.layout.size() > 0 && b.layout.size() <= 512 && b.layout.align() <= 16)
        .count();
    if !heap.config().get_debug() {
        prop_assert_eq!(stats.blocks_in_use(), small);
    }
    if let Err(message) = heap.check() {
        prop_assert!(false, "check failed: {}", message);
    }
    Ok(())
}

fn pick(live: &BTreeMap<usize, Live>, pick: usize) -> Option<usize> {
    if live.is_empty() {
        return None;
    }
    live.keys().nth(pick % live.len()).copied()
}

fn run(config: HeapConfig, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let heap = Heap::with_config(config).unwrap();
    // Zero-sized blocks share addresses: they are freed at once instead of kept in the map.
    let mut live: BTreeMap<usize, Live> = BTreeMap::new();
    let mut seed = 0u8;
    for op in ops {
        seed = seed.wrapping_add(1);
        match op {
            Op::Alloc { size, align_log2 } | Op::AllocZeroed { size, align_log2 } => {
                let zeroed = matches!(op, Op::AllocZeroed { .. });
                let layout = Layout::from_size_align(size, 1 << align_log2).unwrap();
                let block = if zeroed {
                    heap.allocate_zeroed(layout)
                } else {
                    heap.allocate(layout)
                }
                .unwrap();
                prop_assert!(block.len() >= size);
                let ptr = block.cast::<u8>();
                if zeroed {
                    for i in 0..block.len() {
                        // SAFETY: the block is `block.len()` bytes long.
                        prop_assert_eq!(unsafe { ptr.as_ptr().add(i).read() }, 0);
                    }
                }
                if size == 0 {
                    // SAFETY: zero-sized blocks are freed with their layout (a no-op).
                    unsafe { heap.deallocate(ptr, layout) };
                    continue;
                }
                let entry = Live { layout, seed };
                fill(ptr, &entry);
                prop_assert!(live.insert(ptr.as_ptr() as usize, entry).is_none());
            }
            Op::Free { pick: p } => {
                let Some(addr) = pick(&live, p) else { continue };
                let block = live.remove(&addr).unwrap();
                let ptr = NonNull::new(addr as *mut u8).unwrap();
                verify(ptr, &block, usize::MAX)?;
                // SAFETY: the model says this block is live with this layout.
                unsafe { heap.deallocate(ptr, block.layout) };
            }
            Op::Grow { pick: p, extra }
            | Op::Shrink {
                pick: p,
                keep_permille: extra,
            } => {
                let Some(addr) = pick(&live, p) else { continue };
                let block = live.remove(&addr).unwrap();
                let old = block.layout;
                let grow = matches!(op, Op::Grow { .. });
                let new_size = if grow {
                    old.size() + extra
                } else {
                    old.size() * extra / 1000
                };
                let new = Layout::from_size_align(new_size, old.align()).unwrap();
                let ptr = NonNull::new(addr as *mut u8).unwrap();
                // SAFETY: the block is live with layout `old`; sizes go the right way.
                let moved = unsafe {
                    if grow {
                        heap.grow(ptr, old, new)
                    } else {
                        heap.shrink(ptr, old, new)
                    }
                }
                .unwrap();
                prop_assert!(moved.len() >= new_size);
                let moved = moved.cast::<u8>();
                // The common prefix survived the move.
                verify(moved, &block, new_size)?;
                if new_size == 0 {
                    // SAFETY: a zero-sized block; freeing is a no-op but part of the contract.
                    unsafe { heap.deallocate(moved, new) };
                    continue;
                }
                let entry = Live { layout: new, seed };
                fill(moved, &entry);
                prop_assert!(live.insert(moved.as_ptr() as usize, entry).is_none());
            }
        }
        check_model(&heap, &live)?;
    }
    for (addr, block) in std::mem::take(&mut live) {
        // SAFETY: every block left in the model is live with its layout.
        unsafe { heap.deallocate(NonNull::new(addr as *mut u8).unwrap(), block.layout) };
    }
    let stats = heap.stats();
    prop_assert_eq!(stats.blocks_in_use(), 0);
    prop_assert_eq!(stats.large_allocations(), 0);
    prop_assert!(stats.arenas_current() <= config.get_empty_arenas_kept());
    Ok(())
}

fn cases() -> ProptestConfig {
    ProptestConfig {
        cases: if cfg!(miri) { 3 } else { 256 },
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

fn ops(max: usize) -> impl Strategy<Value = Vec<Op>> {
    proptest::collection::vec(op(), 1..if cfg!(miri) { max / 10 } else { max })
}

proptest! {
    #![proptest_config(cases())]

    #[test]
    fn default_geometry_behaves_like_the_model(ops in ops(300)) {
        run(HeapConfig::new(), ops)?;
    }

    /// The debug mode: guards, fills and records must not change what callers see.
    #[test]
    fn debug_mode_behaves_like_the_model(ops in ops(200)) {
        run(HeapConfig::new().debug(true), ops)?;
    }

    /// Small arenas (4 pools) and no kept arena: arenas come and go all the time.
    #[test]
    fn tiny_arenas_behave_like_the_model(ops in ops(300)) {
        run(
            HeapConfig::new().arena_size(16 << 10).pool_size(4 << 10).empty_arenas_kept(0),
            ops,
        )?;
    }
}
