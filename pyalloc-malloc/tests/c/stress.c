/* Threads that free each other's blocks, under the preload.
 *
 * `stress THREADS ROUNDS OPS`: each round starts THREADS threads that swap blocks in and out of
 * a shared table of slots (so nearly every free is of a block another thread allocated, some
 * of them from threads that have exited), resize some, and check every block's contents
 * before freeing it; the threads then exit, allocating in a thread-specific-data destructor on
 * the way out, and the next round's threads adopt their heaps. Sizes are mostly small (pool
 * blocks), some above 512 bytes (glibc's). Exit status 0 when every block held its pattern.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SLOTS 4096

struct block {
    uint32_t size;
    uint32_t seed;
};

static _Atomic(struct block *) slots[SLOTS];
static atomic_int bad;
static pthread_key_t key;
static int ops;

static uint32_t next(uint32_t *state) {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    return *state;
}

static size_t pick_size(uint32_t r) {
    if (r % 64 == 0) return 513 + r % 20000; /* glibc's */
    return sizeof(struct block) + r % 500;    /* a pool's, up to 508 bytes */
}

static void stamp(struct block *b, size_t size, uint32_t seed) {
    b->size = (uint32_t)size;
    b->seed = seed;
    unsigned char *p = (unsigned char *)(b + 1);
    for (size_t i = 0; i < size - sizeof *b; i++) p[i] = (unsigned char)(seed + i);
}

static void verify(struct block *b) {
    unsigned char *p = (unsigned char *)(b + 1);
    for (size_t i = 0; i < b->size - sizeof *b; i++)
        if (p[i] != (unsigned char)(b->seed + i)) {
            atomic_fetch_add(&bad, 1);
            fprintf(stderr, "FAIL: block %p of %u bytes corrupt at %zu\n", (void *)b, b->size, i);
            return;
        }
}

/* Runs as the thread exits, after its own heap may already be given back. */
static void on_exit_key(void *value) {
    free(value);
    void *late = malloc(48);
    memset(late, 1, 48);
    free(late);
}

static void *worker(void *arg) {
    uint32_t state = (uint32_t)(uintptr_t)arg * 2654435761u + 1;
    pthread_setspecific(key, malloc(100));
    for (int i = 0; i < ops; i++) {
        uint32_t r = next(&state);
        size_t size = pick_size(r);
        struct block *b = malloc(size);
        if (b == NULL) {
            atomic_fetch_add(&bad, 1);
            continue;
        }
        stamp(b, size, r);
        struct block *old = atomic_exchange(&slots[r % SLOTS], b);
        if (old == NULL) continue;
        verify(old);
        if (r % 8 == 1) {
            /* Resize another thread's block, then keep it: its contents must survive. */
            size_t grown = pick_size(next(&state));
            uint32_t size0 = old->size, seed0 = old->seed;
            struct block *moved = realloc(old, grown);
            if (moved == NULL) {
                atomic_fetch_add(&bad, 1);
                continue;
            }
            moved->size = size0 < grown ? size0 : (uint32_t)grown;
            moved->seed = seed0;
            verify(moved);
            free(moved);
        } else {
            free(old);
        }
    }
    return NULL;
}

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 4;
    int rounds = argc > 2 ? atoi(argv[2]) : 3;
    ops = argc > 3 ? atoi(argv[3]) : 100000;
    pthread_key_create(&key, on_exit_key);
    for (int round = 0; round < rounds; round++) {
        pthread_t t[64];
        for (int i = 0; i < threads; i++)
            pthread_create(&t[i], NULL, worker, (void *)(uintptr_t)(round * 64 + i + 1));
        for (int i = 0; i < threads; i++) pthread_join(t[i], NULL);
    }
    for (int i = 0; i < SLOTS; i++) {
        struct block *b = atomic_exchange(&slots[i], NULL);
        if (b) {
            verify(b);
            free(b);
        }
    }
    printf("stress: %d threads x %d rounds x %d ops, %d bad\n", threads, rounds, ops,
           atomic_load(&bad));
    return atomic_load(&bad) != 0;
}
