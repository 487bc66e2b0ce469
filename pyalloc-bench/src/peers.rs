//! The adapter every measurement goes through ([`Peer`]) and the allocators behind it.
//!
//! | key | peer | release call |
//! | --- | --- | --- |
//! | `pyalloc` | a fresh [`pyalloc::Heap`] through `allocator_api2::Allocator`, release policy from `PYALLOC_RELEASE` | `Heap::trim()` |
//! | `pyalloc:POLICY` | the same with the release policy `POLICY` (`immediate`, or a delay such as `10ms`) | `Heap::trim()` |
//! | `glibc` | `std::alloc::System` (glibc's malloc) | `malloc_trim(0)` |
//! | `mimalloc` | the `mimalloc` crate's build (mimalloc 3) through its plain entry points, `mi_malloc`, `mi_zalloc`, `mi_realloc`, `mi_free`: what a C program calls (prefixed `mi_*` symbols) | `mi_collect(true)` |
//! | `mimalloc-globalalloc` | the same build through `mimalloc::MiMalloc`'s `GlobalAlloc`: `mi_malloc_aligned`, `mi_zalloc_aligned`, `mi_realloc_aligned`, `mi_free` | `mi_collect(true)` |
//! | `jemalloc` | `tikv_jemallocator::Jemalloc` through `GlobalAlloc` (prefixed `_rjem_*`) | tcache flush + purge of all arenas |
//! | `pymalloc` | CPython's `PyObject_Malloc/Realloc/Free` from libpython | none (pymalloc frees empty arenas itself) |
//! | `bumpalo` | a fresh `bumpalo::Bump`; free is a no-op (the bound) | none |
//! | `lifo-floor` | one bare LIFO list per 16-byte class, carved from 256 KiB chunks, no pools | none |
//! | `cabi:NAME` | any malloc-compatible shared library, through `malloc`/`calloc`/`realloc`/`free` function pointers ([`crate::cabi`]) | `malloc_trim(0)` or `mi_collect(true)` when it has them |
//!
//! None of them is the process's `#[global_allocator]`, and mimalloc and jemalloc keep their
//! prefixed symbols, so `glibc` really is glibc.
//!
//! **pyalloc's release policy.** The environment variable `PYALLOC_RELEASE` sets the
//! [`Release`] policy of every `pyalloc` heap the tools build (this module's [`PyallocPeer`],
//! and the heaps of `--bin pairs`' `pyalloc-pooled` and of the layer-3 benchmark):
//! `immediate` ([`Release::Immediate`], CPython's), or a delay, an integer with a unit `ns`,
//! `us`, `ms` or `s` (`10ms`, `1s`: [`Release::Decay`]). Unset or empty, the heaps take
//! `HeapConfig::new()`'s policy; anything else stops the tool with a message. To compare
//! policies side by side in one run, name them as peers: `--peers
//! pyalloc:immediate,pyalloc:10ms,pyalloc:1s,mimalloc` (these ignore the variable; the ratio
//! columns stay relative to plain `pyalloc`). Read once per process, as [`env_release`].
//!
//! Peers are created per run by [`with_peer`], which hands a concrete type to a
//! [`PeerVisitor`]: the timed loops are monomorphised per peer, with no dynamic dispatch.

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::ptr::{self, NonNull};
use core::time::Duration;
use std::alloc::System;
use std::sync::{Mutex, OnceLock};

use pyalloc::{Allocator, Heap, HeapConfig, Release};

use crate::cabi::{CabiId, CabiPeer};

/// An allocator under measurement, called in-process.
///
/// Every method takes `&self`: a peer is used by one thread, and nothing it hands out borrows
/// it.
pub trait Peer {
    /// The label printed in tables.
    fn name(&self) -> &'static str;

    /// Allocates a block for `layout`, or returns null.
    ///
    /// # Safety
    ///
    /// - `layout.size()` is not zero.
    unsafe fn alloc(&self, layout: Layout) -> *mut u8;

    /// Allocates a zero-filled block for `layout`, or returns null.
    ///
    /// # Safety
    ///
    /// - `layout.size()` is not zero.
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8;

    /// Frees a block.
    ///
    /// # Safety
    ///
    /// - `ptr` was returned by this peer for `layout` (or resized to it) and is live;
    /// - it is not used afterwards.
    unsafe fn free(&self, ptr: *mut u8, layout: Layout);

    /// Resizes a block to `new_size` bytes (same alignment), keeping `min(old, new)` bytes, or
    /// returns null and leaves the old block alive.
    ///
    /// # Safety
    ///
    /// - `ptr` was returned by this peer for `old` and is live;
    /// - `new_size` is not zero;
    /// - on success `ptr` is not used afterwards.
    unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8;

    /// Gives memory back to the OS by the allocator's own call (see the module table).
    fn release(&self);

    /// Forgets every block at once: only alloc-only peers (bumpalo) do anything, so long
    /// benchmarks do not grow without bound. Called outside timed regions.
    ///
    /// # Safety
    ///
    /// - no block of this peer is live (none is used afterwards).
    unsafe fn recycle(&self) {}
}

/// Receives the concrete peer built by [`with_peer`].
pub trait PeerVisitor {
    /// What the visit computes.
    type Output;
    /// Runs with a freshly built peer.
    fn visit<P: Peer>(self, peer: &P) -> Self::Output;
}

/// The peers, in table order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// [`PyallocPeer`].
    Pyalloc,
    /// [`GlibcPeer`].
    Glibc,
    /// [`MimallocPeer`].
    Mimalloc,
    /// [`MimallocGlobalAllocPeer`].
    MimallocGlobalAlloc,
    /// [`JemallocPeer`].
    Jemalloc,
    /// [`PymallocPeer`].
    Pymalloc,
    /// [`BumpaloPeer`].
    Bumpalo,
    /// [`LifoFloorPeer`].
    LifoFloor,
    /// [`CabiPeer`]: a shared library loaded by [`crate::cabi::register`]. Not in
    /// [`ALL`](Self::ALL); named on the command line as `cabi:NAME=PATH`.
    Cabi(CabiId),
    /// [`PyallocPeer`] with a release policy of its own, whatever `PYALLOC_RELEASE` says.
    /// Not in [`ALL`](Self::ALL); named on the command line as `pyalloc:POLICY`
    /// (`pyalloc:immediate`, `pyalloc:10ms`).
    PyallocWith(Policy),
}

/// A [`Release`] policy as a peer's key: `None` is [`Release::Immediate`], a delay
/// [`Release::Decay`] (`Release` itself is not `Hash`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Policy(pub Option<Duration>);

impl Policy {
    /// The policy as the heap's configuration takes it.
    pub fn release(self) -> Release {
        match self.0 {
            None => Release::Immediate,
            Some(delay) => Release::Decay(delay),
        }
    }

    /// The policy of `release`.
    pub fn of(release: Release) -> Policy {
        match release {
            Release::Immediate => Policy(None),
            Release::Decay(delay) => Policy(Some(delay)),
        }
    }

    /// `immediate`, or the delay with the largest unit that writes it whole (`10ms`, `1s`).
    pub fn text(self) -> String {
        let Some(delay) = self.0 else {
            return "immediate".into();
        };
        let ns = delay.as_nanos();
        [
            (1_000_000_000, "s"),
            (1_000_000, "ms"),
            (1_000, "us"),
            (1, "ns"),
        ]
        .into_iter()
        .find(|&(unit, _)| ns % unit == 0 && ns > 0)
        .map_or_else(
            || "0ns".into(),
            |(unit, name)| format!("{}{name}", ns / unit),
        )
    }
}

/// Parses a release policy: `immediate`, or a delay written as an integer and a unit `ns`,
/// `us`, `ms` or `s` (`10ms`, `1s`), which is [`Release::Decay`].
pub fn parse_release(text: &str) -> Option<Release> {
    let text = text.trim();
    if text.eq_ignore_ascii_case("immediate") {
        return Some(Release::Immediate);
    }
    let digits = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(digits);
    let n: u64 = number.parse().ok()?;
    let delay = match unit {
        "ns" => Duration::from_nanos(n),
        "us" => Duration::from_micros(n),
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        _ => return None,
    };
    Some(Release::Decay(delay))
}

/// The release policy `PYALLOC_RELEASE` asks for, `HeapConfig::new()`'s when it is unset or
/// empty; an error naming the variable when it cannot be read. Read once per process.
pub fn env_release() -> Result<Release, String> {
    static POLICY: OnceLock<Result<Release, String>> = OnceLock::new();
    POLICY
        .get_or_init(|| match std::env::var("PYALLOC_RELEASE") {
            Err(std::env::VarError::NotPresent) => Ok(HeapConfig::new().get_release()),
            Ok(text) if text.trim().is_empty() => Ok(HeapConfig::new().get_release()),
            Ok(text) => parse_release(&text).ok_or_else(|| {
                format!("PYALLOC_RELEASE={text:?}: expected `immediate` or a delay such as `10ms` or `1s`")
            }),
            Err(e) => Err(format!("PYALLOC_RELEASE: {e}")),
        })
        .clone()
}

/// The configuration of every heap the tools build: `HeapConfig::new()` with the policy of
/// [`env_release`]. Panics with its message when `PYALLOC_RELEASE` is malformed.
pub fn pyalloc_config() -> HeapConfig {
    HeapConfig::new().release(env_release().unwrap_or_else(|e| panic!("{e}")))
}

/// `s` made `'static`, each distinct string leaked once (peer keys and labels are
/// `&'static str`; there are a handful per process).
fn intern(s: String) -> &'static str {
    static TABLE: Mutex<Vec<&'static str>> = Mutex::new(Vec::new());
    let mut table = TABLE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(&known) = table.iter().find(|&&t| t == s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.into_boxed_str());
    table.push(leaked);
    leaked
}

impl PeerKind {
    /// Every peer, pyalloc first.
    pub const ALL: [PeerKind; 8] = [
        PeerKind::Pyalloc,
        PeerKind::Glibc,
        PeerKind::Mimalloc,
        PeerKind::MimallocGlobalAlloc,
        PeerKind::Jemalloc,
        PeerKind::Pymalloc,
        PeerKind::Bumpalo,
        PeerKind::LifoFloor,
    ];

    /// The command-line key (`--peers pyalloc,glibc`).
    pub fn key(self) -> &'static str {
        match self {
            PeerKind::Pyalloc => "pyalloc",
            PeerKind::Glibc => "glibc",
            PeerKind::Mimalloc => "mimalloc",
            PeerKind::MimallocGlobalAlloc => "mimalloc-globalalloc",
            PeerKind::Jemalloc => "jemalloc",
            PeerKind::Pymalloc => "pymalloc",
            PeerKind::Bumpalo => "bumpalo",
            PeerKind::LifoFloor => "lifo-floor",
            PeerKind::Cabi(id) => id.lib().key,
            PeerKind::PyallocWith(policy) => intern(format!("pyalloc:{}", policy.text())),
        }
    }

    /// The label printed in tables.
    pub fn label(self) -> &'static str {
        match self {
            // The policy is named when `PYALLOC_RELEASE` chose one.
            PeerKind::Pyalloc => match std::env::var_os("PYALLOC_RELEASE") {
                Some(v) if !v.is_empty() => match env_release() {
                    Ok(release) => intern(format!("pyalloc ({})", Policy::of(release).text())),
                    Err(_) => "pyalloc",
                },
                _ => "pyalloc",
            },
            PeerKind::Glibc => "glibc",
            PeerKind::Mimalloc => "mimalloc",
            PeerKind::MimallocGlobalAlloc => "mimalloc (crate's GlobalAlloc)",
            PeerKind::Jemalloc => "jemalloc",
            PeerKind::Pymalloc => "pymalloc (CPython)",
            PeerKind::Bumpalo => "bumpalo (alloc only, bound)",
            PeerKind::LifoFloor => "lifo-floor",
            PeerKind::Cabi(id) => id.lib().name,
            PeerKind::PyallocWith(policy) => intern(format!("pyalloc ({})", policy.text())),
        }
    }

    /// The peer named by a command-line key: one of [`ALL`](Self::ALL), or
    /// `cabi:NAME=PATH` / `cabi:PATH`, which loads the library ([`crate::cabi::register`]).
    pub fn from_key(key: &str) -> Option<PeerKind> {
        if let Some(spec) = key.strip_prefix("cabi:") {
            return (!spec.is_empty()).then(|| crate::cabi::kind(spec));
        }
        if let Some(policy) = key.strip_prefix("pyalloc:") {
            return parse_release(policy).map(|r| PeerKind::PyallocWith(Policy::of(r)));
        }
        PeerKind::ALL.into_iter().find(|k| k.key() == key)
    }

    /// Whether the peer can run in this build and process; prints nothing.
    pub fn available(self) -> bool {
        match self {
            PeerKind::Pymalloc => PymallocPeer::available(),
            PeerKind::Cabi(id) => id.lib().unavailable_reason().is_none(),
            _ => true,
        }
    }

    /// Why the peer cannot run, when it cannot.
    pub fn unavailable_reason(self) -> Option<&'static str> {
        (!self.available()).then_some(match self {
            PeerKind::Pymalloc => PymallocPeer::UNAVAILABLE,
            PeerKind::Cabi(id) => id.lib().unavailable_reason().unwrap_or("unavailable"),
            _ => "unavailable",
        })
    }
}

/// Builds a fresh peer of `kind` and hands it to `visitor`; `None` when the peer is not
/// available ([`PeerKind::available`]).
pub fn with_peer<V: PeerVisitor>(kind: PeerKind, visitor: V) -> Option<V::Output> {
    Some(match kind {
        PeerKind::Pyalloc => visitor.visit(&PyallocPeer::new()),
        PeerKind::Glibc => visitor.visit(&GlibcPeer),
        PeerKind::Mimalloc => visitor.visit(&MimallocPeer),
        PeerKind::MimallocGlobalAlloc => visitor.visit(&MimallocGlobalAllocPeer),
        PeerKind::Jemalloc => visitor.visit(&JemallocPeer),
        PeerKind::Pymalloc => visitor.visit(&PymallocPeer::new()?),
        PeerKind::Bumpalo => visitor.visit(&BumpaloPeer::new()),
        PeerKind::LifoFloor => visitor.visit(&LifoFloorPeer::new()),
        PeerKind::Cabi(id) => visitor.visit(&CabiPeer::new(id)?),
        PeerKind::PyallocWith(policy) => {
            visitor.visit(&PyallocPeer::with_release(policy.release()))
        }
    })
}

/// Copies `min(old, new)` bytes into a fresh block and frees the old one: `realloc` for
/// peers without their own.
///
/// # Safety
///
/// As [`Peer::realloc`].
pub(crate) unsafe fn realloc_by_copy<P: Peer + ?Sized>(
    peer: &P,
    ptr: *mut u8,
    old: Layout,
    new_size: usize,
) -> *mut u8 {
    // SAFETY: the caller guarantees `new_size != 0`, and `old.align()` is a valid alignment
    // that `new_size` rounded up cannot overflow for the sizes benchmarks use.
    let new = unsafe { Layout::from_size_align_unchecked(new_size, old.align()) };
    // SAFETY: `new.size()` is not zero (caller's contract).
    let fresh = unsafe { peer.alloc(new) };
    if !fresh.is_null() {
        // SAFETY: both blocks are live, distinct, and at least `min(old, new)` bytes long;
        // `ptr` is freed once with its own layout (caller's contract).
        unsafe {
            ptr::copy_nonoverlapping(ptr, fresh, old.size().min(new_size));
            peer.free(ptr, old);
        }
    }
    fresh
}

// ----------------------------------------------------------------------------------------
// pyalloc

/// pyalloc: a fresh [`Heap`] per peer, called through `Allocator`.
#[derive(Debug)]
pub struct PyallocPeer {
    /// The heap under measurement.
    pub heap: Heap,
}

impl Default for PyallocPeer {
    fn default() -> Self {
        Self::new()
    }
}

impl PyallocPeer {
    /// A peer with a fresh heap of the default configuration, its release policy from
    /// `PYALLOC_RELEASE` ([`pyalloc_config`]; panics when the variable is malformed).
    pub fn new() -> Self {
        Self::with_config(pyalloc_config())
    }

    /// A peer with a fresh heap of the default configuration and the release policy `release`.
    pub fn with_release(release: Release) -> Self {
        Self::with_config(HeapConfig::new().release(release))
    }

    fn with_config(config: HeapConfig) -> Self {
        PyallocPeer {
            heap: Heap::with_config(config).expect("the default geometry is valid"),
        }
    }
}

/// The block of an `Allocator` result, or null.
#[inline(always)]
fn block(result: Result<NonNull<[u8]>, pyalloc::AllocError>) -> *mut u8 {
    match result {
        Ok(block) => block.cast::<u8>().as_ptr(),
        Err(_) => ptr::null_mut(),
    }
}

impl Peer for PyallocPeer {
    fn name(&self) -> &'static str {
        PeerKind::Pyalloc.label()
    }

    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        block(self.heap.allocate(layout))
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        block(self.heap.allocate_zeroed(layout))
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` is a live block of this heap allocated for `layout`, so non-null
        // (caller's contract, which is `deallocate`'s).
        unsafe { self.heap.deallocate(NonNull::new_unchecked(ptr), layout) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `new_size != 0` and `old.align()` is a power of two; sizes stay far below
        // `isize::MAX`.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, old.align()) };
        // SAFETY: `ptr` is a live block of this heap fitting `old` (caller's contract), so
        // non-null; `grow` needs `new.size() >= old.size()`, `shrink` the converse.
        unsafe {
            let ptr = NonNull::new_unchecked(ptr);
            if new_size >= old.size() {
                block(self.heap.grow(ptr, old, new))
            } else {
                block(self.heap.shrink(ptr, old, new))
            }
        }
    }

    fn release(&self) {
        self.heap.trim();
    }
}

// ----------------------------------------------------------------------------------------
// GlobalAlloc peers

macro_rules! global_alloc_peer {
    ($(#[$doc:meta])* $peer:ident, $alloc:expr, $kind:expr, $release:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, Default)]
        pub struct $peer;

        impl Peer for $peer {
            fn name(&self) -> &'static str {
                $kind.label()
            }

            #[inline(always)]
            unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
                // SAFETY: `layout.size() != 0` (caller's contract), `GlobalAlloc::alloc`'s
                // precondition.
                unsafe { $alloc.alloc(layout) }
            }

            #[inline(always)]
            unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
                // SAFETY: as `alloc`.
                unsafe { $alloc.alloc_zeroed(layout) }
            }

            #[inline(always)]
            unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
                // SAFETY: `ptr` came from this allocator with `layout` (caller's contract).
                unsafe { $alloc.dealloc(ptr, layout) }
            }

            #[inline(always)]
            unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
                // SAFETY: `ptr` came from this allocator with `old`, `new_size != 0`
                // (caller's contract).
                unsafe { $alloc.realloc(ptr, old, new_size) }
            }

            fn release(&self) {
                $release
            }
        }
    };
}

global_alloc_peer!(
    /// glibc's malloc, through `std::alloc::System`.
    GlibcPeer,
    System,
    PeerKind::Glibc,
    {
        // SAFETY: `malloc_trim` only returns free memory of glibc's heaps to the OS.
        unsafe { libc::malloc_trim(0) };
    }
);

global_alloc_peer!(
    /// mimalloc through the `mimalloc` crate's `GlobalAlloc`, what a Rust program with
    /// `#[global_allocator] static A: MiMalloc` gets: `mi_malloc_aligned(size, align)` for every
    /// request. With mimalloc 3 (the crate's default line) this path is much dearer than
    /// [`MimallocPeer`]'s on 16-byte aligned requests whose block size is not a power of two:
    /// when the class's page has no free block, it over-allocates from a larger class instead of
    /// refilling the page, so such classes keep taking the generic path (README, W5).
    MimallocGlobalAllocPeer,
    mimalloc::MiMalloc,
    PeerKind::MimallocGlobalAlloc,
    {
        // SAFETY: `mi_collect` frees mimalloc's own unused memory; it touches no live block.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
);

/// mimalloc at its best: its plain entry points, `mi_malloc`, `mi_zalloc`, `mi_realloc` and
/// `mi_free`, on the `mimalloc` crate's build: the calls a C program makes. A request aligned
/// to at most 16 bytes asks for at least 16 bytes (mimalloc's blocks are 16-byte aligned from
/// 16 bytes up); larger alignments take the aligned entry points.
#[derive(Clone, Copy, Debug, Default)]
pub struct MimallocPeer;

/// The alignment mimalloc's unaligned entry points give from 16 bytes up (`MI_MAX_ALIGN_SIZE`).
const MI_MAX_ALIGN: usize = 16;

impl Peer for MimallocPeer {
    fn name(&self) -> &'static str {
        PeerKind::Mimalloc.label()
    }

    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MI_MAX_ALIGN {
            // SAFETY: `mi_malloc` takes any size.
            unsafe { libmimalloc_sys::mi_malloc(layout.size().max(MI_MAX_ALIGN)).cast() }
        } else {
            // SAFETY: `layout.size() != 0` (caller's contract).
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MI_MAX_ALIGN {
            // SAFETY: `mi_zalloc` takes any size.
            unsafe { libmimalloc_sys::mi_zalloc(layout.size().max(MI_MAX_ALIGN)).cast() }
        } else {
            // SAFETY: `layout.size() != 0` (caller's contract).
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this mimalloc and is live (caller's contract); `mi_free`
        // frees blocks of the aligned entry points too.
        unsafe { libmimalloc_sys::mi_free(ptr.cast()) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
        if old.align() <= MI_MAX_ALIGN {
            // SAFETY: `ptr` came from this mimalloc and is live (caller's contract).
            unsafe { libmimalloc_sys::mi_realloc(ptr.cast(), new_size.max(MI_MAX_ALIGN)).cast() }
        } else {
            // SAFETY: forwarded contract.
            unsafe { mimalloc::MiMalloc.realloc(ptr, old, new_size) }
        }
    }

    fn release(&self) {
        // SAFETY: `mi_collect` frees mimalloc's own unused memory; it touches no live block.
        unsafe { libmimalloc_sys::mi_collect(true) };
    }
}

global_alloc_peer!(
    /// jemalloc through `tikv_jemallocator::Jemalloc` (prefixed symbols).
    JemallocPeer,
    tikv_jemallocator::Jemalloc,
    PeerKind::Jemalloc,
    jemalloc_purge()
);

/// Flushes this thread's tcache and purges every arena's unused dirty pages.
fn jemalloc_purge() {
    // `MALLCTL_ARENAS_ALL` is 4096. Both controls take neither input nor output, so they are
    // called with null pointers (`tikv_jemalloc_ctl::raw::write` would pass a non-null
    // `newp`, which jemalloc refuses with EPERM).
    for name in [&b"thread.tcache.flush\0"[..], &b"arena.4096.purge\0"[..]] {
        // SAFETY: `name` is a NUL-terminated control name; a void control reads and writes
        // nothing.
        let rc = unsafe {
            tikv_jemalloc_sys::mallctl(
                name.as_ptr().cast(),
                ptr::null_mut(),
                ptr::null_mut(),
                ptr::null_mut(),
                0,
            )
        };
        debug_assert_eq!(rc, 0, "mallctl {name:?}");
    }
}

// ----------------------------------------------------------------------------------------
// CPython's pymalloc

#[cfg(has_pymalloc)]
mod python {
    use core::ffi::c_void;
    use std::sync::OnceLock;
    use std::thread::ThreadId;

    extern "C" {
        pub fn Py_InitializeEx(initsigs: i32);
        pub fn PyObject_Malloc(size: usize) -> *mut c_void;
        pub fn PyObject_Calloc(nelem: usize, elsize: usize) -> *mut c_void;
        pub fn PyObject_Realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
        pub fn PyObject_Free(ptr: *mut c_void);
    }

    static INIT_THREAD: OnceLock<ThreadId> = OnceLock::new();

    /// Initialises the interpreter once, on the first thread that asks; true on that thread.
    pub fn init_here() -> bool {
        let here = std::thread::current().id();
        *INIT_THREAD.get_or_init(|| {
            // SAFETY: called once per process (the `OnceLock`); the thread that initialises
            // holds the GIL afterwards and is the only one that calls pymalloc.
            unsafe { Py_InitializeEx(0) };
            here
        }) == here
    }
}

/// CPython's pymalloc (`PyObject_Malloc`/`Realloc`/`Free`), from the libpython found at build
/// time. The interpreter is initialised once, on the first thread that builds this peer; that
/// thread holds the GIL and is the only one that may use it. `!Send`.
#[derive(Debug)]
pub struct PymallocPeer {
    _not_send: core::marker::PhantomData<*const ()>,
}

impl PymallocPeer {
    const UNAVAILABLE: &'static str = if cfg!(has_pymalloc) {
        "CPython was initialised on another thread"
    } else {
        "skipped: libpython was not found at build time (python3-config --embed --ldflags)"
    };

    fn available() -> bool {
        #[cfg(has_pymalloc)]
        {
            python::init_here()
        }
        #[cfg(not(has_pymalloc))]
        {
            false
        }
    }

    /// The peer, initialising CPython on first use; `None` without libpython, or on another
    /// thread than the one that initialised it.
    pub fn new() -> Option<Self> {
        Self::available().then_some(PymallocPeer {
            _not_send: core::marker::PhantomData,
        })
    }
}

#[cfg(has_pymalloc)]
impl Peer for PymallocPeer {
    fn name(&self) -> &'static str {
        PeerKind::Pymalloc.label()
    }

    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        debug_assert!(layout.align() <= 16);
        // SAFETY: the interpreter is initialised and this thread holds the GIL (`new`).
        unsafe { python::PyObject_Malloc(layout.size()).cast() }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as `alloc`.
        unsafe { python::PyObject_Calloc(1, layout.size()).cast() }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from `PyObject_Malloc` (caller's contract); GIL held.
        unsafe { python::PyObject_Free(ptr.cast()) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, _old: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from `PyObject_Malloc` (caller's contract); GIL held.
        unsafe { python::PyObject_Realloc(ptr.cast(), new_size).cast() }
    }

    fn release(&self) {}
}

#[cfg(not(has_pymalloc))]
impl Peer for PymallocPeer {
    fn name(&self) -> &'static str {
        PeerKind::Pymalloc.label()
    }
    unsafe fn alloc(&self, _: Layout) -> *mut u8 {
        unreachable!("{}", Self::UNAVAILABLE)
    }
    unsafe fn alloc_zeroed(&self, _: Layout) -> *mut u8 {
        unreachable!("{}", Self::UNAVAILABLE)
    }
    unsafe fn free(&self, _: *mut u8, _: Layout) {
        unreachable!("{}", Self::UNAVAILABLE)
    }
    unsafe fn realloc(&self, _: *mut u8, _: Layout, _: usize) -> *mut u8 {
        unreachable!("{}", Self::UNAVAILABLE)
    }
    fn release(&self) {}
}

// ----------------------------------------------------------------------------------------
// bumpalo

/// bumpalo: allocation only (free is a no-op), the bound no free-list allocator beats.
#[derive(Debug, Default)]
pub struct BumpaloPeer {
    bump: UnsafeCell<bumpalo::Bump>,
}

impl BumpaloPeer {
    /// A peer with a fresh, empty `Bump`.
    pub fn new() -> Self {
        BumpaloPeer::default()
    }

    #[inline(always)]
    fn bump(&self) -> &bumpalo::Bump {
        // SAFETY: the only `&mut` to the bump is taken in `recycle`, which no other method
        // overlaps (the peer is `!Sync` and calls do not nest).
        unsafe { &*self.bump.get() }
    }
}

impl Peer for BumpaloPeer {
    fn name(&self) -> &'static str {
        PeerKind::Bumpalo.label()
    }

    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        match self.bump().try_alloc_layout(layout) {
            Ok(p) => p.as_ptr(),
            Err(_) => ptr::null_mut(),
        }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: `p` is a fresh block of `layout.size()` bytes (a recycled chunk is
            // not zeroed, so zero it).
            unsafe { p.write_bytes(0, layout.size()) };
        }
        p
    }

    #[inline(always)]
    unsafe fn free(&self, _ptr: *mut u8, _layout: Layout) {}

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded contract.
        unsafe { realloc_by_copy(self, ptr, old, new_size) }
    }

    fn release(&self) {}

    unsafe fn recycle(&self) {
        // SAFETY: no block is live (caller's contract) and no shared borrow of the bump
        // outlives a method call.
        unsafe { (*self.bump.get()).reset() }
    }
}

// ----------------------------------------------------------------------------------------
// lifo-floor

/// Size classes of the floor: 16-byte steps up to 512 bytes, as pymalloc.
const FLOOR_CLASSES: usize = 32;
/// Bytes the floor takes from the system at a time.
const FLOOR_CHUNK: usize = 256 << 10;

/// The floor: one bare LIFO free list per 16-byte size class, no pools, no headers; fresh
/// blocks are carved from 256 KiB chunks that are never returned until the peer drops.
/// Requests over 512 bytes or aligned over 16 go to the system allocator.
#[derive(Debug)]
pub struct LifoFloorPeer {
    state: UnsafeCell<FloorState>,
}

#[derive(Debug)]
struct FloorState {
    heads: [*mut u8; FLOOR_CLASSES],
    cursor: *mut u8,
    end: *mut u8,
    chunks: Vec<*mut u8>,
}

impl Default for LifoFloorPeer {
    fn default() -> Self {
        Self::new()
    }
}

impl LifoFloorPeer {
    /// An empty floor.
    pub fn new() -> Self {
        LifoFloorPeer {
            state: UnsafeCell::new(FloorState {
                heads: [ptr::null_mut(); FLOOR_CLASSES],
                cursor: ptr::null_mut(),
                end: ptr::null_mut(),
                chunks: Vec::new(),
            }),
        }
    }

    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    fn state(&self) -> &mut FloorState {
        // SAFETY: the peer is `!Sync` and no method calls another while holding this borrow.
        unsafe { &mut *self.state.get() }
    }

    #[inline(always)]
    fn is_small(layout: Layout) -> bool {
        layout.size() <= 512 && layout.align() <= 16
    }

    #[cold]
    #[inline(never)]
    fn carve(&self, size: usize) -> *mut u8 {
        let s = self.state();
        if (s.end as usize) - (s.cursor as usize) < size {
            let chunk_layout = Layout::from_size_align(FLOOR_CHUNK, 16).expect("valid layout");
            // SAFETY: the layout is not zero-sized.
            let chunk = unsafe { System.alloc(chunk_layout) };
            if chunk.is_null() {
                return chunk;
            }
            s.chunks.push(chunk);
            s.cursor = chunk;
            // SAFETY: `chunk` is `FLOOR_CHUNK` bytes long.
            s.end = unsafe { chunk.add(FLOOR_CHUNK) };
        }
        let p = s.cursor;
        // SAFETY: at least `size` bytes remain in the chunk (checked above).
        s.cursor = unsafe { p.add(size) };
        p
    }
}

impl Drop for LifoFloorPeer {
    fn drop(&mut self) {
        let chunk_layout = Layout::from_size_align(FLOOR_CHUNK, 16).expect("valid layout");
        for &chunk in &self.state().chunks {
            // SAFETY: each chunk came from `System.alloc(chunk_layout)`; the peer is gone, so
            // are its blocks.
            unsafe { System.dealloc(chunk, chunk_layout) };
        }
    }
}

impl Peer for LifoFloorPeer {
    fn name(&self) -> &'static str {
        PeerKind::LifoFloor.label()
    }

    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if !Self::is_small(layout) {
            // SAFETY: `layout.size() != 0` (caller's contract).
            return unsafe { System.alloc(layout) };
        }
        let class = (layout.size() - 1) >> 4;
        let head = &mut self.state().heads[class];
        let p = *head;
        if p.is_null() {
            return self.carve((class + 1) << 4);
        }
        // SAFETY: a freed block of this class holds the next block's address in its first
        // word (written by `free`), and blocks are 16-byte aligned.
        *head = unsafe { p.cast::<*mut u8>().read() };
        p
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded contract.
        let p = unsafe { self.alloc(layout) };
        if !p.is_null() {
            // SAFETY: `p` is a fresh block of at least `layout.size()` bytes.
            unsafe { p.write_bytes(0, layout.size()) };
        }
        p
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, layout: Layout) {
        if !Self::is_small(layout) {
            // SAFETY: large blocks came from `System.alloc(layout)` (caller's contract).
            return unsafe { System.dealloc(ptr, layout) };
        }
        let head = &mut self.state().heads[(layout.size() - 1) >> 4];
        // SAFETY: `ptr` is a dead block of this class, at least 16 bytes and 16-aligned: its
        // first word holds the link.
        unsafe { ptr.cast::<*mut u8>().write(*head) };
        *head = ptr;
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
        let same_class =
            Self::is_small(old) && new_size <= 512 && (old.size() - 1) >> 4 == (new_size - 1) >> 4;
        if same_class {
            return ptr;
        }
        // SAFETY: forwarded contract.
        unsafe { realloc_by_copy(self, ptr, old, new_size) }
    }

    fn release(&self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_policies_parse_and_print() {
        assert_eq!(parse_release("immediate"), Some(Release::Immediate));
        assert_eq!(
            parse_release("10ms"),
            Some(Release::Decay(Duration::from_millis(10)))
        );
        assert_eq!(
            parse_release("1s"),
            Some(Release::Decay(Duration::from_secs(1)))
        );
        assert_eq!(
            parse_release("250us"),
            Some(Release::Decay(Duration::from_micros(250)))
        );
        for bad in ["", "10", "ms", "10 ms", "1.5s", "10min", "-1s"] {
            assert_eq!(parse_release(bad), None, "{bad:?}");
        }
        for text in ["immediate", "1ms", "10ms", "100ms", "1s", "250us", "7ns"] {
            let policy = Policy::of(parse_release(text).unwrap());
            assert_eq!(policy.text(), text);
        }
        assert_eq!(Policy(Some(Duration::from_millis(1000))).text(), "1s");
    }

    #[test]
    fn pyalloc_policy_peers_have_keys_of_their_own() {
        let kind = PeerKind::from_key("pyalloc:10ms").unwrap();
        assert_eq!(
            kind,
            PeerKind::PyallocWith(Policy(Some(Duration::from_millis(10))))
        );
        assert_eq!(kind.key(), "pyalloc:10ms");
        assert_eq!(kind.label(), "pyalloc (10ms)");
        assert_eq!(PeerKind::from_key(kind.key()), Some(kind));
        assert_eq!(PeerKind::from_key("pyalloc:soon"), None);
        let PeerKind::PyallocWith(policy) = kind else {
            unreachable!()
        };
        let peer = PyallocPeer::with_release(policy.release());
        assert_eq!(
            peer.heap.config().get_release(),
            Release::Decay(Duration::from_millis(10))
        );
    }
}
