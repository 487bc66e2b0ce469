//! heap_ops: the fuzzer's bytes become a heap configuration and a sequence of heap operations,
//! run against a model.
//!
//! The first byte picks the heap: CPython's geometry, 16 KiB arenas of 4 KiB pools keeping no
//! empty arena, the debug mode, or small arenas under a memory limit (the second byte sets it)
//! so that allocations fail. The rest decodes (with `arbitrary`) into actions: allocate,
//! allocate_zeroed, deallocate, grow and shrink over sizes 0..=2048 and alignments 1..=64;
//! `Pooled` values of three types (a word, six words, and a 64-byte-aligned one whose slots are
//! system blocks); slots of two keyed free lists (one small, one large); clearing the free
//! lists; trimming.
//!
//! The model holds every live block, value and slot with its layout and the bytes it must
//! hold. After each action: every block is aligned and at least as long as asked, no two live
//! ones overlap, each still holds its bytes, the stats agree with the model, and
//! `Heap::check()` passes. A failure is allowed only under the memory limit, must be
//! `Err(AllocError)`, and leaves the model (and the block a failed resize was given) as it was.
//! At the end everything is freed and the heap must hold no block.
#![no_main]

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::ptr::NonNull;
use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use libfuzzer_sys::fuzz_target;
use pyalloc::{AllocError, Allocator, FreeListKey, FreeListed, Heap, HeapConfig, Pooled};

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

#[derive(Arbitrary, Debug)]
enum Action {
    Allocate {
        size: u16,
        align: u8,
        seed: u8,
    },
    AllocateZeroed {
        size: u16,
        align: u8,
        seed: u8,
    },
    Deallocate {
        pick: u8,
    },
    Grow {
        pick: u8,
        by: u16,
        align: u8,
        zeroed: bool,
        seed: u8,
    },
    Shrink {
        pick: u8,
        to: u16,
        align: u8,
        seed: u8,
    },
    NewPooled {
        kind: u8,
        seed: u64,
    },
    DropPooled {
        pick: u8,
    },
    AllocSlot {
        large: bool,
        seed: u8,
    },
    FreeSlot {
        pick: u8,
    },
    ClearFreeLists,
    Trim,
}

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

/// The byte at offset `i` of something filled from `seed`.
fn pattern(seed: u8, i: usize) -> u8 {
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

fn size_of_input(raw: u16) -> usize {
    raw as usize % 2049
}

fn align_of_input(raw: u8) -> usize {
    1 << (raw % 7)
}

/// Whether a request of `layout` is served by a pool block (outside debug mode).
fn is_pool_block(layout: Layout) -> bool {
    layout.size() > 0 && layout.size() <= 512 && layout.align() <= 16
}

/// A live block from `allocate`: its layout and the seed of its bytes.
struct Block {
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

    /// Address and size, for the overlap check.
    fn span(&self) -> (usize, usize) {
        match self {
            Value::Word(p, _) => (Pooled::as_ptr(p).as_ptr() as usize, size_of::<Word>()),
            Value::Six(p, _) => (Pooled::as_ptr(p).as_ptr() as usize, size_of::<Six>()),
            Value::Wide(p, _) => (Pooled::as_ptr(p).as_ptr() as usize, size_of::<Wide>()),
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

struct Model<'h> {
    heap: &'h Heap,
    /// Whether failures are allowed (the memory-limit configuration).
    limited: bool,
    blocks: BTreeMap<usize, Block>,
    values: Vec<Value<'h>>,
    slots: Vec<Slot>,
}

impl<'h> Model<'h> {
    /// Unwraps an allocation result: failures only under the memory limit.
    fn got<T>(&self, result: Result<T, AllocError>, what: &str) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(AllocError) if self.limited => None,
            Err(AllocError) => panic!("{what} failed without a memory limit"),
        }
    }

    /// Records a block the heap just returned (`len` bytes for `layout`), filled from `seed`.
    fn record(&mut self, ptr: NonNull<u8>, len: usize, layout: Layout, seed: u8) {
        assert!(len >= layout.size(), "{ptr:p}: {len} bytes for {layout:?}");
        assert_eq!(
            ptr.as_ptr() as usize % layout.align(),
            0,
            "misaligned {ptr:p}"
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
            .insert(ptr.as_ptr() as usize, Block { layout, seed });
        assert!(old.is_none(), "{ptr:p} handed out twice");
    }

    fn pick_block(&mut self, pick: u8) -> Option<(NonNull<u8>, Block)> {
        if self.blocks.is_empty() {
            return None;
        }
        let addr = *self.blocks.keys().nth(pick as usize % self.blocks.len())?;
        let block = self.blocks.remove(&addr)?;
        let ptr = NonNull::new(addr as *mut u8)?;
        verify(ptr, block.layout.size(), block.seed, "block");
        Some((ptr, block))
    }

    fn apply(&mut self, action: Action) {
        let heap = self.heap;
        match action {
            Action::Allocate { size, align, seed }
            | Action::AllocateZeroed { size, align, seed } => {
                let zeroed = matches!(action, Action::AllocateZeroed { .. });
                let layout =
                    Layout::from_size_align(size_of_input(size), align_of_input(align)).unwrap();
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
                    for i in 0..block.len() {
                        // SAFETY: the block is `block.len()` bytes long.
                        let byte = unsafe { ptr.as_ptr().add(i).read() };
                        assert_eq!(byte, 0, "allocate_zeroed {ptr:p}: byte {i} is {byte}");
                    }
                }
                self.record(ptr, block.len(), layout, seed);
            }
            Action::Deallocate { pick } => {
                let Some((ptr, block)) = self.pick_block(pick) else {
                    return;
                };
                // SAFETY: the model says the block is live with this layout.
                unsafe { heap.deallocate(ptr, block.layout) };
            }
            Action::Grow {
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
                let size = old.size() + by as usize % (2049 - old.size());
                let new = Layout::from_size_align(size, align_of_input(align)).unwrap();
                // SAFETY: the block is live with layout `old`; `new` is no smaller.
                let result = unsafe {
                    if zeroed {
                        heap.grow_zeroed(ptr, old, new)
                    } else {
                        heap.grow(ptr, old, new)
                    }
                };
                self.resized(ptr, block, new, result, zeroed, seed);
            }
            Action::Shrink {
                pick,
                to,
                align,
                seed,
            } => {
                let Some((ptr, block)) = self.pick_block(pick) else {
                    return;
                };
                let old = block.layout;
                let size = to as usize % (old.size() + 1);
                let new = Layout::from_size_align(size, align_of_input(align)).unwrap();
                // SAFETY: the block is live with layout `old`; `new` is no larger.
                let result = unsafe { heap.shrink(ptr, old, new) };
                self.resized(ptr, block, new, result, false, seed);
            }
            Action::NewPooled { kind, seed } => {
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
                    let (addr, _) = value.span();
                    let align = if matches!(value, Value::Wide(..)) {
                        64
                    } else {
                        8
                    };
                    assert_eq!(addr % align, 0, "misaligned pooled value");
                    self.values.push(value);
                }
            }
            Action::DropPooled { pick } => {
                if !self.values.is_empty() {
                    let value = self.values.swap_remove(pick as usize % self.values.len());
                    value.check();
                }
            }
            Action::AllocSlot { large, seed } => {
                let key = usize::from(large);
                let Some(ptr) = self.got(heap.alloc_slot(&keys()[key]), "alloc_slot") else {
                    return;
                };
                let layout = keys()[key].layout();
                assert_eq!(ptr.as_ptr() as usize % layout.align(), 0, "misaligned slot");
                fill(ptr, layout.size(), seed);
                self.slots.push(Slot { ptr, key, seed });
            }
            Action::FreeSlot { pick } => {
                if !self.slots.is_empty() {
                    let slot = self.slots.swap_remove(pick as usize % self.slots.len());
                    let key = &keys()[slot.key];
                    verify(slot.ptr, key.layout().size(), slot.seed, "slot");
                    // SAFETY: the slot came from `alloc_slot` with this key and is dropped
                    // from the model.
                    unsafe { heap.free_slot(key, slot.ptr) };
                }
            }
            Action::ClearFreeLists => {
                heap.clear_free_lists();
            }
            Action::Trim => {
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
        let kept = block.layout.size().min(new.size());
        verify(moved, kept, block.seed, "block moved by a resize");
        if zeroed {
            for i in block.layout.size()..len {
                // SAFETY: the block is `len` bytes long.
                let byte = unsafe { moved.as_ptr().add(i).read() };
                assert_eq!(byte, 0, "grow_zeroed {moved:p}: byte {i} is {byte}");
            }
        }
        self.record(moved, len, new, seed);
    }

    /// Everything the model knows against the heap.
    fn check(&self) {
        let mut spans: Vec<(usize, usize, &str)> = Vec::new();
        for (&addr, block) in &self.blocks {
            let ptr = NonNull::new(addr as *mut u8).unwrap();
            verify(ptr, block.layout.size(), block.seed, "block");
            spans.push((addr, block.layout.size(), "block"));
        }
        for value in &self.values {
            value.check();
            let (addr, len) = value.span();
            spans.push((addr, len, "pooled value"));
        }
        for slot in &self.slots {
            let len = keys()[slot.key].layout().size();
            verify(slot.ptr, len, slot.seed, "slot");
            spans.push((slot.ptr.as_ptr() as usize, len, "slot"));
        }
        spans.sort_unstable();
        for pair in spans.windows(2) {
            let ((a, len, what), (b, _, other)) = (pair[0], pair[1]);
            assert!(
                a + len <= b,
                "{what} at {a:#x} ({len} bytes) overlaps {other} at {b:#x}"
            );
        }
        if let Err(message) = self.heap.check() {
            panic!("Heap::check: {message}");
        }
        let stats = self.heap.stats();
        assert_eq!(stats.total(), stats.arena_bytes(), "stats identity");
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
            assert_eq!(stats.blocks_in_use(), pool_blocks, "pool blocks in use");
        }
    }

    /// Frees everything left, checking it on the way; the heap must then hold nothing.
    fn finish(mut self) {
        for value in std::mem::take(&mut self.values) {
            value.check();
        }
        for slot in std::mem::take(&mut self.slots) {
            let key = &keys()[slot.key];
            verify(slot.ptr, key.layout().size(), slot.seed, "slot");
            // SAFETY: the slot came from `alloc_slot` with this key.
            unsafe { self.heap.free_slot(key, slot.ptr) };
        }
        for (addr, block) in std::mem::take(&mut self.blocks) {
            let ptr = NonNull::new(addr as *mut u8).unwrap();
            verify(ptr, block.layout.size(), block.seed, "block");
            // SAFETY: the model says the block is live with this layout.
            unsafe { self.heap.deallocate(ptr, block.layout) };
        }
        self.heap.clear_free_lists();
        if let Err(message) = self.heap.check() {
            panic!("Heap::check at the end: {message}");
        }
        let stats = self.heap.stats();
        assert_eq!(stats.blocks_in_use(), 0, "blocks left in use");
        assert_eq!(stats.large_allocations(), 0, "large allocations left");
    }
}

/// The heap the first two input bytes pick.
fn config(u: &mut Unstructured<'_>) -> (HeapConfig, bool) {
    let small = HeapConfig::new()
        .arena_size(16 << 10)
        .pool_size(4 << 10)
        .empty_arenas_kept(0);
    let pick = u.arbitrary::<u8>().unwrap_or(0);
    match pick % 4 {
        0 => (HeapConfig::new(), false),
        1 => (small, false),
        2 => (HeapConfig::new().debug(true), false),
        _ => {
            // 8 KiB to 128 KiB: from no arena at all (only small large requests fit) to eight.
            let limit = 8192 * (1 + u.arbitrary::<u8>().unwrap_or(0) as usize % 16);
            (small.memory_limit(limit), true)
        }
    }
}

/// The most actions one input runs (each is followed by a whole-heap check).
const MAX_ACTIONS: usize = 1000;

fuzz_target!(|data: &[u8]| {
    let mut u = Unstructured::new(data);
    let (config, limited) = config(&mut u);
    let heap = Heap::with_config(config).expect("a valid configuration");
    let mut model = Model {
        heap: &heap,
        limited,
        blocks: BTreeMap::new(),
        values: Vec::new(),
        slots: Vec::new(),
    };
    // `arbitrary` keeps producing (zeros) from an exhausted input: stop when it is used up.
    for _ in 0..MAX_ACTIONS {
        if u.is_empty() {
            break;
        }
        let Ok(action) = u.arbitrary::<Action>() else {
            break;
        };
        model.apply(action);
        model.check();
    }
    model.finish();
});
