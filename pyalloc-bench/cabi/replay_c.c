/* The C cross-check of the `replay` tool: replays one allocation trace on a malloc-compatible
 * shared library loaded with dlopen, calling its malloc/calloc/realloc/free through function
 * pointers, with the same per-block work as the Rust tool (pyalloc-bench/src/replay.rs): a tag
 * byte at each end of every block, checked on free and realloc.
 *
 *   cc -O2 -o replay_c replay_c.c -ldl -lz
 *   replay_c LIB.so TRACE.trace.gz [RUNS [WARMUP]]
 *
 * LIB is a path or a soname (libc.so.6 is glibc itself). WARMUP (default 1) untimed replays
 * come first: the library's first replay faults its memory in. Prints one line per run (ns per
 * event, and the minor page faults taken inside the timed loop) and a last line
 * "median MED min MIN max MAX". Each run reuses the library's state of
 * the run before (as the Rust tool's process-wide peers do); blocks live at the end of a run
 * are verified and freed outside the timing. Requests under 16 bytes ask for 16 (every block of
 * the trace must be 16-byte aligned, which all of malloc's callers here get from 16 bytes up);
 * the alignment is checked on every block.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <zlib.h>

typedef void *(*malloc_fn)(size_t);
typedef void *(*calloc_fn)(size_t, size_t);
typedef void *(*realloc_fn)(void *, size_t);
typedef void (*free_fn)(void *);

struct event {
    uint8_t op; /* 'a', 'z', 'r', 'f' */
    uint32_t size, id, new_id;
};

struct slot {
    unsigned char *ptr;
    uint32_t size;
};

static malloc_fn lib_malloc;
static calloc_fn lib_calloc;
static realloc_fn lib_realloc;
static free_fn lib_free;

static inline uint8_t first_tag(uint32_t id) { return (uint8_t)((id * 0x9E3779B1u) >> 24) ^ 0xA5; }
static inline uint8_t last_tag(uint32_t id) { return (uint8_t)((id * 0x85EBCA6Bu) >> 24) ^ 0x5A; }
/* The Rust tool's `layout_of(size).size()`: the request, at least 1. */
static inline size_t len_of(uint32_t size) { return size ? size : 1; }
/* What is asked of the library: at least 16 bytes, for 16-byte alignment. */
static inline size_t ask_of(size_t len) { return len < 16 ? 16 : len; }

static void die(const char *what, size_t i) {
    fprintf(stderr, "replay_c: event %zu: %s\n", i + 1, what);
    exit(1);
}

static inline void tag(unsigned char *p, size_t len, uint32_t id) {
    p[len - 1] = last_tag(id);
    p[0] = first_tag(id);
}

static inline void verify(const unsigned char *p, size_t len, uint32_t id, size_t i) {
    if (p[0] != first_tag(id) || (len > 1 && p[len - 1] != last_tag(id)))
        die("a block was overwritten", i);
}

static inline unsigned char *checked(void *p, size_t i) {
    if (!p)
        die("allocation returned null", i);
    if ((uintptr_t)p & 15)
        die("block not 16-byte aligned", i);
    return p;
}

static struct event *load(const char *path, size_t *count, uint32_t *ids) {
    gzFile f = gzopen(path, "rb");
    if (!f) {
        fprintf(stderr, "replay_c: cannot open %s\n", path);
        exit(2);
    }
    size_t cap = 1 << 20, n = 0;
    struct event *ev = malloc(cap * sizeof *ev);
    char line[128];
    uint32_t max_id = 0;
    while (gzgets(f, line, sizeof line)) {
        if (line[0] == '\n' || line[0] == 0)
            continue;
        if (n == cap)
            ev = realloc(ev, (cap *= 2) * sizeof *ev);
        struct event e = {.op = (uint8_t)line[0]};
        int ok;
        switch (line[0]) {
        case 'a':
        case 'z':
            ok = sscanf(line + 2, "%u %u", &e.id, &e.size) == 2;
            e.new_id = e.id;
            break;
        case 'r':
            ok = sscanf(line + 2, "%u %u %u", &e.id, &e.new_id, &e.size) == 3;
            break;
        case 'f':
            ok = sscanf(line + 2, "%u", &e.id) == 1;
            e.new_id = e.id;
            break;
        default:
            ok = 0;
        }
        if (!ok) {
            fprintf(stderr, "replay_c: %s: line %zu: cannot parse %s", path, n + 1, line);
            exit(2);
        }
        if (e.new_id > max_id)
            max_id = e.new_id;
        if (e.id > max_id)
            max_id = e.id;
        ev[n++] = e;
    }
    gzclose(f);
    *count = n;
    *ids = max_id + 1;
    return ev;
}

/* The wall clock, or with REPLAY_CLOCK=cpu in the environment the thread's CPU time (user and
 * system: page faults count), which leaves out the time spent waiting for a core. */
static clockid_t clock_id = CLOCK_MONOTONIC;

static double now_ns(void) {
    struct timespec t;
    clock_gettime(clock_id, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* The timed loop: the Rust tool's `replay::run`, event for event. */
static __attribute__((noinline)) void run(const struct event *ev, size_t n, struct slot *slots) {
    for (size_t i = 0; i < n; i++) {
        const struct event *e = &ev[i];
        size_t len = len_of(e->size);
        switch (e->op) {
        case 'a': {
            unsigned char *p = checked(lib_malloc(ask_of(len)), i);
            tag(p, len, e->id);
            slots[e->id] = (struct slot){p, e->size};
            break;
        }
        case 'z': {
            unsigned char *p = checked(lib_calloc(1, ask_of(len)), i);
            if (p[0] != 0 || p[len - 1] != 0)
                die("zeroed block is not zero", i);
            tag(p, len, e->id);
            slots[e->id] = (struct slot){p, e->size};
            break;
        }
        case 'r': {
            struct slot old = slots[e->id];
            slots[e->id] = (struct slot){0, 0};
            size_t old_len = len_of(old.size);
            verify(old.ptr, old_len, e->id, i);
            unsigned char *p = checked(lib_realloc(old.ptr, ask_of(len)), i);
            size_t keep = old_len < len ? old_len : len;
            if (p[0] != first_tag(e->id) ||
                (len >= old_len && old_len > 1 && p[keep - 1] != last_tag(e->id)))
                die("realloc lost the block's contents", i);
            tag(p, len, e->new_id);
            slots[e->new_id] = (struct slot){p, e->size};
            break;
        }
        case 'f': {
            struct slot s = slots[e->id];
            slots[e->id] = (struct slot){0, 0};
            verify(s.ptr, len_of(s.size), e->id, i);
            lib_free(s.ptr);
            break;
        }
        }
    }
}

static long minor_faults(void) {
    struct rusage u;
    getrusage(RUSAGE_SELF, &u);
    return u.ru_minflt;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void *sym(void *lib, const char *name, const char *path) {
    void *p = dlsym(lib, name);
    if (!p) {
        fprintf(stderr, "replay_c: %s has no %s\n", path, name);
        exit(2);
    }
    return p;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: replay_c LIB.so TRACE.trace.gz [RUNS [WARMUP]]\n");
        return 2;
    }
    int runs = argc > 3 ? atoi(argv[3]) : 5;
    if (runs < 1)
        runs = 1;
    const char *clock_name = getenv("REPLAY_CLOCK");
    if (clock_name && strcmp(clock_name, "cpu") == 0)
        clock_id = CLOCK_THREAD_CPUTIME_ID;
    int warmup = argc > 4 ? atoi(argv[4]) : 1;
    if (warmup < 0)
        warmup = 0;
    void *lib = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL | RTLD_DEEPBIND);
    if (!lib) {
        fprintf(stderr, "replay_c: %s\n", dlerror());
        return 2;
    }
    lib_malloc = (malloc_fn)sym(lib, "malloc", argv[1]);
    lib_calloc = (calloc_fn)sym(lib, "calloc", argv[1]);
    lib_realloc = (realloc_fn)sym(lib, "realloc", argv[1]);
    lib_free = (free_fn)sym(lib, "free", argv[1]);

    size_t n;
    uint32_t ids;
    struct event *ev = load(argv[2], &n, &ids);
    double *ns = malloc(runs * sizeof *ns);
    for (int r = -warmup; r < runs; r++) {
        /* Touched before the timing (a fresh calloc of many MiB is mapped but not faulted
         * in, and its faults would be counted against the library). */
        struct slot *slots = calloc(ids, sizeof *slots);
        for (size_t b = 0; b < ids * sizeof *slots; b += 4096)
            ((volatile char *)slots)[b] = 0;
        long f0 = minor_faults();
        double t0 = now_ns();
        run(ev, n, slots);
        double t1 = now_ns();
        long faults = minor_faults() - f0;
        for (uint32_t id = 0; id < ids; id++) {
            if (!slots[id].ptr)
                continue;
            verify(slots[id].ptr, len_of(slots[id].size), id, 0);
            lib_free(slots[id].ptr);
        }
        free(slots);
        if (r < 0)
            continue;
        ns[r] = (t1 - t0) / (double)n;
        printf("run %d %.2f ns/event %ld minor faults\n", r + 1, ns[r], faults);
    }
    qsort(ns, runs, sizeof *ns, cmp_double);
    double med = runs % 2 ? ns[runs / 2] : (ns[runs / 2 - 1] + ns[runs / 2]) / 2;
    printf("median %.2f min %.2f max %.2f\n", med, ns[0], ns[runs - 1]);
    return 0;
}
