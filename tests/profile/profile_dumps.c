/* Dumps while running (tests/profile/test_profile.py growth / signal; docs/profiling.md,
 * "Dumps while running"). Linked with libshardalloc.so; SHARDALLOC_PROFILE set by the test.
 *   profile_dumps growth
 *       grows its live memory in 11 steps of 1 MiB (1 KiB blocks from site_grow), all
 *       kept to the end; with SHARDALLOC_PROFILE_GROWTH_MB=2 that is 5 growth dumps.
 *   profile_dumps signal DUMP
 *       holds 4 MiB (site_hold), raises SIGUSR2, then allocates 64 B blocks until the
 *       file DUMP exists (the dump is written at the next sample), and prints
 *       how many allocations that took; at most 100000, else it exits 1.
 * Built with -fno-builtin: the compiler must not elide mallocs. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define BLOCK 1024
#define STEP_BLOCKS 1024 /* 1 MiB */
#define STEPS 11
#define WAIT_MAX 100000

static void* grown[STEPS * STEP_BLOCKS];
static void* waited[WAIT_MAX];

/* Each site touches its block after malloc returns: no tail call hides its frame. */
__attribute__((noinline)) void site_grow(int i) {
  grown[i] = malloc(BLOCK);
  memset(grown[i], 1, 8);
}
__attribute__((noinline)) void site_hold(int i) {
  grown[i] = malloc(BLOCK);
  memset(grown[i], 2, 8);
}
__attribute__((noinline)) void site_wait(int i) {
  waited[i] = malloc(64);
  memset(waited[i], 3, 8);
}

int main(int argc, char** argv) {
  if (argc >= 2 && strcmp(argv[1], "growth") == 0) {
    for (int i = 0; i < STEPS * STEP_BLOCKS; ++i) site_grow(i);
    for (int i = 0; i < STEPS * STEP_BLOCKS; ++i) free(grown[i]);
    return 0;
  }
  if (argc >= 3 && strcmp(argv[1], "signal") == 0) {
    for (int i = 0; i < 4 * STEP_BLOCKS; ++i) site_hold(i);
    kill(getpid(), SIGUSR2);
    int n = 0;
    while (n < WAIT_MAX && access(argv[2], F_OK) != 0) site_wait(n++);
    printf("%d allocations after the signal\n", n);
    for (int i = 0; i < n; ++i) free(waited[i]);
    for (int i = 0; i < 4 * STEP_BLOCKS; ++i) free(grown[i]);
    return n < WAIT_MAX ? 0 : 1;
  }
  fprintf(stderr, "usage: profile_dumps growth | signal DUMP\n");
  return 2;
}
