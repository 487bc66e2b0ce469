/*
 * A model of W3 (1e5 blocks of 64 B, freed at random, allocated again) that asks one
 * question: how much of a random free's time is its pool header's cache miss?
 *
 *     cc -O2 -o /tmp/w3h pyalloc-bench/cabi/w3_headers.c
 *     /tmp/w3h 0    # headers at each 16 KiB pool's start (CPython's layout, pyalloc's)
 *     /tmp/w3h 1    # headers in one dense table beside the pools (mimalloc's layout)
 *
 * The pools are 16 KiB, aligned in a 1 MiB-aligned region, 64-byte blocks after a 64-byte
 * header: the headers at the pools' starts all fall in one set of the first-level cache.
 * Each batch frees every block in one fixed random order (pushing it on its pool's free list,
 * through the header) and then pops every block back in address order; the figure is the best
 * batch of 30, in ns per free-and-allocate pair. Run each layout several times and compare
 * medians: the machine is noisy.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

#define POOL 16384
#define BLOCK 64
#define BLOCKS 100000

struct header {
    void *free;
    long count;
    long pad[6]; /* one cache line */
};

static double now_ns(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e9 + t.tv_nsec;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: %s 0|1 (headers in the pools | in a dense table)\n", argv[0]);
        return 2;
    }
    int dense = atoi(argv[1]);
    size_t per_pool = (POOL - sizeof(struct header)) / BLOCK;
    size_t pools = BLOCKS / per_pool + 1;
    size_t bytes = pools * POOL;
    char *map = mmap(0, bytes + (1 << 20), PROT_READ | PROT_WRITE,
                     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map == MAP_FAILED) return 1;
    char *base = (char *)(((uintptr_t)map + (1 << 20) - 1) & ~(uintptr_t)((1 << 20) - 1));
    struct header *table = aligned_alloc(64, pools * sizeof(struct header));
    char **blocks = malloc(BLOCKS * sizeof *blocks);
    size_t *order = malloc(BLOCKS * sizeof *order);
    if (!table || !blocks || !order) return 1;

    size_t n = 0;
    for (size_t p = 0; p < pools && n < BLOCKS; p++)
        for (size_t b = 0; b < per_pool && n < BLOCKS; b++)
            blocks[n++] = base + p * POOL + sizeof(struct header) + b * BLOCK;
    for (size_t i = 0; i < BLOCKS; i++) order[i] = i;
    srand(1);
    for (size_t i = BLOCKS - 1; i > 0; i--) {
        size_t j = (size_t)rand() % (i + 1), t = order[i];
        order[i] = order[j];
        order[j] = t;
    }
    for (size_t p = 0; p < pools; p++) {
        ((struct header *)(base + p * POOL))->free = 0;
        table[p].free = 0;
    }
    for (size_t i = 0; i < BLOCKS; i++) *blocks[i] = 1; /* fault everything in */

#define HEADER(p) (dense ? &table[(uintptr_t)((p) - base) / POOL] \
                         : (struct header *)((uintptr_t)(p) & ~(uintptr_t)(POOL - 1)))
    double best = 1e18;
    for (int batch = 0; batch < 30; batch++) {
        double start = now_ns();
        for (size_t i = 0; i < BLOCKS; i++) {
            char *p = blocks[order[i]];
            struct header *h = HEADER(p);
            *(void **)p = h->free;
            h->free = p;
            h->count--;
        }
        for (size_t i = 0; i < BLOCKS; i++) {
            char *p = blocks[i];
            struct header *h = HEADER(p);
            h->free = *(void **)p;
            h->count++;
        }
        double per_pair = (now_ns() - start) / BLOCKS;
        if (per_pair < best) best = per_pair;
    }
    printf("%s: %.2f ns per free and allocation (best of 30 batches)\n",
           dense ? "headers in a dense table" : "headers at the pools' starts", best);
    return 0;
}
