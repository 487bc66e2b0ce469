/* fork while other threads allocate, under the preload.
 *
 * `fork FORKS`: three threads keep allocating, swapping blocks through a shared table and
 * freeing each other's, and a fourth keeps starting short-lived threads (whose set-up and exit
 * allocate from the shared fallback heap); meanwhile the main thread forks FORKS times. Each child (alarm: 10 s,
 * so a deadlock is a failure and not a hang) frees every block left in the table (blocks of
 * heaps whose threads do not exist in the child), allocates and frees on its own thread and on
 * a new one, and exits 0. Exit status 0 when every child did.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#define SLOTS 1024

static _Atomic(unsigned char *) slots[SLOTS];
static atomic_int stop;

static void *churn(void *arg) {
    uint32_t state = (uint32_t)(uintptr_t)arg * 2654435761u + 7;
    while (!atomic_load(&stop)) {
        state ^= state << 13;
        state ^= state >> 17;
        state ^= state << 5;
        size_t size = state % 32 == 0 ? 600 + state % 5000 : 1 + state % 512;
        unsigned char *b = malloc(size);
        memset(b, (int)(state & 0xff), size);
        free(atomic_exchange(&slots[state % SLOTS], b));
    }
    return NULL;
}

static pthread_key_t key;

/* A malloc/free pair the compiler cannot remove (GCC deletes `free(malloc(n))`). */
static void churn_one(size_t size) {
    void *volatile block = malloc(size);
    free(block);
}

/* Runs at a short-lived thread's exit, after its heap was given back: these requests, like the
 * ones made while a thread sets up its heap, are served by the shared fallback heap, the one
 * heap a fork could catch held by another thread. */
static void late(void *value) {
    free(value);
    for (int i = 0; i < 5000; i++) churn_one(16 + i % 400);
}

static void *brief(void *arg) {
    pthread_setspecific(key, malloc(32));
    return arg;
}

/* Keeps starting threads that live for one allocation: set-up and exit, over and over. */
static void *spawner(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        pthread_t t;
        if (pthread_create(&t, NULL, brief, NULL) == 0) pthread_join(t, NULL);
    }
    return NULL;
}

static void *child_thread(void *arg) {
    (void)arg;
    pthread_setspecific(key, malloc(32)); /* and `late` at its exit */
    for (int i = 0; i < 10000; i++) churn_one(1 + i % 700);
    return NULL;
}

static int child(void) {
    alarm(10);
    /* Only this thread exists now: the table's blocks belong to heaps of threads that are
     * gone (a block being swapped at the fork is simply leaked). */
    for (int i = 0; i < SLOTS; i++) free(atomic_exchange(&slots[i], NULL));
    void *keep[2000];
    for (int i = 0; i < 2000; i++) {
        keep[i] = malloc(1 + i % 600);
        if (keep[i] == NULL) return 3;
        memset(keep[i], 0x33, 1 + i % 600);
    }
    for (int i = 0; i < 2000; i++) free(keep[i]);
    pthread_t t;
    if (pthread_create(&t, NULL, child_thread, NULL) != 0) return 4;
    pthread_join(t, NULL);
    char *s = strdup("child");
    int ok = s != NULL && strcmp(s, "child") == 0;
    free(s);
    return ok ? 0 : 5;
}

int main(int argc, char **argv) {
    int forks = argc > 1 ? atoi(argv[1]) : 50;
    pthread_key_create(&key, late);
    pthread_t t[4];
    for (int i = 0; i < 3; i++) pthread_create(&t[i], NULL, churn, (void *)(uintptr_t)(i + 1));
    pthread_create(&t[3], NULL, spawner, NULL);
    int failed = 0;
    for (int i = 0; i < forks; i++) {
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            failed++;
            break;
        }
        if (pid == 0) _exit(child());
        int status = 0;
        waitpid(pid, &status, 0);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            fprintf(stderr, "FAIL: child %d: %s %d\n", i,
                    WIFSIGNALED(status) ? "killed by signal" : "exit status",
                    WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
            failed++;
        }
        /* The parent keeps allocating too. */
        churn_one(64);
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    for (int i = 0; i < SLOTS; i++) free(atomic_exchange(&slots[i], NULL));
    printf("fork: %d forks, %d failed\n", forks, failed);
    return failed != 0;
}
