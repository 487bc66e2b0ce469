/* Memcheck client requests for pyalloc-core's `valgrind` feature (src/valgrind.rs).
 *
 * The requests are macros of <valgrind/memcheck.h> that expand to a magic instruction
 * sequence: a no-op on the real CPU, a message to the tool under valgrind. Rust cannot expand
 * C macros, so each is wrapped in a function of its own here. */
#include <stddef.h>
#include <valgrind/memcheck.h>

void pyalloc_vg_malloclike(const void *ptr, size_t size, int defined) {
    VALGRIND_MALLOCLIKE_BLOCK(ptr, size, 0, defined);
}

void pyalloc_vg_freelike(const void *ptr) {
    VALGRIND_FREELIKE_BLOCK(ptr, 0);
}

void pyalloc_vg_make_noaccess(const void *ptr, size_t len) {
    (void)VALGRIND_MAKE_MEM_NOACCESS(ptr, len);
}

void pyalloc_vg_make_undefined(const void *ptr, size_t len) {
    (void)VALGRIND_MAKE_MEM_UNDEFINED(ptr, len);
}

void pyalloc_vg_make_defined(const void *ptr, size_t len) {
    (void)VALGRIND_MAKE_MEM_DEFINED(ptr, len);
}
