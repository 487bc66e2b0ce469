//! Model-based test: random sequences of allocator calls against a reference model.
//!
//! The model (`pyalloc_testkit::model`, shared with the fuzz target) is the set of live blocks,
//! `Pooled` values and keyed slots with their layouts and the byte pattern each holds. After
//! every step: every block is aligned, no two live blocks overlap, every block still holds its
//! pattern, the stats identity holds, the pool blocks in use are the model's (outside debug
//! mode) and `Heap::check` finds nothing wrong. At the end everything is freed and the heap
//! holds no block and keeps no more arenas than configured.

use proptest::prelude::*;
use pyalloc::{HeapConfig, Release};
use pyalloc_testkit::model::{self, Op, MAX_ALIGN_LOG2};

fn op() -> impl Strategy<Value = Op> {
    // Sizes cluster around the pool threshold and class boundaries, with the whole range
    // covered; alignments 1..=64. Seeds are 0: the model mixes in each op's position, so the
    // blocks of successive ops hold different bytes. Resizes mostly keep the alignment.
    let size = prop_oneof![0..=64u16, 0..=2048u16, 500..=530u16];
    let align = 0..=MAX_ALIGN_LOG2;
    let new_align = prop_oneof![3 => Just(None), 1 => align.clone().prop_map(Some)];
    let pick = any::<u16>();
    prop_oneof![
        8 => (size.clone(), align.clone())
            .prop_map(|(size, align)| Op::Allocate { size, align, seed: 0 }),
        2 => (size, align)
            .prop_map(|(size, align)| Op::AllocateZeroed { size, align, seed: 0 }),
        6 => pick.prop_map(|pick| Op::Deallocate { pick }),
        2 => (pick, 0..=700u16, new_align.clone(), any::<bool>())
            .prop_map(|(pick, by, align, zeroed)| Op::Grow { pick, by, align, zeroed, seed: 0 }),
        2 => (pick, any::<u16>(), new_align)
            .prop_map(|(pick, to, align)| Op::Shrink { pick, to, align, seed: 0 }),
        2 => (any::<u8>(), any::<u64>()).prop_map(|(kind, seed)| Op::NewPooled { kind, seed }),
        2 => pick.prop_map(|pick| Op::DropPooled { pick }),
        2 => any::<bool>().prop_map(|large| Op::AllocSlot { large, seed: 0 }),
        2 => pick.prop_map(|pick| Op::FreeSlot { pick }),
        1 => Just(Op::ClearFreeLists),
        1 => Just(Op::Trim),
    ]
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
        model::run(HeapConfig::new(), ops);
    }

    /// The debug mode: guards, fills and records must not change what callers see.
    #[test]
    fn debug_mode_behaves_like_the_model(ops in ops(200)) {
        model::run(HeapConfig::new().debug(true), ops);
    }

    /// Small arenas (4 pools) and no kept arena: arenas come and go all the time.
    #[test]
    fn tiny_arenas_behave_like_the_model(ops in ops(300)) {
        model::run(
            HeapConfig::new().arena_size(16 << 10).pool_size(4 << 10).empty_arenas_kept(0),
            ops,
        );
    }

    /// A decay with no delay: every pool returned settles what is due, so pools are purged
    /// and arenas unmapped under the allocations all the time, and `check()` verifies the
    /// deadlines after every step.
    #[test]
    fn an_instant_decay_behaves_like_the_model(ops in ops(300)) {
        model::run(
            HeapConfig::new()
                .arena_size(16 << 10)
                .pool_size(4 << 10)
                .empty_arenas_kept(1)
                .release(Release::Decay(std::time::Duration::ZERO)),
            ops,
        );
    }
}
