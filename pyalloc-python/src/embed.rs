//! Pre-initialisation, the allocator's installation, `Py_BytesMain`, statistics at the end.

use core::cell::UnsafeCell;
use core::ffi::{c_char, c_int, CStr};
use core::mem::MaybeUninit;
use core::ptr;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;

use pyo3_ffi::{
    PyMemAllocatorDomain, PyMem_SetAllocator, PyMem_SetupDebugHooks, PyPreConfig,
    PyPreConfig_InitPythonConfig, PyStatus_Exception, Py_BytesMain, Py_ExitStatusException,
    Py_PreInitializeFromBytesArgs, Py_ssize_t,
};

use pyalloc::Heap;

use crate::adapter;

unsafe extern "C" {
    /// The name of the allocator set CPython installed (`"pymalloc"`, `"malloc"`,
    /// `"pymalloc_debug"`, `"malloc_debug"`), or NULL when the domains hold anything else.
    /// Declared in `cpython/pymem.h` since 3.8; pyo3-ffi leaves it out.
    fn _PyMem_GetCurrentAllocatorName() -> *const c_char;
}

/// The environment variable that asks for pyalloc's statistics on stderr at the end.
const STATS_VAR: &str = "PYALLOC_PYTHON_STATS";

/// The heap behind CPython's OBJ and MEM domains: one heap for both, as pymalloc is.
///
/// `Heap` is not `Sync` (it is built for one thread), and CPython calls the two domains from
/// whichever thread runs Python code.
struct GilHeap(UnsafeCell<Option<Heap>>);

// SAFETY: CPython calls the OBJ and MEM domains' functions (PyObject_Malloc, PyMem_Malloc, and
// their calloc/realloc/free) only from a thread that holds the GIL, one at a time (under -X
// dev the debug hooks check it: "Python memory allocator called without holding the GIL"). The
// GIL is a lock, so each call into the heap ends before the next begins, on any thread, and
// what one call wrote is visible to the next: the heap is used as by one thread. The cell is
// written once, by `GilHeap::install`, before Python runs and so before it starts a thread; the
// statistics are read after `Py_BytesMain` has finalised the interpreter, when no thread can
// take the GIL again.
unsafe impl Sync for GilHeap {}

static HEAP: GilHeap = GilHeap(UnsafeCell::new(None));

impl GilHeap {
    /// Creates the heap (it maps nothing until its first allocation).
    ///
    /// # Safety
    ///
    /// Called once, before CPython is initialised (no other thread uses the heap yet), and
    /// the heap is used afterwards only as `GilHeap`'s `Sync` argument says.
    unsafe fn install(&'static self) -> &'static Heap {
        // SAFETY: by the contract nothing else reads or writes the cell now; the reference
        // handed out is shared, and the cell is never written again.
        unsafe { (*self.0.get()).insert(Heap::new()) }
    }
}

/// Runs CPython on pyalloc with this process's command line; returns the exit status.
pub(crate) fn run() -> i32 {
    let want_stats = std::env::var_os(STATS_VAR).is_some_and(|v| v == "1");
    // The arguments live until the process ends: CPython keeps pointers into argv (sys.argv is
    // decoded from it, and `Py_BytesMain` reads it after the pre-initialisation).
    let args: Vec<CString> = std::env::args_os()
        .map(|a| CString::new(a.as_bytes()).expect("a command-line argument holds no NUL byte"))
        .collect();
    let mut argv: Vec<*mut c_char> = args.iter().map(|a| a.as_ptr().cast_mut()).collect();
    argv.push(ptr::null_mut());
    let argc = args.len();

    pre_initialize(argc, &mut argv);
    // Asked before ours replaces them: whether -X dev, PYTHONDEVMODE or PYTHONMALLOC=*debug
    // made CPython wrap its domains in the debug hooks.
    let debug_hooks = current_allocator_name().is_some_and(|name| name.ends_with("_debug"));

    // SAFETY: once, before the initialisation; the heap is used by the domains' functions,
    // which CPython calls with the GIL held, and read for the statistics after finalisation.
    let heap = unsafe { HEAP.install() };
    let mut table = adapter::allocator_ex(heap);
    // SAFETY: after the pre-initialisation and before the initialisation nothing has been
    // allocated in the MEM and OBJ domains, so every block they free is one of ours (CPython's
    // documented window for PyMem_SetAllocator); CPython copies the table. CPython calls MEM
    // and OBJ with the GIL held, which is what sharing `heap` between them needs (`GilHeap`).
    unsafe {
        PyMem_SetAllocator(PyMemAllocatorDomain::PYMEM_DOMAIN_MEM, &mut table);
        PyMem_SetAllocator(PyMemAllocatorDomain::PYMEM_DOMAIN_OBJ, &mut table);
    }
    if debug_hooks {
        // SAFETY: still before the initialisation: the hooks wrap the allocators just
        // installed (and leave RAW, already wrapped, as it is).
        unsafe { PyMem_SetupDebugHooks() };
    }

    let argc = c_int::try_from(argc).expect("fewer than 2^31 arguments");
    // SAFETY: argv holds argc NUL-terminated strings and a NULL, alive until the process ends;
    // the runtime is pre-initialised from the same arguments, so Py_BytesMain keeps that
    // configuration.
    let status = unsafe { Py_BytesMain(argc, argv.as_mut_ptr()) };
    if want_stats {
        // After finalisation: the objects CPython freed are gone; the arena counts show what
        // the run needed.
        eprint!("pyalloc-python: statistics at exit\n{}", heap.stats());
    }
    status
}

/// `Py_PreInitializeFromBytesArgs` with `python3`'s configuration: `-E`, `-I`, `-X dev`,
/// `-X utf8` and the `PYTHON*` variables count as they do for `python3`. Exits as `python3`
/// would on an error.
fn pre_initialize(argc: usize, argv: &mut [*mut c_char]) {
    let mut preconfig = MaybeUninit::<PyPreConfig>::uninit();
    // SAFETY: the function writes every field of the structure it is given.
    let preconfig = unsafe {
        PyPreConfig_InitPythonConfig(preconfig.as_mut_ptr());
        preconfig.assume_init()
    };
    let argc = Py_ssize_t::try_from(argc).expect("fewer than 2^63 arguments");
    // SAFETY: `preconfig` is initialised; argv holds argc NUL-terminated strings and a NULL.
    let status = unsafe { Py_PreInitializeFromBytesArgs(&preconfig, argc, argv.as_mut_ptr()) };
    // SAFETY: `status` is the one the call returned.
    if unsafe { PyStatus_Exception(status) } != 0 {
        // SAFETY: as above; it prints the error and exits as python3 does.
        unsafe { Py_ExitStatusException(status) }
    }
}

/// `_PyMem_GetCurrentAllocatorName()`, as a string.
fn current_allocator_name() -> Option<String> {
    // SAFETY: no precondition; it reads the runtime's allocator tables, which the
    // pre-initialisation has set.
    let name = unsafe { _PyMem_GetCurrentAllocatorName() };
    if name.is_null() {
        return None;
    }
    // SAFETY: non-NULL, it is one of obmalloc.c's static, NUL-terminated strings.
    let name = unsafe { CStr::from_ptr(name) };
    Some(name.to_string_lossy().into_owned())
}
