//! `libpyalloc_malloc.so`: pyalloc as the `malloc` of any program.
//!
//! ```sh
//! cargo build --release -p pyalloc-malloc
//! LD_PRELOAD=$PWD/target/release/libpyalloc_malloc.so git status
//! PYALLOC_MALLOC_STATS=1 LD_PRELOAD=$PWD/target/release/libpyalloc_malloc.so sqlite3 db .schema
//! ```
//!
//! The library exports C's allocation functions with glibc's semantics (`malloc`, `free`,
//! `calloc`, `realloc`, `reallocarray`, `posix_memalign`, `aligned_alloc`, `memalign`,
//! `valloc`, `pvalloc`, `malloc_usable_size`); the dynamic linker binds every call in the
//! process to them, glibc's own internal calls included (glibc supports replacing `malloc`
//! this way). Behind them is [`pyalloc_core::Global`]: one pymalloc heap per thread, requests of
//! at most 512 bytes from its pools, larger ones from glibc's allocator, as in CPython.
//!
//! ## How it fits together
//!
//! * **A free without a size.** `free(p)` may get a pool block of any thread, a large block
//!   (glibc's), or a block glibc handed out before this library was loaded. `Global::owns` asks
//!   a process-wide bitmap with one bit per 1 MiB arena slot (arenas are aligned to their size;
//!   the bit is set after an arena is mapped and cleared before it is unmapped, and a pointer
//!   being freed is live, so its arena cannot be unmapped under the free); it never reads the
//!   memory at `p`. For our blocks the pool header gives the owner heap and the size class:
//!   the free goes to the owner's fast path or mailbox, `malloc_usable_size` is the class's
//!   block size. Anything else goes to glibc (`__libc_free`, glibc's `malloc_usable_size`).
//! * **Never our own `malloc` from inside.** In this library the `malloc` symbol *is* pyalloc,
//!   so the core is built with its `glibc-internals` feature: its tables and large blocks come
//!   from `__libc_malloc`, `__libc_calloc`, `__libc_realloc`, `__libc_memalign` and
//!   `__libc_free`, which glibc exports for allocators like this one. This library's own Rust
//!   code (std's thread-local registrations, the statistics' strings) allocates from
//!   [`LibcSystem`], the same entry points, as its `#[global_allocator]`.
//! * **Early, late and re-entrant calls.** The dynamic linker and libc allocate before
//!   `main`, before this library's constructor has run; threads allocate in thread-local
//!   destructors and after their heap was given back; a thread's first allocation registers a
//!   thread-local destructor, which may itself call `malloc`. `Global` needs no initialisation
//!   and serves all of these from its shared fallback heap.
//! * **fork.** A constructor (`.init_array`) registers `pthread_atfork` handlers: the forking
//!   thread takes the fallback heap (the only heap anything ever waits for) before the fork
//!   and gives it back in both processes, so the child never inherits it held by a thread that
//!   does not exist there. Heaps of the parent's other threads stay owned in the child: their
//!   blocks freed there are posted (a lock-free push) and never reused, a leak bounded by what
//!   was live at the fork, never a deadlock. glibc's own `fork` handlers take care of glibc's
//!   arenas, which serve the large blocks.
//! * **Alignment.** Pool blocks are 16-aligned: `memalign`, `posix_memalign` and
//!   `aligned_alloc` with an alignment of at most 16 are `malloc`; larger alignments, `valloc`
//!   and `pvalloc` are glibc's (`__libc_memalign`, `__libc_valloc`, `__libc_pvalloc`), freed
//!   through the same `free` since they are not in our arenas.
//!
//! `PYALLOC_MALLOC_STATS=1` prints the process's figures to stderr at exit
//! ([`pyalloc_malloc_print_stats`]), and [`pyalloc_malloc_owns`] lets a program check that its
//! blocks are pyalloc's: a run that silently did not load the library shows neither.
//! `PYALLOC_DEBUG=1` turns on `Global`'s debug mode, as for a Rust program.

use core::ffi::{c_int, c_void};
use core::ptr::{self, NonNull};

use pyalloc_core::{Global, LibcSystem};

/// This library's own Rust allocations: glibc's allocator, through its `__libc_*` entry
/// points. Not `Global`: a request from std's internals while `Global` is in its slow path
/// would re-enter it; and not std's `System`, which would call the `malloc` this library is.
#[global_allocator]
static RUST_ALLOCATOR: LibcSystem = LibcSystem;

/// The alignment of every block `malloc` returns, pool blocks included (glibc's
/// `MALLOC_ALIGNMENT` on x86-64 and AArch64).
const MALLOC_ALIGNMENT: usize = 16;

extern "C" {
    fn __libc_memalign(align: usize, size: usize) -> *mut c_void;
    fn __libc_valloc(size: usize) -> *mut c_void;
    fn __libc_pvalloc(size: usize) -> *mut c_void;
}

/// Sets `errno`.
fn set_errno(code: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's `errno`, always valid.
    unsafe { *libc::__errno_location() = code };
}

/// Reads `errno`.
fn errno() -> c_int {
    // SAFETY: as in `set_errno`.
    unsafe { *libc::__errno_location() }
}

/// `ptr`, or `errno = ENOMEM` when it is null.
#[inline(always)]
fn or_enomem(ptr: *mut u8) -> *mut c_void {
    if ptr.is_null() {
        set_errno(libc::ENOMEM);
    }
    ptr.cast()
}

/// C's `malloc`: `size` bytes aligned to 16, from the calling thread's pools up to 512 bytes;
/// `malloc(0)` is a distinct non-null pointer; null and `errno = ENOMEM` when memory cannot
/// be had.
#[no_mangle]
pub extern "C" fn malloc(size: usize) -> *mut c_void {
    or_enomem(Global::alloc_unsized(size))
}

/// C's `free`: nothing for null; a pyalloc block goes home to its heap, any other pointer to
/// glibc's `free`.
///
/// # Safety
///
/// `ptr` is null or a live block of this process's allocator (pyalloc's or glibc's), not
/// used afterwards.
#[no_mangle]
pub unsafe extern "C" fn free(ptr: *mut c_void) {
    if let Some(ptr) = NonNull::new(ptr.cast::<u8>()) {
        // SAFETY: the caller's contract.
        unsafe { Global::dealloc_unsized(ptr) }
    }
}

/// C's `calloc`: `count * size` zeroed bytes; null and `errno = ENOMEM` when the product
/// overflows or memory cannot be had.
#[no_mangle]
pub extern "C" fn calloc(count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        Some(total) => or_enomem(Global::alloc_zeroed_unsized(total)),
        None => or_enomem(ptr::null_mut()),
    }
}

/// C's `realloc`, as glibc: null is `malloc(size)`; a size of 0 frees `ptr` and returns null;
/// a pool block stays in place while its class holds the new size and more than three
/// quarters of it stay used (CPython's rule); on failure null, `errno = ENOMEM`, and `ptr`
/// untouched.
///
/// # Safety
///
/// As [`free`]; on success `ptr` is not used afterwards.
#[no_mangle]
pub unsafe extern "C" fn realloc(ptr: *mut c_void, size: usize) -> *mut c_void {
    let Some(block) = NonNull::new(ptr.cast::<u8>()) else {
        return malloc(size);
    };
    if size == 0 {
        // SAFETY: the caller's contract.
        unsafe { Global::dealloc_unsized(block) };
        return ptr::null_mut();
    }
    // SAFETY: the caller's contract.
    or_enomem(unsafe { Global::realloc_unsized(block, size) })
}

/// C's `reallocarray`: `realloc(ptr, count * size)`, except that an overflowing product is
/// null with `errno = ENOMEM` and `ptr` untouched.
///
/// # Safety
///
/// As [`realloc`].
#[no_mangle]
pub unsafe extern "C" fn reallocarray(ptr: *mut c_void, count: usize, size: usize) -> *mut c_void {
    match count.checked_mul(size) {
        // SAFETY: the caller's contract.
        Some(total) => unsafe { realloc(ptr, total) },
        None => or_enomem(ptr::null_mut()),
    }
}

/// `size` bytes aligned to `align`: `malloc` up to 16 (every block is 16-aligned), glibc's
/// `memalign` beyond (which rounds an alignment that is not a power of two up to one, and
/// refuses one above half the address space with `EINVAL`, as glibc 2.36 does for `memalign`
/// and `aligned_alloc` alike).
fn aligned(align: usize, size: usize) -> *mut c_void {
    if align <= MALLOC_ALIGNMENT {
        malloc(size)
    } else {
        // SAFETY: `__libc_memalign` accepts any alignment and size (and sets `errno`).
        unsafe { __libc_memalign(align, size) }
    }
}

/// C's `memalign` (glibc 2.36's semantics; see [`aligned_alloc`]).
#[no_mangle]
pub extern "C" fn memalign(align: usize, size: usize) -> *mut c_void {
    aligned(align, size)
}

/// C11's `aligned_alloc`, as this machine's glibc (2.36) has it: an alias of `memalign`, so an
/// alignment that is not a power of two is rounded up rather than refused (glibc 2.38 and
/// later refuse it with `EINVAL`).
#[no_mangle]
pub extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut c_void {
    aligned(align, size)
}

/// POSIX's `posix_memalign`: `EINVAL` for an alignment that is not a power of two multiple
/// of `sizeof(void *)`, `ENOMEM` when memory cannot be had (`*out` untouched either way), 0
/// and the block in `*out` otherwise. `errno` is left as it was.
///
/// # Safety
///
/// `out` is valid for writing a pointer.
#[no_mangle]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut c_void, align: usize, size: usize) -> c_int {
    if !align.is_power_of_two() || align < size_of::<*mut c_void>() {
        return libc::EINVAL;
    }
    let saved = errno();
    let block = aligned(align, size);
    set_errno(saved);
    if block.is_null() {
        return libc::ENOMEM;
    }
    // SAFETY: the caller's contract.
    unsafe { out.write(block) };
    0
}

/// C's `valloc`: page-aligned, glibc's.
#[no_mangle]
pub extern "C" fn valloc(size: usize) -> *mut c_void {
    // SAFETY: no preconditions.
    unsafe { __libc_valloc(size) }
}

/// C's `pvalloc`: page-aligned and the size rounded up to whole pages, glibc's.
#[no_mangle]
pub extern "C" fn pvalloc(size: usize) -> *mut c_void {
    // SAFETY: no preconditions.
    unsafe { __libc_pvalloc(size) }
}

/// C's `malloc_usable_size`: 0 for null; a pool block's class size (16, 32, … 512); glibc's
/// answer for anything else.
///
/// # Safety
///
/// `ptr` is null or a live block of this process's allocator.
#[no_mangle]
pub unsafe extern "C" fn malloc_usable_size(ptr: *mut c_void) -> usize {
    match NonNull::new(ptr.cast::<u8>()) {
        // SAFETY: the caller's contract.
        Some(block) => unsafe { Global::usable_size(block) },
        None => 0,
    }
}

/// 1 when `ptr` lies in one of pyalloc's arenas (a pool block), else 0: for tests and tools
/// that must know that the library is really in use. Safe for any pointer.
#[no_mangle]
pub extern "C" fn pyalloc_malloc_owns(ptr: *const c_void) -> c_int {
    c_int::from(Global::owns(ptr.cast()))
}

/// Prints the process's figures (every heap that can be read now) to stderr, one line:
/// `pyalloc-malloc: heaps … arenas … blocks in use …`.
#[no_mangle]
pub extern "C" fn pyalloc_malloc_print_stats() {
    // SAFETY: `Global` is not this library's global allocator (`RUST_ALLOCATOR` is).
    let s = unsafe { Global::process_stats_detached() };
    let line = format!(
        "pyalloc-malloc: heaps {} ({} read, {} held by running threads), arenas {} ({} KiB), \
         blocks in use {} ({} bytes)\n",
        s.heaps,
        s.heaps - s.heaps_elsewhere,
        s.heaps_elsewhere,
        s.arenas,
        s.arena_bytes >> 10,
        s.blocks_in_use,
        s.bytes_in_use,
    );
    // SAFETY: a valid buffer of that length; a short or failed write loses only the report.
    unsafe { libc::write(2, line.as_ptr().cast(), line.len()) };
}

/// The `atexit` handler `PYALLOC_MALLOC_STATS=1` registers.
extern "C" fn stats_at_exit() {
    pyalloc_malloc_print_stats();
}

extern "C" fn fork_prepare() {
    Global::fork_prepare();
}

extern "C" fn fork_parent() {
    Global::fork_parent();
}

extern "C" fn fork_child() {
    Global::fork_child();
}

/// Runs when the library is loaded, before `main` (allocations may already have come in:
/// they need nothing from here). Looks up glibc's `malloc_usable_size` now rather than inside
/// an allocation, registers the fork handlers, and, with `PYALLOC_MALLOC_STATS` set to
/// anything but empty or `0`, the report at exit.
extern "C" fn init() {
    pyalloc_core::resolve_malloc_usable_size();
    // SAFETY: three `extern "C"` functions that live as long as the process.
    unsafe { libc::pthread_atfork(Some(fork_prepare), Some(fork_parent), Some(fork_child)) };
    // SAFETY: a NUL-terminated name; the result is null or a NUL-terminated string, read at
    // once.
    let stats = unsafe {
        let value = libc::getenv(c"PYALLOC_MALLOC_STATS".as_ptr());
        !value.is_null() && *value != 0 && !(*value == b'0' as libc::c_char && *value.add(1) == 0)
    };
    if stats {
        // SAFETY: a handler that lives as long as the process.
        unsafe { libc::atexit(stats_at_exit) };
    }
}

/// The constructor: glibc's dynamic linker calls every function in `.init_array` when the
/// object is loaded.
#[used]
#[link_section = ".init_array"]
static INIT: extern "C" fn() = init;
