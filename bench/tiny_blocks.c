/*
 * bench-tiny-blocks: many live blocks of 1..8 bytes, the requests a
 * smallest size class serves (docs/benchmarks.md, "The 8-byte class").
 *
 *   bench-tiny-blocks [N] [ROUNDS]      (defaults: N = 4000000, ROUNDS = 3)
 *
 * Each round allocates N blocks of (i % 8) + 1 bytes, all live at once,
 * writes every byte, then checks and frees them (every other block first,
 * then the rest, so frees do not simply retrace the allocation order).
 * It only calls malloc and free, so the allocator is chosen with LD_PRELOAD
 * (run it under bench-launch for its peak RSS). Prints one summary line:
 *   tiny-blocks: n=4000000 rounds=3 time=0.321s vmhwm_kib=65432
 * Exit status 3 on corruption, 4 when malloc returns NULL.
 */
#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static long vmhwm_kib(void) {
  FILE* f = fopen("/proc/self/status", "r");
  char line[256];
  long kib = -1;
  if (f == NULL) return -1;
  while (fgets(line, sizeof line, f) != NULL) {
    if (strncmp(line, "VmHWM:", 6) == 0) kib = strtol(line + 6, NULL, 10);
  }
  fclose(f);
  return kib;
}

static void check_and_free(unsigned char* p, size_t i) {
  const size_t n = i % 8 + 1;
  for (size_t b = 0; b < n; ++b) {
    if (p[b] != (unsigned char)(i + b)) {
      fprintf(stderr, "tiny-blocks: block %zu (%p) corrupted\n", i, (void*)p);
      exit(3);
    }
  }
  free(p);
}

int main(int argc, char** argv) {
  const size_t n = argc > 1 ? strtoul(argv[1], NULL, 10) : 4000000;
  const int rounds = argc > 2 ? atoi(argv[2]) : 3;
  /* The pointer array comes from mmap-backed malloc in every allocator alike. */
  unsigned char** v = malloc(n * sizeof *v);
  if (v == NULL) return 4;
  const double t0 = now_s();
  for (int r = 0; r < rounds; ++r) {
    for (size_t i = 0; i < n; ++i) {
      const size_t size = i % 8 + 1;
      unsigned char* p = malloc(size);
      if (p == NULL) return 4;
      for (size_t b = 0; b < size; ++b) p[b] = (unsigned char)(i + b);
      v[i] = p;
    }
    for (size_t i = 0; i < n; i += 2) check_and_free(v[i], i);
    for (size_t i = 1; i < n; i += 2) check_and_free(v[i], i);
  }
  const double t = now_s() - t0;
  free(v);
  printf("tiny-blocks: n=%zu rounds=%d time=%.3fs vmhwm_kib=%ld\n", n, rounds, t, vmhwm_kib());
  return 0;
}
