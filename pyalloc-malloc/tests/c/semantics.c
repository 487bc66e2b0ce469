/* The C semantics of every function libpyalloc_malloc.so exports, checked against glibc's.
 *
 * Run twice by tests/preload.rs: `semantics glibc` without LD_PRELOAD (so every generic check
 * is first shown to hold for glibc itself), and `semantics pyalloc` under the preload, which
 * adds the checks only pyalloc passes (its class sizes, its arenas). The mode must match what
 * is loaded: `pyalloc` without the library fails, so a preload that silently did nothing
 * cannot pass. Exit status 0 when every check passed; each failure is printed.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <gnu/libc-version.h>
#include <malloc.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

extern void *__libc_malloc(size_t);

static int failures;
static int checks;

#define CHECK(cond)                                                            \
    do {                                                                       \
        checks++;                                                              \
        if (!(cond)) {                                                         \
            failures++;                                                        \
            fprintf(stderr, "FAIL %s:%d: %s\n", __FILE__, __LINE__, #cond);   \
        }                                                                      \
    } while (0)

static int aligned_to(void *p, size_t a) { return ((uintptr_t)p & (a - 1)) == 0; }

static void fill(unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++) p[i] = (unsigned char)(seed + i * 7);
}

static int holds(const unsigned char *p, size_t n, unsigned seed) {
    for (size_t i = 0; i < n; i++)
        if (p[i] != (unsigned char)(seed + i * 7)) return 0;
    return 1;
}

/* Opaque to the compiler, so that it cannot fold away a malloc/free pair or a failing size. */
static volatile size_t huge = SIZE_MAX;
static volatile size_t half = SIZE_MAX / 2 + 1;

static void test_malloc_free(void) {
    void *a = malloc(0), *b = malloc(0);
    CHECK(a != NULL && b != NULL && a != b);
    free(a);
    free(b);
    free(NULL);

    for (size_t n = 1; n <= 2048; n += (n < 600 ? 1 : 97)) {
        unsigned char *p = malloc(n);
        CHECK(p != NULL);
        CHECK(aligned_to(p, 16));
        CHECK(malloc_usable_size(p) >= n);
        fill(p, n, (unsigned)n);
        CHECK(holds(p, n, (unsigned)n));
        free(p);
    }

    errno = 0;
    CHECK(malloc(huge) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(malloc(huge - 4096) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(malloc_usable_size(NULL) == 0);
}

static void test_calloc(void) {
    /* Dirty some pool blocks of each small class, free them, then calloc the same sizes:
     * blocks that come back from a free list must be zeroed. */
    for (size_t n = 1; n <= 1024; n += 13) {
        void *dirty[16];
        for (int i = 0; i < 16; i++) {
            dirty[i] = malloc(n);
            memset(dirty[i], 0xAB, n);
        }
        for (int i = 0; i < 16; i++) free(dirty[i]);
        for (int i = 0; i < 16; i++) {
            unsigned char *z = calloc(1, n);
            CHECK(z != NULL);
            int zero = 1;
            for (size_t k = 0; k < n; k++) zero &= z[k] == 0;
            CHECK(zero);
            dirty[i] = z;
        }
        for (int i = 0; i < 16; i++) free(dirty[i]);
    }
    unsigned char *z = calloc(1000, 1000);
    CHECK(z != NULL && z[0] == 0 && z[999999] == 0 && z[123457] == 0);
    free(z);
    void *e = calloc(0, 0);
    CHECK(e != NULL);
    free(e);

    errno = 0;
    CHECK(calloc(half, 2) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(calloc(2, half) == NULL);
    CHECK(errno == ENOMEM);
    errno = 0;
    CHECK(calloc(huge, huge) == NULL);
    CHECK(errno == ENOMEM);
}

static void test_realloc(void) {
    /* NULL is malloc; every move keeps the contents, across classes and across the 512-byte
     * threshold both ways. */
    unsigned char *p = realloc(NULL, 8);
    CHECK(p != NULL);
    fill(p, 8, 1);
    static const size_t sizes[] = {100, 600, 5000, 200000, 3000, 40, 17, 511, 512, 513, 8};
    size_t have = 8;
    for (size_t i = 0; i < sizeof sizes / sizeof *sizes; i++) {
        size_t keep = have < sizes[i] ? have : sizes[i];
        unsigned char *q = realloc(p, sizes[i]);
        CHECK(q != NULL);
        CHECK(aligned_to(q, 16));
        CHECK(holds(q, keep, 1));
        fill(q, sizes[i], 1);
        p = q;
        have = sizes[i];
    }

    /* A failed realloc leaves the block as it was. */
    errno = 0;
    CHECK(realloc(p, huge) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(holds(p, have, 1));

    /* realloc(p, 0) frees p and returns NULL (glibc); realloc(NULL, 0) is malloc(0). */
    CHECK(realloc(p, 0) == NULL);
    void *m = realloc(NULL, 0);
    CHECK(m != NULL);
    free(m);

    /* reallocarray: overflow is ENOMEM and the block untouched. */
    unsigned char *r = reallocarray(NULL, 10, 10);
    CHECK(r != NULL);
    fill(r, 100, 9);
    errno = 0;
    CHECK(reallocarray(r, half, 2) == NULL);
    CHECK(errno == ENOMEM);
    CHECK(holds(r, 100, 9));
    unsigned char *r2 = reallocarray(r, 30, 10);
    CHECK(r2 != NULL && holds(r2, 100, 9));
    free(r2);
}

static void test_aligned(void) {
    static const size_t aligns[] = {8, 16, 32, 64, 128, 4096, 65536};
    static const size_t sizes[] = {0, 1, 100, 512, 513, 10000};
    for (size_t i = 0; i < sizeof aligns / sizeof *aligns; i++) {
        for (size_t j = 0; j < sizeof sizes / sizeof *sizes; j++) {
            size_t a = aligns[i], n = sizes[j];
            void *p = (void *)1;
            errno = 1234;
            CHECK(posix_memalign(&p, a, n) == 0);
            CHECK(errno == 1234);
            CHECK(p != NULL && aligned_to(p, a));
            CHECK(malloc_usable_size(p) >= n);
            memset(p, 0x5A, n);
            free(p);

            unsigned char *q = memalign(a, n);
            CHECK(q != NULL && aligned_to(q, a));
            fill(q, n, 3);
            /* A block from memalign can be realloc'ed and keeps its contents. */
            unsigned char *q2 = realloc(q, n + 100);
            CHECK(q2 != NULL && holds(q2, n, 3));
            free(q2);

            void *c = aligned_alloc(a, n);
            CHECK(c != NULL && aligned_to(c, a));
            free(c);
        }
    }

    /* posix_memalign: EINVAL for alignments that are not a power of two multiple of
     * sizeof(void *), *out untouched and errno untouched. */
    static const size_t bad[] = {0, 1, 2, 4, 3, 24, 48, 100, 4097};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        void *p = (void *)0x1234;
        errno = 77;
        CHECK(posix_memalign(&p, bad[i], 16) == EINVAL);
        CHECK(p == (void *)0x1234);
        CHECK(errno == 77);
    }
    void *p = (void *)0x1234;
    CHECK(posix_memalign(&p, 64, huge) == ENOMEM);
    CHECK(p == (void *)0x1234);

    /* memalign and (glibc before 2.38) aligned_alloc round an alignment that is not a power
     * of two up to one, and refuse one above half the address space with EINVAL. */
    void *m = memalign(24, 100);
    CHECK(m != NULL && aligned_to(m, 32));
    free(m);
    m = memalign(3, 100);
    CHECK(m != NULL && aligned_to(m, 16));
    free(m);
    errno = 0;
    CHECK(memalign(half + 1, 100) == NULL);
    CHECK(errno == EINVAL);
    int major = 0, minor = 0;
    sscanf(gnu_get_libc_version(), "%d.%d", &major, &minor);
    if (major == 2 && minor < 38) {
        void *c = aligned_alloc(24, 100);
        CHECK(c != NULL && aligned_to(c, 32));
        free(c);
        c = aligned_alloc(3, 100);
        CHECK(c != NULL && aligned_to(c, 16));
        free(c);
    }

    long page = sysconf(_SC_PAGESIZE);
    void *v = valloc(10);
    CHECK(v != NULL && aligned_to(v, (size_t)page));
    CHECK(malloc_usable_size(v) >= 10);
    free(v);
    v = pvalloc(10);
    CHECK(v != NULL && aligned_to(v, (size_t)page));
    CHECK(malloc_usable_size(v) >= (size_t)page);
    memset(v, 1, (size_t)page); /* the whole page is the caller's */
    free(v);
}

/* Blocks glibc allocated (as before the library was loaded, or by a direct __libc_malloc
 * call) are freed, resized and measured through the exported functions. */
static void test_foreign(void) {
    unsigned char *g = __libc_malloc(40);
    CHECK(g != NULL);
    CHECK(malloc_usable_size(g) >= 40);
    fill(g, 40, 5);
    unsigned char *g2 = realloc(g, 24);
    CHECK(g2 != NULL && holds(g2, 24, 5));
    unsigned char *g3 = realloc(g2, 100000);
    CHECK(g3 != NULL && holds(g3, 24, 5));
    free(g3);
    free(__libc_malloc(1));

    char *s = strdup("strdup allocates inside libc");
    CHECK(s != NULL && strcmp(s, "strdup allocates inside libc") == 0);
    free(s);
}

/* What only pyalloc does: its class sizes, its in-place rule, its arenas. */
static void test_pyalloc(void) {
    int (*owns)(const void *) = (int (*)(const void *))dlsym(RTLD_DEFAULT, "pyalloc_malloc_owns");
    CHECK(owns != NULL);
    if (owns == NULL) return;

    void *small = malloc(20);
    CHECK(owns(small));
    CHECK(malloc_usable_size(small) == 32); /* glibc says 24 */
    void *zero = malloc(0);
    CHECK(owns(zero) && malloc_usable_size(zero) == 16);
    void *cz = calloc(3, 100);
    CHECK(owns(cz) && malloc_usable_size(cz) == 304);
    void *al = memalign(16, 100);
    CHECK(owns(al));
    void *big = malloc(1000);
    CHECK(!owns(big)); /* glibc's */
    void *g = __libc_malloc(20);
    CHECK(!owns(g));
    int local = 0;
    CHECK(!owns(&local));
    CHECK(!owns(NULL));
    CHECK(!owns((void *)UINTPTR_MAX));

    /* CPython's realloc rule: in place while the class holds the size and more than three
     * quarters of the block stay used. */
    unsigned char *p = malloc(40); /* a 48-byte block */
    fill(p, 40, 8);
    CHECK(realloc(p, 44) == p);
    CHECK(realloc(p, 48) == p);
    CHECK(realloc(p, 37) == p);
    unsigned char *q = realloc(p, 36); /* 36 * 4 == 48 * 3, not more: moves (to another 48-byte block) */
    CHECK(q != p && owns(q) && malloc_usable_size(q) == 48 && holds(q, 36, 8));
    unsigned char *r = realloc(q, 600); /* to glibc */
    CHECK(r != NULL && !owns(r) && holds(r, 36, 8));
    unsigned char *s = realloc(r, 30); /* glibc's block stays glibc's */
    CHECK(s != NULL && !owns(s) && holds(s, 30, 8));
    free(s);

    free(small);
    free(zero);
    free(cz);
    free(al);
    free(big);
    free(g);
}

int main(int argc, char **argv) {
    int pyalloc = argc > 1 && strcmp(argv[1], "pyalloc") == 0;
    int loaded = dlsym(RTLD_DEFAULT, "pyalloc_malloc_owns") != NULL;
    if (pyalloc != loaded) {
        fprintf(stderr, "FAIL: mode %s but libpyalloc_malloc.so is %sloaded\n",
                pyalloc ? "pyalloc" : "glibc", loaded ? "" : "not ");
        return 2;
    }
    test_malloc_free();
    test_calloc();
    test_realloc();
    test_aligned();
    test_foreign();
    if (pyalloc) test_pyalloc();
    printf("semantics (%s, glibc %s): %d checks, %d failed\n", pyalloc ? "pyalloc" : "glibc",
           gnu_get_libc_version(), checks, failures);
    return failures != 0;
}
