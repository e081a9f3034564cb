/* Known allocation sites for the heap profiler test (tests/profile).
 * Run with libshardalloc.so linked (or preloaded) and SHARDALLOC_PROFILE set.
 * Live at the mid-run profile (argv[1], written with shard_profile_write):
 *   site_small   64 B blocks, 8 MiB in all
 *   site_medium  3000 B blocks, 32 MiB allocated, 16 MiB live
 *   site_huge    4 blocks of 4 MiB, 16 MiB in all
 *   site_leak    256 B blocks, 2 MiB in all (never freed: the leak report's)
 *   site_temp    allocates and frees 64 MiB of 1000 B blocks (nothing live)
 * Another thread frees half of site_medium's blocks before the profile
 * (remote frees of sampled blocks). Everything but site_leak's blocks is freed
 * before exit. Built with -fno-builtin: the compiler must not elide mallocs. */
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "shardalloc/shardalloc.h"

#define SMALL_N (8 << 20) / 64
#define MEDIUM_N (16 << 20) / 3000 /* blocks per half */
#define HUGE_N 4
#define LEAK_N (2 << 20) / 256

void* small_blocks[SMALL_N];
void* medium_blocks[2 * MEDIUM_N];
void* huge_blocks[HUGE_N];
void* leak_blocks[LEAK_N];
static volatile unsigned long sink;

/* Each site touches its block after malloc returns: no tail call hides its frame. */
__attribute__((noinline)) void site_small(int i) {
  small_blocks[i] = malloc(64);
  memset(small_blocks[i], 1, 8);
}
__attribute__((noinline)) void site_medium(int i) {
  medium_blocks[i] = malloc(3000);
  memset(medium_blocks[i], 2, 8);
}
__attribute__((noinline)) void site_huge(int i) {
  huge_blocks[i] = malloc(4 << 20);
  memset(huge_blocks[i], 3, 8);
}
__attribute__((noinline)) void site_leak(int i) {
  leak_blocks[i] = malloc(256);
  memset(leak_blocks[i], 4, 8);
}
__attribute__((noinline)) void site_temp(void) {
  void* p = malloc(1000);
  memset(p, 5, 8);
  sink += (unsigned long)p;
  free(p);
}

void* free_half_remotely(void* arg) {
  (void)arg;
  for (int i = MEDIUM_N; i < 2 * MEDIUM_N; ++i) free(medium_blocks[i]);
  return NULL;
}

int main(int argc, char** argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: %s MID_PROFILE\n", argv[0]);
    return 2;
  }
  /* Interleaved, so that no site owns whole pages by itself. */
  for (int i = 0; i < 2 * MEDIUM_N; ++i) site_medium(i);
  for (int i = 0; i < SMALL_N; ++i) {
    site_small(i);
    if (i % 4 == 0 && i / 4 < LEAK_N) site_leak(i / 4);
    for (int k = 0; k < 1; ++k) site_temp();
  }
  for (int i = 0; i < (64 << 20) / 1000 - SMALL_N; ++i) site_temp();
  for (int i = 0; i < HUGE_N; ++i) site_huge(i);
  pthread_t t;
  pthread_create(&t, NULL, free_half_remotely, NULL);
  pthread_join(t, NULL);
  /* The owner collects the remote frees when it next allocates from those pages. */
  void** again = medium_blocks + MEDIUM_N; /* (their own blocks were freed) */
  for (int i = 0; i < MEDIUM_N; ++i) again[i] = malloc(3000);
  for (int i = 0; i < MEDIUM_N; ++i) free(again[i]);
  int fd = open(argv[1], O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (fd < 0 || shard_profile_write(fd) != 0) {
    perror("shard_profile_write");
    return 1;
  }
  close(fd);
  for (int i = 0; i < SMALL_N; ++i) free(small_blocks[i]);
  for (int i = 0; i < MEDIUM_N; ++i) free(medium_blocks[i]);
  for (int i = 0; i < HUGE_N; ++i) free(huge_blocks[i]);
  printf("done\n");
  return 0;
}
