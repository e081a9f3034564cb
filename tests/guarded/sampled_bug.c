/* Run preloaded with libshardalloc.so and SHARDALLOC_GUARDED_RATE set
 * (tests/guarded/run_preloaded.sh): allocates many blocks of `size` with
 * plain malloc and keeps them, until one was guarded-sampled: a guarded
 * block's malloc_usable_size is exactly the size asked for, an ordinary
 * one's is its size class (sizes here are none). Then commits `bug` on that
 * block:
 *   overflow   writes one byte past its end, then frees it
 *   uaf        frees it, allocates more, writes its first byte
 *   clean      frees everything (no bug)
 * Exit 0: survived (the bug was not caught); 3: no block was sampled. */
#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int main(int argc, char** argv) {
  if (argc != 3) return 2;
  const size_t size = (size_t)strtoul(argv[2], NULL, 10);
  enum { kMax = 1 << 20 };
  static char* keep[kMax];
  volatile char* sampled = NULL;
  int n = 0;
  for (; n < kMax; ++n) {
    char* p = malloc(size);
    if (p == NULL) return 4;
    memset(p, 'a', size);
    if (malloc_usable_size(p) == size) {
      sampled = p;
      break;
    }
    keep[n] = p;
  }
  if (sampled == NULL) return 3;
  fprintf(stderr, "sampled_bug: block %d of %zu bytes is sampled\n", n, size);
  if (strcmp(argv[1], "overflow") == 0) {
    sampled[size] = 1;
    free((void*)sampled);
  } else if (strcmp(argv[1], "uaf") == 0) {
    free((void*)sampled);
    for (int i = 0; i < 100; ++i) keep[i] = realloc(keep[i], size * 2);
    sampled[0] = 1;
  } else {
    free((void*)sampled);
  }
  for (int i = 0; i < n; ++i) free(keep[i]);
  return 0;
}
