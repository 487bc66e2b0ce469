//! [`Global`]: pyalloc for a whole program, one heap per thread, frees from any thread.
//!
//! ```text
//!  thread A            thread B                      registry (never shrinks)
//!  CURRENT ──▶ heap 2   CURRENT ──▶ heap 3            id 1: the fallback heap (shared, claimed)
//!  FAST ──▶ its table   FAST ──▶ its table            id 2, 3, …: thread heaps
//!              │ pools carry owner "heap 2's table"
//!              ▼
//!  B frees a block of A's: reads heap 2's table from the block's pool header, posts the block
//!  to heap 2's mailbox; A frees it into its pool on its next slow path (remote.rs).
//! ```
//!
//! * **The calling thread's heap** is found through a thread-local pointer, `CURRENT`, set up
//!   on the thread's first allocation, and the fast paths read it through another, `FAST`: the
//!   heap's table of used pools while the heap is running and idle, else a static `CLOSED`
//!   table on which every fast path fails (so neither pointer is tested on the fast paths). On
//!   the thread's first request a heap abandoned by an exited thread is adopted if there is
//!   one, else a new heap is made and registered. The set-up itself allocates (the thread-local
//!   destructor's registration may call `malloc`): those requests, like every request that
//!   arrives while the thread's heap is busy in a slow path, or after the thread's heap was
//!   abandoned at exit, go to the **fallback heap**, a heap anyone may claim for one call.
//! * **Small requests** (at most 512 bytes, alignment at most 16) come from pools; larger ones
//!   go straight to the system allocator, as in CPython, and are freed there by any thread.
//! * **A free** reads the owner from the block's pool header (the block's address masked): the
//!   address of the owning heap's table. The calling thread's own heap (the one `FAST` points
//!   at) frees it on its fast path; any other heap gets it in its mailbox.
//! * **At thread exit** the heap takes its mail, empties its free lists and gives back what it
//!   can, and is abandoned: a later thread adopts it, and until then every block that comes
//!   home is freed at once by the thread that sends it, so its arenas go back to the OS as
//!   they empty.
//!
//! The heaps' own bookkeeping never comes from `Global` (their tables are the system
//! allocator's, by type), so nothing here can recurse beyond one level: a request that arrives
//! while this very thread is inside the fallback heap's core is refused (null) by that heap's
//! gate, or for a free deferred by it, never served re-entrantly.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicBool, AtomicPtr, AtomicU32, AtomicU8, Ordering};

use allocator_api2::alloc::{AllocError, Allocator};

use crate::config::{HeapConfig, ALIGNMENT, DEFAULT_POOL_SIZE, SMALL_REQUEST_THRESHOLD};
use crate::free_list::{head_at, sentinel, FreeListId, FreeListed, ListHead, ListSpec};
use crate::heap::{Heap, TrimReport};
use crate::pool::{expose_stand_in, Owner, Pool};
use crate::raw::{dangling, slice, Freed, ThreadLink, UsedPools};
use crate::remote::{Mailbox, Posted};
use crate::size_class::{block_size, class_of};
use crate::stats::Stats;
use crate::sys::System;

/// The global allocator: `#[global_allocator] static GLOBAL: pyalloc::Global = pyalloc::Global;`
/// puts a whole program on pyalloc, one pymalloc heap per thread.
///
/// It is also an allocator-api2 [`Allocator`], so without being the global allocator it gives
/// collections that are `'static` and `Send`:
///
/// ```
/// use pyalloc::{Box, Global, Vec};
///
/// let mut v = Vec::new_in(Global);
/// v.extend([1u32, 2, 3]);
/// let b = Box::new_in(7u64, Global);
/// std::thread::spawn(move || {
///     // Freed on another thread: each block goes back to the heap that made it.
///     assert_eq!(v.iter().sum::<u32>() as u64 + *b, 13);
/// })
/// .join()
/// .unwrap();
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Global;

/// One heap of the registry, with what other threads may touch (its number and mailbox).
struct ThreadHeap {
    id: u32,
    mailbox: Mailbox,
    heap: Heap,
}

// SAFETY: `heap` (not `Sync`) is used only by the party the mailbox's state names: the owning
// thread, or the one thread holding a claim. Every hand-over is a release (abandon, release)
// read by an acquire (adopt, claim) of that state, so the previous holder's writes happen
// before the next holder's reads. `id` never changes; `mailbox` is atomic.
unsafe impl Sync for ThreadHeap {}

/// Where a thread heap's table (`UsedPools`) lies in it: a block's pool names its owner by
/// the table's address.
const TABLE_OFFSET: usize = core::mem::offset_of!(ThreadHeap, heap) + Heap::USED_POOLS_OFFSET;

/// Heaps per registry segment, and segments: at most 65,536 heaps hold pools at once (threads
/// beyond that run on the fallback heap).
const SEGMENT: usize = 256;

type Segment = [AtomicPtr<ThreadHeap>; SEGMENT];

/// Every heap ever made, by number (0 is no heap's): two levels, so a heap is found with two
/// loads and the registry costs 2 KiB until threads are made.
static REGISTRY: [AtomicPtr<Segment>; SEGMENT] =
    [const { AtomicPtr::new(ptr::null_mut()) }; SEGMENT];

/// The next heap number to hand out.
static NEXT_ID: AtomicU32 = AtomicU32::new(1);

/// The fallback heap, made on first use.
static FALLBACK: AtomicPtr<ThreadHeap> = AtomicPtr::new(ptr::null_mut());

/// `PYALLOC_DEBUG`, read once: 0 not yet, 1 off, 2 on.
static DEBUG: AtomicU8 = AtomicU8::new(0);

/// Whether `Global` runs in debug mode: `PYALLOC_DEBUG` set to anything but empty or `0` when
/// the process first allocates (read once, as CPython reads `PYTHONMALLOC=debug`). Then every
/// request goes through one shared debug heap ([`HeapConfig::debug`]), held for each call:
/// every free is checked against the allocation it ends, whichever thread makes it, and a
/// misuse aborts with the debug mode's message (a global allocator may not unwind).
#[inline]
fn debug_mode() -> bool {
    match DEBUG.load(Ordering::Relaxed) {
        0 => read_debug_mode(),
        state => state == 2,
    }
}

#[cold]
#[inline(never)]
fn read_debug_mode() -> bool {
    // `getenv` allocates nothing (unlike `std::env::var`): this runs inside the allocator.
    // SAFETY: a NUL-terminated name; the result is null or a NUL-terminated string, read at
    // once (nothing in this process is expected to call `setenv` concurrently with its first
    // allocation).
    let on = unsafe {
        let value = libc::getenv(c"PYALLOC_DEBUG".as_ptr());
        !value.is_null() && *value != 0 && !(*value == b'0' as libc::c_char && *value.add(1) == 0)
    };
    DEBUG.store(if on { 2 } else { 1 }, Ordering::Relaxed);
    on
}

/// Where a thread stands with its heap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// No allocation yet.
    Fresh,
    /// Setting up its heap: requests go to the fallback heap.
    Starting,
    /// `CURRENT` is its heap.
    Running,
    /// Exited (its heap abandoned), or no heap could be had: the fallback heap serves it.
    Detached,
}

thread_local! {
    /// The calling thread's heap while it is running; null before, during set-up and after
    /// exit. A `const` thread-local without a destructor: reading it is one load. (The fast
    /// paths read `FAST` and `HEADS` instead, which need no null test.)
    static CURRENT: Cell<*const ThreadHeap> = const { Cell::new(ptr::null()) };
    static PHASE: Cell<Phase> = const { Cell::new(Phase::Fresh) };
    /// Whether this thread holds the fallback heap: a request now runs within that hold (the
    /// heap's gate refuses it if its core is busy) instead of claiming it again.
    static HOLDS_FALLBACK: Cell<bool> = const { Cell::new(false) };
    /// Abandons the thread's heap when the thread exits.
    static EXIT: ThreadExit = const { ThreadExit };
    /// What the fast paths read: the table of `CURRENT`'s heap while that heap's gate is open,
    /// else [`CLOSED`] (no heap yet, set-up, a slow path of the heap under way, exit, debug
    /// mode). Never null, so the fast paths test nothing but what they test anyway: every
    /// test fails on `CLOSED`. Kept so by [`refresh_fast`].
    static FAST: Cell<*const UsedPools> = const { Cell::new(&CLOSED.0) };
}

/// The table of no heap ([`UsedPools::CLOSED`]).
struct Closed(UsedPools);

// SAFETY: never written (a fast path on it fails before any write: see `UsedPools::CLOSED`),
// and nothing in it is a cell; its pointers lead only to the never-written stand-in pool.
unsafe impl Sync for Closed {}

static CLOSED: Closed = Closed(UsedPools::CLOSED);

/// Points `FAST` at `CURRENT`'s heap's table if there is one and its gate is open, else at
/// `CLOSED`. Called whenever `CURRENT` changes, and by every thread heap's gate when it
/// closes or opens (whichever heap's gate it is: the result depends only on `CURRENT`'s).
fn refresh_fast() {
    let heap = CURRENT.get();
    let table = if heap.is_null() {
        &CLOSED.0
    } else {
        // SAFETY: registered heaps are never freed; `CURRENT` holds one the thread owns.
        let heap = unsafe { &*heap };
        if heap.heap.is_busy() {
            &CLOSED.0
        } else {
            heap.heap.used_pools()
        }
    };
    FAST.set(table);
}

thread_local! {
    /// The base of the calling thread's heap's typed list heads while it is running (see
    /// [`free_list`](crate::free_list)); the never-written sentinel table before, during
    /// set-up, after exit, and in debug mode, so `PoolBox`'s hit path needs no test of its
    /// own: an empty head misses. Kept apart from `CURRENT`, so that hit is one load.
    static HEADS: Cell<NonNull<ListHead>> = const { Cell::new(sentinel()) };
}

/// The calling thread's running heap, if any (the cold paths' look-up; the fast paths read
/// `FAST` and `HEADS`).
#[inline(always)]
fn current() -> Option<&'static ThreadHeap> {
    let heap = CURRENT.get();
    // SAFETY: registered heaps are never freed; `CURRENT` holds one the thread owns.
    (!heap.is_null()).then(|| unsafe { &*heap })
}

/// The calling thread's heap, set up if this is its first request; `None` while it is being
/// set up, after the thread's exit, or when no heap could be made.
#[cold]
#[inline(never)]
fn current_or_start() -> Option<&'static ThreadHeap> {
    if let Some(heap) = current() {
        return Some(heap);
    }
    if PHASE.get() != Phase::Fresh || debug_mode() {
        return None;
    }
    PHASE.set(Phase::Starting);
    let Some(heap) = adopt_or_create() else {
        PHASE.set(Phase::Detached);
        return None;
    };
    // Registers the exit hook (which may allocate: served by the fallback heap meanwhile).
    if EXIT.try_with(|_| ()).is_err() {
        // The thread is already exiting: it would never give the heap back.
        abandon(heap);
        PHASE.set(Phase::Detached);
        return None;
    }
    CURRENT.set(heap);
    HEADS.set(heap.heap.heads());
    refresh_fast();
    PHASE.set(Phase::Running);
    Some(heap)
}

/// A heap for a new thread: an abandoned one adopted, or a new one.
fn adopt_or_create() -> Option<&'static ThreadHeap> {
    let fallback = FALLBACK.load(Ordering::Acquire);
    let made = NEXT_ID.load(Ordering::Acquire);
    for id in 1..made {
        let Some(heap) = heap_by_id(id) else { continue };
        if ptr::eq(heap, fallback) || !heap.mailbox.is_abandoned() {
            continue;
        }
        if heap.mailbox.try_adopt() {
            // Whatever came home while nobody held it: the new owner's first slow path.
            heap.heap.take_mail();
            heap.heap.set_abandoned(false);
            return Some(heap);
        }
    }
    create()
}

/// Makes and registers a heap, owned by the caller.
fn create() -> Option<&'static ThreadHeap> {
    let id = NEXT_ID.fetch_add(1, Ordering::AcqRel);
    if id as usize >= SEGMENT * SEGMENT {
        return None;
    }
    let slot = registry_slot(id)?;
    let layout = Layout::new::<ThreadHeap>();
    // SAFETY: a non-zero-sized layout.
    let memory = unsafe { System.alloc(layout) }.cast::<ThreadHeap>();
    if memory.is_null() {
        return None;
    }
    // Registered heaps live forever (blocks and other threads may name them by number at any
    // time), so the memory is never freed, and the mailbox's address is final before the heap
    // that refers to it is made.
    // SAFETY: `memory` is fresh and sized for a `ThreadHeap`; the mailbox and id are written
    // before a reference to the mailbox is taken, and the whole value before it is read.
    let heap = unsafe {
        ptr::addr_of_mut!((*memory).mailbox).write(Mailbox::owned());
        ptr::addr_of_mut!((*memory).id).write(id);
        let link = ThreadLink {
            id,
            mailbox: &*ptr::addr_of!((*memory).mailbox),
            send_home,
            gate_turned: refresh_fast,
        };
        match Heap::for_thread(HeapConfig::new().debug(debug_mode()), link) {
            Ok(heap) => ptr::addr_of_mut!((*memory).heap).write(heap),
            Err(_) => {
                System.dealloc(memory.cast(), layout);
                return None;
            }
        }
        &*memory
    };
    debug_assert_eq!(heap.heap.config().pool_size, DEFAULT_POOL_SIZE);
    debug_assert_eq!(heap.heap.used_pools().addr(), memory.addr() + TABLE_OFFSET);
    // For `send_home`, which finds the heap from its table's address.
    let _ = memory.expose_provenance();
    // Release: a thread that finds the heap by number sees it whole.
    slot.store(memory, Ordering::Release);
    Some(heap)
}

/// The registry entry for heap `id`, its segment made if needed.
fn registry_slot(id: u32) -> Option<&'static AtomicPtr<ThreadHeap>> {
    let (seg, at) = (id as usize / SEGMENT, id as usize % SEGMENT);
    let mut segment = REGISTRY[seg].load(Ordering::Acquire);
    if segment.is_null() {
        let layout = Layout::new::<Segment>();
        // SAFETY: a non-zero-sized layout; all-zero bytes are a segment of null pointers.
        let fresh = unsafe { System.alloc_zeroed(layout) }.cast::<Segment>();
        if fresh.is_null() {
            return None;
        }
        match REGISTRY[seg].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => segment = fresh,
            Err(winner) => {
                // SAFETY: ours, allocated just above with this layout, never published.
                unsafe { System.dealloc(fresh.cast(), layout) };
                segment = winner;
            }
        }
    }
    // SAFETY: published segments are never freed.
    Some(unsafe { &(*segment)[at] })
}

/// The registered heap number `id`, if it is registered yet.
fn heap_by_id(id: u32) -> Option<&'static ThreadHeap> {
    let segment = REGISTRY.get(id as usize / SEGMENT)?.load(Ordering::Acquire);
    if segment.is_null() {
        return None;
    }
    // SAFETY: published segments are never freed.
    let heap = unsafe { &(*segment)[id as usize % SEGMENT] }.load(Ordering::Acquire);
    // SAFETY: published heaps are never freed.
    (!heap.is_null()).then(|| unsafe { &*heap })
}

/// The fallback heap, made (and abandoned at once, so anyone may claim it) on first use.
fn fallback() -> Option<&'static ThreadHeap> {
    let heap = FALLBACK.load(Ordering::Acquire);
    if !heap.is_null() {
        // SAFETY: published heaps are never freed.
        return Some(unsafe { &*heap });
    }
    let made = create()?;
    // SAFETY: just made, owned by us, nothing posted yet.
    let _ = unsafe { made.mailbox.abandon() };
    match FALLBACK.compare_exchange(
        ptr::null_mut(),
        ptr::from_ref(made).cast_mut(),
        Ordering::AcqRel,
        Ordering::Acquire,
    ) {
        Ok(_) => Some(made),
        // Another thread's fallback won; ours stays registered and abandoned, for adoption.
        // SAFETY: published heaps are never freed.
        Err(winner) => Some(unsafe { &*winner }),
    }
}

/// Runs `f` on the fallback heap, holding it (or within this thread's hold of it, when nested);
/// `None` when it cannot be made.
#[cold]
#[inline(never)]
fn with_fallback<R>(f: impl FnOnce(&Heap) -> R) -> Option<R> {
    let heap = fallback()?;
    if HOLDS_FALLBACK.get() {
        // Held by this very thread, further up the stack: the heap's own gate refuses a
        // re-entrant allocation (an `AllocError`) and defers a re-entrant free.
        return Some(f(&heap.heap));
    }
    claim_waiting(heap);
    /// Gives the fallback heap up when `f` returns, and also if it unwinds (a panic of
    /// `Global::trim` or `check` called by the user), so no other thread waits for it forever.
    struct Hold(&'static ThreadHeap);
    impl Drop for Hold {
        fn drop(&mut self) {
            HOLDS_FALLBACK.set(false);
            // SAFETY: claimed when the hold was made, and held since.
            unsafe { release_claimed(self.0) };
        }
    }
    HOLDS_FALLBACK.set(true);
    let _hold = Hold(heap);
    heap.heap.take_mail();
    Some(f(&heap.heap))
}

/// Gives up a claimed heap, taking any mail its senders left to the holder.
///
/// # Safety
///
/// The caller holds `heap`'s claim.
unsafe fn release_claimed(heap: &ThreadHeap) {
    loop {
        heap.heap.take_mail();
        // SAFETY: held, and the mail was just taken.
        if !unsafe { heap.mailbox.release() } {
            break;
        }
    }
}

/// Sends a block home to heap `owner`: its mailbox, or, when that heap is abandoned, straight
/// into its pool by the calling thread.
///
/// # Safety
///
/// `block` is a live pool block of heap `owner`, given up by the caller.
#[cold]
#[inline(never)]
unsafe fn send_home(block: NonNull<u8>, owner: Owner) {
    // The owner is the address of the heap's table, `TABLE_OFFSET` into the heap, which
    // `create` exposed: the heap is reached through that provenance, without touching its core
    // (which its owner may be using).
    // SAFETY: the caller's contract: the owner of a live block of a thread heap, a registered
    // heap (never freed) of which only the shared parts are used here.
    let heap = unsafe { &*ptr::with_exposed_provenance::<ThreadHeap>(owner - TABLE_OFFSET) };
    // The link is written through the arena's provenance (exposed when it was mapped), not the
    // caller's pointer, which may cover fewer bytes than a link (a one-byte `Box<str>`).
    // SAFETY: a pool block's address is non-null.
    let block =
        unsafe { NonNull::new_unchecked(ptr::with_exposed_provenance_mut(block.addr().get())) };
    // SAFETY: the caller's contract; pool blocks are 16-byte aligned and at least 16 bytes.
    if unsafe { heap.mailbox.post(block) } == Posted::Claimed {
        // SAFETY: the post claimed it for us.
        unsafe { release_claimed(heap) };
    }
}

/// Claims a claimable heap (the fallback heap), spinning a little and then yielding while
/// another thread holds it.
fn claim_waiting(heap: &ThreadHeap) {
    let mut spins = 0u32;
    while !heap.mailbox.try_claim() {
        spins += 1;
        if spins < 64 {
            core::hint::spin_loop();
        } else {
            std::thread::yield_now();
        }
    }
}

/// Abandons the calling thread's heap: its mail taken, its free lists emptied, what can go
/// given back; then anyone may claim or adopt it.
fn abandon(heap: &'static ThreadHeap) {
    // The heap is ours and idle (thread exit runs outside any call into it). An abandoned heap
    // keeps no spare arena: each goes back to the OS as its last block comes home.
    heap.heap.trim();
    heap.heap.set_abandoned(true);
    // SAFETY: we own it; `trim` took its mail.
    if unsafe { heap.mailbox.abandon() } {
        // SAFETY: `abandon` claimed it for us: mail arrived meanwhile.
        unsafe { release_claimed(heap) };
    }
}

/// Abandons the thread's heap when the thread exits.
struct ThreadExit;

impl Drop for ThreadExit {
    fn drop(&mut self) {
        let heap = CURRENT.replace(ptr::null());
        // Slots dropped from now on go to the fallback paths, not to a heap being abandoned.
        HEADS.set(sentinel());
        refresh_fast();
        PHASE.set(Phase::Detached);
        if !heap.is_null() {
            // SAFETY: registered heaps are never freed; this thread owned it until now.
            abandon(unsafe { &*heap });
        }
    }
}

/// Whether `layout` is served from pools (the rest is the system allocator's).
#[inline(always)]
fn is_pooled(layout: Layout) -> bool {
    layout.size() <= SMALL_REQUEST_THRESHOLD && layout.align() <= ALIGNMENT
}

/// Whether `layout` may take a fast path: pooled and not zero-sized. A constant for a constant
/// layout (`Box::new`): the heap's state is in the table `FAST` points at, not in a limit.
#[inline(always)]
fn takes_fast_path(layout: Layout) -> bool {
    layout.size().wrapping_sub(1) < SMALL_REQUEST_THRESHOLD && layout.align() <= ALIGNMENT
}

impl Global {
    /// A block for `layout` (non-zero), or null: the fast path is the thread's heap's.
    #[inline(always)]
    fn alloc_block(layout: Layout) -> *mut u8 {
        if takes_fast_path(layout) {
            // SAFETY: `FAST` is `CLOSED` or the table of this thread's heap with its gate open
            // (see `FAST`), which this pop may use as a fast path borrows the core: it calls
            // nothing and does not panic; the class of 1 to 512 bytes is below 32.
            let block = unsafe { (*FAST.get()).try_alloc(class_of(layout.size())) };
            if let Some(block) = block {
                return block.as_ptr();
            }
        }
        Self::alloc_cold(layout)
    }

    /// Everything but the fast path: large requests, a thread's first, a busy heap, a class
    /// that needs a new pool.
    #[cold]
    #[inline(never)]
    fn alloc_cold(layout: Layout) -> *mut u8 {
        // Before any block exists: a free on `CLOSED` reads the stand-in pool's header.
        expose_stand_in();
        if debug_mode() {
            let served = with_fallback(|heap| heap.allocate(layout).ok()).flatten();
            return served.map_or(ptr::null_mut(), |b| b.cast::<u8>().as_ptr());
        }
        if !is_pooled(layout) {
            // SAFETY: a non-zero size (every caller's contract).
            return unsafe { System.alloc(layout) };
        }
        let served = match current_or_start() {
            Some(heap) if !heap.heap.is_busy() => heap.heap.allocate(layout).ok(),
            _ => with_fallback(|heap| heap.allocate(layout).ok()).flatten(),
        };
        served.map_or(ptr::null_mut(), |b| b.cast::<u8>().as_ptr())
    }

    /// Frees a block of any thread's heap: the fast path is the owner's own free.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block from `alloc_block` for `layout`.
    #[inline(always)]
    unsafe fn dealloc_block(ptr: NonNull<u8>, layout: Layout) {
        // The size test first: outside debug mode, a small layout's block is a pool block, with
        // a pool header to read (in debug mode `FAST` is `CLOSED`, which reads none).
        if takes_fast_path(layout) {
            // SAFETY: `FAST` is `CLOSED` or the table of this thread's heap with its gate open
            // (see `FAST`), used as a fast path borrows the core; the caller's block is a live
            // pool block of some heap, given up (or, in debug mode, any pointer: `CLOSED`
            // reads only its stand-in header).
            match unsafe { (*FAST.get()).try_free(ptr) } {
                Freed::Done => return,
                Freed::Finish(pool) => {
                    // SAFETY: `Finish` comes only from the table of this thread's running
                    // heap, whose gate is open (see `FAST`), and nothing ran since.
                    return unsafe { (*CURRENT.get()).heap.finish_free(pool) };
                }
                Freed::NotMine => {}
            }
        }
        // SAFETY: forwarded contract.
        unsafe { Self::dealloc_cold(ptr, layout) }
    }

    /// # Safety
    ///
    /// As [`dealloc_block`](Self::dealloc_block).
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_cold(ptr: NonNull<u8>, layout: Layout) {
        if debug_mode() {
            // SAFETY: in debug mode every block is the shared debug heap's, allocated for
            // `layout` (the caller's contract); the heap checks that it is.
            with_fallback(|heap| unsafe { heap.deallocate(ptr, layout) });
            return;
        }
        if !is_pooled(layout) {
            // SAFETY: a system block of `layout`.
            return unsafe { System.dealloc(ptr.as_ptr(), layout) };
        }
        // Another thread's block, or any block while this thread has no heap, or one of this
        // thread's own while its heap is busy (it takes it from its mailbox on its next slow
        // path): the fast path took everything else.
        // SAFETY: a live pool block of the default geometry.
        let owner = unsafe { Pool::owner_of(ptr.as_ptr(), DEFAULT_POOL_SIZE) };
        // SAFETY: a live block of heap `owner`, given up.
        unsafe { send_home(ptr, owner) }
    }

    /// The calling thread's heap figures, in CPython's layout (free lists included). Other
    /// threads' blocks are in their own heaps' figures.
    ///
    /// # Panics
    ///
    /// When the thread has no heap of its own (called from a thread-local destructor after
    /// its heap was abandoned), and in debug mode (`PYALLOC_DEBUG`), where the one shared heap
    /// would have to allocate the figures' tables from itself while it is being read.
    pub fn stats() -> Stats {
        refuse_in_debug_mode("stats");
        match current_or_start() {
            Some(heap) => heap.heap.stats(),
            None => panic!("pyalloc: Global::stats() on a thread whose heap is gone (exiting)"),
        }
    }

    /// Gives back to the OS what the calling thread's heap can (see [`Heap::trim`]), and
    /// frees what other threads sent home first. Does nothing on a thread without a heap. In
    /// debug mode, trims the shared debug heap.
    pub fn trim() -> TrimReport {
        if debug_mode() {
            return with_fallback(Heap::trim).unwrap_or_default();
        }
        current_or_start().map_or_else(TrimReport::default, |heap| heap.heap.trim())
    }

    /// Verifies the calling thread's heap (see [`Heap::check`]); in debug mode, the shared
    /// debug heap, every guard and quarantined block included.
    pub fn check() -> Result<(), String> {
        if debug_mode() {
            return with_fallback(Heap::check).unwrap_or(Ok(()));
        }
        current_or_start().map_or(Ok(()), |heap| heap.heap.check())
    }

    /// The process-wide summary: every registered heap, read exactly where it can be (the
    /// calling thread's own, and every abandoned one, claimed for the reading), and counted
    /// where it cannot (heaps that other running threads own).
    ///
    /// # Panics
    ///
    /// As [`stats`](Self::stats): in debug mode, and on a thread whose heap is gone (the
    /// figures' tables are allocated from the calling thread's heap while the others are held).
    pub fn process_stats() -> ProcessStats {
        refuse_in_debug_mode("process_stats");
        let Some(mine) = current_or_start() else {
            panic!("pyalloc: Global::process_stats() on a thread whose heap is gone (exiting)")
        };
        let made = NEXT_ID.load(Ordering::Acquire);
        let mut summary = ProcessStats::default();
        for id in 1..made {
            let Some(heap) = heap_by_id(id) else { continue };
            summary.heaps += 1;
            let stats = if ptr::eq(mine, heap) {
                heap.heap.stats()
            } else if heap.mailbox.try_claim() {
                let stats = heap.heap.stats();
                // SAFETY: claimed just above.
                unsafe { release_claimed(heap) };
                summary.heaps_abandoned += 1;
                stats
            } else {
                summary.heaps_elsewhere += 1;
                continue;
            };
            summary.add(&stats);
        }
        summary
    }

    /// A slot for `T` from the calling thread's free list (else layer 2): the hit path is the
    /// thread's heads base (one thread-local load), `T`'s offset, and a list pop.
    #[inline(always)]
    pub(crate) fn pop_slot<T: FreeListed>() -> Result<NonNull<u8>, AllocError> {
        let spec = const { &ListSpec::of::<T>() };
        // SAFETY: `HEADS` is a live table of the thread's heap, or the sentinel.
        let head = unsafe { head_at(HEADS.get(), T::free_list_id().offset()) };
        match head.pop(spec.slot_layout.size()) {
            Some(slot) => Ok(slot),
            None => Self::pop_slot_cold(T::free_list_id(), spec),
        }
    }

    #[cold]
    #[inline(never)]
    fn pop_slot_cold(id: &'static FreeListId, spec: &ListSpec) -> Result<NonNull<u8>, AllocError> {
        match current_or_start() {
            Some(heap) if !heap.heap.is_busy() => {
                let heads = heap.heap.heads();
                if HEADS.replace(heads) != heads {
                    // The thread's copy was behind (its first request, or the heap's first
                    // typed list): the hit path again, on the heap's table.
                    // SAFETY: the heap's live table, and a type's offset.
                    let head = unsafe { head_at(heads, id.offset()) };
                    if let Some(slot) = head.pop(spec.slot_layout.size()) {
                        return Ok(slot);
                    }
                }
                let slot = heap.heap.pop_typed_slow(id, spec);
                HEADS.set(heap.heap.heads());
                slot
            }
            // No list to take from: a block through the global paths.
            _ => NonNull::new(Self::alloc_block(spec.slot_layout)).ok_or(AllocError),
        }
    }

    /// Returns a slot of `T` to the calling thread's free list (else frees it home).
    ///
    /// # Safety
    ///
    /// `slot` came from [`pop_slot::<T>`](Self::pop_slot), on any thread, and holds no live
    /// value.
    #[inline(always)]
    pub(crate) unsafe fn push_slot<T: FreeListed>(slot: NonNull<u8>) {
        let spec = const { &ListSpec::of::<T>() };
        // SAFETY: `HEADS` is a live table of the thread's heap, or the sentinel.
        let head = unsafe { head_at(HEADS.get(), T::free_list_id().offset()) };
        // SAFETY: a slot of `T`'s layout from a thread heap: the calling thread's list takes
        // it whichever heap made it (a thread heap's layer 2 sends foreign ones home when it
        // frees them).
        if unsafe { head.try_push(slot, spec.slot_layout.size()) } {
            return;
        }
        // SAFETY: forwarded contract.
        unsafe { Self::push_slot_cold(T::free_list_id(), spec, slot) }
    }

    /// # Safety
    ///
    /// As [`push_slot`](Self::push_slot).
    #[cold]
    #[inline(never)]
    unsafe fn push_slot_cold(id: &'static FreeListId, spec: &ListSpec, slot: NonNull<u8>) {
        match current_or_start() {
            Some(heap) if !heap.heap.is_busy() => {
                let heads = heap.heap.heads();
                if HEADS.replace(heads) != heads {
                    // As in `pop_slot_cold`.
                    // SAFETY: the heap's live table and a type's offset; forwarded contract.
                    let head = unsafe { head_at(heads, id.offset()) };
                    // SAFETY: forwarded contract (as in `push_slot`).
                    if unsafe { head.try_push(slot, spec.slot_layout.size()) } {
                        return;
                    }
                }
                // SAFETY: forwarded contract (as in `push_slot`).
                unsafe { heap.heap.push_typed_slow(id, spec, slot) };
                HEADS.set(heap.heap.heads());
            }
            // SAFETY: the slot is a global block of its slot layout, given up.
            _ => unsafe { GlobalAlloc::dealloc(&Global, slot.as_ptr(), spec.slot_layout) },
        }
    }
}

/// Panics for a figures call in debug mode (see [`Global::stats`]).
fn refuse_in_debug_mode(what: &str) {
    assert!(
        !debug_mode(),
        "pyalloc: Global::{what}() is not available in debug mode (PYALLOC_DEBUG): the shared \
         debug heap would allocate the figures' tables from itself while being read"
    );
}

/// The figures of every heap of [`Global`], from [`Global::process_stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessStats {
    /// Heaps registered (the fallback heap included).
    pub heaps: usize,
    /// Heaps whose threads exited (or the fallback), read by claiming them.
    pub heaps_abandoned: usize,
    /// Heaps that other running threads own: counted, not read.
    pub heaps_elsewhere: usize,
    /// Arenas mapped by the heaps read.
    pub arenas: usize,
    /// Bytes of those arenas.
    pub arena_bytes: usize,
    /// Blocks handed out and not freed, in the heaps read (slots resting on free lists count
    /// as free).
    pub blocks_in_use: usize,
    /// Bytes of those blocks.
    pub bytes_in_use: usize,
    /// Slots resting on the free lists of the heaps read.
    pub free_list_slots: usize,
}

// SAFETY: `alloc` returns null or a block valid for `layout` (a pool block of the class
// `layout.size()` rounds to, 16-aligned, or a system block), never handed out twice until
// freed; `dealloc` takes back exactly those; `realloc` keeps the contents up to the smaller
// size.
unsafe impl GlobalAlloc for Global {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Self::alloc_block(layout)
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_pooled(layout) || debug_mode() {
            let block = Self::alloc_block(layout);
            if !block.is_null() {
                // SAFETY: a fresh block of at least `layout.size()` bytes.
                unsafe { block.write_bytes(0, layout.size()) };
            }
            block
        } else {
            // SAFETY: forwarded contract.
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract: a live block this allocator gave for `layout`, never
        // null.
        unsafe { Self::dealloc_block(NonNull::new_unchecked(ptr), layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, fits `isize`.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        if debug_mode() {
            // SAFETY: a live block of the debug heap for `layout` (the caller's contract).
            let moved = with_fallback(|heap| unsafe {
                if new_size >= layout.size() {
                    heap.grow(NonNull::new_unchecked(ptr), layout, new)
                } else {
                    heap.shrink(NonNull::new_unchecked(ptr), layout, new)
                }
            });
            return moved
                .and_then(Result::ok)
                .map_or(ptr::null_mut(), |b| b.cast::<u8>().as_ptr());
        }
        match (is_pooled(layout), is_pooled(new)) {
            (true, true) => {
                // CPython's rule (as `Heap`): in place when the block holds the new size and,
                // when shrinking, three quarters of it stay used. The class is constant while
                // the block lives, so any thread may read it.
                // SAFETY: a live pool block.
                let held = block_size(unsafe { Pool::class_of(ptr, DEFAULT_POOL_SIZE) });
                if new_size <= held && (new_size >= layout.size() || 4 * new_size > 3 * held) {
                    return ptr;
                }
            }
            // SAFETY: a live system block of `layout`; forwarded contract for `new_size`.
            (false, false) => return unsafe { System.realloc(ptr, layout, new_size) },
            _ => {}
        }
        // SAFETY: a non-zero size (the caller's contract).
        let fresh = unsafe { self.alloc(new) };
        if !fresh.is_null() {
            // SAFETY: both blocks live and distinct, each at least the smaller size long; the
            // old one is then freed with its own layout.
            unsafe {
                ptr::copy_nonoverlapping(ptr, fresh, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        fresh
    }
}

impl Global {
    /// `allocate` and `allocate_zeroed`: a dangling block for a zero size, else `alloc`'s.
    #[inline(always)]
    fn allocate_with(
        &self,
        layout: Layout,
        alloc: unsafe fn(&Self, Layout) -> *mut u8,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if layout.size() == 0 {
            return Ok(slice(dangling(layout.align()), 0));
        }
        // SAFETY: a non-zero size, as `GlobalAlloc`'s methods require.
        let block = unsafe { alloc(self, layout) };
        NonNull::new(block)
            .map(|b| slice(b, layout.size()))
            .ok_or(AllocError)
    }
}

// SAFETY: blocks stay valid until deallocated (`Global` is never dropped: it is a unit), do not
// overlap, and `grow`/`shrink` (through `GlobalAlloc::realloc`, which keeps the alignment)
// preserve the contents; every copy of `Global` is the same allocator.
unsafe impl Allocator for Global {
    #[inline]
    fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_with(layout, <Self as GlobalAlloc>::alloc)
    }

    #[inline]
    fn allocate_zeroed(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
        self.allocate_with(layout, <Self as GlobalAlloc>::alloc_zeroed)
    }

    #[inline]
    unsafe fn deallocate(&self, ptr: NonNull<u8>, layout: Layout) {
        if layout.size() != 0 {
            // SAFETY: forwarded contract: a live block of ours for `layout`.
            unsafe { GlobalAlloc::dealloc(self, ptr.as_ptr(), layout) }
        }
    }

    unsafe fn grow(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded contract.
        unsafe { self.resize(ptr, old, new) }
    }

    unsafe fn shrink(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        // SAFETY: forwarded contract.
        unsafe { self.resize(ptr, old, new) }
    }
}

impl Global {
    /// `grow` and `shrink`: `realloc` when the alignment stays and neither side is zero-sized,
    /// else a fresh block and a copy.
    ///
    /// # Safety
    ///
    /// As [`Allocator::grow`].
    unsafe fn resize(
        &self,
        ptr: NonNull<u8>,
        old: Layout,
        new: Layout,
    ) -> Result<NonNull<[u8]>, AllocError> {
        if old.size() != 0 && new.size() != 0 && old.align() == new.align() {
            // SAFETY: forwarded contract: a live block of `old`, a valid new size.
            let moved = unsafe { GlobalAlloc::realloc(self, ptr.as_ptr(), old, new.size()) };
            return NonNull::new(moved)
                .map(|b| slice(b, new.size()))
                .ok_or(AllocError);
        }
        let fresh = self.allocate(new)?;
        // SAFETY: both live and distinct; the old block is then freed with its layout.
        unsafe {
            ptr::copy_nonoverlapping(
                ptr.as_ptr(),
                fresh.cast::<u8>().as_ptr(),
                old.size().min(new.size()),
            );
            self.deallocate(ptr, old);
        }
        Ok(fresh)
    }
}

// ----------------------------------------------------------------------------------------------
// Without a size: C's `malloc`/`free` (pyalloc-malloc, the LD_PRELOAD library)

/// Whether `fork_prepare` holds the fallback heap for the fork under way.
static FORK_HOLD: AtomicBool = AtomicBool::new(false);

/// C's interface, where a free carries no size and a pointer may be anyone's.
///
/// A pointer handed to [`dealloc_unsized`](Global::dealloc_unsized) may be a pool block of any
/// thread's heap, a large block (glibc's `malloc`'s, as in CPython), or a block the system
/// allocator gave before pyalloc was loaded. [`Global::owns`] tells them apart from the
/// process-wide arena map alone (`process_map.rs`: one bit per 1 MiB arena slot, never a read
/// of the memory at the pointer); for a block of ours, the pool header (the
/// address masked) names the owner heap and the size class, so the free goes to the owner's
/// fast path or mailbox exactly as a sized free does, and the usable size is the class's block
/// size. Everything else goes to the system allocator.
impl Global {
    /// Whether `ptr` lies in an arena of one of `Global`'s heaps: safe for any pointer,
    /// whoever allocated it (it reads a process-wide bitmap, not the memory at `ptr`).
    #[inline(always)]
    pub fn owns(ptr: *const u8) -> bool {
        crate::process_map::contains(ptr.addr())
    }

    /// `malloc`: `size` bytes aligned to 16, from the calling thread's pools up to 512 bytes,
    /// else from the system allocator; 0 bytes is a distinct 1-byte block. Null when the memory
    /// cannot be had (the caller sets `errno`).
    #[inline]
    pub fn alloc_unsized(size: usize) -> *mut u8 {
        match Layout::from_size_align(size.max(1), ALIGNMENT) {
            Ok(layout) => Self::alloc_block(layout),
            Err(_) => ptr::null_mut(),
        }
    }

    /// `calloc`'s memory: as [`alloc_unsized`](Self::alloc_unsized), the `size` bytes zeroed (a
    /// pool block, which may be reused, by writing; a large one by the system's `calloc`).
    pub fn alloc_zeroed_unsized(size: usize) -> *mut u8 {
        match Layout::from_size_align(size.max(1), ALIGNMENT) {
            // SAFETY: a non-zero size.
            Ok(layout) => unsafe { <Self as GlobalAlloc>::alloc_zeroed(&Global, layout) },
            Err(_) => ptr::null_mut(),
        }
    }

    /// `free`: a block of any of `Global`'s heaps goes home (to this thread's pool, or the
    /// owner's mailbox); any other pointer to the system allocator's `free`.
    ///
    /// # Safety
    ///
    /// `ptr` is a live block from [`alloc_unsized`](Self::alloc_unsized) (or any of
    /// `Global`'s allocations of at most 16-byte alignment), or a live block of the system
    /// allocator, given up by the caller.
    #[inline]
    pub unsafe fn dealloc_unsized(ptr: NonNull<u8>) {
        // In one of our arenas: a pool block, which the sized fast path frees when it is this
        // thread's (in debug mode `FAST` is `CLOSED`, on which it fails).
        if Self::owns(ptr.as_ptr()) {
            // SAFETY: as in `dealloc_block`: `FAST` is `CLOSED` or the table of this thread's
            // heap with its gate open; the block is a live pool block of some heap, given up.
            match unsafe { (*FAST.get()).try_free(ptr) } {
                Freed::Done => return,
                Freed::Finish(pool) => {
                    // SAFETY: as in `dealloc_block`.
                    return unsafe { (*CURRENT.get()).heap.finish_free(pool) };
                }
                Freed::NotMine => {}
            }
        }
        // SAFETY: forwarded contract.
        unsafe { Self::dealloc_unsized_cold(ptr) }
    }

    /// # Safety
    ///
    /// As [`dealloc_unsized`](Self::dealloc_unsized).
    #[cold]
    #[inline(never)]
    unsafe fn dealloc_unsized_cold(ptr: NonNull<u8>) {
        if debug_mode() {
            // SAFETY: every block of `Global` is the shared debug heap's, which checks it;
            // any other pointer is the system's (the caller's contract), which it passes on.
            with_fallback(|heap| unsafe { heap.deallocate_unsized(ptr) });
            return;
        }
        if !Self::owns(ptr.as_ptr()) {
            // SAFETY: not ours, so a live system block (the caller's contract).
            return unsafe { crate::sys::free(ptr.as_ptr()) };
        }
        // SAFETY: a live pool block of the default geometry.
        let owner = unsafe { Pool::owner_of(ptr.as_ptr(), DEFAULT_POOL_SIZE) };
        // SAFETY: a live block of heap `owner`, given up; its own thread's block while its heap
        // is busy goes to the mailbox too, and is freed on the next slow path.
        unsafe { send_home(ptr, owner) }
    }

    /// `malloc_usable_size`: a pool block's class size, or the system allocator's answer.
    ///
    /// # Safety
    ///
    /// As [`dealloc_unsized`](Self::dealloc_unsized), except that the block stays live.
    pub unsafe fn usable_size(ptr: NonNull<u8>) -> usize {
        if debug_mode() {
            // SAFETY: as in `dealloc_unsized_cold`; the block stays live.
            return with_fallback(|heap| unsafe { heap.usable_size(ptr) }).unwrap_or(0);
        }
        if Self::owns(ptr.as_ptr()) {
            // SAFETY: a live pool block; its class is constant while it lives.
            block_size(unsafe { Pool::class_of(ptr.as_ptr(), DEFAULT_POOL_SIZE) })
        } else {
            // SAFETY: not ours, so a live system block.
            unsafe { crate::sys::malloc_usable_size(ptr.as_ptr()) }
        }
    }

    /// `realloc` with a non-zero size, by CPython's rule (`pymalloc_realloc`): a pool block
    /// stays in place when the new size fits its class and more than three quarters of it stay
    /// used, else moves (to another class, or to the system allocator past 512 bytes); a
    /// system block is the system's to `realloc` (so a large block grows in place or by
    /// `mremap`, and a block from before pyalloc was loaded stays the system's). On failure
    /// (null) the old block is untouched and still live.
    ///
    /// # Safety
    ///
    /// As [`dealloc_unsized`](Self::dealloc_unsized); on success the old block is given up.
    pub unsafe fn realloc_unsized(ptr: NonNull<u8>, new_size: usize) -> *mut u8 {
        if debug_mode() {
            // SAFETY: as in `dealloc_unsized_cold`.
            let moved =
                with_fallback(|heap| unsafe { heap.reallocate_unsized(Some(ptr), new_size) });
            return moved
                .and_then(Result::ok)
                .map_or(ptr::null_mut(), NonNull::as_ptr);
        }
        if !Self::owns(ptr.as_ptr()) {
            // SAFETY: a live system block (the caller's contract).
            return unsafe { crate::sys::realloc(ptr.as_ptr(), new_size.max(1)) };
        }
        // SAFETY: a live pool block; its class is constant while it lives.
        let held = block_size(unsafe { Pool::class_of(ptr.as_ptr(), DEFAULT_POOL_SIZE) });
        if new_size <= held && 4 * new_size > 3 * held {
            return ptr.as_ptr();
        }
        let fresh = Self::alloc_unsized(new_size);
        if !fresh.is_null() {
            // SAFETY: both live and distinct, each at least the smaller size long; the old one
            // is then given up (the caller's contract).
            unsafe {
                ptr::copy_nonoverlapping(ptr.as_ptr(), fresh, held.min(new_size));
                Self::dealloc_unsized(ptr);
            }
        }
        fresh
    }

    /// The `prepare` handler of `pthread_atfork`: takes the fallback heap, so that the child
    /// never starts with it held by a thread that does not exist there (every other claim in
    /// the core is non-blocking: see [`fork_child`](Self::fork_child)). Call it, and then
    /// exactly one of [`fork_parent`](Self::fork_parent) or `fork_child`, around each `fork`.
    pub fn fork_prepare() {
        if HOLDS_FALLBACK.get() {
            return;
        }
        let Some(heap) = fallback() else { return };
        claim_waiting(heap);
        // Requests of this thread while it holds the fallback heap (a later prepare handler,
        // fork's own) run within the hold, as in `with_fallback`.
        HOLDS_FALLBACK.set(true);
        FORK_HOLD.store(true, Ordering::Relaxed);
    }

    /// The `parent` handler of `pthread_atfork`: gives the fallback heap back.
    pub fn fork_parent() {
        Self::fork_release();
    }

    /// The `child` handler of `pthread_atfork`: gives the fallback heap back in the child.
    ///
    /// In the child only the forking thread exists. Its own heap goes on as before. The heaps
    /// of the other threads stay *owned* by threads that are gone: nobody adopts them (their
    /// state may be mid-operation), and a block of theirs freed in the child is posted to
    /// their mailboxes (a lock-free push) and never reused, a leak bounded by what was live at
    /// the fork. Heaps abandoned at the fork stay adoptable. No path blocks on any of them:
    /// the fallback heap is the only one anything waits for, and `fork_prepare` held it.
    pub fn fork_child() {
        Self::fork_release();
    }

    fn fork_release() {
        if FORK_HOLD.swap(false, Ordering::Relaxed) {
            HOLDS_FALLBACK.set(false);
            if let Some(heap) = fallback() {
                // SAFETY: claimed by `fork_prepare` on this thread, held since.
                unsafe { release_claimed(heap) };
            }
        }
    }

    /// As [`process_stats`](Self::process_stats), callable on a thread whose heap is gone
    /// (from an `atexit` handler, after the main thread's thread-local destructors ran): every
    /// heap that can be claimed is read, the fallback heap included.
    ///
    /// # Safety
    ///
    /// `Global` is not the global allocator of the caller's code: the figures' tables are
    /// allocated while a heap is held, and a request for them reaching `Global` from a thread
    /// without a heap would wait for the fallback heap this very call holds. (pyalloc-malloc's
    /// own Rust code allocates from glibc.)
    pub unsafe fn process_stats_detached() -> ProcessStats {
        if current().is_some() && !debug_mode() {
            return Self::process_stats();
        }
        let made = NEXT_ID.load(Ordering::Acquire);
        let mut summary = ProcessStats::default();
        for id in 1..made {
            let Some(heap) = heap_by_id(id) else { continue };
            summary.heaps += 1;
            if !heap.mailbox.try_claim() {
                summary.heaps_elsewhere += 1;
                continue;
            }
            let stats = heap.heap.stats();
            // SAFETY: claimed just above.
            unsafe { release_claimed(heap) };
            summary.heaps_abandoned += 1;
            summary.add(&stats);
        }
        summary
    }
}

impl ProcessStats {
    /// Adds one heap's figures.
    fn add(&mut self, stats: &Stats) {
        self.arenas += stats.arenas_current();
        self.arena_bytes += stats.arena_bytes();
        self.blocks_in_use += stats.blocks_in_use();
        self.bytes_in_use += stats.bytes_in_allocated_blocks();
        self.free_list_slots += stats
            .free_lists()
            .iter()
            .map(|l| l.stats.len)
            .sum::<usize>();
    }
}
