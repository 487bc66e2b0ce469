//! With the `valgrind` feature, compiles `csrc/valgrind.c`: the memcheck client requests behind
//! `src/valgrind.rs`. Without it, does nothing.

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    #[cfg(feature = "valgrind")]
    valgrind();
}

/// Compiles the client-request wrappers against `<valgrind/memcheck.h>`, found in
/// `$VALGRIND_INCLUDE_DIR` if set, else on the compiler's default path (Debian's `valgrind`
/// package puts it in `/usr/include/valgrind`).
#[cfg(feature = "valgrind")]
fn valgrind() {
    println!("cargo:rerun-if-changed=csrc/valgrind.c");
    println!("cargo:rerun-if-env-changed=VALGRIND_INCLUDE_DIR");
    let mut build = cc::Build::new();
    build.file("csrc/valgrind.c").warnings(true);
    match std::env::var_os("VALGRIND_INCLUDE_DIR") {
        Some(dir) => {
            build.include(dir);
        }
        None if !std::path::Path::new("/usr/include/valgrind/memcheck.h").exists() => {
            println!(
                "cargo:warning=<valgrind/memcheck.h> not in /usr/include: install valgrind \
                 (`apt-get install valgrind`) or set VALGRIND_INCLUDE_DIR"
            );
        }
        None => {}
    }
    build.compile("pyalloc_valgrind");
}
