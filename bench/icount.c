/*
 * bench-icount: the allocation calls whose instructions bench/run --icount
 * counts under `valgrind --tool=callgrind`.
 *
 *   bench-icount [N] [SIZE]        (defaults: N = 200000, SIZE = 32)
 *
 * It only calls malloc and free, so the allocator under test is chosen with
 * LD_PRELOAD (none = glibc). Each measured loop lives in its own noinline
 * function named measure_*; the runner reads callgrind's output and sums,
 * per measure_* function, the inclusive cost of the calls it makes (that is,
 * the instructions executed inside malloc / free and everything they call,
 * including the PLT jump), divided by N. The loops' own instructions are not
 * part of the figure.
 *
 *   measure_pair         N times: p = malloc(SIZE); touch; free(p)
 *                        (hot path: the same block goes back and forth;
 *                        64 other blocks of the size stay live, so its
 *                        page never empties)
 *   measure_batch_malloc N mallocs in a row, kept (thread A)
 *   measure_local_free   thread A frees its own N blocks
 *   measure_remote_alloc thread A allocates N more blocks ...
 *   measure_remote_free  ... which thread B frees while A is still alive
 *                        (A waits, so the owner is a live thread)
 *
 * Before the measured loops every path is warmed up once with 1000 calls
 * (first-call costs: lazy binding, heap creation, first pages), so the
 * figures are steady-state costs, including the amortised slow paths
 * (fresh pages, collecting remote frees) that N operations run into.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

static size_t g_n = 200000;
static size_t g_size = 32;
static void** g_vec;

#if defined(__clang__)
#define NOINLINE __attribute__((noinline))
#else
#define NOINLINE __attribute__((noinline, noclone))
#endif

NOINLINE void measure_pair(size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) {
    char* p = (char*)malloc(size);
    if (p == NULL) abort();
    *(volatile char*)p = (char)i;
    free(p);
  }
}

NOINLINE void measure_batch_malloc(void** v, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) {
    v[i] = malloc(size);
    if (v[i] == NULL) abort();
    *(volatile char*)v[i] = (char)i;
  }
}

NOINLINE void measure_local_free(void** v, size_t n) {
  for (size_t i = 0; i < n; ++i) free(v[i]);
}

NOINLINE void measure_remote_alloc(void** v, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) {
    v[i] = malloc(size);
    if (v[i] == NULL) abort();
    *(volatile char*)v[i] = (char)i;
  }
}

NOINLINE void measure_remote_free(void** v, size_t n) {
  for (size_t i = 0; i < n; ++i) free(v[i]);
}

/* Warm-up twins: same loops, other names (not counted). */
NOINLINE void warm_pair(size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) {
    char* p = (char*)malloc(size);
    if (p == NULL) abort();
    *(volatile char*)p = (char)i;
    free(p);
  }
}
NOINLINE void warm_alloc(void** v, size_t n, size_t size) {
  for (size_t i = 0; i < n; ++i) {
    v[i] = malloc(size);
    if (v[i] == NULL) abort();
  }
}
NOINLINE void warm_free(void** v, size_t n) {
  for (size_t i = 0; i < n; ++i) free(v[i]);
}

static pthread_mutex_t mu = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t cv = PTHREAD_COND_INITIALIZER;
static int stage = 0; /* 1: A allocated, 2: B freed */

static void set_stage(int s) {
  pthread_mutex_lock(&mu);
  stage = s;
  pthread_cond_broadcast(&cv);
  pthread_mutex_unlock(&mu);
}
static void wait_stage(int s) {
  pthread_mutex_lock(&mu);
  while (stage < s) pthread_cond_wait(&cv, &mu);
  pthread_mutex_unlock(&mu);
}

static void* thread_a(void* arg) {
  (void)arg;
  /* warm this thread's heap, then the measured loops */
  warm_alloc(g_vec, 1000, g_size);
  warm_free(g_vec, 1000);
  measure_batch_malloc(g_vec, g_n, g_size);
  measure_local_free(g_vec, g_n);
  measure_remote_alloc(g_vec, g_n, g_size);
  set_stage(1);
  wait_stage(2); /* stay alive while B frees: remote frees to a live owner */
  return NULL;
}

static void* thread_b(void* arg) {
  (void)arg;
  wait_stage(1);
  /* warm B's own free path on blocks of its own first */
  static void* mine[1000];
  warm_alloc(mine, 1000, g_size);
  warm_free(mine, 1000);
  measure_remote_free(g_vec, g_n);
  set_stage(2);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc > 1) g_n = strtoul(argv[1], NULL, 10);
  if (argc > 2) g_size = strtoul(argv[2], NULL, 10);
  if (g_n < 1000 || g_size == 0) {
    fprintf(stderr, "usage: bench-icount [N >= 1000] [SIZE > 0]\n");
    return 2;
  }
  /* the pointer array comes from mmap, not from the allocator under test */
  g_vec =
      mmap(NULL, g_n * sizeof(void*), PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (g_vec == MAP_FAILED) return 4;
  pthread_t a, b;
  if (pthread_create(&a, NULL, thread_a, NULL) != 0 ||
      pthread_create(&b, NULL, thread_b, NULL) != 0)
    return 4;
  pthread_join(b, NULL);
  pthread_join(a, NULL);
  /* The hot pair loop, in the main thread, after a warm-up. 64 blocks of
     the same size stay live meanwhile, so the block's page never becomes
     empty: otherwise every free would take the empty-page path (retire /
     release), which is not the steady state of a real program. */
  static void* keep[64];
  warm_alloc(keep, 64, g_size);
  warm_pair(1000, g_size);
  measure_pair(g_n, g_size);
  warm_free(keep, 64);
  printf("icount: n=%zu size=%zu\n", g_n, g_size);
  return 0;
}
