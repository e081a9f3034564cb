/* A program linked statically with libshardalloc_core.a (find_package:
 * shardalloc::core; pkg-config: shardalloc-core --static): the shard_* and
 * region APIs without the malloc override. Prints "consumer_core: OK". */
#include <stdio.h>
#include <stdlib.h>

#include <shardalloc/region.h>
#include <shardalloc/shardalloc.h>
#include <shardalloc/stats.h>

#define CHECK(cond, ...)                                    \
  do {                                                      \
    if (!(cond)) {                                          \
      fprintf(stderr, "consumer_core: FAIL: " __VA_ARGS__); \
      fputc('\n', stderr);                                  \
      return 1;                                             \
    }                                                       \
  } while (0)

int main(void) {
  void* p = shard_malloc(100);
  CHECK(p != NULL && shard_usable_size(p) == 112, "shard_malloc(100): usable %zu",
        shard_usable_size(p));
  shard_stats s;
  shard_stats_get(&s);
  CHECK(s.classes[shard_size_class(100)].live_blocks == 1,
        "live blocks of the 112-byte class: %llu",
        (unsigned long long)s.classes[shard_size_class(100)].live_blocks);
  shard_free(p);

  /* malloc stays glibc's: its blocks are not counted. */
  void* volatile m = malloc(100);
  shard_stats_get(&s);
  CHECK(s.classes[shard_size_class(100)].live_blocks == 0,
        "malloc went to shardalloc without the override");
  free(m);

  const size_t size = 4u << 20;
  void* mem = aligned_alloc(4096, size);
  shard_region* r = NULL;
  CHECK(shard_region_init(&r, mem, size) == SHARD_OK, "shard_region_init");
  void* q = NULL;
  CHECK(shard_region_alloc(r, 1000, 64, &q) == SHARD_OK && q != NULL, "shard_region_alloc");
  CHECK(shard_region_used_bytes(r) == 1000, "used_bytes %zu", shard_region_used_bytes(r));
  CHECK(shard_region_dealloc(r, q, 1000, 64) == SHARD_OK, "shard_region_dealloc");
  CHECK(shard_region_dealloc(r, q, 1000, 64) == SHARD_NOT_ALLOCATED, "double dealloc not caught");
  CHECK(shard_region_used_bytes(r) == 0, "used_bytes after dealloc");
  printf("consumer_core: OK\n");
  return 0; /* the region's memory stays: this thread keeps a heap in it until exit */
}
