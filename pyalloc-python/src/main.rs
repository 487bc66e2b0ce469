//! `pyalloc-python`: `python3` with pyalloc serving CPython's OBJ and MEM allocator domains.
//!
//! The binary pre-initialises CPython from its own command line and environment exactly as
//! `python3` does, installs pyalloc with `PyMem_SetAllocator` for the OBJ (`PyObject_Malloc`)
//! and MEM (`PyMem_Malloc`) domains (the RAW domain stays the system's), re-applies CPython's
//! debug hooks over it when `-X dev` or `PYTHONMALLOC=*debug` asked for them, and hands the
//! command line to `Py_BytesMain`: it takes `python3`'s arguments, and the subprocesses that
//! CPython's tests start through `sys.executable` run it too. With `PYALLOC_PYTHON_STATS=1`
//! it prints pyalloc's statistics to stderr when the interpreter has finished.
//!
//! Built without an embeddable Python (see build.rs), it prints one line saying so and exits
//! with status 2.

#[cfg(has_python)]
mod adapter;
#[cfg(has_python)]
mod embed;

#[cfg(has_python)]
fn main() {
    std::process::exit(embed::run());
}

#[cfg(not(has_python))]
fn main() {
    eprintln!(
        "pyalloc-python was built without an embeddable Python ({})",
        env!("PYALLOC_PYTHON_STUB_REASON")
    );
    std::process::exit(2);
}
