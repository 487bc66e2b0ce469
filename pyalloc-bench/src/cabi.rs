//! Peers behind the C ABI: any malloc-compatible shared library, loaded with
//! `dlopen(path, RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND)` and called through function pointers
//! to its `malloc`, `calloc`, `realloc` and `free`.
//!
//! This is how a C program calls an allocator, so every library goes through exactly the same
//! calls: glibc (`libc.so.6`), Debian's `libmimalloc.so.2` and `libjemalloc.so.2`, and
//! pyalloc's own `libpyalloc_malloc.so`. `RTLD_LOCAL | RTLD_DEEPBIND` keep the library's
//! symbols to itself: the process (and the other peers) go on using glibc, and the library's
//! own calls to `malloc` resolve inside it.
//!
//! A peer is named on the command line as `cabi:NAME=PATH` (or `cabi:PATH`, named after the
//! file). Libraries are loaded once per process and never unloaded (an allocator may hold
//! memory, threads or TLS destructors until exit); one that cannot be loaded is reported by
//! [`PeerKind::unavailable_reason`](crate::PeerKind::unavailable_reason), and the tools skip it
//! with a printed line.
//!
//! Requests: a block aligned to at most 16 bytes (every request of the traces) is
//! `malloc(max(size, 16))`, `calloc(1, max(size, 16))` or `realloc(ptr, max(size, 16))`: every
//! library here returns 16-byte aligned blocks from 16 bytes up, and the replay checks the
//! alignment of every block. Larger alignments go to `posix_memalign` when the library has it.

use core::alloc::Layout;
use core::ffi::{c_char, c_int, c_void};
use core::ptr;
use std::ffi::CString;
use std::sync::Mutex;

use crate::peers::{Peer, PeerKind};

type MallocFn = unsafe extern "C" fn(usize) -> *mut c_void;
type CallocFn = unsafe extern "C" fn(usize, usize) -> *mut c_void;
type ReallocFn = unsafe extern "C" fn(*mut c_void, usize) -> *mut c_void;
type FreeFn = unsafe extern "C" fn(*mut c_void);
type MemalignFn = unsafe extern "C" fn(*mut *mut c_void, usize, usize) -> c_int;
type TrimFn = unsafe extern "C" fn(usize) -> c_int;
type CollectFn = unsafe extern "C" fn(bool);

/// The entry points of a loaded library.
#[derive(Clone, Copy, Debug)]
struct Entries {
    malloc: MallocFn,
    calloc: CallocFn,
    realloc: ReallocFn,
    free: FreeFn,
    posix_memalign: Option<MemalignFn>,
    /// glibc's `malloc_trim`, when the library has it.
    malloc_trim: Option<TrimFn>,
    /// mimalloc's `mi_collect`, when the library has it.
    mi_collect: Option<CollectFn>,
}

/// A library named on the command line: loaded, or why not.
#[derive(Debug)]
pub struct CabiLib {
    /// The name in tables (`NAME` of `cabi:NAME=PATH`).
    pub name: &'static str,
    /// The command-line key, `cabi:NAME`.
    pub key: &'static str,
    /// The path or soname given to `dlopen`.
    pub path: &'static str,
    entries: Result<Entries, &'static str>,
}

/// The libraries loaded so far, by [`CabiId`]. Entries are leaked: they live as long as the
/// process, as the loaded libraries do.
static LIBS: Mutex<Vec<&'static CabiLib>> = Mutex::new(Vec::new());

/// Names a library of this process's registry (see [`register`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CabiId(u16);

impl CabiId {
    /// The library.
    pub fn lib(self) -> &'static CabiLib {
        LIBS.lock().unwrap_or_else(|e| e.into_inner())[self.0 as usize]
    }
}

/// Loads the library of a `NAME=PATH` (or `PATH`) spec, once per spec; a library that cannot
/// be loaded is registered too, with the reason. Never fails: the tools print the reason and
/// skip the peer.
pub fn register(spec: &str) -> CabiId {
    let (name, path) = match spec.split_once('=') {
        Some((name, path)) => (name.to_owned(), path.to_owned()),
        None => {
            let file = spec.rsplit('/').next().unwrap_or(spec);
            let stem = file.split(".so").next().unwrap_or(file);
            (
                stem.strip_prefix("lib").unwrap_or(stem).to_owned(),
                spec.to_owned(),
            )
        }
    };
    let mut libs = LIBS.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(i) = libs.iter().position(|l| l.name == name && l.path == path) {
        return CabiId(i as u16);
    }
    let key: &'static str = Box::leak(format!("cabi:{name}").into_boxed_str());
    let entries = load(&path).map_err(|why| &*Box::leak(why.into_boxed_str()));
    libs.push(Box::leak(Box::new(CabiLib {
        name: Box::leak(name.into_boxed_str()),
        key,
        path: Box::leak(path.into_boxed_str()),
        entries,
    })));
    CabiId(u16::try_from(libs.len() - 1).expect("fewer than 65536 libraries"))
}

/// The libraries the replay tool compares by default when they are installed: glibc (always
/// there), and Debian's mimalloc and jemalloc (`apt-get install libmimalloc2.0 libjemalloc2`).
pub const SYSTEM_LIBS: [&str; 3] = [
    "glibc-cabi=libc.so.6",
    "mimalloc-debian=libmimalloc.so.2",
    "jemalloc-debian=libjemalloc.so.2",
];

/// The shared libraries this crate's build script made from the `mimalloc` crate's sources of
/// each line (`NAME=PATH` specs; none where the build could not make them).
pub fn built_libs() -> Vec<String> {
    [
        ("mimalloc-v2", option_env!("PYALLOC_BENCH_MIMALLOC_V2_SO")),
        ("mimalloc-v3", option_env!("PYALLOC_BENCH_MIMALLOC_V3_SO")),
    ]
    .into_iter()
    .filter_map(|(name, path)| Some(format!("{name}={}", path?)))
    .collect()
}

/// Every library the replay tool compares by default: [`SYSTEM_LIBS`], then [`built_libs`].
pub fn default_specs() -> Vec<String> {
    let mut specs: Vec<String> = SYSTEM_LIBS.iter().map(|s| (*s).to_owned()).collect();
    specs.extend(built_libs());
    specs
}

/// The last `dlerror()` message.
fn dlerror() -> String {
    // SAFETY: `dlerror` returns null or a NUL-terminated string valid until the next dl call
    // on this thread; it is copied at once (callers hold the registry's lock, so the tools'
    // loads do not interleave).
    unsafe {
        let msg = libc::dlerror();
        if msg.is_null() {
            "unknown dlerror".into()
        } else {
            std::ffi::CStr::from_ptr(msg).to_string_lossy().into_owned()
        }
    }
}

fn load(path: &str) -> Result<Entries, String> {
    let c_path = CString::new(path).map_err(|_| format!("{path:?} holds a NUL byte"))?;
    // SAFETY: `c_path` is NUL-terminated. Loading runs the library's constructors: the
    // libraries named here are allocators meant to be loaded into any process.
    let handle = unsafe {
        libc::dlopen(
            c_path.as_ptr(),
            libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_DEEPBIND,
        )
    };
    if handle.is_null() {
        let why = dlerror();
        let hint = if why.contains("static TLS") {
            " (the library uses initial-exec TLS, as Debian's libjemalloc does: rerun with \
             GLIBC_TUNABLES=glibc.rtld.optional_static_tls=16384)"
        } else {
            ""
        };
        return Err(format!("skipped: cannot load {path}: {why}{hint}"));
    }
    let own = object_name(handle).ok_or_else(|| format!("skipped: {path}: {}", dlerror()))?;
    // `dlsym` on a handle also searches the library's dependencies: a library without its own
    // `malloc` would silently hand out glibc's. Only the library's own definitions count.
    let sym = |name: &[u8]| -> *mut c_void {
        // SAFETY: `handle` is a live handle from `dlopen`; `name` is NUL-terminated.
        let p = unsafe { libc::dlsym(handle, name.as_ptr().cast::<c_char>()) };
        if !p.is_null() && defined_in(p).as_deref() == Some(own.as_str()) {
            p
        } else {
            ptr::null_mut()
        }
    };
    let required = |name: &[u8]| -> Result<*mut c_void, String> {
        let p = sym(name);
        if p.is_null() {
            let shown = String::from_utf8_lossy(&name[..name.len() - 1]);
            Err(format!("skipped: {path} has no `{shown}` of its own"))
        } else {
            Ok(p)
        }
    };
    let (malloc, calloc, realloc, free) = (
        required(b"malloc\0")?,
        required(b"calloc\0")?,
        required(b"realloc\0")?,
        required(b"free\0")?,
    );
    let optional = |name: &[u8]| Some(sym(name)).filter(|p| !p.is_null());
    // SAFETY: each symbol is the C function of that name, with the C signature of its type
    // (the malloc family's, glibc's `malloc_trim`, mimalloc's `mi_collect`); a data pointer
    // from `dlsym` is a function pointer of the same size on Linux.
    unsafe {
        Ok(Entries {
            malloc: core::mem::transmute::<*mut c_void, MallocFn>(malloc),
            calloc: core::mem::transmute::<*mut c_void, CallocFn>(calloc),
            realloc: core::mem::transmute::<*mut c_void, ReallocFn>(realloc),
            free: core::mem::transmute::<*mut c_void, FreeFn>(free),
            posix_memalign: optional(b"posix_memalign\0")
                .map(|p| core::mem::transmute::<*mut c_void, MemalignFn>(p)),
            malloc_trim: optional(b"malloc_trim\0")
                .map(|p| core::mem::transmute::<*mut c_void, TrimFn>(p)),
            mi_collect: optional(b"mi_collect\0")
                .map(|p| core::mem::transmute::<*mut c_void, CollectFn>(p)),
        })
    }
}

/// The start of glibc's `struct link_map` (`<link.h>`), the part read here.
#[repr(C)]
struct LinkMapHead {
    l_addr: usize,
    l_name: *const c_char,
}

/// The file name the dynamic linker records for a loaded object (its `l_name`).
fn object_name(handle: *mut c_void) -> Option<String> {
    let mut map: *const LinkMapHead = ptr::null();
    // SAFETY: `handle` is a live handle; `RTLD_DI_LINKMAP` writes a `struct link_map *`.
    let rc = unsafe {
        libc::dlinfo(
            handle,
            libc::RTLD_DI_LINKMAP,
            (&mut map as *mut *const LinkMapHead).cast(),
        )
    };
    if rc != 0 || map.is_null() {
        return None;
    }
    // SAFETY: `map` is the object's link map, alive while the object is loaded (forever
    // here); `l_name` is a NUL-terminated string.
    unsafe { c_string((*map).l_name) }
}

/// The file name of the loaded object that holds `addr` (as `dladdr` says, from the same
/// `l_name`).
fn defined_in(addr: *mut c_void) -> Option<String> {
    // SAFETY: `Dl_info` is plain data; all-zero is a valid value.
    let mut info: libc::Dl_info = unsafe { core::mem::zeroed() };
    // SAFETY: `info` is a valid out-parameter; any address may be asked about.
    if unsafe { libc::dladdr(addr, &mut info) } == 0 {
        return None;
    }
    // SAFETY: `dli_fname` is null or a NUL-terminated string of the loaded object.
    unsafe { c_string(info.dli_fname) }
}

/// An owned copy of a C string, `None` for null.
///
/// # Safety
///
/// - `s` is null or a NUL-terminated string.
unsafe fn c_string(s: *const c_char) -> Option<String> {
    if s.is_null() {
        return None;
    }
    // SAFETY: non-null and NUL-terminated (caller's contract).
    let text = unsafe { std::ffi::CStr::from_ptr(s) };
    Some(text.to_string_lossy().into_owned())
}

impl CabiLib {
    /// Why the library cannot be used, when it cannot.
    pub fn unavailable_reason(&self) -> Option<&'static str> {
        self.entries.err()
    }
}

/// The alignment `malloc` gives from 16 bytes up, in every library here.
const MALLOC_ALIGN: usize = 16;

/// A peer calling a loaded library through its C entry points.
#[derive(Clone, Copy, Debug)]
pub struct CabiPeer {
    lib: &'static CabiLib,
    entries: Entries,
}

impl CabiPeer {
    /// The peer of a loaded library; `None` when it could not be loaded.
    pub fn new(id: CabiId) -> Option<Self> {
        let lib = id.lib();
        lib.entries.ok().map(|entries| CabiPeer { lib, entries })
    }
}

impl Peer for CabiPeer {
    fn name(&self) -> &'static str {
        self.lib.name
    }

    #[inline(always)]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: `malloc` takes any size.
            unsafe { (self.entries.malloc)(layout.size().max(MALLOC_ALIGN)).cast() }
        } else {
            self.alloc_aligned(layout)
        }
    }

    #[inline(always)]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN {
            // SAFETY: `calloc` takes any count and size.
            unsafe { (self.entries.calloc)(1, layout.size().max(MALLOC_ALIGN)).cast() }
        } else {
            let p = self.alloc_aligned(layout);
            if !p.is_null() {
                // SAFETY: `p` is a fresh block of `layout.size()` bytes.
                unsafe { p.write_bytes(0, layout.size()) };
            }
            p
        }
    }

    #[inline(always)]
    unsafe fn free(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: `ptr` came from this library and is live (caller's contract).
        unsafe { (self.entries.free)(ptr.cast()) }
    }

    #[inline(always)]
    unsafe fn realloc(&self, ptr: *mut u8, old: Layout, new_size: usize) -> *mut u8 {
        if old.align() <= MALLOC_ALIGN {
            // SAFETY: `ptr` came from this library and is live (caller's contract); `realloc`
            // keeps the first `min(old, new)` bytes and frees `ptr` only on success.
            unsafe { (self.entries.realloc)(ptr.cast(), new_size.max(MALLOC_ALIGN)).cast() }
        } else {
            // SAFETY: forwarded contract.
            unsafe { crate::peers::realloc_by_copy(self, ptr, old, new_size) }
        }
    }

    fn release(&self) {
        if let Some(trim) = self.entries.malloc_trim {
            // SAFETY: `malloc_trim` only returns the library's free memory to the OS.
            unsafe { trim(0) };
        } else if let Some(collect) = self.entries.mi_collect {
            // SAFETY: `mi_collect` frees mimalloc's unused memory; it touches no live block.
            unsafe { collect(true) };
        }
    }
}

impl CabiPeer {
    #[cold]
    #[inline(never)]
    fn alloc_aligned(&self, layout: Layout) -> *mut u8 {
        let Some(memalign) = self.entries.posix_memalign else {
            return ptr::null_mut();
        };
        let mut p = ptr::null_mut();
        // `posix_memalign` wants a multiple of `sizeof(void *)`, which a power of two over 16
        // is.
        // SAFETY: `p` is a valid out-pointer; the alignment is a power of two over 16.
        let rc = unsafe { memalign(&mut p, layout.align(), layout.size()) };
        if rc == 0 {
            p.cast()
        } else {
            ptr::null_mut()
        }
    }
}

/// The kind of a registered library, for [`with_peer`](crate::with_peer) and the tables.
pub fn kind(spec: &str) -> PeerKind {
    PeerKind::Cabi(register(spec))
}
