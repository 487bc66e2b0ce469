//! One reference model of a heap's live memory, driven by sequences of [`Op`]s: the property
//! tests (`tests/model.rs`, proptest generating the ops) and the fuzz target
//! (`fuzz/fuzz_targets/heap_ops.rs`, `arbitrary` decoding them) both run it.
//!
//! The model holds every live block (from `allocate`, `allocate_zeroed`, `grow`, `shrink`),
//! every live [`Pooled`] value (of three types: a word, six words, and a 64-byte-aligned one
//! whose slots are system blocks) and every live slot of two keyed free lists (one small, one
//! large), each with its layout and the bytes it must hold. [`Model::apply`] runs an op on the
//! heap and on the model, checking what the heap returns on the way (length, alignment,
//! zeroes, the contents a resize must keep, no address handed out twice); [`Model::check`]
//! compares the whole model with the heap: every block, value and slot is aligned and holds its
//! bytes, no two overlap, `Heap::check()` passes, the stats identity holds and (outside debug
//! mode) the pool blocks in use are exactly the model's. [`Model::finish`] frees everything
//! and checks that the heap holds nothing and keeps no more arenas than configured.
//!
//! Allocation failures are allowed only in a model made with
//! [`failures_allowed`](Model::failures_allowed) (a heap under a memory limit, or with a
//! failing source); they must be `Err(AllocError)` and leave the model, and the block a failed
//! resize was given, as they were.
//!
//! ```
//! use pyalloc::HeapConfig;
//! use pyalloc_testkit::model::{run, Op};
//!
//! run(
//!     HeapConfig::new(),
//!     [
//!         Op::Allocate { size: 24, align: 3, seed: 1 },
//!         Op::Grow { pick: 0, by: 600, align: None, zeroed: true, seed: 2 },
//!         Op::NewPooled { kind: 1, seed: 7 },
//!         Op::Deallocate { pick: 0 },
//!     ],
//! );
//! ```

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::OnceLock;

use pyalloc::{AllocError, Allocator, FreeListKey, FreeListed, Heap, HeapConfig, Pooled, Release};

/// The largest size [`Op::Allocate`] asks for: the pool threshold (512) and well beyond.
pub const MAX_SIZE: usize = 2048;

/// The largest size [`Op::Grow`] grows a block to.
pub const MAX_GROWN_SIZE: usize = 4096;

/// The largest alignment asked for is `1 << MAX_ALIGN_LOG2` (64).
pub const MAX_ALIGN_LOG2: u8 = 6;

/// One step of a test: a call on the heap, mirrored in the model.
///
/// The fields are raw numbers that the model maps into range (`size % (MAX_SIZE + 1)`, and so
/// on), so that any value is a valid op: what `arbitrary` needs, and proptest strategies can
/// still aim at the interesting ranges. `pick` chooses a live block, value or slot modulo their
/// number (blocks in address order); an op whose pick finds nothing does nothing. The bytes
/// written into a block are a function of its op's `seed` and of the op's position in the
/// sequence, so that blocks written by different ops hold different bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "arbitrary", derive(arbitrary::Arbitrary))]
pub enum Op {
    /// `allocate` a block, then fill it.
    Allocate {
        /// Bytes: `size % (MAX_SIZE + 1)`.
        size: u16,
        /// Alignment: `1 << (align % (MAX_ALIGN_LOG2 + 1))`.
        align: u8,
        /// What the block is filled with.
        seed: u8,
    },
    /// `allocate_zeroed` a block, check that all of it is zero, then fill it.
    AllocateZeroed {
        /// As for [`Op::Allocate`].
        size: u16,
        /// As for [`Op::Allocate`].
        align: u8,
        /// As for [`Op::Allocate`].
        seed: u8,
    },
    /// `deallocate` a block, after checking its bytes.
    Deallocate {
        /// Which block.
        pick: u16,
    },
    /// `grow` (or `grow_zeroed`) a block, check the bytes it keeps (and the zeroes), refill it.
    Grow {
        /// Which block.
        pick: u16,
        /// Bytes added: `by % (MAX_GROWN_SIZE + 1 - old size)`.
        by: u16,
        /// The new alignment as for [`Op::Allocate`]; `None` keeps the old one.
        align: Option<u8>,
        /// `grow_zeroed` instead of `grow`.
        zeroed: bool,
        /// What the grown block is filled with.
        seed: u8,
    },
    /// `shrink` a block, check the bytes it keeps, refill it.
    Shrink {
        /// Which block.
        pick: u16,
        /// The new size: `to % (old size + 1)`.
        to: u16,
        /// The new alignment as for [`Op::Allocate`]; `None` keeps the old one.
        align: Option<u8>,
        /// What the shrunk block is filled with.
        seed: u8,
    },
    /// `Pooled::try_new_in` a value of one of three types (`kind % 3`): a word (8-byte slot,
    /// free list of 4), six words (48 bytes, default capacity), 64 bytes aligned to 64 (a
    /// system block, free list of 2).
    NewPooled {
        /// Which type.
        kind: u8,
        /// The value, from which every word or byte of it derives.
        seed: u64,
    },
    /// Drop a `Pooled` value, after checking it.
    DropPooled {
        /// Which value.
        pick: u16,
    },
    /// `Heap::alloc_slot` from a keyed free list: 24 bytes (capacity 3) or, if `large`, 700
    /// bytes (a system block; capacity 2). Fills the slot.
    AllocSlot {
        /// The 700-byte list instead of the 24-byte one.
        large: bool,
        /// What the slot is filled with.
        seed: u8,
    },
    /// `Heap::free_slot` a slot, after checking its bytes.
    FreeSlot {
        /// Which slot.
        pick: u16,
    },
    /// `Heap::clear_free_lists`.
    ClearFreeLists,
    /// `Heap::trim`.
    Trim,
}

/// One word: a slot of 8 bytes.
#[derive(FreeListed)]
#[free_list(capacity = 4)]
struct Word(u64);

/// Six words: a 48-byte slot, with the default capacity (80).
#[derive(FreeListed)]
struct Six([u64; 6]);

/// Over-aligned: its slots are not pool blocks but system ones.
#[derive(FreeListed)]
#[free_list(capacity = 2)]
#[repr(align(64))]
struct Wide([u8; 64]);

/// The keyed lists, made once: every `FreeListKey::new` takes a process-wide number for good.
fn keys() -> &'static [FreeListKey; 2] {
    static KEYS: OnceLock<[FreeListKey; 2]> = OnceLock::new();
    KEYS.get_or_init(|| {
        [
            FreeListKey::new("triple", Layout::new::<[u64; 3]>(), 3),
            FreeListKey::new("page", Layout::from_size_align(700, 8).unwrap(), 2),
        ]
    })
}

/// The byte at offset `i` of something filled from `seed`: differs between neighbouring bytes
/// and between seeds.
pub fn pattern(seed: u8, i: usize) -> u8 {
    seed.wrapping_add((i as u8).wrapping_mul(31))
}

fn fill(ptr: NonNull<u8>, len: usize, seed: u8) {
    for i in 0..len {
        // SAFETY: the caller's block is live and at least `len` bytes long.
        unsafe { ptr.as_ptr().add(i).write(pattern(seed, i)) };
    }
}

fn verify(ptr: NonNull<u8>, len: usize, seed: u8, what: &str) {
    for i in 0..len {
        // SAFETY: the caller's block is live and at least `len` bytes long.
        let byte = unsafe { ptr.as_ptr().add(i).read() };
        assert_eq!(byte, pattern(seed, i), "{what} {ptr:p}: byte {i} changed");
    }
}

fn verify_zero(ptr: NonNull<u8>, from: usize, len: usize, what: &str) {
    for i in from..len {
        // SAFETY: the caller's block is live and at least `len` bytes long.
        let byte = unsafe { ptr.as_ptr().add(i).read() };
        assert_eq!(byte, 0, "{what} {ptr:p}: byte {i} is {byte}");
    }
}

fn align_of_op(raw: u8) -> usize {
    1 << (raw % (MAX_ALIGN_LOG2 + 1))
}

/// Whether a request of `layout` is served by a pool block (outside debug mode).
fn is_pool_block(layout: Layout) -> bool {
    layout.size() > 0 && layout.size() <= 512 && layout.align() <= 16
}

/// Checks what holds for any heap between calls: `Heap::check()` passes and the stats identity
/// `stats.total() == stats.arena_bytes()` holds. Panics with the stats otherwise.
pub fn assert_consistent(heap: &Heap) {
    if let Err(message) = heap.check() {
        panic!("Heap::check: {message}");
    }
    let stats = heap.stats();
    assert_eq!(
        stats.total(),
        stats.arena_bytes(),
        "stats identity broken:\n{stats}"
    );
}

/// A live block from `allocate`: the pointer the heap returned (kept, not rebuilt from the
/// address, so Miri checks every access against the heap's own provenance), its layout and the
/// seed of its bytes.
struct Block {
    ptr: NonNull<u8>,
    layout: Layout,
    seed: u8,
}

/// A live `Pooled` value, and what it must hold.
enum Value<'h> {
    Word(Pooled<'h, Word>, u64),
    Six(Pooled<'h, Six>, u64),
    Wide(Pooled<'h, Wide>, u8),
}

impl Value<'_> {
    fn check(&self) {
        match self {
            Value::Word(p, v) => assert_eq!(p.0, *v, "Word value changed"),
            Value::Six(p, v) => {
                for (i, w) in p.0.iter().enumerate() {
                    assert_eq!(*w, v.wrapping_mul(i as u64 + 1), "Six value changed");
                }
            }
            Value::Wide(p, v) => assert!(p.0.iter().all(|b| b == v), "Wide value changed"),
        }
    }

    /// Address, size and alignment.
    fn span(&self) -> (usize, usize, usize) {
        fn of<T: FreeListed>(p: &Pooled<'_, T>) -> (usize, usize, usize) {
            let addr = Pooled::as_ptr(p).as_ptr() as usize;
            (addr, size_of::<T>(), align_of::<T>())
        }
        match self {
            Value::Word(p, _) => of(p),
            Value::Six(p, _) => of(p),
            Value::Wide(p, _) => of(p),
        }
    }

    fn is_pool_block(&self) -> bool {
        !matches!(self, Value::Wide(..))
    }
}

/// A live slot from `alloc_slot`.
struct Slot {
    ptr: NonNull<u8>,
    key: usize,
    seed: u8,
}

/// The reference model of one heap: see the [module documentation](self).
pub struct Model<'h> {
    heap: &'h Heap,
    /// Whether allocation failures are allowed.
    failures_allowed: bool,
    /// Ops applied so far: mixed into every seed.
    steps: u8,
    /// Live blocks by address. Zero-sized blocks share addresses: they are freed at once
    /// instead of kept.
    blocks: BTreeMap<usize, Block>,
    values: Vec<Value<'h>>,
    slots: Vec<Slot>,
}

impl<'h> Model<'h> {
    /// A model of `heap`, which must hold nothing yet. Every allocation must succeed.
    pub fn new(heap: &'h Heap) -> Self {
        Model {
            heap,
            failures_allowed: false,
            steps: 0,
            blocks: BTreeMap::new(),
            values: Vec::new(),
            slots: Vec::new(),
        }
    }

    /// Whether allocations may fail (with `Err(AllocError)`, and changing nothing): for a heap
    /// under a memory limit or with a failing source.
    pub fn failures_allowed(mut self, allowed: bool) -> Self {
        self.failures_allowed = allowed;
        self
    }

    /// Unwraps an allocation result: failures only where allowed.
    fn got<T>(&self, result: Result<T, AllocError>, what: &str) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(AllocError) if self.failures_allowed => None,
            Err(AllocError) => panic!("{what} failed where failures are not allowed"),
        }
    }

    /// Records a block the heap just returned (`len` bytes for `layout`), filled from `seed`.
    fn record(&mut self, ptr: NonNull<u8>, len: usize, layout: Layout, seed: u8) {
        assert!(len >= layout.size(), "{ptr:p}: {len} bytes for {layout:?}");
        assert_eq!(
            ptr.as_ptr() as usize % layout.align(),
            0,
            "misaligned {ptr:p} for {layout:?}"
        );
        if layout.size() == 0 {
            // Zero-sized blocks share addresses: freed at once (a no-op, but the contract).
            // SAFETY: just allocated with `layout`.
            unsafe { self.heap.deallocate(ptr, layout) };
            return;
        }
        fill(ptr, layout.size(), seed);
        let old = self
            .blocks
            .insert(ptr.as_ptr() as usize, Block { ptr, layout, seed });
        assert!(old.is_none(), "{ptr:p} handed out twice");
    }

    /// Takes the picked block out of the model, after checking its bytes.
    fn pick_block(&mut self, pick: u16) -> Option<(NonNull<u8>, Block)> {
        if self.blocks.is_empty() {
            return None;
        }
        let addr = *self
            .blocks
            .keys()
            .nth(usize::from(pick) % self.blocks.len())?;
        let block = self.blocks.remove(&addr)?;
        verify(block.ptr, block.layout.size(), block.seed, "block");
        Some((block.ptr, block))
    }

    /// Runs `op` on the heap and on the model, checking what the heap returns.
    pub fn apply(&mut self, op: Op) {
        let heap = self.heap;
        self.steps = self.steps.wrapping_add(1);
        let step = self.steps;
        match op {
            Op::Allocate { size, align, seed } | Op::AllocateZeroed { size, align, seed } => {
                let zeroed = matches!(op, Op::AllocateZeroed { .. });
                let size = usize::from(size) % (MAX_SIZE + 1);
                let layout = Layout::from_size_align(size, align_of_op(align)).unwrap();
                let result = if zeroed {
                    heap.allocate_zeroed(layout)
                } else {
                    heap.allocate(layout)
                };
                let Some(block) = self.got(result, "allocate") else {
                    return;
                };
                let ptr = block.cast::<u8>();
                if zeroed {
                    verify_zero(ptr, 0, block.len(), "allocate_zeroed");
                }
                self.record(ptr, block.len(), layout, seed.wrapping_add(step));
            }
            Op::Deallocate { pick } => {
                let Some((ptr, block)) = self.pick_block(pick) else {
                    return;
                };
                // SAFETY: the model says the block is live with this layout.
                unsafe { heap.deallocate(ptr, block.layout) };
            }
            Op::Grow {
                pick,
                by,
                align,
                zeroed,
                seed,
            } => {
                let Some((ptr, block)) = self.pick_block(pick) else {
                    return;
                };
                let old = block.layout;
                let size = old.size() + usize::from(by) % (MAX_GROWN_SIZE + 1 - old.size());
                let align = align.map_or(old.align(), align_of_op);
                let new = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the block is live with layout `old`; `new` is no smaller.
                let result = unsafe {
                    if zeroed {
                        heap.grow_zeroed(ptr, old, new)
                    } else {
                        heap.grow(ptr, old, new)
                    }
                };
                self.resized(ptr, block, new, result, zeroed, seed.wrapping_add(step));
            }
            Op::Shrink {
                pick,
                to,
                align,
                seed,
            } => {
                let Some((ptr, block)) = self.pick_block(pick) else {
                    return;
                };
                let old = block.layout;
                let size = usize::from(to) % (old.size() + 1);
                let align = align.map_or(old.align(), align_of_op);
                let new = Layout::from_size_align(size, align).unwrap();
                // SAFETY: the block is live with layout `old`; `new` is no larger.
                let result = unsafe { heap.shrink(ptr, old, new) };
                self.resized(ptr, block, new, result, false, seed.wrapping_add(step));
            }
            Op::NewPooled { kind, seed } => {
                let value = match kind % 3 {
                    0 => Pooled::try_new_in(Word(seed), heap).map(|p| Value::Word(p, seed)),
                    1 => {
                        let words = core::array::from_fn(|i| seed.wrapping_mul(i as u64 + 1));
                        Pooled::try_new_in(Six(words), heap).map(|p| Value::Six(p, seed))
                    }
                    _ => {
                        let byte = seed as u8;
                        Pooled::try_new_in(Wide([byte; 64]), heap).map(|p| Value::Wide(p, byte))
                    }
                };
                if let Some(value) = self.got(value, "Pooled::try_new_in") {
                    let (addr, _, align) = value.span();
                    assert_eq!(addr % align, 0, "misaligned pooled value at {addr:#x}");
                    value.check();
                    self.values.push(value);
                }
            }
            Op::DropPooled { pick } => {
                if !self.values.is_empty() {
                    let value = self
                        .values
                        .swap_remove(usize::from(pick) % self.values.len());
                    value.check();
                }
            }
            Op::AllocSlot { large, seed } => {
                let key = usize::from(large);
                let Some(ptr) = self.got(heap.alloc_slot(&keys()[key]), "alloc_slot") else {
                    return;
                };
                let layout = keys()[key].layout();
                assert_eq!(ptr.as_ptr() as usize % layout.align(), 0, "misaligned slot");
                let seed = seed.wrapping_add(step);
                fill(ptr, layout.size(), seed);
                self.slots.push(Slot { ptr, key, seed });
            }
            Op::FreeSlot { pick } => {
                if !self.slots.is_empty() {
                    let slot = self.slots.swap_remove(usize::from(pick) % self.slots.len());
                    let key = &keys()[slot.key];
                    verify(slot.ptr, key.layout().size(), slot.seed, "slot");
                    // SAFETY: the slot came from `alloc_slot` with this key and is dropped
                    // from the model.
                    unsafe { heap.free_slot(key, slot.ptr) };
                }
            }
            Op::ClearFreeLists => {
                heap.clear_free_lists();
            }
            Op::Trim => {
                heap.trim();
            }
        }
    }

    /// Records the outcome of a grow or shrink of `block` (at `ptr`) to `new`.
    fn resized(
        &mut self,
        ptr: NonNull<u8>,
        block: Block,
        new: Layout,
        result: Result<NonNull<[u8]>, AllocError>,
        zeroed: bool,
        seed: u8,
    ) {
        let Some(moved) = self.got(result, "resize") else {
            // A failed resize leaves the block where and as it was.
            verify(
                ptr,
                block.layout.size(),
                block.seed,
                "block after a failed resize",
            );
            self.blocks.insert(ptr.as_ptr() as usize, block);
            return;
        };
        let len = moved.len();
        let moved = moved.cast::<u8>();
        // The common prefix survived the move.
        let kept = block.layout.size().min(new.size());
        verify(moved, kept, block.seed, "block moved by a resize");
        if zeroed {
            verify_zero(moved, block.layout.size(), len, "grow_zeroed");
        }
        self.record(moved, len, new, seed);
    }

    /// Everything the model knows against the heap: every block, value and slot is aligned
    /// and holds its bytes; no two overlap; [`assert_consistent`]; and outside debug mode the
    /// pool blocks in use are the model's blocks, values and slots in pools plus the slots
    /// parked on the free lists.
    pub fn check(&self) {
        let mut spans: Vec<(usize, usize, &str)> = Vec::new();
        for (&addr, block) in &self.blocks {
            assert_eq!(addr % block.layout.align(), 0, "misaligned block {addr:#x}");
            verify(block.ptr, block.layout.size(), block.seed, "block");
            spans.push((addr, block.layout.size(), "block"));
        }
        for value in &self.values {
            value.check();
            let (addr, len, align) = value.span();
            assert_eq!(addr % align, 0, "misaligned pooled value {addr:#x}");
            spans.push((addr, len, "pooled value"));
        }
        for slot in &self.slots {
            let layout = keys()[slot.key].layout();
            let addr = slot.ptr.as_ptr() as usize;
            assert_eq!(addr % layout.align(), 0, "misaligned slot {addr:#x}");
            verify(slot.ptr, layout.size(), slot.seed, "slot");
            spans.push((addr, layout.size(), "slot"));
        }
        spans.sort_unstable();
        for pair in spans.windows(2) {
            let ((a, len, what), (b, _, other)) = (pair[0], pair[1]);
            assert!(
                a + len <= b,
                "{what} at {a:#x} ({len} bytes) overlaps {other} at {b:#x}"
            );
        }
        assert_consistent(self.heap);
        if !self.heap.config().get_debug() {
            let heap = self.heap;
            let pool_blocks = self
                .blocks
                .values()
                .filter(|b| is_pool_block(b.layout))
                .count()
                + self.values.iter().filter(|v| v.is_pool_block()).count()
                + self.slots.iter().filter(|s| s.key == 0).count()
                + heap.free_list_stats::<Word>().len
                + heap.free_list_stats::<Six>().len
                + heap.free_list_stats_for(&keys()[0]).len;
            assert_eq!(
                heap.stats().blocks_in_use(),
                pool_blocks,
                "pool blocks in use"
            );
        }
    }

    /// Frees everything left, checking it on the way, and clears the free lists; the heap must
    /// then pass [`assert_consistent`], hold no block and no large allocation, and keep no more
    /// arenas than `empty_arenas_kept`.
    pub fn finish(mut self) {
        for value in std::mem::take(&mut self.values) {
            value.check();
        }
        for slot in std::mem::take(&mut self.slots) {
            let key = &keys()[slot.key];
            verify(slot.ptr, key.layout().size(), slot.seed, "slot");
            // SAFETY: the slot came from `alloc_slot` with this key.
            unsafe { self.heap.free_slot(key, slot.ptr) };
        }
        for block in std::mem::take(&mut self.blocks).into_values() {
            verify(block.ptr, block.layout.size(), block.seed, "block");
            // SAFETY: the model says the block is live with this layout.
            unsafe { self.heap.deallocate(block.ptr, block.layout) };
        }
        self.heap.clear_free_lists();
        if let Release::Decay(delay) = self.heap.config().get_release() {
            if !delay.is_zero() {
                // What a decay keeps for its delay goes back at a trim.
                self.heap.trim();
            }
        }
        assert_consistent(self.heap);
        let stats = self.heap.stats();
        assert_eq!(stats.blocks_in_use(), 0, "blocks left in use");
        assert_eq!(stats.large_allocations(), 0, "large allocations left");
        let kept = self.heap.config().get_empty_arenas_kept();
        assert!(
            stats.arenas_current() <= kept,
            "{} arenas left, {kept} kept",
            stats.arenas_current()
        );
    }
}

/// Runs `ops` on a new heap with `config` and on a model of it, checking the model after
/// every op, then [`finish`](Model::finish)es. Allocations may fail only if `config` sets a
/// memory limit.
pub fn run(config: HeapConfig, ops: impl IntoIterator<Item = Op>) {
    let heap = Heap::with_config(config).expect("a valid configuration");
    let mut model = Model::new(&heap).failures_allowed(config.get_memory_limit().is_some());
    for op in ops {
        model.apply(op);
        model.check();
    }
    model.finish();
}
